"""Rotated IoU for the reference ops: the names the reference NMS and its tests use, from :mod:`trtalign.core.geometry`.

The rules (exact polygon overlap, zero-area boxes IoU 0, clamped to [0, 1], identical boxes exactly 1) are stated
there once; the CUDA plugin in ``trtalign/plugins/csrc`` follows them.
"""

from __future__ import annotations

from trtalign.core.geometry import (
    rotated_bounds,
    rotated_corners as box_corners,
    rotated_intersection,
    rotated_intersection_paired,
    rotated_iou,
    rotated_iou_matrix as rotated_iou_pairwise,
    rotated_iou_one_to_many,
    rotated_iou_paired,
)

__all__ = ["box_corners", "rotated_bounds", "rotated_intersection", "rotated_intersection_paired", "rotated_iou",
           "rotated_iou_one_to_many", "rotated_iou_paired", "rotated_iou_pairwise"]
