"""Helpers shared by the serve tests (imported as ``serve_helpers``: pytest puts this folder on sys.path)."""

from __future__ import annotations

import http.client
import json
from typing import Any

import numpy as np


def make_image(h: int, w: int, seed: int) -> np.ndarray:
    """A BGR test image: smooth gradients plus a few filled rectangles (deterministic)."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)),
                    np.full_like(xx, int(rng.integers(0, 255)))], -1).astype(np.uint8)
    for _ in range(3):
        x1, y1 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        x2, y2 = x1 + int(rng.integers(w // 8, w // 2)), y1 + int(rng.integers(h // 8, h // 2))
        cv2.rectangle(img, (x1, y1), (x2, y2), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    return img


def png_bytes(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 60.0) -> tuple[int, dict, bytes]:
    """One HTTP request to the test server (127.0.0.1 only) -> (status, headers, body)."""
    host_port = url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def post_image(url: str, data: bytes, content_type: str = "image/png", **kw: Any) -> tuple[int, Any]:
    status, _, body = request(url, "POST", "/v1/detect", data, {"Content-Type": content_type}, **kw)
    return status, json.loads(body)
