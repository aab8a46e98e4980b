"""The Python reference NMS ops: the golden table, randomized invariants, an independent cross-check, input errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from trtalign.core.errors import InputError
from trtalign.plugins import golden
from trtalign.plugins.golden import GOLDEN_CASES, check_outputs
from trtalign.plugins.reference import REFERENCE_OPS, TOPK, efficient_nms, efficient_rotated_nms
from trtalign.plugins.reference.nms import corner_iou_one_to_many
from trtalign.plugins.reference.rotated_iou import rotated_iou_one_to_many


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=lambda c: c.name)
def test_reference_matches_golden_case(case):
    out = REFERENCE_OPS[case.op](case.boxes, case.scores, topk=case.topk, **case.attributes)
    result = check_outputs(case, out)
    assert result, result.mismatches


def test_golden_table_is_broad():
    names = {c.name for c in GOLDEN_CASES}
    assert len(names) == len(GOLDEN_CASES), "case names must be unique"
    attrs = [c.attributes for c in GOLDEN_CASES]
    assert {a["box_coding"] for a in attrs} == {0, 1}
    assert {a["class_agnostic"] for a in attrs} == {0, 1}
    assert {a["score_activation"] for a in attrs} == {0, 1}
    assert any(a["background_class"] >= 0 for a in attrs)
    assert any(c.boxes.shape[1] == 0 for c in GOLDEN_CASES)
    assert any(c.scores.shape[0] > 1 for c in GOLDEN_CASES)
    assert {c.op for c in GOLDEN_CASES} == set(REFERENCE_OPS)
    assert sum(c.scores.shape[1] * c.scores.shape[2] > TOPK for c in GOLDEN_CASES) == 2


@pytest.mark.parametrize("name", ["topk_counts_box_class_pairs", "rotated_topk_cut"])
def test_topk_cases_depend_on_the_cut(name):
    """Without the top-k cut the expected outputs would differ: the cases really test the cut."""
    case = golden.CASES_BY_NAME[name]
    out = REFERENCE_OPS[case.op](case.boxes, case.scores, **{**case.attributes, "topk": 10 ** 9})
    assert not check_outputs(case, out)


def test_check_outputs_reports_order_and_values():
    case = golden.CASES_BY_NAME["max_output_boxes_cut"]
    good = [a.copy() for a in case.expected]
    assert check_outputs(case, good)
    swapped = [a.copy() for a in case.expected]
    for a in swapped[1:]:
        a[0, [0, 1]] = a[0, [1, 0]]
    bad = check_outputs(case, swapped)
    assert not bad and any("detection_scores" in m for m in bad.mismatches)
    assert not check_outputs(case, good[:3])
    assert bad.to_dict()["passed"] is False


def test_committed_golden_json_is_current(tmp_path: Path):
    """trtalign/plugins/golden_cases.json (read by the C++ tests) equals the table; regenerate with
    ``python -c 'from trtalign.plugins.golden import write_golden_json; write_golden_json()'``."""
    assert golden.GOLDEN_JSON.read_text(encoding="utf-8") == golden.golden_json_text()
    written = golden.write_golden_json(tmp_path / "g.json")
    loaded = golden.load_golden_json(written)
    assert [c.name for c in loaded] == [c.name for c in GOLDEN_CASES]
    for case in loaded:
        out = REFERENCE_OPS[case.op](case.boxes, case.scores, topk=case.topk, **case.attributes)
        assert check_outputs(case, out), case.name


@pytest.mark.skipif(not os.environ.get("TRTALIGN_PLUGIN_TEST_LIB"),
                    reason="set TRTALIGN_PLUGIN_TEST_LIB to the csrc host test library to run the golden table on it")
@pytest.mark.parametrize("case", [c for c in GOLDEN_CASES if c.op == "EfficientRotatedNMS_TRT"], ids=lambda c: c.name)
def test_native_host_library_matches_golden_case(case):
    """Hook for the C++ plugin: the same table, the same comparison."""
    from tests.plugins.csrc_harness import CApi

    api = CApi(os.environ["TRTALIGN_PLUGIN_TEST_LIB"])
    out = api.nms(case.boxes, case.scores, topk=case.topk, **case.attributes)
    result = check_outputs(case, out[:4])
    assert result, result.mismatches


# ---- randomized invariants -------------------------------------------------------------------------------------

def _random_axis(rng, b, n, c):
    xy = rng.uniform(0, 100, (b, n, 2))
    wh = rng.uniform(2, 30, (b, n, 2))
    return np.concatenate([xy, xy + wh], -1).astype(np.float32), rng.uniform(0, 1, (b, n, c)).astype(np.float32)


def _random_rotated(rng, b, n, c):
    boxes = np.concatenate([rng.uniform(0, 100, (b, n, 2)), rng.uniform(2, 30, (b, n, 2)),
                            rng.uniform(-4, 4, (b, n, 1))], -1).astype(np.float32)
    return boxes, rng.uniform(0, 1, (b, n, c)).astype(np.float32)


@pytest.mark.parametrize("rotated", [False, True], ids=["axis", "rotated"])
@pytest.mark.parametrize("class_agnostic", [0, 1])
@pytest.mark.parametrize("seed", range(3))
def test_nms_invariants(rotated, class_agnostic, seed):
    rng = np.random.default_rng(seed)
    b, n, c, k = 2, 150, 3, 40
    boxes, scores = (_random_rotated if rotated else _random_axis)(rng, b, n, c)
    attrs = dict(score_threshold=0.3, iou_threshold=0.4, max_output_boxes=k, class_agnostic=class_agnostic,
                 background_class=1)
    nms = efficient_rotated_nms if rotated else efficient_nms
    iou = (lambda x, y: rotated_iou_one_to_many(x, y)) if rotated else corner_iou_one_to_many
    num, out_boxes, out_scores, out_classes = nms(boxes, scores, **attrs)
    assert num.dtype == np.int32 and out_classes.dtype == np.int32 and out_boxes.dtype == np.float32
    for i in range(b):
        m = int(num[i, 0])
        assert 0 < m <= k
        s, cl, bx = out_scores[i, :m], out_classes[i, :m], out_boxes[i, :m]
        assert np.all(np.diff(s) <= 0), "sorted by score"
        assert np.all(s >= 0.3) and np.all(cl != 1)
        assert not out_scores[i, m:].any() and not out_boxes[i, m:].any() and not out_classes[i, m:].any()
        for j in range(m):  # every output is an input box with its class score
            src = np.nonzero(np.all(boxes[i] == bx[j], axis=1))[0]
            assert len(src) and np.any(scores[i, src, cl[j]] == s[j])
            others = np.arange(j + 1, m) if class_agnostic else np.nonzero(cl[j + 1:] == cl[j])[0] + j + 1
            if len(others):
                assert np.all(iou(bx[j], bx[others]) < 0.4), "no two kept boxes overlap above the threshold"
    # max_output_boxes only truncates: a smaller K gives a prefix
    small = nms(boxes, scores, **{**attrs, "max_output_boxes": 5})
    assert np.array_equal(small.detection_scores, out_scores[:, :5])
    assert np.array_equal(small.num_detections, np.minimum(num, 5))


def test_matches_torchvision_batched_nms():
    """Independent implementation: torchvision's batched_nms (per class, IoU > thr; no ties in random data)."""
    torch = pytest.importorskip("torch", reason="torch provides the independent NMS")
    tv_ops = pytest.importorskip("torchvision.ops", reason="torchvision provides the independent NMS")
    rng = np.random.default_rng(7)
    boxes, scores = _random_axis(rng, 1, 300, 4)
    out = efficient_nms(boxes, scores, score_threshold=0.2, iou_threshold=0.45, max_output_boxes=1000)
    cand = np.argwhere(scores[0] >= np.float32(0.2))
    keep = tv_ops.batched_nms(torch.from_numpy(boxes[0][cand[:, 0]]), torch.from_numpy(scores[0][cand[:, 0], cand[:, 1]]),
                              torch.from_numpy(cand[:, 1]), 0.45).numpy()
    m = int(out.num_detections[0, 0])
    assert m == len(keep) > 20
    assert np.array_equal(out.detection_classes[0, :m], cand[keep, 1])
    assert np.array_equal(out.detection_boxes[0, :m], boxes[0][cand[keep, 0]])


def test_box_coding_and_activation_are_conversions():
    rng = np.random.default_rng(11)
    corners, probs = _random_axis(rng, 2, 120, 3)
    center = np.concatenate([(corners[..., :2] + corners[..., 2:]) / 2, corners[..., 2:] - corners[..., :2]], -1)
    base = efficient_nms(corners, probs, score_threshold=0.3, iou_threshold=0.5, max_output_boxes=50)
    coded = efficient_nms(center, probs, score_threshold=0.3, iou_threshold=0.5, max_output_boxes=50, box_coding=1)
    assert np.array_equal(base.num_detections, coded.num_detections)
    assert np.array_equal(base.detection_classes, coded.detection_classes)
    assert np.allclose(base.detection_boxes, coded.detection_boxes, atol=1e-4)
    logits = np.log(probs / (1 - probs)).astype(np.float32)
    act = efficient_nms(corners, logits, score_threshold=0.3, iou_threshold=0.5, max_output_boxes=50,
                        score_activation=1)
    assert np.array_equal(base.detection_classes, act.detection_classes)
    assert np.allclose(base.detection_scores, act.detection_scores, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(iou_threshold=0.0), "iou_threshold"),
    (dict(score_threshold=-0.1), "score_threshold"),
    (dict(max_output_boxes=0), "max_output_boxes"),
    (dict(box_coding=2), "box_coding"),
    (dict(class_agnostic=3), "class_agnostic"),
])
def test_attribute_errors(kwargs, message):
    boxes, scores = _random_axis(np.random.default_rng(0), 1, 4, 2)
    attrs = {**dict(score_threshold=0.2, iou_threshold=0.5, max_output_boxes=3), **kwargs}
    with pytest.raises(InputError, match=message):
        efficient_nms(boxes, scores, **attrs)


def test_shape_errors():
    boxes, scores = _random_axis(np.random.default_rng(0), 1, 4, 2)
    with pytest.raises(InputError, match=r"\[B, N, 5\]"):
        efficient_rotated_nms(boxes, scores, score_threshold=0.2, iou_threshold=0.5, max_output_boxes=3)
    with pytest.raises(InputError, match="scores"):
        efficient_nms(boxes, scores[:, :3], score_threshold=0.2, iou_threshold=0.5, max_output_boxes=3)


@pytest.mark.parametrize("class_agnostic", [0, 1])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.7])
def test_blocked_greedy_equals_plain_greedy_on_clustered_boxes(class_agnostic, iou_threshold):
    """The rotated op's blocked loop (batched IoUs, pruned pairs) decides exactly like the literal loop."""
    from trtalign.plugins.reference.nms import greedy_nms, greedy_nms_blocked
    from trtalign.plugins.reference.rotated_iou import rotated_bounds, rotated_iou_paired

    rng = np.random.default_rng(13)
    objects = np.column_stack([rng.uniform(0, 200, 12), rng.uniform(0, 200, 12), rng.uniform(5, 40, (12, 2)),
                               rng.uniform(-2, 2, 12)])
    pick = rng.integers(0, 12, 400)
    boxes = objects[pick] + np.column_stack([rng.normal(0, 2, (400, 2)), rng.normal(0, 2, (400, 2)),
                                             rng.normal(0, 0.1, 400)])
    boxes[::37, 2] = 0.0  # some zero-area boxes
    boxes = boxes.astype(np.float32).astype(np.float64)
    classes = rng.integers(0, 3, 400)
    areas = np.where((boxes[:, 2] > 0) & (boxes[:, 3] > 0), boxes[:, 2] * boxes[:, 3], 0.0)
    plain = greedy_nms(boxes, classes, iou_threshold, 1000, class_agnostic, rotated_iou_one_to_many)
    for block in (1, 7, 32):
        blocked = greedy_nms_blocked(boxes, classes, iou_threshold, 1000, class_agnostic, rotated_iou_paired,
                                     rotated_bounds(boxes), areas, block=block)
        assert blocked == plain
    assert 12 <= len(plain) < 300
    capped = greedy_nms_blocked(boxes, classes, iou_threshold, 5, class_agnostic, rotated_iou_paired,
                                rotated_bounds(boxes), areas)
    assert capped == plain[:5]


# ------------------------------------------------------------------ the vectorised ops against the literal oracle
@pytest.mark.parametrize("case", GOLDEN_CASES, ids=lambda c: c.name)
def test_literal_oracle_matches_golden_case(case):
    from trtalign.plugins.reference import LITERAL_OPS

    out = LITERAL_OPS[case.op](case.boxes, case.scores, topk=case.topk, **case.attributes)
    result = check_outputs(case, out)
    assert result, result.mismatches


def _random_set(rng, rotated, n, c, ties, zero_area, fp16):
    """Clustered boxes (many overlaps) with exact duplicates, optional heavy score ties, zero-area boxes and float16
    inputs; returns boxes [1, N, 4|5], scores [1, N, C] and the box_coding they are written in."""
    centres = rng.uniform(0, 320, (max(n // 8, 1), 2))
    xy = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 5, (n, 2))
    wh = rng.uniform(2, 60, (n, 2))
    coding = 1 if rotated else int(rng.random() < 0.5)
    if rotated:
        boxes = np.column_stack([xy, wh, rng.uniform(-4, 4, n)])
    elif coding:
        boxes = np.column_stack([xy, wh])
    else:
        boxes = np.column_stack([xy - wh / 2, xy + wh / 2])
        flip = rng.random(n) < 0.1  # some corners given in reverse order
        boxes[flip] = boxes[flip][:, [2, 3, 0, 1]]
    if zero_area:
        z = rng.random(n) < 0.08
        boxes[z, 2] = boxes[z, 0] if not (rotated or coding) else 0.0  # x2 = x1, or w = 0
    dup = rng.integers(0, n, n // 10)
    boxes[rng.integers(0, n, len(dup))] = boxes[dup]  # exact duplicates
    scores = rng.uniform(0, 1, (n, c))
    if ties:
        scores = np.round(scores * 8) / 8  # a few distinct values: ties everywhere
    dtype = np.float16 if fp16 else np.float32
    return boxes[None].astype(dtype), scores[None].astype(dtype), coding


@pytest.mark.parametrize("rotated", [False, True], ids=["axis", "rotated"])
@pytest.mark.parametrize("seed", range(6))
def test_vectorised_ops_equal_literal_oracle_on_random_sets(rotated, seed):
    from trtalign.plugins.reference import efficient_nms_literal, efficient_rotated_nms_literal

    rng = np.random.default_rng(1000 + seed)
    fast, literal = ((efficient_rotated_nms, efficient_rotated_nms_literal) if rotated
                     else (efficient_nms, efficient_nms_literal))
    total = 0
    for trial in range(4):
        n, c = int(rng.integers(1, 400)), int(rng.integers(1, 6))
        boxes, scores, coding = _random_set(rng, rotated, n, c, ties=trial % 2 == 0, zero_area=trial % 3 == 0,
                                            fp16=trial == 3)
        attrs = dict(score_threshold=float(rng.choice([0.0, 0.05, 0.3, 0.45])),
                     iou_threshold=float(rng.choice([0.1, 0.45, 0.5, 0.7, 1.0])),
                     max_output_boxes=int(rng.choice([1, 7, 100, 1000])),
                     class_agnostic=int(rng.integers(0, 2)), score_activation=int(rng.random() < 0.25),
                     background_class=int(rng.choice([-1, 0])), topk=int(rng.choice([TOPK, 50, 300])),
                     box_coding=coding)
        want = literal(boxes, scores, **attrs)
        got = fast(boxes, scores, **attrs)
        for name, a, b in zip(want._fields, want, got):
            np.testing.assert_array_equal(b, a, err_msg=f"{name} trial {trial} {attrs}")
        total += int(want.num_detections.sum())
    assert total > 0


def test_vectorised_ops_equal_literal_at_5000_candidates():
    """The production-sized case: 2100 anchors x 80 classes at threshold 0.001 fill the top-k window of 5000."""
    from trtalign.plugins.reference import efficient_nms_literal, efficient_rotated_nms_literal

    rng = np.random.default_rng(5)
    n, c = 2100, 80
    xy, wh = rng.uniform(0, 320, (n, 2)), rng.uniform(4, 80, (n, 2))
    scores = rng.uniform(0, 1, (1, n, c)).astype(np.float32)
    axis = np.column_stack([xy - wh / 2, xy + wh / 2])[None].astype(np.float32)
    rot = np.column_stack([xy, wh, rng.uniform(-3, 3, n)])[None].astype(np.float32)
    for agnostic in (0, 1):
        attrs = dict(score_threshold=0.001, iou_threshold=0.7, max_output_boxes=300, class_agnostic=agnostic)
        for fast, literal, boxes in ((efficient_nms, efficient_nms_literal, axis),
                                     (efficient_rotated_nms, efficient_rotated_nms_literal, rot)):
            if literal is efficient_rotated_nms_literal and agnostic:
                continue  # the literal rotated agnostic loop takes seconds; covered on smaller sets above
            want, got = literal(boxes, scores, **attrs), fast(boxes, scores, **attrs)
            assert want.num_detections[0, 0] == 300
            for a, b in zip(want, got):
                np.testing.assert_array_equal(b, a)


def test_partial_sort_selection_equals_full_stable_sort():
    from trtalign.plugins.reference.nms import select_candidates

    rng = np.random.default_rng(9)
    for _ in range(20):
        scores = (np.round(rng.uniform(0, 1, (int(rng.integers(1, 300)), 4)) * 16) / 16).astype(np.float32)
        topk = int(rng.integers(1, 400))
        thr = np.float32(rng.choice([0.0, 0.25]))
        np.testing.assert_array_equal(select_candidates(scores, thr, -1, topk),
                                      select_candidates(scores, thr, -1, topk, literal=True))


# ------------------------------------------------------------------ FP16 score threshold (TensorRT's (T) cast)
@pytest.mark.parametrize("rotated", [False, True], ids=["axis", "rotated"])
def test_fp16_scores_compare_with_threshold_rounded_to_fp16(rotated):
    """efficientNMSInference.cu compares ``gte_mp(score, (T) param.scoreThreshold)``: with FP16 scores the threshold
    0.45 becomes float16(0.45) = 0.449951171875, so that score passes; as float32 inputs it does not."""
    assert float(np.float16(0.45)) == 0.449951171875 < 0.45
    fn = efficient_rotated_nms if rotated else efficient_nms
    boxes = np.array([[[0, 0, 10, 10, 0], [50, 50, 10, 10, 0]]]) if rotated else np.array([[[0, 0, 10, 10],
                                                                                           [50, 50, 60, 60]]])
    scores = np.array([[[0.449951171875], [0.2]]])
    attrs = dict(score_threshold=0.45, iou_threshold=0.5, max_output_boxes=4)
    half = fn(boxes.astype(np.float16), scores.astype(np.float16), **attrs)
    assert half.num_detections[0, 0] == 1 and half.detection_scores[0, 0] == np.float32(0.449951171875)
    assert fn(boxes.astype(np.float32), scores.astype(np.float32), **attrs).num_detections[0, 0] == 0
    # just below float16(0.45) still fails in FP16
    below = np.array([[[np.nextafter(np.float16(0.45), np.float16(0))], [0.2]]], np.float16)
    assert fn(boxes.astype(np.float16), below, **attrs).num_detections[0, 0] == 0
    # score_activation: the logit threshold is taken in float32, then rounded to float16
    from trtalign.plugins.reference.nms import candidate_threshold
    logit = candidate_threshold(0.45, 1)
    assert candidate_threshold(0.45, 1, half=True) == np.float32(np.float16(logit))
    raw = np.array([[[np.float16(logit)], [-5.0]]], np.float16)
    assert fn(boxes.astype(np.float16), raw, score_activation=1, **attrs).num_detections[0, 0] == 1
