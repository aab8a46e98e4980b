"""``trtalign triton-export ENGINE_OR_ONNX --repo DIR``: a Triton Inference Server model repository entry."""

from __future__ import annotations

import argparse

from trtalign.cli.args import check_outputs, with_example
from trtalign.cli.output import add_json_argument, emit

NAME = "triton-export"
HELP = "write a Triton model repository (config.pbtxt with dynamic batching + NMS outputs, model.plan, plugin)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="TensorRT engine (.engine/.plan) or ONNX with in-graph NMS")
    parser.add_argument("--repo", required=True, help="model repository folder (created if missing)")
    parser.add_argument("--name", default=None, help="model name in the repository (default: the file stem)")
    parser.add_argument("--max-batch", type=int, default=8,
                        help="Triton max_batch_size; the engine's batch profile must reach it (default 8)")
    parser.add_argument("--max-queue-delay-us", type=int, default=5000,
                        help="dynamic_batching max_queue_delay_microseconds (default 5000)")
    parser.add_argument("--onnx", default=None,
                        help="for an engine without a sidecar JSON: the ONNX it was built from (tensor shapes)")
    parser.add_argument("--plugin", default=None,
                        help="plugin library to ship (libtrtalign_plugins.so from `trtalign plugins build`)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model folder of that name")
    add_json_argument(parser)
    with_example(parser, "trtalign triton-export out/model.int8.engine --repo triton_repo --max-batch 8")


def run(args: argparse.Namespace) -> int:
    from trtalign.serve.triton import export_triton_repository

    check_outputs(args)

    result = export_triton_repository(args.model, args.repo, name=args.name, max_batch=args.max_batch,
                                      onnx=args.onnx, plugin=args.plugin, max_queue_delay_us=args.max_queue_delay_us,
                                      overwrite=args.overwrite)
    emit(result, args, result.summary())
    return 0
