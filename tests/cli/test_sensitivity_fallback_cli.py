"""`trtalign sensitivity` and `trtalign fallback` end to end (in process) on the tiny detector with one sensitive
unit: JSON ranking, outputs of the search, resume from the journal, budget in points and bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tune"))
from sensitive_model import SENSITIVE, make_setup  # noqa: E402

from trtalign.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("cli_fallback"))


@pytest.fixture(scope="module")
def sens_json(setup):
    path = setup["config"].parent / "sens.json"
    assert main(["sensitivity", str(setup["config"]), "--metric", "sqnr", "--mode", "enable-one", "--subset", "6",
                 "--json", str(path)]) == 0
    return path


def test_sensitivity_cli_writes_a_ranking(sens_json, capsys):
    data = json.loads(sens_json.read_text())
    assert data["format"] == "trtalign-sensitivity" and data["metric"] == "sqnr" and data["mode"] == "enable-one"
    assert data["ranking"][0] == SENSITIVE and data["subset"] == 6 and len(data["units"]) == 5


def test_sensitivity_cli_local(setup, tmp_path, capsys):
    out = tmp_path / "local.json"
    assert main(["sensitivity", str(setup["config"]), "--metric", "cosine", "--local", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["mode"] == "local" and data["ranking"][0] == SENSITIVE and data["passes"] == 1
    assert SENSITIVE in capsys.readouterr().out


def test_fallback_cli_outputs_and_resume(setup, sens_json, tmp_path, capsys):
    import onnx

    from trtalign.core.config import load_config
    from trtalign.runtime.ort_runner import OrtRunner

    out = tmp_path / "fb"
    args = ["fallback", str(setup["config"]), "--budget", "5", "--ranking", str(sens_json), "--out", str(out),
            "--json", str(tmp_path / "r.json")]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "1 of 5 units in fp16: " + SENSITIVE in text
    assert "splits sized from the noise" in text  # fallback.pilot (100) > the 12 tuning images: all of them
    first = json.loads((out / "fallback.json").read_text())
    assert first["result"]["fallback_units"] == [SENSITIVE] and first["result"]["budget"] == pytest.approx(0.05)
    sizing = first["result"]["noise"]["sizing"]
    assert sizing["pilot_images"] == 12 and sizing["tune_images"] == 12 and first["splits"]["tune_images"] == 12
    plan = json.loads((out / "plan.json").read_text())["units"]
    # the INT8 plan (export.units.default_plan: the head's output conv in fp16) with the sensitive unit fallen back
    assert plan == {k: ("fp16" if k in (SENSITIVE, "model.head") else "int8") for k in plan}
    model = onnx.load(str(out / "model.qdq.onnx"))
    onnx.checker.check_model(model)
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    with OrtRunner(model) as runner:
        assert "num_detections" in runner.infer({"images": __import__("numpy").zeros((1, 3, 32, 32), "float32")})
    engine_cfg = load_config(out / "engine.yaml")
    assert engine_cfg.precisions == ["int8"] and engine_cfg.quantize.plan == (out / "plan.json").resolve()
    html = (out / "report.html").read_text()
    assert "mAP vs number of fallback units" in html and "Per-unit sensitivity" in html and "data:image/png" in html
    assert "Split sizes from the measured noise: on 12 pilot tuning images" in html
    assert json.loads((tmp_path / "r.json").read_text())["fallback_units"] == [SENSITIVE]

    # an interruption leaves the journal with the evaluations finished so far: keep the first 3 and run again
    journal = json.loads((out / "journal.json").read_text())
    ran_first = sum(not e["replayed"] for e in first["result"]["evaluations"])
    assert ran_first == len(journal["entries"])
    journal["entries"] = dict(list(journal["entries"].items())[:3])
    (out / "journal.json").write_text(json.dumps(journal))
    (out / "fallback.json").unlink()
    assert main(args) == 0
    second = json.loads((out / "fallback.json").read_text())["result"]
    assert second["fallback_units"] == [SENSITIVE]
    assert sum(not e["replayed"] for e in second["evaluations"]) == ran_first - 3
    assert [e["map"] for e in second["evaluations"]] == [e["map"] for e in first["result"]["evaluations"]]


def test_fallback_cli_budget_above_naive_drop_keeps_everything_int8(setup, sens_json, tmp_path, capsys):
    out = tmp_path / "huge"
    # the interval rule: the upper end of INT8's drop interval (0.80 +/- 0.18 on these 12 images) is below 0.99
    # (the holdout rule that `auto` picks here would also need the half-width again below it)
    assert main(["fallback", str(setup["config"]), "--budget", "99", "--ranking", str(sens_json), "--out",
                 str(out), "--decision", "interval"]) == 0
    text = capsys.readouterr().out
    assert "already meets the budget" in text and "0 of 5 units" in text
    plan = json.loads((out / "plan.json").read_text())["units"]
    assert plan == {k: ("fp16" if k == "model.head" else "int8") for k in plan}  # the INT8 plan, nothing more


@pytest.mark.parametrize("extra, message", [
    (["--budget", "-0.5"], "non-negative"),  # negative budget
    (["--budget", "150"], "in mAP points"),  # a fraction given as points > 100
    (["--budget", "0.5", "--ranking", "missing.json"], "sensitivity file not found"),
    (["--budget", "0.5", "--max-evals", "0"], "--max-evals must be >= 1"),
    (["--budget", "0.5", "--pilot", "4"], "--pilot must be 0"),
    (["--budget", "0.5", "--max-images", "2"], "--max-images must be >= 8"),
    (["--budget", "0.5", "--backend", "trt"], "tensorrt"),  # only when TensorRT is missing (skipped otherwise)
])
def test_fallback_cli_bad_input_is_one_line_and_writes_nothing(setup, tmp_path, capsys, extra, message):
    if "trt" in extra:
        try:
            import tensorrt  # noqa: F401
            pytest.skip("TensorRT is installed: --backend trt is valid here")
        except ImportError:
            pass
    out = tmp_path / "bad"
    assert main(["fallback", str(setup["config"]), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("trtalign fallback: error:")
    assert not out.exists()


def test_help_says_budget_is_in_points(capsys):
    with pytest.raises(SystemExit):
        main(["fallback", "--help"])
    assert "mAP POINTS" in capsys.readouterr().out


def test_fallback_cli_budget_zero_keeps_every_unit_float_without_sizing(setup, sens_json, tmp_path, capsys):
    out = tmp_path / "zero"
    assert main(["fallback", str(setup["config"]), "--budget", "0", "--ranking", str(sens_json), "--out",
                 str(out)]) == 0
    result = json.loads((out / "fallback.json").read_text())["result"]
    assert result["status"] == "zero-budget" and result["num_fallback"] == 5
    assert "sizing" not in result["noise"] and "splits sized" not in capsys.readouterr().out
