"""One logger for the package and a progress bar helper. No handler is installed at import time."""

from __future__ import annotations

import logging
import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

LOGGER_NAME = "trtalign"


def get_logger(name: str | None = None) -> logging.Logger:
    """``get_logger(__name__)`` inside the package; children of the single ``trtalign`` logger."""
    if not name or name == LOGGER_NAME:
        return logging.getLogger(LOGGER_NAME)
    if not name.startswith(LOGGER_NAME + "."):
        name = f"{LOGGER_NAME}.{name}"
    return logging.getLogger(name)


def configure_cli_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Called by the CLI only: warnings and above to stderr as ``trtalign: warning: ...``."""
    level = logging.WARNING
    if verbose == 1:
        level = logging.INFO
    elif verbose >= 2:
        level = logging.DEBUG
    if quiet:
        level = logging.ERROR
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    if not any(getattr(h, "_trtalign_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("trtalign: %(levelname)s: %(message)s"))
        handler._trtalign_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


def progress_enabled() -> bool:
    return os.environ.get("TRTALIGN_NO_PROGRESS", "") in ("", "0") and sys.stderr.isatty()


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
             disable: bool | None = None) -> Iterator[T]:
    """A tqdm progress bar on stderr when it is a terminal (or TRTALIGN_PROGRESS=1); plain iteration otherwise."""
    if disable is None:
        disable = not (progress_enabled() or os.environ.get("TRTALIGN_PROGRESS") == "1")
    if disable:
        yield from iterable
        return
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a core dependency, but never fail a run for a progress bar
        yield from iterable
        return
    yield from tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
