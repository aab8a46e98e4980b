"""``ranges.json``: the calibrated dynamic range (symmetric amax) of every activation tensor that may receive a Q/DQ.

Format (version 1)::

    {
      "format": "trtalign-ranges", "version": 1,
      "method": "entropy",                      # what produced most ranges (best: per tensor)
      "params": {"percentile": 99.99, "num_bins": 2048},
      "model": {"file": "yolov8n.onnx", "sha256": "..."},
      "data": {"folder": "calib/", "folder_sha256": "...", "images": 512, "imgsz": [640, 640]},
      "tensors": {"/model.0/conv/Conv_input": {"amax": 1.0, "method": "minmax"}, ...}
    }

Tensor names are ONNX tensor names, which are also the names TensorRT's ONNX parser gives the network tensors.
The int8 scale of a tensor is ``amax / 127``. Weights are not in here: they are quantized per channel from their
own max-abs when the Q/DQ ONNX is written.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from trtalign.core.errors import InputError
from trtalign.core.io import atomic_write_json, read_json_file
from trtalign.core.logging import get_logger

log = get_logger(__name__)

RANGES_FORMAT = "trtalign-ranges"
#: smallest amax written into a Q/DQ scale (a tensor that is always 0 still needs a positive scale)
MIN_AMAX = 1e-8


@dataclass(frozen=True)
class TensorRange:
    amax: float
    method: str

    def to_dict(self) -> dict:
        return {"amax": float(self.amax), "method": self.method}


@dataclass
class Ranges:
    tensors: dict[str, TensorRange]
    method: str
    model_sha256: str = ""
    model_file: str = ""
    params: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)

    def amax(self, name: str) -> float:
        return max(float(self.tensors[name].amax), MIN_AMAX)

    def scale(self, name: str) -> float:
        return self.amax(name) / 127.0

    def to_dict(self) -> dict:
        return {"format": RANGES_FORMAT, "version": 1, "method": self.method, "params": dict(self.params),
                "model": {"file": self.model_file, "sha256": self.model_sha256}, "data": dict(self.data),
                "tensors": {k: v.to_dict() for k, v in self.tensors.items()}}

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "ranges") -> "Ranges":
        if not isinstance(data, Mapping) or data.get("format") != RANGES_FORMAT:
            raise InputError(f"{source} is not a trtalign ranges file: expected \"format\": \"{RANGES_FORMAT}\"")
        tensors = {}
        for name, entry in dict(data.get("tensors", {})).items():
            try:
                amax = float(entry["amax"])
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"{source}: tensor {name!r} has no numeric amax ({entry!r})") from exc
            if not math.isfinite(amax) or amax < 0:
                raise InputError(f"{source}: tensor {name!r} has amax {amax}; expected a finite value >= 0")
            tensors[name] = TensorRange(amax=amax, method=str(entry.get("method", data.get("method", ""))))
        model = dict(data.get("model", {}))
        return cls(tensors=tensors, method=str(data.get("method", "")), model_sha256=str(model.get("sha256", "")),
                   model_file=str(model.get("file", "")), params=dict(data.get("params", {})),
                   data=dict(data.get("data", {})))


def save_ranges(ranges: Ranges, path: str | os.PathLike) -> Path:
    return atomic_write_json(path, ranges.to_dict())


def load_ranges(path: str | os.PathLike) -> Ranges:
    return Ranges.from_dict(read_json_file(path, "ranges file"), source=str(path))


def check_ranges(ranges: Ranges, required: Iterable[str], model_sha256: str = "", what: str = "this model") -> None:
    """Raise InputError listing the required tensors that ``ranges`` lacks (ranges from another model).

    A different model hash with every tensor present only warns: re-exports of the same network keep tensor names.
    """
    required = list(dict.fromkeys(required))
    missing = [t for t in required if t not in ranges.tensors]
    if missing:
        other = f" (ranges were calibrated on {ranges.model_file or 'another model'}" + \
                (f", sha256 {ranges.model_sha256[:12]}" if ranges.model_sha256 else "") + ")"
        raise InputError(f"ranges do not match {what}: {len(missing)} of {len(required)} tensors that need a range "
                         f"are missing{other}: {', '.join(missing[:12])}" + (" ..." if len(missing) > 12 else "")
                         + "; re-run `trtalign calibrate` on this model")
    if model_sha256 and ranges.model_sha256 and model_sha256 != ranges.model_sha256:
        log.warning("ranges were calibrated on a model with sha256 %s..., this one is %s...; tensor names match, "
                    "using them", ranges.model_sha256[:12], model_sha256[:12])
