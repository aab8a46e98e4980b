"""Paired bootstrap confidence intervals over images for an mAP difference.

Two models' detections on the same images are matched against the ground truth once (pycocotools' ``evaluateImg``:
per image and class, detections sorted by score and cut at 100, greedy matching preferring non-ignored ground truth,
crowd boxes matched any number of times; rotated datasets use the exact polygon IoU of
:mod:`trtalign.core.geometry` with the crowd rules of :mod:`trtalign.eval.rotated_metrics`). A resample draws image ids with replacement; the mAP of each model on the
resampled multiset is recomputed from the stored matches by pycocotools' ``accumulate`` (no re-matching), and the
difference of the two is one bootstrap draw. Because matching is per image, the mAP of a resample equals a full
COCO evaluation of a dataset in which every drawn image appears as often as it was drawn (the tests check it against
pycocotools); only the cheap accumulation runs per resample.

``delta = map(a) - map(b)`` on all images; the 95% interval is the 2.5 / 97.5 percentiles of the resampled
differences. Identical detections give exactly ``[0, 0]``; fewer images give a wider interval.

Example::

    ci = paired_bootstrap(dataset, int8_detections, fp32_detections, resamples=1000, seed=0)
    ci.delta, ci.low, ci.high      # -0.004, -0.009, 0.001
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from trtalign.core.errors import InputError
from trtalign.data.datasets import Dataset
from trtalign.eval.coco_metrics import RECALL_POINTS, check_detections

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)  # pycocotools' iouThrs
_AREA_MAX = 1e5 ** 2  # pycocotools' area range "all"
#: default number of resamples (a 100-image split takes well under a second per model pair)
DEFAULT_RESAMPLES = 1000


# ------------------------------------------------------------------------------------------------------ matching
def bbox_iou_xywh(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' bbox IoU ``[D, G]`` of ``[x, y, w, h]`` boxes; a crowd ground truth divides by the detection's
    area only."""
    if not len(dt) or not len(gt):
        return np.zeros((len(dt), len(gt)))
    dx, dy, dw, dh = (dt[:, i][:, None] for i in range(4))
    gx, gy, gw, gh = (gt[:, i][None, :] for i in range(4))
    w = np.minimum(dx + dw, gx + gw) - np.maximum(dx, gx)
    h = np.minimum(dy + dh, gy + gh) - np.maximum(dy, gy)
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    da, ga = dw * dh, gw * gh
    union = np.where(crowd[None, :], da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(inter > 0, inter / union, 0.0)
    return out


def match_image_class(ious: np.ndarray, g_ignore: np.ndarray, g_crowd: np.ndarray,
                      thresholds: np.ndarray = IOU_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' greedy matching for one image and class, all IoU thresholds at once.

    Args:
        ious: ``[D, G]``, detections sorted by score (descending, stable), ground truth sorted non-ignored first.
        g_ignore: ``[G]`` ignored ground truth (crowd / difficult).
        g_crowd: ``[G]`` crowd ground truth (may be matched by several detections).
    Returns:
        ``(matched [T, D], matched_an_ignored [T, D])`` booleans.
    """
    T, (D, G) = len(thresholds), ious.shape
    dtm = np.zeros((T, D), bool)
    dtig = np.zeros((T, D), bool)
    if G == 0 or D == 0:
        return dtm, dtig
    taken = np.zeros((T, G), bool)
    thr = np.minimum(thresholds, 1 - 1e-10)[:, None]
    rev = slice(None, None, -1)
    for d in range(D):
        cand = ((~taken) | g_crowd[None, :]) & (ious[d][None, :] >= thr)  # [T, G]
        if not cand.any():
            continue
        score = np.where(cand, ious[d][None, :], -1.0)
        for group in (~g_ignore, g_ignore):  # a non-ignored match wins over any ignored one
            sc = np.where(group[None, :], score, -1.0)
            has = (sc > -1).any(1) & ~dtm[:, d]
            if not has.any():
                continue
            m = G - 1 - np.argmax(sc[:, rev], axis=1)  # equal IoU: the later ground truth, as pycocotools
            rows = np.nonzero(has)[0]
            dtm[rows, d] = True
            dtig[rows, d] = g_ignore[m[rows]]
            taken[rows, m[rows]] = True
    return dtm, dtig


@dataclass
class _ClassEntries:
    """One class's detections over all images (after the per-image cut), sorted as ``accumulate`` sorts them."""

    image: np.ndarray  # [n] image index
    tp: np.ndarray  # [n, T] matched a non-ignored ground truth
    fp: np.ndarray  # [n, T] unmatched and not ignored
    exact_order: bool  # no two detections of one image share a score: resamples need no re-sort
    score: np.ndarray  # [n]
    within: np.ndarray  # [n] rank inside its image


class MatchTable:
    """One model's detections matched per image against the ground truth; ``map(counts)`` re-accumulates COCO
    mAP50-95 / mAP50 for any multiset of the images (``counts[i]``: how often image ``image_ids[i]`` is drawn)."""

    def __init__(self, dataset: Dataset, detections: Mapping[Any, Any], image_ids: Optional[Sequence] = None,
                 max_dets: int = 100):
        self.image_ids = list(image_ids) if image_ids is not None else sorted(im.id for im in dataset.images)
        unknown = [iid for iid in [*self.image_ids, *detections] if not dataset.has_image(iid)]
        if unknown:
            raise InputError(f"{len(unknown)} image id(s) not in the dataset ({len(dataset)} images; "
                             f"first: {unknown[0]!r})")
        nc = dataset.num_classes
        self.num_classes = nc
        self._resampled: dict = {}  # (resamples, seed) -> [resamples, 2], see resampled()
        self.npig = np.zeros((len(self.image_ids), nc), np.int64)
        parts: list = [[] for _ in range(nc)]  # per class: (image index, scores, tp, fp)
        rotated = dataset.rotated
        if rotated:
            from trtalign.core.geometry import iou_from_intersection, rotated_intersection_matrix
        for i, iid in enumerate(self.image_ids):
            gt = dataset.ground_truth(iid)
            det = detections.get(iid)  # images outside ``image_ids`` are left out
            if det is not None:
                check_detections(iid, det)
            for k in range(nc):
                sel = gt.class_ids == k
                g_boxes, g_ig = gt.boxes[sel], gt.ignore[sel].astype(bool)
                crowd = g_ig.copy()
                if not rotated:  # pycocotools' area range "all": ground truth outside [0, 1e10] is ignored
                    g_ig = g_ig | (gt.areas[sel] < 0) | (gt.areas[sel] > _AREA_MAX)
                self.npig[i, k] = int((~g_ig).sum())
                if det is None or not len(det):
                    continue
                dsel = np.nonzero(det.class_ids == k)[0]
                if not len(dsel):
                    continue
                order = dsel[np.argsort(-det.scores[dsel].astype(np.float64), kind="mergesort")][:max_dets]
                scores = det.scores[order].astype(np.float64)
                g_order = np.argsort(g_ig, kind="mergesort")
                g_boxes, g_ig, crowd = g_boxes[g_order], g_ig[g_order], crowd[g_order]
                d_out = np.zeros(len(order), bool)  # unmatched detections outside the area range are ignored
                if rotated:  # as eval.rotated_metrics: an ignored box is a crowd box (intersection / detection area)
                    d = det.boxes[order].astype(np.float64)
                    g = np.asarray(g_boxes, np.float64).reshape(-1, 5)
                    inter = rotated_intersection_matrix(d, g)
                    d_area = d[:, 2] * d[:, 3]
                    crowd_iou = np.where(d_area[:, None] > 0, inter / np.where(d_area > 0, d_area, 1.0)[:, None], 0.0)
                    ious = np.where(g_ig[None, :], crowd_iou, iou_from_intersection(d[:, None, :], g[None, :, :],
                                                                                       inter))
                    crowd = g_ig
                else:
                    d = det.boxes[order].astype(np.float64)
                    d = np.stack([d[:, 0], d[:, 1], d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]], 1)
                    g = np.stack([g_boxes[:, 0], g_boxes[:, 1], g_boxes[:, 2] - g_boxes[:, 0],
                                  g_boxes[:, 3] - g_boxes[:, 1]], 1) if len(g_boxes) else np.zeros((0, 4))
                    area = d[:, 2] * d[:, 3]
                    d_out = (area < 0) | (area > _AREA_MAX)
                    ious = bbox_iou_xywh(d, g, crowd)
                dtm, dtig = match_image_class(ious, g_ig, crowd)
                dtig |= ~dtm & d_out[None, :]
                parts[k].append((i, scores, (dtm & ~dtig).T, (~dtm & ~dtig).T))
        self._classes: list[Optional[_ClassEntries]] = []
        for k in range(nc):
            if not parts[k]:
                self._classes.append(None)
                continue
            img = np.concatenate([np.full(len(p[1]), p[0], np.int64) for p in parts[k]])
            within = np.concatenate([np.arange(len(p[1])) for p in parts[k]])
            score = np.concatenate([p[1] for p in parts[k]])
            tp = np.concatenate([p[2] for p in parts[k]])
            fp = np.concatenate([p[3] for p in parts[k]])
            o = np.argsort(-score, kind="mergesort")
            # rows after the last true positive (at any threshold) add only false positives in every resample: they
            # lower precision at the recall already reached and never reach a new recall point, so accumulate's
            # envelope and lookup never see them (on a demo split: 28% of the rows at conf 0.001)
            hits = np.nonzero(tp[o].any(1))[0]
            o = o[:hits[-1] + 1] if len(hits) else o[:0]
            img, within, score, tp, fp = img[o], within[o], score[o], tp[o], fp[o]
            tie = (score[1:] == score[:-1]) & (img[1:] == img[:-1])
            self._classes.append(_ClassEntries(img, tp, fp, not bool(tie.any()), score, within))

    def __len__(self) -> int:
        return len(self.image_ids)

    def resampled(self, resamples: int, seed: int = 0) -> np.ndarray:
        """``[resamples, 2]``: (mAP50-95, mAP50) of each bootstrap draw of :func:`resample_counts` (``n``,
        ``resamples``, ``seed``), kept: a reference compared with many plans (the fallback search) is resampled
        once."""
        key = (int(resamples), int(seed))
        if key not in self._resampled:
            self._resampled[key] = np.array([self.map(c) for c in resample_counts(len(self), resamples, seed)
                                             ]).reshape(-1, 2)
        return self._resampled[key]

    def map(self, counts: Optional[np.ndarray] = None) -> tuple[float, float]:
        """(mAP50-95, mAP50) of the multiset in which image ``i`` appears ``counts[i]`` times (default: once each),
        by pycocotools' ``accumulate`` with the copies of an image evaluated one after another."""
        n = len(self.image_ids)
        counts = np.ones(n, np.int64) if counts is None else np.asarray(counts, np.int64)
        npig = counts @ self.npig  # [K]
        T, R = len(IOU_THRESHOLDS), len(RECALL_POINTS)
        precision = []
        for k in range(self.num_classes):
            if npig[k] == 0:
                continue
            q = np.zeros((T, R))
            e = self._classes[k]
            if e is not None:
                rep = counts[e.image]
                idx = np.repeat(np.arange(len(rep)), rep)
                if not e.exact_order and len(idx):
                    # copies of one image come one after the other: sort by (-score, image, copy, rank in image)
                    start = np.repeat(np.cumsum(rep) - rep, rep)
                    copy = np.arange(len(idx)) - start
                    idx = idx[np.lexsort((e.within[idx], copy, e.image[idx], -e.score[idx]))]
                if len(idx):
                    q = self._class_precision(e.tp[idx], e.fp[idx], int(npig[k]))
            precision.append(q)
        if not precision:
            return float("nan"), float("nan")
        p = np.stack(precision, -1)  # [T, R, K'] as pycocotools' precision[..., area all, maxDet 100]
        return float(p.mean()), float(p[0].mean())

    @staticmethod
    def _class_precision(tp_flags: np.ndarray, fp_flags: np.ndarray, npig: int) -> np.ndarray:
        T, R = tp_flags.shape[1], len(RECALL_POINTS)
        tpi = np.cumsum(tp_flags, 0)  # [E, T] integers
        tp = tpi.astype(np.float64)
        fp = np.cumsum(fp_flags, 0).astype(np.float64)
        pr = tp / (fp + tp + np.spacing(1))
        env = np.maximum.accumulate(pr[::-1], 0)[::-1]
        # searchsorted(tp / npig, r, "left") == first row with tp >= m_r, m_r the least integer with m / npig >= r
        m = np.ceil(RECALL_POINTS * npig).astype(np.int64)
        m = np.where((m - 1) / npig >= RECALL_POINTS, m - 1, m)
        m = np.where(m / npig < RECALL_POINTS, m + 1, m)
        E = len(tpi)
        off = np.arange(T, dtype=np.int64) * (npig + 2)
        keys = (tpi + off[None, :]).T.ravel()
        pos = np.searchsorted(keys, (m[None, :] + off[:, None]).ravel(), "left").reshape(T, R)
        pos -= (np.arange(T) * E)[:, None]
        ok = pos < E
        q = np.zeros((T, R))
        tt = np.broadcast_to(np.arange(T)[:, None], (T, R))
        q[ok] = env[pos[ok], tt[ok]]
        return q


# ------------------------------------------------------------------------------------------------------ intervals
@dataclass
class DeltaInterval:
    """``delta = map(a) - map(b)`` on all images with its paired bootstrap interval (``level`` 0.95)."""

    delta: float
    low: float
    high: float
    resamples: int
    images: int
    seed: int
    level: float = 0.95
    delta50: float = float("nan")
    low50: float = float("nan")
    high50: float = float("nan")

    @property
    def ci95(self) -> list:
        return [self.low, self.high]

    @property
    def ci95_50(self) -> list:
        return [self.low50, self.high50]

    def to_dict(self) -> dict:
        return {"delta": self.delta, "ci95": self.ci95, "delta50": self.delta50, "ci95_50": self.ci95_50,
                "resamples": self.resamples, "images": self.images, "seed": self.seed, "level": self.level}


def resample_counts(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """``[resamples, n]`` draw counts of ``n`` images drawn with replacement (seeded)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    out = np.zeros((resamples, n), np.int64)
    np.add.at(out, (np.repeat(np.arange(resamples), n), draws.ravel()), 1)
    return out


def bootstrap_tables(a: MatchTable, b: MatchTable, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                     level: float = 0.95) -> DeltaInterval:
    """Paired bootstrap of ``map(a) - map(b)`` over the images the two tables share (same ids, same order)."""
    if a.image_ids != b.image_ids:
        raise InputError("a paired bootstrap needs both models evaluated on the same images")
    n = len(a)
    if n == 0:
        raise InputError("a bootstrap interval needs at least one image")
    full_a, full_b = a.map(), b.map()
    d = a.resampled(resamples, seed) - b.resampled(resamples, seed)
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    ok = np.isfinite(d).all(1)
    if not ok.any():
        lo = hi = np.full(2, np.nan)
    else:
        lo, hi = np.percentile(d[ok], lo_q, axis=0), np.percentile(d[ok], hi_q, axis=0)
    return DeltaInterval(float(full_a[0] - full_b[0]), float(lo[0]), float(hi[0]), resamples, n, seed, level,
                         float(full_a[1] - full_b[1]), float(lo[1]), float(hi[1]))


def paired_bootstrap(dataset: Dataset, detections: Mapping[Any, Any], reference: Mapping[Any, Any],
                     resamples: int = DEFAULT_RESAMPLES, seed: int = 0, image_ids: Optional[Sequence] = None,
                     level: float = 0.95) -> DeltaInterval:
    """Paired bootstrap interval of ``mAP(detections) - mAP(reference)`` over the images of ``dataset``.

    Args:
        dataset: ground truth (axis-aligned: COCO bbox matching; rotated: polygon IoU).
        detections, reference: ``{image_id: Detections}`` with the dataset's contiguous class indices.
        resamples: bootstrap draws; seed: their generator's seed; image_ids: restrict to these images (the
            detections of other images are left out).
    Returns:
        :class:`DeltaInterval` (``delta``, ``low``, ``high`` for mAP50-95; ``delta50`` ... for mAP50).
    Raises:
        InputError: detections for an image outside the evaluated ones, or non-finite values.
    """
    ids = list(image_ids) if image_ids is not None else None
    return bootstrap_tables(MatchTable(dataset, detections, ids), MatchTable(dataset, reference, ids), resamples,
                            seed, level)


def round_interval(ci: Sequence[float], digits: int = 6) -> list:
    """``[low, high]`` rounded for JSON (``None`` where not finite)."""
    return [None if v is None or not np.isfinite(v) else round(float(v), digits) for v in ci]


__all__ = ["MatchTable", "DeltaInterval", "paired_bootstrap", "bootstrap_tables", "resample_counts",
           "match_image_class", "bbox_iou_xywh", "round_interval", "DEFAULT_RESAMPLES"]
