"""The NMS reference ops as ONNX Runtime custom ops, so the exported end-to-end ONNX runs on the CPU.

Route: onnxruntime-extensions' Python custom ops (``PyOp``, declared with ``onnx_op``). They live in the extensions'
domain (``ai.onnx.contrib``) and support what the NMS nodes need: float / int / string attributes (declared here,
cast by the extensions), two float32 inputs with dynamic shapes (empty ``N = 0`` included) and four outputs whose
types are fixed per op (int32, float32, float32, int32) and whose shapes are dynamic.

Float16 NMS inputs: the extensions' Python ops take no float16, so :func:`prepare_model_for_ort` puts Casts around
such a node (float16 -> float32 in, float32 -> float16 out) and sets the node's ``scores_fp16`` attribute (ORT copy
only); the kernel then hands the reference float16 scores, which it compares with the threshold rounded to float16,
as TensorRT's FP16 EfficientNMS does. The Python function holds the GIL, so ORT's intra-op threads do not speed the
NMS up.

TensorRT's plugin creators require ``background_class``, ``score_activation`` and ``box_coding`` on the node
(``validateRequiredAttributesExist`` in ``EfficientNMSPluginCreator::createPlugin``); this route fills the defaults,
so a foreign file missing them runs here, and :func:`prepare_model_for_ort` logs a warning that TensorRT will reject it.

Usage (what the OrtRunner does)::

    model = prepare_model_for_ort(onnx.load(path))        # NMS nodes retargeted to ai.onnx.contrib
    session = onnxruntime.InferenceSession(model.SerializeToString(), make_session_options(),
                                           providers=["CPUExecutionProvider"])

Nothing is registered at import time; :func:`register_custom_ops` (called by :func:`make_session_options`) does it
once per process.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from trtalign.core.errors import ModelError
from trtalign.core.lazy import require
from trtalign.core.logging import get_logger
from trtalign.plugins.reference.nms import efficient_nms, efficient_rotated_nms

#: op types we own, matched exactly (never by substring), whatever their domain
NMS_OP_TYPES = ("EfficientNMS_TRT", "EfficientRotatedNMS_TRT")
#: attribute name -> python type; the ones without a default are required on the node
ATTRIBUTE_TYPES: dict[str, type] = {
    "score_threshold": float,
    "iou_threshold": float,
    "max_output_boxes": int,
    "background_class": int,
    "score_activation": int,
    "class_agnostic": int,
    "box_coding": int,
    "plugin_version": str,
}
ATTRIBUTE_DEFAULTS: dict[str, Any] = {
    "background_class": -1,
    "score_activation": 0,
    "class_agnostic": 0,
    "box_coding": 0,
    "plugin_version": "1",
}
#: attributes TensorRT's plugin creator requires although the plugin has defaults for them
TRT_REQUIRED_ATTRIBUTES = ("background_class", "score_activation", "box_coding")
#: attribute set on the ORT copy only: 1 when the node's scores are float16 in the graph (see the module docstring)
FP16_ATTRIBUTE = "scores_fp16"
CUSTOM_DOMAIN = "ai.onnx.contrib"  # onnxruntime_extensions.default_opset_domain()
CUSTOM_DOMAIN_VERSION = 1

_registered: dict[str, Any] = {}
#: session config entry marking SessionOptions that already have the custom-op library
_MARKER = "trtalign.nms_custom_ops_library"


def _extensions():
    return require("onnxruntime_extensions", purpose="running the NMS nodes in ONNX Runtime")


def _kernel(reference):
    def kernel(boxes: np.ndarray, scores: np.ndarray, **attrs: Any):
        if attrs.pop(FP16_ATTRIBUTE, 0):  # the graph's float16 values, cast to float32 exactly: back to float16
            boxes, scores = boxes.astype(np.float16), scores.astype(np.float16)
        out = reference(boxes, scores, **attrs)
        return (out.num_detections, out.detection_boxes, out.detection_scores, out.detection_classes)

    return kernel


def register_custom_ops() -> str:
    """Register both NMS ops with onnxruntime-extensions (once per process); returns the custom-op library path."""
    ext = _extensions()
    if CUSTOM_DOMAIN != ext.default_opset_domain():
        raise ModelError(f"onnxruntime-extensions uses domain {ext.default_opset_domain()!r}, "
                         f"expected {CUSTOM_DOMAIN!r}")
    dt = ext.PyCustomOpDef
    kinds = {float: dt.dt_float, int: dt.dt_int64, str: dt.dt_string}
    for op_type, reference in (("EfficientNMS_TRT", efficient_nms),
                               ("EfficientRotatedNMS_TRT", efficient_rotated_nms)):
        if op_type in _registered:
            continue
        _registered[op_type] = ext.onnx_op(
            op_type=op_type,
            inputs=[dt.dt_float, dt.dt_float],
            outputs=[dt.dt_int32, dt.dt_float, dt.dt_float, dt.dt_int32],
            attrs={**{name: kinds[kind] for name, kind in ATTRIBUTE_TYPES.items()}, FP16_ATTRIBUTE: dt.dt_int64},
        )(_kernel(reference))
    return ext.get_library_path()


def make_session_options(base=None):
    """``onnxruntime.SessionOptions`` (``base`` or a new one) with the NMS custom-op library registered.

    Idempotent per object: a library registered twice on one ``SessionOptions`` makes ONNX Runtime fail at session
    creation ("Conflicting with a registered kernel"), so the options carry a marker config entry and a second call
    on the same object only returns it.
    """
    ort = require("onnxruntime", purpose="ONNX Runtime sessions")
    library = register_custom_ops()
    options = base if base is not None else ort.SessionOptions()
    try:
        already = options.get_session_config_entry(_MARKER) == library
    except RuntimeError:  # "does not have configuration with key"
        already = False
    if not already:
        options.register_custom_ops_library(library)
        options.add_session_config_entry(_MARKER, library)
    return options


def _attribute_value(attr) -> Any:
    onnx = require("onnx")
    return onnx.helper.get_attribute_value(attr)


def prepare_model_for_ort(model):
    """A copy of ``model`` whose NMS nodes run on the registered custom ops.

    Every node whose ``op_type`` is exactly ``EfficientNMS_TRT`` or ``EfficientRotatedNMS_TRT`` (any domain, also
    inside subgraphs) moves to domain ``ai.onnx.contrib``; its attributes are kept, attributes the plugin defaults
    (background_class, score_activation, class_agnostic, box_coding, plugin_version) are filled in when absent, and
    the opset import for ``ai.onnx.contrib`` is added. A node missing background_class, score_activation or
    box_coding draws a warning (TensorRT's plugin creator rejects it). A node with float16 inputs gets Casts around
    it and ``scores_fp16=1`` (FP16 threshold comparison, see the module docstring).

    Raises:
        ModelError: a node without score_threshold, iou_threshold or max_output_boxes, or with an attribute of the
        wrong type, or without 2 inputs and 4 outputs.
    """
    onnx = require("onnx")
    out = copy.deepcopy(model)
    found = 0
    types = _ElemTypes(model)  # the unmodified input: shape inference runs on a valid graph
    for graph in _all_graphs(out.graph):
        for node in [n for n in graph.node if n.op_type in NMS_OP_TYPES]:
            found += 1
            _prepare_node(onnx, graph, node, types)
    if found and not any(op.domain == CUSTOM_DOMAIN for op in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid(CUSTOM_DOMAIN, CUSTOM_DOMAIN_VERSION))
    return out


def _prepare_node(onnx, graph, node, types: "_ElemTypes") -> None:
    present = {a.name: a for a in node.attribute}
    missing = [name for name in TRT_REQUIRED_ATTRIBUTES if name not in present]
    if missing:
        get_logger().warning(
            "%s node %r has no attribute %s: ONNX Runtime runs it with the plugin's defaults, but TensorRT will "
            "reject this file (its plugin creator requires background_class, score_activation and box_coding); "
            "add the attributes, e.g. by re-exporting with trtalign export", node.op_type, node.name,
            ", ".join(repr(m) for m in missing))
    for name, kind in ATTRIBUTE_TYPES.items():
        if name not in present:
            if name not in ATTRIBUTE_DEFAULTS:
                raise ModelError(f"{node.op_type} node {node.name!r} has no attribute {name!r}; "
                                 f"required: score_threshold, iou_threshold, max_output_boxes")
            node.attribute.append(onnx.helper.make_attribute(name, ATTRIBUTE_DEFAULTS[name]))
            continue
        value = _attribute_value(present[name])
        if isinstance(value, bytes):
            value = value.decode()
        ok = isinstance(value, str) if kind is str else isinstance(value, (int, float)) and not isinstance(
            value, bool) and (kind is float or float(value).is_integer())
        if not ok:
            raise ModelError(f"{node.op_type} node {node.name!r}: attribute {name!r} must be {kind.__name__}, "
                             f"got {value!r}")
        if present[name].type != onnx.helper.make_attribute(name, kind(value)).type:  # e.g. 0 for 0.0
            node.attribute.remove(present[name])
            node.attribute.append(onnx.helper.make_attribute(name, kind(value)))
    if len(node.input) != 2 or len(node.output) != 4:
        raise ModelError(f"{node.op_type} node {node.name!r}: expected 2 inputs (boxes, scores) and 4 outputs, "
                         f"got {len(node.input)} inputs and {len(node.output)} outputs")
    node.domain = CUSTOM_DOMAIN
    fp16 = onnx.TensorProto.FLOAT16
    half = types.get(node.input[1]) == fp16
    for a in [a for a in node.attribute if a.name == FP16_ATTRIBUTE]:
        node.attribute.remove(a)
    node.attribute.append(onnx.helper.make_attribute(FP16_ATTRIBUTE, int(half)))
    if half or types.get(node.input[0]) == fp16:
        _cast_around(onnx, graph, node, types)


def _cast_around(onnx, graph, node, types: "_ElemTypes") -> None:
    """float16 NMS inputs -> float32 Casts in front; float32 -> float16 Casts behind the boxes and scores outputs."""
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    before, after = [], []
    for i in (0, 1):
        if types.get(node.input[i]) == f16:
            name = f"{node.input[i]}__{node.name or node.op_type}_fp32"
            before.append(onnx.helper.make_node("Cast", [node.input[i]], [name], to=f32, name=f"{name}_cast"))
            node.input[i] = name
    for i in (1, 2):
        if types.get(node.output[i]) in (None, f16):  # the TensorRT FP16 plugin writes float16 boxes and scores
            name = f"{node.output[i]}__fp32"
            after.append(onnx.helper.make_node("Cast", [name], [node.output[i]], to=f16, name=f"{name}_cast"))
            node.output[i] = name
    for v in graph.value_info:  # the renamed tensors' old float16 annotations would now be wrong
        if v.name in node.output or v.name in node.input:
            v.type.tensor_type.elem_type = f32
    nodes = list(graph.node)
    at = next(k for k, n in enumerate(nodes) if n is node)
    del graph.node[:]
    graph.node.extend(nodes[:at] + before + [node] + after + nodes[at + 1:])


class _ElemTypes:
    """Element type of a tensor by name: graph inputs / outputs / value_info / initializers, else shape inference
    (run once, only when needed)."""

    def __init__(self, model):
        self.model = model
        self.known: dict[str, int] | None = None
        self.inferred = False

    def _collect(self, model) -> dict[str, int]:
        out: dict[str, int] = {}
        for graph in _all_graphs(model.graph):
            for v in list(graph.input) + list(graph.output) + list(graph.value_info):
                if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
                    out[v.name] = v.type.tensor_type.elem_type
            for t in graph.initializer:
                out[t.name] = t.data_type
        return out

    def get(self, name: str) -> int | None:
        if self.known is None:
            self.known = self._collect(self.model)
        if name not in self.known and not self.inferred:
            self.inferred = True
            onnx = require("onnx")
            try:
                self.known.update(self._collect(onnx.shape_inference.infer_shapes(self.model)))
            except Exception:  # noqa: BLE001 - inference is a best effort: unknown stays float32
                pass
        return self.known.get(name)


def _all_graphs(graph):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _all_graphs(attr.g)
            for sub in attr.graphs:
                yield from _all_graphs(sub)
