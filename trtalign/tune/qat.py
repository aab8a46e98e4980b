"""Quantization-aware training (QAT) of an ultralytics detector at exactly trtalign's Q/DQ placement, and the export
of the result as a Q/DQ ONNX (decode + NMS node + metadata) that ``trtalign build`` takes through the
explicit-quantization route with no calibration.

Pipeline (:func:`run_qat`):

1. the checkpoint -> FP32 ONNX with NMS (``export.onnx_export``), its units (``export.units.analyze_graph``), the plan
   (every unit INT8, or a fallback plan whose FP16/FP32 units stay float unless ``quantize_fallback``) and the
   calibrated ranges (``export.calibrate``, or ``quantize.ranges``);
2. the float model with BatchNorm folded (the network the ONNX holds, weight for weight) gets fake-quant at the
   plan's sites (``tune.qat_quant``: sites matched to torch op calls by value, tied scales shared);
3. fine-tuning on ultralytics' data pipeline (``build_yolo_dataset``; its augmentations only with ``augment``) in a
   small loop here, AdamW, cosine LR, a progress bar, and a checkpoint after every epoch (``qat_last.pt``: weights,
   scales, optimizer, RNG seeds, history) that a rerun resumes. The loss (``loss``): ``auto`` (default: the task's
   recipe, below), ``distill`` (``tune.qat_distill``: the raw head outputs of the float model QAT started from are
   the target; ``feature_weight`` > 0 adds the neck features entering the head), ``labels`` (ultralytics' own loss,
   ``model.loss``: v8DetectionLoss / v8OBBLoss, on the ground truth) or ``both`` (distill + ``label_weight`` x labels);
4. after every epoch the current state is exported (:func:`export_qat`) and its mAP50-95 measured on the validation
   split in ONNX Runtime (``ort-int8sim``): the curve is the deployed artefact's, not the torch model's.

Why our own loop and not ``ultralytics``' trainer: the trainer rebuilds the model from its yaml / weights, keeps an
EMA deep copy, saves half-precision pickles and resumes from its own files; none of it carries the fake-quant state.
Its loss and data pipeline are used unchanged.

Recipes (``loss: auto``, the default, with ``lr`` / ``epochs`` / ``augment`` unset: :func:`resolve_recipe` picks the
measured recipe of the checkpoint's task from :data:`RECIPES`): detect -> ``distill``, lr 5e-4, 3 epochs; OBB ->
``both``, lr 1e-4, 2 epochs; both **without ultralytics' training augmentations** (``augment``: the images are only
letterboxed, as at inference). No single loss wins on both proxies (README's QAT table, ``benchmarks/qat.py``;
bundled proxies, yolov8n / yolov8n-obb at 320 px, mAP50-95 on 1000 generated held-out images never trained or tuned
on; points against FP32):

- detect (FP32 0.7000, PTQ 0.6941 = -0.59): ``distill`` 1000 images x 3 epochs at lr 5e-4 scores -0.05 / -0.19 / -0.23
  / -0.27 points (seeds 0-3, mean -0.19) on letterboxed images, -0.22 / -0.29 / -0.39 / -0.28 (mean -0.30) with
  ultralytics' augmentations (HSV, flips, +-10% translation, 0.5-1.5x scale). Distillation matches the float teacher
  wherever it is fed; on augmented images part of that effort goes to inputs deployment never sees. The fine-tuned
  weights run in float score within 0.04 of the same weights in INT8 (and no region run in float recovers more than
  0.09), so what QAT leaves is the student's distance from the teacher, not quantization error. Not better (all with
  augmentations): at 1000 x 2, lr 1e-3 (-0.88), 3e-4 (-0.29), fixed scales (-0.47), scale lr 1e-3 (-0.41),
  MSE-calibrated initial scales (-0.23), neck-feature distillation (``feature_weight`` 0.1: -0.52); 2000 images x 2 /
  x 3 (-0.27 / -0.26); at 1000 x 3, 5 epochs instead of 3 (-0.24), an EMA of the weights (decay 0.99: -0.32), 30
  warm-up steps (-0.34), batch 32 (-0.44). Ultralytics' label loss *lowers* the float model itself (one epoch on 300
  images without fake quantization: -0.27 on 150 images).
- OBB (FP32 0.5588, PTQ 0.5531 = -0.57): ``both`` (labels + distillation, 1000 x 2, lr 1e-4) +0.66 points on
  letterboxed images (-0.02 with the augmentations): above FP32, the labels fine-tune the proxy itself;
  ``distill`` 1000 x 3 at lr 5e-4 with augmentations: -0.69.

150 held-out images spread recipes that score the same on 1000 by up to ~0.4 points: compare recipes on 1000.

BatchNorm needs no freezing: it is folded into the convolutions before fake quantization (the weights quantized are
the folded ones ``insert_qdq`` quantizes), so the training forward has no batch statistics.

Scales: activation scales start at the calibrated amax / 127 and are learned (LSQ) by default (``learn_scales``):
with a few epochs on the CPU, letting the clipping point move is the cheapest way to win back range-limited layers,
and the exported scale is whatever was learned. Weight scales are per-channel max-abs of the current weight (what
``insert_qdq`` writes), not learned.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trtalign.core.errors import ConfigError, InputError, UnsupportedError
from trtalign.core.io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from trtalign.core.logging import get_logger

log = get_logger(__name__)

CHECKPOINT = "qat_last.pt"
CHECKPOINT_FORMAT = "trtalign-qat-checkpoint"
EVAL_NMS = {"score_threshold": 0.001, "iou_threshold": 0.7, "max_det": 300}
STARTS = ("int8", "plan")


#: The measured recipe per task (README's QAT table, ``benchmarks/qat.py`` on the bundled proxies): what ``loss: auto``
#: resolves to, the epochs when ``epochs`` is unset, and the learning rate per loss when ``lr`` is unset. Tasks
#: without an entry use detect's.
RECIPES: dict[str, dict] = {
    "detect": {"loss": "distill", "epochs": 3, "lr": {"distill": 5e-4, "labels": 1e-4, "both": 1e-4},
               "augment": {"distill": False, "labels": True, "both": False}},
    "obb": {"loss": "both", "epochs": 2, "lr": {"distill": 1e-4, "labels": 1e-4, "both": 1e-4},
            "augment": {"distill": False, "labels": True, "both": False}},
}


@dataclass
class QatSettings:
    """What one QAT run does. ``data``: an ultralytics dataset (folder with ``data.yaml`` or the yaml) whose ``train``
    split is fine-tuned on; ``val``: the split scored after every epoch (default: the dataset's val split).

    ``loss="auto"``, ``lr=None`` and ``epochs=None`` (the defaults) are resolved per task by :func:`resolve_recipe`
    from :data:`RECIPES` when :func:`run_qat` knows the checkpoint's task; explicit values are kept."""

    epochs: int | None = None  # None: the task's recipe (RECIPES)
    lr: float | None = None  # None: the task's recipe for the loss (RECIPES; detect distill 5e-4, otherwise 1e-4)
    scale_lr: float = 1e-4
    batch: int = 16
    learn_scales: bool = True
    start: str = "int8"  # int8: every unit INT8 | plan: the units of ``plan`` that are INT8
    plan: Path | None = None
    quantize_fallback: bool = False
    mosaic: float = 0.0
    # ultralytics' training augmentations (HSV, flip, translate, scale); None: the task's recipe for the loss
    # (distill / both: off, the network is tuned on the images as deployment sees them; labels: on)
    augment: bool | None = None
    seed: int = 0
    val_images: int | None = None  # cap on validation images per epoch (None: all)
    train_images: int | None = None  # cap on training images (None: all)
    calibration_images: int = 256
    calibration_method: str = ""  # "" = the project's default (core.enums.CalibrationMethod.default())
    # auto: the task's recipe | distill: match the float teacher's head outputs | labels: ultralytics' loss | both
    loss: str = "auto"
    lr_final: float = 0.01  # the cosine schedule ends at lr x lr_final
    label_weight: float = 1.0  # loss both: distillation + label_weight x the label loss
    feature_weight: float = 0.0  # distill / both: + feature_weight x the neck features' relative error (0: off)

    def __post_init__(self) -> None:
        if self.start not in STARTS:
            raise ConfigError(f"invalid qat.start {self.start!r}; valid choices: {', '.join(STARTS)}")
        if self.start == "plan" and self.plan is None:
            raise ConfigError("qat.start: plan needs qat.plan (a plan.json, e.g. from `trtalign fallback`)")
        if (self.epochs is not None and self.epochs < 1) or self.batch < 1:
            raise ConfigError(f"qat.epochs and qat.batch must be >= 1, got {self.epochs} and {self.batch}")
        from trtalign.tune.qat_distill import LOSSES

        if self.loss not in ("auto",) + LOSSES:
            raise ConfigError(f"invalid qat.loss {self.loss!r}; valid choices: auto, {', '.join(LOSSES)}")
        if not self.calibration_method:
            from trtalign.core.enums import CalibrationMethod

            self.calibration_method = CalibrationMethod.default().value
        if not ((self.lr is None or self.lr > 0) and self.scale_lr >= 0):
            raise ConfigError(f"qat.lr must be > 0 and qat.scale_lr >= 0, got {self.lr}, {self.scale_lr}")
        if not (0.0 <= self.lr_final <= 1.0 and self.label_weight >= 0 and self.feature_weight >= 0):
            raise ConfigError(f"qat.lr_final must be in [0, 1], qat.label_weight and qat.feature_weight >= 0, got "
                              f"{self.lr_final}, {self.label_weight}, {self.feature_weight}")

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def resolve_recipe(settings: QatSettings, task: str) -> QatSettings:
    """``settings`` with ``loss: auto``, an unset ``lr`` and unset ``epochs`` replaced by ``task``'s measured recipe
    (:data:`RECIPES`; detect's for a task without one). Explicit values are kept; an explicit loss without an ``lr``
    gets the recipe's rate for that loss."""
    recipe = RECIPES.get(str(task), RECIPES["detect"])
    loss = recipe["loss"] if settings.loss == "auto" else settings.loss
    return dataclasses.replace(settings, loss=loss,
                               lr=settings.lr if settings.lr is not None else recipe["lr"][loss],
                               epochs=settings.epochs if settings.epochs is not None else recipe["epochs"],
                               augment=settings.augment if settings.augment is not None else recipe["augment"][loss])


@dataclass
class QatEpoch:
    epoch: int  # 0: before fine-tuning (PTQ with the same plan and the calibrated scales)
    loss: float | None
    val_map: float
    val_map50: float
    seconds: float
    lr: float | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class QatResult:
    model: str
    task: str
    plan_units: dict
    int8_mac_fraction: float
    epochs: list[QatEpoch]
    files: dict
    settings: dict
    wall_s: float
    resumed_from_epoch: int = 0
    val_images: int = 0
    notes: dict = field(default_factory=dict)
    #: mAP50-95 on the validation split: fp32, fp16 (emulation), ptq (same plan, calibrated scales), qat
    comparison: dict = field(default_factory=dict)

    @property
    def final_map(self) -> float:
        return self.epochs[-1].val_map

    def to_dict(self) -> dict:
        return {"format": "trtalign-qat", "version": 1, "model": self.model, "task": self.task,
                "int8_mac_fraction": self.int8_mac_fraction, "epochs": [e.to_dict() for e in self.epochs],
                "final_map": self.final_map, "files": {k: str(v) for k, v in self.files.items()},
                "settings": self.settings, "wall_s": self.wall_s, "resumed_from_epoch": self.resumed_from_epoch,
                "val_images": self.val_images, "plan": self.plan_units, "notes": self.notes,
                "comparison": dict(self.comparison)}


# ------------------------------------------------------------------------------------------------- preparation
def load_qat_adapter(model_path: str | os.PathLike) -> Any:
    """The ultralytics adapter of a ``.pt`` checkpoint; any other family raises UnsupportedError."""
    from trtalign.export.adapters import load_adapter

    path = Path(model_path)
    if not path.is_file():
        raise InputError(f"model not found: {path}")
    if path.suffix.lower() != ".pt":
        raise UnsupportedError(f"QAT fine-tunes ultralytics checkpoints (.pt); {path.name} is a "
                               f"{path.suffix or 'suffix-less'} file")
    adapter = load_adapter(path)
    if adapter.family != "ultralytics":
        raise UnsupportedError(f"QAT supports the ultralytics family; {path.name} is {adapter.family!r}")
    _ = adapter.info  # loads the checkpoint: a foreign pickle fails here with one line
    return adapter


def resolve_plan(analysis: Any, settings: QatSettings) -> Any:
    """The plan QAT trains: every unit INT8, or ``settings.plan`` (validated against this model's units) with its
    float units kept float unless ``quantize_fallback``."""
    from trtalign.export.units import Plan, load_plan

    if settings.start == "int8":
        return Plan(units={u.name: "int8" for u in analysis.units}, notes={"start": "int8"})
    plan = load_plan(settings.plan, analysis.units)
    if settings.quantize_fallback:
        return Plan(units={u: "int8" for u in plan.units}, notes={"start": "plan", "quantize_fallback": True})
    return Plan(units=dict(plan.units), notes={"start": "plan", "plan_file": str(settings.plan)})


def train_images_of(data_yaml: Path) -> tuple[dict, list[Path]]:
    """(ultralytics data dict, training image paths); an empty or missing training split raises InputError."""
    from trtalign.core.preprocess import list_images

    from ultralytics.data.utils import check_det_dataset

    try:
        data = check_det_dataset(str(data_yaml), autodownload=False)
    except Exception as exc:  # ultralytics raises FileNotFoundError / SyntaxError with long texts
        raise InputError(f"qat.data {data_yaml}: not a usable ultralytics dataset "
                         f"({str(exc).strip().splitlines()[0][:200]})") from None
    train = data.get("train")
    folders = [Path(p) for p in (train if isinstance(train, list) else [train]) if p]
    images = []
    for folder in folders:
        try:
            images.extend(list_images(folder))
        except InputError:  # an empty or missing folder: said below with what QAT needs
            pass
    if not images:
        raise InputError(f"qat.data {data_yaml}: the training split ({', '.join(map(str, folders)) or 'none'}) has no "
                         f"images; QAT needs labelled training images (e.g. `trtalign data synth --train 500`)")
    return data, images


def find_data_yaml(data: str | os.PathLike) -> Path:
    path = Path(data)
    if path.is_dir():
        for name in ("data.yaml", "dataset.yaml"):
            if (path / name).is_file():
                return path / name
        raise InputError(f"qat.data {path}: no data.yaml in this folder")
    if not path.is_file():
        raise InputError(f"qat.data not found: {path}")
    return path


# ----------------------------------------------------------------------------------------------------- export
def save_float_checkpoint(float_model: Any, source_ckpt: Path, out: Path) -> Path:
    """The fine-tuned float network (BatchNorm folded) as an ultralytics checkpoint, float32 (no half rounding)."""
    import io

    import torch

    model = copy.deepcopy(float_model).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if hasattr(model, "criterion"):
        model.criterion = None
    try:
        src = torch.load(str(source_ckpt), map_location="cpu", weights_only=False)
        train_args = dict(src.get("train_args") or {}) if isinstance(src, dict) else {}
    except Exception:  # noqa: BLE001 - the source loaded once already; its train_args are informative only
        train_args = {}
    buf = io.BytesIO()
    torch.save({"model": model, "ema": None, "train_args": train_args, "date": None, "version": "8",
                "trtalign_qat": {"source": source_ckpt.name, "source_sha256": sha256_file(source_ckpt)}}, buf)
    atomic_write_bytes(out, buf.getvalue())
    return out


def export_qat(float_model: Any, fq: Any, site_map: Any, ranges: Any, plan: Any, source_ckpt: Path, imgsz: int,
               out_dir: Path, stem: str = "model.qat") -> dict:
    """Write ``{stem}.pt`` (float weights), ``{stem}.fp32.onnx`` (trtalign's exporter, decode + NMS + metadata),
    ``{stem}.ranges.json`` (the trained scales x 127), ``{stem}.qdq.onnx`` (``insert_qdq`` with ``plan``),
    ``plan.json`` and ``engine.yaml`` (for ``trtalign build``). Returns the paths."""
    from trtalign.export.onnx_export import export_onnx
    from trtalign.export.qdq import save_qdq
    from trtalign.export.ranges import save_ranges
    from trtalign.export.units import analyze_graph, save_plan, validate_plan
    from trtalign.tune.qat_quant import trained_ranges

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"checkpoint": out_dir / f"{stem}.pt", "fp32_onnx": out_dir / f"{stem}.fp32.onnx",
             "ranges": out_dir / f"{stem}.ranges.json", "onnx": out_dir / f"{stem}.qdq.onnx",
             "plan": out_dir / "plan.json", "engine_config": out_dir / "engine.yaml"}
    save_float_checkpoint(float_model, source_ckpt, paths["checkpoint"])
    export_onnx(paths["checkpoint"], paths["fp32_onnx"], imgsz=imgsz, **EVAL_NMS)
    validate_plan(plan, analyze_graph(str(paths["fp32_onnx"])).units)  # same network, same units
    qat_ranges = trained_ranges(ranges, fq.amax(), site_map.groups)
    save_ranges(qat_ranges, paths["ranges"])
    save_plan(plan, paths["plan"])
    save_qdq(str(paths["fp32_onnx"]), qat_ranges, paths["onnx"], plan=plan)
    atomic_write_text(paths["engine_config"], "\n".join([
        "# written by `trtalign qat`: the fine-tuned model with its trained Q/DQ scales (no calibration); build with",
        f"#   trtalign build {paths['engine_config']} --precision int8 --onnx-int8 {paths['onnx']}",
        f"model: {paths['fp32_onnx'].resolve()}", f"imgsz: {imgsz}", "precisions: [int8]", "quantize:",
        f"  plan: {paths['plan'].resolve()}", f"  ranges: {paths['ranges'].resolve()}", "trt:", "  int8_route: qdq",
        ""]))
    return paths


def qdq_detections(onnx_path: Path, dataset: Any) -> dict:
    """``{image_id: Detections}`` of an exported ONNX with NMS on ``dataset`` in ONNX Runtime (the dataset's class
    indices), e.g. for a paired bootstrap of two models (``eval.bootstrap.MatchTable``)."""
    from trtalign.data.datasets import category_map
    from trtalign.eval.evaluate import ort_postprocess, run_runner
    from trtalign.export.metadata import read_metadata
    from trtalign.runtime.ort_runner import OrtRunner

    meta = read_metadata(str(onnx_path)) or {}
    imgsz = tuple(int(v) for v in meta["imgsz"])
    with OrtRunner(str(onnx_path), name="ort-int8sim") as runner:
        dets, _ = run_runner(runner, dataset, imgsz, ort_postprocess(dataset.rotated), 1,
                             category_map(meta["names"], dataset), desc=f"eval {onnx_path.name}")
    return dets


def qdq_map(onnx_path: Path, dataset: Any) -> tuple[float, float]:
    """(mAP50-95, mAP50) of an exported ONNX with NMS on ``dataset`` in ONNX Runtime (rotated mAP for OBB)."""
    from trtalign.eval.evaluate import score_detections

    metrics = score_detections(dataset, qdq_detections(onnx_path, dataset))
    return float(metrics.map), float(metrics.stats.get("map50", float("nan")))


def compare_precisions(fp32_onnx: Path, dataset: Any, workdir: Path) -> dict:
    """mAP50-95 of the FP32 ONNX and of its FP16 emulation (``export.fp16sim``) on ``dataset``."""
    import onnx

    from trtalign.export.fp16sim import fp16sim_model

    fp16 = workdir / f"{fp32_onnx.stem}.fp16sim.onnx"
    if not fp16.is_file():
        atomic_write_bytes(fp16, fp16sim_model(onnx.load(str(fp32_onnx)))[0].SerializeToString())
    return {"fp32": qdq_map(fp32_onnx, dataset)[0], "fp16": qdq_map(fp16, dataset)[0]}


# ---------------------------------------------------------------------------------------------------- training
def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def run_qat(model_path: str | os.PathLike, data: str | os.PathLike, out_dir: str | os.PathLike,
            settings: QatSettings | None = None, imgsz: int | None = None, ranges: Any = None,
            val: Any = None, calibration_images: str | os.PathLike | None = None,
            on_epoch_end: Callable[[QatEpoch], None] | None = None, compare: bool = False) -> QatResult:
    """Fine-tune ``model_path`` with fake quantization and export the Q/DQ ONNX into ``out_dir``.

    Args:
        model_path: ultralytics ``.pt`` checkpoint (detect or OBB).
        data: ultralytics dataset (folder with ``data.yaml``, or the yaml); its train split is fine-tuned on.
        out_dir: outputs + ``qat_last.pt`` (a rerun with the same settings resumes from it).
        settings: :class:`QatSettings`.
        imgsz: input size (default: the size the checkpoint was trained at).
        ranges: calibrated ``Ranges`` of the FP32 ONNX; default: calibrate on the training images.
        val: validation ``Dataset`` (default: the dataset's val split).
        on_epoch_end: called after each epoch's checkpoint is written (tests interrupt a run here).
        compare: also measure FP32 and FP16 (emulation) on the validation split (``result.comparison``).

    Returns:
        :class:`QatResult`; ``files["onnx"]`` is the Q/DQ ONNX for ``trtalign build``.

    Raises:
        UnsupportedError (not an ultralytics checkpoint), ConfigError (plan of another model), InputError (no
        training images, a checkpoint of other settings in ``out_dir``).
    """
    import torch

    from trtalign.data.datasets import load_dataset
    from trtalign.export.calibrate import calibrate
    from trtalign.export.onnx_export import export_onnx
    from trtalign.export.units import analyze_graph, int8_mac_fraction
    from trtalign.tune.qat_distill import make_teacher
    from trtalign.tune.qat_quant import make_fake_quant_model, map_sites
    from trtalign.tune.qat_train import (build_train_loader, load_checkpoint, make_optimizer, save_checkpoint,
                                         train_one_epoch)

    start_time = time.perf_counter()
    settings = settings or QatSettings()
    out_dir = Path(out_dir)
    model_path = Path(model_path)
    adapter = load_qat_adapter(model_path)
    info = adapter.info
    requested = settings.to_dict()
    settings = resolve_recipe(settings, info.task.value)
    imgsz = int(imgsz or info.train_imgsz or 640)
    data_yaml = find_data_yaml(data)
    ydata, train_imgs = train_images_of(data_yaml)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "work"
    work.mkdir(exist_ok=True)

    fp32 = work / f"{model_path.stem}-{adapter.sha256[:12]}-{imgsz}.fp32.onnx"
    if not fp32.is_file():
        export_onnx(model_path, fp32, imgsz=imgsz, adapter=adapter, **EVAL_NMS)
    analysis = analyze_graph(str(fp32))
    plan = resolve_plan(analysis, settings)
    if ranges is None:
        calib = Path(calibration_images) if calibration_images else Path(train_imgs[0]).parent
        ranges = calibrate(fp32, calib, method=settings.calibration_method, num=settings.calibration_images,
                           cache_dir=work / "calibration_cache")
    if val is None:
        val = load_dataset(data_yaml.parent, split="val", task=info.task.value)
    if settings.val_images:
        val = val.subset(settings.val_images)

    float_model = adapter.torch_model(fuse=True)
    teacher = make_teacher(float_model) if settings.loss != "labels" else None  # before any resumed state loads
    raw = adapter.to_raw_onnx(imgsz)
    site_map = map_sites(float_model, raw, analysis, plan, ranges, (imgsz, imgsz), seed=settings.seed)
    atomic_write_json(work / "sites.json", site_map.to_dict())
    fq = make_fake_quant_model(float_model, site_map, learn_scales=settings.learn_scales)
    fq.train()
    fq.check_coverage(torch.zeros(1, 3, imgsz, imgsz))  # the training forward meets every site of the eval probe
    fingerprint = {"model_sha256": adapter.sha256, "imgsz": imgsz, "plan": plan.units,
                   "settings": {k: v for k, v in settings.to_dict().items() if k not in ("epochs",)},
                   "data": str(data_yaml.resolve()), "ranges": {g: site_map.init_amax[g] for g in sorted(site_map.groups)}}

    loader_factory = build_train_loader(float_model, ydata, train_imgs, imgsz, settings, info.task.value)
    steps_per_epoch = len(loader_factory(0))
    optimizer = make_optimizer(fq, settings)
    history: list[QatEpoch] = []
    first_epoch = 1
    state: dict = {}
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, fingerprint)
        fq.load_state_dict(state["fq"])
        optimizer.load_state_dict(state["optimizer"])
        history = [QatEpoch(**e) for e in state["history"]]
        first_epoch = int(state["epoch"]) + 1
        log.info("resuming QAT from %s after epoch %d", ckpt_path, first_epoch - 1)
    resumed_from = first_epoch - 1
    earlier_wall = float(state.get("wall_s", 0.0)) if resumed_from else 0.0  # time of the interrupted parts
    for p in float_model.parameters():
        p.requires_grad_(True)

    def evaluate_epoch(epoch: int, loss: float | None, t0: float, lr: float | None) -> QatEpoch:
        """Export the current state and score it; ``seconds``: since ``t0`` (training + export + evaluation)."""
        paths = export_qat(float_model, fq, site_map, ranges, plan, model_path, imgsz, work / "epoch", "model.qat")
        m, m50 = qdq_map(paths["onnx"], val)
        return QatEpoch(epoch=epoch, loss=loss, val_map=m, val_map50=m50, seconds=time.perf_counter() - t0, lr=lr)

    if not history:
        t0 = time.perf_counter()
        fq.eval()
        history.append(evaluate_epoch(0, None, t0, None))
        log.info("epoch 0 (PTQ, same plan): val mAP50-95 %.4f", history[0].val_map)
    total_steps = steps_per_epoch * settings.epochs
    for epoch in range(first_epoch, settings.epochs + 1):
        t0 = time.perf_counter()
        _seed_all(settings.seed * 1000 + epoch)
        loader = loader_factory(epoch)
        fq.train()
        loss, lr = train_one_epoch(fq, float_model, loader, optimizer, settings, epoch, steps_per_epoch, total_steps,
                                   teacher=teacher)
        fq.eval()
        record = evaluate_epoch(epoch, loss, t0, lr)
        history.append(record)
        save_checkpoint(ckpt_path, fq, optimizer, epoch, history, fingerprint,
                        wall_s=earlier_wall + time.perf_counter() - start_time)
        log.info("epoch %d/%d: loss %.4f, val mAP50-95 %.4f (%.0f s)", epoch, settings.epochs, loss,
                 record.val_map, record.seconds)
        if on_epoch_end is not None:
            on_epoch_end(record)
    fq.eval()
    files = export_qat(float_model, fq, site_map, ranges, plan, model_path, imgsz, out_dir)
    frac = int8_mac_fraction(analysis.units, plan)
    result = QatResult(model=str(model_path), task=info.task.value, plan_units=dict(plan.units),
                       int8_mac_fraction=frac, epochs=history, files={**files, "checkpoint_state": ckpt_path},
                       settings=settings.to_dict(), wall_s=earlier_wall + time.perf_counter() - start_time,
                       resumed_from_epoch=resumed_from, val_images=len(val.images),
                       notes={"train_images": min(len(train_imgs), settings.train_images or len(train_imgs)),
                              "steps_per_epoch": steps_per_epoch, "sites": len(site_map.sites),
                              "scale_groups": len(site_map.groups), "ranges_method": ranges.method,
                              "requested": {k: requested[k] for k in ("loss", "lr", "epochs", "augment")}})
    if compare:
        result.comparison = {**compare_precisions(fp32, val, work), "ptq": history[0].val_map,
                             "qat": history[-1].val_map}
    atomic_write_json(out_dir / "qat.json", result.to_dict())
    return result


__all__ = ["QatSettings", "RECIPES", "resolve_recipe", "QatEpoch", "QatResult", "run_qat", "export_qat", "qdq_map",
           "qdq_detections", "load_qat_adapter", "resolve_plan"]
