"""The C++ geometry and host NMS (trtalign/plugins/csrc) against the Python reference ops, on the CPU.

The host test library is compiled here with g++ (CI path: no CUDA, no TensorRT) and, where nvcc exists, with nvcc too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from .csrc_harness import host_api, nvcc_host_api  # noqa: F401  (fixtures)

from trtalign.plugins.reference import efficient_rotated_nms, rotated_iou, rotated_iou_paired

S2 = math.sqrt(2.0)

# name, box a, box b, exact IoU (None: compare with the reference only)
GEOMETRY_CASES = [
    ("identical", (10, 10, 4, 2, 0.3), (10, 10, 4, 2, 0.3), 1.0),
    ("disjoint", (0, 0, 2, 2, 0), (10, 0, 2, 2, 0), 0.0),
    ("touching edge", (0, 0, 2, 2, 0), (2, 0, 2, 2, 0), 0.0),
    ("touching corner", (0, 0, 2, 2, 0), (2, 2, 2, 2, 0), 0.0),
    ("half overlap, coincident top/bottom edges", (0, 0, 2, 2, 0), (1, 0, 2, 2, 0), 1 / 3),
    ("contained", (0, 0, 4, 4, 0), (0.5, 0.5, 2, 2, 0), 0.25),
    ("shared edge inside", (0, 0, 4, 2, 0), (1, 0, 2, 2, 0), 0.5),
    ("square rotated 45 deg on itself", (0, 0, 2, 2, 0), (0, 0, 2, 2, math.pi / 4),
     8 * (S2 - 1) / (8 - 8 * (S2 - 1))),
    ("quarter turn = swapped sides", (5, 5, 4, 2, 0), (5, 5, 2, 4, math.pi / 2), 1.0),
    ("angle +pi/2 vs -pi/2", (5, 5, 4, 2, math.pi / 2), (5, 5, 4, 2, -math.pi / 2), 1.0),
    ("angle 3*pi (outside [-pi/2, pi/2))", (5, 5, 4, 2, 3 * math.pi), (5, 5, 4, 2, 0), 1.0),
    ("angle -7 rad", (5, 5, 4, 2, -7.0), (5.3, 4.9, 4, 2, -7.0 + 0.1), None),
    ("cross", (0, 0, 6, 1, 0), (0, 0, 1, 6, 0), 1 / 11),
    ("zero width", (0, 0, 0, 2, 0), (0, 0, 2, 2, 0), 0.0),
    ("zero-area with itself", (0, 0, 0, 0, 0), (0, 0, 0, 0, 0), 0.0),
    ("negative height", (0, 0, 2, -2, 0), (0, 0, 2, 2, 0), 0.0),
    ("far from origin", (10000.5, 9000.25, 3, 1, 0.7), (10000.9, 9000.0, 3, 1, 0.8), None),
    ("thin sliver", (0, 0, 100, 0.01, 0.001), (0, 0, 100, 0.01, -0.001), None),
    ("near pi/2 and -pi/2 + eps", (3, 3, 8, 2, math.pi / 2 - 1e-4), (3, 3, 8, 2, -math.pi / 2 + 1e-4), None),
    ("parallel edges offset by a hair", (0, 0, 2, 2, 0), (0, 2.0 - 1e-6, 2, 2, 0), None),
]


@pytest.mark.parametrize("name,a,b,expected", GEOMETRY_CASES, ids=[c[0] for c in GEOMETRY_CASES])
def test_geometry_cases_match_reference_and_exact_values(host_api, name, a, b, expected):
    # the C API takes float32 boxes (as TensorRT does): the reference sees the same float32 values
    ref = rotated_iou(np.array(a, np.float32).astype(np.float64), np.array(b, np.float32).astype(np.float64))
    for precision in (0, 1):  # FP32 (the kernels) and FP64
        got = float(host_api.rotated_iou(np.array([a]), np.array([b]), precision)[0])
        assert abs(got - ref) <= 1e-5, (name, precision, got, ref)
        if expected is not None:
            assert abs(got - expected) <= 1e-5, (name, precision, got, expected)
    # symmetric
    got_ba = float(host_api.rotated_iou(np.array([b]), np.array([a]), 0)[0])
    assert abs(got_ba - ref) <= 1e-5


def _random_pairs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pairs that overlap often: b is a jittered copy of a (some exact copies, some with parallel edges)."""
    a = np.column_stack([rng.uniform(0, 1000, n), rng.uniform(0, 1000, n), rng.uniform(0.5, 120, n),
                         rng.uniform(0.5, 120, n), rng.uniform(-2 * np.pi, 2 * np.pi, n)])
    b = a.copy()
    scale = np.maximum(a[:, 2], a[:, 3])[:, None]
    b[:, :2] += rng.normal(0, 0.3, (n, 2)) * scale
    b[:, 2:4] *= rng.uniform(0.5, 1.5, (n, 2))
    b[:, 4] += rng.normal(0, 0.4, n)
    kind = rng.integers(0, 10, n)
    b[kind == 0] = a[kind == 0]  # identical
    b[kind == 1, 4] = a[kind == 1, 4] + np.pi / 2 * rng.integers(-2, 3, (kind == 1).sum())  # parallel edges
    return a.astype(np.float32), b.astype(np.float32)


def test_10k_random_pairs_within_1e5_of_reference(host_api):
    rng = np.random.default_rng(20261122)
    a, b = _random_pairs(10_000, rng)
    got = host_api.rotated_iou(a, b, precision=0)
    ref = np.array([rotated_iou(x, y) for x, y in zip(a.astype(np.float64), b.astype(np.float64))])
    assert (ref > 0).mean() > 0.7  # the test exercises overlaps, not empty pairs
    diff = np.abs(got - ref)
    assert diff.max() <= 1e-5, f"max |IoU diff| {diff.max():.3g} at pair {int(diff.argmax())}"


def test_identical_boxes_iou_exactly_one_in_cpp_and_python(host_api):
    """Identical boxes: IoU exactly 1 in the C++ FP32 and FP64 geometry and in Python (issue: before the rule the
    reference gave a few ulps above 1 and the FP32 plugin a few below, so iou_threshold 1.0 split them)."""
    rng = np.random.default_rng(117)
    n = 200
    a = np.column_stack([rng.uniform(0, 2000, (n, 2)), rng.uniform(1, 300, (n, 2)),
                         rng.uniform(-4, 4, n)]).astype(np.float32)
    for precision in (0, 1):
        assert (host_api.rotated_iou(a, a, precision) == 1.0).all()
    assert (rotated_iou_paired(a.astype(np.float64), a.astype(np.float64)) == 1.0).all()
    boxes = np.repeat(a[None, :40], 2, axis=1)  # each box twice; one class; decreasing scores
    scores = np.linspace(0.9, 0.3, 80, dtype=np.float32)[None, :, None]
    attrs = dict(score_threshold=0.1, iou_threshold=1.0, max_output_boxes=100)
    got, ref = host_api.nms(boxes, scores, **attrs), efficient_rotated_nms(boxes, scores, **attrs)
    assert_same_nms(got, ref)
    assert ref.num_detections[0, 0] == 40  # every copy suppressed by its twin, nothing else reaches IoU 1


def _random_nms_inputs(rng, batch, n, c, dtype=np.float32, clustered=True):
    centers = rng.uniform(0, 320, (batch, max(n // 6, 1), 2))
    pick = rng.integers(0, centers.shape[1], (batch, n))
    xy = np.take_along_axis(centers, pick[..., None], axis=1) + rng.normal(0, 6, (batch, n, 2))
    if not clustered:
        xy = rng.uniform(0, 320, (batch, n, 2))
    wh = rng.uniform(4, 40, (batch, n, 2))
    ang = rng.uniform(-np.pi, np.pi, (batch, n, 1))
    boxes = np.concatenate([xy, wh, ang], -1).astype(dtype)
    scores = rng.uniform(0, 1, (batch, n, c)).astype(dtype)
    return boxes, scores


def assert_same_nms(got, ref, what=""):
    np.testing.assert_array_equal(got.num_detections, ref.num_detections, err_msg=f"num_detections {what}")
    np.testing.assert_array_equal(got.detection_classes, ref.detection_classes, err_msg=f"classes {what}")
    np.testing.assert_array_equal(got.detection_boxes.astype(np.float32), ref.detection_boxes.astype(np.float32),
                                  err_msg=f"boxes {what}")
    np.testing.assert_allclose(got.detection_scores.astype(np.float32), ref.detection_scores.astype(np.float32),
                               rtol=0, atol=1e-6, err_msg=f"scores {what}")


NMS_SETTINGS = [
    # per-class, plain
    dict(score_threshold=0.3, iou_threshold=0.45, max_output_boxes=100),
    # class-agnostic: a box's lower classes are suppressed by its best one
    dict(score_threshold=0.3, iou_threshold=0.45, max_output_boxes=100, class_agnostic=1),
    # sigmoid activation: threshold in logit space, sigmoid on the outputs
    dict(score_threshold=0.55, iou_threshold=0.5, max_output_boxes=50, score_activation=1),
    # background class excluded, few outputs (early exit)
    dict(score_threshold=0.2, iou_threshold=0.3, max_output_boxes=7, background_class=0),
    # small top-k: only the best candidates enter NMS
    dict(score_threshold=0.0, iou_threshold=0.6, max_output_boxes=300, topk=40),
    # class-agnostic near-duplicates only: a box's other classes (IoU 1 with itself) are suppressed, little else
    dict(score_threshold=0.5, iou_threshold=0.99, max_output_boxes=100, class_agnostic=1),
]


@pytest.mark.parametrize("attrs", NMS_SETTINGS, ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items()))
def test_host_nms_equals_reference_on_random_batches(host_api, attrs):
    rng = np.random.default_rng(7)
    for trial in range(3):
        boxes, scores = _random_nms_inputs(rng, batch=3, n=150, c=4, clustered=trial != 2)
        ref = efficient_rotated_nms(boxes, scores, **attrs)
        got = host_api.nms(boxes, scores, **attrs)
        assert_same_nms(got, ref, f"trial {trial}")
        assert ref.num_detections.min() >= 0 and ref.num_detections.sum() > 0


def test_host_nms_images_are_independent(host_api):
    rng = np.random.default_rng(3)
    boxes, scores = _random_nms_inputs(rng, batch=4, n=120, c=3)
    scores[2] = 0.0  # image 2: nothing above the threshold
    attrs = dict(score_threshold=0.25, iou_threshold=0.5, max_output_boxes=60)
    together = host_api.nms(boxes, scores, **attrs)
    assert together.num_detections[2, 0] == 0
    assert not together.detection_boxes[2].any() and not together.detection_scores[2].any()
    for b in range(4):
        alone = host_api.nms(boxes[b:b + 1], scores[b:b + 1], **attrs)
        for got, ref in zip(together[:4], alone[:4]):
            np.testing.assert_array_equal(got[b], ref[0])


def test_host_nms_ties_keep_lower_index_and_match_reference(host_api):
    # four identical-score, non-overlapping boxes over two classes: order is element order (box * C + class)
    boxes = np.array([[[0, 0, 2, 2, 0], [10, 0, 2, 2, 0], [20, 0, 2, 2, 0], [30, 0, 2, 2, 0]]], np.float32)
    scores = np.full((1, 4, 2), 0.5, np.float32)
    attrs = dict(score_threshold=0.1, iou_threshold=0.5, max_output_boxes=10)
    got = host_api.nms(boxes, scores, **attrs)
    ref = efficient_rotated_nms(boxes, scores, **attrs)
    assert_same_nms(got, ref)
    assert got.num_detections[0, 0] == 8
    np.testing.assert_array_equal(got.detection_boxes[0, :8:2, 0], [0, 10, 20, 30])
    np.testing.assert_array_equal(got.detection_classes[0, :8], [0, 1, 0, 1, 0, 1, 0, 1])


def test_host_nms_empty_and_all_below_threshold(host_api):
    attrs = dict(score_threshold=0.9, iou_threshold=0.5, max_output_boxes=5)
    empty = host_api.nms(np.zeros((2, 0, 5), np.float32), np.zeros((2, 0, 3), np.float32), **attrs)
    assert empty.num_detections.tolist() == [[0], [0]] and empty.detection_boxes.shape == (2, 5, 5)
    rng = np.random.default_rng(0)
    boxes, scores = _random_nms_inputs(rng, 2, 30, 3)
    low = host_api.nms(boxes, scores * 0.5, **attrs)
    assert low.num_detections.sum() == 0 and not low.detection_scores.any()


def test_host_nms_fp16_path_matches_reference_on_fp16_values(host_api):
    rng = np.random.default_rng(11)
    boxes, scores = _random_nms_inputs(rng, batch=2, n=200, c=3, dtype=np.float16)
    for attrs in NMS_SETTINGS[:3]:
        got = host_api.nms(boxes, scores, **attrs)
        assert got.detection_boxes.dtype == np.float16 and got.detection_scores.dtype == np.float16
        ref = efficient_rotated_nms(boxes, scores, **attrs)  # float16 in: the reference compares in FP16 too
        np.testing.assert_array_equal(got.num_detections, ref.num_detections)
        np.testing.assert_array_equal(got.detection_classes, ref.detection_classes)
        np.testing.assert_array_equal(got.detection_boxes, ref.detection_boxes.astype(np.float16))
        np.testing.assert_array_equal(got.detection_scores, ref.detection_scores.astype(np.float16))


@pytest.mark.parametrize("score_activation", [0, 1])
def test_host_nms_fp16_threshold_is_rounded_to_fp16(host_api, score_activation):
    """TensorRT compares FP16 scores with ``(T) scoreThreshold``: threshold 0.45, FP16 score 0.449951171875 passes
    (FP16 path), the same value as FP32 input does not; the reference agrees on both."""
    thr16 = np.float16(0.45) if not score_activation else np.float16(np.log(np.float32(0.45) / np.float32(0.55)))
    boxes = np.array([[[0, 0, 10, 10, 0], [50, 50, 10, 10, 0.5]]])
    scores = np.array([[[thr16], [-6.0 if score_activation else 0.1]]])
    below = np.array([[[np.nextafter(thr16, np.float16(-1))], [scores[0, 1, 0]]]])
    attrs = dict(score_threshold=0.45, iou_threshold=0.5, max_output_boxes=3, score_activation=score_activation)
    for dtype, s, passes in ((np.float16, scores, 1), (np.float16, below, 0)):
        got = host_api.nms(boxes.astype(dtype), s.astype(dtype), **attrs)
        ref = efficient_rotated_nms(boxes.astype(dtype), s.astype(dtype), **attrs)
        assert got.num_detections[0, 0] == ref.num_detections[0, 0] == passes
    if not score_activation:  # as FP32 inputs 0.449951171875 < 0.45
        f32 = host_api.nms(boxes.astype(np.float32), scores.astype(np.float32), **attrs)
        assert f32.num_detections[0, 0] == 0


@pytest.mark.parametrize("bad,needle", [
    (dict(iou_threshold=0.0), "iou_threshold"),
    (dict(score_threshold=-0.1), "score_threshold"),
    (dict(max_output_boxes=0), "max_output_boxes"),
    (dict(class_agnostic=2), "class_agnostic"),
    (dict(topk=5001), "top_k"),
])
def test_host_nms_rejects_invalid_attributes(host_api, bad, needle):
    boxes, scores = _random_nms_inputs(np.random.default_rng(0), 1, 5, 2)
    attrs = dict(score_threshold=0.1, iou_threshold=0.5, max_output_boxes=5) | bad
    with pytest.raises(RuntimeError, match=needle):
        host_api.nms(boxes, scores, **attrs)


def test_nvcc_compiled_host_paths_agree_with_gxx(host_api, nvcc_host_api):
    """The same sources through the CUDA compiler (host code paths) give bit-identical IoU and NMS results."""
    rng = np.random.default_rng(5)
    a, b = _random_pairs(2000, rng)
    np.testing.assert_array_equal(nvcc_host_api.rotated_iou(a, b), host_api.rotated_iou(a, b))
    boxes, scores = _random_nms_inputs(rng, 2, 150, 3)
    for attrs in NMS_SETTINGS:
        assert_same_nms(nvcc_host_api.nms(boxes, scores, **attrs), efficient_rotated_nms(boxes, scores, **attrs))


def _rotated_golden_cases():
    from trtalign.plugins.golden import ROTATED, load_golden_json

    return [c for c in load_golden_json() if c.op == ROTATED]


@pytest.mark.parametrize("golden", _rotated_golden_cases(), ids=lambda c: c.name)
@pytest.mark.parametrize("compiler", ["g++", "nvcc"])
def test_golden_cases_from_committed_json(request, golden, compiler):
    """The shared golden table (trtalign/plugins/golden_cases.json): same outputs, same order, for the host NMS
    compiled by g++ and by the CUDA compiler."""
    from trtalign.plugins.golden import check_outputs

    api = request.getfixturevalue("host_api" if compiler == "g++" else "nvcc_host_api")
    got = api.nms(golden.boxes, golden.scores, **golden.attributes, topk=golden.topk)
    result = check_outputs(golden, got[:4])
    assert result, result.mismatches


# ---- build helper and CLI -----------------------------------------------------------------------------------------

@pytest.mark.skipif(__import__("shutil").which("cmake") is None, reason="cmake not on PATH")
def test_cli_builds_host_library_with_cmake_and_it_loads(cli, tmp_path):
    import json

    from trtalign.plugins.build import load_plugin_library

    out, report = tmp_path / "out", tmp_path / "build.json"
    code, stdout, stderr = cli("plugins", "build", "--target", "trtalign_csrc_host", "--out", str(out),
                               "--cache-dir", str(tmp_path / "cache"), "--json", str(report))
    assert code == 0, stderr
    lib = out / "libtrtalign_csrc_host.so"
    assert stdout.strip() == str(lib) and lib.is_file()
    doc = json.loads(report.read_text())
    assert doc["library"] == str(lib) and doc["target"] == "trtalign_csrc_host" and doc["cached"] is False
    handle = load_plugin_library(lib)
    assert handle.trtalign_capi_version() == 1
    # a second build with the same sources and options comes from the cache
    code, stdout, _ = cli("plugins", "build", "--target", "trtalign_csrc_host", "--cache-dir", str(tmp_path / "cache"),
                          "--json", "-")
    assert code == 0 and json.loads(stdout)["cached"] is True


@pytest.mark.parametrize("argv,needle", [
    (["--cuda-arch", "sm_87"], "--cuda-arch"),
    (["--trt-root", "/nonexistent/tensorrt"], "--trt-root"),
    (["--target", "trtalign_csrc_host", "--cuda-arch", "87;x"], "--cuda-arch"),
])
def test_cli_build_rejects_bad_options_with_one_line(cli, tmp_path, argv, needle):
    out = tmp_path / "out"
    code, stdout, stderr = cli("plugins", "build", "--out", str(out), *argv)
    assert code == 2
    assert needle in stderr and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists()


def test_cli_info_reports_toolchain(cli):
    import json

    code, stdout, stderr = cli("plugins", "info", "--json", "-")
    assert code == 0, stderr
    info = json.loads(stdout)
    assert info["plugin"] == "EfficientRotatedNMS_TRT" and info["target_archs"] == ["72", "75", "80", "86", "87",
                                                                                     "89", "90"]
    assert info["sources"].endswith("csrc")


def test_load_plugin_library_errors_are_user_errors(tmp_path):
    from trtalign.core.errors import EngineError, InputError
    from trtalign.plugins.build import load_plugin_library

    with pytest.raises(InputError, match="trtalign plugins build"):
        load_plugin_library(tmp_path / "missing.so")
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"not an ELF file")
    with pytest.raises(EngineError, match="cannot load"):
        load_plugin_library(bad)
