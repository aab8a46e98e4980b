"""One self-contained HTML report (inline CSS, figures as inline base64 PNG from matplotlib's Agg canvas).

A small API other stages extend (the sensitivity / fallback search adds its own sections)::

    report = Report("trtalign evaluation")
    report.add_section("Notes", "<p>free HTML</p>")
    report.add_table("Per-unit sensitivity", ["unit", "delta mAP"], [["conv1", -0.004]])
    report.add_figure("mAP by precision", matplotlib_figure_or_png_bytes_or_svg_text)
    report.write("report.html")

:func:`eval_report` builds the evaluation report from an :class:`~trtalign.eval.evaluate.EvalResult`: the mAP table
with the delta of each precision against the reference, a bar chart, per-class AP deltas, PR curves and the 12 COCO
numbers. Nothing is fetched when the file is opened: no scripts, no external CSS, fonts or images.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from trtalign.core.errors import InputError
from trtalign.core.io import atomic_write_text

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
main{max-width:1280px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:19px;margin:0 0 10px;color:#233}
.sub{color:#5b6775;margin:0 0 18px}
section{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:16px 20px;margin:16px 0}
table{border-collapse:collapse;font-size:14px;margin:6px 0}
th,td{border-bottom:1px solid #e6e9ee;padding:5px 10px;text-align:right;white-space:nowrap}
th{background:#eef1f5;font-weight:600}td:first-child,th:first-child{text-align:left}
td.note{text-align:left;white-space:normal;color:#5b6775;font-size:12px;min-width:220px;max-width:360px}
.bad{color:#b3261e;font-weight:600}.good{color:#1b7f3b}.muted{color:#8a96a3}
figure{margin:8px 0}figure img{max-width:100%;height:auto}figcaption{color:#5b6775;font-size:13px}
code{background:#eef1f5;padding:1px 4px;border-radius:3px}
.kv td,.kv th{text-align:left;white-space:normal;overflow-wrap:anywhere}.kv td:first-child{white-space:nowrap;color:#5b6775}
.scroll{overflow-x:auto;max-width:100%}
.grid figure{display:inline-block;width:49%;vertical-align:top;margin:0 0 8px}
.legend span{display:inline-block;padding:0 6px;margin-right:6px;border-radius:3px;background:#eef1f5}
@media (max-width:700px){main{padding:12px 8px 40px}section{padding:12px 10px}.grid figure{width:100%}
h1{font-size:21px}}
"""

#: the one threshold of the colours in every delta column (mAP, mAP50, per-class AP): a drop larger than this is red,
#: a gain larger than this green, anything within it grey; the legend under each table states it
DELTA_TOLERANCE = 0.002


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.{digits}f}"
    return str(value)


@dataclass
class _Section:
    title: str
    body: str
    anchor: str


@dataclass
class Report:
    """An HTML report built from sections; ``render()`` gives the page, ``write(path)`` saves it atomically."""

    title: str
    subtitle: str = ""
    sections: list = field(default_factory=list)

    def _anchor(self, title: str) -> str:
        base = "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-") or "section"
        taken = {s.anchor for s in self.sections}
        anchor, n = base, 2
        while anchor in taken:
            anchor, n = f"{base}-{n}", n + 1
        return anchor

    def add_section(self, title: str, body_html: str) -> "Report":
        """Append a section whose body is trusted HTML (escape user text with ``html.escape``)."""
        self.sections.append(_Section(str(title), str(body_html), self._anchor(str(title))))
        return self

    @staticmethod
    def table_html(headers: Sequence[Any], rows: Sequence[Sequence[Any]], digits: int = 4,
                   classes: Sequence[Sequence[str]] | None = None) -> str:
        """A table of escaped cells (floats with ``digits``); ``classes`` gives a CSS class per cell."""
        out = ["<div class=\"scroll\"><table><thead><tr>", *(f"<th>{_esc(h)}</th>" for h in headers),
               "</tr></thead><tbody>"]
        for i, row in enumerate(rows):
            out.append("<tr>")
            for j, cell in enumerate(row):
                cls = classes[i][j] if classes and i < len(classes) and j < len(classes[i]) else ""
                out.append(f"<td class=\"{_esc(cls)}\">{_esc(_fmt(cell, digits))}</td>" if cls else
                           f"<td>{_esc(_fmt(cell, digits))}</td>")
            out.append("</tr>")
        out.append("</tbody></table></div>")
        return "".join(out)

    @staticmethod
    def kv_table_html(mapping: Any, digits: int = 4) -> str:
        """A two-column key / value table that wraps long values: nested dicts become dotted keys
        (``onnx.score_threshold``), lists are joined with commas."""
        rows = []

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            elif isinstance(value, (list, tuple)):
                rows.append((prefix, ", ".join(_fmt(v, digits) for v in value) or "—"))
            else:
                rows.append((prefix, "—" if value == {} else _fmt(value, digits)))

        walk("", mapping)
        body = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in rows)
        return (f"<table class=\"kv\"><thead><tr><th>setting</th><th>value</th></tr></thead><tbody>{body}</tbody>"
                "</table>")

    def add_table(self, title: str, headers: Sequence[Any], rows: Sequence[Sequence[Any]], caption: str = "",
                  digits: int = 4, classes: Sequence[Sequence[str]] | None = None) -> "Report":
        body = self.table_html(headers, rows, digits, classes)
        if caption:
            body += f"<p class=\"sub\">{_esc(caption)}</p>"
        return self.add_section(title, body)

    @staticmethod
    def figure_html(figure: Any, caption: str = "", alt: str = "") -> str:
        """A matplotlib Figure, PNG bytes or SVG text -> an inline ``<figure>``."""
        if isinstance(figure, str) and figure.lstrip().startswith("<svg"):
            inner = figure
        else:
            if isinstance(figure, (bytes, bytearray)):
                png = bytes(figure)
                if not png.startswith(b"\x89PNG"):
                    raise InputError("add_figure: bytes must be a PNG image")
            elif hasattr(figure, "savefig"):
                buf = io.BytesIO()
                figure.savefig(buf, format="png", dpi=110, bbox_inches="tight")
                png = buf.getvalue()
            else:
                raise InputError(f"add_figure needs a matplotlib Figure, PNG bytes or SVG text, got "
                                 f"{type(figure).__name__}")
            inner = (f"<img alt=\"{_esc(alt or caption)}\" "
                     f"src=\"data:image/png;base64,{base64.b64encode(png).decode('ascii')}\">")
        cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
        return f"<figure>{inner}{cap}</figure>"

    def add_figure(self, title: str, figure: Any, caption: str = "", alt: str = "") -> "Report":
        return self.add_section(title, self.figure_html(figure, caption, alt))

    def render(self) -> str:
        toc = " · ".join(f"<a href=\"#{s.anchor}\">{_esc(s.title)}</a>" for s in self.sections)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        body = "".join(f"<section id=\"{s.anchor}\"><h2>{_esc(s.title)}</h2>{s.body}</section>"
                       for s in self.sections)
        sub = f"<p class=\"sub\">{_esc(self.subtitle)}</p>" if self.subtitle else ""
        return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{_esc(self.title)}</title><style>{CSS}</style></head><body><main>"
                f"<h1>{_esc(self.title)}</h1>{sub}<p class=\"sub\">generated {stamp} · {toc}</p>{body}"
                "</main></body></html>\n")

    def write(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, self.render())


# ----------------------------------------------------------------------------------------------------- figures
def new_figure(width: float = 7.5, height: float = 3.6) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


PALETTE = ("#33658a", "#f6ae2d", "#86bbd8", "#f26419", "#55a630", "#9d4edd", "#758e4f", "#2f4858")


def map_bar_figure(runners: Sequence[str], map_values: Sequence[float], map50_values: Sequence[float]) -> Any:
    import numpy as np

    fig = new_figure(7.5, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(runners))
    w = 0.38
    b1 = ax.bar(x - w / 2, [v if v == v else 0 for v in map_values], w, label="mAP50-95", color=PALETTE[0])
    b2 = ax.bar(x + w / 2, [v if v == v else 0 for v in map50_values], w, label="mAP50", color=PALETTE[1])
    for bars in (b1, b2):
        for bar in bars:
            ax.annotate(f"{bar.get_height():.3f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, list(runners))
    ax.set_ylabel("mAP")
    ax.set_ylim(0, max([1e-3, *[v for v in [*map_values, *map50_values] if v == v]]) * 1.18)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def class_delta_figure(names: Sequence[str], deltas: dict) -> Any:
    """Grouped bars: per class, AP(runner) - AP(reference)."""
    import numpy as np

    fig = new_figure(max(7.5, 0.55 * len(names) * max(1, len(deltas)) ** 0.5 + 2), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    n = max(len(deltas), 1)
    w = 0.8 / n
    for i, (runner, vals) in enumerate(deltas.items()):
        ax.bar(x - 0.4 + w * (i + 0.5), [v if v == v else 0 for v in vals], w, label=runner,
               color=PALETTE[(i + 1) % len(PALETTE)])
    ax.axhline(0, color="#333", lw=0.8)
    ax.set_xticks(x, list(names), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("AP50-95 delta")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def pr_figure(recall: Sequence[float], curves: dict, title: str = "") -> Any:
    fig = new_figure(5.2, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for i, (runner, prec) in enumerate(curves.items()):
        ax.plot(recall, prec, label=runner, color=PALETTE[i % len(PALETTE)], lw=1.6,
                ls="-" if i % 2 == 0 else "--")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (IoU 0.5)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------------------------------- eval report
def _signed(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return "0" if abs(value) < 5e-5 else f"{value:+.4f}"


def _interval(ci: Any) -> str:
    """``[low, high]`` as text ("—" when absent)."""
    if not ci or any(v is None for v in ci):
        return "—"
    return f"[{_signed(ci[0])}, {_signed(ci[1])}]"


def _delta_class(delta: Optional[float], tol: float = DELTA_TOLERANCE) -> str:
    """CSS class of a delta: ``bad`` (red) for a drop larger than ``tol``, ``good`` (green) for a gain larger than
    ``tol``, ``muted`` (grey) within ``tol`` or when absent."""
    if delta is None or (isinstance(delta, float) and math.isnan(delta)):
        return "muted"
    if delta < -tol:
        return "bad"
    return "good" if delta > tol else "muted"


def delta_legend(tol: float = DELTA_TOLERANCE) -> str:
    """The colour legend of the delta columns (the same threshold as :func:`_delta_class`)."""
    return (f"<p class=\"sub legend\"><span class=\"bad\">red: a drop larger than {tol}</span>"
            f"<span class=\"good\">green: a gain larger than {tol}</span>"
            f"<span class=\"muted\">grey: within ±{tol}</span></p>")


def eval_report(result: Any, title: str | None = None, tolerance: float = DELTA_TOLERANCE) -> Report:
    """:class:`~trtalign.eval.evaluate.EvalResult` -> :class:`Report`."""
    ds = result.dataset
    rep = Report(title or "trtalign evaluation",
                 f"{result.model} · {result.task} · {ds.get('images')} images, {ds.get('boxes')} boxes, "
                 f"{ds.get('classes')} classes ({ds.get('source')}: {ds.get('root')}) · "
                 f"imgsz {result.imgsz[0]}x{result.imgsz[1]} · batch {result.batch}")
    ref = result.reference
    rows, cls = [], []
    for r in result.results:
        s = r.metrics.stats
        rows.append([r.runner, r.precision, s["map"], s["map50"], s.get("map75"), _signed(r.delta_map),
                     _interval(getattr(r, "delta_map_ci95", None)), _signed(r.delta_map50),
                     _fmt(r.latency.median_ms, 1), r.metrics.num_detections, "; ".join(r.notes)])
        c = _delta_class(r.delta_map, tolerance) if r.runner != ref else "muted"
        cls.append(["", "", "", "", "", c, "muted", _delta_class(r.delta_map50, tolerance) if r.runner != ref
                    else "muted", "", "", "note"])
    body = Report.table_html(["runner", "precision", "mAP50-95", "mAP50", "mAP75", f"Δ mAP vs {ref}",
                              "Δ mAP 95% interval", f"Δ mAP50 vs {ref}", "ms / image", "detections", "notes"],
                             rows, 4, cls)
    metric = "COCO bbox AP (pycocotools' algorithm)" if result.metric == "coco-bbox" else \
        "rotated AP: COCO-style over IoU 0.50:0.95 with exact polygon IoU"
    body += delta_legend(tolerance)
    body += (f"<p class=\"sub\">Metric: {_esc(metric)}. The interval is a paired bootstrap over images (95%): an "
             f"interval that contains 0 is a difference these images cannot tell from none. "
             f"Latency: median inference time per image on this machine (CPU emulation for ort-*).</p>")
    if result.skipped:
        body += "<p>Not run here:</p><ul>" + "".join(
            f"<li><code>{_esc(k)}</code>: {_esc(v)}</li>" for k, v in result.skipped.items()) + "</ul>"
    body += _nms_explanation(result)
    rep.add_section("mAP by precision", body)
    runners = [r.runner for r in result.results]
    if runners:
        rep.add_figure("mAP chart", map_bar_figure(runners, [r.metrics.stats["map"] for r in result.results],
                                                   [r.metrics.stats["map50"] for r in result.results]),
                       caption="mAP50-95 and mAP50 per runner")
    _per_class_sections(rep, result, tolerance)
    _pr_sections(rep, result)
    stats_keys = list(result.results[0].metrics.stats) if result.results else []
    if stats_keys:
        rep.add_table("All metrics", ["runner", *stats_keys],
                      [[r.runner, *[r.metrics.stats[k] for k in stats_keys]] for r in result.results])
    rep.add_section("Settings", Report.kv_table_html(result.nms))
    return rep


def _nms_explanation(result: Any) -> str:
    try:
        torch_r, fp32_r = result.result("torch"), result.result("fp32")
    except InputError:
        return ""
    gap = fp32_r.metrics.stats["map"] - torch_r.metrics.stats["map"]
    if result.nms.get("torch_nms") == "aligned":
        return (f"<p>torch vs {_esc(fp32_r.runner)}: Δ mAP {gap:+.4f} with the same NMS on both sides "
                f"(torch NMS mode <code>aligned</code>): the gap is the network's numerics only.</p>")
    if result.task == "obb":
        return (f"<p>torch vs {_esc(fp32_r.runner)}: Δ mAP {gap:+.4f}. The torch reference uses ultralytics' rotated "
                f"NMS (best class per box, probabilistic IoU (probiou) of the rotated boxes), the exported model "
                f"trtalign's rotated NMS <code>EfficientRotatedNMS_TRT</code> (every (box, class) pair above the score "
                f"threshold competes, top 5000 by score, exact polygon IoU ≥ threshold). Those differences alone can "
                f"move rotated mAP by a few 1e-3 on low-score detections; <code>--torch-nms aligned</code> runs the "
                f"rotated NMS reference on the torch head and removes them.</p>")
    return (f"<p>torch vs {_esc(fp32_r.runner)}: Δ mAP {gap:+.4f}. The torch reference uses ultralytics' NMS (best "
            f"class per box, up to 30000 candidates, torchvision NMS with IoU &gt; threshold), the exported model "
            f"TensorRT's EfficientNMS (every (box, class) pair above the score threshold competes, top 5000 by score, "
            f"IoU ≥ threshold). Those differences alone can move mAP by a few 1e-3 on low-score detections; "
            f"<code>--torch-nms aligned</code> runs the EfficientNMS reference on the torch head and removes "
            f"them.</p>")


def _per_class_sections(rep: Report, result: Any, tolerance: float = DELTA_TOLERANCE) -> None:
    if not result.results:
        return
    ref = result.result(result.reference) if result.reference else result.results[0]
    names = list(ref.metrics.per_class)
    others = [r for r in result.results if r is not ref]
    headers = ["class", "num gt", f"AP {ref.runner}", *[f"Δ {r.runner}" for r in others]]
    rows, cls, deltas = [], [], {r.runner: [] for r in others}
    for n in names:
        base = ref.metrics.per_class[n]["ap"]
        row, crow = [n, ref.metrics.per_class[n]["num_gt"], base], ["", "", ""]
        for r in others:
            v = r.metrics.per_class.get(n, {}).get("ap")
            d = (v - base) if (v is not None and base is not None and v == v and base == base) else None
            deltas[r.runner].append(d if d is not None else float("nan"))
            row.append(_signed(d))
            crow.append(_delta_class(d, tolerance))
        rows.append(row)
        cls.append(crow)
    body = Report.table_html(headers, rows, 4, cls) + (delta_legend(tolerance) if others else "")
    if others and names:
        body += Report.figure_html(class_delta_figure(names, deltas),
                                   caption=f"per-class AP50-95 minus {ref.runner}'s")
    rep.add_section("Per-class AP", body)


def _pr_sections(rep: Report, result: Any) -> None:
    if not result.results:
        return
    recall = result.results[0].metrics.pr_curve.get("recall", [])
    if not recall:
        return
    curves = {r.runner: r.metrics.pr_curve["precision_50"] for r in result.results}
    body = Report.figure_html(pr_figure(recall, curves, "all classes"), caption="precision vs recall at IoU 0.5, "
                              "mean over classes (COCO's 101-point interpolated curve)")
    names = list(result.results[0].metrics.pr_curve.get("per_class_50", {}))
    per_class = {name: {r.runner: r.metrics.pr_curve.get("per_class_50", {}).get(name) for r in result.results}
                 for name in names}
    per_class = {name: {k: v for k, v in c.items() if v} for name, c in per_class.items()}
    per_class = {name: c for name, c in per_class.items() if c}
    items = list(per_class.items())
    for start in range(0, len(items), PR_CLASSES_PER_FIGURE):
        chunk = items[start:start + PR_CLASSES_PER_FIGURE]
        body += Report.figure_html(pr_grid_figure(recall, chunk),
                                   caption=f"per class, classes {start + 1}–{start + len(chunk)} of {len(items)}")
    rep.add_section("PR curves", body)


#: classes per small-multiples figure of PR curves (4 x 4); every class is drawn, in as many figures as needed
PR_CLASSES_PER_FIGURE = 16


def pr_grid_figure(recall: Sequence[float], classes: Sequence[tuple], columns: int = 4) -> Any:
    """Small multiples: one PR panel per ``(class name, {runner: precision})``, shared axes, one legend."""
    rows = max(1, math.ceil(len(classes) / columns))
    fig = new_figure(2.6 * columns, 2.2 * rows + 0.5)
    handles: dict = {}  # runner -> its line (one legend for every panel)
    for i, (name, curves) in enumerate(classes):
        ax = fig.add_subplot(rows, columns, i + 1)
        for runner, prec in curves.items():
            k = list(handles).index(runner) if runner in handles else len(handles)
            (line,) = ax.plot(recall, prec, color=PALETTE[k % len(PALETTE)], lw=1.3, ls="-" if k % 2 == 0 else "--")
            handles.setdefault(runner, line)
        ax.set_title(str(name), fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if i % columns:
            ax.set_yticklabels([])
        if i < len(classes) - columns:
            ax.set_xticklabels([])
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=min(len(handles), 4), fontsize=8,
                   frameon=False)
    fig.supxlabel("recall", fontsize=9)
    fig.supylabel("precision (IoU 0.5)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (2.2 * rows + 0.5)))
    return fig
