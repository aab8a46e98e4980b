"""``trtalign eval CONFIG_OR_MODEL --data DIR --precisions torch,fp32,fp16,int8``: mAP at each precision."""

from __future__ import annotations

import argparse
from pathlib import Path

from trtalign.cli.output import add_json_argument, emit

NAME = "eval"
HELP = "mAP of a model at several precisions (torch, ONNX Runtime FP32 / FP16 / INT8 emulation, TensorRT) on a dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="CONFIG_OR_MODEL",
                        help="a pipeline config (.yaml with a 'model:' key), a model (.pt, ultralytics .yaml) or an "
                             "ONNX exported by `trtalign export`")
    parser.add_argument("--data", default=None,
                        help="dataset: COCO json or folder, ultralytics data.yaml or folder, DOTA folder "
                             "(default: the config's data.val)")
    parser.add_argument("--split", default="val", help="dataset split (default: val)")
    parser.add_argument("--format", dest="data_format", default="auto", choices=["auto", "coco", "yolo", "dota"],
                        help="dataset format (default: auto)")
    parser.add_argument("--precisions", default=None,
                        help="comma-separated: torch, fp32, fp16, int8 (default: the config's, else all four)")
    parser.add_argument("--backend", default="auto", choices=["auto", "ort", "trt"],
                        help="fp32/fp16/int8 on ONNX Runtime emulation (ort) or TensorRT (trt); auto: trt when "
                             "TensorRT is importable")
    parser.add_argument("--imgsz", type=int, default=None, help="input size for .pt/.yaml models (default: the size the model "
                        "was trained at when the file records it, else 640)")
    parser.add_argument("--batch", type=int, default=1, help="images per inference call (default 1)")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--report", metavar="HTML", default=None, help="write the HTML report here")
    parser.add_argument("--save-detections", metavar="DIR", default=None,
                        help="write each runner's detections (COCO results json; rotated: xywhr json) here")
    parser.add_argument("--workdir", default=None, help="keep the exported / emulated ONNX files here")
    parser.add_argument("--torch-nms", choices=["ultralytics", "aligned"], default="ultralytics",
                        help="NMS for the torch runner: ultralytics' own, or the exported EfficientNMS reference "
                             "(aligned: removes NMS differences from the torch comparison)")
    parser.add_argument("--calib", default=None, help="calibration images for int8 (default: the train split)")
    parser.add_argument("--calib-num", type=int, default=64, help="calibration images used (default 64)")
    parser.add_argument("--calib-method", default="entropy", choices=["minmax", "percentile", "entropy", "mse", "best"],
                        help="calibration method for int8 (default entropy)")
    parser.add_argument("--qdq-mode", default="trt", choices=["trt", "naive"],
                        help="int8 Q/DQ placement: trt (every unit INT8, decode untouched; default) or naive (Q/DQ "
                             "on every weighted op and Concat, head included)")
    parser.add_argument("--conf", type=float, default=0.001, help="score threshold (default 0.001)")
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    parser.add_argument("--max-det", type=int, default=300, help="detections per image (default 300)")
    add_json_argument(parser)


def _from_config(args: argparse.Namespace) -> tuple:
    """(model, data, precisions, imgsz, calib images) from a pipeline config when MODEL is one."""
    import yaml

    from trtalign.core.config import load_config

    path = Path(args.model)
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return args.model, args.data, args.precisions, args.imgsz, args.calib
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict) or "model" not in data:
        return args.model, args.data, args.precisions, args.imgsz, args.calib  # an ultralytics model yaml
    cfg = load_config(path)
    data_path = args.data or (str(cfg.data.val) if cfg.data.val else None)
    precisions = args.precisions or ",".join(cfg.precisions)
    calib = args.calib or (str(cfg.calibration.images) if cfg.calibration.images else None)
    imgsz = args.imgsz or (cfg.imgsz if "imgsz" in cfg.model_fields_set else None)  # else the model's own size
    return str(cfg.model), data_path, precisions, imgsz, calib


def run(args: argparse.Namespace) -> int:
    from trtalign.core.errors import InputError
    from trtalign.eval.evaluate import CalibrationSettings, NmsSettings, evaluate, parse_precisions

    model, data, precisions, imgsz, calib = _from_config(args)
    if not data:
        raise InputError("--data is required (a dataset folder, COCO json or data.yaml)")
    if args.batch < 1:
        raise InputError(f"--batch must be >= 1, got {args.batch}")
    if args.max_images is not None and args.max_images < 1:
        raise InputError(f"--max-images must be >= 1, got {args.max_images}")
    for name in ("report", "json"):
        value = getattr(args, name)
        if value and value != "-" and Path(value).is_dir():
            raise InputError(f"--{name} {value} is a folder; give a file name")
    plist = parse_precisions(precisions or "torch,fp32,fp16,int8")
    nms = NmsSettings(args.conf, args.iou, args.max_det, torch_nms=args.torch_nms)
    calibration = CalibrationSettings(Path(calib) if calib else None, num=args.calib_num, method=args.calib_method,
                                      qdq_mode=args.qdq_mode)
    result = evaluate(model, data, plist, backend=args.backend, imgsz=imgsz, batch=args.batch,
                      max_images=args.max_images, workdir=args.workdir, save_detections_dir=args.save_detections,
                      nms=nms, calibration=calibration, split=args.split, data_format=args.data_format)
    if not result.results:
        raise InputError("nothing could be evaluated: " + "; ".join(f"{k}: {v}" for k, v in result.skipped.items()))
    if args.report:
        from trtalign.eval.report import eval_report

        eval_report(result).write(args.report)
    text = result.summary()
    if args.report:
        text += f"\nreport: {args.report}"
    emit(result, args, text)
    return 0
