"""The HTML report: self-contained, escaped, extensible, and rendered by headless Chromium (screenshot kept)."""

from __future__ import annotations

import base64
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
