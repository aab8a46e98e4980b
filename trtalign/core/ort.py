"""ONNX Runtime sessions, built one way for every caller (runners, calibration, trial-plan models).

``ort_session(model)`` -> ``onnxruntime.InferenceSession`` on the CPU provider with trtalign's settings: intra-op
threads from ``$TRTALIGN_ORT_THREADS`` (unless the caller passes ``threads``), ONNX Runtime's own log quiet below
errors. ``onnxruntime`` is imported when a session is made, never at module import.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from trtalign.core.errors import InputError

THREADS_ENV = "TRTALIGN_ORT_THREADS"
_ENV = object()  # "read the threads from the environment"


def ort_threads() -> int | None:
    """``$TRTALIGN_ORT_THREADS``: ONNX Runtime intra-op threads per session (unset: ONNX Runtime's default, one per
    physical core). Set it to 1 to run several evaluations side by side without oversubscribing the CPU."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    try:
        threads = int(value)
    except ValueError:
        threads = -1
    if threads < 1:
        raise InputError(f"${THREADS_ENV} must be a positive integer (threads per ONNX Runtime session), got {value!r}")
    return threads


def ort_session(model: "bytes | Any", options: Any = None, threads: "int | None | object" = _ENV,
                providers: Sequence[str] = ("CPUExecutionProvider",), quiet: bool = True) -> Any:
    """An InferenceSession for ``model`` (serialized bytes or a ModelProto).

    Args:
        options: ``onnxruntime.SessionOptions`` to start from (e.g. with custom-op libraries registered).
        threads: intra-op threads; default ``$TRTALIGN_ORT_THREADS`` (None: ONNX Runtime's default).
        providers: execution providers. quiet: ONNX Runtime logs errors only.

    Raises:
        InputError for a bad ``$TRTALIGN_ORT_THREADS``; ONNX Runtime's own exceptions for a model it refuses.
    """
    from trtalign.core.lazy import require

    ort = require("onnxruntime", purpose="ONNX Runtime inference")
    count = ort_threads() if threads is _ENV else threads
    opts = options if options is not None else ort.SessionOptions()
    if count is not None:
        opts.intra_op_num_threads = int(count)
    if quiet:
        opts.log_severity_level = 3
    data = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
    return ort.InferenceSession(bytes(data), sess_options=opts, providers=list(providers))
