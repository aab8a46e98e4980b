"""Torch vs ONNX Runtime alignment on scored tiny models and generated images."""

from __future__ import annotations

import numpy as np
import pytest

from trtalign.core.detections import Detections
from trtalign.eval.alignment import (Tolerances, align, compare_detections, explain_nms_differences,
                                     match_detections)
from trtalign.export.graph_nms import NmsAttributes
from trtalign.export.onnx_export import export_onnx

IMGSZ = 160


@pytest.fixture(scope="module")
def aligned_exports(yolo_checkpoint, tmp_path_factory):
    pytest.importorskip("ultralytics")
    folder = tmp_path_factory.mktemp("align")
    out = {}
    for yaml_name in ("yolov8n.yaml", "yolo11n-obb.yaml"):
        pt = yolo_checkpoint(yaml_name)
        res = export_onnx(pt, folder / f"{pt.stem}.onnx", imgsz=IMGSZ, dynamic_batch=4, score_threshold=0.25)
        out[yaml_name] = (pt, res.path)
    return out


@pytest.mark.parametrize("yaml_name", ["yolov8n.yaml", "yolo11n-obb.yaml"])
def test_align_passes_with_aligned_nms(aligned_exports, image_folder, yaml_name):
    pt, onnx_path = aligned_exports[yaml_name]
    result = align(pt, onnx_path, image_folder)
    assert result and result.passed
    names = [t.name for t in result.tensors]
    assert names == ["output0", "boxes", "scores"]
    for t in result.tensors:
        assert t.normalized_max_abs <= 1e-3 and t.cosine > 0.99999
    d = result.detections_aligned
    assert d.reference_count > 50  # the scored checkpoint gives real work to NMS
    # >= 99 % of the detections matched with IoU >= 0.99 and |score delta| <= 1e-3 (the aligned count needs all three)
    assert d.aligned_fraction >= 0.99 and d.matched >= 0.99 * d.reference_count
    # ultralytics' own NMS keeps only each box's best class: counts differ and the report says why
    assert result.detections_native.reference_count != d.reference_count
    assert any(line.startswith("per-class") for line in result.explanation)
    assert any(line.startswith("top-k") for line in result.explanation)
    assert ("probiou" in " ".join(result.explanation)) == ("obb" in yaml_name)
    as_dict = result.to_dict()
    assert as_dict["passed"] is True and as_dict["detections_aligned"]["matched"] == d.matched


def test_align_fails_against_a_different_model(aligned_exports, image_folder, yolo_checkpoint):
    _, onnx_path = aligned_exports["yolov8n.yaml"]
    result = align(yolo_checkpoint("yolo11n.yaml"), onnx_path, image_folder, max_images=2)
    assert not result.passed
    assert not all(t.passed for t in result.tensors)
    assert result.images == 2


def test_align_rejects_obb_onnx_for_detect_model(aligned_exports, image_folder, yolo_checkpoint):
    from trtalign.core.errors import ModelError

    _, onnx_path = aligned_exports["yolo11n-obb.yaml"]
    with pytest.raises(ModelError):
        align(yolo_checkpoint("yolov8n.yaml"), onnx_path, image_folder, max_images=1)


def test_match_detections_table():
    ref = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32),
                     np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]))
    test = Detections(np.array([[0, 0, 10, 10.5], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32),
                      np.array([0.9, 0.5, 0.7]), np.array([0, 0, 2]))
    pairs, missing, extra = match_detections(ref, test, 0.5)
    assert [(i, j) for i, j, _ in pairs] == [(0, 0)]  # same class only; class 1 vs class 2 never match
    assert pairs[0][2] == pytest.approx(100 / 105)
    assert missing == [1, 2] and extra == [1, 2]
    d = compare_detections([ref], [test], Tolerances())
    assert (d.matched, d.missing, d.extra, d.aligned) == (1, 2, 2, 0)  # IoU 0.952 < 0.99: matched, not aligned
    assert not d.passed


def test_rotated_matching_uses_polygon_iou():
    a = Detections(np.array([[50, 50, 20, 10, 0.0]], np.float32), [0.9], [0])
    b = Detections(np.array([[50, 50, 20, 10, np.pi / 2]], np.float32), [0.9], [0])
    pairs, _, _ = match_detections(a, b, 0.1)
    assert pairs[0][2] == pytest.approx(100 / 300)  # cross of two 20x10 boxes: overlap 10x10


def test_explanation_lists_each_difference():
    attrs = NmsAttributes(score_threshold=0.25, iou_threshold=0.7, max_output_boxes=100, class_agnostic=1)
    lines = explain_nms_differences("EfficientNMS_TRT", attrs, {"conf": 0.25, "max_det": 300, "agnostic": False})
    text = "\n".join(lines)
    assert "max_det" in text and "class-agnostic" in text and "compare across classes" in text
    same = explain_nms_differences("EfficientNMS_TRT", attrs, {"conf": 0.25, "max_det": 100, "agnostic": True})
    assert [line.split(":")[0] for line in same] == ["top-k", "per-class"]  # inherent to the two NMS designs
    rotated = explain_nms_differences("EfficientRotatedNMS_TRT", attrs, {"conf": 0.5, "max_det": 100,
                                                                         "agnostic": True})
    assert [line.split(":")[0] for line in rotated] == ["top-k", "per-class", "score threshold", "IoU"]


def test_align_static_batch_and_nms_none(yolo_checkpoint, image_folder, tmp_path):
    """A static batch of 3 over 4 images (the last batch is padded with copies and the copies ignored), and an ONNX
    without NMS (both sides then go through ultralytics' NMS: settings aligned by construction)."""
    pt = yolo_checkpoint("yolov8n.yaml")
    static = export_onnx(pt, tmp_path / "b3.onnx", imgsz=IMGSZ, batch=3, score_threshold=0.3, max_det=50)
    result = align(pt, static.path, image_folder)
    assert result.passed and result.images == 4
    assert result.detections_aligned.reference_count == result.detections_aligned.test_count > 0
    none = export_onnx(pt, tmp_path / "none.onnx", imgsz=IMGSZ, nms="none")
    result = align(pt, none.path, image_folder, max_images=2)
    assert result.passed and result.nms_op is None and result.explanation == []
    assert [t.name for t in result.tensors] == ["output0", "boxes", "scores"]
    assert result.detections_aligned.reference == "torch" and result.detections_aligned.aligned_fraction >= 0.99


def _one2one_checkpoint(yolo_checkpoint, folder):
    """A scored YOLO26 whose one-to-one class convs carry the one-to-many ones' signal (so top-k finds objects)."""
    torch = pytest.importorskip("torch")
    ckpt = torch.load(str(yolo_checkpoint("yolo26n.yaml")), weights_only=False)
    det = ckpt["model"].model[-1]
    for src, dst in zip(det.cv3, det.one2one_cv3):
        dst.load_state_dict(src.state_dict())
    path = folder / "yolo26n_o2o.pt"
    torch.save(ckpt, str(path))
    return path


def test_align_names_the_one_to_one_top_k_not_nms(yolo_checkpoint, image_folder, tmp_path):
    # an NMS-free one-to-one export: both sides go through ultralytics' top-k, and no label may say NMS
    pt = _one2one_checkpoint(yolo_checkpoint, tmp_path)
    onnx_path = export_onnx(pt, tmp_path / "o2o.onnx", imgsz=IMGSZ, head="one2one", score_threshold=0.0,
                            max_det=50).path
    result = align(pt, onnx_path, image_folder, max_images=2)
    d = result.detections_aligned
    assert result.passed and result.nms_op is None and d.reference_count > 0
    assert result.postprocess == "one-to-one head, top-k" and result.to_dict()["postprocess"] == result.postprocess
    assert (d.reference, d.test) == ("torch", "ort-fp32+top-k")
    lines = [line for line in result.summary().splitlines() if "detections (" in line]
    assert len(lines) == 1 and lines[0].startswith("  detections (one-to-one head, top-k on both, torch vs "
                                                   "ort-fp32+top-k): ")
    assert "nms" not in lines[0].lower()


def test_align_names_ultralytics_nms_without_an_nms_node(yolo_checkpoint, image_folder, tmp_path):
    pt = yolo_checkpoint("yolov8n.yaml")
    result = align(pt, export_onnx(pt, tmp_path / "none.onnx", imgsz=IMGSZ, nms="none").path, image_folder,
                   max_images=1)
    assert result.postprocess == "ultralytics NMS" and result.detections_aligned.test == "ort-fp32+ultralytics-nms"
    assert "  detections (ultralytics NMS on both, torch vs ort-fp32+ultralytics-nms): " in result.summary()


def test_align_imgsz_mismatch_is_an_error(aligned_exports, image_folder):
    from trtalign.core.errors import InputError

    pt, onnx_path = aligned_exports["yolov8n.yaml"]
    with pytest.raises(InputError, match="does not match the ONNX input"):
        align(pt, onnx_path, image_folder, imgsz=320)


def test_iou_matrix_matches_shapely_and_pycocotools():
    """Alignment's IoU comes from core.geometry: checked against shapely (rotated) and pycocotools (axis-aligned)."""
    from trtalign.eval.alignment import iou_matrix

    shapely = pytest.importorskip("shapely")
    mask = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(8)
    xy, wh = rng.uniform(0, 80, (30, 2)), rng.uniform(2, 40, (30, 2))
    rot = np.c_[xy, wh, rng.uniform(-3, 3, 30)]
    a, b = Detections(rot[:12], np.full(12, 0.5), np.zeros(12)), Detections(rot[12:], np.full(18, 0.5), np.zeros(18))
    pa, pb = shapely.polygons(a.corners().astype(np.float64)), shapely.polygons(b.corners().astype(np.float64))
    inter = shapely.area(shapely.intersection(pa[:, None], pb[None, :]))
    ref = inter / (shapely.area(pa)[:, None] + shapely.area(pb)[None, :] - inter)
    assert (ref > 0).sum() > 10
    np.testing.assert_allclose(iou_matrix(a, b), ref, atol=1e-5)  # float32 boxes: corners rounded
    axis = np.c_[xy, xy + wh]
    a, b = Detections(axis[:12], np.full(12, 0.5), np.zeros(12)), Detections(axis[12:], np.full(18, 0.5), np.zeros(18))
    ref = mask.iou(np.c_[a.boxes[:, :2], a.boxes[:, 2:] - a.boxes[:, :2]].astype(np.float64),
                   np.c_[b.boxes[:, :2], b.boxes[:, 2:] - b.boxes[:, :2]].astype(np.float64), [0] * 18)
    np.testing.assert_allclose(iou_matrix(a, b), ref, atol=1e-6)
