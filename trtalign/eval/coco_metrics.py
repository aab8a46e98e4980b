"""COCO bbox AP / AR: the 12 standard numbers, per-class AP and PR curves, by pycocotools' algorithm.

:class:`CocoMetrics` collects :class:`~trtalign.core.detections.Detections` per image (``update`` / ``compute`` /
``reset``, like every metric in ``trtalign.eval``) and evaluates them with one of three backends:

- ``"numpy"`` (the default, ``"auto"``): :mod:`trtalign.eval.coco_fast`, pycocotools' algorithm on whole arrays;
  its ``precision`` / ``recall`` arrays and 12 numbers equal pycocotools' bit for bit (tested on random cases);
- ``"faster-coco-eval"``: the C++ port of pycocotools, fed one Python dict per detection (the same numbers, at
  most a last-bit difference in a mean);
- ``"pycocotools"``: the reference itself, which the tests compare against.

The ground truth is indexed once per dataset (:func:`ground_truth_index`, shared by every ``CocoMetrics`` on that
dataset), so a repeated evaluation with new detections (the fallback search) only sorts, matches and accumulates
those: ``python benchmarks/eval_speed.py`` measures it against pycocotools on a COCO-sized set.

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
import gc
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
BACKENDS = ("auto", "numpy", "faster-coco-eval", "pycocotools")
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


class GroundTruthIndex:
    """The ground truth of one dataset, indexed once for COCO evaluation and reused for every new set of detections.

    Holds the COCO dict (``gt``), the annotation dicts in COCO order with pycocotools' ``ignore`` flag already set
    (what ``COCOeval._prepare`` would collect for every image and category), per-category non-crowd ground-truth
    counts, and, built on first use, the backend's own index: ``bbox`` (:class:`~trtalign.eval.coco_fast.
    BboxGroundTruth`, numpy) or ``coco`` (the ``COCO`` object of faster-coco-eval or pycocotools). The evaluators only
    read these (``_prepare`` sets ``ignore`` = ``iscrowd``, which is idempotent), so sharing them between
    evaluations leaves the numbers unchanged.
    """

    def __init__(self, gt: dict, backend: str):
        self.gt = gt
        self.backend = backend
        self._coco: Any = None
        self._bbox: Any = None
        self.cat_ids = [int(c["id"]) for c in gt["categories"]]
        self.image_ids = [im["id"] for im in gt["images"]]
        anns = gt["annotations"]
        for a in anns:
            a["ignore"] = int(a.get("iscrowd", 0))
        self.anns = anns
        self.ann_image = np.array([a["image_id"] for a in anns], np.int64)
        self.ann_cat = np.array([int(a["category_id"]) for a in anns], np.int64)
        self.ann_crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
        self._num_gt_all: Optional[dict] = None

    @property
    def coco(self) -> Any:
        """The ``COCO`` object of faster-coco-eval or pycocotools (whichever ``backend`` is; built once)."""
        if self._coco is None:
            self._coco = _make_coco(self.backend, self.gt)
        return self._coco

    @property
    def bbox(self) -> Any:
        """The ground truth as :class:`~trtalign.eval.coco_fast.BboxGroundTruth` arrays (built once)."""
        if self._bbox is None:
            from trtalign.eval.coco_fast import BboxGroundTruth

            self._bbox = BboxGroundTruth(self.gt)
        return self._bbox

    def num_gt(self, image_ids: Optional[set] = None) -> dict:
        """Non-crowd ground-truth boxes per category id (over ``image_ids``; default every image)."""
        if image_ids is None and self._num_gt_all is not None:
            return dict(self._num_gt_all)
        keep = ~self.ann_crowd
        if image_ids is not None:
            keep &= np.isin(self.ann_image, np.fromiter(image_ids, np.int64, len(image_ids)))
        counts = dict.fromkeys(self.cat_ids, 0)
        cats, n = np.unique(self.ann_cat[keep], return_counts=True)
        counts.update({int(c): int(k) for c, k in zip(cats, n)})
        if image_ids is None:
            self._num_gt_all = dict(counts)
        return counts


_GT_CACHE: dict = {}  # id(dataset) -> (weakref to it, fingerprint, {backend: GroundTruthIndex})


def _fingerprint(dataset: Dataset) -> tuple:
    return (len(dataset.images), id(dataset.images), id(dataset.annotations), len(dataset.annotations),
            dataset.num_boxes, tuple(dataset.category_ids), tuple(dataset.names))


def ground_truth_index(dataset: Dataset, backend: str = "auto") -> GroundTruthIndex:
    """The dataset's :class:`GroundTruthIndex`, built on first use and cached while the dataset lives (rebuilt if its
    images, annotations or categories were replaced)."""
    import weakref

    backend = resolve_backend(backend)
    key = id(dataset)
    fp = _fingerprint(dataset)
    entry = _GT_CACHE.get(key)
    if entry is None or entry[0]() is not dataset or entry[1] != fp:
        entry = (weakref.ref(dataset, lambda _r, k=key: _GT_CACHE.pop(k, None)), fp, {})
        _GT_CACHE[key] = entry
    by_backend = entry[2]
    if backend not in by_backend:
        by_backend[backend] = GroundTruthIndex(dataset.to_coco(), backend)
    return by_backend[backend]


def _result_anns(results: np.ndarray) -> list:
    """``[N, 7]`` results -> the annotation dicts faster-coco-eval's ``loadRes`` makes of them for bbox (same values:
    bbox, score, area = w * h, id from 1, iscrowd 0), without its per-row numpy indexing."""
    return [{"image_id": int(r[0]), "bbox": [r[1], r[2], r[3], r[4]], "score": r[5], "category_id": int(r[6]),
             "area": r[3] * r[4], "id": i, "iscrowd": 0}
            for i, r in enumerate(results.tolist(), 1)]


_FAST_EVAL_CLASS: Any = None


def _fast_eval_class() -> Any:
    """``COCOeval_faster`` whose ``_prepare`` (bbox, per category) fills its C++ datasets straight from the shared
    ground-truth annotations and the result dicts, in the order ``getAnnIds`` would give them (per image and
    category: annotation order), instead of re-indexing both through ``COCO`` objects every time."""
    global _FAST_EVAL_CLASS
    if _FAST_EVAL_CLASS is not None:
        return _FAST_EVAL_CLASS
    from faster_coco_eval import COCOeval_faster

    class _SharedGtEval(COCOeval_faster):
        trt_index: Optional[GroundTruthIndex] = None
        trt_dts: list = []

        def _prepare(self):
            p = self.params
            if (self.trt_index is None or self.lvis_style or p.compute_rle or p.iouType != "bbox" or not p.useCats
                    or not p.imgIds or not p.catIds):
                return super()._prepare()
            self.gt_dataset.clean()
            self.dt_dataset.clean()
            imgs, cats = set(p.imgIds), set(p.catIds)
            index = self.trt_index
            full = imgs.issuperset(index.image_ids) and cats.issuperset(index.cat_ids)
            def add(items: Any, dataset: Any) -> set:
                """Hand ``items`` of the evaluated images and classes to ``dataset``; their (image, class) pairs."""
                pairs, append = set(), dataset.append_ref
                for item in items:
                    i, c = item["image_id"], item["category_id"]
                    if full or (i in imgs and c in cats):
                        append(i, c, item)
                        pairs.add((i, c))
                return pairs

            self._nonempty_iou_pairs = add(index.anns, self.gt_dataset) & add(self.trt_dts, self.dt_dataset)

    _FAST_EVAL_CLASS = _SharedGtEval
    return _FAST_EVAL_CLASS


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"invalid COCO backend {backend!r}; valid choices: {choices_text(BACKENDS)}")
    return "numpy" if backend == "auto" else backend


def coco_results_array(dataset: Dataset, ids: np.ndarray, xyxy: np.ndarray, scores: np.ndarray,
                       cls: np.ndarray) -> np.ndarray:
    """``[N, 7]`` rows ``(image_id, x, y, w, h, score, category_id)`` as pycocotools' ``loadRes`` reads them."""
    cat = np.asarray(dataset.category_ids, np.int64)[cls] if len(cls) else np.zeros(0)
    return np.stack([ids, xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1], scores, cat],
                    1).astype(np.float64)


class CocoMetrics:
    """COCO bbox evaluation over a :class:`Dataset` (axis-aligned; rotated detections use their enclosing box).

    ``update(image_id, detections)`` takes class ids as the dataset's contiguous indices. ``backend``: one of
    :data:`BACKENDS` (``"auto"`` is ``"numpy"``; all give pycocotools' numbers).
    """

    def __init__(self, dataset: Dataset, backend: str = "auto"):
        self.dataset = dataset
        self.backend = resolve_backend(backend)
        self._gt: Optional[GroundTruthIndex] = None  # shared with every CocoMetrics on this dataset
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
        self._gt = ground_truth_index(self.dataset, self.backend)  # cached per dataset: indexed once, not per call
        res = self.results_array()
        return evaluate_with_index(self._gt, res, self.dataset.names, image_ids)


def evaluate_coco_arrays(gt: dict, results: np.ndarray, names: list, backend: str = "auto",
                         image_ids: Optional[list] = None) -> CocoResult:
    """Run COCOeval (bbox) on a ground-truth dict and ``[N, 7]`` results; returns a :class:`CocoResult`."""
    return evaluate_with_index(GroundTruthIndex(gt, resolve_backend(backend)), results, names, image_ids)


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector: evaluation makes ~10 small dicts / lists per detection, none of them
    cyclic, and every generation-2 pass over them (and the rest of the heap) costs more than the evaluation."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def evaluate_with_index(index: GroundTruthIndex, results: np.ndarray, names: list,
                        image_ids: Optional[list] = None) -> CocoResult:
    """:func:`evaluate_coco_arrays` on an already indexed ground truth (:func:`ground_truth_index`)."""
    with _gc_paused():
        return _evaluate_with_index(index, results, names, image_ids)


def _evaluate_with_index(index: GroundTruthIndex, results: np.ndarray, names: list,
                         image_ids: Optional[list] = None) -> CocoResult:
    backend, gt = index.backend, index.gt
    if backend in ("numpy", "faster-coco-eval") and len(results) and \
            not set(np.unique(results[:, 0]).astype(np.int64).tolist()) <= set(index.image_ids):
        raise InputError("results do not correspond to the ground truth's images")
    if backend == "numpy":
        from trtalign.eval.coco_fast import evaluate_bbox

        ev = evaluate_bbox(index.bbox, results, image_ids)
        return _coco_result(index, names, ev.stats, ev.precision, ev.cat_ids, set(ev.image_ids), len(results))
    coco_gt = index.coco
    if backend == "faster-coco-eval":
        ev = _fast_eval_class()(coco_gt, None, "bbox", print_function=lambda *a, **k: None)
        ev.trt_index = index
        ev.trt_dts = _result_anns(results)
    else:
        from pycocotools.cocoeval import COCOeval

        if len(results):
            with contextlib.redirect_stdout(io.StringIO()):
                coco_dt = coco_gt.loadRes(results)
        else:  # pycocotools' loadRes fails on an empty list: an empty result set scores 0 where there is ground truth
            coco_dt = _make_coco(backend, {"images": gt["images"], "categories": gt["categories"],
                                           "annotations": []})
        ev = COCOeval(coco_gt, coco_dt, "bbox")
    if image_ids is not None:
        ev.params.imgIds = list(image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return _coco_result(index, names, ev.stats, np.asarray(ev.eval["precision"]), list(ev.params.catIds),
                        set(ev.params.imgIds), len(results))


def _coco_result(index: GroundTruthIndex, names: list, coco_stats: Any, precision: np.ndarray, ev_cats: list,
                 allowed: set, num_detections: int) -> CocoResult:
    """A :class:`CocoResult` from pycocotools' ``stats`` and ``precision`` [T, R, K, A, M] over ``ev_cats``."""
    backend, gt = index.backend, index.gt
    stats = [float(v) for v in coco_stats[:12]]
    stats = [v if v >= 0 else float("nan") for v in stats]  # -1: no ground truth at all
    cat_ids = [int(c["id"]) for c in gt["categories"]]
    order = {c: i for i, c in enumerate(sorted(cat_ids))}
    num_gt = index.num_gt(None if allowed.issuperset(index.image_ids) else allowed)
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
                      num_detections=int(num_detections), num_gt=sum(num_gt.values()), backend=backend)
