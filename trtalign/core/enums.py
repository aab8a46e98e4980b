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


class Backend(ParseableEnum):
    AUTO = "auto"
    ORT = "ort"
    TRT = "trt"
    TORCH = "torch"
