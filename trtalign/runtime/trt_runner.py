"""TrtRunner: run a serialized TensorRT engine through the name-based I/O API (TensorRT 8.5 ... 11.x).

Only the API every supported version shares is used: ``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_dtype``, ``get_tensor_shape``, ``get_tensor_profile_shape``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3`` (no bindings, no ``execute_async_v2``, no ``device_memory_size``). One CUDA stream, pinned host
buffers re-used while shapes fit, async copies, optional CUDA-graph capture per input-shape set, and two device-memory
backends (:mod:`trtalign.engines.cuda_backend`: pycuda or cuda-python). Plugin libraries are loaded before the engine is
deserialised; the engine's sidecar (see :mod:`trtalign.engines.cache`) is checked against this TensorRT first, and a
DLA engine is deserialised on the DLA core its sidecar's plan names (``dla_core=`` overrides).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from trtalign.core.errors import EngineError, InputError
from trtalign.core.logging import get_logger
from trtalign.engines.cuda_backend import select_backend
from trtalign.engines.plugins_loader import load_plugin_libraries
from trtalign.runtime.base import Runner, TensorMeta

log = get_logger(__name__)

#: TensorRT DataType member name -> numpy dtype
TRT_TO_NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT8": np.int8, "BOOL": np.bool_,
                "UINT8": np.uint8, "INT64": np.int64, "BF16": None, "FP8": None}


class TrtRunner(Runner):
    """Runs a TensorRT engine; use it as a context manager.

    Args:
        engine: an engine file (with its sidecar), serialized bytes, or a loader returning a file (e.g.
            :class:`trtalign.engines.loaders.EngineFromOnnx`), called on :meth:`activate`.
        plugins: plugin libraries loaded before deserialisation. cuda: ``auto`` | ``pycuda`` | ``cuda-python``.
        cuda_graph: capture one CUDA graph per input-shape set. check_sidecar: refuse an engine whose sidecar names
            another TensorRT version or GPU architecture (a missing sidecar only warns).

    Raises (on activate): InputError (missing file), EngineError (built elsewhere, cannot deserialise),
    DependencyError (no TensorRT / CUDA bindings).

    Example::

        with TrtRunner("out/model.int8.engine") as runner:
            outputs = runner.infer({"images": x})
    """

    def __init__(self, engine: str | os.PathLike | bytes, plugins: Sequence[str | os.PathLike] = (),
                 cuda: str = "auto", cuda_graph: bool = False, name: str = "trt", check_sidecar: bool = True,
                 trt: Any = None, backend: Any = None, compute_capability: str | None = None,
                 dla_core: int | None = None):
        super().__init__(name)
        self.engine_source = engine
        self.plugins = list(plugins)
        self.cuda = cuda
        self.cuda_graph = bool(cuda_graph)
        self.check_sidecar = check_sidecar
        self._trt = trt
        self._backend = backend
        self._compute_capability = compute_capability
        self.dla_core = dla_core  # None: the DLA core in the engine's sidecar plan, if any (a GPU engine has none)
        self._reset()

    def _reset(self) -> None:
        self.engine = self.context = self.runtime = self.stream = self.logger = None
        self._inputs: list[TensorMeta] = []
        self._outputs: list[TensorMeta] = []
        self._device: dict[str, tuple[int, int]] = {}  # name -> (ptr, nbytes)
        self._host: dict[str, np.ndarray] = {}
        self._shapes: dict[str, tuple] = {}
        self._graphs: dict[tuple, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    def activate_impl(self) -> None:
        from trtalign.engines.builder import import_tensorrt

        trt = self._trt or import_tensorrt()
        self._trt = trt
        backend = self._backend or select_backend(self.cuda)
        backend.open()
        self._backend = backend
        try:
            self._load(trt, backend)
        except BaseException:
            self.deactivate_impl()  # free what was allocated; activate() failed, so deactivate() would not run
            raise

    def _load(self, trt: Any, backend: Any) -> None:
        from trtalign.engines.builder import make_logger

        data = self._engine_bytes(trt, backend)
        self.logger = make_logger(trt)
        load_plugin_libraries(trt, self.logger, self.plugins)
        self.runtime = trt.Runtime(self.logger)
        if self.dla_core is not None:  # a DLA engine deserializes on the core it was built for
            self.runtime.DLA_core = int(self.dla_core)
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            errors = "; ".join(self.logger.errors[-3:]) or "no message"
            raise EngineError(f"TensorRT {trt.__version__} cannot deserialize {self._label()}: {errors}. Engines run "
                              f"only on the TensorRT version and GPU they were built for (and need their plugin "
                              f"libraries); rebuild it with `trtalign build CONFIG`")
        self.context = self.engine.create_execution_context()
        self.stream = backend.create_stream()
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            mode = getattr(self.engine.get_tensor_mode(name), "name", "")
            dtype_name = getattr(self.engine.get_tensor_dtype(name), "name", "")
            np_dtype = TRT_TO_NUMPY.get(dtype_name)
            if np_dtype is None:
                raise EngineError(f"engine tensor {name!r} has TensorRT dtype {dtype_name}, which trtalign cannot "
                                  f"exchange with numpy; valid: {sorted(k for k, v in TRT_TO_NUMPY.items() if v)}")
            shape = tuple(None if int(d) < 0 else int(d) for d in self.engine.get_tensor_shape(name))
            meta = TensorMeta(name, np.dtype(np_dtype).name, shape)
            (self._inputs if mode == "INPUT" else self._outputs).append(meta)

    def deactivate_impl(self) -> None:
        backend = self._backend
        try:
            for ptr, _ in self._device.values():
                backend.free(ptr)
            if backend is not None:
                backend.close()
        finally:
            if self.logger is not None:
                self.logger.close()
            self._reset()

    def _label(self) -> str:
        return str(self.engine_source) if not isinstance(self.engine_source, (bytes, bytearray)) else "the engine"

    def _engine_bytes(self, trt: Any, backend: Any) -> bytes:
        from trtalign.export.loaders import resolve

        self.engine_source = resolve(self.engine_source)
        if isinstance(self.engine_source, (bytes, bytearray)):
            return bytes(self.engine_source)
        path = Path(self.engine_source)
        if not path.is_file():
            raise InputError(f"engine file not found: {path}; build one with `trtalign build CONFIG`")
        if self.check_sidecar:
            from trtalign.engines.cache import check_engine_compatible

            cc = self._compute_capability
            if cc is None:
                try:
                    cc = backend.device_info()["compute_capability"]
                except Exception:  # noqa: BLE001 - the sidecar check is advisory when the GPU cannot be queried
                    cc = None
            check_engine_compatible(path, trt.__version__, cc)
            if self.dla_core is None:
                from trtalign.engines.cache import read_sidecar

                sidecar = read_sidecar(path)
                plan = sidecar.plan if sidecar is not None and isinstance(sidecar.plan, dict) else {}
                self.dla_core = plan.get("dla_core")
        return path.read_bytes()

    # ------------------------------------------------------------------ metadata
    def input_metadata(self) -> list[TensorMeta]:
        return list(self._inputs)

    def output_metadata(self) -> list[TensorMeta]:
        return list(self._outputs)

    def profile_shapes(self, name: str) -> tuple:
        """(min, opt, max) of input ``name`` in optimisation profile 0."""
        return tuple(tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(name, 0))

    # ------------------------------------------------------------------ inference
    def _ensure(self, name: str, shape: tuple, dtype: Any) -> None:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr, have = self._device.get(name, (0, 0))
        if nbytes > have:
            if ptr:
                self._backend.free(ptr)
            ptr, have = self._backend.alloc(nbytes), nbytes
            self._device[name] = (ptr, have)
            self._graphs.clear()  # addresses changed
        host = self._host.get(name)
        if host is None or host.shape != tuple(shape) or host.dtype != np.dtype(dtype):
            self._host[name] = self._backend.pinned_empty(tuple(shape), dtype)
        self.context.set_tensor_address(name, ptr)

    def _set_input_shapes(self, feed: Mapping[str, np.ndarray]) -> None:
        for meta in self._inputs:
            arr = feed[meta.name]
            if arr.ndim != len(meta.shape) or any(d is not None and d != s for d, s in zip(meta.shape, arr.shape)):
                raise InputError(f"input {meta.name!r}: expected shape {list(meta.shape)} (None = dynamic), got "
                                 f"{list(arr.shape)}")
            if self._shapes.get(meta.name) == arr.shape:
                continue
            if any(d is None for d in meta.shape):
                lo, _, hi = self.profile_shapes(meta.name)
                if any(s < a or s > b for s, a, b in zip(arr.shape, lo, hi)):
                    raise InputError(f"input {meta.name!r} shape {list(arr.shape)} is outside the engine's profile "
                                     f"min {list(lo)} .. max {list(hi)}; rebuild with a wider batch range")
            if not self.context.set_input_shape(meta.name, tuple(int(s) for s in arr.shape)):
                raise InputError(f"TensorRT rejected input shape {list(arr.shape)} for {meta.name!r}")
            self._shapes[meta.name] = arr.shape

    def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {m.name: np.ascontiguousarray(feed_dict[m.name], dtype=m.dtype) for m in self._inputs}
        self._set_input_shapes(feed)
        for meta in self._inputs:
            self._ensure(meta.name, feed[meta.name].shape, meta.dtype)
            np.copyto(self._host[meta.name], feed[meta.name])
        out_shapes = {}
        for meta in self._outputs:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(meta.name))
            if any(d < 0 for d in shape):
                raise EngineError(f"output {meta.name!r} has a data-dependent shape {list(shape)}, which TrtRunner "
                                  f"does not support")
            out_shapes[meta.name] = shape
            self._ensure(meta.name, shape, meta.dtype)
        key = tuple(feed[m.name].shape for m in self._inputs)
        b, s = self._backend, self.stream
        for meta in self._inputs:
            b.htod_async(self._device[meta.name][0], self._host[meta.name], s)
        if self.cuda_graph:
            graph = self._graphs.get(key)
            if graph is None:
                self._execute()  # warm-up outside capture (TensorRT allocates lazily on first run)
                b.begin_capture(s)
                self._execute()
                graph = self._graphs[key] = b.end_capture(s)
            b.launch_graph(graph, s)
        else:
            self._execute()
        for meta in self._outputs:
            b.dtoh_async(self._host[meta.name], self._device[meta.name][0], s)
        b.synchronize(s)
        return {m.name: np.array(self._host[m.name], copy=True) for m in self._outputs}

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self._backend.stream_handle(self.stream)):
            errors = "; ".join(self.logger.errors[-3:]) if self.logger is not None else ""
            raise EngineError(f"TensorRT execute_async_v3 failed for {self._label()}: {errors or 'no message'}")
