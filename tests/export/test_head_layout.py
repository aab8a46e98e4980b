"""Declarative head layouts for bring-your-own ONNX: a YOLOv5-style export (``[B, N, 5 + C]``, objectness, inner
tensor ``output0``, names / stride in ``metadata_props``) through the ``yolov5`` preset equals trtalign's own YOLOv5
export; xyxy / logits / degrees variants equal the contract; wrong declarations are one clear error."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from trtalign.core.errors import ConfigError, ModelError
from trtalign.export.adapters import load_adapter
from trtalign.export.adapters.onnx_model import HeadLayout, exporter_metadata
from trtalign.export.onnx_export import export_onnx
from trtalign.runtime.ort_runner import OrtRunner

torch = pytest.importorskip("torch")
NC = 3
IMGSZ = 96
N = (12 * 12 + 6 * 6 + 3 * 3) * 3


class Head(torch.nn.Module):
    """A YOLOv5-like head: pixels boxes from sigmoids, objectness and class probabilities, ``[B, N, 5 + NC]``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 5 + NC, 8, 8)

    def forward(self, x):
        y = self.conv(x).flatten(2).transpose(1, 2)  # [B, 144, 5 + NC]
        y = y.repeat(1, N // y.shape[1] + 1, 1)[:, :N]
        s = y.sigmoid()
        xy = s[..., :2] * IMGSZ
        wh = s[..., 2:4] * 40
        return torch.cat([xy, wh, s[..., 4:]], -1)


def _v5_style(path: Path, names: bool = True) -> Path:
    torch.onnx.export(Head().eval(), torch.zeros(1, 3, IMGSZ, IMGSZ), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["output0"])
    model = onnx.load(str(path))
    if names:  # what YOLOv5's export.py writes
        for k, v in {"stride": "32", "names": str({i: f"k{i}" for i in range(NC)})}.items():
            p = model.metadata_props.add()
            p.key, p.value = k, v
    onnx.save(model, str(path))
    return path


def _raw(path: Path, x: np.ndarray) -> np.ndarray:
    with OrtRunner(str(path), name="src") as r:
        return next(iter(r.infer({"images": x}).values()))


def _exported_output0(path: Path, layout, tmp_path: Path, x: np.ndarray) -> np.ndarray:
    adapter = load_adapter(path, layout=layout)
    raw = adapter.to_raw_onnx(IMGSZ)
    with OrtRunner(raw.SerializeToString(), name="raw") as r:
        return r.infer({"images": x})["output0"]


@pytest.fixture
def x():
    return np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)


def test_yolov5_preset_reads_metadata_and_folds_objectness(tmp_path, x):
    src = _v5_style(tmp_path / "v5.onnx")
    assert exporter_metadata(onnx.load(str(src))) == {"names": ["k0", "k1", "k2"], "stride": 32}
    adapter = load_adapter(src, layout={"preset": "yolov5"})
    assert adapter.info.names == ["k0", "k1", "k2"] and adapter.info.stride == 32
    y = _raw(src, x)[0]  # [N, 5 + NC]
    got = _exported_output0(src, {"preset": "yolov5"}, tmp_path, x)[0]
    np.testing.assert_allclose(got[:4].T, y[:, :4], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got[4:].T, y[:, 5:] * y[:, 4:5], rtol=0, atol=1e-6)
    result = export_onnx(src, tmp_path / "e2e.onnx", imgsz=IMGSZ, layout={"preset": "yolov5"})
    assert result.names == ["k0", "k1", "k2"]
    with OrtRunner(result.path) as r:  # the inner tensor named output0 did not collide with ours
        assert r.infer({"images": x})["num_detections"][0, 0] > 0


def _variant(path: Path, kind: str) -> Path:
    """The v5-style file rewritten: ``xyxy`` boxes, ``logits`` scores, or an OBB ``degrees`` angle appended."""
    model = onnx.load(str(_v5_style(path, names=False)))
    g = model.graph
    out = g.output[0].name
    for n in g.node:
        n.output[:] = ["v5" if o == out else o for o in n.output]
    c = lambda name, v: helper.make_tensor(name, onnx.TensorProto.INT64, [len(v)], v)  # noqa: E731
    g.initializer.extend([c("s0", [0]), c("s2", [2]), c("s4", [4]), c("s5", [5]), c("e", [5 + NC]), c("ax", [2])])
    g.node.extend([helper.make_node("Slice", ["v5", "s0", "s2", "ax"], ["xy"]),
                   helper.make_node("Slice", ["v5", "s2", "s4", "ax"], ["wh"]),
                   helper.make_node("Slice", ["v5", "s4", "e", "ax"], ["probs"])])
    if kind == "xyxy":
        g.initializer.append(helper.make_tensor("h", onnx.TensorProto.FLOAT, [], [0.5]))
        g.node.extend([helper.make_node("Mul", ["wh", "h"], ["hw"]), helper.make_node("Sub", ["xy", "hw"], ["p1"]),
                       helper.make_node("Add", ["xy", "hw"], ["p2"]),
                       helper.make_node("Concat", ["p1", "p2", "probs"], ["pred"], axis=2)])
    elif kind == "logits":  # log(p / (1 - p))
        g.initializer.append(helper.make_tensor("one", onnx.TensorProto.FLOAT, [], [1.0]))
        g.node.extend([helper.make_node("Sub", ["one", "probs"], ["q"]), helper.make_node("Div", ["probs", "q"], ["r"]),
                       helper.make_node("Log", ["r"], ["lg"]),
                       helper.make_node("Concat", ["xy", "wh", "lg"], ["pred"], axis=2)])
    else:  # degrees: angle = 90 * class-0 probability, appended last
        g.initializer.extend([helper.make_tensor("d", onnx.TensorProto.FLOAT, [], [90.0]), c("s6", [6])])
        g.node.extend([helper.make_node("Slice", ["v5", "s5", "s6", "ax"], ["p0"]),
                       helper.make_node("Mul", ["p0", "d"], ["deg"]),
                       helper.make_node("Concat", ["xy", "wh", "probs", "deg"], ["pred"], axis=2)])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("pred", onnx.TensorProto.FLOAT, None))
    model = onnx.shape_inference.infer_shapes(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("kind,layout", [
    ("xyxy", {"preset": "yolov5", "box": "xyxy", "num_classes": NC}),
    ("logits", {"preset": "yolov5", "scores": "logits", "num_classes": NC}),
    ("degrees", {"preset": "yolov5", "task": "obb", "angle_unit": "degrees", "num_classes": NC}),
])
def test_layout_variants_equal_the_contract(tmp_path, x, kind, layout):
    ref_src = _v5_style(tmp_path / "ref.onnx", names=False)
    y = _raw(ref_src, x)[0]
    src = _variant(tmp_path / f"{kind}.onnx", kind)
    got = _exported_output0(src, layout, tmp_path, x)[0]
    np.testing.assert_allclose(got[:4].T, y[:, :4], rtol=0, atol=1e-4)
    np.testing.assert_allclose(got[4:4 + NC].T, y[:, 5:] * y[:, 4:5], rtol=0, atol=1e-5)
    if kind == "degrees":
        np.testing.assert_allclose(got[4 + NC], y[:, 5] * 90.0 * math.pi / 180.0, rtol=0, atol=1e-5)


BAD = [  # (layout, error, fragment): what a wrong declaration says
    # the case: objectness declared as one more class; the exporter's names say 3 classes
    ({"format": "yolo-channels-last", "num_classes": NC + 1}, ModelError, r"metadata names 3 classes.*objectness"),
    # wrong channel count
    ({"preset": "yolov5", "names": list("abcde")}, ModelError, r"expects \[B, N, 10\]"),
    # channels first declared for a channels-last file
    ({"preset": "yolov8", "names": list("abcd")}, ModelError, r"expects \[B, 8, N\]"),
    # an objectness index that splits the class channels
    ({"format": "yolo-channels-last", "objectness": 5, "names": ["a", "b", "c"]}, ConfigError, "non-contiguous"),
    ({"preset": "nope"}, ConfigError, "valid choices"),
    ({"preset": "yolov5", "colour": 1}, ConfigError, "unknown layout field"),
]


@pytest.mark.parametrize("layout,error,fragment", BAD)
def test_wrong_layout_is_one_clear_error(tmp_path, layout, error, fragment):
    src = _v5_style(tmp_path / "v5.onnx")
    with pytest.raises(error, match=fragment):
        export_onnx(src, tmp_path / "x.onnx", imgsz=IMGSZ, layout=layout)
    assert not (tmp_path / "x.onnx").exists()


def test_logits_declared_activated_are_an_error(tmp_path):
    src = _variant(tmp_path / "logits.onnx", "logits")
    with pytest.raises(ModelError, match=r"expected objectness x class scores in \[0, 1\], found .*logits\?"):
        export_onnx(src, tmp_path / "x.onnx", imgsz=IMGSZ, layout={"preset": "yolov5", "num_classes": NC})


def test_boxes_not_in_pixels_are_an_error(tmp_path, x):
    src = _v5_style(tmp_path / "v5.onnx")
    model = onnx.load(str(src))  # divide every channel by the input size: normalised boxes
    g = model.graph
    for n in g.node:
        n.output[:] = ["pre" if o == "output0" else o for o in n.output]
    g.initializer.append(helper.make_tensor("inv", onnx.TensorProto.FLOAT, [], [1.0 / IMGSZ]))
    g.node.append(helper.make_node("Mul", ["pre", "inv"], ["output0"]))
    onnx.save(model, str(src))
    with pytest.raises(ModelError, match=r"expected boxes in input pixels.*found values up to"):
        export_onnx(src, tmp_path / "x.onnx", imgsz=IMGSZ, layout={"preset": "yolov5"})


def test_cli_wrong_layout_is_one_line_exit_2(tmp_path, cli):
    src = _v5_style(tmp_path / "v5.onnx")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {src}\nimgsz: {IMGSZ}\nlayout: {{format: yolo-channels-last, num_classes: {NC + 1}}}\n")
    code, out, err = cli("export", "--config", str(cfg), "--out", str(tmp_path / "x.onnx"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "objectness" in err
    cfg.write_text(f"model: {src}\nimgsz: {IMGSZ}\nlayout: {{preset: yolov5, num_classes: {NC}}}\n")
    code, out, err = cli("export", "--config", str(cfg), "--out", str(tmp_path / "y.onnx"))
    assert code == 0, err


def test_head_layout_parse_fills_from_preset():
    lay = HeadLayout.parse({"preset": "yolox", "num_classes": 80})
    assert (lay.format, lay.objectness, lay.box) == ("yolo-channels-last", 4, "cxcywh")
    assert HeadLayout.parse({"preset": "rtmdet", "box": "cxcywh"}).box == "cxcywh"  # a given field wins
