"""The tuning session's recipe through export.loaders (issue 13, bugs 3, 5 and 6): the size a checkpoint was trained
at, every config key used or rejected, one INT8 definition."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sensitive_model import SENSITIVE, make_setup

from trtalign.core.config import load_config
from trtalign.core.errors import ConfigError, InputError
from trtalign.export.units import analyze_graph, default_plan, make_plan
from trtalign.tune.tuning import session_from_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("recipe"))


def _config(tiny: dict, path: Path, **extra) -> Path:
    data = yaml.safe_load(Path(tiny["config"]).read_text())
    for key, value in extra.items():
        data.setdefault(key, {}).update(value) if isinstance(value, dict) else data.__setitem__(key, value)
    path.write_text(yaml.safe_dump(data))
    return path


def test_fallback_exports_at_the_size_the_checkpoint_was_trained_at(tmp_path):
    """Bug 3: `trtalign fallback` exported a .pt at 640 where `trtalign export` uses the model's own size."""
    from trtalign.data.synth.dataset import generate_dataset
    from trtalign.data.synth.params import SynthParams
    from trtalign.data.synth.proxy_models import proxy_model_path

    generate_dataset(tmp_path / "data", SynthParams(task="detect", imgsz=320), train=8, val=4, seed=5)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model": str(proxy_model_path("detect")), "data": {"val": "data"},
                                   "calibration": {"num": 8}, "outputs": {"dir": "out"}}))
    session = session_from_config(load_config(cfg), tmp_path / "work")
    assert session.imgsz == (320, 320)  # the bundled model was trained at 320 (no imgsz in the config)


def test_config_keys_are_used_or_rejected(tiny, tmp_path):
    """Bug 5: task, calibration.seed, quantize.exclude and data.annotations were accepted and never read."""
    for key, value in (("calibration", {"seed": 1}), ("data", {"annotations": "a.json"})):
        with pytest.raises(ConfigError, match="unknown key"):
            load_config(_config(tiny, tmp_path / "c.yaml", **{key: value}))
    with pytest.raises(InputError, match="task 'obb' but tiny.onnx is a detect model"):
        session_from_config(load_config(_config(tiny, tmp_path / "obb.yaml", task="obb")), tmp_path / "w1")
    session = session_from_config(load_config(_config(tiny, tmp_path / "x.yaml", quantize={"exclude": ["*conv1"]})),
                                  tmp_path / "w2")
    plan = session.plan(())
    assert plan.units[SENSITIVE] == "fp16" and session.excluded == {SENSITIVE}
    assert session.plan((), "fp32").units[SENSITIVE] == "fp32"


def test_one_int8_definition(tiny, tmp_path, capsys):
    """Bug 6: eval / quantize kept the head's output convs in FP16, sensitivity / fallback started from every unit
    INT8. Now all start from export.units.default_plan."""
    import json

    from trtalign.cli import main

    units = analyze_graph(str(tiny["onnx"])).units
    int8 = default_plan(units)
    assert [u.name for u in units if int8.units[u.name] != "int8"] == ["model.head"]
    session = session_from_config(load_config(tiny["config"]), tmp_path / "w")
    assert session.plan(()).units == make_plan(units).units == int8.units
    assert main(["quantize", str(tiny["onnx"]), "--list-units", "--save-plan", str(tmp_path / "plan.json")]) == 0
    assert json.loads((tmp_path / "plan.json").read_text())["units"] == int8.units
    capsys.readouterr()
