"""ctypes bindings of the plugin sources' C test API (trtalign_capi.h) and the fixtures that build it, shared by the
csrc tests (``from csrc_harness import host_api`` makes the fixture available in a test module).

``CApi(path)`` wraps a library built from ``trtalign/plugins/csrc`` (the host test library, or the CUDA test library
which also has ``trtalign_rotated_nms_cuda``). Inputs are numpy arrays; float16 arrays go through the FP16 path.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from trtalign.plugins.build import csrc_dir, find_nvcc

_i32, _f32, _i64, _vp = ctypes.c_int32, ctypes.c_float, ctypes.c_int64, ctypes.c_void_p

#: attributes in the order of the C API, with their defaults (the ONNX node's defaults)
NMS_ARGS = (("score_threshold", 0.25), ("iou_threshold", 0.45), ("max_output_boxes", 100), ("background_class", -1),
            ("score_activation", 0), ("class_agnostic", 0), ("box_coding", 1), ("topk", 5000))


class NmsResult(NamedTuple):
    num_detections: np.ndarray  # int32 [B, 1]
    detection_boxes: np.ndarray  # input dtype [B, K, 5]
    detection_scores: np.ndarray  # input dtype [B, K]
    detection_classes: np.ndarray  # int32 [B, K]
    kernel_ms: float | None = None


class CApi:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lib = ctypes.CDLL(str(self.path))
        lib = self.lib
        lib.trtalign_capi_version.restype = _i32
        lib.trtalign_last_error.restype = ctypes.c_char_p
        for name in ("trtalign_rotated_iou", "trtalign_rotated_intersection"):
            fn = getattr(lib, name)
            fn.restype = _i32
            fn.argtypes = [_vp, _vp, _i64, _i32, _vp]
        nms = [_vp, _vp, _i32, _i32, _i32, _i32, _f32, _f32, _i32, _i32, _i32, _i32, _i32, _i32, _vp, _vp, _vp, _vp]
        lib.trtalign_rotated_nms_host.restype = _i32
        lib.trtalign_rotated_nms_host.argtypes = nms
        self.has_cuda = hasattr(lib, "trtalign_rotated_nms_cuda")
        if self.has_cuda:
            lib.trtalign_rotated_nms_cuda.restype = _i32
            lib.trtalign_rotated_nms_cuda.argtypes = nms + [_i32, ctypes.POINTER(_f32)]

    def last_error(self) -> str:
        return self.lib.trtalign_last_error().decode()

    def _pairs(self, fn, a: np.ndarray, b: np.ndarray, precision: int) -> np.ndarray:
        a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1, 5)
        b = np.ascontiguousarray(b, dtype=np.float32).reshape(-1, 5)
        out = np.zeros(len(a), np.float32)
        rc = fn(a.ctypes.data, b.ctypes.data, len(a), precision, out.ctypes.data)
        if rc != 0:
            raise RuntimeError(self.last_error())
        return out

    def rotated_iou(self, a: np.ndarray, b: np.ndarray, precision: int = 0) -> np.ndarray:
        """IoU of pairs a[i], b[i]; precision 0 = FP32 geometry (the kernels'), 1 = FP64."""
        return self._pairs(self.lib.trtalign_rotated_iou, a, b, precision)

    def rotated_intersection(self, a: np.ndarray, b: np.ndarray, precision: int = 0) -> np.ndarray:
        return self._pairs(self.lib.trtalign_rotated_intersection, a, b, precision)

    def nms(self, boxes: np.ndarray, scores: np.ndarray, device: str = "host", repeats: int = 1,
            **attrs) -> NmsResult:
        """Run the host or CUDA NMS; ``attrs`` as the ONNX node's attributes (plus ``topk``)."""
        unknown = set(attrs) - {k for k, _ in NMS_ARGS} - {"plugin_version"}
        if unknown:
            raise TypeError(f"unknown attributes {sorted(unknown)}")
        dtype = np.float16 if np.asarray(scores).dtype == np.float16 else np.float32
        boxes = np.ascontiguousarray(boxes, dtype=dtype)
        scores = np.ascontiguousarray(scores, dtype=dtype)
        b, n, c = scores.shape
        vals = [attrs.get(k, d) for k, d in NMS_ARGS]
        k = int(vals[2])
        out = NmsResult(np.zeros((b, 1), np.int32), np.zeros((b, k, 5), dtype), np.zeros((b, k), dtype),
                        np.zeros((b, k), np.int32))
        args = [boxes.ctypes.data, scores.ctypes.data, 1 if dtype == np.float16 else 0, b, n, c,
                float(vals[0]), float(vals[1]), *[int(v) for v in vals[2:]],
                out.num_detections.ctypes.data, out.detection_boxes.ctypes.data, out.detection_scores.ctypes.data,
                out.detection_classes.ctypes.data]
        if device == "host":
            rc = self.lib.trtalign_rotated_nms_host(*args)
            ms = None
        else:
            if not self.has_cuda:
                raise RuntimeError(f"{self.path} was built without CUDA")
            t = _f32(0)
            rc = self.lib.trtalign_rotated_nms_cuda(*args, int(repeats), ctypes.byref(t))
            ms = float(t.value)
        if rc != 0:
            raise RuntimeError(f"rc={rc}: {self.last_error()}")
        return out._replace(kernel_ms=ms)


HOST_SOURCES = ("trtalign_capi_host.cpp", "rotated_nms_host.cpp")


def compile_host_library(out: Path, compiler: str) -> Path:
    """Compile the host test library with ``compiler`` ('g++' or an nvcc path; nvcc compiles the sources as CUDA,
    so the ``__host__ __device__`` geometry goes through the CUDA front end)."""
    src = [str(csrc_dir() / s) for s in HOST_SOURCES]
    lib = out / f"libtrtalign_csrc_host_{Path(compiler).name}.so"
    if Path(compiler).name.startswith("nvcc"):
        cmd = [compiler, "-std=c++17", "-O2", "-shared", "-Xcompiler", "-fPIC", "-x", "cu", *src, "-o", str(lib)]
    else:
        cmd = [compiler, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", *src, "-o", str(lib)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return lib


@pytest.fixture(scope="session")
def host_api(tmp_path_factory):
    """CApi over the host library compiled with g++ (the CI path: no CUDA, no TensorRT)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++/c++) on PATH")
    return CApi(compile_host_library(tmp_path_factory.mktemp("csrc_host"), cxx))


@pytest.fixture(scope="session")
def nvcc_host_api(tmp_path_factory):
    """CApi over the same host sources compiled by nvcc (host code paths through the CUDA compiler)."""
    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found (PATH, $CUDACXX, /usr/local/cuda*/bin)")
    return CApi(compile_host_library(tmp_path_factory.mktemp("csrc_host_nvcc"), nvcc))
