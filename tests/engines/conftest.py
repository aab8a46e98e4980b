"""Fixtures for the engines tests: tiny ONNX detectors built with onnx.helper (float, Q/DQ, float16-typed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtalign.core.config import config_from_dict

NODES = ("/model.0/conv/Conv", "/model.0/act/Relu", "/model.1/conv/Conv", "/head/Sigmoid")
UNIT_NODES = {"model.0.conv": ["/model.0/conv/Conv", "/model.0/act/Relu"], "model.1.conv": ["/model.1/conv/Conv"]}


def make_onnx(path: Path, *, qdq: bool = False, fp16: bool = False, batch: object = "batch", nms: str | None = None,
              class_agnostic: int = 0) -> Path:
    """images [B,3,64,64] -> Conv -> Relu -> Conv -> Sigmoid -> output0; optional Q/DQ on the conv inputs, a float16
    Cast island around the second conv, or an NMS plugin node after the head."""
    rng = np.random.default_rng(0)
    w0 = numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w0")
    w1 = numpy_helper.from_array(rng.normal(size=(4, 8, 1, 1)).astype(np.float32), "w1")
    inits = [w0, w1]
    nodes = []
    x = "images"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", [x, "s", "z"], ["xq"], name="/q0"),
                  helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xdq"], name="/dq0")]
        x = "xdq"
    nodes += [helper.make_node("Conv", [x, "w0"], ["c0"], name=NODES[0], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c0"], ["r0"], name=NODES[1])]
    y = "r0"
    if fp16:
        inits[1] = numpy_helper.from_array(numpy_helper.to_array(w1).astype(np.float16), "w1")
        nodes.append(helper.make_node("Cast", ["r0"], ["r0h"], name="/cast_in", to=TensorProto.FLOAT16))
        y = "r0h"
    nodes.append(helper.make_node("Conv", [y, "w1"], ["c1" + ("h" if fp16 else "")], name=NODES[2]))
    if fp16:
        nodes.append(helper.make_node("Cast", ["c1h"], ["c1"], name="/cast_out", to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Sigmoid", ["c1"], ["output0"], name=NODES[3]))
    outputs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 4, 64, 64])]
    if nms:
        nodes.append(helper.make_node(nms, ["output0", "output0"], ["num_detections"], name="/nms",
                                      domain="", plugin_version="1", class_agnostic=class_agnostic))
        outputs = [helper.make_tensor_value_info("num_detections", TensorProto.INT32, [batch, 1])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                            [batch, 3, 64, 64])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def make_config(tmp_path: Path, **trt) -> object:
    data = {"model": str(tmp_path / "m.onnx"), "imgsz": 64, "batch": {"min": 1, "opt": 2, "max": 4}, "trt": trt,
            "calibration": {"images": str(tmp_path), "num": 4}}
    return config_from_dict(data)


@pytest.fixture
def onnx_files(tmp_path: Path) -> dict:
    return {"float": make_onnx(tmp_path / "float.onnx"), "qdq": make_onnx(tmp_path / "qdq.onnx", qdq=True),
            "fp16": make_onnx(tmp_path / "fp16.onnx", fp16=True),
            "qdq_fp16": make_onnx(tmp_path / "qdq_fp16.onnx", qdq=True, fp16=True)}
