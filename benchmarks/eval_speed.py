"""Evaluation speed: trtalign's COCO evaluation vs pycocotools on a COCO-sized synthetic set, in one run.

    python benchmarks/eval_speed.py [--images 5000] [--dets 100] [--seed 0] [--json out.json]

Draws 5000 images (640x480) with ~7.2 ground-truth boxes each (~36k, COCO val2017's density, 80 categories with
COCO's 1..90 ids and gaps, ~1% crowd) and 100 detections per image (noisy copies of the ground truth plus random
boxes, scores in [0, 1]). Times, on the same numbers:

- trtalign: ``CocoMetrics.update`` for every image + ``compute()`` (faster-coco-eval backend);
- pycocotools: ``COCO`` index of the ground truth, ``loadRes`` of the same [N, 7] array, ``evaluate``,
  ``accumulate``, ``summarize``.

Asserts that all 12 numbers agree (to 1e-4; in practice they are identical), prints a table with the speed-up and
exits 1 if the agreement fails. ``--json FILE`` writes the measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
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


def run_trtalign(ds, dets):
    from trtalign.eval.coco_metrics import COCO_STAT_KEYS, CocoMetrics

    start = time.perf_counter()
    metric = CocoMetrics(ds, backend="faster-coco-eval")
    for iid, d in dets.items():
        metric.update(iid, d)
    res = metric.compute()
    return time.perf_counter() - start, np.array([res.stats[k] for k in COCO_STAT_KEYS])


def run_pycocotools(gt_dict, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return time.perf_counter() - start, np.asarray(ev.stats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=100, help="detections per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the measurements here")
    args = ap.parse_args(argv)

    from trtalign.core.io import atomic_write_json
    from trtalign.eval.coco_metrics import COCO_STAT_KEYS, coco_results_array

    t0 = time.perf_counter()
    ds, dets = make_set(args.images, args.dets, args.seed)
    gen = time.perf_counter() - t0
    ids = np.concatenate([np.full(len(d), i) for i, d in dets.items()])
    arr = coco_results_array(ds, ids, np.concatenate([d.boxes for d in dets.values()]).astype(np.float64),
                             np.concatenate([d.scores for d in dets.values()]).astype(np.float64),
                             np.concatenate([d.class_ids for d in dets.values()]))
    gt_dict = ds.to_coco()
    print(f"set: {len(ds)} images, {ds.num_boxes} boxes, {len(arr)} detections, {ds.num_classes} categories "
          f"(generated in {gen:.1f} s)", flush=True)
    t_ours, s_ours = run_trtalign(ds, dets)
    print(f"trtalign done in {t_ours:.1f} s", flush=True)
    t_ref, s_ref = run_pycocotools(gt_dict, arr)
    print(f"pycocotools done in {t_ref:.1f} s", flush=True)
    diff = np.abs(s_ours - s_ref)
    equal = bool((diff <= 1e-4).all())
    ratio = t_ref / t_ours
    print(f"\n{'':<14}{'seconds':>10}{'mAP50-95':>11}{'mAP50':>9}{'AR100':>9}")
    print(f"{'pycocotools':<14}{t_ref:>10.2f}{s_ref[0]:>11.4f}{s_ref[1]:>9.4f}{s_ref[8]:>9.4f}")
    print(f"{'trtalign':<14}{t_ours:>10.2f}{s_ours[0]:>11.4f}{s_ours[1]:>9.4f}{s_ours[8]:>9.4f}")
    print(f"speed-up {ratio:.1f}x (target >= 3x); all 12 numbers equal: {equal} (max |diff| {diff.max():.2e})")
    if args.json:
        atomic_write_json(args.json, {
            "images": len(ds), "boxes": ds.num_boxes, "detections": int(len(arr)), "seed": args.seed,
            "seconds": {"trtalign": t_ours, "pycocotools": t_ref}, "speedup": ratio,
            "stats": {"trtalign": dict(zip(COCO_STAT_KEYS, s_ours.tolist())),
                      "pycocotools": dict(zip(COCO_STAT_KEYS, s_ref.tolist()))},
            "equal": equal, "max_abs_diff": float(diff.max()),
            "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        })
    if not equal:
        print("FAIL: trtalign and pycocotools disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
