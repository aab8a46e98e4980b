"""Parameters of the synthetic detection dataset: one frozen dataclass with documented defaults.

Every field changes the drawn distribution; the defaults are the distribution the bundled proxy models were trained on.
Draw other distributions (harder, smaller objects, no photographs...) with ``dataclasses.replace(SynthParams(), ...)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from trtalign.core.errors import ConfigError, choices_text

#: the object classes, in class-id order (YOLO ids start at 0, COCO category ids at 1)
CLASS_NAMES: tuple[str, ...] = (
    "ellipse", "triangle", "star", "cross", "ring", "striped_rect", "hexagon", "arrow",
)

TASKS = ("detect", "obb")
IMAGE_FORMATS = ("jpg", "png")


@dataclass(frozen=True)
class SynthParams:
    """How one synthetic image is drawn. Sizes are fractions of ``imgsz`` unless they say ``px``."""

    task: str = "detect"
    """'detect' (axis-aligned boxes of the visible pixels) or 'obb' (the object's true oriented extent)."""
    imgsz: int = 320
    """Square image side in pixels."""
    min_objects: int = 2
    """Fewest labelled objects attempted per image (placement can still fail and give fewer)."""
    max_objects: int = 10
    """Most labelled objects attempted per image."""
    min_size: float = 0.05
    """Smallest long side of an object (0.05 of 320 px = 16 px); sizes are drawn log-uniformly."""
    max_size: float = 0.40
    """Largest long side of an object."""
    detect_min_aspect: float = 0.6
    """Detect task: short/long side ratio is drawn from [detect_min_aspect, 1]."""
    obb_min_aspect: float = 1.35
    """OBB task: long/short side ratio is drawn from [obb_min_aspect, obb_max_aspect] so the orientation is defined."""
    obb_max_aspect: float = 2.6
    """OBB task: largest long/short side ratio."""
    shape_jitter: float = 0.06
    """Random displacement of polygon vertices, as a fraction of the object size (shape variation)."""
    max_distractors: int = 5
    """Most non-class shapes per image (irregular blobs and plain rectangles); they occlude and confuse."""
    max_lines: int = 5
    """Most clutter lines / scribbles / letters per image."""
    max_overlap: float = 0.35
    """A labelled object is re-placed if more than this fraction of its box lies on an earlier object's box."""
    min_visible: float = 0.5
    """Objects with less than this fraction of their area visible (occluded or out of frame) get no label."""
    min_box_px: int = 4
    """Objects whose visible box is narrower than this (px) get no label."""
    outline_prob: float = 0.6
    """Probability that an object has a darker/lighter outline."""
    photo_background_prob: float = 0.3
    """Probability of a background cropped from sample photographs shipped with matplotlib (if present)."""
    brightness: float = 35.0
    """Global brightness shift drawn from [-brightness, +brightness] (8-bit levels)."""
    min_contrast: float = 0.65
    """Global contrast factor drawn from [min_contrast, max_contrast] around mid-grey."""
    max_contrast: float = 1.25
    """See ``min_contrast``."""
    blur_prob: float = 0.25
    """Probability of a Gaussian blur of the whole image."""
    max_blur_sigma: float = 1.4
    """Largest blur sigma (px)."""
    max_noise_sigma: float = 7.0
    """Largest sigma of per-pixel Gaussian noise (8-bit levels)."""
    image_format: str = "jpg"
    """'jpg' or 'png'."""
    jpeg_quality: int = 92
    """JPEG quality (cv2 encoder, fixed, so files are byte-identical on a given OpenCV build)."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"synth task must be one of {choices_text(TASKS)}, got {self.task!r}")
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"synth image_format must be one of {choices_text(IMAGE_FORMATS)}, "
                              f"got {self.image_format!r}")
        if not 32 <= self.imgsz <= 4096:
            raise ConfigError(f"synth imgsz must be in [32, 4096] px, got {self.imgsz}")
        if not 0 <= self.min_objects <= self.max_objects <= 100:
            raise ConfigError(f"synth needs 0 <= min_objects <= max_objects <= 100, got {self.min_objects}, "
                              f"{self.max_objects}")
        if not 0 < self.min_size <= self.max_size <= 0.9:
            raise ConfigError(f"synth needs 0 < min_size <= max_size <= 0.9, got {self.min_size}, {self.max_size}")
        if not 0 < self.detect_min_aspect <= 1:
            raise ConfigError(f"synth detect_min_aspect must be in (0, 1], got {self.detect_min_aspect}")
        if not 1 <= self.obb_min_aspect <= self.obb_max_aspect:
            raise ConfigError(f"synth needs 1 <= obb_min_aspect <= obb_max_aspect, got {self.obb_min_aspect}, "
                              f"{self.obb_max_aspect}")
        for name in ("max_overlap", "min_visible", "outline_prob", "photo_background_prob", "blur_prob"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"synth {name} must be in [0, 1], got {value}")
        if not 0 < self.min_contrast <= self.max_contrast:
            raise ConfigError(f"synth needs 0 < min_contrast <= max_contrast, got {self.min_contrast}, "
                              f"{self.max_contrast}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"synth jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.max_distractors < 0 or self.max_lines < 0 or self.min_box_px < 1:
            raise ConfigError("synth max_distractors and max_lines must be >= 0 and min_box_px >= 1")

    @property
    def names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SynthParams":
        """Build from a dict (e.g. a model card's ``dataset.params``); unknown keys are an error listing valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ConfigError(f"unknown synth parameter(s) {unknown}; valid: {choices_text(sorted(valid))}")
        return cls(**dict(data))
