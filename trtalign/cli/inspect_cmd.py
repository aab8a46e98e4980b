"""``trtalign inspect ENGINE``: which TensorRT / GPU built an engine, with which plan, and how many layers run in
INT8 / FP16 / FP32 (from the engine inspector JSON saved by ``trtalign build``, or read live when TensorRT is here)."""

from __future__ import annotations

import argparse
from pathlib import Path

from trtalign.cli.args import add_trt_args, check_outputs, with_example
from trtalign.cli.output import add_json_argument, emit

NAME = "inspect"
HELP = "summarise a TensorRT engine: TensorRT version, GPU, build plan, INT8/FP16/FP32 layer counts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("engine", help="a .engine file (with its sidecar) or an engine inspector .json file")
    parser.add_argument("--layers", action="store_true", help="also list every layer with its precision and tactic")
    parser.add_argument("--live", action="store_true",
                        help="deserialize the engine with the installed TensorRT and inspect it (needs a GPU)")
    add_trt_args(parser, version=False)
    add_json_argument(parser)
    with_example(parser, "trtalign inspect out/model.int8.engine --layers")


def run(args: argparse.Namespace) -> int:
    from trtalign.engines.cache import read_sidecar
    from trtalign.engines.inspector import check_inspectable, summarize_engine_information

    check_outputs(args)
    path = Path(args.engine)
    check_inspectable(path, args.live)  # a missing file, an ONNX, a text file, an engine with nothing to read: errors
    result: dict = {"engine": str(path)}
    info = None
    if path.suffix == ".json":
        info = path.read_text(encoding="utf-8")
    else:
        sidecar = read_sidecar(path)
        if sidecar is not None:
            result["built_with"] = {"trt_version": sidecar.trt_version, "gpu_name": sidecar.gpu_name,
                                    "compute_capability": sidecar.compute_capability,
                                    "route": sidecar.plan.get("route"), "precision": sidecar.plan.get("precision"),
                                    "onnx_sha256": sidecar.onnx_sha256, "build_seconds": sidecar.build_seconds}
        saved = path.with_suffix(".layers.json")
        if args.live:
            info = _live_info(path, args.plugins, sidecar.plan.get("dla_core") if sidecar is not None else None)
        elif saved.is_file():
            info = saved.read_text(encoding="utf-8")
    lines = [f"{path}:"]
    if "built_with" in result:
        b = result["built_with"]
        lines.append(f"  built with TensorRT {b['trt_version']} on {b['gpu_name']} (sm {b['compute_capability']}), "
                     f"{b['precision']} via {b['route']}")
    if info:
        summary = summarize_engine_information(info)
        result["layers"] = summary.to_dict()
        lines.append("  " + summary.text())
        if args.layers:
            lines += [f"    {layer.precision:5s} {layer.type:18s} {layer.name}  [{layer.tactic}]"
                      for layer in summary.layers]
    elif path.suffix != ".json":
        lines.append(f"  no layer information: {path.with_suffix('.layers.json').name} not found (rerun "
                     f"`trtalign build`, or pass --live on a machine with TensorRT)")
    emit(result, args, "\n".join(lines))
    return 0


def _live_info(path: Path, plugins: list, dla_core: int | None = None) -> str:
    """Deserialize and inspect on this machine; a DLA engine on the core its sidecar names."""
    from trtalign.engines.builder import import_tensorrt, inspect_serialized, make_logger
    from trtalign.engines.plugins_loader import load_plugin_libraries

    trt = import_tensorrt()
    logger = make_logger(trt)
    load_plugin_libraries(trt, logger, plugins)
    return inspect_serialized(trt, logger, path.read_bytes(), dla_core=dla_core)
