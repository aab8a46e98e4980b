"""Float16-typed ONNX for strongly typed TensorRT: float16 compute, float32 islands, I/O and decode in float32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from quant_models import write_images, yolo_onnx

from trtalign.core.errors import ConfigError
from trtalign.core.preprocess import letterbox, list_images, read_image
from trtalign.export.fp16 import convert_to_fp16, save_fp16
from trtalign.export.units import Plan, analyze_graph

F16, F32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    return yolo_onnx(tmp_path_factory.mktemp("fp16_models"))


def _types(model):
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)
           + list(inferred.graph.input)}
    out.update({i.name: i.data_type for i in model.graph.initializer})
    return out


def test_fp16_model_runs_and_keeps_decode_float32(yolo, tmp_path):
    analysis = analyze_graph(yolo)
    out, result = convert_to_fp16(yolo, keep_fp32=["model.0.conv"])
    onnx.checker.check_model(out)
    types = _types(out)
    assert [types[i.name] for i in out.graph.input] == [F32]
    assert [types[o.name] for o in out.graph.output] == [F32] and out.graph.output[0].name == "output0"
    nodes = {n.name: n for n in out.graph.node}
    for name in analysis.decode_nodes | analysis.dfl_nodes:  # decode, DFL, final concat: float32 in and out
        for t in nodes[name].output:
            if types.get(t) in (F16, F32):
                assert types[t] == F32, (name, t)
    assert types[nodes["/model.0/conv/Conv"].input[1]] == F32  # kept node: float32 weights, a Cast island
    assert types[nodes["/model.1/conv/Conv"].input[1]] == F16
    assert types[nodes["/model.1/conv/Conv"].output[0]] == F16
    assert result.casts >= 2 and "/model.0/conv/Conv" in result.fp32_nodes
    x = np.concatenate([letterbox(read_image(p), 160)[0] for p in list_images(write_images(tmp_path / "i", 2))])
    ref_s = ort.InferenceSession(str(yolo))
    got_s = ort.InferenceSession(out.SerializeToString())
    for i in range(len(x)):
        ref = ref_s.run(None, {"images": x[i:i + 1]})[0]
        got = got_s.run(None, {"images": x[i:i + 1]})[0]
        assert got.dtype == np.float32
        assert np.abs(got[:, 4:] - ref[:, 4:]).max() < 5e-3  # scores
        assert np.abs(got[:, :4] - ref[:, :4]).max() < 0.5  # boxes in pixels of a 160 px input


def test_plan_fp32_units_and_determinism(yolo, tmp_path):
    analysis = analyze_graph(yolo)
    plan = Plan(units={u.name: ("fp32" if u.name == "model.2.m.0.cv1.conv" else "fp16") for u in analysis.units})
    a = save_fp16(yolo, tmp_path / "a.onnx", plan=plan)
    b = save_fp16(yolo, tmp_path / "b.onnx", plan=plan)
    assert a.sha256 == b.sha256 and (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert "/model.2/m.0/cv1/conv/Conv" in a.fp32_nodes
    with pytest.raises(ConfigError, match="matches no node or unit"):
        convert_to_fp16(yolo, keep_fp32=["model.77.*"])
