"""The NMS custom ops in ONNX Runtime: every golden case through a one-node ONNX graph, plus the model preparation."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx builds the test graphs")
ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime runs the custom ops")
pytest.importorskip("onnxruntime_extensions", reason="the custom ops are onnxruntime-extensions PyOps")

from onnx import TensorProto, helper  # noqa: E402

from trtalign.core.errors import ModelError  # noqa: E402
from trtalign.plugins import ort_ops  # noqa: E402
from trtalign.plugins.golden import GOLDEN_CASES, CASES_BY_NAME, check_outputs  # noqa: E402
from trtalign.plugins.reference import REFERENCE_OPS  # noqa: E402

OUTPUTS = ["num_detections", "detection_boxes", "detection_scores", "detection_classes"]


def nms_model(op: str, attributes: dict, domain: str = "TRT", dim: int | None = None) -> onnx.ModelProto:
    """A graph with only the NMS node, dynamic B, N, C (as the export writes it)."""
    dim = dim or (4 if op == "EfficientNMS_TRT" else 5)
    k = attributes["max_output_boxes"]
    node = helper.make_node(op, ["boxes", "scores"], OUTPUTS, name="nms", domain=domain, **attributes)
    graph = helper.make_graph(
        [node], "nms_only",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", "N", dim]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "N", "C"])],
        [helper.make_tensor_value_info("num_detections", TensorProto.INT32, ["batch", 1]),
         helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, ["batch", k, dim]),
         helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, ["batch", k]),
         helper.make_tensor_value_info("detection_classes", TensorProto.INT32, ["batch", k])])
    imports = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=imports, ir_version=8)


def session_for(model: onnx.ModelProto) -> ort.InferenceSession:
    prepared = ort_ops.prepare_model_for_ort(model)
    return ort.InferenceSession(prepared.SerializeToString(), ort_ops.make_session_options(),
                                providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=lambda c: c.name)
def test_ort_matches_golden_case(case):
    model = nms_model(case.op, case.attributes)
    onnx.checker.check_model(model)
    outputs = session_for(model).run(None, {"boxes": case.boxes, "scores": case.scores})
    assert [o.dtype for o in outputs] == [np.int32, np.float32, np.float32, np.int32]
    result = check_outputs(case, outputs)
    assert result, result.mismatches


@pytest.mark.parametrize("domain", ["TRT", "trt.plugins", ""])
def test_prepare_ignores_the_source_domain(domain):
    case = CASES_BY_NAME["rotated_overlap"]
    model = nms_model(case.op, case.attributes, domain=domain)
    assert check_outputs(case, session_for(model).run(None, {"boxes": case.boxes, "scores": case.scores}))


def test_prepare_returns_a_retargeted_copy_with_attributes_kept():
    case = CASES_BY_NAME["score_activation_sigmoid"]
    model = nms_model(case.op, case.attributes)
    before = model.SerializeToString()
    prepared = ort_ops.prepare_model_for_ort(model)
    assert model.SerializeToString() == before, "the input model is not modified"
    node = prepared.graph.node[0]
    assert node.domain == ort_ops.CUSTOM_DOMAIN
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["score_threshold"] == pytest.approx(0.5) and attrs["score_activation"] == 1
    assert attrs["plugin_version"] == b"1"
    again = ort_ops.prepare_model_for_ort(prepared)
    assert [o.domain for o in again.opset_import].count(ort_ops.CUSTOM_DOMAIN) == 1


def test_prepare_fills_plugin_defaults_and_normalises_types():
    node_attrs = dict(score_threshold=0, iou_threshold=0.5, max_output_boxes=2)  # 0 written as an int
    model = nms_model("EfficientNMS_TRT", node_attrs)
    prepared = ort_ops.prepare_model_for_ort(model)
    attrs = {a.name: helper.get_attribute_value(a) for a in prepared.graph.node[0].attribute}
    assert attrs["score_threshold"] == 0.0 and isinstance(attrs["score_threshold"], float)
    assert attrs["background_class"] == -1 and attrs["box_coding"] == 0 and attrs["class_agnostic"] == 0
    boxes = np.array([[[0, 0, 1, 1], [5, 5, 6, 6]]], np.float32)
    scores = np.array([[[0.0], [0.5]]], np.float32)
    out = session_for(model).run(None, {"boxes": boxes, "scores": scores})
    assert out[0].tolist() == [[2]] and out[2].tolist() == [[0.5, 0.0]]


def test_prepare_rejects_missing_required_attribute():
    model = nms_model("EfficientNMS_TRT", dict(score_threshold=0.2, iou_threshold=0.5, max_output_boxes=2))
    model.graph.node[0].attribute.pop(1)  # iou_threshold
    with pytest.raises(ModelError, match="iou_threshold"):
        ort_ops.prepare_model_for_ort(model)


def test_prepare_rejects_wrong_attribute_type():
    model = nms_model("EfficientNMS_TRT", dict(score_threshold=0.2, iou_threshold=0.5, max_output_boxes=2))
    model.graph.node[0].attribute[2].CopyFrom(helper.make_attribute("max_output_boxes", 2.5))
    with pytest.raises(ModelError, match="max_output_boxes"):
        ort_ops.prepare_model_for_ort(model)


def test_prepare_matches_op_type_exactly():
    model = nms_model("EfficientNMS_TRT_v2", dict(score_threshold=0.2, iou_threshold=0.5, max_output_boxes=2))
    prepared = ort_ops.prepare_model_for_ort(model)
    assert prepared.graph.node[0].domain == "TRT"
    assert all(o.domain != ort_ops.CUSTOM_DOMAIN for o in prepared.opset_import)


def test_registration_is_explicit_and_idempotent():
    path = ort_ops.register_custom_ops()
    assert ort_ops.register_custom_ops() == path
    assert set(ort_ops._registered) == set(ort_ops.NMS_OP_TYPES)
    base = ort.SessionOptions()
    base.intra_op_num_threads = 1
    assert ort_ops.make_session_options(base) is base
    assert ort_ops.make_session_options(base) is base  # twice on one object: registered once (ORT would fail)
    case = CASES_BY_NAME["overlap_suppressed"]
    prepared = ort_ops.prepare_model_for_ort(nms_model(case.op, case.attributes))
    s1 = ort.InferenceSession(prepared.SerializeToString(), base, providers=["CPUExecutionProvider"])
    s2 = session_for(nms_model(case.op, case.attributes))
    for s in (s1, s2):
        assert check_outputs(case, s.run(None, {"boxes": case.boxes, "scores": case.scores}))


def test_import_registers_nothing():
    import subprocess
    import sys

    code = ("import trtalign.plugins.ort_ops as m, sys; "
            "assert not m._registered; assert 'onnxruntime_extensions' not in sys.modules; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize("op", ["EfficientNMS_TRT", "EfficientRotatedNMS_TRT"])
def test_ort_equals_reference_on_random_batches_with_dynamic_shapes(op):
    rng = np.random.default_rng(5)
    attrs = dict(score_threshold=0.3, iou_threshold=0.45, max_output_boxes=30, background_class=-1,
                 score_activation=0, class_agnostic=0, box_coding=0 if op == "EfficientNMS_TRT" else 1,
                 plugin_version="1")
    session = session_for(nms_model(op, attrs))
    for b, n, c in [(1, 200, 3), (3, 50, 2), (2, 0, 4)]:
        xy = rng.uniform(0, 100, (b, n, 2))
        wh = rng.uniform(2, 30, (b, n, 2))
        if op == "EfficientNMS_TRT":
            boxes = np.concatenate([xy, xy + wh], -1)
        else:
            boxes = np.concatenate([xy, wh, rng.uniform(-3, 3, (b, n, 1))], -1)
        boxes = boxes.astype(np.float32)
        scores = rng.uniform(0, 1, (b, n, c)).astype(np.float32)
        got = session.run(None, {"boxes": boxes, "scores": scores})
        want = REFERENCE_OPS[op](boxes, scores, **attrs)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and np.array_equal(g, w)
        if n:
            assert got[0].min() > 0


# ------------------------------------------------------------------ foreign files: attributes TensorRT requires
@pytest.mark.parametrize("op", ["EfficientNMS_TRT", "EfficientRotatedNMS_TRT"])
@pytest.mark.parametrize("missing", ["background_class", "score_activation", "box_coding"])
def test_prepare_warns_when_tensorrt_required_attribute_is_missing(caplog, op, missing):
    attrs = dict(score_threshold=0.2, iou_threshold=0.5, max_output_boxes=2, background_class=-1,
                 score_activation=0, box_coding=0 if op == "EfficientNMS_TRT" else 1)
    del attrs[missing]
    with caplog.at_level("WARNING", logger="trtalign"):
        prepared = ort_ops.prepare_model_for_ort(nms_model(op, attrs))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and repr(missing) in warnings[0] and "TensorRT will reject" in warnings[0]
    assert missing in {a.name for a in prepared.graph.node[0].attribute}  # ORT still runs it with the default


def test_prepare_is_silent_for_complete_nodes(caplog):
    case = CASES_BY_NAME["overlap_suppressed"]
    with caplog.at_level("WARNING", logger="trtalign"):
        ort_ops.prepare_model_for_ort(nms_model(case.op, case.attributes))
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


# ------------------------------------------------------------------ float16 inputs: TensorRT's FP16 threshold test
def _fp16_model(op: str, attributes: dict, cast_inside: bool) -> onnx.ModelProto:
    """NMS on float16 boxes / scores: graph inputs in float16, or float32 inputs cast to float16 inside."""
    dim = 4 if op == "EfficientNMS_TRT" else 5
    k = attributes["max_output_boxes"]
    in_type = TensorProto.FLOAT if cast_inside else TensorProto.FLOAT16
    nodes = []
    names = ["boxes", "scores"]
    if cast_inside:
        nodes = [helper.make_node("Cast", [n], [f"{n}16"], to=TensorProto.FLOAT16) for n in names]
        names = [f"{n}16" for n in names]
    nodes.append(helper.make_node(op, names, OUTPUTS, name="nms", domain="TRT", **attributes))
    graph = helper.make_graph(
        nodes, "nms_fp16",
        [helper.make_tensor_value_info("boxes", in_type, ["batch", "N", dim]),
         helper.make_tensor_value_info("scores", in_type, ["batch", "N", "C"])],
        [helper.make_tensor_value_info("num_detections", TensorProto.INT32, ["batch", 1]),
         helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT16, ["batch", k, dim]),
         helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT16, ["batch", k]),
         helper.make_tensor_value_info("detection_classes", TensorProto.INT32, ["batch", k])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("TRT", 1)],
                             ir_version=8)


@pytest.mark.parametrize("op", ["EfficientNMS_TRT", "EfficientRotatedNMS_TRT"])
@pytest.mark.parametrize("cast_inside", [False, True], ids=["fp16-inputs", "cast-in-graph"])
def test_fp16_nms_compares_threshold_rounded_to_fp16(op, cast_inside):
    """threshold 0.45, FP16 score 0.449951171875 (= float16(0.45)): kept, as by TensorRT's ``(T)`` cast."""
    rotated = op == "EfficientRotatedNMS_TRT"
    attrs = dict(score_threshold=0.45, iou_threshold=0.5, max_output_boxes=3, background_class=-1,
                 score_activation=0, class_agnostic=0, box_coding=1 if rotated else 0, plugin_version="1")
    boxes = np.array([[[0, 0, 10, 10, 0.3], [50, 50, 10, 10, 0], [0.5, 0, 10, 10, 0.3]]]) if rotated else \
        np.array([[[0, 0, 10, 10], [50, 50, 60, 60], [0.5, 0, 10.5, 10]]])
    dtype = np.float32 if cast_inside else np.float16
    run = session_for(_fp16_model(op, attrs, cast_inside)).run
    # box 2 (0.7) overlaps box 0 and suppresses it; box 1 (0.2) is below the threshold
    out = run(None, {"boxes": boxes.astype(dtype), "scores": np.array([[[0.449951171875], [0.2], [0.7]]], dtype)})
    assert [o.dtype for o in out] == [np.int32, np.float16, np.float16, np.int32]
    assert out[0].tolist() == [[1]] and out[2][0, 0] == np.float16(0.7)
    # without box 2, box 0's FP16 score 0.449951171875 passes the threshold 0.45 rounded to FP16
    scores = np.array([[[0.449951171875], [0.2], [0.0]]])
    out = run(None, {"boxes": boxes.astype(dtype), "scores": scores.astype(dtype)})
    assert out[0].tolist() == [[1]] and out[2][0, 0] == np.float16(0.449951171875)
    ref = REFERENCE_OPS[op](boxes.astype(np.float16), scores.astype(np.float16), **attrs)
    np.testing.assert_array_equal(out[1], ref.detection_boxes.astype(np.float16))
    np.testing.assert_array_equal(out[3], ref.detection_classes)
    # the same values in a float32 graph: 0.449951171875 < 0.45, nothing passes
    f32 = session_for(nms_model(op, attrs)).run(None, {"boxes": boxes.astype(np.float32),
                                                       "scores": scores.astype(np.float32)})
    assert f32[0].tolist() == [[0]]
