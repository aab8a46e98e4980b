"""The recipe's engine step against the TensorRT 10.3.0 stand-in: every engine goes through the one engine cache with
the full key (issue 13, bugs 1 and 2).

- bug 1: the tuning engines were cached as ``plan-<plan key>.engine`` (no model, ranges, TensorRT or GPU in the key)
  and their runner skipped the sidecar check, so a re-calibration re-used stale engines;
- bug 2: internal callers built a throwaway PipelineConfig for make_build_plan, whose defaults leaked: evaluate(...,
  backend="trt", batch=4) built a profile with max 1, a fallback to fp32 set BuilderFlag.FP16.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from trtalign.core.errors import EngineError
from trtalign.engines.cache import read_sidecar

from .trt_standin import FakeCudaBackend, FakeModel, Standin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tune"))
from sensitive_model import SENSITIVE, make_setup  # noqa: E402

GPU = {"name": "Fake GPU", "compute_capability": "8.6"}


@pytest.fixture
def standin(monkeypatch):
    """Every import of tensorrt gets a fresh 10.3.0 stand-in (kept in the list); the GPU is a fake sm 8.6."""
    import importlib

    import trtalign.engines.builder as builder
    import trtalign.runtime.trt_runner as trt_runner

    made: list = []

    def fake_trt():
        made.append(Standin("10.3.0", FakeModel(deserialize_fails=True)))
        return made[-1]

    monkeypatch.setattr(builder, "import_tensorrt", fake_trt)
    if importlib.util.find_spec("trtalign.engines.loaders"):  # absent before issue 13: lets the test run on the old code
        monkeypatch.setattr(importlib.import_module("trtalign.engines.loaders"), "gpu_info",
                            lambda cuda="auto", backend=None: (FakeCudaBackend(), dict(GPU)))
    monkeypatch.setattr(trt_runner, "select_backend", lambda cuda: FakeCudaBackend())
    return made


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from trtalign.export.calibrate import calibrate

    s = make_setup(tmp_path_factory.mktemp("engine_loader"))
    s["ranges"] = calibrate(s["onnx"], s["data"] / "images" / "train", method="minmax", num=16)
    return s


def _built(standin) -> int:
    return sum("Builder.build_serialized_network" in t.targets() for t in standin)


def test_recalibration_changes_the_engine_cache_key_and_runners_check_the_sidecar(tiny, standin, tmp_path):
    from trtalign.export.ranges import Ranges, TensorRange
    from trtalign.runtime.plan_runners import QdqPlanModels
    from trtalign.tune.tuning import trt_runner_factory

    ranges_a = tiny["ranges"]
    ranges_b = Ranges({k: TensorRange(v.amax * 2, v.method) for k, v in ranges_a.tensors.items()}, "minmax")
    engines = tmp_path / "engines"
    runners = {}
    for name, ranges in (("a", ranges_a), ("b", ranges_b)):
        models = QdqPlanModels(tiny["onnx"], ranges, tmp_path / f"plans_{name}")
        runner = trt_runner_factory(models, engines, 32)(models.plan())
        assert runner.check_sidecar is True  # the tuning runners no longer skip it
        runners[name] = (runner, runner.engine_source)
    path_a, path_b = (loader() for _, loader in runners.values())
    assert path_a != path_b and runners["a"][1].key != runners["b"][1].key  # same plan, new ranges: new engine
    assert _built(standin) == 2
    for path in (path_a, path_b):
        sidecar = read_sidecar(path)
        assert (sidecar.trt_version, sidecar.compute_capability, sidecar.cache_key) == ("10.3.0", "8.6", path.stem)
    # the same model, ranges and plan again: served from the cache, nothing built
    models = QdqPlanModels(tiny["onnx"], ranges_a, tmp_path / "plans_a2")
    assert trt_runner_factory(models, engines, 32)(models.plan()).engine_source() == path_a
    assert _built(standin) == 2
    # the runner checks the sidecar: an engine from this cache refuses another TensorRT
    from trtalign.runtime.trt_runner import TrtRunner

    with pytest.raises(EngineError, match="built with TensorRT 10.3.0"):
        TrtRunner(path_a, trt=Standin("8.6.1"), backend=FakeCudaBackend("8.6")).activate()


@pytest.mark.parametrize("target, fp16", [("fp32", False), ("fp16", True)])
def test_fallback_target_decides_the_fp16_flag(tiny, standin, tmp_path, target, fp16):
    from trtalign.export.units import make_plan
    from trtalign.runtime.plan_runners import QdqPlanModels
    from trtalign.tune.tuning import trt_runner_factory

    models = QdqPlanModels(tiny["onnx"], tiny["ranges"], tmp_path / "plans")
    plan = make_plan(models.units, [SENSITIVE], target)
    assert set(plan.units.values()) == {"int8", target}  # the head's output convs follow the target too
    engine = trt_runner_factory(models, tmp_path / "engines", 32)(plan).engine_source()
    flags = read_sidecar(engine).plan["builder_flags"]
    assert "INT8" in flags and ("FP16" in flags) is fp16
    set_flags = [c.args[0].name for t in standin for c in t.called("IBuilderConfig.set_flag")]
    assert ("FP16" in set_flags) is fp16


def test_evaluate_trt_batch_4_builds_a_profile_up_to_4(standin, tmp_path):
    """evaluate(..., backend="trt", batch=4): the ONNX is exported with a dynamic batch up to 4 and the engine's
    profile reaches 4 (the stand-in cannot run engines, so evaluate stops at activation, after the build)."""
    from trtalign.data.synth.dataset import generate_dataset
    from trtalign.data.synth.params import SynthParams
    from trtalign.data.synth.proxy_models import proxy_model_path
    from trtalign.eval.evaluate import evaluate

    generate_dataset(tmp_path / "data", SynthParams(task="detect", imgsz=64), train=0, val=2, seed=1)
    with pytest.raises(EngineError, match="cannot deserialize"):
        evaluate(proxy_model_path("detect"), tmp_path / "data", ["fp32"], backend="trt", imgsz=64, batch=4,
                 workdir=tmp_path / "w")
    shapes = [c.args for t in standin for c in t.called("IOptimizationProfile.set_shape")]
    assert shapes and shapes[0][0] == "images" and shapes[0][3][0] == 4 and shapes[0][1][0] == 1
    (sidecar,) = [json.loads(p.read_text()) for p in (tmp_path / "w" / "engines").glob("*.json")
                  if not p.name.endswith(".layers.json")]
    assert sidecar["plan"]["profile"]["max"][0] == 4 and sidecar["plan"]["precision"] == "fp32"
