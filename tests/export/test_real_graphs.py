"""Real exports are graphs, not ideals: generated graphs with what third-party exporters emit.

- an unsimplified upsample: int64 Shape -> Slice -> Concat feeding Resize ``sizes`` (YOLOv5's export without
  ``--simplify``): never a quantization site, and the graph calibrates and quantizes end to end;
- a bring-your-own channels-last graph whose intermediate tensor is already named ``output0`` (every YOLOv5 export);
- a fixed-batch ONNX asked for another batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtalign.core.errors import InputError
from trtalign.export.onnx_export import export_onnx
from trtalign.export.units import analyze_graph
from trtalign.runtime.ort_runner import OrtRunner

from tests.export.quant_models import write_images

torch = pytest.importorskip("torch")
NC = 2


def _unsimplified_upsample_onnx(path: Path, imgsz: int = 64) -> Path:
    """conv(s2) -> conv(s2) -> Resize to the first conv's size (sizes from Shape ops) -> Concat -> conv head
    ``[B, 4 + NC, N]``, exported by torch without constant folding and with dynamic H, W (Shape ops stay)."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 8, 3, 2, 1)
            self.c2 = torch.nn.Conv2d(8, 8, 3, 2, 1)
            self.head = torch.nn.Conv2d(16, 4 + NC, 1)

        def forward(self, x):
            y1 = torch.relu(self.c1(x))
            y2 = torch.relu(self.c2(y1))
            up = torch.nn.functional.interpolate(y2, size=(y1.shape[2], y1.shape[3]), mode="nearest")
            out = self.head(torch.cat([up, y1], 1)).flatten(2)
            return torch.cat([out[:, :4].sigmoid() * 64, out[:, 4:].sigmoid()], 1)

    torch.manual_seed(0)
    net = Net().eval()
    torch.onnx.export(net, torch.zeros(1, 3, imgsz, imgsz), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["output0"], do_constant_folding=False,
                      dynamic_axes={"images": {2: "h", 3: "w"}})
    return path


def test_integer_shape_subgraph_is_not_a_quantization_site(tmp_path):
    path = _unsimplified_upsample_onnx(tmp_path / "raw.onnx")
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert "Shape" in ops and "Resize" in ops  # the case under test is really there
    analysis = analyze_graph(model)
    covered = {t for u in analysis.units for t in u.tensors}
    # no unit quantizes any tensor that the Shape subgraph computes
    shape_tensors = _shape_subgraph_tensors(model)
    assert shape_tensors, "the generated graph has no integer shape subgraph"
    assert not covered & shape_tensors
    assert not set(analysis.tie_groups) & shape_tensors
    assert not set(analysis.qdq_candidates) & shape_tensors
    assert [u.kind for u in analysis.units].count("concat") == 1  # the float skip Concat only


def _shape_subgraph_tensors(model) -> set:
    """The int64 tensors of the graph (as ONNX shape inference types them): the sizes subgraph."""
    inferred = onnx.shape_inference.infer_shapes(model)
    return {vi.name for vi in inferred.graph.value_info if vi.type.tensor_type.elem_type == TensorProto.INT64}


def test_unsimplified_graph_calibrates_and_quantizes(tmp_path):
    from trtalign.export.calibrate import calibrate
    from trtalign.export.qdq import insert_qdq

    raw = _unsimplified_upsample_onnx(tmp_path / "raw.onnx")
    exported = tmp_path / "m.onnx"
    export_onnx(raw, exported, imgsz=64, layout={"num_classes": NC, "stride": 4})
    images = write_images(tmp_path / "images", 8)
    ranges = calibrate(exported, images, method="minmax", num=8)
    qdq, result = insert_qdq(onnx.load(str(exported)), ranges)
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    with OrtRunner(qdq, name="ort-int8sim") as runner:
        out = runner.infer({"images": x})
    assert out["detection_boxes"].shape == (1, 300, 4)
    assert any(n.op_type == "QuantizeLinear" for n in qdq.graph.node)
    naive, _ = insert_qdq(onnx.load(str(exported)), ranges, mode="naive")  # every Concat input, but no shape one
    with OrtRunner(naive, name="naive") as runner:
        assert runner.infer({"images": x})["num_detections"].shape == (1, 1)


# ---------------------------------------------------------------------------------------------------- output0
def _channels_last_with_output0(path: Path, batch: int | str = 1, reshape_batch: int = 0) -> Path:
    """A YOLOv5-like BYO file: the head tensor is called ``output0`` *inside* the graph ([B, N, 4 + NC] raw conv
    output), the graph output is ``output`` (its Identity), channels last."""
    n = 16
    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.1, (4 + NC, 3, 1, 1)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["c"], strides=[16, 16], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["c"], ["s"]),
        helper.make_node("Reshape", ["s", "shape"], ["r"]),
        helper.make_node("Transpose", ["r"], ["output0"], perm=[0, 2, 1]),
        helper.make_node("Mul", ["output0", "scale"], ["output"]),
    ]
    scale = np.ones((1, 1, 4 + NC), np.float32)
    scale[..., :4] = 64.0
    graph = helper.make_graph(
        nodes, "byo", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 64, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, n, 4 + NC])],
        [w, numpy_helper.from_array(np.array([reshape_batch, 4 + NC, n], np.int64), "shape"),
         numpy_helper.from_array(scale, "scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_output0_name_collision_is_renamed(tmp_path):
    src = _channels_last_with_output0(tmp_path / "byo.onnx")
    out = tmp_path / "m.onnx"
    export_onnx(src, out, imgsz=64, layout={"num_classes": NC, "format": "yolo-channels-last", "output": "output",
                                            "stride": 16})
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    ref = OrtRunner(str(src), name="src")
    with ref:
        want = ref.infer({"images": x})["output"]
    with OrtRunner(str(out)) as runner:
        got = runner.infer({"images": x})
    assert got["num_detections"].shape == (1, 1)
    model = onnx.load(str(out))
    assert [o for n in model.graph.node for o in n.output].count("output0") == 1
    # boxes come from the declared output, not from the renamed inner tensor (x64 scale applied)
    n = int(got["num_detections"][0, 0])
    assert n > 0 and float(np.abs(got["detection_boxes"][0, :n]).max()) > 4.0
    assert float(want[..., :4].max()) > 4.0


def test_fixed_batch_is_made_dynamic_when_the_graph_allows(tmp_path):
    """Reshape [0, C, N] copies the batch: the input's batch 1 becomes the symbolic 'batch'."""
    src = _channels_last_with_output0(tmp_path / "byo.onnx", batch=1)
    out = tmp_path / "m.onnx"
    result = export_onnx(src, out, imgsz=64, dynamic_batch=4, layout={
        "num_classes": NC, "format": "yolo-channels-last", "output": "output", "stride": 16})
    assert result.batch == "batch"
    x = np.random.default_rng(0).random((3, 3, 64, 64), dtype=np.float32)
    with OrtRunner(str(out)) as runner:
        assert runner.infer({"images": x})["num_detections"].shape == (3, 1)


def test_fixed_batch_that_cannot_change_is_one_clear_error(tmp_path):
    """Reshape [1, C, N] bakes the batch into the graph: a clear message instead of a broken file."""
    src = _channels_last_with_output0(tmp_path / "byo.onnx", batch=1, reshape_batch=1)
    layout = {"num_classes": NC, "format": "yolo-channels-last", "output": "output", "stride": 16}
    with pytest.raises(InputError, match=r"fixed batch 1.*dynamic batch"):
        export_onnx(src, tmp_path / "m.onnx", imgsz=64, dynamic_batch=4, layout=layout)
