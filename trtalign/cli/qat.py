"""``trtalign qat CONFIG.yaml [--epochs N] [--start int8|plan] [--plan plan.json] [--out DIR]``: fine-tune the
config's ultralytics checkpoint with fake quantization at trtalign's Q/DQ sites, then export the Q/DQ ONNX with the
trained scales (``DIR/model.qat.qdq.onnx``, ``DIR/engine.yaml`` for ``trtalign build``), ``DIR/qat.json`` and
``DIR/report.html``. ``DIR/qat_last.pt`` is written after every epoch: the same command resumes an interrupted run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trtalign.cli.output import add_json_argument, emit

NAME = "qat"
HELP = "quantization-aware training at trtalign's Q/DQ placement, exported as a Q/DQ ONNX with the trained scales"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config YAML (model: a .pt checkpoint; qat.data: training dataset)")
    parser.add_argument("--data", default=None, help="ultralytics dataset folder or data.yaml (default: qat.data)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="fine-tuning epochs (default: qat.epochs, else the task's recipe: detect 3, OBB 2)")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate of the weights (default: qat.lr, else the task's recipe for the loss: "
                             "detect distill 5e-4, otherwise 1e-4)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: qat.batch)")
    parser.add_argument("--start", choices=("int8", "plan"), default=None,
                        help="int8: every unit INT8; plan: the INT8 units of --plan (default: qat.start)")
    parser.add_argument("--plan", default=None, help="plan.json to start from (e.g. `trtalign fallback`'s)")
    parser.add_argument("--quantize-fallback", action="store_true", default=None,
                        help="with --start plan, quantize the plan's FP16/FP32 units too")
    parser.add_argument("--fixed-scales", action="store_true", help="keep the calibrated activation scales")
    from trtalign.tune.qat_distill import LOSSES

    parser.add_argument("--loss", choices=("auto",) + LOSSES, default=None,
                        help="auto: the measured recipe of the checkpoint's task (detect: distill, OBB: both); "
                             "distill: match the float model's head outputs; labels: ultralytics' loss on the "
                             "ground truth; both: distill + qat.label_weight x labels (default: qat.loss, auto)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="ultralytics' training augmentations (HSV, flip, translate, scale) on or off (default: "
                             "qat.augment, else the recipe for the loss: distill / both off, labels on)")
    parser.add_argument("--train-images", type=int, default=None, help="cap on training images")
    parser.add_argument("--val-images", type=int, default=None, help="cap on validation images per epoch")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the FP32 / FP16 evaluations beside QAT on the validation split")
    parser.add_argument("--out", default=None, help="output folder (default: qat.out, else outputs.dir/qat)")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from trtalign.core.config import load_config
    from trtalign.core.errors import ConfigError
    from trtalign.export.ranges import load_ranges
    from trtalign.tune.qat import QatSettings, run_qat
    from trtalign.tune.qat_report import qat_report

    cfg = load_config(args.config)
    q = cfg.qat
    data = args.data or q.data
    if data is None:
        raise ConfigError("qat needs a training dataset: set qat.data in the config or pass --data")
    plan = Path(args.plan) if args.plan else q.plan
    start = args.start or ("plan" if args.plan else q.start)
    settings = QatSettings(
        epochs=args.epochs or q.epochs, lr=args.lr or q.lr, scale_lr=q.scale_lr, batch=args.batch or q.batch,
        learn_scales=q.learn_scales and not args.fixed_scales, start=start, plan=plan,
        quantize_fallback=q.quantize_fallback if args.quantize_fallback is None else True, mosaic=q.mosaic,
        augment=q.augment if args.augment is None else args.augment,
        seed=q.seed, loss=args.loss or q.loss, lr_final=q.lr_final, label_weight=q.label_weight,
        feature_weight=q.feature_weight,
        train_images=args.train_images or q.train_images,
        val_images=args.val_images or q.val_images,
        calibration_images=cfg.calibration.num, calibration_method=str(cfg.calibration.method))
    out = Path(args.out) if args.out else (q.out or Path(cfg.outputs.dir) / "qat")
    ranges = load_ranges(cfg.quantize.ranges) if cfg.quantize.ranges else None
    val = None
    if cfg.data.val is not None:
        from trtalign.data.datasets import load_dataset

        val = load_dataset(cfg.data.val, split="val")
    result = run_qat(cfg.model, data, out, settings, imgsz=cfg.imgsz, ranges=ranges, val=val,
                     calibration_images=cfg.calibration.images, compare=not args.no_compare)
    labels = {"fp32": "FP32", "fp16": "FP16 (emulation)", "ptq": "PTQ, same plan", "qat": "QAT"}
    qat_report(result, {labels[k]: v for k, v in result.comparison.items()}).write(out / "report.html")
    first, last = result.epochs[0], result.epochs[-1]
    text = (f"qat: {len(result.epochs) - 1} epoch(s){' (resumed after epoch %d)' % result.resumed_from_epoch if result.resumed_from_epoch else ''}, "
            f"{result.int8_mac_fraction * 100:.1f}% of conv MACs INT8, {result.wall_s:.0f} s\n"
            f"  val mAP50-95 (Q/DQ ONNX in ONNX Runtime, {result.val_images} images): before QAT {first.val_map:.4f}"
            f" -> after {last.val_map:.4f}"
            f"{'' if not result.comparison else '  (FP32 %.4f, FP16 %.4f)' % (result.comparison['fp32'], result.comparison['fp16'])}\n"
            f"  -> {result.files['onnx']} (build: trtalign build {result.files['engine_config']} --precision int8 "
            f"--onnx-int8 {result.files['onnx']})\n  report: {out / 'report.html'}")
    emit(result.to_dict(), args, text)
    return 0
