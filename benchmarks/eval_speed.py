"""Evaluation speed: trtalign's COCO evaluation vs pycocotools on a COCO-sized synthetic set, in one run.

    python benchmarks/eval_speed.py [--images 5000] [--dets 100] [--seed 0] [--json out.json]

Draws 5000 images (640x480) with ~7.2 ground-truth boxes each (~36k, COCO val2017's density, 80 categories with
COCO's 1..90 ids and gaps, ~1% crowd) and 100 detections per image (noisy copies of the ground truth plus random
boxes, scores in [0, 1]). Times, on the same numbers:

- trtalign: ``CocoMetrics.update`` for every image + ``compute()`` with the default backend (``numpy``:
  ``trtalign.eval.coco_fast``), and the same with ``backend="faster-coco-eval"`` for comparison;
- pycocotools: ``COCO`` index of the ground truth, ``loadRes`` of the same [N, 7] array, ``evaluate``,
  ``accumulate``, ``summarize``.

Then a repeated evaluation, as the fallback search runs it (same dataset, new detections each time: the scores
re-drawn and a tenth of the detections dropped):

- trtalign: a new ``CocoMetrics`` on the same dataset, so the ground-truth index built by the first is reused;
- pycocotools: ``loadRes`` + ``evaluate`` + ``accumulate`` + ``summarize`` against the ``COCO`` ground-truth object
  it already built (its index is not rebuilt either), and, for the ratio against a fresh pycocotools evaluation,
  the end-to-end pycocotools time above.

Asserts that all 12 numbers of the default backend are identical to pycocotools' (``==``, both rows) and that the
repeated evaluation equals a fresh one (a new dataset object, nothing cached); prints a table with the speed-ups,
the repeated evaluation's phases (``update``, results array, the numpy evaluator, building the ``CocoResult``) and
exits 1 if an agreement fails. ``--json FILE`` writes the measurements.

Measured with ``python benchmarks/eval_speed.py --json FILE`` on the shared 2-core machine while other jobs ran
(two runs, each ratio from one run; pycocotools took 81-90 s in these runs, about 50 s on a quieter machine):

    run  pycocotools  trtalign         pycocotools repeated  trtalign repeated  faster-coco-eval backend (e2e / rep.)
    a    90.4 s       2.25 s (40.2x)   74.0 s                1.03 s (71.5x)     10.76 s (8.4x) / 8.55 s (8.7x)
    b    81.2 s       1.86 s (43.7x)   77.4 s                0.90 s (85.9x)      8.69 s (9.3x) / 8.21 s (9.4x)

All 12 numbers identical to pycocotools' in both runs. Repeated evaluation by phase (run b): ``update`` 0.06 s,
results array 0.05 s, numpy evaluator 0.75 s, ``CocoResult`` 0.03 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import time
from pathlib import Path

import numpy as np

COCO_MISSING_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def make_set(n_images: int, dets_per_image: int, seed: int):
    from trtalign.core.detections import Detections
    from trtalign.core.enums import Task
    from trtalign.data.datasets import Dataset, GroundTruth, ImageRecord

    rng = np.random.default_rng(seed)
    cat_ids = [i for i in range(1, 91) if i not in COCO_MISSING_IDS]
    nc = len(cat_ids)
    W, H = 640, 480
    images = [ImageRecord(i + 1, f"{i + 1:012d}.jpg", Path(f"{i + 1:012d}.jpg"), W, H) for i in range(n_images)]
    counts = rng.poisson(7.2, n_images)
    anns, dets = {}, {}
    for im, n in zip(images, counts):
        side = np.exp(rng.normal(3.6, 1.0, (n, 1))) * rng.uniform(0.5, 1.5, (n, 2))  # small/medium/large mix
        wh = np.clip(side, 2, [W, H])
        xy = rng.uniform(0, 1, (n, 2)) * ([W, H] - wh)
        cls = rng.integers(0, nc, n)
        if n:
            anns[im.id] = GroundTruth(np.c_[xy, xy + wh], cls, rng.uniform(size=n) < 0.01, wh[:, 0] * wh[:, 1])
        m = dets_per_image
        k = min(m // 2, 3 * n)  # noisy copies of the ground truth ...
        src = rng.integers(0, max(n, 1), k)
        jit = np.c_[xy[src], xy[src] + wh[src]] + rng.normal(0, 1, (k, 4)) * np.repeat(wh[src] * 0.08, 2, 1) \
            if n else np.zeros((0, 4))
        jcls = np.where(rng.uniform(size=k) < 0.85, cls[src] if n else 0, rng.integers(0, nc, k))
        r_wh = np.clip(np.exp(rng.normal(3.6, 1.0, (m - k, 2))), 2, [W, H])  # ... and random boxes
        r_xy = rng.uniform(0, 1, (m - k, 2)) * ([W, H] - r_wh)
        boxes = np.concatenate([jit, np.c_[r_xy, r_xy + r_wh]])
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, W)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, H)
        scores = np.concatenate([rng.uniform(0.2, 1.0, k), rng.uniform(0.0, 0.6, m - k)])
        dets[im.id] = Detections(boxes, scores, np.concatenate([jcls, rng.integers(0, nc, m - k)]))
    ds = Dataset(Task.DETECT, images, anns, [f"cat{c}" for c in cat_ids], cat_ids, "synthetic-coco")
    return ds, dets


def redraw(dets, seed: int):
    """New detections for the same images: scores re-drawn around the old ones, a tenth of the detections dropped."""
    from trtalign.core.detections import Detections

    rng = np.random.default_rng(seed + 1000)
    out = {}
    for iid, d in dets.items():
        keep = rng.uniform(size=len(d)) >= 0.1
        scores = np.clip(d.scores + rng.normal(0, 0.1, len(d)), 0.0, 1.0)[keep]
        out[iid] = Detections(d.boxes[keep], scores, d.class_ids[keep])
    return out


def results_array(ds, dets):
    from trtalign.eval.coco_metrics import coco_results_array

    ids = np.concatenate([np.full(len(d), i) for i, d in dets.items()])
    return coco_results_array(ds, ids, np.concatenate([d.boxes for d in dets.values()]).astype(np.float64),
                              np.concatenate([d.scores for d in dets.values()]).astype(np.float64),
                              np.concatenate([d.class_ids for d in dets.values()]))


def run_trtalign(ds, dets, backend: str = "auto"):
    from trtalign.eval.coco_metrics import COCO_STAT_KEYS, CocoMetrics

    start = time.perf_counter()
    metric = CocoMetrics(ds, backend=backend)
    for iid, d in dets.items():
        metric.update(iid, d)
    res = metric.compute()
    return time.perf_counter() - start, np.array([res.stats[k] for k in COCO_STAT_KEYS])


def phases_trtalign(ds, dets) -> dict:
    """Seconds per phase of a repeated evaluation (ground truth already indexed): ``update`` for every image, the
    ``[N, 7]`` results array, the numpy evaluator (sort, IoU, matching, accumulation, summary), and building the
    ``CocoResult`` (per-class AP, PR curves: the rest of ``compute``)."""
    from trtalign.eval.coco_fast import evaluate_bbox
    from trtalign.eval.coco_metrics import CocoMetrics, ground_truth_index

    t0 = time.perf_counter()
    metric = CocoMetrics(ds)
    for iid, d in dets.items():
        metric.update(iid, d)
    t1 = time.perf_counter()
    arr = metric.results_array()
    t2 = time.perf_counter()
    evaluate_bbox(ground_truth_index(ds, metric.backend).bbox, arr)
    t3 = time.perf_counter()
    metric.compute()
    t4 = time.perf_counter()
    return {"update": t1 - t0, "results_array": t2 - t1, "evaluate_bbox": t3 - t2,
            "result": max(t4 - t3 - (t3 - t1), 0.0)}


def run_pycocotools(gt_dict, results, gt=None):
    """Seconds, the 12 numbers and the ``COCO`` ground truth (built here unless ``gt`` is given)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if gt is None:
            gt = COCO()
            gt.dataset = gt_dict
            gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return time.perf_counter() - start, np.asarray(ev.stats), gt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=100, help="detections per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the measurements here")
    args = ap.parse_args(argv)

    from trtalign.core.io import atomic_write_json
    from trtalign.eval.coco_metrics import COCO_STAT_KEYS

    t0 = time.perf_counter()
    ds, dets = make_set(args.images, args.dets, args.seed)
    dets2 = redraw(dets, args.seed)
    gen = time.perf_counter() - t0
    arr, arr2 = results_array(ds, dets), results_array(ds, dets2)
    gt_dict = ds.to_coco()
    print(f"set: {len(ds)} images, {ds.num_boxes} boxes, {len(arr)} detections ({len(arr2)} in the repeated "
          f"evaluation), {ds.num_classes} categories (generated in {gen:.1f} s)", flush=True)
    t_ours, s_ours = run_trtalign(ds, dets)
    print(f"trtalign done in {t_ours:.2f} s", flush=True)
    t_rep, s_rep = run_trtalign(ds, dets2)
    print(f"trtalign repeated done in {t_rep:.2f} s", flush=True)
    t_fce, s_fce = run_trtalign(ds, dets, "faster-coco-eval")
    t_fce_rep, s_fce_rep = run_trtalign(ds, dets2, "faster-coco-eval")
    print(f"faster-coco-eval backend done in {t_fce:.2f} s, repeated in {t_fce_rep:.2f} s", flush=True)
    t_ref, s_ref, gt = run_pycocotools(gt_dict, arr)
    print(f"pycocotools done in {t_ref:.1f} s", flush=True)
    t_ref_rep, s_ref_rep, _ = run_pycocotools(gt_dict, arr2, gt)
    print(f"pycocotools repeated done in {t_ref_rep:.1f} s", flush=True)
    phases = phases_trtalign(ds, dets2)
    # a fresh evaluation of the repeated detections: a copy of the dataset, so nothing cached is shared
    from dataclasses import replace

    _, s_fresh = run_trtalign(replace(ds, images=list(ds.images), annotations=dict(ds.annotations)), dets2)

    diff, diff_rep = np.abs(s_ours - s_ref), np.abs(s_rep - s_ref_rep)
    diff_fce = max(np.abs(s_fce - s_ref).max(), np.abs(s_fce_rep - s_ref_rep).max())
    equal, equal_rep = bool((s_ours == s_ref).all()), bool((s_rep == s_ref_rep).all())
    same_as_fresh = bool((s_rep == s_fresh).all())
    ratio, ratio_rep, ratio_rep_e2e = t_ref / t_ours, t_ref_rep / t_rep, t_ref / t_rep
    print(f"\n{'':<44}{'seconds':>10}{'mAP50-95':>11}{'mAP50':>9}{'AR100':>9}{'speed-up':>10}")
    rows = [("pycocotools", t_ref, s_ref, ""), ("trtalign (numpy)", t_ours, s_ours, f"{ratio:.1f}x"),
            ("trtalign (faster-coco-eval backend)", t_fce, s_fce, f"{t_ref / t_fce:.1f}x"),
            ("pycocotools repeated (gt COCO reused)", t_ref_rep, s_ref_rep, ""),
            ("trtalign repeated (gt index reused)", t_rep, s_rep, f"{ratio_rep:.1f}x"),
            ("trtalign repeated (faster-coco-eval backend)", t_fce_rep, s_fce_rep, f"{t_ref_rep / t_fce_rep:.1f}x")]
    for name, t, st, r in rows:
        print(f"{name:<44}{t:>10.2f}{st[0]:>11.4f}{st[1]:>9.4f}{st[8]:>9.4f}{r:>10}")
    print(f"end to end: {ratio:.1f}x pycocotools (target >= 10x); all 12 numbers identical: {equal} "
          f"(max |diff| {diff.max():.2e})")
    print(f"repeated: {ratio_rep:.1f}x pycocotools with its gt reused, {ratio_rep_e2e:.1f}x a fresh pycocotools "
          f"evaluation (target >= 20x); all 12 identical: {equal_rep} (max |diff| {diff_rep.max():.2e}); "
          f"identical to a fresh trtalign evaluation: {same_as_fresh}")
    print("repeated, by phase: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())
          + f"; faster-coco-eval backend max |diff| {diff_fce:.2e}")
    if args.json:
        atomic_write_json(args.json, {
            "images": len(ds), "boxes": ds.num_boxes, "detections": int(len(arr)),
            "detections_repeated": int(len(arr2)), "seed": args.seed,
            "seconds": {"trtalign": t_ours, "pycocotools": t_ref, "trtalign_repeated": t_rep,
                        "pycocotools_repeated": t_ref_rep, "faster_coco_eval": t_fce,
                        "faster_coco_eval_repeated": t_fce_rep},
            "phases_repeated": phases,
            "speedup": ratio, "speedup_repeated": ratio_rep, "speedup_repeated_vs_fresh_pycocotools": ratio_rep_e2e,
            "stats": {"trtalign": dict(zip(COCO_STAT_KEYS, s_ours.tolist())),
                      "pycocotools": dict(zip(COCO_STAT_KEYS, s_ref.tolist())),
                      "trtalign_repeated": dict(zip(COCO_STAT_KEYS, s_rep.tolist())),
                      "pycocotools_repeated": dict(zip(COCO_STAT_KEYS, s_ref_rep.tolist()))},
            "equal": equal, "max_abs_diff": float(diff.max()), "equal_repeated": equal_rep,
            "max_abs_diff_repeated": float(diff_rep.max()), "repeated_equals_fresh": same_as_fresh,
            "faster_coco_eval_max_abs_diff": float(diff_fce),
            "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        })
    if not (equal and equal_rep and same_as_fresh):
        print("FAIL: trtalign and pycocotools disagree (or the repeated evaluation differs from a fresh one)",
              file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
