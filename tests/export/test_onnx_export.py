"""Export of randomly initialised YOLO models (from ultralytics yaml, offline) to ONNX with decode + NMS node."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from trtalign.core.errors import InputError, TrtalignError
from trtalign.export.graph_nms import NMS_DOMAIN, read_nms
from trtalign.export.metadata import read_metadata
from trtalign.export.onnx_export import export_onnx
from trtalign.runtime.ort_runner import OrtRunner

pytest.importorskip("ultralytics")

IMGSZ = 160
N_ANCHORS = (IMGSZ // 8) ** 2 + (IMGSZ // 16) ** 2 + (IMGSZ // 32) ** 2
MODELS = [  # (yaml, task, NMS op, box width)
    ("yolov8n.yaml", "detect", "EfficientNMS_TRT", 4),
    ("yolo11n.yaml", "detect", "EfficientNMS_TRT", 4),
    ("yolov8n-obb.yaml", "obb", "EfficientRotatedNMS_TRT", 5),
    ("yolo11n-obb.yaml", "obb", "EfficientRotatedNMS_TRT", 5),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every model exported once per module: static batch 1 and dynamic batch (max 4)."""
    out = {}
    folder = tmp_path_factory.mktemp("export")
    for yaml_name, *_ in MODELS:
        stem = yaml_name.split(".")[0]
        out[(yaml_name, "static")] = export_onnx(yaml_name, folder / f"{stem}_b1.onnx", imgsz=IMGSZ, batch=1,
                                                 score_threshold=0.0, max_det=100)
        out[(yaml_name, "dynamic")] = export_onnx(yaml_name, folder / f"{stem}_dyn.onnx", imgsz=IMGSZ,
                                                  dynamic_batch=4, iou_threshold=0.6, class_agnostic=True)
    return out


@pytest.mark.parametrize("yaml_name,task,op,width", MODELS)
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_export_has_nms_node_and_passes_checker(exported, yaml_name, task, op, width, mode):
    res = exported[(yaml_name, mode)]
    model = onnx.load(res.path)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    nodes = [n for n in model.graph.node if n.op_type == op]
    assert len(nodes) == 1 and nodes[0].domain == NMS_DOMAIN
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert set(attrs) == {"score_threshold", "iou_threshold", "max_output_boxes", "background_class",
                          "score_activation", "class_agnostic", "box_coding", "plugin_version", "plugin_namespace"}
    expect = ({"score_threshold": 0.0, "iou_threshold": 0.7, "max_output_boxes": 100, "class_agnostic": 0}
              if mode == "static" else
              {"score_threshold": 0.001, "iou_threshold": 0.6, "max_output_boxes": 300, "class_agnostic": 1})
    for k, v in expect.items():
        assert attrs[k] == pytest.approx(v), k
    assert attrs["background_class"] == -1 and attrs["score_activation"] == 0
    assert attrs["box_coding"] == (1 if task == "obb" else 0)
    assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b""
    assert [i.type.tensor_type.elem_type for i in model.graph.output] == [onnx.TensorProto.INT32,
                                                                          onnx.TensorProto.FLOAT,
                                                                          onnx.TensorProto.FLOAT,
                                                                          onnx.TensorProto.INT32]
    b = "batch" if mode == "dynamic" else 1
    k = expect["max_output_boxes"]
    assert [o["shape"] for o in res.outputs] == [[b, 1], [b, k, width], [b, k], [b, k]]
    assert [o["name"] for o in res.outputs] == ["num_detections", "detection_boxes", "detection_scores",
                                                "detection_classes"]
    assert res.inputs == [{"name": "images", "dtype": "float32", "shape": [b, 3, IMGSZ, IMGSZ]}]
    meta = read_metadata(model)
    assert meta["task"] == task and meta["imgsz"] == [IMGSZ, IMGSZ] and meta["stride"] == 32
    assert len(meta["names"]) == 80 and meta["nms"]["op"] == op and meta["source"]["file"] == yaml_name
    assert meta["layout"]["channels"] == 4 + 80 + (1 if task == "obb" else 0)
    assert meta["batch"] == ({"dynamic": True, "max": 4, "size": "batch"} if mode == "dynamic"
                             else {"dynamic": False, "max": 1, "size": 1})


@pytest.mark.parametrize("yaml_name,task,op,width", MODELS)
@pytest.mark.parametrize("mode,batch", [("static", 1), ("dynamic", 3)])
def test_onnx_runtime_runs_the_nms_model(exported, yaml_name, task, op, width, mode, batch):
    res = exported[(yaml_name, mode)]
    x = np.random.default_rng(0).random((batch, 3, IMGSZ, IMGSZ), dtype=np.float32)
    with OrtRunner(res.path) as runner:
        assert runner.uses_custom_ops
        out = runner.infer({"images": x})
    k = res.nms["max_output_boxes"]
    assert out["num_detections"].shape == (batch, 1) and out["num_detections"].dtype == np.int32
    assert out["detection_boxes"].shape == (batch, k, width)
    assert out["detection_classes"].dtype == np.int32
    n = out["num_detections"][:, 0]
    assert ((0 <= n) & (n <= k)).all()
    if mode == "static":  # score_threshold 0: every image has detections, sorted by score, padded with zeros
        assert (n > 0).all()
        s = out["detection_scores"][0, : n[0]]
        assert (np.diff(s) <= 0).all()
        assert not out["detection_scores"][0, n[0]:].any()


def test_nms_none_outputs_boxes_and_scores(tmp_path):
    res = export_onnx("yolov8n.yaml", tmp_path / "raw.onnx", imgsz=IMGSZ, nms="none", box_coding=1, opset=13)
    model = onnx.load(res.path)
    onnx.checker.check_model(model, full_check=True)
    assert read_nms(model) is None and model.opset_import[0].version == 13
    assert [(o["name"], o["shape"]) for o in res.outputs] == [("boxes", [1, N_ANCHORS, 4]),
                                                             ("scores", [1, N_ANCHORS, 80])]
    with OrtRunner(res.path) as runner:
        out = runner.infer({"images": np.full((1, 3, IMGSZ, IMGSZ), 0.5, np.float32)})
    assert not runner.uses_custom_ops
    assert ((out["scores"] >= 0) & (out["scores"] <= 1)).all()
    assert (out["boxes"][..., 2:] >= 0).all()  # box_coding 1: center-size, widths and heights non-negative


def test_nms_domain_escape_hatch_writes_default_domain(tmp_path):
    res = export_onnx("yolov8n.yaml", tmp_path / "trt.onnx", imgsz=IMGSZ, nms_domain="")
    model = onnx.load(res.path)
    node = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"][0]
    assert node.domain == "" and "default domain" in res.checker
    with pytest.raises(onnx.checker.ValidationError, match="No Op registered"):
        onnx.checker.check_model(model)


BAD_EXPORTS = [  # (kwargs, error class, message fragment)
    (dict(imgsz=150), InputError, "multiple of the model stride 32"),
    (dict(score_threshold=1.5), InputError, "score_threshold must be in"),
    (dict(iou_threshold=0.0), InputError, "iou_threshold must be in"),
    (dict(max_det=5000), InputError, "max_output_boxes"),
    (dict(nms="rotated"), InputError, "needs an obb model"),
    (dict(nms="fast"), InputError, "valid choices"),
    (dict(opset=12), InputError, "--opset must be in"),
    (dict(dynamic_batch=0), InputError, "dynamic-batch"),
]


@pytest.mark.parametrize("kwargs,error,fragment", BAD_EXPORTS)
def test_bad_options_raise_and_write_nothing(tmp_path, kwargs, error, fragment):
    out = tmp_path / "m.onnx"
    with pytest.raises(error, match=fragment):
        export_onnx("yolov8n.yaml", out, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_model_files(tmp_path):
    out = tmp_path / "out" / "m.onnx"
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "corrupt.yaml").write_text("nc: [unclosed\n  - :")
    (tmp_path / "corrupt.onnx").write_bytes(b"\x00\x01garbage")
    cases = [(tmp_path / "missing.pt", "not found"), (tmp_path / "missing.yaml", "not found"),
             (tmp_path / "corrupt.pt", "cannot load"), (tmp_path / "corrupt.yaml", "cannot load"),
             (tmp_path / "corrupt.onnx", "cannot read"), (tmp_path / "model.tflite", "no model adapter")]
    for path, fragment in cases:
        with pytest.raises(TrtalignError, match=fragment):
            export_onnx(path, out, imgsz=IMGSZ)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_obb_model_rejects_efficient_nms(tmp_path):
    with pytest.raises(InputError, match="obb model"):
        export_onnx("yolov8n-obb.yaml", tmp_path / "m.onnx", imgsz=IMGSZ, nms="efficient")


@pytest.mark.parametrize("name", ["yolov5nu.yaml"])  # YOLOv5u: ultralytics' anchor-free yolov5 (yolov5n.yaml)
def test_yolov5u_exports_and_runs(tmp_path, name):
    res = export_onnx(name, tmp_path / "v5u.onnx", imgsz=IMGSZ, score_threshold=0.0, max_det=10)
    assert res.task == "detect" and res.nms_op == "EfficientNMS_TRT"
    with OrtRunner(res.path) as runner:
        out = runner.infer({"images": np.zeros((1, 3, IMGSZ, IMGSZ), np.float32)})
    assert out["num_detections"][0, 0] == 10


def test_default_input_size_is_the_size_the_model_was_trained_at(tmp_path):
    """As ultralytics' own export/val: a checkpoint trained at 320 exports at 320 unless --imgsz says otherwise."""
    from trtalign.cli import main
    from trtalign.data.synth.proxy_models import load_card, proxy_model_path
    from trtalign.export.adapters import load_adapter
    from trtalign.runtime.torch_runner import TorchRunner

    trained = int(load_card("detect")["training"]["imgsz"])
    assert trained != 640
    assert load_adapter(proxy_model_path("detect")).info.train_imgsz == trained
    assert load_adapter("yolov8n.yaml").info.train_imgsz is None  # an untrained yaml: 640
    assert TorchRunner(proxy_model_path("detect")).imgsz == (trained, trained)
    assert TorchRunner("yolov8n.yaml").imgsz == (640, 640)
    assert main(["export", str(proxy_model_path("detect")), "--out", str(tmp_path / "d.onnx")]) == 0
    assert read_metadata(str(tmp_path / "d.onnx"))["imgsz"] == [trained, trained]
    assert main(["export", str(proxy_model_path("detect")), "--imgsz", "256", "--out", str(tmp_path / "e.onnx")]) == 0
    assert read_metadata(str(tmp_path / "e.onnx"))["imgsz"] == [256, 256]
