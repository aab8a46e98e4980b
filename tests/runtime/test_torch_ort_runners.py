"""TorchRunner against ultralytics' own predictor; OrtRunner metadata; NMS outputs -> Detections."""

from __future__ import annotations

import numpy as np
import pytest

from trtalign.core.errors import InputError, ModelError
from trtalign.core.preprocess import letterbox, list_images, read_image
from trtalign.runtime.ort_runner import OrtRunner
from trtalign.runtime.postprocess import nms_outputs_to_detections


@pytest.mark.parametrize("yaml_name", ["yolov8n.yaml", "yolov8n-obb.yaml"])
def test_torch_runner_predict_matches_ultralytics(yolo_checkpoint, image_folder, yaml_name):
    pytest.importorskip("ultralytics")
    from ultralytics import YOLO

    from trtalign.core.detections import Detections
    from trtalign.runtime.torch_runner import TorchRunner

    pt = yolo_checkpoint(yaml_name)
    images = [read_image(p) for p in list_images(image_folder)[:2]]
    with TorchRunner(pt, 160) as runner:
        ours = runner.predict(images, conf=0.3, iou=0.7, max_det=50)
        assert runner.input_metadata()[0].shape == (None, 3, 160, 160)
    yolo = YOLO(str(pt))  # rect=False: the fixed-size letterbox of an exported model, not a minimum rectangle
    for img, det in zip(images, ours):
        ref = Detections.from_ultralytics(yolo.predict(img, imgsz=160, conf=0.3, iou=0.7, max_det=50, rect=False,
                                                       verbose=False)[0])
        assert len(det) == len(ref) > 0
        np.testing.assert_allclose(det.boxes, ref.boxes, atol=1e-3)
        np.testing.assert_allclose(det.scores, ref.scores, atol=1e-5)
        np.testing.assert_array_equal(det.class_ids, ref.class_ids)


def test_ort_runner_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        OrtRunner(tmp_path / "missing.onnx").activate()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelError):
        OrtRunner(bad).activate()


def test_ort_runner_metadata_and_inactive_error():
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Sigmoid", ["images"], ["out"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["b", 2])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    runner = OrtRunner(model.SerializeToString(), name="ort-test")
    with pytest.raises(InputError, match="not active"):
        runner.infer({"images": np.zeros((1, 2), np.float32)})
    with runner:
        assert [m.name for m in runner.input_metadata()] == ["images"]
        assert runner.output_metadata()[0].dtype == "float32"
        out = runner.infer({"images": np.zeros((3, 2), np.float32)})
    np.testing.assert_allclose(out["out"], 0.5)
    assert onnx.load_from_string(model.SerializeToString()).graph.node[0].op_type == "Sigmoid"


@pytest.mark.parametrize("value,threads", [("1", 1), ("3", 3), ("", None)])
def test_ort_threads_from_environment(monkeypatch, value, threads):
    from onnx import TensorProto, helper

    node = helper.make_node("Sigmoid", ["images"], ["out"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    monkeypatch.setenv("TRTALIGN_ORT_THREADS", value)
    with OrtRunner(model.SerializeToString()) as runner:
        got = runner.session.get_session_options().intra_op_num_threads
        assert got == threads if threads is not None else got == 0  # 0: ONNX Runtime's own default
        np.testing.assert_allclose(runner.infer({"images": np.zeros((1, 2), np.float32)})["out"], 0.5)


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_bad_ort_threads_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("TRTALIGN_ORT_THREADS", value)
    with pytest.raises(InputError, match=r"TRTALIGN_ORT_THREADS must be a positive integer"):
        OrtRunner(b"").activate()


def test_nms_outputs_to_detections_scales_to_original_image():
    _, meta = letterbox(np.zeros((80, 160, 3), np.uint8), 160)  # scaled 1x, padded 40 px top and bottom
    outputs = {"num_detections": np.array([[1], [0]], np.int32),
               "detection_boxes": np.array([[[10, 50, 30, 70], [0, 0, 0, 0]], [[0, 0, 0, 0]] * 2], np.float32),
               "detection_scores": np.array([[0.9, 0], [0, 0]], np.float32),
               "detection_classes": np.array([[3, 0], [0, 0]], np.int32)}
    dets = nms_outputs_to_detections(outputs, [meta, meta])
    assert [len(d) for d in dets] == [1, 0]
    np.testing.assert_allclose(dets[0].boxes, [[10, 10, 30, 30]])
    assert dets[0].class_ids.tolist() == [3] and dets[0].data["orig_shape"] == [80, 160]
    with pytest.raises(InputError, match="5-column"):
        nms_outputs_to_detections(outputs, None, rotated=True)
