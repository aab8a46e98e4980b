"""Float16-typed ONNX for strongly typed TensorRT (10.x opt-in, always on in 11): the precision lives in the dtypes.

Compute is float16; chosen nodes stay float32 as *Cast islands* (a Cast to float32 before, a Cast back after), and
always kept in float32 are: the graph inputs and outputs, the detection head's decode region (DFL, box / score decode,
Sigmoid, final Concat) and the NMS node (found structurally by :func:`trtalign.export.units.analyze_graph`).
Nodes to keep can be named by node-name pattern or by quantization unit (a plan's ``fp32`` units).

Written on onnx-graphsurgeon: onnxruntime's ``transformers.float16`` converter, tried first, computed the decode
region's shape ops in float16 and emitted duplicate Cast names when one tensor fed two float32 nodes (checker fails).
Here a float tensor is float16 exactly when a float16 node produces it; a Cast is inserted (once per tensor and
direction) wherever a consumer wants the other type; float32 constants read by float16 nodes get float16 copies;
Resize's roi / scales stay float32 as the spec requires; graph outputs keep their names behind a final Cast.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from trtalign.core.errors import ConfigError
from trtalign.core.io import atomic_write_bytes, sha256_bytes
from trtalign.export.units import Plan, analyze_graph, export_like, fold_constant_identities, load_model

#: ops with no float16 kernel in TensorRT's ONNX path or our plugins: always float32
FP32_OPS = ("EfficientNMS_TRT", "EfficientRotatedNMS_TRT", "NonMaxSuppression", "TopK")


@dataclass
class Fp16Result:
    fp32_nodes: list[str]
    fp16_nodes: int
    casts: int
    sha256: str

    def to_dict(self) -> dict:
        return {"fp32_nodes": list(self.fp32_nodes), "fp16_nodes": self.fp16_nodes, "casts": self.casts,
                "sha256": self.sha256}


def fp32_node_names(model, keep_fp32: Iterable[str] = (), plan: Plan | None = None,
                    keep_decode_fp32: bool = True) -> list[str]:
    """Node names that stay float32: decode region + patterns (node or unit names) + the plan's ``fp32`` units."""
    model = load_model(model)
    analysis = analyze_graph(model)
    names = [n.name for n in model.graph.node]
    keep: set[str] = set()
    if keep_decode_fp32:
        keep |= analysis.decode_nodes | analysis.dfl_nodes
    for pat in keep_fp32:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        for u in analysis.units:
            if fnmatch.fnmatchcase(u.name, pat):
                hits.extend(u.nodes)
        if not hits:
            raise ConfigError(f"keep-fp32 pattern {pat!r} matches no node or unit (node names look like "
                              f"{names[0]!r}, units like {analysis.units[0].name!r})")
        keep |= set(hits)
    if plan is not None:
        for u in analysis.units:
            if plan.units.get(u.name) == "fp32":
                keep |= set(u.nodes)
    keep |= {n.name for n in model.graph.node if n.op_type in FP32_OPS}
    return [n for n in names if n in keep]


#: (op_type, input index) that the ONNX spec types as float32 whatever the data type (Resize roi / scales)
FP32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}
#: ops that create float tensors from attributes; left float32 (their consumers get a Cast)
_ATTR_TYPED_OPS = ("ConstantOfShape", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                   "EyeLike")


def convert_to_fp16(model, keep_fp32: Iterable[str] = (), plan: Plan | None = None,
                    keep_decode_fp32: bool = True):
    """Return (float16-typed ``onnx.ModelProto`` with float32 I/O and Cast islands around float32 nodes, result)."""
    import numpy as np
    import onnx
    import onnx_graphsurgeon as gs

    model = fold_constant_identities(load_model(model))
    keep = set(fp32_node_names(model, keep_fp32, plan, keep_decode_fp32))
    float_tensors = set(analyze_graph(model).float_tensors) | {t.name for t in model.graph.input}
    graph = gs.import_onnx(model)
    nodes = list(graph.nodes)
    for i, n in enumerate(nodes):
        if not n.name:
            n.name = f"{n.op}_{i}"
    fp16_nodes = [n for n in nodes if n.name not in keep and n.op not in _ATTR_TYPED_OPS]
    fp16_set = {id(n) for n in fp16_nodes}
    # a float tensor is float16 iff a float16 node produces it; graph inputs stay float32
    for n in fp16_nodes:
        if n.op == "Cast" and n.attrs.get("to") == onnx.TensorProto.FLOAT:
            n.attrs["to"] = onnx.TensorProto.FLOAT16
        for t in n.outputs:
            if t.name in float_tensors or t.dtype == np.float32:
                t.dtype = np.float16
    casts: dict[tuple[str, str], object] = {}
    half_consts: dict[str, object] = {}

    def cast(t, to: str):
        key = (t.name, to)
        if key not in casts:
            out = gs.Variable(f"{t.name}_to_{to}", dtype=np.float16 if to == "fp16" else np.float32, shape=t.shape)
            graph.nodes.append(gs.Node("Cast", f"{t.name}_Cast_{to}",
                                       {"to": onnx.TensorProto.FLOAT16 if to == "fp16" else onnx.TensorProto.FLOAT},
                                       [t], [out]))
            casts[key] = out
        return casts[key]

    def is_float(t) -> bool:
        if isinstance(t, gs.Constant):
            return np.asarray(t.values).dtype == np.float32
        return t.name in float_tensors or t.dtype in (np.float32, np.float16)

    def half(t):
        if t.name not in half_consts:
            half_consts[t.name] = gs.Constant(f"{t.name}_fp16", np.asarray(t.values).astype(np.float16))
        return half_consts[t.name]

    for n in nodes:
        want16 = id(n) in fp16_set
        for k, t in enumerate(list(n.inputs)):
            if t is None or not t.name or not is_float(t):
                continue
            want = "fp32" if (n.op, k) in FP32_INPUTS or not want16 else "fp16"
            if isinstance(t, gs.Constant):
                if want == "fp16":
                    n.inputs[k] = half(t)
                continue
            have = "fp16" if t.dtype == np.float16 else "fp32"
            if have != want:
                n.inputs[k] = cast(t, want)
    for t in list(graph.outputs):  # outputs keep their names and float32, behind a final Cast
        if t.dtype == np.float16:
            inner = gs.Variable(f"{t.name}_fp16", dtype=np.float16, shape=t.shape)
            prod = t.inputs[0]
            prod.outputs[prod.outputs.index(t)] = inner
            for c in list(t.outputs):
                c.inputs[c.inputs.index(t)] = inner
            t.dtype = np.float32
            graph.nodes.append(gs.Node("Cast", f"{t.name}_Cast_fp32", {"to": onnx.TensorProto.FLOAT}, [inner], [t]))
    graph.cleanup().toposort()
    out = export_like(graph, model)
    onnx.checker.check_model(out)
    data = out.SerializeToString()
    n_casts = sum(1 for n in out.graph.node if n.op_type == "Cast") - sum(1 for n in model.graph.node
                                                                          if n.op_type == "Cast")
    return out, Fp16Result(fp32_nodes=sorted(keep), fp16_nodes=len(fp16_nodes), casts=n_casts,
                           sha256=sha256_bytes(data))


def save_fp16(model, path: str | os.PathLike, keep_fp32: Iterable[str] = (), plan: Plan | None = None,
              keep_decode_fp32: bool = True) -> Fp16Result:
    out, result = convert_to_fp16(model, keep_fp32, plan, keep_decode_fp32)
    atomic_write_bytes(Path(path), out.SerializeToString())
    return result
