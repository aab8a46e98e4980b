"""Per-unit INT8 sensitivity: how much does quantizing one quantization unit hurt?

Every score is a *damage*: higher means the unit is more sensitive, whatever the metric.

Metrics (``METRICS``):

- ``map``: task mAP of the model on an evaluation subset (needs a ``map_fn(plan) -> mAP``); damage = mAP lost.
- ``mse`` / ``cosine`` / ``sqnr``: of the raw head tensor ``output0`` against the cached FP32 reference outputs;
  damage = MSE, ``1 - cosine``, or the noise-to-signal power ratio (``10 ** (-SQNR_dB / 10)``; the dB value is in
  ``value``).
- ``scorebox``: score-aware and box-aware: the noise-to-signal ratio of the class scores (``score_nsr``, the score
  rows of ``output0`` only, so pixel-valued boxes cannot drown them) plus the box error relative to box size
  (``box_nsr``: mean squared ``(dx/w, dy/h, dw/w, dh/h)`` over the anchors FP32 is confident about, plus the angle
  error for OBB); both dimensionless, damage = ``score_nsr + box_nsr``, each in ``details`` with its SQNR in dB.
  Whole-tensor ``sqnr`` is box SQNR in disguise (box rows in pixels hold ~all of the energy): a unit that silences
  the class scores looks harmless to it.
- ``det``: detection-aware, computed separately for the class scores and the box regression of ``output0`` on the
  ``hard`` images where the full-INT8 model errs most: ``cls`` = score change weighted by score, ``box`` =
  ``1 - IoU`` of the boxes of anchors that the FP32 model is confident about (plus the angle error for OBB);
  damage = ``cls + box`` (both kept in ``details``).

Modes (``MODES``): ``disable-one`` starts fully INT8 and restores one unit to the float target (damage = error of
full INT8 - error with the unit restored); ``enable-one`` starts float and quantizes one unit (damage = its error).
Each trial plan is run once over the subset; the FP32 reference (and the full-INT8 outputs in disable-one mode) are
computed once and cached in memory per plan hash, so repeated scoring never re-runs them.

``local=True`` (metrics mse / cosine / sqnr) scores every unit from *one* FP32 pass: a probe model exposes each
conv unit's output next to a copy of the conv that reads its Q/DQ'd input (calibrated per-tensor scale, tie groups
honoured) with per-channel fake-quantized weights; Concat units are scored by fake-quantizing their inputs in numpy
with their shared scale. Local scores ignore how errors propagate; they are the cheapest ranking.

Trial plans run through a *runner factory* ``Plan -> Runner``: :class:`QdqPlanModels` (ONNX Runtime on the Q/DQ ONNX
of the plan, cached on disk per plan hash: the ``ort-int8sim`` emulation) or any factory that builds TensorRT
engines for a plan (the runner must output ``output0``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from trtalign.core.errors import ConfigError, InputError, choices_text
from trtalign.core.geometry import axis_iou_paired, xywh_to_xyxy
from trtalign.core.io import atomic_write_json, read_json_file
from trtalign.core.logging import get_logger, progress
from trtalign.tune.fallback import rank_units
from trtalign.export.units import make_plan, plan_key  # noqa: F401 (re-exported)
from trtalign.runtime.plan_runners import GatedQdqModel, QdqPlanModels  # noqa: F401 (re-exported)

log = get_logger(__name__)

METRICS = ("map", "mse", "cosine", "sqnr", "det", "scorebox")
MODES = ("disable-one", "enable-one")
TARGETS = ("fp16", "fp32")
LOCAL_METRICS = ("mse", "cosine", "sqnr")
RAW_OUTPUT = "output0"

PlanRunnerFactory = Callable[[Any], Any]  # Plan -> trtalign.runtime.base.Runner


def check_choice(value: str, valid: Sequence[str], what: str) -> str:
    if value not in valid:
        raise ConfigError(f"invalid {what} {value!r}; valid choices: {choices_text(valid)}")
    return value


# --------------------------------------------------------------------------------------------- output metrics
def run_outputs(runner: Any, inputs: Sequence[np.ndarray], name: str = RAW_OUTPUT) -> list[np.ndarray]:
    """Run an (inactive) runner over the input batches; returns ``name`` for each batch."""
    outs = []
    with runner:
        for x in inputs:
            res = runner.infer({"images": x})
            if name not in res:
                raise InputError(f"{runner.name} does not output {name!r} (outputs: {sorted(res)}); the sensitivity "
                                 f"metrics need the raw head tensor exposed")
            outs.append(np.asarray(res[name], dtype=np.float32).copy())
    return outs


def _power_stats(ref: Sequence[np.ndarray], out: Sequence[np.ndarray]) -> dict:
    sig = noise = 0.0
    count = 0
    cos = []
    for a, b in zip(ref, out):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        d = b64 - a64
        sig += float((a64 * a64).sum())
        noise += float((d * d).sum())
        count += a.size
        for ai, bi in zip(a64.reshape(len(a64), -1), b64.reshape(len(b64), -1)):
            na, nb = np.linalg.norm(ai), np.linalg.norm(bi)
            cos.append(float(ai @ bi / (na * nb)) if na > 0 and nb > 0 else float(na == nb))
    return {"signal": sig, "noise": noise, "count": count, "cosine": float(np.mean(cos)) if cos else 1.0}


def output_error(metric: str, ref: Sequence[np.ndarray], out: Sequence[np.ndarray]) -> tuple[float, float]:
    """(error >= 0, reported value) of ``out`` vs ``ref`` for mse / cosine / sqnr."""
    st = _power_stats(ref, out)
    if metric == "mse":
        v = st["noise"] / max(st["count"], 1)
        return v, v
    if metric == "cosine":
        return 1.0 - st["cosine"], st["cosine"]
    ratio = st["noise"] / st["signal"] if st["signal"] > 0 else 0.0
    db = math.inf if ratio == 0 else -10.0 * math.log10(ratio)
    return ratio, db


def _xywh_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU float64 ``[K]`` of axis-aligned cx, cy, w, h boxes ``[4, K]`` pairwise (column k with column k), with
    :mod:`trtalign.core.geometry`'s rules (a side <= 0 gives area 0; zero intersection or union gives IoU 0)."""
    return axis_iou_paired(xywh_to_xyxy(np.asarray(a).T, np.float64), xywh_to_xyxy(np.asarray(b).T, np.float64))


def det_error(ref: np.ndarray, out: np.ndarray, num_classes: int, rotated: bool, conf: float = 0.25,
              min_boxes: int = 10) -> tuple[float, float]:
    """(class-score error, box error) of one image's ``output0`` ``[4 + C (+1), N]`` against the FP32 reference.

    cls: ``sum_n w_n max_c |s - s_ref| / sum_n w_n`` with ``w_n`` = the anchor's highest score in either model.
    box: mean ``1 - IoU`` over anchors whose FP32 score >= ``conf`` (at least the ``min_boxes`` best), plus for OBB
    the mean angle error in units of pi/2.
    """
    s_ref, s_out = ref[4:4 + num_classes], out[4:4 + num_classes]
    w = np.maximum(s_ref.max(axis=0), s_out.max(axis=0))
    cls = float((w * np.abs(s_out - s_ref).max(axis=0)).sum() / max(float(w.sum()), 1e-12))
    best = s_ref.max(axis=0)
    keep = np.flatnonzero(best >= conf)
    if len(keep) < min_boxes:
        keep = np.argsort(-best, kind="stable")[:min_boxes]
    box = float(np.clip(1.0 - _xywh_iou(ref[:4, keep], out[:4, keep]), 0.0, None).mean()) if len(keep) else 0.0
    if rotated and len(keep):
        d = out[4 + num_classes, keep] - ref[4 + num_classes, keep]
        box += float(np.abs(np.arctan2(np.sin(d), np.cos(d))).mean() / (math.pi / 2))
    return cls, box


def scorebox_error(ref: Sequence[np.ndarray], out: Sequence[np.ndarray], num_classes: int, rotated: bool,
                   conf: float = 0.25, min_boxes: int = 10) -> tuple[float, float]:
    """(score noise-to-signal ratio, box error relative to box size) of ``output0`` images ``[4 + C (+1), N]``.

    score: ``sum (s - s_ref)^2 / sum s_ref^2`` over the class-score rows of every anchor.
    box: mean over the anchors whose FP32 best score >= ``conf`` (at least the ``min_boxes`` best per image) of
    ``((dx / w)^2 + (dy / h)^2 + (dw / w)^2 + (dh / h)^2) / 4`` with the FP32 ``w, h``; for OBB plus the squared
    wrapped angle error in units of pi/2.
    """
    sig = noise = 0.0
    box_terms = []
    for a, b in zip(ref, out):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        sa, sb = a64[4:4 + num_classes], b64[4:4 + num_classes]
        sig += float((sa * sa).sum())
        noise += float(((sb - sa) ** 2).sum())
        best = sa.max(axis=0)
        keep = np.flatnonzero(best >= conf)
        if len(keep) < min_boxes:
            keep = np.argsort(-best, kind="stable")[:min_boxes]
        if not len(keep):
            continue
        w = np.maximum(np.abs(a64[2, keep]), 1e-6)
        h = np.maximum(np.abs(a64[3, keep]), 1e-6)
        d = b64[:4, keep] - a64[:4, keep]
        rel = (d[0] / w) ** 2 + (d[1] / h) ** 2 + (d[2] / w) ** 2 + (d[3] / h) ** 2
        term = rel / 4
        if rotated:
            da = b64[4 + num_classes, keep] - a64[4 + num_classes, keep]
            term = term + (np.arctan2(np.sin(da), np.cos(da)) / (math.pi / 2)) ** 2
        box_terms.append(term)
    score = noise / sig if sig > 0 else 0.0
    box = float(np.concatenate(box_terms).mean()) if box_terms else 0.0
    return score, box


def _db(ratio: float) -> float:
    return math.inf if ratio <= 0 else -10.0 * math.log10(ratio)


def _images_of(batches: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [im for b in batches for im in b]


# --------------------------------------------------------------------------------------------------- results
@dataclass
class UnitSensitivity:
    """One unit's score: ``score`` is the damage (higher = more sensitive); ``value`` the metric of its trial plan."""

    name: str
    kind: str
    role: str
    macs: int
    score: float
    value: float | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "role": self.role, "macs": int(self.macs),
                "score": self.score, "value": self.value, "details": dict(self.details)}


@dataclass
class SensitivityResult:
    """Scores of every unit for one metric and mode, with the references they were measured against."""

    metric: str
    mode: str  # disable-one | enable-one | local
    target: str
    subset: int  # images scored
    backend: str
    units: list = field(default_factory=list)  # [UnitSensitivity] in graph order
    reference: dict = field(default_factory=dict)  # e.g. {"fp32": ..., "int8": ...} values of the metric
    passes: int = 0  # runs over the subset (reference runs included, cache hits excluded)
    seconds: float = 0.0
    notes: list = field(default_factory=list)

    def scores(self) -> dict:
        return {u.name: float(u.score) for u in self.units}

    def ranking(self) -> list:
        """Unit names, most sensitive first (ties by name)."""
        return rank_units(self.scores())

    def macs(self) -> dict:
        return {u.name: int(u.macs) for u in self.units}

    def to_dict(self) -> dict:
        return {"format": "trtalign-sensitivity", "version": 1, "metric": self.metric, "mode": self.mode,
                "target": self.target, "subset": self.subset, "backend": self.backend, "reference": self.reference,
                "passes": self.passes, "seconds": round(self.seconds, 3), "notes": list(self.notes),
                "ranking": self.ranking(), "units": [u.to_dict() for u in self.units]}

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "sensitivity") -> "SensitivityResult":
        if not isinstance(data, Mapping) or data.get("format") != "trtalign-sensitivity":
            raise InputError(f"{source} is not a trtalign sensitivity file (expected \"format\": "
                             f"\"trtalign-sensitivity\", as written by `trtalign sensitivity --json`)")
        units = []
        for u in data.get("units", []):
            score = u.get("score")
            units.append(UnitSensitivity(str(u["name"]), str(u.get("kind", "")), str(u.get("role", "")),
                                         int(u.get("macs", 0)), float("nan") if score is None else float(score),
                                         u.get("value"), dict(u.get("details", {}))))
        return cls(metric=str(data.get("metric", "")), mode=str(data.get("mode", "")),
                   target=str(data.get("target", "")), subset=int(data.get("subset", 0)),
                   backend=str(data.get("backend", "")), units=units, reference=dict(data.get("reference", {})),
                   passes=int(data.get("passes", 0)), seconds=float(data.get("seconds", 0.0)),
                   notes=list(data.get("notes", [])))

    def summary(self, top: int = 10) -> str:
        lines = [f"sensitivity: metric {self.metric}, mode {self.mode}, {len(self.units)} units, {self.subset} "
                 f"images, {self.passes} passes, {self.seconds:.1f} s ({self.backend})"]
        by = {u.name: u for u in self.units}
        for i, name in enumerate(self.ranking()[:top]):
            u = by[name]
            val = "" if u.value is None else f"  value {u.value:.6g}"
            lines.append(f"  {i + 1:3d}. {name:40s} score {u.score:.6g}{val}")
        return "\n".join(lines)


def save_sensitivity(result: SensitivityResult, path: str | os.PathLike) -> Path:
    return atomic_write_json(path, result.to_dict())


def load_sensitivity(path: str | os.PathLike) -> SensitivityResult:
    return SensitivityResult.from_dict(read_json_file(path, "sensitivity file"), source=str(path))


# ------------------------------------------------------------------------------------------------- the scorer
class SensitivityScorer:
    """Scores units by running trial plans. Caches the outputs of every plan it ran (by plan hash).

    Args:
        units: the model's quantization units (``export.units.QuantUnit``).
        runner_for_plan: ``Plan -> Runner`` (ONNX Runtime Q/DQ emulation or TensorRT engines).
        inputs: preprocessed input batches ``[B, 3, H, W]`` of the evaluation subset.
        map_fn: ``Plan -> mAP`` on the subset (metric ``map`` only).
        num_classes, rotated: the layout of ``output0`` (metric ``det``).
        backend: a label for the results (``ort-int8sim``, ``trt-int8``).
    """

    def __init__(self, units: Sequence[Any], runner_for_plan: PlanRunnerFactory | None,
                 inputs: Sequence[np.ndarray] = (), map_fn: Callable[[Any], float] | None = None,
                 num_classes: int | None = None, rotated: bool = False, backend: str = "ort-int8sim"):
        self.units = list(units)
        self.names = [u.name for u in self.units]
        self.runner_for_plan = runner_for_plan
        self.inputs = list(inputs)
        self.map_fn = map_fn
        self.num_classes = num_classes
        self.rotated = rotated
        self.backend = backend
        self._outputs: dict[str, list[np.ndarray]] = {}
        self._maps: dict[str, float] = {}
        self.passes = 0

    def outputs(self, plan: Any) -> list[np.ndarray]:
        key = plan_key(plan.units)
        if key not in self._outputs:
            if self.runner_for_plan is None or not self.inputs:
                raise InputError("output metrics need a runner factory and input images")
            self._outputs[key] = run_outputs(self.runner_for_plan(plan), self.inputs)
            self.passes += 1
        return self._outputs[key]

    def map(self, plan: Any) -> float:
        key = plan_key(plan.units)
        if key not in self._maps:
            if self.map_fn is None:
                raise ConfigError("metric 'map' needs an evaluation subset with ground truth (map_fn)")
            self._maps[key] = float(self.map_fn(plan))
            self.passes += 1
        return self._maps[key]

    def _num_classes(self, out: np.ndarray) -> int:
        if self.num_classes is not None:
            return int(self.num_classes)
        return int(out.shape[1]) - 4 - (1 if self.rotated else 0)

    def _hard_images(self, ref: list[np.ndarray], int8: list[np.ndarray], hard: int) -> list[int]:
        refs, outs = _images_of(ref), _images_of(int8)
        nc = self._num_classes(ref[0])
        errs = [sum(det_error(a, b, nc, self.rotated)) for a, b in zip(refs, outs)]
        order = np.argsort(-np.asarray(errs), kind="stable")
        return sorted(int(i) for i in order[:max(1, min(hard, len(order)))])

    def _error(self, metric: str, plan: Any, ref_plan: Any, hard_idx: list[int] | None) -> tuple[float, float, dict]:
        """(error, reported value, details) of ``plan`` against the FP32 reference plan."""
        if metric == "map":
            ref_map, value = self.map(ref_plan), self.map(plan)
            return ref_map - value, value, {}
        ref, out = self.outputs(ref_plan), self.outputs(plan)
        if metric == "det":
            refs, outs = _images_of(ref), _images_of(out)
            nc = self._num_classes(ref[0])
            pairs = [det_error(refs[i], outs[i], nc, self.rotated) for i in hard_idx]
            cls = float(np.mean([p[0] for p in pairs]))
            box = float(np.mean([p[1] for p in pairs]))
            return cls + box, cls + box, {"cls": cls, "box": box}
        if metric == "scorebox":
            score, box = scorebox_error(_images_of(ref), _images_of(out), self._num_classes(ref[0]), self.rotated)
            return score + box, _db(score + box), {"score_nsr": score, "box_nsr": box, "score_sqnr_db": _db(score),
                                                   "box_sqnr_db": _db(box)}
        err, value = output_error(metric, ref, out)
        return err, value, {}

    def score(self, metric: str = "sqnr", mode: str = "disable-one", target: str = "fp16",
              hard: int = 8) -> SensitivityResult:
        """Score every unit; one trial plan per unit plus the cached references."""
        check_choice(metric, METRICS, "sensitivity metric")
        check_choice(mode, MODES, "sensitivity mode")
        check_choice(target, TARGETS, "fallback target")
        start = time.perf_counter()
        passes0 = self.passes
        ref_plan = make_plan(self.units, self.names, target)
        int8_plan = make_plan(self.units, (), target)
        hard_idx = None
        notes = []
        if metric == "det":
            hard_idx = self._hard_images(self.outputs(ref_plan), self.outputs(int8_plan), hard)
            notes.append(f"det: scored on the {len(hard_idx)} images where full INT8 errs most: {hard_idx}")
        full_err, full_value, full_details = self._error(metric, int8_plan, ref_plan, hard_idx)
        reference = {"int8_error": full_err, "int8_value": full_value, **{f"int8_{k}": v for k, v in
                                                                          full_details.items()}}
        if metric == "map":
            reference["fp32_map"] = self.map(ref_plan)
        results = []
        for u in progress(self.units, total=len(self.units), desc=f"sensitivity ({metric}, {mode})", unit="unit"):
            if mode == "disable-one":
                plan = make_plan(self.units, [u.name], target)
            else:
                plan = make_plan(self.units, [n for n in self.names if n != u.name], target)
            err, value, details = self._error(metric, plan, ref_plan, hard_idx)
            score = full_err - err if mode == "disable-one" else err
            results.append(UnitSensitivity(u.name, u.kind, u.role, int(u.macs), float(score),
                                           None if value is None else float(value), details))
        n = len(_images_of(self.inputs)) if self.inputs else 0
        return SensitivityResult(metric=metric, mode=mode, target=target, subset=n, backend=self.backend,
                                 units=results, reference=reference, passes=self.passes - passes0,
                                 seconds=time.perf_counter() - start, notes=notes)


# ------------------------------------------------------------------------------------------ local, one FP32 pass
def _tied_amax(analysis: Any, ranges: Any, tensor: str) -> float:
    from trtalign.export.ranges import MIN_AMAX

    root = analysis.tie_groups.get(tensor)
    members = [m for m, r in analysis.tie_groups.items() if r == root] if root else [tensor]
    values = [ranges.amax(m) for m in members if m in ranges.tensors]
    if not values:
        raise InputError(f"ranges have no amax for tensor {tensor!r}; re-run `trtalign calibrate` on this model")
    return max(max(values), MIN_AMAX)


def fake_quant(x: np.ndarray, amax: float | np.ndarray, axis: int | None = None) -> np.ndarray:
    """Symmetric int8 fake quantization (round half to even, like QuantizeLinear): ``clip(round(x/s)) * s``."""
    scale = np.asarray(amax, dtype=np.float32) / 127.0
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
    scale = np.maximum(scale, np.float32(1e-12))
    return (np.clip(np.round(x / scale), -128, 127) * scale).astype(np.float32)


def build_local_probe(model: Any, analysis: Any, ranges: Any) -> tuple[Any, dict]:
    """FP32 model + for each weighted unit a fake-quantized copy of its op; returns (probe ModelProto, spec).

    spec: unit -> {"ref": tensor, "quant": tensor} (weighted units) or {"inputs": [tensors], "amax": float}
    (concat units). The probe outputs every tensor named in spec.
    """
    import onnx
    from onnx import helper, numpy_helper

    from trtalign.export.units import node_label, weight_axis

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    g = probe.graph
    by_label = {node_label(n, i): n for i, n in enumerate(g.node)}
    inits = {i.name: i for i in g.initializer}
    spec: dict[str, dict] = {}
    outputs: list[str] = []
    new_nodes = []
    for u in analysis.units:
        if u.kind == "concat":
            spec[u.name] = {"inputs": list(u.tensors), "amax": _tied_amax(analysis, ranges, u.tensors[0])}
            outputs.extend(u.tensors)
            continue
        node = by_label[u.nodes[0]]
        tag = u.name.replace("/", "_")
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"{tag}__localq"
        copy.ClearField("output")
        copy.output.append(f"{tag}__localq_out")
        for k, t in enumerate(node.input[:2]):
            if t in u.tensors:  # activation input: per-tensor Q/DQ with the calibrated (tied) scale
                s = numpy_helper.from_array(np.array(_tied_amax(analysis, ranges, t) / 127.0, np.float32),
                                            f"{tag}__s{k}")
                z = numpy_helper.from_array(np.array(0, np.int8), f"{tag}__z{k}")
                g.initializer.extend([s, z])
                new_nodes.append(helper.make_node("QuantizeLinear", [t, s.name, z.name], [f"{tag}__q{k}"]))
                new_nodes.append(helper.make_node("DequantizeLinear", [f"{tag}__q{k}", s.name, z.name],
                                                  [f"{tag}__dq{k}"]))
                copy.input[k] = f"{tag}__dq{k}"
        for w in u.weights:
            if w in inits:
                arr = numpy_helper.to_array(inits[w]).astype(np.float32)
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                axis = weight_axis(node.op_type, trans_b)
                other = tuple(a for a in range(arr.ndim) if a != axis)
                amax = np.abs(arr).max(axis=other) if other else np.abs(arr)
                g.initializer.append(numpy_helper.from_array(fake_quant(arr, amax, axis), f"{tag}__wq"))
                copy.input[list(node.input).index(w)] = f"{tag}__wq"
        new_nodes.append(copy)
        spec[u.name] = {"ref": node.output[0], "quant": copy.output[0]}
        outputs.extend([node.output[0], copy.output[0]])
    g.node.extend(new_nodes)
    existing = {o.name for o in g.output}
    for name in dict.fromkeys(outputs):
        if name not in existing:
            g.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return probe, spec


def local_sensitivity(model: Any, ranges: Any, inputs: Sequence[np.ndarray], metric: str = "sqnr",
                      analysis: Any = None) -> SensitivityResult:
    """Per-unit local error of quantizing each unit alone, from one FP32 pass over ``inputs`` (see module doc)."""
    from trtalign.export.units import analyze_graph, load_model
    from trtalign.runtime.ort_runner import OrtRunner

    check_choice(metric, LOCAL_METRICS, "local sensitivity metric")
    start = time.perf_counter()
    model = load_model(model)
    analysis = analysis or analyze_graph(model)
    probe, spec = build_local_probe(model, analysis, ranges)
    acc = {u: {"signal": 0.0, "noise": 0.0, "count": 0, "cos": []} for u in spec}

    def add(u: str, ref: np.ndarray, q: np.ndarray) -> None:
        a, b = ref.astype(np.float64), q.astype(np.float64)
        d = b - a
        acc[u]["signal"] += float((a * a).sum())
        acc[u]["noise"] += float((d * d).sum())
        acc[u]["count"] += a.size
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        acc[u]["cos"].append(float((a.ravel() @ b.ravel()) / (na * nb)) if na > 0 and nb > 0 else float(na == nb))

    with OrtRunner(probe, name="ort-fp32") as runner:
        for x in progress(inputs, total=len(inputs), desc="local sensitivity", unit="batch"):
            res = runner.infer({"images": x})
            for u, sp in spec.items():
                if "ref" in sp:
                    add(u, res[sp["ref"]], res[sp["quant"]])
                else:
                    for t in sp["inputs"]:
                        add(u, res[t], fake_quant(res[t], sp["amax"]))
    results = []
    for u in analysis.units:
        a = acc[u.name]
        if metric == "mse":
            err = value = a["noise"] / max(a["count"], 1)
        elif metric == "cosine":
            value = float(np.mean(a["cos"])) if a["cos"] else 1.0
            err = 1.0 - value
        else:
            err = a["noise"] / a["signal"] if a["signal"] > 0 else 0.0
            value = math.inf if err == 0 else -10.0 * math.log10(err)
        results.append(UnitSensitivity(u.name, u.kind, u.role, int(u.macs), float(err), float(value)))
    n = len(_images_of(inputs))
    return SensitivityResult(metric=metric, mode="local", target="fp32", subset=n, backend="ort-fp32 (local probe)",
                             units=results, passes=1, seconds=time.perf_counter() - start,
                             notes=["local: each unit's own output error with its input and weights fake-quantized, "
                                    "from one FP32 pass; residual shortcut Q/DQ and error propagation not modelled"])


__all__ = ["METRICS", "MODES", "LOCAL_METRICS", "TARGETS", "SensitivityScorer", "SensitivityResult",
           "UnitSensitivity", "QdqPlanModels", "GatedQdqModel", "local_sensitivity", "load_sensitivity", "save_sensitivity",
           "make_plan", "plan_key", "det_error", "output_error", "fake_quant", "scorebox_error"]
