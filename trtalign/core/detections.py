"""The one Detections type that flows through runtime, eval and serve.

Axis-aligned boxes are ``xyxy`` (x1, y1, x2, y2) in pixels; rotated boxes are ``xywhr`` (center x, center y, width,
height, angle in radians, ultralytics' OBB convention). Scores are float32 in [0, 1]; class ids are int64.
Converters (``from_*``) read other frameworks' result objects by duck typing, never importing those frameworks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from trtalign.core.enums import BoxFormat
from trtalign.core.errors import InputError


def _as_array(value: Any, dtype: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Detections.{name}: cannot convert {type(value).__name__} to {np.dtype(dtype)}: {exc}") from exc


@dataclass
class Detections:
    """Detections of one image.

    Attributes:
        boxes: ``[N, 4]`` xyxy or ``[N, 5]`` xywhr float32.
        scores: ``[N]`` float32.
        class_ids: ``[N]`` int64.
        box_format: BoxFormat.XYXY or BoxFormat.XYWHR; inferred from the box width when omitted.
        data: free-form per-image metadata (image id, original shape, ...).

    Raises:
        InputError (in ``__post_init__``): boxes not ``[N, 4]`` / ``[N, 5]``, a ``box_format`` that contradicts the
        box width, or boxes, scores and class ids of different lengths.

    Example::

        det = Detections(boxes=[[10, 20, 50, 80]], scores=[0.9], class_ids=[2])
        det.filter(min_score=0.25).to_dict(names=["person", "car", "bus"])
        Detections.from_nms_outputs(out["num_detections"], out["detection_boxes"], out["detection_scores"],
                                    out["detection_classes"], index=0)  # image 0 of an exported ONNX's outputs
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    box_format: BoxFormat | str | None = None
    data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = _as_array(self.boxes, np.float32, "boxes")
        self.scores = _as_array(self.scores, np.float32, "scores").reshape(-1)
        self.class_ids = _as_array(self.class_ids, np.int64, "class_ids").reshape(-1)
        if self.boxes.size == 0:
            width = 5 if (self.box_format is not None and BoxFormat.parse(self.box_format) is BoxFormat.XYWHR) else 4
            if self.boxes.ndim == 2 and self.boxes.shape[1] in (4, 5):
                width = self.boxes.shape[1]
            self.boxes = self.boxes.reshape(0, width)
        if self.boxes.ndim != 2 or self.boxes.shape[1] not in (4, 5):
            raise InputError(f"Detections.boxes must be [N, 4] (xyxy) or [N, 5] (xywhr), got shape {self.boxes.shape}")
        fmt = BoxFormat.XYXY if self.boxes.shape[1] == 4 else BoxFormat.XYWHR
        if self.box_format is not None and BoxFormat.parse(self.box_format) is not fmt:
            raise InputError(f"Detections.box_format={self.box_format!s} but boxes have {self.boxes.shape[1]} columns")
        self.box_format = fmt
        n = len(self.boxes)
        if len(self.scores) != n or len(self.class_ids) != n:
            raise InputError(f"Detections: boxes ({n}), scores ({len(self.scores)}) and class_ids "
                             f"({len(self.class_ids)}) must have the same length")

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def rotated(self) -> bool:
        return self.box_format is BoxFormat.XYWHR

    def __getitem__(self, index: Any) -> "Detections":
        """Select detections with an int, slice, index array or boolean mask."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index], self.box_format, dict(self.data))

    @classmethod
    def empty(cls, rotated: bool = False, **data: Any) -> "Detections":
        width = 5 if rotated else 4
        return cls(np.zeros((0, width), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   BoxFormat.XYWHR if rotated else BoxFormat.XYXY, dict(data))

    @classmethod
    def merge(cls, parts: Sequence["Detections"]) -> "Detections":
        if not parts:
            raise InputError("Detections.merge needs at least one Detections")
        fmts = {p.box_format for p in parts}
        if len(fmts) != 1:
            raise InputError(f"Detections.merge: mixed box formats {sorted(str(f) for f in fmts)}")
        return cls(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.class_ids for p in parts]), parts[0].box_format, dict(parts[0].data))

    def sorted_by_score(self) -> "Detections":
        order = np.argsort(-self.scores, kind="stable")
        return self[order]

    def filter(self, min_score: float = 0.0, classes: Sequence[int] | None = None) -> "Detections":
        mask = self.scores >= min_score
        if classes is not None:
            mask &= np.isin(self.class_ids, np.asarray(list(classes), np.int64))
        return self[mask]

    # ------------------------------------------------------------------ geometry
    def corners(self) -> np.ndarray:
        """Corner points ``[N, 4, 2]`` (for xyxy: the 4 rectangle corners, clockwise from top-left)."""
        if not self.rotated:
            x1, y1, x2, y2 = self.boxes.T
            return np.stack([np.stack([x1, y1], -1), np.stack([x2, y1], -1), np.stack([x2, y2], -1),
                             np.stack([x1, y2], -1)], axis=1)
        return xywhr_to_corners(self.boxes)

    def xyxy(self) -> np.ndarray:
        """Axis-aligned boxes; for rotated detections the enclosing axis-aligned box of the corners."""
        if not self.rotated:
            return self.boxes.copy()
        c = self.corners()
        return np.concatenate([c.min(axis=1), c.max(axis=1)], axis=1).astype(np.float32)

    def to_dict(self, names: Sequence[str] | dict | None = None) -> dict:
        out: dict = {"box_format": self.box_format.value, "count": len(self)}
        items = []
        for i in range(len(self)):
            cid = int(self.class_ids[i])
            item = {"class_id": cid, "score": float(self.scores[i]), "box": [float(v) for v in self.boxes[i]]}
            if names is not None:
                try:
                    item["class_name"] = names[cid]
                except (KeyError, IndexError):
                    item["class_name"] = str(cid)
            if self.rotated:
                item["corners"] = [[float(x), float(y)] for x, y in xywhr_to_corners(self.boxes[i:i + 1])[0]]
            items.append(item)
        out["detections"] = items
        return out

    # ------------------------------------------------------------------ converters
    @classmethod
    def from_nms_outputs(cls, num: Any, boxes: Any, scores: Any, classes: Any, index: int = 0,
                         rotated: bool | None = None) -> "Detections":
        """From the four EfficientNMS-style outputs (num_detections [B,1], boxes [B,K,4|5], scores [B,K],
        classes [B,K]) of one batch element."""
        num_a = np.asarray(num).reshape(len(np.asarray(num)), -1)
        k = int(num_a[index, 0])
        b = np.asarray(boxes)[index][:k]
        if rotated is not None and b.shape[-1] != (5 if rotated else 4):
            raise InputError(f"expected {'5' if rotated else '4'}-column boxes, got {b.shape[-1]}")
        return cls(b, np.asarray(scores)[index][:k], np.asarray(classes)[index][:k])

    @classmethod
    def from_ultralytics(cls, result: Any) -> "Detections":
        """From one ``ultralytics.engine.results.Results`` (detect or obb), read by attribute, in original-image pixels."""
        obb = getattr(result, "obb", None)
        if obb is not None:
            return cls(obb.xywhr, obb.conf, obb.cls, BoxFormat.XYWHR)
        boxes = getattr(result, "boxes", None)
        if boxes is None:
            raise InputError("ultralytics result has neither .boxes nor .obb")
        return cls(boxes.xyxy, boxes.conf, boxes.cls, BoxFormat.XYXY)


def xywhr_to_corners(boxes: np.ndarray) -> np.ndarray:
    """``[N, 5]`` (cx, cy, w, h, angle rad) -> ``[N, 4, 2]`` corners, in the order ultralytics' ``xywhr2xyxyxyxy`` uses."""
    from trtalign.core.geometry import xywhr_to_corners as corners

    return corners(boxes)
