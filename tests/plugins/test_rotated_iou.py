"""Rotated IoU (exact polygon overlap) against shapely, and its special cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trtalign.plugins.reference.nms import corner_iou_one_to_many
from trtalign.plugins.reference.rotated_iou import (
    box_corners,
    rotated_intersection,
    rotated_iou,
    rotated_iou_one_to_many,
    rotated_iou_paired,
    rotated_iou_pairwise,
)

shapely = pytest.importorskip("shapely", reason="shapely is the independent polygon library for these checks")


def _shapely_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pa = shapely.polygons(box_corners(a))
    pb = shapely.polygons(box_corners(b))
    inter = shapely.area(shapely.intersection(pa, pb))
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where((inter > 0) & (union > 0), inter / np.where(union > 0, union, 1), 0.0)


def _random_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs, a third of them in hard configurations."""
    a = np.column_stack([rng.uniform(0, 50, n), rng.uniform(0, 50, n), rng.uniform(0.5, 30, n),
                         rng.uniform(0.5, 30, n), rng.uniform(-10, 10, n)])  # angles well outside [-pi/2, pi/2)
    b = np.column_stack([a[:, 0] + rng.normal(0, 8, n), a[:, 1] + rng.normal(0, 8, n), rng.uniform(0.5, 30, n),
                         rng.uniform(0.5, 30, n), rng.uniform(-10, 10, n)])
    k = n // 12
    s = slice(0, k)  # identical boxes (every edge coincident)
    b[s] = a[s]
    s = slice(k, 2 * k)  # same rectangle described with w/h swapped and angle + pi/2
    b[s] = a[s][:, [0, 1, 3, 2, 4]]
    b[s, 4] += math.pi / 2
    s = slice(2 * k, 3 * k)  # same angle, shifted along the box's own axis: collinear (coincident) edges
    t = rng.uniform(-20, 20, k)
    b[s] = a[s]
    b[s, 0] += t * np.cos(a[s, 4])
    b[s, 1] += t * np.sin(a[s, 4])
    s = slice(3 * k, 4 * k)  # near-degenerate: one side tiny
    b[s, 2] = rng.uniform(1e-6, 1e-3, k)
    s = slice(4 * k, 5 * k)  # angles within 1e-7 of +-pi/2 and equal-angle parallel edges
    a[s, 4] = rng.choice([-1, 1], k) * (math.pi / 2 - rng.uniform(0, 1e-7, k))
    b[s, 4] = a[s, 4]
    s = slice(5 * k, 6 * k)  # nested: b inside a, same centre
    b[s, :2] = a[s, :2]
    b[s, 2:4] = a[s, 2:4] * 0.3
    b[s, 4] = a[s, 4]
    return a, b


def test_random_pairs_match_shapely_within_1e5():
    rng = np.random.default_rng(0)
    a, b = _random_pairs(rng, 10_000)
    ours = rotated_iou_paired(a, b)
    ref = _shapely_iou(a, b)
    diff = np.abs(ours - ref)
    assert diff.max() <= 1e-5, f"max |diff| {diff.max()} at {np.argmax(diff)}: {a[np.argmax(diff)]} {b[np.argmax(diff)]}"
    # the hard slices really are hard: identical and w/h-swapped boxes have IoU 1, nested ones 0.09
    assert np.allclose(ours[:1666], 1.0, atol=1e-9)
    assert np.allclose(ours[5 * 833:6 * 833], 0.09, atol=1e-9)
    assert (ours > 0).mean() > 0.5


def test_scalar_and_vectorised_agree():
    rng = np.random.default_rng(1)
    a, b = _random_pairs(rng, 600)
    vec = rotated_iou_paired(a, b)
    scalar = np.array([rotated_iou(x, y) for x, y in zip(a, b)])
    assert np.abs(vec - scalar).max() <= 1e-12
    one_to_many = rotated_iou_one_to_many(a[0], b)
    assert np.abs(one_to_many - np.array([rotated_iou(a[0], y) for y in b])).max() <= 1e-12
    assert np.allclose(rotated_iou_pairwise(a[:5], b[:7])[2], rotated_iou_one_to_many(a[2], b[:7]))


def test_symmetric():
    rng = np.random.default_rng(2)
    a, b = _random_pairs(rng, 2000)
    assert np.abs(rotated_iou_paired(a, b) - rotated_iou_paired(b, a)).max() <= 1e-9


def test_angle_zero_equals_axis_aligned_iou():
    rng = np.random.default_rng(3)
    n = 3000
    xy = rng.uniform(0, 40, (n, 2))
    wh = rng.uniform(0.5, 20, (n, 2))
    a = np.column_stack([xy, wh, np.zeros(n)])
    b = np.column_stack([xy + rng.normal(0, 6, (n, 2)), rng.uniform(0.5, 20, (n, 2)), np.zeros(n)])
    corners = lambda r: np.column_stack([r[:, 0] - r[:, 2] / 2, r[:, 1] - r[:, 3] / 2,  # noqa: E731
                                         r[:, 0] + r[:, 2] / 2, r[:, 1] + r[:, 3] / 2])
    ca, cb = corners(a), corners(b)
    ix = np.clip(np.minimum(ca[:, 2], cb[:, 2]) - np.maximum(ca[:, 0], cb[:, 0]), 0, None)
    iy = np.clip(np.minimum(ca[:, 3], cb[:, 3]) - np.maximum(ca[:, 1], cb[:, 1]), 0, None)
    inter = ix * iy
    axis = inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)
    ours = rotated_iou_paired(a, b)
    assert np.abs(ours - axis).max() <= 1e-12
    assert (axis > 0).mean() > 0.3
    # and the NMS op's float32 corner IoU agrees to float32 precision
    f32 = np.array([corner_iou_one_to_many(ca[i], cb[i:i + 1])[0] for i in range(200)])
    assert np.abs(f32 - axis[:200]).max() <= 1e-5


@pytest.mark.parametrize("a, b, expected", [
    ([0, 0, 4, 2, math.pi / 2], [0, 0, 2, 4, 0], 1.0),  # a quarter turn swaps w and h
    ([0, 0, 4, 2, math.pi / 2], [1, 0, 2, 2, 0], 0.2),  # x in [-1, 1] y in [-2, 2] vs [0, 2] x [-1, 1]: 2 / 10
    ([0, 0, 10, 10, 0], [10, 0, 10, 10, 0], 0.0),  # touching edges
    ([0, 0, 10, 10, 0], [5, 0, 10, 10, 0], 1 / 3),  # collinear top and bottom edges
    ([0, 0, 10, 10, 0], [0, 0, 10, 10, 7 * math.pi], 1.0),  # angle far outside the range
    ([0, 0, 10, 2, math.pi / 4], [0, 0, 10, 10, 0], 0.2),  # inside
    ([0, 0, 0, 10, 0.3], [0, 0, 0, 10, 0.3], 0.0),  # zero width: area 0, IoU 0 even with itself
    ([0, 0, 5, 0, 0], [0, 0, 5, 5, 0], 0.0),  # zero height
    ([0, 0, -5, 5, 0], [0, 0, 5, 5, 0], 0.0),  # negative width counts as zero area
    ([1e6, 1e6, 3, 1, 0], [1e6 + 0.5, 1e6, 3, 1, 0], 2.5 / 3.5),  # large coordinates
    ([1e6, 1e6, 3, 1, 0.2], [1e6, 1e6, 3, 1, 0.2 + math.pi], 1.0),  # half turn at large coordinates
])
def test_hand_checked_pairs(a, b, expected):
    assert rotated_iou(a, b) == pytest.approx(expected, abs=1e-9)
    assert rotated_iou_one_to_many(a, np.array([b]))[0] == pytest.approx(expected, abs=1e-9)


def test_intersection_of_box_with_itself_is_its_area():
    assert rotated_intersection([3, 4, 6, 2, 1.1], [3, 4, 6, 2, 1.1]) == pytest.approx(12.0, abs=1e-9)
