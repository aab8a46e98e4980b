"""``trtalign sensitivity CONFIG.yaml [--metric M] [--mode disable-one|enable-one] [--subset N] --json sens.json``:
score how much INT8 hurts each quantization unit (on the tuning split; the JSON feeds ``trtalign fallback
--ranking``)."""

from __future__ import annotations

import argparse

from trtalign.cli.args import add_sensitivity_args, check_outputs, with_example
from trtalign.cli.output import add_json_argument, emit
from trtalign.core.enums import SensitivityMetric, SensitivityMode, values

NAME = "sensitivity"
HELP = "score how much quantizing each INT8 unit hurts (mAP, output MSE / cosine / SQNR, detection-aware)"
METRICS = values(SensitivityMetric)
MODES = values(SensitivityMode)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config YAML (model, data.val [data.tune], calibration)")
    add_sensitivity_args(parser)
    parser.add_argument("--hard", type=int, default=8, help="images used by --metric det (default 8)")
    parser.add_argument("--workdir", default=None, help="cache folder (default: <outputs.dir>/tuning)")
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
