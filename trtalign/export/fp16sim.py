"""FP16 emulation on the CPU: an FP32 ONNX model -> the same model with TensorRT-FP16-like numerics.

What TensorRT does in FP16 mode, and what this transform reproduces in a graph that ONNX Runtime runs in FP32:

- weights are stored in float16: every float32 initializer feeding the network part is rounded to float16 (and kept
  as float32 values, so the ops still accumulate in FP32 as TensorRT's FP16 kernels do);
- activations travel between layers in float16: after every op of the network part, each float32 output goes through
  ``Cast(to=FLOAT16) -> Cast(to=FLOAT)`` (so it is rounded to the nearest float16, and overflows to +-inf beyond 65504);
  the graph input is rounded the same way;
- decode and NMS stay in FP32: the network part is every node upstream of the raw head tensor ``output0`` (the
  boundary, from the export contract in docs/ARCHITECTURE.md); nodes downstream of it are not touched.

In a Q/DQ model (a plan with some units INT8 and the rest FP16, ``runtime.plan_runners``) the QuantizeLinear /
DequantizeLinear nodes and their constants are left alone: INT8 scales stay FP32 as in TensorRT, and the INT8 path
is exact integers anyway; everything else computes in float16, as an engine built with INT8 + FP16 runs it.

ONNX Runtime does not fold these Cast pairs (a test runs the emulated model and compares with numpy float16
rounding). Graph edits go through onnx-graphsurgeon.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trtalign.core.errors import ModelError
from trtalign.core.io import atomic_write_bytes
from trtalign.core.logging import get_logger
from trtalign.export.units import export_like

log = get_logger(__name__)

#: the raw head tensor: the decode (and NMS) start after it
DECODE_BOUNDARY = "output0"
SUFFIX_FP32, SUFFIX_FP16 = "__fp16sim_fp32", "__fp16sim_fp16"


@dataclass
class Fp16SimInfo:
    """What :func:`fp16sim_model` did: boundary tensor, nodes emulated vs kept in FP32, casts and weights rounded."""

    boundary: str | None
    nodes_emulated: int
    nodes_fp32: int
    tensors_rounded: int
    weights_rounded: int
    weight_values_changed: int
    overflowing_weights: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def round_to_fp16(values: np.ndarray) -> np.ndarray:
    """float32 -> nearest float16 -> float32 (round-to-nearest-even, overflow to inf, as a Cast does)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, np.float32).astype(np.float16).astype(np.float32)


def _upstream_nodes(tensor: Any) -> list:
    """Nodes that ``tensor`` depends on (its producer and, recursively, their inputs' producers)."""
    seen: dict[int, Any] = {}
    stack = list(tensor.inputs)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        for t in node.inputs:
            stack.extend(t.inputs)
    return list(seen.values())


def _is_float32(tensor: Any) -> bool:
    return tensor.dtype is not None and np.dtype(tensor.dtype) == np.float32


def _insert_round(graph: Any, tensor: Any, producer: Any | None) -> None:
    """Make ``tensor`` carry float16-rounded values: the producer writes ``<name>__fp16sim_fp32``, two Casts write
    ``tensor`` itself, so consumers and graph outputs are unchanged."""
    import onnx
    import onnx_graphsurgeon as gs

    raw = gs.Variable(tensor.name + SUFFIX_FP32, dtype=np.float32, shape=tensor.shape)
    half = gs.Variable(tensor.name + SUFFIX_FP16, dtype=np.float16, shape=tensor.shape)
    if producer is not None:
        producer.outputs[producer.outputs.index(tensor)] = raw
        graph.nodes.append(gs.Node("Cast", f"{tensor.name}_fp16sim_to16", attrs={"to": onnx.TensorProto.FLOAT16},
                                   inputs=[raw], outputs=[half]))
        graph.nodes.append(gs.Node("Cast", f"{tensor.name}_fp16sim_to32", attrs={"to": onnx.TensorProto.FLOAT},
                                   inputs=[half], outputs=[tensor]))
    else:  # a graph input: consumers read the rounded copy
        rounded = gs.Variable(tensor.name + "__fp16sim_rounded", dtype=np.float32, shape=tensor.shape)
        for consumer in list(tensor.outputs):
            consumer.inputs[consumer.inputs.index(tensor)] = rounded
        graph.nodes.append(gs.Node("Cast", f"{tensor.name}_fp16sim_to16", attrs={"to": onnx.TensorProto.FLOAT16},
                                   inputs=[tensor], outputs=[half]))
        graph.nodes.append(gs.Node("Cast", f"{tensor.name}_fp16sim_to32", attrs={"to": onnx.TensorProto.FLOAT},
                                   inputs=[half], outputs=[rounded]))


def fp16sim_model(model: Any, boundary: str | None = DECODE_BOUNDARY) -> tuple[Any, Fp16SimInfo]:
    """FP32 ModelProto -> (FP16-emulating ModelProto, :class:`Fp16SimInfo`). The input model is not modified.

    ``boundary``: the tensor after which decode/NMS start (kept FP32). When the model has no such tensor, the whole
    graph is emulated (with a warning); ``boundary=None`` asks for that explicitly.
    """
    import onnx
    import onnx_graphsurgeon as gs

    if not isinstance(model, onnx.ModelProto):
        raise ModelError(f"fp16sim_model needs an onnx.ModelProto, got {type(model).__name__}")
    if any(SUFFIX_FP16 in n.name or n.name.endswith("_fp16sim_to16") for n in model.graph.node):
        raise ModelError("the model is already an FP16 emulation (it has fp16sim Cast nodes)")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - inference is best effort; dtypes then come from the graph alone
        log.warning("shape inference failed before FP16 emulation (%s); using declared types only", exc)
        inferred = model
    graph = gs.import_onnx(inferred)
    tensors = graph.tensors()
    if boundary is not None and boundary not in tensors:
        log.warning("no tensor %r (the raw head) in the model: emulating FP16 over the whole graph", boundary)
        boundary = None
    if boundary is not None:
        network = _upstream_nodes(tensors[boundary])
    else:
        network = list(graph.nodes)
    network_ids = {id(n) for n in network}
    rounded = weights = changed = overflow = 0
    # weights: float32 constants read by network nodes
    done: set[str] = set()
    for node in network:
        if node.op in QDQ_OPS:  # INT8 scales stay FP32 (TensorRT keeps them so), and so do weights before their Q
            continue
        for inp in node.inputs:
            if isinstance(inp, gs.Constant) and inp.name not in done and _is_float32(inp):
                done.add(inp.name)
                values = np.asarray(inp.values, np.float32)
                new = round_to_fp16(values)
                changed += int((new != values).sum())
                overflow += int((~np.isfinite(new) & np.isfinite(values)).sum())
                inp.values = new
                weights += 1
        if node.op == "Constant" and "value" in node.attrs and isinstance(node.attrs["value"], gs.Constant):
            const = node.attrs["value"]
            if _is_float32(const):
                const.values = round_to_fp16(np.asarray(const.values, np.float32))
                weights += 1
    # activations: every float32 output of a network node, and float32 graph inputs read by the network
    for node in network:
        for out in list(node.outputs):
            if isinstance(out, gs.Variable) and _is_float32(out):
                _insert_round(graph, out, node)
                rounded += 1
    for inp in graph.inputs:
        if _is_float32(inp) and any(id(c) in network_ids for c in inp.outputs):
            _insert_round(graph, inp, None)
            rounded += 1
    untyped = sum(1 for n in network for o in n.outputs if isinstance(o, gs.Variable) and o.dtype is None)
    if untyped:
        log.warning("FP16 emulation: %d network tensors have no known dtype and were not rounded", untyped)
    graph.toposort()
    out = export_like(graph, model)
    del out.graph.value_info[:]  # stale after the rewiring; ONNX Runtime re-infers
    info = Fp16SimInfo(boundary, len(network), len(graph.nodes) - len(network) - 2 * rounded, rounded, weights,
                       changed, overflow)
    if overflow:
        log.warning("FP16 emulation: %d weight values overflow float16 (become inf)", overflow)
    return out, info


def write_fp16sim_onnx(src: str | os.PathLike | Any, dst: str | os.PathLike,
                       boundary: str | None = DECODE_BOUNDARY) -> Fp16SimInfo:
    """Read an FP32 ONNX file (or ModelProto), write its FP16 emulation to ``dst`` atomically."""
    import onnx

    if isinstance(src, onnx.ModelProto):
        model = src
    else:
        path = Path(src)
        if not path.is_file():
            raise ModelError(f"ONNX file not found: {path}")
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad model file
            raise ModelError(f"cannot read ONNX model {path}: {str(exc).splitlines()[0]}") from None
    out, info = fp16sim_model(model, boundary)
    atomic_write_bytes(dst, out.SerializeToString())
    return info
