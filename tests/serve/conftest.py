"""Fixtures for the serve tests: a small exported detector (the project's own export), images, a running server."""

from __future__ import annotations

from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[2] / "trtalign" / "assets" / "models"


def _bundled_detect_source() -> str | None:
    """A bundled proxy detector (weights) if that asset has landed, else None (random-init yaml is used)."""
    if not ASSETS.is_dir():
        return None
    for pattern in ("*detect*.pt", "*det*.pt", "*.pt"):
        found = sorted(p for p in ASSETS.glob(pattern) if "obb" not in p.name)
        if found:
            return str(found[0])
    return None


@pytest.fixture(scope="session")
def detect_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector at 160 px with EfficientNMS_TRT and a dynamic batch (1..8), exported by trtalign's export.

    score_threshold 0 so that even a random-init model yields detections to compare (max 50 per image).
    """
    from trtalign.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("serve_model") / "det160.onnx"
    source = _bundled_detect_source() or "yolov8n.yaml"
    export_onnx(source, out, imgsz=160, dynamic_batch=8, score_threshold=0.0, max_det=50)
    return out


@pytest.fixture(scope="module")
def server(detect_onnx: Path):
    """A real server on 127.0.0.1 (free port), ONNX Runtime backend, 2 MiB upload limit, max batch 8, and no
    serve-time filter (score >= 0, up to the model's 50): responses hold the model's whole NMS output."""
    from trtalign.serve.batching import BatchingConfig
    from trtalign.serve.decode import DecodeLimits
    from trtalign.serve.predictor import OutputFilter, Predictor
    from trtalign.serve.server import DetectionServer, ServerConfig

    predictor = Predictor.load(detect_onnx, backend="ort", max_batch=8)
    config = ServerConfig(host="127.0.0.1", port=0, batching=BatchingConfig(8, 20.0, 512),
                          limits=DecodeLimits(max_bytes=2 * 1024 * 1024), output_filter=OutputFilter(0.0, 300))
    srv = DetectionServer(predictor, config).start()
    yield srv
    srv.shutdown(10)
