"""Quantization units of an ONNX detector, found from the graph structure, and the plan that says which are INT8.

A *unit* is the smallest thing that is INT8 or not (see docs/ARCHITECTURE.md):

- ``conv``: one weighted op (Conv / ConvTranspose / Gemm / MatMul) with the Q/DQ on its activation input and the
  per-channel Q/DQ on its weight. A residual ``Add`` whose non-shortcut branch ends in this op belongs to it too: when
  the unit is INT8 the Add's shortcut input gets a Q/DQ (TensorRT fuses the Add into the conv).
- ``concat``: a tied group: the Q/DQ on every input of one Concat, all with one shared scale.

Unit names come from the ONNX node names (``/model.2/m.0/cv1/conv/Conv`` -> ``model.2.m.0.cv1.conv``,
``/model.2/Concat`` -> ``model.2.concat``), so they are stable across exports of the same architecture.

The detection head's post-processing is found structurally, never by node-name or op_type substring: walking back
from the graph outputs through weight-free nodes (Reshape, Concat, Sigmoid, Softmax, the box-decode arithmetic, NMS)
gives the *decode region*; the walk passes through the DFL conv (a 1-output-channel conv fed by a Softmax or with
weights ``0..c-1``) and stops at the head's last weighted ops (role ``head_output``). Nothing in the decode region is
a unit, so it never receives a Q/DQ.

Scales are tied (one amax) across the inputs and output of every Concat outside the decode region and through every
MaxPool / Resize, so TensorRT can move Q/DQ through them without re-quantization.

``plan.json``::

    {"format": "trtalign-plan", "version": 1, "model_sha256": "...", "units": {"model.0.conv": "int8", ...}}

Every unit of the model must appear with ``int8``, ``fp16`` or ``fp32``; a plan fully determines the Q/DQ ONNX.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from trtalign.core.errors import ConfigError, InputError, ModelError, choices_text
from trtalign.core.io import atomic_write_json, read_json_file, sha256_bytes

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: ops that move values without changing them; Q/DQ scales are shared through them
SCALE_TRANSPARENT_OPS = ("MaxPool", "Resize")
PRECISIONS = ("int8", "fp16", "fp32")
PLAN_FORMAT = "trtalign-plan"
UNIT_KINDS = ("conv", "concat")
ROLES = ("body", "head_output")


@dataclass(frozen=True)
class QuantUnit:
    """One unit: ``nodes`` it covers, activation ``tensors`` whose Q/DQ it owns, ``weights`` quantized per channel."""

    name: str
    kind: str  # conv | concat
    role: str  # body | head_output
    nodes: tuple[str, ...]
    tensors: tuple[str, ...]
    weights: tuple[str, ...] = ()
    macs: int = 0
    #: residual Add nodes fused with this conv: (add node name, shortcut tensor)
    residuals: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "role": self.role, "nodes": list(self.nodes),
                "tensors": list(self.tensors), "weights": list(self.weights), "macs": int(self.macs),
                "residuals": [list(r) for r in self.residuals]}


@dataclass
class GraphAnalysis:
    """What :func:`analyze_graph` finds: units (in graph order), the decode region and the scale-tie groups."""

    units: list[QuantUnit]
    decode_nodes: set[str]
    dfl_nodes: set[str]
    #: tensor -> representative tensor of its tie group (only tensors in some group)
    tie_groups: dict[str, str]
    #: every tensor that may receive a Q/DQ in any mode (naive included): what calibration must observe
    qdq_candidates: list[str]
    float_tensors: list[str]

    def unit(self, name: str) -> QuantUnit:
        for u in self.units:
            if u.name == name:
                return u
        raise ConfigError(f"unknown unit {name!r}; valid units: {choices_text(u.name for u in self.units[:20])}"
                          + (" ..." if len(self.units) > 20 else ""))

    def tie_members(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for t, root in self.tie_groups.items():
            groups.setdefault(root, []).append(t)
        return {k: sorted(v) for k, v in groups.items()}

    def to_dict(self) -> dict:
        return {"units": [u.to_dict() for u in self.units], "decode_nodes": sorted(self.decode_nodes),
                "dfl_nodes": sorted(self.dfl_nodes), "tie_groups": self.tie_members()}


# ------------------------------------------------------------------------------------------------ graph helpers
def load_model(model: "str | os.PathLike | object"):
    """A path or an ``onnx.ModelProto`` -> ``onnx.ModelProto``; a missing or corrupt file raises InputError."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise InputError(f"ONNX model not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError / ValueError / OSError
        raise InputError(f"cannot read ONNX model {path}: {exc}") from exc


def export_like(graph, model, metadata: bool = True, drop_metadata: Iterable[str] = ()):
    """``gs.export_onnx(graph)`` with ``model``'s IR version and opset imports; with ``metadata``, also its
    ``metadata_props`` (less the keys in ``drop_metadata``). The one way the graph rewrites here write their result."""
    import onnx_graphsurgeon as gs

    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    del out.opset_import[:]
    out.opset_import.extend(model.opset_import)
    if metadata:
        drop = set(drop_metadata)
        del out.metadata_props[:]
        for prop in model.metadata_props:
            if prop.key not in drop:
                out.metadata_props.add().CopyFrom(prop)
    return out


def fold_constant_identities(model):
    """A copy of ``model`` where ``Identity(initializer)`` nodes (torch's export emits them for shared weights and
    biases) are removed and their consumers read the initializer: weights are then recognisable as weights."""
    import onnx

    out = onnx.ModelProto.FromString(model.SerializeToString())
    graph = out.graph
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {}
    for n in list(graph.node):
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs:
            alias[n.output[0]] = n.input[0]
            graph.node.remove(n)
    if alias:
        for n in graph.node:
            for k, t in enumerate(n.input):
                if t in alias:
                    n.input[k] = alias[t]
        keep = [v for v in graph.value_info if v.name not in alias]
        del graph.value_info[:]
        graph.value_info.extend(keep)
    return out


def _constant_names(graph) -> set[str]:
    names = {i.name for i in graph.initializer}
    names |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return names


def _initializer(graph, name: str):
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def node_label(node, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def unit_name_from_node(node_name: str, op_type: str) -> str:
    """``/model.2/m.0/cv1/conv/Conv`` -> ``model.2.m.0.cv1.conv``; ``/model.2/Concat`` -> ``model.2.concat``."""
    parts = [p for p in node_name.strip("/").split("/") if p]
    if parts and re.fullmatch(rf"{re.escape(op_type)}(_\d+)?", parts[-1]):
        suffix = parts[-1][len(op_type):]
        parts = parts[:-1]
        if op_type == "Concat" or suffix:
            parts.append(op_type.lower() + suffix)
    name = ".".join(parts) or op_type.lower()
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


def _shapes(model) -> dict[str, list]:
    import onnx

    # shape inference stops at ops it has no schema for (the NMS plugin node): infer on a copy without them
    copy = onnx.ModelProto.FromString(model.SerializeToString())
    custom = [n for n in copy.graph.node if not onnx.defs.has(n.op_type, n.domain or "")]
    if custom:
        dropped = {o for n in custom for o in n.output}
        for n in custom:
            copy.graph.node.remove(n)
        keep = [o for o in copy.graph.output if o.name not in dropped]
        del copy.graph.output[:]
        copy.graph.output.extend(keep)
    for n in [n for n in copy.graph.node if n.op_type == "Constant"]:  # Slice/Reshape sizes must be initializers
        value = next((a.t for a in n.attribute if a.name == "value"), None)
        if value is not None:
            init = onnx.TensorProto()
            init.CopyFrom(value)
            init.name = n.output[0]
            copy.graph.initializer.append(init)
            copy.graph.node.remove(n)
    del copy.graph.value_info[:]  # stale or symbolic value_info would stop inference from filling in sizes
    try:
        inferred = onnx.shape_inference.infer_shapes(copy, data_prop=True)
    except Exception:  # an invalid graph: shapes stay unknown (MACs 0), placement does not need them
        inferred = copy
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        out[vi.name] = dims
    wanted = [n.output[0] for n in copy.graph.node if n.op_type in WEIGHTED_OPS]
    if any(not out.get(t) or None in out[t][1:] for t in wanted):
        out.update(_shapes_by_running(copy, wanted))
    return out, inferred


def _shapes_by_running(model, names: list[str]) -> dict[str, list]:
    """Shapes that static inference could not resolve (sizes computed from Shape ops), from one ONNX Runtime run
    on zeros. Needs a static input size; returns {} when the model cannot run here."""
    import onnx

    dims = [[d.dim_value if d.HasField("dim_value") else 1 for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input]
    try:
        import onnxruntime as ort

        probe = onnx.ModelProto.FromString(model.SerializeToString())
        del probe.graph.output[:]
        probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        feed = {i.name: np.zeros(d, dtype=np.float32) for i, d in zip(model.graph.input, dims)}
        return {n: list(v.shape) for n, v in zip(names, sess.run(names, feed))}
    except Exception:  # noqa: BLE001 - MACs are informative; a model ORT cannot run keeps them at 0
        return {}


def _float_tensors(inferred) -> list[str]:
    import onnx

    names = []
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            names.append(vi.name)
    init = {i.name for i in inferred.graph.initializer}
    return [n for n in dict.fromkeys(names) if n not in init]


def _prod(dims) -> int:
    out = 1
    for d in dims:
        out *= int(d)
    return out


def _macs(node, shapes, weight) -> int:
    """Multiply-accumulates per image (batch dimension ignored). 0 when shapes are unknown."""
    out_shape = shapes.get(node.output[0])
    if not out_shape or any(d is None for d in out_shape[1:]) or weight is None:
        return 0
    if node.op_type == "Conv":
        return _prod(out_shape[1:]) * _prod(weight.shape[1:])
    if node.op_type == "ConvTranspose":
        in_shape = shapes.get(node.input[0])
        if not in_shape or any(d is None for d in in_shape[1:]):
            return 0
        return _prod(in_shape[1:]) * _prod(weight.shape[1:])
    # Gemm / MatMul: output elements * K
    k = weight.shape[0] if node.op_type == "MatMul" else weight.shape[1 if _attr(node, "transB", 0) else 0]
    return _prod(out_shape[1:]) * int(k)


def _attr(node, name: str, default):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def weight_axis(op_type: str, trans_b: int = 0) -> int:
    """Per-channel axis of the weight of a weighted op (its output-channel axis)."""
    if op_type == "Conv":
        return 0
    if op_type == "ConvTranspose":
        return 1
    if op_type == "Gemm":
        return 0 if trans_b else 1
    return 1  # MatMul [K, N]


# ------------------------------------------------------------------------------------------------------ analysis
def _shape_tensors(inferred, nodes, inputs) -> set[str]:
    """Tensors that are never quantization sites: typed non-float by shape inference, and every tensor computed
    without a data path from the graph inputs other than through Shape / Size (the sizes and scales an unsimplified
    export computes for Resize / Reshape, even after a Cast to float)."""
    import onnx

    out = {vi.name for vi in list(inferred.graph.value_info) + list(inferred.graph.output)
           if vi.type.tensor_type.elem_type not in (0, onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                                                     onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)}
    data = set(inputs)
    for n in nodes:  # graph order is topological
        if n.op_type not in ("Shape", "Size") and any(t in data for t in n.input if t):
            data.update(o for o in n.output if o)
        else:
            out.update(o for o in n.output if o)
    return out


def analyze_graph(model) -> GraphAnalysis:
    """Find units, the decode region, DFL and scale-tie groups of an ONNX detector (path or ModelProto)."""
    model = fold_constant_identities(load_model(model))
    graph = model.graph
    nodes = list(graph.node)
    labels = [node_label(n, i) for i, n in enumerate(nodes)]
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            if t:
                consumers.setdefault(t, []).append(i)
    constants = _constant_names(graph)
    shapes, inferred = _shapes(model)
    # shape tensors (an unsimplified export's Shape -> Gather/Slice -> Concat -> Resize sizes / scales) are never
    # quantization sites: neither Concat units nor scale ties
    initializers = {t.name for t in graph.initializer}
    integers = _shape_tensors(inferred, nodes, [i.name for i in graph.input if i.name not in initializers])

    def is_activation(t: str) -> bool:
        return bool(t) and t not in constants and t not in integers

    def is_dfl(i: int) -> bool:
        n = nodes[i]
        if n.op_type != "Conv" or len(n.input) < 2:
            return False
        w = _initializer(graph, n.input[1])
        if w is None or w.ndim != 4 or w.shape[0] != 1 or w.shape[2:] != (1, 1):
            return False
        if np.array_equal(w.reshape(-1), np.arange(w.shape[1], dtype=w.dtype)):
            return True
        t, hops = n.input[0], 0  # fed by a Softmax through shape-only ops
        while t in producer and hops < 4:
            p = nodes[producer[t]]
            if p.op_type == "Softmax":
                return True
            if p.op_type not in ("Transpose", "Reshape"):
                return False
            t, hops = p.input[0], hops + 1
        return False

    # decode region: walk back from the graph outputs through weight-free nodes (and the DFL conv)
    decode: set[int] = set()
    head_outputs: set[int] = set()
    dfl: set[int] = set()
    stack = [producer[o.name] for o in graph.output if o.name in producer]
    while stack:
        i = stack.pop()
        if i in decode or i in head_outputs:
            continue
        if nodes[i].op_type in WEIGHTED_OPS:
            if is_dfl(i):
                dfl.add(i)
            else:
                head_outputs.add(i)
                continue
        decode.add(i)
        stack.extend(producer[t] for t in nodes[i].input if t in producer and nodes[producer[t]].op_type != "Constant")
    if not head_outputs:
        raise ModelError("could not find the detection head: walking back from the graph outputs reached no "
                         "Conv/Gemm/MatMul; expected a YOLO-style ONNX whose outputs are computed from conv outputs")

    # union-find for scale ties
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        while parent.setdefault(t, t) != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for i, n in enumerate(nodes):
        if i in decode:
            continue
        if n.op_type == "Concat":
            for t in n.input:
                if is_activation(t):
                    union(t, n.output[0])
        elif n.op_type in SCALE_TRANSPARENT_OPS and is_activation(n.input[0]):
            union(n.input[0], n.output[0])
    tie = {t: find(t) for t in list(parent)}
    tie = {t: r for t, r in tie.items() if sum(1 for v in tie.values() if v == r) > 1}

    # residual Adds: shortcut = the input that is an ancestor of the other; partner = first weighted op on the branch
    def ancestors(t: str) -> set[str]:
        seen, todo = set(), [t]
        while todo:
            x = todo.pop()
            if x in seen:
                continue
            seen.add(x)
            if x in producer:
                todo.extend(y for y in nodes[producer[x]].input if y)
        return seen

    residual_of: dict[int, list[tuple[str, str]]] = {}
    for i, n in enumerate(nodes):
        if n.op_type != "Add" or i in decode or len(n.input) != 2:
            continue
        a, b = n.input
        if not (is_activation(a) and is_activation(b)):
            continue
        if a in ancestors(b):
            shortcut, branch = a, b
        elif b in ancestors(a):
            shortcut, branch = b, a
        else:
            continue
        todo, seen, partner = [branch], set(), None
        while todo and partner is None:  # breadth-first back to the nearest weighted op, not crossing the shortcut
            x = todo.pop(0)
            if x in seen or x == shortcut or x not in producer:
                continue
            seen.add(x)
            j = producer[x]
            if nodes[j].op_type in WEIGHTED_OPS:
                partner = j
            else:
                todo.extend(y for y in nodes[j].input if is_activation(y))
        if partner is not None:
            residual_of.setdefault(partner, []).append((labels[i], shortcut))

    units: list[QuantUnit] = []
    used: set[str] = set()

    def unique(name: str) -> str:
        base, k = name, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        return name

    for i, n in enumerate(nodes):
        if i in decode or i in dfl:
            continue
        if n.op_type in WEIGHTED_OPS:
            w_name = n.input[1] if len(n.input) > 1 else ""
            w = _initializer(graph, w_name) if w_name else None
            acts = tuple(t for t in n.input[:2] if is_activation(t))
            weights = (w_name,) if w is not None else ()
            units.append(QuantUnit(
                name=unique(unit_name_from_node(labels[i], n.op_type)), kind="conv",
                role="head_output" if i in head_outputs else "body", nodes=(labels[i],), tensors=acts,
                weights=weights, macs=_macs(n, shapes, w), residuals=tuple(residual_of.get(i, ()))))
        elif n.op_type == "Concat":
            acts = tuple(dict.fromkeys(t for t in n.input if is_activation(t)))
            if acts:
                units.append(QuantUnit(name=unique(unit_name_from_node(labels[i], "Concat")), kind="concat",
                                       role="body", nodes=(labels[i],), tensors=acts))

    candidates: list[str] = []
    for i, n in enumerate(nodes):
        if n.op_type in WEIGHTED_OPS:
            candidates.extend(t for t in n.input[:2] if is_activation(t))
        elif n.op_type in ("Add", "Concat"):
            candidates.extend(t for t in n.input if is_activation(t))
            if n.op_type == "Concat":
                candidates.append(n.output[0])
        elif n.op_type in SCALE_TRANSPARENT_OPS and is_activation(n.input[0]):
            candidates.extend([n.input[0], n.output[0]])
    floats = set(_float_tensors(inferred)) | {i.name for i in graph.input}
    candidates = [t for t in dict.fromkeys(candidates) if t in floats]
    return GraphAnalysis(units=units, decode_nodes={labels[i] for i in decode}, dfl_nodes={labels[i] for i in dfl},
                         tie_groups=tie, qdq_candidates=candidates, float_tensors=_float_tensors(inferred))


def list_units(model) -> list[QuantUnit]:
    return analyze_graph(model).units


def calibration_tensors(model, scope: str = "qdq") -> list[str]:
    """Tensors calibration must observe: ``qdq`` (every possible Q/DQ site) or ``all`` (every float activation,
    for TensorRT calibration caches, which want a range for every network tensor)."""
    analysis = analyze_graph(model)
    if scope == "qdq":
        return analysis.qdq_candidates
    if scope == "all":
        return list(dict.fromkeys(analysis.qdq_candidates + analysis.float_tensors))
    raise ConfigError(f"invalid calibration scope {scope!r}; valid choices: 'qdq', 'all'")


# ---------------------------------------------------------------------------------------------------------- plan
@dataclass
class Plan:
    """unit name -> precision (``int8`` | ``fp16`` | ``fp32``)."""

    units: dict[str, str]
    model_sha256: str = ""
    notes: dict = field(default_factory=dict)

    def precision(self, unit: str) -> str:
        return self.units[unit]

    def int8_units(self) -> list[str]:
        return [u for u, p in self.units.items() if p == "int8"]

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "version": 1, "model_sha256": self.model_sha256,
                "units": dict(self.units), "notes": dict(self.notes)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Plan":
        if not isinstance(data, Mapping) or data.get("format") != PLAN_FORMAT or not isinstance(data.get("units"), Mapping):
            raise ConfigError(f"not a trtalign plan: expected a JSON object with \"format\": \"{PLAN_FORMAT}\" and "
                              f"\"units\": {{unit: precision}}")
        return cls(units={str(k): str(v) for k, v in data["units"].items()},
                   model_sha256=str(data.get("model_sha256", "")), notes=dict(data.get("notes", {})))


def default_plan(units: Iterable[QuantUnit], head_output: str = "fp16", model_sha256: str = "") -> Plan:
    """Every unit INT8 except the head's last weighted ops (``head_output``), which stay ``head_output``."""
    if head_output not in PRECISIONS:
        raise ConfigError(f"invalid precision {head_output!r}; valid choices: {choices_text(PRECISIONS)}")
    return Plan(units={u.name: (head_output if u.role == "head_output" else "int8") for u in units},
                model_sha256=model_sha256)


def apply_excludes(plan: Plan, patterns: Iterable[str], units: Iterable[QuantUnit],
                   precision: str = "fp16") -> tuple[Plan, list[str]]:
    """Set units matching any fnmatch pattern (on the unit name or any of its node names) to ``precision``.
    A pattern that matches nothing raises ConfigError (a typo must not silently quantize everything)."""
    out = dict(plan.units)
    matched: list[str] = []
    units = list(units)
    for pat in patterns:
        hits = [u.name for u in units if fnmatch.fnmatchcase(u.name, pat)
                or any(fnmatch.fnmatchcase(n, pat) for n in u.nodes)]
        if not hits:
            raise ConfigError(f"--exclude pattern {pat!r} matches no unit; units look like "
                              f"{choices_text(u.name for u in units[:5])} (see --list-units)")
        for h in hits:
            out[h] = precision
        matched.extend(hits)
    return Plan(units=out, model_sha256=plan.model_sha256, notes=dict(plan.notes)), sorted(set(matched))


def validate_plan(plan: Plan, units: Iterable[QuantUnit]) -> None:
    """Every unit present exactly, every precision valid; otherwise ConfigError listing what is wrong."""
    names = [u.name for u in units]
    unknown = sorted(set(plan.units) - set(names))
    missing = [n for n in names if n not in plan.units]
    bad = {k: v for k, v in plan.units.items() if v not in PRECISIONS}
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unit(s) not in this model: {', '.join(unknown[:10])}"
                        + (" ..." if len(unknown) > 10 else ""))
    if missing:
        problems.append(f"{len(missing)} unit(s) of the model missing from the plan: {', '.join(missing[:10])}"
                        + (" ..." if len(missing) > 10 else ""))
    if bad:
        problems.append("invalid precision(s) " + ", ".join(f"{k}={v!r}" for k, v in list(bad.items())[:10])
                        + f"; valid choices: {choices_text(PRECISIONS)}")
    if problems:
        raise ConfigError("plan does not match the model: " + "; ".join(problems))


def save_plan(plan: Plan, path: str | os.PathLike) -> Path:
    return atomic_write_json(path, plan.to_dict())


def load_plan(path: str | os.PathLike, units: Iterable[QuantUnit] | None = None) -> Plan:
    plan = Plan.from_dict(read_json_file(path, "plan file", unreadable=ConfigError))
    if units is not None:
        validate_plan(plan, units)
    return plan


def int8_mac_fraction(units: Iterable[QuantUnit], plan: Plan) -> float:
    """Share of the conv-unit MACs that the plan puts in INT8 (0 when MACs are unknown)."""
    total = int8 = 0
    for u in units:
        if u.kind == "conv":
            total += u.macs
            if plan.units.get(u.name) == "int8":
                int8 += u.macs
    return int8 / total if total else 0.0


def plan_key(units: Mapping[str, str]) -> str:
    """Stable short hash of a plan's unit -> precision mapping."""
    return sha256_bytes(json.dumps(dict(sorted(units.items())), sort_keys=True).encode())[:16]


def make_plan(units: "Sequence[QuantUnit] | Sequence[str]", fallback: Sequence[str] = (), target: str = "fp16"):
    """The INT8 plan (:func:`default_plan` with the head's output convs in ``target``) with ``fallback`` units also
    in ``target``. Given only unit names (no roles) the base is every unit INT8."""
    fb = set(fallback)
    units = list(units)
    base = default_plan(units, head_output=target) if units and isinstance(units[0], QuantUnit) else \
        Plan(units={u: "int8" for u in units})
    return Plan(units={u: (target if u in fb else p) for u, p in base.units.items()})
