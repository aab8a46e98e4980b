"""TensorRT-style Q/DQ placement: validity (zero point 0, scales > 0, per-channel only on weights, checker, ORT),
placement rules, closeness to FP32, the naive collapse, determinism, and bad input."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from quant_models import small_graph, write_images, yolo_onnx

from trtalign.core.errors import InputError, ModelError
from trtalign.core.preprocess import letterbox, list_images, read_image
from trtalign.export.calibrate import collect_statistics
from trtalign.export.qdq import insert_qdq, save_qdq
from trtalign.export.ranges import Ranges, TensorRange
from trtalign.export.units import Plan, analyze_graph, default_plan


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("qdq")
    model = yolo_onnx(root / "models")
    images = write_images(root / "images", 10)
    data = collect_statistics(model, images, num=10, min_images=8)
    analysis = analyze_graph(model)
    return model, images, data.ranges("percentile", 99.99), analysis


def _inits(model):
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model),
                                providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["output0"], {"images": x[i:i + 1]})[0] for i in range(len(x))])


def test_every_qdq_is_valid(setup):
    model, _, ranges, analysis = setup
    out, result = insert_qdq(model, ranges, default_plan(analysis.units))
    onnx.checker.check_model(out)
    inits = _inits(out)
    qs = [n for n in out.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in out.graph.node if n.op_type == "DequantizeLinear"]
    assert len(qs) == len(dqs) == result.activation_qdq + result.weight_qdq > 0
    for node in qs + dqs:
        scale, zp = inits[node.input[1]], inits[node.input[2]]
        assert zp.dtype == np.int8 and not zp.any()  # symmetric: zero point 0
        assert np.all(scale > 0) and np.all(np.isfinite(scale))
        per_channel = scale.ndim == 1
        if node.op_type == "QuantizeLinear":
            assert per_channel == (node.input[0] in inits)  # per-channel exactly on weights (initializers)
            if per_channel:
                w = inits[node.input[0]]
                attrs = {a.name: a.i for a in node.attribute}
                assert attrs["axis"] == 0 and scale.shape == (w.shape[0],)
                assert np.allclose(scale, np.abs(w).reshape(w.shape[0], -1).max(1) / 127, rtol=1e-6)
    assert max(o.version for o in out.opset_import if o.domain in ("", "ai.onnx")) >= 13


def test_placement_rules(setup):
    model, _, ranges, analysis = setup
    out, _ = insert_qdq(model, ranges, default_plan(analysis.units))
    prod = {o: n for n in out.graph.node for o in n.output}
    qnodes = [n for n in out.graph.node if n.op_type == "QuantizeLinear"]
    # no Q/DQ on the output of a weighted op, nor anywhere in the decode region
    for q in qnodes:
        src = prod.get(q.input[0])
        assert src is None or src.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul")
        assert src is None or src.name not in analysis.decode_nodes
    for n in out.graph.node:
        if n.name in analysis.decode_nodes or n.name in analysis.dfl_nodes:
            assert not any(prod.get(t) is not None and prod[t].op_type == "DequantizeLinear" for t in n.input), n.name
    # residual Add: the shortcut reads a DQ, the conv branch does not
    for u in analysis.units:
        for add, shortcut in u.residuals:
            node = next(n for n in out.graph.node if n.name == add)
            kinds = [prod[t].op_type if t in prod else None for t in node.input]
            assert kinds.count("DequantizeLinear") == 1
            assert prod[node.input[kinds.index("DequantizeLinear")]].input[0].startswith(shortcut)
    # a Concat's inputs share one scale, and the scale is the same through MaxPool
    inits = _inits(out)
    sppf = next(n for n in out.graph.node if n.name == "/model.9/Concat")
    scales = {float(inits[prod[t].input[1]]) for t in sppf.input}
    assert len(scales) == 1
    for n in out.graph.node:
        if n.op_type == "MaxPool":
            assert prod[n.input[0]].op_type == "DequantizeLinear"  # DQ moves forward through MaxPool
            assert float(inits[prod[n.input[0]].input[1]]) in scales


def test_close_to_fp32_and_naive_collapses_scores(setup):
    model, images, ranges, analysis = setup
    x = np.concatenate([letterbox(read_image(p), 160)[0] for p in list_images(images)[:3]])
    ref = _run(model, x)
    ours = _run(insert_qdq(model, ranges, default_plan(analysis.units))[0], x)
    naive = _run(insert_qdq(model, ranges, mode="naive")[0], x)
    ref_scores, ours_scores, naive_scores = ref[:, 4:], ours[:, 4:], naive[:, 4:]
    assert 0.3 < ref_scores.mean() < 0.7  # scores carry signal in this model
    assert np.abs(ours_scores - ref_scores).mean() < 0.01
    box_scale = np.abs(ref[:, :4]).mean()
    assert np.abs(ours[:, :4] - ref[:, :4]).mean() < 0.01 * box_scale
    # naive: boxes (pixels) and scores ([0, 1]) leave the final Concat with one scale -> scores quantize to 0
    assert np.abs(naive_scores - ref_scores).mean() > 0.3
    assert np.abs(naive_scores - ref_scores).mean() > 30 * np.abs(ours_scores - ref_scores).mean()


def test_plan_controls_units_and_output_is_byte_identical(setup, tmp_path):
    model, _, ranges, analysis = setup
    plan = default_plan(analysis.units)
    a = save_qdq(model, ranges, tmp_path / "a.onnx", plan)
    b = save_qdq(model, ranges, tmp_path / "b.onnx", Plan(units=dict(plan.units)))
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes() and a.sha256 == b.sha256
    off = dict(plan.units)
    off["model.1.conv"] = "fp16"
    out, res = insert_qdq(model, ranges, Plan(units=off))
    assert res.sha256 != a.sha256 and res.activation_qdq == a.activation_qdq - 1 and res.weight_qdq == a.weight_qdq - 1
    conv = next(n for n in out.graph.node if n.name == "/model.1/conv/Conv")
    prod = {o: n for n in out.graph.node for o in n.output}
    assert all(t not in prod or prod[t].op_type != "DequantizeLinear" for t in conv.input)
    nothing, res0 = insert_qdq(model, ranges, Plan(units={u.name: "fp32" for u in analysis.units}))
    assert res0.activation_qdq == res0.weight_qdq == 0 and res0.int8_mac_fraction == 0.0


def test_ranges_from_another_model(setup):
    model, _, ranges, analysis = setup
    other = Ranges(tensors={"images": TensorRange(1.0, "minmax"), "/other/x": TensorRange(2.0, "minmax")},
                   method="minmax", model_file="other.onnx")
    with pytest.raises(InputError) as err:
        insert_qdq(model, other, default_plan(analysis.units))
    msg = str(err.value)
    assert "missing" in msg and "/model.0/act/Mul_output_0" in msg and "other.onnx" in msg


def test_axes_of_conv_transpose_and_gemm(tmp_path):
    path = small_graph(tmp_path / "small.onnx")
    analysis = analyze_graph(path)
    names = {u.name: u for u in analysis.units}
    assert [(u.kind, u.role) for u in analysis.units] == [("conv", "body")] * 2 + [("conv", "head_output")]
    ranges = Ranges(tensors={t: TensorRange(3.0, "minmax") for t in analysis.qdq_candidates}, method="minmax")
    out, res = insert_qdq(path, ranges, Plan(units={u: "int8" for u in names}))
    inits = _inits(out)
    axes = {}
    for n in out.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] in inits:
            axes[n.input[0]] = ({a.name: a.i for a in n.attribute}["axis"], inits[n.input[1]].shape)
    assert axes == {"w_conv": (0, (4,)), "w_convt": (1, (2,)), "w_gemm": (0, (5,))}
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    ref = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    got = ort.InferenceSession(out.SerializeToString()).run(None, {"x": x})[0]
    assert np.abs(ref - got).max() < 0.05


def test_old_opset_is_refused(tmp_path):
    path = small_graph(tmp_path / "old.onnx", opset=12)
    with pytest.raises(ModelError, match="opset >= 13"):
        insert_qdq(path, Ranges(tensors={}, method="minmax"))


def test_quantize_cli(setup, tmp_path, cli):
    import json

    from trtalign.export.ranges import save_ranges

    model, _, ranges, analysis = setup
    rpath = save_ranges(ranges, tmp_path / "ranges.json")
    out, js, plan = tmp_path / "m.qdq.onnx", tmp_path / "q.json", tmp_path / "plan.json"
    code, stdout, stderr = cli("quantize", str(model), "--ranges", str(rpath), "--exclude", "model.0.*",
                               "--out", str(out), "--list-units", "--save-plan", str(plan), "--json", str(js))
    assert code == 0, stderr
    assert "model.2.m.0.cv1.conv" in stdout and "% of conv MACs INT8" in stdout
    result = json.loads(js.read_text())
    assert result["plan"]["model.0.conv"] == "fp16" and result["excluded"] == ["model.0.conv"]
    assert 0.9 <= result["int8_mac_fraction"] < 1.0 and out.is_file()
    # the saved plan reproduces the same bytes
    code, _, stderr = cli("quantize", str(model), "--ranges", str(rpath), "--plan", str(plan),
                          "--out", str(tmp_path / "again.onnx"))
    assert code == 0, stderr
    assert (tmp_path / "again.onnx").read_bytes() == out.read_bytes()
    code, _, stderr = cli("quantize", str(model), "--ranges", str(rpath), "--naive", "--plan", str(plan),
                          "--out", str(tmp_path / "x.onnx"))
    assert code == 2 and "--naive" in stderr and not (tmp_path / "x.onnx").exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "trtalign-ranges", "tensors": {"images": {"amax": 1.0}}}))
    code, _, stderr = cli("quantize", str(model), "--ranges", str(bad), "--out", str(tmp_path / "y.onnx"))
    assert code == 2 and "missing" in stderr and "Traceback" not in stderr and not (tmp_path / "y.onnx").exists()


def test_yolo11_attention_matmuls_are_units_and_run(tmp_path):
    """yolo11n's C2PSA attention has MatMuls of two activations: per-tensor Q/DQ on both, no weight Q/DQ."""
    model = yolo_onnx(tmp_path / "m11", "yolo11n.yaml")
    analysis = analyze_graph(model)
    mm = [u for u in analysis.units if u.name.endswith("matmul") or "MatMul" in u.nodes[0]]
    assert mm and all(len(u.tensors) == 2 and not u.weights for u in mm)
    images = write_images(tmp_path / "imgs", 8)
    ranges = collect_statistics(model, images, num=8).ranges("minmax")
    out, res = insert_qdq(model, ranges, default_plan(analysis.units))
    x = letterbox(read_image(list_images(images)[0]), 160)[0]
    ref, got = _run(model, x), _run(out, x)
    assert np.abs(got[:, 4:] - ref[:, 4:]).mean() < 0.01 and res.int8_mac_fraction >= 0.9
