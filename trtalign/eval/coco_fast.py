"""COCO bbox evaluation in numpy: pycocotools' ``evaluate``, ``accumulate`` and ``summarize``, array at a time.

pycocotools matches detections to ground truth one image and category at a time in Python; faster-coco-eval runs
the same loops in C++, over one Python dict per detection, and on a COCO-sized set that step is most of its time.
Here each step works on whole arrays and gives pycocotools' numbers bit for bit:

- **IoU**: every (detection, ground truth) pair of the same image and category at once, with pycocotools' formula
  and order of operations (``bbIou`` in its ``maskApi.c``: a crowd region divides by the detection's area), so the
  IoUs are the same doubles. Only pairs with IoU >= 0.5 can match at any threshold; the others are dropped here.
- **Matching**: pycocotools' greedy loop takes an image-category's detections by descending score (ties: input
  order; at most 100), and each takes, among the ground truth it reaches (IoU >= threshold) that is still free (a
  crowd region is always free), the one with the highest IoU, the last of equal ones, preferring ground truth that is
  not ignored (crowd, or outside the area range). The loop here runs once per detection *rank*: step ``s`` handles
  the ``s``-th detection (among those with a candidate pair) of every image-category at once, for the 10 IoU
  thresholds and 4 area ranges together.
- **Accumulation**: the precision at a recall threshold is the best precision at or after the first true positive
  that reaches it. Between true positives precision only falls (false positives) or stays (ignored detections), so
  only the true positives' (tp, fp) counts matter: ``tp`` is the true positive's rank, ``fp`` is the number of
  counted (in-range, unmatched) detections before it, from prefix counts. A per-class running maximum from the end
  then gives every recall threshold.
- **Summary**: the 12 numbers are means over the same arrays in the same order as pycocotools' ``summarize``.

Parameters are pycocotools' defaults for bbox (10 IoU thresholds 0.5:0.95, 101 recall points, maxDets 1/10/100, the
all/small/medium/large area ranges, per category). The tests compare ``precision``, ``recall`` and ``stats`` with
pycocotools' own ``eval`` arrays (``np.array_equal``) on random cases with crowd regions, score ties, empty images,
more than 100 detections per image and category, and subsets of the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

#: pycocotools' ``Params`` for bbox, built by the same expressions so the floats are the same
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RANGES = ((0 ** 2, 1e5 ** 2), (0 ** 2, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2))
AREA_LABELS = ("all", "small", "medium", "large")

_EPS = np.spacing(1)


@dataclass
class BboxEvaluation:
    """pycocotools' ``COCOeval.eval`` and ``stats`` for one set of detections.

    ``precision`` [T, R, K, A, M] and ``recall`` [T, K, A, M] with -1 where a class has no counted ground truth in an
    area range; ``stats`` the 12 summary numbers (-1 where undefined); ``cat_ids`` the K category ids (sorted);
    ``image_ids`` the evaluated image ids (sorted).
    """

    precision: np.ndarray
    recall: np.ndarray
    stats: np.ndarray
    cat_ids: list
    image_ids: list


class BboxGroundTruth:
    """A COCO ground-truth dict as arrays, for :func:`evaluate_bbox`; built once per dataset and only read after.

    Annotations of unknown images or categories are left out (pycocotools never asks for them). The kept ones are
    sorted by (image, category, annotation order): the order in which pycocotools lists an image-category's ground
    truth, on which its tie-breaks depend.

    Args:
        gt: ``{"images": [{"id"}], "categories": [{"id"}], "annotations": [{"id", "image_id", "category_id",
            "bbox": [x, y, w, h], "area", "iscrowd"}]}`` with integer image and category ids.
    """

    def __init__(self, gt: dict):
        self.image_ids = np.unique(np.array([im["id"] for im in gt["images"]], np.int64))
        self.cat_ids = np.unique(np.array([c["id"] for c in gt["categories"]], np.int64))
        anns = gt["annotations"]
        n = len(anns)
        img = np.fromiter((a["image_id"] for a in anns), np.int64, n)
        cat = np.fromiter((a["category_id"] for a in anns), np.int64, n)
        img_pos, img_ok = _positions(self.image_ids, img)
        cat_pos, cat_ok = _positions(self.cat_ids, cat)
        keep = np.flatnonzero(img_ok & cat_ok)
        order = keep[np.lexsort((keep, cat_pos[keep], img_pos[keep]))]
        sel = [anns[i] for i in order.tolist()]
        self.img_pos = img_pos[order]
        self.cat_pos = cat_pos[order]
        self.key = self.img_pos * len(self.cat_ids) + self.cat_pos
        self.boxes = np.array([a["bbox"] for a in sel], np.float64).reshape(len(sel), 4)
        self.areas = np.array([a["area"] for a in sel], np.float64)
        self.crowd = np.array([bool(a.get("iscrowd", 0)) for a in sel], bool)
        self.ann_ids = np.array([a["id"] for a in sel], np.int64)
        # pycocotools' gtIgnore per area range: crowd, or the annotation's area outside [lo, hi]
        self.ignore = np.stack([self.crowd | (self.areas < lo) | (self.areas > hi) for lo, hi in AREA_RANGES])
        self._counted_all = self._counted(None)

    def _counted(self, images: Optional[np.ndarray]) -> np.ndarray:
        """[K, A] ground truth counted for recall (not ignored), over the images flagged in ``images``."""
        k = len(self.cat_ids)
        on = ~self.ignore if images is None else ~self.ignore & images[self.img_pos]
        return np.stack([np.bincount(self.cat_pos[row], minlength=k) for row in on], 1)

    def image_selection(self, image_ids: Optional[Iterable]) -> tuple[Optional[np.ndarray], list]:
        """(flags over ``self.image_ids`` or None for all, the evaluated image ids sorted as pycocotools does)."""
        if image_ids is None:
            return None, self.image_ids.tolist()
        ids = np.unique(np.asarray(list(image_ids), np.int64))
        pos, ok = _positions(self.image_ids, ids)
        flags = np.zeros(len(self.image_ids), bool)
        flags[pos[ok]] = True
        return flags, ids.tolist()


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each of ``ids`` in ``sorted_ids``, whether it is there)."""
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, max(len(sorted_ids) - 1, 0))
    ok = (sorted_ids[pos] == ids) if len(sorted_ids) else np.zeros(len(ids), bool)
    return pos, ok


def _segment_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """For each element of a sorted array, the index of the first element with the same key."""
    n = len(sorted_keys)
    new = np.ones(n, bool)
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return np.maximum.accumulate(np.where(new, np.arange(n), 0)) if n else np.zeros(0, np.int64)


def pair_ious(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of each row of ``dt`` [P, 4] with the same row of ``gt`` [P, 4] (both ``x, y, w, h``): pycocotools'
    ``bbIou`` element for element (for a crowd region the union is the detection's area)."""
    dx, dy, dw, dh = dt.T
    gx, gy, gw, gh = gt.T
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    da = dw * dh
    union = np.where(crowd, da, da + gw * gh - inter)
    hit = (w > 0) & (h > 0)
    out = np.zeros(len(inter))
    out[hit] = inter[hit] / union[hit]
    return out


def _match(pair_det: np.ndarray, pair_gt: np.ndarray, pair_iou: np.ndarray, det_key: np.ndarray,
           ignore: np.ndarray, crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' greedy matching for every image-category, IoU threshold and area range.

    Args:
        pair_det, pair_gt, pair_iou: the candidate pairs (IoU >= the lowest threshold), sorted by detection (in
            evaluation order: image-category, then descending score) and, per detection, by ground-truth order.
        det_key: image-category key of every detection.
        ignore: [A, G] ground truth ignored per area range; crowd: [G].

    Returns:
        (the detections that have candidates [C], ascending; [A, T, C] index of the matched ground truth or -1).
    """
    n_areas, n_thr = ignore.shape[0], len(IOU_THRESHOLDS)
    if not len(pair_det):
        return np.zeros(0, np.int64), np.full((n_areas, n_thr, 0), -1, np.int64)
    new_det = np.ones(len(pair_det), bool)
    new_det[1:] = pair_det[1:] != pair_det[:-1]
    cands = pair_det[new_det]
    cand_of_pair = np.cumsum(new_det) - 1
    cand_rank = np.arange(len(cands)) - _segment_starts(det_key[cands])  # rank among the image-category's candidates
    step = cand_rank[cand_of_pair]
    order = np.argsort(step, kind="stable")  # per step, pairs stay grouped by detection, in ground-truth order
    step, cand_of_pair, pair_gt, pair_iou = step[order], cand_of_pair[order], pair_gt[order], pair_iou[order]
    reach = pair_iou[None, :] >= np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]  # [T, P]
    bounds = np.searchsorted(step, np.arange(int(step[-1]) + 2))
    taken = np.zeros((n_areas, n_thr, len(crowd)), bool)
    match = np.full((n_areas, n_thr, len(cands)), -1, np.int64)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        g, c, iou = pair_gt[lo:hi], cand_of_pair[lo:hi], pair_iou[lo:hi]
        first = np.ones(len(c), bool)
        first[1:] = c[1:] != c[:-1]
        starts = np.flatnonzero(first)
        seg = np.cumsum(first) - 1
        free = ~taken[:, :, g] | crowd[g]  # [A, T, P]
        ok = free & reach[None, :, lo:hi]
        ok_counted = ok & ~ignore[:, None, g]
        use = np.where(np.logical_or.reduceat(ok_counted, starts, axis=2)[:, :, seg], ok_counted, ok)
        val = np.where(use, iou, -1.0)
        best = np.maximum.reduceat(val, starts, axis=2)
        last = np.where(use & (val == best[:, :, seg]), np.arange(len(g)), -1)
        pick = np.maximum.reduceat(last, starts, axis=2)  # [A, T, detections of this step]
        aa, tt, dd = np.nonzero(pick >= 0)
        gg = g[pick[aa, tt, dd]]
        taken[aa, tt, gg] = True
        match[aa, tt, c[starts[dd]]] = gg
    return cands, match


def _first_reaching(counted: np.ndarray) -> np.ndarray:
    """[..., R] the smallest tp with ``tp / counted >= recall threshold`` in float64, as pycocotools' recall is."""
    n = np.maximum(counted, 1)[..., None].astype(np.int64)
    base = np.floor(RECALL_THRESHOLDS * n).astype(np.int64) - 1
    cand = np.maximum(base[..., None] + np.arange(4), 0)  # the answer is within [floor - 1, floor + 2]
    ok = cand.astype(np.float64) / n[..., None] >= RECALL_THRESHOLDS[:, None]
    return np.where(ok, cand, np.iinfo(np.int64).max).min(-1)


def evaluate_bbox(gt: BboxGroundTruth, results: np.ndarray, image_ids: Optional[Iterable] = None) -> BboxEvaluation:
    """pycocotools' bbox ``evaluate`` + ``accumulate`` + ``summarize`` on ``[N, 7]`` results.

    Args:
        gt: the indexed ground truth.
        results: rows ``(image_id, x, y, w, h, score, category_id)`` as pycocotools' ``loadRes`` reads them; rows of
            images outside the evaluated ones or of unknown categories are left out, as pycocotools does.
        image_ids: evaluate on these images only (default: all of ``gt``'s).

    Returns:
        :class:`BboxEvaluation` equal to pycocotools' ``eval["precision"]``, ``eval["recall"]`` and ``stats``.
    """
    images, image_list = gt.image_selection(image_ids)
    counted = gt._counted_all if images is None else gt._counted(images)  # [K, A]
    dets = _Detections(gt, np.asarray(results, np.float64).reshape(-1, 7), images)

    # candidate pairs: same image and category, IoU >= the lowest threshold
    g_lo = np.searchsorted(gt.key, dets.key, "left")
    n_pairs = np.searchsorted(gt.key, dets.key, "right") - g_lo
    pair_det = np.repeat(np.arange(len(dets.key)), n_pairs)
    offsets = np.cumsum(n_pairs) - n_pairs
    pair_gt = np.arange(len(pair_det)) - np.repeat(offsets - g_lo, n_pairs)
    iou = pair_ious(dets.boxes[pair_det], gt.boxes[pair_gt], gt.crowd[pair_gt])
    cand = iou >= IOU_THRESHOLDS[0]
    cands, match = _match(pair_det[cand], pair_gt[cand], iou[cand], dets.key, gt.ignore, gt.crowd)

    precision, recall = _accumulate(gt, dets, cands, match, counted)
    return BboxEvaluation(precision, recall, summarize(precision, recall), gt.cat_ids.tolist(), image_list)


class _Detections:
    """The evaluated detections in pycocotools' per image-category order (image, category, descending score, input
    order), each image-category's best 100 only, and the accumulation order over them."""

    def __init__(self, gt: BboxGroundTruth, res: np.ndarray, images: Optional[np.ndarray]):
        n_cat = len(gt.cat_ids)
        img_pos, img_ok = _positions(gt.image_ids, res[:, 0].astype(np.int64))
        cat_pos, cat_ok = _positions(gt.cat_ids, res[:, 6].astype(np.int64))
        ok = img_ok & cat_ok
        if images is not None:
            ok &= images[img_pos]
        rows = np.flatnonzero(ok)
        r_img, r_cat, r_score = img_pos[rows], cat_pos[rows], res[rows, 5]
        # by descending score, then image, then input order (stable sorts, as pycocotools' mergesorts)
        by_score = np.argsort(r_img, kind="stable")  # cheap: results usually come image by image
        by_score = by_score[np.argsort(-r_score[by_score], kind="stable")]
        r_key = r_img * n_cat + r_cat
        order = by_score[np.argsort(r_key[by_score], kind="stable")]
        rank = np.arange(len(order)) - _segment_starts(r_key[order])
        top = rank < MAX_DETS[-1]  # pycocotools evaluates each image-category's 100 best
        order = order[top]
        #: rank within the image-category, image-category key, category index, boxes (x, y, w, h), area
        self.rank = rank[top]
        self.key, self.cat = r_key[order], r_cat[order]
        self.boxes = res[rows[order], 1:5]
        self.area = self.boxes[:, 2] * self.boxes[:, 3]  # loadRes' area: w * h
        # accumulation order (pycocotools' accumulate): per category, by descending score, then image, input order
        kept = np.zeros(len(rows), bool)
        kept[order] = True
        acc = by_score[kept[by_score]]
        acc = acc[np.argsort(r_cat[acc].astype(np.int16 if n_cat < 2 ** 15 else np.int64), kind="stable")]
        number = np.empty(len(rows), np.int64)
        number[order] = np.arange(len(order))
        #: the detections (numbers in the order above) in accumulation order, and each one's place in it
        self.acc = number[acc]
        self.acc_pos = np.empty(len(order), np.int64)
        self.acc_pos[self.acc] = np.arange(len(order))


def _count_before(flags: np.ndarray, start: np.ndarray, axis: int = -1) -> np.ndarray:
    """How many of ``flags`` are set before each element within its segment (``start``: each one's first index)."""
    before = np.cumsum(flags, axis, dtype=np.int32) - flags  # int32: several times faster than int64 here
    return before - np.take(before, start, axis)


def _accumulate(gt: BboxGroundTruth, dets: _Detections, cands: np.ndarray, match: np.ndarray,
                counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' ``accumulate`` from the matches: (precision [T, R, K, A, M], recall [T, K, A, M])."""
    n_cat, n_areas, n_thr, n_rec, n_max = (len(gt.cat_ids), len(AREA_RANGES), len(IOU_THRESHOLDS),
                                           len(RECALL_THRESHOLDS), len(MAX_DETS))
    a_cat, a_rank, a_area = dets.cat[dets.acc], dets.rank[dets.acc], dets.area[dets.acc]
    a_in = np.stack([(a_area >= lo) & (a_area <= hi) for lo, hi in AREA_RANGES])  # [A, N] inside each area range
    cat_start = np.searchsorted(a_cat, np.arange(n_cat))[a_cat] if len(a_cat) else np.zeros(0, np.int64)

    # matched (area, threshold, detection) entries, sorted by area, threshold, then accumulation position
    perm = np.argsort(dets.acc_pos[cands])
    match = match[:, :, perm]
    c_pos = dets.acc_pos[cands][perm]
    ea, et, ei = np.nonzero(match >= 0)
    e_pos = c_pos[ei]
    e_gt = match[ea, et, ei]
    e_cat, e_rank, e_in = a_cat[e_pos], a_rank[e_pos], a_in[ea, e_pos]
    e_ign = gt.ignore[ea, e_gt]
    e_real = gt.ann_ids[e_gt] != 0  # pycocotools reads a match to annotation id 0 as no match
    e_tp = e_real & ~e_ign
    e_not_fp = e_in & (e_real | e_ign)  # inside the area range and matched: not a false positive

    # each true positive's (tp, fp) per row (maxDet, area, threshold, category): tp is its rank among the row's
    # true positives; fp counts the detections before it that are inside the range and not matched
    rows_per_m = n_areas * n_thr * n_cat
    row = (ea * n_thr + et) * n_cat + e_cat
    start = _segment_starts(row)
    tp_row, tp_pr = [], []
    for m, max_det in enumerate(MAX_DETS):
        inside_before = _count_before((a_rank < max_det) & a_in, cat_start, 1)  # [A, N] within the category
        s = e_rank < max_det  # entries of the detections within maxDet: the others are not in the row
        fp = inside_before[ea, e_pos] - _count_before(e_not_fp & s, start)
        tp = _count_before(e_tp & s, start) + 1
        is_tp = e_tp & s
        tp, fp = tp[is_tp].astype(np.float64), fp[is_tp].astype(np.float64)
        tp_pr.append(tp / (fp + tp + _EPS))  # pycocotools' precision, same operations
        tp_row.append(row[is_tp] + m * rows_per_m)
    tp_row, tp_pr = np.concatenate(tp_row), np.concatenate(tp_pr)

    # per row, the best precision from each true positive to the end: one padded block per category
    n_rows = n_max * rows_per_m
    n_tp = np.bincount(tp_row, minlength=n_rows)
    row_cat = np.arange(n_rows) % n_cat
    width = n_tp.reshape(-1, n_cat).max(0)  # per category: its longest row
    rows_of_cat = n_rows // n_cat
    cat_base = np.cumsum(width * rows_of_cat) - width * rows_of_cat
    row_base = cat_base[row_cat] + (np.arange(n_rows) // n_cat) * width[row_cat]
    flat = np.zeros(int((width * rows_of_cat).sum()))  # precision >= 0: zero padding changes no maximum
    tp_start = np.cumsum(n_tp) - n_tp
    flat[row_base[tp_row] + np.arange(len(tp_row)) - tp_start[tp_row]] = tp_pr
    for k in np.flatnonzero(width):
        block = flat[cat_base[k]:cat_base[k] + width[k] * rows_of_cat].reshape(rows_of_cat, width[k])
        block[:] = np.maximum.accumulate(block[:, ::-1], 1)[:, ::-1]

    # recall threshold r: that best precision from the first true positive with tp / counted >= r (0 if none)
    row_area = (np.arange(n_rows) // (n_thr * n_cat)) % n_areas
    j = np.maximum(_first_reaching(counted)[row_cat, row_area], 1)  # [rows, R]; recall 0: from the first one
    inside = j <= width[row_cat][:, None]
    q = flat[np.where(inside, row_base[:, None] + j - 1, 0)] if len(flat) else np.zeros(inside.shape)
    q = np.where(inside, q, 0.0)
    precision = q.reshape(n_max, n_areas, n_thr, n_cat, n_rec).transpose(2, 4, 3, 1, 0)
    denom = counted[row_cat, row_area].reshape(n_max, n_areas, n_thr, n_cat)
    recall = (n_tp.reshape(n_max, n_areas, n_thr, n_cat) / np.maximum(denom, 1)).transpose(2, 3, 1, 0)
    absent = counted == 0  # [K, A] no counted ground truth: pycocotools leaves -1
    precision = np.ascontiguousarray(np.where(absent[None, None, :, :, None], -1.0, precision))
    recall = np.ascontiguousarray(np.where(absent[None, :, :, None], -1.0, recall))
    return precision, recall


def summarize(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """pycocotools' 12 bbox numbers: means of the entries > -1 of the same slices, in the same order (-1 if none)."""

    def mean(s: np.ndarray) -> float:
        s = s[s > -1]
        return float(np.mean(s)) if len(s) else -1.0

    def ap(thr: Optional[float] = None, area: str = "all", max_det: int = 100) -> float:
        s = precision if thr is None else precision[np.where(thr == IOU_THRESHOLDS)[0]]
        return mean(s[:, :, :, AREA_LABELS.index(area), MAX_DETS.index(max_det)])

    def ar(area: str = "all", max_det: int = 100) -> float:
        return mean(recall[:, :, AREA_LABELS.index(area), MAX_DETS.index(max_det)])

    return np.array([ap(), ap(0.5), ap(0.75), ap(area="small"), ap(area="medium"), ap(area="large"),
                     ar(max_det=1), ar(max_det=10), ar(), ar("small"), ar("medium"), ar("large")])
