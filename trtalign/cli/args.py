"""Shared argument groups: one per concern, so the same thing has the same flag in every subcommand.

=============  =====================================================================================================
group          flags
=============  =====================================================================================================
model          ``--imgsz``
data           ``--data``, ``--split``, ``--format``, ``--max-images``
NMS            ``--conf``, ``--iou``, ``--max-det``, ``--class-agnostic``
calibration    ``--calib DIR``, ``--calib-num N``, ``--calib-method M`` (core.enums.CalibrationMethod; default minmax)
precision      ``--precision P[,P...]`` (repeatable; core.enums.Precision)
TensorRT       ``--trt-version``, ``--plugin LIB`` (repeatable)
output         ``--json FILE`` (checked before any work), ``--out``
=============  =====================================================================================================

Old spellings stay as hidden aliases where the README or the tests use them (``--precisions``, ``--score-threshold``,
``--iou-threshold``, ``calibrate --images/--num/--method``, ``inspect --plugins``, ``demo --images/--calib-images``).
Defaults are None where a config file may supply the value; the command resolves config and defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from trtalign.core.enums import (CalibrationMethod, FallbackTarget, Precision, SensitivityMetric, SensitivityMode,
                                 values)
from trtalign.core.errors import ConfigError, InputError, choices_text

HIDDEN = argparse.SUPPRESS


def with_example(parser: argparse.ArgumentParser, *examples: str) -> None:
    """Append ``example:`` lines to a subcommand's ``--help``."""
    parser.epilog = "example:\n" + "\n".join(f"  {e}" for e in examples)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--imgsz", type=int, default=None,
                   help="input size (default: the size the model was trained at when the file records it, else 640; "
                        "an exported ONNX has its own)")


def add_data_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--data", default=None, required=required,
                   help="dataset: COCO json or folder, ultralytics data.yaml or folder, DOTA folder")
    g.add_argument("--split", default="val", help="dataset split (default: val)")
    g.add_argument("--format", dest="data_format", default="auto", choices=["auto", "coco", "yolo", "dota"],
                   help="dataset format (default: auto)")
    g.add_argument("--max-images", type=int, default=None, help="use only the first N images")


def add_nms_args(parser: argparse.ArgumentParser, note: str = "") -> None:
    g = parser.add_argument_group("NMS", note or None)
    g.add_argument("--conf", type=float, default=None, help="NMS score threshold (default 0.001)")
    g.add_argument("--score-threshold", dest="conf", type=float, default=None, help=HIDDEN)
    g.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (default 0.7)")
    g.add_argument("--iou-threshold", dest="iou", type=float, default=None, help=HIDDEN)
    g.add_argument("--max-det", type=int, default=None, help="detections kept per image (default 300)")
    g.add_argument("--class-agnostic", action="store_true", default=None, help="NMS across classes")


def add_calibration_args(parser: argparse.ArgumentParser, aliases: bool = False, required: bool = False) -> None:
    """``--calib DIR --calib-num N --calib-method M``; ``aliases``: also ``--images / --num / --method`` (calibrate)."""
    g = parser.add_argument_group("calibration")
    calib = ["--calib"] + (["--images"] if aliases else [])
    num = ["--calib-num"] + (["--num"] if aliases else [])
    method = ["--calib-method"] + (["--method"] if aliases else [])
    g.add_argument(*calib, dest="calib", metavar="DIR", default=None, required=required,
                   help="calibration images folder")
    g.add_argument(*num, dest="calib_num", type=int, default=None, metavar="N",
                   help="calibration images used at most (minimum 8)")
    g.add_argument(*method, dest="calib_method", choices=values(CalibrationMethod), default=None,
                   help=f"how each tensor's range is chosen (default {CalibrationMethod.default().value}: entropy "
                        f"clips YOLO class scores, see the README)")


def add_precision_args(parser: argparse.ArgumentParser, allowed: Sequence[str] = values(Precision),
                       what: str = "precisions to run") -> None:
    g = parser.add_argument_group("precision")
    g.add_argument("--precision", dest="precision", action="append", default=None, metavar="P[,P...]",
                   help=f"{what}: {', '.join(allowed)} (comma-separated or repeated)")
    g.add_argument("--precisions", dest="precision", action="append", default=None, help=HIDDEN)
    parser.set_defaults(_precisions_allowed=tuple(allowed))


def precisions(args: argparse.Namespace) -> list[str] | None:
    """The ``--precision`` values as one list (None when not given); unknown values are a ConfigError."""
    if not args.precision:
        return None
    allowed = getattr(args, "_precisions_allowed", values(Precision))
    out: list[str] = []
    for item in args.precision:
        for p in (v.strip().lower() for v in item.split(",")):
            if p and p not in out:
                out.append(p)
    bad = [p for p in out if p not in allowed and p.split("-")[-1].removesuffix("sim") not in allowed]
    if bad or not out:
        raise ConfigError(f"invalid precision {bad[0] if bad else ''!r}; valid choices: {choices_text(allowed)}")
    return out


def add_trt_args(parser: argparse.ArgumentParser, version: bool = True) -> None:
    g = parser.add_argument_group("TensorRT")
    if version:
        g.add_argument("--trt-version", default=None,
                       help="target TensorRT version, e.g. 8.6, 10.3, 11.4 ('auto' = the installed one)")
    g.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="LIB",
                   help="TensorRT plugin library to load (repeatable; from `trtalign plugins build`)")
    g.add_argument("--plugins", dest="plugins", action="append", help=HIDDEN)


def add_sensitivity_args(parser: argparse.ArgumentParser) -> None:
    """How units are scored and where trial plans run (``trtalign sensitivity`` and ``trtalign fallback``); every
    default is the config's ``fallback.*``."""
    g = parser.add_argument_group("sensitivity")
    g.add_argument("--metric", choices=values(SensitivityMetric), default=None,
                   help="map: mAP on the subset; mse / cosine / sqnr: of the raw head output0 vs FP32; det: "
                        "class-score and box errors on the images where full INT8 errs most; scorebox: class-score "
                        "noise ratio + box error relative to box size (default: the config's fallback.metric)")
    g.add_argument("--mode", choices=values(SensitivityMode), default=None,
                   help="disable-one: start from the INT8 plan and restore one unit; enable-one: start float and "
                        "quantize one unit (default: the config's fallback.mode)")
    g.add_argument("--subset", type=int, default=None,
                   help="tuning images to score on (default: the config's fallback.subset)")
    g.add_argument("--local", action="store_true",
                   help="mse / cosine / sqnr of each unit's own output from ONE FP32 pass (fake-quantized input and "
                        "weights); cheapest, ignores error propagation")
    g.add_argument("--target", choices=values(FallbackTarget), default=None,
                   help="precision of the units kept out of INT8 (default: the config's fallback.target)")
    g.add_argument("--backend", choices=("ort", "trt"), default="ort",
                   help="ort: ONNX Runtime INT8 emulation of each plan's Q/DQ ONNX (default); trt: a TensorRT INT8 "
                        "engine per plan (needs TensorRT and a GPU)")


def check_output_file(value: str | None, flag: str) -> None:
    """InputError (before any work) when an output file path is an existing folder or its parent is a file."""
    if not value or value == "-":
        return
    path = Path(value)
    if path.is_dir():
        raise InputError(f"{flag} {value} is a folder; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"{flag} {value}: {parent} is a file, not a folder")


def check_output_folder(value: str | None, flag: str) -> None:
    if value and Path(value).exists() and not Path(value).is_dir():
        raise InputError(f"{flag} {value} is a file; give a folder")


def check_outputs(args: argparse.Namespace, files: Sequence[str] = ("json",), folders: Sequence[str] = ()) -> None:
    """Check every output path of a command before it starts working (``--json`` and the given attributes)."""
    for name in files:
        check_output_file(getattr(args, name, None), "--" + name.replace("_", "-"))
    for name in folders:
        check_output_folder(getattr(args, name, None), "--" + name.replace("_", "-"))
