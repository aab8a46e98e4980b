"""The recipe's engine step: ONNX + build plan -> TensorRT engine, always through the one engine cache.

:class:`EngineFromOnnx` is the only way trtalign turns an ONNX into an engine (``trtalign build``, ``evaluate(...,
backend="trt")``, the tuning session's per-plan engines). The cache key is :func:`trtalign.engines.cache.cache_key`
over the ONNX bytes, the build plan JSON, the TensorRT version, the GPU compute capability and the plugin libraries,
and every entry has its sidecar, so :class:`trtalign.runtime.trt_runner.TrtRunner` can check where an engine came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trtalign.core.io import atomic_write_text
from trtalign.core.logging import get_logger
from trtalign.export.loaders import Loader, resolve

log = get_logger(__name__)


def gpu_info(cuda: str = "auto", backend: Any = None) -> tuple[Any, dict]:
    """(opened CUDA backend, ``{"name", "compute_capability", ...}``) of this machine's GPU."""
    from trtalign.engines.cuda_backend import select_backend

    if backend is None:
        backend = select_backend(cuda)
        backend.open()
    return backend, backend.device_info()


class EngineFromOnnx(Loader):
    """ONNX (value or loader) -> engine file in the engine cache (built only when the cache lacks it).

    Args:
        onnx: path or loader of the ONNX to build (float for fp32 / fp16, Q/DQ for int8).
        cache_dir: the engine cache folder (``<key>.engine`` + sidecar ``<key>.json`` + ``<key>.layers.json``).
        precision: ``fp32`` | ``fp16`` | ``int8``. settings: :class:`trtalign.engines.plan.BuildSettings` (batch
            profile, route, plugins, the unit plan of a Q/DQ ONNX ...). plan: a ready BuildPlan instead (then
            ``precision`` / ``settings`` are not used).
        trt: the tensorrt module (default: the installed one). backend / gpu: the CUDA backend and its
            ``device_info()`` (default: detected here). force: rebuild even on a cache hit.
        log_path: TensorRT's verbose build log. rebuild_command: recorded in the sidecar.

    Returns (when called): the Path of the cached engine. After the call ``key``, ``plan``, ``cache_hit`` and, when
    built here, ``build`` (the BuildResult) describe what happened.

    Raises:
        DependencyError without TensorRT; EngineError / ModelError when TensorRT cannot build the ONNX.

    Example::

        engine = EngineFromOnnx(QdqOnnxFromPlan(onnx, ranges, "work"), "work/engines", "int8",
                                settings=BuildSettings(batch=4, unit_plan=plan.to_dict()))
        with TrtRunner(engine) as runner: ...
    """

    def __init__(self, onnx: Any, cache_dir: str | os.PathLike, precision: str = "fp32", *, settings: Any = None,
                 plan: Any = None, trt: Any = None, backend: Any = None, gpu: dict | None = None, force: bool = False,
                 log_path: str | os.PathLike | None = None, rebuild_command: str = ""):
        self.onnx, self.cache_dir, self.precision = onnx, Path(cache_dir), precision
        self.settings, self.plan, self.trt, self.backend, self.gpu = settings, plan, trt, backend, gpu
        self.force, self.log_path, self.rebuild_command = force, log_path, rebuild_command
        self.key = ""
        self.cache_hit = False
        self.build = None

    def load(self) -> Path:
        from trtalign.engines.builder import build_engine, import_tensorrt
        from trtalign.engines.cache import EngineCache, cache_key
        from trtalign.engines.plan import BuildSettings, make_build_plan

        trt = self.trt or import_tensorrt()
        onnx = Path(resolve(self.onnx))
        if self.plan is None:
            self.plan = make_build_plan(self.settings or BuildSettings(), onnx, trt.__version__, self.precision)
        owned = self.backend is None and self.gpu is None
        backend, gpu = (self.backend, self.gpu) if self.gpu is not None else gpu_info(
            self.plan_cuda(), self.backend)
        try:
            cc = str(gpu["compute_capability"])
            self.key = cache_key(onnx.read_bytes(), self.plan.to_json(), self.plan.trt_version, cc,
                                 self.plan.plugin_libraries)
            cache = EngineCache(self.cache_dir)
            hit = None if self.force else cache.get(self.key)
            if hit is not None:
                self.cache_hit = True
                return hit
            self.build = build_engine(self.plan, onnx, trt=trt, log_path=self.log_path, backend=backend)
            stored = cache.put(self.key, self.build.engine, trt_version=self.build.trt_version,
                               gpu_name=gpu.get("name", ""), compute_capability=cc, onnx_sha256=self.plan.onnx_sha256,
                               plan=self.plan, build_seconds=self.build.seconds, rebuild_command=self.rebuild_command)
            if self.build.layer_info:
                atomic_write_text(stored.with_suffix(".layers.json"), self.build.layer_info)
            return stored
        finally:
            if owned and backend is not None:
                backend.close()

    def plan_cuda(self) -> str:
        trt_cfg = getattr(self.settings, "trt", None)
        return getattr(trt_cfg, "cuda", "auto") or "auto"


__all__ = ["EngineFromOnnx", "gpu_info"]
