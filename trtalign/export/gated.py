"""Graph rewrites for trial plans: cut a model down to some outputs, and the gated Q/DQ model.

:func:`build_gated_model` takes the full-INT8 Q/DQ ONNX of ``insert_qdq`` (so placement, tie groups, residual
shortcuts and MaxPool/Resize reading the DQ are exactly ``export.qdq``'s) and makes every consumer of a
DequantizeLinear read ``Where(gate, dequantized, original)`` instead; each unit has one boolean graph input ``gate``.
One ONNX Runtime session then runs any plan by feeding the gates (``runtime.plan_runners.GatedQdqModel``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from trtalign.core.errors import InputError, ModelError

RAW_OUTPUT = "output0"


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


__all__ = ["RAW_OUTPUT", "build_gated_model", "gate_name", "keep_outputs"]
