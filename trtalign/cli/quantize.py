"""``trtalign quantize ONNX --ranges ranges.json --out model.qdq.onnx``: TensorRT-style Q/DQ from a plan of units."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from trtalign.cli.args import check_outputs, with_example
from trtalign.cli.output import add_json_argument, emit

NAME = "quantize"
HELP = "insert TensorRT-style Q/DQ (INT8) into an ONNX from calibrated ranges and a plan of quantization units"


@dataclass
class QuantizeResult:
    units: list
    plan: dict
    int8_mac_fraction: float
    out: str | None = None
    qdq: dict = field(default_factory=dict)
    excluded: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def summary(self, list_units: bool) -> str:
        lines = []
        if list_units:
            lines.append(f"{'unit':44s} {'kind':7s} {'role':12s} {'MACs':>12s}  precision")
            for u in self.units:
                lines.append(f"{u['name']:44s} {u['kind']:7s} {u['role']:12s} {u['macs']:12d}  {self.plan[u['name']]}")
        n8 = sum(1 for p in self.plan.values() if p == "int8")
        lines.append(f"{n8}/{len(self.plan)} units INT8, {100 * self.int8_mac_fraction:.1f}% of conv MACs INT8")
        if self.out:
            lines.append(f"{self.qdq.get('activation_qdq', 0)} activation + {self.qdq.get('weight_qdq', 0)} weight "
                         f"Q/DQ pairs ({self.qdq.get('mode')}) -> {self.out}")
        return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", help="the FP32 ONNX")
    parser.add_argument("--ranges", default=None, help="ranges.json from `trtalign calibrate`")
    parser.add_argument("--plan", default=None, help="plan.json: unit -> int8|fp16|fp32 (default: all INT8 but the "
                                                     "head's last convs)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="PATTERN",
                        help="keep units matching these patterns (unit or node names, fnmatch) out of INT8")
    parser.add_argument("--head", choices=("int8", "fp16", "fp32"), default="fp16",
                        help="precision of the head's last weighted ops in the default plan (default fp16)")
    parser.add_argument("--naive", action="store_true",
                        help="Q/DQ on every conv and Concat input, head included (to show why not)")
    parser.add_argument("--out", default=None, help="the Q/DQ ONNX to write")
    parser.add_argument("--save-plan", default=None, metavar="FILE", help="write the plan used to FILE")
    parser.add_argument("--list-units", action="store_true", help="print every unit with its MACs and precision")
    parser.add_argument("--allow-other-model", action="store_true",
                        help="accept ranges calibrated on another file (e.g. a re-export of the same network): "
                             "without it, ranges whose recorded model sha256 differs are an error")
    add_json_argument(parser)
    with_example(parser, "trtalign quantize model.onnx --ranges ranges.json --out model.qdq.onnx --save-plan plan.json")


def run(args: argparse.Namespace) -> int:
    from trtalign.core.errors import ConfigError
    from trtalign.core.io import atomic_write_bytes, sha256_file
    from trtalign.export.qdq import insert_qdq
    from trtalign.export.ranges import load_ranges
    from trtalign.export.units import (analyze_graph, apply_excludes, default_plan, int8_mac_fraction, load_model,
                                       load_plan, save_plan)

    if args.naive and (args.plan or args.exclude):
        raise ConfigError("--naive ignores plans: drop --plan/--exclude, or drop --naive")
    if not args.list_units and not (args.out and args.ranges):
        raise ConfigError("quantize needs --ranges and --out (or --list-units to only list the units)")
    check_outputs(args, files=("json", "out", "save_plan"))
    ranges = load_ranges(args.ranges) if args.ranges else None  # a bad file fails before any work
    model = load_model(args.onnx)
    units = analyze_graph(model).units
    sha = sha256_file(args.onnx)
    plan = load_plan(args.plan, units) if args.plan else default_plan(units, args.head, model_sha256=sha)
    excluded: list = []
    if args.exclude:
        plan, excluded = apply_excludes(plan, args.exclude, units)
    if args.naive:
        plan.units = {u.name: "int8" for u in units}
    result = QuantizeResult(units=[u.to_dict() for u in units], plan=dict(plan.units),
                            int8_mac_fraction=int8_mac_fraction(units, plan), excluded=excluded)
    if args.out:
        _check_same_model(ranges, args.onnx, sha, args.allow_other_model)
        out, qdq = insert_qdq(model, ranges, None if args.naive else plan, "naive" if args.naive else "trt")
        data = out.SerializeToString()
        if args.save_plan and not args.naive:
            save_plan(plan, args.save_plan)
        atomic_write_bytes(args.out, data)
        result.out = str(args.out)
        result.qdq = qdq.to_dict()
        result.qdq.pop("plan", None)
    elif args.save_plan:
        save_plan(plan, args.save_plan)
    emit(result, args, result.summary(args.list_units))
    return 0


def _check_same_model(ranges, onnx: str, sha: str, allow: bool) -> None:
    """Ranges record the sha256 of the ONNX they were calibrated on: another file is an error unless allowed (two
    networks with the same layer names, e.g. the detect and OBB proxies, would otherwise quantize silently)."""
    from trtalign.core.errors import InputError
    from trtalign.core.logging import get_logger

    if not ranges.model_sha256 or ranges.model_sha256 == sha:
        return
    text = (f"the ranges were calibrated on {ranges.model_file or 'another model'} (sha256 {ranges.model_sha256[:12]}), "
            f"not on {onnx} (sha256 {sha[:12]})")
    if not allow:
        raise InputError(f"{text}; run `trtalign calibrate {onnx}`, or pass --allow-other-model if this file is a "
                         f"re-export of the same network")
    get_logger(__name__).warning("%s; using them (--allow-other-model)", text)
