"""Rotated mAP: exact polygon IoU (checked against shapely and the plugins' reference), COCO-style AP equal to
pycocotools at angle 0, DOTA VOC AP on hand-computed cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from trtalign.core.detections import Detections
from trtalign.core.enums import Task
from trtalign.core.errors import InputError
from trtalign.data.datasets import Dataset, GroundTruth, ImageRecord
from trtalign.eval.rotated_metrics import RotatedMetrics, evaluate_rotated, rotated_iou_matrix, voc_ap


def shapely_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Independent reference: shapely polygons built from float64 corners."""
    import shapely

    def polys(x):
        x = np.asarray(x, np.float64).reshape(-1, 5)
        c, s = np.cos(x[:, 4]), np.sin(x[:, 4])
        dx = np.stack([x[:, 2] / 2 * c, x[:, 2] / 2 * s], -1)
        dy = np.stack([-x[:, 3] / 2 * s, x[:, 3] / 2 * c], -1)
        ctr = x[:, :2]
        return shapely.polygons(np.stack([ctr + dx + dy, ctr + dx - dy, ctr - dx - dy, ctr - dx + dy], 1))

    pa, pb = polys(a), polys(b)
    inter = shapely.area(shapely.intersection(pa[:, None], pb[None, :]))
    union = shapely.area(pa)[:, None] + shapely.area(pb)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def random_boxes(rng, n, spread=100.0):
    return np.stack([rng.uniform(0, spread, n), rng.uniform(0, spread, n), rng.uniform(1, 60, n),
                     rng.uniform(1, 60, n), rng.uniform(-math.pi, math.pi, n)], 1)


@pytest.mark.parametrize("seed", range(4))
def test_iou_matches_shapely_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 120), random_boxes(rng, 90)
    b[:20] = a[:20]  # identical boxes: IoU 1
    b[20:30] = a[20:30] * [1, 1, 0.5, 0.5, 1]  # nested: IoU 0.25
    b[30:40] = a[30:40] + [0, 0, 0, 0, math.pi / 2]  # the same centre turned by 90 degrees
    b[40:50] = a[40:50] + [0, 0, 0, 0, math.pi]  # turned by 180 degrees: the same rectangle
    ours = rotated_iou_matrix(a, b)
    ref = shapely_iou(a, b)
    assert (ref > 0).sum() > 300  # the case really has overlaps
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    np.testing.assert_allclose(np.diag(ours[:20, :20]), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.diag(ours[20:30, 20:30]), 0.25, atol=1e-9)


@pytest.mark.parametrize("a, b, expected", [
    ([0, 0, 2, 2, 0], [1, 0, 2, 2, 0], 1 / 3),  # half overlap, axis-aligned
    ([0, 0, 2, 2, 0], [2, 0, 2, 2, 0], 0.0),  # touching edges
    ([0, 0, 2, 2, 0], [0, 0, 2, 2, math.pi / 4], None),  # square vs its 45-degree turn: octagon (shapely)
    ([0, 0, 4, 1, 0], [0, 0, 4, 1, math.pi / 2], 1 / 7),  # a cross: 1x1 overlap of two 4x1 bars
    ([0, 0, 0, 5, 0], [0, 0, 3, 5, 0], 0.0),  # a zero-width box
    ([1e4, 1e4, 3, 2, 0.3], [1e4 + 0.5, 1e4, 3, 2, 0.3], None),  # far from the origin
    ([0, 0, 10, 10, 0], [0, 0, 10, 10, 1e-9], 1.0),  # almost identical angles
])
def test_iou_edge_cases(a, b, expected):
    got = rotated_iou_matrix(np.array([a]), np.array([b]))[0, 0]
    ref = shapely_iou(np.array([a]), np.array([b]))[0, 0] if expected is None else expected
    assert got == pytest.approx(ref, abs=1e-7)


def test_iou_matches_plugins_reference():
    ref_mod = pytest.importorskip("trtalign.plugins.reference.rotated_iou")
    rng = np.random.default_rng(11)
    a, b = random_boxes(rng, 40), random_boxes(rng, 30)
    np.testing.assert_allclose(rotated_iou_matrix(a, b), ref_mod.rotated_iou_pairwise(a, b), atol=1e-6)


def _dataset(anns: dict, n_images: int, names=("a", "b", "c")) -> Dataset:
    images = [ImageRecord(i + 1, f"{i}.jpg", Path(f"{i}.jpg"), 640, 480) for i in range(n_images)]
    return Dataset(Task.OBB, images, anns, list(names), list(range(1, len(names) + 1)), "test")


def test_coco_style_equals_pycocotools_at_angle_zero():
    from tests.eval.test_coco_metrics import make_case, pycocotools_stats

    ds, dets = make_case(21, empty_class=True)
    ds.annotations = {k: GroundTruth(g.boxes, g.class_ids, np.zeros(len(g), bool), g.areas)  # no crowd boxes
                      for k, g in ds.annotations.items()}
    ref_stats, _ = pycocotools_stats(ds, dets)

    def to_r(b):
        return np.c_[(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2], np.zeros(len(b))]

    rds = _dataset({k: GroundTruth(to_r(g.boxes), g.class_ids, g.ignore, g.areas)
                    for k, g in ds.annotations.items()}, len(ds.images), ds.names)
    res = evaluate_rotated(rds, {k: Detections(to_r(d.boxes), d.scores, d.class_ids) for k, d in dets.items()})
    assert res.stats["map"] == pytest.approx(ref_stats[0], abs=1e-6)
    assert res.stats["map50"] == pytest.approx(ref_stats[1], abs=1e-6)
    assert res.stats["map75"] == pytest.approx(ref_stats[2], abs=1e-6)
    assert res.stats["mar_100"] == pytest.approx(ref_stats[8], abs=1e-6)
    assert res.to_dict()["per_class"][ds.names[-1]]["ap"] is None  # no ground truth for that class


def test_rotation_of_the_whole_scene_keeps_ap():
    rng = np.random.default_rng(5)
    anns, dets = {}, {}
    for i in range(1, 9):
        g = random_boxes(rng, 6, 400)
        cls = rng.integers(0, 3, 6)
        anns[i] = GroundTruth(g, cls, np.zeros(6, bool), g[:, 2] * g[:, 3])
        d = np.repeat(g, 2, 0) + rng.normal(0, [3, 3, 2, 2, 0.05], (12, 5))
        dets[i] = Detections(d, rng.uniform(size=12), np.repeat(cls, 2))
    ds = _dataset(anns, 8)
    base = evaluate_rotated(ds, dets)
    t = 0.7  # rotate every box (centre and angle) about the origin

    def turn(b):
        c, s = math.cos(t), math.sin(t)
        return np.c_[b[:, 0] * c - b[:, 1] * s, b[:, 0] * s + b[:, 1] * c, b[:, 2:4], b[:, 4] + t]

    turned = evaluate_rotated(_dataset({k: GroundTruth(turn(g.boxes), g.class_ids, g.ignore, g.areas)
                                        for k, g in anns.items()}, 8),
                              {k: Detections(turn(d.boxes), d.scores, d.class_ids) for k, d in dets.items()})
    assert 0.05 < base.stats["map"] < 0.95
    for key in ("map", "map50", "map50_voc07", "map50_voc"):
        assert turned.stats[key] == pytest.approx(base.stats[key], abs=1e-6)


def test_dota_voc_ap_hand_computed():
    # one class, 2 ground-truth boxes (one difficult) in image 1, 1 in image 2
    g1 = np.array([[50, 50, 20, 10, 0.3], [200, 200, 30, 30, 0.0]])
    g2 = np.array([[100, 100, 40, 10, 1.0]])
    anns = {1: GroundTruth(g1, np.zeros(2, np.int64), np.array([False, True]), np.array([200.0, 900.0])),
            2: GroundTruth(g2, np.zeros(1, np.int64), np.zeros(1, bool), np.array([400.0]))}
    dets = {1: Detections([[50, 50, 20, 10, 0.3],  # 0.9: TP
                           [50, 50, 20, 10, 0.3],  # 0.8: duplicate -> FP
                           [200, 200, 30, 30, 0.0],  # 0.7: matches the difficult box -> ignored
                           [400, 400, 10, 10, 0]],  # 0.6: nothing there -> FP
                          [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0]),
            2: Detections([[100, 100, 40, 10, 1.0]], [0.5], [0])}  # 0.5: TP
    res = evaluate_rotated(_dataset(anns, 2, names=("x",)), dets)
    # sorted: TP, FP, (ignored), FP, TP -> recall 0.5, 0.5, 0.5, 1.0 ; precision 1, 1/2, 1/3, 1/2 (npos = 2)
    rec = np.array([0.5, 0.5, 0.5, 1.0])
    prec = np.array([1.0, 0.5, 1 / 3, 0.5])
    assert res.per_class["x"]["ap50_voc"] == pytest.approx(voc_ap(rec, prec, False))
    assert res.per_class["x"]["ap50_voc"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    # 07: p(r>=0..0.5) = 1 for 6 points, p(r>=0.6..1.0) = 0.5 for 5 points
    assert res.per_class["x"]["ap50_voc07"] == pytest.approx((6 * 1.0 + 5 * 0.5) / 11)
    assert res.per_class["x"]["num_gt"] == 2


def test_voc_ap_variants():
    rec = np.array([0.1, 0.2, 0.4, 0.4, 0.8])
    prec = np.array([1.0, 0.9, 0.8, 0.6, 0.5])
    # area: 0.1*1 + 0.1*0.9 + 0.2*0.8 + 0.4*0.5
    assert voc_ap(rec, prec) == pytest.approx(0.1 + 0.09 + 0.16 + 0.2)
    # 11-point: t=0..0.1 -> 1.0 (2 points), 0.2 -> 0.9, 0.3..0.4 -> 0.8 (2), 0.5..0.8 -> 0.5 (4), 0.9, 1.0 -> 0
    assert voc_ap(rec, prec, True) == pytest.approx((2 * 1.0 + 0.9 + 2 * 0.8 + 4 * 0.5) / 11)


def test_errors_and_empty_input():
    g = np.array([[50, 50, 20, 10, 0.3]])
    ds = _dataset({1: GroundTruth(g, np.zeros(1, np.int64), np.zeros(1, bool), np.array([200.0]))}, 2)
    m = RotatedMetrics(ds)
    with pytest.raises(InputError, match="unknown image id 7"):
        m.update(7, Detections(g, [0.5], [0]))
    with pytest.raises(InputError, match="NaN"):
        m.update(1, Detections(g, [float("nan")], [0]))
    with pytest.raises(InputError, match="xywhr"):
        m.update(1, Detections([[0, 0, 1, 1]], [0.5], [0]))
    m.update(2, Detections.empty(rotated=True))  # an image without ground truth and without detections
    res = m.compute()
    assert res.stats["map"] == 0.0 and res.stats["map50_voc"] == 0.0 and res.num_detections == 0
    from trtalign.eval.coco_metrics import CocoMetrics  # noqa: F401  (a detect dataset is refused)
    with pytest.raises(InputError, match="rotated"):
        RotatedMetrics(Dataset(Task.DETECT, ds.images, {}, ds.names, ds.category_ids))
