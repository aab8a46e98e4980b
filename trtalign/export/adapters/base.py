"""The ModelAdapter interface: what every model family gives the exporter.

An adapter loads one model file, knows its task metadata (class names, strides, raw-output layout) and turns it into
a *raw* ONNX model whose only input is ``images`` ``[B, 3, H, W]`` and whose only output is ``output0`` in the
layout of docs/ARCHITECTURE.md (``[B, 4 + C (+1), N]``, channels first). Decode and NMS are added later by
:mod:`trtalign.export.graph_nms`, the same for every family. A new family is one new module that subclasses
:class:`ModelAdapter` and decorates it with :func:`trtalign.export.adapters.register_adapter`.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

from trtalign.core.enums import Task
from trtalign.core.errors import InputError
from trtalign.core.io import sha256_file
from trtalign.core.preprocess import as_hw


@dataclass(frozen=True)
class OutputLayout:
    """Layout of the raw head tensor ``output0``: ``[B, 4 + C (+1 angle), N]`` channels first.

    ``angle``: OBB models append the rotation angle (radians) after the class scores.
    """

    task: Task
    num_classes: int
    angle: bool = False

    @property
    def channels(self) -> int:
        return 4 + self.num_classes + (1 if self.angle else 0)

    def to_dict(self) -> dict:
        return {"format": "yolo-channels-first", "task": self.task.value, "num_classes": self.num_classes,
                "channels": self.channels, "box": "cxcywh", "score_offset": 4,
                "angle_index": (4 + self.num_classes) if self.angle else None}


@dataclass
class ModelInfo:
    """Task metadata of a loaded model."""

    family: str
    task: Task
    names: list
    stride: int
    strides: list = field(default_factory=list)
    source: str = ""
    sha256: str = ""
    #: the input size the model was trained at, when the file records it (ultralytics checkpoints do); exports
    #: and runners default to it, as ultralytics' own predict/val/export do, else to 640
    train_imgsz: int | None = None

    @property
    def default_imgsz(self) -> int:
        return int(self.train_imgsz or 640)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        return {"family": self.family, "task": self.task.value, "names": list(self.names), "stride": self.stride,
                "strides": list(self.strides), "source": self.source, "sha256": self.sha256, "train_imgsz": self.train_imgsz}


class ModelAdapter(abc.ABC):
    """Base class of model adapters. Construct through :func:`trtalign.export.adapters.load_adapter`."""

    #: short family name, e.g. "ultralytics", "onnx"
    family: ClassVar[str] = "base"
    #: file suffixes this adapter reads (lower case, with dot)
    suffixes: ClassVar[tuple] = ()

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"model file not found: {self.path}")
        self._sha256: str | None = None

    # -- what the adapter reads
    @classmethod
    def accepts(cls, path: Path, **options: Any) -> bool:
        """True when this adapter should load ``path`` (by default: by suffix)."""
        return path.suffix.lower() in cls.suffixes

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path)
        return self._sha256

    # -- metadata
    @property
    @abc.abstractmethod
    def info(self) -> ModelInfo:
        """Task metadata (names, stride, task, family)."""

    @property
    def layout(self) -> OutputLayout:
        info = self.info
        return OutputLayout(info.task, info.num_classes, angle=info.task is Task.OBB)

    def layout_dict(self) -> dict:
        """``metadata["layout"]``: the layout of ``output0``; a family whose own head differs adds ``source_layout``."""
        return self.layout.to_dict()

    def check_imgsz(self, imgsz: int | Sequence[int]) -> tuple[int, int]:
        """Validate an input size against the model stride; returns (h, w)."""
        h, w = as_hw(imgsz)
        stride = self.info.stride
        for name, v in (("height", h), ("width", w)):
            if v <= 0 or v % stride:
                raise InputError(f"--imgsz {name} must be a positive multiple of the model stride {stride}, got {v} "
                                 f"(nearest valid: {max(stride, round(v / stride) * stride)})")
        return h, w

    # -- export
    @abc.abstractmethod
    def to_raw_onnx(self, imgsz: int | Sequence[int], batch: int = 1, dynamic_batch: bool = False,
                    opset: int = 17) -> Any:
        """The raw ONNX (``onnx.ModelProto``): input ``images`` ``[B,3,H,W]``, output ``output0`` ``[B,4+C(+1),N]``.

        ``B`` is ``batch`` or, with ``dynamic_batch``, the symbolic dimension ``batch``.
        """
