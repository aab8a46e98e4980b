"""Apply a :class:`~trtalign.engines.plan.BuildPlan` through TensorRT's Python API (8.5/8.6, 10.x, 11.x).

A thin adapter: every decision was made in the plan; this module only turns flag *names* into enum members and calls
the API that exists on every supported version (``build_serialized_network``, ``set_memory_pool_limit``,
``parse_from_file``, the timing cache, the engine inspector). Calls that exist only on some versions
(``set_dynamic_range``, ``int8_calibrator``, ``layer.precision``, ``builder_optimization_level``, the DLA settings)
are reached only when the plan asks for them, and the plan refuses them on versions without them. ``tensorrt`` is
imported lazily; the logger and calibrator classes that subclass TensorRT types are built inside factory functions.
tests/engines/test_conformance.py runs this module against the real 8.6.1 / 10.3.0 / 11.4.0 API surfaces.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtalign.core.errors import EngineError, ModelError
from trtalign.core.io import atomic_write_bytes, atomic_write_text
from trtalign.core.logging import get_logger
from trtalign.engines.plan import BuildPlan
from trtalign.engines.plugins_loader import load_plugin_libraries
from trtalign.engines.versions import TrtVersion

log = get_logger(__name__)

DTYPE_NAMES = {"fp16": "HALF", "fp32": "FLOAT"}
FLOAT_DTYPES = ("FLOAT", "HALF")


def import_tensorrt() -> Any:
    from trtalign.core.lazy import require

    return require("tensorrt", purpose="building TensorRT engines")


def make_logger(trt: Any, log_path: str | os.PathLike | None = None) -> Any:
    """A ``trt.ILogger`` that collects every message (VERBOSE included) for ``log_path`` (written by ``close()``) and
    forwards warnings and errors to trtalign's logger; ``logger.errors`` keeps the error lines for error messages."""

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.lines: list[str] = []
            self.path = Path(log_path) if log_path else None

        def log(self, severity: Any, msg: str) -> None:
            level = getattr(severity, "name", str(severity)).rsplit(".", 1)[-1]
            if self.path:
                self.lines.append(f"[{level}] {msg}\n")
            if level in ("ERROR", "INTERNAL_ERROR"):
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif level == "WARNING":
                log.warning("TensorRT: %s", msg)

        def close(self) -> None:
            """Write the collected log (atomically, like every file trtalign writes); called after success or error."""
            if self.path:
                atomic_write_text(self.path, "".join(self.lines))

    return _Logger()


@dataclass
class BuildResult:
    engine: bytes
    plan: BuildPlan
    trt_version: str
    seconds: float
    layer_info: str = ""
    log_path: str | None = None
    applied: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"trt_version": self.trt_version, "seconds": round(self.seconds, 3), "engine_bytes": len(self.engine),
                "log_path": self.log_path, "applied": self.applied, "plan": self.plan.to_dict()}


def check_installed_matches(trt: Any, plan: BuildPlan) -> TrtVersion:
    have = TrtVersion.parse(trt.__version__)
    want = TrtVersion.parse(plan.trt_version)
    if (have.major, have.minor) != (want.major, want.minor):
        raise EngineError(f"the build plan targets TensorRT {want} but the installed tensorrt is {have}; re-plan for "
                          f"this machine (`trtalign build CONFIG --trt-version auto`) or install TensorRT {want.short}")
    return have


def parse_onnx(trt: Any, builder: Any, logger: Any, plan: BuildPlan, onnx_path: str | os.PathLike) -> tuple:
    """Network + parser; a parse failure raises ModelError carrying the parser's own messages."""
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            where = ""
            if hasattr(err, "node_name") and err.node_name():
                where = f" (node {err.node_name()!r})"
            elif err.node() >= 0:
                where = f" (node #{err.node()})"
            errors.append(f"{err.desc()}{where}")
        text = "; ".join(errors) or "; ".join(logger.errors[-3:]) or "no message"
        raise ModelError(f"TensorRT {trt.__version__}'s ONNX parser rejected {Path(onnx_path).name}: {text}")
    return network, parser


def _matching_layers(network: Any, wanted: dict[str, str], onnx_nodes: frozenset = frozenset()) -> tuple[list, set]:
    """(layer, precision) for layers named like an ONNX node in ``wanted``: exactly, or as a helper layer the parser
    named ``node_...`` / ``node ...`` (only when that name is not itself another ONNX node, e.g. ``Concat_1``)."""
    out, seen = [], set()
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        name = layer.name
        node = name if name in wanted else None
        if node is None and name not in onnx_nodes:
            node = next((n for n in wanted if name.startswith((n + "_", n + " "))), None)
        if node is not None:
            out.append((layer, wanted[node]))
            seen.add(node)
    return out, set(wanted) - seen


def apply_layer_precisions(trt: Any, network: Any, plan: BuildPlan, onnx_nodes: frozenset = frozenset()) -> dict:
    wanted = {lp.layer: lp.precision for lp in plan.layer_precisions}
    layers, unmatched = _matching_layers(network, wanted, onnx_nodes)
    pinned = 0
    for layer, precision in layers:
        dtype = getattr(trt.DataType, DTYPE_NAMES[precision])
        float_outputs = [j for j in range(layer.num_outputs)
                         if getattr(layer.get_output(j).dtype, "name", "") in FLOAT_DTYPES]
        if not float_outputs:  # shape / index arithmetic: no float precision to pin
            continue
        layer.precision = dtype
        for j in float_outputs:
            layer.set_output_type(j, dtype)
        pinned += 1
    if unmatched:
        log.warning("%d fallback node(s) matched no TensorRT layer (renamed or fused by the parser): %s",
                    len(unmatched), ", ".join(sorted(unmatched)[:5]))
    return {"layers_pinned": pinned, "unmatched_nodes": sorted(unmatched)}


def apply_dynamic_ranges(network: Any, plan: BuildPlan) -> dict:
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        tensors += [layer.get_output(j) for j in range(layer.num_outputs)]
    done, missing = 0, []
    for tensor in tensors:
        amax = plan.dynamic_ranges.get(tensor.name)
        if amax is None:
            missing.append(tensor.name)
            continue
        tensor.set_dynamic_range(-float(amax), float(amax))
        done += 1
    if missing:
        log.info("%d network tensor(s) have no range; TensorRT keeps their layers out of INT8", len(missing))
    return {"ranges_set": done, "ranges_missing": len(missing)}


def _set_profile(trt: Any, builder: Any, config: Any, plan: BuildPlan) -> None:
    if plan.profile is None:
        return
    p = plan.profile
    profile = builder.create_optimization_profile()
    profile.set_shape(p.input_name, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    if plan.calibrator is not None:
        shape = (plan.calibrator.batch_size, *plan.calibrator.input_shape)
        calib = builder.create_optimization_profile()
        calib.set_shape(p.input_name, shape, shape, shape)
        config.set_calibration_profile(calib)


def _load_timing_cache(config: Any, path: str | None) -> Any:
    data = Path(path).read_bytes() if path and Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)
    return bool(data)


def build_engine(plan: BuildPlan, onnx_path: str | os.PathLike, *, trt: Any = None,
                 log_path: str | os.PathLike | None = None, backend: Any = None, calibration_batches: Any = None,
                 cdll: Any = None) -> BuildResult:
    """Build ``onnx_path`` as ``plan`` says; returns the serialized engine and what was applied.

    ``trt`` defaults to the installed tensorrt (tests pass a stand-in); ``backend`` (only the calibrator needs one)
    to ``select_backend("auto")``, opened and closed here; ``calibration_batches`` to the plan's images.
    """
    trt = trt or import_tensorrt()
    version = check_installed_matches(trt, plan)
    start = time.perf_counter()
    logger = make_logger(trt, log_path)
    applied: dict = {"trt_version": str(version), "route": plan.route}
    owned_backend = calibrator = None
    try:
        applied["plugins"] = load_plugin_libraries(trt, logger, plan.plugin_libraries, cdll=cdll)
        builder = trt.Builder(logger)
        network, _parser = parse_onnx(trt, builder, logger, plan, onnx_path)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan.workspace_bytes))
        config.profiling_verbosity = getattr(trt.ProfilingVerbosity, plan.profiling_verbosity)
        if plan.opt_level is not None:
            config.builder_optimization_level = int(plan.opt_level)
        for name in plan.builder_flags:
            config.set_flag(getattr(trt.BuilderFlag, name))
        if plan.dla_core is not None:  # the plan added GPU_FALLBACK and refused fp32 / versions without DLA
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = int(plan.dla_core)
            applied["dla_core"] = int(plan.dla_core)
        _set_profile(trt, builder, config, plan)
        if plan.layer_precisions:
            from trtalign.engines.plan import read_onnx_facts

            nodes = frozenset(read_onnx_facts(onnx_path).node_names)
            applied.update(apply_layer_precisions(trt, network, plan, nodes))
        if plan.dynamic_ranges:
            applied.update(apply_dynamic_ranges(network, plan))
        if plan.calibrator is not None:
            if backend is None:
                from trtalign.engines.cuda_backend import select_backend

                backend = owned_backend = select_backend("auto")
                backend.open()
            calibrator = _make_plan_calibrator(trt, plan, backend, calibration_batches)
            config.int8_calibrator = calibrator
        applied["timing_cache_reused"] = _load_timing_cache(config, plan.timing_cache)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            last = "; ".join(logger.errors[-3:]) or "no error message"
            raise EngineError(f"TensorRT {version} failed to build {Path(onnx_path).name} ({plan.route}): {last}"
                              + (f"; full log: {log_path}" if log_path else "; rerun with a log file for details"))
        engine = bytes(serialized)
        if plan.timing_cache:
            atomic_write_bytes(plan.timing_cache, bytes(config.get_timing_cache().serialize()))
        if calibrator is not None:
            applied["calibration_batches"] = calibrator.batches_served
        layer_info = inspect_serialized(trt, logger, engine, dla_core=plan.dla_core)
    finally:
        logger.close()
        if calibrator is not None:
            calibrator.free()
        if owned_backend is not None:
            owned_backend.close()
    return BuildResult(engine=engine, plan=plan, trt_version=str(version), seconds=time.perf_counter() - start,
                       layer_info=layer_info, log_path=str(log_path) if log_path else None, applied=applied)


def _make_plan_calibrator(trt: Any, plan: BuildPlan, backend: Any, batches: Any) -> Any:
    from trtalign.engines.calibrator import CalibrationBatches, make_calibrator

    spec = plan.calibrator
    if batches is None:
        batches = CalibrationBatches(images=spec.images, imgsz=spec.input_shape[1:], batch_size=spec.batch_size,
                                     num=spec.num_images)
    return make_calibrator(trt, spec.algorithm, batches, backend, spec.cache_path)


def inspect_serialized(trt: Any, logger: Any, engine_bytes: bytes, dla_core: int | None = None) -> str:
    """The engine inspector's JSON for a serialized engine ("" when the engine cannot be deserialized here); a DLA
    engine is deserialized on the DLA core it was built for."""
    runtime = trt.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = int(dla_core)
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        log.warning("could not deserialize the engine just built to inspect it")
        return ""
    inspector = engine.create_engine_inspector()
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)
