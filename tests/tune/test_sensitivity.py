"""Per-unit INT8 sensitivity on a tiny detector with one deliberately sensitive unit (see sensitive_model.py):
every metric and mode must rank it first; references are cached; the local probe is exact numerics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sensitive_model import BOX_SENSITIVE, SCORE_SENSITIVE, SENSITIVE, make_setup, make_two_branch_setup

from trtalign.core.errors import ConfigError, InputError
from trtalign.tune.sensitivity import (LOCAL_METRICS, MODES, QdqPlanModels, SensitivityResult, SensitivityScorer,
                                       build_local_probe, det_error, fake_quant, load_sensitivity,
                                       local_sensitivity, make_plan, output_error, save_sensitivity,
                                       scorebox_error)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from trtalign.core.preprocess import letterbox, list_images, read_image
    from trtalign.export.calibrate import calibrate

    s = make_setup(tmp_path_factory.mktemp("sens"))
    s["ranges"] = calibrate(s["onnx"], s["data"] / "images" / "train", method="minmax", num=16)
    s["models"] = QdqPlanModels(s["onnx"], s["ranges"], s["data"].parent / "plans")
    s["inputs"] = [letterbox(read_image(p), 32)[0] for p in list_images(s["data"] / "images" / "val")[:8]]
    calls = []

    def factory(plan):
        calls.append(plan)
        return s["models"].runner(plan)

    s["calls"] = calls
    s["scorer"] = SensitivityScorer(s["models"].units, factory, s["inputs"], num_classes=2)
    return s


@pytest.mark.parametrize("metric", ["mse", "cosine", "sqnr", "det", "scorebox"])
@pytest.mark.parametrize("mode", MODES)
def test_every_output_metric_ranks_the_outlier_unit_first(setup, metric, mode):
    result = setup["scorer"].score(metric, mode)
    assert result.ranking()[0] == SENSITIVE
    scores = result.scores()
    others = [v for k, v in scores.items() if k != SENSITIVE]
    assert scores[SENSITIVE] > 10 * max(max(others), 1e-12)  # not a near-tie: the outlier unit dominates
    assert [u.name for u in result.units] == setup["models"].unit_names
    assert result.metric == metric and result.mode == mode and result.subset == 8


def test_det_reports_class_and_box_parts_on_hard_images(setup):
    result = setup["scorer"].score("det", "enable-one", hard=3)
    unit = next(u for u in result.units if u.name == SENSITIVE)
    assert set(unit.details) == {"cls", "box"} and unit.details["cls"] > 0 and unit.details["box"] > 0
    assert unit.score == pytest.approx(unit.details["cls"] + unit.details["box"])
    assert "3 images" in result.notes[0]


def test_references_are_cached_and_each_plan_runs_once(setup):
    scorer = setup["scorer"]
    scorer.score("sqnr", "disable-one")
    before = len(setup["calls"])
    again = scorer.score("mse", "disable-one")  # same plans, another metric: no new run at all
    assert len(setup["calls"]) == before and again.passes == 0
    keys = [json.dumps(p.units, sort_keys=True) for p in setup["calls"]]
    assert len(keys) == len(set(keys))  # never the same plan twice


@pytest.mark.parametrize("metric", LOCAL_METRICS)
def test_local_one_pass_ranks_the_outlier_unit_first(setup, metric):
    result = local_sensitivity(setup["onnx"], setup["ranges"], setup["inputs"], metric)
    assert result.ranking()[0] == SENSITIVE
    assert result.passes == 1 and result.mode == "local"


def test_local_probe_matches_the_qdq_model_numerics(setup):
    """The probe's fake-quantized copy of conv2a equals conv2a's output in the Q/DQ model where only it is INT8."""
    import onnx

    from trtalign.export.graph_nms import expose_outputs
    from trtalign.export.units import analyze_graph
    from trtalign.runtime.ort_runner import OrtRunner

    model = onnx.load(str(setup["onnx"]))
    analysis = analyze_graph(model)
    probe, spec = build_local_probe(model, analysis, setup["ranges"])
    names = setup["models"].unit_names
    plan = make_plan(names, [n for n in names if n != "model.conv2a"], "fp32")
    qdq = expose_outputs(onnx.load(str(setup["models"].path_for(plan))), ["c2"])
    x = setup["inputs"][0]
    with OrtRunner(probe) as r:
        local = r.infer({"images": x})[spec["model.conv2a"]["quant"]]
    with OrtRunner(qdq) as r:
        full = r.infer({"images": x})["c2"]
    np.testing.assert_allclose(local, full, rtol=1e-5, atol=1e-5)
    assert not np.allclose(local, 0)


def test_fake_quant_matches_onnxruntime_quantize_dequantize():
    import onnx
    from onnx import TensorProto, helper

    from trtalign.runtime.ort_runner import OrtRunner

    x = np.random.default_rng(0).normal(0, 3, (1, 4, 5, 5)).astype(np.float32)
    amax = 4.0
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["images", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], "qdq",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])],
        [onnx.numpy_helper.from_array(np.array(amax / 127, np.float32), "s"),
         onnx.numpy_helper.from_array(np.array(0, np.int8), "z")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    with OrtRunner(m) as r:
        ref = r.infer({"images": x})["y"]
    np.testing.assert_allclose(fake_quant(x, amax), ref, rtol=0, atol=1e-6)


def test_output_error_values():
    rng = np.random.default_rng(0)
    ref = [rng.normal(size=(1, 6, 10)).astype(np.float32)]
    out = [ref[0] + 0.1]
    err, db = output_error("sqnr", ref, out)
    expected = float((0.1 ** 2) * ref[0].size / (ref[0].astype(np.float64) ** 2).sum())
    assert err == pytest.approx(expected, rel=1e-4) and db == pytest.approx(-10 * np.log10(expected), rel=1e-4)
    assert output_error("mse", ref, out)[0] == pytest.approx(0.01, rel=1e-4)
    assert output_error("cosine", ref, ref)[0] == pytest.approx(0.0, abs=1e-9)
    assert output_error("sqnr", ref, ref)[1] == float("inf")


def test_det_error_separates_scores_and_boxes():
    rng = np.random.default_rng(1)
    out = np.concatenate([rng.uniform(10, 20, (4, 30)), rng.uniform(0, 1, (2, 30))]).astype(np.float32)
    assert det_error(out, out, 2, False) == pytest.approx((0.0, 0.0), abs=1e-6)
    moved = out.copy()
    moved[0] += 5.0  # boxes shifted, scores unchanged
    cls, box = det_error(out, moved, 2, False)
    assert cls == 0.0 and box > 0.2
    rescored = out.copy()
    rescored[4:] = 1 - rescored[4:]
    cls, box = det_error(out, rescored, 2, False)
    assert cls > 0.1 and box == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("a, b, expected", [
    ((5.0, 5.0, 0.0, 0.0), (5.0, 5.0, 0.0, 0.0), 0.0),  # two points at one place: union 0 -> IoU 0 (core.geometry)
    ((5.0, 5.0, 0.0, 4.0), (5.0, 5.0, 0.0, 4.0), 0.0),  # two identical zero-width lines: union 0
    ((5.0, 5.0, 2.0, 2.0), (5.0, 5.0, 0.0, 0.0), 0.0),  # a point inside a box: inter 0
    ((5.0, 5.0, 2.0, 2.0), (5.0, 5.0, 2.0, 2.0), 1.0),  # identical boxes of positive area
    ((0.0, 0.0, 2.0, 2.0), (1.0, 0.0, 2.0, 2.0), 1.0 / 3.0),  # half overlap: 2 / (4 + 4 - 2)
])
def test_xywh_iou_follows_core_geometry_at_degenerate_boxes(a, b, expected):
    from trtalign.tune.sensitivity import _xywh_iou
    iou = _xywh_iou(np.array(a, np.float32)[:, None], np.array(b, np.float32)[:, None])
    assert iou.shape == (1,) and iou[0] == pytest.approx(expected, abs=1e-12)


def test_xywh_iou_equals_core_geometry_on_random_boxes():
    from trtalign.core.geometry import axis_iou_matrix, xywh_to_xyxy
    from trtalign.tune.sensitivity import _xywh_iou
    rng = np.random.default_rng(7)
    k = 500
    a = np.concatenate([rng.uniform(0, 20, (2, k)), rng.uniform(0, 6, (2, k))]).astype(np.float32)
    b = a + rng.normal(0, 2, a.shape).astype(np.float32)
    a[2:, :50] = 0.0  # degenerate sides on both sides of some pairs (zero union)
    b[2:, :25] = 0.0
    b[2, 25:50] = 0.0
    expected = np.diag(axis_iou_matrix(xywh_to_xyxy(a.T, np.float64), xywh_to_xyxy(b.T, np.float64)))
    got = _xywh_iou(a, b)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)
    assert (got[:50] == 0.0).all()


def test_det_error_counts_degenerate_boxes_as_missed():
    # FP32 and INT8 boxes both of zero size at one place: IoU 0 (core.geometry), so the box error is 1 - 0
    ref = np.zeros((6, 10), np.float32)
    ref[4] = 0.9
    assert det_error(ref, ref.copy(), 2, False)[1] == pytest.approx(1.0)


def test_result_round_trips_and_bad_inputs(setup, tmp_path):
    result = setup["scorer"].score("sqnr", "enable-one")
    path = save_sensitivity(result, tmp_path / "sens.json")
    back = load_sensitivity(path)
    assert isinstance(back, SensitivityResult) and back.ranking() == result.ranking()
    assert back.scores() == pytest.approx(result.scores())
    (tmp_path / "bad.json").write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match="not a trtalign sensitivity file"):
        load_sensitivity(tmp_path / "bad.json")
    with pytest.raises(InputError, match="not found"):
        load_sensitivity(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="valid choices"):
        setup["scorer"].score("psnr", "disable-one")
    with pytest.raises(ConfigError, match="valid choices"):
        setup["scorer"].score("sqnr", "leave-one-out")
    with pytest.raises(ConfigError, match="map_fn"):
        setup["scorer"].score("map", "disable-one")


@pytest.mark.trt
def test_tensorrt_engines_rank_the_outlier_unit_first(setup, tmp_path):
    """The same scorer on real TensorRT INT8 engines, one per trial plan (needs TensorRT and a GPU)."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    from trtalign.tune.tuning import trt_runner_factory

    factory = trt_runner_factory(setup["models"], tmp_path, 32)
    scorer = SensitivityScorer(setup["models"].units, factory, setup["inputs"], num_classes=2, backend="trt-int8")
    result = scorer.score("sqnr", "disable-one")
    assert result.ranking()[0] == SENSITIVE and result.backend == "trt-int8"


def test_gated_model_runs_any_plan_like_its_own_qdq_model(setup):
    """One gated session reproduces the per-plan Q/DQ models (insert_qdq) for mixed plans, tie group included (the
    gated model runs the float units in FP32: it is compared with the per-plan models without FP16 emulation)."""
    from trtalign.runtime.plan_runners import GatedQdqModel
    from trtalign.tune.sensitivity import run_outputs

    gated = GatedQdqModel(setup["onnx"], setup["ranges"])
    names = gated.unit_names
    raw = QdqPlanModels(setup["onnx"], setup["ranges"], setup["data"].parent / "raw_plans", only=("output0",),
                        fp16sim=False)
    inputs = setup["inputs"][:3]
    for fallback in ([], names, [SENSITIVE], ["model.concat", "model.head"], ["model.0.conv", "model.conv2a"]):
        plan = make_plan(names, fallback)
        got, want = run_outputs(gated.runner(plan), inputs), run_outputs(raw.runner(plan), inputs)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    scorer = SensitivityScorer(gated.units, gated.runner, setup["inputs"], num_classes=2)
    assert scorer.score("sqnr", "disable-one").ranking()[0] == SENSITIVE


# ------------------------------------------------------------------------------------- score-aware, box-aware
@pytest.fixture(scope="module")
def two_branch(tmp_path_factory):
    from trtalign.core.preprocess import letterbox, list_images, read_image
    from trtalign.export.calibrate import calibrate

    s = make_two_branch_setup(tmp_path_factory.mktemp("two"))
    ranges = calibrate(s["onnx"], s["data"] / "images" / "train", method="minmax", num=16)
    models = QdqPlanModels(s["onnx"], ranges, s["data"].parent / "plans")
    inputs = [letterbox(read_image(p), 32)[0] for p in list_images(s["data"] / "images" / "val")[:8]]
    s["scorer"] = SensitivityScorer(models.units, models.runner, inputs, num_classes=2)
    return s


@pytest.mark.parametrize("mode", MODES)
def test_scorebox_ranks_the_score_unit_and_the_box_unit_first(two_branch, mode):
    result = two_branch["scorer"].score("scorebox", mode)
    assert set(result.ranking()[:2]) == {SCORE_SENSITIVE, BOX_SENSITIVE}
    by = {u.name: u for u in result.units}
    rest = max(v for k, v in result.scores().items() if k not in (SCORE_SENSITIVE, BOX_SENSITIVE))
    assert min(by[SCORE_SENSITIVE].score, by[BOX_SENSITIVE].score) > 10 * max(rest, 1e-12)
    sd, bd = by[SCORE_SENSITIVE].details, by[BOX_SENSITIVE].details  # the errors of each unit's trial plan
    if mode == "enable-one":  # quantizing one unit alone: its damage is in its own branch only
        assert sd["score_nsr"] > 100 * max(sd["box_nsr"], 1e-12)
        assert bd["box_nsr"] > 100 * max(bd["score_nsr"], 1e-12)
        assert by[SCORE_SENSITIVE].score == pytest.approx(sd["score_nsr"] + sd["box_nsr"])
    else:  # restoring one unit removes its branch's error; the other branch's error is left
        assert sd["score_nsr"] < 0.01 * bd["score_nsr"] and bd["box_nsr"] < 0.01 * sd["box_nsr"]


def test_scorebox_sees_silenced_scores_that_whole_tensor_sqnr_misses():
    rng = np.random.default_rng(0)
    n, nc = 400, 3
    boxes = np.stack([rng.uniform(0, 640, n), rng.uniform(0, 640, n), rng.uniform(8, 200, n),
                      rng.uniform(8, 200, n)])
    scores = rng.uniform(0, 0.05, (nc, n))
    scores[rng.integers(0, nc, 40), rng.choice(n, 40, replace=False)] = rng.uniform(0.5, 0.95, 40)
    ref = np.concatenate([boxes, scores])[None].astype(np.float32)
    silenced = ref.copy()
    silenced[0, 4:] = 0.0  # every class score zero: no detection survives
    _, sqnr_db = output_error("sqnr", [ref], [silenced])
    assert sqnr_db > 30  # whole-tensor SQNR: the pixel boxes hold the energy, the model looks fine
    score, box = scorebox_error([ref[0]], [silenced[0]], nc, rotated=False)
    assert score == pytest.approx(1.0) and box == 0.0  # the scores lost all their signal
    shifted = ref.copy()
    shifted[0, 0] += 0.1 * ref[0, 2]  # every box moved by a tenth of its width
    score, box = scorebox_error([ref[0]], [shifted[0]], nc, rotated=False)
    assert score == 0.0 and box == pytest.approx(0.01 / 4, rel=1e-5)


def test_fp16_units_run_with_fp16_numerics_and_int8_scales_stay_fp32(setup, tmp_path):
    """A plan's "fp16" units run in FP16 in the emulation (fp16sim outside the Q/DQ paths), not in FP32."""
    import onnx
    from onnx import numpy_helper

    from trtalign.export.fp16sim import fp16sim_model
    from trtalign.runtime.ort_runner import OrtRunner

    names = setup["models"].unit_names
    emu = QdqPlanModels(setup["onnx"], setup["ranges"], tmp_path / "emu")
    plain = QdqPlanModels(setup["onnx"], setup["ranges"], tmp_path / "plain", fp16sim=False)
    mixed = make_plan(names, [SENSITIVE], "fp16")
    m_emu, m_plain = onnx.load(str(emu.path_for(mixed))), onnx.load(str(plain.path_for(mixed)))
    assert any(n.op_type == "Cast" for n in m_emu.graph.node) and not any(n.op_type == "Cast"
                                                                          for n in m_plain.graph.node)

    def scales(m):
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        return {n.input[1]: inits[n.input[1]].tolist() for n in m.graph.node
                if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[1] in inits}

    assert scales(m_emu) == scales(m_plain) and scales(m_emu)  # INT8 scales untouched
    x = setup["inputs"][0]
    with OrtRunner(emu.path_for(mixed)) as a, OrtRunner(plain.path_for(mixed)) as b:
        ya, yb = a.infer({"images": x})["output0"], b.infer({"images": x})["output0"]
    assert not np.array_equal(ya, yb) and np.abs(ya - yb).max() <= 2e-2 * np.abs(yb).max()
    # every unit in fp16: no Q/DQ left, and the emulation is exactly the FP16 emulation of the FP32 model
    every = make_plan(names, names, "fp16")
    from trtalign.export.graph_nms import expose_outputs

    ref = expose_outputs(fp16sim_model(onnx.load(str(setup["onnx"])))[0], ["output0"])
    with OrtRunner(emu.path_for(every)) as a, OrtRunner(ref) as b:
        np.testing.assert_array_equal(a.infer({"images": x})["output0"], b.infer({"images": x})["output0"])
    # a plan without fp16 units is the plain Q/DQ model
    all_int8 = make_plan(names, [], "fp16")
    assert emu.path_for(all_int8).name == plain.path_for(all_int8).name


def test_sensitivity_starts_from_the_one_int8_plan(setup):
    """Sensitivity's trial plans start from the INT8 plan every other command uses (``default_plan``: the head's
    output convs in the fallback target), not from every unit INT8; so a head-output unit scores exactly 0."""
    from trtalign.export.units import default_plan

    units = setup["models"].units
    heads = [u.name for u in units if u.role == "head_output"]
    assert heads, "the test model has a head-output conv"
    assert setup["models"].plan(()).units == default_plan(units).units
    calls = []

    def factory(plan):  # a scorer of its own: the shared one caches outputs of plans other tests already ran
        calls.append(plan)
        return setup["models"].runner(plan)

    scorer = SensitivityScorer(units, factory, setup["inputs"], num_classes=2)
    result = scorer.score("mse", "disable-one")
    plans = [p.units for p in calls]
    assert default_plan(units).units in plans
    assert all(p[h] == "fp16" for p in plans for h in heads)  # no trial plan puts the head in INT8
    assert all(result.scores()[h] == 0.0 for h in heads)
