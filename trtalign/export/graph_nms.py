"""Graph transforms on the raw ONNX: the decode subgraph (``output0`` -> ``boxes`` + ``scores``) and the in-graph
NMS node (``EfficientNMS_TRT`` / ``EfficientRotatedNMS_TRT``), through onnx-graphsurgeon.

Names and attributes follow docs/ARCHITECTURE.md exactly. :func:`decode_raw_output` is the numpy twin of the decode
subgraph (same float32 operations in the same order), used to decode the torch model's raw head for comparisons.

Node domain (why ``trtalign`` and an explicit ``plugin_namespace=""``):
  * ``onnx.checker`` rejects an unknown op_type in the default domain ("No Op registered ..."), so the NMS node
    cannot live in domain "" and still pass the checker; a custom domain is skipped by the checker.
  * TensorRT's ONNX parser (onnx-tensorrt) imports any op_type without a built-in importer through its
    ``FallbackPluginImporter``: plugin name = op_type, version = attribute ``plugin_version`` (default "1"),
    namespace = attribute ``plugin_namespace`` (default ""). On 8.5, 8.6 and 10.0 - 10.9 the node's domain plays no
    part (read in onnx-tensorrt release/8.5-GA, 8.6-GA, 10.1-GA: ``attrs.get<std::string>("plugin_namespace", "")``).
  * Since 10.10 the fallback importer "also reads its namespace from a Node's domain field" (onnx-tensorrt 10.10-GA
    release notes, PR #1025); a node in domain ``mmdeploy`` without the attribute then looks for its plugin in
    namespace "mmdeploy". EfficientNMS_TRT is registered in namespace "", so we write the attribute
    ``plugin_namespace=""`` explicitly: the attribute is the documented way to name the namespace and is what 8.5 ->
    10.9 read. For a parser that would let the domain win over the attribute, :func:`set_nms_domain` (CLI
    ``trtalign export --nms-domain ''``) rewrites the node into the default domain; such a file is meant only for
    the TensorRT parser (it no longer passes ``onnx.checker``), and the engine builder may apply the same rewrite
    in memory before parsing.
  * TensorRT 8.5 has no ``class_agnostic`` attribute; its parser drops unknown plugin fields with a warning, so
    NMS silently becomes per-class there (the engines layer warns about it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trtalign.core.enums import NmsKind, Task
from trtalign.core.errors import InputError, ModelError, choices_text

EFFICIENT_NMS = "EfficientNMS_TRT"
ROTATED_NMS = "EfficientRotatedNMS_TRT"
NMS_OP_TYPES = (EFFICIENT_NMS, ROTATED_NMS)
#: domain of the NMS nodes (see the module docstring) and its opset version
NMS_DOMAIN = "trtalign"
NMS_DOMAIN_VERSION = 1
#: (box, class) candidates per image entering NMS in TensorRT's plugin (not an attribute: the plugin's initialize()
#: sets 5000 on current GPUs; see trtalign/plugins/reference/nms.py, TOPK)
NMS_TOPK = 5000
#: largest max_output_boxes accepted (the config's bound)
MAX_OUTPUT_BOXES = 4096

RAW_OUTPUT = "output0"
BOXES = "boxes"
SCORES = "scores"
NMS_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")


@dataclass(frozen=True)
class NmsAttributes:
    """The attributes of EfficientNMS_TRT (and our EfficientRotatedNMS_TRT), exactly as TensorRT names them."""

    score_threshold: float = 0.001
    iou_threshold: float = 0.7
    max_output_boxes: int = 300
    background_class: int = -1
    score_activation: int = 0
    class_agnostic: int = 0
    box_coding: int = 0
    plugin_version: str = "1"

    def __post_init__(self) -> None:
        checks = [
            (0.0 <= float(self.score_threshold) <= 1.0, f"score_threshold must be in [0, 1], got {self.score_threshold}"),
            (0.0 < float(self.iou_threshold) <= 1.0, f"iou_threshold must be in (0, 1], got {self.iou_threshold}"),
            (1 <= int(self.max_output_boxes) <= MAX_OUTPUT_BOXES,
             f"max_output_boxes (max_det) must be in [1, {MAX_OUTPUT_BOXES}], got {self.max_output_boxes}"),
            (int(self.background_class) >= -1, f"background_class must be >= -1, got {self.background_class}"),
            (int(self.score_activation) in (0, 1), f"score_activation must be 0 or 1, got {self.score_activation}"),
            (int(self.class_agnostic) in (0, 1), f"class_agnostic must be 0 or 1, got {self.class_agnostic}"),
            (int(self.box_coding) in (0, 1), f"box_coding must be 0 (corners) or 1 (center-size), got {self.box_coding}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def to_onnx_attrs(self) -> dict:
        d = asdict(self)
        d["score_threshold"] = float(d["score_threshold"])
        d["iou_threshold"] = float(d["iou_threshold"])
        for k in ("max_output_boxes", "background_class", "score_activation", "class_agnostic", "box_coding"):
            d[k] = int(d[k])
        d["plugin_version"] = str(d["plugin_version"])
        d["plugin_namespace"] = ""
        return d

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NmsAttributes":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


#: NMS-free selection of end-to-end (one-to-one) heads: ultralytics' own two-stage top-k (best class per anchor ->
#: top max_det anchors -> top max_det (anchor, class) pairs) with standard ONNX ops, same four outputs as the NMS node
TOPK_SELECT = "TopK"


def nms_op_for(task: Task, kind: NmsKind | str) -> str | None:
    """The NMS op_type for a task and ``--nms`` choice (``auto``: efficient for detect, rotated for obb)."""
    kind_s = str(kind.value if isinstance(kind, NmsKind) else kind).lower()
    valid = ("auto", "efficient", "rotated", "none")
    if kind_s not in valid:
        raise InputError(f"invalid --nms {kind!r}; valid choices: {choices_text(valid)}")
    if kind_s == "none":
        return None
    if kind_s == "auto":
        return ROTATED_NMS if task is Task.OBB else EFFICIENT_NMS
    if kind_s == "efficient" and task is Task.OBB:
        raise InputError("--nms efficient needs axis-aligned boxes but this is an obb model; valid choices for obb: "
                         "'rotated', 'none', 'auto'")
    if kind_s == "rotated" and task is not Task.OBB:
        raise InputError("--nms rotated needs an obb model but this is a detect model; valid choices for detect: "
                         "'efficient', 'none', 'auto'")
    return EFFICIENT_NMS if kind_s == "efficient" else ROTATED_NMS


# ---------------------------------------------------------------------------------------------------- decode
def decode_raw_output(output0: np.ndarray, num_classes: int, angle: bool, box_coding: int = 0) -> tuple:
    """numpy twin of the decode subgraph: ``[B, 4+C(+1), N]`` -> (boxes ``[B, N, 4|5]``, scores ``[B, N, C]``)."""
    t = np.ascontiguousarray(np.asarray(output0, dtype=np.float32).transpose(0, 2, 1))
    xywh = t[:, :, 0:4]
    scores = t[:, :, 4:4 + num_classes]
    if angle:
        boxes = np.concatenate([xywh, t[:, :, 4 + num_classes:5 + num_classes]], axis=2)
    elif box_coding == 1:
        boxes = xywh
    else:
        half = xywh[:, :, 2:4] * np.float32(0.5)
        boxes = np.concatenate([xywh[:, :, 0:2] - half, xywh[:, :, 0:2] + half], axis=2)
    return np.ascontiguousarray(boxes, dtype=np.float32), np.ascontiguousarray(scores, dtype=np.float32)


def _const(name: str, values: list) -> Any:
    import onnx_graphsurgeon as gs

    return gs.Constant(name, np.asarray(values, dtype=np.int64))


def _slice(graph: Any, x: Any, start: int, end: int, axis: int, name: str, out: Any = None) -> Any:
    import onnx_graphsurgeon as gs

    out = out if out is not None else gs.Variable(f"{name}_out", dtype=np.float32)
    graph.nodes.append(gs.Node("Slice", name, inputs=[x, _const(f"{name}_starts", [start]),
                                                      _const(f"{name}_ends", [end]), _const(f"{name}_axes", [axis])],
                               outputs=[out]))
    return out


def add_decode(graph: Any, num_classes: int, angle: bool, box_coding: int, batch: Any, num_anchors: Any) -> tuple:
    """Append ``output0`` -> ``boxes`` ``[B,N,4|5]`` + ``scores`` ``[B,N,C]`` to a graphsurgeon graph."""
    import onnx_graphsurgeon as gs

    raw = graph.tensors()[RAW_OUTPUT]
    f32 = np.float32
    t = gs.Variable("decode_transposed", dtype=f32)
    graph.nodes.append(gs.Node("Transpose", "decode_transpose", attrs={"perm": [0, 2, 1]}, inputs=[raw], outputs=[t]))
    width = 5 if angle else 4
    boxes = gs.Variable(BOXES, dtype=f32, shape=[batch, num_anchors, width])
    scores = gs.Variable(SCORES, dtype=f32, shape=[batch, num_anchors, num_classes])
    _slice(graph, t, 4, 4 + num_classes, 2, "decode_scores", out=scores)
    if angle:
        xywh = _slice(graph, t, 0, 4, 2, "decode_xywh")
        ang = _slice(graph, t, 4 + num_classes, 5 + num_classes, 2, "decode_angle")
        graph.nodes.append(gs.Node("Concat", "decode_boxes", attrs={"axis": 2}, inputs=[xywh, ang], outputs=[boxes]))
    elif box_coding == 1:
        _slice(graph, t, 0, 4, 2, "decode_boxes", out=boxes)
    else:
        xy = _slice(graph, t, 0, 2, 2, "decode_xy")
        wh = _slice(graph, t, 2, 4, 2, "decode_wh")
        half = gs.Variable("decode_half_wh", dtype=f32)
        graph.nodes.append(gs.Node("Mul", "decode_half", inputs=[wh, gs.Constant("decode_0_5", np.array(0.5, f32))],
                                   outputs=[half]))
        x1y1 = gs.Variable("decode_x1y1", dtype=f32)
        x2y2 = gs.Variable("decode_x2y2", dtype=f32)
        graph.nodes.append(gs.Node("Sub", "decode_corner1", inputs=[xy, half], outputs=[x1y1]))
        graph.nodes.append(gs.Node("Add", "decode_corner2", inputs=[xy, half], outputs=[x2y2]))
        graph.nodes.append(gs.Node("Concat", "decode_boxes", attrs={"axis": 2}, inputs=[x1y1, x2y2], outputs=[boxes]))
    return boxes, scores


def add_nms(graph: Any, boxes: Any, scores: Any, op_type: str, attrs: NmsAttributes, batch: Any) -> list:
    """Append the NMS node reading ``boxes`` and ``scores``; returns its four output tensors."""
    import onnx_graphsurgeon as gs

    if op_type not in NMS_OP_TYPES:
        raise InputError(f"unknown NMS op {op_type!r}; valid choices: {choices_text(NMS_OP_TYPES)}")
    if op_type == ROTATED_NMS and attrs.box_coding != 1:
        attrs = NmsAttributes.from_dict({**attrs.to_dict(), "box_coding": 1})  # rotated boxes are always center-size
    k = int(attrs.max_output_boxes)
    width = 5 if op_type == ROTATED_NMS else 4
    outs = [gs.Variable("num_detections", dtype=np.int32, shape=[batch, 1]),
            gs.Variable("detection_boxes", dtype=np.float32, shape=[batch, k, width]),
            gs.Variable("detection_scores", dtype=np.float32, shape=[batch, k]),
            gs.Variable("detection_classes", dtype=np.int32, shape=[batch, k])]
    graph.nodes.append(gs.Node(op_type, "nms", attrs=attrs.to_onnx_attrs(), inputs=[boxes, scores], outputs=outs,
                               domain=NMS_DOMAIN))
    return outs


#: tensor names the decode / NMS subgraph writes; a raw graph that already uses one (YOLOv5's exports name an inner
#: tensor ``output0``) gets it renamed (:func:`rename_reserved`), else graphsurgeon sees a cycle
RESERVED_NAMES = (RAW_OUTPUT, BOXES, SCORES, *NMS_OUTPUTS, "images")
RESERVED_PREFIX = "decode_"


def reserved_rename(name: str) -> str:
    """The name :func:`rename_reserved` gives a tensor called ``name`` (unchanged when not reserved)."""
    return f"{name}_src" if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIX) else name


def rename_reserved(graph: Any, keep: set | frozenset = frozenset()) -> list:
    """Rename (in place) the graphsurgeon tensors whose names the decode / NMS subgraph uses, but those in ``keep``
    (``output0`` -> ``output0_src``, or ``output0_src2`` ... when taken); returns {old name: new name}."""
    tensors = graph.tensors()
    taken = set(tensors)
    renamed = {}
    for name, tensor in list(tensors.items()):
        new = reserved_rename(name)
        if new == name or name in keep:
            continue
        k = 2
        while new in taken:
            new, k = f"{reserved_rename(name)}{k}", k + 1
        tensor.name = new
        taken.add(new)
        renamed[name] = new
    return renamed


def _batched_gather(graph: Any, data: Any, index: Any, width: int, name: str, dtype: Any = np.float32) -> Any:
    """``data[b, index[b, k], :]`` for ``data`` ``[B, N, width]`` and ``index`` ``[B, K]`` (GatherElements)."""
    import onnx_graphsurgeon as gs

    idx3 = gs.Variable(f"{name}_idx3", dtype=np.int64)
    graph.nodes.append(gs.Node("Unsqueeze", f"{name}_unsqueeze", inputs=[index, _const(f"{name}_ax2", [2])],
                               outputs=[idx3]))
    shape = gs.Variable(f"{name}_shape", dtype=np.int64)
    graph.nodes.append(gs.Node("Shape", f"{name}_idx_shape", inputs=[index], outputs=[shape]))
    full = gs.Variable(f"{name}_full", dtype=np.int64)
    graph.nodes.append(gs.Node("Concat", f"{name}_full_shape", attrs={"axis": 0},
                               inputs=[shape, _const(f"{name}_width", [width])], outputs=[full]))
    expanded = gs.Variable(f"{name}_expanded", dtype=np.int64)
    graph.nodes.append(gs.Node("Expand", f"{name}_expand", inputs=[idx3, full], outputs=[expanded]))
    out = gs.Variable(f"{name}_out", dtype=dtype)
    graph.nodes.append(gs.Node("GatherElements", name, attrs={"axis": 1}, inputs=[data, expanded], outputs=[out]))
    return out


def add_topk_select(graph: Any, boxes: Any, scores: Any, attrs: NmsAttributes, batch: Any, num_anchors: Any,
                    num_classes: int) -> list:
    """NMS-free selection for one-to-one heads (see :data:`TOPK_SELECT`); :func:`topk_select` is its numpy twin.

    k = min(max_output_boxes, N). Per class (default): top k anchors by their best class score, then the top k
    (anchor, class) pairs among them; ``class_agnostic``: the best class of the top k anchors. Pairs below
    ``score_threshold`` are not counted in ``num_detections`` and are zeroed, as the NMS node pads."""
    import onnx_graphsurgeon as gs

    if not isinstance(num_anchors, int):
        raise ModelError("NMS-free top-k selection needs a static number of anchors (a fixed input size)")
    k = min(int(attrs.max_output_boxes), num_anchors)
    opset = int(getattr(graph, "opset", 17) or 17)
    f32, i64 = np.float32, np.int64

    def reduce_max(x: Any, name: str, keep: int) -> Any:
        out = gs.Variable(f"{name}_out", dtype=f32)
        if opset >= 18:
            graph.nodes.append(gs.Node("ReduceMax", name, attrs={"keepdims": keep},
                                       inputs=[x, _const(f"{name}_axes", [2])], outputs=[out]))
        else:
            graph.nodes.append(gs.Node("ReduceMax", name, attrs={"axes": [2], "keepdims": keep}, inputs=[x],
                                       outputs=[out]))
        return out

    def topk(x: Any, name: str) -> tuple:
        vals, idx = gs.Variable(f"{name}_values", dtype=f32), gs.Variable(f"{name}_indices", dtype=i64)
        graph.nodes.append(gs.Node("TopK", name, attrs={"axis": 1, "largest": 1, "sorted": 1},
                                   inputs=[x, _const(f"{name}_k", [k])], outputs=[vals, idx]))
        return vals, idx

    def op(kind: str, inputs: list, name: str, dtype: Any, attrs_: dict | None = None) -> Any:
        out = gs.Variable(f"{name}_out", dtype=dtype)
        graph.nodes.append(gs.Node(kind, name, attrs=attrs_ or {}, inputs=inputs, outputs=[out]))
        return out

    best = reduce_max(scores, "select_best_score", 0)  # [B, N]
    top_vals, anchors = topk(best, "select_top_anchors")  # [B, k]
    if attrs.class_agnostic:
        values = top_vals
        argmax = op("ArgMax", [scores], "select_argmax", i64, {"axis": 2, "keepdims": 1})
        classes = op("Squeeze", [_batched_gather(graph, argmax, anchors, 1, "select_gather_class", i64),
                                 _const("select_sq_ax", [2])], "select_classes", i64)
    else:
        rows = _batched_gather(graph, scores, anchors, num_classes, "select_gather_scores")  # [B, k, C]
        flat = op("Reshape", [rows, _const("select_flat_shape", [0, -1])], "select_flatten", f32)
        values, pair = topk(flat, "select_top_pairs")  # [B, k] over k * C
        c = _const("select_nc", [num_classes])
        classes = op("Mod", [pair, c], "select_class", i64)
        row = op("Div", [pair, c], "select_row", i64)
        anchors = op("GatherElements", [anchors, row], "select_anchor", i64, {"axis": 1})
    picked = _batched_gather(graph, boxes, anchors, 4, "select_gather_boxes")  # [B, k, 4]
    keep = op("GreaterOrEqual", [values, gs.Constant("select_threshold", np.array(attrs.score_threshold, f32))],
              "select_keep", bool)
    keep_f = op("Cast", [keep], "select_keep_float", f32, {"to": 1})
    num = gs.Variable("num_detections", dtype=np.int32, shape=[batch, 1])
    count = op("ReduceSum", [op("Cast", [keep], "select_keep_int", i64, {"to": 7}), _const("select_sum_ax", [1])],
               "select_count", i64, {"keepdims": 1})
    graph.nodes.append(gs.Node("Cast", "select_num", attrs={"to": 6}, inputs=[count], outputs=[num]))
    det_scores = gs.Variable("detection_scores", dtype=f32, shape=[batch, k])
    graph.nodes.append(gs.Node("Mul", "select_scores", inputs=[values, keep_f], outputs=[det_scores]))
    keep3 = op("Unsqueeze", [keep_f, _const("select_keep_ax", [2])], "select_keep3", f32)
    det_boxes = gs.Variable("detection_boxes", dtype=f32, shape=[batch, k, 4])
    graph.nodes.append(gs.Node("Mul", "select_boxes", inputs=[picked, keep3], outputs=[det_boxes]))
    cls32 = op("Cast", [classes], "select_class_int", np.int32, {"to": 6})
    det_classes = gs.Variable("detection_classes", dtype=np.int32, shape=[batch, k])
    graph.nodes.append(gs.Node("Mul", "select_classes_masked",
                               inputs=[cls32, op("Cast", [keep], "select_keep_i32", np.int32, {"to": 6})],
                               outputs=[det_classes]))
    return [num, det_boxes, det_scores, det_classes]


def topk_select(boxes: np.ndarray, scores: np.ndarray, attrs: NmsAttributes) -> list:
    """numpy twin of :func:`add_topk_select` for one image: boxes ``[N, 4]`` corners, scores ``[N, C]`` ->
    (boxes ``[n, 4]``, scores ``[n]``, classes ``[n]``) of the kept pairs, score descending."""
    n, c = scores.shape
    k = min(int(attrs.max_output_boxes), n)
    best = scores.max(axis=1)
    anchors = np.argsort(-best, kind="stable")[:k]
    if attrs.class_agnostic:
        values, classes = best[anchors], scores[anchors].argmax(axis=1)
    else:
        flat = scores[anchors].reshape(-1)
        pair = np.argsort(-flat, kind="stable")[:k]
        values, classes, anchors = flat[pair], pair % c, anchors[pair // c]
    keep = values >= np.float32(attrs.score_threshold)
    return [boxes[anchors][keep], values[keep], classes[keep]]


def append_decode_and_nms(model: Any, num_classes: int, angle: bool, op_type: str | None,
                          attrs: NmsAttributes) -> Any:
    """Raw ONNX (``images`` -> ``output0``) -> ONNX with decode (+ NMS node); a new ModelProto.

    Graph outputs: ``boxes``, ``scores`` when ``op_type`` is None, else the four NMS outputs.
    """
    import onnx
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    if RAW_OUTPUT not in graph.tensors():
        raise ModelError(f"raw ONNX has no tensor {RAW_OUTPUT!r}; outputs are {[o.name for o in graph.outputs]}")
    rename_reserved(graph, keep={RAW_OUTPUT, graph.inputs[0].name})
    raw_shape = graph.tensors()[RAW_OUTPUT].shape or [None, None, None]
    batch = graph.inputs[0].shape[0] if graph.inputs[0].shape else "batch"
    num_anchors = raw_shape[2] if len(raw_shape) == 3 and raw_shape[2] is not None else "anchors"
    coding = 1 if angle else int(attrs.box_coding)
    boxes, scores = add_decode(graph, num_classes, angle, coding, batch, num_anchors)
    if op_type is None:
        graph.outputs = [boxes, scores]
    elif op_type == TOPK_SELECT:
        if angle or coding != 0:
            raise InputError("NMS-free top-k selection supports detect models with box_coding 0")
        graph.outputs = add_topk_select(graph, boxes, scores, attrs, batch, num_anchors, num_classes)
    else:
        graph.outputs = add_nms(graph, boxes, scores, op_type, attrs, batch)
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    _set_domain_import(out, NMS_DOMAIN if op_type in NMS_OP_TYPES else None)
    out.ir_version = model.ir_version
    for prop in model.metadata_props:
        out.metadata_props.add().CopyFrom(prop)
    out.producer_name, out.producer_version = "trtalign", _version()
    return onnx.shape_inference.infer_shapes(out) if op_type not in NMS_OP_TYPES else out


def _version() -> str:
    from trtalign import __version__

    return __version__


def _set_domain_import(model: Any, domain: str | None) -> None:
    keep = [op for op in model.opset_import if op.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    for op in keep:
        model.opset_import.add().CopyFrom(op)
    if domain:
        entry = model.opset_import.add()
        entry.domain, entry.version = domain, NMS_DOMAIN_VERSION


# ---------------------------------------------------------------------------------------------------- reading
def find_nms_nodes(model: Any) -> list:
    """The NMS nodes of ``model`` (exact op_type match, any domain)."""
    return [n for n in model.graph.node if n.op_type in NMS_OP_TYPES]


def read_nms(model: Any) -> tuple[str, NmsAttributes] | None:
    """(op_type, attributes) of the model's NMS node, or None when it has none."""
    import onnx

    nodes = find_nms_nodes(model)
    if not nodes:
        return None
    node = nodes[0]
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if isinstance(values.get("plugin_version"), bytes):
        values["plugin_version"] = values["plugin_version"].decode()
    return node.op_type, NmsAttributes.from_dict(values)


def set_nms_domain(model: Any, domain: str = "") -> Any:
    """Copy of ``model`` with its NMS nodes moved into ``domain`` (``""``: TensorRT-only file, see module doc)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in find_nms_nodes(out):
        node.domain = domain
    _set_domain_import(out, domain or None)
    return out


def expose_outputs(model: Any, names: list) -> Any:
    """Copy of ``model`` whose graph also outputs the intermediate tensors ``names`` (those that exist)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    existing = {o.name for o in out.graph.output}
    produced = {t for n in out.graph.node for t in n.output}
    infos = {v.name: v for v in out.graph.value_info}
    for name in names:
        if name in existing or name not in produced:
            continue
        if name in infos:
            out.graph.output.append(infos[name])
        else:
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return out


def make_nms_only_model(op_type: str, attrs: NmsAttributes, num_classes: int, opset: int = 17) -> Any:
    """A model with just the NMS node: inputs ``boxes`` ``[batch, N, 4|5]``, ``scores`` ``[batch, N, C]``.

    Used to run the same NMS implementation on another backend's decoded tensors (alignment with aligned NMS).
    """
    import onnx_graphsurgeon as gs

    width = 5 if op_type == ROTATED_NMS else 4
    boxes = gs.Variable(BOXES, dtype=np.float32, shape=["batch", "anchors", width])
    scores = gs.Variable(SCORES, dtype=np.float32, shape=["batch", "anchors", num_classes])
    graph = gs.Graph(inputs=[boxes, scores], opset=opset)
    graph.outputs = add_nms(graph, boxes, scores, op_type, attrs, "batch")
    model = gs.export_onnx(graph)
    model.ir_version = 8  # opset 13-17 need IR >= 7/8; keep it readable by older ONNX Runtime builds
    _set_domain_import(model, NMS_DOMAIN)
    return model
