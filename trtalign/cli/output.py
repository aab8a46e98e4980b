"""Shared CLI helpers: print a result, write it as JSON (atomically), common arguments."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from trtalign.core.io import atomic_write_json, to_jsonable


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write the result as JSON to FILE ('-' for stdout instead of the text summary)")


def emit(result: Any, args: argparse.Namespace, text: str | None = None) -> None:
    """Print ``text`` (or the JSON) to stdout, and write ``result`` to ``args.json`` when given."""
    path = getattr(args, "json", None)
    if path == "-":
        json.dump(to_jsonable(result), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if text is not None and not getattr(args, "quiet", False):
        print(text)
    if path:
        atomic_write_json(path, result)
