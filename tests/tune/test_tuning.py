"""Tuning glue end to end on the tiny detector with one sensitive unit: splits, mAP evaluation per plan, the fallback
search choosing exactly the sensitive unit, budget extremes, and tuning/validation separation."""

from __future__ import annotations

from pathlib import Path

import pytest
from sensitive_model import SENSITIVE, make_setup

from trtalign.core.errors import ConfigError, InputError
from trtalign.tune.sensitivity import make_plan
from trtalign.tune.tuning import check_disjoint, session_from_config, split_dataset, subset_of


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from trtalign.core.config import load_config

    s = make_setup(tmp_path_factory.mktemp("tuning"))
    sess = session_from_config(load_config(s["config"]))
    sess.setup = s
    return sess


def test_split_is_deterministic_disjoint_and_complete(session):
    from trtalign.data.datasets import load_dataset

    ds = load_dataset(session.setup["data"], split="val")
    tune, val = split_dataset(ds, 0.5, seed=0)
    tune2, val2 = split_dataset(ds, 0.5, seed=0)
    assert [im.id for im in tune.images] == [im.id for im in tune2.images]
    ids_t, ids_v = {im.id for im in tune.images}, {im.id for im in val.images}
    assert not ids_t & ids_v and ids_t | ids_v == {im.id for im in ds.images}
    assert set(tune.annotations) <= ids_t and set(val.annotations) <= ids_v
    assert len(tune) == 12 and len(val) == 12
    other, _ = split_dataset(ds, 0.5, seed=1)
    assert {im.id for im in other.images} != ids_t  # the seed matters
    check_disjoint(tune, val)
    with pytest.raises(InputError, match="share 1 image"):
        check_disjoint(tune, subset_of(ds, val.images + tune.images[:1]))
    with pytest.raises(ConfigError, match="tune_fraction"):
        split_dataset(ds, 1.0)


def test_session_splits_and_plan_evaluation(session):
    assert session.splits.tune_images == 12 and session.splits.val_images == 12
    assert not set(session.splits.tune_files) & set(session.splits.val_files)
    names = session.unit_names
    assert SENSITIVE in names and len(names) == 5
    fp32 = session.evaluate_plan(make_plan(names, names), "tune")
    int8 = session.evaluate_plan(make_plan(names, []), "tune")
    fixed = session.evaluate_plan(make_plan(names, [SENSITIVE]), "tune")
    assert fp32 > 0.5 and int8 < fp32 - 0.3 and fixed > fp32 - 0.05
    n = session.evaluations
    assert session.evaluate_plan(make_plan(names, [SENSITIVE]), "tune") == fixed and session.evaluations == n


def test_map_sensitivity_ranks_the_outlier_first_on_tuning_images_only(session, monkeypatch):
    import trtalign.core.preprocess as pre

    seen: list = []
    real = pre.read_image
    monkeypatch.setattr(pre, "read_image", lambda p: (seen.append(Path(p).name), real(p))[1])
    for metric in ("map", "det"):
        result = session.sensitivity(metric, "disable-one", subset=6)
        assert result.ranking()[0] == SENSITIVE, metric
    assert seen and set(seen) <= set(session.splits.tune_files)


def test_search_falls_back_exactly_the_sensitive_unit(session, tmp_path):
    sens = session.sensitivity("sqnr", "disable-one", subset=8)
    result = session.fallback(0.05, sensitivity=sens, max_evals=8, journal=tmp_path / "journal.json")
    assert result.fallback_units == [SENSITIVE] and result.met_budget and result.status == "ok"
    assert result.final_map_tune >= result.fp32_map_tune - 0.05
    assert result.final_map_val is not None and result.int8_map_val < result.final_map_val
    # the validation split only confirms: every choice was made on tuning evaluations
    assert {e.phase for e in result.evaluations if e.split == "val"} == {"confirm"}
    assert all(e.split == "tune" for e in result.evaluations if e.phase in ("bisect", "prune"))
    # the INT8 plan keeps the head's output convs out of INT8 in every plan (export.units.default_plan)
    macs = session.macs
    head = [u.name for u in session.units if u.role == "head_output"]
    assert head and session.plan_for(result).units == {u: ("fp16" if u in head + [SENSITIVE] else "int8")
                                                       for u in session.unit_names}
    assert result.int8_mac_fraction == pytest.approx(1 - sum(macs[u] for u in head + [SENSITIVE]) / sum(macs.values()))


def test_budget_zero_falls_back_everything_and_huge_budget_nothing(session):
    sens = session.sensitivity("sqnr", "disable-one", subset=8)
    zero = session.fallback(0.0, sensitivity=sens, max_evals=8)
    # every unit leaves INT8 (the head's output convs are out of INT8 in the base plan already)
    assert session.plan_for(zero).int8_units() == []
    assert set(session.unit_names) - set(zero.fallback_units) <= {u.name for u in session.units
                                                                   if u.role == "head_output"}
    assert zero.int8_mac_fraction == 0.0
    huge = session.fallback(0.99, sensitivity=sens, max_evals=8)
    assert huge.fallback_units == [] and huge.status == "nothing-to-do" and "already meets" in huge.message


def test_latency_aware_ranking_and_mismatched_ranking(session):
    from trtalign.tune.sensitivity import SensitivityResult, UnitSensitivity

    sens = session.sensitivity("sqnr", "disable-one", subset=8)
    result = session.fallback(0.05, sensitivity=sens, max_evals=8, latency_aware=True)
    assert SENSITIVE in result.fallback_units and result.met_budget
    wrong = SensitivityResult("sqnr", "disable-one", "fp16", 8, "x", [UnitSensitivity("nope", "conv", "body", 1, 1.0)])
    with pytest.raises(InputError, match="does not match this model's units"):
        session.fallback(0.05, sensitivity=wrong)


def test_config_without_data_is_a_clear_error(tmp_path):
    from trtalign.core.config import PipelineConfig

    cfg = PipelineConfig(model=tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="data.val"):
        session_from_config(cfg, tmp_path / "w")


def test_fallback_reports_every_delta_with_its_bootstrap_interval(session):
    import json

    from trtalign.eval.bootstrap import paired_bootstrap

    sens = session.sensitivity("sqnr", "disable-one", subset=8)
    result = session.fallback(0.05, sensitivity=sens, max_evals=8)
    assert result.decision == "interval"
    d = json.loads(json.dumps(result.to_dict()))
    for key in [k for k in d if k.startswith("delta_map") and not k.endswith("_ci95")]:
        low, high = d[f"{key}_ci95"]
        assert low <= d[key] <= high
    # the session's interval is the paired bootstrap of the two plans' detections on the validation split
    assert d["delta_map_val_int8"] == pytest.approx(result.int8_map_val - result.fp32_map_val, abs=1e-9)
    compare = session.comparer("val")
    same = compare(frozenset(session.unit_names))
    assert same == (0.0, 0.0, 0.0)  # the reference plan against itself
    # an independent check: the same interval from the plans' detections through eval.bootstrap directly
    from types import SimpleNamespace

    from trtalign.eval.evaluate import ort_postprocess, run_runner

    dets = {}
    for name, fb in (("int8", frozenset()), ("float", frozenset(session.unit_names))):
        plan = session.plan_for(SimpleNamespace(fallback_units=list(fb), target="fp16"))  # the session's plans
        with session.runner_factory(plan) as runner:
            dets[name], _ = run_runner(runner, session.val, session.imgsz, ort_postprocess(False), 1,
                                       session.class_map)
    ci = paired_bootstrap(session.val, dets["int8"], dets["float"], session.resamples, session.bootstrap_seed)
    assert [ci.delta, ci.low, ci.high] == pytest.approx(list(compare(frozenset())), abs=1e-12)
    # the report draws the intervals
    from trtalign.tune.fallback_report import fallback_report

    page = fallback_report(result).render()
    low, high = d["delta_map_val_int8_ci95"]
    assert "95% interval" in page and f"[{low:+.4f}, {high:+.4f}]" in page


def test_split_sizes_come_from_the_measured_noise(tmp_path):
    """size_splits measures the INT8 drop's interval on a pilot and keeps the images the budget needs: a generous
    budget keeps the pilot's images (fewer images per evaluation), a tight one keeps everything and says the data is
    too small; the search then runs on the sized splits and records the sizing."""
    from trtalign.core.config import load_config
    from trtalign.tune.fallback import images_needed

    s = make_setup(tmp_path)
    sess = session_from_config(load_config(s["config"]))
    info = sess.size_splits(0.5, pilot=8)
    assert info["pilot_images"] == 8 and info["images_needed"] <= 8
    assert (info["tune_images"], info["val_images"], info["enough"]) == (8, 8, True)
    assert len(sess.tune) == 8 and len(sess.val) == 8 and sess.splits.tune_images == 8
    assert sess.splits.tune_files == [im.file_name for im in sess.tune.images]

    tight = session_from_config(load_config(s["config"]))
    info = tight.size_splits(0.001, pilot=8)
    assert info["images_needed"] == images_needed(info["halfwidth_pilot"], 8, 0.001) > 12
    assert (info["tune_images"], info["val_images"], info["enough"]) == (12, 12, False)
    assert "needs about" in info["message"] and "12 tuning and 12 validation images" in info["message"]
    assert info["int8_drop_pilot_ci95"][0] <= info["int8_drop_pilot"] <= info["int8_drop_pilot_ci95"][1]
    result = tight.fallback(0.001, sensitivity=tight.sensitivity("sqnr", "disable-one", subset=8), max_evals=6)
    assert result.noise["sizing"]["images_needed"] == info["images_needed"]
    assert result.noise["images"] == 12
    with pytest.raises(InputError, match="pilot"):
        tight.size_splits(0.005, pilot=4)


def test_auto_decision_is_holdout_only_when_the_data_holds_its_images(tmp_path):
    """decision='auto': the pilot says how many images the holdout rule (a quarter of the budget of noise) needs;
    holdout when both splits hold them, else the interval rule; the search then uses the rule chosen."""
    from trtalign.core.config import load_config
    from trtalign.tune.fallback import HOLDOUT_SHARE, NOISE_SHARE, images_needed

    s = make_setup(tmp_path)
    roomy = session_from_config(load_config(s["config"]))
    info = roomy.size_splits(0.5, pilot=8, decision="auto")
    assert images_needed(info["halfwidth_pilot"], 8, 0.5, HOLDOUT_SHARE) <= 12
    assert info["decision"] == "holdout" and info["share"] == HOLDOUT_SHARE
    result = roomy.fallback(0.5, sensitivity=roomy.sensitivity("sqnr", "disable-one", subset=8), max_evals=4)
    assert result.decision == "holdout"
    tight = session_from_config(load_config(s["config"]))
    info = tight.size_splits(0.001, pilot=8, decision="auto")
    assert images_needed(info["halfwidth_pilot"], 8, 0.001, HOLDOUT_SHARE) > 12
    assert info["decision"] == "interval" and info["share"] == NOISE_SHARE
    # between the two: holdout does not fit in 12 images, the interval rule's ~6 do (sized as the interval rule)
    half = info["halfwidth_pilot"]
    mid = 2 * half * (8 / 6) ** 0.5  # the interval rule needs ~6 images, holdout ~24
    assert images_needed(half, 8, mid, NOISE_SHARE) <= 8 < 12 < images_needed(half, 8, mid, HOLDOUT_SHARE)
    both = session_from_config(load_config(s["config"])).size_splits(mid, pilot=8, decision="auto")
    assert (both["decision"], both["tune_images"], both["enough"]) == ("interval", 8, True)
    assert tight.fallback(0.001, ranking=tight.unit_names, max_evals=2).decision == "interval"
    # an explicit rule is kept whatever the data holds
    assert tight.fallback(0.001, ranking=tight.unit_names, max_evals=2, decision="holdout").decision == "holdout"
