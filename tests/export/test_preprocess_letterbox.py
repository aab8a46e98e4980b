"""Letterbox and scale_boxes against ultralytics' own implementation (the predictor's pre/post-processing)."""

from __future__ import annotations

import numpy as np
import pytest

from trtalign.core.enums import BoxFormat
from trtalign.core.preprocess import letterbox, scale_boxes

SHAPES = [
    (120, 160),  # landscape, scale up
    (200, 150),  # portrait
    (97, 211),  # odd sizes: padding split 0.1-rounding matters
    (160, 160),  # exact size: no resize, no padding
    (3, 500),  # very thin: resized side kept >= 1 px
    (641, 333),  # scale down
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("imgsz", [160, 320])
def test_letterbox_matches_ultralytics_predictor(shape, imgsz):
    torch = pytest.importorskip("torch")
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 255, size=(*shape, 3), dtype=np.uint8)
    ours, meta = letterbox(img, imgsz)
    ref = LetterBox((imgsz, imgsz), auto=False, stride=32)(image=img)
    ref_t = torch.from_numpy(ref[None]).permute(0, 3, 1, 2).flip(1).float().div(255).numpy()  # predictor.preprocess
    assert ours.dtype == np.float32 and ours.shape == (1, 3, imgsz, imgsz)
    np.testing.assert_array_equal(ours, ref_t)
    assert meta.orig_shape == shape and meta.input_shape == (imgsz, imgsz)


@pytest.mark.parametrize("shape", SHAPES)
def test_scale_boxes_matches_ultralytics(shape):
    torch = pytest.importorskip("torch")
    from ultralytics.utils import ops

    imgsz = 160
    _, meta = letterbox(np.zeros((*shape, 3), np.uint8), imgsz)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, imgsz, size=(7, 2)).astype(np.float32)
    wh = rng.uniform(1, 60, size=(7, 2)).astype(np.float32)
    xyxy = np.concatenate([xy, xy + wh], 1)
    ref = ops.scale_boxes((imgsz, imgsz), torch.from_numpy(xyxy.copy()), shape).numpy()
    np.testing.assert_allclose(scale_boxes(xyxy, meta, BoxFormat.XYXY), ref, rtol=0, atol=1e-4)
    xywhr = np.concatenate([xy, wh, rng.uniform(-1.5, 1.5, (7, 1)).astype(np.float32)], 1)
    ref_r = xywhr.copy()
    ref_r[:, :4] = ops.scale_boxes((imgsz, imgsz), torch.from_numpy(xywhr[:, :4].copy()), shape, xywh=True).numpy()
    np.testing.assert_allclose(scale_boxes(xywhr, meta, BoxFormat.XYWHR), ref_r, rtol=0, atol=1e-4)


def test_scale_boxes_rejects_wrong_width():
    from trtalign.core.errors import InputError

    _, meta = letterbox(np.zeros((50, 80, 3), np.uint8), 64)
    with pytest.raises(InputError, match=r"\[N, 5\]"):
        scale_boxes(np.zeros((2, 4)), meta, BoxFormat.XYWHR)
