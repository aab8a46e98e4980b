"""The CUDA kernels of EfficientRotatedNMS_TRT on a GPU, against the Python reference and the host implementation.

Builds the CUDA test library (target trtalign_csrc_cuda, no TensorRT) with CMake for the local GPU and drives it through
ctypes. Set TRTALIGN_GPU_BENCH_JSON=FILE to also write the measured kernel times there.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from .csrc_harness import CApi, host_api  # noqa: F401  (fixture)
from .test_csrc_host import NMS_SETTINGS, _random_nms_inputs, assert_same_nms

from trtalign.plugins.build import build_plugins, find_nvcc
from trtalign.plugins.reference import efficient_rotated_nms

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found: cannot build the CUDA test library"),
    pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no NVIDIA driver (nvidia-smi) on this machine"),
]


@pytest.fixture(scope="module")
def gpu_api(tmp_path_factory):
    build = build_plugins("trtalign_csrc_cuda", cache_dir=tmp_path_factory.mktemp("cuda_build"))
    api = CApi(build.library)
    assert api.has_cuda
    return api


@pytest.mark.parametrize("attrs", NMS_SETTINGS, ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items()))
def test_gpu_equals_reference_fp32_batches(gpu_api, attrs):
    rng = np.random.default_rng(101)
    for trial in range(2):
        boxes, scores = _random_nms_inputs(rng, batch=4, n=600, c=5, clustered=trial == 0)
        got = gpu_api.nms(boxes, scores, device="cuda", **attrs)
        ref = efficient_rotated_nms(boxes, scores, **attrs)
        assert_same_nms(got, ref, f"trial {trial}")
        assert ref.num_detections.sum() > 0


def test_gpu_equals_reference_fp16_batches(gpu_api):
    rng = np.random.default_rng(102)
    boxes, scores = _random_nms_inputs(rng, batch=3, n=500, c=4, dtype=np.float16)
    for attrs in NMS_SETTINGS[:4]:
        got = gpu_api.nms(boxes, scores, device="cuda", **attrs)
        assert got.detection_boxes.dtype == np.float16
        ref = efficient_rotated_nms(boxes.astype(np.float32), scores.astype(np.float32), **attrs)
        np.testing.assert_array_equal(got.num_detections, ref.num_detections)
        np.testing.assert_array_equal(got.detection_classes, ref.detection_classes)
        np.testing.assert_array_equal(got.detection_boxes, ref.detection_boxes.astype(np.float16))
        np.testing.assert_array_equal(got.detection_scores, ref.detection_scores.astype(np.float16))


def test_gpu_ties_and_determinism(gpu_api):
    """Quantised scores make many ties; the atomic compaction must not change the order (lower index first)."""
    rng = np.random.default_rng(103)
    boxes, scores = _random_nms_inputs(rng, batch=2, n=800, c=3)
    scores = np.round(scores * 10) / 10
    attrs = dict(score_threshold=0.3, iou_threshold=0.4, max_output_boxes=200)
    first = gpu_api.nms(boxes, scores, device="cuda", **attrs)
    assert_same_nms(first, efficient_rotated_nms(boxes, scores, **attrs))
    for _ in range(3):
        again = gpu_api.nms(boxes, scores, device="cuda", **attrs)
        for a, b in zip(first[:4], again[:4]):
            np.testing.assert_array_equal(a, b)


def test_gpu_equals_host_on_model_sized_inputs(gpu_api, host_api):
    """8400 anchors x 15 classes (a 640 px OBB head, DOTA classes), batch 8, with top-k saturated (5000)."""
    rng = np.random.default_rng(104)
    boxes, scores = _random_nms_inputs(rng, batch=8, n=8400, c=15)
    for attrs in (dict(score_threshold=0.25, iou_threshold=0.5, max_output_boxes=300),
                  dict(score_threshold=0.01, iou_threshold=0.5, max_output_boxes=300, class_agnostic=1)):
        got = gpu_api.nms(boxes, scores, device="cuda", **attrs)
        want = host_api.nms(boxes, scores, **attrs)
        assert_same_nms(got, want)


def test_gpu_empty_inputs_give_zeros(gpu_api):
    attrs = dict(score_threshold=0.5, iou_threshold=0.5, max_output_boxes=10)
    out = gpu_api.nms(np.zeros((2, 0, 5), np.float32), np.zeros((2, 0, 3), np.float32), device="cuda", **attrs)
    assert out.num_detections.tolist() == [[0], [0]]
    out = gpu_api.nms(np.ones((2, 5, 5), np.float32), np.zeros((2, 5, 3), np.float32), device="cuda", **attrs)
    assert out.num_detections.sum() == 0 and not out.detection_boxes.any()


def test_gpu_kernel_time(gpu_api):
    """Mean time of the enqueued kernels (CUDA events, 20 runs after a warm-up) on model-sized inputs."""
    rng = np.random.default_rng(105)
    cases = [("b1_n8400_c15_thr0.25", 1, 8400, 15, 0.25, np.float32),
             ("b8_n8400_c15_thr0.25", 8, 8400, 15, 0.25, np.float32),
             ("b8_n8400_c15_thr0.25_fp16", 8, 8400, 15, 0.25, np.float16),
             ("b1_n21504_c15_thr0.001", 1, 21504, 15, 0.001, np.float32)]
    results = {}
    for name, b, n, c, thr, dtype in cases:
        boxes, scores = _random_nms_inputs(rng, batch=b, n=n, c=c, dtype=dtype)
        out = gpu_api.nms(boxes, scores, device="cuda", repeats=20, score_threshold=thr, iou_threshold=0.5,
                          max_output_boxes=300)
        assert out.kernel_ms is not None and 0 < out.kernel_ms < 1000, (name, out.kernel_ms)
        assert out.num_detections.min() > 0
        results[name] = round(out.kernel_ms, 4)
    path = os.environ.get("TRTALIGN_GPU_BENCH_JSON")
    if path:
        from trtalign.core.io import atomic_write_text

        atomic_write_text(path, json.dumps(results, indent=2))
