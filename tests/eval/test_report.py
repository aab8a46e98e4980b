"""The HTML report: self-contained, escaped, extensible, and rendered by headless Chromium (screenshot kept)."""

from __future__ import annotations

import base64
import math
import io
import re
import shutil
import subprocess

import numpy as np
import pytest

from trtalign.core.detections import Detections
from trtalign.core.errors import InputError
from trtalign.eval.coco_metrics import CocoMetrics
from trtalign.eval.evaluate import EvalResult, LatencyStats, NmsSettings, PrecisionResult
from trtalign.eval.report import Report, eval_report, new_figure


def _result() -> EvalResult:
    """Three runners scored for real by CocoMetrics: the reference, a near copy, and a noisier one."""
    from tests.eval.test_coco_metrics import make_case

    ds, dets = make_case(8)
    ds.names[0] = "<script>alert(1)</script>"  # a hostile class name must come out escaped
    rng = np.random.default_rng(0)
    out = EvalResult("detect", "coco-bbox", "model.pt", [320, 320], 1, ds.summary(), NmsSettings().to_dict())
    for runner, precision, noise in [("torch", "torch", 0.0), ("ort-fp16sim", "fp16", 0.2),
                                     ("ort-int8sim", "int8", 4.0)]:
        m = CocoMetrics(ds)
        for iid, d in dets.items():
            m.update(iid, Detections(d.boxes + rng.normal(0, noise, d.boxes.shape) * (noise > 0), d.scores,
                                     d.class_ids))
        out.results.append(PrecisionResult(precision, runner, m.compute(),
                                           LatencyStats.from_batches([0.02, 0.03], [1, 1], 1), "model.onnx"))
    out.skipped["trt-fp16"] = "tensorrt is not installed"
    out.set_deltas()
    return out


def test_report_is_self_contained_and_escaped(tmp_path):
    result = _result()
    html = eval_report(result).render()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # nothing loaded from elsewhere: every image is inline
    srcs = re.findall(r'src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html and "<link" not in html
    for s in srcs:
        assert base64.b64decode(s.split(",", 1)[1]).startswith(b"\x89PNG")
    for title in ("mAP by precision", "mAP chart", "Per-class AP", "PR curves", "All metrics"):
        assert f"<h2>{title}</h2>" in html
    # the table shows each runner with its delta vs torch, and the skipped runner with its reason
    fp16, int8 = result.result("ort-fp16sim"), result.result("ort-int8sim")
    assert f"{int8.delta_map:+.4f}" in html and "tensorrt is not installed" in html
    assert result.result("ort-int8sim").delta_map < fp16.delta_map <= 0.0  # more noise, bigger drop
    path = eval_report(result).write(tmp_path / "r.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_report_api_for_other_sections():
    rep = Report("t", "sub")
    rep.add_section("Sensitivity", "<p>per-unit scores</p>").add_table("Units", ["unit", "Δ mAP"],
                                                                       [["conv<1>", -0.0042], ["conv2", float("nan")]])
    fig = new_figure(2, 2)
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    rep.add_figure("Curve", fig, caption="a line")
    rep.add_figure("Svg", '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>')
    rep.add_section("Sensitivity", "<p>again</p>")  # a repeated title gets its own anchor
    html = rep.render()
    assert "conv&lt;1&gt;" in html and "-0.0042" in html and "—" in html  # NaN shown as a dash
    assert 'id="sensitivity"' in html and 'id="sensitivity-2"' in html and "<svg" in html
    with pytest.raises(InputError, match="PNG"):
        rep.add_figure("bad", b"GIF89a")
    with pytest.raises(InputError, match="matplotlib Figure"):
        rep.add_figure("bad", 42)


def test_report_renders_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install -y chromium): cannot check the report renders")
    page = eval_report(_result()).write(tmp_path / "report.html")
    shot = tmp_path / "report.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1200,1800",
           f"--screenshot={shot}", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    with Image.open(io.BytesIO(shot.read_bytes())) as im:
        assert im.format == "PNG" and im.size == (1200, 1800)
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    # not blank: text, tables and plots give many grey levels and a real spread
    assert pixels.std() > 10 and len(np.unique(pixels)) > 50
    # the page background (#f6f7f9) and the dark text are both there
    assert (pixels > 240).mean() > 0.3 and (pixels < 80).mean() > 0.005
    print(f"screenshot: {shot}")


# ------------------------------------------------------------------------------------------------- issue 17, item 12
def _result_with(cat_ids=(1, 3, 7, 90), task: str = "detect", runners=(("torch", "torch", 0.0),
                                                                        ("ort-fp32", "fp32", 0.3),
                                                                        ("ort-int8sim", "int8", 3.0))) -> EvalResult:
    """Runners scored for real by CocoMetrics on one random case; ``cat_ids`` sets the number of classes."""
    from tests.eval.test_coco_metrics import make_case

    ds, dets = make_case(3, n_images=30, cat_ids=cat_ids, empty_class=False)
    rng = np.random.default_rng(1)
    nms = {**NmsSettings().to_dict(), "onnx": {"op": "EfficientNMS_TRT", "score_threshold": 0.001,
                                               "iou_threshold": 0.7, "max_output_boxes": 300,
                                               "class_agnostic": 0, "box_coding": 0, "names_of_a_long_list":
                                                   [f"class_{i}" for i in range(40)]}}
    out = EvalResult(task, "coco-bbox", "model.pt", [320, 320], 1, ds.summary(), nms)
    for runner, precision, noise in runners:
        m = CocoMetrics(ds)
        for iid, d in dets.items():
            m.update(iid, Detections(d.boxes + rng.normal(0, noise, d.boxes.shape) * (noise > 0), d.scores,
                                     d.class_ids))
        out.results.append(PrecisionResult(precision, runner, m.compute(),
                                           LatencyStats.from_batches([0.02], [1], 1), "model.onnx"))
    out.set_deltas()
    return out


def _section(html: str, title: str) -> str:
    start = html.index(f"<h2>{title}</h2>")
    return html[start:html.index("</section>", start)]


def test_settings_are_a_wrapping_key_value_table():
    html = eval_report(_result_with()).render()
    settings = _section(html, "Settings")
    assert '<table class="kv">' in settings
    assert "{" not in settings and "[" not in settings  # no raw dict / list repr
    assert "<td>onnx.score_threshold</td><td>0.0010</td>" in settings
    assert "<td>onnx.op</td><td>EfficientNMS_TRT</td>" in settings
    assert "class_0, class_1, class_2" in settings  # a list: comma-separated, free to wrap
    css = html[html.index("<style>"):html.index("</style>")]
    assert ".kv td,.kv th{text-align:left;white-space:normal;overflow-wrap:anywhere}" in css
    assert "@media (max-width:700px)" in css and ".scroll{overflow-x:auto" in css  # phone width


def _delta_cells(section: str) -> list:
    """(css class, value) of every signed numeric cell (the deltas) of a section's tables."""
    return [(cls, float(v)) for cls, v in re.findall(r'<td class="(\w+)">([+-]\d\.\d{4})</td>', section)]


@pytest.mark.parametrize("title", ["mAP by precision", "Per-class AP"])
def test_delta_colours_follow_the_legend(title):
    from trtalign.eval.report import DELTA_TOLERANCE

    html = eval_report(_result_with()).render()
    section = _section(html, title)
    cells = _delta_cells(section)
    assert len(cells) >= 4 and any(v < -DELTA_TOLERANCE for _, v in cells)  # there is something to colour
    for cls, value in cells:
        expected = "bad" if value < -DELTA_TOLERANCE else "good" if value > DELTA_TOLERANCE else "muted"
        assert cls == expected, (value, cls)
    assert f"red: a drop larger than {DELTA_TOLERANCE}" in section
    assert f"green: a gain larger than {DELTA_TOLERANCE}" in section


def test_small_drop_is_red_not_green():
    """The issue's case: a drop of 0.0049 under a legend that says red marks drops larger than 0.002."""
    from trtalign.eval.report import _delta_class

    assert _delta_class(-0.0049) == "bad" and _delta_class(-0.001) == "muted" and _delta_class(0.003) == "good"


@pytest.mark.parametrize("num_classes", [4, 8, 20])
def test_pr_curves_for_every_class(num_classes):
    from trtalign.eval.report import PR_CLASSES_PER_FIGURE

    result = _result_with(cat_ids=tuple(range(1, num_classes + 1)))
    names = list(result.results[0].metrics.pr_curve["per_class_50"])
    drawn = [n for n in names if any(r.metrics.pr_curve["per_class_50"].get(n) for r in result.results)]
    assert len(drawn) == num_classes
    section = _section(eval_report(result).render(), "PR curves")
    figures = math.ceil(num_classes / PR_CLASSES_PER_FIGURE)
    assert section.count("<img") == 1 + figures  # the mean curve + the small multiples
    captions = re.findall(r"<figcaption>per class, classes (\d+)–(\d+) of (\d+)</figcaption>", section)
    covered = [i for lo, hi, _ in captions for i in range(int(lo), int(hi) + 1)]
    assert covered == list(range(1, num_classes + 1)) and {int(n) for _, _, n in captions} == {num_classes}
    assert "more classes in the JSON" not in section


def test_obb_report_speaks_of_rotated_nms_and_rotated_map():
    result = _result_with(task="obb")
    result.metric = "rotated"
    html = eval_report(result).render()
    body = _section(html, "mAP by precision")
    assert "EfficientRotatedNMS_TRT" in body and "rotated NMS" in body and "probiou" in body
    assert "pycocotools" not in body and "EfficientNMS " not in body and "EfficientNMS_TRT" not in body
    assert "rotated AP" in body
    detect = _section(eval_report(_result_with()).render(), "mAP by precision")
    assert "EfficientNMS" in detect and "pycocotools" in detect


def test_fallback_report_names_the_float_reference_fp32():
    from types import SimpleNamespace

    from trtalign.tune.fallback_report import add_fallback_sections

    maps = {"tune": {"fp32": 0.71, "int8": 0.70, "final": 0.708}, "val": {"fp32": 0.69, "int8": 0.68, "final": 0.686}}
    fb = SimpleNamespace(
        to_dict=lambda: {"map": maps}, target="fp16", fallback_units=["unit_a"], int8_mac_fraction=0.99,
        budget=0.005, met_budget=True, status="ok", num_evaluations=3, wall_seconds=1.0, met_budget_val=True,
        met_budget_val_ci95=None, fp32_map_val=0.69, final_map_val=0.686, noise={}, val_warning=lambda: "",
        message="", evaluations=[], curve=[], fp32_map_tune=0.71)
    html = add_fallback_sections(Report("t"), fb).render()
    table = _section(html, "Fallback result")
    assert "FP32 reference" in table and "every unit in fp16" not in table
