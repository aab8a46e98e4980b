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
    for row in ("FP32", "naive INT8", "INT8 placement, no fallback", "ours (sqnr, descend)",
                "same ranking, gallop+prune", "baseline top-1 (fixed)", "ratios vs fixed-k baseline", "targets:"):
        assert row in text, row
    r = json.loads(out.read_text())["tasks"][0]
    assert r["ours"]["fallback_units"] == [SENSITIVE]  # the sensitive unit and nothing else falls back
    # the split sizes come from the noise measured on a pilot (here the whole 12-image tuning split)
    assert r["sizing"]["pilot_images"] == 12 and r["sizing"]["images_needed"] >= 1
    assert r["splits"]["tune"] == r["sizing"]["tune_images"] and r["splits"]["val"] == r["sizing"]["val_images"]
    assert "splits sized from the noise" in text
    assert r["max_evals"] == 6
    assert r["ours"]["search"] == "descend" and r["ours_other_search"]["search"] == "gallop"
    assert r["baseline"]["ranking_top10"][0] == SENSITIVE  # one full evaluation per unit agrees
    assert r["baseline"]["rows"][0]["evaluations"] == r["units"] + 1
    assert r["fp32"]["val"] - r["int8_no_fallback"]["val"] > 0.01  # INT8 damage is visible without fallback
    assert r["fp32"]["val"] - r["ours"]["map_val"] <= 0.05
    assert set(r["targets"]) == {"val_drop_within_budget_95", "int8_macs_ge_80pct", "full_evals_le_2log2N_plus_2",
                                 "evals_10x_fewer_than_baseline", "map_ge_baseline"}
    # the script-checkable summary: exactly the keys, drops as fractions, the interval around the drop
    m = json.loads(out.read_text())["models"][0]
    assert set(m) == {"model", "units", "budget", "val_drop", "val_drop_ci95", "int8_mac_fraction", "full_evals",
                      "baseline_full_evals", "baseline_val_drop", "wall_s"}
    assert m["budget"] == 0.03 and m["val_drop"] == r["fp32"]["val"] - r["ours"]["map_val"]
    assert m["val_drop_ci95"][0] <= m["val_drop"] <= m["val_drop_ci95"][1]
    assert m["baseline_full_evals"] == r["units"] + 1 and m["full_evals"] == r["ours"]["evaluations"]

    # a second ranking metric against the same baseline, without re-running the per-unit evaluations
    out2 = tmp_path / "bench_det.json"
    common = ["--model", str(s["onnx"]), "--data", str(s["data"]), "--imgsz", "32", "--tune", "12", "--val", "12",
              "--calib", "16", "--calib-method", "minmax", "--subset", "4", "--max-evals", "6", "--budget", "3",
              "--baseline-k", "1", "--workdir", str(tmp_path / "w2")]
    assert bench.main(common + ["--metric", "det", "--no-compare-search", "--baseline-from", str(out),
                                "--agreement", "scorebox", "--json", str(out2)]) == 0
    r2 = json.loads(out2.read_text())["tasks"][0]
    assert r2["baseline"]["reused_from"] == str(out) and r2["baseline"]["per_unit_map"] == r["baseline"]["per_unit_map"]
    assert r2["ours"]["metric"] == "det" and r2["ours"]["fallback_units"] == [SENSITIVE]
    text = capsys.readouterr().out
    assert "reused from" in text and "scorebox: Spearman" in text
    assert r2["ranking_agreement"]["other_metrics"]["scorebox"]["top_k_overlap"] == 1  # the sensitive unit first
    # a different setting is refused
    import pytest

    with pytest.raises(SystemExit, match="not the same"):
        bench.main([a if a != "minmax" else "entropy" for a in common] + ["--baseline-from", str(out)])
