"""Fallback search: the fewest quantization units to keep in higher precision so that mAP stays within a budget.

Given a ranking of units (most INT8-sensitive first) and an ``evaluate(fallback_units) -> mAP`` callable on a *tuning*
split, the search

1. searches the ranked prefix for the smallest ``k`` such that falling back the top-``k`` units meets
   ``mAP >= fp32_map - budget``: by default galloping (``k`` = 1, 2, 4, ... until one passes, then bisection between
   the last failing and the first passing ``k``: O(log k) full evaluations, and the small prefixes that carry most of
   the drop are tried first, so noise in the long tail of the curve cannot push the answer up), or plain bisection
   over [0, N] (``search="bisect"``: O(log N), assumes the whole prefix curve is roughly monotone);
2. prunes: tries to re-quantize each chosen unit, least sensitive first, keeping it INT8 when the budget still holds;
3. confirms the final plan once on a separate *validation* split (the split that is reported; never used to choose).

``search="descend"`` does not trust the ranking to find the sensitive units; it looks for them in the graph. It
starts from every unit fallen back (a plan that passes) and halves contiguous regions in graph order: a region's half
goes back to INT8 when the plan still passes without it, the other half is tried when it does not, and a region whose
halves are each needed is split into two regions refined in turn (the largest in MACs first). The plan in hand always
passes, so stopping at the evaluation cap still leaves a valid plan, and the evaluations grow with the log of the
number of units when the INT8 drop is concentrated in a few places (the stem of a detector, say) -- where a ranking
metric that misses those units makes a prefix search fall back many units before reaching them. The ranking only
chooses which half is tried first (the less sensitive one), so a good ranking saves evaluations and a bad one costs
at most one more per halving.

With ``compare_tune`` (a paired bootstrap over images, :mod:`trtalign.eval.bootstrap`) the search decides with the
interval, not the point value (``decision="interval"``): a prefix passes when the upper end of the 95% interval of its
drop against the reference is within the budget, so a plan chosen on a small tuning split is not a coin toss on the
validation split. The interval of plain INT8 on the tuning split measures the noise: when it is wider than the budget
the result says how many tuning images the budget needs. A budget of 0 keeps every unit in higher precision.

Every evaluation is written to a JSON journal (atomically) keyed by the exact fallback set, so an interrupted search
that is started again with the same inputs replays finished evaluations instead of re-running them.

A latency-aware variant orders units by sensitivity per unit of cost (conv MACs when no GPU timing exists), so cheap
units that recover much accuracy fall back first.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from trtalign.core.errors import InputError
from trtalign.core.io import atomic_write_json
from trtalign.core.logging import get_logger

log = get_logger(__name__)

EvaluateFn = Callable[[frozenset], float]
#: ``fallback set -> (delta, low, high)``: mAP of that plan minus mAP of the all-fallen-back plan, with the 95%
#: paired bootstrap interval over images
CompareFn = Callable[[frozenset], tuple]
#: how a trial plan is judged against the budget: ``interval`` (the upper end of the drop's 95% interval is within the
#: budget), ``holdout`` (the upper end plus the interval's half-width again is: the validation split's interval,
#: as wide as the tuning one, then stays within the budget with ~92% probability, see :data:`HOLDOUT_SHARE`),
#: ``point`` (the point drop is)
DECISIONS = ("interval", "holdout", "point")

#: search strategies of :func:`search_fallback`: two prefix searches over the ranking, and ``descend`` (halving
#: contiguous regions of the graph; see :func:`search_fallback`)
SEARCHES = ("gallop", "bisect", "descend")


@dataclass
class Evaluation:
    """One full evaluation: which units were kept in higher precision and the mAP it gave."""

    fallback: tuple  # sorted unit names kept in higher precision
    map: float
    split: str  # "tune" or "val"
    phase: str  # "baseline", "gallop", "bisect", "prune", "final", "confirm"
    seconds: float = 0.0
    replayed: bool = False  # taken from the journal, not re-run
    delta_map: float | None = None  # against the reference, when an interval was computed
    delta_map_ci95: list | None = None

    def to_dict(self) -> dict:
        return {"fallback": list(self.fallback), "num_fallback": len(self.fallback), "map": self.map,
                "split": self.split, "phase": self.phase, "seconds": round(self.seconds, 3), "replayed": self.replayed,
                "delta_map": self.delta_map, "delta_map_ci95": self.delta_map_ci95}


@dataclass
class FallbackResult:
    """What the search decided and how it got there."""

    fallback_units: list  # unit names kept in higher precision, in ranking order
    target: str  # "fp16" or "fp32"
    budget: float
    fp32_map_tune: float
    int8_map_tune: float
    final_map_tune: float
    fp32_map_val: float | None = None
    int8_map_val: float | None = None
    final_map_val: float | None = None
    met_budget: bool = False
    status: str = "ok"  # "ok", "nothing-to-do", "zero-budget", "unreachable", "max-evals"
    message: str = ""
    evaluations: list = field(default_factory=list)  # [Evaluation]
    curve: list = field(default_factory=list)  # [(num_fallback, map)] from the bisection/prune evaluations on tune
    int8_mac_fraction: float | None = None
    wall_seconds: float = 0.0
    decision: str = "point"
    # [delta, low, high] of mAP minus the reference (paired bootstrap 95% interval), when intervals were computed
    int8_delta_tune: list | None = None
    final_delta_tune: list | None = None
    int8_delta_val: list | None = None
    final_delta_val: list | None = None
    noise: dict = field(default_factory=dict)  # the tuning split's noise against the budget

    @property
    def met_budget_val(self) -> bool | None:
        """Whether the chosen plan also stays within the budget on the validation split (None: not confirmed).
        The plan is chosen on the tuning split; a small tuning split can choose a plan that misses on validation."""
        if self.final_map_val is None or self.fp32_map_val is None:
            return None
        return self.final_map_val >= self.fp32_map_val - self.budget - 1e-12

    @property
    def met_budget_val_ci95(self) -> bool | None:
        """Whether the upper end of the validation drop's 95% interval is within the budget (None: no interval)."""
        if not self.final_delta_val or self.final_delta_val[1] is None:
            return None
        return -self.final_delta_val[1] <= self.budget + 1e-12

    def val_warning(self) -> str:
        """One line when the validation split contradicts the tuning split, else ''."""
        if self.met_budget and self.met_budget_val and self.met_budget_val_ci95 is False:
            return (f"warning: on the validation split the drop {-self.final_delta_val[0]:.4f} is within the budget "
                    f"{self.budget:.4f} but the upper end of its 95% interval, {-self.final_delta_val[1]:.4f}, is "
                    f"not: the plan passed on the tuning split near the edge of the budget; the holdout rule "
                    f"(fallback.decision: holdout, four times the images) keeps a margin for the unseen split")
        if self.met_budget_val is False and self.met_budget:
            ci = ""
            if self.final_delta_val and self.final_delta_val[1] is not None:
                ci = f" (95% interval of the drop {-self.final_delta_val[2]:.4f} .. {-self.final_delta_val[1]:.4f})"
            return (f"warning: on the validation split the drop is {self.fp32_map_val - self.final_map_val:.4f}{ci} "
                    f"> budget {self.budget:.4f} (tuning split: {self.fp32_map_tune - self.final_map_tune:.4f}); "
                    f"the tuning split is too small to tell these plans apart, use more tuning images")
        return ""

    @property
    def num_evaluations(self) -> int:
        """Full evaluations actually run (journal replays excluded)."""
        return sum(1 for e in self.evaluations if not e.replayed)

    def plan(self, units: Iterable[str]) -> dict:
        """unit name -> precision, for every unit."""
        chosen = set(self.fallback_units)
        return {u: (self.target if u in chosen else "int8") for u in units}

    def __bool__(self) -> bool:
        return self.met_budget

    def to_dict(self) -> dict:
        return {
            "status": self.status, "message": self.message, "met_budget": self.met_budget,
            "met_budget_val": self.met_budget_val, "budget": self.budget,
            "target": self.target, "fallback_units": list(self.fallback_units),
            "num_fallback": len(self.fallback_units),
            "map": {"tune": {"fp32": self.fp32_map_tune, "int8": self.int8_map_tune, "final": self.final_map_tune},
                    "val": {"fp32": self.fp32_map_val, "int8": self.int8_map_val, "final": self.final_map_val}},
            "int8_mac_fraction": self.int8_mac_fraction, "num_evaluations": self.num_evaluations,
            "decision": self.decision, "met_budget_val_ci95": self.met_budget_val_ci95, "noise": dict(self.noise),
            **_delta_keys("delta_map_tune_int8", self.int8_delta_tune),
            **_delta_keys("delta_map_tune", self.final_delta_tune),
            **_delta_keys("delta_map_val_int8", self.int8_delta_val),
            **_delta_keys("delta_map_val", self.final_delta_val),
            "evaluations": [e.to_dict() for e in self.evaluations],
            "curve": [{"num_fallback": n, "map": m} for n, m in self.curve],
            "wall_seconds": round(self.wall_seconds, 3),
        }


def _delta_keys(key: str, value: list | None) -> dict:
    """``{key: delta, key_ci95: [low, high]}`` (None when no interval was computed)."""
    if not value:
        return {key: None, f"{key}_ci95": None}
    return {key: value[0], f"{key}_ci95": [value[1], value[2]]}


class Journal:
    """Evaluations made so far, persisted after each one. Keyed by split and the exact fallback set."""

    def __init__(self, path: str | Path | None, fingerprint: str):
        self.path = Path(path) if path else None
        self.fingerprint = fingerprint
        self.entries: dict[str, float] = {}
        if self.path and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise InputError(f"fallback journal {self.path} is unreadable ({exc}); delete it to start over") from None
            if data.get("fingerprint") == fingerprint:
                self.entries = {k: float(v) for k, v in data.get("entries", {}).items()}
                log.info("resuming fallback search from %s (%d evaluations recorded)", self.path, len(self.entries))
            else:
                log.warning("journal %s belongs to another search (inputs changed); starting over", self.path)

    @staticmethod
    def key(split: str, fallback: frozenset) -> str:
        return split + ":" + ",".join(sorted(fallback))

    def get(self, split: str, fallback: frozenset) -> float | None:
        return self.entries.get(self.key(split, fallback))

    def put(self, split: str, fallback: frozenset, value: float) -> None:
        self.entries[self.key(split, fallback)] = float(value)
        if self.path:
            atomic_write_json(self.path, {"fingerprint": self.fingerprint, "entries": self.entries})


def search_fingerprint(ranking: Sequence[str], budget: float, target: str, extra: Mapping | None = None) -> str:
    """Identifies one search: a journal is only replayed into the same search."""
    payload = json.dumps({"ranking": list(ranking), "budget": budget, "target": target, "extra": dict(extra or {})},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


#: share of the budget the 95% half-width of a drop may take when splits are sized from the measured noise: with
#: 0.5, a plan whose drop is half the budget passes the interval test
NOISE_SHARE = 0.5


#: the share of the budget the 95% half-width may take under ``decision="holdout"``: a plan whose drop is half the
#: budget passes (drop + 2 x half-width = budget) -- four times the images of :data:`NOISE_SHARE`
HOLDOUT_SHARE = 0.25

#: ``search="descend"`` leaves regions under this share of the MACs unrefined (see :func:`search_fallback`)
MIN_REGION_SHARE = 0.05


def decision_share(decision: str) -> float:
    """The noise share the splits are sized with for a decision rule (``holdout`` needs four times the images)."""
    return HOLDOUT_SHARE if decision == "holdout" else NOISE_SHARE


def images_needed(halfwidth: float, images: int, budget: float, share: float = NOISE_SHARE) -> int:
    """Images a split needs so that the 95% half-width of a paired mAP difference is ``share * budget``, from the
    half-width measured on ``images`` images (the half-width of a mean over images shrinks as ``1 / sqrt(n)``)."""
    if budget <= 0 or halfwidth <= 0 or images < 1:
        return int(images)
    return max(1, math.ceil(round(images * (halfwidth / (share * budget)) ** 2, 9)))  # 16.000000000000004 is 16


def order_by_cost(scores: Mapping[str, float], costs: Mapping[str, float]) -> list:
    """Latency-aware ranking: sensitivity per unit of cost, highest first (cost = MACs or measured ms)."""
    def key(u: str) -> tuple:
        cost = max(float(costs.get(u, 0.0)), 1e-12)
        return (-float(scores[u]) / cost, u)

    return sorted(scores, key=key)


def rank_units(scores: Mapping[str, float], higher_is_worse: bool = True) -> list:
    """Units ordered most-sensitive first; ties broken by name so the order is deterministic."""
    sign = -1.0 if higher_is_worse else 1.0
    return sorted(scores, key=lambda u: (sign * float(scores[u]) if not math.isnan(scores[u]) else math.inf, u))


def _descend(order: list, ranking: list, macs: Mapping[str, float] | None, min_share: float, max_evals: int,
             used: dict, trial: Callable[[frozenset], bool]) -> tuple[list, str, str]:
    """The ``"descend"`` search: returns (fallback units, status, message). ``trial(fallback set)`` evaluates a plan
    and says whether it passes; ``used["n"]`` counts the evaluations against ``max_evals``."""
    position = {u: i for i, u in enumerate(ranking)}  # 0 = most sensitive
    cost = {u: float((macs or {}).get(u, 0.0)) for u in order}
    total = sum(cost.values())

    def weight(region: tuple) -> float:  # MACs, or unit count when no MACs are known
        return sum(cost[u] for u in region) if total > 0 else float(len(region))

    def too_small(region: tuple) -> bool:
        return total > 0 and weight(region) < min_share * total

    tried: dict[frozenset, bool] = {}  # one plan can be reached twice (a region's half, later the rest of it)

    def attempt(fallback: frozenset) -> bool:
        if fallback not in tried:
            used["n"] += 1
            tried[fallback] = trial(fallback)
        return tried[fallback]

    regions: list[tuple] = [tuple(order)]  # contiguous runs of fallen-back units, each still to refine
    done: list[tuple] = []  # regions that cannot shrink further
    status, message = "ok", ""
    while regions:
        regions.sort(key=weight, reverse=True)
        region = regions.pop(0)
        if too_small(region):
            done.append(region)
            continue
        kept = frozenset(u for r in regions + done for u in r)
        halves = [region] if len(region) == 1 else [region[:len(region) // 2], region[len(region) // 2:]]
        # try to return the less sensitive half (larger mean ranking position) to INT8 first
        halves.sort(key=lambda h: -sum(position[u] for u in h) / len(h))
        for back in halves:
            rest = tuple(u for u in region if u not in back)
            plan = kept | frozenset(rest)
            if plan not in tried and used["n"] >= max_evals:
                status, message = "max-evals", (f"stopped after {max_evals} evaluations; the plan in hand passes, "
                                                f"{len(regions) + 1} region(s) were not refined")
                done.extend([region] + regions)
                regions = []
                break
            if attempt(plan):
                if rest:
                    regions.append(rest)
                break
        else:  # neither half can go back to INT8
            if len(region) == 1:
                done.append(region)
            else:
                regions.extend(halves)  # each half is needed: refine both
    chosen = {u for r in done for u in r}
    return [u for u in order if u in chosen], status, message


def search_fallback(
    ranking: Sequence[str],
    evaluate_tune: EvaluateFn,
    budget: float,
    *,
    evaluate_val: EvaluateFn | None = None,
    target: str = "fp16",
    max_evals: int = 16,
    prune: bool = True,
    journal: str | Path | None = None,
    fingerprint_extra: Mapping | None = None,
    macs: Mapping[str, float] | None = None,
    reference_tune: float | None = None,
    reference_val: float | None = None,
    search: str = "gallop",
    compare_tune: CompareFn | None = None,
    compare_val: CompareFn | None = None,
    decision: str | None = None,
    noise_images: int | None = None,
    warn_noise: bool = True,
    order: Sequence[str] | None = None,
    min_region_share: float = MIN_REGION_SHARE,
) -> FallbackResult:
    """Find the smallest fallback set meeting ``mAP >= mAP(all fallen back) - budget`` on the tuning split.

    Args:
        ranking: every unit name, most sensitive first.
        evaluate_tune: full evaluation on the tuning split of the model with the given units in ``target`` precision
            and all others INT8. ``evaluate_tune(frozenset(ranking))`` is the float reference.
        budget: allowed absolute mAP drop (0.005 = half a point of mAP50-95).
        evaluate_val: the same on the validation split; called only for the baselines and the chosen plan.
        max_evals: cap on full tuning evaluations in bisection + pruning (baselines not counted).
        journal: JSON file recording evaluations; re-running the same search resumes from it.
        macs: unit -> MACs, to report the INT8 MAC fraction of the result.
        search: ``"gallop"`` (default: 1, 2, 4, ... then bisection), ``"bisect"`` (bisection over [0, N]) or
            ``"descend"`` (halving contiguous regions of ``order``; no pruning pass: its plan is minimal per region).
        order: the units in graph (topological) order, for ``"descend"`` (default: ``ranking``'s order).
        min_region_share: ``"descend"`` does not refine a region holding less than this share of all MACs (``macs``
            given): each refinement it accepts moves the plan closer to the edge of the budget, and one that could
            win back less than 5% of the MACs is not worth that risk nor its evaluation (the demo, with 0.01: two
            stem units of 1-3% each returned to INT8 and the validation interval ended 0.00001 past the budget).
        reference_tune, reference_val: mAP of the FP32 model on each split, when already known. The budget is measured
            from it (``mAP >= reference - budget``); by default the all-fallen-back model is the reference, which is
            the FP32 model when ``target='fp32'``.
        compare_tune, compare_val: ``fallback set -> (delta, low, high)`` against the all-fallen-back plan (paired
            bootstrap 95% interval); they put an interval on every reported delta.
        decision: ``"interval"`` (default with ``compare_tune``): a plan passes when the upper end of its drop's
            interval is within the budget; ``"holdout"``: when the upper end plus the half-width again is (the drop
            is then within the budget on a validation split of the same size, with its own interval, with about 92%
            probability for a plan measured once: ``P(d_val - d_tune <= h)`` with ``sd(d_val - d_tune) = sqrt(2)
            h / 1.96``; the first passing plan of a search sits at the edge, so the plain ``interval`` rule confirms
            on validation only about half the time); ``"point"`` (default without): when the point drop is.
        noise_images: images in the tuning split: the result's ``noise`` then says how many a plan with a drop of
            half the budget needs to pass the interval test (:func:`images_needed`).
        warn_noise: log the noise message as a warning (else at info level: the splits were sized and that already
            said whether the data suffices).
    Returns:
        :class:`FallbackResult`. Budget 0: every unit falls back. In ``"interval"`` mode a budget above the upper end
        of plain INT8's drop interval: nothing falls back.
    """
    if budget is None or not math.isfinite(budget) or budget < 0:
        raise InputError(f"budget must be a non-negative mAP drop (e.g. 0.005 for half a point), got {budget!r}")
    if max_evals < 1:
        raise InputError(f"max_evals must be >= 1, got {max_evals}")
    if search not in SEARCHES:
        raise InputError(f"search must be one of {', '.join(map(repr, SEARCHES))}, got {search!r}")
    decision = decision or ("interval" if compare_tune is not None else "point")
    if decision not in DECISIONS:
        raise InputError(f"decision must be one of {', '.join(map(repr, DECISIONS))}, got {decision!r}")
    if decision != "point" and compare_tune is None:
        raise InputError(f"decision={decision!r} needs compare_tune (a paired bootstrap of each plan against the "
                         "reference)")
    ranking = list(ranking)
    if len(set(ranking)) != len(ranking):
        raise InputError("ranking lists a unit more than once")
    order = list(ranking if order is None else order)
    if sorted(order) != sorted(ranking):
        raise InputError("order must list the same units as the ranking")
    if not ranking:
        raise InputError("no quantization units to search over (the model has no INT8 units)")
    start = time.perf_counter()
    jr = Journal(journal, search_fingerprint(ranking, budget, target, fingerprint_extra))
    evaluations: list[Evaluation] = []
    used = {"n": 0}

    def run(fn: EvaluateFn, split: str, fallback: frozenset, phase: str) -> float:
        cached = jr.get(split, fallback)
        if cached is not None:
            evaluations.append(Evaluation(tuple(sorted(fallback)), cached, split, phase, 0.0, replayed=True))
            return cached
        t0 = time.perf_counter()
        value = float(fn(fallback))
        if math.isnan(value):
            raise InputError(f"evaluation returned NaN mAP for fallback set of {len(fallback)} units")
        evaluations.append(Evaluation(tuple(sorted(fallback)), value, split, phase, time.perf_counter() - t0))
        jr.put(split, fallback, value)
        return value

    all_units = frozenset(ranking)
    float_map = run(evaluate_tune, "tune", all_units, "baseline")
    int8_map = run(evaluate_tune, "tune", frozenset(), "baseline")
    reference = float_map if reference_tune is None else float(reference_tune)
    threshold = reference - budget
    prefix_map: dict[int, float] = {0: int8_map, len(ranking): float_map}
    status, message = "ok", ""
    intervals: dict[frozenset, list] = {}

    def interval(fn: CompareFn, fallback: frozenset, shift: float) -> list:
        d, lo, hi = (float(v) for v in fn(fallback))
        return [d + shift, lo + shift, hi + shift]

    def passes(fallback: frozenset, value: float) -> bool:
        if decision == "point":
            return value >= threshold
        if fallback not in intervals:
            intervals[fallback] = interval(compare_tune, fallback, float_map - reference)
            evaluations[-1].delta_map, evaluations[-1].delta_map_ci95 = intervals[fallback][0], intervals[fallback][1:]
        _, low, high = intervals[fallback]
        margin = (high - low) / 2 if decision == "holdout" else 0.0
        return -low + margin <= budget + 1e-12  # the upper end of the drop's interval (+ its half-width: holdout)

    def prefix(k: int) -> frozenset:
        return frozenset(ranking[:k])

    noise: dict = {}
    if compare_tune is not None:
        int8_ci = intervals.setdefault(frozenset(), interval(compare_tune, frozenset(), float_map - reference))
        evaluations[-1].delta_map, evaluations[-1].delta_map_ci95 = int8_ci[0], int8_ci[1:]
        half = (int8_ci[2] - int8_ci[1]) / 2
        noise = {"ci95_halfwidth_int8": half, "budget": budget}
        images = int(noise_images) if noise_images else 0
        share = decision_share(decision)
        if images and budget > 0:
            noise["images"] = images
            noise["images_needed"] = images_needed(half, images, budget, share)
        if budget > 0 and half > share * budget:
            more = math.ceil((half / (share * budget)) ** 2 * 10) / 10  # rounded up: never "1.0x"
            needed = f" (about {noise['images_needed']} instead of {images})" if images else ""
            portion = "half" if share == NOISE_SHARE else "a quarter of" if share == HOLDOUT_SHARE else f"{share:g} x"
            noise["message"] = (f"the tuning split measures the INT8 drop only to +/-{half:.4f} (95%), more than "
                                f"{portion} the budget {budget:.4f}: about {more:.1f}x as many tuning images are "
                                f"needed{needed} "
                                f"for a plan with a drop of half the budget to pass the {decision} test; "
                                f"the search falls back more units than a larger split would need")
            (log.warning if warn_noise else log.info)(noise["message"])

    chosen: list = []
    if float_map < threshold:
        chosen = list(ranking)
        status = "unreachable"
        message = (f"even with every unit in {target} the mAP is {float_map:.4f} < {threshold:.4f} "
                   f"(reference {reference:.4f} - budget {budget:.4f}); everything falls back")
    elif budget == 0:
        chosen = list(ranking)
        status = "zero-budget"
        message = f"budget 0: every unit stays in {target}"
    elif passes(frozenset(), int8_map):
        status = "nothing-to-do"
        upper = "" if decision == "point" else f" (upper end of its 95% interval {-intervals[frozenset()][1]:+.4f})"
        message = (f"INT8 without fallback already meets the budget: drop {reference - int8_map:+.4f}{upper} <= "
                   f"{budget:.4f}; no unit needs to fall back")
    elif search == "descend":
        chosen, status, message = _descend(order, ranking, macs, min_region_share, max_evals, used,
                                           lambda fb: passes(fb, run(evaluate_tune, "tune", fb, "descend")))
    else:
        lo, hi = 0, len(ranking)  # f(lo) fails, f(hi) passes (the float reference)
        if search == "gallop":
            k = 1
            while k < hi and used["n"] < max_evals:
                used["n"] += 1
                value = run(evaluate_tune, "tune", prefix(k), "gallop")
                prefix_map[k] = value
                if passes(prefix(k), value):
                    hi = k
                    break
                lo, k = k, 2 * k
        while hi - lo > 1 and used["n"] < max_evals:
            mid = (lo + hi) // 2
            used["n"] += 1
            value = run(evaluate_tune, "tune", prefix(mid), "bisect")
            prefix_map[mid] = value
            if passes(prefix(mid), value):
                hi = mid
            else:
                lo = mid
        if hi - lo > 1:
            status = "max-evals"
            message = f"stopped after {max_evals} evaluations; the search narrowed to {lo}..{hi} units"
        chosen = list(ranking[:hi])
        if prune and len(chosen) > 1:
            for unit in reversed(list(chosen)):
                if used["n"] >= max_evals:
                    if status == "ok":
                        status = "max-evals"
                        message = f"pruning stopped after {max_evals} evaluations"
                    break
                trial = frozenset(chosen) - {unit}
                used["n"] += 1
                value = run(evaluate_tune, "tune", trial, "prune")
                if passes(trial, value):
                    chosen.remove(unit)
    final_tune_map = int8_map if not chosen else run(evaluate_tune, "tune", frozenset(chosen), "final")
    met = final_tune_map >= threshold if decision == "point" else passes(frozenset(chosen), final_tune_map)
    result = FallbackResult(
        fallback_units=[u for u in ranking if u in set(chosen)], target=target, budget=budget,
        fp32_map_tune=reference, int8_map_tune=int8_map, final_map_tune=final_tune_map,
        met_budget=bool(met) or status == "zero-budget", status=status, message=message, decision=decision,
        noise=noise)
    if compare_tune is not None:
        result.int8_delta_tune = intervals[frozenset()]
        chosen_set = frozenset(chosen)
        if chosen_set not in intervals:
            intervals[chosen_set] = interval(compare_tune, chosen_set, float_map - reference)
        result.final_delta_tune = intervals[chosen_set]
    if evaluate_val is not None:
        float_val = run(evaluate_val, "val", all_units, "confirm")
        result.fp32_map_val = float_val if reference_val is None else float(reference_val)
        result.int8_map_val = run(evaluate_val, "val", frozenset(), "confirm")
        if compare_val is not None:
            result.int8_delta_val = interval(compare_val, frozenset(), float_val - result.fp32_map_val)
            evaluations[-1].delta_map, evaluations[-1].delta_map_ci95 = (result.int8_delta_val[0],
                                                                          result.int8_delta_val[1:])
        result.final_map_val = (result.int8_map_val if not chosen
                                else run(evaluate_val, "val", frozenset(chosen), "confirm"))
        if compare_val is not None:
            result.final_delta_val = (result.int8_delta_val if not chosen else
                                      interval(compare_val, frozenset(chosen), float_val - result.fp32_map_val))
            if chosen:
                evaluations[-1].delta_map, evaluations[-1].delta_map_ci95 = (result.final_delta_val[0],
                                                                              result.final_delta_val[1:])
    tune_curve = {}
    for e in evaluations:
        if e.split == "tune":
            tune_curve.setdefault(len(e.fallback), e.map)
    result.curve = sorted(tune_curve.items())
    result.evaluations = evaluations
    if macs:
        total = sum(float(v) for v in macs.values())
        fell = sum(float(macs.get(u, 0.0)) for u in result.fallback_units)
        result.int8_mac_fraction = (total - fell) / total if total > 0 else None
    result.wall_seconds = time.perf_counter() - start
    return result
