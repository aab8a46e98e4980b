"""One table of named golden cases for the NMS ops; it drives every backend's test.

Each :class:`GoldenCase` holds the inputs (``boxes [B, N, 4|5]`` float32, ``scores [B, N, C]`` float32), the node's
attributes (all eight, as on the ONNX node) and the expected outputs, written by hand (kept detections per image as
``(box, score, class)``, in output order; the padding to ``max_output_boxes`` is zeros). The semantics behind them are
documented in :mod:`trtalign.plugins.reference.nms`.

Backends:

- the Python reference (``tests/plugins/test_reference_nms.py``), ONNX Runtime through the custom ops
  (``tests/plugins/test_ort_ops.py``): iterate :data:`GOLDEN_CASES`, run, then :func:`check_outputs`;
- the C++/CUDA plugin: reads ``trtalign/plugins/golden_cases.json`` (written by :func:`write_golden_json`; a test keeps
  the committed file equal to this table). Layout: ``{"format", "topk", "comparison", "cases": [{"name", "op",
  "description", "attributes", "inputs": {"boxes": {"shape", "data"}, "scores": {...}}, "expected":
  {"num_detections", "detection_boxes", "detection_scores", "detection_classes"}}]}``, every tensor as its shape and
  its row-major flattened data.

Comparison rule (:func:`check_outputs`): exact order; ``num_detections`` and ``detection_classes`` equal; boxes and
scores within ``atol + rtol * |expected|`` (1e-5, 1e-6), padding included.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from trtalign.core.io import atomic_write_text
from trtalign.plugins.reference.nms import TOPK, NmsOutputs

FORMAT = "trtalign-golden-nms/1"
ATOL = 1e-5
RTOL = 1e-6
GOLDEN_JSON = Path(__file__).with_name("golden_cases.json")
AXIS, ROTATED = "EfficientNMS_TRT", "EfficientRotatedNMS_TRT"
OUTPUT_NAMES = NmsOutputs._fields
HALF_PI = math.pi / 2


@dataclass
class GoldenCase:
    name: str
    op: str
    description: str
    boxes: np.ndarray
    scores: np.ndarray
    attributes: dict[str, Any]
    expected: NmsOutputs
    topk: int = TOPK

    def to_dict(self) -> dict[str, Any]:
        def tensor(a: np.ndarray) -> dict[str, Any]:  # integral floats as ints: a smaller file, same values
            data = [int(v) if isinstance(v, float) and v.is_integer() else v for v in a.reshape(-1).tolist()]
            return {"shape": list(a.shape), "data": data}

        return {"name": self.name, "op": self.op, "description": self.description, "attributes": self.attributes,
                "inputs": {"boxes": tensor(self.boxes), "scores": tensor(self.scores)},
                "expected": {k: tensor(v) for k, v in zip(OUTPUT_NAMES, self.expected)}}


@dataclass
class GoldenCheck:
    """Result of comparing one backend's outputs with a case; truthy when they match."""

    case: str
    mismatches: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "passed": bool(self), "mismatches": self.mismatches}


def _expected(op: str, batch: int, k: int, kept: Sequence[Sequence[tuple]]) -> NmsOutputs:
    dim = 4 if op == AXIS else 5
    out = NmsOutputs(np.zeros((batch, 1), np.int32), np.zeros((batch, k, dim), np.float32),
                     np.zeros((batch, k), np.float32), np.zeros((batch, k), np.int32))
    for b, rows in enumerate(kept):
        out.num_detections[b, 0] = len(rows)
        for i, (box, score, cls) in enumerate(rows):
            out.detection_boxes[b, i] = box
            out.detection_scores[b, i] = score
            out.detection_classes[b, i] = cls
    return out


def case(name: str, op: str, description: str, boxes, scores, kept: Sequence[Sequence[tuple]], *,
         score_threshold: float = 0.25, iou_threshold: float = 0.5, max_output_boxes: int = 4,
         background_class: int = -1, score_activation: int = 0, class_agnostic: int = 0,
         box_coding: int | None = None) -> GoldenCase:
    """Build a case; ``kept[b]`` lists image b's expected detections ``(box, score, class)`` in output order."""
    dim = 4 if op == AXIS else 5
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if boxes.size == 0:
        boxes = boxes.reshape(scores.shape[0], 0, dim)
    attributes = {"score_threshold": score_threshold, "iou_threshold": iou_threshold,
                  "max_output_boxes": max_output_boxes, "background_class": background_class,
                  "score_activation": score_activation, "class_agnostic": class_agnostic,
                  "box_coding": (0 if op == AXIS else 1) if box_coding is None else box_coding,
                  "plugin_version": "1"}
    return GoldenCase(name, op, description, boxes, scores, attributes,
                      _expected(op, scores.shape[0], max_output_boxes, kept))


A, B, C = [0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]  # IoU(A, B) = 81 / 119 = 0.68; C apart


def _axis_cases() -> list[GoldenCase]:
    # 5 classes x (TOPK / 5) copies of A = TOPK (box, class) pairs at 0.875, then C at 0.75 (exact binary scores)
    big_n = TOPK // 5 + 1
    big_boxes = np.tile(np.float32(A), (1, big_n, 1))
    big_boxes[0, -1] = C
    big_scores = np.full((1, big_n, 5), 0.875, np.float32)
    big_scores[0, -1] = [0.75, 0, 0, 0, 0]
    return [
        case("overlap_suppressed", AXIS, "B overlaps A (IoU 0.68 >= 0.5) and is suppressed; C is apart",
             [[A, B, C]], [[[0.9], [0.8], [0.7]]], [[(A, 0.9, 0), (C, 0.7, 0)]]),
        case("iou_equal_threshold_suppresses", AXIS, "IoU exactly 0.5 = iou_threshold suppresses (>=, not >)",
             [[[0, 0, 4, 1], [0, 0, 2, 1]]], [[[0.9], [0.8]]], [[([0, 0, 4, 1], 0.9, 0)]]),
        case("iou_below_threshold_keeps", AXIS, "IoU 0.5 < iou_threshold 0.51: both kept",
             [[[0, 0, 4, 1], [0, 0, 2, 1]]], [[[0.9], [0.8]]],
             [[([0, 0, 4, 1], 0.9, 0), ([0, 0, 2, 1], 0.8, 0)]], iou_threshold=0.51),
        case("score_equal_threshold_kept", AXIS, "score == score_threshold is kept (>=); just below is dropped",
             [[A, C]], [[[0.25], [0.2499]]], [[(A, 0.25, 0)]]),
        case("ties_lower_index_first", AXIS,
             "equal scores keep element order; box 2 equals box 1 and is suppressed by the earlier index",
             [[[20, 0, 30, 10], A, A, [40, 0, 50, 10]]], [[[0.5], [0.5], [0.5], [0.6]]],
             [[([40, 0, 50, 10], 0.6, 0), ([20, 0, 30, 10], 0.5, 0), (A, 0.5, 0)]]),
        case("ties_across_classes_element_order", AXIS,
             "tie between (box 0, class 1) = element 1 and (box 1, class 0) = element 2: element 1 first",
             [[A, [20, 0, 30, 10]]], [[[0.1, 0.7], [0.7, 0.1]]],
             [[(A, 0.7, 1), ([20, 0, 30, 10], 0.7, 0)]]),
        case("empty_input", AXIS, "N = 0 for a batch of 2: all outputs zero",
             np.zeros((2, 0, 4)), np.zeros((2, 0, 3)), [[], []]),
        case("all_below_threshold", AXIS, "no score reaches the threshold: all outputs zero",
             [[A, C]], [[[0.1, 0.2], [0.24, 0.0]]], [[]]),
        case("batch_different_counts", AXIS, "each image independent: 2, 0 and 1 detections",
             [[A, C], [A, B], [B, C]], [[[0.9], [0.8]], [[0.1], [0.2]], [[0.2], [0.6]]],
             [[(A, 0.9, 0), (C, 0.8, 0)], [], [(C, 0.6, 0)]]),
        case("per_class_overlap_other_class_kept", AXIS, "A (class 0) and B (class 1) overlap; per-class NMS keeps both",
             [[A, B]], [[[0.9, 0.0], [0.0, 0.8]]], [[(A, 0.9, 0), (B, 0.8, 1)]]),
        case("class_agnostic_overlap_other_class_suppressed", AXIS, "same input, class_agnostic: B is suppressed",
             [[A, B]], [[[0.9, 0.0], [0.0, 0.8]]], [[(A, 0.9, 0)]], class_agnostic=1),
        case("per_class_same_box_two_classes", AXIS, "one box above threshold in two classes: two detections",
             [[A]], [[[0.9, 0.6]]], [[(A, 0.9, 0), (A, 0.6, 1)]]),
        case("class_agnostic_same_box_two_classes", AXIS,
             "class_agnostic: the (box, class 1) pair has IoU 1 with (box, class 0) and is suppressed",
             [[A]], [[[0.9, 0.6]]], [[(A, 0.9, 0)]], class_agnostic=1),
        case("box_coding_center_size", AXIS, "box_coding 1: inputs cx,cy,w,h; outputs are corners",
             [[[5, 5, 10, 10], [6, 6, 10, 10], [25, 25, 10, 4]]], [[[0.9], [0.8], [0.7]]],
             [[(A, 0.9, 0), ([20, 23, 30, 27], 0.7, 0)]], box_coding=1),
        case("box_coding_corners_unordered", AXIS,
             "box_coding 0 with x1 > x2, y1 > y2: IoU uses reordered copies; the output box is the input unchanged",
             [[[10, 10, 0, 0], B]], [[[0.9], [0.8]]], [[([10, 10, 0, 0], 0.9, 0)]]),
        case("max_output_boxes_cut", AXIS, "5 separate boxes, max_output_boxes 3: the 3 best, sorted by score",
             [[[0, 0, 1, 1], [2, 0, 3, 1], [4, 0, 5, 1], [6, 0, 7, 1], [8, 0, 9, 1]]],
             [[[0.3], [0.9], [0.5], [0.7], [0.8]]],
             [[([2, 0, 3, 1], 0.9, 0), ([8, 0, 9, 1], 0.8, 0), ([6, 0, 7, 1], 0.7, 0)]], max_output_boxes=3),
        case("padding_zeros", AXIS, "1 detection, max_output_boxes 6: 5 rows of zeros",
             [[A]], [[[0.4]]], [[(A, 0.4, 0)]], max_output_boxes=6),
        case("score_activation_sigmoid", AXIS,
             "score_activation: threshold 0.5 -> logit 0 on raw scores (0.0 kept), outputs sigmoid(raw)",
             [[A, C, [40, 0, 50, 10]]], [[[2.0], [0.0], [-0.5]]],
             [[(A, 0.8807970779778823, 0), (C, 0.5, 0)]], score_threshold=0.5, score_activation=1),
        case("score_activation_threshold_zero", AXIS, "score_activation with threshold 0: every logit passes",
             [[A, C]], [[[-20.0], [1.0]]], [[(C, 0.7310585786300049, 0), (A, 2.0611536e-09, 0)]],
             score_threshold=0.0, score_activation=1),
        case("background_class", AXIS, "background_class 0: class 0 scores are never candidates",
             [[A, C]], [[[0.95, 0.6, 0.1], [0.1, 0.2, 0.8]]], [[(C, 0.8, 2), (A, 0.6, 1)]], background_class=0),
        case("zero_area_boxes", AXIS, "zero-area boxes have IoU 0 with everything: identical ones are all kept",
             [[[0, 0, 0, 10], [0, 0, 0, 10], [5, 5, 5, 5]]], [[[0.9], [0.8], [0.7]]],
             [[([0, 0, 0, 10], 0.9, 0), ([0, 0, 0, 10], 0.8, 0), ([5, 5, 5, 5], 0.7, 0)]]),
        case("topk_counts_box_class_pairs", AXIS,
             f"{5 * (big_n - 1)} = TOPK (box, class) pairs at 0.875 fill the top-k window; the separate box C at "
             "0.75 is the next pair and is cut before NMS; per class, the first copy of A survives",
             big_boxes, big_scores, [[(A, 0.875, c) for c in range(5)]], max_output_boxes=8),
    ]


SQ = [0, 0, 10, 10, 0]  # 10 x 10 square at the origin
# float32-exact boxes at awkward angles and far from the origin (identical pairs whose float IoU is not exactly 1)
ODD = [123.5, 78.875, 33.25, 12.75, 0.6875]
FAR = [10000.25, 9000.5, 7.125, 91.0625, -2.3125]


def _rotated_cases() -> list[GoldenCase]:
    big_n = TOPK // 4 + 1  # 4 classes x (TOPK / 4) squares = TOPK pairs at 0.875, then a separate box at 0.75
    big_boxes = np.tile(np.float32(SQ), (1, big_n, 1))
    big_boxes[0, -1] = [40, 0, 10, 10, 0.3]
    big_scores = np.full((1, big_n, 4), 0.875, np.float32)
    big_scores[0, -1] = [0.75, 0, 0, 0]
    diag = [0, 0, 10, 2, math.pi / 4]  # inside the square: IoU 20 / 100
    return [
        case("rotated_overlap", ROTATED, "shifted square (IoU 90/110) suppressed; a diagonal bar inside (IoU 0.2) kept",
             [[SQ, [1, 0, 10, 10, 0], diag]], [[[0.9], [0.8], [0.7]]], [[(SQ, 0.9, 0), (diag, 0.7, 0)]]),
        case("rotated_iou_equal_threshold_suppresses", ROTATED, "IoU exactly 2/4 = 0.5 suppresses (>=)",
             [[[0, 0, 4, 1, 0], [-1, 0, 2, 1, 0]]], [[[0.9], [0.8]]], [[([0, 0, 4, 1, 0], 0.9, 0)]]),
        case("rotated_angle_near_plus_half_pi", ROTATED,
             "20x10 at pi/2 - 1e-6 is ~ the 10x20 box at 0 (suppressed); the 20x10 at 0 overlaps 100/300 (kept)",
             [[[0, 0, 20, 10, HALF_PI - 1e-6], [0, 0, 10, 20, 0], [0, 0, 20, 10, 0]]], [[[0.9], [0.8], [0.7]]],
             [[([0, 0, 20, 10, HALF_PI - 1e-6], 0.9, 0), ([0, 0, 20, 10, 0], 0.7, 0)]]),
        case("rotated_angle_near_minus_half_pi_and_outside_range", ROTATED,
             "angles -pi/2 + 1e-6 and pi/2 describe the same rectangle (suppressed); 2.5 pi equals pi/2: "
             "the 10x20 box at 0 is the same rectangle (suppressed)",
             [[[0, 0, 20, 10, -HALF_PI + 1e-6], [0, 0, 20, 10, HALF_PI], [30, 0, 20, 10, 5 * HALF_PI],
               [30, 0, 10, 20, 0]]], [[[0.9], [0.8], [0.7], [0.6]]],
             [[([0, 0, 20, 10, -HALF_PI + 1e-6], 0.9, 0), ([30, 0, 20, 10, 5 * HALF_PI], 0.7, 0)]]),
        case("rotated_coincident_edges", ROTATED,
             "touching squares (IoU 0) and a half-shifted one (IoU 1/3) kept; the square at pi/2 equals A",
             [[SQ, [10, 0, 10, 10, 0], [5, 0, 10, 10, 0], [0, 0, 10, 10, HALF_PI]]], [[[0.9], [0.8], [0.7], [0.6]]],
             [[(SQ, 0.9, 0), ([10, 0, 10, 10, 0], 0.8, 0), ([5, 0, 10, 10, 0], 0.7, 0)]]),
        case("rotated_degenerate_zero_area", ROTATED, "w = 0 or h = 0: IoU 0 with everything, identical ones kept",
             [[[0, 0, 0, 10, 0.3], [0, 0, 0, 10, 0.3], [0, 0, 5, 5, 0], [0, 0, 5, 0, 1.0]]],
             [[[0.9], [0.8], [0.7], [0.6]]],
             [[([0, 0, 0, 10, 0.3], 0.9, 0), ([0, 0, 0, 10, 0.3], 0.8, 0), ([0, 0, 5, 5, 0], 0.7, 0),
               ([0, 0, 5, 0, 1.0], 0.6, 0)]]),
        case("rotated_per_class", ROTATED, "square and the same square turned 0.1 rad in another class: both kept",
             [[SQ, [0, 0, 10, 10, 0.1]]], [[[0.9, 0.0], [0.0, 0.8]]],
             [[(SQ, 0.9, 0), ([0, 0, 10, 10, 0.1], 0.8, 1)]]),
        case("rotated_class_agnostic", ROTATED, "same input, class_agnostic: the turned square is suppressed",
             [[SQ, [0, 0, 10, 10, 0.1]]], [[[0.9, 0.0], [0.0, 0.8]]], [[(SQ, 0.9, 0)]], class_agnostic=1),
        case("rotated_batch_max_output_boxes", ROTATED,
             "image 0: 5 separate boxes, max_output_boxes 3; image 1: nothing above threshold",
             [[[0, 0, 2, 1, 0.5], [10, 0, 2, 1, -0.5], [20, 0, 2, 1, 3.0], [30, 0, 2, 1, -3.0], [40, 0, 2, 1, 0]],
              [[0, 0, 2, 1, 0], [10, 0, 2, 1, 0], [20, 0, 2, 1, 0], [30, 0, 2, 1, 0], [40, 0, 2, 1, 0]]],
             [[[0.3], [0.9], [0.5], [0.7], [0.8]], [[0.1], [0.1], [0.1], [0.1], [0.1]]],
             [[([10, 0, 2, 1, -0.5], 0.9, 0), ([40, 0, 2, 1, 0], 0.8, 0), ([30, 0, 2, 1, -3.0], 0.7, 0)], []],
             max_output_boxes=3),
        case("rotated_empty_input", ROTATED, "N = 0: all outputs zero", np.zeros((1, 0, 5)), np.zeros((1, 0, 2)),
             [[]]),
        case("rotated_score_activation_background", ROTATED,
             "score_activation (threshold 0.5 -> logit 0) and background_class 1",
             [[SQ, [30, 0, 10, 10, 0.2]]], [[[0.0, 3.0], [1.0, -1.0]]],
             [[([30, 0, 10, 10, 0.2], 0.7310585786300049, 0), (SQ, 0.5, 0)]],
             score_threshold=0.5, score_activation=1, background_class=1),
        case("rotated_identical_boxes_iou_threshold_one", ROTATED,
             "identical boxes have IoU exactly 1 (clamped, never a few ulps below or above), so iou_threshold 1.0 "
             "suppresses each copy (their float IoU is a few ulps off 1 before the rule)",
             [[ODD, ODD, FAR, FAR]], [[[0.9], [0.8], [0.7], [0.6]]],
             [[(ODD, 0.9, 0), (FAR, 0.7, 0)]], iou_threshold=1.0),
        case("rotated_topk_cut", ROTATED,
             f"{TOPK} (square, class) pairs at 0.875 fill the top-k window; class_agnostic keeps the first; the "
             "separate box at 0.75 is cut before NMS", big_boxes, big_scores, [[(SQ, 0.875, 0)]], class_agnostic=1),
    ]


#: the table: every backend runs every case
GOLDEN_CASES: list[GoldenCase] = _axis_cases() + _rotated_cases()
CASES_BY_NAME: dict[str, GoldenCase] = {c.name: c for c in GOLDEN_CASES}


def check_outputs(golden: GoldenCase, outputs: Sequence[np.ndarray], atol: float = ATOL,
                  rtol: float = RTOL) -> GoldenCheck:
    """Compare a backend's four outputs (num_detections, boxes, scores, classes) with the case, in exact order."""
    result = GoldenCheck(golden.name)
    if len(outputs) != 4:
        result.mismatches.append(f"expected 4 outputs, got {len(outputs)}")
        return result
    for name, want, got in zip(OUTPUT_NAMES, golden.expected, outputs):
        got = np.asarray(got)
        if got.shape != want.shape:
            result.mismatches.append(f"{name}: shape {list(got.shape)}, expected {list(want.shape)}")
            continue
        if name in ("num_detections", "detection_classes"):
            bad = np.argwhere(got.astype(np.int64) != want.astype(np.int64))
        else:
            bad = np.argwhere(~(np.abs(got.astype(np.float64) - want) <= atol + rtol * np.abs(want)))
        if len(bad):
            where = tuple(int(i) for i in bad[0])
            result.mismatches.append(f"{name}: {len(bad)} element(s) differ, first at {list(where)}: "
                                     f"got {got[where]!r}, expected {want[where]!r}")
    return result


def golden_json_text(cases: Sequence[GoldenCase] = GOLDEN_CASES) -> str:
    """The JSON document for ``cases`` (one case per line)."""
    head = {"format": FORMAT, "topk": TOPK, "comparison": {"atol": ATOL, "rtol": RTOL, "order": "exact"}}
    body = ",\n".join(json.dumps(c.to_dict(), separators=(",", ":")) for c in cases)
    return json.dumps(head, separators=(",", ":"))[:-1] + ',"cases":[\n' + body + "\n]}\n"


def write_golden_json(path: str | Path = GOLDEN_JSON) -> Path:
    """Write the golden table as JSON (atomically) for backends without Python; returns the path."""
    return atomic_write_text(path, golden_json_text())


def load_golden_json(path: str | Path = GOLDEN_JSON) -> list[GoldenCase]:
    """Read a golden JSON file back into cases (used to check the committed file)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    cases = []
    for c in doc["cases"]:
        def arr(t, dtype):
            return np.asarray(t["data"], dtype=dtype).reshape(t["shape"])

        exp = c["expected"]
        cases.append(GoldenCase(
            c["name"], c["op"], c["description"], arr(c["inputs"]["boxes"], np.float32),
            arr(c["inputs"]["scores"], np.float32), c["attributes"],
            NmsOutputs(arr(exp["num_detections"], np.int32), arr(exp["detection_boxes"], np.float32),
                       arr(exp["detection_scores"], np.float32), arr(exp["detection_classes"], np.int32)),
            doc["topk"]))
    return cases
