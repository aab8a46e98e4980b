"""Rotated-box mAP: DOTA-style VOC mAP@0.5 (07 11-point and area variants) and COCO-style mAP50-95, with the exact
polygon IoU of rotated rectangles.

IoU: :func:`trtalign.core.geometry.rotated_iou_matrix` (exact polygon overlap, the same function the reference NMS
uses; the tests check it against shapely's polygon intersection on random boxes).

VOC / DOTA (``dota_ap``): per class, detections of all images (in the order they were given) sorted by score with
numpy's default ``argsort`` of ``-score`` as the DOTA devkit does (not stable: tied scores land where that sort puts
them); each takes the ground truth of highest IoU in its image; IoU > 0.5 and that box not yet taken -> TP, else FP; a
match with a ``difficult`` box is neither (the devkit's ``voc_eval``). AP by the VOC07 11-point rule or by the area
under the monotone PR curve.

COCO-style (``coco_style``): pycocotools' ``evaluateImg`` + ``accumulate`` (IoU 0.50:0.05:0.95, 101 recall points,
at most 100 detections per image and class, greedy matching preferring non-ignored boxes) with rotated IoU in place of
box IoU, area range "all"; ignored (crowd / difficult) boxes follow pycocotools' crowd rules: intersection / detection
area instead of IoU, and one such box may absorb any number of detections. For boxes at angle 0 it gives pycocotools'
bbox AP exactly, crowd boxes included (a test checks that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trtalign.core.detections import Detections
from trtalign.core.geometry import iou_from_intersection, rotated_intersection_matrix, xywhr_to_corners
from trtalign.core.errors import InputError
from trtalign.eval.bootstrap import match_image_class
from trtalign.eval.coco_metrics import RECALL_POINTS, CocoResult, DetectionStore
from trtalign.data.datasets import Dataset

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
ROTATED_STAT_KEYS = ("map", "map50", "map75", "map50_voc07", "map50_voc", "mar_100")


# --------------------------------------------------------------------------------------------------------------- AP
def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """VOC average precision: the 07 11-point rule or the area under the monotone precision envelope."""
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = precision[recall >= t].max() if (recall >= t).any() else 0.0
            ap += p / 11.0
        return float(ap)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(((mrec[i + 1] - mrec[i]) * mpre[i + 1]).sum())


@dataclass
class RotatedResult(CocoResult):
    """Rotated-box evaluation of one set of detections (the fields and ``to_dict`` of :class:`CocoResult`).

    JSON keys (stable): ``stats`` {map (COCO-style 50-95), map50, map75, map50_voc07 (DOTA 11-point), map50_voc
    (DOTA area), mar_100}; ``per_class`` {name: {ap, ap50, ap50_voc07, ap50_voc, num_gt}}; ``pr_curve`` {recall,
    precision_50, per_class_50}; ``num_images``, ``num_detections``, ``num_gt``, ``backend`` ("trtalign-rotated").
    """

    backend: str = "trtalign-rotated"


class RotatedMetrics:
    """Rotated mAP over a :class:`Dataset` with ``xywhr`` ground truth (``update`` / ``compute`` / ``reset``)."""

    def __init__(self, dataset: Dataset, max_dets: int = 100, voc_iou: float = 0.5):
        if not dataset.rotated:
            raise InputError(f"RotatedMetrics needs a rotated (obb) dataset, got a {dataset.task.value} dataset")
        self.dataset = dataset
        self.max_dets = max_dets
        self.voc_iou = voc_iou
        self.store = DetectionStore(dataset, 5)

    def reset(self) -> None:
        self.store.reset()

    def update(self, image_id: Any, detections: Detections) -> None:
        self.store.add(image_id, detections)

    def compute(self) -> RotatedResult:
        ds = self.dataset
        ids, boxes, scores, cls = self.store.arrays()
        nc = ds.num_classes
        image_ids = sorted(im.id for im in ds.images)
        T, R = len(IOU_THRESHOLDS), len(RECALL_POINTS)
        precision = -np.ones((T, R, nc))
        recall = -np.ones((T, nc))
        per_class: dict = {}
        by_key: dict = {}
        for n in range(len(ids)):
            by_key.setdefault((int(ids[n]), int(cls[n])), []).append(n)
        by_key = {k: np.asarray(v) for k, v in by_key.items()}
        voc07, voc = np.full(nc, np.nan), np.full(nc, np.nan)
        num_gt_total = 0
        for k in range(nc):
            coco_scores, coco_m, coco_ig = [], [], []
            voc_rows: dict = {}  # detection index -> (IoU row with the image's ground truth, ignore flags, image)
            npig, nvoc = 0, 0
            for iid in image_ids:
                gt = ds.annotations.get(iid)
                sel = (gt.class_ids == k) if gt is not None else np.zeros(0, bool)
                g_boxes = gt.boxes[sel] if gt is not None else np.zeros((0, 5))
                g_ig = gt.ignore[sel] if gt is not None else np.zeros(0, bool)
                npig += int((~g_ig).sum())
                nvoc += int((~g_ig).sum())
                idx = by_key.get((iid, k))
                if idx is None or not len(idx):
                    continue
                idx = idx[np.argsort(-scores[idx], kind="mergesort")]
                inter = rotated_intersection_matrix(boxes[idx], g_boxes)
                ious_all = iou_from_intersection(boxes[idx][:, None, :], g_boxes[None, :, :], inter)
                # DOTA / VOC: best overlap over all ground truth of the image, first index on ties
                for r, n in enumerate(idx):
                    voc_rows[int(n)] = (ious_all[r], g_ig, iid)
                # COCO-style: top max_dets, ground truth sorted non-ignored first; an ignored (crowd) box scores
                # intersection / detection area, as pycocotools' iou() does for iscrowd
                top = slice(0, self.max_dets)
                g_order = np.argsort(g_ig, kind="mergesort")
                d_area = boxes[idx][:, 2] * boxes[idx][:, 3]
                crowd = np.where(d_area[:, None] > 0, inter / np.where(d_area > 0, d_area, 1.0)[:, None], 0.0)
                coco_ious = np.where(g_ig[None, :], crowd, ious_all)
                dtm, dtig = match_image_class(coco_ious[top][:, g_order], g_ig[g_order], g_ig[g_order],
                                              IOU_THRESHOLDS)
                coco_scores.append(scores[idx][top])
                coco_m.append(dtm)
                coco_ig.append(dtig)
            num_gt_total += npig
            per_class[str(ds.names[k])] = {"num_gt": npig}
            # ---- COCO-style accumulate
            if npig > 0:
                sc = np.concatenate(coco_scores) if coco_scores else np.zeros(0)
                order = np.argsort(-sc, kind="mergesort")
                dtm = np.concatenate(coco_m, 1)[:, order] if coco_m else np.zeros((T, 0), bool)
                dtig = np.concatenate(coco_ig, 1)[:, order] if coco_ig else np.zeros((T, 0), bool)
                tps = np.cumsum(dtm & ~dtig, 1).astype(np.float64)
                fps = np.cumsum(~dtm & ~dtig, 1).astype(np.float64)
                for t in range(T):
                    tp, fp = tps[t], fps[t]
                    rc = tp / npig
                    pr = tp / (fp + tp + np.spacing(1))
                    recall[t, k] = rc[-1] if len(tp) else 0.0
                    pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
                    inds = np.searchsorted(rc, RECALL_POINTS, side="left")
                    q = np.zeros(R)
                    ok = inds < len(pr)
                    q[ok] = pr[inds[ok]]
                    precision[t, :, k] = q
                # ---- DOTA / VOC
                voc07[k], voc[k] = self._dota_ap(voc_rows, scores, nvoc)
        ap = np.array([precision[:, :, k].mean() if recall[0, k] > -1 else np.nan for k in range(nc)])
        ap50 = np.array([precision[0, :, k].mean() if recall[0, k] > -1 else np.nan for k in range(nc)])
        ap75 = np.array([precision[5, :, k].mean() if recall[0, k] > -1 else np.nan for k in range(nc)])
        ar = np.array([recall[:, k].mean() if recall[0, k] > -1 else np.nan for k in range(nc)])
        curves = {}
        for k, name in enumerate(ds.names):
            c = per_class[str(name)]
            c.update(ap=float(ap[k]), ap50=float(ap50[k]), ap50_voc07=float(voc07[k]), ap50_voc=float(voc[k]))
            if recall[0, k] > -1:
                curves[str(name)] = [round(float(v), 5) for v in precision[0, :, k]]
        valid = recall[0] > -1
        mean = (lambda v: float(np.nanmean(v[valid])) if valid.any() else float("nan"))
        stats = {"map": mean(ap), "map50": mean(ap50), "map75": mean(ap75), "map50_voc07": mean(voc07),
                 "map50_voc": mean(voc), "mar_100": mean(ar)}
        p50 = [round(float(precision[0, r, valid].mean()), 5) if valid.any() else 0.0 for r in range(R)]
        return RotatedResult(stats, per_class, {"recall": [round(float(r), 2) for r in RECALL_POINTS],
                                                "precision_50": p50, "per_class_50": curves},
                             num_images=len(image_ids), num_detections=int(len(ids)), num_gt=num_gt_total)

    def _dota_ap(self, rows: dict, scores: np.ndarray, npos: int) -> tuple[float, float]:
        """DOTA_devkit's ``voc_eval`` for one class. ``rows``: detection index (store order, i.e. the order the
        detections were given, as a results file lists them) -> (IoU row, ignore flags, image id).

        Order: the devkit sorts ``-confidence`` (float64) with numpy's default, unstable ``np.argsort``; ties then
        fall in whatever order that sort leaves them, and the same call on the same array gives the same order here.
        """
        if npos == 0:
            return float("nan"), float("nan")
        if not rows:
            return 0.0, 0.0
        det_index = np.asarray(sorted(rows), np.int64)
        confidence = np.asarray(scores[det_index], np.float64)
        order = np.argsort(-confidence)  # the devkit's call: default kind, deliberately not stable
        taken: dict = {}
        tp = np.zeros(len(order))
        fp = np.zeros(len(order))
        for n, d in enumerate(det_index[order]):
            ious, g_ig, iid = rows[int(d)]
            if len(ious) == 0:
                fp[n] = 1
                continue
            j = int(np.argmax(ious))
            if ious[j] > self.voc_iou:
                if g_ig[j]:
                    continue
                used = taken.setdefault(iid, np.zeros(len(ious), bool))
                if not used[j]:
                    tp[n], used[j] = 1, True
                else:
                    fp[n] = 1
            else:
                fp[n] = 1
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        return voc_ap(rec, prec, True), voc_ap(rec, prec, False)


def evaluate_rotated(dataset: Dataset, detections: dict, max_dets: int = 100) -> RotatedResult:
    """One-shot helper: ``{image_id: Detections}`` -> :class:`RotatedResult`."""
    m = RotatedMetrics(dataset, max_dets)
    for iid, det in detections.items():
        m.update(iid, det)
    return m.compute()


def rotated_results_json(dataset: Dataset, ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                         cls: np.ndarray) -> list:
    """Detections as a documented json list: ``{"image_id", "category_id", "score", "xywhr": [x, y, w, h, angle]}``
    with ``angle`` in radians (ultralytics' OBB convention) and ``poly`` the 4 corners ``[x1, y1, ..., x4, y4]``."""
    corners = xywhr_to_corners(boxes).reshape(-1, 8) if len(boxes) else np.zeros((0, 8))
    cat = np.asarray(dataset.category_ids)
    return [{"image_id": int(i), "category_id": int(cat[c]), "score": round(float(s), 6),
             "xywhr": [round(float(v), 4) for v in b], "poly": [round(float(v), 3) for v in p]}
            for i, b, s, c, p in zip(ids, boxes, scores, cls, corners)]
