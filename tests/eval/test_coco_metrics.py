"""COCO bbox metrics: every backend (numpy, faster-coco-eval) gives pycocotools' numbers; bad input is handled."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import pytest

from trtalign.core.detections import Detections
from trtalign.core.enums import Task
from trtalign.core.errors import InputError
from trtalign.eval.coco_metrics import COCO_STAT_KEYS, CocoMetrics
from trtalign.data.datasets import Dataset, GroundTruth, ImageRecord


def make_case(seed: int = 0, n_images: int = 40, cat_ids=(1, 3, 7, 90), empty_class: bool = True):
    """A random dataset with noisy detections (some images without ground truth, some classes without detections)."""
    rng = np.random.default_rng(seed)
    nc = len(cat_ids)
    images = [ImageRecord(i + 1, f"{i}.jpg", Path(f"{i}.jpg"), 640, 480) for i in range(n_images)]
    anns, dets = {}, {}
    for im in images:
        n = int(rng.integers(0, 9)) if im.id % 7 else 0  # every 7th image has no annotation
        xy = rng.uniform(0, 500, (n, 2))
        wh = rng.uniform(3, 200, (n, 2))
        cls = rng.integers(0, nc - 1 if empty_class else nc, n)  # the last class has no ground truth
        crowd = rng.uniform(size=n) < 0.05
        if n:
            anns[im.id] = GroundTruth(np.c_[xy, xy + wh], cls, crowd, wh[:, 0] * wh[:, 1])
        m = 3 * n + int(rng.integers(0, 4))
        src = rng.integers(0, max(n, 1), m)
        dxy = (xy[src] if n else rng.uniform(0, 500, (m, 2))) + rng.normal(0, 5, (m, 2))
        dwh = (wh[src] if n else rng.uniform(3, 200, (m, 2))) * rng.uniform(0.8, 1.25, (m, 2))
        dcls = np.where(rng.uniform(size=m) < 0.8, cls[src] if n else 0, rng.integers(0, nc, m))
        score = np.round(rng.uniform(size=m), 2)  # rounded: many ties
        dets[im.id] = Detections(np.c_[dxy, dxy + dwh], score, dcls)
    ds = Dataset(Task.DETECT, images, anns, [f"c{c}" for c in cat_ids], list(cat_ids), "test")
    return ds, dets


def pycocotools_stats(ds: Dataset, dets: dict, image_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """The reference: plain pycocotools on the same ground truth and detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = ds.to_coco()
    rows = []
    for iid, d in dets.items():
        for b, s, c in zip(d.boxes, d.scores, d.class_ids):
            rows.append({"image_id": iid, "category_id": ds.category_id(c), "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(rows)
        ev = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats, ev.eval["precision"]


def run(ds, dets, backend):
    m = CocoMetrics(ds, backend=backend)
    for iid, d in dets.items():
        m.update(iid, d)
    return m.compute()


@pytest.mark.parametrize("backend", ["numpy", "faster-coco-eval", "pycocotools"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_12_numbers_match_pycocotools(backend, seed):
    ds, dets = make_case(seed)
    ref_stats, ref_precision = pycocotools_stats(ds, dets)
    res = run(ds, dets, backend)
    ours = [res.stats[k] for k in COCO_STAT_KEYS]
    np.testing.assert_allclose(ours, ref_stats, atol=1e-4)  # identical to 4 decimals (in practice: bit-identical)
    assert res.backend == backend
    # per-class AP = mean of pycocotools' precision over IoU thresholds and recall points for that class
    for k, name in enumerate(ds.names):
        p = ref_precision[:, :, k, 0, -1]
        expected = p[p > -1].mean() if (p > -1).any() else float("nan")
        got = res.per_class[name]["ap"]
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-6)
    # the class without ground truth: AP is None in JSON and excluded from the mean, as pycocotools' -1
    assert res.to_dict()["per_class"][ds.names[-1]]["ap"] is None
    assert len(res.pr_curve["recall"]) == 101 and len(res.pr_curve["precision_50"]) == 101


@pytest.mark.parametrize("seed", [0, 1, 2, 8])
def test_numpy_backend_result_equals_pycocotools_backend_exactly(seed):
    """Not only the 12 numbers: per-class AP, AP50 and the PR curves are the same floats (same precision array)."""
    ds, dets = make_case(seed)
    ours, ref = run(ds, dets, "numpy").to_dict(), run(ds, dets, "pycocotools").to_dict()
    assert ours.pop("backend") == "numpy" and ref.pop("backend") == "pycocotools"
    assert ours == ref
    sub = sorted(dets)[1::3]
    m = CocoMetrics(ds, "numpy")
    m.update_many(dets)
    part = m.compute(sub).to_dict()
    stats = pycocotools_stats(ds, {i: dets[i] for i in sub}, image_ids=sub)[0]
    assert [part["stats"][k] for k in COCO_STAT_KEYS] == [float(v) if v >= 0 else None for v in stats]


def test_auto_backend_is_numpy():
    ds, dets = make_case(0)
    assert CocoMetrics(ds).backend == "numpy" and run(ds, dets, "auto").backend == "numpy"


def test_images_without_annotations_count_false_positives():
    ds, dets = make_case(3)
    empty_ids = [im.id for im in ds.images if im.id not in ds.annotations]
    assert empty_ids
    base = run(ds, dets, "auto").stats["map"]
    # add confident detections on images without ground truth: they must lower AP (as pycocotools does)
    extra = dict(dets)
    for iid in empty_ids:
        extra[iid] = Detections([[10, 10, 50, 50]] * 3, [0.99, 0.98, 0.97], [0, 1, 2])
    worse = run(ds, extra, "auto").stats["map"]
    assert worse < base
    assert worse == pytest.approx(pycocotools_stats(ds, extra)[0][0], abs=1e-4)


def test_no_detections_at_all_scores_zero():
    ds, dets = make_case(4)
    res = run(ds, {iid: Detections.empty() for iid in dets}, "auto")  # pycocotools' loadRes would crash here
    assert res.stats["map"] == 0.0 and res.stats["mar_100"] == 0.0 and res.num_detections == 0
    res2 = CocoMetrics(ds).compute()  # nothing updated at all
    assert res2.stats["map"] == 0.0


@pytest.mark.parametrize("bad, message", [
    # unknown image id (pycocotools asserts "Results do not correspond to current coco set")
    (lambda: (999, Detections([[0, 0, 1, 1]], [0.5], [0])), "unknown image id 999"),
    (lambda: (1, Detections([[0, 0, 1, 1]], [float("nan")], [0])), "NaN or infinite"),  # NaN score
    (lambda: (1, Detections([[0, 0, float("inf"), 1]], [0.5], [0])), "NaN or infinite"),  # inf box
    (lambda: (1, Detections([[0, 0, 1, 1]], [0.5], [9])), "class ids must be in 0..3"),  # class out of range
    (lambda: (1, Detections([[0, 0, 1, 1, 0]], [0.5], [0])), "xyxy"),  # rotated boxes into a bbox metric
])
def test_bad_detections_raise_clear_errors(bad, message):
    ds, _ = make_case(5)
    m = CocoMetrics(ds)
    image_id, det = bad()
    with pytest.raises(InputError, match=message):
        m.update(image_id, det)


def test_reset_and_update_are_incremental():
    ds, dets = make_case(6)
    m = CocoMetrics(ds)
    for iid, d in dets.items():
        m.update(iid, d)
    first = m.compute().stats
    m.reset()
    assert m.compute().stats["map"] == 0.0
    for iid, d in dets.items():
        m.update(iid, d)
    assert m.compute().stats == first


def test_rotated_dataset_scores_enclosing_boxes():
    # rotated ground truth and detections at angle 0: the COCO metric over enclosing boxes equals the xyxy one
    ds, dets = make_case(7)
    rot_anns = {k: GroundTruth(np.c_[(g.boxes[:, :2] + g.boxes[:, 2:]) / 2, g.boxes[:, 2:] - g.boxes[:, :2],
                                     np.zeros(len(g))], g.class_ids, g.ignore, g.areas)
                for k, g in ds.annotations.items()}
    rds = Dataset(Task.OBB, ds.images, rot_anns, ds.names, ds.category_ids, "test")
    rdets = {k: Detections(np.c_[(d.boxes[:, :2] + d.boxes[:, 2:]) / 2, d.boxes[:, 2:] - d.boxes[:, :2],
                                 np.zeros(len(d))], d.scores, d.class_ids) for k, d in dets.items()}
    assert run(rds, rdets, "auto").stats["map"] == pytest.approx(run(ds, dets, "auto").stats["map"], abs=1e-5)


def test_eval_speed_benchmark_runs_small():
    """benchmarks/eval_speed.py on a small set: it compares with pycocotools and returns 0 when all 12 agree."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "eval_speed.py"
    spec = importlib.util.spec_from_file_location("eval_speed", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--images", "25", "--dets", "15"]) == 0


@pytest.mark.parametrize("backend", ["numpy", "faster-coco-eval", "pycocotools"])
def test_repeated_evaluation_with_cached_ground_truth(backend):
    """A second CocoMetrics on the same dataset reuses its ground-truth index (the fallback search: same dataset, new
    detections); the 12 numbers equal pycocotools' and a fresh evaluation's, and the first result is unchanged."""
    from dataclasses import replace

    from trtalign.eval.coco_metrics import ground_truth_index

    ds, dets = make_case(8)
    first = run(ds, dets, backend)
    index = ground_truth_index(ds, backend)
    rng = np.random.default_rng(1)
    for _ in range(2):  # new detections each time: scores re-drawn, some dropped
        new = {}
        for iid, d in dets.items():
            keep = rng.uniform(size=len(d)) >= 0.2
            new[iid] = Detections(d.boxes[keep], np.round(rng.uniform(size=int(keep.sum())), 2), d.class_ids[keep])
        m = CocoMetrics(ds, backend=backend)
        for iid, d in new.items():
            m.update(iid, d)
        res = m.compute()
        assert m._gt is index  # the shared index, not rebuilt
        ours = [res.stats[k] for k in COCO_STAT_KEYS]
        np.testing.assert_allclose(ours, pycocotools_stats(ds, new)[0], atol=1e-4)
        fresh_ds = replace(ds, images=list(ds.images), annotations=dict(ds.annotations))  # nothing cached
        fresh = run(fresh_ds, new, backend)
        assert ground_truth_index(fresh_ds, backend) is not index
        assert fresh.to_dict() == res.to_dict()  # all 12 numbers, per-class AP and PR curves (NaN as None)
    again = run(ds, dets, backend)
    assert again.to_dict() == first.to_dict()
    # a subset of the images (compute(image_ids)) with the shared index equals pycocotools restricted to them
    sub = sorted(dets)[::2]
    m = CocoMetrics(ds, backend=backend)
    m.update_many(dets)
    part = m.compute(sub)
    assert part.num_gt == sum(int((~ds.annotations[i].ignore.astype(bool)).sum()) for i in sub if i in ds.annotations)
    np.testing.assert_allclose([part.stats[k] for k in COCO_STAT_KEYS],
                               pycocotools_stats(ds, {i: dets[i] for i in sub}, image_ids=sub)[0], atol=1e-4)


def test_ground_truth_index_follows_dataset_changes():
    from trtalign.eval.coco_metrics import ground_truth_index

    ds, dets = make_case(9)
    index = ground_truth_index(ds, "faster-coco-eval")
    assert ground_truth_index(ds, "faster-coco-eval") is index
    ds.annotations = {k: v for k, v in ds.annotations.items() if k % 2}  # replaced ground truth: re-indexed
    assert ground_truth_index(ds, "faster-coco-eval") is not index
    res = run(ds, dets, "faster-coco-eval")
    np.testing.assert_allclose([res.stats[k] for k in COCO_STAT_KEYS], pycocotools_stats(ds, dets)[0], atol=1e-4)
