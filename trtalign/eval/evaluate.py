"""Evaluate a model at several precisions on one dataset: runners -> per-image Detections -> COCO / rotated metrics.

``evaluate(model, data, precisions=("torch", "fp32", "fp16", "int8"))`` prepares one runner per precision
(``torch``: the ultralytics model and its own NMS; ``ort-fp32``: the exported ONNX; ``ort-fp16sim``: its FP16
emulation (:mod:`trtalign.export.fp16sim`); ``ort-int8sim``: the Q/DQ ONNX of :mod:`trtalign.export.qdq`, run with
fake-quant numerics; ``trt-fp32`` / ``trt-fp16`` / ``trt-int8`` with ``backend="trt"`` when TensorRT is importable),
runs each over the images in batches (progress bar), scores the detections and times the inference.

JSON (``EvalResult.to_dict()``), stable keys:

- ``task`` ("detect" | "obb"), ``metric`` ("coco-bbox" | "rotated"), ``model``, ``imgsz`` [h, w], ``batch``,
  ``reference`` (the runner the deltas are taken against: "torch" when evaluated, else the first one),
  ``nms`` {score_threshold, iou_threshold, max_det, class_agnostic, torch_nms, onnx: the NMS node attributes
  baked into the ONNX}, ``dataset`` {source, root, task,
  images, boxes, classes, names};
- ``results``: a list, one per runner, each {``precision`` ("torch" | "fp32" | "fp16" | "int8"), ``runner``
  ("torch", "ort-fp32", "ort-fp16sim", "ort-int8sim", "trt-fp32", ...), ``model`` (file run), ``metrics``
  (:class:`~trtalign.eval.coco_metrics.CocoResult` or :class:`~trtalign.eval.rotated_metrics.RotatedResult`
  to_dict: ``stats.map`` is mAP50-95, ``stats.map50`` mAP50), ``delta_map`` / ``delta_map50`` (this minus the
  reference; 0 for the reference itself), ``delta_map_ci95`` / ``delta_map50_ci95`` ([low, high]: paired bootstrap
  95% interval over images, :mod:`trtalign.eval.bootstrap`; [0, 0] for the reference), ``latency`` {median_ms, mean_ms, p90_ms, images, batch} per image,
  ``detections_file`` (with ``save_detections``), ``notes``};
- ``skipped``: {precision or runner name: reason} for what could not run here (no TensorRT, no Q/DQ export, ...).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from trtalign.core.detections import Detections
from trtalign.core.enums import CalibrationMethod, Precision, RunnerName, values
from trtalign.core.errors import ConfigError, InputError, TrtalignError, choices_text
from trtalign.core.io import atomic_write_json
from trtalign.core.logging import get_logger, progress
from trtalign.eval.coco_metrics import CocoMetrics, CocoResult
from trtalign.data.datasets import Dataset, category_map, load_dataset
from trtalign.eval.rotated_metrics import RotatedMetrics, RotatedResult, rotated_results_json

log = get_logger(__name__)

PRECISIONS = values(Precision)
RUNNER_NAMES = values(RunnerName)
ORT_RUNNERS = {p: RunnerName.for_precision(p, "ort").value for p in PRECISIONS[1:]}
TRT_RUNNERS = {p: RunnerName.for_precision(p, "trt").value for p in PRECISIONS[1:]}
BACKENDS = ("auto", "ort", "trt")
TORCH_NMS = ("ultralytics", "aligned")
#: NMS of an evaluation export when nothing else is asked (ultralytics' val defaults)
EVAL_NMS = {"score_threshold": 0.001, "iou_threshold": 0.7, "max_det": 300, "class_agnostic": False}


def parse_precisions(text: str | Sequence[str]) -> list[str]:
    """``"torch,fp32,fp16,int8"`` (runner names such as ``ort-fp16sim`` also accepted) -> precision list."""
    items = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    alias = {v: k for k, v in {**ORT_RUNNERS}.items()} | {v: k for k, v in TRT_RUNNERS.items()}
    out = []
    for p in items:
        p = alias.get(p, p)
        if p not in PRECISIONS:
            raise ConfigError(f"invalid precision {p!r}; valid choices: {choices_text(PRECISIONS + RUNNER_NAMES[1:])}")
        if p not in out:
            out.append(p)
    if not out:
        raise ConfigError(f"no precision given; valid choices: {choices_text(PRECISIONS)}")
    return out


@dataclass
class NmsSettings:
    """NMS used for evaluation. ``None`` thresholds mean: ultralytics' val defaults (0.001 / 0.7 / 300) for a model
    exported here, the file's own NMS attributes for an exported ONNX (:meth:`applied_to` resolves them).
    ``torch_nms``: ``ultralytics`` (its own NMS, the reference as users see it) or ``aligned`` (the exported
    EfficientNMS reference on the torch head, which removes NMS differences from the torch-vs-ONNX comparison)."""

    score_threshold: Optional[float] = None
    iou_threshold: Optional[float] = None
    max_det: Optional[int] = None
    class_agnostic: Optional[bool] = None
    torch_nms: str = "ultralytics"

    def __post_init__(self) -> None:
        if self.torch_nms not in TORCH_NMS:
            raise ConfigError(f"invalid torch NMS mode {self.torch_nms!r}; valid choices: {choices_text(TORCH_NMS)}")

    def export_kwargs(self) -> dict:
        """The ``export_onnx`` NMS arguments (defaults filled in)."""
        given = {"score_threshold": self.score_threshold, "iou_threshold": self.iou_threshold,
                 "max_det": self.max_det, "class_agnostic": self.class_agnostic}
        return {k: (EVAL_NMS[k] if v is None else v) for k, v in given.items()}

    def applied_to(self, onnx_nms: dict, exported_here: bool) -> "NmsSettings":
        """The settings that actually apply to an ONNX whose NMS node has ``onnx_nms``: for a file given by the user,
        its attributes (a different value asked for is a ConfigError: NMS is baked into the file)."""
        if exported_here:
            return NmsSettings(**self.export_kwargs(), torch_nms=self.torch_nms)
        have = {"score_threshold": float(onnx_nms.get("score_threshold", EVAL_NMS["score_threshold"])),
                "iou_threshold": float(onnx_nms.get("iou_threshold", EVAL_NMS["iou_threshold"])),
                "max_det": int(onnx_nms.get("max_output_boxes", EVAL_NMS["max_det"])),
                "class_agnostic": bool(onnx_nms.get("class_agnostic", 0))}
        flags = {"score_threshold": "--conf", "iou_threshold": "--iou", "max_det": "--max-det",
                 "class_agnostic": "--class-agnostic"}
        clash = [f"{flags[k]} {getattr(self, k)} (the file has {v})" for k, v in have.items()
                 if getattr(self, k) is not None and not np.isclose(float(getattr(self, k)), float(v))]
        if clash:
            raise ConfigError(f"the ONNX has its NMS baked in, so {', '.join(clash)} cannot be applied: drop the "
                              f"option, or re-export with `trtalign export` and the NMS settings you want")
        return NmsSettings(**have, torch_nms=self.torch_nms)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class LatencyStats:
    """Inference wall time per image (batch time / batch size), warm-up batch excluded, in milliseconds."""

    median_ms: float
    mean_ms: float
    p90_ms: float
    images: int
    batch: int

    @classmethod
    def from_batches(cls, seconds: Sequence[float], sizes: Sequence[int], batch: int) -> "LatencyStats":
        per = np.asarray([s / max(n, 1) for s, n in zip(seconds, sizes)]) * 1e3
        if not len(per):
            return cls(float("nan"), float("nan"), float("nan"), 0, batch)
        return cls(float(np.median(per)), float(per.mean()), float(np.percentile(per, 90)), int(sum(sizes)), batch)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PrecisionResult:
    precision: str
    runner: str
    metrics: Any  # CocoResult | RotatedResult
    latency: LatencyStats
    model: Optional[str] = None
    delta_map: Optional[float] = None
    delta_map50: Optional[float] = None
    detections_file: Optional[str] = None
    notes: list = field(default_factory=list)
    delta_map_ci95: Optional[list] = None
    delta_map50_ci95: Optional[list] = None
    detections: Optional[dict] = field(default=None, repr=False)  # {image_id: Detections}, for the intervals

    @property
    def map(self) -> float:
        return self.metrics.map

    def to_dict(self) -> dict:
        return {"precision": self.precision, "runner": self.runner, "model": self.model,
                "metrics": self.metrics.to_dict(), "delta_map": self.delta_map, "delta_map50": self.delta_map50,
                "delta_map_ci95": self.delta_map_ci95, "delta_map50_ci95": self.delta_map50_ci95,
                "latency": self.latency.to_dict(), "detections_file": self.detections_file, "notes": list(self.notes)}


@dataclass
class EvalResult:
    task: str
    metric: str
    model: str
    imgsz: list
    batch: int
    dataset: dict
    nms: dict
    results: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)
    reference: Optional[str] = None
    calibration: dict = field(default_factory=dict)  # the INT8 calibration settings applied ({} without int8)

    def __bool__(self) -> bool:
        return bool(self.results)

    def result(self, runner: str) -> PrecisionResult:
        for r in self.results:
            if r.runner == runner or r.precision == runner:
                return r
        raise InputError(f"no result for {runner!r}; evaluated: {choices_text(r.runner for r in self.results)}")

    def set_deltas(self, reference: str | None = None, dataset: Dataset | None = None,
                   resamples: int = 1000, seed: int = 0) -> None:
        """Deltas against ``reference``; with ``dataset`` (and detections kept) also their paired bootstrap
        95% intervals over images."""
        if not self.results:
            return
        names = [r.runner for r in self.results]
        # the reference is the float model: torch, else FP32; with neither there is no delta (an INT8 runner
        # measured against itself would print +0.0000)
        ref = reference or next((n for n in ("torch", "ort-fp32", "trt-fp32") if n in names), None)
        if ref is None:
            self.reference = None
            return
        base = self.result(ref).metrics
        self.reference = ref
        for r in self.results:
            r.delta_map = _delta(r.metrics.stats["map"], base.stats["map"])
            r.delta_map50 = _delta(r.metrics.stats["map50"], base.stats["map50"])
        ref_dets = self.result(ref).detections
        if dataset is None or ref_dets is None or resamples <= 0:
            return
        from trtalign.eval.bootstrap import MatchTable, bootstrap_tables, round_interval

        ref_table = MatchTable(dataset, ref_dets)
        for r in self.results:
            if r.detections is not None:
                ci = bootstrap_tables(MatchTable(dataset, r.detections), ref_table, resamples, seed)
                r.delta_map_ci95, r.delta_map50_ci95 = round_interval(ci.ci95), round_interval(ci.ci95_50)

    def to_dict(self) -> dict:
        return {"task": self.task, "metric": self.metric, "model": self.model, "imgsz": list(self.imgsz),
                "batch": self.batch, "reference": self.reference, "nms": self.nms, "dataset": self.dataset,
                "calibration": dict(self.calibration), "results": [r.to_dict() for r in self.results],
                "skipped": dict(self.skipped)}

    def summary(self) -> str:
        lines = [f"{self.metric} on {self.dataset.get('images')} images ({self.dataset.get('root')}), "
                 f"imgsz {self.imgsz[0]}x{self.imgsz[1]}, reference "
                 f"{self.reference or 'none (no torch or fp32 run: no deltas)'}",
                 f"{'runner':<14}{'mAP50-95':>10}{'mAP50':>9}{'delta':>9}{'ms/img':>9}  delta 95% CI"]
        for r in self.results:
            d = "" if r.delta_map is None else f"{r.delta_map:+.4f}"
            ci = r.delta_map_ci95
            ci = f"  [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci and None not in ci else ""
            lines.append(f"{r.runner:<14}{r.metrics.stats['map']:>10.4f}{r.metrics.stats['map50']:>9.4f}{d:>9}"
                         f"{r.latency.median_ms:>9.1f}{ci}")
        for k, why in self.skipped.items():
            lines.append(f"{k:<14}skipped: {why}")
        return "\n".join(lines)


def _delta(a: float, b: float) -> Optional[float]:
    return None if not (np.isfinite(a) and np.isfinite(b)) else float(a - b)


# ------------------------------------------------------------------------------------------------ running a runner
Postprocess = Callable[[dict, list], list]


def ort_postprocess(rotated: bool) -> Postprocess:
    """NMS outputs of an exported ONNX -> Detections on the original images."""
    from trtalign.runtime.postprocess import nms_outputs_to_detections

    return lambda outputs, metas: nms_outputs_to_detections(outputs, metas, rotated=rotated)


def torch_postprocess(runner: Any, nms: NmsSettings) -> Postprocess:
    """The torch runner's raw head -> Detections, with ultralytics' NMS or the aligned (EfficientNMS reference) one."""
    if nms.torch_nms == "ultralytics":
        return lambda outputs, metas: runner.postprocess(outputs["output0"], metas, conf=nms.score_threshold,
                                                         iou=nms.iou_threshold, max_det=nms.max_det,
                                                         agnostic=nms.class_agnostic)
    from trtalign.export.graph_nms import decode_raw_output
    from trtalign.plugins.reference.nms import efficient_nms, efficient_rotated_nms
    from trtalign.runtime.postprocess import nms_outputs_to_detections

    rotated = runner.rotated
    nc = runner.info.num_classes

    def post(outputs: dict, metas: list) -> list:
        boxes, scores = decode_raw_output(outputs["output0"], nc, rotated, box_coding=1 if rotated else 0)
        fn = efficient_rotated_nms if rotated else efficient_nms
        res = fn(boxes, scores, score_threshold=nms.score_threshold, iou_threshold=nms.iou_threshold,
                 max_output_boxes=nms.max_det, class_agnostic=int(nms.class_agnostic), box_coding=1 if rotated else 0)
        return nms_outputs_to_detections(res._asdict(), metas, rotated=rotated)

    return post


def run_runner(runner: Any, dataset: Dataset, imgsz: Sequence[int], postprocess: Postprocess, batch: int = 1,
               class_map: np.ndarray | None = None, desc: str = "",
               preprocess: str = "ultralytics") -> tuple[dict, LatencyStats]:
    """Run an active runner over every image: ``{image_id: Detections}`` (dataset class indices) + latency.
    ``preprocess``: ``ultralytics`` or ``yolov5`` (core.preprocess.PREPROCESS_MODES)."""
    from trtalign.core.preprocess import letterbox_batch, read_image

    if batch < 1:
        raise InputError(f"batch must be >= 1, got {batch}")
    images = dataset.images
    groups = [images[i:i + batch] for i in range(0, len(images), batch)]
    static = _static_batch(runner)
    detections: dict = {}
    seconds, sizes = [], []
    for n, group in enumerate(progress(groups, total=len(groups), desc=desc or runner.name, unit="batch")):
        x, metas = letterbox_batch([read_image(im.path) for im in group], imgsz, mode=preprocess)
        if static is not None and static != len(group):
            if static < len(group):
                raise InputError(f"{runner.name}: the model has a fixed batch of {static}; use batch <= {static}")
            x = np.concatenate([x, np.repeat(x[-1:], static - len(group), axis=0)])
        if n == 0:  # warm-up, not timed
            runner.infer({"images": x})
        outputs = runner.infer({"images": x})
        seconds.append(runner.timing.last)
        sizes.append(len(group))
        for im, det in zip(group, postprocess(outputs, metas)):
            if class_map is not None and len(det):
                mapped = class_map[det.class_ids]
                det = Detections(det.boxes[mapped >= 0], det.scores[mapped >= 0], mapped[mapped >= 0],
                                 det.box_format)
            detections[im.id] = det
    return detections, LatencyStats.from_batches(seconds, sizes, batch)


def _static_batch(runner: Any) -> Optional[int]:
    meta = runner.input_metadata()
    if not meta:
        return None
    dim = meta[0].shape[0] if meta[0].shape else None
    return int(dim) if isinstance(dim, (int, np.integer)) and dim > 0 else None


def score_detections(dataset: Dataset, detections: dict, coco_backend: str = "auto") -> Any:
    """``{image_id: Detections}`` -> CocoResult (detect) or RotatedResult (obb)."""
    metric = RotatedMetrics(dataset) if dataset.rotated else CocoMetrics(dataset, coco_backend)
    for iid, det in detections.items():
        metric.update(iid, det)
    return metric.compute()


def save_detections(dataset: Dataset, detections: dict, path: str | os.PathLike) -> Path:
    """Write detections as a COCO results json (``image_id, category_id, bbox [x, y, w, h], score``), or for rotated
    boxes as a json list of ``image_id, category_id, score, xywhr [cx, cy, w, h, angle rad], poly [8 corners]``."""
    ids = [iid for iid, d in detections.items() for _ in range(len(d))]
    parts = [d for d in detections.values() if len(d)]
    boxes = np.concatenate([d.boxes for d in parts]) if parts else np.zeros((0, 5 if dataset.rotated else 4))
    scores = np.concatenate([d.scores for d in parts]) if parts else np.zeros(0)
    cls = np.concatenate([d.class_ids for d in parts]) if parts else np.zeros(0, np.int64)
    if dataset.rotated:
        rows = rotated_results_json(dataset, np.asarray(ids), boxes, scores, cls)
    else:
        cat = np.asarray(dataset.category_ids)
        rows = [{"image_id": int(i), "category_id": int(cat[c]), "score": round(float(s), 6),
                 "bbox": [round(float(b[0]), 3), round(float(b[1]), 3), round(float(b[2] - b[0]), 3),
                          round(float(b[3] - b[1]), 3)]} for i, b, s, c in zip(ids, boxes, scores, cls)]
    return atomic_write_json(path, rows, indent=None)


# ------------------------------------------------------------------------------------------------ preparing runners
@dataclass
class CalibrationSettings:
    """Images and method for INT8 calibration. ``images`` None: a ``train`` folder next to the data when it has
    images, else the evaluated images themselves (noted in the result: that flatters INT8 a little). ``exclude``:
    unit patterns kept out of INT8 (config ``quantize.exclude``), on top of the INT8 plan's head."""

    images: Optional[Path] = None
    num: int = 64
    method: str = CalibrationMethod.default().value
    qdq_mode: str = "trt"  # trtalign.export.qdq mode: "trt" (the INT8 plan, decode untouched) or "naive"
    exclude: tuple = ()

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def _train_folder(dataset: Dataset) -> Optional[Path]:
    folders = sorted({Path(im.path).parent for im in dataset.images})
    root = Path(dataset.root) if getattr(dataset, "root", None) else None
    cands = [folders[0].parent / "train"] if folders and folders[0].name == "val" else []
    cands += [root / "images" / "train", root.parent / "images" / "train", root.parent / "train"] if root else []
    return next((c for c in cands if c.is_dir() and any(c.iterdir())), None)


def calibration_images(dataset: Dataset, images: str | os.PathLike | None = None,
                       link_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(calibration folder, note): ``images`` when given, else a train folder next to the data, else ``link_dir``
    filled with links to ``dataset``'s images (the tuning split: never the validation images), else the folder of
    the evaluated images (which flatters INT8 slightly, said in the note)."""
    if images is not None:
        return Path(images), f"calibrated on {images}"
    train = _train_folder(dataset)
    if train is not None:
        return train, f"calibrated on the train split {train}"
    if link_dir is not None:
        folder = Path(link_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for im in dataset.images:
            link = folder / Path(im.path).name
            if not link.exists():
                os.symlink(Path(im.path).resolve(), link)
        log.warning("no calibration images configured: calibrating on the tuning split's %d images", len(dataset))
        return folder, f"calibrated on the {len(dataset)} images of the tuning split"
    folder = sorted({Path(im.path).parent for im in dataset.images})[0]
    return folder, (f"calibrated on the evaluated images themselves ({folder}): no separate calibration set was "
                    f"given (--calib DIR), which flatters INT8 slightly")


@dataclass
class ModelSource:
    """The model under evaluation: the FP32 ONNX loader (``export.loaders.OnnxFromModel``) and, for .pt / .yaml,
    the PyTorch model. ``names``/``task``/``imgsz``/``nms`` come from the ONNX metadata."""

    path: Path
    onnx: Any  # loader
    names: list
    task: str
    imgsz: tuple
    torch_ok: bool
    nms: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # adapter options of the torch runner (``repo``)


def prepare_model(model: str | os.PathLike, workdir: Path, imgsz: int | None, batch: int, nms: NmsSettings,
                  onnx: Any = None, task: str = "auto", repo: str | os.PathLike | None = None) -> ModelSource:
    """``model`` -> :class:`ModelSource` through :class:`trtalign.export.loaders.OnnxFromModel` (``onnx``: a
    loader or path of the model's ONNX, to share one export)."""
    from trtalign.export.loaders import OnnxFromModel, resolve
    from trtalign.export.metadata import read_metadata

    path = Path(model)
    is_onnx = path.suffix.lower() == ".onnx"
    if onnx is None:
        onnx = OnnxFromModel(path, workdir, imgsz=imgsz, batch=batch, nms=nms.export_kwargs(), task=task, repo=repo)
    onnx_path = resolve(onnx)
    meta = read_metadata(str(onnx_path)) or {}
    if not meta.get("names") or not meta.get("imgsz") or not meta.get("nms"):
        raise InputError(f"{onnx_path}: not an ONNX exported by `trtalign export` with NMS (metadata "
                         f"'trtalign' with names, imgsz and nms is missing); export it with `trtalign export`")
    hw = tuple(int(v) for v in meta["imgsz"])
    if imgsz is not None and is_onnx and tuple(hw) != (imgsz, imgsz):
        raise InputError(f"--imgsz {imgsz} does not match the ONNX input size {hw[0]}x{hw[1]}; re-export the model "
                         f"or drop --imgsz")
    return ModelSource(path, onnx, list(meta["names"]), meta.get("task", "detect"), hw, not is_onnx,
                       dict(meta["nms"]), {"repo": str(repo)} if repo else {})


class _Recipe:
    """The loaders of one evaluation: FP32 ONNX -> ranges (calibrated once) -> Q/DQ ONNX -> engines."""

    def __init__(self, src: ModelSource, workdir: Path, dataset: Dataset, calib: CalibrationSettings, batch: int,
                 ranges: Any = None, plugins: Sequence[str] = ()):
        from trtalign.export.loaders import QdqOnnxFromPlan, RangesFromCalibration

        self.src, self.workdir, self.batch, self.plugins = src, workdir, batch, list(plugins)
        self.calib_note = ""
        if ranges is None:
            images, self.calib_note = calibration_images(dataset, calib.images)
            ranges = RangesFromCalibration(src.onnx, images, calib.method, calib.num, imgsz=src.imgsz,
                                           cache_dir=workdir / "calibration_cache")
        self.ranges = ranges
        self.qdq = QdqOnnxFromPlan(src.onnx, ranges, workdir, mode=calib.qdq_mode, exclude=calib.exclude)
        self.int8_note = (f"{self.calib_note + '; ' if self.calib_note else ''}"
                          f"{getattr(ranges, 'describe', lambda: 'given ranges')()}, Q/DQ mode {calib.qdq_mode}, "
                          + ("the INT8 plan (head output convs in FP16" + (", " + ", ".join(calib.exclude) +
                                                                           " excluded" if calib.exclude else "")
                             + "), no fallback" if calib.qdq_mode == "trt" else "head included"))

    def runner(self, precision: str, backend: str) -> tuple[Any, str, str]:
        """(runner, file run, note) for one precision."""
        from trtalign.export.loaders import resolve
        from trtalign.runtime.ort_runner import OrtRunner

        src = self.src
        name = RunnerName.for_precision(precision, backend).value
        if precision == "torch":
            from trtalign.runtime.torch_runner import TorchRunner, torch_options_for

            if not src.torch_ok:
                raise TrtalignError("the torch runner needs the .pt/.yaml model, not an ONNX file")
            return (TorchRunner(src.path, imgsz=src.imgsz, name=name, **torch_options_for({"nms": src.nms}), **src.options),
                    str(src.path), "")
        if backend == "trt":
            return self._trt(precision, name)
        if precision == "fp32":
            return OrtRunner(src.onnx, name=name), str(resolve(src.onnx)), ""
        if precision == "fp16":
            from trtalign.export.fp16sim import write_fp16sim_onnx

            onnx = Path(resolve(src.onnx))
            out = self.workdir / f"{onnx.stem}_fp16sim.onnx"
            info = write_fp16sim_onnx(onnx, out)
            return OrtRunner(out, name=name), str(out), (
                f"FP16 emulation: {info.tensors_rounded} tensors and {info.weights_rounded} weights rounded to "
                f"float16 up to {info.boundary!r}; decode and NMS in FP32")
        return OrtRunner(self.qdq, name=name), str(self.qdq()), self.int8_note

    def _trt(self, precision: str, name: str) -> tuple[Any, str, str]:
        """A TensorRT engine through the engine cache (INT8 from the same Q/DQ ONNX the emulation runs)."""
        from trtalign.core.config import TrtConfig
        from trtalign.engines.loaders import EngineFromOnnx
        from trtalign.engines.plan import BuildSettings
        from trtalign.runtime.trt_runner import TrtRunner

        source, note, unit_plan = self.src.onnx, "", None
        if precision == "int8":
            source, note = self.qdq, self.int8_note
            self.qdq()
            unit_plan = self.qdq.plan.to_dict() if self.qdq.plan is not None else None
        settings = BuildSettings(imgsz=int(self.src.imgsz[0]), batch=self.batch, unit_plan=unit_plan,
                                 trt=TrtConfig(plugins=self.plugins))
        engine = EngineFromOnnx(source, self.workdir / "engines", precision, settings=settings)
        return TrtRunner(engine, plugins=self.plugins, name=name), str(engine()), note


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"invalid backend {backend!r}; valid choices: {choices_text(BACKENDS)}")
    if backend != "auto":
        return backend
    try:
        import tensorrt  # noqa: F401

        import trtalign.runtime.trt_runner  # noqa: F401
        return "trt"
    except Exception:  # noqa: BLE001 - any failure to import TensorRT means: not here
        return "ort"


def evaluate(model: str | os.PathLike, data: str | os.PathLike | Dataset, precisions: Sequence[str] = PRECISIONS,
             backend: str = "auto", imgsz: int | None = None, batch: int = 1, max_images: int | None = None,
             workdir: str | os.PathLike | None = None, save_detections_dir: str | os.PathLike | None = None,
             nms: NmsSettings | None = None, coco_backend: str = "auto",
             calibration: CalibrationSettings | None = None,
             split: str = "val", data_format: str = "auto", onnx: Any = None, ranges: Any = None,
             plugins: Sequence[str] = (), task: str = "auto", preprocess: str = "ultralytics",
             repo: str | os.PathLike | None = None,
             compare: Mapping[str, str | os.PathLike] | None = None) -> EvalResult:
    """Evaluate ``model`` on ``data`` at each precision.

    Args:
        model: ``.pt`` / ultralytics ``.yaml`` (exported here, torch runs too) or an ONNX from ``trtalign export``.
        data: a dataset path (COCO json / folder, data.yaml, DOTA folder) or a loaded ``Dataset``.
        precisions: ``torch``, ``fp32``, ``fp16``, ``int8`` (runner names such as ``ort-int8sim`` also accepted).
        preprocess: letterbox recipe, ``ultralytics`` (default) or ``yolov5`` (its val.py for a fixed-size model).
        backend: ``ort`` (ONNX Runtime emulation), ``trt`` (TensorRT engines through the engine cache) or ``auto``.
        imgsz: input size of an export (None: the model's own); must match an ONNX's size.
        batch: images per inference (an export gets a dynamic batch up to it; engines a profile up to it).
        nms: evaluation NMS (:class:`NmsSettings`); on an exported ONNX only its own settings can apply.
        calibration: :class:`CalibrationSettings` of the INT8 runner (the INT8 plan is export.units.default_plan).
        onnx / ranges: loaders (or values) to share the export / calibration with other steps
            (``trtalign.export.loaders``). plugins: TensorRT plugin libraries. task: ``auto`` or the task the model
            must have (config ``task``). repo: the YOLOv5 clone that loads a YOLOv5 checkpoint (config
            ``model.repo``; None: the yolov5 package).
        compare: ``{name: ONNX}`` of other trtalign exports of the same model (e.g. the Q/DQ ONNX of ``trtalign
            qat``), each run in ONNX Runtime as runner ``ort-<name>`` on the same images, with its delta and interval.

    Returns:
        :class:`EvalResult`. A precision that cannot run here (no TensorRT, torch for an ONNX model, ...) is listed
        in ``skipped`` with the reason.

    Raises:
        InputError (missing data / model, task mismatch), ConfigError (bad precision, NMS options an exported ONNX
        cannot apply).

    Example::

        result = evaluate("yolov8n.pt", "coco/val2017.json", ["torch", "fp32", "int8"], backend="ort")
        result.result("ort-int8sim").delta_map
    """
    nms = nms or NmsSettings()
    calibration = calibration or CalibrationSettings()
    precisions = parse_precisions(precisions)
    backend = resolve_backend(backend)
    if not isinstance(data, Dataset) and not Path(data).exists():
        raise InputError(f"dataset not found: {data}")
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="trtalign_eval_")
        workdir = tmp.name
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        src = prepare_model(model, workdir, imgsz, batch, nms, onnx, task, repo)
        nms = nms.applied_to(src.nms, exported_here=src.torch_ok or getattr(src.onnx, "exported", False))
        dataset = data if isinstance(data, Dataset) else load_dataset(data, split=split, fmt=data_format,
                                                                      task=src.task)
        if dataset.task.value != src.task:
            raise InputError(f"the model is a {src.task} model but the dataset is {dataset.task.value}")
        dataset = dataset.subset(max_images).require_boxes()  # mAP of no ground truth is NaN
        cmap = category_map(src.names, dataset)
        result = EvalResult(src.task, "rotated" if dataset.rotated else "coco-bbox", str(src.path), list(src.imgsz),
                            batch, {**dataset.summary(), **({"preprocess": preprocess} if preprocess != "ultralytics"
                                                            else {})}, {**nms.to_dict(), "onnx": src.nms})
        recipe = _Recipe(src, workdir, dataset, calibration, batch, ranges, plugins)
        if "int8" in precisions:
            result.calibration = {**calibration.to_dict(), "images": str(getattr(recipe.ranges, "images", "")) or None,
                                  "method": getattr(recipe.ranges, "method", calibration.method),
                                  "num": getattr(recipe.ranges, "num", calibration.num)}
        for precision in precisions:
            label = RunnerName.for_precision(precision, backend).value
            try:
                runner, model_file, note = recipe.runner(precision, backend)
            except TrtalignError as exc:
                log.warning("skipping %s: %s", label, exc)
                result.skipped[label] = str(exc)
                continue
            with runner:
                post = torch_postprocess(runner, nms) if precision == "torch" else ort_postprocess(dataset.rotated)
                dets, latency = run_runner(runner, dataset, src.imgsz, post, batch, cmap, desc=label,
                                           preprocess=preprocess)
            metrics = score_detections(dataset, dets, coco_backend)
            pr = PrecisionResult(precision, label, metrics, latency, model_file, notes=[note] if note else [],
                                 detections=dets)
            if precision == "torch":
                pr.notes.append("NMS: " + ("ultralytics non_max_suppression" if nms.torch_nms == "ultralytics"
                                           else "EfficientNMS reference (aligned)"))
            if save_detections_dir is not None:
                out = Path(save_detections_dir) / f"{label}.json"
                save_detections(dataset, dets, out)
                pr.detections_file = str(out)
            result.results.append(pr)
        for name, path in (compare or {}).items():
            result.results.append(_compare_result(name, path, src, dataset, batch, cmap, coco_backend, preprocess))
        if save_detections_dir is not None:
            atomic_write_json(Path(save_detections_dir) / "ground_truth_coco.json", dataset.to_coco(), indent=None)
        result.set_deltas(dataset=dataset)
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def _compare_result(name: str, path: str | os.PathLike, src: ModelSource, dataset: Dataset, batch: int,
                    cmap: Any, coco_backend: str, preprocess: str) -> PrecisionResult:
    """One ``compare`` row: another trtalign export of the same model (same task, classes and input size)."""
    from trtalign.export.metadata import read_metadata
    from trtalign.runtime.ort_runner import OrtRunner

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--compare {name}: file not found: {path}")
    meta = read_metadata(str(path)) or {}
    if not meta.get("nms") or not meta.get("imgsz"):
        raise InputError(f"--compare {name}: {path} is not an ONNX exported by trtalign with NMS")
    found = (meta.get("task", "detect"), list(meta.get("names") or []), tuple(int(v) for v in meta["imgsz"]))
    if found != (src.task, list(src.names), tuple(src.imgsz)):
        raise InputError(f"--compare {name}: {path.name} is a {found[0]} model with {len(found[1])} classes at "
                         f"{found[2][0]}x{found[2][1]}; expected {src.task}, {len(src.names)} classes at "
                         f"{src.imgsz[0]}x{src.imgsz[1]} (the evaluated model)")
    label = f"ort-{name}"
    with OrtRunner(path, name=label) as runner:
        dets, latency = run_runner(runner, dataset, src.imgsz, ort_postprocess(dataset.rotated), batch, cmap,
                                   desc=label, preprocess=preprocess)
    return PrecisionResult("compare", label, score_detections(dataset, dets, coco_backend), latency, str(path),
                           notes=[f"compared file {path.name}"], detections=dets)


__all__ = ["evaluate", "EvalResult", "PrecisionResult", "LatencyStats", "NmsSettings", "CalibrationSettings",
           "calibration_images", "prepare_model",
           "run_runner", "score_detections", "save_detections", "parse_precisions", "PRECISIONS", "CocoResult",
           "RotatedResult"]
