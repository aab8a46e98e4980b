"""Python reference implementations of the NMS ops (``EfficientNMS_TRT``, ``EfficientRotatedNMS_TRT``) and rotated IoU.

The semantics (with citations of the TensorRT sources) are documented in :mod:`trtalign.plugins.reference.nms`.
``efficient_nms`` / ``efficient_rotated_nms`` (and :data:`REFERENCE_OPS`) are the vectorised implementations every
production path runs; ``*_literal`` (:data:`LITERAL_OPS`) are the loop-by-loop oracles they are tested against.
Note: the package attribute ``rotated_iou`` is the scalar function and shadows the submodule of the same name; for
the module use ``from trtalign.plugins.reference.rotated_iou import ...`` or
``importlib.import_module("trtalign.plugins.reference.rotated_iou")``.
"""

from trtalign.plugins.reference.nms import (
    LITERAL_OPS,
    REFERENCE_OPS,
    TOPK,
    NmsOutputs,
    efficient_nms,
    efficient_nms_literal,
    efficient_rotated_nms,
    efficient_rotated_nms_literal,
)
from trtalign.plugins.reference.rotated_iou import (
    rotated_intersection,
    rotated_iou,
    rotated_iou_one_to_many,
    rotated_iou_paired,
    rotated_iou_pairwise,
)

__all__ = [
    "LITERAL_OPS",
    "REFERENCE_OPS",
    "TOPK",
    "NmsOutputs",
    "efficient_nms",
    "efficient_nms_literal",
    "efficient_rotated_nms",
    "efficient_rotated_nms_literal",
    "rotated_intersection",
    "rotated_iou",
    "rotated_iou_one_to_many",
    "rotated_iou_paired",
    "rotated_iou_pairwise",
]
