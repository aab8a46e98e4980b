"""ONNX Runtime (CPU) runner. Files containing our NMS nodes run through :mod:`trtalign.plugins.ort_ops`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from trtalign.core.errors import ModelError
from trtalign.core.lazy import require
from trtalign.runtime.base import Runner, TensorMeta

#: NMS node attributes that only TensorRT's parser reads (dropped before ONNX Runtime sees the node)
TRT_ONLY_ATTRIBUTES = ("plugin_namespace",)


def load_model_proto(source: str | os.PathLike | bytes | Any) -> Any:
    """ModelProto from a path, serialized bytes or a ModelProto (returned as is)."""
    onnx = require("onnx")
    if isinstance(source, onnx.ModelProto):
        return source
    try:
        if isinstance(source, (bytes, bytearray)):
            return onnx.load_from_string(bytes(source))
        path = Path(source)
        if not path.is_file():
            raise ModelError(f"ONNX file not found: {path}")
        return onnx.load(str(path))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot read ONNX model {source if not isinstance(source, bytes) else '<bytes>'}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


def prepare_for_ort(model: Any) -> tuple[Any, bool]:
    """(model ready for ONNX Runtime, whether it needs the NMS custom ops)."""
    from trtalign.export.graph_nms import find_nms_nodes

    nodes = find_nms_nodes(model)
    if not nodes:
        return model, False
    onnx = require("onnx")
    ort_ops = require("trtalign.plugins.ort_ops", purpose="running NMS nodes in ONNX Runtime")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if node.op_type in ort_ops.NMS_OP_TYPES:
            keep = [a for a in node.attribute if a.name not in TRT_ONLY_ATTRIBUTES]
            del node.attribute[:]
            node.attribute.extend(keep)
    return ort_ops.prepare_model_for_ort(copy), True


def _np_dtype(ort_type: str) -> str:
    table = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int32)": "int32",
             "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(bool)": "bool",
             "tensor(double)": "float64"}
    return table.get(ort_type, ort_type)


from trtalign.core.ort import THREADS_ENV, ort_session, ort_threads  # noqa: E402,F401 (re-exported)


class OrtRunner(Runner):
    """Runs an ONNX model with ONNX Runtime on the CPU (``name`` e.g. ``ort-fp32``, ``ort-int8sim``).

    Args:
        model: a path, serialized bytes, an ``onnx.ModelProto``, or a loader returning one of those (e.g.
            :class:`trtalign.export.loaders.QdqOnnxFromPlan`), called on :meth:`activate`.
        name: the runner name in results. providers / session_options: passed to ONNX Runtime.

    Raises (on activate): ModelError for a missing / unreadable model or one ONNX Runtime refuses.

    Example::

        with OrtRunner("model.onnx") as runner:
            outputs = runner.infer({"images": x})  # {"num_detections": ..., "detection_boxes": ..., ...}
    """

    name = "ort-fp32"

    def __init__(self, model: str | os.PathLike | bytes | Any, name: str | None = "ort-fp32",
                 providers: list | None = None, session_options: Any = None):
        super().__init__(name)
        self.source = model
        self.providers = providers or ["CPUExecutionProvider"]
        self.session_options = session_options
        self.session: Any = None
        self.uses_custom_ops = False

    def activate_impl(self) -> None:
        threads = ort_threads()  # a bad value fails before any work
        from trtalign.export.loaders import resolve

        model, custom = prepare_for_ort(load_model_proto(resolve(self.source)))
        options = self.session_options
        if custom:
            ort_ops = require("trtalign.plugins.ort_ops")
            options = ort_ops.make_session_options(options)
        self.uses_custom_ops = custom
        try:
            self.session = ort_session(model, options, threads, self.providers, quiet=False)
        except Exception as exc:
            raise ModelError(f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0]}") from None

    def deactivate_impl(self) -> None:
        self.session = None

    def input_metadata(self) -> list[TensorMeta]:
        return [TensorMeta(i.name, _np_dtype(i.type), tuple(i.shape)) for i in self.session.get_inputs()]

    def output_metadata(self) -> list[TensorMeta]:
        return [TensorMeta(o.name, _np_dtype(o.type), tuple(o.shape)) for o in self.session.get_outputs()]

    def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        feeds = {m.name: np.asarray(feed_dict[m.name]) for m in self.input_metadata()}
        try:
            values = self.session.run(names, feeds)
        except Exception as exc:
            raise ModelError(f"{self.name}: inference failed: {str(exc).splitlines()[0]}") from None
        return dict(zip(names, values))
