"""Torch vs ONNX alignment: run both on the same letterboxed tensors and compare, tensor by tensor and detection by
detection.

* Tensor statistics (``output0``, ``boxes``, ``scores``): max / mean absolute and relative difference and cosine
  similarity; a tensor passes when ``max_abs / scale <= raw_rel`` where ``scale`` is the largest ``|reference|``.
* Detections, two ways:
  - **aligned NMS**: the same NMS op (the ONNX file's own NMS node, run in ONNX Runtime) applied to the torch model's
    decoded boxes/scores, compared with the ONNX model's NMS outputs. Differences here are numerical only, and this
    comparison decides pass/fail (>= 99 % of detections matched with IoU >= 0.99 and |score delta| <= 1e-3).
  - **native NMS**: ultralytics' own NMS on the torch output vs the ONNX NMS node. Reported with an explanation of
    every setting that differs (top-k, per-class vs best-class / agnostic, max_det, IoU definition).
  An ONNX file without an NMS node has its raw ``output0`` post-processed like the torch model's, by the step named
  in ``AlignmentResult.postprocess``: ultralytics' NMS, or for an NMS-free one-to-one head ultralytics' top-k.
  Detections are matched within a class, greedily by reference score, at IoU >= 0.5.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from trtalign.core.detections import Detections
from trtalign.core.errors import InputError, ModelError
from trtalign.core.geometry import axis_iou_matrix, rotated_iou_matrix
from trtalign.core.logging import get_logger, progress
from trtalign.core.preprocess import as_hw, letterbox_batch, list_images, read_images

log = get_logger(__name__)

ULTRALYTICS_MAX_NMS = 30000  # candidates ultralytics' non_max_suppression keeps before NMS

#: ``AlignmentResult.postprocess``: what turned the raw heads into detections (with their short tags in runner labels)
POSTPROCESS_NMS_NODE = "the ONNX NMS node"
POSTPROCESS_ULTRALYTICS_NMS = "ultralytics NMS"
POSTPROCESS_TOPK = "one-to-one head, top-k"
_POSTPROCESS_TAGS = {POSTPROCESS_ULTRALYTICS_NMS: "ultralytics-nms", POSTPROCESS_TOPK: "top-k"}


@dataclass(frozen=True)
class Tolerances:
    raw_rel: float = 1e-3  # max |diff| relative to the reference tensor's scale (max |value|)
    match_iou: float = 0.5  # IoU for two detections (same class) to count as the same object
    min_iou: float = 0.99  # a matched detection is "aligned" at this IoU ...
    max_score_delta: float = 1e-3  # ... and this score difference
    min_aligned_fraction: float = 0.99  # share of detections that must be aligned

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------- tensors
@dataclass
class TensorStats:
    name: str
    count: int = 0
    max_abs: float = 0.0
    mean_abs: float = 0.0
    max_rel: float = 0.0
    mean_rel: float = 0.0
    cosine: float = 1.0
    scale: float = 0.0
    normalized_max_abs: float = 0.0
    passed: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class TensorStatsAccumulator:
    """Accumulates reference/test pairs of one tensor over batches."""

    def __init__(self, name: str):
        self.name = name
        self.n = 0
        self.max_abs = 0.0
        self.sum_abs = 0.0
        self.max_rel = 0.0
        self.sum_rel = 0.0
        self.dot = 0.0
        self.ref_sq = 0.0
        self.test_sq = 0.0
        self.scale = 0.0

    def update(self, ref: np.ndarray, test: np.ndarray) -> None:
        ref = np.asarray(ref, dtype=np.float64)
        test = np.asarray(test, dtype=np.float64)
        if ref.shape != test.shape:
            raise ModelError(f"tensor {self.name!r}: reference shape {ref.shape} != test shape {test.shape}")
        diff = np.abs(ref - test)
        rel = diff / np.maximum(np.abs(ref), 1e-6)
        self.n += diff.size
        if diff.size:
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.max_rel = max(self.max_rel, float(rel.max()))
            self.scale = max(self.scale, float(np.abs(ref).max()))
        self.sum_abs += float(diff.sum())
        self.sum_rel += float(rel.sum())
        self.dot += float((ref * test).sum())
        self.ref_sq += float((ref * ref).sum())
        self.test_sq += float((test * test).sum())

    def result(self, tol: Tolerances) -> TensorStats:
        denom = math.sqrt(self.ref_sq * self.test_sq)
        cosine = self.dot / denom if denom > 0 else (1.0 if self.ref_sq == self.test_sq else 0.0)
        normalized = self.max_abs / max(self.scale, 1e-12)
        return TensorStats(self.name, self.n, self.max_abs, self.sum_abs / max(self.n, 1), self.max_rel,
                           self.sum_rel / max(self.n, 1), cosine, self.scale, normalized, normalized <= tol.raw_rel)


# ---------------------------------------------------------------------------------------------------- detections
def iou_matrix(a: Detections, b: Detections) -> np.ndarray:
    """IoU of every detection in ``a`` with every one in ``b`` (exact polygon IoU for rotated boxes; an axis-aligned
    set compared with a rotated one is taken as rotated boxes at angle 0)."""
    if not (a.rotated or b.rotated):
        return axis_iou_matrix(a.boxes, b.boxes)
    return rotated_iou_matrix(_as_xywhr(a), _as_xywhr(b))


def _as_xywhr(d: Detections) -> np.ndarray:
    if d.rotated:
        return d.boxes
    x1, y1, x2, y2 = np.asarray(d.boxes, np.float64).reshape(-1, 4).T
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, np.zeros_like(x1)], axis=1)


def match_detections(ref: Detections, test: Detections, iou_threshold: float = 0.5) -> tuple:
    """Greedy matching within class by reference score: (pairs [(i_ref, j_test, iou)], missing refs, extra tests)."""
    pairs = []
    used = np.zeros(len(test), bool)
    matched_ref = np.zeros(len(ref), bool)
    for cls in np.intersect1d(ref.class_ids, test.class_ids):
        ri = np.nonzero(ref.class_ids == cls)[0]
        ti = np.nonzero(test.class_ids == cls)[0]
        ious = iou_matrix(ref[ri], test[ti])  # IoU only within the class: rotated polygon IoU is costly
        taken = np.zeros(len(ti), bool)
        for a in np.argsort(-ref.scores[ri], kind="stable"):
            cand = np.where(~taken & (ious[a] >= iou_threshold), ious[a], -1.0)
            b = int(np.argmax(cand))
            if cand[b] >= 0:
                taken[b] = True
                used[ti[b]] = True
                matched_ref[ri[a]] = True
                pairs.append((int(ri[a]), int(ti[b]), float(ious[a, b])))
    return pairs, np.nonzero(~matched_ref)[0].tolist(), np.nonzero(~used)[0].tolist()


@dataclass
class DetectionDiff:
    """Detection-level comparison of a reference and a test backend over all images."""

    reference: str
    test: str
    reference_count: int = 0
    test_count: int = 0
    matched: int = 0
    missing: int = 0
    extra: int = 0
    aligned: int = 0  # matched with IoU >= min_iou and |score delta| <= max_score_delta
    aligned_fraction: float = 1.0
    mean_iou: float = 1.0
    min_iou: float = 1.0
    max_score_delta: float = 0.0
    mean_score_delta: float = 0.0
    passed: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def compare_detections(refs: Sequence[Detections], tests: Sequence[Detections], tol: Tolerances = Tolerances(),
                       reference: str = "reference", test: str = "test") -> DetectionDiff:
    if len(refs) != len(tests):
        raise InputError(f"compare_detections: {len(refs)} reference images vs {len(tests)} test images")
    d = DetectionDiff(reference, test)
    ious, deltas = [], []
    for r, t in zip(refs, tests):
        pairs, missing, extra = match_detections(r, t, tol.match_iou)
        d.reference_count += len(r)
        d.test_count += len(t)
        d.matched += len(pairs)
        d.missing += len(missing)
        d.extra += len(extra)
        for i, j, iou in pairs:
            delta = abs(float(r.scores[i]) - float(t.scores[j]))
            ious.append(iou)
            deltas.append(delta)
            if iou >= tol.min_iou and delta <= tol.max_score_delta:
                d.aligned += 1
    total = max(d.reference_count, d.test_count)
    d.aligned_fraction = d.aligned / total if total else 1.0
    if ious:
        d.mean_iou, d.min_iou = float(np.mean(ious)), float(np.min(ious))
        d.max_score_delta, d.mean_score_delta = float(np.max(deltas)), float(np.mean(deltas))
    d.passed = d.aligned_fraction >= tol.min_aligned_fraction
    return d


def explain_nms_differences(op_type: str, attrs: Any, torch_settings: dict) -> list[str]:
    """One line per NMS setting in which ultralytics' NMS (``torch_settings``) differs from the ONNX NMS node."""
    from trtalign.export.graph_nms import NMS_TOPK

    lines = []
    agnostic = bool(attrs.class_agnostic)
    lines.append(f"top-k: {op_type} keeps the best {NMS_TOPK} (box, class) candidates per image before NMS; "
                 f"ultralytics keeps up to {ULTRALYTICS_MAX_NMS} boxes (differs only when more candidates pass the "
                 f"score threshold)")
    lines.append(f"per-class: {op_type} takes every (box, class) score above the threshold as a candidate, so one "
                 "box can be kept for several classes" + (" (class_agnostic only lets NMS compare across classes)"
                                                          if agnostic else "")
                 + "; ultralytics keeps only each box's best class (multi_label=False)")
    if bool(torch_settings.get("agnostic", False)) != agnostic:
        lines.append(f"class-agnostic: ONNX class_agnostic={int(agnostic)}, torch agnostic="
                     f"{bool(torch_settings.get('agnostic'))}")
    if int(torch_settings.get("max_det", attrs.max_output_boxes)) != int(attrs.max_output_boxes):
        lines.append(f"max_det: ONNX max_output_boxes={attrs.max_output_boxes}, torch max_det="
                     f"{torch_settings.get('max_det')}")
    if float(torch_settings.get("conf", attrs.score_threshold)) != float(attrs.score_threshold):
        lines.append(f"score threshold: ONNX {attrs.score_threshold}, torch {torch_settings.get('conf')}")
    if op_type == "EfficientRotatedNMS_TRT":
        lines.append("IoU: the rotated NMS node uses the exact polygon IoU; ultralytics uses probiou")
    return lines


# ---------------------------------------------------------------------------------------------------- result
@dataclass
class AlignmentResult:
    model: str
    onnx: str
    images: int
    imgsz: list
    nms_op: str | None
    postprocess: str = POSTPROCESS_NMS_NODE  # what made the aligned comparison's detections (a POSTPROCESS_* name)
    tensors: list = field(default_factory=list)
    detections_aligned: DetectionDiff | None = None
    detections_native: DetectionDiff | None = None
    explanation: list = field(default_factory=list)
    tolerances: Tolerances = field(default_factory=Tolerances)
    passed: bool = False
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        return {"model": self.model, "onnx": self.onnx, "images": self.images, "imgsz": self.imgsz,
                "nms_op": self.nms_op, "postprocess": self.postprocess,
                "tensors": [t.to_dict() for t in self.tensors],
                "detections_aligned": self.detections_aligned.to_dict() if self.detections_aligned else None,
                "detections_native": self.detections_native.to_dict() if self.detections_native else None,
                "explanation": list(self.explanation), "tolerances": self.tolerances.to_dict(),
                "passed": self.passed, "seconds": self.seconds}

    def summary(self) -> str:
        lines = [f"align {self.model} vs {self.onnx}: {self.images} images at {self.imgsz[0]}x{self.imgsz[1]}"]
        for t in self.tensors:
            lines.append(f"  {t.name:<8} max|d| {t.max_abs:.3g} ({t.normalized_max_abs:.2g} of scale {t.scale:.3g}) "
                         f"mean|d| {t.mean_abs:.3g} max rel {t.max_rel:.3g} cosine {t.cosine:.6f} "
                         f"{'ok' if t.passed else 'FAIL'}")
        aligned = "aligned NMS" if self.nms_op else f"{self.postprocess} on both"
        for label, d in ((aligned, self.detections_aligned), ("native NMS", self.detections_native)):
            if d is None:
                continue
            lines.append(f"  detections ({label}, {d.reference} vs {d.test}): {d.reference_count} vs {d.test_count}, "
                         f"matched {d.matched}, missing {d.missing}, extra {d.extra}, aligned "
                         f"{100 * d.aligned_fraction:.1f}% (min IoU {d.min_iou:.4f}, max score delta "
                         f"{d.max_score_delta:.2g})" + ("" if label == "native NMS" else
                                                         f" {'ok' if d.passed else 'FAIL'}"))
        lines.extend(f"  note: {e}" for e in self.explanation)
        lines.append(f"  result: {'PASS' if self.passed else 'FAIL'} ({self.seconds:.1f} s)")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- driver
def _onnx_input_shape(model: Any) -> list:
    init = {t.name for t in model.graph.initializer}
    inp = [i for i in model.graph.input if i.name not in init][0]
    return [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]


def align(model_path: str | os.PathLike, onnx_path: str | os.PathLike | bytes, images: str | os.PathLike,
          imgsz: int | Sequence[int] | None = None, max_images: int | None = None,
          tolerances: Tolerances | None = None) -> AlignmentResult:
    """Run the torch model and the ONNX model on the same letterboxed images and compare them."""
    from trtalign.export.graph_nms import (BOXES, RAW_OUTPUT, SCORES, decode_raw_output, expose_outputs,
                                           make_nms_only_model, read_nms)
    from trtalign.export.metadata import read_metadata
    from trtalign.runtime.ort_runner import OrtRunner, load_model_proto
    from trtalign.runtime.postprocess import nms_outputs_to_detections
    from trtalign.runtime.torch_runner import TorchRunner, torch_options_for

    start = time.perf_counter()
    tol = tolerances or Tolerances()
    paths = list_images(images, max_images)
    proto = load_model_proto(onnx_path)
    meta = read_metadata(proto) or {}
    in_shape = _onnx_input_shape(proto)
    if len(in_shape) != 4:
        raise ModelError(f"ONNX input must be [B, 3, H, W], got {in_shape}")
    file_hw = tuple(in_shape[2:])
    if imgsz is None:
        imgsz = meta.get("imgsz") or (file_hw if None not in file_hw else None)
        if imgsz is None:
            raise InputError("the ONNX file has a dynamic input size and no trtalign metadata; pass --imgsz")
    hw = as_hw(imgsz)
    if None not in file_hw and tuple(file_hw) != hw:
        raise InputError(f"--imgsz {hw[0]}x{hw[1]} does not match the ONNX input {file_hw[0]}x{file_hw[1]}")
    torch_runner = TorchRunner(model_path, hw, **torch_options_for(meta))
    layout = torch_runner.adapter.layout
    if meta.get("layout") and int(meta["layout"].get("num_classes", layout.num_classes)) != layout.num_classes:
        raise ModelError(f"the ONNX file was exported for {meta['layout']['num_classes']} classes, the torch model "
                         f"has {layout.num_classes}")
    nms = read_nms(proto)
    nms_op, attrs = (nms if nms else (None, None))
    box_coding = int(attrs.box_coding) if attrs is not None else int((meta.get("nms") or {}).get("box_coding", 0))
    ort_runner = OrtRunner(expose_outputs(proto, [RAW_OUTPUT, BOXES, SCORES]), name="ort-fp32")
    nms_runner = OrtRunner(make_nms_only_model(nms_op, attrs, layout.num_classes), name="ort-nms") if nms else None
    batch = in_shape[0] if isinstance(in_shape[0], int) and in_shape[0] > 0 else 1
    torch_settings = ({"conf": attrs.score_threshold, "iou": attrs.iou_threshold, "max_det": attrs.max_output_boxes,
                       "agnostic": bool(attrs.class_agnostic)} if attrs is not None else
                      {"conf": 0.25, "iou": 0.7, "max_det": 300, "agnostic": False})
    accs = {name: TensorStatsAccumulator(name) for name in (RAW_OUTPUT, BOXES, SCORES)}
    ref_aligned, ref_native, test_dets = [], [], []
    loaded = read_images(paths)
    runners = [r for r in (torch_runner, ort_runner, nms_runner) if r is not None]
    for r in runners:
        r.activate()
    try:
        for first in progress(range(0, len(loaded), batch), total=math.ceil(len(loaded) / batch), desc="align"):
            chunk = [im for _, im in loaded[first:first + batch]]
            real = len(chunk)
            chunk = chunk + [chunk[-1]] * (batch - real)  # a static batch is filled with copies of the last image
            x, metas = letterbox_batch(chunk, hw)
            t_out = torch_runner.infer({"images": x})[RAW_OUTPUT]
            o_out = ort_runner.infer({ort_runner.input_metadata()[0].name: x})
            t_boxes, t_scores = decode_raw_output(t_out, layout.num_classes, layout.angle, box_coding)
            for name, ref in ((RAW_OUTPUT, t_out), (BOXES, t_boxes), (SCORES, t_scores)):
                if name in o_out:
                    accs[name].update(ref[:real], o_out[name][:real])
            if nms is not None:
                test_dets += nms_outputs_to_detections(o_out, metas[:real])
                aligned = nms_runner.infer({BOXES: t_boxes, SCORES: t_scores})
                ref_aligned += nms_outputs_to_detections(aligned, metas[:real])
            else:
                test_dets += torch_runner.postprocess(o_out[RAW_OUTPUT][:real], metas[:real], **torch_settings) \
                    if RAW_OUTPUT in o_out else []
            ref_native += torch_runner.postprocess(t_out[:real], metas[:real], **torch_settings)
    finally:
        for r in runners:
            r.deactivate()
    tensors = [accs[n].result(tol) for n in (RAW_OUTPUT, BOXES, SCORES) if accs[n].n]
    # without an NMS node both sides went through torch_runner.postprocess: top-k for a one-to-one head, else NMS
    postprocess = (POSTPROCESS_NMS_NODE if nms is not None else POSTPROCESS_TOPK
                   if getattr(torch_runner.adapter, "end2end", False) else POSTPROCESS_ULTRALYTICS_NMS)
    result = AlignmentResult(model=str(model_path), onnx=str(onnx_path) if not isinstance(onnx_path, bytes)
                             else "<bytes>", images=len(loaded), imgsz=list(hw), nms_op=nms_op,
                             postprocess=postprocess, tensors=tensors, tolerances=tol)
    if nms is not None:
        result.detections_aligned = compare_detections(ref_aligned, test_dets, tol, "torch+onnx-nms", "ort-fp32")
        result.detections_native = compare_detections(ref_native, test_dets, tol, "torch", "ort-fp32")
        result.detections_native.passed = True  # informational: NMS semantics differ, see explanation
        result.explanation = explain_nms_differences(nms_op, attrs, torch_settings)
    elif test_dets:
        tag = _POSTPROCESS_TAGS[postprocess]
        result.detections_aligned = compare_detections(ref_native, test_dets, tol, "torch", f"ort-fp32+{tag}")
    if not tensors:
        raise ModelError("the ONNX model exposes none of output0, boxes, scores: nothing to compare")
    result.passed = all(t.passed for t in tensors) and (result.detections_aligned is None
                                                        or result.detections_aligned.passed)
    result.seconds = time.perf_counter() - start
    return result
