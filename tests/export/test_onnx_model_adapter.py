"""Bring-your-own ONNX: a plain raw-head ONNX plus a declared layout, checked and rewritten into the contract."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from trtalign.core.config import ModelLayout
from trtalign.core.errors import ConfigError, InputError, ModelError
from trtalign.export.adapters import load_adapter
from trtalign.export.onnx_export import export_onnx
from trtalign.runtime.ort_runner import OrtRunner

pytest.importorskip("ultralytics")


@pytest.fixture(scope="module")
def plain_onnx(tmp_path_factory):
    """yolov8n's raw head at 160 px as a plain ONNX (channels first) and its channels-last variant."""
    folder = tmp_path_factory.mktemp("byo")
    raw = load_adapter("yolov8n.yaml").to_raw_onnx(160, batch=1)
    first = folder / "first.onnx"
    onnx.save(raw, str(first))
    last_model = onnx.ModelProto()
    last_model.CopyFrom(raw)
    g = last_model.graph
    old = g.output[0].name
    for node in g.node:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = "pre"
    g.node.append(onnx.helper.make_node("Transpose", ["pre"], ["preds"], perm=[0, 2, 1]))
    del g.output[:]
    g.output.append(onnx.helper.make_tensor_value_info("preds", onnx.TensorProto.FLOAT, [1, 525, 84]))
    last = folder / "last.onnx"
    onnx.save(last_model, str(last))
    return first, last


@pytest.mark.parametrize("fmt", ["yolo-channels-first", "yolo-channels-last"])
def test_byo_onnx_exports_and_matches_raw_head(plain_onnx, tmp_path, fmt):
    src = plain_onnx[0] if fmt == "yolo-channels-first" else plain_onnx[1]
    layout = ModelLayout(task="detect", num_classes=80, format=fmt, names=[f"c{i}" for i in range(80)])
    res = export_onnx(src, tmp_path / "e2e.onnx", imgsz=160, layout=layout, nms="none")
    assert res.family == "onnx" and res.names[:2] == ["c0", "c1"]
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    with OrtRunner(plain_onnx[0]) as plain, OrtRunner(res.path) as e2e:
        raw = plain.infer({"images": x})["output0"]
        out = e2e.infer({"images": x})
    np.testing.assert_array_equal(out["scores"], raw.transpose(0, 2, 1)[:, :, 4:])
    xywh = raw.transpose(0, 2, 1)[:, :, :4]
    np.testing.assert_allclose(out["boxes"][:, :, :2], xywh[:, :, :2] - xywh[:, :, 2:] * 0.5, rtol=0, atol=1e-4)


MISMATCHES = [  # (layout, error, fragment)
    (dict(task="obb", num_classes=80), ModelError, "declared layout"),  # 84 channels, obb needs 85
    (dict(task="detect", num_classes=79), ModelError, "declared layout"),
    (dict(task="detect", num_classes=80, format="yolo-channels-last"), ModelError, r"\[B, N, 84\]"),
    (dict(task="detect", num_classes=80, output="nope"), ModelError, "not found"),
    (dict(task="detect", num_classes=80, names=["a", "b"]), ConfigError, "names"),
]


@pytest.mark.parametrize("layout,error,fragment", MISMATCHES)
def test_byo_onnx_layout_mismatch_is_an_error(plain_onnx, tmp_path, layout, error, fragment):
    with pytest.raises(error, match=fragment):
        export_onnx(plain_onnx[0], tmp_path / "x.onnx", imgsz=160, layout=layout)
    assert not (tmp_path / "x.onnx").exists()


def test_byo_onnx_needs_a_layout_and_matching_sizes(plain_onnx, tmp_path):
    with pytest.raises(ConfigError, match="declared layout"):
        load_adapter(plain_onnx[0])
    layout = {"task": "detect", "num_classes": 80}
    with pytest.raises(InputError, match="fixed input size"):
        export_onnx(plain_onnx[0], tmp_path / "x.onnx", imgsz=320, layout=layout)
    with pytest.raises(InputError, match="fixed batch"):
        export_onnx(plain_onnx[0], tmp_path / "x.onnx", imgsz=160, dynamic_batch=4, layout=layout)


def test_exported_file_reexports_from_its_own_metadata(plain_onnx, tmp_path):
    first = export_onnx(plain_onnx[0], tmp_path / "a.onnx", imgsz=160, layout={"task": "detect", "num_classes": 80},
                        nms="none")
    adapter = load_adapter(first.path)  # layout read from metadata_props["trtalign"]
    assert adapter.info.num_classes == 80 and adapter.declared.output == "output0"
    again = export_onnx(first.path, tmp_path / "b.onnx", imgsz=160, nms="auto", score_threshold=0.2)
    model = onnx.load(again.path)
    onnx.checker.check_model(model, full_check=True)
    assert again.nms_op == "EfficientNMS_TRT" and [n.op_type for n in model.graph.node].count("EfficientNMS_TRT") == 1
