"""The real HTTP server on 127.0.0.1 with the ONNX Runtime backend: detections, errors, concurrency, shutdown."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serve_helpers import make_image, png_bytes, post_image, request
from trtalign.serve.metrics import parse_prometheus_text


def _expected(onnx_path, images):
    """Detections computed without the server: core letterbox + OrtRunner + runtime postprocess, batch 1."""
    from trtalign.core.preprocess import letterbox
    from trtalign.runtime.ort_runner import OrtRunner
    from trtalign.runtime.postprocess import nms_outputs_to_detections

    out = []
    with OrtRunner(str(onnx_path)) as runner:
        for img in images:
            tensor, meta = letterbox(img, 160)
            out.append(nms_outputs_to_detections(runner.infer({"images": tensor}), [meta])[0])
    return out


def _assert_same(payload, det):
    assert payload["count"] == len(det) > 0
    boxes = np.array([d["box"] for d in payload["detections"]], np.float32)
    scores = np.array([d["score"] for d in payload["detections"]], np.float32)
    classes = np.array([d["class_id"] for d in payload["detections"]])
    np.testing.assert_allclose(boxes, det.boxes, atol=1e-2, rtol=1e-4)
    np.testing.assert_allclose(scores, det.scores, atol=1e-6, rtol=1e-3)
    np.testing.assert_array_equal(classes, det.class_ids)


def _multipart(data: bytes, field: str = "image") -> tuple[bytes, str]:
    boundary = "trtalign-test-boundary-7f3a"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_detections_match_ort_runner(server, detect_onnx):
    images = [make_image(120, 200, 1), make_image(240, 180, 2), make_image(97, 333, 3)]
    expected = _expected(detect_onnx, images)
    for img, det in zip(images, expected):
        status, payload = post_image(server.url, png_bytes(img))
        assert status == 200, payload
        assert payload["image"] == {"width": img.shape[1], "height": img.shape[0]}
        assert payload["box_format"] == "xyxy"
        _assert_same(payload, det)
        boxes = np.array([d["box"] for d in payload["detections"]])
        assert boxes[:, [0, 2]].max() <= img.shape[1] and boxes[:, [1, 3]].max() <= img.shape[0]  # original pixels
    body, ctype = _multipart(png_bytes(images[0]))
    status, payload = post_image(server.url, body, ctype)
    assert status == 200, payload
    _assert_same(payload, expected[0])


def test_model_health_and_routes(server):
    status, _, body = request(server.url, "GET", "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = request(server.url, "GET", "/v1/model")
    info = json.loads(body)
    assert status == 200
    assert info["input_size"] == [160, 160] and info["max_batch"] == 8 and info["backend"] == "ort"
    assert info["runner"] == "ort-fp32" and info["num_classes"] == len(info["classes"]) > 0
    assert info["build"]["nms"]["max_output_boxes"] == 50
    status, _, body = request(server.url, "GET", "/nope")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


def _bomb_png(w: int = 20000, h: int = 20000) -> bytes:
    """A valid-looking PNG whose header declares w x h RGB pixels; the compressed rows make it a few KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = zlib.compress(b"\x00" + b"\x00" * (3 * w), 9) * 4  # a few rows' worth; the decoder would want 1.2 GB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", rows)
            + chunk(b"IEND", b""))


BAD_REQUESTS = [
    # (id, body, content type, expected status, expected error code)
    ("malformed-png", png_bytes(make_image(50, 60, 9))[:40] + b"\x00garbage" * 20, "image/png", 400, "malformed_image"),
    ("non-image", b"this is plain text, not a picture" * 10, "image/jpeg", 400, "not_an_image"),
    ("empty-body", b"", "image/png", 400, "empty_body"),
    ("bomb-20000x20000", _bomb_png(), "image/png", 413, "image_too_large"),
    ("wrong-content-type", png_bytes(make_image(50, 60, 9)), "text/plain", 415, "unsupported_media_type"),
    ("oversized-upload", b"\x89PNG\r\n\x1a\n" + os.urandom(3 * 1024 * 1024), "image/png", 413, "payload_too_large"),
    ("multipart-without-image", _multipart(b"abc", field="file")[0], _multipart(b"")[1], 400, "missing_field"),
    ("truncated-jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg", 400, "malformed_image"),
]


@pytest.mark.parametrize("name,body,ctype,status,code", BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS])
def test_bad_requests_get_json_4xx_and_server_keeps_serving(server, name, body, ctype, status, code):
    got_status, _, raw = request(server.url, "POST", "/v1/detect", body, {"Content-Type": ctype})
    payload = json.loads(raw)
    assert got_status == status, payload
    assert payload["error"]["code"] == code and payload["error"]["status"] == status and payload["error"]["message"]
    ok_status, ok_payload = post_image(server.url, png_bytes(make_image(64, 64, 5)))
    assert ok_status == 200 and ok_payload["count"] > 0


def test_expect_100_continue_refuses_oversized_body_before_it_is_sent(server):
    import socket

    host, port = server.address
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 10000000000\r\nExpect: 100-continue\r\n\r\n")
        reply = b""
        while b"}}" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"100 Continue" not in head
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert post_image(server.url, png_bytes(make_image(64, 64, 5)))[0] == 200


def test_200_concurrent_requests_all_answered_and_batched(server):
    before = parse_prometheus_text(request(server.url, "GET", "/metrics")[2].decode())
    n = 200
    sizes = [(60 + (i % 7) * 11, 70 + (i % 5) * 13) for i in range(n)]
    bodies = [png_bytes(make_image(h, w, i % 7)) for i, (h, w) in enumerate(sizes)]
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait(30)
        return post_image(server.url, bodies[i], timeout=120)

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(one, range(n)))
    assert len(results) == n
    for (status, payload), (h, w) in zip(results, sizes):
        assert status == 200, payload
        assert payload["image"] == {"width": w, "height": h}  # every answer belongs to its own request
    after = parse_prometheus_text(request(server.url, "GET", "/metrics")[2].decode())
    batches = after["trtalign_batch_size_count"] - before.get("trtalign_batch_size_count", 0)
    batched_items = after["trtalign_batch_size_sum"] - before.get("trtalign_batch_size_sum", 0)
    singles = after['trtalign_batch_size_bucket{le="1"}'] - before.get('trtalign_batch_size_bucket{le="1"}', 0)
    assert batched_items == n  # none lost, none processed twice
    assert batches < n and singles < batches  # batches larger than 1 happened
    assert after['trtalign_batch_size_bucket{le="8"}'] == after["trtalign_batch_size_count"]  # never above max
    for stage in ("decode", "preprocess", "inference", "postprocess"):
        assert after[f"trtalign_{stage}_seconds_count"] > 0
    assert after['trtalign_requests_total{path="/v1/detect",code="200"}'] >= n
    assert after["trtalign_queue_depth"] == 0 and after["trtalign_requests_in_flight"] == 0


def _start_server(detect_onnx, max_batch=8, max_wait_ms=5.0, max_queue=256):
    from trtalign.serve.batching import BatchingConfig
    from trtalign.serve.predictor import OutputFilter, Predictor
    from trtalign.serve.server import DetectionServer, ServerConfig

    predictor = Predictor.load(detect_onnx, backend="ort", max_batch=max_batch)
    return DetectionServer(predictor, ServerConfig(port=0, batching=BatchingConfig(max_batch, max_wait_ms, max_queue),
                                                   output_filter=OutputFilter(0.0, 300))).start()


def test_overload_answers_503_and_recovers(detect_onnx):
    srv = _start_server(detect_onnx, max_batch=1, max_wait_ms=0, max_queue=2)
    try:
        body = png_bytes(make_image(120, 160, 4))
        n = 40
        barrier = threading.Barrier(n)

        def one(_):
            barrier.wait(30)
            return post_image(srv.url, body, timeout=120)

        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(one, range(n)))
        codes = [s for s, _ in results]
        assert set(codes) <= {200, 503} and codes.count(503) > 0 and codes.count(200) >= 3
        assert all(p["error"]["code"] == "overloaded" for s, p in results if s == 503)
        assert post_image(srv.url, body)[0] == 200
    finally:
        assert srv.shutdown(10)


def test_graceful_shutdown_finishes_in_flight_requests(detect_onnx):
    # a long batching window keeps all n requests queued inside the server when shutdown starts
    n = 6
    srv = _start_server(detect_onnx, max_batch=8, max_wait_ms=10_000)  # 6 < 8: the batch never fills
    body = png_bytes(make_image(120, 160, 6))
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(post_image, srv.url, body, timeout=60) for _ in range(n)]
        deadline = time.time() + 30
        while srv.batcher.pending < n and time.time() < deadline:
            time.sleep(0.005)
        assert srv.batcher.pending == n and srv.metrics.in_flight.value == n and srv.batcher.batches == 0
        start = time.perf_counter()
        clean = srv.shutdown(30)
        took = time.perf_counter() - start
        results = [f.result() for f in futures]
    assert clean and took < 9  # shutdown cut the batching wait short instead of waiting 10 s
    assert [s for s, _ in results] == [200] * n
    assert all(p["count"] > 0 for _, p in results)
    assert srv.batcher.queue_depth == 0 and not srv.predictor.runner.is_active
    with pytest.raises(OSError):
        request(srv.url, "GET", "/healthz", timeout=2)


def _answers_one_request(proc, seed: int) -> str:
    """The server's URL, from the line a `trtalign serve` process prints, after one detect request it answers."""
    line = proc.stdout.readline()
    assert " on http://127.0.0.1:" in line, line + proc.stderr.read()
    url = line.split(" on ", 1)[1].split()[0]
    status, payload = post_image(url, png_bytes(make_image(90, 110, seed)))
    assert status == 200 and payload["count"] > 0
    return url


def test_cli_serve_ctrl_c_closes_the_server_then_exits_130(detect_onnx):
    # Ctrl-C follows every command's convention (tests/cli/test_interrupts.py): exit 130, stderr exactly one line,
    # no traceback; the server is still drained and closed first, and the summary still goes to stdout
    env = dict(os.environ, TRTALIGN_NO_PROGRESS="1", TRTALIGN_ORT_THREADS="1", YOLO_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "trtalign", "serve", str(detect_onnx), "--port", "0",
                             "--host", "127.0.0.1", "--backend", "ort", "--max-batch", "4", "--score-threshold", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # own process group, SIGINT not inherited as ignored
    try:
        url = _answers_one_request(proc, seed=9)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and err.strip().splitlines() == ["trtalign serve: interrupted (SIGINT)"], err
        assert "stopped cleanly after 1 detect requests" in out
        with pytest.raises(OSError):  # closed: the port no longer answers
            request(url, "GET", "/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_serve_answers_then_stops_on_sigterm(detect_onnx):
    proc = subprocess.Popen([sys.executable, "-m", "trtalign", "serve", str(detect_onnx), "--port", "0",
                             "--backend", "ort", "--max-batch", "4", "--score-threshold", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        _answers_one_request(proc, seed=8)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped cleanly after 1 detect requests" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_rotated_detections_have_xywhr_and_corners(tmp_path):
    from trtalign.core.detections import xywhr_to_corners
    from trtalign.core.preprocess import letterbox
    from trtalign.export.onnx_export import export_onnx
    from trtalign.runtime.ort_runner import OrtRunner
    from trtalign.runtime.postprocess import nms_outputs_to_detections
    from trtalign.serve.predictor import OutputFilter, Predictor
    from trtalign.serve.server import DetectionServer, ServerConfig

    onnx_path = tmp_path / "obb.onnx"
    export_onnx("yolov8n-obb.yaml", onnx_path, imgsz=128, dynamic_batch=4, score_threshold=0.0, max_det=20)
    img = make_image(100, 150, 11)
    with OrtRunner(str(onnx_path)) as runner:
        tensor, meta = letterbox(img, 128)
        expected = nms_outputs_to_detections(runner.infer({"images": tensor}), [meta])[0]
    srv = DetectionServer(Predictor.load(onnx_path, backend="ort", max_batch=4),
                          ServerConfig(port=0, output_filter=OutputFilter(0.0, 300))).start()  # the raw NMS output
    try:
        status, payload = post_image(srv.url, png_bytes(img))
    finally:
        srv.shutdown(10)
    assert status == 200 and payload["box_format"] == "xywhr" and payload["count"] == len(expected) > 0
    boxes = np.array([d["box"] for d in payload["detections"]], np.float32)
    assert boxes.shape == (len(expected), 5)
    np.testing.assert_allclose(boxes, expected.boxes, atol=1e-2, rtol=1e-4)
    corners = np.array([d["corners"] for d in payload["detections"]], np.float32)
    assert corners.shape == (len(expected), 4, 2)
    np.testing.assert_allclose(corners, xywhr_to_corners(boxes), atol=1e-3)


@pytest.mark.slow  # two extra exports; run with -m slow
def test_fixed_batch_model_is_clamped_and_raw_model_refused(tmp_path, caplog):
    from trtalign.core.errors import ModelError
    from trtalign.export.onnx_export import export_onnx
    from trtalign.serve.predictor import Predictor

    fixed = tmp_path / "fixed.onnx"
    export_onnx("yolov8n.yaml", fixed, imgsz=96, batch=1, score_threshold=0.0, max_det=10)
    with caplog.at_level("WARNING", logger="trtalign"):
        p = Predictor.load(fixed, backend="ort", max_batch=8)
    try:
        assert p.info.batch == 1 and p.info.max_batch == 1 and "fixed batch of 1" in caplog.text
        dets = p.predict([make_image(50, 70, i) for i in range(3)])  # three images, run one at a time
        assert [len(d) for d in dets] == [10, 10, 10]
    finally:
        p.close()
    raw = tmp_path / "raw.onnx"
    export_onnx("yolov8n.yaml", raw, imgsz=96, dynamic_batch=2, nms="none")
    with pytest.raises(ModelError, match="four NMS outputs"):
        Predictor.load(raw, backend="ort")
    with pytest.raises(Exception, match="--backend trt needs a TensorRT engine"):
        Predictor.load(fixed, backend="trt")
