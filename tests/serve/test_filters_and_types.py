"""Serve-time score threshold and max detections (server default, CLI flags, per-request query parameters) and
``Content-Type: application/octet-stream`` with the format sniffed. A real server on 127.0.0.1, ONNX Runtime backend."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from serve_helpers import png_bytes, request


def detect(url: str, body: bytes, query: str = "", content_type: str = "image/png") -> tuple[int, dict]:
    status, _, raw = request(url, "POST", "/v1/detect" + (f"?{query}" if query else ""), body,
                             {"Content-Type": content_type})
    return status, json.loads(raw)


def jpeg_bytes(img) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def raw_outputs(detect_onnx):
    """The model's whole NMS output per test image, straight from an ONNX Runtime runner (no server, no filter)."""
    from trtalign.core.preprocess import letterbox
    from trtalign.runtime.ort_runner import OrtRunner
    from trtalign.runtime.postprocess import nms_outputs_to_detections

    from trtalign.data.synth import SynthParams, render_split_image

    # images of the bundled proxy model's own domain: confident detections and a low-score tail
    images = [render_split_image(SynthParams(imgsz=224), 7, "val", i)[0] for i in range(2)]
    out = []
    with OrtRunner(str(detect_onnx)) as runner:
        for img in images:
            tensor, meta = letterbox(img, 160)
            out.append(nms_outputs_to_detections(runner.infer({"images": tensor}), [meta])[0])
    # the test model must spread its scores across the thresholds used below, or these tests prove nothing
    scores = np.concatenate([d.scores for d in out])
    assert (scores < 0.25).sum() > 0 and (scores >= 0.25).sum() >= 4, scores
    return images, out


@pytest.fixture(scope="module")
def default_server(detect_onnx):
    """A server with the default ServerConfig: score >= 0.25, at most 300 detections."""
    from trtalign.serve.predictor import Predictor
    from trtalign.serve.server import DetectionServer, ServerConfig

    srv = DetectionServer(Predictor.load(detect_onnx, backend="ort", max_batch=4),
                          ServerConfig(host="127.0.0.1", port=0)).start()
    yield srv
    srv.shutdown(10)


def expected(det, threshold: float, max_det: int):
    keep = np.flatnonzero(det.scores >= threshold)
    keep = keep[np.argsort(-det.scores[keep], kind="stable")][:max_det]
    return det.scores[keep], det.class_ids[keep]


def check(payload: dict, det, threshold: float, max_det: int) -> None:
    scores, classes = expected(det, threshold, max_det)
    got = np.array([d["score"] for d in payload["detections"]], np.float32)
    assert payload["count"] == len(scores) == len(got)
    np.testing.assert_allclose(got, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal([d["class_id"] for d in payload["detections"]], classes)
    assert payload["filter"]["score_threshold"] == threshold and payload["filter"]["max_det"] == max_det
    assert payload["filter"]["model_score_threshold"] == 0.0  # the test model's in-graph NMS threshold


def test_default_threshold_is_0_25(default_server, raw_outputs):
    images, raws = raw_outputs
    for img, det in zip(images, raws):
        status, payload = detect(default_server.url, png_bytes(img))
        assert status == 200, payload
        check(payload, det, 0.25, 300)
        assert len(det) > payload["count"]  # the raw output has more: the filter removed the low-score tail
    status, _, raw = request(default_server.url, "GET", "/v1/model")
    assert status == 200
    assert json.loads(raw)["filter"] == {"score_threshold": 0.25, "max_det": 300, "model_score_threshold": 0.0}


@pytest.mark.parametrize("query,threshold,max_det", [
    ("score_threshold=0.5", 0.5, 300),                 # stricter than the server's default
    ("score_threshold=0", 0.0, 300),                   # everything the model's NMS returned
    ("max_det=3", 0.25, 3),                            # the best three above the default threshold
    ("score_threshold=0.1&max_det=1", 0.1, 1),         # both
])
def test_per_request_query_parameters(default_server, raw_outputs, query, threshold, max_det):
    images, raws = raw_outputs
    for img, det in zip(images, raws):
        status, payload = detect(default_server.url, png_bytes(img), query)
        assert status == 200, payload
        check(payload, det, threshold, max_det)


@pytest.mark.parametrize("query,fragment", [
    ("score_threshold=1.5", "[0, 1]"),
    ("score_threshold=abc", "a number in [0, 1]"),
    ("max_det=0", ">= 1"),
    ("max_det=2.5", "an integer >= 1"),
    ("conf=0.3", "valid: score_threshold, max_det"),   # ultralytics' name is not ours: say which names are
])
def test_bad_query_parameters_are_400_and_server_keeps_serving(default_server, raw_outputs, query, fragment):
    images, raws = raw_outputs
    status, payload = detect(default_server.url, png_bytes(images[0]), query)
    assert status == 400 and payload["error"]["code"] == "bad_query" and fragment in payload["error"]["message"]
    status, payload = detect(default_server.url, png_bytes(images[0]))
    assert status == 200 and payload["count"] > 0


def test_octet_stream_is_sniffed(default_server, raw_outputs):
    images, raws = raw_outputs
    for body in (png_bytes(images[0]), jpeg_bytes(images[0])):
        status, as_octets = detect(default_server.url, body, "score_threshold=0", "application/octet-stream")
        assert status == 200, as_octets
        status, as_png = detect(default_server.url, body, "score_threshold=0", "image/png")
        assert status == 200
        assert [d["box"] for d in as_octets["detections"]] == [d["box"] for d in as_png["detections"]]
    check(detect(default_server.url, png_bytes(images[0]), "", "application/octet-stream")[1], raws[0], 0.25, 300)
    status, payload = detect(default_server.url, b"hello, not an image", "", "application/octet-stream")
    assert status == 400 and payload["error"]["code"] == "not_an_image"
    status, payload = detect(default_server.url, png_bytes(images[0]), "", "text/plain")
    assert status == 415 and "application/octet-stream" in payload["error"]["message"]


def test_cli_flags_set_the_server_filter(detect_onnx, raw_outputs):
    images, raws = raw_outputs
    proc = subprocess.Popen([sys.executable, "-m", "trtalign", "serve", str(detect_onnx), "--port", "0",
                             "--backend", "ort", "--score-threshold", "0.4", "--max-det", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "score >= 0.4, max 2 per image" in line and " on http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split(" on http://", 1)[1].split()[0]
        status, payload = detect("http://" + url, png_bytes(images[1]))
        assert status == 200, payload
        check(payload, raws[1], 0.4, 2)
        status, payload = detect("http://" + url, png_bytes(images[1]), "max_det=300&score_threshold=0.25")
        check(payload, raws[1], 0.25, 300)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_rejects_bad_filter_flags(detect_onnx):
    proc = subprocess.run([sys.executable, "-m", "trtalign", "serve", str(detect_onnx), "--port", "0",
                           "--score-threshold", "2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--score-threshold" in proc.stderr


def test_cli_defaults_are_the_serve_defaults():
    """`trtalign serve --help` avoids importing the serve package, so the CLI repeats its defaults: keep them equal."""
    from trtalign.cli import serve_cmd
    from trtalign.serve import predictor

    assert serve_cmd.DEFAULT_SCORE_THRESHOLD == predictor.DEFAULT_SCORE_THRESHOLD
    assert serve_cmd.DEFAULT_MAX_DET == predictor.DEFAULT_MAX_DET
