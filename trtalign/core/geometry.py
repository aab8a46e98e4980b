"""Box geometry, written once: corners of rotated boxes, exact rotated IoU, axis-aligned IoU.

Used by the reference NMS ops (``plugins.reference``), the metrics (``eval.rotated_metrics``, ``eval.coco_metrics``),
alignment (``eval.alignment``), the datasets (``data.datasets``) and ``core.detections``.

A rotated box is ``(cx, cy, w, h, angle)`` with the angle in radians (any value: cos/sin make it periodic). Its
corners, relative to the centre, are ``R(angle) @ (±w/2, ±h/2)`` in the order (-,-), (+,-), (+,+), (-,+), which is
counter-clockwise in a right-handed frame for ``w, h > 0`` (:func:`rotated_corners`); :func:`xywhr_to_corners` gives
the same points in ultralytics' ``xywhr2xyxyxyxy`` order.

Rotated IoU rules (shared with the CUDA plugin in ``trtalign/plugins/csrc/rotated_geometry.h``, which must give the
same numbers within 1e-5):

- A box with ``w <= 0`` or ``h <= 0`` has area 0 and IoU 0 with everything (itself included), like TensorRT's
  ``BoxCorner::area`` which returns 0 for a non-positive side.
- Areas are ``w * h``; the intersection is the shoelace area of box A clipped by the four half-planes of box B
  (Sutherland–Hodgman, float64; a point exactly on a clip line counts as inside, so coincident edges keep their
  vertices; an edge crosses a clip line only where the signed distances have strictly different signs, so parallel
  edges never divide by zero). Both boxes are translated so that A's centre is the origin first (conditioning).
- ``iou = inter / (area_a + area_b - inter)``; ``inter <= 0`` or ``union <= 0`` gives 0 (the TensorRT IOU rule); the
  result is clamped to [0, 1], and two identical boxes of positive area have IoU exactly 1 (rounding would otherwise
  put it a few ulps above or below 1 depending on the backend, which decides ``IoU >= 1.0``).

Axis-aligned IoU (:func:`axis_iou_matrix`) follows TensorRT's ``IOU`` / ``BoxCorner``: each box is reordered so that
x1 <= x2, y1 <= y2; a side <= 0 gives area 0; ``inter <= 0`` or ``union <= 0`` gives IoU 0; arithmetic in the dtype
asked for (float32 reproduces the plugin's numbers, float64 is the metrics' default).
"""

from __future__ import annotations

import numpy as np

#: pairs handled per vectorised call in :func:`rotated_iou_matrix` (bounds the temporary arrays)
_CHUNK = 20000


# ----------------------------------------------------------------------------------------------------------- corners
def rotated_corners(boxes: np.ndarray) -> np.ndarray:
    """Corners ``[..., 4, 2]`` float64 of rotated boxes ``[..., 5]``: (-,-), (+,-), (+,+), (-,+) (counter-clockwise).

    Example: ``rotated_corners([0, 0, 4, 2, 0])`` -> ``[[-2, -1], [2, -1], [2, 1], [-2, 1]]``.
    """
    box = np.asarray(boxes, dtype=np.float64)
    cx, cy, w, h, a = (box[..., i] for i in range(5))
    c, s = np.cos(a), np.sin(a)
    dx = np.stack([-w, w, w, -w], axis=-1) * 0.5
    dy = np.stack([-h, -h, h, h], axis=-1) * 0.5
    x = cx[..., None] + dx * c[..., None] - dy * s[..., None]
    y = cy[..., None] + dx * s[..., None] + dy * c[..., None]
    return np.stack([x, y], axis=-1)


#: ultralytics' corner order (+,+), (+,-), (-,-), (-,+) as indices into :func:`rotated_corners`
_ULTRALYTICS_ORDER = [2, 1, 0, 3]


def xywhr_to_corners(boxes: np.ndarray) -> np.ndarray:
    """``[N, 5]`` (cx, cy, w, h, angle rad) -> ``[N, 4, 2]`` float32 corners in ultralytics' ``xywhr2xyxyxyxy`` order."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    return rotated_corners(b)[:, _ULTRALYTICS_ORDER].astype(np.float32)


def rotated_bounds(boxes: np.ndarray) -> np.ndarray:
    """Enclosing axis-aligned boxes ``[M, 4]`` float64 (x1, y1, x2, y2) of rotated boxes ``[M, 5]``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    c, s = np.abs(np.cos(b[:, 4])), np.abs(np.sin(b[:, 4]))
    w, h = np.abs(b[:, 2]), np.abs(b[:, 3])
    hw = 0.5 * (w * c + h * s)
    hh = 0.5 * (w * s + h * c)
    return np.stack([b[:, 0] - hw, b[:, 1] - hh, b[:, 0] + hw, b[:, 1] + hh], axis=1)


# ------------------------------------------------------------------------------------------------ rotated, scalar
def _clip(poly: list[tuple[float, float]], e0: np.ndarray, e1: np.ndarray) -> list[tuple[float, float]]:
    """Keep the part of ``poly`` left of (or on) the directed line e0 -> e1: one Sutherland–Hodgman step."""
    ex, ey = e1[0] - e0[0], e1[1] - e0[1]
    out: list[tuple[float, float]] = []
    n = len(poly)
    for i in range(n):
        cur, nxt = poly[i], poly[(i + 1) % n]
        d_cur = ex * (cur[1] - e0[1]) - ey * (cur[0] - e0[0])
        d_nxt = ex * (nxt[1] - e0[1]) - ey * (nxt[0] - e0[0])
        if (d_cur >= 0) != (d_nxt >= 0):  # strictly opposite sides: the crossing exists and d_cur != d_nxt
            t = d_cur / (d_cur - d_nxt)
            out.append((cur[0] + t * (nxt[0] - cur[0]), cur[1] + t * (nxt[1] - cur[1])))
        if d_nxt >= 0:
            out.append(nxt)
    return out


def _shoelace(poly: list[tuple[float, float]]) -> float:
    twice = 0.0
    for i in range(len(poly)):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % len(poly)]
        twice += x0 * y1 - x1 * y0
    return abs(twice) * 0.5


def rotated_intersection(box_a: np.ndarray, box_b: np.ndarray) -> float:
    """Exact intersection area of two rotated boxes (scalar, loop by loop: the readable statement of the rules)."""
    a = np.array(box_a, dtype=np.float64)
    b = np.array(box_b, dtype=np.float64)
    if a[2] <= 0 or a[3] <= 0 or b[2] <= 0 or b[3] <= 0:
        return 0.0
    origin = a[:2].copy()
    a[:2] -= origin
    b[:2] -= origin
    poly = [tuple(p) for p in rotated_corners(a)]
    clip = rotated_corners(b)
    for k in range(4):
        poly = _clip(poly, clip[k], clip[(k + 1) % 4])
        if len(poly) < 3:
            return 0.0
    return _shoelace(poly)


def rotated_iou(box_a: np.ndarray, box_b: np.ndarray) -> float:
    """IoU in [0, 1] of two rotated boxes (scalar)."""
    a = np.asarray(box_a, dtype=np.float64)
    b = np.asarray(box_b, dtype=np.float64)
    if a[2] > 0 and a[3] > 0 and np.array_equal(a, b):
        return 1.0
    inter = rotated_intersection(a, b)
    if inter <= 0:
        return 0.0
    union = a[2] * a[3] + b[2] * b[3] - inter
    if union <= 0:
        return 0.0
    return float(min(inter / union, 1.0))


# -------------------------------------------------------------------------------------------- rotated, vectorised
def _clip_many(poly: np.ndarray, count: np.ndarray, e0: np.ndarray, e1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Sutherland–Hodgman step: polygons ``[M, V, 2]`` with ``count`` valid vertices, one line per row.

    Same arithmetic and emission order as :func:`_clip`: for each edge (cur, nxt), the crossing (if any), then nxt
    (if inside); the emitted points are then packed to the front of each row.
    """
    m, v, _ = poly.shape
    idx = np.arange(v)
    valid = idx[None, :] < count[:, None]
    nidx = np.where(idx[None, :] + 1 < count[:, None], idx[None, :] + 1, 0)
    nxt = np.take_along_axis(poly, nidx[..., None], axis=1)
    ex = (e1[:, 0] - e0[:, 0])[:, None]
    ey = (e1[:, 1] - e0[:, 1])[:, None]
    d_cur = ex * (poly[..., 1] - e0[:, None, 1]) - ey * (poly[..., 0] - e0[:, None, 0])
    d_nxt = ex * (nxt[..., 1] - e0[:, None, 1]) - ey * (nxt[..., 0] - e0[:, None, 0])
    in_cur, in_nxt = d_cur >= 0, d_nxt >= 0
    cross = valid & (in_cur != in_nxt)
    denom = np.where(cross, d_cur - d_nxt, 1.0)
    t = np.where(cross, d_cur / denom, 0.0)[..., None]
    inter = poly + t * (nxt - poly)
    pts = np.stack([inter, nxt], axis=2).reshape(m, 2 * v, 2)
    keep = np.stack([cross, valid & in_nxt], axis=2).reshape(m, 2 * v)
    new_count = keep.sum(axis=1)
    width = max(int(new_count.max(initial=0)), 1)
    slot = np.cumsum(keep, axis=1) - 1  # where each kept point goes, in emission order
    row, col = np.nonzero(keep)
    packed = np.zeros((m, width, 2), dtype=poly.dtype)
    packed[row, slot[row, col]] = pts[row, col]
    return packed, new_count


def rotated_intersection_paired(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection areas ``[M]`` float64 of ``boxes_a[i]`` with ``boxes_b[i]`` (same rules as the scalar)."""
    a_all = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 5)
    b_all = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 5)
    out = np.zeros(len(b_all), dtype=np.float64)
    rows = np.nonzero((a_all[:, 2] > 0) & (a_all[:, 3] > 0) & (b_all[:, 2] > 0) & (b_all[:, 3] > 0))[0]
    if len(rows) == 0:
        return out
    a = a_all[rows].copy()
    b = b_all[rows].copy()
    b[:, :2] -= a[:, :2]  # box A's centre is the origin
    a[:, :2] = 0.0
    poly = rotated_corners(a)
    count = np.full(len(rows), 4, dtype=np.int64)
    clip = rotated_corners(b)
    for k in range(4):
        poly, count = _clip_many(poly, count, clip[:, k], clip[:, (k + 1) % 4])
    v = poly.shape[1]
    idx = np.arange(v)
    valid = idx[None, :] < count[:, None]
    nidx = np.where(idx[None, :] + 1 < count[:, None], idx[None, :] + 1, 0)
    nxt = np.take_along_axis(poly, nidx[..., None], axis=1)
    terms = np.where(valid, poly[..., 0] * nxt[..., 1] - nxt[..., 0] * poly[..., 1], 0.0)
    twice = np.zeros(len(rows), dtype=np.float64)
    for k in range(v):  # sequential, like the scalar loop: a row's value does not depend on the other rows
        twice = twice + terms[:, k]
    area = np.abs(twice) * 0.5
    out[rows] = np.where(count >= 3, area, 0.0)
    return out


def iou_from_intersection(boxes_a: np.ndarray, boxes_b: np.ndarray, inter: np.ndarray) -> np.ndarray:
    """Rotated IoU from intersection areas, elementwise over broadcastable ``boxes_a [..., 5]``, ``boxes_b [..., 5]``
    and ``inter``: ``inter / union`` (0 unless both are > 0), clamped to 1; identical boxes of positive area -> 1."""
    a = np.asarray(boxes_a, dtype=np.float64)
    b = np.asarray(boxes_b, dtype=np.float64)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    ok = (inter > 0) & (union > 0)
    iou = np.minimum(np.where(ok, inter / np.where(ok, union, 1.0), 0.0), 1.0)
    same = (a[..., 2] > 0) & (a[..., 3] > 0) & (a == b).all(axis=-1)
    return np.where(same, 1.0, iou)


def rotated_iou_paired(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU ``[M]`` float64 in [0, 1] of ``boxes_a[i]`` with ``boxes_b[i]``."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 5)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 5)
    return iou_from_intersection(a, b, rotated_intersection_paired(a, b))


def rotated_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU ``[M]`` float64 of one rotated box against ``boxes [M, 5]``."""
    bs = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    return rotated_iou_paired(np.broadcast_to(np.asarray(box, dtype=np.float64).reshape(1, 5), bs.shape), bs)


def rotated_intersection_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection areas ``[N, M]`` float64 between rotated boxes ``[N, 5]`` and ``[M, 5]``.

    Only pairs whose enclosing axis-aligned boxes overlap are intersected (the others are 0), in chunks of
    :data:`_CHUNK` pairs through :func:`rotated_intersection_paired`, so every entry is bit-identical to the paired and
    scalar forms (the shoelace sum runs in vertex order everywhere).
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 5)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 5)
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    if not len(a) or not len(b):
        return out
    ba, bb = rotated_bounds(a), rotated_bounds(b)
    touch = ((ba[:, None, 0] <= bb[None, :, 2]) & (ba[:, None, 2] >= bb[None, :, 0]) &
             (ba[:, None, 1] <= bb[None, :, 3]) & (ba[:, None, 3] >= bb[None, :, 1]) &
             (a[:, None, 2] > 0) & (a[:, None, 3] > 0) & (b[None, :, 2] > 0) & (b[None, :, 3] > 0))
    ia, ib = np.nonzero(touch)
    for s in range(0, len(ia), _CHUNK):
        i, j = ia[s:s + _CHUNK], ib[s:s + _CHUNK]
        out[i, j] = rotated_intersection_paired(a[i], b[j])
    return out


def rotated_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[N, M]`` float64 in [0, 1] between rotated boxes ``[N, 5]`` and ``[M, 5]`` (bit-identical to
    :func:`rotated_iou_paired` on each pair)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 5)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 5)
    return iou_from_intersection(a[:, None, :], b[None, :, :], rotated_intersection_matrix(a, b))


# ------------------------------------------------------------------------------------------------------ axis-aligned
def xywh_to_xyxy(boxes: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Centre-size boxes ``[N, 4]`` -> corners ``[N, 4]`` in ``dtype`` (TensorRT's ``BoxCenterSize`` -> ``BoxCorner``:
    ``x1 = cx - w * 0.5``, ``x2 = cx + w * 0.5``)."""
    b = np.asarray(boxes, dtype=dtype).reshape(-1, 4)
    half = dtype(0.5)
    cx, cy, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    return np.stack([cx - w * half, cy - h * half, cx + w * half, cy + h * half], axis=1).astype(dtype)


def axis_boxes_ordered(boxes: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Corner boxes ``[N, 4]`` -> ``[N, 5]`` (x1, y1, x2, y2 reordered so x1 <= x2, y1 <= y2; area, 0 for a side
    <= 0) in ``dtype``: the per-box half of :func:`axis_iou_matrix`, computed once when many pairs share boxes."""
    b = np.asarray(boxes, dtype=dtype).reshape(-1, 4)
    x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    return np.stack([x1, y1, x2, y2, _area(x1, y1, x2, y2, dtype)], axis=1)


def _area(x1, y1, x2, y2, dtype):
    w, h = (x2 - x1).astype(dtype), (y2 - y1).astype(dtype)
    return np.where((w > 0) & (h > 0), h * w, dtype(0)).astype(dtype)


def axis_iou_ordered(a: np.ndarray, b: np.ndarray, dtype=np.float64) -> np.ndarray:
    """IoU, elementwise, of broadcastable :func:`axis_boxes_ordered` rows ``a [..., 5]`` and ``b [..., 5]``."""
    inter = _area(np.maximum(a[..., 0], b[..., 0]), np.maximum(a[..., 1], b[..., 1]),
                  np.minimum(a[..., 2], b[..., 2]), np.minimum(a[..., 3], b[..., 3]), dtype)
    union = (a[..., 4] + b[..., 4] - inter).astype(dtype)
    ok = (inter > 0) & (union > 0)
    return np.where(ok, inter / np.where(ok, union, dtype(1)), dtype(0)).astype(dtype)


def axis_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray, dtype=np.float64) -> np.ndarray:
    """IoU ``[N, M]`` between corner boxes ``[N, 4]`` and ``[M, 4]`` (x1, y1, x2, y2), computed in ``dtype``.

    Each box is reordered (x1 <= x2, y1 <= y2); a side <= 0 gives area 0; ``inter <= 0`` or ``union <= 0`` gives 0.
    ``dtype=np.float32`` gives TensorRT EfficientNMS's numbers.
    """
    a, b = axis_boxes_ordered(boxes_a, dtype), axis_boxes_ordered(boxes_b, dtype)
    return axis_iou_ordered(a[:, None, :], b[None, :, :], dtype)


def axis_iou_paired(boxes_a: np.ndarray, boxes_b: np.ndarray, dtype=np.float64) -> np.ndarray:
    """IoU ``[M]`` of ``boxes_a[i]`` with ``boxes_b[i]`` (corner boxes), the same arithmetic as
    :func:`axis_iou_matrix` element by element."""
    return axis_iou_ordered(axis_boxes_ordered(boxes_a, dtype), axis_boxes_ordered(boxes_b, dtype), dtype)
