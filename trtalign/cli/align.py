"""``trtalign align MODEL ONNX --images DIR``: torch vs ONNX Runtime on the same letterboxed images."""

from __future__ import annotations

import argparse

from trtalign.cli.args import check_outputs, with_example
from trtalign.cli.output import add_json_argument, emit

NAME = "align"
HELP = "compare the PyTorch model with its exported ONNX (ONNX Runtime, CPU): tensors and detections"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the PyTorch model (.pt or .yaml) the ONNX was exported from")
    parser.add_argument("onnx", help="the exported ONNX file")
    parser.add_argument("--images", required=True, help="folder of images (non-image files are skipped)")
    parser.add_argument("--imgsz", type=int, default=None, help="input size (default: from the ONNX metadata)")
    parser.add_argument("--max-images", type=int, default=None, help="use at most N images")
    parser.add_argument("--raw-tol", type=float, default=1e-3,
                        help="max |diff| of raw tensors relative to their scale (default 1e-3)")
    add_json_argument(parser)
    with_example(parser, "trtalign align yolov8n.pt yolov8n.onnx --images val_images/ --max-images 8")


def run(args: argparse.Namespace) -> int:
    from trtalign.core.errors import InputError
    from trtalign.eval.alignment import Tolerances, align

    check_outputs(args)
    if args.raw_tol <= 0:
        raise InputError(f"--raw-tol must be > 0, got {args.raw_tol}")
    result = align(args.model, args.onnx, args.images, imgsz=args.imgsz, max_images=args.max_images,
                   tolerances=Tolerances(raw_rel=args.raw_tol))
    emit(result, args, result.summary())
    return 0 if result.passed else 1
