"""Report sections for the sensitivity analysis and the fallback search (through :mod:`trtalign.eval.report`).

- per-unit sensitivity bar chart (most sensitive first, fallen-back units highlighted);
- mAP vs number of fallback units (every tuning evaluation of the search, the budget line, the chosen plan);
- the result table: FP32 / naive INT8 / final mAP on tuning and validation, INT8 MAC fraction, evaluations;
- latency per plan when engines could be timed (accuracy recovered per millisecond lost), else a note that the
  cost model is conv MACs.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

from trtalign.eval.report import PALETTE, Report, new_figure


def sensitivity_figure(sensitivity: Any, fallback_units: Sequence[str] = (), top: int = 40) -> Any:
    """Horizontal bars of the ``top`` most sensitive units; fallen-back units in orange."""
    ranking = sensitivity.ranking()[:top]
    scores = sensitivity.scores()
    chosen = set(fallback_units)
    fig = new_figure(7.5, max(2.2, 0.22 * len(ranking) + 0.9))
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(len(ranking)))[::-1]
    ax.barh(ys, [scores[u] for u in ranking], color=[PALETTE[3] if u in chosen else PALETTE[0] for u in ranking])
    ax.set_yticks(ys)
    ax.set_yticklabels(ranking, fontsize=7)
    ax.set_xlabel(f"damage ({sensitivity.metric}, {sensitivity.mode}; higher = more sensitive)")
    if any(scores[u] > 0 for u in ranking) and min(scores[u] for u in ranking) > 0:
        ax.set_xscale("log")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def curve_figure(result: Any) -> Any:
    """mAP (tuning split) vs number of units kept in higher precision, from the search's evaluations."""
    fig = new_figure(7.5, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    pts = [(len(e.fallback), e.map, e.phase) for e in result.evaluations if e.split == "tune"]
    for phase, color in (("baseline", PALETTE[1]), ("gallop", PALETTE[5]), ("bisect", PALETTE[0]),
                         ("descend", PALETTE[0]), ("prune", PALETTE[4]), ("final", PALETTE[3])):
        sel = [(n, m) for n, m, p in pts if p == phase]
        if sel:
            ax.scatter([n for n, _ in sel], [m for _, m in sel], label=phase, color=color, zorder=3, s=28)
    bars = [(len(e.fallback), e.map, e.delta_map_ci95) for e in result.evaluations
            if e.split == "tune" and getattr(e, "delta_map_ci95", None) and getattr(e, "delta_map", None) is not None]
    if bars:  # the paired bootstrap 95% interval of each judged plan (mAP of the plan + the delta's interval ends)
        ref = result.fp32_map_tune  # the deltas are taken against it
        ax.errorbar([n for n, _, _ in bars], [m for _, m, _ in bars],
                    yerr=[[m - (ref + c[0]) for _, m, c in bars], [(ref + c[1]) - m for _, m, c in bars]],
                    fmt="none", ecolor="#666", elinewidth=1, capsize=3, zorder=2, label="95% interval")
    curve = sorted(result.curve)
    if curve:
        ax.plot([n for n, _ in curve], [m for _, m in curve], color=PALETTE[2], zorder=2, lw=1)
    ax.axhline(result.fp32_map_tune - result.budget, color=PALETTE[3], ls="--", lw=1,
               label=f"FP32 - budget ({result.budget:.4f})")
    ax.axvline(len(result.fallback_units), color="#888", ls=":", lw=1, label="chosen")
    ax.set_xlabel(f"units in {result.target} (the rest INT8)")
    ax.set_ylabel("mAP50-95 (tuning split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _ci(ci: Any) -> str:
    return "-" if not ci or ci[0] is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def add_fallback_sections(report: Report, result: Any, sensitivity: Any = None, latency_ms: Mapping | None = None,
                          splits: Mapping | None = None) -> Report:
    """Append the fallback result (and sensitivity, latency when given) to ``report``.

    ``latency_ms``: optional ``{"fp32": ms, "int8": ms, "final": ms}`` measured on engines.
    """
    d = result.to_dict()
    m = d["map"]
    rows = [["FP32 reference (no unit in INT8)", m["tune"]["fp32"], m["val"]["fp32"], "0.0000", None],
            ["INT8, no fallback", m["tune"]["int8"], m["val"]["int8"], "1.0000", d.get("delta_map_val_int8_ci95")],
            [f"INT8 + fallback of {len(result.fallback_units)} unit(s)", m["tune"]["final"], m["val"]["final"],
             _fmt(result.int8_mac_fraction), d.get("delta_map_val_ci95")]]
    body = Report.table_html(["model", "mAP50-95 tune", "mAP50-95 val", "INT8 MAC fraction",
                              "Δ mAP val, 95% interval"],
                             [[r[0], _fmt(r[1]), _fmt(r[2]), r[3], _ci(r[4])] for r in rows])
    status = "met" if result.met_budget else "NOT met"
    body += (f"<p>Budget {result.budget:.4f} mAP ({result.budget * 100:.2f} points) on the tuning split: "
             f"<b>{status}</b> (status {html.escape(result.status)}). {result.num_evaluations} full evaluations, "
             f"{result.wall_seconds:.1f} s. Units were chosen on the tuning split only; the validation split only "
             f"confirms.</p>")
    if result.met_budget_val is not None:
        ci = d.get("delta_map_val_ci95")
        conf = "" if not ci or ci[0] is None else (
            f"; 95% interval of the drop {-ci[1]:.4f} .. {-ci[0]:.4f}: within the budget with 95% confidence: "
            f"<b>{'yes' if result.met_budget_val_ci95 else 'no'}</b>")
        body += (f"<p>On the validation split: <b>{'met' if result.met_budget_val else 'NOT met'}</b> (drop "
                 f"{result.fp32_map_val - result.final_map_val:.4f}{conf}).</p>")
    sz = result.noise.get("sizing")
    if sz:
        body += (f"<p>Split sizes from the measured noise: on {sz['pilot_images']} pilot tuning images the INT8 drop "
                 f"was {sz['int8_drop_pilot']:+.4f} &plusmn; {sz['halfwidth_pilot']:.4f} (95%), so about "
                 f"{sz['images_needed']} images per split are needed for a plan with a drop of "
                 f"{sz['share'] * 100:.0f}% of the budget to pass the interval test; used {sz['tune_images']} tuning "
                 f"and {sz['val_images']} validation images of {sz['available']['tune']} / "
                 f"{sz['available']['val']}{'' if sz['enough'] else ' (<b>not enough</b> for this budget)'}.</p>")
    if result.noise.get("message"):
        body += f"<p class=\"sub\">{html.escape(result.noise['message'])}</p>"
    if result.val_warning():
        body += f"<p class=\"sub\">{html.escape(result.val_warning())}</p>"
    if result.message:
        body += f"<p class=\"sub\">{html.escape(result.message)}</p>"
    if splits:
        body += (f"<p class=\"sub\">tuning images: {splits.get('tune_images')}, validation images: "
                 f"{splits.get('val_images')} ({html.escape(str(splits.get('source', '')))})</p>")
    report.add_section("Fallback result", body)
    if result.fallback_units:
        report.add_table("Units kept in " + result.target, ["#", "unit"],
                         [[i + 1, u] for i, u in enumerate(result.fallback_units)])
    report.add_figure("mAP vs number of fallback units", curve_figure(result),
                      caption="every full evaluation of the search on the tuning split")
    if sensitivity is not None:
        report.add_figure("Per-unit sensitivity", sensitivity_figure(sensitivity, result.fallback_units),
                          caption=f"metric {sensitivity.metric}, mode {sensitivity.mode}, {sensitivity.subset} "
                                  f"tuning images; orange = kept in {result.target}")
    if latency_ms:
        lat_rows = [[k, f"{v:.3f}"] for k, v in latency_ms.items()]
        gain = (m["tune"]["final"] or 0) - (m["tune"]["int8"] or 0)
        lost = (latency_ms.get("final") or 0) - (latency_ms.get("int8") or 0)
        cap = (f"accuracy recovered per ms lost: {gain / lost:.4f} mAP/ms" if lost > 0 else
               "the fallback costs no measurable latency")
        report.add_table("Latency (TensorRT engines)", ["plan", "ms / image"], lat_rows, caption=cap)
    else:
        report.add_section("Latency", "<p class=\"sub\">No TensorRT engine could be timed here (CPU emulation): "
                                      "the cost of a fallback is measured in conv MACs (INT8 MAC fraction above).</p>")
    return report


def fallback_report(result: Any, sensitivity: Any = None, title: str = "trtalign fallback",
                    subtitle: str = "", **kwargs: Any) -> Report:
    return add_fallback_sections(Report(title, subtitle), result, sensitivity, **kwargs)


__all__ = ["sensitivity_figure", "curve_figure", "add_fallback_sections", "fallback_report"]
