"""Shared fixtures. Tiny models and data are generated here, never downloaded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# ultralytics must never reach the network or write into $HOME during tests
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "false")
os.environ.setdefault("TRTALIGN_NO_PROGRESS", "1")


@pytest.fixture(scope="session", autouse=True)
def _ultralytics_config_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    if "YOLO_CONFIG_DIR" not in os.environ:
        os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("yolo_config"))


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Run ``trtalign`` in a subprocess; returns (exit code, stdout, stderr)."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "trtalign", *argv], capture_output=True, text=True, cwd=str(ROOT),
                          timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def cli():
    return run_cli


# ---------------------------------------------------------------------------------------------------------------
# Tiny YOLO checkpoints and images for export / runtime / alignment tests (added by the export foundation).
def make_scored_checkpoint(yaml_name: str, path: Path, images: Path, imgsz: int = 160, seed: int = 0) -> Path:
    """Save a random-init ultralytics model from ``yaml_name`` as a ``.pt`` checkpoint whose scores carry signal.

    Random init gives almost the same score everywhere (~1e-5, or saturated), so every NMS decision is a tie. Here
    the BatchNorm statistics are re-estimated on ``images`` and the final class convs are re-randomised and scaled so
    that their logits have std 1.5 around -3 on those images: scores then spread over (0, 1) and differ per box.
    """
    import torch
    from ultralytics import YOLO

    from trtalign.core.preprocess import letterbox_batch, list_images, read_image

    x = torch.from_numpy(letterbox_batch([read_image(p) for p in list_images(images)], imgsz)[0])
    torch.manual_seed(seed)  # the random init itself, so that every session tests the same model
    model = YOLO(yaml_name).model.float()
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    convs = [seq[-1] for seq in model.model[-1].cv3]
    logits = []
    hooks = [c.register_forward_hook(lambda mod, inp, out: logits.append(out)) for c in convs]
    for c in convs:
        c.weight.data = torch.randn(c.weight.shape, generator=gen)
        c.bias.data.zero_()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for c, z in zip(convs, logits):
        mu, sd = z.mean(dim=(0, 2, 3)), z.std(dim=(0, 2, 3)).clamp_min(1e-6) / 1.5
        c.weight.data /= sd[:, None, None, None]
        c.bias.data = -mu / sd - 3.0
    torch.save({"model": model, "train_args": {}, "date": None, "version": "8"}, str(path))
    return path


def make_images(folder: Path, count: int = 4, seed: int = 0, sizes=((120, 160), (200, 150), (97, 211))) -> Path:
    """Write ``count`` BGR images of random rectangles / ellipses on noise, with varied sizes and aspect ratios."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        img = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
        for _ in range(4):
            color = tuple(int(c) for c in rng.integers(60, 255, 3))
            x1, y1 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            x2, y2 = int(rng.integers(x1 + 10, w)), int(rng.integers(y1 + 10, h))
            if rng.random() < 0.5:
                cv2.rectangle(img, (x1, y1), (x2, y2), color, -1)
            else:
                cv2.ellipse(img, (((x1 + x2) / 2, (y1 + y2) / 2), (x2 - x1, y2 - y1), float(rng.integers(0, 180))),
                            color, -1)
        cv2.imwrite(str(folder / f"img_{i:03d}.{'jpg' if i % 2 else 'png'}"), img)
    return folder


@pytest.fixture(scope="session")
def yolo_checkpoint(tmp_path_factory: pytest.TempPathFactory, image_folder: Path):
    """``yolo_checkpoint("yolov8n.yaml")`` -> path of a scored random-init ``.pt`` (cached for the session), its
    BatchNorm and score head calibrated on ``image_folder`` at 160 px."""
    cache: dict = {}
    folder = tmp_path_factory.mktemp("yolo_checkpoints")

    def get(yaml_name: str) -> Path:
        if yaml_name not in cache:
            cache[yaml_name] = make_scored_checkpoint(yaml_name, folder / (Path(yaml_name).stem + ".pt"),
                                                      image_folder)
        return cache[yaml_name]

    return get


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with 4 generated images of different sizes (read-only for tests)."""
    return make_images(tmp_path_factory.mktemp("images"), count=4)
