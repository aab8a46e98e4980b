"""``trtalign calibrate ONNX --images DIR --method M --out ranges.json``: activation ranges for INT8."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from trtalign.cli.args import add_calibration_args, check_outputs, with_example
from trtalign.cli.output import add_json_argument, emit

NAME = "calibrate"
HELP = "run the FP32 ONNX over calibration images and write per-tensor INT8 ranges (and a TensorRT cache)"


@dataclass
class CalibrateResult:
    ranges: str
    method: str
    images: int
    tensors: int
    methods_used: dict = field(default_factory=dict)
    trt_cache: str | None = None
    trt_header: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def summary(self) -> str:
        used = ", ".join(f"{k} {v}" for k, v in sorted(self.methods_used.items()))
        text = f"{self.tensors} tensor ranges ({self.method}: {used}) from {self.images} images -> {self.ranges}"
        if self.trt_cache:
            text += f"\nTensorRT calibration cache ({self.trt_header}) -> {self.trt_cache}"
        return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", help="the FP32 ONNX (raw or end-to-end; NMS is cut off for calibration)")
    add_calibration_args(parser, aliases=True, required=True)
    parser.add_argument("--percentile", type=float, default=99.99, help="for --method percentile (default 99.99)")
    parser.add_argument("--out", required=True, help="ranges.json to write")
    parser.add_argument("--imgsz", type=int, default=None, help="input size when the ONNX input is dynamic")
    parser.add_argument("--cache-dir", default=None,
                        help="keep collected histograms here: resumes an interrupted run, and another --method "
                             "re-uses them without running the model again")
    parser.add_argument("--all-tensors", action="store_true",
                        help="observe every float tensor, not only Q/DQ sites (implied by --trt-cache)")
    parser.add_argument("--nonfinite", choices=("error", "skip"), default="error",
                        help="NaN/inf activations: stop with an error (default) or leave them out of the statistics")
    parser.add_argument("--trt-cache", default=None, metavar="FILE", help="also write a TensorRT calibration cache")
    parser.add_argument("--trt-version", default=None, help="TensorRT version of the cache, e.g. 8.6.1 or 10.3.0")
    parser.add_argument("--trt-algorithm", default=None,
                        help="cache header algorithm (default: MinMaxCalibration for minmax, else "
                             "EntropyCalibration2)")
    add_json_argument(parser)
    with_example(parser, "trtalign calibrate model.onnx --calib calib_images/ --calib-num 512 --out ranges.json "
                         "--trt-cache calib.cache --trt-version 8.6")


def run(args: argparse.Namespace) -> int:
    from collections import Counter

    from trtalign.core.enums import CalibrationMethod
    from trtalign.core.errors import ConfigError, InputError
    from trtalign.export.calib_cache import ALGORITHM_FOR_METHOD, calibration_cache_text, trt_version_code
    from trtalign.export.calibrate import MIN_IMAGES, collect_statistics
    from trtalign.export.ranges import save_ranges
    from trtalign.core.io import atomic_write_text

    check_outputs(args, files=("json", "out", "trt_cache"))
    method = args.calib_method or CalibrationMethod.default().value
    num = 512 if args.calib_num is None else args.calib_num
    if num < MIN_IMAGES:
        raise InputError(f"--calib-num {num}: calibration needs at least {MIN_IMAGES} images (a range from fewer "
                         f"images is mostly noise); use --calib-num {MIN_IMAGES} or more")
    if bool(args.trt_cache) != bool(args.trt_version):
        raise ConfigError("--trt-cache and --trt-version go together: the cache header names the TensorRT version "
                          "(e.g. --trt-cache calib.cache --trt-version 8.6.1)")
    algorithm = args.trt_algorithm or ALGORITHM_FOR_METHOD.get(method, "EntropyCalibration2")
    if args.trt_version:
        trt_version_code(args.trt_version)  # fail before the long run
    scope = "all" if (args.all_tensors or args.trt_cache) else "qdq"
    data = collect_statistics(args.onnx, args.calib, num=num, imgsz=args.imgsz, cache_dir=args.cache_dir,
                              scope=scope, on_nonfinite=args.nonfinite)
    ranges = data.ranges(method, args.percentile)
    cache_text = calibration_cache_text(ranges, args.trt_version, algorithm) if args.trt_cache else None
    save_ranges(ranges, args.out)
    if cache_text is not None:
        atomic_write_text(args.trt_cache, cache_text)
    result = CalibrateResult(ranges=str(args.out), method=method, images=len(data.images),
                             tensors=len(ranges.tensors),
                             methods_used=dict(Counter(r.method for r in ranges.tensors.values())),
                             trt_cache=args.trt_cache, trt_header=cache_text.splitlines()[0] if cache_text else None)
    emit(result, args, result.summary())
    return 0
