"""Quantization units: found from the graph structure (not names), named stably, and plans that validate."""

from __future__ import annotations

import json

import onnx
import pytest
from quant_models import yolo_onnx

from trtalign.core.errors import ConfigError, InputError
from trtalign.export.units import (analyze_graph, apply_excludes, default_plan, int8_mac_fraction, load_plan,
                                   save_plan, unit_name_from_node, validate_plan, Plan)


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    return yolo_onnx(tmp_path_factory.mktemp("units_models"))


@pytest.fixture(scope="module")
def analysis(yolo):
    return analyze_graph(yolo)


def _nodes(path):
    return {n.name: n for n in onnx.load(str(path)).graph.node}


def test_decode_region_and_dfl_are_found(yolo, analysis):
    nodes = _nodes(yolo)
    (dfl,) = analysis.dfl_nodes
    assert nodes[dfl].op_type == "Conv"
    ops = {nodes[n].op_type for n in analysis.decode_nodes}
    assert {"Softmax", "Sigmoid", "Concat", "Reshape"} <= ops  # DFL softmax, score sigmoid, final concat
    out_producer = next(n for n in nodes.values() if "output0" in n.output)
    assert out_producer.name in analysis.decode_nodes
    covered = {n for u in analysis.units for n in u.nodes}
    assert not covered & (analysis.decode_nodes | analysis.dfl_nodes)  # nothing of the decode is a unit


def test_head_output_units_are_the_last_convs_feeding_the_decode(yolo, analysis):
    nodes = _nodes(yolo)
    consumers = {}
    for n in nodes.values():
        for t in n.input:
            consumers.setdefault(t, []).append(n.name)
    head = [u for u in analysis.units if u.role == "head_output"]
    assert len(head) == 6  # box and class branch of 3 levels
    for u in head:
        (node,) = u.nodes
        assert all(c in analysis.decode_nodes for c in consumers[nodes[node].output[0]])
    body = [u for u in analysis.units if u.role == "body" and u.kind == "conv"]
    assert all(not set(consumers.get(nodes[u.nodes[0]].output[0], [])) & analysis.decode_nodes for u in body)


def test_structure_not_names(yolo, tmp_path):
    """Renaming every node to an opaque name finds the same decode region, DFL and head."""
    model = onnx.load(str(yolo))
    for i, n in enumerate(model.graph.node):
        n.name = f"n{i}"
    renamed = analyze_graph(model)
    ref = analyze_graph(yolo)
    order = [n.name for n in onnx.load(str(yolo)).graph.node]
    assert {f"n{order.index(x)}" for x in ref.decode_nodes} == renamed.decode_nodes
    assert {f"n{order.index(x)}" for x in ref.dfl_nodes} == renamed.dfl_nodes
    assert [u.role for u in renamed.units] == [u.role for u in ref.units]
    assert [u.macs for u in renamed.units] == [u.macs for u in ref.units]


def test_unit_names_are_stable_and_unique(yolo, analysis):
    names = [u.name for u in analysis.units]
    assert len(names) == len(set(names))
    assert names == [u.name for u in analyze_graph(yolo).units]
    assert "model.0.conv" in names and "model.2.concat" in names


@pytest.mark.parametrize("node, op, expected", [
    ("/model.2/m.0/cv1/conv/Conv", "Conv", "model.2.m.0.cv1.conv"),
    ("/model.22/cv2.0/cv2.0.2/Conv", "Conv", "model.22.cv2.0.cv2.0.2"),
    ("/model.2/Concat", "Concat", "model.2.concat"),
    ("/model.9/Concat_1", "Concat", "model.9.concat_1"),
    ("Conv_12", "Conv", "conv_12"),  # unnamed-style node
    ("fc:weird name", "Gemm", "fc_weird_name"),
])
def test_unit_name_from_node(node, op, expected):
    assert unit_name_from_node(node, op) == expected


def test_residuals_ties_and_macs(yolo, analysis):
    nodes = _nodes(yolo)
    res = [(u, r) for u in analysis.units for r in u.residuals]
    assert len(res) == 6  # the C2f bottlenecks with shortcut in the backbone: 1 + 2 + 2 + 1
    for unit, (add, shortcut) in res:
        assert nodes[add].op_type == "Add" and shortcut in nodes[add].input
        other = [t for t in nodes[add].input if t != shortcut][0]
        assert unit.nodes[0] != add and other != shortcut
    groups = analysis.tie_members()
    maxpools = [n for n in nodes.values() if n.op_type == "MaxPool"]
    for mp in maxpools:  # MaxPool input and output share one scale
        assert analysis.tie_groups[mp.input[0]] == analysis.tie_groups[mp.output[0]]
    assert all(len(m) > 1 for m in groups.values())
    conv0 = analysis.unit("model.0.conv")
    assert conv0.macs == 80 * 80 * 16 * 3 * 3 * 3  # 160 px input, stride 2, 16 channels, 3x3 kernel


def test_default_plan_puts_90_percent_of_macs_in_int8(analysis):
    plan = default_plan(analysis.units)
    assert {plan.units[u.name] for u in analysis.units if u.role == "head_output"} == {"fp16"}
    assert int8_mac_fraction(analysis.units, plan) >= 0.9
    all8 = default_plan(analysis.units, head_output="int8")
    assert int8_mac_fraction(analysis.units, all8) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="valid choices"):
        default_plan(analysis.units, head_output="int4")


def test_plan_round_trip_and_validation(analysis, tmp_path):
    plan = default_plan(analysis.units, model_sha256="abc")
    path = save_plan(plan, tmp_path / "plan.json")
    assert load_plan(path, analysis.units).units == plan.units
    data = json.loads(path.read_text())
    data["units"]["model.0.conv"] = "int4"  # invalid precision
    data["units"]["model.99.conv"] = "int8"  # not in this model
    del data["units"]["model.1.conv"]  # missing
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        load_plan(tmp_path / "bad.json", analysis.units)
    msg = str(err.value)
    assert "model.99.conv" in msg and "model.1.conv" in msg and "int4" in msg and "valid choices" in msg
    (tmp_path / "notaplan.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a trtalign plan"):
        load_plan(tmp_path / "notaplan.json")
    with pytest.raises(InputError, match="not found"):
        load_plan(tmp_path / "missing.json")


def test_excludes(analysis):
    plan = default_plan(analysis.units)
    new, hit = apply_excludes(plan, ["model.2.*", "/model.0/conv/Conv"], analysis.units)
    assert "model.0.conv" in hit and "model.2.concat" in hit
    assert all(new.units[h] == "fp16" for h in hit)
    assert plan.units["model.0.conv"] == "int8"  # the original plan is not modified
    with pytest.raises(ConfigError, match="matches no unit"):
        apply_excludes(plan, ["model.2.m.0.cv9*"], analysis.units)
    validate_plan(new, analysis.units)
    with pytest.raises(ConfigError, match="missing from the plan"):
        validate_plan(Plan(units={}), analysis.units)


def test_obb_head_is_found(tmp_path_factory):
    obb = analyze_graph(yolo_onnx(tmp_path_factory.mktemp("obb"), "yolov8n-obb.yaml"))
    assert len(obb.dfl_nodes) == 1
    assert len([u for u in obb.units if u.role == "head_output"]) == 9  # box, class and angle branches x 3 levels
    assert int8_mac_fraction(obb.units, default_plan(obb.units)) >= 0.9
