"""``trtalign export MODEL``: model file -> ONNX with decode and in-graph NMS."""

from __future__ import annotations

import argparse
import os

from trtalign.cli.args import add_model_args, add_nms_args, check_outputs, with_example
from trtalign.cli.output import add_json_argument, emit

NAME = "export"
HELP = "export a YOLO model (.pt, .yaml or .onnx with a layout) to ONNX with decode and an in-graph NMS node"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None, help="model file (.pt, .yaml, or .onnx with --config layout)")
    parser.add_argument("--out", required=False, default=None, help="output ONNX file")
    add_model_args(parser)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--batch", type=int, default=None, help="static batch size (default 1)")
    group.add_argument("--dynamic-batch", type=int, default=None, metavar="MAX",
                       help="dynamic batch dimension 'batch' up to MAX")
    parser.add_argument("--nms", default=None, choices=["auto", "efficient", "rotated", "none"],
                        help="in-graph NMS: auto (efficient for detect, rotated for obb), efficient, rotated, none")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (13..20, default 17)")
    add_nms_args(parser, "written into the NMS node (EfficientNMS_TRT attributes)")
    parser.add_argument("--box-coding", type=int, choices=[0, 1], default=None,
                        help="EfficientNMS box coding: 0 corners (default), 1 center-size")
    parser.add_argument("--nms-domain", default=None, metavar="DOMAIN",
                        help="escape hatch: write the NMS node in this ONNX domain ('' = default domain, a "
                             "TensorRT-only file that fails onnx.checker); default: 'trtalign'")
    parser.add_argument("--repo", default=None, metavar="DIR",
                        help="YOLOv5 checkpoints: your YOLOv5 clone (default: the yolov5 package, or $TRTALIGN_YOLOV5_REPO)")
    parser.add_argument("--head", default=None, choices=["one2many", "one2one"],
                        help="end-to-end models (YOLOv10, YOLO26): one2many + NMS node (default) or one2one (NMS-free top-k)")
    parser.add_argument("--config", default=None, help="pipeline config YAML (model, imgsz, batch, nms, opset, layout)")
    add_json_argument(parser)
    with_example(parser, "trtalign export yolov8n.pt --imgsz 640 --dynamic-batch 8 --out yolov8n.onnx")


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
    if args.model and _is_pipeline_config(args.model):
        raise InputError(f"{args.model} is a pipeline config, not a model: use --config {args.model}")
    check_outputs(args, files=("json", "out"))
    if cfg is None:
        cfg = config_from_dict({"model": model}, source="options")
    nms = cfg.nms
    dynamic = args.dynamic_batch if args.dynamic_batch is not None else (cfg.batch.max if cfg.batch.dynamic else None)
    batch = args.batch if args.batch is not None else cfg.batch.max if not cfg.batch.dynamic else 1
    # no --imgsz and no imgsz in the config: the size the model was trained at (ultralytics records it), else 640
    imgsz = args.imgsz if args.imgsz is not None else cfg.imgsz if "imgsz" in cfg.model_fields_set else None
    if imgsz is None and str(model).lower().endswith(".onnx"):
        imgsz = _fixed_input_size(model)  # a fixed-size ONNX exports at its own size, not at 640
    opset = args.opset if args.opset is not None else cfg.opset
    if not isinstance(cfg, PipelineConfig):  # pragma: no cover - load_config always returns one
        raise ConfigError("invalid config")
    result = export_onnx(
        model, args.out, imgsz=imgsz, batch=batch, dynamic_batch=dynamic,
        nms=args.nms or nms.kind, opset=opset,
        score_threshold=args.conf if args.conf is not None else nms.score_threshold,
        iou_threshold=args.iou if args.iou is not None else nms.iou_threshold,
        max_det=args.max_det if args.max_det is not None else nms.max_output_boxes,
        class_agnostic=bool(args.class_agnostic) if args.class_agnostic is not None else nms.class_agnostic,
        box_coding=args.box_coding if args.box_coding is not None else nms.box_coding,
        layout=cfg.layout, nms_domain=args.nms_domain, repo=args.repo or cfg.model_repo, head=args.head)
    emit(result, args, result.summary())
    return 0


def _is_pipeline_config(path: str) -> bool:
    """A YAML with a top-level ``model:`` key and no network definition is a pipeline config, not a model yaml."""
    import yaml

    if not str(path).lower().endswith((".yaml", ".yml")) or not os.path.isfile(path):
        return False
    try:
        data = yaml.safe_load(open(path, encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return False
    return isinstance(data, dict) and "model" in data and "backbone" not in data


def _fixed_input_size(path: str) -> tuple | None:
    """(H, W) of an ONNX whose first input has a fixed height and width, else None."""
    import onnx

    try:
        dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    except Exception:  # noqa: BLE001 - unreadable: export_onnx says why
        return None
    hw = [d.dim_value if d.HasField("dim_value") else 0 for d in dims[2:4]] if len(dims) == 4 else []
    return (int(hw[0]), int(hw[1])) if len(hw) == 2 and all(v > 0 for v in hw) else None
