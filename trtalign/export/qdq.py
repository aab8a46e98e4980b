"""Insert TensorRT-style QuantizeLinear / DequantizeLinear pairs into an FP32 ONNX, driven by a plan of units.

Choice of tool: written on onnx-graphsurgeon, not on nvidia-modelopt's ONNX quantizer. The wheel metadata of
nvidia-modelopt 0.47.0 (checked with ``pip download --no-deps``; not installed) makes its ``[onnx]`` extra require, on
x86-64 Linux with Python > 3.10, ``onnxruntime-gpu ~= 1.24.2`` (it would replace the CPU onnxruntime this project runs
on), ``cupy-cuda12x``, ``onnx ~= 1.21.0`` (we run 1.23) and torch >= 2.8 -- see also /work/shared/ENVIRONMENT.md; so
it cannot be a dependency of
a tool that must run on CPU-only machines and on Jetson. Its placement is also driven by op types and node-name
excludes, not by our named units with tied Concat groups, and the sensitivity analysis needs to toggle exactly those
units. Everything here is a few graph rewrites whose output is a pure function of (model, plan, ranges).

Placement (``mode="trt"``, see docs/ARCHITECTURE.md and ../shared/TENSORRT.md):

- INT8 ``conv`` unit: Q/DQ on the activation input (per-tensor, scale = amax / 127, zero point 0) and on the weight
  (per-channel max-abs, ``axis`` 0 for Conv and Gemm with transB, 1 for ConvTranspose / MatMul). Nothing on outputs.
  Its residual Adds get a Q/DQ on the shortcut input only (TensorRT fuses the Add into the conv).
- INT8 ``concat`` unit: Q/DQ on every Concat input, one scale for all of them.
- Scales are tied across Concat inputs/outputs and through MaxPool / Resize (amax = max of the group), and a
  MaxPool / Resize reading a quantized tensor reads its DQ, so TensorRT never has to re-quantize.
- The decode region (DFL, box / score decode, Sigmoid, final Concat, NMS) is never touched.

``mode="naive"`` ignores the plan: Q/DQ on every weighted-op activation input (head and DFL included) and on every
Concat input including the head's final Concat, one scale per Concat group -- boxes in pixels and scores in [0, 1] then
share a scale and the scores collapse. It exists to show that failure.

Names are deterministic (``<tensor>_QuantizeLinear``, ``<tensor>_scale``, ...) and nothing depends on dict or set
iteration order, so the same (model, plan, ranges) gives a byte-identical ONNX.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trtalign.core.errors import ConfigError, ModelError, choices_text
from trtalign.core.io import atomic_write_bytes, sha256_bytes
from trtalign.export.ranges import MIN_AMAX, Ranges, check_ranges
from trtalign.export.units import (WEIGHTED_OPS, GraphAnalysis, Plan, analyze_graph, export_like,
                                   fold_constant_identities, int8_mac_fraction, load_model, node_label, validate_plan,
                                   weight_axis)

MODES = ("trt", "naive")
METADATA_KEY = "trtalign_quantization"


@dataclass
class QdqResult:
    """What :func:`insert_qdq` did."""

    mode: str
    activation_qdq: int
    weight_qdq: int
    int8_units: list[str]
    int8_mac_fraction: float
    plan: Plan | None = None
    sha256: str = ""
    notes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "activation_qdq": self.activation_qdq, "weight_qdq": self.weight_qdq,
                "int8_units": list(self.int8_units), "int8_mac_fraction": self.int8_mac_fraction,
                "sha256": self.sha256, "plan": self.plan.to_dict() if self.plan else None}


def required_tensors(analysis: GraphAnalysis, plan: Plan | None, mode: str = "trt") -> list[str]:
    """Activation tensors that need a range for this plan / mode (tie-group members included)."""
    sites, _ = _placement(analysis, plan, mode, model=None)
    out: list[str] = []
    members = analysis.tie_members()
    for t in sites:
        root = analysis.tie_groups.get(t)
        out.extend(members[root] if root else [t])
    return list(dict.fromkeys(out))


def _placement(analysis: GraphAnalysis, plan: Plan | None, mode: str, model) -> tuple[list[str], dict]:
    """(activation tensors to quantize in graph order, {tensor: set of (node label, input index) to rewire})."""
    sites: dict[str, set[tuple[str, int]]] = {}

    def add(t: str, node: str, idx: int) -> None:
        sites.setdefault(t, set()).add((node, idx))

    if mode == "trt":
        for u in analysis.units:
            if plan.units[u.name] != "int8":
                continue
            for node in u.nodes:
                for t in u.tensors:
                    add(t, node, -1)  # -1: every input slot of that node reading t
            for add_node, shortcut in u.residuals:
                add(shortcut, add_node, -1)
    return sorted(sites, key=lambda t: (analysis.qdq_candidates.index(t) if t in analysis.qdq_candidates
                                        else len(analysis.qdq_candidates), t)), sites


def insert_qdq(model, ranges: Ranges, plan: Plan | None = None, mode: str = "trt") -> tuple[object, QdqResult]:
    """Insert TensorRT-style Q/DQ pairs into an FP32 ONNX as ``plan`` says (see the module doc for the placement).

    Args:
        model: path or ``onnx.ModelProto`` of the FP32 ONNX (opset >= 13).
        ranges: calibrated :class:`trtalign.export.ranges.Ranges` of that model.
        plan: unit -> ``int8`` | ``fp16`` | ``fp32``; None = every unit INT8. The INT8 plan users mean is
            :func:`trtalign.export.units.default_plan` (the head's output convs out of INT8), which
            :class:`trtalign.export.loaders.QdqOnnxFromPlan` applies when given no plan.
        mode: ``trt`` (the plan) or ``naive`` (every weighted-op and Concat input, head included; ignores the plan).

    Returns:
        ``(onnx.ModelProto, QdqResult)``; the same inputs give a byte-identical model.

    Raises:
        ConfigError (unknown mode, a plan that does not match the model's units), InputError (the ranges miss a tensor
        the plan needs, e.g. ranges of another model), ModelError (opset < 13, or the result fails onnx.checker).

    Example::

        model, result = insert_qdq("model.onnx", load_ranges("ranges.json"), default_plan(list_units("model.onnx")))
        result.int8_mac_fraction
    """
    import onnx
    import onnx_graphsurgeon as gs

    if mode not in MODES:
        raise ConfigError(f"invalid Q/DQ mode {mode!r}; valid choices: {choices_text(MODES)}")
    model = load_model(model)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        raise ModelError(f"Q/DQ with per-channel weights needs opset >= 13, the model has opset {opset}; "
                         f"re-export with --opset 17")
    src_sha = sha256_bytes(model.SerializeToString())
    analysis = analyze_graph(model)
    if mode == "trt":
        if plan is None:
            plan = Plan(units={u.name: "int8" for u in analysis.units})
        validate_plan(plan, analysis.units)
    graph = gs.import_onnx(fold_constant_identities(model))
    nodes = list(graph.nodes)
    labels = [node_label(n, i) for i, n in enumerate(nodes)]
    by_label = dict(zip(labels, nodes))
    tensors = graph.tensors()
    decode = analysis.decode_nodes

    # --- which activation tensors get a Q/DQ, and which (node, input) slots read it
    act_sites: dict[str, list[tuple[str, int]]] = {}
    weight_nodes: list[str] = []
    if mode == "trt":
        order, sites = _placement(analysis, plan, mode, model)
        for t in order:
            act_sites[t] = sorted(sites[t])
        for u in analysis.units:
            if plan.units[u.name] == "int8" and u.kind == "conv" and u.weights:
                weight_nodes.extend(u.nodes)
    else:  # naive: every weighted-op input and every Concat input, head and decode included
        candidates = set(analysis.qdq_candidates)
        groups: dict[str, str] = {}
        for lab, n in zip(labels, nodes):
            if n.op in WEIGHTED_OPS:
                for k, t in enumerate(n.inputs[:2]):
                    if isinstance(t, gs.Variable):
                        act_sites.setdefault(t.name, []).append((lab, k))
                if len(n.inputs) > 1 and isinstance(n.inputs[1], gs.Constant):
                    weight_nodes.append(lab)
            elif n.op == "Concat":  # float activations only: never a Concat of shape values (unsimplified graphs)
                ins = [t.name for t in n.inputs if isinstance(t, gs.Variable) and t.name in candidates]
                for k, t in enumerate(n.inputs):
                    if isinstance(t, gs.Variable) and t.name in candidates:
                        act_sites.setdefault(t.name, []).append((lab, k))
                roots = {groups.get(t, t) for t in ins}
                root = min(roots) if roots else None
                for t in list(groups) + ins:  # merge every group touching this Concat into one
                    if t in ins or groups.get(t) in roots:
                        groups[t] = root
        naive_groups = groups

    # --- amax per tensor, tied over groups
    def group_amax(t: str) -> float:
        if mode == "naive":
            root = naive_groups.get(t)
            members = [m for m, r in naive_groups.items() if r == root] if root else [t]
        else:
            root = analysis.tie_groups.get(t)
            members = [m for m, r in analysis.tie_groups.items() if r == root] if root else [t]
        return max(max(ranges.amax(m) for m in members if m in ranges.tensors), MIN_AMAX)

    needed = sorted(act_sites)
    if mode == "trt":
        needed = required_tensors(analysis, plan, mode)
    else:
        needed = sorted({m for t in act_sites for m in ([t] + [k for k, r in naive_groups.items()
                                                               if r == naive_groups.get(t)])})
    check_ranges(ranges, needed, model_sha256="", what="this model's Q/DQ sites")

    def make_qdq(src, name: str, scale: np.ndarray, zp: np.ndarray, axis: int | None):
        attrs = {"axis": axis} if axis is not None else {}
        s = gs.Constant(f"{name}_scale", scale.astype(np.float32))
        z = gs.Constant(f"{name}_zero_point", zp.astype(np.int8))
        q_out = gs.Variable(f"{name}_quantized", dtype=np.int8, shape=src.shape)
        dq_out = gs.Variable(f"{name}_dequantized", dtype=np.float32, shape=src.shape)
        graph.nodes.append(gs.Node("QuantizeLinear", f"{name}_QuantizeLinear", attrs, [src, s, z], [q_out]))
        graph.nodes.append(gs.Node("DequantizeLinear", f"{name}_DequantizeLinear", attrs, [q_out, s, z], [dq_out]))
        return dq_out

    n_act = 0
    for t in act_sites:
        src = tensors[t]
        scale = np.array(group_amax(t) / 127.0, dtype=np.float32)
        dq = make_qdq(src, t, scale, np.array(0, dtype=np.int8), None)
        n_act += 1
        targets = set(act_sites[t])
        if mode == "trt":  # MaxPool / Resize outside the decode region read the DQ too (DQ moves forward)
            for lab, n in zip(labels, nodes):
                if n.op in ("MaxPool", "Resize") and lab not in decode and n.inputs and n.inputs[0] is src:
                    targets.add((lab, 0))
        for lab, idx in sorted(targets):
            node = by_label[lab]
            for k, inp in enumerate(node.inputs):
                if inp is src and (idx == -1 or idx == k):
                    node.inputs[k] = dq

    n_w = 0
    for lab in dict.fromkeys(weight_nodes):
        node = by_label[lab]
        w = node.inputs[1]
        if not isinstance(w, gs.Constant):
            continue
        axis = weight_axis(node.op, int(node.attrs.get("transB", 0)))
        values = np.asarray(w.values, dtype=np.float32)
        other = tuple(a for a in range(values.ndim) if a != axis)
        amax = np.maximum(np.abs(values).max(axis=other), MIN_AMAX)
        name = f"{w.name}__{lab.strip('/').replace('/', '.')}" if sum(
            1 for n in nodes if len(n.inputs) > 1 and n.inputs[1] is w) > 1 else w.name
        node.inputs[1] = make_qdq(w, name, (amax / 127.0).astype(np.float32), np.zeros(amax.shape, np.int8), axis)
        n_w += 1

    graph.cleanup().toposort()
    out = export_like(graph, model, drop_metadata=(METADATA_KEY,))
    int8_units = [u.name for u in analysis.units if plan is not None and plan.units[u.name] == "int8"] \
        if mode == "trt" else []
    frac = int8_mac_fraction(analysis.units, plan) if mode == "trt" else 1.0
    meta = {"mode": mode, "source_sha256": src_sha, "ranges_method": ranges.method,
            "plan": plan.units if plan is not None and mode == "trt" else None,
            "int8_mac_fraction": round(frac, 6)}
    out.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta, sort_keys=True))
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as exc:  # a bug here, not a user error, but say which model
        raise ModelError(f"the Q/DQ model fails onnx.checker: {exc}") from exc
    data = out.SerializeToString()
    return out, QdqResult(mode=mode, activation_qdq=n_act, weight_qdq=n_w, int8_units=int8_units,
                          int8_mac_fraction=frac, plan=plan if mode == "trt" else None, sha256=sha256_bytes(data))


def save_qdq(model, ranges: Ranges, path: str | os.PathLike, plan: Plan | None = None,
             mode: str = "trt") -> QdqResult:
    """Write the Q/DQ ONNX to ``path`` atomically; returns the result (with the sha256 of the written bytes)."""
    out, result = insert_qdq(model, ranges, plan, mode)
    atomic_write_bytes(Path(path), out.SerializeToString())
    return result
