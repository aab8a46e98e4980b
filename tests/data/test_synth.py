"""The synthetic dataset generator: determinism, label formats (COCO / YOLO / OBB / DOTA), label consistency, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from trtalign.core.errors import ConfigError, InputError
from trtalign.data.synth import (CLASS_NAMES, MANIFEST, SynthParams, generate_dataset, image_rng, render_image,
                                 render_split_image)


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def detect_ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_detect")
    return generate_dataset(out, SynthParams(task="detect"), train=4, val=8, seed=7, show_progress=False)


@pytest.fixture(scope="module")
def obb_ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_obb")
    return generate_dataset(out, SynthParams(task="obb"), train=4, val=8, seed=7, show_progress=False)


@pytest.mark.parametrize("task", ["detect", "obb"])
def test_same_seed_gives_byte_identical_files(tmp_path, task):
    params = SynthParams(task=task, imgsz=160)
    a = generate_dataset(tmp_path / "a", params, train=3, val=4, seed=11, show_progress=False)
    b = generate_dataset(tmp_path / "b", params, train=3, val=4, seed=11, workers=2, show_progress=False)
    files_a, files_b = _all_files(a.out), _all_files(b.out)
    assert files_a.keys() == files_b.keys()
    assert files_a == files_b  # byte for byte, also with a process pool rendering
    manifest = json.loads((a.out / MANIFEST).read_text())
    assert len(manifest["files"]) >= 3 * 4 + 2  # images + labels + json + yaml
    c = generate_dataset(tmp_path / "c", params, train=3, val=4, seed=12, show_progress=False)
    assert _all_files(c.out)["images/val/000000.jpg"] != files_a["images/val/000000.jpg"]


def test_images_are_independent_of_split_size():
    params = SynthParams(imgsz=160)
    img_a, objs_a = render_split_image(params, 5, "val", 3)
    img_b, objs_b = render_image(params, image_rng(5, "val", 3))
    assert np.array_equal(img_a, img_b) and objs_a == objs_b
    img_t, _ = render_split_image(params, 5, "train", 3)
    assert not np.array_equal(img_a, img_t)  # splits draw different images


def test_coco_json_loads_in_pycocotools_and_scores_itself_perfectly(detect_ds):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(detect_ds.coco["val"]))
    assert sorted(gt.getCatIds()) == list(range(1, len(CLASS_NAMES) + 1))
    assert [gt.cats[i]["name"] for i in range(1, len(CLASS_NAMES) + 1)] == list(CLASS_NAMES)
    anns = gt.loadAnns(gt.getAnnIds())
    assert len(anns) == detect_ds.instances["val"] > 0
    for ann in anns:
        x, y, w, h = ann["bbox"]
        assert ann["iscrowd"] == 0 and ann["area"] > 0 and w > 0 and h > 0
        assert x >= 0 and y >= 0 and x + w <= 320 and y + h <= 320  # clipped to what is visible
        assert ann["area"] <= w * h + 1e-6  # visible pixels fit in their box
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in anns]
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    assert (detect_ds.out / "annotations" / "instances_train.json").is_file()


def test_yolo_labels_match_coco(detect_ds):
    coco = json.loads(detect_ds.coco["val"].read_text())
    by_image: dict[int, list] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for img in coco["images"]:
        stem = Path(img["file_name"]).stem
        assert (detect_ds.out / "images" / "val" / img["file_name"]).is_file()
        rows = np.loadtxt(detect_ds.out / "labels" / "val" / f"{stem}.txt", ndmin=2)
        anns = by_image.get(img["id"], [])
        assert len(rows) == len(anns)
        for row, ann in zip(rows, anns):
            x, y, w, h = ann["bbox"]
            assert int(row[0]) + 1 == ann["category_id"]
            np.testing.assert_allclose(row[1:] * 320, [x + w / 2, y + h / 2, w, h], atol=0.02)


def test_obb_labels_parse_and_are_rectangles(obb_ds):
    from shapely.geometry import Polygon

    coco = json.loads(obb_ds.coco["val"].read_text())
    anns = coco["annotations"]
    assert anns
    yolo_rows = []
    for img in coco["images"]:
        stem = Path(img["file_name"]).stem
        rows = np.loadtxt(obb_ds.out / "labels" / "val" / f"{stem}.txt", ndmin=2)
        dota = (obb_ds.out / "dota" / "val" / f"{stem}.txt").read_text().splitlines()
        assert rows.shape[1] == 9 and len(dota) == len(rows)
        assert ((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1)).all()
        for row, line in zip(rows, dota):
            parts = line.split()
            assert parts[8] == CLASS_NAMES[int(row[0])] and parts[9] == "0"
            np.testing.assert_allclose(np.array(parts[:8], float), row[1:] * 320, atol=0.06)
        yolo_rows.extend(rows)
    assert len(yolo_rows) == len(anns)
    for row, ann in zip(yolo_rows, anns):
        cx, cy, w, h, theta = ann["obb"]
        assert 0 <= theta < math.pi and w > 0 and h > 0
        corners = row[1:].reshape(4, 2) * 320
        poly = Polygon(corners)
        assert poly.is_valid
        assert poly.area == pytest.approx(w * h, rel=1e-3)  # a rectangle of the stated size
        assert poly.minimum_rotated_rectangle.area == pytest.approx(poly.area, rel=1e-3)
        np.testing.assert_allclose(corners.mean(0), [cx, cy], atol=0.01)
        assert w >= h * 1.3  # elongated, so the orientation is defined


def test_obb_box_is_the_true_oriented_extent():
    """Every object pixel of a lone unoccluded object lies inside its oriented box, and the box is tight."""
    params = dataclasses.replace(SynthParams(task="obb", imgsz=192), max_distractors=0, max_lines=0, min_objects=1,
                                 max_objects=1, blur_prob=0.0, max_noise_sigma=0.0, outline_prob=0.0,
                                 photo_background_prob=0.0, shape_jitter=0.0)
    from trtalign.data.synth import render as render_mod

    checked = 0
    for i in range(12):
        rng = image_rng(3, "val", i)
        # re-draw the same image and capture the object's mask from the painter
        masks = []
        original = render_mod._paint

        def spy(img, item, p, r, _orig=original):
            _orig(img, item, p, r)
            masks.append((item.mask, item.region))

        render_mod._paint = spy
        try:
            _, objs = render_image(params, rng)
        finally:
            render_mod._paint = original
        if not objs:
            continue
        (mask, (x0, y0, _, _)), obj = masks[0], objs[0]
        ys, xs = np.nonzero(mask >= 128)
        cx, cy, w, h, t = obj.obb
        u = (xs + x0 + 0.5 - cx) * math.cos(t) + (ys + y0 + 0.5 - cy) * math.sin(t)
        v = -(xs + x0 + 0.5 - cx) * math.sin(t) + (ys + y0 + 0.5 - cy) * math.cos(t)
        assert np.abs(u).max() <= w / 2 + 1.0 and np.abs(v).max() <= h / 2 + 1.0
        assert np.abs(u).max() >= w / 2 - 1.5 and np.abs(v).max() >= h / 2 - 1.5  # tight
        checked += 1
    assert checked >= 6


def test_occluded_and_out_of_frame_objects_are_dropped():
    strict = SynthParams(min_visible=0.97)
    loose = SynthParams(min_visible=0.0)
    n_strict = n_loose = 0
    for i in range(16):
        _, objs_s = render_image(strict, image_rng(1, "val", i))
        _, objs_l = render_image(loose, image_rng(1, "val", i))
        n_strict += len(objs_s)
        n_loose += len(objs_l)
        assert all(o.visible >= 0.97 for o in objs_s)
    assert n_loose > n_strict  # some objects are partly hidden or cut by the frame


def test_dataset_has_variety(detect_ds):
    coco = json.loads(detect_ds.coco["val"].read_text())
    cats = {a["category_id"] for a in coco["annotations"]}
    sizes = [max(a["bbox"][2:]) for a in coco["annotations"]]
    assert len(cats) >= 6
    assert min(sizes) < 24 and max(sizes) > 60  # small and large objects
    img = cv2.imread(str(detect_ds.out / "images" / "val" / "000000.jpg"))
    assert img.shape == (320, 320, 3) and img.std() > 10


def test_ultralytics_reads_the_dataset(obb_ds):
    from ultralytics.data.utils import check_det_dataset, verify_image_label

    data = check_det_dataset(str(obb_ds.data_yaml))
    assert data["nc"] == len(CLASS_NAMES) and Path(data["val"]).is_dir()
    im = obb_ds.out / "images" / "val" / "000000.jpg"
    lb = obb_ds.out / "labels" / "val" / "000000.txt"
    result = verify_image_label((str(im), str(lb), "", False, len(CLASS_NAMES), 0, 0, False))
    assert result[0] is not None and result[9] == ""  # not corrupt, no warning
    assert len(result[3]) == len(lb.read_text().splitlines())  # OBB rows read as 4-point segments


def test_trtalign_datasets_load_the_output(detect_ds, obb_ds):
    from trtalign.data.datasets import load_dataset

    for fmt in ("coco", "yolo"):
        ds = load_dataset(detect_ds.out, fmt=fmt)
        assert ds.num_boxes == detect_ds.instances["val"] and len(ds) == 8
    ds = load_dataset(obb_ds.out, fmt="dota")
    assert ds.rotated and ds.num_boxes == obb_ds.instances["val"]


@pytest.mark.parametrize("kwargs, error", [
    ({"task": "segment"}, ConfigError),          # unknown task lists the valid ones
    ({"imgsz": 8}, ConfigError),                 # too small
    ({"min_size": 0.5, "max_size": 0.2}, ConfigError),
    ({"min_visible": 1.5}, ConfigError),
    ({"image_format": "bmp"}, ConfigError),
])
def test_bad_params_are_rejected(kwargs, error):
    with pytest.raises(error):
        SynthParams(**kwargs)


def test_params_round_trip_and_unknown_keys():
    p = SynthParams(task="obb", max_objects=4)
    assert SynthParams.from_dict(p.to_dict()) == p
    with pytest.raises(ConfigError, match="valid"):
        SynthParams.from_dict({"nope": 1})


def test_refuses_a_foreign_non_empty_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        generate_dataset(tmp_path, SynthParams(imgsz=64), val=1)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_rewrites_its_own_output(tmp_path):
    generate_dataset(tmp_path, SynthParams(imgsz=64), val=5, show_progress=False)
    generate_dataset(tmp_path, SynthParams(imgsz=64), val=2, show_progress=False)
    assert len(list((tmp_path / "images" / "val").iterdir())) == 2  # no stale files from the bigger run


def test_cli_data_synth(cli, tmp_path):
    out = tmp_path / "ds"
    code, stdout, stderr = cli("data", "synth", "--out", str(out), "--task", "obb", "--train", "2", "--val", "3",
                               "--imgsz", "128", "--seed", "4", "--set", "max_objects=3", "--json",
                               str(tmp_path / "r.json"))
    assert code == 0, stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["counts"] == {"train": 2, "val": 3} and result["params"]["max_objects"] == 3
    assert (out / "dota" / "val" / "000002.txt").is_file() and (out / "data.yaml").is_file()
    code, _, stderr = cli("data", "synth", "--out", str(out), "--set", "bogus=1")
    assert code == 2 and "bogus" in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_generation_speed_at_320():
    import time

    params = SynthParams()
    start = time.perf_counter()
    for i in range(100):
        render_image(params, image_rng(0, "val", i))
    assert 100 / (time.perf_counter() - start) >= 50


def _former_corners(box: np.ndarray) -> np.ndarray:
    """render._label's own corner code before it used core.geometry: (-,-), (+,-), (+,+), (-,+) @ R(theta).T."""
    cx, cy, w, h, theta = (float(v) for v in box)
    c, sn = np.cos(theta), np.sin(theta)
    local = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2.0
    return local @ np.array([[c, -sn], [sn, c]]).T + (cx, cy)


def test_obb_corners_come_from_core_geometry():
    from trtalign.core import geometry
    from trtalign.data.synth import render

    assert render.rotated_corners is geometry.rotated_corners  # one corner convention in the project


def test_obb_labels_unchanged_by_core_geometry_corners(monkeypatch, tmp_path):
    # the same images with the former corner code and with core.geometry's: every label number agrees to 1e-9
    # (the two sum in a different order, so a corner may move in its last bit, ~1e-13 px) and the written label
    # files (6 decimals normalised, COCO 2 decimals, DOTA 1 decimal) are byte-identical
    from trtalign.data.synth import render

    params = SynthParams(task="obb", imgsz=320)
    rngs = [("val", i) for i in range(40)]
    new = [render_image(params, image_rng(3, split, i))[1] for split, i in rngs]
    files_new = _all_files(generate_dataset(tmp_path / "new", params, train=4, val=8, seed=3, show_progress=False).out)
    monkeypatch.setattr(render, "rotated_corners", _former_corners)
    old = [render_image(params, image_rng(3, split, i))[1] for split, i in rngs]
    files_old = _all_files(generate_dataset(tmp_path / "old", params, train=4, val=8, seed=3, show_progress=False).out)
    assert sum(len(objs) for objs in old) > 40
    for objs_old, objs_new in zip(old, new):
        assert [(o.class_id, o.visible, o.area) for o in objs_old] == [(o.class_id, o.visible, o.area)
                                                                        for o in objs_new]
        for o, n in zip(objs_old, objs_new):
            np.testing.assert_allclose(n.obb, o.obb, rtol=0, atol=1e-9)
            np.testing.assert_allclose(n.box, o.box, rtol=0, atol=1e-9)
            np.testing.assert_allclose(n.corners, o.corners, rtol=0, atol=1e-9)
    assert files_old.keys() == files_new.keys() and files_old == files_new
