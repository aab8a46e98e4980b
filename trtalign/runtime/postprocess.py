"""Post-processing shared by every backend: NMS outputs on the letterboxed input -> Detections on the original image."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from trtalign.core.detections import Detections
from trtalign.core.enums import BoxFormat
from trtalign.core.errors import InputError
from trtalign.core.preprocess import LetterboxMeta, scale_boxes

NMS_OUTPUT_NAMES = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")


def nms_outputs_to_detections(outputs: Mapping[str, np.ndarray], metas: Sequence[LetterboxMeta] | None = None,
                              rotated: bool | None = None, clip: bool = True) -> list[Detections]:
    """The four NMS outputs of a batch -> one Detections per image.

    ``metas``: the letterbox of each image; boxes are scaled back to the original image when given (xyxy clipped to
    the image when ``clip``), else left in input pixels. ``rotated``: expect 5-column boxes (inferred when None).
    """
    missing = [n for n in NMS_OUTPUT_NAMES if n not in outputs]
    if missing:
        raise InputError(f"NMS outputs missing {missing}; got {sorted(outputs)}")
    num = np.asarray(outputs["num_detections"]).reshape(-1)
    boxes = np.asarray(outputs["detection_boxes"])
    scores = np.asarray(outputs["detection_scores"])
    classes = np.asarray(outputs["detection_classes"])
    width = boxes.shape[-1]
    if rotated is None:
        rotated = width == 5
    if width != (5 if rotated else 4):
        raise InputError(f"expected {'5' if rotated else '4'}-column detection_boxes, got shape {boxes.shape}")
    if metas is not None and len(metas) > len(num):
        raise InputError(f"{len(metas)} letterbox metas for a batch of {len(num)}")
    fmt = BoxFormat.XYWHR if rotated else BoxFormat.XYXY
    count = len(metas) if metas is not None else len(num)
    out = []
    for i in range(count):
        k = int(max(0, min(int(num[i]), boxes.shape[1])))
        b = boxes[i, :k].astype(np.float32)
        if metas is not None:
            b = scale_boxes(b, metas[i], fmt, clip=clip)
        data = {"orig_shape": list(metas[i].orig_shape)} if metas is not None else {}
        out.append(Detections(b, scores[i, :k], classes[i, :k], fmt, data))
    return out
