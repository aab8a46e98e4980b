"""The fallback search on synthetic evaluate(plan) functions: bisection, pruning, budgets, journal resume, splits."""

from __future__ import annotations

import json
import math

import pytest

from trtalign.core.errors import InputError
from trtalign.tune.fallback import order_by_cost, rank_units, search_fallback

UNITS = [f"u{i:02d}" for i in range(32)]


def additive(costs: dict, base: float = 0.70):
    """mAP = base - sum of the costs of units left in INT8 (monotone in the fallback set)."""
    calls = []

    def evaluate(fallback: frozenset) -> float:
        calls.append(frozenset(fallback))
        return base - sum(c for u, c in costs.items() if u not in fallback)

    evaluate.calls = calls
    return evaluate


def test_bisection_finds_the_sensitive_units_in_log_evaluations():
    # three units hurt a lot, the rest a little; budget allows the small ones to stay INT8
    costs = {u: 0.0001 for u in UNITS}
    costs.update({"u00": 0.05, "u01": 0.03, "u02": 0.02})
    ranking = rank_units(costs)
    ev = additive(costs)
    res = search_fallback(ranking, ev, budget=0.005)
    assert res.fallback_units == ["u00", "u01", "u02"]
    assert res.met_budget and res.status == "ok"
    # 2 baselines + galloping 1, 2, 4 + bisection 2..4 (one step) + at most 3 prune trials
    assert res.num_evaluations <= 2 + 3 + 1 + 3
    assert [e.phase for e in res.evaluations if e.phase in ("gallop", "bisect")] == ["gallop"] * 3 + ["bisect"]
    assert res.final_map_tune == pytest.approx(0.70 - 29 * 0.0001)
    # plain bisection over [0, 32] finds the same set in 2 + ceil(log2(32)) + 3 evaluations
    bis = search_fallback(ranking, additive(costs), budget=0.005, search="bisect")
    assert bis.fallback_units == ["u00", "u01", "u02"]
    assert bis.num_evaluations <= 2 + 5 + 3
    assert all(e.phase != "gallop" for e in bis.evaluations)


def test_galloping_is_not_misled_by_noise_in_the_long_tail():
    """One unit carries the drop; long prefixes are noisy (as on a small tuning split). Galloping tries the short
    prefixes first and stops at one unit; bisection starts in the middle, fails there on the noise and ends with many."""
    costs = {u: 0.0 for u in UNITS}
    costs["u00"] = 0.05

    def noisy_tail(fallback: frozenset) -> float:
        noise = -0.006 if 8 <= len(fallback) < len(UNITS) else 0.0
        return 0.70 - sum(c for u, c in costs.items() if u not in fallback) + noise

    ranking = rank_units(costs)
    res = search_fallback(ranking, noisy_tail, budget=0.005)
    assert res.fallback_units == ["u00"] and res.met_budget
    assert res.num_evaluations == 2 + 1  # baselines, prefix of 1 passes (the final plan is a replay of it)
    bis = search_fallback(ranking, noisy_tail, budget=0.005, search="bisect", prune=False)
    assert len(bis.fallback_units) > 8


def test_unknown_search_strategy_is_a_clear_error():
    with pytest.raises(InputError, match="'gallop', 'bisect'"):
        search_fallback(UNITS, additive({}), budget=0.01, search="linear")


def test_pruning_requantizes_units_the_ranking_put_too_high():
    # ranking is wrong: u05 ranked second but harmless; pruning must put it back to INT8
    costs = {u: 0.0 for u in UNITS}
    costs.update({"u00": 0.05, "u01": 0.04})
    ranking = ["u00", "u05", "u01"] + [u for u in UNITS if u not in ("u00", "u05", "u01")]
    res = search_fallback(ranking, additive(costs), budget=0.001)
    assert res.fallback_units == ["u00", "u01"]


def test_budget_zero_means_everything_falls_back_when_every_unit_hurts():
    costs = {u: 0.001 * (i + 1) for i, u in enumerate(UNITS)}
    res = search_fallback(rank_units(costs), additive(costs), budget=0.0)
    assert set(res.fallback_units) == set(UNITS)


def test_huge_budget_means_nothing_falls_back():
    costs = {u: 0.01 for u in UNITS}
    ev = additive(costs)
    res = search_fallback(rank_units(costs), ev, budget=1.0)
    assert res.fallback_units == [] and res.status == "nothing-to-do"
    assert res.num_evaluations == 2  # the two baselines only


@pytest.mark.parametrize("budget", [-0.1, float("nan"), float("inf")])
def test_bad_budget_is_a_clear_error(budget):
    with pytest.raises(InputError, match="budget"):
        search_fallback(UNITS, additive({}), budget=budget)


def test_reference_above_reachable_is_reported_unreachable():
    costs = {u: 0.001 for u in UNITS}
    res = search_fallback(rank_units(costs), additive(costs), budget=0.0, reference_tune=0.9)
    assert res.status == "unreachable" and not res.met_budget and set(res.fallback_units) == set(UNITS)


def test_validation_split_is_never_used_to_choose():
    costs = {u: 0.0005 for u in UNITS}
    costs["u03"] = 0.05
    tune = additive(costs)
    # on validation a different unit hurts: if the search looked at it, it would pick u07
    val_costs = dict(costs)
    val_costs["u07"] = 0.2
    val = additive(val_costs)
    res = search_fallback(rank_units(costs), tune, budget=0.02, evaluate_val=val)
    assert res.fallback_units == ["u03"]
    assert len(val.calls) == 3  # fp32 reference, int8 baseline, the chosen plan: nothing else
    assert frozenset({"u03"}) in val.calls
    assert res.final_map_val == pytest.approx(0.70 - 30 * 0.0005 - 0.2)


def test_non_monotone_curve_still_meets_budget_on_tuning_split():
    costs = {u: 0.002 for u in UNITS}
    costs["u10"] = 0.03

    def bumpy(fallback: frozenset) -> float:  # noise that breaks monotonicity of the prefix curve
        noise = 0.004 if len(fallback) % 3 == 1 else 0.0
        return 0.7 - sum(c for u, c in costs.items() if u not in fallback) + noise

    res = search_fallback(rank_units(costs), bumpy, budget=0.01)
    assert res.met_budget
    assert res.final_map_tune >= res.fp32_map_tune - 0.01


def test_interrupted_search_resumes_from_journal(tmp_path):
    costs = {u: 0.0002 for u in UNITS}
    costs.update({"u00": 0.05, "u04": 0.02})
    ranking = rank_units(costs)
    journal = tmp_path / "journal.json"
    ev = additive(costs)

    class Crash(Exception):
        pass

    def crashing(fallback: frozenset) -> float:
        if len(ev.calls) == 4:
            raise Crash()
        return ev(fallback)

    with pytest.raises(Crash):
        search_fallback(ranking, crashing, budget=0.007, journal=journal)
    done = list(ev.calls)
    assert len(json.loads(journal.read_text())["entries"]) == 4
    again = additive(costs)
    res = search_fallback(ranking, again, budget=0.007, journal=journal)
    assert not set(again.calls) & set(done), "finished evaluations were run again"
    assert res.fallback_units == ["u00", "u04"]
    assert sum(e.replayed for e in res.evaluations) >= 4
    # a different budget is a different search: the journal is not replayed into it
    other = additive(costs)
    search_fallback(ranking, other, budget=0.5, journal=journal)
    assert len(other.calls) == 2


def test_max_evals_caps_the_search():
    costs = {u: 0.001 for u in UNITS}
    ev = additive(costs)
    res = search_fallback(rank_units(costs), ev, budget=0.004, max_evals=2)
    assert res.status == "max-evals"
    assert len(set(ev.calls)) <= 2 + 2 + 1


def test_latency_aware_order_prefers_cheap_units():
    scores = {"a": 1.0, "b": 0.9, "c": 0.1}
    macs = {"a": 100.0, "b": 1.0, "c": 1.0}
    assert order_by_cost(scores, macs) == ["b", "c", "a"]


def test_mac_fraction_reported():
    costs = {u: 0.0 for u in UNITS}
    costs["u00"] = 0.5
    macs = {u: 1.0 for u in UNITS}
    macs["u00"] = 8.0
    res = search_fallback(rank_units(costs), additive(costs), budget=0.01, macs=macs)
    assert res.fallback_units == ["u00"]
    assert res.int8_mac_fraction == pytest.approx(31 / 39)


def test_validation_split_that_contradicts_the_tuning_split_is_reported():
    costs = {u: 0.0 for u in UNITS}
    costs["u00"] = 0.05
    tune = additive(costs)
    val_costs = dict(costs)
    val_costs["u01"] = 0.02  # on validation another unit also hurts: the tuning split could not see it
    res = search_fallback(rank_units(costs), tune, budget=0.01, evaluate_val=additive(val_costs))
    assert res.met_budget and res.met_budget_val is False
    assert "on the validation split the drop is 0.0200 > budget 0.0100" in res.val_warning()
    assert res.to_dict()["met_budget_val"] is False
    ok = search_fallback(rank_units(costs), tune, budget=0.01, evaluate_val=additive(costs))
    assert ok.met_budget_val is True and ok.val_warning() == ""
    assert search_fallback(rank_units(costs), tune, budget=0.01).met_budget_val is None


def test_validation_interval_past_the_budget_is_a_warning_even_when_the_point_drop_is_within():
    from trtalign.tune.fallback import FallbackResult

    res = FallbackResult(fallback_units=["u00"], target="fp16", budget=0.005, fp32_map_tune=0.70, int8_map_tune=0.69,
                         final_map_tune=0.698, fp32_map_val=0.70, int8_map_val=0.69, final_map_val=0.6974,
                         met_budget=True, final_delta_val=[-0.0026, -0.00501, 0.0002])
    assert res.met_budget_val and res.met_budget_val_ci95 is False
    assert "upper end of its 95% interval, 0.0050, is not" in res.val_warning()
    res.final_delta_val = [-0.0026, -0.0049, 0.0002]
    assert res.val_warning() == ""


# ------------------------------------------------------------------------------------------- interval decisions
class BoxNoiseModel:
    """Detections of a real scored dataset whose boxes get noise from every unit left INT8 (``noise[u]`` pixels);
    mAP and the paired bootstrap of each plan against the all-fallen-back plan come from ``eval.bootstrap``."""

    def __init__(self, noise: dict, n_images: int, seed: int = 0):
        import numpy as np

        from tests.eval.test_coco_metrics import make_case

        self.ds, self.dets = make_case(seed, n_images=n_images)
        rng = np.random.default_rng(seed)
        self.unit_noise = {u: {k: rng.normal(0, 1, d.boxes.shape) for k, d in self.dets.items()} for u in noise}
        self.noise = noise
        self.tables: dict = {}

    def table(self, fallback: frozenset):
        from trtalign.core.detections import Detections
        from trtalign.eval.bootstrap import MatchTable

        if fallback not in self.tables:
            dets = {}
            for k, d in self.dets.items():
                boxes = d.boxes.astype(float).copy()
                for u, s in self.noise.items():
                    if u not in fallback:
                        boxes = boxes + s * self.unit_noise[u][k]
                dets[k] = Detections(boxes, d.scores, d.class_ids)
            self.tables[fallback] = MatchTable(self.ds, dets)
        return self.tables[fallback]

    def evaluate(self, fallback: frozenset) -> float:
        return self.table(frozenset(fallback)).map()[0]

    def compare(self, fallback: frozenset) -> tuple:
        from trtalign.eval.bootstrap import bootstrap_tables

        ci = bootstrap_tables(self.table(frozenset(fallback)), self.table(frozenset(self.noise)), 300, 0)
        return ci.delta, ci.low, ci.high


NOISY = {"u00": 4.0, "u01": 2.0, "u02": 1.0, "u03": 0.3, "u04": 0.2, "u05": 0.1}


def _delta_keys_have_intervals(d: dict) -> None:
    keys = [k for k in d if k.startswith("delta_map") and not k.endswith("_ci95")]
    assert keys and all(f"{k}_ci95" in d for k in keys)
    for e in d["evaluations"]:
        assert "delta_map" in e and "delta_map_ci95" in e


def test_interval_decision_keeps_the_upper_end_of_the_drop_within_budget():
    model = BoxNoiseModel(NOISY, n_images=120)
    ranking = list(NOISY)
    budget = 0.01
    point = search_fallback(ranking, model.evaluate, budget, decision="point")
    res = search_fallback(ranking, model.evaluate, budget, compare_tune=model.compare, evaluate_val=model.evaluate,
                          compare_val=model.compare)
    assert res.decision == "interval" and res.met_budget
    delta, low, high = res.final_delta_tune
    assert low <= delta <= high and -low <= budget  # upper end of the drop within the budget
    assert delta == pytest.approx(res.final_map_tune - res.fp32_map_tune, abs=1e-12)
    assert len(res.fallback_units) >= len(point.fallback_units)
    # the int8 plan's interval on this split is real and excludes no drop
    assert res.int8_delta_tune[2] < 0
    d = json.loads(json.dumps(res.to_dict()))
    _delta_keys_have_intervals(d)
    assert d["delta_map_tune_ci95"] == [low, high] and d["met_budget_val_ci95"] is not None


def test_interval_budget_zero_and_budget_above_the_int8_interval():
    model = BoxNoiseModel(NOISY, n_images=60)
    ranking = list(NOISY)
    zero = search_fallback(ranking, model.evaluate, 0.0, compare_tune=model.compare)
    assert zero.fallback_units == ranking and zero.status == "zero-budget"
    upper_int8 = -model.compare(frozenset())[1]
    big = search_fallback(ranking, model.evaluate, upper_int8 + 0.001, compare_tune=model.compare)
    assert big.fallback_units == [] and big.status == "nothing-to-do"
    assert -model.compare(frozenset())[0] < upper_int8 - 0.001  # the point drop is inside the next budget
    just_below = search_fallback(ranking, model.evaluate, upper_int8 - 0.001, compare_tune=model.compare)
    assert just_below.fallback_units  # the point drop is inside this budget, its interval is not


def test_too_few_images_for_the_budget_is_said():
    model = BoxNoiseModel(NOISY, n_images=12)
    res = search_fallback(list(NOISY), model.evaluate, 0.002, compare_tune=model.compare)
    assert res.noise["ci95_halfwidth_int8"] > 0.002 and "tuning images are needed" in res.noise["message"]
    with pytest.raises(InputError, match="needs compare_tune"):
        search_fallback(list(NOISY), model.evaluate, 0.01, decision="interval")


def test_images_needed_follows_the_measured_shrinking_of_the_interval():
    """The sizing rule n * (halfwidth / (share * budget))^2 rests on the half-width shrinking as 1/sqrt(n): measured
    here on the paired bootstrap of real matched detections (4x the images -> about half the width)."""
    from trtalign.tune.fallback import images_needed

    assert images_needed(0.005, 100, 0.005) == 400  # half the budget of noise: (0.005 / 0.0025)^2 = 4x
    assert images_needed(0.001, 100, 0.005) == 16
    assert images_needed(0.005, 100, 0.0) == 100  # budget 0: nothing to size for
    widths = {}
    for n in (40, 160):
        model = BoxNoiseModel(NOISY, n_images=n, seed=3)
        _, low, high = model.compare(frozenset())
        widths[n] = (high - low) / 2
    assert 0.35 < widths[160] / widths[40] < 0.7  # ~0.5


def test_noise_says_how_many_tuning_images_the_budget_needs():
    model = BoxNoiseModel(NOISY, n_images=12)
    res = search_fallback(list(NOISY), model.evaluate, 0.002, compare_tune=model.compare, noise_images=12)
    half = res.noise["ci95_halfwidth_int8"]
    assert res.noise["images"] == 12 and res.noise["images_needed"] == math.ceil(12 * (half / 0.001) ** 2)
    assert f"about {res.noise['images_needed']} instead of 12" in res.noise["message"]


def test_holdout_decision_keeps_a_half_width_of_margin_for_the_validation_split():
    model = BoxNoiseModel(NOISY, n_images=120)
    ranking = list(NOISY)
    budget = 0.02  # plain INT8 drops ~0.05; two units fallen back ~0.0075 [0.0007, 0.0155]: interval yes, holdout no
    interval = search_fallback(ranking, model.evaluate, budget, compare_tune=model.compare, prune=False)
    holdout = search_fallback(ranking, model.evaluate, budget, compare_tune=model.compare, decision="holdout",
                              prune=False, noise_images=120)
    assert holdout.decision == "holdout" and holdout.met_budget
    delta, low, high = holdout.final_delta_tune
    assert -low + (high - low) / 2 <= budget  # upper end of the drop + half-width within the budget
    assert len(holdout.fallback_units) >= len(interval.fallback_units)
    # the interval rule's plan passes its own test; when the holdout rule chose more units, it fails the holdout test
    _, ilow, ihigh = interval.final_delta_tune
    assert -ilow <= budget
    assert len(holdout.fallback_units) > len(interval.fallback_units)
    assert -ilow + (ihigh - ilow) / 2 > budget
    # the noise message sizes for a quarter of the budget: 4x the images the interval rule asks for
    half = holdout.noise["ci95_halfwidth_int8"]
    assert holdout.noise["images_needed"] == math.ceil(120 * (half / (0.25 * budget)) ** 2)


# ------------------------------------------------------------------------------------------------ descend
def _stem_costs() -> tuple[dict, dict]:
    """The drop sits in the first four units of the graph (a detector's stem); the rest costs nothing. MACs equal."""
    costs = {u: 0.0 for u in UNITS}
    costs.update({"u00": 0.003, "u01": 0.002, "u02": 0.002, "u03": 0.001})
    return costs, {u: 1.0 for u in UNITS}


def test_descend_finds_a_sensitive_stem_the_ranking_puts_last():
    costs, macs = _stem_costs()
    ranking = list(reversed(UNITS))  # the ranking is wrong: the stem comes last
    gallop = search_fallback(ranking, additive(costs), budget=0.003, macs=macs, max_evals=14)
    ev = additive(costs)
    res = search_fallback(ranking, ev, budget=0.003, macs=macs, search="descend", order=UNITS, max_evals=14)
    assert res.met_budget and res.status == "ok"
    # 0.008 of drop, 0.003 allowed: the stem units worth 0.005 or more must stay float, nothing else
    assert set(res.fallback_units) <= {"u00", "u01", "u02", "u03"}
    assert sum(costs[u] for u in UNITS if u not in res.fallback_units) <= 0.003 + 1e-12
    assert res.int8_mac_fraction >= 28 / 32
    assert all(e.phase in ("baseline", "descend", "final") for e in res.evaluations)
    assert res.num_evaluations <= 2 + 2 * math.ceil(math.log2(32))
    # the prefix search on the same wrong ranking has to fall back most of the graph to reach the stem
    assert len(gallop.fallback_units) > 16
    # every evaluated plan the search kept passed: the result is the last passing plan it evaluated
    assert frozenset(res.fallback_units) in ev.calls


def test_descend_keeps_a_passing_plan_when_it_runs_out_of_evaluations():
    costs, macs = _stem_costs()
    for cap in range(1, 8):
        res = search_fallback(UNITS, additive(costs), budget=0.003, macs=macs, search="descend", max_evals=cap)
        assert res.met_budget, cap
        assert res.final_map_tune >= 0.70 - 0.003 - 1e-12
        assert res.num_evaluations <= 2 + cap
        if res.status == "max-evals":
            assert "the plan in hand passes" in res.message
    # more evaluations never give back fewer MACs
    fracs = [search_fallback(UNITS, additive(costs), budget=0.003, macs=macs, search="descend",
                             max_evals=c).int8_mac_fraction for c in (2, 4, 8, 16)]
    assert fracs == sorted(fracs) and fracs[-1] > fracs[0]


def test_descend_refines_two_separate_regions_when_each_is_needed():
    # one unit at each end of the graph hurts; the budget allows neither in INT8
    costs = {u: 0.0 for u in UNITS}
    costs.update({"u00": 0.004, "u31": 0.004})
    res = search_fallback(UNITS, additive(costs), budget=0.003, search="descend", max_evals=40,
                          macs={u: 1.0 for u in UNITS}, min_region_share=0.0)
    assert res.fallback_units == ["u00", "u31"]
    assert res.met_budget


def test_descend_does_not_spend_evaluations_on_regions_below_the_mac_share():
    costs, _ = _stem_costs()
    macs = {u: (0.1 if u in ("u00", "u01", "u02", "u03") else 100.0) for u in UNITS}  # the stem is nearly free
    few = search_fallback(UNITS, additive(costs), budget=0.003, macs=macs, search="descend", max_evals=40)
    every = search_fallback(UNITS, additive(costs), budget=0.003, macs=macs, search="descend", max_evals=40,
                            min_region_share=0.0)
    assert few.met_budget and every.met_budget
    assert few.num_evaluations < every.num_evaluations
    assert abs(few.int8_mac_fraction - every.int8_mac_fraction) < 0.01


def test_descend_order_must_list_the_ranking_units():
    with pytest.raises(InputError, match="same units"):
        search_fallback(UNITS, additive({}), budget=0.01, search="descend", order=UNITS[:-1])
