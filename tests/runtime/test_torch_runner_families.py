"""The torch runner for non-ultralytics families and heads: YOLOv5 checkpoints post-processed like YOLOv5's val.py
(multi-label), compared with YOLOv5's own ``non_max_suppression``; NMS-free exports select the one-to-one head."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from trtalign.runtime.torch_runner import TorchRunner, torch_options_for

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")


def test_torch_options_follow_the_export_metadata():
    assert torch_options_for({"nms": {"op": "TopK"}}) == {"head": "one2one"}
    assert torch_options_for({"nms": {"op": "EfficientNMS_TRT"}}) == {}
    assert torch_options_for(None) == {}


@pytest.mark.skipif(importlib.util.find_spec("yolov5") is None, reason="the yolov5 package is not installed")
def test_yolov5_postprocess_equals_yolov5_nms(tmp_path):
    from tests.export.test_yolov5_adapter import _yolov5_code, iou_matched_fraction, make_yolov5_checkpoint

    _, non_max_suppression = _yolov5_code()
    pt = make_yolov5_checkpoint(tmp_path / "m.pt")
    x = np.random.default_rng(3).random((1, 3, 160, 160), dtype=np.float32)
    with TorchRunner(pt, imgsz=160) as runner:
        assert runner.info.family == "yolov5"
        dets = runner.postprocess(runner.infer({"images": x})["output0"], None, conf=0.1, iou=0.45)[0]
        native = runner.adapter.native_model()(torch.from_numpy(x))[0]
    want = non_max_suppression(native, conf_thres=0.1, iou_thres=0.45, multi_label=True, max_det=300)[0].numpy()
    got = np.concatenate([dets.boxes, dets.scores[:, None], dets.class_ids[:, None]], axis=1)
    assert len(want) > 0 and len(got) == len(want)
    assert iou_matched_fraction(want, got) >= 0.995


def test_one2one_runner_selects_top_k(tmp_path):
    from trtalign.export.onnx_export import export_onnx
    from trtalign.runtime.ort_runner import OrtRunner

    out = tmp_path / "e2e.onnx"
    export_onnx("yolo26n.yaml", out, imgsz=160, head="one2one", score_threshold=0.0, max_det=20)
    x = np.random.default_rng(4).random((1, 3, 160, 160), dtype=np.float32)
    from trtalign.export.metadata import read_metadata

    with TorchRunner("yolo26n.yaml", imgsz=160, **torch_options_for(read_metadata(str(out)))) as runner:
        assert runner.adapter.end2end
        dets = runner.postprocess(runner.infer({"images": x})["output0"], None, conf=0.0, max_det=20)[0]
    with OrtRunner(str(out)) as ort:
        got = ort.infer({"images": x})
    assert len(dets) == int(got["num_detections"][0, 0]) == 20
    np.testing.assert_allclose(np.sort(dets.scores), np.sort(got["detection_scores"][0]), rtol=0, atol=1e-5)
