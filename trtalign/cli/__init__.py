"""The ``trtalign`` command. Each subcommand lives in its own module under ``trtalign.cli`` and exposes

    NAME: str                 the subcommand name
    HELP: str                 one line for ``trtalign --help``
    add_arguments(parser)     fills an argparse parser
    run(args) -> int          does the work (heavy imports go inside), returns the exit code

Any :class:`trtalign.core.errors.TrtalignError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from trtalign import __version__
from trtalign.core.errors import TrtalignError

#: subcommand modules (trtalign.cli.<module>), in --help order. A module that does not exist yet is skipped.
COMMAND_MODULES = [
    "demo",
    "data",
    "export",
    "align",
    "calibrate",
    "quantize",
    "build",
    "eval_cmd",
    "sensitivity",
    "fallback",
    "inspect_cmd",
    "plugins_cmd",
    "serve_cmd",
    "triton_export",
]


def _load_commands() -> list:
    mods = []
    for name in COMMAND_MODULES:
        try:
            mods.append(importlib.import_module(f"trtalign.cli.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"trtalign.cli.{name}":
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trtalign",
        description="Take a YOLO detector from PyTorch to TensorRT and measure what each step costs in accuracy.",
    )
    parser.add_argument("--version", action="version", version=f"trtalign {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _load_commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from trtalign.core.logging import configure_cli_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    configure_cli_logging(args.verbose, args.quiet)
    try:
        return int(args._run(args) or 0)
    except TrtalignError as exc:
        msg = str(exc).strip().replace("\n", " ")
        print(f"trtalign {args.command}: error: {msg}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"trtalign {args.command}: interrupted", file=sys.stderr)
        return 130


def entry() -> None:  # console_scripts entry point
    sys.exit(main())
