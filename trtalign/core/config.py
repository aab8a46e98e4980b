"""The pipeline configuration: one YAML file drives export -> calibrate -> quantize -> build -> eval -> fallback.

Every model forbids unknown keys; a validation error names the field path, the bad value and the valid choices.
Relative paths in a config file are resolved against the file's folder.

Example (every section optional except ``model``)::

    model: yolov8n.pt            # .pt, .yaml (random init) or .onnx (with `layout:`)
    imgsz: 640
    batch: {min: 1, opt: 1, max: 8}
    nms: {kind: efficient, score_threshold: 0.001, iou_threshold: 0.7, max_output_boxes: 300}
    precisions: [fp32, fp16, int8]
    calibration: {images: calib/, num: 512, method: minmax}
    fallback: {budget: 0.5, target: fp16}   # budget in mAP50-95 points (0.5 = half a point)
    data: {val: data/val, tune: data/tune}
    outputs: {dir: out/}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trtalign.core.enums import (CalibrationMethod, FallbackTarget, NmsKind, Precision, SensitivityMetric,
                                 SensitivityMode, Task, values)
from trtalign.core.errors import ConfigError, InputError
from trtalign.core.logging import get_logger

log = get_logger(__name__)

#: a fallback budget below this many points is most likely an absolute fraction (0.005 meant as half a point)
BUDGET_FRACTION_HINT = 0.05


def one_of(enum_cls: type) -> Any:
    """``Literal`` of an Enum's values: the config stores plain strings, the Enum in core.enums owns the list."""
    return Literal[values(enum_cls)]  # type: ignore[valid-type]


def check_budget_points(points: float, source: str = "fallback budget") -> float:
    """A fallback budget in mAP50-95 points (0.5 = half a point): warn when it looks like an absolute fraction."""
    if 0 < points < BUDGET_FRACTION_HINT:
        log.warning("%s %g is in mAP points (0.5 = half a point); %g points is %g absolute. If you meant an absolute "
                    "drop of %g, write %g", source, points, points, points / 100, points, points * 100)
    return points


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)


class BatchConfig(_Model):
    """Optimisation profile for the batch dimension. ``min == opt == max`` means a static batch."""

    min: int = Field(1, ge=1)
    opt: int = Field(1, ge=1)
    max: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "BatchConfig":
        if not (self.min <= self.opt <= self.max):
            raise ValueError(f"batch must satisfy min <= opt <= max, got min={self.min} opt={self.opt} max={self.max}")
        return self

    @property
    def dynamic(self) -> bool:
        return self.max > 1 or self.min != self.max


class NmsConfig(_Model):
    """In-graph NMS, with the attributes of TensorRT's EfficientNMS_TRT (and our EfficientRotatedNMS_TRT)."""

    kind: Literal[("auto", *values(NmsKind))] = "auto"  # auto: efficient for detect, rotated for obb
    score_threshold: float = Field(0.001, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.7, gt=0.0, le=1.0)
    max_output_boxes: int = Field(300, ge=1, le=4096)
    class_agnostic: bool = False
    background_class: int = Field(-1, ge=-1)
    score_activation: bool = False
    box_coding: Literal[0, 1] = 0  # 0: corners (x1,y1,x2,y2), 1: center-size (cx,cy,w,h); rotated is always center-size
    # candidates ((box, class) pairs) per image entering NMS: EfficientNMS_TRT's parameter header says 4096, but its
    # initialize() sets 5000 on every GPU with 64K registers per block (2000 on TX1/TX2); see plugins/reference/nms.py
    topk: int = Field(5000, ge=1, le=5000)


class CalibrationConfig(_Model):
    images: Optional[Path] = None
    num: int = Field(512, ge=1)
    method: one_of(CalibrationMethod) = CalibrationMethod.default().value  # type: ignore[valid-type]
    percentile: float = Field(99.99, gt=0.0, le=100.0)
    cache_dir: Optional[Path] = None


class QuantizeConfig(_Model):
    exclude: list[str] = Field(default_factory=list)  # unit-name patterns (fnmatch) kept out of INT8 (fallback.target)
    plan: Optional[Path] = None  # a plan file (which units are INT8) overriding exclude
    ranges: Optional[Path] = None


class FallbackConfig(_Model):
    budget: float = Field(0.5, ge=0.0, le=100.0)  # allowed mAP50-95 drop vs FP32 in POINTS (0.5 = 0.005 absolute)
    target: one_of(FallbackTarget) = "fp16"  # type: ignore[valid-type]
    # scorebox: class-score noise ratio + box error relative to box size (whole-tensor sqnr is blind to the scores)
    metric: one_of(SensitivityMetric) = "scorebox"  # type: ignore[valid-type]
    mode: one_of(SensitivityMode) = "disable-one"  # type: ignore[valid-type]
    max_evals: int = Field(16, ge=1)
    subset: int = Field(64, ge=1)  # images used for per-unit sensitivity
    latency_aware: bool = False
    # strategy of tune.fallback.search_fallback; descend: found the detect proxy's sensitive stem (94% of MACs INT8
    # within budget) where the ranking-prefix gallop kept 24 units float (52%)
    search: Literal["gallop", "bisect", "descend"] = "descend"
    # splits sized from the noise (TuningSession.size_splits): the INT8 drop's interval on the first `pilot` tuning
    # images says how many images the budget needs; 0 = use the splits as given
    pilot: int = Field(100, ge=0)
    max_images: Optional[int] = Field(None, ge=8)  # cap on each sized split
    # how a trial plan is judged (tune.fallback.DECISIONS): interval (upper end of the drop's 95% interval within the
    # budget), holdout (upper end + half-width: confirms on unseen data ~92% of the time; needs 4x the images), point;
    # auto: holdout when the data holds the images it needs, else interval
    decision: Literal["auto", "interval", "holdout", "point"] = "auto"

    @field_validator("budget")
    @classmethod
    def _points(cls, v: float) -> float:
        return check_budget_points(v, "fallback.budget")

    @property
    def budget_fraction(self) -> float:
        """The budget as an absolute mAP drop (what the search API takes)."""
        return self.budget / 100.0


class TrtConfig(_Model):
    version: str = "auto"  # "auto" (the installed tensorrt) or a target like "8.6", "10.3", "11.4"
    int8_route: Literal["qdq", "calibrator", "dynamic-range"] = "qdq"
    strongly_typed: bool = False
    workspace_gib: float = Field(4.0, gt=0)
    timing_cache: Optional[Path] = None
    opt_level: Optional[int] = Field(None, ge=0, le=5)
    plugins: list[Path] = Field(default_factory=list)
    cuda: Literal["auto", "pycuda", "cuda-python"] = "auto"
    dla_core: Optional[int] = Field(None, ge=0)


class QatConfig(_Model):
    """Quantization-aware training (``trtalign qat``, ``trtalign.tune.qat``)."""

    data: Optional[Path] = None  # ultralytics dataset (folder with data.yaml, or the yaml): its train split
    epochs: Optional[int] = Field(None, ge=1)  # None: the task's recipe (tune.qat.RECIPES: detect 3, OBB 2)
    lr: Optional[float] = Field(None, gt=0)  # AdamW, cosine to lr x lr_final; None: the task's recipe for the loss
    scale_lr: float = Field(1e-4, ge=0)
    batch: int = Field(16, ge=1)
    learn_scales: bool = True  # LSQ activation scales (False: the calibrated scales stay fixed)
    start: Literal["int8", "plan"] = "int8"  # every unit INT8, or the INT8 units of `plan`
    plan: Optional[Path] = None  # e.g. `trtalign fallback`'s plan.json
    quantize_fallback: bool = False  # with start: plan, also quantize the plan's FP16/FP32 units
    mosaic: float = Field(0.0, ge=0.0, le=1.0)
    # ultralytics' training augmentations; None: the task's recipe for the loss (distill / both: off, labels: on)
    augment: Optional[bool] = None
    seed: int = 0
    train_images: Optional[int] = Field(None, ge=1)
    val_images: Optional[int] = Field(None, ge=1)
    # auto: the task's measured recipe (tune.qat.RECIPES: detect distill, OBB both) | distill: match the float model's
    # raw head outputs (label-free) | labels: ultralytics' loss on the labels | both: distill + label_weight x labels
    loss: Literal["auto", "distill", "labels", "both"] = "auto"
    lr_final: float = Field(0.01, ge=0.0, le=1.0)  # the cosine schedule ends at lr x lr_final
    label_weight: float = Field(1.0, ge=0.0)  # loss both: weight of the label loss
    feature_weight: float = Field(0.0, ge=0.0)  # distill / both: + neck-feature distillation (0: off; 0.1 did not help)
    out: Optional[Path] = None  # default: outputs.dir / "qat"


class DataConfig(_Model):
    val: Optional[Path] = None  # images folder, or a dataset folder/json readable by trtalign.data.datasets
    tune: Optional[Path] = None  # split used to choose fallback units (never the reported one)


class OutputsConfig(_Model):
    dir: Path = Path("trtalign_out")


class ModelLayout(_Model):
    """Raw-output layout of a bring-your-own ONNX model."""

    task: one_of(Task) = "detect"  # type: ignore[valid-type]
    output: Optional[str] = None  # output tensor name; default: the first output
    format: Literal["yolo-channels-first", "yolo-channels-last"] = "yolo-channels-first"  # [B,4+C(+1),N] or [B,N,...]
    num_classes: int = Field(..., ge=1)
    names: Optional[list[str]] = None
    stride: int = Field(32, ge=1)
    # head layouts of other exporters (trtalign.export.adapters.onnx_model.HeadLayout; a preset fills them)
    preset: Optional[str] = None  # yolov5, yolov6, yolov7, yolox, yolov8, ultralytics, rtmdet
    box: Optional[Literal["cxcywh", "xyxy"]] = None
    objectness: Optional[int] = Field(None, ge=4)  # channel of an objectness score (score = objectness x class)
    scores: Optional[Literal["activated", "logits"]] = None
    angle: Optional[int] = None  # channel of an OBB angle (default for obb: the last)
    angle_unit: Optional[Literal["radians", "degrees"]] = None


class PipelineConfig(_Model):
    model: Path  # the model file; ``model: {path: FILE, repo: DIR}`` also gives the YOLOv5 clone that loads it
    model_repo: Optional[Path] = None  # YOLOv5 clone for a YOLOv5 checkpoint (``model.repo``); None: the package
    task: Literal[("auto", *values(Task))] = "auto"  # checked against the model's own task (export metadata)
    imgsz: int = Field(640, ge=32, le=4096)
    opset: int = Field(17, ge=13, le=21)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    nms: NmsConfig = Field(default_factory=NmsConfig)
    precisions: list[one_of(Precision)] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["fp32", "fp16", "int8"])
    layout: Optional[ModelLayout] = None
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    trt: TrtConfig = Field(default_factory=TrtConfig)
    qat: QatConfig = Field(default_factory=QatConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)

    @model_validator(mode="before")
    @classmethod
    def _model_section(cls, data: Any) -> Any:
        """``model:`` is a path, or a mapping ``{path, repo}`` (``repo``: the YOLOv5 clone whose classes the
        checkpoint pickles)."""
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            section = dict(data["model"])
            unknown = sorted(set(section) - {"path", "repo"})
            if unknown:
                raise ValueError(f"model: unknown key(s) {unknown}; valid keys: path, repo")
            if "model_repo" in data:
                raise ValueError("give the YOLOv5 clone once: model.repo")
            data = {**data, "model": section.get("path")}
            if section.get("repo") is not None:
                data["model_repo"] = section["repo"]
        return data

    @field_validator("precisions")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"precisions must not repeat, got {v}")
        if not v:
            raise ValueError("precisions must not be empty")
        return v

    def resolve_paths(self, base: Path) -> "PipelineConfig":
        """Return a copy with every relative Path resolved against ``base`` (the fields set stay the only ones set:
        "imgsz not given" means the model's own size)."""
        data = self.model_dump(exclude_unset=True)

        def fix(obj: Any) -> Any:
            if isinstance(obj, dict):
                return {k: fix(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [fix(v) for v in obj]
            if isinstance(obj, Path) and not obj.is_absolute():
                return base / obj
            return obj

        return PipelineConfig.model_validate(fix(data))


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One readable line per problem: ``model.nms.iou_threshold: 1.5 — Input should be less than or equal to 1``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        ctx = err.get("ctx") or {}
        if "expected" in ctx:
            msg += f" (valid choices: {ctx['expected']})"
        inp = err.get("input")
        shown = "" if isinstance(inp, dict) else f" (got {inp!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return f"invalid {source}: " + "; ".join(lines)


def config_from_dict(data: dict, source: str = "config", base: Path | None = None) -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid {source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    return cfg.resolve_paths(base) if base is not None else cfg


def load_config(path: str | os.PathLike) -> PipelineConfig:
    """Read and validate a YAML pipeline config; relative paths resolve against the file's folder."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return config_from_dict(data or {}, source=f"config {path}", base=path.parent.resolve())
