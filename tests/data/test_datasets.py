"""Datasets: COCO json, ultralytics YOLO / OBB folders, DOTA txt -> one form, and their errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from trtalign.core.enums import Task
from trtalign.core.errors import InputError
from trtalign.data.datasets import category_map, load_coco, load_dataset, load_dota, load_yolo


def _write_image(path: Path, w: int = 64, h: int = 48) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))


def _coco(tmp_path: Path, cats=(1, 3, 90), anns=None, images=("a.jpg", "b.jpg")) -> Path:
    for name in images:
        _write_image(tmp_path / "images" / name)
    data = {"images": [{"id": 10 + i, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(images)],
            "categories": [{"id": c, "name": f"cat{c}"} for c in cats],
            "annotations": anns if anns is not None else [
                {"id": 1, "image_id": 10, "category_id": 90, "bbox": [1, 2, 10, 20], "area": 150.0, "iscrowd": 0},
                {"id": 2, "image_id": 10, "category_id": 1, "bbox": [5, 5, 4, 4], "area": 16.0, "iscrowd": 1}]}
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_category_gap_maps_to_contiguous_indices(tmp_path):
    ds = load_coco(_coco(tmp_path))
    assert ds.task is Task.DETECT and ds.source == "coco"
    assert ds.category_ids == [1, 3, 90] and ds.names == ["cat1", "cat3", "cat90"]
    gt = ds.ground_truth(10)
    # category 90 is the 3rd category -> index 2; bbox xywh -> xyxy; area and iscrowd kept
    np.testing.assert_allclose(gt.boxes[0], [1, 2, 11, 22])
    assert gt.class_ids.tolist() == [2, 0] and gt.ignore.tolist() == [False, True]
    assert gt.areas.tolist() == [150.0, 16.0]
    assert len(ds.ground_truth(11)) == 0  # an image without annotations
    assert ds.category_id(2) == 90 and ds.class_index(90) == 2
    # round trip back to COCO keeps the original ids
    back = ds.to_coco()
    assert {a["category_id"] for a in back["annotations"]} == {1, 90}
    np.testing.assert_allclose(back["annotations"][0]["bbox"], [1, 2, 10, 20])


def test_coco80_of_91_ids_give_ultralytics_class_order(tmp_path):
    # the real COCO ids: 80 categories out of 1..90; index i must be the i-th id (ultralytics' coco80_to_coco91)
    missing = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    ids = [i for i in range(1, 91) if i not in missing]
    assert len(ids) == 80
    ds = load_coco(_coco(tmp_path, cats=list(reversed(ids)), anns=[]))
    assert ds.category_ids == ids
    assert ds.category_id(11) == 13 and ds.category_id(79) == 90


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "{not json", "not valid JSON"),  # malformed json: line/column reported
    (lambda d: json.dumps([1, 2]), "expected a COCO json object"),
    (lambda d: json.dumps({k: v for k, v in d.items() if k != "categories"}), "missing or non-list"),
    (lambda d: json.dumps({**d, "annotations": [{"image_id": 10, "category_id": 7, "bbox": [0, 0, 1, 1]}]}),
     "category_id 7"),  # unknown category
    (lambda d: json.dumps({**d, "annotations": [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1]}]}),
     "image_id 99"),  # annotation for an image that is not listed
    (lambda d: json.dumps({**d, "annotations": [{"image_id": 10, "category_id": 1}]}), "malformed"),
])
def test_coco_errors(tmp_path, mutate, message):
    path = _coco(tmp_path)
    path.write_text(mutate(json.loads(path.read_text())))
    with pytest.raises(InputError, match=message):
        load_coco(path)


def test_coco_missing_images_listed(tmp_path):
    path = _coco(tmp_path)
    (tmp_path / "images" / "b.jpg").unlink()
    with pytest.raises(InputError, match=r"1 of 2 images .* missing .*b\.jpg"):
        load_coco(path, images_dir=tmp_path / "images")


def _yolo(tmp_path: Path, lines: dict, names=("a", "b")) -> Path:
    for stem, text in lines.items():
        _write_image(tmp_path / "images" / "val" / f"{stem}.png", 100, 50)
        if text is not None:
            (tmp_path / "labels" / "val").mkdir(parents=True, exist_ok=True)
            (tmp_path / "labels" / "val" / f"{stem}.txt").write_text(text)
    (tmp_path / "data.yaml").write_text("path: .\nval: images/val\nnames:\n" +
                                        "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    return tmp_path


def test_yolo_detect_labels_to_pixels(tmp_path):
    ds = load_yolo(_yolo(tmp_path, {"x": "1 0.5 0.5 0.2 0.4\n", "y": None}))
    assert ds.task is Task.DETECT and ds.names == ["a", "b"] and len(ds) == 2
    gt = ds.ground_truth(ds.images[0].id)
    np.testing.assert_allclose(gt.boxes[0], [40, 15, 60, 35])  # image is 100x50
    assert gt.class_ids.tolist() == [1]
    assert len(ds.ground_truth(ds.images[1].id)) == 0  # no label file: background image


def test_yolo_obb_labels_to_xywhr(tmp_path):
    # an axis-aligned 20x10 px rectangle centred at (50, 25) written as 4 normalised corners
    ds = load_yolo(_yolo(tmp_path, {"x": "0 0.4 0.4 0.6 0.4 0.6 0.6 0.4 0.6\n"}))
    assert ds.task is Task.OBB
    cx, cy, w, h, a = ds.ground_truth(0).boxes[0]
    assert (cx, cy) == pytest.approx((50, 25))
    assert sorted([w, h]) == pytest.approx([10, 20])
    assert ds.to_coco()["annotations"][0]["bbox"] == pytest.approx([40, 20, 20, 10])


@pytest.mark.parametrize("text, message", [
    ("2 0.5 0.5 0.1 0.1\n", r"class 2 out of range.*2 classes"),  # label class >= nc
    ("0 50 25 10 10\n", "normalised"),  # pixel coordinates
    ("0 0.5 0.5\n", "5 values"),
    ("a b c d e\n", "not numbers"),
])
def test_yolo_label_errors(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        load_yolo(_yolo(tmp_path, {"x": text}))


def test_dota_txt(tmp_path):
    _write_image(tmp_path / "images" / "p1.png", 200, 100)
    (tmp_path / "labelTxt").mkdir()
    (tmp_path / "labelTxt" / "p1.txt").write_text(
        "imagesource:GoogleEarth\ngsd:0.1\n"
        "10 10 50 10 50 30 10 30 plane 0\n"
        "100 50 120 70 100 90 80 70 ship 1\n")
    ds = load_dota(tmp_path)
    assert ds.names == ["plane", "ship"] and ds.task is Task.OBB
    gt = ds.ground_truth(0)
    assert gt.ignore.tolist() == [False, True]  # difficult flag
    assert gt.boxes[1][:2] == pytest.approx([100, 70])
    assert gt.boxes[1][2] * gt.boxes[1][3] == pytest.approx(800, rel=1e-4)  # a 28.28 x 28.28 square rotated 45 deg
    assert math.isclose(abs(math.cos(gt.boxes[1][4] * 2)), 0, abs_tol=1e-4)
    (tmp_path / "labelTxt" / "p1.txt").write_text("10 10 50 10 50 30 10 30 car 0\n")
    with pytest.raises(InputError, match="unknown category 'car'"):
        load_dota(tmp_path, names=["plane", "ship"])


def test_load_dataset_detects_formats_on_synth(tmp_path):
    from trtalign.data.synth.dataset import generate_dataset
    from trtalign.data.synth.params import SynthParams

    generate_dataset(tmp_path / "det", SynthParams(task="detect", imgsz=96), val=3, seed=1)
    generate_dataset(tmp_path / "obb", SynthParams(task="obb", imgsz=96), val=3, seed=1)
    coco = load_dataset(tmp_path / "det")
    yolo = load_dataset(tmp_path / "det", fmt="yolo")
    assert coco.source == "coco" and yolo.source == "yolo"
    assert coco.num_boxes == yolo.num_boxes and coco.names == yolo.names
    # the same boxes through two formats (COCO ids from 1, YOLO from 0)
    a = sorted(map(tuple, np.round(coco.ground_truth(coco.images[0].id).boxes, 0)))
    b = sorted(map(tuple, np.round(yolo.ground_truth(yolo.images[0].id).boxes, 0)))
    assert a == b
    obb = load_dataset(tmp_path / "obb", task="obb")
    dota = load_dataset(tmp_path / "obb", fmt="dota")
    assert obb.task is Task.OBB and dota.task is Task.OBB and obb.num_boxes == dota.num_boxes
    assert dota.names == obb.names
    with pytest.raises(InputError, match="no dataset found"):
        load_dataset(tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_dataset(tmp_path / "nope")


def test_category_map_by_name_and_position(tmp_path):
    ds = load_coco(_coco(tmp_path))
    assert category_map(["cat90", "cat1"], ds).tolist() == [2, 0]  # by name, any order
    assert category_map(["0", "1", "2"], ds).tolist() == [0, 1, 2]  # generic names: by position
    assert category_map(["cat3", "dog"], ds).tolist() == [1, -1]  # a class the dataset lacks is dropped
    with pytest.raises(InputError, match="share no name"):
        category_map(["dog", "cow"], ds)
