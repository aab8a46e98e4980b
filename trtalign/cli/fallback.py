"""``trtalign fallback CONFIG.yaml --budget 0.5 [--target fp16|fp32] [--max-evals K] [--ranking sens.json]
[--latency-aware] --out DIR``: keep the fewest INT8-sensitive units in higher precision so that mAP50-95 stays
within the budget of FP32 on a tuning split, confirmed on a separate validation split.

Writes into DIR: ``plan.json``, ``model.qdq.onnx``, ``ranges.json``, ``engine.yaml`` (config for ``trtalign
build``), ``report.html``, ``fallback.json`` (the result), ``sensitivity.json`` and ``journal.json`` (every full
evaluation so far: running the same command again after an interruption resumes instead of starting over).
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

from trtalign.cli.args import add_sensitivity_args, check_outputs, with_example
from trtalign.cli.output import add_json_argument, emit

NAME = "fallback"
HELP = "find the fewest units to keep in FP16/FP32 so INT8 mAP stays within a budget (region descent or prefix search)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config YAML (model, data.val [data.tune], calibration, fallback)")
    parser.add_argument("--budget", type=float, default=None, metavar="POINTS",
                        help="allowed mAP50-95 drop vs FP32 in mAP POINTS (0.5 = half a point = 0.005 absolute); "
                             "default: the config's fallback.budget (also in points)")
    parser.add_argument("--max-evals", type=int, default=None,
                        help="cap on full tuning evaluations of the search (default: the config's fallback.max_evals)")
    parser.add_argument("--ranking", default=None, metavar="SENS_JSON",
                        help="use this `trtalign sensitivity --json` output instead of scoring units here")
    parser.add_argument("--latency-aware", action="store_true", default=None,
                        help="rank by sensitivity per unit of cost (conv MACs when no GPU timing exists)")
    parser.add_argument("--no-prune", action="store_true", help="skip the pruning pass after the prefix search")
    parser.add_argument("--search", choices=("gallop", "bisect", "descend"), default=None,
                        help="gallop (ranking prefixes 1, 2, 4, ... then bisection; few evaluations when few units "
                             "matter), bisect (over all units) or descend (halve contiguous regions of the graph, "
                             "starting from everything fallen back: finds sensitive units the ranking misses); "
                             "default: the config's fallback.search")
    parser.add_argument("--decision", choices=("auto", "interval", "holdout", "point"), default=None,
                        help="how a trial plan passes: interval (upper end of the drop's 95%% interval within the "
                             "budget), holdout (upper end + half-width: the plan then also passes on unseen data "
                             "~92%% of the time; needs 4x the images), point, or auto (holdout when the data holds "
                             "enough images, else interval); default: the config's fallback.decision (auto)")
    parser.add_argument("--pilot", type=int, default=None, metavar="N",
                        help="size the tuning and validation splits from the noise of the INT8 drop measured on the "
                             "first N tuning images (0: use the splits as given; default: the config's "
                             "fallback.pilot, 100)")
    parser.add_argument("--max-images", type=int, default=None, metavar="N",
                        help="cap on each sized split (default: the config's fallback.max_images, none)")
    parser.add_argument("--out", required=True, help="output folder")
    add_sensitivity_args(parser)
    add_json_argument(parser)
    with_example(parser, "trtalign fallback pipeline.yaml --budget 0.5 --ranking sens.json --out fallback/")


def budget_from_points(points: float) -> float:
    """A budget in mAP points (CLI and config) -> the absolute drop the search API takes; warns when the value
    looks like an absolute fraction (0.005 meant as half a point)."""
    from trtalign.core.config import check_budget_points
    from trtalign.core.errors import InputError

    if points is None or not math.isfinite(points) or points < 0:
        raise InputError(f"--budget must be a non-negative mAP50-95 drop in points (e.g. 0.5 for half a point), "
                         f"got {points}")
    if points > 100:
        raise InputError(f"--budget is in mAP points (0..100), got {points}")
    return check_budget_points(points, "--budget") / 100.0


def run(args: argparse.Namespace) -> int:
    from trtalign.core.config import load_config
    from trtalign.core.errors import InputError
    from trtalign.tune.fallback_report import fallback_report
    from trtalign.tune.sensitivity import load_sensitivity, save_sensitivity
    from trtalign.tune.tuning import session_from_config, sizing_summary, write_fallback_outputs

    cfg = load_config(args.config)
    fb = cfg.fallback
    budget = fb.budget_fraction if args.budget is None else budget_from_points(args.budget)
    target = args.target or fb.target
    max_evals = fb.max_evals if args.max_evals is None else args.max_evals
    if max_evals < 1:
        raise InputError(f"--max-evals must be >= 1, got {max_evals}")
    if args.pilot is not None and args.pilot != 0 and args.pilot < 8:
        raise InputError(f"--pilot must be 0 (no sizing) or >= 8 images, got {args.pilot}")
    if args.max_images is not None and args.max_images < 8:
        raise InputError(f"--max-images must be >= 8, got {args.max_images}")
    latency_aware = fb.latency_aware if args.latency_aware is None else args.latency_aware
    check_outputs(args, folders=("out",))
    out = Path(args.out)
    ranking_file = Path(args.ranking) if args.ranking else None
    sensitivity = load_sensitivity(ranking_file) if ranking_file else None  # read before any work
    if args.backend == "trt":  # fail before writing anything when TensorRT is missing
        from trtalign.engines.builder import import_tensorrt

        import_tensorrt()
    out.mkdir(parents=True, exist_ok=True)
    session = session_from_config(cfg, out / "work", backend=args.backend)
    pilot = fb.pilot if args.pilot is None else args.pilot
    decision = args.decision or fb.decision
    max_images = fb.max_images if args.max_images is None else args.max_images
    if pilot and budget > 0:  # budget 0: every unit stays float, nothing to size
        session.size_splits(budget, target, pilot=pilot, max_images=max_images, decision=decision)
    metric, mode = args.metric or fb.metric, args.mode or fb.mode
    subset = fb.subset if args.subset is None else args.subset
    cached = out / "sensitivity.json"
    if sensitivity is None and cached.is_file():  # resume: scores of an earlier run with the same settings
        prev = load_sensitivity(cached)
        if (prev.metric, prev.mode, prev.subset, sorted(prev.scores())) == (
                metric, "local" if args.local else mode, min(subset, len(session.tune)), sorted(session.unit_names)):
            sensitivity = prev
    if sensitivity is None:
        sensitivity = session.sensitivity(metric, mode, subset, target, local=args.local)
    save_sensitivity(sensitivity, cached)
    result = session.fallback(budget, sensitivity=sensitivity, target=target, max_evals=max_evals,
                              latency_aware=latency_aware, journal=out / "journal.json", prune=not args.no_prune,
                              search=args.search or fb.search, decision=decision)
    paths = write_fallback_outputs(session, result, out, sensitivity,
                                   extra={"budget_points": budget * 100, "latency_aware": latency_aware,
                                          "ranking_source": str(ranking_file) if ranking_file else "computed"})
    fallback_report(result, sensitivity, title="trtalign fallback",
                    subtitle=f"{cfg.model} · budget {budget * 100:.2f} mAP points · target {target}",
                    splits=session.splits.to_dict(),
                    latency_ms=session.plan_latency(result)).write(out / "report.html")
    shutil.rmtree(out / "work" / "plans", ignore_errors=True)  # per-plan Q/DQ models: a cache, regenerable
    d = result.to_dict()
    mac = result.int8_mac_fraction if result.int8_mac_fraction is not None else float("nan")
    replayed = sum(e.replayed for e in result.evaluations)
    sizing = sizing_summary(session.sizing) + "\n" if session.sizing else ""
    text = (f"{sizing}{result.message + chr(10) if result.message else ''}"
            f"fallback ({result.status}): {len(result.fallback_units)} of {len(session.unit_names)} units in {target}"
            f"{': ' + ', '.join(result.fallback_units[:8]) if result.fallback_units else ''}"
            f"{' ...' if len(result.fallback_units) > 8 else ''}\n"
            f"  mAP50-95 tune: FP32 {d['map']['tune']['fp32']:.4f}  INT8 {d['map']['tune']['int8']:.4f}  final "
            f"{d['map']['tune']['final']:.4f}  (budget {budget:.4f} {'met' if result.met_budget else 'NOT met'})\n"
            f"  mAP50-95 val:  FP32 {d['map']['val']['fp32']:.4f}  INT8 {d['map']['val']['int8']:.4f}  final "
            f"{d['map']['val']['final']:.4f}"
            f"{'' if result.met_budget_val is None else '  (budget ' + ('met' if result.met_budget_val else 'NOT met') + ')'}"
            f"{'' if not d.get('delta_map_val_ci95') else '  drop 95% interval ' + format(-d['delta_map_val_ci95'][1], '.4f') + ' .. ' + format(-d['delta_map_val_ci95'][0], '.4f')}\n"
            f"{'  ' + result.val_warning() + chr(10) if result.val_warning() else ''}"
            f"  INT8 MAC fraction {mac:.3f}, {result.num_evaluations} full evaluations ({replayed} more answered "
            f"by the journal), {result.wall_seconds:.1f} s\n"
            f"  -> {out}/ (plan.json, model.qdq.onnx, engine.yaml, report.html, fallback.json)")
    emit({**d, "files": {k: str(v) for k, v in paths.items()}, "report": str(out / "report.html")}, args, text)
    return 0
