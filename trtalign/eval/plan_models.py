"""Models for trial plans: one Q/DQ ONNX per plan (cached on disk), or ONE gated model that serves every plan.

- :class:`QdqPlanModels`: ``export.qdq.insert_qdq`` per plan, written once per plan hash (the ``ort-int8sim``
  emulation as ``trtalign quantize`` writes it). Building a plan's model and an ONNX Runtime session costs more than
  scoring a small subset with it, so trying ~80 plans this way is dominated by that overhead.
- :class:`GatedQdqModel`: the full-INT8 Q/DQ ONNX of ``insert_qdq`` (so placement, tie groups, residual shortcuts and
  MaxPool/Resize reading the DQ are exactly ``export.qdq``'s) in which every consumer of a DequantizeLinear reads
  ``Where(gate, dequantized, original)`` instead; each unit has one boolean graph input ``gate``. One ONNX Runtime
  session then runs any plan by feeding the gates: ``Where`` selects values, so the numbers are those of the plan's
  own Q/DQ model up to float rounding of differently fused kernels (a few ulp; a test checks it). It saves the
  per-plan build + session (~3 s for a yolov8n at 320 px on a loaded 2-core machine) but every inference computes
  every Q/DQ and the convs cannot pre-pack their (now selected) weights: ~2x slower per image, so it pays off for
  small subsets only (``TuningSession.sensitivity(..., gated=True)``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from trtalign.core.errors import InputError, ModelError
from trtalign.core.io import atomic_write_bytes, sha256_bytes
from trtalign.runtime.base import Runner, TensorMeta

RAW_OUTPUT = "output0"


def plan_key(units: Mapping[str, str]) -> str:
    """Stable short hash of a plan's unit -> precision mapping."""
    return sha256_bytes(json.dumps(dict(sorted(units.items())), sort_keys=True).encode())[:16]


def make_plan(unit_names: Sequence[str], fallback: Sequence[str] = (), target: str = "fp16"):
    """Every unit INT8 except ``fallback`` (in ``target``)."""
    from trtalign.export.units import Plan

    fb = set(fallback)
    return Plan(units={u: (target if u in fb else "int8") for u in unit_names})


def keep_outputs(model: Any, names: Sequence[str]) -> Any:
    """The model cut down to what computes ``names`` (which become its only outputs); graph inputs are kept."""
    import onnx_graphsurgeon as gs

    from trtalign.export.units import export_like

    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    missing = [n for n in names if n not in tensors]
    if missing:
        raise InputError(f"the model has no tensor(s) {missing}; expected the raw head {RAW_OUTPUT!r}")
    graph.outputs = [tensors[n] for n in names]
    for t in graph.outputs:
        t.dtype = t.dtype or np.float32
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return export_like(graph, model, metadata=False)


class QdqPlanModels:
    """FP32 ONNX + ranges -> the Q/DQ ONNX of any plan (``ort-int8sim``), written once per plan hash in ``cache_dir``.

    ``expose`` names intermediate tensors (the raw head ``output0``) that the Q/DQ model also outputs; ``only``
    instead cuts the model down to those outputs (e.g. ``("output0",)``: no decode, no NMS, for output metrics).
    """

    def __init__(self, model: Any, ranges: Any, cache_dir: str | os.PathLike, expose: Sequence[str] = (RAW_OUTPUT,),
                 only: Sequence[str] | None = None):
        from trtalign.export.units import analyze_graph, load_model

        self.model = load_model(model)
        self.ranges = ranges
        self.analysis = analyze_graph(self.model)
        self.units = list(self.analysis.units)
        self.unit_names = [u.name for u in self.units]
        self.cache_dir = Path(cache_dir)
        self.expose = list(expose)
        self.only = list(only) if only else None
        ranges_text = json.dumps(ranges.to_dict()["tensors"], sort_keys=True)
        self._salt = sha256_bytes(self.model.SerializeToString() + ranges_text.encode())[:16]
        self.built = 0  # Q/DQ models written by this object (cache misses)

    def plan(self, fallback: Sequence[str] = (), target: str = "fp16"):
        return make_plan(self.unit_names, fallback, target)

    def path_for(self, plan: Any) -> Path:
        from trtalign.export.graph_nms import expose_outputs
        from trtalign.export.qdq import insert_qdq

        tag = "-raw" if self.only else ""
        path = self.cache_dir / f"qdq-{self._salt}-{plan_key(plan.units)}{tag}.onnx"
        if not path.is_file():
            out, _ = insert_qdq(self.model, self.ranges, plan)
            if self.only:
                out = keep_outputs(out, self.only)
            elif self.expose:
                out = expose_outputs(out, self.expose)
            atomic_write_bytes(path, out.SerializeToString(), fsync=False)
            self.built += 1
        return path

    def runner(self, plan: Any) -> Any:
        from trtalign.runtime.ort_runner import OrtRunner

        return OrtRunner(self.path_for(plan), name="ort-int8sim")


# ------------------------------------------------------------------------------------------------ gated model
def gate_name(index: int) -> str:
    return f"trtalign_gate_{index}"


def build_gated_model(model: Any, ranges: Any, analysis: Any, only: Sequence[str] = (RAW_OUTPUT,)) -> Any:
    """The full-INT8 Q/DQ model with every DQ consumer behind ``Where(gate_of_its_unit, dq, original)``."""
    import onnx
    from onnx import TensorProto, helper

    from trtalign.export.qdq import insert_qdq
    from trtalign.export.units import WEIGHTED_OPS, SCALE_TRANSPARENT_OPS

    full, _ = insert_qdq(model, ranges, plan=None)
    g = full.graph
    producer = {o: n for n in g.node for o in n.output}
    index = {u.name: i for i, u in enumerate(analysis.units)}
    unit_of_node = {n: u for u in analysis.units for n in u.nodes}
    residual_of = {(add, t): u for u in analysis.units for add, t in u.residuals}
    users_of_tensor: dict[str, set] = {}
    for u in analysis.units:
        for t in list(u.tensors) + [t for _, t in u.residuals]:
            users_of_tensor.setdefault(t, set()).add(u.name)
    new_nodes, or_cache = [], {}

    def gate_for(units: Sequence[str]) -> str:
        names = sorted(units, key=lambda n: index[n])
        out = gate_name(index[names[0]])
        for other in names[1:]:
            key = (out, other)
            if key not in or_cache:
                or_cache[key] = f"{out}_or_{index[other]}"
                new_nodes.append(helper.make_node("Or", [out, gate_name(index[other])], [or_cache[key]]))
            out = or_cache[key]
        return out

    count = 0
    for node in list(g.node):
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                raise ModelError(f"unexpected Q/DQ structure at {name!r}: no QuantizeLinear before it")
            original = q.input[0]
            if node.name in unit_of_node and (node.op_type in WEIGHTED_OPS or node.op_type == "Concat"):
                units = [unit_of_node[node.name].name]
            elif (node.name, original) in residual_of:
                units = [residual_of[(node.name, original)].name]
            elif node.op_type in SCALE_TRANSPARENT_OPS and original in users_of_tensor:
                units = sorted(users_of_tensor[original])
            else:
                raise ModelError(f"cannot tell which unit owns the Q/DQ of {original!r} read by {node.name!r}")
            selected = f"{name}__gated_{count}"
            new_nodes.append(helper.make_node("Where", [gate_for(units), name, original], [selected],
                                              name=f"{selected}_Where"))
            node.input[k] = selected
            count += 1
    g.node.extend(new_nodes)
    for i in range(len(analysis.units)):
        g.input.append(helper.make_tensor_value_info(gate_name(i), TensorProto.BOOL, []))
    gated = keep_outputs(full, list(only)) if only else full
    # the Where nodes were appended after their consumers: keep_outputs (graphsurgeon) re-sorts the graph
    if not only:
        import onnx_graphsurgeon as gs

        graph = gs.import_onnx(gated).toposort()
        gated = gs.export_onnx(graph)
        gated.ir_version = full.ir_version
    onnx.checker.check_model(gated)
    return gated


class GatedQdqModel:
    """One ONNX Runtime session that runs the Q/DQ emulation of ANY plan (see the module doc)."""

    def __init__(self, model: Any, ranges: Any, analysis: Any = None, only: Sequence[str] = (RAW_OUTPUT,)):
        from trtalign.export.units import analyze_graph, load_model

        self.model = load_model(model)
        self.analysis = analysis or analyze_graph(self.model)
        self.units = list(self.analysis.units)
        self.unit_names = [u.name for u in self.units]
        self.proto = build_gated_model(self.model, ranges, self.analysis, only)
        self.session: Any = None

    def session_(self) -> Any:
        if self.session is None:
            import onnxruntime as ort

            from trtalign.runtime.ort_runner import ort_threads

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            threads = ort_threads()
            if threads is not None:
                opts.intra_op_num_threads = threads
            self.session = ort.InferenceSession(self.proto.SerializeToString(), opts,
                                                providers=["CPUExecutionProvider"])
        return self.session

    def gates(self, plan: Any) -> dict[str, np.ndarray]:
        unknown = sorted(set(plan.units) - set(self.unit_names))
        if unknown:
            raise InputError(f"plan names unit(s) not in this model: {', '.join(unknown[:5])}")
        return {gate_name(i): np.array(plan.units.get(u) == "int8") for i, u in enumerate(self.unit_names)}

    def runner(self, plan: Any) -> "GatedRunner":
        return GatedRunner(self, plan)


class GatedRunner(Runner):
    """``ort-int8sim`` of one plan on the shared gated session (activation costs nothing after the first)."""

    def __init__(self, model: GatedQdqModel, plan: Any, name: str = "ort-int8sim"):
        super().__init__(name)
        self.model = model
        self.feeds = model.gates(plan)

    def activate_impl(self) -> None:
        self.model.session_()

    def deactivate_impl(self) -> None:
        pass

    def input_metadata(self) -> list[TensorMeta]:
        i = self.model.session_().get_inputs()[0]
        return [TensorMeta(i.name, "float32", tuple(i.shape))]

    def output_metadata(self) -> list[TensorMeta]:
        return [TensorMeta(o.name, "float32", tuple(o.shape)) for o in self.model.session_().get_outputs()]

    def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self.model.session_()
        names = [o.name for o in sess.get_outputs()]
        first = sess.get_inputs()[0].name
        return dict(zip(names, sess.run(names, {first: np.asarray(feed_dict[first]), **self.feeds})))


__all__ = ["QdqPlanModels", "GatedQdqModel", "GatedRunner", "build_gated_model", "keep_outputs", "make_plan",
           "plan_key"]
