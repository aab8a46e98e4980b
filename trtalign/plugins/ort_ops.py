"""The NMS reference ops as ONNX Runtime custom ops, so the exported end-to-end ONNX runs on the CPU.

Route: onnxruntime-extensions' Python custom ops (``PyOp``, declared with ``onnx_op``). They live in the extensions'
domain (``ai.onnx.contrib``) and support what the NMS nodes need: float / int / string attributes (declared here,
cast by the extensions), two float32 inputs with dynamic shapes (empty ``N = 0`` included) and four outputs whose
types are fixed per op (int32, float32, float32, int32) and whose shapes are dynamic.

Limits of this route: inputs must be float32 (a float16 graph needs a Cast before the NMS node); the Python function
holds the GIL, so ORT's intra-op threads do not speed the NMS up.

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
CUSTOM_DOMAIN = "ai.onnx.contrib"  # onnxruntime_extensions.default_opset_domain()
CUSTOM_DOMAIN_VERSION = 1

_registered: dict[str, Any] = {}
#: session config entry marking SessionOptions that already have the custom-op library
_MARKER = "trtalign.nms_custom_ops_library"


def _extensions():
    return require("onnxruntime_extensions", purpose="running the NMS nodes in ONNX Runtime")


def _kernel(reference):
    def kernel(boxes: np.ndarray, scores: np.ndarray, **attrs: Any):
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
            attrs={name: kinds[kind] for name, kind in ATTRIBUTE_TYPES.items()},
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
    the opset import for ``ai.onnx.contrib`` is added. Raises ModelError for a node without score_threshold,
    iou_threshold or max_output_boxes, or with an attribute of the wrong type.
    """
    onnx = require("onnx")
    out = copy.deepcopy(model)
    found = 0
    for node in _all_nodes(out.graph):
        if node.op_type not in NMS_OP_TYPES:
            continue
        found += 1
        present = {a.name: a for a in node.attribute}
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
    if found and not any(op.domain == CUSTOM_DOMAIN for op in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid(CUSTOM_DOMAIN, CUSTOM_DOMAIN_VERSION))
    return out


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                yield from _all_nodes(attr.g)
            for sub in attr.graphs:
                yield from _all_nodes(sub)
