"""``trtalign export MODEL``: model file -> ONNX with decode and in-graph NMS."""

from __future__ import annotations

import argparse

from trtalign.cli.output import add_json_argument, emit

NAME = "export"
HELP = "export a YOLO model (.pt, .yaml or .onnx with a layout) to ONNX with decode and an in-graph NMS node"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None, help="model file (.pt, .yaml, or .onnx with --config layout)")
    parser.add_argument("--out", required=False, default=None, help="output ONNX file")
    parser.add_argument("--imgsz", type=int, default=None, help="input size (multiple of the stride; default: the size the model "
                        "was trained at when the file records it, else 640)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--batch", type=int, default=None, help="static batch size (default 1)")
    group.add_argument("--dynamic-batch", type=int, default=None, metavar="MAX",
                       help="dynamic batch dimension 'batch' up to MAX")
    parser.add_argument("--nms", default=None, choices=["auto", "efficient", "rotated", "none"],
                        help="in-graph NMS: auto (efficient for detect, rotated for obb), efficient, rotated, none")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (13..20, default 17)")
    parser.add_argument("--score-threshold", type=float, default=None, help="NMS score threshold (default 0.001)")
    parser.add_argument("--iou-threshold", type=float, default=None, help="NMS IoU threshold (default 0.7)")
    parser.add_argument("--max-det", type=int, default=None, help="max detections per image (default 300)")
    parser.add_argument("--class-agnostic", action="store_true", default=None, help="class-agnostic NMS")
    parser.add_argument("--box-coding", type=int, choices=[0, 1], default=None,
                        help="EfficientNMS box coding: 0 corners (default), 1 center-size")
    parser.add_argument("--nms-domain", default=None, metavar="DOMAIN",
                        help="escape hatch: write the NMS node in this ONNX domain ('' = default domain, a "
                             "TensorRT-only file that fails onnx.checker); default: 'trtalign'")
    parser.add_argument("--config", default=None, help="pipeline config YAML (model, imgsz, batch, nms, opset, layout)")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from trtalign.core.config import PipelineConfig, config_from_dict, load_config
    from trtalign.core.errors import ConfigError, InputError
    from trtalign.export.onnx_export import export_onnx

    cfg = load_config(args.config) if args.config else None
    model = args.model or (str(cfg.model) if cfg else None)
    if not model:
        raise InputError("give a MODEL file (or --config with `model:`)")
    if not args.out:
        raise InputError("--out FILE.onnx is required")
    if cfg is None:
        cfg = config_from_dict({"model": model}, source="options")
    nms = cfg.nms
    dynamic = args.dynamic_batch if args.dynamic_batch is not None else (cfg.batch.max if cfg.batch.dynamic else None)
    batch = args.batch if args.batch is not None else cfg.batch.max if not cfg.batch.dynamic else 1
    # no --imgsz and no imgsz in the config: the size the model was trained at (ultralytics records it), else 640
    imgsz = args.imgsz if args.imgsz is not None else cfg.imgsz if "imgsz" in cfg.model_fields_set else None
    opset = args.opset if args.opset is not None else cfg.opset
    if not isinstance(cfg, PipelineConfig):  # pragma: no cover - load_config always returns one
        raise ConfigError("invalid config")
    result = export_onnx(
        model, args.out, imgsz=imgsz, batch=batch, dynamic_batch=dynamic,
        nms=args.nms or nms.kind, opset=opset,
        score_threshold=args.score_threshold if args.score_threshold is not None else nms.score_threshold,
        iou_threshold=args.iou_threshold if args.iou_threshold is not None else nms.iou_threshold,
        max_det=args.max_det if args.max_det is not None else nms.max_output_boxes,
        class_agnostic=bool(args.class_agnostic) if args.class_agnostic is not None else nms.class_agnostic,
        box_coding=args.box_coding if args.box_coding is not None else nms.box_coding,
        layout=cfg.layout, nms_domain=args.nms_domain)
    emit(result, args, result.summary())
    return 0
