"""Deterministic synthetic detection datasets (axis-aligned and rotated boxes) for the proxy benchmark.

    from trtalign.data.synth import SynthParams, generate_dataset
    result = generate_dataset("data/synth", SynthParams(task="obb", imgsz=320), train=1000, val=200, seed=0)
"""

from trtalign.data.synth.dataset import (MANIFEST, SPLITS, SynthResult, generate_dataset, image_rng,
                                         render_split_image)
from trtalign.data.synth.params import CLASS_NAMES, TASKS, SynthParams
from trtalign.data.synth.render import SynthObject, encode_image, render_image

__all__ = ["CLASS_NAMES", "MANIFEST", "SPLITS", "TASKS", "SynthObject", "SynthParams", "SynthResult",
           "encode_image", "generate_dataset", "image_rng", "render_image", "render_split_image"]
