"""``trtalign data synth``: draw a deterministic synthetic detection dataset (axis-aligned or rotated boxes)."""

from __future__ import annotations

import argparse
import dataclasses

from trtalign.cli.output import add_json_argument, emit
from trtalign.core.errors import ConfigError, InputError, choices_text

NAME = "data"
HELP = "datasets: draw the synthetic proxy dataset (trtalign data synth)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    p = sub.add_parser("synth", help="draw a deterministic synthetic dataset (COCO json, YOLO/OBB txt, data.yaml)",
                       description="Draw a deterministic synthetic detection dataset: same arguments, same bytes.")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (new, empty or an earlier synth)")
    p.add_argument("--task", default="detect", choices=["detect", "obb"], help="axis-aligned or rotated boxes")
    p.add_argument("--train", type=int, default=0, metavar="N", help="train images (default 0)")
    p.add_argument("--val", type=int, default=100, metavar="M", help="val images (default 100)")
    p.add_argument("--imgsz", type=int, default=320, metavar="S", help="square image side in px (default 320)")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="seed (default 0)")
    p.add_argument("--workers", type=int, default=1, metavar="W",
                   help="processes that render (default 1); the files do not depend on it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a generator parameter (see trtalign.data.synth.SynthParams), repeatable")
    add_json_argument(p)
    p.epilog = "example:\n  trtalign data synth --out synth_ds --task obb --train 200 --val 100 --imgsz 320"
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "example:\n  trtalign data synth --out synth_ds --val 100"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _overrides(items: list[str]) -> dict:
    from trtalign.data.synth import SynthParams

    fields = {f.name: f for f in dataclasses.fields(SynthParams)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in fields or key in ("task", "imgsz"):
            valid = sorted(k for k in fields if k not in ("task", "imgsz"))
            raise ConfigError(f"--set: unknown parameter {key!r}; valid: {choices_text(valid)}")
        kind = type(getattr(SynthParams(), key))
        try:
            out[key] = kind(value)
        except ValueError as exc:
            raise InputError(f"--set {key}: expected a {kind.__name__}, got {value!r}") from exc
    return out


def run(args: argparse.Namespace) -> int:
    if getattr(args, "data_command", None) != "synth":
        raise InputError("trtalign data needs an action; valid: 'synth'")
    from trtalign.data.synth import SynthParams, generate_dataset

    params = SynthParams(task=args.task, imgsz=args.imgsz, **_overrides(args.set))
    result = generate_dataset(args.out, params, train=args.train, val=args.val, seed=args.seed,
                              show_progress=None, workers=args.workers)
    counts = ", ".join(f"{k} {v} images / {result.instances[k]} objects" for k, v in result.counts.items())
    text = (f"wrote {params.task} dataset to {result.out}: {counts}; {result.seconds:.1f} s "
            f"({result.images_per_second:.0f} images/s)\n  data.yaml: {result.data_yaml}\n  COCO: "
            + ", ".join(str(p) for p in result.coco.values()))
    emit(result, args, text)
    return 0
