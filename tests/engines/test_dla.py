"""DLA (``trt.dla_core`` / ``trtalign build --dla-core``): the plan (fp16 / int8 only, static batch, versions with DLA),
the builder's calls against the real API surfaces, the engine cache key and sidecar, and the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from trtalign.cli import main
from trtalign.core.config import config_from_dict
from trtalign.core.errors import ConfigError, UnsupportedError
from trtalign.engines.builder import build_engine
from trtalign.engines.cache import EngineCache, cache_key, read_sidecar
from trtalign.engines.calibrator import CalibrationBatches
from trtalign.engines.plan import BuildPlan, make_build_plan

from .conftest import UNIT_NODES, make_onnx
from .test_cli_build import LAYERS as CLI_LAYERS
from .test_cli_build import _config as cli_config
from .test_conformance import LAYERS, UNIT_PLAN, _flags_set
from .trt_standin import VERSIONS, FakeCudaBackend, FakeModel, Standin, SurfaceError, load_surface


def _cfg(tmp_path, batch=(1, 1, 1), **trt):
    return config_from_dict({"model": str(tmp_path / "m.onnx"), "imgsz": 64, "trt": trt,
                             "batch": dict(zip(("min", "opt", "max"), batch)),
                             "calibration": {"images": str(tmp_path), "num": 4}})


def _plan(tmp_path, onnx_files, version, precision, onnx, **trt):
    return make_build_plan(_cfg(tmp_path, **trt), onnx_files[onnx], version, precision, unit_plan=UNIT_PLAN,
                           unit_nodes=UNIT_NODES)


# ------------------------------------------------------------------------------------------------------------ plan
# (plan version, precision, onnx): the TensorRT versions that have DLA (8.5 ... 10.7, 11.4.1+) in both precisions
DLA_CELLS = [(v, p, o) for v in ("8.5.2", "8.6.1", "10.3.0", "10.7.0", "11.4.1")
             for p, o in [("fp16", "fp16" if v.startswith("11") else "float"), ("int8", "qdq")]]


@pytest.mark.parametrize("version,precision,onnx", DLA_CELLS)
def test_dla_plan_is_the_gpu_plan_plus_core_and_gpu_fallback(tmp_path, onnx_files, version, precision, onnx):
    gpu = _plan(tmp_path, onnx_files, version, precision, onnx)
    dla = _plan(tmp_path, onnx_files, version, precision, onnx, dla_core=1)
    assert gpu.dla_core is None and "GPU_FALLBACK" not in gpu.builder_flags
    assert dla.dla_core == 1 and dla.builder_flags == gpu.builder_flags + ("GPU_FALLBACK",)
    assert dataclasses.replace(dla, dla_core=None, builder_flags=gpu.builder_flags) == gpu  # nothing else changes
    assert BuildPlan.from_dict(json.loads(dla.to_json())) == dla
    if version.startswith("11"):  # strongly typed: no FP16 / INT8 / OBEY flags on DLA either
        assert dla.builder_flags == ("GPU_FALLBACK",) and dla.strongly_typed


@pytest.mark.parametrize("version", ["8.5.2", "8.6.1", "10.3.0", "11.4.1"])
def test_fp32_on_dla_is_refused_naming_the_valid_precisions(tmp_path, onnx_files, version):
    with pytest.raises(UnsupportedError, match=r"DLA runs only 'fp16', 'int8' \(got precision 'fp32' with DLA "
                                               r"core 0\)"):
        _plan(tmp_path, onnx_files, version, "fp32", "float", dla_core=0)


# versions without DLA on Jetson: 10.8+ (10.7 was the last 10.x with DLA), 11.0 - 11.3, 11.4.0 (Windows on ARM only)
@pytest.mark.parametrize("version", ["10.8.0", "10.16.1", "11.0.0", "11.3.0", "11.4.0"])
def test_dla_on_a_version_without_dla_is_refused(tmp_path, onnx_files, version):
    onnx = "fp16" if version.startswith("11") else "float"
    with pytest.raises(UnsupportedError, match=r"needs TensorRT 8.5 to before 10.8 or TensorRT >= 11.4.1; the target "
                                               rf"is TensorRT {version}"):
        _plan(tmp_path, onnx_files, version, "fp16", onnx, dla_core=0)
    assert _plan(tmp_path, onnx_files, version, "fp16", onnx).dla_core is None  # the GPU build is unaffected


def test_dla_needs_a_static_batch(tmp_path, onnx_files):
    with pytest.raises(ConfigError, match=r"DLA \(trt.dla_core: 0\) has no dynamic shapes, but the batch profile is "
                                          r"min=1 opt=2 max=4"):
        _plan(tmp_path, onnx_files, "10.3.0", "fp16", "float", batch=(1, 2, 4), dla_core=0)
    plan = _plan(tmp_path, onnx_files, "10.3.0", "fp16", "float", batch=(4, 4, 4), dla_core=0)
    assert plan.profile.min == plan.profile.max == (4, 3, 64, 64)
    fixed = make_onnx(tmp_path / "fixed.onnx", batch=1)  # batch fixed in the ONNX: no profile at all
    cfg = _cfg(tmp_path, dla_core=0)
    assert make_build_plan(cfg, fixed, "10.3.0", "fp16").profile is None


def test_dla_core_is_in_the_cache_key_and_the_sidecar(tmp_path, onnx_files):
    gpu = _plan(tmp_path, onnx_files, "10.3.0", "fp16", "float")
    dla0 = _plan(tmp_path, onnx_files, "10.3.0", "fp16", "float", dla_core=0)
    dla1 = _plan(tmp_path, onnx_files, "10.3.0", "fp16", "float", dla_core=1)
    onnx = onnx_files["float"].read_bytes()
    keys = {cache_key(onnx, p.to_json(), "10.3.0", "8.7") for p in (gpu, dla0, dla1)}
    assert len(keys) == 3  # a DLA 0 engine is neither the GPU engine nor the DLA 1 engine
    cache = EngineCache(tmp_path / "engines")
    key = cache_key(onnx, dla1.to_json(), "10.3.0", "8.7")
    path = cache.put(key, b"E", trt_version="10.3.0", gpu_name="Orin", compute_capability="8.7",
                     onnx_sha256=dla1.onnx_sha256, plan=dla1, build_seconds=1.0)
    assert BuildPlan.from_dict(read_sidecar(path).plan).dla_core == 1
    old = {k: v for k, v in gpu.to_dict().items() if k != "dla_core"}  # a sidecar written before DLA plans
    assert BuildPlan.from_dict(old).dla_core is None


# ----------------------------------------------------------------------------------- builder vs the real surfaces
@pytest.mark.parametrize("version", VERSIONS)
def test_every_surface_has_the_dla_api(version):
    m = load_surface(version)["module"]
    for cls, prop in [("IBuilderConfig", "default_device_type"), ("IBuilderConfig", "DLA_core"),
                      ("Runtime", "DLA_core")]:
        assert m[cls]["properties"][prop]["readonly"] is False, f"{version}: {cls}.{prop}"
    assert "DLA" in m["DeviceType"]["members"] and "GPU_FALLBACK" in m["BuilderFlag"]["members"]


# (surface, plan version): 11.4.1 restores DLA with the 11.4 API (the builder checks major.minor only)
SURFACE_PLANS = [("8.6.1", "8.6.1"), ("10.3.0", "10.3.0"), ("11.4.0", "11.4.1")]


@pytest.mark.parametrize("surface,plan_version", SURFACE_PLANS)
@pytest.mark.parametrize("precision,onnx", [("fp16", "float"), ("int8", "qdq")])
def test_builder_sets_dla_device_core_and_gpu_fallback(tmp_path, onnx_files, surface, plan_version, precision, onnx):
    onnx = "fp16" if surface == "11.4.0" and precision == "fp16" else onnx
    plan = _plan(tmp_path, onnx_files, plan_version, precision, onnx, dla_core=1)
    trt = Standin(surface, FakeModel(layers=LAYERS))
    result = build_engine(plan, onnx_files[onnx], trt=trt, backend=FakeCudaBackend())
    targets = trt.targets()
    assert [c.args[0] for c in trt.called("IBuilderConfig.default_device_type=")] == [trt.DeviceType.DLA]
    assert [c.args[0] for c in trt.called("IBuilderConfig.DLA_core=")] == [1]
    flags = _flags_set(trt)
    assert flags[-1] == "GPU_FALLBACK" and flags.count("GPU_FALLBACK") == 1
    assert flags == (["GPU_FALLBACK"] if surface == "11.4.0" else list(plan.builder_flags))
    # device and core are set before the build; the inspector deserializes on the same core
    build = targets.index("Builder.build_serialized_network")
    assert targets.index("IBuilderConfig.DLA_core=") < build < targets.index("Runtime.DLA_core=") \
        < targets.index("Runtime.deserialize_cuda_engine")
    assert trt.called("Runtime.DLA_core=")[0].args == (1,) and result.applied["dla_core"] == 1


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_dla_int8_calibrator_route_sets_dla_and_the_calibrator(tmp_path, onnx_files, version):
    plan = _plan(tmp_path, onnx_files, version, "int8", "float", int8_route="calibrator", dla_core=0)
    trt = Standin(version, FakeModel(layers=LAYERS))
    batches = CalibrationBatches([np.full((3, 64, 64), 0.5, np.float32)] * 2, batch_size=1)
    build_engine(plan, onnx_files["float"], trt=trt, backend=FakeCudaBackend(), calibration_batches=batches)
    assert {"INT8", "GPU_FALLBACK"} <= set(_flags_set(trt)) and trt.called("IBuilderConfig.int8_calibrator=")
    assert trt.called("IBuilderConfig.DLA_core=")[0].args == (0,)


def test_standin_rejects_a_dla_core_that_is_not_an_int():
    config = Standin("10.3.0").Builder(None).create_builder_config()
    with pytest.raises(SurfaceError, match="DLA_core expects int"):
        config.DLA_core = "0"


# ---------------------------------------------------------------------------------------------------------------- CLI
def test_cli_dla_core_overrides_the_config_and_names_the_engine(tmp_path, monkeypatch):
    import trtalign.cli.build as build_cli
    import trtalign.engines.builder as builder

    standins = []

    def fake_trt():
        standins.append(Standin("10.3.0", FakeModel(layers=CLI_LAYERS)))
        return standins[-1]

    monkeypatch.setattr(builder, "import_tensorrt", fake_trt)
    monkeypatch.setattr(build_cli, "_gpu", lambda cuda: (FakeCudaBackend(), {"name": "Orin",
                                                                            "compute_capability": "8.7"}))
    cfg = cli_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("batch: {min: 1, opt: 2, max: 4}", "batch: {min: 1, opt: 1, max: 1}"))
    base = ["build", str(cfg), "--trt-version", "10.3", "--precision", "fp16", "--json", str(tmp_path / "r.json")]
    assert main(base) == 0 and main([*base, "--dla-core", "0"]) == 0
    out = tmp_path / "out"
    gpu, dla = json.loads((out / "tiny.fp16.json").read_text()), json.loads((out / "tiny.fp16.dla0.json").read_text())
    assert (out / "tiny.fp16.dla0.engine").is_file() and (out / "tiny.fp16.engine").is_file()  # both kept
    assert gpu["plan"]["dla_core"] is None and dla["plan"]["dla_core"] == 0 and gpu["cache_key"] != dla["cache_key"]
    assert dla["rebuild_command"].endswith("--dla-core 0") and "DLA" not in " ".join(standins[0].targets())
    assert standins[1].called("IBuilderConfig.DLA_core=")[0].args == (0,)


@pytest.mark.parametrize("argv,message", [
    (["--precision", "fp32", "--dla-core", "0"], "DLA runs only 'fp16', 'int8'"),
    (["--precision", "fp16", "--dla-core", "-1"], "expected a DLA core number >= 0"),
    (["--precision", "fp16", "--dla-core", "0", "--trt-version", "11.4.0"], "the target is TensorRT 11.4.0"),
])
def test_cli_dla_errors_are_one_line_exit_2(tmp_path, cli, argv, message):
    cfg = cli_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("batch: {min: 1, opt: 2, max: 4}", "batch: {min: 1, opt: 1, max: 1}"))
    code, out, err = cli("build", str(cfg), "--trt-version", "10.3", "--plan-only", *argv)
    assert code == 2 and message in err and "Traceback" not in err, err


def test_cli_plan_only_shows_the_dla_core_from_the_config(tmp_path, cli):
    cfg = cli_config(tmp_path, dla_core=1)
    cfg.write_text(cfg.read_text().replace("batch: {min: 1, opt: 2, max: 4}", "batch: {min: 1, opt: 1, max: 1}"))
    code, out, err = cli("build", str(cfg), "--trt-version", "8.6", "--precision", "fp16", "--plan-only", "--json",
                         str(tmp_path / "p.json"))
    assert code == 0, err
    assert "builder flags ['FP16', 'GPU_FALLBACK']" in out and "DLA core 1" in out
    assert json.loads((tmp_path / "p.json").read_text())["engines"][0]["plan"]["dla_core"] == 1


# ------------------------------------------------------------------------------------------------------------- runner
@pytest.mark.parametrize("version", VERSIONS)
def test_runner_deserializes_a_dla_engine_on_its_sidecar_core(tmp_path, version):
    from trtalign.engines.cache import EngineSidecar, write_engine
    from trtalign.runtime.trt_runner import TrtRunner

    def run(engine, **kw):
        trt, backend = Standin(version), FakeCudaBackend()
        trt.backend = backend
        with TrtRunner(engine, trt=trt, backend=backend, **kw) as runner:
            runner.infer({"images": np.zeros((1, 3, 64, 64), np.float32)})
        return trt

    path = tmp_path / "m.fp16.dla1.engine"
    write_engine(path, b"STANDIN-ENGINE", EngineSidecar(trt_version=version, gpu_name="Orin", compute_capability="8.6",
                                                       onnx_sha256="x", plan={"dla_core": 1}, build_seconds=1.0))
    trt = run(path)
    targets = trt.targets()
    assert trt.called("Runtime.DLA_core=")[0].args == (1,)
    assert targets.index("Runtime.DLA_core=") < targets.index("Runtime.deserialize_cuda_engine")
    assert run(path, dla_core=0).called("Runtime.DLA_core=")[0].args == (0,)  # explicit core wins
    assert not run(b"STANDIN-ENGINE").called("Runtime.DLA_core=")  # a GPU engine: no DLA core set
