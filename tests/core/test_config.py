"""PipelineConfig: YAML loading, path resolution, and errors that name field, value and choices."""

from __future__ import annotations

import pytest

from trtalign.core.config import config_from_dict, load_config
from trtalign.core.errors import ConfigError, InputError


def test_minimal_config_has_defaults(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text("model: models/yolo.pt\nimgsz: 320\nbatch: {min: 1, opt: 2, max: 4}\n")
    cfg = load_config(p)
    assert cfg.model == tmp_path / "models" / "yolo.pt"  # relative to the config file
    assert cfg.imgsz == 320 and cfg.batch.dynamic and cfg.nms.topk == 5000
    assert cfg.precisions == ["fp32", "fp16", "int8"]


@pytest.mark.parametrize(
    "data, fragments",
    [
        ({"model": "m.pt", "unknown_key": 1}, ["unknown_key", "unknown key"]),
        ({"model": "m.pt", "nms": {"iou_threshold": 1.5}}, ["nms.iou_threshold", "1.5"]),
        ({"model": "m.pt", "nms": {"score_threshold": -0.1}}, ["nms.score_threshold", "-0.1"]),
        ({"model": "m.pt", "nms": {"kind": "fast"}}, ["nms.kind", "'efficient'", "'fast'"]),
        ({"model": "m.pt", "calibration": {"method": "kl"}}, ["calibration.method", "'entropy'"]),
        ({"model": "m.pt", "batch": {"min": 4, "max": 2}}, ["batch", "min <= opt <= max"]),
        ({"model": "m.pt", "precisions": ["fp32", "fp32"]}, ["precisions", "repeat"]),
        ({"imgsz": 320}, ["model", "Field required"]),
    ],
)
def test_errors_name_field_value_and_choices(data, fragments):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data)
    for frag in fragments:
        assert frag in str(exc.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(top)
