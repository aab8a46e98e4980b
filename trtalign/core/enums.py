"""Closed sets of choices. Parsing an unknown value raises ConfigError listing the valid values."""

from __future__ import annotations

import enum

from trtalign.core.errors import ConfigError, choices_text


class ParseableEnum(str, enum.Enum):
    @classmethod
    def parse(cls, value: "str | ParseableEnum") -> "ParseableEnum":
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower().replace("_", "-")
        for member in cls:
            if member.value == text:
                return member
        raise ConfigError(f"invalid {cls.__name__} {value!r}; valid choices: {choices_text(m.value for m in cls)}")

    def __str__(self) -> str:  # so f-strings print the value
        return self.value


class Task(ParseableEnum):
    DETECT = "detect"  # axis-aligned boxes
    OBB = "obb"  # rotated boxes (x, y, w, h, angle)


class NmsKind(ParseableEnum):
    EFFICIENT = "efficient"  # EfficientNMS_TRT
    ROTATED = "rotated"  # EfficientRotatedNMS_TRT (ours)
    NONE = "none"  # raw boxes + scores outputs


class BoxFormat(ParseableEnum):
    XYXY = "xyxy"
    XYWHR = "xywhr"


class Precision(ParseableEnum):
    TORCH = "torch"
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"

    @property
    def is_float(self) -> bool:
        return self in (Precision.FP32, Precision.FP16)


class Backend(ParseableEnum):
    AUTO = "auto"
    ORT = "ort"
    TRT = "trt"
    TORCH = "torch"


#: precision of the units a fallback keeps out of INT8 (and of the head's output convs in the INT8 plan): the float
#: members of Precision
FallbackTarget = ParseableEnum("FallbackTarget", [(p.name, p.value) for p in Precision if p.is_float])


class RunnerName(ParseableEnum):
    """Names of the runners in results and reports: backend + precision."""

    TORCH = "torch"
    ORT_FP32 = "ort-fp32"
    ORT_FP16SIM = "ort-fp16sim"
    ORT_INT8SIM = "ort-int8sim"
    TRT_FP32 = "trt-fp32"
    TRT_FP16 = "trt-fp16"
    TRT_INT8 = "trt-int8"

    @classmethod
    def for_precision(cls, precision: "str | Precision", backend: "str | Backend" = "ort") -> "RunnerName":
        """``("int8", "ort")`` -> ``ort-int8sim``; ``("fp16", "trt")`` -> ``trt-fp16``; ``torch`` on any backend."""
        p = Precision.parse(precision)
        if p is Precision.TORCH:
            return cls.TORCH
        b = Backend.parse(backend)
        if b is Backend.TRT:
            return cls(f"trt-{p.value}")
        return cls(f"ort-{p.value}" + ("" if p is Precision.FP32 else "sim"))

    @property
    def precision(self) -> Precision:
        return Precision.TORCH if self is RunnerName.TORCH else Precision(self.value.split("-")[1][:4])


class CalibrationMethod(ParseableEnum):
    """How a tensor's amax is chosen from its statistics (trtalign.export.calibrate).

    The default is ``minmax``: entropy (TensorRT's KL calibration) clips the class-score tensors of YOLO heads (on the
    official COCO YOLOv5n, 128 val2017 images at 640: mAP50-95 0.2713 with entropy vs 0.3273 with minmax, FP32 0.3393;
    on the detect proxy entropy costs 0.8 points where minmax costs 0.17; measured for issue 15).
    """

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    MSE = "mse"
    BEST = "best"

    @classmethod
    def default(cls) -> "CalibrationMethod":
        return cls.MINMAX


class SensitivityMetric(ParseableEnum):
    """Per-unit sensitivity metrics (trtalign.tune.sensitivity)."""

    MAP = "map"
    MSE = "mse"
    COSINE = "cosine"
    SQNR = "sqnr"
    DET = "det"
    SCOREBOX = "scorebox"  # class-score noise ratio + box error relative to box size (tune.sensitivity)


class SensitivityMode(ParseableEnum):
    DISABLE_ONE = "disable-one"  # start fully INT8, restore one unit
    ENABLE_ONE = "enable-one"  # start float, quantize one unit


class NmsOp(str, enum.Enum):
    """NMS node op types of the exported ONNX (TensorRT's plugin names, so not lower-cased)."""

    EFFICIENT = "EfficientNMS_TRT"
    ROTATED = "EfficientRotatedNMS_TRT"

    def __str__(self) -> str:
        return self.value


def values(enum_cls: type) -> tuple:
    """The values of an Enum, in definition order (for argparse ``choices`` and error messages)."""
    return tuple(m.value for m in enum_cls)
