"""``trtalign sensitivity CONFIG.yaml [--metric M] [--mode disable-one|enable-one] [--subset N] --json sens.json``:
score how much INT8 hurts each quantization unit (on the tuning split; the JSON feeds ``trtalign fallback
--ranking``)."""

from __future__ import annotations

import argparse

from trtalign.cli.args import check_outputs, with_example
from trtalign.cli.output import add_json_argument, emit
from trtalign.core.enums import FallbackTarget, SensitivityMetric, SensitivityMode, values

NAME = "sensitivity"
HELP = "score how much quantizing each INT8 unit hurts (mAP, output MSE / cosine / SQNR, detection-aware)"
METRICS = values(SensitivityMetric)
MODES = values(SensitivityMode)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config YAML (model, data.val [data.tune], calibration)")
    parser.add_argument("--metric", choices=METRICS, default=None,
                        help="map: mAP on the subset; mse / cosine / sqnr: of the raw head output0 vs FP32; det: "
                             "class-score and box errors on the images where full INT8 errs most "
                             "(default: the config's fallback.metric); scorebox: class-score noise ratio + box "
                             "error relative to box size, neither drowned by the other's units")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="disable-one: start fully INT8 and restore one unit; enable-one: start float and "
                             "quantize one unit (default: the config's fallback.mode)")
    parser.add_argument("--subset", type=int, default=None,
                        help="tuning images to score on (default: the config's fallback.subset)")
    parser.add_argument("--local", action="store_true",
                        help="mse / cosine / sqnr of each unit's own output from ONE FP32 pass (fake-quantized "
                             "input and weights); cheapest, ignores error propagation")
    parser.add_argument("--target", choices=values(FallbackTarget), default=None,
                        help="precision a restored unit runs in (default: the config's fallback.target)")
    parser.add_argument("--hard", type=int, default=8, help="images used by --metric det (default 8)")
    parser.add_argument("--workdir", default=None, help="cache folder (default: <outputs.dir>/tuning)")
    parser.add_argument("--backend", choices=("ort", "trt"), default="ort",
                        help="ort: ONNX Runtime INT8 emulation of each plan's Q/DQ ONNX (default); trt: a TensorRT "
                             "INT8 engine per plan (needs TensorRT and a GPU)")
    add_json_argument(parser)
    with_example(parser, "trtalign sensitivity pipeline.yaml --metric sqnr --local --subset 32 --json sens.json")


def run(args: argparse.Namespace) -> int:
    from trtalign.core.config import load_config
    from trtalign.tune.tuning import session_from_config

    check_outputs(args)
    cfg = load_config(args.config)
    fb = cfg.fallback
    session = session_from_config(cfg, args.workdir, backend=args.backend)
    subset = fb.subset if args.subset is None else args.subset
    result = session.sensitivity(args.metric or fb.metric, args.mode or fb.mode, subset, args.target or fb.target,
                                 local=args.local, hard=args.hard)
    emit(result, args, result.summary())
    return 0
