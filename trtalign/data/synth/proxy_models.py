"""The bundled proxy models (trained on this generator's data) and the check that they still score as their card says.

``trtalign/assets/models/proxy_{task}.pt`` with ``proxy_{task}.json`` (the model card). The card's ``check`` block is
the mAP measured on a small val split regenerated from the card's seed and parameters, scored by
:func:`score_on_check_split` (ultralytics ``YOLO(path).val`` on the CPU), so anyone can re-measure it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trtalign.core.errors import InputError, choices_text
from trtalign.data.synth.dataset import generate_dataset
from trtalign.data.synth.params import TASKS, SynthParams

MODELS_DIR = Path(__file__).resolve().parents[2] / "assets" / "models"


def proxy_model_path(task: str = "detect") -> Path:
    """Path of the bundled weights for ``task`` ('detect' or 'obb')."""
    if task not in TASKS:
        raise InputError(f"proxy model task must be one of {choices_text(TASKS)}, got {task!r}")
    path = MODELS_DIR / f"proxy_{task}.pt"
    if not path.is_file():
        raise InputError(f"bundled proxy model {path} is missing: expected it in the installed package data")
    return path


def load_card(task: str = "detect") -> dict[str, Any]:
    """The model card (JSON) of the bundled model for ``task``."""
    path = proxy_model_path(task).with_suffix(".json")
    if not path.is_file():
        raise InputError(f"model card {path} is missing next to {path.with_suffix('.pt').name}")
    return json.loads(path.read_text())


def check_split_params(card: dict[str, Any]) -> tuple[SynthParams, int, int]:
    """(params, seed, images) of the card's check split: the first ``images`` val images of its dataset."""
    params = SynthParams.from_dict(card["dataset"]["params"])
    return params, int(card["dataset"]["seed"]), int(card["check"]["images"])


def score_weights(weights: str | Path, data_yaml: str | Path, imgsz: int, workdir: str | Path, device: str = "cpu",
                  batch: int = 8, task: str | None = None) -> dict[str, float]:
    """Score ``weights`` on the val split of ``data_yaml`` with ultralytics' validator (conf 0.001, iou 0.7).

    ultralytics' NMS gives up on a batch after a wall-clock limit (2 s + 0.05 s per image), which on a busy CPU and a
    weak model drops whole batches and makes the score depend on the machine's load; the limit is lifted here (the
    NMS itself is unchanged), so the score depends only on the weights and the images.
    """
    import contextlib

    from trtalign.core.lazy import require

    ultralytics = require("ultralytics", purpose="scoring the proxy models")
    nms = require("ultralytics.utils.nms", purpose="scoring the proxy models")
    original = nms.non_max_suppression

    def no_time_limit(*args, **kwargs):
        kwargs["max_time_img"] = 1e6
        return original(*args, **kwargs)

    workdir = Path(workdir)
    model = ultralytics.YOLO(str(weights), task=task)
    nms.non_max_suppression = no_time_limit
    try:
        metrics = model.val(data=str(Path(data_yaml).resolve()), imgsz=imgsz, batch=batch, device=device,
                            workers=0, plots=False, verbose=False, project=str((workdir / "runs").resolve()),
                            name="val", exist_ok=True, conf=0.001, iou=0.7)
    finally:
        with contextlib.suppress(Exception):
            nms.non_max_suppression = original
    return {"map50_95": float(metrics.box.map), "map50": float(metrics.box.map50)}


def score_on_check_split(weights: str | Path, params: SynthParams, seed: int, images: int, workdir: str | Path,
                         device: str = "cpu", batch: int = 8) -> dict[str, float]:
    """Regenerate val images [0, images) and score ``weights`` on them with :func:`score_weights`.

    Returns ``{"map50_95": ..., "map50": ...}``. Needs ultralytics (``pip install 'trtalign[ultralytics]'``).
    """
    workdir = Path(workdir)
    data = generate_dataset(workdir / "data", params, train=0, val=images, seed=seed, show_progress=False)
    return score_weights(weights, data.data_yaml, params.imgsz, workdir, device=device, batch=batch, task=params.task)
