"""Build the C++/CUDA sources in ``trtalign/plugins/csrc`` with CMake, and load the result explicitly.

``build_plugins(...)`` configures and builds into a cache folder keyed by the sources and the options, copies the
library atomically to ``out_dir`` when given, and returns a :class:`PluginBuild`. Targets (see csrc/CMakeLists.txt):

- ``trtalign_plugins``   ``libtrtalign_plugins.so``, the TensorRT plugin (needs CUDA and TensorRT);
- ``trtalign_csrc_cuda`` the C test API with the CUDA kernels (needs CUDA only);
- ``trtalign_csrc_host`` the C test API on the CPU (needs a C++ compiler only).

Nothing is built or loaded at import time: :func:`load_plugin_library` is the one place a library is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from trtalign.core.errors import DependencyError, EngineError, InputError, choices_text
from trtalign.core.io import atomic_write_bytes
from trtalign.core.logging import get_logger

log = get_logger(__name__)

PLUGIN_NAME = "EfficientRotatedNMS_TRT"
TARGETS = {
    "trtalign_plugins": "libtrtalign_plugins.so",
    "trtalign_plugins_dynamic": "libtrtalign_plugins_dynamic.so",  # for IPluginRegistry::loadLibrary, TensorRT >= 8.6
    "trtalign_csrc_cuda": "libtrtalign_csrc_cuda.so",
    "trtalign_csrc_host": "libtrtalign_csrc_host.so",
}
#: architectures the plugin is meant for: Xavier 72, Turing 75, A100 80, Ampere 86, Orin 87, Ada 89, Hopper 90
DEFAULT_CUDA_ARCHS = ("72", "75", "80", "86", "87", "89", "90")
_ARCH_RE = re.compile(r"^(native|all|all-major|\d{2,3}[af]?(-real|-virtual)?)$")
NVCC_CANDIDATES = ("/usr/local/cuda/bin/nvcc", "/usr/local/cuda-13.0/bin/nvcc", "/usr/local/cuda-12/bin/nvcc")


def csrc_dir() -> Path:
    """The folder with the C++/CUDA sources and CMakeLists.txt (shipped inside the package)."""
    return Path(__file__).resolve().parent / "csrc"


def default_cache_dir() -> Path:
    """``$TRTALIGN_CACHE_DIR/plugins`` or ``~/.cache/trtalign/plugins``."""
    root = os.environ.get("TRTALIGN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "trtalign")
    return Path(root) / "plugins"


def find_nvcc() -> str | None:
    """Path of nvcc: $CUDACXX, then PATH, then the usual CUDA install folders; None when absent."""
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc"), *NVCC_CANDIDATES):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def cuda_include_dir(nvcc: str | None = None) -> Path | None:
    """The CUDA toolkit's include folder (with cuda_runtime_api.h): $CUDA_HOME / $CUDA_PATH, next to nvcc, or
    /usr/local/cuda; None when not found."""
    cands = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = nvcc or find_nvcc()
    if nvcc:
        cands.append(str(Path(nvcc).resolve().parent.parent))
    cands += ["/usr/local/cuda", *sorted(str(p) for p in Path("/usr/local").glob("cuda-*"))]
    for root in cands:
        if root and (Path(root) / "include" / "cuda_runtime_api.h").is_file():
            return Path(root) / "include"
    return None


def nvcc_gpu_archs(nvcc: str) -> list[str]:
    """Compute capabilities the given nvcc can compile for (``nvcc --list-gpu-arch``), e.g. ['75', '80', ...]."""
    proc = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, timeout=60)
    return sorted({m.group(1) for m in re.finditer(r"compute_(\d+)", proc.stdout)}, key=int)


def parse_cuda_archs(spec: str | None) -> list[str] | None:
    """``"72;75,80"`` -> ['72', '75', '80']; ``"native"`` stays; None/'' -> None (CMake's default: native)."""
    if spec is None or not str(spec).strip():
        return None
    items = [s.strip() for s in re.split(r"[;,\s]+", str(spec)) if s.strip()]
    bad = [s for s in items if not _ARCH_RE.match(s)]
    if bad:
        raise InputError(f"--cuda-arch: expected compute capabilities like '72;75;80;86;87;89;90' or 'native', "
                         f"got {choices_text(bad)}")
    return items


@dataclasses.dataclass
class PluginBuild:
    """Where a build put its library and how it was configured."""

    library: Path
    target: str
    build_dir: Path
    cmake_args: list[str]
    cuda_archs: list[str] | None
    trt_root: str | None
    seconds: float
    cached: bool

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["library"] = str(self.library)
        d["build_dir"] = str(self.build_dir)
        return d


def _sources_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(csrc_dir().iterdir()):
        if path.is_file() and path.suffix in (".h", ".cuh", ".cpp", ".cu", ".txt"):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _cmake() -> str:
    cmake = shutil.which("cmake")
    if not cmake:
        raise DependencyError("cmake is not on PATH; install it (apt-get install cmake, or pip install cmake)")
    return cmake


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    log.info("%s: %s", what, " ".join(cmd))
    proc = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise EngineError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")


def build_plugins(target: str = "trtalign_plugins", *, trt_root: str | os.PathLike | None = None,
                  cuda_archs: str | list[str] | None = None, out_dir: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None, jobs: int | None = None) -> PluginBuild:
    """Configure + build ``target`` with CMake in a cache folder; returns where the library is.

    ``cuda_archs``: a list or ``"72;75"`` string (default: CMake's ``native``, the GPUs of this machine).
    ``trt_root``: TensorRT install root (include/, lib/), needed for ``trtalign_plugins`` unless TensorRT is in a
    system location. ``out_dir``: also copy the library there (atomically). Rebuilds only when sources changed.
    """
    if target not in TARGETS:
        raise InputError(f"unknown build target {target!r}; valid: {choices_text(TARGETS)}")
    archs = parse_cuda_archs(";".join(cuda_archs) if isinstance(cuda_archs, (list, tuple)) else cuda_archs)
    if trt_root is not None:
        trt_root = str(Path(trt_root).expanduser().resolve())
        if not Path(trt_root).is_dir():
            raise InputError(f"--trt-root: expected a TensorRT install folder, {trt_root} does not exist")
        if not (Path(trt_root) / "include" / "NvInferVersion.h").is_file():
            raise InputError(f"--trt-root: expected {trt_root}/include/NvInferVersion.h (a TensorRT install root), "
                             "not found")
    args = ["-DCMAKE_BUILD_TYPE=Release"]
    if target == "trtalign_csrc_host":
        args.append("-DTRTALIGN_HOST_ONLY=ON")
    else:
        if find_nvcc() is None:
            raise DependencyError(f"target {target} needs the CUDA compiler (nvcc), not found on PATH, $CUDACXX or "
                                  f"{NVCC_CANDIDATES[0]}; install the CUDA toolkit or set CUDACXX")
        args.append(f"-DCMAKE_CUDA_COMPILER={find_nvcc()}")
        if archs:
            args.append(f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(archs)}")
        if target == "trtalign_csrc_cuda":
            args.append("-DTRTALIGN_BUILD_PLUGIN=OFF")
        elif trt_root:
            args.append(f"-DTENSORRT_ROOT={trt_root}")
    key = hashlib.sha256((_sources_digest() + "\0" + target + "\0" + "\0".join(args)).encode()).hexdigest()[:16]
    build_dir = Path(cache_dir or default_cache_dir()) / f"{target}-{key}"
    library = build_dir / TARGETS[target]
    t0 = time.perf_counter()
    cached = library.is_file()
    if not cached:
        cmake = _cmake()
        build_dir.mkdir(parents=True, exist_ok=True)
        _run([cmake, "-S", str(csrc_dir()), "-B", str(build_dir), *args], build_dir, "cmake configure")
        _run([cmake, "--build", str(build_dir), "--target", target, "-j", str(jobs or os.cpu_count() or 1)],
             build_dir, f"cmake build {target}")
        if not library.is_file():
            raise EngineError(f"cmake build {target} succeeded but {library} is missing")
    if out_dir is not None:
        dest = Path(out_dir) / TARGETS[target]
        atomic_write_bytes(dest, library.read_bytes())
        library = dest
    return PluginBuild(library=library, target=target, build_dir=build_dir, cmake_args=args, cuda_archs=archs,
                       trt_root=trt_root, seconds=round(time.perf_counter() - t0, 3), cached=cached)


def load_plugin_library(path: str | os.PathLike):
    """Load a plugin library so that its creators register with TensorRT: ``ctypes.CDLL(path, RTLD_GLOBAL)``.

    Works on every TensorRT version (call ``trt.init_libnvinfer_plugins(logger, "")`` as well for the built-in ones).
    Returns the CDLL handle; keep it alive while engines use the plugin.
    """
    import ctypes

    from trtalign.plugins.elf import load_library_entry_points

    p = Path(path)
    if not p.is_file():
        raise InputError(f"plugin library {p} does not exist; build it with: trtalign plugins build")
    entry_points = load_library_entry_points(p)
    if entry_points:
        raise InputError(f"{p.name} is built for IPluginRegistry::loadLibrary (exports {', '.join(entry_points)}): "
                         f"opening it registers nothing. Load it with trt.get_plugin_registry().load_library(path) "
                         f"(trtalign's engine builder and runner do), or use libtrtalign_plugins.so here")
    try:
        return ctypes.CDLL(str(p.resolve()), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise EngineError(f"cannot load plugin library {p}: {exc} (is TensorRT's libnvinfer on the loader path?)") \
            from exc
