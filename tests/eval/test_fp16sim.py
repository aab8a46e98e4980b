"""FP16 emulation: network tensors and weights rounded to float16, decode kept in FP32, ONNX Runtime keeps the Casts."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtalign.core.errors import ModelError
from trtalign.export.fp16sim import fp16sim_model, round_to_fp16, write_fp16sim_onnx


def toy_model() -> onnx.ModelProto:
    """images -> Conv -> Sigmoid -> output0 (the raw head) -> Mul by a non-fp16 constant -> boxes (the decode)."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, 4).astype(np.float32)
    k = np.array(1.0001, np.float32)  # not representable in float16
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["conv"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["conv"], ["output0"], name="act0"),
             helper.make_node("Mul", ["output0", "k"], ["boxes"], name="decode_mul")]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
                               numpy_helper.from_array(k, "k")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def run_ort(model: onnx.ModelProto, x: np.ndarray, outputs=("boxes", "output0"), level: str = "ORT_ENABLE_ALL"):
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in outputs:
        if name not in [o.name for o in m.graph.output]:
            m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": x})))


def numpy_fp16_reference(model: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same computation by hand: fp16-rounded input, weights and every network output, FP32 decode."""
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    w, b, k = round_to_fp16(init["w"]).astype(np.float64), round_to_fp16(init["b"]), init["k"]
    xr = np.pad(round_to_fp16(x), ((0, 0), (0, 0), (1, 1), (1, 1))).astype(np.float64)
    conv = np.zeros((1, 4, 8, 8))
    for i in range(3):
        for j in range(3):
            conv += np.einsum("nchw,oc->nohw", xr[:, :, i:i + 8, j:j + 8], w[:, :, i, j])
    conv = round_to_fp16((conv + b[None, :, None, None]).astype(np.float32))
    out0 = round_to_fp16((1 / (1 + np.exp(-conv.astype(np.float64)))).astype(np.float32))
    return out0, out0 * k


@pytest.mark.parametrize("level", ["ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_ALL"])
def test_network_rounded_decode_fp32(level):
    model = toy_model()
    sim, info = fp16sim_model(model)
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 8, 8)).astype(np.float32)
    out = run_ort(sim, x, level=level)
    ref0, ref_boxes = numpy_fp16_reference(model, x)
    # every value of the raw head is a float16 value: ONNX Runtime did not fold the Cast pairs away
    assert np.array_equal(round_to_fp16(out["output0"]), out["output0"])
    np.testing.assert_allclose(out["output0"], ref0, atol=1e-3)  # conv accumulation order differs only
    # the decode multiplies in FP32: its output is not rounded to float16 any more
    np.testing.assert_allclose(out["boxes"], out["output0"] * np.float32(1.0001), rtol=1e-7)
    assert not np.array_equal(round_to_fp16(out["boxes"]), out["boxes"])
    assert info.boundary == "output0" and info.nodes_emulated == 2 and info.nodes_fp32 == 1
    assert info.tensors_rounded == 3  # images, conv, output0
    assert info.weights_rounded == 2 and info.weight_values_changed > 0  # w and b, not the decode constant k
    k = [i for i in sim.graph.initializer if i.name == "k"][0]
    assert numpy_helper.to_array(k) == np.float32(1.0001)
    # the FP32 model differs from the emulation by about float16 resolution
    fp32 = run_ort(model, x)
    diff = np.abs(fp32["output0"] - out["output0"]).max()
    assert 0 < diff < 2e-3
    onnx.checker.check_model(sim)


def test_whole_graph_without_boundary_and_input_unchanged():
    model = toy_model()
    before = model.SerializeToString()
    sim, info = fp16sim_model(model, boundary=None)
    assert model.SerializeToString() == before  # the input model is not modified
    out = run_ort(sim, np.random.default_rng(2).uniform(0, 1, (1, 3, 8, 8)).astype(np.float32))
    assert np.array_equal(round_to_fp16(out["boxes"]), out["boxes"])  # decode rounded too
    assert info.boundary is None and info.nodes_fp32 == 0 and info.tensors_rounded == 4


def test_errors(tmp_path):
    sim, _ = fp16sim_model(toy_model())
    with pytest.raises(ModelError, match="already an FP16 emulation"):
        fp16sim_model(sim)
    with pytest.raises(ModelError, match="not found"):
        write_fp16sim_onnx(tmp_path / "missing.onnx", tmp_path / "out.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="cannot read"):
        write_fp16sim_onnx(tmp_path / "bad.onnx", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_overflow_becomes_inf():
    assert np.isinf(round_to_fp16(np.array([70000.0], np.float32)))[0]
    assert round_to_fp16(np.array([65504.0], np.float32))[0] == 65504.0


def test_exported_yolo_head_rounded_nms_intact(tmp_path):
    """A real exported yolov8n (random init, 96 px): raw head is float16-valued, NMS still runs."""
    from trtalign.export.graph_nms import expose_outputs
    from trtalign.export.onnx_export import export_onnx
    from trtalign.runtime.ort_runner import OrtRunner

    export_onnx("yolov8n.yaml", tmp_path / "m.onnx", imgsz=96)
    info = write_fp16sim_onnx(tmp_path / "m.onnx", tmp_path / "m16.onnx")
    assert info.boundary == "output0" and info.nodes_fp32 >= 2 and info.tensors_rounded > 100
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 96, 96)).astype(np.float32)
    outs = {}
    for name in ("m", "m16"):
        model = expose_outputs(onnx.load(str(tmp_path / f"{name}.onnx")), ["output0"])
        with OrtRunner(model, name=name) as r:
            outs[name] = r.infer({"images": x})
    raw32, raw16 = outs["m"]["output0"], outs["m16"]["output0"]
    assert np.array_equal(round_to_fp16(raw16), raw16)
    scale = np.abs(raw32).max()
    assert 0 < np.abs(raw32 - raw16).max() < 2e-2 * scale
    assert set(outs["m16"]) >= {"num_detections", "detection_boxes", "detection_scores", "detection_classes"}
