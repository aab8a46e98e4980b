"""benchmarks/sensitivity.py end to end on the tiny detector with one sensitive unit (``--model/--data``): it runs,
its JSON holds every row of the table, and the figures say what the model was built to show."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from sensitive_model import SENSITIVE, make_setup

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "sensitivity.py"


def test_benchmark_runs_on_a_given_model_and_reports_every_row(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("sensitivity_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    s = make_setup(tmp_path / "setup", count=24)
    out = tmp_path / "bench.json"
    assert bench.main(["--model", str(s["onnx"]), "--data", str(s["data"]), "--imgsz", "32", "--tune", "12",
                       "--val", "12", "--calib", "16", "--calib-method", "minmax", "--subset", "4",
                       "--max-evals", "6", "--budget", "3", "--baseline-k", "1", "--workdir", str(tmp_path / "w"),
                       "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for row in ("FP32", "naive INT8", "INT8 placement, no fallback", "ours (sqnr, gallop+prune)",
                "same ranking, bisect+prune", "baseline top-1 (fixed)", "ratios vs fixed-k baseline", "targets:"):
        assert row in text, row
    r = json.loads(out.read_text())["tasks"][0]
    assert r["ours"]["fallback_units"] == [SENSITIVE]  # the sensitive unit and nothing else falls back
    assert r["ours"]["search"] == "gallop" and r["ours_other_search"]["search"] == "bisect"
    assert r["baseline"]["ranking_top10"][0] == SENSITIVE  # one full evaluation per unit agrees
    assert r["baseline"]["rows"][0]["evaluations"] == r["units"] + 1
    assert r["fp32"]["val"] - r["int8_no_fallback"]["val"] > 0.01  # INT8 damage is visible without fallback
    assert r["fp32"]["val"] - r["ours"]["map_val"] <= 0.05
    assert set(r["targets"]) == {"drop_within_0.003", "int8_macs_ge_80pct", "evals_5x_fewer", "map_ge_baseline"}

    # a second ranking metric against the same baseline, without re-running the per-unit evaluations
    out2 = tmp_path / "bench_det.json"
    common = ["--model", str(s["onnx"]), "--data", str(s["data"]), "--imgsz", "32", "--tune", "12", "--val", "12",
              "--calib", "16", "--calib-method", "minmax", "--subset", "4", "--max-evals", "6", "--budget", "3",
              "--baseline-k", "1", "--workdir", str(tmp_path / "w2")]
    assert bench.main(common + ["--metric", "det", "--no-compare-search", "--baseline-from", str(out),
                                "--json", str(out2)]) == 0
    r2 = json.loads(out2.read_text())["tasks"][0]
    assert r2["baseline"]["reused_from"] == str(out) and r2["baseline"]["per_unit_map"] == r["baseline"]["per_unit_map"]
    assert r2["ours"]["metric"] == "det" and r2["ours"]["fallback_units"] == [SENSITIVE]
    assert "reused from" in capsys.readouterr().out
    # a different setting is refused
    import pytest

    with pytest.raises(SystemExit, match="not the same"):
        bench.main([a if a != "minmax" else "entropy" for a in common] + ["--baseline-from", str(out)])
