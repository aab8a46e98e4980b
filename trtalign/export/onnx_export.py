"""Model file -> exported ONNX: raw head (adapter) -> decode -> in-graph NMS, metadata, checks, atomic write.

``export_model_proto`` builds the ModelProto in memory (for calibration and other in-process users);
``export_onnx`` also writes it atomically and returns an :class:`ExportResult`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from trtalign.core.errors import InputError, ModelError
from trtalign.core.io import atomic_write_bytes, sha256_bytes
from trtalign.core.logging import get_logger
from trtalign.export.adapters import ModelAdapter, load_adapter
from trtalign.export.graph_nms import (NMS_OP_TYPES, NMS_TOPK, TOPK_SELECT, NmsAttributes, append_decode_and_nms,
                                       nms_op_for, set_nms_domain)
from trtalign.export.metadata import write_metadata

log = get_logger(__name__)

MIN_OPSET = 13
MAX_OPSET = 20
DEFAULT_OPSET = 17


@dataclass
class ExportResult:
    """What ``export_onnx`` produced."""

    path: str
    task: str
    family: str
    names: list
    imgsz: list
    batch: Any  # int, or "batch" for a dynamic batch
    max_batch: int
    opset: int
    nms_op: str | None
    nms: dict | None
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    sha256: str = ""
    source: dict = field(default_factory=dict)
    checker: str = "passed"
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def summary(self) -> str:
        nms = f"{self.nms_op} (score>={self.nms['score_threshold']}, iou>={self.nms['iou_threshold']}, " \
              f"max {self.nms['max_output_boxes']}, {'agnostic' if self.nms['class_agnostic'] else 'per-class'})" \
            if self.nms_op else "none (outputs boxes, scores)"
        if self.nms_op == TOPK_SELECT:
            nms = f"none: NMS-free top-k of the one-to-one head (score>={self.nms['score_threshold']}, max " \
                  f"{self.nms['max_output_boxes']}, {'agnostic' if self.nms['class_agnostic'] else 'per-class'})"
        batch = f"dynamic (1..{self.max_batch})" if self.batch == "batch" else str(self.batch)
        outs = ", ".join(f"{o['name']}{o['shape']}" for o in self.outputs)
        return (f"exported {self.source.get('file', '?')} ({self.family} {self.task}, {len(self.names)} classes) -> "
                f"{self.path}\n  imgsz {self.imgsz[0]}x{self.imgsz[1]}, batch {batch}, opset {self.opset}, NMS {nms}\n"
                f"  outputs: {outs}\n  onnx.checker: {self.checker}; {self.seconds:.1f} s")


def _tensor_meta(value_info: Any) -> dict:
    import onnx

    tt = value_info.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
    return {"name": value_info.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name, "shape": shape}


def check_model(model: Any) -> None:
    """onnx.checker (full check incl. strict shape inference for the standard ops) or ModelError."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ModelError(f"exported ONNX fails onnx.checker: {str(exc).splitlines()[0]}") from None


def export_model_proto(adapter: ModelAdapter, imgsz: int | Sequence[int] | None = None, batch: int = 1,
                       dynamic_batch: int | None = None, nms: str = "auto", opset: int = DEFAULT_OPSET,
                       attrs: NmsAttributes | None = None) -> tuple[Any, dict]:
    """Build the exported ModelProto in memory; returns (model, metadata dict)."""
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise InputError(f"--opset must be in [{MIN_OPSET}, {MAX_OPSET}], got {opset}")
    if dynamic_batch is not None and dynamic_batch < 1:
        raise InputError(f"--dynamic-batch MAX must be >= 1, got {dynamic_batch}")
    if batch < 1:
        raise InputError(f"--batch must be >= 1, got {batch}")
    attrs = attrs or NmsAttributes()
    info = adapter.info
    h, w = adapter.check_imgsz(imgsz if imgsz is not None else info.default_imgsz)
    op_type = nms_op_for(info.task, nms)
    if op_type is not None and getattr(adapter, "end2end", False):
        op_type = TOPK_SELECT  # a one-to-one head: ultralytics' NMS-free top-k, no NMS node
    layout = adapter.layout
    raw = adapter.to_raw_onnx((h, w), batch=batch, dynamic_batch=dynamic_batch is not None, opset=int(opset))
    model = append_decode_and_nms(raw, layout.num_classes, layout.angle, op_type, attrs)
    node_attrs = None
    if op_type is not None:
        node_attrs = attrs.to_dict()
        if op_type == NMS_OP_TYPES[1]:
            node_attrs["box_coding"] = 1
    meta = {"task": info.task.value, "names": list(info.names), "imgsz": [h, w], "stride": info.stride,
            "nms": None if op_type is None else {"op": op_type, **node_attrs,
                                                 "topk": NMS_TOPK if op_type in NMS_OP_TYPES else None},
            "source": {"file": info.source, "sha256": info.sha256, "family": info.family},
            "layout": adapter.layout_dict(),
            "batch": {"dynamic": dynamic_batch is not None,
                      "max": int(dynamic_batch) if dynamic_batch is not None else int(batch),
                      "size": "batch" if dynamic_batch is not None else int(batch)},
            "opset": int(opset)}
    write_metadata(model, meta)
    return model, meta


def export_onnx(model_path: str | os.PathLike, out: str | os.PathLike, imgsz: int | Sequence[int] | None = None,
                batch: int = 1, dynamic_batch: int | None = None, nms: str = "auto", opset: int = DEFAULT_OPSET,
                score_threshold: float = 0.001, iou_threshold: float = 0.7, max_det: int = 300,
                class_agnostic: bool = False, box_coding: int = 0, layout: Any = None,
                nms_domain: str | None = None, adapter: ModelAdapter | None = None, repo: str | None = None,
                head: str | None = None) -> ExportResult:
    """Export ``model_path`` to ``out`` (atomic write; nothing is written on error).

    ``imgsz``: None takes the size the model was trained at when the file records it (ultralytics), else 640.
    ``dynamic_batch``: None for a static ``batch``, else the largest batch (the ONNX gets the symbolic dim ``batch``).
    ``nms``: ``auto`` | ``efficient`` | ``rotated`` | ``none``. ``layout``: for plain ONNX input (``ModelLayout``).
    ``nms_domain``: None keeps the checker-valid domain; ``""`` writes a TensorRT-only file (see graph_nms).
    ``repo``: a YOLOv5 clone for YOLOv5 checkpoints. ``head``: ``one2many`` (default; NMS node) or ``one2one``
    (NMS-free top-k selection) for ultralytics models with an end-to-end head (YOLOv10, YOLO26).
    """
    start = time.perf_counter()
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise InputError(f"--out must end in .onnx, got {out.name!r}")
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name ending in .onnx")
    attrs = NmsAttributes(score_threshold=score_threshold, iou_threshold=iou_threshold, max_output_boxes=max_det,
                          class_agnostic=int(bool(class_agnostic)), box_coding=int(box_coding))
    if adapter is None:
        options = {k: v for k, v in (("layout", layout), ("repo", repo), ("head", head)) if v is not None}
        adapter = load_adapter(model_path, **options)
    model, meta = export_model_proto(adapter, imgsz=imgsz, batch=batch, dynamic_batch=dynamic_batch, nms=nms,
                                     opset=opset, attrs=attrs)
    checker = "passed"
    check_model(model)
    if nms_domain is not None and meta["nms"] is not None and meta["nms"]["op"] in NMS_OP_TYPES:
        model = set_nms_domain(model, nms_domain)
        if nms_domain == "":
            checker = "passed before moving the NMS node to the default domain (TensorRT-only file)"
            log.warning("NMS node written in the default domain: the file is for TensorRT's parser only and no "
                        "longer passes onnx.checker or runs in ONNX Runtime")
    data = model.SerializeToString()
    atomic_write_bytes(out, data)
    return ExportResult(path=str(out), task=meta["task"], family=adapter.info.family, names=meta["names"],
                        imgsz=meta["imgsz"], batch=meta["batch"]["size"], max_batch=meta["batch"]["max"],
                        opset=int(opset), nms_op=meta["nms"]["op"] if meta["nms"] else None,
                        nms={k: v for k, v in meta["nms"].items() if k != "op"} if meta["nms"] else None,
                        inputs=[_tensor_meta(v) for v in model.graph.input],
                        outputs=[_tensor_meta(v) for v in model.graph.output], sha256=sha256_bytes(data),
                        source=meta["source"], checker=checker, seconds=time.perf_counter() - start)
