"""The ``trtalign`` command. Each subcommand lives in its own module under ``trtalign.cli`` and exposes

    NAME: str                 the subcommand name
    HELP: str                 one line for ``trtalign --help``
    add_arguments(parser)     fills an argparse parser
    run(args) -> int          does the work (heavy imports go inside), returns the exit code

Any :class:`trtalign.core.errors.TrtalignError` becomes one line on stderr and exit code 2.

Ctrl-C (SIGINT) and SIGTERM stop every command with exit code 130 and one line on stderr (``serve`` installs its own
handlers and shuts down gracefully). The interrupt is raised as KeyboardInterrupt only where unwinding is safe: never
inside Python code that C++ called back (ONNX Runtime custom ops run the reference NMS in Python; a KeyboardInterrupt
there becomes a C++ exception that aborts the process with ``terminate called after throwing ...
pybind11::error_already_set``). There the interrupt is deferred and re-checked every few milliseconds until the
callback has returned. Files are written atomically (``trtalign.core.io``), so unwinding leaves no half-written file.

The CLI also keeps the run offline by default: ``YOLO_OFFLINE=1`` (ultralytics' online check looks up public DNS
servers) unless the user set it, and ONNX Runtime's telemetry events off.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import sys
import threading
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
    "qat",
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


#: top-level packages whose C++ code calls back into Python: an exception raised in such a callback cannot unwind
#: through the C++ frames (onnxruntime_extensions runs our PyOp custom ops; onnxruntime's session calls them)
_NATIVE_CALLERS = ("onnxruntime_extensions", "onnxruntime")
#: seconds between checks while an interrupt waits for a native callback to return
_DEFER_S = 0.01


def _inside_native_callback(frame) -> bool:
    """True if ``frame`` (the Python code running when the signal arrived) was called, directly or not, from a package
    whose C++ code calls Python back. The innermost frame itself may belong to onnxruntime's Python wrapper: raising
    there is safe, it has not entered C++ yet (or has returned)."""
    innermost = True
    while frame is not None:
        package = str(frame.f_globals.get("__name__", "")).split(".")[0]
        if package == _NATIVE_CALLERS[0] or (package in _NATIVE_CALLERS and not innermost):
            return True
        innermost = False
        frame = frame.f_back
    return False


class _Interrupts:
    """SIGINT and SIGTERM as a KeyboardInterrupt raised in the main thread, at a point where unwinding is safe."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> "_Interrupts":
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread (main() called from a worker thread)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        self._previous[signal.SIGALRM] = signal.getsignal(signal.SIGALRM)  # the deferral timer's, restored after
        return self

    def uninstall(self) -> None:
        if self._previous:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def ignore_further(self) -> None:
        """The command is over and the process exits next: ignore SIGINT / SIGTERM from now on."""
        if self._previous:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "SIGINT"

    def _on_signal(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
        self._raise_when_safe(frame)

    def _on_retry(self, signum, frame) -> None:
        self._raise_when_safe(frame)

    def _raise_when_safe(self, frame) -> None:
        if _inside_native_callback(frame):
            signal.signal(signal.SIGALRM, self._on_retry)
            signal.setitimer(signal.ITIMER_REAL, _DEFER_S)
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        raise KeyboardInterrupt(self.name)


def _offline_defaults() -> None:
    """No network look-ups unless the user asks: ultralytics' online check and ONNX Runtime's telemetry."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        disable = getattr(onnxruntime, "disable_telemetry_events", None)
        if disable is not None:
            disable()


def main(argv: Sequence[str] | None = None, *, process_exit: bool = False) -> int:
    """Run ``trtalign`` with ``argv``; returns the exit code (0 ok, 2 user error, 130 interrupted).

    ``process_exit``: the process ends right after (the console entry point): once the command is done, further
    SIGINT / SIGTERM are ignored instead of restoring Python's handler, so a signal that arrives between the end of
    the work and the exit cannot kill the process with a signal status (or a traceback) after a complete run."""
    interrupts = _Interrupts().install()
    command = "trtalign"
    try:
        from trtalign.core.logging import configure_cli_logging

        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        command = f"trtalign {args.command}"
        configure_cli_logging(args.verbose, args.quiet)
        _offline_defaults()
        return int(args._run(args) or 0)
    except TrtalignError as exc:
        msg = str(exc).strip().replace("\n", " ")
        print(f"{command}: error: {msg}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{command}: interrupted ({interrupts.name})", file=sys.stderr)
        return 130
    finally:
        if process_exit:
            interrupts.ignore_further()
        else:
            interrupts.uninstall()


def entry() -> None:  # console_scripts entry point
    try:
        code = main(process_exit=True)
    except KeyboardInterrupt:  # a signal while an error line was being printed: still one line, exit 130
        print("trtalign: interrupted", file=sys.stderr)
        code = 130
    if code == 130:
        # stop now: no atexit hooks or finalizers of half-torn-down native libraries (ONNX Runtime, torch) that could
        # still print or abort after the one-line message
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)
