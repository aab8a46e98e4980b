"""Implicit INT8 calibration (TensorRT 8.5 ... 10.x only): our data loader feeding IInt8EntropyCalibrator2 / MinMax.

* :class:`CalibrationBatches` turns an images folder (letterboxed exactly like inference, via
  :mod:`trtalign.core.preprocess`) or in-memory arrays into float32 ``[B, 3, H, W]`` batches.
* :func:`make_calibrator` builds, inside a factory (TensorRT types are subclassed only there), a calibrator that
  copies each batch to the GPU through a :class:`trtalign.engines.cuda_backend.CudaBackend` and reads / writes the
  calibration cache atomically.
* Cache text format: first line ``TRT-<version>-EntropyCalibration2`` (or ``MinMaxCalibration``), version =
  major*1000+minor*100+patch on 8.x (8601), major*10000+minor*100+patch on 10.x (100300); then ``tensor: <hex of the
  float32 scale>``. TensorRT ignores a cache from an incompatible version, so we warn about it up front.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from trtalign.core.errors import InputError, UnsupportedError
from trtalign.core.io import atomic_write_bytes
from trtalign.core.logging import get_logger
from trtalign.engines.versions import TrtVersion, capabilities

log = get_logger(__name__)

ALGORITHM_CLASS = {"entropy2": "IInt8EntropyCalibrator2", "minmax": "IInt8MinMaxCalibrator"}
ALGORITHM_HEADER = {"entropy2": "EntropyCalibration2", "minmax": "MinMaxCalibration"}


class CalibrationBatches:
    """Float32 ``[batch_size, 3, H, W]`` batches; the last partial batch is padded by repeating its last image."""

    def __init__(self, arrays: Sequence[np.ndarray] | None = None, *, images: str | os.PathLike | None = None,
                 imgsz: int | Sequence[int] = 640, batch_size: int = 1, num: int | None = None):
        if batch_size < 1:
            raise InputError(f"calibration batch size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.imgsz = imgsz
        self._arrays = list(arrays) if arrays is not None else None
        self._paths: list[Path] = []
        if self._arrays is None:
            if images is None:
                raise InputError("calibration needs images: set calibration.images to a folder of images")
            from trtalign.core.preprocess import list_images

            self._paths = list_images(images, max_images=num)
        elif num is not None:
            self._arrays = self._arrays[:num]
        if not len(self):
            raise InputError("calibration needs at least one image")

    def __len__(self) -> int:
        return len(self._arrays) if self._arrays is not None else len(self._paths)

    @property
    def num_batches(self) -> int:
        return -(-len(self) // self.batch_size)

    def _image(self, i: int) -> np.ndarray:
        if self._arrays is not None:
            arr = np.asarray(self._arrays[i], dtype=np.float32)
            return arr[0] if arr.ndim == 4 else arr
        from trtalign.core.preprocess import letterbox, read_image

        return letterbox(read_image(self._paths[i]), self.imgsz)[0][0]

    def __iter__(self) -> Iterator[np.ndarray]:
        n = len(self)
        for start in range(0, n, self.batch_size):
            idx = [min(i, n - 1) for i in range(start, start + self.batch_size)]
            yield np.ascontiguousarray(np.stack([self._image(i) for i in idx]), dtype=np.float32)


def read_cache(path: str | os.PathLike | None, trt_version: "str | TrtVersion", algorithm: str) -> bytes | None:
    """The cache bytes if ``path`` exists and fits this TensorRT version and algorithm, else None (with a warning).
    Parsed by :func:`trtalign.export.calib_cache.parse_calibration_cache` (the one cache parser)."""
    from trtalign.export.calib_cache import parse_calibration_cache, trt_version_code

    if not path or not Path(path).is_file():
        return None
    data = Path(path).read_bytes()
    header = parse_calibration_cache(data.decode("ascii", errors="replace"), source=str(path))
    want, want_algo = trt_version_code(trt_version), ALGORITHM_HEADER.get(algorithm, algorithm)
    if header.version_code != want or header.algorithm != want_algo:
        log.warning("ignoring calibration cache %s: written by TensorRT code %d with %s, this build is %d with %s "
                    "(TensorRT would ignore it too); recalibrating", path, header.version_code, header.algorithm,
                    want, want_algo)
        return None
    return data


def write_cache(path: str | os.PathLike | None, data: bytes) -> None:
    if path:
        atomic_write_bytes(path, bytes(data))


def make_calibrator(trt: Any, algorithm: str, batches: CalibrationBatches, backend: Any,
                    cache_path: str | os.PathLike | None = None) -> Any:
    """An ``IInt8EntropyCalibrator2`` (``entropy2``) or ``IInt8MinMaxCalibrator`` (``minmax``) instance."""
    version = TrtVersion.parse(trt.__version__)
    capabilities(version).require("implicit_calibration", "trt.int8_route: calibrator")
    if algorithm not in ALGORITHM_CLASS:
        raise UnsupportedError(f"calibrator algorithm {algorithm!r}; valid choices: {sorted(ALGORITHM_CLASS)}")
    base = getattr(trt, ALGORITHM_CLASS[algorithm])

    class _Calibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.batches = batches
            self._iter = iter(batches)
            self._device = 0
            self._nbytes = 0
            self._stream = None
            self.batches_served = 0

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list) -> list | None:
            try:
                batch = next(self._iter)
            except StopIteration:
                return None
            if batch.nbytes > self._nbytes:
                if self._device:
                    backend.free(self._device)
                self._device, self._nbytes = backend.alloc(batch.nbytes), batch.nbytes
            if self._stream is None:
                self._stream = backend.create_stream()
            backend.htod_async(self._device, batch, self._stream)
            backend.synchronize(self._stream)
            self.batches_served += 1
            return [int(self._device)] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            return read_cache(cache_path, version, algorithm)

        def write_calibration_cache(self, cache: Any) -> None:
            write_cache(cache_path, bytes(cache))

        def free(self) -> None:
            """Release the device buffer (call after the build)."""
            if self._device:
                backend.free(self._device)
                self._device, self._nbytes = 0, 0

    _Calibrator.__name__ = f"Trtalign{ALGORITHM_CLASS[algorithm][1:]}"
    return _Calibrator()
