"""CUDA backends: selection, and every cuda-python call made with the real cuda.bindings signatures. Without a
driver each call returns an error code, which must become one EngineError (never a TypeError or a crash)."""

from __future__ import annotations

import numpy as np
import pytest

from trtalign.core.errors import ConfigError, DependencyError, EngineError
from trtalign.core.lazy import available
from trtalign.engines.cuda_backend import CudaPythonBackend, PycudaBackend, select_backend


def test_select_backend():
    with pytest.raises(ConfigError, match="valid choices: 'auto', 'pycuda', 'cuda-python'"):
        select_backend("cupy")
    assert isinstance(select_backend("pycuda"), PycudaBackend)
    assert isinstance(select_backend("cuda-python"), CudaPythonBackend)


@pytest.mark.skipif(available("pycuda"), reason="pycuda is installed here; the missing-dependency path is not testable")
def test_pycuda_missing_says_how_to_install():
    with pytest.raises(DependencyError, match="pip install pycuda"):
        select_backend("pycuda").open()


def _runtime():
    try:
        from cuda.bindings import runtime
    except ImportError as exc:
        pytest.skip(f"cuda-python (cuda.bindings) is not installed: {exc}")
    err = runtime.cudaFree(0)[0]
    if int(err) == 0:
        pytest.skip("a CUDA driver and GPU are present: the no-driver error path is not reachable here")
    return runtime


CALLS = [("alloc", (16,)), ("free", (0,)), ("pinned_empty", ((2, 3), np.float32)), ("create_stream", ()),
         ("htod_async", (0, np.zeros(4, np.float32), 0)), ("dtoh_async", (np.zeros(4, np.float32), 0, 0)),
         ("synchronize", (0,)), ("begin_capture", (0,)), ("end_capture", (0,)), ("launch_graph", (0, 0)),
         ("device_info", ())]


@pytest.mark.parametrize("method,args", CALLS, ids=[c[0] for c in CALLS])
def test_cuda_python_calls_match_real_bindings(method, args):
    backend = CudaPythonBackend()
    backend.rt = _runtime()
    with pytest.raises(EngineError, match="is an NVIDIA driver installed") as exc:
        getattr(backend, method)(*args)
    assert "b'" not in str(exc.value)  # the driver's message is decoded text


def test_cuda_python_open_without_driver_is_one_clear_error():
    _runtime()
    with pytest.raises(EngineError, match=r"context initialisation \(cudaFree\(0\)\) failed"):
        select_backend("cuda-python").open()


def test_graph_instantiate_and_device_properties_signatures():
    rt = _runtime()
    # end_capture calls cudaGraphInstantiate(graph, flags) and device_info cudaGetDeviceProperties(device)
    assert int(rt.cudaGraphInstantiate(rt.cudaGraph_t(), 0)[0]) != 0
    assert int(rt.cudaGetDeviceProperties(0)[0]) != 0
