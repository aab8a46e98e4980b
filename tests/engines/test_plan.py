"""Build plans: every (route x version) cell, the refusals, and the checks against the ONNX."""

from __future__ import annotations

import json

import pytest

from trtalign.core.errors import ConfigError, InputError, UnsupportedError
from trtalign.engines.plan import BuildPlan, load_ranges, load_unit_plan, make_build_plan, read_onnx_facts

from .conftest import UNIT_NODES, make_config, make_onnx

VERSIONS = ("8.5.2", "8.6.1", "10.3.0", "11.4.0")
UNITS = {"model.0.conv": "int8", "model.1.conv": "fp32"}

# (version, precision, int8_route, onnx) -> expected (route, network flags, builder flags, onnx requirement, pinned)
# pinned = number of layer-precision constraints: fallback unit model.1.conv -> fp32, and on the implicit routes the
# decode region found by export.units.analyze_graph (the head's Sigmoid) -> fp32. The unit plan keeps no unit in
# fp16, so no INT8 cell sets BuilderFlag.FP16 (the plan decides, not a config default)
CELLS = {
    ("8.5.2", "fp32", "qdq", "float"): ("fp32", ("EXPLICIT_BATCH",), (), "", 0),
    ("8.5.2", "fp16", "qdq", "float"): ("fp16", ("EXPLICIT_BATCH",), ("FP16",), "", 0),
    ("8.5.2", "int8", "qdq", "qdq"): ("int8-qdq", ("EXPLICIT_BATCH",), ("INT8", "OBEY_PRECISION_CONSTRAINTS"),
                                      "qdq", 1),
    ("8.5.2", "int8", "calibrator", "float"): ("int8-calibrator", ("EXPLICIT_BATCH",),
                                               ("INT8", "OBEY_PRECISION_CONSTRAINTS"), "", 2),
    ("8.5.2", "int8", "dynamic-range", "float"): ("int8-dynamic-range", ("EXPLICIT_BATCH",),
                                                  ("INT8", "OBEY_PRECISION_CONSTRAINTS"), "", 2),
    ("8.6.1", "fp32", "qdq", "float"): ("fp32", ("EXPLICIT_BATCH",), (), "", 0),
    ("8.6.1", "fp16", "qdq", "float"): ("fp16", ("EXPLICIT_BATCH",), ("FP16",), "", 0),
    ("8.6.1", "int8", "qdq", "qdq"): ("int8-qdq", ("EXPLICIT_BATCH",), ("INT8", "OBEY_PRECISION_CONSTRAINTS"),
                                      "qdq", 1),
    ("8.6.1", "int8", "calibrator", "float"): ("int8-calibrator", ("EXPLICIT_BATCH",),
                                               ("INT8", "OBEY_PRECISION_CONSTRAINTS"), "", 2),
    ("8.6.1", "int8", "dynamic-range", "float"): ("int8-dynamic-range", ("EXPLICIT_BATCH",),
                                                  ("INT8", "OBEY_PRECISION_CONSTRAINTS"), "", 2),
    # 10.x: EXPLICIT_BATCH is deprecated and ignored, so it is not passed
    ("10.3.0", "fp32", "qdq", "float"): ("fp32", (), (), "", 0),
    ("10.3.0", "fp16", "qdq", "float"): ("fp16", (), ("FP16",), "", 0),
    ("10.3.0", "int8", "qdq", "qdq"): ("int8-qdq", (), ("INT8", "OBEY_PRECISION_CONSTRAINTS"), "qdq", 1),
    ("10.3.0", "int8", "calibrator", "float"): ("int8-calibrator", (), ("INT8", "OBEY_PRECISION_CONSTRAINTS"),
                                                "", 2),
    ("10.3.0", "int8", "dynamic-range", "float"): ("int8-dynamic-range", (),
                                                   ("INT8", "OBEY_PRECISION_CONSTRAINTS"), "", 2),
    # 11.x: strongly typed, no precision flags: everything comes from the ONNX
    ("11.4.0", "fp32", "qdq", "float"): ("fp32", ("STRONGLY_TYPED",), (), "", 0),
    ("11.4.0", "fp16", "qdq", "fp16"): ("fp16", ("STRONGLY_TYPED",), (), "float16-typed", 0),
    ("11.4.0", "int8", "qdq", "qdq"): ("int8-qdq", ("STRONGLY_TYPED",), (), "qdq", 0),
}
REFUSED = {  # cells that do not exist: clear error naming the versions that have the route
    ("11.4.0", "int8", "calibrator"): r"'int8-calibrator' needs TensorRT 8.5 to 10.x \(removed in 11.0\)",
    ("11.4.0", "int8", "dynamic-range"): r"'int8-dynamic-range' needs TensorRT 8.5 to 10.x \(removed in 11.0\)",
}


@pytest.fixture
def onnx(tmp_path):
    return {"float": make_onnx(tmp_path / "float.onnx"), "qdq": make_onnx(tmp_path / "qdq.onnx", qdq=True),
            "fp16": make_onnx(tmp_path / "fp16.onnx", fp16=True)}


def test_every_cell_is_covered():
    routes = {("fp32", "qdq"), ("fp16", "qdq"), ("int8", "qdq"), ("int8", "calibrator"), ("int8", "dynamic-range")}
    covered = {(v, p, r) for v, p, r, _ in CELLS} | set(REFUSED)
    assert covered == {(v, p, r) for v in VERSIONS for p, r in routes}


@pytest.mark.parametrize("cell", sorted(CELLS), ids=lambda c: "-".join(c))
def test_plan_cell(tmp_path, onnx, cell):
    version, precision, route, which = cell
    plan = make_build_plan(make_config(tmp_path, int8_route=route), onnx[which], version, precision, unit_plan=UNITS,
                           unit_nodes=UNIT_NODES, ranges={"images": 1.0})
    expected = CELLS[cell]
    assert (plan.route, plan.network_flags, plan.builder_flags, plan.onnx_requirement,
            len(plan.layer_precisions)) == expected
    assert plan.strongly_typed == (version == "11.4.0")
    assert (plan.calibrator is not None) == (route == "calibrator" and precision == "int8")
    assert bool(plan.dynamic_ranges) == (route == "dynamic-range" and precision == "int8")
    if expected[4]:
        assert plan.layer_precisions[0].layer == "/model.1/conv/Conv"
        assert (plan.layer_precisions[0].precision, plan.layer_precisions[0].unit) == ("fp32", "model.1.conv")
    assert plan.profile.min == (1, 3, 64, 64) and plan.profile.max == (4, 3, 64, 64)
    assert BuildPlan.from_dict(json.loads(plan.to_json())) == plan  # round-trips through JSON (the cache key)


@pytest.mark.parametrize("cell", sorted(REFUSED), ids=lambda c: "-".join(c))
def test_refused_cell(tmp_path, onnx, cell):
    version, precision, route = cell
    with pytest.raises(UnsupportedError, match=REFUSED[cell]) as exc:
        make_build_plan(make_config(tmp_path, int8_route=route), onnx["float"], version, precision)
    assert "int8_route: qdq" in str(exc.value)  # and says what to do instead


def test_strongly_typed_on_10_moves_precision_into_the_onnx(tmp_path, onnx):
    cfg = make_config(tmp_path, strongly_typed=True)
    plan = make_build_plan(cfg, onnx["qdq"], "10.3.0", "int8", unit_plan=UNITS, unit_nodes=UNIT_NODES)
    assert plan.network_flags == ("STRONGLY_TYPED",) and plan.builder_flags == () and plan.layer_precisions == ()
    with pytest.raises(ConfigError, match="float16-typed ONNX"):
        make_build_plan(cfg, onnx["float"], "10.3.0", "fp16")
    assert make_build_plan(cfg, onnx["fp16"], "10.3.0", "fp16").onnx_requirement == "float16-typed"


@pytest.mark.parametrize("kwargs,version,precision,which,error,match", [
    # strongly typed does not exist before 10.0
    ({"strongly_typed": True}, "8.6.1", "fp32", "float", UnsupportedError, "needs TensorRT >= 10.0"),
    # a strongly typed network cannot take a calibrator
    ({"strongly_typed": True, "int8_route": "calibrator"}, "10.3.0", "int8", "float", ConfigError, "conflicts"),
    # builder optimisation level is 8.6+
    ({"opt_level": 3}, "8.5.2", "fp32", "float", UnsupportedError, "builder_optimization_level"),
    # Q/DQ route needs Q/DQ nodes
    ({}, "10.3.0", "int8", "float", ConfigError, "has no QuantizeLinear/DequantizeLinear"),
    # implicit routes need a float ONNX
    ({"int8_route": "calibrator"}, "8.6.1", "int8", "qdq", ConfigError, "without Q/DQ nodes"),
    # FP16 on 11 needs a float16-typed ONNX
    ({}, "11.4.0", "fp16", "float", ConfigError, "no BuilderFlag.FP16 on 11"),
    # fp32 / fp16 engines from a Q/DQ ONNX would silently run INT8
    ({}, "8.6.1", "fp32", "qdq", ConfigError, "built from the float ONNX, but qdq.onnx has 2 Q/DQ nodes"),
    ({}, "11.4.0", "fp16", "qdq", ConfigError, "has 2 Q/DQ nodes"),
    # a strongly typed fp32 engine from a float16 ONNX would run FP16
    ({}, "11.4.0", "fp32", "fp16", ConfigError, "needs a float32 ONNX"),
])
def test_conflicts_and_wrong_onnx(tmp_path, onnx, kwargs, version, precision, which, error, match):
    with pytest.raises(error, match=match):
        make_build_plan(make_config(tmp_path, **kwargs), onnx[which], version, precision)


def test_calibrator_spec_and_method_check(tmp_path, onnx):
    cfg = make_config(tmp_path, int8_route="calibrator")
    cfg.calibration.cache_dir = tmp_path / "cache"
    cfg.calibration.method = "entropy"  # the default is minmax (core.enums.CalibrationMethod.default)
    plan = make_build_plan(cfg, onnx["float"], "8.6.1", "int8")
    c = plan.calibrator
    assert (c.algorithm, c.batch_size, c.input_name, c.input_shape, c.num_images) == ("entropy2", 2, "images",
                                                                                     (3, 64, 64), 4)
    assert c.cache_path.endswith(".trt8.6.entropy.cache")
    cfg.calibration.method = "percentile"
    with pytest.raises(ConfigError, match="not a TensorRT calibrator; .* 'entropy', 'minmax'"):
        make_build_plan(cfg, onnx["float"], "8.6.1", "int8")


def test_dynamic_range_needs_ranges_and_reads_trtalign_format(tmp_path, onnx):
    cfg = make_config(tmp_path, int8_route="dynamic-range")
    with pytest.raises(ConfigError, match="needs ranges"):
        make_build_plan(cfg, onnx["float"], "10.3.0", "int8")
    path = tmp_path / "ranges.json"
    path.write_text(json.dumps({"format": "trtalign-ranges", "version": 1, "method": "entropy",
                                "tensors": {"images": {"amax": 1.0, "method": "minmax"}, "c0": {"amax": 3.5}}}))
    cfg.quantize.ranges = path
    assert make_build_plan(cfg, onnx["float"], "10.3.0", "int8").dynamic_ranges == {"images": 1.0, "c0": 3.5}
    with pytest.raises(ConfigError, match="positive amax"):
        load_ranges({"x": -1.0})


def test_unit_plan_formats_and_errors(tmp_path, onnx):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"format": "trtalign-plan", "version": 1, "units": UNITS}))
    assert load_unit_plan(path) == UNITS
    with pytest.raises(ConfigError, match="invalid precisions"):
        load_unit_plan({"a": "int4"})
    with pytest.raises(ConfigError, match="does not have: model.9.conv"):
        make_build_plan(make_config(tmp_path), onnx["qdq"], "10.3.0", "int8", unit_plan={"model.9.conv": "fp16"},
                        unit_nodes=UNIT_NODES)


def test_protected_decode_nodes_on_implicit_routes(tmp_path, onnx):
    plan = make_build_plan(make_config(tmp_path, int8_route="calibrator"), onnx["float"], "10.3.0", "int8",
                           unit_plan={"model.0.conv": "int8", "model.1.conv": "int8"}, unit_nodes=UNIT_NODES,
                           protect_nodes=["/head/Sigmoid"])
    assert [(lp.layer, lp.precision, lp.unit) for lp in plan.layer_precisions] == [("/head/Sigmoid", "fp32", "")]
    assert make_build_plan(make_config(tmp_path, int8_route="calibrator"), onnx["float"], "10.3.0", "int8",
                           protect_nodes=[]).layer_precisions == ()  # explicit: nothing protected


def test_batch_profile_and_static_batch(tmp_path):
    static = make_onnx(tmp_path / "static.onnx", batch=1)
    cfg = make_config(tmp_path)
    with pytest.raises(ConfigError, match="fixed batch of 1"):
        make_build_plan(cfg, static, "10.3.0", "fp32")
    cfg.batch.opt = cfg.batch.max = 1
    assert make_build_plan(cfg, static, "10.3.0", "fp32").profile is None


def test_nms_checks(tmp_path):
    agnostic = make_onnx(tmp_path / "nms.onnx", nms="EfficientNMS_TRT", class_agnostic=1)
    with pytest.raises(UnsupportedError, match="class_agnostic=1 needs TensorRT >= 8.6"):
        make_build_plan(make_config(tmp_path), agnostic, "8.5.2", "fp32")
    assert make_build_plan(make_config(tmp_path), agnostic, "8.6.1", "fp32").route == "fp32"
    rotated = make_onnx(tmp_path / "rot.onnx", nms="EfficientRotatedNMS_TRT")
    with pytest.raises(InputError, match="trtalign plugins build"):
        make_build_plan(make_config(tmp_path), rotated, "10.3.0", "fp32")
    plan = make_build_plan(make_config(tmp_path, plugins=["libtrtalign_plugins.so"]), rotated, "10.3.0", "fp32")
    assert plan.plugin_libraries[0].endswith("libtrtalign_plugins.so")


def test_plan_changes_with_every_input(tmp_path, onnx):
    base = make_build_plan(make_config(tmp_path), onnx["float"], "10.3.0", "fp16")
    assert make_build_plan(make_config(tmp_path, workspace_gib=1), onnx["float"], "10.3.0", "fp16").to_json() \
        != base.to_json()
    assert make_build_plan(make_config(tmp_path), onnx["float"], "10.4.0", "fp16").to_json() != base.to_json()
    assert read_onnx_facts(onnx["float"]).sha256 == base.onnx_sha256


def test_unreadable_onnx(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all \x00\xff")
    with pytest.raises(Exception) as exc:
        read_onnx_facts(bad)
    assert type(exc.value).__name__ in ("ModelError",) and "cannot read ONNX" in str(exc.value)
    with pytest.raises(InputError, match="not found"):
        read_onnx_facts(tmp_path / "missing.onnx")


@pytest.mark.parametrize("version,strongly,needs", [("8.6.1", False, False), ("10.3.0", False, False),
                                                    ("10.3.0", True, True), ("11.4.0", False, True)])
def test_needs_float16_onnx(version, strongly, needs):
    from trtalign.engines.plan import needs_float16_onnx

    assert needs_float16_onnx(version, strongly) is needs


def test_build_settings_are_explicit(tmp_path, onnx):
    """Issue 13 bug 2 at the plan level: internal callers pass BuildSettings, so the batch profile and the FP16 flag
    come from what they know (the batch asked for, the unit plan), not from a throwaway config's defaults."""
    from trtalign.engines.plan import BuildSettings

    plan = make_build_plan(BuildSettings(imgsz=64, batch=4), onnx["float"], "10.3.0", "fp16")
    assert (plan.profile.min[0], plan.profile.opt[0], plan.profile.max[0]) == (1, 4, 4)
    fp32_units = {"model.0.conv": "int8", "model.1.conv": "fp32"}
    int8 = make_build_plan(BuildSettings(imgsz=64, batch=2, unit_plan=fp32_units), onnx["qdq"], "10.3.0", "int8",
                           unit_nodes=UNIT_NODES)
    assert "FP16" not in int8.builder_flags and "INT8" in int8.builder_flags
    fp16_units = {"model.0.conv": "int8", "model.1.conv": "fp16"}
    int8 = make_build_plan(BuildSettings(imgsz=64, batch=2, unit_plan=fp16_units), onnx["qdq"], "10.3.0", "int8",
                           unit_nodes=UNIT_NODES)
    assert "FP16" in int8.builder_flags
    # no unit plan: the settings' float precision decides (a config's fallback.target through from_config)
    cfg = make_config(tmp_path)
    cfg.fallback.target = "fp32"
    assert "FP16" not in make_build_plan(cfg, onnx["qdq"], "10.3.0", "int8").builder_flags
    assert BuildSettings.from_config(cfg).float_precision == "fp32"
