"""The Runner interface every backend implements (after Polygraphy's BaseRunner).

A runner is created cheaply, loads its model in :meth:`activate`, maps ``{input name: array}`` to
``{output name: array}`` in :meth:`infer`, and frees everything in :meth:`deactivate`. Use it as a context manager.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from trtalign.core.errors import InputError


@dataclass(frozen=True)
class TensorMeta:
    """Name, dtype and shape of one model input or output. ``None`` or a string in ``shape`` is a dynamic dimension."""

    name: str
    dtype: str  # numpy dtype name, e.g. "float32"
    shape: tuple

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass
class InferenceTiming:
    """Wall-clock seconds of the last ``infer`` calls (filled by ``Runner.infer``)."""

    seconds: list = field(default_factory=list)

    @property
    def last(self) -> float:
        return self.seconds[-1] if self.seconds else float("nan")


class Runner(abc.ABC):
    """Base class of every backend runner."""

    #: short backend name used in reports: "torch", "ort-fp32", "ort-fp16sim", "ort-int8sim", "trt-fp16", ...
    name: str = "runner"

    def __init__(self, name: str | None = None):
        if name is not None:
            self.name = name
        self.is_active = False
        self.timing = InferenceTiming()

    # -- lifecycle
    def activate(self) -> None:
        if self.is_active:
            return
        self.activate_impl()
        self.is_active = True

    def deactivate(self) -> None:
        if not self.is_active:
            return
        try:
            self.deactivate_impl()
        finally:
            self.is_active = False

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    # -- metadata
    @abc.abstractmethod
    def input_metadata(self) -> list[TensorMeta]:
        """Inputs of the model, in order (valid after activate)."""

    def output_metadata(self) -> list[TensorMeta]:
        """Outputs of the model, in order (valid after activate). Optional for runners that cannot know in advance."""
        return []

    # -- inference
    def infer(self, feed_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.is_active:
            raise InputError(f"runner {self.name!r} is not active: call activate() or use it as a context manager")
        expected = [m.name for m in self.input_metadata()]
        missing = [n for n in expected if n not in feed_dict]
        if missing:
            raise InputError(f"runner {self.name!r}: missing inputs {missing}; expected {expected}, "
                             f"got {sorted(feed_dict)}")
        start = time.perf_counter()
        out = self.infer_impl(feed_dict)
        self.timing.seconds.append(time.perf_counter() - start)
        return out

    @abc.abstractmethod
    def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model; return numpy arrays keyed by output name."""

    @abc.abstractmethod
    def activate_impl(self) -> None: ...

    @abc.abstractmethod
    def deactivate_impl(self) -> None: ...
