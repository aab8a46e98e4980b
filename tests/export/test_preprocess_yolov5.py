"""``letterbox(mode="yolov5")`` reproduces YOLOv5's own val data path (``LoadImagesAndLabels`` with rect=False, as
val.py runs an exported model) pixel for pixel, and ``scale_boxes`` inverts it as YOLOv5's ``scale_boxes`` does."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from trtalign.core.errors import InputError
from trtalign.core.preprocess import letterbox, read_image, scale_boxes

pytest.importorskip("torch")
if importlib.util.find_spec("yolov5") is None:
    pytest.skip("the yolov5 package is not installed (pip install 'trtalign[yolov5]')", allow_module_level=True)

REAL_VAL = Path(__file__).resolve().parents[3] / "shared" / "real" / "coco" / "images" / "val2017"


def _yolov5_dataset(images: Path, imgsz: int):
    from trtalign.export.adapters.yolov5 import _yolov5_import_context

    with _yolov5_import_context(None):
        from yolov5.utils.dataloaders import LoadImagesAndLabels
        from yolov5.utils.general import scale_boxes as v5_scale_boxes
    return LoadImagesAndLabels(str(images), imgsz, batch_size=1, augment=False, rect=False, stride=32,
                               pad=0.5), v5_scale_boxes


def _generated(folder: Path) -> Path:
    """Images larger and smaller than the input (INTER_AREA and INTER_LINEAR paths), odd sizes; empty labels."""
    import cv2

    rng = np.random.default_rng(0)
    images, labels = folder / "images", folder / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for i, (h, w) in enumerate([(480, 640), (333, 517), (120, 90), (701, 403)]):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(images / f"im{i}.png"), img)
        (labels / f"im{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    return images


def _check(images: Path, imgsz: int, limit: int) -> None:
    import torch

    ds, v5_scale_boxes = _yolov5_dataset(images, imgsz)
    rng = np.random.default_rng(1)
    for i in range(min(limit, len(ds))):
        im, _, path, shapes = ds[i]
        x, meta = letterbox(read_image(path), imgsz, mode="yolov5")
        ours = np.round(x[0] * 255).astype(np.uint8)
        assert ours.shape == tuple(im.shape)
        np.testing.assert_array_equal(ours, im.numpy())  # same pixels
        boxes = rng.uniform(0, imgsz, (8, 4)).astype(np.float32)
        boxes[:, 2:] = boxes[:, :2] + rng.uniform(1, 100, (8, 2))
        want = v5_scale_boxes(im.shape[1:], torch.from_numpy(boxes.copy()), shapes[0], shapes[1]).numpy()
        np.testing.assert_allclose(scale_boxes(boxes, meta), want, rtol=0, atol=1e-3)


def test_generated_images_match_yolov5_dataloader(tmp_path):
    _check(_generated(tmp_path), 320, 4)


@pytest.mark.skipif(not REAL_VAL.is_dir(), reason=f"{REAL_VAL} absent (the shared real images)")
def test_real_images_match_yolov5_dataloader():
    _check(REAL_VAL, 640, 3)


def test_unknown_mode_is_an_error():
    with pytest.raises(InputError, match="valid choices"):
        letterbox(np.zeros((10, 10, 3), np.uint8), 32, mode="mmdet")


@pytest.mark.skipif(not REAL_VAL.is_dir(), reason=f"{REAL_VAL} absent (the shared real images)")
def test_eval_preprocess_yolov5_is_applied(tmp_path):
    """``evaluate(..., preprocess="yolov5")`` scores the detections of YOLOv5-style inputs: equal to running the
    same ONNX by hand on ``letterbox(mode="yolov5")`` tensors."""
    from trtalign.core.detections import Detections
    from trtalign.data.datasets import load_dataset
    from trtalign.eval.coco_metrics import CocoMetrics
    from trtalign.eval.evaluate import evaluate
    from trtalign.export.onnx_export import export_onnx
    from trtalign.runtime.ort_runner import OrtRunner
    from trtalign.runtime.postprocess import nms_outputs_to_detections

    onnx_path = tmp_path / "v5.onnx"
    export_onnx(REAL_VAL.parents[2] / "yolov5n.pt", onnx_path, imgsz=320)
    data = REAL_VAL.parents[1] / "data.yaml"
    result = evaluate(onnx_path, data, ["fp32"], backend="ort", max_images=3, workdir=tmp_path / "w",
                      preprocess="yolov5")
    assert result.dataset["preprocess"] == "yolov5"
    dataset = load_dataset(data, split="val").subset(3)
    metric = CocoMetrics(dataset)
    with OrtRunner(str(onnx_path)) as runner:
        for im in dataset.images:
            x, meta = letterbox(read_image(im.path), 320, mode="yolov5")
            d = nms_outputs_to_detections(runner.infer({"images": x}), [meta])[0]
            metric.update(im.id, Detections(d.boxes, d.scores, d.class_ids))
    assert result.results[0].map == pytest.approx(metric.compute().stats["map"], abs=1e-9)
