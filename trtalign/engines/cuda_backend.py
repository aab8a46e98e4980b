"""Device memory, pinned host buffers, one stream and CUDA graphs through either pycuda or cuda-python.

NVIDIA's own samples moved from pycuda to cuda-python (``from cuda.bindings import runtime``) in TensorRT 10.13; many
Jetson users still have pycuda. Both backends expose the same small interface (:class:`CudaBackend`);
``select_backend("auto" | "pycuda" | "cuda-python")`` picks one. Nothing is imported or initialised until
:meth:`CudaBackend.open` is called (no ``pycuda.autoinit``). The calibrator and the TensorRT runner use it.
"""

from __future__ import annotations

import abc
import ctypes
from typing import Any

import numpy as np

from trtalign.core.errors import ConfigError, DependencyError, EngineError, UnsupportedError, choices_text
from trtalign.core.lazy import available

BACKENDS = ("auto", "pycuda", "cuda-python")


class CudaBackend(abc.ABC):
    """The CUDA operations trtalign needs. Pointers are plain ints; streams are backend objects with ``handle``."""

    name = "cuda"

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def alloc(self, nbytes: int) -> int: ...

    @abc.abstractmethod
    def free(self, ptr: int) -> None: ...

    @abc.abstractmethod
    def pinned_empty(self, shape: tuple, dtype: Any) -> np.ndarray: ...

    @abc.abstractmethod
    def create_stream(self) -> Any: ...

    @abc.abstractmethod
    def stream_handle(self, stream: Any) -> int: ...

    @abc.abstractmethod
    def htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None: ...

    @abc.abstractmethod
    def dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None: ...

    @abc.abstractmethod
    def synchronize(self, stream: Any) -> None: ...

    def begin_capture(self, stream: Any) -> None:
        raise UnsupportedError(f"CUDA graph capture is not available with the {self.name} backend")

    def end_capture(self, stream: Any) -> Any:
        raise UnsupportedError(f"CUDA graph capture is not available with the {self.name} backend")

    def launch_graph(self, graph: Any, stream: Any) -> None:
        raise UnsupportedError(f"CUDA graph capture is not available with the {self.name} backend")

    @abc.abstractmethod
    def device_info(self) -> dict:
        """``{"name": "NVIDIA H100", "compute_capability": "9.0"}`` of the current device."""


class CudaPythonBackend(CudaBackend):
    """cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` on older releases)."""

    name = "cuda-python"

    def __init__(self) -> None:
        self.rt: Any = None
        self._pinned: list[int] = []

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            _, text = self.rt.cudaGetErrorString(err) if hasattr(self.rt, "cudaGetErrorString") else (0, str(err))
            text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
            raise EngineError(f"CUDA {what} failed ({self.name}): {text!r}; is an NVIDIA driver installed and a GPU "
                              f"visible?")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    def open(self) -> None:
        try:
            from cuda.bindings import runtime as rt  # cuda-python >= 12.6
        except ImportError:
            try:
                from cuda import cudart as rt  # type: ignore[no-redef]  # older cuda-python
            except ImportError as exc:
                raise DependencyError(f"cuda-python is not importable ({exc}); install it with: "
                                      f"pip install 'trtalign[trt]'") from exc
        self.rt = rt
        self._check(rt.cudaFree(0), "context initialisation (cudaFree(0))")

    def close(self) -> None:
        for ptr in self._pinned:
            self.rt.cudaFreeHost(ptr)
        self._pinned.clear()

    def alloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes})"))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr), "cudaFree")

    def pinned_empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        ptr = int(self._check(self.rt.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))
        self._pinned.append(ptr)
        buf = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def create_stream(self) -> Any:
        return self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream), "cudaMemcpyAsync H2D")

    def dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream), "cudaMemcpyAsync D2H")

    def synchronize(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def begin_capture(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        self._check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream: Any) -> Any:
        graph = self._check(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        return self._check(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def launch_graph(self, graph: Any, stream: Any) -> None:
        self._check(self.rt.cudaGraphLaunch(graph, stream), "cudaGraphLaunch")

    def device_info(self) -> dict:
        dev = self._check(self.rt.cudaGetDevice(), "cudaGetDevice")
        props = self._check(self.rt.cudaGetDeviceProperties(dev), "cudaGetDeviceProperties")
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return {"name": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}"}


class PycudaBackend(CudaBackend):
    """pycuda, with an explicitly retained primary context (no ``pycuda.autoinit``)."""

    name = "pycuda"

    def __init__(self) -> None:
        self.cuda: Any = None
        self.ctx: Any = None
        self._allocs: dict[int, Any] = {}

    def open(self) -> None:
        try:
            import pycuda.driver as cuda
        except ImportError as exc:
            raise DependencyError(f"pycuda is not importable ({exc}); install it with: pip install pycuda") from exc
        try:
            cuda.init()
            self.ctx = cuda.Device(0).retain_primary_context()
            self.ctx.push()
        except cuda.Error as exc:
            raise EngineError(f"CUDA initialisation failed (pycuda): {exc}; is an NVIDIA driver installed?") from exc
        self.cuda = cuda

    def close(self) -> None:
        self._allocs.clear()
        if self.ctx is not None:
            self.ctx.pop()
            self.ctx = None

    def alloc(self, nbytes: int) -> int:
        mem = self.cuda.mem_alloc(max(int(nbytes), 1))
        self._allocs[int(mem)] = mem
        return int(mem)

    def free(self, ptr: int) -> None:
        mem = self._allocs.pop(int(ptr), None)
        if mem is not None:
            mem.free()

    def pinned_empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        return self.cuda.pagelocked_empty(shape, dtype)

    def create_stream(self) -> Any:
        return self.cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self.cuda.memcpy_htod_async(dst, src, stream)

    def dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self.cuda.memcpy_dtoh_async(dst, src, stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def begin_capture(self, stream: Any) -> None:
        if not hasattr(stream, "begin_capture"):
            super().begin_capture(stream)
        stream.begin_capture()

    def end_capture(self, stream: Any) -> Any:
        return stream.end_capture().instance()

    def launch_graph(self, graph: Any, stream: Any) -> None:
        graph.launch(stream)

    def device_info(self) -> dict:
        dev = self.cuda.Context.get_device()
        major, minor = dev.compute_capability()
        return {"name": dev.name(), "compute_capability": f"{major}.{minor}"}


def select_backend(name: str = "auto") -> CudaBackend:
    """``auto`` prefers cuda-python (NVIDIA's current samples), then pycuda. Not opened yet."""
    if name not in BACKENDS:
        raise ConfigError(f"invalid cuda backend {name!r}; valid choices: {choices_text(BACKENDS)}")
    if name == "cuda-python":
        return CudaPythonBackend()
    if name == "pycuda":
        return PycudaBackend()
    if available("cuda"):
        return CudaPythonBackend()
    if available("pycuda"):
        return PycudaBackend()
    raise DependencyError("neither cuda-python nor pycuda is importable (needed to move data to the GPU); install "
                          "one: pip install 'trtalign[trt]' (cuda-python) or pip install pycuda")
