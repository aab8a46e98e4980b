"""Build plans: everything a TensorRT build will do, decided up front as pure data (no tensorrt import).

``make_build_plan(config, onnx_path, trt_version, precision=...)`` reads the ONNX (inputs, Q/DQ nodes, float16
tensors, NMS plugin nodes), the unit plan (``plan.json``: unit -> int8 | fp16 | fp32) and, for the dynamic-range
route, ``ranges.json``; it returns a :class:`BuildPlan` that names the route, the builder / network flags (by enum
*name*), the per-layer precision constraints, the calibrator, the optimisation profile, the workspace, the timing
cache, the optimisation level and the plugin libraries. :mod:`trtalign.engines.builder` applies it; nothing in
here knows how.

Routes (see docs/TENSORRT_ROUTES.md for the table):

==================== ============================ ============================ ================================
route                8.5 / 8.6                    10.x                         11.x
==================== ============================ ============================ ================================
fp32                 (no flag)                    (no flag)                    (no flag)
fp16                 BuilderFlag.FP16             BuilderFlag.FP16 (typed      float16-typed ONNX
                                                  ONNX when strongly typed)
int8-qdq             Q/DQ ONNX + INT8 (+FP16)     same, or STRONGLY_TYPED      Q/DQ ONNX (always strongly typed)
int8-calibrator      INT8 + IInt8EntropyCal.2 /   same (deprecated 10.1)       refused (removed in 11.0)
                     MinMax
int8-dynamic-range   INT8 + set_dynamic_range     same (deprecated 10.1)       refused (removed in 11.0)
fallback units       layer precision + OBEY       same (not strongly typed)    no Q/DQ / Cast islands in ONNX
DLA (trt.dla_core)   fp16 / int8 + GPU_FALLBACK   same, up to 10.7             11.4.1+ (Jetson AGX Orin)
==================== ============================ ============================ ================================

DLA runs FP16 and INT8 only and needs static shapes: a DLA plan sets ``dla_core`` (the builder then sets
``default_device_type = DLA``, ``DLA_core`` and ``BuilderFlag.GPU_FALLBACK``); FP32, a dynamic batch profile or a
version without DLA are refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from trtalign.core.errors import ConfigError, InputError, ModelError, UnsupportedError, choices_text
from trtalign.core.io import read_json_file, sha256_file
from trtalign.engines.versions import FEATURES, TrtVersion, capabilities

ROUTES = ("fp32", "fp16", "int8-qdq", "int8-calibrator", "int8-dynamic-range")
PRECISIONS = ("fp32", "fp16", "int8")
INT8_ROUTES = {"qdq": "int8-qdq", "calibrator": "int8-calibrator", "dynamic-range": "int8-dynamic-range"}
CALIBRATOR_ALGORITHMS = {"entropy": "entropy2", "minmax": "minmax"}  # config method -> TensorRT calibrator
#: route -> the feature a version must have for it (None: every supported version)
ROUTE_FEATURE = {"fp32": None, "fp16": None, "int8-qdq": "explicit_qdq", "int8-calibrator": "implicit_calibration",
                 "int8-dynamic-range": "dynamic_range"}
ROTATED_NMS_OP = "EfficientRotatedNMS_TRT"
EFFICIENT_NMS_OP = "EfficientNMS_TRT"
GIB = 1 << 30
DLA_PRECISIONS = ("fp16", "int8")


@dataclass(frozen=True)
class BuildSettings:
    """Everything a build plan takes besides the ONNX, the TensorRT version and the precision, each field explicit.

    ``trtalign build`` makes one from its pipeline config (:meth:`from_config`); the recipe's engine loader
    (:class:`trtalign.engines.loaders.EngineFromOnnx`) makes one from what it knows (the batch the ONNX was exported
    for, the unit plan of the Q/DQ ONNX), so no default of an unrelated config leaks into an engine.

    Args:
        imgsz: input size used where the ONNX input height / width is dynamic.
        batch: the optimisation profile for a dynamic batch dimension (``BatchConfig`` or an int N = 1..N).
        trt: ``TrtConfig`` (route, strongly typed, workspace, timing cache, opt level, plugins, DLA core).
        calibration: ``CalibrationConfig`` (only the ``int8-calibrator`` route reads it).
        unit_plan: unit -> precision (plan.json path, ``Plan.to_dict()`` or a mapping); None: every Q/DQ unit INT8.
        ranges: ranges.json or ``{tensor: amax}`` (``int8-dynamic-range`` route).
        float_precision: what layers out of INT8 run in when there is no unit plan (``fp16`` sets BuilderFlag.FP16
            next to INT8, ``fp32`` does not); with a unit plan the plan decides.
    """

    imgsz: int = 640
    batch: Any = None
    trt: Any = None
    calibration: Any = None
    unit_plan: Any = None
    ranges: Any = None
    float_precision: str = "fp16"

    def __post_init__(self) -> None:
        from trtalign.core.config import BatchConfig, CalibrationConfig, TrtConfig

        for name, make in {"batch": BatchConfig, "trt": TrtConfig, "calibration": CalibrationConfig}.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, make())
        if isinstance(self.batch, int):
            object.__setattr__(self, "batch", BatchConfig(min=1, opt=self.batch, max=self.batch))
        if self.float_precision not in ("fp16", "fp32"):
            raise ConfigError(f"invalid float precision {self.float_precision!r}; valid choices: 'fp16', 'fp32'")

    @classmethod
    def from_config(cls, cfg: Any) -> "BuildSettings":
        """The settings of a :class:`trtalign.core.config.PipelineConfig` (``quantize.plan`` / ``quantize.ranges``,
        ``fallback.target`` for layers out of INT8)."""
        return cls(imgsz=cfg.imgsz, batch=cfg.batch, trt=cfg.trt, calibration=cfg.calibration,
                   unit_plan=cfg.quantize.plan, ranges=cfg.quantize.ranges, float_precision=cfg.fallback.target)


@dataclass(frozen=True)
class OnnxFacts:
    """What the plan needs to know about an ONNX file (read without TensorRT)."""

    sha256: str
    inputs: dict  # name -> list of dims (int or str for symbolic)
    qdq_nodes: int
    float16_tensors: int
    nms_nodes: dict  # op_type -> list of attribute dicts
    node_names: tuple = ()

    def to_dict(self) -> dict:
        return asdict(self)


def read_onnx_facts(onnx_path: str | os.PathLike) -> OnnxFacts:
    """Inputs, Q/DQ count, float16 tensors and NMS nodes of an ONNX file; unreadable files raise ModelError."""
    import onnx
    from onnx import helper

    path = Path(onnx_path)
    if not path.is_file():
        raise InputError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError / ValueError / OSError depending on the damage
        raise ModelError(f"cannot read ONNX {path}: {type(exc).__name__}: {exc}") from None
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = {}
    for vi in graph.input:
        if vi.name in inits:
            continue
        dims = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?")
                for d in vi.type.tensor_type.shape.dim]
        inputs[vi.name] = dims
    fp16 = onnx.TensorProto.FLOAT16
    n16 = sum(1 for i in graph.initializer if i.data_type == fp16)
    n16 += sum(1 for vi in list(graph.value_info) + list(graph.input) + list(graph.output)
               if vi.type.tensor_type.elem_type == fp16)
    n16 += sum(1 for n in graph.node if n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute))
    nms: dict = {}
    for node in graph.node:
        if node.op_type in (EFFICIENT_NMS_OP, ROTATED_NMS_OP):
            nms.setdefault(node.op_type, []).append({a.name: helper.get_attribute_value(a) for a in node.attribute})
    qdq = sum(1 for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    return OnnxFacts(sha256=sha256_file(path), inputs=inputs, qdq_nodes=qdq, float16_tensors=n16, nms_nodes=nms,
                     node_names=tuple(n.name for n in graph.node))


@dataclass(frozen=True)
class LayerPrecision:
    """Pin the TensorRT layers built from ONNX node ``layer`` to ``precision`` (with OBEY_PRECISION_CONSTRAINTS)."""

    layer: str
    precision: str  # fp16 | fp32
    unit: str = ""  # the quantization unit it came from ("" for the protected decode region)


@dataclass(frozen=True)
class CalibratorSpec:
    algorithm: str  # entropy2 | minmax
    images: str | None
    num_images: int
    batch_size: int
    cache_path: str | None
    input_name: str
    input_shape: tuple  # (C, H, W)


@dataclass(frozen=True)
class ProfileSpec:
    input_name: str
    min: tuple
    opt: tuple
    max: tuple


@dataclass(frozen=True)
class BuildPlan:
    """Pure data. ``to_json()`` is canonical (sorted keys) and part of the engine cache key."""

    trt_version: str
    precision: str
    route: str
    onnx_sha256: str
    network_flags: tuple = ()  # NetworkDefinitionCreationFlag member names
    builder_flags: tuple = ()  # BuilderFlag member names
    strongly_typed: bool = False
    onnx_requirement: str = ""  # "" | "qdq" | "float16-typed" | "qdq+float16-typed"
    layer_precisions: tuple = ()  # LayerPrecision
    calibrator: CalibratorSpec | None = None
    dynamic_ranges: dict = field(default_factory=dict)  # tensor -> amax (symmetric: [-amax, amax])
    profile: ProfileSpec | None = None
    workspace_bytes: int = 4 * GIB
    timing_cache: str | None = None
    opt_level: int | None = None
    plugin_libraries: tuple = ()
    profiling_verbosity: str = "DETAILED"
    notes: tuple = ()
    dla_core: int | None = None  # DLA core the engine runs on (layers DLA cannot run fall back to the GPU); None: GPU

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BuildPlan":
        d = dict(data)
        d["layer_precisions"] = tuple(LayerPrecision(**lp) for lp in d.get("layer_precisions", ()))
        if d.get("calibrator"):
            c = dict(d["calibrator"])
            c["input_shape"] = tuple(c["input_shape"])
            d["calibrator"] = CalibratorSpec(**c)
        if d.get("profile"):
            p = d["profile"]
            d["profile"] = ProfileSpec(p["input_name"], tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))
        for key in ("network_flags", "builder_flags", "plugin_libraries", "notes"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)


def needs_float16_onnx(trt_version: "str | TrtVersion", strongly_typed: bool = False) -> bool:
    """True where FP16 comes only from a float16-typed ONNX: TensorRT 11, or a strongly typed network on 10.x."""
    return not capabilities(trt_version).has("builder_flag_fp16") or bool(strongly_typed)


def route_for(precision: str, int8_route: str = "qdq") -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"invalid engine precision {precision!r}; valid choices: {choices_text(PRECISIONS)}")
    if precision != "int8":
        return precision
    if int8_route not in INT8_ROUTES:
        raise ConfigError(f"invalid trt.int8_route {int8_route!r}; valid choices: {choices_text(INT8_ROUTES)}")
    return INT8_ROUTES[int8_route]


def versions_with_route(route: str) -> str:
    feature = ROUTE_FEATURE[route]
    return "every TensorRT >= 8.5" if feature is None else FEATURES[feature].versions_text()


def check_route(route: str, version: "str | TrtVersion") -> None:
    """UnsupportedError naming the versions that have ``route`` unless ``version`` does."""
    if route not in ROUTES:
        raise ConfigError(f"invalid build route {route!r}; valid choices: {choices_text(ROUTES)}")
    caps = capabilities(version)
    feature = ROUTE_FEATURE[route]
    if feature is not None and not caps.has(feature):
        hint = " On TensorRT 11 INT8 comes only from Q/DQ nodes in the ONNX: set trt.int8_route: qdq (run " \
               "`trtalign quantize` to write the Q/DQ ONNX)." if route in ("int8-calibrator", "int8-dynamic-range") else ""
        raise UnsupportedError(f"build route {route!r} needs {versions_with_route(route)}; the target is TensorRT "
                               f"{caps.version}.{hint}")


def dla_versions_text() -> str:
    return f"{FEATURES['dla'].versions_text()} or {FEATURES['dla_strongly_typed'].versions_text()}"


def check_dla(precision: str, version: "str | TrtVersion", core: int) -> None:
    """UnsupportedError unless an engine at ``precision`` for ``version`` can run on DLA core ``core``."""
    if precision not in DLA_PRECISIONS:
        raise UnsupportedError(f"DLA runs only {choices_text(DLA_PRECISIONS)} (got precision {precision!r} with DLA "
                               f"core {core}); build fp16 or int8 for the DLA, or drop trt.dla_core / --dla-core to "
                               f"build {precision} for the GPU")
    caps = capabilities(version)
    if not (caps.has("dla") or caps.has("dla_strongly_typed")):
        raise UnsupportedError(f"DLA (trt.dla_core: {core}) needs {dla_versions_text()}; the target is TensorRT "
                               f"{caps.version}, which has no DLA on Jetson (11.4.0 only on Windows on ARM, without "
                               f"GPU fallback); build for the GPU (drop trt.dla_core / --dla-core) or target a "
                               f"TensorRT with DLA")


def _mapping_from(source: "str | os.PathLike | Mapping | None", what: str) -> Any:
    """None, a mapping as is, or the JSON of a file (unreadable: ConfigError naming ``what``)."""
    if source is None or isinstance(source, Mapping):
        return source
    return read_json_file(source, what, unreadable=ConfigError)


def load_unit_plan(source: "str | os.PathLike | Mapping | None") -> dict[str, str]:
    """plan.json (``{"format": "trtalign-plan", "units": {...}}``) or a plain mapping -> {unit: precision}."""
    data = _mapping_from(source, "unit plan")
    if data is None:
        return {}
    units = data.get("units", data) if isinstance(data, Mapping) else None
    if not isinstance(units, Mapping):
        raise ConfigError("unit plan must map unit name -> 'int8' | 'fp16' | 'fp32'")
    bad = {k: v for k, v in units.items() if v not in PRECISIONS}
    if bad:
        raise ConfigError(f"unit plan has invalid precisions {bad}; valid choices: {choices_text(PRECISIONS)}")
    return {str(k): str(v) for k, v in units.items()}


def load_ranges(source: "str | os.PathLike | Mapping | None") -> dict[str, float]:
    """ranges.json -> {tensor: amax > 0}. Reads trtalign's format (``{"format": "trtalign-ranges", "tensors":
    {name: {"amax": ...}}}``, see :mod:`trtalign.export.ranges`) and plain ``{tensor: amax}`` mappings."""
    data = _mapping_from(source, "ranges file")
    if data is None:
        return {}
    ranges = (data.get("tensors") or data.get("ranges") or data) if isinstance(data, Mapping) else None
    if isinstance(ranges, Mapping):
        ranges = {k: v for k, v in ranges.items() if k not in ("format", "version", "method", "params", "model", "data")}
    if not isinstance(ranges, Mapping):
        raise ConfigError("ranges must map tensor name -> amax (a positive number)")
    out = {}
    for name, value in ranges.items():
        amax = value.get("amax") if isinstance(value, Mapping) else value
        if not isinstance(amax, (int, float)) or isinstance(amax, bool) or not amax > 0:
            raise ConfigError(f"range of tensor {name!r} must be a positive amax, got {value!r}")
        out[str(name)] = float(amax)
    return out


def _profile(facts: OnnxFacts, batch, imgsz: int) -> tuple[ProfileSpec | None, str, tuple]:
    if not facts.inputs:
        raise ModelError("the ONNX has no graph inputs")
    name, dims = next(iter(facts.inputs.items()))
    if len(dims) != 4:
        raise ModelError(f"input {name!r} must be [B, 3, H, W], got {dims}")
    chw = tuple(d if isinstance(d, int) and d > 0 else (3 if i == 0 else imgsz) for i, d in enumerate(dims[1:]))
    b = dims[0]
    if isinstance(b, int) and b > 0:
        if batch.max != b or batch.min != b:
            if batch.min == batch.max == 1 and b != 1:
                return None, name, chw
            raise ConfigError(f"config batch min={batch.min} opt={batch.opt} max={batch.max} but the ONNX input "
                              f"{name!r} has a fixed batch of {b}; export with a dynamic batch or set batch to {b}")
        return None, name, chw
    return ProfileSpec(name, (batch.min, *chw), (batch.opt, *chw), (batch.max, *chw)), name, chw


def _fallback_layers(unit_plan: Mapping[str, str], unit_nodes: Mapping[str, list] | None,
                     protect_nodes: list | None) -> tuple:
    """Layer constraints for the units the plan keeps out of INT8, then the protected (decode) nodes in fp32: box
    arithmetic in pixels and [0, 1] scores leave the head through one Concat, so they stay FP32 like the fp16 export's
    Cast islands."""
    if not unit_plan and not protect_nodes:
        return ()
    missing = [u for u, p in unit_plan.items() if p != "int8" and (unit_nodes is None or u not in unit_nodes)]
    if missing:
        raise ConfigError(f"unit plan names {len(missing)} unit(s) the ONNX does not have: "
                          f"{', '.join(sorted(missing)[:8])}; regenerate plan.json for this model")
    out = [LayerPrecision(node, p, unit) for unit, p in sorted(unit_plan.items()) if p != "int8"
           for node in unit_nodes[unit]]
    taken = {lp.layer for lp in out}
    out += [LayerPrecision(node, "fp32", "") for node in (protect_nodes or []) if node not in taken]
    return tuple(out)


def make_build_plan(config: "BuildSettings | Any", onnx_path: str | os.PathLike, trt_version: "str | TrtVersion",
                    precision: str = "fp32", *, unit_plan: "str | os.PathLike | Mapping | None" = None,
                    unit_nodes: Mapping[str, list] | None = None, protect_nodes: list | None = None,
                    ranges: "str | os.PathLike | Mapping | None" = None, facts: OnnxFacts | None = None,
                    calibration_cache: "str | os.PathLike | None" = None) -> BuildPlan:
    """Decide how to build ``onnx_path`` at ``precision`` for ``trt_version``.

    Args:
        config: :class:`BuildSettings`, or a ``PipelineConfig`` (read through :meth:`BuildSettings.from_config`).
        onnx_path: the ONNX to build (float for fp32 / fp16, Q/DQ for the ``int8-qdq`` route).
        trt_version: target TensorRT (``"10.3"``, a :class:`TrtVersion`); need not be installed.
        precision: ``fp32`` | ``fp16`` | ``int8``.
        unit_plan, ranges: override the settings' ``unit_plan`` / ``ranges``.
        unit_nodes: unit -> ONNX node names (= TensorRT layer names); protect_nodes: nodes kept in FP32 on the
            implicit INT8 routes. When needed and None, both come from :func:`trtalign.export.units.analyze_graph`.

    Returns:
        :class:`BuildPlan` (pure data; its JSON is part of the engine cache key).

    Raises:
        UnsupportedError: a route or feature the version lacks. ConfigError: conflicting options, or an ONNX that does
        not fit the route. InputError / ModelError: a missing or unreadable ONNX.

    Example::

        plan = make_build_plan(BuildSettings(batch=4), "model.onnx", "10.3", "fp16")
        plan.builder_flags  # ('FP16',); plan.profile.max[0] == 4 for an ONNX with a dynamic batch
    """
    if not isinstance(config, BuildSettings):
        config = BuildSettings.from_config(config)
    version = TrtVersion.parse(trt_version)
    caps = capabilities(version)
    trt = config.trt
    route = route_for(precision, trt.int8_route)
    check_route(route, version)
    if trt.dla_core is not None:
        check_dla(precision, version, trt.dla_core)
    facts = facts or read_onnx_facts(onnx_path)
    notes: list[str] = []

    strongly = bool(trt.strongly_typed)
    if strongly and not caps.has("strongly_typed"):
        caps.require("strongly_typed", "trt.strongly_typed: true")
    if strongly and route in ("int8-calibrator", "int8-dynamic-range"):
        raise ConfigError(f"trt.strongly_typed: true conflicts with trt.int8_route: {trt.int8_route} (a strongly "
                          f"typed network takes its precision from the ONNX only); use int8_route: qdq or "
                          f"strongly_typed: false")
    typed_by_onnx = not caps.has("builder_flag_fp16") or strongly  # 11.x, or strongly typed on 10.x
    if typed_by_onnx and caps.has("strongly_typed"):
        strongly = True

    network_flags: list[str] = []
    if caps.has("explicit_batch_flag") and not caps.has("strongly_typed"):
        network_flags.append("EXPLICIT_BATCH")  # required on 8.x; deprecated and ignored on 10.x
    if strongly:
        network_flags.append("STRONGLY_TYPED")  # opt-in on 10.x; always on in 11.x (the flag is accepted there)
    name = Path(onnx_path).name
    if not route.startswith("int8") and facts.qdq_nodes:
        raise ConfigError(f"a {precision} engine is built from the float ONNX, but {name} has {facts.qdq_nodes} "
                          f"Q/DQ nodes (TensorRT would run them in INT8); pass the ONNX from `trtalign export`")
    if route == "fp32" and strongly and facts.float16_tensors:
        raise ConfigError(f"an fp32 engine on a strongly typed network needs a float32 ONNX, but {name} has "
                          f"{facts.float16_tensors} float16 tensors; pass the ONNX from `trtalign export`")

    units = load_unit_plan(unit_plan if unit_plan is not None else config.unit_plan)
    if route == "int8-qdq" and units and not any(p == "int8" for p in units.values()):
        notes.append("the unit plan puts no unit in INT8")
    builder_flags: list[str] = []
    requirement: list[str] = []
    layer_precisions: tuple = ()
    calibrator = None
    dyn: dict[str, float] = {}

    if route == "fp16":
        if typed_by_onnx:
            requirement.append("float16-typed")
        else:
            builder_flags.append("FP16")
    elif route.startswith("int8"):
        # with a unit plan the plan says which layers leave INT8 and in what; without one, the settings do
        uses_fp16 = any(p == "fp16" for p in units.values()) if units else config.float_precision == "fp16"
        if route == "int8-qdq":
            requirement.append("qdq")
            if typed_by_onnx and uses_fp16 and any(p == "fp16" for p in units.values()):
                requirement.append("float16-typed")
        elif facts.qdq_nodes:
            raise ConfigError(f"trt.int8_route: {trt.int8_route} needs an ONNX without Q/DQ nodes, but "
                              f"{Path(onnx_path).name} has {facts.qdq_nodes}; build from the float ONNX, or use "
                              f"int8_route: qdq")
        if not typed_by_onnx:
            builder_flags.append("INT8")
            if uses_fp16:
                builder_flags.append("FP16")
            implicit = route != "int8-qdq"
            needs_units = units and unit_nodes is None and any(p != "int8" for p in units.values())
            if needs_units or (implicit and protect_nodes is None):
                found_units, found_protect = _analyze_onnx(onnx_path, notes)
                unit_nodes = found_units if unit_nodes is None else unit_nodes
                protect_nodes = found_protect if protect_nodes is None else protect_nodes
            layer_precisions = _fallback_layers(units, unit_nodes, protect_nodes if implicit else None)
            if layer_precisions:
                builder_flags.append("OBEY_PRECISION_CONSTRAINTS")
        if route == "int8-calibrator":
            calibrator = _calibrator_spec(config, facts, version, calibration_cache)
        elif route == "int8-dynamic-range":
            dyn = load_ranges(ranges if ranges is not None else config.ranges)
            if not dyn:
                raise ConfigError("trt.int8_route: dynamic-range needs ranges (tensor -> amax): set quantize.ranges "
                                  "to the ranges.json written by `trtalign calibrate`")

    if "qdq" in requirement and not facts.qdq_nodes:
        raise ConfigError(f"INT8 via explicit Q/DQ needs a Q/DQ ONNX, but {Path(onnx_path).name} has no "
                          f"QuantizeLinear/DequantizeLinear nodes; run `trtalign quantize` first"
                          + ("" if typed_by_onnx else " or set trt.int8_route: calibrator"))
    if "float16-typed" in requirement and not facts.float16_tensors:
        raise ConfigError(f"FP16 on TensorRT {version} {'(strongly typed) ' if caps.has('builder_flag_fp16') else ''}"
                          f"comes from a float16-typed ONNX (there is no BuilderFlag.FP16"
                          f"{' on 11' if not caps.has('builder_flag_fp16') else ' in a strongly typed network'}), but "
                          f"{Path(onnx_path).name} has no float16 tensors; make one with `trtalign quantize "
                          f"--precision fp16` (trtalign.export.fp16)")

    _check_nms(facts, caps, trt.plugins)
    if trt.opt_level is not None:
        caps.require("builder_optimization_level", "trt.opt_level")
    profile, _, _ = _profile(facts, config.batch, config.imgsz)
    if trt.dla_core is not None:
        if profile is not None and not profile.min == profile.opt == profile.max:
            raise ConfigError(f"DLA (trt.dla_core: {trt.dla_core}) has no dynamic shapes, but the batch profile is "
                              f"min={config.batch.min} opt={config.batch.opt} max={config.batch.max}; set batch to "
                              f"one size (e.g. {{min: 1, opt: 1, max: 1}}) for the DLA engine")
        builder_flags.append("GPU_FALLBACK")  # layers DLA cannot run (NMS plugin, decode, ...) run on the GPU
    return BuildPlan(
        trt_version=str(version), precision=precision, route=route, onnx_sha256=facts.sha256,
        network_flags=tuple(network_flags), builder_flags=tuple(builder_flags), strongly_typed=strongly,
        onnx_requirement="+".join(requirement), layer_precisions=layer_precisions, calibrator=calibrator,
        dynamic_ranges=dyn, profile=profile, workspace_bytes=int(trt.workspace_gib * GIB),
        timing_cache=str(trt.timing_cache) if trt.timing_cache else None, opt_level=trt.opt_level,
        plugin_libraries=tuple(str(p) for p in trt.plugins), notes=tuple(notes), dla_core=trt.dla_core)


def _analyze_onnx(onnx_path, notes: list) -> tuple[dict[str, list], list]:
    """(unit -> node names, decode-region + DFL nodes) from :func:`trtalign.export.units.analyze_graph`."""
    from trtalign.core.errors import TrtalignError
    from trtalign.export.units import analyze_graph

    try:
        analysis = analyze_graph(str(onnx_path))
    except TrtalignError as exc:
        notes.append(f"graph analysis failed ({exc}); no unit or decode-region constraints")
        return {}, []
    protect = sorted(set(analysis.decode_nodes) | set(analysis.dfl_nodes))
    if protect:
        notes.append(f"{len(protect)} decode-region node(s) pinned to fp32 (implicit INT8 would quantize them)")
    return {u.name: list(u.nodes) for u in analysis.units}, protect


def _calibrator_spec(config, facts: OnnxFacts, version: TrtVersion, cache) -> CalibratorSpec:
    method = config.calibration.method
    if method not in CALIBRATOR_ALGORITHMS:
        raise ConfigError(f"calibration.method {method!r} is not a TensorRT calibrator; with trt.int8_route: "
                          f"calibrator valid choices are {choices_text(CALIBRATOR_ALGORITHMS)} (the others are "
                          f"trtalign range methods: use int8_route: qdq or dynamic-range)")
    name, dims = next(iter(facts.inputs.items()))
    chw = tuple(d if isinstance(d, int) and d > 0 else (3 if i == 0 else config.imgsz) for i, d in enumerate(dims[1:]))
    if cache is None and config.calibration.cache_dir is not None:
        cache = Path(config.calibration.cache_dir) / f"{facts.sha256[:16]}.trt{version.short}.{method}.cache"
    b = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else config.batch.opt
    return CalibratorSpec(algorithm=CALIBRATOR_ALGORITHMS[method],
                          images=str(config.calibration.images) if config.calibration.images else None,
                          num_images=config.calibration.num, batch_size=int(b),
                          cache_path=str(cache) if cache else None, input_name=name, input_shape=chw)


def _check_nms(facts: OnnxFacts, caps, plugins) -> None:
    for attrs in facts.nms_nodes.get(EFFICIENT_NMS_OP, []):
        if int(attrs.get("class_agnostic", 0)) and not caps.has("efficient_nms_class_agnostic"):
            raise UnsupportedError(f"EfficientNMS_TRT class_agnostic=1 needs TensorRT >= 8.6; TensorRT "
                                   f"{caps.version}'s parser drops the attribute with only a warning (NMS would "
                                   f"silently become per-class); export with nms.class_agnostic: false")
    if ROTATED_NMS_OP in facts.nms_nodes and not plugins:
        raise InputError(f"the ONNX has {ROTATED_NMS_OP} nodes, which no TensorRT ships: build our plugin with "
                         f"`trtalign plugins build` and list libtrtalign_plugins.so under trt.plugins")
