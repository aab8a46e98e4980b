"""Paired bootstrap intervals: the stored per-image matches re-accumulate to pycocotools' mAP of the resampled
multiset (copies of an image as separate images), identical models give [0, 0], fewer images widen the interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.eval.test_coco_metrics import make_case, pycocotools_stats
from trtalign.core.detections import Detections
from trtalign.core.enums import Task
from trtalign.core.errors import InputError
from trtalign.data.datasets import Dataset, GroundTruth, ImageRecord
from trtalign.eval.bootstrap import MatchTable, paired_bootstrap, resample_counts
from trtalign.eval.rotated_metrics import evaluate_rotated


def duplicated(ds: Dataset, dets: dict, counts: np.ndarray) -> tuple[Dataset, dict]:
    """The multiset as a dataset: image ``i`` appears ``counts[i]`` times, copies one after another, new ids."""
    ids = sorted(im.id for im in ds.images)
    images, anns, out = [], {}, {}
    for iid, c in zip(ids, counts):
        for _ in range(int(c)):
            new = len(images) + 1
            images.append(ImageRecord(new, f"{new}.jpg", Path(f"{new}.jpg"), 640, 480))
            if iid in ds.annotations:
                anns[new] = ds.annotations[iid]
            if iid in dets:
                out[new] = dets[iid]
    return Dataset(ds.task, images, anns, ds.names, ds.category_ids, "dup"), out


@pytest.mark.parametrize("seed", [0, 1])
def test_full_map_equals_pycocotools(seed):
    ds, dets = make_case(seed)  # rounded scores (many ties), crowd boxes, images and a class without ground truth
    ref, _ = pycocotools_stats(ds, dets)
    m, m50 = MatchTable(ds, dets).map()
    assert m == pytest.approx(ref[0], abs=1e-12)
    assert m50 == pytest.approx(ref[1], abs=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_resampled_map_equals_full_reevaluation_of_the_multiset(seed):
    ds, dets = make_case(seed, n_images=25)
    table = MatchTable(ds, dets)
    assert any(not c.exact_order for c in table._classes if c is not None)  # ties inside an image: the slow path
    for counts in resample_counts(len(ds.images), 3, seed=seed):
        dds, ddets = duplicated(ds, dets, counts)
        ref, _ = pycocotools_stats(dds, ddets)
        m, m50 = table.map(counts)
        assert m == pytest.approx(ref[0], abs=1e-12)
        assert m50 == pytest.approx(ref[1], abs=1e-12)


def test_resampled_map_without_ties_takes_the_fast_path():
    ds, dets = make_case(5, n_images=20)
    rng = np.random.default_rng(0)
    dets = {k: Detections(d.boxes, rng.uniform(size=len(d)), d.class_ids) for k, d in dets.items()}  # no ties
    table = MatchTable(ds, dets)
    assert all(c.exact_order for c in table._classes if c is not None)
    counts = resample_counts(len(ds.images), 1, seed=9)[0]
    dds, ddets = duplicated(ds, dets, counts)
    assert table.map(counts)[0] == pytest.approx(pycocotools_stats(dds, ddets)[0][0], abs=1e-12)


def test_rotated_resample_equals_rotated_metrics_of_the_multiset():
    ds, dets = make_case(7, n_images=20)

    def to_r(b, rng):
        return np.c_[(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2], rng.uniform(-0.3, 0.3, len(b))]

    rng = np.random.default_rng(1)
    anns = {k: GroundTruth(to_r(g.boxes, rng), g.class_ids, g.ignore, g.areas)  # ignored boxes count as crowd
            for k, g in ds.annotations.items()}
    rds = Dataset(Task.OBB, ds.images, anns, ds.names, ds.category_ids, "test")
    rdets = {k: Detections(to_r(d.boxes, rng), d.scores, d.class_ids) for k, d in dets.items()}
    assert any(g.ignore.any() for g in anns.values())
    table = MatchTable(rds, rdets)
    full = evaluate_rotated(rds, rdets).stats
    assert table.map()[0] == pytest.approx(full["map"], abs=1e-12)
    counts = resample_counts(len(ds.images), 1, seed=2)[0]
    dds, ddets = duplicated(rds, rdets, counts)
    assert table.map(counts)[0] == pytest.approx(evaluate_rotated(dds, ddets).stats["map"], abs=1e-12)


def test_identical_models_give_exactly_zero():
    ds, dets = make_case(2)
    ci = paired_bootstrap(ds, dets, dict(dets), resamples=200, seed=0)
    assert ci.delta == 0.0 and ci.ci95 == [0.0, 0.0] and ci.ci95_50 == [0.0, 0.0]


def perturbed(dets: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {k: Detections(d.boxes + rng.normal(0, 4, d.boxes.shape), d.scores, d.class_ids) for k, d in dets.items()}


def test_interval_contains_the_delta_is_seeded_and_widens_with_fewer_images():
    ds, dets = make_case(4, n_images=120)
    worse = perturbed(dets, 0)
    ci = paired_bootstrap(ds, worse, dets, resamples=300, seed=0)
    ref_a, ref_b = pycocotools_stats(ds, worse)[0][0], pycocotools_stats(ds, dets)[0][0]
    assert ci.delta == pytest.approx(ref_a - ref_b, abs=1e-12)
    assert ci.low <= ci.delta <= ci.high and ci.high < 0  # noisy boxes: a real drop, seen with confidence
    again = paired_bootstrap(ds, worse, dets, resamples=300, seed=0)
    assert again.ci95 == ci.ci95
    assert paired_bootstrap(ds, worse, dets, resamples=300, seed=1).ci95 != ci.ci95
    widths = []
    for n in (120, 60, 30, 15):
        ids = sorted(im.id for im in ds.images)[:n]
        c = paired_bootstrap(ds, worse, dets, resamples=300, seed=0, image_ids=ids)
        widths.append(c.high - c.low)
    assert widths == sorted(widths) and widths[-1] > 2 * widths[0]


def test_images_outside_the_evaluated_ones_are_refused():
    ds, dets = make_case(1, n_images=10)
    with pytest.raises(InputError, match="not in the dataset"):
        MatchTable(ds, {**dets, 999: dets[1]})
    with pytest.raises(InputError, match="not in the dataset"):
        MatchTable(ds, dets, image_ids=[1, 2, 999])
    with pytest.raises(InputError, match="NaN or infinite"):
        MatchTable(ds, {1: Detections([[0, 0, 1, 1]], [float("nan")], [0])})


def test_rows_after_the_last_true_positive_are_dropped_and_change_nothing():
    """A tail of low-score false positives (what conf 0.001 leaves) is cut from the table; the full and resampled
    mAPs still equal pycocotools' on the dataset with the tail."""
    ds, dets = make_case(11, n_images=20)
    rng = np.random.default_rng(1)
    tail = {}
    for k, d in dets.items():  # 30 far-away boxes per image below every real score, every class
        n = 30
        boxes = np.column_stack([rng.uniform(600, 620, n), rng.uniform(440, 460, n)])
        boxes = np.column_stack([boxes, boxes + rng.uniform(1, 5, (n, 2))])
        tail[k] = Detections(np.vstack([d.boxes, boxes]), np.concatenate([d.scores, rng.uniform(0, 1e-3, n)]),
                             np.concatenate([d.class_ids, rng.integers(0, len(ds.names), n)]))
    table = MatchTable(ds, tail)
    rows = sum(len(c.image) for c in table._classes if c is not None)
    assert rows < sum(min(len(d), 100 * len(ds.names)) for d in tail.values())  # the tail is gone
    ref, _ = pycocotools_stats(ds, tail)
    assert table.map()[0] == pytest.approx(ref[0], abs=1e-12)
    for counts in resample_counts(len(ds.images), 2, seed=4):
        dds, ddets = duplicated(ds, tail, counts)
        assert table.map(counts)[0] == pytest.approx(pycocotools_stats(dds, ddets)[0][0], abs=1e-12)


def test_a_reference_is_resampled_once_and_gives_the_same_interval():
    from trtalign.eval.bootstrap import bootstrap_tables

    ds, dets = make_case(2, n_images=15)
    rng = np.random.default_rng(3)
    other = {k: Detections(d.boxes + rng.normal(0, 2, d.boxes.shape), d.scores, d.class_ids) for k, d in dets.items()}
    ref, plan = MatchTable(ds, dets), MatchTable(ds, other)
    first = bootstrap_tables(plan, ref, 200, 5)
    assert ref.resampled(200, 5) is ref.resampled(200, 5)  # kept, not recomputed
    fresh = bootstrap_tables(MatchTable(ds, other), MatchTable(ds, dets), 200, 5)
    assert (first.delta, first.low, first.high) == (fresh.delta, fresh.low, fresh.high)
    counts = resample_counts(len(ds.images), 200, 5)
    assert ref.resampled(200, 5)[17].tolist() == list(ref.map(counts[17]))
