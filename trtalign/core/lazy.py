"""Lazy imports of optional heavy dependencies with an actionable error.

``trt = lazy_import("tensorrt", extra="trt")`` returns a proxy; the real import happens on first attribute access and a
missing module raises :class:`DependencyError` naming the pip extra that provides it.
"""

from __future__ import annotations

import importlib
import importlib.util
import types
from typing import Any

from trtalign.core.errors import DependencyError

#: module name -> extra that installs it
EXTRAS = {
    "tensorrt": "trt",
    "pycuda": "trt",
    "cuda": "trt",
    "torch": "ultralytics",
    "torchvision": "ultralytics",
    "ultralytics": "ultralytics",
    "tritonclient": "serve",
    "onnxruntime_extensions": "core",
}


def install_hint(module: str, extra: str | None = None) -> str:
    extra = extra or EXTRAS.get(module.split(".")[0])
    if extra and extra != "core":
        return f"pip install 'trtalign[{extra}]'"
    return f"pip install {module.split('.')[0]}"


def require(module: str, extra: str | None = None, purpose: str | None = None) -> types.ModuleType:
    """Import ``module`` now, or raise DependencyError with the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # ModuleNotFoundError and broken installs alike
        what = f" (needed for {purpose})" if purpose else ""
        raise DependencyError(f"optional dependency '{module}' is not importable{what}: {exc}; install it with: "
                              f"{install_hint(module, extra)}") from exc


def available(module: str) -> bool:
    """True if ``module`` can be found (without importing it). Broken installs still count as available here."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class LazyModule(types.ModuleType):
    """A module proxy that imports on first attribute access."""

    def __init__(self, name: str, extra: str | None = None):
        super().__init__(name)
        self._lazy_name = name
        self._lazy_extra = extra
        self._lazy_module: types.ModuleType | None = None

    def _load(self) -> types.ModuleType:
        if self._lazy_module is None:
            self._lazy_module = require(self._lazy_name, self._lazy_extra)
        return self._lazy_module

    def __getattr__(self, item: str) -> Any:
        if item.startswith("_lazy_"):
            raise AttributeError(item)
        return getattr(self._load(), item)


def lazy_import(name: str, extra: str | None = None) -> Any:
    """Return a proxy for ``name`` that imports it on first use."""
    return LazyModule(name, extra)
