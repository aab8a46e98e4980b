"""TensorRT versions and what each one can do. Pure data: no tensorrt import.

``TrtVersion.parse("10.3")`` -> comparable version; ``capabilities(version)`` -> :class:`Capabilities`, the table the
build plan, the builder and the runner consult instead of sprinkling ``if major >= 10`` through the code.
Enum *names* are the currency everywhere (``"STRONGLY_TYPED"``): enum integers changed between 10.16 and 11.1, so a
raw enum int is never persisted.
Sources: TensorRT headers 8.5.3 ... 11.x, the 8.x->10.x and 10.x->11.x migration guides (see docs/TENSORRT_ROUTES.md),
and the real Python API surfaces in tests/data/trt_surfaces/ (8.6.1, 10.3.0, 10.16.1, 11.4.0) that the conformance
tests check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from trtalign.core.errors import UnsupportedError
from trtalign.core.versions import MIN_VERSION, TrtVersion  # noqa: F401 (re-exported: the one version parser)

#: the versions the conformance harness checks against real bindings surfaces
CHECKED_VERSIONS = ("8.6.1", "10.3.0", "10.16.1", "11.4.0")
def _v(text: str) -> TrtVersion:
    parts = [int(p) for p in text.split(".")]
    return TrtVersion(*parts)


@dataclass(frozen=True)
class Feature:
    """A TensorRT feature that exists in ``[since, until)``; ``until=None`` means still present."""

    name: str
    since: str
    until: str | None = None
    deprecated: str | None = None
    what: str = ""

    def available(self, version: TrtVersion) -> bool:
        return _v(self.since) <= version and (self.until is None or version < _v(self.until))

    def versions_text(self) -> str:
        if self.until is None:
            return f"TensorRT >= {self.since}"
        last = _v(self.until)
        return f"TensorRT {self.since} to {last.major - 1}.x (removed in {self.until})" if last.minor == 0 else \
            f"TensorRT {self.since} to before {self.until}"


#: name -> Feature. The rows of the capability table (docs/TENSORRT_ROUTES.md prints it).
FEATURES: dict[str, Feature] = {f.name: f for f in [
    Feature("name_based_io", "8.5", what="num_io_tensors / get_tensor_name / set_input_shape / execute_async_v3"),
    Feature("implicit_calibration", "8.5", "11.0", "10.1", "IInt8EntropyCalibrator2 / IInt8MinMaxCalibrator"),
    Feature("dynamic_range", "8.5", "11.0", "10.1", "ITensor.set_dynamic_range"),
    Feature("builder_flag_int8", "8.5", "11.0", "10.12", "BuilderFlag.INT8"),
    Feature("builder_flag_fp16", "8.5", "11.0", "10.12", "BuilderFlag.FP16"),
    Feature("layer_precision", "8.5", "11.0", "10.12",
            "ILayer.precision / set_output_type + BuilderFlag.OBEY_PRECISION_CONSTRAINTS"),
    Feature("explicit_qdq", "8.5", what="Q/DQ nodes in the ONNX (the only INT8 route on 11)"),
    Feature("strongly_typed", "10.0", what="NetworkDefinitionCreationFlag.STRONGLY_TYPED (always on in 11)"),
    Feature("explicit_batch_flag", "8.5", "11.0", "10.0", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"),
    Feature("load_library", "8.6", what="IPluginRegistry.load_library"),
    Feature("builder_optimization_level", "8.6", what="IBuilderConfig.builder_optimization_level"),
    Feature("version_compatible", "8.6", what="BuilderFlag.VERSION_COMPATIBLE"),
    Feature("efficient_nms_class_agnostic", "8.6", what="EfficientNMS_TRT attribute class_agnostic"),
    Feature("build_engine", "8.5", "10.0", "8.0", "Builder.build_engine (use build_serialized_network)"),
    Feature("max_workspace_size", "8.5", "10.0", "8.4", "IBuilderConfig.max_workspace_size"),
    Feature("execute_async_v2", "8.5", "10.0", "8.5", "IExecutionContext.execute_async_v2 / bindings API"),
    Feature("get_plugin_creator", "8.5", "11.0", "10.0", "IPluginRegistry.get_plugin_creator"),
    Feature("get_creator", "10.0", what="IPluginRegistry.get_creator"),
    Feature("device_memory_size", "8.5", "11.0", "10.1", "ICudaEngine.device_memory_size"),
    Feature("platform_has_fast_fp16", "8.5", "11.0", "10.0", "Builder.platform_has_fast_fp16 / _int8"),
    Feature("python_plugins", "10.6", what="tensorrt.plugin decorators"),
    Feature("inspector_schema_11_3", "11.3", what="engine inspector JSON schema of 11.3+"),
    # DLA is a platform behaviour: the Python API (IBuilderConfig.default_device_type / DLA_core, BuilderFlag.
    # GPU_FALLBACK, Runtime.DLA_core) is in every checked surface, but NVIDIA's "Working with DLA" says 10.7 was the
    # last 10.x with DLA, 11.0-11.3 have none and 11.4.0 only on Windows on ARM (no GPU fallback); 11.4.1 brings it
    # back on Jetson AGX Orin (JetPack >= 7.2.2) with strongly typed networks.
    Feature("dla", "8.5", "10.8", what="DLA (IBuilderConfig.default_device_type / DLA_core + GPU_FALLBACK)"),
    Feature("dla_strongly_typed", "11.4.1", what="DLA on Jetson AGX Orin with JetPack >= 7.2.2 (strongly typed)"),
]}


@dataclass(frozen=True)
class Capabilities:
    """What one TensorRT version offers, as booleans keyed like :data:`FEATURES`."""

    version: str
    features: tuple[str, ...]

    def has(self, feature: str) -> bool:
        if feature not in FEATURES:
            raise KeyError(f"unknown TensorRT feature {feature!r}; known: {sorted(FEATURES)}")
        return feature in self.features

    def require(self, feature: str, purpose: str = "") -> None:
        """Raise UnsupportedError naming the versions that have ``feature`` unless this version has it."""
        if not self.has(feature):
            f = FEATURES[feature]
            why = f" for {purpose}" if purpose else ""
            raise UnsupportedError(f"{f.what or f.name}{why} needs {f.versions_text()}; the target is TensorRT "
                                   f"{self.version}")

    @property
    def inspector_schema(self) -> str:
        return "11.3+" if self.has("inspector_schema_11_3") else "pre-11.3"

    def to_dict(self) -> dict:
        return {"version": self.version, "features": {name: name in self.features for name in FEATURES}}


def capabilities(version: "str | TrtVersion") -> Capabilities:
    v = TrtVersion.parse(version)
    return Capabilities(version=str(v), features=tuple(n for n, f in FEATURES.items() if f.available(v)))


def feature_table(versions: tuple[str, ...] = ("8.5.2", "8.6.1", "10.3.0", "11.4.0")) -> list[dict]:
    """Rows ``{feature, what, since, until, deprecated, <version>: bool...}`` for docs and ``trtalign build --json``."""
    caps = {v: capabilities(v) for v in versions}
    return [{**asdict(f), **{v: caps[v].has(f.name) for v in versions}} for f in FEATURES.values()]


def installed_version() -> TrtVersion:
    """The version of the importable ``tensorrt`` (DependencyError with the install command if absent)."""
    from trtalign.core.lazy import require

    trt = require("tensorrt", purpose="building or running TensorRT engines")
    return TrtVersion.parse(trt.__version__)
