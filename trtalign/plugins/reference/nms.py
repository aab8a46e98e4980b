"""Reference implementations of ``EfficientNMS_TRT`` and ``EfficientRotatedNMS_TRT`` (numpy, loop by loop).

Semantics read from NVIDIA/TensorRT ``plugin/efficientNMSPlugin`` (TensorRT 11.1 OSS, commit 82d1dca8; the rules
below hold since 8.2, except ``class_agnostic``, added by commit 3efb69b2 (first in OSS release 23.08 and 10.0; an 8.5
plugin ignores the attribute, so NMS is per-class there)): ``README.md``, ``efficientNMSInference.cu`` (kernels ``EfficientNMSFilter``,
``EfficientNMSDenseIndex``, ``EfficientNMS``, ``EfficientNMSFilterLauncher``, ``EfficientNMSDispatch``),
``efficientNMSInference.cuh`` (``BoxCorner``, ``BoxCenterSize``), ``efficientNMSParameters.h`` and
``efficientNMSPlugin.cpp`` (``initialize``, ``createPlugin``). Per image, independently:

1. **Candidates are (box, class) pairs**, in every mode: element ``e = box * C + class`` of ``scores[b]`` is a
   candidate iff ``score >= score_threshold`` (``gte_mp``; ``EfficientNMSFilter``) and ``class != background_class``.
   The threshold is cast to the scores' type first (``(T) param.scoreThreshold``): float16 scores are compared with
   the threshold rounded to float16 (0.45 -> 0.449951171875, which then passes).
   ``class_agnostic`` does not change candidate selection: a box with two classes above the threshold gives two
   candidates, both competing for the top-k slots (the lower one is then suppressed by the higher one in NMS, as a box
   has IoU 1 with itself, unless the box has zero area).
2. **score_activation** (``EfficientNMSFilterLauncher``): the threshold is mapped to logit space,
   ``thr = logf(t / (1 - t))`` in float32 (``thr = -32768`` when ``t <= 0``), and compared with the *raw* scores; the
   sort uses raw scores; sigmoid ``1 / (1 + exp(-x))`` is applied only to the scores written out (``WriteNMSResult``).
3. **Sort**: descending by score with a stable radix sort (cub ``SortPairsDescending``). Equal scores keep buffer order;
   on the dense path (used when the threshold < 0.007, or < logit(0.007) with activation) the buffer is in element
   order, so **ties go to the lower element index** ``box * C + class``. (On the sparse path slots are taken with
   ``atomicAdd`` so the tie order is not deterministic on the GPU; we define it as element order.)
4. **Top-k**: only the first ``numSelectedBoxes`` sorted candidates enter NMS. ``efficientNMSParameters.h`` says 4096
   and the README says "the highest 4096 scores", but ``EfficientNMSPlugin::initialize()`` (since 8.2) overrides it to
   **5000** on every GPU with ``regsPerBlock >= 65536`` (all current desktop/datacenter GPUs, Xavier, Orin) and 2000
   on Jetson TX1/TX2. So :data:`TOPK` = 5000, counted over (box, class) pairs.
5. **Greedy NMS** in sorted order (kernel ``EfficientNMS``): a candidate not yet suppressed is kept (until
   ``max_output_boxes`` are kept: early exit); it then suppresses every later candidate of the same class (any class
   when ``class_agnostic``) with **IoU >= iou_threshold** (``>=``, not ``>``).
6. **IoU** (``IOU``, ``BoxCorner``): always on corners; each box is reordered so x1 <= x2, y1 <= y2 (on copies); a
   side <= 0 gives area 0; ``inter <= 0`` or ``union <= 0`` gives IoU 0. So zero-area boxes never suppress anything.
   Float32 arithmetic.
7. **box_coding** 1 (``BoxCenterSize`` -> ``BoxCorner``): ``x1 = cx - w*0.5, x2 = cx + w*0.5`` (same for y), float32.
   ``detection_boxes`` are **always corners**: the input box unchanged for coding 0 (not reordered), the converted
   corners for coding 1.
8. **Outputs** (``EfficientNMSDispatch`` zeroes them first): ``num_detections`` int32 ``[B, 1]``, boxes ``[B, K, 4]``,
   scores ``[B, K]``, classes int32 ``[B, K]``, ``K = max_output_boxes``, kept candidates in keep order (= descending
   score), the rest zero. ``N = 0`` gives all zeros.
9. **Attribute checks** (``createPlugin``): score_threshold >= 0, iou_threshold > 0, max_output_boxes > 0,
   score_activation / class_agnostic / box_coding in {0, 1}.

Implementations: :func:`efficient_nms` / :func:`efficient_rotated_nms` select the top-k with a partial sort and run
the greedy loop a block of candidates at a time (:func:`greedy_nms_dense_blocks` for corner boxes,
:func:`greedy_nms_blocked` with pruned pairs for rotated ones); ``*_literal`` run :func:`greedy_nms`, the plain
loop, after a full stable sort. They give identical outputs (tests: golden cases, random sets, 5000 candidates).

Known TensorRT quirk not reproduced: on the dense path TensorRT marks below-threshold elements with score -32768 and
still lets them into the top-k window, so with a threshold < 0.007 and fewer than 5000 candidates above it, TensorRT
can emit extra detections scored -32768 (0 after sigmoid). Use a score_threshold >= 0.007 when comparing against
TensorRT, or drop detections whose score is below the threshold.

``EfficientRotatedNMS_TRT`` (ours, built to the same rules): boxes ``[B, N, 5]`` = (cx, cy, w, h, angle in radians),
IoU = exact polygon overlap (:mod:`trtalign.core.geometry`, float64, clamped to [0, 1]), ``detection_boxes`` ``[B, K, 5]``
are the input boxes unchanged; ``box_coding`` is accepted and ignored (boxes are always centre-size-angle).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from trtalign.core.errors import InputError, expect
from trtalign.core.geometry import (
    axis_boxes_ordered,
    axis_iou_matrix,
    axis_iou_ordered,
    rotated_bounds,
    rotated_iou_one_to_many,
    rotated_iou_paired,
    xywh_to_xyxy,
)

#: candidates entering NMS per image (TensorRT's numSelectedBoxes after EfficientNMSPlugin::initialize())
TOPK = 5000
#: TensorRT's sentinel threshold for score_activation with score_threshold <= 0
_LOGIT_FLOOR = np.float32(-(1 << 15))


class NmsOutputs(NamedTuple):
    num_detections: np.ndarray  # int32 [B, 1]
    detection_boxes: np.ndarray  # float32 [B, K, 4|5]
    detection_scores: np.ndarray  # float32 [B, K]
    detection_classes: np.ndarray  # int32 [B, K]


def check_attributes(score_threshold: float, iou_threshold: float, max_output_boxes: int, score_activation: int,
                     class_agnostic: int, box_coding: int) -> None:
    """The plugin creator's attribute checks, as InputError."""
    expect(score_threshold >= 0, f"score_threshold must be >= 0, got {score_threshold}")
    expect(iou_threshold > 0, f"iou_threshold must be > 0, got {iou_threshold}")
    expect(int(max_output_boxes) > 0, f"max_output_boxes must be > 0, got {max_output_boxes}")
    for name, value in (("score_activation", score_activation), ("class_agnostic", class_agnostic),
                        ("box_coding", box_coding)):
        expect(int(value) in (0, 1), f"{name} must be 0 or 1, got {value}")


def candidate_threshold(score_threshold: float, score_activation: int, half: bool = False) -> np.float32:
    """The threshold the raw scores are compared with (logit space when score_activation).

    ``half``: the scores are float16, and TensorRT compares them with the threshold cast to the scores' type
    (``gte_mp(score, (T) param.scoreThreshold)`` in ``EfficientNMSFilter`` / ``lt_mp`` in ``EfficientNMSDenseIndex``,
    the logit taken in float32 first): the float32 threshold rounded to the nearest float16. With threshold 0.45 a
    float16 score of 0.449951171875 (= float16(0.45)) passes.
    """
    t = np.float32(score_threshold)
    if not score_activation:
        thr = t
    elif t <= 0:
        thr = _LOGIT_FLOOR
    else:
        thr = np.float32(np.log(np.float32(t / (np.float32(1) - t))))
    return np.float32(np.float16(thr)) if half else thr


def sigmoid32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)


def select_candidates(scores: np.ndarray, threshold: np.float32, background_class: int, topk: int,
                      literal: bool = False) -> np.ndarray:
    """Element indices ``box * C + class`` of one image's candidates, sorted by score (stable), cut to ``topk``.

    ``literal``: sort every candidate, then cut. Otherwise the same result from a partial sort: every candidate
    scoring above the ``topk``-th score, then those equal to it in element order until ``topk`` are taken (exactly
    the ones a stable sort puts first), and only those are sorted.
    """
    flat = np.asarray(scores, dtype=np.float32).reshape(-1)
    num_classes = scores.shape[1] if scores.ndim == 2 else 1
    element = np.arange(flat.size)
    keep = (flat >= threshold) & (element % max(num_classes, 1) != background_class)
    cand = element[keep]
    vals = flat[cand]
    if not literal and topk < len(cand):
        kth = np.partition(vals, len(vals) - topk)[len(vals) - topk]  # the topk-th largest score
        above = np.flatnonzero(vals > kth)
        ties = np.flatnonzero(vals == kth)[:topk - len(above)]
        chosen = np.sort(np.concatenate([above, ties]))
        cand, vals = cand[chosen], vals[chosen]
    order = np.argsort(-vals, kind="stable")
    return cand[order][:topk]


def corners_from_boxes(boxes: np.ndarray, box_coding: int) -> np.ndarray:
    """Boxes ``[N, 4]`` in the given coding -> corners ``[N, 4]`` float32 (coding 0: unchanged)."""
    if not box_coding:
        return np.array(boxes, dtype=np.float32)
    return xywh_to_xyxy(boxes, np.float32)


def corner_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """TensorRT's corner IoU (float32) of one box against ``boxes [M, 4]``."""
    return axis_iou_matrix(np.asarray(box).reshape(1, 4), boxes, np.float32)[0]


def greedy_nms(candidates_boxes: np.ndarray, classes: np.ndarray, iou_threshold: float, max_output_boxes: int,
               class_agnostic: int, iou_fn, bounds: np.ndarray | None = None) -> list[int]:
    """Greedy NMS over candidates already in sorted order; returns kept positions (at most ``max_output_boxes``).

    ``iou_fn(box, boxes)`` gives IoU of one box against many. ``bounds [M, 4]`` (axis-aligned extents), when given,
    skips pairs whose extents do not touch (their IoU is 0, which never reaches a threshold > 0).
    """
    n = len(candidates_boxes)
    alive = np.ones(n, dtype=bool)
    kept: list[int] = []
    for i in range(n):
        if not alive[i]:
            continue
        if len(kept) >= max_output_boxes:
            break
        kept.append(i)
        rest = np.arange(i + 1, n)
        rest = rest[alive[i + 1:]]
        if not class_agnostic:
            rest = rest[classes[rest] == classes[i]]
        if bounds is not None and len(rest):
            bi, br = bounds[i], bounds[rest]
            touch = (br[:, 0] <= bi[2]) & (br[:, 2] >= bi[0]) & (br[:, 1] <= bi[3]) & (br[:, 3] >= bi[1])
            rest = rest[touch]
        if len(rest):
            iou = iou_fn(candidates_boxes[i], candidates_boxes[rest])
            alive[rest[iou >= iou_threshold]] = False
    return kept


def _candidate_pairs(rows: np.ndarray, cols: np.ndarray, classes: np.ndarray, class_agnostic: int,
                     bounds: np.ndarray, areas: np.ndarray, iou_threshold: float,
                     margin: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (rows[a], cols[b]) with rows[a] < cols[b] that may reach the threshold (row-major order).

    A pair is dropped only when IoU < threshold is certain: different classes (per-class mode), extents that do not
    overlap, or the upper bound ``u / (area_i + area_j - u)`` with ``u = min(area_i, area_j, overlap of the extents)``
    below the threshold.
    """
    ok = cols[None, :] > rows[:, None]
    if class_agnostic:  # dense extents first: most pairs fail them
        br, bc = bounds[rows], bounds[cols]
        ix = np.minimum(br[:, None, 2], bc[None, :, 2]) - np.maximum(br[:, None, 0], bc[None, :, 0])
        iy = np.minimum(br[:, None, 3], bc[None, :, 3]) - np.maximum(br[:, None, 1], bc[None, :, 1])
        ok &= (ix > 0) & (iy > 0)
        r, c = np.nonzero(ok)
        pi, pj, ix, iy = rows[r], cols[c], ix[r, c], iy[r, c]
    else:  # per class: the class test first leaves few pairs
        ok &= classes[cols][None, :] == classes[rows][:, None]
        r, c = np.nonzero(ok)
        pi, pj = rows[r], cols[c]
        bi, bj = bounds[pi], bounds[pj]
        ix = np.minimum(bi[:, 2], bj[:, 2]) - np.maximum(bi[:, 0], bj[:, 0])
        iy = np.minimum(bi[:, 3], bj[:, 3]) - np.maximum(bi[:, 1], bj[:, 1])
        touch = (ix > 0) & (iy > 0)
        pi, pj, ix, iy = pi[touch], pj[touch], ix[touch], iy[touch]
    upper = np.minimum(np.minimum(areas[pi], areas[pj]), ix * iy)
    denom = areas[pi] + areas[pj] - upper
    bound = np.where(denom > 0, upper / np.where(denom > 0, denom, 1.0), 0.0)
    maybe = bound >= iou_threshold - margin
    return pi[maybe], pj[maybe]


def greedy_nms_blocked(candidates_boxes: np.ndarray, classes: np.ndarray, iou_threshold: float,
                       max_output_boxes: int, class_agnostic: int, paired_iou_fn, bounds: np.ndarray,
                       areas: np.ndarray, block: int = 32, margin: float = 1e-9) -> list[int]:
    """The same greedy NMS as :func:`greedy_nms`, with IoUs computed a block of candidates at a time.

    Take the next ``block`` candidates still alive. (1) IoUs among them, in one ``paired_iou_fn(boxes_i, boxes_j)``
    call, decide which of them are kept, walking them in order exactly like the plain loop. (2) IoUs of the kept ones
    against every later alive candidate, in one call, suppress those. Pairs that cannot reach the threshold are skipped
    (see :func:`_candidate_pairs`; ``margin`` covers the rounding of ``paired_iou_fn`` against the float64 bound);
    the IoU of a pair does not depend on the other pairs of the call, so the decisions equal the plain loop's (the
    tests check it on the golden cases and on random sets).
    """
    n = len(candidates_boxes)
    alive = np.ones(n, dtype=bool)
    kept: list[int] = []
    thr = float(iou_threshold)
    pos = 0
    while pos < n and len(kept) < max_output_boxes:
        members = np.flatnonzero(alive[pos:])[:block] + pos
        if len(members) == 0:
            break
        pi, pj = _candidate_pairs(members, members, classes, class_agnostic, bounds, areas, thr, margin)
        iou = paired_iou_fn(candidates_boxes[pi], candidates_boxes[pj]) if len(pi) else np.zeros(0)
        starts, ends = np.searchsorted(pi, members, side="left"), np.searchsorted(pi, members, side="right")
        survivors = []
        for i, a, b in zip(members, starts, ends):
            if not alive[i]:
                continue
            if len(kept) >= max_output_boxes:
                break
            kept.append(int(i))
            survivors.append(i)
            alive[pj[a:b][iou[a:b] >= thr]] = False
        later = np.flatnonzero(alive[members[-1] + 1:]) + members[-1] + 1
        if survivors and len(later) and len(kept) < max_output_boxes:
            pi, pj = _candidate_pairs(np.asarray(survivors), later, classes, class_agnostic, bounds, areas, thr,
                                      margin)
            if len(pi):
                iou = paired_iou_fn(candidates_boxes[pi], candidates_boxes[pj])
                alive[pj[iou >= thr]] = False
        pos = members[-1] + 1
    return kept


def greedy_nms_dense_blocks(candidates_boxes: np.ndarray, classes: np.ndarray, iou_threshold: float,
                            max_output_boxes: int, class_agnostic: int, matrix_iou_fn, paired_iou_fn,
                            block: int = 64) -> list[int]:
    """The same greedy NMS as :func:`greedy_nms` for a cheap IoU: dense IoU blocks, no pair pruning.

    Take the next ``block`` candidates still alive; ``matrix_iou_fn(boxes_i, boxes_j)`` among them decides, walking
    them in order, which are kept; one more call, kept ones against every later alive candidate (the IoU matrix when
    ``class_agnostic``, else ``paired_iou_fn`` on the same-class pairs only), suppresses those. Both must compute
    each IoU independently of the others (elementwise arithmetic), so the decisions equal the plain loop's.
    """
    n = len(candidates_boxes)
    alive = np.ones(n, dtype=bool)
    kept: list[int] = []
    pos = 0
    while pos < n and len(kept) < max_output_boxes:
        members = np.flatnonzero(alive[pos:])[:block] + pos
        if len(members) == 0:
            break
        hit = matrix_iou_fn(candidates_boxes[members], candidates_boxes[members]) >= iou_threshold
        if not class_agnostic:
            hit &= classes[members][:, None] == classes[members][None, :]
        hit &= np.triu(np.ones((len(members), len(members)), dtype=bool), 1)
        local = np.ones(len(members), dtype=bool)
        survivors = []
        for row in range(len(members)):
            if not local[row]:
                continue
            if len(kept) >= max_output_boxes:
                break
            kept.append(int(members[row]))
            survivors.append(members[row])
            local &= ~hit[row]
        alive[members] = local
        end = members[-1] + 1
        later = np.flatnonzero(alive[end:]) + end
        if survivors and len(later) and len(kept) < max_output_boxes:
            surv = np.asarray(survivors)
            if class_agnostic:
                hit = matrix_iou_fn(candidates_boxes[surv], candidates_boxes[later]) >= iou_threshold
                alive[later[hit.any(axis=0)]] = False
            else:  # only same-class pairs, as a list
                r, c = np.nonzero(classes[surv][:, None] == classes[later][None, :])
                if len(r):
                    hit = paired_iou_fn(candidates_boxes[surv[r]], candidates_boxes[later[c]]) >= iou_threshold
                    alive[later[c[hit]]] = False
        pos = end
    return kept


def _axis_iou_matrix32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return axis_iou_ordered(a[:, None, :], b[None, :, :], np.float32)


def _axis_iou_paired32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return axis_iou_ordered(a, b, np.float32)


def _run(boxes: np.ndarray, scores: np.ndarray, box_dim: int, rotated: bool, score_threshold: float,
         iou_threshold: float, max_output_boxes: int, background_class: int, score_activation: int,
         class_agnostic: int, box_coding: int, topk: int, literal: bool = False) -> NmsOutputs:
    half = np.asarray(scores).dtype == np.float16  # TensorRT then compares in FP16 (candidate_threshold)
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if boxes.ndim != 3 or boxes.shape[-1] != box_dim:
        raise InputError(f"boxes must have shape [B, N, {box_dim}], got {list(boxes.shape)}")
    if scores.ndim != 3 or scores.shape[:2] != boxes.shape[:2]:
        raise InputError(f"scores must have shape [B, N, C] with B, N = {list(boxes.shape[:2])}, "
                         f"got {list(scores.shape)}")
    check_attributes(score_threshold, iou_threshold, max_output_boxes, score_activation, class_agnostic, box_coding)
    batch, k = boxes.shape[0], int(max_output_boxes)
    num_classes = scores.shape[2]
    out = NmsOutputs(np.zeros((batch, 1), np.int32), np.zeros((batch, k, box_dim), np.float32),
                     np.zeros((batch, k), np.float32), np.zeros((batch, k), np.int32))
    threshold = candidate_threshold(score_threshold, score_activation, half)
    iou_thr = np.float32(iou_threshold)
    for b in range(batch):
        if scores.shape[1] == 0 or num_classes == 0:
            continue
        cand = select_candidates(scores[b], threshold, background_class, topk, literal)
        anchor, cls = cand // num_classes, cand % num_classes
        cand_scores = scores[b].reshape(-1)[cand]
        if rotated:
            cand_boxes = boxes[b][anchor].astype(np.float64)
            if literal:
                kept = greedy_nms(cand_boxes, cls, float(iou_thr), k, class_agnostic, rotated_iou_one_to_many)
            else:
                areas = np.where((cand_boxes[:, 2] > 0) & (cand_boxes[:, 3] > 0),
                                 cand_boxes[:, 2] * cand_boxes[:, 3], 0.0)
                kept = greedy_nms_blocked(cand_boxes, cls, float(iou_thr), k, class_agnostic, rotated_iou_paired,
                                          rotated_bounds(cand_boxes), areas)
            out_boxes = boxes[b][anchor]
        else:
            cand_boxes = corners_from_boxes(boxes[b], box_coding)[anchor]
            if literal:
                kept = greedy_nms(cand_boxes, cls, iou_thr, k, class_agnostic, corner_iou_one_to_many)
            else:
                # reordered corners and areas once per candidate (the same float32 arithmetic as the literal IoU)
                kept = greedy_nms_dense_blocks(axis_boxes_ordered(cand_boxes, np.float32), cls, iou_thr, k,
                                               class_agnostic, _axis_iou_matrix32, _axis_iou_paired32)
            out_boxes = cand_boxes
        n = len(kept)
        out.num_detections[b, 0] = n
        out.detection_boxes[b, :n] = out_boxes[kept]
        kept_scores = cand_scores[kept]
        out.detection_scores[b, :n] = sigmoid32(kept_scores) if score_activation else kept_scores
        out.detection_classes[b, :n] = cls[kept]
    return out


def efficient_nms(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, iou_threshold: float,
                  max_output_boxes: int, background_class: int = -1, score_activation: int = 0,
                  class_agnostic: int = 0, box_coding: int = 0, topk: int = TOPK, **_ignored) -> NmsOutputs:
    """``EfficientNMS_TRT``: boxes ``[B, N, 4]``, scores ``[B, N, C]`` -> :class:`NmsOutputs` (boxes as corners).

    The vectorised implementation (:func:`greedy_nms_blocked`), what every production path runs (ONNX Runtime custom
    op, ``--torch-nms aligned``); :func:`efficient_nms_literal` is the loop-by-loop oracle it is tested against.
    float16 ``scores`` are compared with the threshold rounded to float16, as TensorRT does. Extra keyword arguments
    (``plugin_version``) are accepted and ignored, so a node's attributes can be passed as is.

    Raises:
        InputError: wrong shapes or an attribute the plugin creator rejects.
    """
    return _run(boxes, scores, 4, False, score_threshold, iou_threshold, max_output_boxes, background_class,
                score_activation, class_agnostic, box_coding, topk)


def efficient_rotated_nms(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, iou_threshold: float,
                          max_output_boxes: int, background_class: int = -1, score_activation: int = 0,
                          class_agnostic: int = 0, box_coding: int = 1, topk: int = TOPK,
                          **_ignored) -> NmsOutputs:
    """``EfficientRotatedNMS_TRT``: boxes ``[B, N, 5]`` (cx, cy, w, h, angle), scores ``[B, N, C]`` (vectorised;
    :func:`efficient_rotated_nms_literal` is its oracle)."""
    return _run(boxes, scores, 5, True, score_threshold, iou_threshold, max_output_boxes, background_class,
                score_activation, class_agnostic, box_coding, topk)


def efficient_nms_literal(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, iou_threshold: float,
                          max_output_boxes: int, background_class: int = -1, score_activation: int = 0,
                          class_agnostic: int = 0, box_coding: int = 0, topk: int = TOPK, **_ignored) -> NmsOutputs:
    """:func:`efficient_nms` with the loop-by-loop greedy NMS (:func:`greedy_nms`): the oracle, slow."""
    return _run(boxes, scores, 4, False, score_threshold, iou_threshold, max_output_boxes, background_class,
                score_activation, class_agnostic, box_coding, topk, literal=True)


def efficient_rotated_nms_literal(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float,
                                  iou_threshold: float, max_output_boxes: int, background_class: int = -1,
                                  score_activation: int = 0, class_agnostic: int = 0, box_coding: int = 1,
                                  topk: int = TOPK, **_ignored) -> NmsOutputs:
    """:func:`efficient_rotated_nms` with the loop-by-loop greedy NMS: the oracle, slow."""
    return _run(boxes, scores, 5, True, score_threshold, iou_threshold, max_output_boxes, background_class,
                score_activation, class_agnostic, box_coding, topk, literal=True)


#: op_type -> reference function
REFERENCE_OPS = {"EfficientNMS_TRT": efficient_nms, "EfficientRotatedNMS_TRT": efficient_rotated_nms}
#: op_type -> loop-by-loop oracle
LITERAL_OPS = {"EfficientNMS_TRT": efficient_nms_literal, "EfficientRotatedNMS_TRT": efficient_rotated_nms_literal}
