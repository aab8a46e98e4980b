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
from trtalign.core.geometry import rotated_iou_matrix
from trtalign.eval.rotated_metrics import RotatedMetrics, evaluate_rotated, voc_ap


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


# ------------------------------------------------------------------ crowd / ignored boxes follow pycocotools
def _to_r(b):
    return np.c_[(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2], np.zeros(len(b))]


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_coco_style_with_crowd_boxes_equals_pycocotools_at_angle_zero(seed):
    """Crowd boxes kept (and made frequent): pycocotools scores a crowd box by intersection / detection area and
    lets it absorb many detections; the rotated COCO-style path must give the same 12 numbers' AP / AR."""
    from tests.eval.test_coco_metrics import make_case, pycocotools_stats

    ds, dets = make_case(seed, n_images=30, empty_class=False)
    rng = np.random.default_rng(seed)
    ds.annotations = {k: GroundTruth(g.boxes, g.class_ids, rng.uniform(size=len(g)) < 0.3, g.areas)
                      for k, g in ds.annotations.items()}
    # detections inside crowd boxes: small boxes (intersection / own area 1, IoU small) and copies
    for k, g in ds.annotations.items():
        crowd = g.boxes[g.ignore]
        if len(crowd) and k in dets:
            c = crowd[0]
            inner = np.array([[c[0], c[1], c[0] + (c[2] - c[0]) / 3, c[1] + (c[3] - c[1]) / 3], c, c])
            d = dets[k]
            dets[k] = Detections(np.r_[d.boxes, inner], np.r_[d.scores, [0.95, 0.9, 0.85]],
                                 np.r_[d.class_ids, np.full(3, g.class_ids[g.ignore][0])])
    assert sum(int(g.ignore.sum()) for g in ds.annotations.values()) >= 10
    ref_stats, _ = pycocotools_stats(ds, dets)
    rds = _dataset({k: GroundTruth(_to_r(g.boxes), g.class_ids, g.ignore, g.areas)
                    for k, g in ds.annotations.items()}, len(ds.images), ds.names)
    res = evaluate_rotated(rds, {k: Detections(_to_r(d.boxes), d.scores, d.class_ids) for k, d in dets.items()})
    for key, i in (("map", 0), ("map50", 1), ("map75", 2), ("mar_100", 8)):
        assert res.stats[key] == pytest.approx(ref_stats[i], abs=1e-9), key


def test_issue_reproducer_one_crowd_box_absorbs_two_detections():
    """GT: one regular box and one ignored box; detections: two copies of the ignored box (0.9, 0.8) and the regular
    box (0.7). pycocotools (axis-aligned, angle 0) and the DOTA path give 1.0; the COCO-style path too."""
    g = np.array([[100, 100, 20, 10, 0], [300, 300, 40, 40, 0]], float)
    anns = {1: GroundTruth(g, np.zeros(2, np.int64), np.array([False, True]), np.array([200.0, 1600.0]))}
    dets = {1: Detections([[300, 300, 40, 40, 0], [300, 300, 40, 40, 0], [100, 100, 20, 10, 0]],
                          [0.9, 0.8, 0.7], [0, 0, 0])}
    res = evaluate_rotated(_dataset(anns, 1, names=("x",)), dets)
    assert res.stats["map50"] == pytest.approx(1.0)
    assert res.stats["map"] == pytest.approx(1.0)
    assert res.stats["map50_voc"] == pytest.approx(1.0)


# ------------------------------------------------------------------ DOTA: a port of DOTA_devkit's voc_eval
def _devkit_voc_eval(lines: list[str], gt: dict, classname: str, ovthresh: float = 0.5, use_07_metric: bool = False,
                     kind: str | None = None):
    """DOTA_devkit ``dota_evaluation_task1.voc_eval``, written again here from its algorithm: results-file lines
    ``"image score x1 y1 ... x4 y4"`` parsed as text, ``np.argsort(-confidence)`` (numpy's default sort), the
    axis-aligned pre-filter with its +1 pixel, polygon IoU (shapely standing in for the devkit's polyiou), difficult
    boxes neither TP nor FP, VOC AP. ``kind``: the sort kind (None = numpy's default, as the devkit)."""
    import shapely

    class_recs, npos = {}, 0
    for image, objs in gt.items():
        mine = [o for o in objs if o["name"] == classname]
        bbox = np.array([o["poly"] for o in mine], float).reshape(-1, 8)
        difficult = np.array([o["difficult"] for o in mine], bool)
        npos += int((~difficult).sum())
        class_recs[image] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(mine)}
    split = [x.strip().split(" ") for x in lines]
    image_ids = [x[0] for x in split]
    confidence = np.array([float(x[1]) for x in split])
    bb_all = np.array([[float(z) for z in x[2:]] for x in split]).reshape(-1, 8)
    sorted_ind = np.argsort(-confidence, kind=kind)
    bb_all = bb_all[sorted_ind]
    image_ids = [image_ids[i] for i in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        rec = class_recs[image_ids[d]]
        bb, gts = bb_all[d], rec["bbox"]
        ovmax, jmax = -np.inf, -1
        if gts.size:
            gx0, gy0 = gts[:, 0::2].min(1), gts[:, 1::2].min(1)
            gx1, gy1 = gts[:, 0::2].max(1), gts[:, 1::2].max(1)
            bx0, by0, bx1, by1 = bb[0::2].min(), bb[1::2].min(), bb[0::2].max(), bb[1::2].max()
            iw = np.maximum(np.minimum(gx1, bx1) - np.maximum(gx0, bx0) + 1.0, 0.0)
            ih = np.maximum(np.minimum(gy1, by1) - np.maximum(gy0, by0) + 1.0, 0.0)
            keep = np.where(iw * ih > 0)[0]
            if len(keep):
                pd = shapely.Polygon(bb.reshape(4, 2))
                ov = []
                for j in keep:
                    pg = shapely.Polygon(gts[j].reshape(4, 2))
                    inter = pd.intersection(pg).area
                    ov.append(inter / (pd.area + pg.area - inter))
                ovmax, jmax = float(np.max(ov)), int(keep[int(np.argmax(ov))])
        if ovmax > ovthresh:
            if not rec["difficult"][jmax]:
                if not rec["det"][jmax]:
                    tp[d], rec["det"][jmax] = 1.0, True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec_ = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        return sum((prec[rec_ >= t].max() if (rec_ >= t).any() else 0.0) / 11.0 for t in np.arange(0.0, 1.1, 0.1))
    mrec = np.concatenate(([0.0], rec_, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _corners8(b):
    from trtalign.core.geometry import rotated_corners

    return rotated_corners(np.asarray(b, float)).reshape(-1, 8)


@pytest.mark.parametrize("seed", range(4))
def test_dota_ap_with_tied_scores_equals_devkit_port(seed):
    """FP16-like scores (multiples of 1/16: ties everywhere, exact in text) over 40 images: the DOTA numbers equal
    the devkit's, whose unstable sort puts tied detections in another order than a stable sort."""
    rng = np.random.default_rng(100 + seed)
    names = ("a", "b")
    anns, dets, gt_files = {}, {}, {}
    image_order = rng.permutation(np.arange(1, 41))  # detections are given in this image order
    for iid in range(1, 41):
        n = int(rng.integers(0, 6))
        g = random_boxes(rng, n, 300)
        cls = rng.integers(0, 2, n)
        diff = rng.uniform(size=n) < 0.15
        anns[iid] = GroundTruth(g, cls, diff, g[:, 2] * g[:, 3])
        gt_files[str(iid)] = [{"name": names[c], "difficult": int(d), "poly": p}
                              for c, d, p in zip(cls, diff, _corners8(g))]
        m = 2 * n + int(rng.integers(0, 3))
        src = rng.integers(0, max(n, 1), m)
        db = (g[src] if n else random_boxes(rng, m, 300)) + np.c_[rng.normal(0, 4, (m, 2)), rng.normal(0, 2, (m, 2)),
                                                                  rng.normal(0, 0.1, m)]
        dcls = np.where(rng.uniform(size=m) < 0.85, cls[src] if n else 0, rng.integers(0, 2, m))
        dets[iid] = Detections(db, rng.integers(1, 16, m) / 16.0, dcls)
    m = RotatedMetrics(_dataset(anns, 40, names=names))
    lines = {c: [] for c in names}
    for iid in image_order:  # the results file lists detections in the order they were given
        d = dets[int(iid)]
        m.update(int(iid), d)
        for b, s, c in zip(_corners8(d.boxes), d.scores, d.class_ids):
            lines[names[c]].append(f"{iid} {float(s)!r} " + " ".join(repr(float(v)) for v in b))
    res = m.compute()
    differs = False
    for c in names:
        assert len(lines[c]) > 16  # above numpy's insertion-sort cutoff: the sort is really not stable
        want = _devkit_voc_eval(lines[c], gt_files, c)
        want07 = _devkit_voc_eval(lines[c], gt_files, c, use_07_metric=True)
        assert res.per_class[c]["ap50_voc"] == pytest.approx(want, abs=1e-12)
        assert res.per_class[c]["ap50_voc07"] == pytest.approx(want07, abs=1e-12)
        # the same port with a stable sort: the tie order matters on these sets (the test can tell them apart)
        differs |= abs(_devkit_voc_eval(lines[c], gt_files, c, kind="stable") - want) > 1e-12
    if seed == 0:
        assert differs
