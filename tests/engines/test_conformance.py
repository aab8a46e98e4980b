"""API conformance: the builder, calibrator, dynamic-range, fallback and runner code run against stand-ins generated
from the real Python API surfaces of TensorRT 8.6.1, 10.3.0 and 11.4.0 (tests/data/trt_surfaces, extracted from the
bindings wheels by scripts/extract_trt_surface.py). A call the version does not have fails the test loudly."""

from __future__ import annotations

import numpy as np
import pytest

from trtalign.core.errors import EngineError, InputError, ModelError, UnsupportedError
from trtalign.engines.builder import build_engine
from trtalign.engines.calibrator import CalibrationBatches
from trtalign.engines.plan import make_build_plan
from trtalign.engines.plugins_loader import forget_loaded, load_plugin_libraries
from trtalign.engines.versions import FEATURES, capabilities
from trtalign.runtime.trt_runner import TrtRunner

from .conftest import NODES, UNIT_NODES, make_config
from .trt_standin import VERSIONS, FakeCudaBackend, FakeModel, Standin, SurfaceError, load_surface

LAYERS = [(NODES[0], ["c0"]), (NODES[1], ["r0"]), (NODES[2], ["c1"]), (NODES[3], ["output0"])]
UNIT_PLAN = {"model.0.conv": "int8", "model.1.conv": "fp32"}
#: only these engine / context methods are allowed in the runner: the name-based API shared by 8.5 ... 11
NAME_BASED = {"ICudaEngine.get_tensor_name", "ICudaEngine.get_tensor_mode", "ICudaEngine.get_tensor_dtype",
              "ICudaEngine.get_tensor_shape", "ICudaEngine.get_tensor_profile_shape",
              "ICudaEngine.create_execution_context", "IExecutionContext.set_input_shape",
              "IExecutionContext.get_tensor_shape", "IExecutionContext.set_tensor_address",
              "IExecutionContext.execute_async_v3"}


def _probe(surface: dict, feature: str) -> bool | None:
    """Does the real surface have the API behind ``feature``? None: no Python-level probe exists."""
    m = surface["module"]

    def has(cls: str, section: str, attr: str) -> bool:
        return cls in m and attr in m[cls].get(section, {})

    def member(enum: str, name: str) -> bool:
        return name in m.get(enum, {}).get("members", [])

    probes = {
        "name_based_io": has("ICudaEngine", "methods", "get_tensor_name")
        and has("IExecutionContext", "methods", "execute_async_v3"),
        "implicit_calibration": "IInt8EntropyCalibrator2" in m and "IInt8MinMaxCalibrator" in m,
        "dynamic_range": has("ITensor", "methods", "set_dynamic_range"),
        "builder_flag_int8": member("BuilderFlag", "INT8"),
        "builder_flag_fp16": member("BuilderFlag", "FP16"),
        "layer_precision": has("ILayer", "properties", "precision") and member("BuilderFlag",
                                                                              "OBEY_PRECISION_CONSTRAINTS"),
        "explicit_qdq": has("INetworkDefinition", "methods", "add_quantize"),
        "strongly_typed": member("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
        "explicit_batch_flag": member("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"),
        "load_library": has("IPluginRegistry", "methods", "load_library"),
        "builder_optimization_level": has("IBuilderConfig", "properties", "builder_optimization_level"),
        "version_compatible": member("BuilderFlag", "VERSION_COMPATIBLE"),
        "build_engine": has("Builder", "methods", "build_engine"),
        "max_workspace_size": has("IBuilderConfig", "properties", "max_workspace_size"),
        "execute_async_v2": has("IExecutionContext", "methods", "execute_async_v2"),
        "get_plugin_creator": has("IPluginRegistry", "methods", "get_plugin_creator"),
        "get_creator": has("IPluginRegistry", "methods", "get_creator"),
        "device_memory_size": has("ICudaEngine", "properties", "device_memory_size"),
        "platform_has_fast_fp16": has("Builder", "properties", "platform_has_fast_fp16"),
        "python_plugins": "plugin" in surface.get("subpackages", []),
    }
    return probes.get(feature)


#: features that are behaviours, not Python API (parser attributes, JSON schema, platform support): checked in
#: test_versions.py / test_dla.py (the DLA API itself is in every surface: test_dla.py checks it)
BEHAVIOURS = {"efficient_nms_class_agnostic", "inspector_schema_11_3", "dla", "dla_strongly_typed"}


def test_every_feature_has_a_probe_or_is_a_behaviour():
    assert {f for f in FEATURES if _probe(load_surface("10.3.0"), f) is None} == BEHAVIOURS


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("feature", sorted(set(FEATURES) - BEHAVIOURS))
def test_capability_table_matches_real_surface(version, feature):
    probe = _probe(load_surface(version), feature)
    assert capabilities(version).has(feature) == probe, f"versions.py says {feature} on {version} is " \
        f"{capabilities(version).has(feature)}, the real surface says {probe}"


def _build(tmp_path, onnx_files, version, precision, route="qdq", onnx="float", model=None, **trt):
    cfg = make_config(tmp_path, int8_route=route, timing_cache=str(tmp_path / "timing.cache"), **trt)
    cfg.calibration.cache_dir = tmp_path / "calib"
    cfg.calibration.method = "entropy"  # TensorRT's IInt8EntropyCalibrator2 (the config default is minmax)
    path = onnx_files[onnx]
    plan = make_build_plan(cfg, path, version, precision, unit_plan=UNIT_PLAN, unit_nodes=UNIT_NODES,
                           ranges={"images": 1.0, "c0": 4.0, "r0": 4.0})
    trt = Standin(version, model or FakeModel(layers=LAYERS))
    batches = CalibrationBatches([np.full((3, 64, 64), 0.5, np.float32)] * 3, batch_size=2)
    result = build_engine(plan, path, trt=trt, log_path=tmp_path / "build.log", backend=FakeCudaBackend(),
                          calibration_batches=batches)
    return plan, trt, result


def _flags_set(trt):
    return [c.args[0].name for c in trt.called("IBuilderConfig.set_flag")]


# every (route x version) cell that exists, with the ONNX that route needs
CELLS = [(v, p, r, o) for v in VERSIONS for p, r, o in [
    ("fp32", "qdq", "float"), ("fp16", "qdq", "fp16" if v == "11.4.0" else "float"), ("int8", "qdq", "qdq"),
    ("int8", "calibrator", "float"), ("int8", "dynamic-range", "float")] if not (v == "11.4.0" and r != "qdq")]


@pytest.mark.parametrize("version,precision,route,onnx", CELLS)
def test_builder_runs_every_route_against_real_surface(tmp_path, onnx_files, version, precision, route, onnx):
    plan, trt, result = _build(tmp_path, onnx_files, version, precision, route, onnx)
    targets = trt.targets()
    assert result.engine == b"STANDIN-ENGINE"
    assert "Builder.build_serialized_network" in targets and "Builder.build_engine" not in targets
    pool = trt.called("IBuilderConfig.set_memory_pool_limit")[0]
    assert pool.args[0].name == "WORKSPACE" and pool.args[1] == plan.workspace_bytes
    assert trt.called("IBuilderConfig.profiling_verbosity=")[0].args[0].name == "DETAILED"
    shape = trt.called("IOptimizationProfile.set_shape")[0]
    assert shape.args == ("images", (1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))
    assert (tmp_path / "timing.cache").read_bytes() == b"TIMING-CACHE"  # timing cache saved for reuse
    assert "EngineInspector.get_engine_information" in targets
    flags = _flags_set(trt)
    created = trt.called("Builder.create_network")[0].args[0]
    # no DLA unless asked (test_dla.py covers the DLA builds)
    assert "GPU_FALLBACK" not in flags and plan.dla_core is None
    assert not [t for t in targets if "DLA" in t or "device_type" in t]
    if version == "11.4.0":
        assert flags == [] and "IBuilderConfig.int8_calibrator=" not in targets
        assert created == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        assert "ILayer.precision=" not in targets and "ITensor.set_dynamic_range" not in targets
        return
    if version == "8.6.1":
        assert created == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    else:
        assert created == 0
    if precision == "fp16":
        assert flags == ["FP16"]
    if precision == "int8":
        # the unit plan falls back to fp32 only: INT8 without FP16 (the plan decides, not a config default)
        assert {"INT8", "OBEY_PRECISION_CONSTRAINTS"} <= set(flags) and "FP16" not in flags
        # the fp32 fallback unit got layer precision + output types, the INT8 unit did not; the implicit routes also
        # pin the decode region (here the head's Sigmoid) to FP32
        expected = [NODES[2]] + ([NODES[3]] if route != "qdq" else [])
        assert [lp.layer for lp in plan.layer_precisions] == expected
        pinned = [c for c in trt.calls if c.target == "ILayer.precision="]
        assert [c.args[0].name for c in pinned] == ["FLOAT"] * len(expected)
        assert [c.args[1].name for c in trt.called("ILayer.set_output_type")] == ["FLOAT"] * len(expected)
        assert result.applied["layers_pinned"] == len(expected) and result.applied["unmatched_nodes"] == []
    if route == "calibrator":
        calib = trt.called("IBuilderConfig.int8_calibrator=")[0].args[0]
        assert type(calib).__mro__[1].__name__ == "IInt8EntropyCalibrator2"
        assert trt.called("IBuilderConfig.set_calibration_profile")
        # the stand-in drove it like TensorRT: 3 images at batch 2 -> 2 batches pulled, then the cache was written
        assert calib.batches_served == 2 and result.applied["calibration_batches"] == 2
        assert calib._device == 0  # the device buffer was freed after the build
        cache = open(plan.calibrator.cache_path, "rb").read()
        assert cache.startswith({"8.6.1": b"TRT-8601-", "10.3.0": b"TRT-100300-", "10.16.1": b"TRT-101601-"}[version])
        # a second build reads the cache back and pulls no batches
        _, trt2, result2 = _build(tmp_path, onnx_files, version, precision, route, onnx)
        assert result2.applied["calibration_batches"] == 0 and "<tensorrt>.calibrate" in trt2.targets()
        assert result.applied["timing_cache_reused"] is False and result2.applied["timing_cache_reused"] is True
        assert trt2.called("IBuilderConfig.create_timing_cache")[0].args == (b"TIMING-CACHE",)
    else:
        assert "IBuilderConfig.int8_calibrator=" not in targets
    if route == "dynamic-range":
        ranges = {c.args: None for c in trt.called("ITensor.set_dynamic_range")}
        assert (-1.0, 1.0) in ranges and (-4.0, 4.0) in ranges and result.applied["ranges_set"] == 3
    else:
        assert "ITensor.set_dynamic_range" not in targets


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_minmax_calibrator_subclasses_the_real_base(tmp_path, onnx_files, version):
    cfg = make_config(tmp_path, int8_route="calibrator")
    cfg.calibration.method = "minmax"
    plan = make_build_plan(cfg, onnx_files["float"], version, "int8")
    trt = Standin(version, FakeModel(layers=LAYERS))
    build_engine(plan, onnx_files["float"], trt=trt, backend=FakeCudaBackend(),
                 calibration_batches=CalibrationBatches([np.zeros((3, 64, 64), np.float32)], batch_size=1))
    calib = trt.called("IBuilderConfig.int8_calibrator=")[0].args[0]
    assert type(calib).__mro__[1].__name__ == "IInt8MinMaxCalibrator"


@pytest.mark.parametrize("version", VERSIONS)
def test_runner_uses_only_the_name_based_api(tmp_path, version):
    trt = Standin(version)
    backend = FakeCudaBackend()
    trt.backend = backend
    runner = TrtRunner(b"STANDIN-ENGINE", trt=trt, backend=backend)
    with runner:
        assert [m.name for m in runner.input_metadata()] == ["images"]
        assert runner.output_metadata()[0].dtype == "int32" and runner.output_metadata()[1].shape == (None, 10, 4)
        x = np.full((2, 3, 64, 64), 0.25, np.float32)
        out = runner.infer({"images": x})
    assert out["num_detections"].shape == (2, 1) and out["num_detections"].dtype == np.int32
    assert out["num_detections"][0, 0] == int(x.sum())  # data went host -> device -> 'engine' -> host
    assert np.allclose(out["detection_boxes"], x.sum())
    used = {t for t in trt.targets() if t.split(".")[0] in ("ICudaEngine", "IExecutionContext")}
    assert used <= NAME_BASED, f"runner used {sorted(used - NAME_BASED)}"
    assert trt.called("IExecutionContext.set_input_shape")[0].args == ("images", (2, 3, 64, 64))
    assert trt.called("init_libnvinfer_plugins")  # plugins registered before deserialising
    assert trt.targets().index("init_libnvinfer_plugins") < trt.targets().index("Runtime.deserialize_cuda_engine")
    assert backend.ops.count("free") == 3 and backend.ops[-1] == "close"


def test_runner_cuda_graph_captures_once_per_shape_and_rejects_out_of_profile(tmp_path):
    trt = Standin("10.3.0")
    backend = FakeCudaBackend()
    trt.backend = backend
    with TrtRunner(b"E", trt=trt, backend=backend, cuda_graph=True) as runner:
        a = runner.infer({"images": np.ones((1, 3, 64, 64), np.float32)})
        b = runner.infer({"images": np.ones((1, 3, 64, 64), np.float32) * 2})
        with pytest.raises(InputError, match="outside the engine's profile"):
            runner.infer({"images": np.ones((5, 3, 64, 64), np.float32)})
        with pytest.raises(InputError, match="expected shape"):
            runner.infer({"images": np.ones((1, 3, 32, 64), np.float32)})
    assert backend.ops.count("begin_capture") == 1 and backend.ops.count("launch_graph") == 2
    assert a["num_detections"][0, 0] == 3 * 64 * 64 and b["num_detections"][0, 0] == 2 * 3 * 64 * 64


def test_builder_logger_receives_tensorrt_messages_in_the_log_file(tmp_path, onnx_files):
    _build(tmp_path, onnx_files, "10.3.0", "fp32")
    assert "[INFO] stand-in: building" in (tmp_path / "build.log").read_text()


def test_runner_engine_that_does_not_deserialize_is_a_clear_error_and_frees_the_backend():
    backend = FakeCudaBackend()
    runner = TrtRunner(b"E", trt=Standin("11.4.0", FakeModel(deserialize_fails=True)), backend=backend)
    with pytest.raises(EngineError, match="cannot deserialize the engine: .*rebuild it with `trtalign build"):
        runner.activate()
    assert backend.ops[-1] == "close" and not runner.is_active


# ----------------------------------------------------------------------------------- the harness fails loudly
WRONG_CALLS = [
    ("10.3.0", lambda t: t.Builder(t.Logger(t.Logger.Severity.WARNING)).build_engine, "Builder has no attribute"),
    ("11.4.0", lambda t: t.BuilderFlag.INT8, "BuilderFlag has no member 'INT8'"),
    ("11.4.0", lambda t: t.IInt8EntropyCalibrator2, "no attribute tensorrt.IInt8EntropyCalibrator2"),
    ("11.4.0", lambda t: t.Builder(t.Logger(t.Logger.Severity.WARNING)).create_network(0).get_input(0)
     .set_dynamic_range(-1.0, 1.0), "ITensor has no attribute 'set_dynamic_range'"),
    ("8.6.1", lambda t: t.NetworkDefinitionCreationFlag.STRONGLY_TYPED, "no member 'STRONGLY_TYPED'"),
    ("10.3.0", lambda t: t.Builder(t.Logger(t.Logger.Severity.WARNING)).create_builder_config()
     .set_memory_pool_limit(t.MemoryPoolType.WORKSPACE), "matches no signature"),  # arity
    ("10.3.0", lambda t: t.Builder(t.Logger(t.Logger.Severity.WARNING)).create_builder_config()
     .set_flag(t.MemoryPoolType.WORKSPACE), "wrong type"),  # enum of the wrong type
    ("10.3.0", lambda t: t.Runtime(t.Logger(t.Logger.Severity.WARNING)).deserialize_cuda_engine(engine=b""),
     "unexpected keyword"),
    ("10.3.0", lambda t: setattr(t.Builder(t.Logger(t.Logger.Severity.WARNING)).create_builder_config(),
                                 "max_workspace_size", 1 << 30), "no property 'max_workspace_size'"),
    ("8.6.1", lambda t: setattr(t.Builder(t.Logger(t.Logger.Severity.WARNING)), "platform_has_fast_fp16", True),
     "read-only"),
    ("10.3.0", lambda t: t.Runtime(t.Logger(t.Logger.Severity.WARNING)).deserialize_cuda_engine(b"x")
     .create_execution_context().execute_async_v2([], 0), "no attribute 'execute_async_v2'"),
    ("11.4.0", lambda t: t.get_plugin_registry().get_plugin_creator("EfficientNMS_TRT", "1"),
     "no attribute 'get_plugin_creator'"),
    ("10.3.0", lambda t: t.OnnxParser("network.onnx", t.Logger(t.Logger.Severity.WARNING)),
     "wrong type for \\['network'\\]"),  # a str where a TensorRT object is required
]


@pytest.mark.parametrize("version,wrong,message", WRONG_CALLS, ids=[f"{v}-{m[:30]}" for v, _, m in WRONG_CALLS])
def test_standin_rejects_api_the_version_lacks(version, wrong, message):
    with pytest.raises(SurfaceError, match=message):
        wrong(Standin(version))


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_standin_rejects_a_calibrator_override_with_the_wrong_arity(version):
    trt = Standin(version)
    with pytest.raises(SurfaceError, match="TensorRT calls it with \\[2\\]"):
        class _Bad(trt.IInt8EntropyCalibrator2):  # noqa: F841 - get_batch(self, names) is the real virtual
            def get_batch(self, names, stream):
                return None
    with pytest.raises(SurfaceError, match="Logger.log"):
        class _BadLogger(trt.ILogger):  # noqa: F841
            def log(self, msg):
                pass


def test_plan_for_another_version_is_refused_by_the_builder(tmp_path, onnx_files):
    cfg = make_config(tmp_path, int8_route="calibrator")
    plan = make_build_plan(cfg, onnx_files["float"], "8.6.1", "int8")
    with pytest.raises(EngineError, match="targets TensorRT 8.6.1 but the installed tensorrt is 11.4.0"):
        build_engine(plan, onnx_files["float"], trt=Standin("11.4.0"))


def test_harness_catches_a_10x_plan_forced_onto_11(tmp_path, onnx_files):
    """A plan made for 10.3 (layer precision + calibrator), applied to the 11.4 surface, must fail in the stand-in."""
    import dataclasses

    cfg = make_config(tmp_path, int8_route="dynamic-range")
    plan = make_build_plan(cfg, onnx_files["float"], "10.3.0", "int8", unit_plan=UNIT_PLAN, unit_nodes=UNIT_NODES,
                           ranges={"images": 1.0})
    forced = dataclasses.replace(plan, trt_version="11.4.0", builder_flags=(), network_flags=())
    with pytest.raises(SurfaceError, match="ILayer has no property 'precision'"):
        build_engine(forced, onnx_files["float"], trt=Standin("11.4.0", FakeModel(layers=LAYERS)))
    forced = dataclasses.replace(forced, layer_precisions=())
    with pytest.raises(SurfaceError, match="set_dynamic_range"):
        build_engine(forced, onnx_files["float"], trt=Standin("11.4.0", FakeModel(layers=LAYERS)))


@pytest.mark.parametrize("version,where", [("8.6.1", "node #3"), ("10.3.0", "node '/model.1/conv/Conv'"),
                                           ("11.4.0", "node '/model.1/conv/Conv'")])
def test_onnx_parse_errors_carry_the_parser_messages(tmp_path, onnx_files, version, where):
    model = FakeModel(layers=LAYERS, parse_errors=[("Assertion failed: unsupported attribute", 3, NODES[2])])
    with pytest.raises(ModelError) as exc:
        _build(tmp_path, onnx_files, version, "fp32", model=model)
    assert "unsupported attribute" in str(exc.value) and where in str(exc.value)


def test_failed_build_names_the_log(tmp_path, onnx_files):
    with pytest.raises(EngineError, match="failed to build .*full log: .*build.log"):
        _build(tmp_path, onnx_files, "10.3.0", "fp16", model=FakeModel(layers=LAYERS, build_fails=True))


@pytest.mark.parametrize("version,reported", [("8.6.1", "8.5.2"), ("8.6.1", None), ("10.3.0", None),
                                              ("11.4.0", None)])
@pytest.mark.parametrize("kind", ["self-registering", "loadLibrary"])
def test_plugin_libraries_load_before_parsing(tmp_path, version, reported, kind):
    """libtrtalign_plugins.so registers itself when opened: ctypes on every version, load_library never (it would
    fail on the duplicate creators). libtrtalign_plugins_dynamic.so exports getCreators: load_library on 8.6+,
    a clear error on 8.5, which has no loadLibrary."""
    import ctypes

    from tests.plugins.elf_files import make_elf

    forget_loaded()
    dynamic = kind == "loadLibrary"
    lib = make_elf(tmp_path / ("libtrtalign_plugins_dynamic.so" if dynamic else "libtrtalign_plugins.so"),
                   ["getCreators", "setLoggerFinder"] if dynamic else ["_ZN8trtalign3fooEv"],
                   undefined=["getPluginRegistry"])
    trt = Standin(version)
    if reported:
        trt.__version__ = reported
    opened = []
    cdll = lambda path, mode: opened.append((path, mode)) or object()  # noqa: E731
    if dynamic and reported:
        with pytest.raises(InputError, match="built for IPluginRegistry::loadLibrary .*lacks; load the self-registering"):
            load_plugin_libraries(trt, trt.Logger(trt.Logger.Severity.WARNING), [lib], cdll=cdll)
        assert opened == [] and "IPluginRegistry.load_library" not in trt.targets()
        return
    how = load_plugin_libraries(trt, trt.Logger(trt.Logger.Severity.WARNING), [lib], cdll=cdll)
    if dynamic:
        assert how == [f"{lib.resolve()} (load_library: getCreators)"]
        assert trt.targets()[-1] == "IPluginRegistry.load_library" and opened == []
        assert trt.targets()[-3] == "init_libnvinfer_plugins"
    else:
        assert how == [f"{lib.resolve()} (ctypes RTLD_GLOBAL)"]
        assert opened == [(str(lib.resolve()), ctypes.RTLD_GLOBAL)] and "IPluginRegistry.load_library" not in trt.targets()
        assert trt.targets()[-1] == "init_libnvinfer_plugins"
    forget_loaded()


def test_missing_plugin_library_is_a_clear_error(tmp_path, onnx_files):
    with pytest.raises(InputError, match="plugin library not found: .*trtalign plugins build"):
        _build(tmp_path, onnx_files, "10.3.0", "fp32", plugins=[str(tmp_path / "nope.so")])


def test_calibrator_refused_on_11_even_if_called_directly():
    from trtalign.engines.calibrator import make_calibrator

    with pytest.raises(UnsupportedError, match="removed in 11.0"):
        make_calibrator(Standin("11.4.0"), "entropy2", CalibrationBatches([np.zeros((3, 8, 8))]), FakeCudaBackend())


def test_fallback_matches_parser_helper_layers_but_not_sibling_nodes():
    from trtalign.engines.builder import _matching_layers

    trt = Standin("10.3.0", FakeModel(layers=[("/m/Concat", ["a"]), ("/m/Concat_1", ["b"]), ("/m/Concat_shuffle", ["c"]),
                                              ("/m/Conv", ["d"])]))
    network = trt.Builder(trt.Logger(trt.Logger.Severity.WARNING)).create_network(0)
    layers, unmatched = _matching_layers(network, {"/m/Concat": "fp32", "/x/Gone": "fp16"},
                                         frozenset({"/m/Concat", "/m/Concat_1", "/m/Conv"}))
    assert [layer.name for layer, _ in layers] == ["/m/Concat", "/m/Concat_shuffle"] and unmatched == {"/x/Gone"}
