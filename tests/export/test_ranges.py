"""ranges.json: round trip, provenance, and a clear error for ranges from another model."""

from __future__ import annotations

import json
import logging

import pytest

from trtalign.core.errors import InputError
from trtalign.export.ranges import Ranges, TensorRange, check_ranges, load_ranges, save_ranges


def _ranges() -> Ranges:
    return Ranges(tensors={"images": TensorRange(1.0, "minmax"), "/model.0/act/Mul_output_0": TensorRange(3.5, "mse")},
                  method="best", model_sha256="a" * 64, model_file="m.onnx", params={"percentile": 99.99},
                  data={"folder": "calib", "folder_sha256": "b" * 64, "images": 512, "imgsz": [640, 640]})


def test_round_trip(tmp_path):
    path = save_ranges(_ranges(), tmp_path / "ranges.json")
    back = load_ranges(path)
    assert back.to_dict() == _ranges().to_dict()
    data = json.loads(path.read_text())
    assert data["format"] == "trtalign-ranges" and data["data"]["images"] == 512 and data["model"]["sha256"]
    assert back.scale("/model.0/act/Mul_output_0") == pytest.approx(3.5 / 127)


def test_ranges_from_another_model_list_missing_tensors(caplog):
    r = _ranges()
    with pytest.raises(InputError) as err:
        check_ranges(r, ["images", "/model.9/Concat_output_0", "/model.1/act/Mul_output_0"])
    msg = str(err.value)
    assert "2 of 3" in msg and "/model.9/Concat_output_0" in msg and "/model.1/act/Mul_output_0" in msg
    assert "m.onnx" in msg and "trtalign calibrate" in msg
    with caplog.at_level(logging.WARNING, logger="trtalign"):  # same names, other hash: a warning only
        check_ranges(r, ["images"], model_sha256="c" * 64)
    assert "sha256" in caplog.text


@pytest.mark.parametrize("content, match", [
    ("not json", "cannot read"),
    ('{"tensors": {}}', "not a trtalign ranges file"),  # no format marker
    ('{"format": "trtalign-ranges", "tensors": {"x": {"amax": -1}}}', "amax -1"),  # negative range
    ('{"format": "trtalign-ranges", "tensors": {"x": {"amax": "big"}}}', "no numeric amax"),
    ('{"format": "trtalign-ranges", "tensors": {"x": {"amax": NaN}}}', "amax nan"),
])
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        load_ranges(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_ranges(tmp_path / "none.json")
