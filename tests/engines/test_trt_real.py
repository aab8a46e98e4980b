"""Real TensorRT: build engines on a GPU machine and check their numbers (``pytest -m trt``; see
docs/TENSORRT_ROUTES.md). Deselected by default; they skip with the reason when TensorRT or a GPU is missing."""

from __future__ import annotations

import numpy as np
import pytest

from trtalign.core.errors import TrtalignError

from .conftest import UNIT_NODES, make_config, make_onnx

pytestmark = pytest.mark.trt


@pytest.fixture(scope="module")
def trt():
    try:
        import tensorrt
    except ImportError as exc:
        pytest.skip(f"TensorRT is not installed here ({exc}); on a GPU machine: pip install 'trtalign[trt]' and run "
                    f"pytest -m trt")
    from trtalign.engines.cuda_backend import select_backend

    try:
        backend = select_backend("auto")
        backend.open()
        info = backend.device_info()
        backend.close()
    except TrtalignError as exc:
        pytest.skip(f"no usable CUDA GPU: {exc}")
    print(f"TensorRT {tensorrt.__version__} on {info['name']} (sm {info['compute_capability']})")
    return tensorrt


def _ort(onnx_path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": x})[0]


def _routes(version: str):
    from trtalign.engines.versions import capabilities

    caps = capabilities(version)
    routes = [("fp32", "qdq", "float", 1e-3), ("fp16", "qdq", "fp16" if not caps.has("builder_flag_fp16") else "float",
                                                2e-2), ("int8", "qdq", "qdq", 5e-2)]
    if caps.has("implicit_calibration"):
        routes += [("int8", "calibrator", "float", 1e-1), ("int8", "dynamic-range", "float", 1e-1)]
    return routes


def test_every_route_of_this_version_builds_and_matches_onnxruntime(trt, tmp_path):
    from trtalign.engines.builder import build_engine
    from trtalign.engines.calibrator import CalibrationBatches
    from trtalign.engines.inspector import summarize_engine_information
    from trtalign.engines.plan import make_build_plan
    from trtalign.runtime.trt_runner import TrtRunner

    files = {"float": make_onnx(tmp_path / "f.onnx"), "qdq": make_onnx(tmp_path / "q.onnx", qdq=True),
             "fp16": make_onnx(tmp_path / "h.onnx", fp16=True)}
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(2, 3, 64, 64)).astype(np.float32)
    ref = _ort(files["float"], x)
    for precision, route, which, tol in _routes(trt.__version__):
        cfg = make_config(tmp_path, int8_route=route, timing_cache=str(tmp_path / "timing.cache"))
        plan = make_build_plan(cfg, files[which], trt.__version__, precision,
                               unit_plan={"model.0.conv": "int8", "model.1.conv": "fp32"}, unit_nodes=UNIT_NODES,
                               ranges={"images": 1.0, "c0": 8.0, "r0": 8.0, "c1": 16.0, "output0": 1.0})
        batches = CalibrationBatches(list(rng.uniform(0, 1, size=(8, 3, 64, 64)).astype(np.float32)), batch_size=2)
        built = build_engine(plan, files[which], log_path=tmp_path / f"{precision}-{route}.log",
                             calibration_batches=batches)
        summary = summarize_engine_information(built.layer_info)
        assert summary.layers, f"{precision}/{route}: inspector returned no layers"
        with TrtRunner(built.engine, check_sidecar=False) as runner:
            out = runner.infer({"images": x})["output0"]
        err = float(np.abs(out - ref).max())
        assert err < tol, f"{precision}/{route}: max |TensorRT - ORT| = {err} (tolerance {tol})"


def test_cuda_python_and_pycuda_backends_agree(trt, tmp_path):
    from trtalign.core.lazy import available
    from trtalign.engines.builder import build_engine
    from trtalign.engines.plan import make_build_plan
    from trtalign.runtime.trt_runner import TrtRunner

    onnx_path = make_onnx(tmp_path / "f.onnx")
    plan = make_build_plan(make_config(tmp_path), onnx_path, trt.__version__, "fp32")
    engine = build_engine(plan, onnx_path).engine
    x = np.ones((3, 3, 64, 64), np.float32)
    outs = {}
    for cuda in ("cuda-python", "pycuda"):
        if not available("cuda" if cuda == "cuda-python" else "pycuda"):
            continue
        for graph in (False, True):
            with TrtRunner(engine, cuda=cuda, cuda_graph=graph, check_sidecar=False) as runner:
                outs[(cuda, graph)] = runner.infer({"images": x})["output0"]
    if not outs:
        pytest.skip("neither cuda-python nor pycuda is installed")
    first = next(iter(outs.values()))
    for key, out in outs.items():
        np.testing.assert_allclose(out, first, atol=1e-5, err_msg=str(key))


def test_proxy_model_map_in_all_precisions(trt, tmp_path):
    """The bundled proxy detector on 50 generated images: TensorRT FP32 matches ONNX Runtime FP32, FP16 and INT8 stay
    within their budgets (measured numbers are printed; run with -s to see them)."""
    from trtalign.core.errors import InputError
    from trtalign.eval.evaluate import evaluate
    from trtalign.data.synth.dataset import generate_dataset
    from trtalign.data.synth.proxy_models import check_split_params, load_card, proxy_model_path

    try:
        model = proxy_model_path("detect")
        params, seed, _ = check_split_params(load_card("detect"))
    except InputError as exc:
        pytest.skip(f"bundled proxy model unavailable: {exc}")
    data = generate_dataset(tmp_path / "data", params, train=16, val=50, seed=seed, show_progress=False)
    ort = evaluate(model, data.out, precisions=["fp32"], backend="ort", workdir=tmp_path / "ort")
    res = evaluate(model, data.out, precisions=["fp32", "fp16", "int8"], backend="trt", workdir=tmp_path / "trt")
    print(ort.summary())
    print(res.summary())
    from trtalign.engines.versions import capabilities

    if not capabilities(trt.__version__).has("builder_flag_fp16"):  # 11.x: FP16 needs the float16-typed ONNX
        assert set(res.skipped) <= {"trt-fp16"} and all("float16" in why for why in res.skipped.values()), res.skipped
    else:
        assert not res.skipped, res.skipped
    base = ort.result("fp32").metrics.stats["map"]
    got = {r.precision: r.metrics.stats["map"] for r in res.results}
    assert base > 0.3, f"proxy model scores {base}: not a meaningful reference"
    assert abs(got["fp32"] - base) < 0.005
    if "fp16" in got:
        assert got["fp16"] > base - 0.01
    assert got["int8"] > base - 0.03
