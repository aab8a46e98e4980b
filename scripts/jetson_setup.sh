#!/usr/bin/env bash
# Check a (Jetson) machine for what trtalign needs to build and run TensorRT engines, and say what is missing.
#
#   bash scripts/jetson_setup.sh            # report only; changes nothing
#
# Checks: L4T / JetPack release (/etc/nv_tegra_release), TensorRT Python bindings, a CUDA Python binding (cuda-python
# or pycuda), nvcc, cmake, trtalign itself. Exit code 0 when everything needed is present, 1 when something is
# missing, 0 with a note on a machine that is not a Jetson (the checks still run; nothing is installed).

set -u

PY="${PYTHON:-python3}"
missing=0
jetson=0

ok()   { printf '  [ok]      %s\n' "$*"; }
miss() { printf '  [missing] %s\n' "$*"; missing=$((missing + 1)); }
note() { printf '  [note]    %s\n' "$*"; }

echo "trtalign Jetson environment check"
echo

# ---------------------------------------------------------------- platform
echo "Platform"
if [ -r /etc/nv_tegra_release ]; then
    jetson=1
    # first line looks like: "# R36 (release), REVISION: 4.3, GCID: ..., BOARD: generic, EABI: aarch64, ..."
    line=$(head -n 1 /etc/nv_tegra_release)
    major=$(printf '%s' "$line" | sed -n 's/^# R\([0-9]*\).*/\1/p')
    rev=$(printf '%s' "$line" | sed -n 's/.*REVISION: \([0-9.]*\).*/\1/p')
    l4t="${major}.${rev}"
    case "$major" in
        35) jp="JetPack 5.x (TensorRT 8.5)";;
        36) jp="JetPack 6.x (TensorRT 10.3)";;
        38) jp="JetPack 7.x (TensorRT 10.x; 11.x from JetPack 7.2.2)";;
        *)  jp="unknown JetPack for L4T R${major}";;
    esac
    ok "L4T ${l4t} -> ${jp}"
    if [ -r /proc/device-tree/model ]; then
        ok "board: $(tr -d '\0' < /proc/device-tree/model)"
    fi
else
    note "not a Jetson: /etc/nv_tegra_release is absent ($(uname -m), $(uname -s)); the checks below still run"
fi
echo

# ---------------------------------------------------------------- python packages
echo "Python ($PY)"
if ! command -v "$PY" >/dev/null 2>&1; then
    miss "$PY not found (sudo apt install python3 python3-pip)"
else
    ok "$("$PY" --version 2>&1)"
    trt_version=$("$PY" -c 'import tensorrt as t; print(t.__version__)' 2>/dev/null)
    if [ -n "$trt_version" ]; then
        ok "tensorrt $trt_version (Python bindings)"
    elif [ "$jetson" = 1 ]; then
        miss "tensorrt Python bindings: sudo apt install python3-libnvinfer python3-libnvinfer-dev (part of JetPack)"
    else
        miss "tensorrt Python bindings: pip install tensorrt (x86-64 with an NVIDIA GPU), or JetPack on a Jetson"
    fi
    cuda_py=$("$PY" -c 'import cuda.bindings, importlib.metadata as m; print(m.version("cuda-python"))' 2>/dev/null \
              || "$PY" -c 'from cuda import cuda; import importlib.metadata as m; print(m.version("cuda-python"))' 2>/dev/null)
    pycuda=$("$PY" -c 'import pycuda; print(pycuda.VERSION_TEXT)' 2>/dev/null)
    if [ -n "$cuda_py" ]; then
        ok "cuda-python $cuda_py"
    fi
    if [ -n "$pycuda" ]; then
        ok "pycuda $pycuda"
    fi
    if [ -z "$cuda_py" ] && [ -z "$pycuda" ]; then
        miss "a CUDA Python binding: pip install cuda-python (match the CUDA major version), or pip install pycuda"
    fi
    trtalign_version=$("$PY" -c 'import trtalign; print(trtalign.__version__)' 2>/dev/null)
    if [ -n "$trtalign_version" ]; then
        ok "trtalign $trtalign_version"
    else
        miss "trtalign: pip install -e . (from the repository) or pip install trtalign"
    fi
    cv_gst=$("$PY" -c 'import cv2; print("yes" if cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER) else "no")' \
             2>/dev/null)
    case "$cv_gst" in
        yes) ok "OpenCV with GStreamer (trtalign serve --source accepts pipeline strings)";;
        no)  note "OpenCV without GStreamer: --source takes files, rtsp:// and /dev/videoN, not pipeline strings";;
        *)   miss "OpenCV for Python: sudo apt install python3-opencv (JetPack's build has GStreamer)";;
    esac
fi
echo

# ---------------------------------------------------------------- build tools (for the plugin)
echo "Build tools (trtalign plugins build)"
nvcc_bin=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -n "$nvcc_bin" ]; then
    ok "nvcc: $("$nvcc_bin" --version | sed -n 's/.*release \([0-9.]*\).*/CUDA \1/p') ($nvcc_bin)"
    case ":$PATH:" in
        *":$(dirname "$nvcc_bin"):"*) ;;
        *) note "add it to PATH: export PATH=$(dirname "$nvcc_bin"):\$PATH";;
    esac
else
    miss "nvcc: sudo apt install cuda-toolkit (JetPack: nvidia-jetpack or cuda-nvcc-<version>)"
fi
if command -v cmake >/dev/null 2>&1; then
    ok "$(cmake --version | head -n 1)"
else
    miss "cmake: sudo apt install cmake"
fi
if command -v g++ >/dev/null 2>&1; then
    ok "$(g++ --version | head -n 1)"
else
    miss "g++: sudo apt install build-essential"
fi
nvinfer_h=$(ls /usr/include/*/NvInfer.h /usr/include/NvInfer.h /usr/local/cuda/include/NvInfer.h 2>/dev/null | head -n 1)
if [ -n "$nvinfer_h" ]; then
    ok "TensorRT headers: $nvinfer_h"
else
    miss "TensorRT headers (NvInfer.h): sudo apt install libnvinfer-dev libnvinfer-plugin-dev"
fi
echo

# ---------------------------------------------------------------- power
if [ "$jetson" = 1 ]; then
    echo "Power"
    if command -v nvpmodel >/dev/null 2>&1; then
        ok "nvpmodel: $(nvpmodel -q 2>/dev/null | head -n 1)"
        note "benchmark at a fixed mode: sudo nvpmodel -m 0 && sudo jetson_clocks"
    else
        note "nvpmodel not found"
    fi
    echo
fi

# ---------------------------------------------------------------- verdict
if [ "$missing" -eq 0 ]; then
    echo "Everything trtalign needs is present."
    exit 0
fi
echo "$missing item(s) missing (see [missing] above)."
if [ "$jetson" = 0 ]; then
    echo "This is not a Jetson, so missing Jetson/GPU pieces are expected here: the CPU path"
    echo "(trtalign serve MODEL.onnx --backend ort) runs without them."
    exit 0
fi
exit 1
