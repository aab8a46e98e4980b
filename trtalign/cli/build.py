"""``trtalign build CONFIG.yaml``: ONNX -> TensorRT engine(s), one per precision, through a version-aware build plan.

Engines go through the one engine cache (:class:`trtalign.engines.loaders.EngineFromOnnx`: sha256 of ONNX bytes, plan
JSON, TensorRT version, GPU compute capability and plugin libraries) under ``<outputs.dir>/engines/`` and copied to ``<outputs.dir>/<model>.<precision>.engine`` with a sidecar JSON; the verbose
TensorRT log goes to ``<outputs.dir>/logs/``; the engine inspector's per-layer JSON is saved next to the engine and
summarised (INT8 / FP16 / FP32 layer counts). ``--plan-only`` prints the plans without TensorRT (any target version).
``--dla-core N`` (or ``trt.dla_core``) builds for a Jetson DLA core; those engines are named
``<model>.<precision>.dla<N>.engine`` so they never replace the GPU engine.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from trtalign.cli.args import add_precision_args, add_trt_args, check_outputs, precisions, with_example
from trtalign.cli.output import add_json_argument, emit
from trtalign.core.logging import get_logger

log = get_logger(__name__)

NAME = "build"
HELP = "build TensorRT engines (fp32 / fp16 / int8) from the ONNX with a build plan for the target TensorRT version"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config YAML")
    add_trt_args(parser)
    add_precision_args(parser, ("fp32", "fp16", "int8"), "engines to build (default: the config's precisions)")
    parser.add_argument("--onnx", default=None, help="ONNX to build (default: the config's model when it is .onnx)")
    parser.add_argument("--onnx-fp16", default=None, help="float16-typed ONNX for fp16 (TensorRT 11 / strongly typed)")
    parser.add_argument("--onnx-int8", default=None, help="Q/DQ ONNX for int8 (trt.int8_route: qdq)")
    parser.add_argument("--unit-plan", default=None, help="plan.json (unit -> int8|fp16|fp32); default quantize.plan")
    parser.add_argument("--plan-only", action="store_true", help="print the build plans; do not import TensorRT")
    parser.add_argument("--force", action="store_true", help="rebuild even when the engine cache has the engine")
    parser.add_argument("--dla-core", type=_dla_core, default=None, metavar="N",
                        help="build for DLA core N (Jetson Xavier / Orin AGX / NX; fp16 and int8 only, static batch; "
                             "layers DLA cannot run fall back to the GPU); overrides the config's trt.dla_core")
    add_json_argument(parser)
    with_example(parser, "trtalign build pipeline.yaml --trt-version 10.3 --precision int8 --onnx-int8 model.qdq.onnx",
                 "trtalign build pipeline.yaml --trt-version 11.4 --plan-only   # no TensorRT needed")


def _dla_core(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a DLA core number >= 0 (0 or 1 on Jetson), got {text!r}")
    return int(text)


@dataclass
class BuiltEngine:
    precision: str
    route: str
    onnx: str
    plan: dict
    engine: str | None = None
    cache_hit: bool = False
    cache_key: str = ""
    build_seconds: float | None = None
    log: str | None = None
    layers_json: str | None = None
    layer_counts: dict = field(default_factory=dict)
    applied: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class BuildReport:
    trt_version: str
    gpu: dict
    engines: list

    def to_dict(self) -> dict:
        return {"trt_version": self.trt_version, "gpu": self.gpu, "engines": [e.to_dict() for e in self.engines]}


def _onnx_for(args: argparse.Namespace, cfg, precision: str, version) -> tuple[Path, str]:
    """(ONNX to build ``precision`` from, note). FP16 where the precision lives in the ONNX (TensorRT 11, strongly
    typed 10.x) converts the float ONNX with trtalign.export.fp16 unless --onnx-fp16 names one."""
    from trtalign.core.errors import InputError
    from trtalign.engines.plan import needs_float16_onnx

    own = {"fp16": args.onnx_fp16, "int8": args.onnx_int8}.get(precision)
    path = own or args.onnx
    if path is None and Path(cfg.model).suffix.lower() == ".onnx":
        path = cfg.model
    if path is None:
        raise InputError(f"no ONNX to build for {precision}: pass --onnx (the file from `trtalign export`"
                         f"{' / `trtalign quantize`' if precision != 'fp32' else ''}) or set model: to an .onnx file")
    if precision == "fp16" and not own and needs_float16_onnx(version, cfg.trt.strongly_typed):
        from trtalign.export.fp16 import save_fp16

        typed = Path(cfg.outputs.dir) / f"{Path(path).stem}.fp16.onnx"
        result = save_fp16(str(path), typed)
        return typed, (f"FP16 on TensorRT {version} comes from the ONNX: wrote {typed} ({result.fp16_nodes} float16 "
                       f"nodes, {len(result.fp32_nodes)} kept float32)")
    return Path(path), ""


def run(args: argparse.Namespace) -> int:
    from trtalign.core.config import load_config
    from trtalign.core.errors import ConfigError
    from trtalign.engines.plan import make_build_plan
    from trtalign.engines.versions import TrtVersion, installed_version

    check_outputs(args)
    cfg = load_config(args.config)
    if args.dla_core is not None:
        cfg.trt.dla_core = args.dla_core
    if args.plugins:
        cfg.trt.plugins = [*cfg.trt.plugins, *args.plugins]
    wanted = precisions(args) or [p for p in cfg.precisions if p != "torch"]
    if not wanted:
        raise ConfigError("nothing to build: the config's precisions list only 'torch'; pass --precision")
    target = args.trt_version or cfg.trt.version
    version = installed_version() if target == "auto" else TrtVersion.parse(target)
    plans = []
    for precision in wanted:
        onnx, note = _onnx_for(args, cfg, precision, version)
        if note:
            log.info(note)
        plan = make_build_plan(cfg, onnx, version, precision, unit_plan=args.unit_plan)
        plans.append((precision, onnx, plan))
    if args.plan_only:
        engines = [BuiltEngine(p, plan.route, str(onnx), plan.to_dict()) for p, onnx, plan in plans]
        report = BuildReport(str(version), {}, engines)
        lines = [f"TensorRT {version} build plans:"]
        for e, (_, _, plan) in zip(engines, plans):
            lines.append(f"  {e.precision:5s} {plan.route:19s} network flags {list(plan.network_flags)} builder flags "
                         f"{list(plan.builder_flags)} layer constraints {len(plan.layer_precisions)}"
                         + (f" onnx must be {plan.onnx_requirement}" if plan.onnx_requirement else "")
                         + (f" DLA core {plan.dla_core}" if plan.dla_core is not None else ""))
        emit(report, args, "\n".join(lines))
        return 0
    return _build_all(args, cfg, version, plans)


def _build_all(args: argparse.Namespace, cfg, version, plans: list) -> int:
    """Each plan through :class:`trtalign.engines.loaders.EngineFromOnnx` (the one engine cache), then copied to
    ``<outputs.dir>/<model>.<precision>.engine`` with its sidecar and layer JSON."""
    from trtalign.core.io import atomic_write_bytes, atomic_write_text
    from trtalign.engines.builder import import_tensorrt
    from trtalign.engines.cache import sidecar_path
    from trtalign.engines.inspector import summarize_engine_information
    from trtalign.engines.loaders import EngineFromOnnx

    trt = import_tensorrt()
    backend, gpu = _gpu(cfg.trt.cuda)
    out_dir = Path(cfg.outputs.dir)
    engines = []
    try:
        for precision, onnx, plan in plans:
            stem = f"{Path(cfg.model).stem}.{precision}" + (f".dla{plan.dla_core}" if plan.dla_core is not None else "")
            final = out_dir / f"{stem}.engine"
            rebuild = f"trtalign build {args.config} --trt-version {version.short} --precision {precision} --force" \
                + (f" --dla-core {plan.dla_core}" if plan.dla_core is not None else "")
            loader = EngineFromOnnx(onnx, out_dir / "engines", precision, plan=plan, trt=trt, backend=backend, gpu=gpu,
                                    force=args.force, log_path=out_dir / "logs" / f"{stem}.trt.log",
                                    rebuild_command=rebuild)
            stored = loader()
            entry = BuiltEngine(precision, plan.route, str(onnx), plan.to_dict(), engine=str(final),
                                cache_key=loader.key, cache_hit=loader.cache_hit)
            if loader.build is not None:
                entry.build_seconds, entry.log = round(loader.build.seconds, 2), str(loader.log_path)
                entry.applied = loader.build.applied
            atomic_write_bytes(final, stored.read_bytes())
            atomic_write_bytes(sidecar_path(final), sidecar_path(stored).read_bytes())
            cached_layers = stored.with_suffix(".layers.json")
            if cached_layers.is_file():
                layers_path = out_dir / f"{stem}.layers.json"
                layer_info = cached_layers.read_text(encoding="utf-8")
                atomic_write_text(layers_path, layer_info)
                entry.layers_json = str(layers_path)
                entry.layer_counts = summarize_engine_information(layer_info).counts
            engines.append(entry)
    finally:
        backend.close()
    report = BuildReport(str(version), gpu, engines)
    lines = [f"TensorRT {version} on {gpu['name']} (sm {gpu['compute_capability']}):"]
    for e in engines:
        c = e.layer_counts
        counts = f"layers INT8 {c.get('int8', 0)} FP16 {c.get('fp16', 0)} FP32 {c.get('fp32', 0)}" if c else ""
        how = "cached" if e.cache_hit else f"built in {e.build_seconds} s"
        lines.append(f"  {e.precision:5s} {e.route:19s} {how:16s} {counts} -> {e.engine}")
    emit(report, args, "\n".join(lines))
    return 0


def _gpu(cuda: str):
    from trtalign.engines.cuda_backend import select_backend

    backend = select_backend(cuda)
    backend.open()
    return backend, backend.device_info()
