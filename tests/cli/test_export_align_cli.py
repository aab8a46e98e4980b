"""`trtalign export` and `trtalign align`: exit codes, one-line errors, no half files.

One end-to-end run goes through a subprocess (the real entry point); the error cases call ``trtalign.cli.main``
in-process (same dispatcher, same error mapping) to keep the file fast.
"""

from __future__ import annotations

import json

import pytest

from cli_helpers import assert_one_line_error, main_captured

pytest.importorskip("ultralytics")


def test_export_then_align_pass(cli, yolo_checkpoint, image_folder, tmp_path):
    pt = yolo_checkpoint("yolov8n.yaml")
    out = tmp_path / "m.onnx"
    rc, stdout, err = cli("export", str(pt), "--imgsz", "160", "--dynamic-batch", "2", "--nms", "auto",
                          "--score-threshold", "0.25", "--out", str(out), "--json", str(tmp_path / "export.json"))
    assert rc == 0, err
    assert "EfficientNMS_TRT" in stdout and out.is_file()
    exp = json.loads((tmp_path / "export.json").read_text())
    assert exp["nms_op"] == "EfficientNMS_TRT" and exp["batch"] == "batch" and exp["max_batch"] == 2
    images = tmp_path / "imgs"
    images.mkdir()
    for p in sorted(image_folder.iterdir())[:2]:
        (images / p.name).write_bytes(p.read_bytes())
    (images / "readme.txt").write_text("not an image")
    rc, stdout, err = cli("align", str(pt), str(out), "--images", str(images), "--json", str(tmp_path / "a.json"))
    assert rc == 0, stdout + err
    assert "readme.txt" in err and "skipping" in err  # non-image files are skipped with a warning
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["passed"] and result["images"] == 2
    assert result["detections_aligned"]["aligned_fraction"] >= 0.99
    assert "PASS" in stdout


def test_export_errors_exit_2_and_write_nothing(capsys, tmp_path):
    out = tmp_path / "o.onnx"
    (tmp_path / "bad.pt").write_bytes(b"\x80\x04junk")
    (tmp_path / "raw.onnx").write_bytes(b"garbage")
    (tmp_path / "bad.yaml").write_text("backbone: [[-1, 1, NoSuchModule, [64]]]\nhead: []\n")
    cases = [
        (["yolov8n.yaml", "--imgsz", "100"], "multiple of the model stride"),
        (["yolov8n.yaml", "--imgsz", "160", "--iou-threshold", "1.5"], "iou_threshold"),
        (["yolov8n.yaml", "--imgsz", "160", "--score-threshold", "-0.1"], "score_threshold"),
        (["yolov8n.yaml", "--imgsz", "160", "--max-det", "0"], "max_output_boxes"),
        (["yolov8n-obb.yaml", "--imgsz", "160", "--nms", "efficient"], "obb model"),
        ([str(tmp_path / "nope.pt"), "--imgsz", "160"], "not found"),
        ([str(tmp_path / "nope.yaml"), "--imgsz", "160"], "not found"),
        ([str(tmp_path / "bad.pt"), "--imgsz", "160"], "cannot load"),
        ([str(tmp_path / "bad.yaml"), "--imgsz", "160"], "cannot load"),
        ([str(tmp_path / "raw.onnx"), "--imgsz", "160"], "cannot read"),
        (["yolov8n.yaml", "--imgsz", "160", "--opset", "11"], "--opset"),
    ]
    for argv, fragment in cases:
        rc, _, err = main_captured(capsys, "export", *argv, "--out", str(out))
        assert_one_line_error(rc, err, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "bad.yaml", "raw.onnx"]


def test_byo_onnx_config_and_layout_mismatch(capsys, tmp_path):
    import onnx

    from trtalign.export.adapters import load_adapter

    raw = load_adapter("yolov8n.yaml").to_raw_onnx(160)
    onnx.save(raw, str(tmp_path / "plain.onnx"))
    good = tmp_path / "good.yaml"
    good.write_text(f"model: {tmp_path / 'plain.onnx'}\nimgsz: 160\nlayout: {{task: detect, num_classes: 80}}\n")
    rc, stdout, err = main_captured(capsys, "export", "--config", str(good), "--out", str(tmp_path / "byo.onnx"))
    assert rc == 0, err
    assert "onnx detect" in stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model: {tmp_path / 'plain.onnx'}\nimgsz: 160\nlayout: {{task: obb, num_classes: 80}}\n")
    rc, _, err = main_captured(capsys, "export", "--config", str(bad), "--out", str(tmp_path / "x.onnx"))
    assert_one_line_error(rc, err, "declared layout")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model: yolov8n.yaml\nimgsz: 160\nbogus: 1\n")
    rc, _, err = main_captured(capsys, "export", "--config", str(unknown), "--out", str(tmp_path / "y.onnx"))
    assert_one_line_error(rc, err, "bogus")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.onnx").exists()


def test_align_errors(capsys, yolo_checkpoint, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    pt = yolo_checkpoint("yolov8n.yaml")
    rc, _, err = main_captured(capsys, "align", str(pt), str(tmp_path / "missing.onnx"), "--images", str(empty))
    assert_one_line_error(rc, err, "no images")
    rc, _, err = main_captured(capsys, "align", str(pt), str(tmp_path / "missing.onnx"), "--images", str(tmp_path / "nodir"))
    assert_one_line_error(rc, err, "not found")
    (empty / "b.png").write_bytes(b"x")
    rc, _, err = main_captured(capsys, "align", str(pt), str(tmp_path / "missing.onnx"), "--images", str(empty))
    assert_one_line_error(rc, err, "ONNX file not found")
    rc, _, err = main_captured(capsys, "align", str(pt), str(tmp_path / "missing.onnx"), "--images", str(empty),
                       "--max-images", "0")
    assert_one_line_error(rc, err, "max_images")
