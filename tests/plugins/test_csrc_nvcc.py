"""Compile-only checks of the CUDA and TensorRT plugin sources (no GPU needed).

- the NMS kernels compile for every listed architecture that this nvcc supports (one nvcc call, then the fat binary is
  checked for each architecture's machine code); architectures this nvcc lacks are skipped with the reason;
- the cub sort and the CUDA test API compile too (slow: cub is heavy);
- the TensorRT front ends compile against public TensorRT headers of 8.x / 10.x / 11.x found in a scratch folder
  ($TRTALIGN_TRT_HEADERS or /tmp/trt_headers: one sub-folder per version, each with include/NvInferVersion.h; never in
  the repository; see trtalign/plugins/csrc/README.md for how to fetch them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from trtalign.plugins.build import DEFAULT_CUDA_ARCHS, csrc_dir, cuda_include_dir, find_nvcc, nvcc_gpu_archs

NVCC = find_nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found (PATH, $CUDACXX, /usr/local/cuda*/bin)")


def _supported() -> list[str]:
    return nvcc_gpu_archs(NVCC) if NVCC else []


def _nvcc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([NVCC, "-std=c++17", *args], cwd=str(cwd), capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def kernels_fatbin(tmp_path_factory) -> tuple[Path, list[str]]:
    archs = [a for a in DEFAULT_CUDA_ARCHS if a in _supported()]
    assert archs, f"nvcc supports none of {DEFAULT_CUDA_ARCHS}"
    out = tmp_path_factory.mktemp("nvcc") / "rotated_nms_kernels.o"
    gencode = [g for a in archs for g in ("-gencode", f"arch=compute_{a},code=sm_{a}")]
    proc = _nvcc(["-c", "--threads", "0", *gencode, "rotated_nms_kernels.cu", "-o", str(out)], csrc_dir())
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, archs


@pytest.mark.parametrize("arch", DEFAULT_CUDA_ARCHS)
def test_nms_kernels_compile_for_listed_arch(kernels_fatbin, arch):
    if arch not in _supported():
        pytest.skip(f"this nvcc ({NVCC}) cannot target sm_{arch}: not in `nvcc --list-gpu-arch` "
                    f"({', '.join(_supported())}); build for it with an older CUDA (e.g. JetPack's for Xavier)")
    obj, archs = kernels_fatbin
    cuobjdump = shutil.which("cuobjdump") or str(Path(NVCC).with_name("cuobjdump"))
    if not os.path.exists(cuobjdump):
        assert arch in archs
        return
    listing = subprocess.run([cuobjdump, "--list-elf", str(obj)], capture_output=True, text=True).stdout
    assert re.search(rf"\bsm_{arch}\b", listing), f"no sm_{arch} code in {obj}:\n{listing}"


def test_cmake_default_arch_list_is_not_one_hard_coded_arch():
    text = (csrc_dir() / "CMakeLists.txt").read_text()
    assert "native" in text
    assert " ".join(DEFAULT_CUDA_ARCHS) in text  # the documented fallback list, not a single arch


@pytest.mark.slow
def test_sort_and_cuda_test_api_compile_for_supported_archs(tmp_path):
    archs = [a for a in DEFAULT_CUDA_ARCHS if a in _supported()]
    gencode = [g for a in archs for g in ("-gencode", f"arch=compute_{a},code=sm_{a}")]
    for src in ("rotated_nms_sort.cu", "trtalign_capi_cuda.cu"):
        proc = _nvcc(["-c", "--threads", "0", *gencode, src, "-o", str(tmp_path / (src + ".o"))], csrc_dir())
        assert proc.returncode == 0, f"{src}: {proc.stderr[-4000:]}"


def _trt_header_sets() -> list[Path]:
    root = Path(os.environ.get("TRTALIGN_TRT_HEADERS", "/tmp/trt_headers"))
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "include" / "NvInferVersion.h").is_file())


def _trt_version(include: Path) -> tuple[int, int]:
    """(major, minor) from NvInferVersion.h (11.x spells them TRT_*_ENTERPRISE); -1 / 0 when not found."""
    text = (include / "NvInferVersion.h").read_text()
    major = re.search(r"#define\s+(?:NV_TENSORRT_MAJOR|TRT_MAJOR_ENTERPRISE)\s+(\d+)", text)
    minor = re.search(r"#define\s+(?:NV_TENSORRT_MINOR|TRT_MINOR_ENTERPRISE)\s+(\d+)", text)
    return (int(major.group(1)) if major else -1, int(minor.group(1)) if minor else 0)


def _front_end_compile(headers: Path | None) -> tuple[list[str], Path]:
    """The g++ command prefix shared by the front-end builds (warnings as errors, no static registration, csrc, the
    TensorRT and CUDA headers) and the CUDA include folder; skips with the reason when something is missing."""
    if headers is None:
        pytest.skip("no TensorRT headers in $TRTALIGN_TRT_HEADERS or /tmp/trt_headers (see csrc/README.md)")
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    cuda_include = cuda_include_dir(NVCC)
    if cuda_include is None:
        pytest.skip("CUDA include folder (cuda_runtime_api.h) not found; set CUDA_HOME")
    cmd = [cxx, "-std=c++17", "-O0", "-Wall", "-Wextra", "-Werror", "-Wno-deprecated-declarations",
           "-DTRTALIGN_NO_PLUGIN_REGISTRATION", "-I", str(csrc_dir()), "-isystem", str(headers / "include"),
           "-isystem", str(cuda_include)]
    return cmd, cuda_include


PLUGIN_SOURCES = ("rotated_nms_plugin_common.cpp", "rotated_nms_plugin_v2.cpp", "rotated_nms_plugin_v3.cpp")


@pytest.mark.parametrize("headers", _trt_header_sets() or [None], ids=lambda p: p.name if p else "none")
def test_plugin_front_end_against_tensorrt_headers(headers, tmp_path):
    """Compile the TensorRT front ends (-Wall -Werror) against the real public headers and run the front-end check:
    creator fields, attribute validation, dynamic-batch output shapes, types, formats, workspace, serialization and
    enqueue's parameters (kernels replaced by a recording double, no libnvinfer, no GPU)."""
    base, cuda_include = _front_end_compile(headers)
    cuda_lib = next((cuda_include.parent / d for d in ("lib64", "lib") if (cuda_include.parent / d).is_dir()), None)
    major, _ = _trt_version(headers / "include")
    exe = tmp_path / "plugin_frontend_check"
    cmd = [*base, str(csrc_dir() / "tests" / "plugin_frontend_check.cpp"),
           *[str(csrc_dir() / s) for s in PLUGIN_SOURCES], "-o", str(exe)]
    if cuda_lib is not None:
        cmd += [f"-L{cuda_lib}", "-lcudart", f"-Wl,-rpath,{cuda_lib}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    front = "IPluginV3" if major >= 10 else "IPluginV2DynamicExt"
    assert f"front end: {front} (TensorRT {major})" in run.stdout
    assert re.search(r"^ok \d+ checks$", run.stdout, re.M), run.stdout


@pytest.mark.parametrize("headers", _trt_header_sets() or [None], ids=lambda p: p.name if p else "none")
def test_load_library_build_exports_the_entry_points(headers, tmp_path):
    """The loadLibrary build (rotated_nms_plugin_library.cpp, no static registration) compiled as a shared library
    against the real headers exports exactly what IPluginRegistry::loadLibrary looks up: getCreators on 10.x/11.x,
    getPluginCreators on 8.6, setLoggerFinder on both; on 8.5 (no loadLibrary) it refuses to compile, saying why."""
    from trtalign.plugins.elf import exported_symbols, load_library_entry_points

    base, _ = _front_end_compile(headers)
    major, minor = _trt_version(headers / "include")
    lib = tmp_path / "libtrtalign_plugins_dynamic.so"
    cmd = [*base, "-shared", "-fPIC", *[str(csrc_dir() / s) for s in PLUGIN_SOURCES],
           str(csrc_dir() / "rotated_nms_plugin_library.cpp"), "-o", str(lib)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if (major, minor) < (8, 6):
        assert proc.returncode != 0 and "loadLibrary needs TensorRT >= 8.6" in proc.stderr
        return
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"
    assert load_library_entry_points(lib) == (["getCreators"] if major >= 10 else ["getPluginCreators"])
    assert "setLoggerFinder" in exported_symbols(lib)
