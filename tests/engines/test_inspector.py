"""Engine inspector JSON: both schemas (before 11.3 and 11.3+) into per-layer precisions and counts."""

from __future__ import annotations

import json

import pytest

from trtalign.core.errors import InputError
from trtalign.engines.inspector import precision_of_text, summarize_engine_information


def _io(fmt):  # pre-11.3 tensor description
    return [{"Name": "t", "Location": "Device", "Dimensions": [1, 16, 80, 80], "Format/Datatype": fmt}]


PRE_11_3 = {
    "Layers": [
        {"Name": "Reformatting CopyNode for Input Tensor 0", "LayerType": "Reformat",
         "Inputs": _io("Row major linear FP32"), "Outputs": _io("Four wide channel vectorized row major Int8 format"),
         "TacticValue": "0x0"},
        {"Name": "/model.0/conv/Conv + PWN(/model.0/act/Sigmoid)", "LayerType": "CaskConvolution",
         "Inputs": _io("Four wide channel vectorized row major Int8 format"), "Outputs": _io("Channel major Int8"),
         "TacticName": "sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32", "TacticValue": "0x1234"},
        {"Name": "/model.22/dfl/conv/Conv", "LayerType": "CaskConvolution",
         "Inputs": _io("Channel major FP16 format where channel % 8 == 0"), "Outputs": _io("Row major linear FP16"),
         "TacticName": "sm80_xmma_fprop_f16", "TacticValue": "0x99"},
        {"Name": "/model.22/Sigmoid", "LayerType": "PointWiseV2", "Inputs": _io("Row major linear FP32"),
         "Outputs": _io("Row major linear FP32")},
        {"Name": "/model.22/Shape", "LayerType": "Shape", "Inputs": _io("Row major linear INT32"), "Outputs": []},
    ],
    "Bindings": ["images", "output0"],
}

POST_11_3 = {
    "Layers": [
        {"Name": "/model.0/conv/Conv", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "images", "DataType": "Int8", "Format": "Channel major (kCHW4)"}],
         "Outputs": [{"Name": "c0", "DataType": "Int8", "Format": "kCHW32"}], "TacticName": "int8_conv"},
        {"Name": "/model.1/conv/Conv", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "w", "Location": "Constant", "DataType": "Int8"},
                    {"Name": "c0", "DataType": "Half", "Format": "kHWC8"}],
         "Outputs": [{"Name": "c1", "DataType": "Half"}]},
        {"Name": "/head/Sigmoid", "LayerType": "PointWise", "Inputs": [{"Name": "c1", "DataType": "Float"}],
         "Outputs": [{"Name": "out", "DataType": "Float"}]},
    ],
    "I/O Tensors": [{"Name": "images", "IOMode": "Input", "DataType": "Float"},
                    {"Name": "out", "IOMode": "Output", "DataType": "Float"}],
}


def test_pre_11_3_schema():
    s = summarize_engine_information(json.dumps(PRE_11_3))
    assert s.schema == "pre-11.3"
    assert [layer.precision for layer in s.layers] == ["fp32", "int8", "fp16", "fp32", "other"]
    assert s.counts == {"int8": 1, "fp16": 1, "fp32": 2, "other": 1}
    assert s.layers[1].tactic.startswith("sm80_xmma") and s.layers[0].tactic == "0x0"
    assert s.io_tensors == [{"name": "images"}, {"name": "output0"}]
    assert "INT8 1, FP16 1, FP32 2" in s.text()


def test_11_3_schema():
    s = summarize_engine_information(POST_11_3)
    assert s.schema == "11.3+"
    # the constant (weight) input is skipped: the layer computes in the precision of its activation input
    assert [layer.precision for layer in s.layers] == ["int8", "fp16", "fp32"]
    assert s.io_tensors[1] == {"name": "out", "mode": "Output", "dtype": "Float"}
    assert s.to_dict()["num_layers"] == 3


def test_layer_names_only_verbosity():
    s = summarize_engine_information({"Layers": ["a", "b"], "Bindings": []})
    assert s.counts["other"] == 2


@pytest.mark.parametrize("text,precision", [("Row major linear FP32", "fp32"), ("Half", "fp16"), ("Int8", "int8"),
                                            ("Channel major FP16 format where channel % 16 == 0", "fp16"),
                                            ("Float", "fp32"), ("BF16", "bf16"), ("Int32", "int"), ("", "other")])
def test_precision_of_text(text, precision):
    assert precision_of_text(text) == precision


@pytest.mark.parametrize("bad,match", [("", "empty"), ("{", "not JSON"), ('{"x": 1}', "no \"Layers\"")])
def test_bad_inspector_output(bad, match):
    with pytest.raises(InputError, match=match):
        summarize_engine_information(bad)
