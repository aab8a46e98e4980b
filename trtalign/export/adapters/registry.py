"""The adapter registry: a model family is one module with one ``@register_adapter`` class."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from trtalign.core.errors import InputError, choices_text

#: modules holding the built-in adapters (imported on first use, in this order)
#: (yolov5 first: it claims only .pt files whose pickle references YOLOv5's classes; ultralytics takes other .pt)
BUILTIN_MODULES = ("trtalign.export.adapters.yolov5", "trtalign.export.adapters.ultralytics",
                   "trtalign.export.adapters.onnx_model")

_REGISTRY: list = []
_loaded = False


def register_adapter(cls: type) -> type:
    """Class decorator: make ``cls`` (a ModelAdapter subclass) available to :func:`load_adapter`."""
    if cls not in _REGISTRY:
        _REGISTRY.append(cls)
    return cls


def available_adapters() -> list:
    global _loaded
    if not _loaded:
        for name in BUILTIN_MODULES:
            importlib.import_module(name)
        _loaded = True
    return list(_REGISTRY)


def load_adapter(path: str | os.PathLike, **options: Any) -> Any:
    """Pick the adapter for ``path`` (first whose ``accepts`` is true) and construct it with ``options``.

    Options understood by the built-in adapters: ``layout`` (a ``ModelLayout`` or dict, for plain ONNX files),
    ``repo`` (a YOLOv5 clone, for YOLOv5 checkpoints).
    """
    p = Path(path)
    adapters = available_adapters()
    for cls in adapters:
        if cls.accepts(p, **options):
            return cls(p, **options)
    suffixes = sorted({s for cls in adapters for s in cls.suffixes})
    raise InputError(f"no model adapter reads {p.name!r}: expected a file ending in {choices_text(suffixes)}")
