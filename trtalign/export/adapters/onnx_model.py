"""Bring your own ONNX: a plain ONNX detector plus a declared head layout (config ``layout:``, or a dict).

What real exporters emit differs; the layout says it (:class:`HeadLayout`):

- ``format``: ``yolo-channels-first`` ``[B, K, N]`` or ``yolo-channels-last`` ``[B, N, K]``;
- ``box``: ``cxcywh`` or ``xyxy`` (input pixels), in channels 0..3;
- ``objectness``: the channel index of an objectness score (score = objectness x class score), or None;
- ``scores``: ``activated`` (probabilities) or ``logits`` (a Sigmoid is added);
- ``angle`` / ``angle_unit``: the channel of an OBB angle, ``radians`` or ``degrees``;
- ``output``: the output's name (default: the first output); an intermediate tensor is exposed.

``preset`` fills the fields for a family (:data:`PRESETS`: ``yolov5``, ``yolov6``, ``yolov7``, ``yolox``,
``yolov8`` / ``ultralytics``, ``rtmdet``); fields given next to it win. Names and stride come from the file's own
metadata when the exporter wrote them (YOLOv5 and ultralytics write ``names`` and ``stride`` into
``metadata_props``), else from the layout. The class count follows from the channel count when not given.

The adapter rewrites the file into the raw-ONNX contract: input ``images``, output ``output0`` ``[B, 4 + C (+1), N]``
(cx, cy, w, h in pixels, class scores x objectness, angle in radians) with a few ops after the declared output, and
checks the declaration against the numbers on a probe input (:meth:`OnnxModelAdapter.check_numbers`): a layout that
does not fit is one ModelError naming what was expected and what was found.
"""

from __future__ import annotations

import ast
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional, Sequence

import numpy as np

from trtalign.core.enums import Task
from trtalign.core.errors import ConfigError, InputError, ModelError, choices_text
from trtalign.export.adapters.base import ModelAdapter, ModelInfo
from trtalign.export.adapters.registry import register_adapter

FORMATS = ("yolo-channels-first", "yolo-channels-last")
BOXES = ("cxcywh", "xyxy")
SCORES = ("activated", "logits")
ANGLE_UNITS = ("radians", "degrees")

#: family -> layout fields its own exporter produces
PRESETS: dict = {
    "yolov5": {"format": "yolo-channels-last", "box": "cxcywh", "objectness": 4, "scores": "activated"},
    "yolov6": {"format": "yolo-channels-last", "box": "cxcywh", "objectness": 4, "scores": "activated"},
    "yolov7": {"format": "yolo-channels-last", "box": "cxcywh", "objectness": 4, "scores": "activated"},
    "yolox": {"format": "yolo-channels-last", "box": "cxcywh", "objectness": 4, "scores": "activated"},
    "yolov8": {"format": "yolo-channels-first", "box": "cxcywh", "objectness": None, "scores": "activated"},
    "ultralytics": {"format": "yolo-channels-first", "box": "cxcywh", "objectness": None, "scores": "activated"},
    "rtmdet": {"format": "yolo-channels-last", "box": "xyxy", "objectness": None, "scores": "activated"},
}


@dataclass(frozen=True)
class HeadLayout:
    """The declared layout of a bring-your-own raw head (see the module docstring)."""

    task: str = "detect"
    output: Optional[str] = None
    format: str = "yolo-channels-first"
    num_classes: Optional[int] = None
    names: Optional[list] = None
    stride: Optional[int] = None
    box: str = "cxcywh"
    objectness: Optional[int] = None
    scores: str = "activated"
    angle: Optional[int] = None
    angle_unit: str = "radians"
    preset: Optional[str] = None

    def __post_init__(self) -> None:
        for name, value, valid in (("format", self.format, FORMATS), ("box", self.box, BOXES),
                                   ("scores", self.scores, SCORES), ("angle_unit", self.angle_unit, ANGLE_UNITS),
                                   ("task", self.task, ("detect", "obb"))):
            if value not in valid:
                raise ConfigError(f"layout.{name} {value!r} is not valid; valid choices: {choices_text(valid)}")
        if self.num_classes is not None and int(self.num_classes) < 1:
            raise ConfigError(f"layout.num_classes must be >= 1, got {self.num_classes}")
        if self.objectness is not None and int(self.objectness) < 4:
            raise ConfigError(f"layout.objectness must be a channel index >= 4 (0..3 are the box), got {self.objectness}")

    @classmethod
    def parse(cls, layout: Any) -> "HeadLayout":
        """From a HeadLayout, a config ``ModelLayout`` or a dict; ``preset`` fills fields not given."""
        if isinstance(layout, HeadLayout):
            return layout
        if hasattr(layout, "model_dump"):  # a config ModelLayout: its defaults leave room for a preset / metadata
            defaults = {name: f.default for name, f in type(layout).model_fields.items()}
            data = {k: v for k, v in layout.model_dump().items() if v is not None and v != defaults.get(k)}
        elif isinstance(layout, dict):
            data = dict(layout)
        else:
            raise ConfigError(f"a layout must be a mapping, got {type(layout).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown layout field(s) {unknown}; valid fields: {choices_text(sorted(known))}")
        preset = data.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise ConfigError(f"unknown layout preset {preset!r}; valid choices: {choices_text(PRESETS)}")
            data = {**PRESETS[preset], **data}
        if data.get("task") == "obb" and data.get("angle") is None:
            data["angle"] = -1  # last channel, resolved against the channel count
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


def _dims(value_info: Any) -> list:
    out = []
    for d in value_info.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return out


def exporter_metadata(proto: Any) -> dict:
    """``names`` (list) and ``stride`` (int) from an exporter's own ``metadata_props`` (YOLOv5 and ultralytics
    write ``names`` as a Python dict literal and ``stride`` as a number), when present and readable."""
    props = {p.key: p.value for p in proto.metadata_props}
    out: dict = {}
    if "names" in props:
        try:
            names = ast.literal_eval(props["names"])
        except (ValueError, SyntaxError):
            names = None
        if isinstance(names, dict) and names and all(isinstance(k, int) for k in names):
            out["names"] = [str(names[k]) for k in sorted(names)]
        elif isinstance(names, (list, tuple)) and names:
            out["names"] = [str(n) for n in names]
    if "stride" in props:
        try:
            out["stride"] = int(float(props["stride"]))
        except ValueError:
            pass
    return out


@register_adapter
class OnnxModelAdapter(ModelAdapter):
    family = "onnx"
    suffixes = (".onnx",)

    def __init__(self, path: str | os.PathLike, layout: Any = None, **options: Any):
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
                              f"a preset ({', '.join(PRESETS)}) or task, num_classes, format, stride)")
        try:
            declared = HeadLayout.parse(layout)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"invalid layout for {self.path.name}: {str(exc).splitlines()[0]}") from None
        self.declared = self._complete(declared)
        self._expose_declared_output()
        self._check_layout()
        self._checked_numbers = False

    # ------------------------------------------------------------------ layout resolution
    def _complete(self, lay: HeadLayout) -> HeadLayout:
        """Fill names / stride from the exporter's metadata, num_classes from names or the channel count."""
        meta = exporter_metadata(self.proto)
        if lay.names is None and lay.num_classes is not None and "names" in meta and \
                len(meta["names"]) != int(lay.num_classes):
            raise ModelError(f"{self.path.name}: the exporter's metadata names {len(meta['names'])} classes but the "
                             f"layout declares num_classes {lay.num_classes}; a YOLOv5-style head [B, N, 5 + C] has "
                             f"an objectness channel: declare objectness: 4 (or preset: yolov5)")
        names = lay.names if lay.names is not None else meta.get("names")
        stride = lay.stride if lay.stride is not None else meta.get("stride", 32)
        num = lay.num_classes
        if num is None and names is not None:
            num = len(names)
        if num is None:
            dims = self._output_dims(lay.output)
            axis = 1 if lay.format == FORMATS[0] else 2
            k = dims[axis] if len(dims) == 3 else None
            if not isinstance(k, int):
                raise ConfigError(f"{self.path.name}: layout.num_classes is not given and the output's channel "
                                  f"count is not static ({dims})")
            num = k - 4 - (1 if lay.objectness is not None else 0) - (1 if lay.angle is not None else 0)
            if num < 1:
                raise ModelError(f"{self.path.name}: output shape {dims} leaves {num} class channels for the "
                                 f"declared layout ({self._describe(lay)})")
        return replace(lay, names=names, stride=int(stride), num_classes=int(num))

    @staticmethod
    def _describe(lay: HeadLayout) -> str:
        parts = [lay.format, lay.box, f"{lay.num_classes} classes" if lay.num_classes else "classes from shape"]
        if lay.objectness is not None:
            parts.append(f"objectness at {lay.objectness}")
        if lay.angle is not None:
            parts.append(f"angle at {lay.angle} ({lay.angle_unit})")
        parts.append(f"scores {lay.scores}")
        return ", ".join(parts)

    @property
    def channels_in(self) -> int:
        """The channel count the declared layout expects in the source output."""
        lay = self.declared
        return 4 + int(lay.num_classes) + (1 if lay.objectness is not None else 0) + (1 if lay.angle is not None else 0)

    def _channel_roles(self) -> tuple:
        """(objectness index or None, class start, angle index or None) in the source channels."""
        lay = self.declared
        k = self.channels_in
        angle = None if lay.angle is None else (lay.angle % k)
        obj = lay.objectness
        taken = {0, 1, 2, 3} | ({obj} if obj is not None else set()) | ({angle} if angle is not None else set())
        rest = [c for c in range(k) if c not in taken]
        if obj is not None and obj >= k or angle is not None and angle < 4 or \
                rest != list(range(rest[0], rest[0] + len(rest))):
            raise ConfigError(f"{self.path.name}: layout ({self._describe(lay)}) leaves the class channels "
                              f"{rest} non-contiguous in {k} channels")
        return obj, rest[0], angle

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

    def _layout_from_metadata(self) -> dict | None:
        from trtalign.export.metadata import read_metadata

        meta = read_metadata(self.proto)
        if not meta or "layout" not in meta:
            return None
        lay = meta["layout"]
        return {"task": meta.get("task", "detect"), "num_classes": lay["num_classes"], "names": meta.get("names"),
                "stride": meta.get("stride", 32), "output": "output0"}

    # ------------------------------------------------------------------ checks
    def _output(self, name: str | None = None) -> Any:
        outputs = list(self.proto.graph.output)
        if not outputs:
            raise ModelError(f"{self.path.name} has no outputs")
        name = name or (self.declared.output if hasattr(self, "declared") else None) or outputs[0].name
        for o in outputs:
            if o.name == name:
                return o
        raise ModelError(f"{self.path.name}: declared output {name!r} not found; outputs are "
                         f"{[o.name for o in outputs]}")

    def _output_dims(self, name: str | None) -> list:
        return _dims(self._output(name))

    def _check_layout(self) -> None:
        lay = self.declared
        inputs = [i for i in self.proto.graph.input if i.name not in {t.name for t in self.proto.graph.initializer}]
        if len(inputs) != 1:
            raise ModelError(f"{self.path.name}: expected one image input, found {[i.name for i in inputs]}")
        in_dims = _dims(inputs[0])
        if len(in_dims) != 4 or in_dims[1] not in (3, None):
            raise ModelError(f"{self.path.name}: input {inputs[0].name!r} must be [B, 3, H, W], got {in_dims}")
        dims = _dims(self._output())
        want = self.channels_in
        axis = 1 if lay.format == FORMATS[0] else 2
        if len(dims) != 3 or (isinstance(dims[axis], int) and dims[axis] != want):
            raise ModelError(
                f"{self.path.name}: output {self._output().name!r} has shape {dims}, but the declared layout "
                f"(task {lay.task}, {self._describe(lay)}) expects "
                f"{'[B, %d, N]' % want if axis == 1 else '[B, N, %d]' % want}")
        self._channel_roles()

    # ------------------------------------------------------------------ adapter API
    @property
    def info(self) -> ModelInfo:
        lay = self.declared
        names = list(lay.names) if lay.names else [str(i) for i in range(lay.num_classes)]
        if len(names) != lay.num_classes:
            raise ConfigError(f"layout.names has {len(names)} entries but num_classes is {lay.num_classes}")
        return ModelInfo(family=self.family, task=Task.parse(lay.task), names=names, stride=lay.stride,
                         strides=[lay.stride], source=self.path.name, sha256=self.sha256)

    def layout_dict(self) -> dict:
        return {**self.layout.to_dict(), "source_layout": self.declared.to_dict()}

    def input_hw(self) -> tuple:
        inputs = [i for i in self.proto.graph.input if i.name not in {t.name for t in self.proto.graph.initializer}]
        d = _dims(inputs[0])
        return d[2], d[3]

    def to_raw_onnx(self, imgsz: int | Sequence[int], batch: int = 1, dynamic_batch: bool = False,
                    opset: int = 17) -> Any:
        import onnx
        import onnx_graphsurgeon as gs

        from trtalign.export.graph_nms import rename_reserved

        h, w = self.check_imgsz(imgsz)
        fh, fw = self.input_hw()
        if (isinstance(fh, int) and fh != h) or (isinstance(fw, int) and fw != w):
            raise InputError(f"{self.path.name} has a fixed input size {fh}x{fw}; --imgsz {h}x{w} does not match")
        graph = gs.import_onnx(self.proto)
        inp = graph.inputs[0]
        src = graph.tensors()[self._output().name]
        keep = {inp.name} | ({src.name} if self._plain() else set())
        self._renamed = rename_reserved(graph, keep=keep)  # e.g. YOLOv5's inner 'output0' before ours is added
        fb = inp.shape[0] if inp.shape else None
        relax = isinstance(fb, int) and (dynamic_batch or fb != batch)
        b = "batch" if dynamic_batch else batch
        inp.name, inp.shape = "images", [("batch" if relax else b), 3, h, w]
        out = self._canonical_head(graph, src)
        out.shape = None  # filled by shape inference below
        graph.outputs = [out]
        graph.cleanup().toposort()
        proto = gs.export_onnx(graph)
        if relax:
            proto = self._relaxed_batch(proto, fb, batch, dynamic_batch)
        proto = onnx.shape_inference.infer_shapes(proto)
        if not self._checked_numbers:
            self.check_numbers(proto, h, w)
            self._checked_numbers = True
        return proto

    def _plain(self) -> bool:
        """True when the declared output already is in the contract's layout (only a rename is needed)."""
        lay = self.declared
        obj, _, angle = self._channel_roles()
        return lay.format == FORMATS[0] and lay.box == "cxcywh" and obj is None and lay.scores == "activated" and \
            (angle is None or (angle == self.channels_in - 1 and lay.angle_unit == "radians"))

    def _canonical_head(self, graph: Any, src: Any) -> Any:
        """Ops after the declared output: -> ``output0`` ``[B, 4 + C (+1), N]`` (cxcywh, obj x cls, radians)."""
        import onnx_graphsurgeon as gs

        from trtalign.export.graph_nms import RAW_OUTPUT

        lay = self.declared
        f32 = np.float32
        obj, cls_start, angle = self._channel_roles()
        if self._plain():
            if src.name != RAW_OUTPUT:
                t = gs.Variable(RAW_OUTPUT, dtype=f32)
                graph.nodes.append(gs.Node("Identity", "byo_output0", inputs=[src], outputs=[t]))
                return t
            return src
        counter = [0]

        def var(stem: str) -> Any:
            counter[0] += 1
            return gs.Variable(f"byo_{stem}_{counter[0]}", dtype=f32)

        def node(op: str, inputs: list, attrs: dict | None = None, out: Any = None) -> Any:
            out = out if out is not None else var(op.lower())
            graph.nodes.append(gs.Node(op, f"byo_{op.lower()}_{counter[0]}", attrs=attrs or {}, inputs=inputs,
                                       outputs=[out]))
            return out

        def channels(x: Any, start: int, end: int) -> Any:
            c = counter[0]
            consts = [gs.Constant(f"byo_slice_{c}_{n}", np.asarray([v], np.int64))
                      for n, v in (("s", start), ("e", end), ("a", 1))]
            return node("Slice", [x, *consts])

        x = src if lay.format == FORMATS[0] else node("Transpose", [src], {"perm": [0, 2, 1]})
        box = channels(x, 0, 4)
        if lay.box == "xyxy":
            p1, p2 = channels(box, 0, 2), channels(box, 2, 4)
            center = node("Mul", [node("Add", [p1, p2]), gs.Constant("byo_half", np.array(0.5, f32))])
            box = node("Concat", [center, node("Sub", [p2, p1])], {"axis": 1})
        scores = channels(x, cls_start, cls_start + int(lay.num_classes))
        if lay.scores == "logits":
            scores = node("Sigmoid", [scores])
        if obj is not None:
            objectness = channels(x, obj, obj + 1)
            if lay.scores == "logits":
                objectness = node("Sigmoid", [objectness])
            scores = node("Mul", [scores, objectness])
        parts = [box, scores]
        if angle is not None:
            ang = channels(x, angle, angle + 1)
            if lay.angle_unit == "degrees":
                ang = node("Mul", [ang, gs.Constant("byo_deg2rad", np.array(math.pi / 180.0, f32))])
            parts.append(ang)
        return node("Concat", parts, {"axis": 1}, out=gs.Variable(RAW_OUTPUT, dtype=f32))

    def _relaxed_batch(self, proto: Any, fixed: int, batch: int, dynamic_batch: bool) -> Any:
        """The fixed batch made symbolic, when the graph computes with any batch (checked by running batch 2);
        otherwise an InputError: the graph bakes the batch in (e.g. Reshape to [1, ...])."""
        import onnx

        for vi in list(proto.graph.output):
            if vi.type.tensor_type.shape.dim:
                vi.type.tensor_type.shape.dim[0].dim_param = "batch"
        del proto.graph.value_info[:]
        probe = 2 if fixed != 2 else 3
        try:
            import onnxruntime as ort

            sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
            shape = [probe, 3, *(d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[2:])]
            got = sess.run(None, {"images": np.zeros(shape, np.float32)})[0].shape
            ok = got[0] == probe
        except Exception:
            ok = False
        if not ok:
            want = "a dynamic batch" if dynamic_batch else f"batch {batch}"
            raise InputError(f"{self.path.name} has a fixed batch {fixed} baked into its graph (it does not run "
                             f"with batch {probe}); cannot export {want}: re-export it from its framework with a "
                             f"dynamic batch (e.g. YOLOv5 export.py --dynamic, ultralytics dynamic=True)")
        if not dynamic_batch:
            proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
            for vi in proto.graph.output:
                if vi.type.tensor_type.shape.dim:
                    vi.type.tensor_type.shape.dim[0].dim_value = batch
        return onnx.ModelProto.FromString(proto.SerializeToString())

    # ------------------------------------------------------------------ numbers
    def check_numbers(self, raw: Any, h: int, w: int, image: np.ndarray | None = None) -> None:
        """Run the rewritten head once on ``image`` (``[1, 3, h, w]``; default: a fixed synthetic picture) and
        check what the layout promises: class scores (and objectness) in [0, 1], boxes in input pixels (not
        normalised) with w, h >= 0 and centres near the input for the best-scored candidates. A mismatch is one ModelError, expected vs found."""
        import onnxruntime as ort

        if image is None:
            rng = np.random.default_rng(0)
            image = np.full((1, 3, h, w), 114 / 255, np.float32)
            for _ in range(6):  # a few flat rectangles: something for a detector to fire on
                y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
                image[0, :, y0:y0 + h // 3, x0:x0 + w // 3] = rng.random((3, 1, 1))
        try:
            sess = ort.InferenceSession(raw.SerializeToString(), providers=["CPUExecutionProvider"])
            batch = raw.graph.input[0].type.tensor_type.shape.dim[0]
            reps = batch.dim_value if batch.HasField("dim_value") and batch.dim_value > 1 else 1
            out = sess.run(None, {"images": np.repeat(image, reps, axis=0)})[0][:1]
        except Exception as exc:
            raise ModelError(f"{self.path.name}: the model does not run in ONNX Runtime at {h}x{w}: "
                             f"{str(exc).splitlines()[0]}") from None
        lay = self.declared
        name = f"{self.path.name} (layout: {self._describe(lay)})"
        k = 4 + int(lay.num_classes) + (1 if lay.angle is not None else 0)
        if out.ndim != 3 or out.shape[1] != k:
            raise ModelError(f"{name}: expected {k} channels after the layout, found shape {list(out.shape)}")
        scores = out[0, 4:4 + int(lay.num_classes)]
        lo, hi = float(np.nanmin(scores)), float(np.nanmax(scores))
        if lo < -1e-4 or hi > 1 + 1e-4:
            what = "objectness x class scores" if lay.objectness is not None else "class scores"
            hint = " (logits? declare scores: logits)" if lay.scores == "activated" else ""
            raise ModelError(f"{name}: expected {what} in [0, 1], found [{lo:.4g}, {hi:.4g}]{hint}")
        if lay.objectness is not None and lay.scores == "activated":
            obj_idx, _, _ = self._channel_roles()
            src = self._source_channels(sess, raw, image, reps)
            if src is not None:
                o = src[obj_idx]
                if float(o.min()) < -1e-4 or float(o.max()) > 1 + 1e-4:
                    raise ModelError(f"{name}: expected objectness (channel {obj_idx}) in [0, 1], found "
                                     f"[{float(o.min()):.4g}, {float(o.max()):.4g}]")
        best = np.argsort(-scores.max(axis=0))[:100]
        cx, cy, bw, bh = (out[0, i, best] for i in range(4))
        size = float(max(h, w))
        if float(np.max(np.abs(np.stack([cx, cy, bw, bh])))) <= 1.5 and size > 64:
            raise ModelError(f"{name}: expected boxes in input pixels (up to {w}x{h}), found values up to "
                             f"{float(np.max(np.abs(np.stack([cx, cy, bw, bh])))):.3g} (normalised to [0, 1]?)")
        if float(np.min(bw)) < -1e-3 or float(np.min(bh)) < -1e-3:
            other = "cxcywh" if lay.box == "xyxy" else "xyxy"
            raise ModelError(f"{name}: expected box widths and heights >= 0, found min w {float(np.min(bw)):.4g}, "
                             f"min h {float(np.min(bh)):.4g} (boxes {other}?)")
        inside = (cx > -0.5 * w) & (cx < 1.5 * w) & (cy > -0.5 * h) & (cy < 1.5 * h)
        if float(inside.mean()) < 0.9:
            raise ModelError(f"{name}: expected the best-scored boxes within the {w}x{h} input, found "
                             f"{int((~inside).sum())} of {len(inside)} far outside (centres up to "
                             f"{float(np.max(np.abs(np.stack([cx, cy])))):.4g})")

    def _source_channels(self, sess: Any, raw: Any, image: np.ndarray, reps: int) -> np.ndarray | None:
        """The declared output's channels ``[K, N]`` for the probe image (None when it cannot be exposed)."""
        import onnxruntime as ort

        from trtalign.export.graph_nms import expose_outputs

        name = self._output().name
        src_name = getattr(self, "_renamed", {}).get(name, name)
        if not src_name:
            return None
        try:
            exposed = expose_outputs(raw, [src_name])
            s = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
            y = s.run([src_name], {"images": np.repeat(image, reps, axis=0)})[0][0]
        except Exception:
            return None
        return y if self.declared.format == FORMATS[0] else y.T
