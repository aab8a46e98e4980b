"""Pre-processing shared by every backend: images on disk -> letterboxed ``[B, 3, H, W]`` float32 tensors, and
boxes on the letterboxed input -> boxes on the original image.

The letterbox reproduces ultralytics' ``LetterBox`` exactly as its predictor uses it for a fixed-size model input
(``auto=False``, ``scaleup=True``, ``center=True``): gain ``r = min(H/h, W/w)``, resized size
``max(round(w*r), 1) x max(round(h*r), 1)`` with ``cv2.INTER_LINEAR``, padding split as ``round(d/2 - 0.1)`` before
and ``round(d/2 + 0.1)`` after with value 114, BGR -> RGB, ``/ 255``. :func:`scale_boxes` inverts it the way
ultralytics' ``ops.scale_boxes`` does (per-axis gains recomputed from the shapes, corners clipped for xyxy).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from trtalign.core.enums import BoxFormat
from trtalign.core.errors import InputError
from trtalign.core.logging import get_logger

log = get_logger(__name__)

#: file extensions read as images (lower case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PAD_VALUE = 114


#: pre-processing recipes: ``ultralytics`` (the default, its LetterBox; see the module docstring) or ``yolov5``
#: (YOLOv5's val.py data path for a fixed-size model, see :func:`letterbox_image`)
PREPROCESS_MODES = ("ultralytics", "yolov5")


@dataclass(frozen=True)
class LetterboxMeta:
    """How one image was letterboxed: shapes are (height, width); ``pad`` is (left, top) in input pixels.

    ``scale``: how boxes go back to the original image when it is not ultralytics' per-axis recomputation:
    ``((gain_y, gain_x), (pad_x, pad_y))`` with float pads (YOLOv5's ``scale_boxes(..., ratio_pad)``).
    """

    orig_shape: tuple
    input_shape: tuple
    resized_shape: tuple
    pad: tuple
    scale: tuple | None = None

    @property
    def gain(self) -> tuple:
        """(gain_y, gain_x): resized / original, per axis (as ultralytics' scale_boxes recomputes it)."""
        if self.scale is not None:
            return tuple(self.scale[0])
        return (self.resized_shape[0] / self.orig_shape[0], self.resized_shape[1] / self.orig_shape[1])

    @property
    def box_pad(self) -> tuple:
        """(pad_x, pad_y) subtracted from boxes by :func:`scale_boxes`."""
        return tuple(self.scale[1]) if self.scale is not None else tuple(self.pad)

    def to_dict(self) -> dict:
        out = {"orig_shape": list(self.orig_shape), "input_shape": list(self.input_shape),
               "resized_shape": list(self.resized_shape), "pad": list(self.pad)}
        if self.scale is not None:
            out["scale"] = [list(self.scale[0]), list(self.scale[1])]
        return out


def as_hw(shape: int | Sequence[int]) -> tuple[int, int]:
    """``640`` -> ``(640, 640)``; ``(h, w)`` stays."""
    if isinstance(shape, (int, np.integer)):
        return int(shape), int(shape)
    values = tuple(int(v) for v in shape)
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise InputError(f"image size must be one int or (height, width), got {shape!r}")
    return values


def check_mode(mode: str) -> str:
    if mode not in PREPROCESS_MODES:
        raise InputError(f"invalid pre-processing {mode!r}; valid choices: {', '.join(map(repr, PREPROCESS_MODES))}")
    return mode


def letterbox_image(image: np.ndarray, new_shape: int | Sequence[int], pad_value: int = PAD_VALUE,
                    scaleup: bool = True, mode: str = "ultralytics") -> tuple[np.ndarray, LetterboxMeta]:
    """Resize ``image`` (HWC uint8) keeping its aspect ratio and pad it to ``new_shape``; returns (HWC image, meta).

    ``mode="yolov5"`` reproduces YOLOv5's val.py for a fixed-size (exported) model: ``load_image`` resizes so that the
    long side is ``max(new_shape)`` (sizes ``ceil(w0 * r) x ceil(h0 * r)``; ``cv2.INTER_AREA`` when shrinking,
    ``INTER_LINEAR`` when enlarging), then ``letterbox(auto=False, scaleup=False)`` pads to ``new_shape``; boxes go
    back with YOLOv5's single gain ``h / h0`` and unrounded pads (``meta.scale``).
    """
    import cv2

    check_mode(mode)
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise InputError(f"expected an HxW or HxWxC image array, got {getattr(image, 'shape', type(image).__name__)}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    h0, w0 = image.shape[:2]
    new_h, new_w = as_hw(new_shape)
    if mode == "yolov5":
        return _letterbox_yolov5(image, (new_h, new_w), pad_value)
    r = min(new_h / h0, new_w / w0)
    if not scaleup:
        r = min(r, 1.0)
    unpad_w, unpad_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = (new_w - unpad_w) / 2, (new_h - unpad_h) / 2
    if (w0, h0) != (unpad_w, unpad_h):
        image = cv2.resize(image, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    meta = LetterboxMeta((h0, w0), (new_h, new_w), (unpad_h, unpad_w), (left, top))
    return image, meta


def _letterbox_yolov5(image: np.ndarray, new_hw: tuple, pad_value: int) -> tuple[np.ndarray, LetterboxMeta]:
    import math

    import cv2

    h0, w0 = image.shape[:2]
    new_h, new_w = new_hw
    r = max(new_h, new_w) / max(h0, w0)  # load_image: img_size / max(h0, w0)
    if r != 1:
        interp = cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA
        image = cv2.resize(image, (math.ceil(w0 * r), math.ceil(h0 * r)), interpolation=interp)
    h1, w1 = image.shape[:2]
    r2 = min(new_h / h1, new_w / w1, 1.0)  # letterbox(scaleup=False)
    unpad_w, unpad_h = int(round(w1 * r2)), int(round(h1 * r2))
    dw, dh = (new_w - unpad_w) / 2, (new_h - unpad_h) / 2
    if (w1, h1) != (unpad_w, unpad_h):
        image = cv2.resize(image, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    # YOLOv5's __getitem__: shapes = (h0, w0), ((h1 / h0 * r2, w1 / w0 * r2), (dw, dh)); scale_boxes uses gain[0]
    gain = h1 / h0 * r2
    meta = LetterboxMeta((h0, w0), (new_h, new_w), (unpad_h, unpad_w), (left, top), scale=((gain, gain), (dw, dh)))
    return image, meta


def letterbox(image: np.ndarray, new_shape: int | Sequence[int], bgr: bool = True,
              pad_value: int = PAD_VALUE, mode: str = "ultralytics") -> tuple[np.ndarray, LetterboxMeta]:
    """One image -> (``[1, 3, H, W]`` float32 RGB tensor in [0, 1], meta). ``bgr``: the image is OpenCV BGR.
    ``mode``: one of :data:`PREPROCESS_MODES`."""
    padded, meta = letterbox_image(image, new_shape, pad_value=pad_value, mode=mode)
    if padded.ndim == 3 and padded.shape[2] == 4:
        padded = padded[..., :3]
    chw = padded.transpose(2, 0, 1)
    if bgr:
        chw = chw[::-1]
    tensor = np.ascontiguousarray(chw[None], dtype=np.float32) / np.float32(255.0)
    return tensor.astype(np.float32, copy=False), meta


def letterbox_batch(images: Sequence[np.ndarray], new_shape: int | Sequence[int],
                    bgr: bool = True, mode: str = "ultralytics") -> tuple[np.ndarray, list[LetterboxMeta]]:
    """Several images -> (``[B, 3, H, W]`` tensor, metas)."""
    if not images:
        raise InputError("letterbox_batch needs at least one image")
    parts = [letterbox(im, new_shape, bgr=bgr, mode=mode) for im in images]
    return np.concatenate([p[0] for p in parts], axis=0), [p[1] for p in parts]


def scale_boxes(boxes: np.ndarray, meta: LetterboxMeta, box_format: BoxFormat | str = BoxFormat.XYXY,
                clip: bool = True) -> np.ndarray:
    """Boxes on the letterboxed input -> boxes on the original image (a new float32 array).

    ``xyxy``: subtract the padding from both corners, divide by the per-axis gain, clip to the image (when ``clip``).
    ``xywhr``: subtract the padding from the center, divide x and w by the x gain, y and h by the y gain; the angle
    is unchanged and nothing is clipped (ultralytics' OBB predictor does the same).
    """
    fmt = BoxFormat.parse(box_format)
    out = np.array(boxes, dtype=np.float32, copy=True)
    width = 4 if fmt is BoxFormat.XYXY else 5
    if out.ndim != 2 or out.shape[1] != width:
        raise InputError(f"scale_boxes: {fmt} boxes must be [N, {width}], got shape {out.shape}")
    gain_y, gain_x = meta.gain
    pad_x, pad_y = meta.box_pad
    out[:, 0] -= pad_x
    out[:, 1] -= pad_y
    if fmt is BoxFormat.XYXY:
        out[:, 2] -= pad_x
        out[:, 3] -= pad_y
    out[:, 0] /= gain_x
    out[:, 1] /= gain_y
    out[:, 2] /= gain_x
    out[:, 3] /= gain_y
    if fmt is BoxFormat.XYXY and clip:
        h, w = meta.orig_shape
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


# ---------------------------------------------------------------------------------------------------- image files
def list_images(folder: str | os.PathLike, max_images: int | None = None) -> list[Path]:
    """Image files directly in ``folder`` (sorted). Other files are skipped with a warning; none found is an error."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"images folder not found: {folder}")
    if folder.is_file():
        if folder.suffix.lower() in IMAGE_EXTENSIONS:
            return [folder]
        raise InputError(f"{folder} is not an image (expected one of {', '.join(IMAGE_EXTENSIONS)}) or a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    skipped = [p.name for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
    if skipped:
        log.warning("skipping %d non-image file(s) in %s: %s", len(skipped), folder,
                    ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    if not images:
        raise InputError(f"no images in {folder}: expected files ending in {', '.join(IMAGE_EXTENSIONS)}, "
                         f"found {len(files)} other file(s)")
    if max_images is not None:
        if max_images < 1:
            raise InputError(f"max_images must be >= 1, got {max_images}")
        images = images[:max_images]
    return images


#: how a Git LFS pointer file begins (a ~130-byte text file left where the image should be when a repository was
#: cloned without git-lfs, or files were copied out of one)
LFS_POINTER_PREFIX = b"version https://git-lfs"


def lfs_pointer_error(path: str | os.PathLike, data: bytes | None = None) -> InputError | None:
    """An InputError explaining that ``path`` is a Git LFS pointer, not an image (None when it is not one).
    ``data``: the file's first bytes when already read."""
    try:
        if data is None:
            with open(path, "rb") as fh:
                data = fh.read(len(LFS_POINTER_PREFIX))
    except OSError:
        return None
    if not bytes(data[:len(LFS_POINTER_PREFIX)]) == LFS_POINTER_PREFIX:
        return None
    return InputError(f"{path} is a Git LFS pointer file, not an image: the real file was never downloaded; fetch "
                      f"it with `git lfs install && git lfs pull` in the repository it came from")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as BGR uint8 HxWx3; an unreadable file (or a Git LFS pointer) raises InputError."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise lfs_pointer_error(path, data[:len(LFS_POINTER_PREFIX)].tobytes()) or \
            InputError(f"cannot decode image {path} (corrupt or unsupported format)")
    return image


def read_images(paths: Iterable[str | os.PathLike], skip_unreadable: bool = True) -> list[tuple[Path, np.ndarray]]:
    """Read several images; unreadable ones are skipped with a warning (or raise when ``skip_unreadable`` is False)."""
    out, pointers = [], 0
    for p in paths:
        try:
            out.append((Path(p), read_image(p)))
        except InputError as exc:
            if not skip_unreadable:
                raise
            pointers += "Git LFS pointer" in str(exc)
            log.warning("skipping %s", exc)
    if not out:
        hint = f" ({pointers} are Git LFS pointer files: run `git lfs pull` where they came from)" if pointers else ""
        raise InputError(f"none of the images could be read{hint}")
    return out
