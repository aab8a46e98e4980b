"""COCO bbox AP / AR: the 12 standard numbers, per-class AP and PR curves, by pycocotools' algorithm.

:class:`CocoMetrics` collects :class:`~trtalign.core.detections.Detections` per image (``update`` / ``compute`` /
``reset``, like every metric in ``trtalign.eval``) and evaluates them with faster-coco-eval (a C++ port of
pycocotools that gives identical numbers, ~15x faster) or with pycocotools itself (``backend="pycocotools"``, the
reference the tests compare against).

Bad input, handled as pycocotools does or refused clearly:
- detections for an image id the dataset does not have -> ``InputError`` (pycocotools asserts);
- NaN / infinite scores or boxes -> ``InputError`` naming the image (pycocotools would silently mis-sort them);
- no detections at all -> every AP / AR is 0 where there is ground truth (pycocotools' ``loadRes`` crashes on an empty
  list; we evaluate an empty result set instead);
- images without annotations: their detections count as false positives, as in pycocotools;
- classes without ground truth: AP ``None`` (pycocotools' -1), excluded from the mean.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from trtalign.core.detections import Detections
from trtalign.core.errors import ConfigError, InputError, choices_text
from trtalign.data.datasets import Dataset

#: stable keys of the 12 COCO numbers, in pycocotools' ``stats`` order
COCO_STAT_KEYS = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
                  "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")
BACKENDS = ("auto", "faster-coco-eval", "pycocotools")
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _nan_to_none(v: float) -> Optional[float]:
    return None if v is None or not np.isfinite(v) else float(v)


@dataclass
class CocoResult:
    """COCO evaluation of one set of detections.

    JSON keys (stable): ``stats`` {map, map50, map75, map_small, map_medium, map_large, mar_1, mar_10, mar_100,
    mar_small, mar_medium, mar_large}; ``per_class`` {name: {ap, ap50, num_gt}} (ap ``null`` where the class has no
    ground truth); ``pr_curve`` {recall: 101 points, precision_50: mean precision over classes at IoU 0.5,
    per_class_50: {name: 101 points}}; ``num_images``, ``num_detections``, ``num_gt``, ``backend``.
    """

    stats: dict
    per_class: dict
    pr_curve: dict = field(default_factory=dict, repr=False)
    num_images: int = 0
    num_detections: int = 0
    num_gt: int = 0
    backend: str = ""

    @property
    def map(self) -> float:
        return self.stats["map"]

    @property
    def map50(self) -> float:
        return self.stats["map50"]

    def to_dict(self) -> dict:
        return {"stats": {k: _nan_to_none(v) for k, v in self.stats.items()},
                "per_class": {n: {k: (v if k == "num_gt" else _nan_to_none(v)) for k, v in c.items()}
                              for n, c in self.per_class.items()},
                "pr_curve": self.pr_curve, "num_images": self.num_images, "num_detections": self.num_detections,
                "num_gt": self.num_gt, "backend": self.backend}


def check_detections(image_id: Any, det: Detections) -> None:
    """Refuse non-finite scores or boxes with a message naming the image."""
    if not np.isfinite(det.scores).all():
        bad = int((~np.isfinite(det.scores)).sum())
        raise InputError(f"image {image_id}: {bad} detection score(s) are NaN or infinite; expected finite scores "
                         f"in [0, 1] (an overflow in FP16/INT8 inference shows up like this)")
    if not np.isfinite(det.boxes).all():
        raise InputError(f"image {image_id}: detection boxes contain NaN or infinite coordinates")


class DetectionStore:
    """Per-image detections kept as flat arrays (shared by the COCO and rotated metrics)."""

    def __init__(self, dataset: Dataset, box_width: int):
        self.dataset = dataset
        self.box_width = box_width
        self.reset()

    def reset(self) -> None:
        self._parts: list = []
        self._seen: set = set()

    def add(self, image_id: Any, det: Detections) -> None:
        if not self.dataset.has_image(image_id):
            raise InputError(f"detections for unknown image id {image_id!r}: not in the dataset "
                             f"({len(self.dataset)} images)")
        if det.boxes.shape[1] != self.box_width:
            kind = "xywhr (rotated)" if self.box_width == 5 else "xyxy"
            raise InputError(f"image {image_id}: expected {kind} detections with {self.box_width} columns, "
                             f"got {det.boxes.shape[1]}")
        check_detections(image_id, det)
        nc = self.dataset.num_classes
        if len(det) and (det.class_ids.min() < 0 or det.class_ids.max() >= nc):
            raise InputError(f"image {image_id}: detection class ids must be in 0..{nc - 1}, got "
                             f"{int(det.class_ids.min())}..{int(det.class_ids.max())}")
        self._seen.add(image_id)
        if len(det):
            self._parts.append((image_id, det.boxes.astype(np.float64), det.scores.astype(np.float64),
                                det.class_ids.astype(np.int64)))

    @property
    def num_images(self) -> int:
        return len(self._seen)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(image ids [N], boxes [N, W], scores [N], class indices [N])."""
        if not self._parts:
            return (np.zeros(0, np.int64), np.zeros((0, self.box_width)), np.zeros(0), np.zeros(0, np.int64))
        ids = np.concatenate([np.full(len(p[2]), p[0], np.int64) for p in self._parts])
        return (ids, np.concatenate([p[1] for p in self._parts]), np.concatenate([p[2] for p in self._parts]),
                np.concatenate([p[3] for p in self._parts]))


def _make_coco(backend: str, data: dict) -> Any:
    if backend == "faster-coco-eval":
        from faster_coco_eval import COCO

        return COCO(data)
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"invalid COCO backend {backend!r}; valid choices: {choices_text(BACKENDS)}")
    if backend == "auto":
        try:
            import faster_coco_eval  # noqa: F401
            return "faster-coco-eval"
        except ImportError:
            return "pycocotools"
    return backend


def coco_results_array(dataset: Dataset, ids: np.ndarray, xyxy: np.ndarray, scores: np.ndarray,
                       cls: np.ndarray) -> np.ndarray:
    """``[N, 7]`` rows ``(image_id, x, y, w, h, score, category_id)`` as pycocotools' ``loadRes`` reads them."""
    cat = np.asarray(dataset.category_ids, np.int64)[cls] if len(cls) else np.zeros(0)
    return np.stack([ids, xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1], scores, cat],
                    1).astype(np.float64)


class CocoMetrics:
    """COCO bbox evaluation over a :class:`Dataset` (axis-aligned; rotated detections use their enclosing box).

    ``update(image_id, detections)`` takes class ids as the dataset's contiguous indices.
    """

    def __init__(self, dataset: Dataset, backend: str = "auto"):
        self.dataset = dataset
        self.backend = resolve_backend(backend)
        self._gt: dict | None = None
        self.store = DetectionStore(dataset, 5 if dataset.rotated else 4)

    def reset(self) -> None:
        self.store.reset()

    def update(self, image_id: Any, detections: Detections) -> None:
        self.store.add(image_id, detections)

    def update_many(self, items: dict) -> None:
        for image_id, det in items.items():
            self.update(image_id, det)

    def results_array(self) -> np.ndarray:
        ids, boxes, scores, cls = self.store.arrays()
        if self.dataset.rotated:
            from trtalign.core.geometry import rotated_bounds

            boxes = rotated_bounds(boxes)
        return coco_results_array(self.dataset, ids, boxes, scores, cls)

    def compute(self, image_ids: Optional[list] = None) -> CocoResult:
        """Evaluate on ``image_ids`` (default: every image of the dataset, with or without detections)."""
        if self._gt is None:
            self._gt = self.dataset.to_coco()
        res = self.results_array()
        return evaluate_coco_arrays(self._gt, res, self.dataset.names, self.backend, image_ids)


def evaluate_coco_arrays(gt: dict, results: np.ndarray, names: list, backend: str = "auto",
                         image_ids: Optional[list] = None) -> CocoResult:
    """Run COCOeval (bbox) on a ground-truth dict and ``[N, 7]`` results; returns a :class:`CocoResult`."""
    backend = resolve_backend(backend)
    coco_gt = _make_coco(backend, gt)
    if len(results):
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(results)
    else:  # pycocotools' loadRes fails on an empty list: an empty result set scores 0 where there is ground truth
        coco_dt = _make_coco(backend, {"images": gt["images"], "categories": gt["categories"], "annotations": []})
    if backend == "faster-coco-eval":
        from faster_coco_eval import COCOeval_faster as COCOeval

        ev = COCOeval(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
    else:
        from pycocotools.cocoeval import COCOeval

        ev = COCOeval(coco_gt, coco_dt, "bbox")
    if image_ids is not None:
        ev.params.imgIds = list(image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(v) for v in ev.stats[:12]]
    stats = [v if v >= 0 else float("nan") for v in stats]  # -1: no ground truth at all
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    cat_ids = [int(c["id"]) for c in gt["categories"]]
    order = {c: i for i, c in enumerate(sorted(cat_ids))}
    ev_cats = list(ev.params.catIds)
    num_gt = {c: 0 for c in cat_ids}
    allowed = set(ev.params.imgIds)
    for a in gt["annotations"]:
        if a["image_id"] in allowed and not a.get("iscrowd", 0):
            num_gt[int(a["category_id"])] += 1
    per_class, per_class_50 = {}, {}
    for cid, name in zip(cat_ids, names):
        k = ev_cats.index(cid) if cid in ev_cats else order[cid]
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        ap = float(valid.mean()) if valid.size else float("nan")
        p50 = precision[0, :, k, 0, -1]
        ap50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else float("nan")
        per_class[str(name)] = {"ap": ap, "ap50": ap50, "num_gt": num_gt[cid]}
        if (p50 > -1).any():
            per_class_50[str(name)] = [round(float(v), 5) for v in np.clip(p50, 0, None)]
    p50_all = precision[0, :, :, 0, -1]
    mean50 = [round(float(v[v > -1].mean()), 5) if (v > -1).any() else 0.0 for v in p50_all]
    return CocoResult(dict(zip(COCO_STAT_KEYS, stats)), per_class,
                      {"recall": [round(float(r), 2) for r in RECALL_POINTS], "precision_50": mean50,
                       "per_class_50": per_class_50},
                      num_images=len(allowed),
                      num_detections=int(len(results)), num_gt=sum(num_gt.values()), backend=backend)
