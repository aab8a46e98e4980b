"""Detections: validation in __post_init__, selection, geometry, converters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trtalign.core.detections import Detections, xywhr_to_corners
from trtalign.core.enums import BoxFormat, NmsKind, Task
from trtalign.core.errors import ConfigError, InputError


def test_axis_aligned_basics():
    d = Detections([[0, 0, 10, 20], [5, 5, 6, 6]], [0.9, 0.2], [1, 0])
    assert len(d) == 2 and d.box_format is BoxFormat.XYXY and not d.rotated
    assert d.boxes.dtype == np.float32 and d.class_ids.dtype == np.int64
    assert len(d.filter(min_score=0.5)) == 1
    assert d.sorted_by_score().scores.tolist() == pytest.approx([0.9, 0.2])
    assert d[1].class_ids.tolist() == [0]


@pytest.mark.parametrize(
    "boxes, scores, classes, message",
    [
        ([[0, 0, 1]], [0.5], [0], "must be"),  # 3 columns
        ([[0, 0, 1, 1]], [0.5, 0.4], [0], "same length"),  # length mismatch
        ([[[0, 0, 1, 1]]], [0.5], [0], "must be"),  # 3-d
        ("abc", [0.5], [0], "cannot convert"),  # not numeric
    ],
)
def test_invalid_inputs_raise_input_error(boxes, scores, classes, message):
    with pytest.raises(InputError, match=message):
        Detections(boxes, scores, classes)


def test_empty_keeps_width():
    assert Detections.empty().boxes.shape == (0, 4)
    assert Detections.empty(rotated=True).boxes.shape == (0, 5)
    assert Detections(np.zeros((0,)), [], [], box_format="xywhr").boxes.shape == (0, 5)


def test_format_conflict_is_an_error():
    with pytest.raises(InputError, match="box_format"):
        Detections([[0, 0, 1, 1]], [0.5], [0], box_format="xywhr")


def test_rotated_corners_and_enclosing_box():
    d = Detections([[10, 10, 4, 2, math.pi / 2]], [0.5], [3])
    c = d.corners()[0]
    # rotated by 90 degrees: width now along y
    assert c[:, 0].min() == pytest.approx(9) and c[:, 0].max() == pytest.approx(11)
    assert c[:, 1].min() == pytest.approx(8) and c[:, 1].max() == pytest.approx(12)
    assert d.xyxy()[0] == pytest.approx([9, 8, 11, 12])
    out = d.to_dict(names=["a", "b", "c", "d"])
    assert out["detections"][0]["class_name"] == "d" and len(out["detections"][0]["corners"]) == 4


def test_corners_area_matches_w_times_h():
    rng = np.random.default_rng(0)
    boxes = np.c_[rng.uniform(0, 100, (50, 2)), rng.uniform(1, 30, (50, 2)), rng.uniform(-3, 3, 50)]
    corners = xywhr_to_corners(boxes).astype(np.float64)
    x, y = corners[..., 0], corners[..., 1]
    area = 0.5 * np.abs((x * np.roll(y, -1, 1) - np.roll(x, -1, 1) * y).sum(1))
    assert area == pytest.approx(boxes[:, 2] * boxes[:, 3], rel=1e-4)


def test_from_nms_outputs_takes_valid_rows_only():
    num = np.array([[2], [0]], np.int32)
    boxes = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    scores = np.array([[0.9, 0.8, 0.0], [0, 0, 0]], np.float32)
    classes = np.array([[1, 2, 0], [0, 0, 0]], np.int32)
    d0 = Detections.from_nms_outputs(num, boxes, scores, classes, index=0)
    d1 = Detections.from_nms_outputs(num, boxes, scores, classes, index=1)
    assert len(d0) == 2 and d0.class_ids.tolist() == [1, 2] and len(d1) == 0


def test_merge_rejects_mixed_formats():
    with pytest.raises(InputError, match="mixed"):
        Detections.merge([Detections.empty(), Detections.empty(rotated=True)])


@pytest.mark.parametrize("enum, good, bad", [(Task, "obb", "segment"), (NmsKind, "efficient", "fast")])
def test_enum_parse_lists_valid_values(enum, good, bad):
    assert enum.parse(good).value == good
    with pytest.raises(ConfigError) as exc:
        enum.parse(bad)
    for member in enum:
        assert repr(member.value) in str(exc.value)
