"""benchmarks/real_models.py end to end on a few real images (slow; skipped without ../shared/real)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "real"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (REAL / "yolov5n.pt").is_file(), reason=f"{REAL} absent (the shared real model)"),
              pytest.mark.skipif(importlib.util.find_spec("yolov5") is None, reason="the yolov5 package is not installed")]


def test_ort_fp32_reproduces_yolov5_validator(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import real_models

    out = tmp_path / "real.json"
    assert real_models.main(["--imgsz", "320", "--val", "4", "--calib", "8", "--methods", "minmax", "--no-rect",
                             "--workdir", str(tmp_path / "work"), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {r["row"]: r for r in data["rows"]}
    assert rows["yolov5 val.py (torch, square)"]["note"] == "NMS time limit hits: 0"
    assert abs(rows["ort-fp32"]["yolov5_map"] - data["validator"]["map"]) <= 0.001
    assert rows["ort-int8sim naive (minmax)"]["coco_map"] < rows["ort-int8sim minmax"]["coco_map"]
