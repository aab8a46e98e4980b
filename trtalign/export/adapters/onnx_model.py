"""Bring your own ONNX: a plain ONNX detector plus a declared raw-output layout (``ModelLayout`` in the config).

The declared output must be ``[B, 4 + C (+1 angle for obb), N]`` (``yolo-channels-first``) or its transpose
``[B, N, 4 + C (+1)]`` (``yolo-channels-last``), boxes as cx, cy, w, h in input pixels and scores after sigmoid.
The adapter checks the file against the declaration and rewrites it into the raw-ONNX contract (input ``images``,
output ``output0`` channels first), dropping any other outputs.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from trtalign.core.config import ModelLayout
from trtalign.core.enums import Task
from trtalign.core.errors import ConfigError, InputError, ModelError
from trtalign.export.adapters.base import ModelAdapter, ModelInfo
from trtalign.export.adapters.registry import register_adapter


def _dims(value_info: Any) -> list:
    out = []
    for d in value_info.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return out


@register_adapter
class OnnxModelAdapter(ModelAdapter):
    family = "onnx"
    suffixes = (".onnx",)

    def __init__(self, path: str | os.PathLike, layout: ModelLayout | dict | None = None, **options: Any):
        super().__init__(path)
        import onnx

        try:
            self.proto = onnx.load(str(self.path))
        except Exception as exc:
            raise ModelError(f"cannot read {self.path} as ONNX ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        if layout is None:
            layout = self._layout_from_metadata()
        if layout is None:
            raise ConfigError(f"{self.path.name}: a plain ONNX model needs a declared layout (config `layout:` with "
                              f"task, num_classes, format, stride)")
        try:
            self.declared = layout if isinstance(layout, ModelLayout) else ModelLayout.model_validate(layout)
        except Exception as exc:
            raise ConfigError(f"invalid layout for {self.path.name}: {str(exc).splitlines()[0]}") from None
        self._expose_declared_output()
        self._check_layout()

    def _expose_declared_output(self) -> None:
        """A declared output that is an intermediate tensor (e.g. ``output0`` of an exported end-to-end file)
        becomes the graph output, so an exported file can be re-exported with other NMS settings."""
        import onnx

        from trtalign.export.graph_nms import expose_outputs

        name = self.declared.output
        if not name or name in {o.name for o in self.proto.graph.output}:
            return
        if name in {t for n in self.proto.graph.node for t in n.output}:
            inferred = onnx.shape_inference.infer_shapes(self.proto)
            exposed = expose_outputs(inferred, [name])
            keep = [o for o in exposed.graph.output if o.name == name]
            del exposed.graph.output[:]
            exposed.graph.output.extend(keep)
            self.proto = exposed

    def _layout_from_metadata(self) -> ModelLayout | None:
        from trtalign.export.metadata import read_metadata

        meta = read_metadata(self.proto)
        if not meta or "layout" not in meta:
            return None
        lay = meta["layout"]
        return ModelLayout(task=meta.get("task", "detect"), num_classes=lay["num_classes"],
                           names=meta.get("names"), stride=meta.get("stride", 32), output="output0")

    # ------------------------------------------------------------------ checks
    def _output(self) -> Any:
        outputs = list(self.proto.graph.output)
        if not outputs:
            raise ModelError(f"{self.path.name} has no outputs")
        name = self.declared.output or outputs[0].name
        for o in outputs:
            if o.name == name:
                return o
        raise ModelError(f"{self.path.name}: declared output {name!r} not found; outputs are "
                         f"{[o.name for o in outputs]}")

    def _check_layout(self) -> None:
        lay = self.declared
        inputs = [i for i in self.proto.graph.input if i.name not in {t.name for t in self.proto.graph.initializer}]
        if len(inputs) != 1:
            raise ModelError(f"{self.path.name}: expected one image input, found {[i.name for i in inputs]}")
        in_dims = _dims(inputs[0])
        if len(in_dims) != 4 or in_dims[1] not in (3, None):
            raise ModelError(f"{self.path.name}: input {inputs[0].name!r} must be [B, 3, H, W], got {in_dims}")
        dims = _dims(self._output())
        want = 4 + lay.num_classes + (1 if lay.task == "obb" else 0)
        axis = 1 if lay.format == "yolo-channels-first" else 2
        if len(dims) != 3 or (isinstance(dims[axis], int) and dims[axis] != want):
            raise ModelError(
                f"{self.path.name}: output {self._output().name!r} has shape {dims}, but the declared layout "
                f"({lay.format}, task {lay.task}, {lay.num_classes} classes) expects "
                f"{'[B, %d, N]' % want if axis == 1 else '[B, N, %d]' % want}")

    # ------------------------------------------------------------------ adapter API
    @property
    def info(self) -> ModelInfo:
        lay = self.declared
        names = list(lay.names) if lay.names else [str(i) for i in range(lay.num_classes)]
        if len(names) != lay.num_classes:
            raise ConfigError(f"layout.names has {len(names)} entries but num_classes is {lay.num_classes}")
        return ModelInfo(family=self.family, task=Task.parse(lay.task), names=names, stride=lay.stride,
                         strides=[lay.stride], source=self.path.name, sha256=self.sha256)

    def input_hw(self) -> tuple:
        inputs = [i for i in self.proto.graph.input if i.name not in {t.name for t in self.proto.graph.initializer}]
        d = _dims(inputs[0])
        return d[2], d[3]

    def to_raw_onnx(self, imgsz: int | Sequence[int], batch: int = 1, dynamic_batch: bool = False,
                    opset: int = 17) -> Any:
        import onnx
        import onnx_graphsurgeon as gs

        h, w = self.check_imgsz(imgsz)
        fh, fw = self.input_hw()
        if (isinstance(fh, int) and fh != h) or (isinstance(fw, int) and fw != w):
            raise InputError(f"{self.path.name} has a fixed input size {fh}x{fw}; --imgsz {h}x{w} does not match")
        graph = gs.import_onnx(self.proto)
        inp = graph.inputs[0]
        fb = inp.shape[0] if inp.shape else None
        if isinstance(fb, int) and (dynamic_batch or fb != batch):
            want = "a dynamic batch" if dynamic_batch else f"batch {batch}"
            raise InputError(f"{self.path.name} has a fixed batch {fb}; cannot export {want}")
        b = "batch" if dynamic_batch else batch
        inp.name, inp.shape = "images", [b, 3, h, w]
        out = graph.tensors()[self._output().name]
        if self.declared.format == "yolo-channels-last":
            t = gs.Variable("output0", dtype=out.dtype)
            graph.nodes.append(gs.Node("Transpose", "output0_to_channels_first", attrs={"perm": [0, 2, 1]},
                                       inputs=[out], outputs=[t]))
            out = t
        else:
            out.name = "output0"
        out.shape = None  # filled by shape inference below
        graph.outputs = [out]
        graph.cleanup().toposort()
        proto = gs.export_onnx(graph)
        proto = onnx.shape_inference.infer_shapes(proto)
        return proto
