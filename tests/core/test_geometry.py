"""trtalign.core.geometry against independent implementations: shapely (polygons), pycocotools (axis IoU),
ultralytics (corner order)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trtalign.core import geometry as g

shapely = pytest.importorskip("shapely")


def _random_rotated(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.column_stack([rng.uniform(0, 60, n), rng.uniform(0, 60, n), rng.uniform(0.5, 30, (n, 2)),
                         rng.uniform(-7, 7, n)])
    b = np.column_stack([rng.uniform(0, 60, n), rng.uniform(0, 60, n), rng.uniform(0.5, 30, (n, 2)),
                         rng.uniform(-7, 7, n)])
    return a, b


def _shapely_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pa = shapely.polygons(g.rotated_corners(a))
    pb = shapely.polygons(g.rotated_corners(b))
    inter = shapely.area(shapely.intersection(pa[:, None], pb[None, :]))
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(inter > 0, inter / union, 0.0)


def test_rotated_iou_matrix_matches_shapely():
    a, b = _random_rotated(np.random.default_rng(0), 40)
    ours = g.rotated_iou_matrix(a, b[:30])
    ref = _shapely_iou_matrix(a, b[:30])
    assert (ref > 0).sum() > 50  # enough overlapping pairs to mean something
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    # the paired, one-to-many and scalar forms give the same numbers
    # the paired, one-to-many and scalar forms give bit-identical numbers, whatever else is in the batch
    np.testing.assert_array_equal(g.rotated_iou_paired(a[:30], b[:30]), np.diag(ours))
    np.testing.assert_array_equal(g.rotated_iou_one_to_many(a[3], b[:30]), ours[3])
    assert all(g.rotated_iou(a[i], b[j]) == ours[i, j] for i in range(0, 40, 3) for j in range(30))


def test_identical_boxes_have_iou_exactly_one_and_iou_never_exceeds_one():
    rng = np.random.default_rng(1)
    n = 300
    boxes = np.column_stack([rng.uniform(-1e5, 1e5, (n, 2)), rng.uniform(1e-3, 500, (n, 2)), rng.uniform(-9, 9, n)])
    assert (g.rotated_iou_paired(boxes, boxes) == 1.0).all()
    assert all(g.rotated_iou(x, x) == 1.0 for x in boxes[:50])
    # the same rectangle written with w/h swapped and a quarter turn: not bit-identical, still within [0, 1]
    swapped = boxes[:, [0, 1, 3, 2, 4]].copy()
    swapped[:, 4] += math.pi / 2
    iou = g.rotated_iou_paired(boxes, swapped)
    assert (iou <= 1.0).all() and (iou > 1 - 1e-6).all()
    zero = boxes.copy()
    zero[:, 2] = 0.0
    assert (g.rotated_iou_paired(zero, zero) == 0.0).all()  # zero area: IoU 0, even with itself


def test_rotated_bounds_are_shapely_bounds():
    a, _ = _random_rotated(np.random.default_rng(2), 50)
    ref = shapely.bounds(shapely.polygons(g.rotated_corners(a)))
    np.testing.assert_allclose(g.rotated_bounds(a), ref, atol=1e-9)


def test_corners_in_ultralytics_order():
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("ultralytics.utils.ops")
    a, _ = _random_rotated(np.random.default_rng(3), 20)
    ref = ops.xywhr2xyxyxyxy(torch.from_numpy(a)).numpy()
    np.testing.assert_allclose(g.xywhr_to_corners(a), ref, atol=1e-4)
    assert g.xywhr_to_corners(a).dtype == np.float32


def test_axis_iou_matrix_matches_pycocotools():
    mask = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(4)
    xy = rng.uniform(0, 100, (60, 2))
    wh = rng.uniform(1, 40, (60, 2))
    xyxy = np.column_stack([xy, xy + wh])
    ours = g.axis_iou_matrix(xyxy[:25], xyxy[25:])
    ref = mask.iou(np.column_stack([xy[:25], wh[:25]]), np.column_stack([xy[25:], wh[25:]]), [0] * 35)
    assert (ref > 0).sum() > 20
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    # rotated IoU at angle 0 is the axis IoU
    rot = lambda i: np.column_stack([xy[i] + wh[i] / 2, wh[i], np.zeros(len(xy[i]))])  # noqa: E731
    np.testing.assert_allclose(g.rotated_iou_matrix(rot(slice(0, 25)), rot(slice(25, 60))), ref, atol=1e-9)


@pytest.mark.parametrize("a, b, expected", [
    ([0, 0, 10, 10], [10, 10, 0, 0], 1.0),  # corners given in the other order are reordered
    ([0, 0, 0, 10], [0, 0, 0, 10], 0.0),  # zero width: area 0, IoU 0 even with itself
    ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
    ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
])
def test_axis_iou_edge_cases(a, b, expected):
    for dtype in (np.float32, np.float64):
        got = g.axis_iou_matrix(np.array([a]), np.array([b]), dtype)
        assert got.dtype == dtype
        assert float(got[0, 0]) == pytest.approx(expected, abs=1e-7)


def test_xywh_to_xyxy_float32_like_tensorrt():
    b = np.array([[10.3, 20.7, 5.1, 3.3]], np.float32)
    got = g.xywh_to_xyxy(b)
    half = np.float32(0.5)
    assert got[0, 0] == b[0, 0] - b[0, 2] * half and got[0, 3] == b[0, 1] + b[0, 3] * half
