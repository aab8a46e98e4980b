"""``trtalign plugins build|info``: build the EfficientRotatedNMS_TRT plugin library on this machine, or show the
toolchain it would use."""

from __future__ import annotations

import argparse
import os
import shutil

from trtalign.cli.output import add_json_argument, emit
from trtalign.core.errors import InputError

NAME = "plugins"
HELP = "TensorRT plugins: build libtrtalign_plugins.so (EfficientRotatedNMS_TRT) here, or show the toolchain"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trtalign.plugins.build import DEFAULT_CUDA_ARCHS, TARGETS

    sub = parser.add_subparsers(dest="plugins_command", metavar="ACTION")
    b = sub.add_parser("build", help="configure + build with CMake and print where the library is",
                       description="Build the plugin sources (trtalign/plugins/csrc) with CMake into a cache folder "
                                   "and print the path of the library.")
    b.add_argument("--trt-root", metavar="DIR", default=None,
                   help="TensorRT install root with include/ and lib/ (default: $TENSORRT_ROOT or system locations)")
    b.add_argument("--cuda-arch", metavar="LIST", default=None,
                   help="compute capabilities, e.g. '87' (Orin) or '" + ";".join(DEFAULT_CUDA_ARCHS) + "' "
                        "(default: native = the GPUs of this machine)")
    b.add_argument("--out", metavar="DIR", default=None, help="also copy the library into DIR")
    b.add_argument("--target", default="trtalign_plugins", choices=list(TARGETS),
                   help="what to build (default: the TensorRT plugin)")
    b.add_argument("--cache-dir", metavar="DIR", default=None, help="build folder root (default ~/.cache/trtalign)")
    add_json_argument(b)
    i = sub.add_parser("info", help="show the sources, compilers and CUDA architectures a build would use")
    add_json_argument(i)
    for p, example in ((parser, "trtalign plugins build --cuda-arch 87 --out plugins/"),
                       (b, "trtalign plugins build --cuda-arch 87 --out plugins/"), (i, "trtalign plugins info")):
        p.epilog = f"example:\n  {example}"
        p.formatter_class = argparse.RawDescriptionHelpFormatter


def _info() -> dict:
    import subprocess

    from trtalign.core.lazy import available
    from trtalign.plugins.build import (DEFAULT_CUDA_ARCHS, PLUGIN_NAME, csrc_dir, default_cache_dir, find_nvcc,
                                        nvcc_gpu_archs)

    nvcc = find_nvcc()
    nvcc_version = None
    nvcc_archs: list[str] = []
    if nvcc:
        proc = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
        nvcc_version = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else None
        nvcc_archs = nvcc_gpu_archs(nvcc)
    cache = default_cache_dir()
    builds = sorted(str(p) for p in cache.glob("*/*.so")) if cache.is_dir() else []
    return {
        "plugin": PLUGIN_NAME,
        "plugin_version": "1",
        "sources": str(csrc_dir()),
        "cmake": shutil.which("cmake"),
        "cxx": shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++"),
        "nvcc": nvcc,
        "nvcc_version": nvcc_version,
        "nvcc_archs": nvcc_archs,
        "target_archs": list(DEFAULT_CUDA_ARCHS),
        "target_archs_missing_in_nvcc": [a for a in DEFAULT_CUDA_ARCHS if nvcc and a not in nvcc_archs],
        "tensorrt_root_env": os.environ.get("TENSORRT_ROOT"),
        "tensorrt_python": available("tensorrt"),
        "cache_dir": str(cache),
        "cached_libraries": builds,
    }


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "plugins_command", None)
    if action == "info":
        info = _info()
        lines = [f"{k}: {v}" for k, v in info.items()]
        emit(info, args, "\n".join(lines))
        return 0
    if action != "build":
        raise InputError("trtalign plugins needs an action; valid: 'build', 'info'")
    from trtalign.plugins.build import build_plugins

    result = build_plugins(args.target, trt_root=args.trt_root, cuda_archs=args.cuda_arch, out_dir=args.out,
                           cache_dir=args.cache_dir)
    from trtalign.core.logging import get_logger

    get_logger(__name__).info("%s %s", result.target, "cached" if result.cached else f"built in {result.seconds} s")
    emit(result, args, str(result.library))  # only the path on stdout, so that $(trtalign plugins build) works
    return 0
