"""`trtalign demo --quick` end to end on the CPU: data, export, mAP per precision, fallback, report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    code, stdout, stderr = run_cli("demo", "--quick", "--out", str(out))
    assert code == 0, stderr[-3000:]
    return out, stdout, stderr


def test_demo_writes_report_and_json(demo_out):
    out, stdout, stderr = demo_out
    assert "report.html" in stdout
    report = json.loads((out / "report.json").read_text())
    runners = {r["runner"]: r for r in report["eval"]["results"]}
    assert {"torch", "ort-fp32", "ort-fp16sim", "ort-int8sim"} <= set(runners)
    # ONNX Runtime FP32 runs the same network as torch: the difference comes only from NMS (explained in the report)
    assert abs(runners["ort-fp32"]["metrics"]["stats"]["map"] - runners["torch"]["metrics"]["stats"]["map"]) < 0.02
    assert report["naive_int8_map"] is not None and report["naive_int8_map"] < 0.5 * runners["ort-fp32"]["metrics"]["stats"]["map"]
    fb = report["fallback"]
    assert fb["num_evaluations"] >= 2 and fb["status"] in ("ok", "nothing-to-do", "max-evals", "unreachable")
    assert (out / "fallback" / "plan.json").is_file() and (out / "fallback" / "model.qdq.onnx").is_file()
    html = (out / "report.html").read_text()
    assert "<img" in html and "Why Q/DQ placement matters" in html and "Fallback result" in html
    assert "http://" not in html and "https://" not in html.replace("https://github", "")  # self-contained


def test_demo_bad_input_is_one_line(tmp_path):
    code, _, stderr = run_cli("demo", "--images", "2", "--out", str(tmp_path / "o"))
    assert code == 2 and stderr.strip().count("\n") == 0 and "--val-images" in stderr  # --images: hidden alias
    f = tmp_path / "file"
    f.write_text("x")
    code, _, stderr = run_cli("demo", "--out", str(f))
    assert code == 2 and "is a file" in stderr


def _readme_block(marker: str) -> str:
    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text()
    after = text.split(marker, 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def test_readme_pipeline_commands_run(demo_out, tmp_path):
    """The README's step-by-step block, verbatim, after `trtalign demo --quick` (whose outputs it starts from)."""
    import os
    import subprocess
    import sys

    out, _, _ = demo_out
    cwd = out.parent
    (cwd / "pipeline.yaml").write_text(_readme_block("<!-- readme-config -->"))
    script = _readme_block("<!-- readme-test -->")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    work = cwd / "work"
    for name in ("model.onnx", "align.json", "ranges.json", "calib.cache", "model.qdq.onnx", "eval.html", "sens.json",
                 "fallback/plan.json", "plans_10.3.json", "plans_11.4.json", "triton/model/config.pbtxt"):
        assert (work / name).exists(), name
    assert json.loads((work / "align.json").read_text())["passed"] is True
    assert (work / "calib.cache").read_text().startswith("TRT-8600-MinMaxCalibration")
