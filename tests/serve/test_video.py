"""Video mode: a real video file through the predictor -> JSON lines and an annotated video, written atomically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from serve_helpers import make_image
from trtalign.core.errors import InputError, UnsupportedError
from trtalign.serve.predictor import OutputFilter
from trtalign.serve.video import run_video, source_kind


@pytest.fixture(scope="module")
def predictor(detect_onnx):
    from trtalign.serve.predictor import Predictor

    p = Predictor.load(detect_onnx, backend="ort", max_batch=4)
    yield p
    p.close()


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    assert writer.isOpened()
    for i in range(6):
        writer.write(make_image(96, 128, i))
    writer.release()
    return path


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def test_jsonl_and_annotated_video(predictor, video_file, tmp_path):
    jsonl, out = tmp_path / "dets.jsonl", tmp_path / "annotated.mp4"
    result = run_video(predictor, str(video_file), jsonl=jsonl, out=out, output_filter=OutputFilter(0.0, 300))
    frames = _frames(video_file)
    assert result.frames == len(frames) == 6 and not result.stopped_early
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(6))
    expected = predictor.predict(frames)  # the same decoded frames, directly
    for rec, det in zip(records, expected):
        assert rec["image"] == {"width": 128, "height": 96} and rec["count"] == len(det) > 0
        np.testing.assert_allclose([d["box"] for d in rec["detections"]], det.boxes, atol=1e-3)
        np.testing.assert_allclose([d["score"] for d in rec["detections"]], det.scores, rtol=1e-5)
    assert result.detections == sum(len(d) for d in expected)
    annotated = _frames(out)
    assert len(annotated) == 6 and annotated[0].shape == (96, 128, 3)
    assert np.abs(annotated[0].astype(int) - frames[0].astype(int)).mean() > 0.5  # boxes were drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4", "dets.jsonl"]  # no temp files left
    # the default filter (score >= 0.25, at most 300): only what a client wants, and the record says so
    run_video(predictor, str(video_file), jsonl=tmp_path / "default.jsonl")
    records = [json.loads(line) for line in (tmp_path / "default.jsonl").read_text().splitlines()]
    for rec, det in zip(records, expected):
        assert rec["count"] == int((det.scores >= 0.25).sum()) < len(det)
        assert rec["filter"]["score_threshold"] == 0.25 and rec["filter"]["max_det"] == 300


def test_stop_event_and_max_frames(predictor, video_file, tmp_path):
    res = run_video(predictor, str(video_file), jsonl=tmp_path / "a.jsonl", max_frames=2)
    assert res.frames == 2 and len((tmp_path / "a.jsonl").read_text().splitlines()) == 2
    stop = threading.Event()
    stop.set()
    with pytest.raises(InputError, match="no frames"):  # stopped before the first frame: nothing written
        run_video(predictor, str(video_file), jsonl=tmp_path / "b.jsonl", stop=stop)
    assert not (tmp_path / "b.jsonl").exists()


def test_bad_sources_and_outputs(predictor, video_file, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        run_video(predictor, str(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="URL scheme"):
        run_video(predictor, "ftp://example.invalid/x.mp4")
    with pytest.raises(InputError, match="does not exist"):
        run_video(predictor, "/dev/video987")
    with pytest.raises(InputError, match="unsupported video container"):
        run_video(predictor, str(video_file), jsonl=tmp_path / "c.jsonl", out=tmp_path / "x.gif")
    assert list(tmp_path.iterdir()) == []  # the failed run left no JSON lines behind
    if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        with pytest.raises(UnsupportedError, match="GStreamer"):
            run_video(predictor, "videotestsrc num-buffers=3 ! videoconvert ! appsink")


@pytest.mark.parametrize("source,kind", [
    ("rtsp://10.0.0.2:8554/cam", "stream"),
    ("/dev/video0", "camera"),
    ("0", "camera"),
    ("clip.mp4", "file"),
    ("nvarguscamerasrc ! video/x-raw(memory:NVMM) ! nvvidconv ! appsink", "gstreamer"),
])
def test_source_kinds(source, kind):
    assert source_kind(source) == kind


def test_cli_video_mode(detect_onnx, video_file, tmp_path, cli):
    code, out, err = cli("serve", str(detect_onnx), "--source", str(video_file), "--jsonl", str(tmp_path / "d.jsonl"),
                         "--max-frames", "3", "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 3
    assert json.loads((tmp_path / "r.json").read_text())["frames"] == 3
    code, out, err = cli("serve", str(detect_onnx), "--jsonl", str(tmp_path / "e.jsonl"))
    assert code == 2 and "--source" in err and not (tmp_path / "e.jsonl").exists()


def test_cli_video_ctrl_c_keeps_the_frames_then_exits_130(detect_onnx, tmp_path):
    # Ctrl-C in video mode: the frames processed are kept (files completed and renamed), then exit 130 with the
    # convention's last stderr line (tests/cli/test_interrupts.py); a long clip so that the signal lands mid-stream
    clip = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    for i in range(3000):
        writer.write(make_image(96, 128, i % 7))
    writer.release()
    jsonl = tmp_path / "dets.jsonl"
    env = dict(os.environ, TRTALIGN_NO_PROGRESS="1", TRTALIGN_ORT_THREADS="1", YOLO_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "trtalign", "serve", str(detect_onnx), "--backend", "ort", "--source",
                             str(clip), "--jsonl", str(jsonl)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size > 0 for p in tmp_path.glob(".dets.jsonl.*.tmp")):  # frames are being written
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and err.strip().splitlines()[-1] == "trtalign serve: interrupted (SIGINT)", err
        records = [json.loads(line) for line in jsonl.read_text().splitlines()]  # completed, renamed, parses
        assert 0 < len(records) < 3000 and f"{len(records)} frames from" in out
        assert list(tmp_path.glob(".*.tmp")) == []
    finally:
        if proc.poll() is None:
            proc.kill()
