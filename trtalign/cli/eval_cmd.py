"""``trtalign eval CONFIG_OR_MODEL --data DIR --precision torch,fp32,fp16,int8``: mAP at each precision."""

from __future__ import annotations

import argparse
from pathlib import Path

from trtalign.cli.args import (add_calibration_args, add_data_args, add_model_args, add_nms_args, add_precision_args,
                               add_trt_args, check_outputs, precisions, with_example)
from trtalign.cli.output import add_json_argument, emit

NAME = "eval"
HELP = "mAP of a model at several precisions (torch, ONNX Runtime FP32 / FP16 / INT8 emulation, TensorRT) on a dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="CONFIG_OR_MODEL",
                        help="a pipeline config (.yaml with a 'model:' key), a model (.pt, ultralytics .yaml) or an "
                             "ONNX exported by `trtalign export`")
    add_model_args(parser)
    add_data_args(parser)
    add_precision_args(parser, what="precisions to evaluate (default: the config's, else all four)")
    parser.add_argument("--backend", default="auto", choices=["auto", "ort", "trt"],
                        help="fp32/fp16/int8 on ONNX Runtime emulation (ort) or TensorRT (trt); auto: trt when "
                             "TensorRT is importable")
    parser.add_argument("--batch", type=int, default=1, help="images per inference call (default 1)")
    parser.add_argument("--preprocess", default="ultralytics", choices=["ultralytics", "yolov5"],
                        help="letterbox recipe: ultralytics (default) or yolov5 (its val.py: INTER_AREA resize of the long "
                             "side, square letterbox)")
    add_nms_args(parser, "an exported ONNX has its NMS baked in: these apply to a .pt/.yaml model (export and torch)")
    parser.add_argument("--torch-nms", choices=["ultralytics", "aligned"], default="ultralytics",
                        help="NMS for the torch runner: ultralytics' own, or the exported EfficientNMS reference "
                             "(aligned: removes NMS differences from the torch comparison)")
    add_calibration_args(parser)
    parser.add_argument("--qdq-mode", default="trt", choices=["trt", "naive"],
                        help="int8 Q/DQ placement: trt (the INT8 plan: every unit INT8 but the head's output convs, "
                             "decode untouched; default) or naive (Q/DQ on every weighted op and Concat, head included)")
    add_trt_args(parser, version=False)
    parser.add_argument("--report", metavar="HTML", default=None, help="write the HTML report here")
    parser.add_argument("--save-detections", metavar="DIR", default=None,
                        help="write each runner's detections (COCO results json; rotated: xywhr json) here")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=ONNX",
                        help="also evaluate another trtalign export of the same model as runner ort-NAME (e.g. "
                             "qat=out/model.qat.qdq.onnx from `trtalign qat`); repeatable")
    parser.add_argument("--workdir", default=None, help="keep the exported / emulated ONNX files here")
    add_json_argument(parser)
    with_example(parser, "trtalign eval yolov8n.pt --data coco/val2017.json --precision torch,fp32,int8 "
                         "--calib coco/train_sample --json eval.json")


def _config(path: str):
    """The pipeline config when MODEL is one (a YAML with a ``model:`` key), else None (a model file)."""
    import yaml

    from trtalign.core.config import load_config

    p = Path(path)
    if p.suffix.lower() not in (".yaml", ".yml") or not p.is_file():
        return None
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        data = None
    return load_config(p) if isinstance(data, dict) and "model" in data else None


def _from_config(args: argparse.Namespace) -> dict:
    """The settings that apply: command-line options over the config over the defaults."""
    from trtalign.core.config import CalibrationConfig
    from trtalign.eval.evaluate import CalibrationSettings

    cfg = _config(args.model)
    calib_cfg = cfg.calibration if cfg is not None else CalibrationConfig(num=64)
    images = args.calib or (str(calib_cfg.images) if calib_cfg.images else None)
    calibration = CalibrationSettings(Path(images) if images else None,
                                      num=args.calib_num if args.calib_num is not None else calib_cfg.num,
                                      method=args.calib_method or calib_cfg.method, qdq_mode=args.qdq_mode,
                                      exclude=tuple(cfg.quantize.exclude) if cfg is not None else ())
    if cfg is None:
        return {"model": args.model, "data": args.data, "precisions": precisions(args), "imgsz": args.imgsz,
                "calibration": calibration, "plugins": args.plugins, "task": "auto", "repo": None}
    return {"model": str(cfg.model), "data": args.data or (str(cfg.data.val) if cfg.data.val else None),
            "precisions": precisions(args) or list(cfg.precisions),
            "imgsz": args.imgsz or (cfg.imgsz if "imgsz" in cfg.model_fields_set else None),  # else the model's own
            "calibration": calibration, "plugins": args.plugins or [str(p) for p in cfg.trt.plugins],
            "task": cfg.task, "repo": cfg.model_repo}


def _compare_files(values: list) -> dict:
    """``--compare NAME=ONNX`` options -> {name: path}."""
    from trtalign.core.errors import InputError

    out: dict = {}
    for value in values:
        name, sep, path = str(value).partition("=")
        if not sep or not name.strip() or not path.strip() or not name.replace("-", "").replace("_", "").isalnum():
            raise InputError(f"--compare expects NAME=FILE.onnx (NAME: letters, digits, - or _), got {value!r}")
        if name in out:
            raise InputError(f"--compare {name} is given twice")
        if not Path(path.strip()).is_file():
            raise InputError(f"--compare {name}: file not found: {path.strip()}")
        out[name.strip()] = path.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from trtalign.core.errors import InputError
    from trtalign.eval.evaluate import NmsSettings, evaluate, parse_precisions

    check_outputs(args, files=("json", "report"))
    s = _from_config(args)
    if not s["data"]:
        raise InputError("--data is required (a dataset folder, COCO json or data.yaml)")
    if args.batch < 1:
        raise InputError(f"--batch must be >= 1, got {args.batch}")
    if args.max_images is not None and args.max_images < 1:
        raise InputError(f"--max-images must be >= 1, got {args.max_images}")
    plist = parse_precisions(s["precisions"] or "torch,fp32,fp16,int8")
    nms = NmsSettings(args.conf, args.iou, args.max_det, args.class_agnostic, torch_nms=args.torch_nms)
    result = evaluate(s["model"], s["data"], plist, backend=args.backend, imgsz=s["imgsz"], batch=args.batch,
                      max_images=args.max_images, workdir=args.workdir, save_detections_dir=args.save_detections,
                      nms=nms, calibration=s["calibration"], split=args.split, data_format=args.data_format,
                      plugins=s["plugins"], task=s["task"], preprocess=args.preprocess, repo=s["repo"],
                      compare=_compare_files(args.compare))
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
