"""The PyTorch reference: the model through its family's own code (ultralytics, or YOLOv5's for YOLOv5 checkpoints;
BatchNorm fused, float32, CPU) and ultralytics' post-processing (its ``non_max_suppression`` and ``scale_boxes``;
multi-label for YOLOv5 as its val.py; ultralytics' top-k for one-to-one heads)."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from trtalign.core.detections import Detections
from trtalign.core.enums import BoxFormat, Task
from trtalign.core.errors import InputError
from trtalign.core.lazy import require
from trtalign.core.preprocess import LetterboxMeta, letterbox_batch
from trtalign.runtime.base import Runner, TensorMeta


def torch_options_for(meta: Mapping | None) -> dict:
    """Adapter options that make the torch model match an export, from its ``metadata_props["trtalign"]``: an
    NMS-free top-k export (``nms.op`` ``TopK``) ran the one-to-one head."""
    from trtalign.export.graph_nms import TOPK_SELECT

    nms = (meta or {}).get("nms") or {}
    return {"head": "one2one"} if nms.get("op") == TOPK_SELECT else {}


class TorchRunner(Runner):
    """``infer({"images": x})`` -> ``{"output0": raw head}``; :meth:`postprocess` / :meth:`predict` -> Detections."""

    name = "torch"

    def __init__(self, model_path: str | os.PathLike, imgsz: int | Sequence[int] | None = None,
                 name: str | None = "torch",
                 device: str = "cpu", adapter: Any = None, **options: Any):
        super().__init__(name)
        from trtalign.export.adapters import load_adapter

        # options: adapter options (``repo`` for a YOLOv5 clone, ``head`` for end-to-end ultralytics models)
        self.adapter = adapter if adapter is not None else load_adapter(model_path, **options)
        if not hasattr(self.adapter, "torch_model"):
            raise InputError(f"{model_path}: the torch runner needs a PyTorch model (.pt/.yaml), "
                             f"got a {self.adapter.family} model")
        self.imgsz = self.adapter.check_imgsz(imgsz if imgsz is not None else self.adapter.info.default_imgsz)
        self.device = device
        self.model: Any = None

    @property
    def info(self) -> Any:
        return self.adapter.info

    @property
    def rotated(self) -> bool:
        return self.adapter.info.task is Task.OBB

    def activate_impl(self) -> None:
        require("torch", purpose="the torch runner")
        self.model = self.adapter.torch_model(fuse=True).to(self.device)

    def deactivate_impl(self) -> None:
        self.model = None

    def input_metadata(self) -> list[TensorMeta]:
        return [TensorMeta("images", "float32", (None, 3, *self.imgsz))]

    def output_metadata(self) -> list[TensorMeta]:
        return [TensorMeta("output0", "float32", (None, self.adapter.layout.channels, None))]

    def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        x = np.asarray(feed_dict["images"], dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"{self.name}: images must be [B, 3, H, W], got {x.shape}")
        with torch.no_grad():
            y = self.model(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        if isinstance(y, (list, tuple)):
            y = y[0]
        return {"output0": y.detach().float().cpu().numpy()}

    # ------------------------------------------------------------------ ultralytics post-processing
    def postprocess(self, output0: np.ndarray, metas: Sequence[LetterboxMeta] | None, conf: float = 0.25,
                    iou: float = 0.7, max_det: int = 300, agnostic: bool = False) -> list[Detections]:
        """ultralytics' NMS (best class per box, torchvision NMS / probiou for OBB) and ``scale_boxes``; for an
        end-to-end (one-to-one) head, ultralytics' NMS-free top-k selection instead of NMS."""
        import torch
        from ultralytics.utils import nms, ops

        if getattr(self.adapter, "end2end", False):
            return self._topk_postprocess(output0, metas, conf, max_det, agnostic)

        # YOLOv5's val.py keeps every (box, class) pair above the threshold (multi_label=True); on output0 (score =
        # objectness x class) that is YOLOv5's own NMS but for its time limit
        multi_label = self.info.family == "yolov5"
        preds = nms.non_max_suppression(torch.from_numpy(np.asarray(output0, dtype=np.float32)), conf, iou,
                                        agnostic=agnostic, max_det=max_det, nc=self.info.num_classes,
                                        rotated=self.rotated, multi_label=multi_label)
        h, w = self.imgsz
        out = []
        for i, pred in enumerate(preds):
            pred = pred.clone()
            if self.rotated:
                rboxes = torch.cat([pred[:, :4], pred[:, -1:]], dim=-1)
                if metas is not None:
                    rboxes[:, :4] = ops.scale_boxes((h, w), rboxes[:, :4], metas[i].orig_shape, xywh=True)
                out.append(Detections(rboxes.numpy(), pred[:, 4].numpy(), pred[:, 5].numpy(), BoxFormat.XYWHR))
            else:
                boxes = pred[:, :4]
                if metas is not None:
                    boxes = ops.scale_boxes((h, w), boxes, metas[i].orig_shape)
                out.append(Detections(boxes.numpy(), pred[:, 4].numpy(), pred[:, 5].numpy(), BoxFormat.XYXY))
        return out

    def _topk_postprocess(self, output0: np.ndarray, metas: Sequence[LetterboxMeta] | None, conf: float,
                          max_det: int, agnostic: bool) -> list[Detections]:
        from trtalign.core.preprocess import scale_boxes
        from trtalign.export.graph_nms import NmsAttributes, decode_raw_output, topk_select

        attrs = NmsAttributes(score_threshold=conf, max_output_boxes=max_det, class_agnostic=int(agnostic))
        boxes, scores = decode_raw_output(output0, self.info.num_classes, angle=False)
        out = []
        for i in range(boxes.shape[0]):
            b, s, c = topk_select(boxes[i], scores[i], attrs)
            if metas is not None:
                b = scale_boxes(b, metas[i], BoxFormat.XYXY)
            out.append(Detections(b, s, c, BoxFormat.XYXY))
        return out

    def predict(self, images: Sequence[np.ndarray], conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                agnostic: bool = False) -> list[Detections]:
        """BGR uint8 images -> Detections in original-image pixels (letterbox, model, ultralytics NMS)."""
        x, metas = letterbox_batch(images, self.imgsz)
        raw = self.infer({"images": x})["output0"]
        return self.postprocess(raw, metas, conf=conf, iou=iou, max_det=max_det, agnostic=agnostic)
