"""The numpy COCO evaluator gives pycocotools' ``precision``, ``recall`` and 12 numbers bit for bit."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from trtalign.eval.coco_fast import (AREA_RANGES, IOU_THRESHOLDS, MAX_DETS, RECALL_THRESHOLDS, BboxGroundTruth,
                                     evaluate_bbox, pair_ious)


def pycocotools_eval(gt: dict, results: np.ndarray, image_ids=None):
    """The reference: pycocotools' COCOeval (bbox) on a copy of ``gt`` and the ``[N, 7]`` results."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def assert_same_as_pycocotools(gt: dict, results: np.ndarray, image_ids=None):
    ref = pycocotools_eval(gt, results, image_ids)
    ours = evaluate_bbox(BboxGroundTruth(copy.deepcopy(gt)), results, image_ids)
    assert ours.cat_ids == list(ref.params.catIds) and ours.image_ids == list(ref.params.imgIds)
    for name, got, want in (("precision", ours.precision, ref.eval["precision"]),
                            ("recall", ours.recall, ref.eval["recall"]), ("stats", ours.stats, ref.stats)):
        assert got.shape == np.shape(want), name
        bad = np.argwhere(got != want)
        assert not len(bad), f"{name} differs at {bad[:5].tolist()}: {got[tuple(bad[0])]} vs {want[tuple(bad[0])]}"
    return ours


def image(i):
    return {"id": i, "width": 640, "height": 480}


def ann(i, image_id, cat, box, area=None, crowd=0):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": [float(v) for v in box],
            "area": float(box[2] * box[3] if area is None else area), "iscrowd": crowd}


def det(image_id, box, score, cat):
    return [image_id, *box, score, cat]


def random_case(seed: int):
    """Random images, categories and boxes: crowd regions, areas on the range bounds and unlike w * h, boxes and
    scores rounded so IoUs and scores tie, images without ground truth or detections, some image-categories with
    more than 100 detections, sometimes an annotation with id 0."""
    rng = np.random.default_rng(seed)
    cats = sorted(rng.choice(np.arange(1, 20), int(rng.integers(1, 6)), replace=False).tolist())
    images = [image(int(i)) for i in rng.choice(np.arange(1, 1000), int(rng.integers(1, 30)), replace=False)]
    anns, rows = [], []
    for im in images:
        n = int(rng.integers(0, 12)) if rng.uniform() > 0.2 else 0
        n = int(rng.integers(20, 60)) if rng.uniform() < 0.1 else n
        xy = rng.uniform(0, 400, (n, 2)).round(int(rng.integers(0, 3)))
        wh = np.exp(rng.uniform(1, 5.5, (n, 2))).round(int(rng.integers(0, 3)))
        cls = rng.choice(cats, n)
        for j in range(n):
            area = wh[j, 0] * wh[j, 1] if rng.uniform() < 0.7 else rng.choice([32 ** 2, 96 ** 2, wh[j].prod() * .9])
            anns.append(ann(len(anns) + 1, im["id"], int(cls[j]), [*xy[j], *wh[j]], area, int(rng.uniform() < .08)))
        m = int(rng.integers(100, 300)) if rng.uniform() < 0.1 else int(rng.integers(0, 4 * n + 5))
        src = rng.integers(0, max(n, 1), m)
        if n:
            dxy = xy[src] + rng.normal(0, 3, (m, 2)) * (rng.uniform(size=(m, 1)) < 0.7)
            dwh = wh[src] * np.where(rng.uniform(size=(m, 1)) < 0.3, 1.0, rng.uniform(0.8, 1.25, (m, 2)))
        else:
            dxy, dwh = rng.uniform(0, 400, (m, 2)), np.exp(rng.uniform(1, 5.5, (m, 2)))
        dxy, dwh = dxy.round(int(rng.integers(0, 3))), dwh.round(int(rng.integers(0, 3)))
        dcls = np.where(rng.uniform(size=m) < 0.8, cls[src] if n else cats[0], rng.choice(cats, m))
        score = np.round(rng.uniform(size=m), int(rng.integers(1, 4)))
        rows += [det(im["id"], [*dxy[j], *dwh[j]], score[j], dcls[j]) for j in range(m)]
    if anns and rng.uniform() < 0.2:
        anns[0]["id"] = 0  # pycocotools reads a match to annotation id 0 as no match
    subset = None
    if rng.uniform() < 0.3:
        ids = [im["id"] for im in images]
        subset = sorted(rng.choice(ids, max(1, len(ids) // 2), replace=False).tolist())
    gt = {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in cats]}
    return gt, np.array(rows, np.float64).reshape(-1, 7), subset


def test_parameters_are_pycocotools_defaults():
    from pycocotools.cocoeval import Params

    p = Params(iouType="bbox")
    assert np.array_equal(IOU_THRESHOLDS, p.iouThrs) and np.array_equal(RECALL_THRESHOLDS, p.recThrs)
    assert list(MAX_DETS) == p.maxDets and [list(r) for r in AREA_RANGES] == p.areaRng


@pytest.mark.parametrize("seed", range(40))
def test_random_cases_equal_pycocotools_bit_for_bit(seed):
    gt, results, subset = random_case(seed)
    if not len(results):
        pytest.skip("pycocotools' loadRes cannot read an empty result set")
    assert_same_as_pycocotools(gt, results, subset)


G = [10, 10, 40, 40]  # a ground-truth box (area 1600: medium)
CASES = {
    # two detections on one box: the better-scored one matches, the other is a false positive
    "duplicate": ([ann(1, 1, 1, G)], [det(1, G, 0.9, 1), det(1, [11, 11, 40, 40], 0.8, 1)]),
    # a crowd region matches every detection that reaches it; they are ignored, not false positives
    "crowd": ([ann(1, 1, 1, G), ann(2, 1, 1, [0, 0, 200, 200], crowd=1)],
              [det(1, G, 0.9, 1)] + [det(1, [20 * i, 20 * i, 30, 30], 0.5, 1) for i in range(5)]),
    # a crowd region is taken only when no normal ground truth is reachable
    "crowd after normal": ([ann(1, 1, 1, [0, 0, 100, 100], crowd=1), ann(2, 1, 1, G)], [det(1, G, 0.7, 1)]),
    # equal IoU with two ground-truth boxes: pycocotools takes the last
    "iou tie": ([ann(1, 1, 1, [0, 0, 20, 20]), ann(2, 1, 1, [20, 0, 20, 20])],
                [det(1, [10, 0, 20, 20], 0.9, 1), det(1, [10, 0, 20, 20], 0.8, 1)]),
    # equal scores within an image and across images: input order, then image order
    "score ties": ([ann(1, 1, 1, G), ann(2, 2, 1, G)],
                   [det(2, G, 0.5, 1), det(1, [60, 60, 10, 10], 0.5, 1), det(1, G, 0.5, 1), det(2, G, 0.5, 1)]),
    # images with ground truth and no detection, detections on an image without ground truth
    "empty images": ([ann(1, 1, 1, G), ann(2, 3, 2, G)], [det(2, G, 0.9, 1), det(1, G, 0.3, 1)]),
    # 150 detections in one image-category, every 5th on a ground-truth box: only the best 100 are evaluated
    # (the last 10 hits are not), maxDets 1 and 10 take the best 1 and 10
    "max dets": ([ann(i + 1, 1, 1, [5 * i, 5 * i, 20, 20]) for i in range(30)],
                 [det(1, [5 * (i // 5), 5 * (i // 5), 20, 20] if i % 5 == 0 else [400 + i, 300, 10, 10],
                      round(1 - i / 200, 3), 1) for i in range(150)]),
    # area from the annotation, not from the box; bounds 32^2 and 96^2 belong to both neighbouring ranges;
    # an unmatched detection outside a range is ignored there
    "area ranges": ([ann(1, 1, 1, G, area=32 ** 2), ann(2, 1, 1, [100, 100, 96, 96], area=96 ** 2),
                     ann(3, 1, 1, [300, 300, 10, 10], area=5000)],
                    [det(1, G, 0.9, 1), det(1, [100, 100, 96, 96], 0.8, 1), det(1, [300, 300, 10, 10], 0.7, 1),
                     det(1, [400, 10, 100, 100], 0.95, 1), det(1, [400, 300, 5, 5], 0.6, 1)]),
    # a category without ground truth: -1 everywhere, excluded from the means
    "class without ground truth": ([ann(1, 1, 1, G)], [det(1, G, 0.9, 1), det(1, G, 0.9, 2)]),
    # no ground truth at all: every number is -1
    "no ground truth": ([], [det(1, G, 0.9, 1), det(2, G, 0.8, 2)]),
    # a match to annotation id 0 counts as no match in pycocotools
    "annotation id 0": ([ann(0, 1, 1, G), ann(5, 1, 1, [100, 100, 30, 30])],
                        [det(1, G, 0.9, 1), det(1, [100, 100, 30, 30], 0.8, 1)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_golden_cases_equal_pycocotools(name):
    anns, rows = CASES[name]
    gt = {"images": [image(1), image(2), image(3)], "annotations": anns,
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    assert_same_as_pycocotools(gt, np.array(rows, np.float64))


def test_no_detections_scores_zero_where_there_is_ground_truth():
    gt = {"images": [image(1)], "annotations": [ann(1, 1, 1, G)],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    ev = evaluate_bbox(BboxGroundTruth(gt), np.zeros((0, 7)))
    assert (ev.precision[:, :, 0, 0] == 0).all() and (ev.recall[:, 0, 0] == 0).all()
    assert (ev.precision[:, :, 1] == -1).all() and (ev.recall[:, 1] == -1).all()  # no ground truth
    assert ev.stats[0] == 0 and ev.stats[3] == -1  # no small ground truth: -1, as pycocotools


def test_pair_ious_follow_pycocotools_bbox_iou():
    from pycocotools import mask

    rng = np.random.default_rng(0)
    dt = rng.uniform(0, 50, (200, 4)).round(1)
    gt = rng.uniform(0, 50, (7, 4)).round(1)
    crowd = np.array([0, 1, 0, 0, 1, 0, 0])
    want = mask.iou(dt.tolist(), gt.tolist(), crowd.tolist())
    d, g = np.repeat(np.arange(200), 7), np.tile(np.arange(7), 200)
    got = pair_ious(dt[d], gt[g], crowd[g].astype(bool)).reshape(200, 7)
    assert np.array_equal(got, want)


def test_unknown_images_and_categories_are_left_out():
    gt = {"images": [image(1)], "annotations": [ann(1, 1, 1, G)], "categories": [{"id": 1, "name": "a"}]}
    base = evaluate_bbox(BboxGroundTruth(gt), np.array([det(1, G, 0.9, 1)], np.float64))
    more = evaluate_bbox(BboxGroundTruth(gt), np.array([det(1, G, 0.9, 1), det(1, G, 0.95, 7),
                                                        det(9, G, 0.99, 1)], np.float64))
    assert np.array_equal(base.precision, more.precision) and np.array_equal(base.stats, more.stats)
