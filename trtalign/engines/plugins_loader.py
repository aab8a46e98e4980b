"""Load TensorRT plugin libraries explicitly, before parsing or deserialising (never at import time).

``trt.init_libnvinfer_plugins(logger, "")`` registers NVIDIA's own plugins (EfficientNMS_TRT among them). A library
then loads one of two ways, decided from its exported symbols *before* it is opened (``plugins.elf``):

- it exports ``getCreators`` / ``getPluginCreators`` (``libtrtalign_plugins_dynamic.so``) and TensorRT is 8.6+:
  ``get_plugin_registry().load_library(path)`` registers what those return;
- otherwise (``libtrtalign_plugins.so``, most third-party plugin libraries, TensorRT 8.5): ``ctypes.CDLL(path,
  RTLD_GLOBAL)``, whose static initialisers register the creators.

``load_library`` is never tried on a self-registering library: opening it registers its creators, loadLibrary then
fails on the duplicates and may close it again, leaving the registry pointing into an unloaded library.
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

    8.6+ and the library exports a loadLibrary entry point: ``get_plugin_registry().load_library(path)``; else
    ``ctypes.CDLL(path, RTLD_GLOBAL)`` (see the module docstring). ``cdll`` replaces ctypes.CDLL in tests.
    """
    from trtalign.plugins.elf import load_library_entry_points

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
        entry_points = load_library_entry_points(lib)
        if entry_points:
            if not caps.has("load_library"):
                raise InputError(f"{lib.name} is built for IPluginRegistry::loadLibrary (exports "
                                 f"{', '.join(entry_points)}), which TensorRT {trt.__version__} lacks; load the "
                                 f"self-registering libtrtalign_plugins.so instead")
            try:
                handle = trt.get_plugin_registry().load_library(key)
            except Exception as exc:  # noqa: BLE001 - TensorRT raises plain RuntimeError/TypeError
                raise InputError(f"TensorRT could not load plugin library {lib} ({exc}); built for another CUDA / "
                                 f"TensorRT, or already loaded under another path?") from None
            if handle is None:
                raise InputError(f"TensorRT refused plugin library {lib} (IPluginRegistry.load_library returned "
                                 f"nothing: a creator it exports is already registered, or it was built for "
                                 f"another TensorRT); see the TensorRT log above")
            _LOADED[key] = handle
            how.append(f"{key} (load_library: {', '.join(entry_points)})")
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
