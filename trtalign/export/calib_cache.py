"""TensorRT calibration cache files (the implicit-INT8 route of TensorRT 8.x / 10.x), written from ``ranges.json``.

Text format, as TensorRT's calibrators write and read it::

    TRT-8601-EntropyCalibration2
    images: 3c010a14
    /model.0/conv/Conv_output_0: 3d8e2f1b

The header carries the TensorRT version (``major*1000 + minor*100 + patch`` on 8.x -> ``8601``;
``major*10000 + minor*100 + patch`` from 10.0 -> ``100300``) and the calibration algorithm; TensorRT ignores a cache
whose header does not match its own version and calibrator. Each line is a network tensor name, ``": "``, and the
8 hex digits of the IEEE float32 bits of the scale, scale = amax / 127 (TensorRT's dynamic range is +-127 * scale).
Tensor names are ONNX tensor names: TensorRT's ONNX parser names every network tensor after the ONNX tensor it
produces. TensorRT 11 has no implicit calibration, so no cache is written for it (use the Q/DQ ONNX).
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from trtalign.core.errors import ConfigError, InputError, UnsupportedError, choices_text
from trtalign.core.io import atomic_write_text
from trtalign.export.ranges import MIN_AMAX, Ranges

ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
#: the calibrator whose algorithm matches each of our methods best
ALGORITHM_FOR_METHOD = {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration"}
_HEADER = re.compile(r"^TRT-(\d+)-([A-Za-z0-9]+)$")


def trt_version_code(version: "str | object") -> int:
    """``"8.6.1"`` -> 8601, ``"10.3.0"`` -> 100300 (a missing patch counts as 0), parsed by the one version parser
    (:class:`trtalign.core.versions.TrtVersion`). TensorRT >= 11 (no implicit calibration) or < 8.5 raises."""
    from trtalign.core.versions import TrtVersion

    v = TrtVersion.parse(version)
    if v.major >= 11:
        raise UnsupportedError(f"TensorRT {version} has no implicit INT8 calibration (removed in 11): use the Q/DQ "
                               f"ONNX from `trtalign quantize` instead of a calibration cache")
    if v.minor > 99 or v.patch > 99:
        raise ConfigError(f"invalid TensorRT version {version!r}: minor and patch must be < 100")
    return v.major * 1000 + v.minor * 100 + v.patch if v.major < 10 else v.major * 10000 + v.minor * 100 + v.patch


def scale_to_hex(scale: float) -> str:
    return struct.pack(">f", float(scale)).hex()


def hex_to_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


@dataclass
class CalibrationCache:
    """A parsed cache: version code, algorithm and tensor name -> scale."""

    version_code: int
    algorithm: str
    scales: dict[str, float]

    def amax(self) -> dict[str, float]:
        return {k: v * 127.0 for k, v in self.scales.items()}

    def to_dict(self) -> dict:
        return {"version_code": self.version_code, "algorithm": self.algorithm, "scales": dict(self.scales)}


def calibration_cache_text(amax: Mapping[str, float] | Ranges, trt_version: str,
                           algorithm: str = "EntropyCalibration2") -> str:
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"invalid calibration algorithm {algorithm!r}; valid choices: {choices_text(ALGORITHMS)}")
    if isinstance(amax, Ranges):
        amax = {k: v.amax for k, v in amax.tensors.items()}
    lines = [f"TRT-{trt_version_code(trt_version)}-{algorithm}"]
    for name, value in amax.items():
        if "\n" in name:
            raise InputError(f"tensor name {name!r} contains a newline and cannot be written to a calibration cache")
        lines.append(f"{name}: {scale_to_hex(max(float(value), MIN_AMAX) / 127.0)}")
    return "\n".join(lines) + "\n"


def write_calibration_cache(amax: Mapping[str, float] | Ranges, path: str | os.PathLike, trt_version: str,
                            algorithm: str = "EntropyCalibration2") -> Path:
    return atomic_write_text(path, calibration_cache_text(amax, trt_version, algorithm))


def parse_calibration_cache(text: str, source: str = "calibration cache") -> CalibrationCache:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"{source} is empty")
    m = _HEADER.match(lines[0].strip())
    if not m:
        raise InputError(f"{source}: first line {lines[0][:60]!r} is not a TensorRT cache header "
                         f"(expected e.g. 'TRT-8601-EntropyCalibration2')")
    scales = {}
    for k, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(": ")
        if not sep or not re.fullmatch(r"[0-9a-fA-F]{1,8}", value.strip()):
            raise InputError(f"{source} line {k}: expected 'tensor name: 8 hex digits', got {line[:80]!r}")
        scales[name] = hex_to_scale(value.strip().zfill(8))
    return CalibrationCache(version_code=int(m.group(1)), algorithm=m.group(2), scales=scales)


def read_calibration_cache(path: str | os.PathLike) -> CalibrationCache:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"calibration cache not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read calibration cache {path}: {exc}") from exc
    return parse_calibration_cache(text, source=str(path))
