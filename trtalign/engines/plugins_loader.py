"""Load TensorRT plugin libraries explicitly, before parsing or deserialising (never at import time).

Every version: ``ctypes.CDLL(path, RTLD_GLOBAL)`` (the library's static initialisers register its creators) and
``trt.init_libnvinfer_plugins(logger, "")`` (NVIDIA's own plugins, EfficientNMS_TRT among them). On 8.6+ the library is
also handed to ``get_plugin_registry().load_library`` so that its IPluginV3 / ``getCreators`` entry point is used and
version-compatible engines can serialise it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any, Iterable

from trtalign.core.errors import InputError
from trtalign.core.logging import get_logger
from trtalign.engines.versions import TrtVersion, capabilities

log = get_logger(__name__)

_LOADED: dict[str, Any] = {}  # path -> ctypes handle (keeps libraries alive for the process)


def check_plugin_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every path must be an existing file; a missing one is an InputError that says how to build ours."""
    out = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            raise InputError(f"plugin library not found: {path}; build trtalign's with `trtalign plugins build` "
                             f"(it writes libtrtalign_plugins.so) or fix trt.plugins in the config")
        out.append(path.resolve())
    return out


def load_plugin_libraries(trt: Any, logger: Any, paths: Iterable[str | os.PathLike] = (),
                          cdll: Any = None) -> list[str]:
    """Register NVIDIA's plugins and load ``paths``; returns how each was loaded. ``trt`` is the tensorrt module.

    8.6+: ``get_plugin_registry().load_library(path)``, falling back to ``ctypes.CDLL`` when the library has no
    ``getCreators`` entry point; 8.5: ``ctypes.CDLL(path, RTLD_GLOBAL)``. ``cdll`` replaces ctypes.CDLL in tests.
    """
    libs = check_plugin_paths(paths)
    caps = capabilities(TrtVersion.parse(trt.__version__))
    cdll = cdll or ctypes.CDLL
    trt.init_libnvinfer_plugins(logger, "")
    how = []
    for lib in libs:
        key = str(lib)
        if key in _LOADED:
            how.append(f"{key} (already loaded)")
            continue
        if caps.has("load_library"):
            try:
                handle = trt.get_plugin_registry().load_library(key)
            except Exception as exc:  # noqa: BLE001 - a library without getCreators: use its static registration
                log.debug("IPluginRegistry.load_library(%s) failed (%s); falling back to ctypes", key, exc)
                handle = None
            if handle is not None:
                _LOADED[key] = handle
                how.append(f"{key} (load_library)")
                continue
        try:
            _LOADED[key] = cdll(key, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise InputError(f"cannot load plugin library {lib}: {exc} (built for another CUDA / TensorRT? rebuild it "
                             f"with `trtalign plugins build`)") from None
        how.append(f"{key} (ctypes RTLD_GLOBAL)")
    return how


def forget_loaded() -> None:
    """Tests only: forget which libraries this process loaded."""
    _LOADED.clear()
