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
from typing import Any, Callable, ClassVar, Sequence

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
    def raw_onnx_from_torch(self, imgsz: int | Sequence[int], batch: int, dynamic_batch: bool, opset: int,
                            torch_model: Callable[[], Any]) -> Any:
        """``to_raw_onnx`` for a family whose ``torch_model()`` maps images to ``output0``: export it once per
        (size, batch, opset) with ``torch.onnx.export`` and fix the I/O shapes (``B`` = ``batch`` or ``"batch"``).

        Raises InputError (bad size or batch) / ModelError (the exporter failed, its first line quoted).
        """
        import io
        import warnings

        import onnx
        import torch

        from trtalign.core.errors import ModelError

        h, w = self.check_imgsz(imgsz)
        if batch < 1:
            raise InputError(f"batch must be >= 1, got {batch}")
        cache = self.__dict__.setdefault("_raw_cache", {})
        key = (h, w, 1 if dynamic_batch else batch, dynamic_batch, opset)
        if key in cache:
            return onnx.load_from_string(cache[key])
        model = torch_model()
        x = torch.zeros(1 if dynamic_batch else batch, 3, h, w)
        with torch.no_grad():
            n = int(model(x).shape[-1])
        buf = io.BytesIO()
        dynamic_axes = {"images": {0: "batch"}, "output0": {0: "batch"}} if dynamic_batch else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, x, buf, dynamo=False, opset_version=opset, input_names=["images"],
                                  output_names=["output0"], dynamic_axes=dynamic_axes, do_constant_folding=True)
        except Exception as exc:
            raise ModelError(f"torch.onnx.export failed for {self.path.name}: {first_line(exc)}") from None
        proto = onnx.load_from_string(buf.getvalue())
        b = "batch" if dynamic_batch else batch
        set_shape(proto.graph.input[0], [b, 3, h, w])
        set_shape(proto.graph.output[0], [b, self.layout.channels, n])
        cache[key] = proto.SerializeToString()
        return proto

    @abc.abstractmethod
    def to_raw_onnx(self, imgsz: int | Sequence[int], batch: int = 1, dynamic_batch: bool = False,
                    opset: int = 17) -> Any:
        """The raw ONNX (``onnx.ModelProto``): input ``images`` ``[B,3,H,W]``, output ``output0`` ``[B,4+C(+1),N]``.

        ``B`` is ``batch`` or, with ``dynamic_batch``, the symbolic dimension ``batch``.
        """


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception from a framework (its tracebacks stay out of our errors)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def set_shape(value_info: Any, dims: list) -> None:
    """Overwrite an ONNX value_info's shape with ``dims`` (ints, or strings for symbolic dimensions)."""
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = int(d)
