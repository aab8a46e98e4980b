"""The QAT fine-tuning loop: ultralytics' data pipeline and loss around the fake-quant model, AdamW with a cosine
learning rate, and the resumable per-epoch checkpoint (see ``tune.qat``)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from trtalign.core.errors import InputError
from trtalign.core.io import atomic_write_bytes
from trtalign.core.logging import progress

CHECKPOINT_FORMAT = "trtalign-qat-checkpoint"

#: ultralytics hyperparameters that switch its training augmentations off (``augment: false``): the images are only
#: letterboxed, as at inference; ``mosaic`` stays what the settings say
NO_AUGMENT = {"hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "degrees": 0.0, "translate": 0.0, "scale": 0.0, "shear": 0.0,
              "perspective": 0.0, "flipud": 0.0, "fliplr": 0.0, "mixup": 0.0, "cutmix": 0.0, "copy_paste": 0.0}


def build_train_loader(float_model: Any, data: dict, images: Sequence[Path], imgsz: int, settings: Any,
                       task: str) -> Callable[[int], Any]:
    """``epoch -> DataLoader`` over ultralytics' training dataset (its augmentations unless ``settings.augment`` is
    False, :data:`NO_AUGMENT`; ``mosaic`` from settings); the shuffle order is a function of (seed, epoch) so that a
    resumed run sees the same batches as an uninterrupted one."""
    import torch

    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.utils import DEFAULT_CFG

    overrides = {"task": task, "imgsz": imgsz, "batch": settings.batch, "workers": 0, "cache": False, "plots": False}
    if settings.augment is False:
        overrides.update({k: v for k, v in NO_AUGMENT.items() if k in DEFAULT_CFG.__dict__})
    cfg = get_cfg(DEFAULT_CFG, {**overrides, "mosaic": settings.mosaic})
    float_model.args = cfg  # the loss reads its gains (box, cls, dfl) from model.args
    stride = int(max(float_model.stride.tolist())) if hasattr(float_model, "stride") else 32
    train = data["train"]
    fraction = min(1.0, settings.train_images / len(images)) if settings.train_images else 1.0
    try:
        dataset = build_yolo_dataset(cfg, train, settings.batch, data, mode="train", stride=stride,
                                     fraction=fraction)
    except (FileNotFoundError, AssertionError, ValueError) as exc:
        raise InputError(f"qat: cannot read the training split ({str(exc).strip().splitlines()[0][:200]})") from None
    if len(dataset) == 0:
        raise InputError("qat: the training split has no images with readable labels")

    def loader(epoch: int) -> Any:
        gen = torch.Generator().manual_seed(int(settings.seed) * 100003 + int(epoch))
        return torch.utils.data.DataLoader(dataset, batch_size=settings.batch, shuffle=True, generator=gen,
                                           num_workers=0, collate_fn=dataset.collate_fn, drop_last=False)

    return loader


def make_optimizer(fq: Any, settings: Any) -> Any:
    import torch

    groups = [{"params": [p for p in fq.model.parameters()], "lr": settings.lr, "base_lr": settings.lr}]
    if settings.learn_scales and settings.scale_lr > 0:
        groups.append({"params": list(fq.scales.parameters()), "lr": settings.scale_lr, "base_lr": settings.scale_lr})
    return torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.999), weight_decay=0.0)


def train_one_epoch(fq: Any, float_model: Any, loader: Any, optimizer: Any, settings: Any, epoch: int,
                    steps_per_epoch: int, total_steps: int, teacher: Any = None) -> tuple[float, float]:
    """One pass over ``loader``: (mean loss per image, last learning rate). Cosine decay to ``settings.lr_final`` (a
    fraction of the initial rate, default 1%) over ``total_steps``. ``settings.loss``: ``labels`` (ultralytics' loss on
    the ground truth), ``distill`` (``tune.qat_distill`` against ``teacher``'s outputs on the same batch) or ``both``
    (distillation + ``settings.label_weight`` x the label loss); with ``settings.feature_weight`` > 0 the distillation
    also matches the neck features entering the head (``tune.qat_distill.feature_loss``)."""
    from trtalign.tune.qat_distill import head_inputs_hook

    mode = settings.loss
    if mode != "labels" and teacher is None:
        raise ValueError(f"qat.loss {mode!r} needs the float teacher")

    if getattr(float_model, "criterion", None) is None:
        float_model.criterion = float_model.init_criterion()
    final = float(settings.lr_final)
    label_weight = float(settings.label_weight) if mode == "both" else 1.0
    feature_weight = float(settings.feature_weight) if mode != "labels" else 0.0
    hooks = []
    if feature_weight > 0:
        (s_feats, h1), (t_feats, h2) = head_inputs_hook(float_model), head_inputs_hook(teacher)
        hooks = [h1, h2]
    try:
        return _epoch(fq, float_model, loader, optimizer, settings, epoch, steps_per_epoch, total_steps, teacher, mode,
                      final, label_weight, feature_weight, (s_feats, t_feats) if hooks else None)
    finally:
        for h in hooks:
            h.remove()


def _epoch(fq: Any, float_model: Any, loader: Any, optimizer: Any, settings: Any, epoch: int, steps_per_epoch: int,
           total_steps: int, teacher: Any, mode: str, final: float, label_weight: float, feature_weight: float,
           feats: tuple | None) -> tuple[float, float]:
    import torch

    from trtalign.tune.qat_distill import distill_loss, feature_loss

    total, images, lr = 0.0, 0, settings.lr
    for i, batch in enumerate(progress(loader, total=steps_per_epoch, desc=f"qat epoch {epoch}", unit="batch")):
        step = (epoch - 1) * steps_per_epoch + i
        factor = final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(step / max(total_steps, 1), 1.0)))
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor
        lr = optimizer.param_groups[0]["lr"]
        batch["img"] = batch["img"].float() / 255.0
        preds = fq(batch["img"])
        n = int(batch["img"].shape[0])
        loss = 0.0
        if mode != "labels":
            with torch.no_grad():
                target = teacher(batch["img"])
            loss = distill_loss(preds, target)[0] * n
            if feats is not None:
                loss = loss + feature_weight * feature_loss(*feats) * n
        if mode != "distill":
            loss = loss + label_weight * float_model.loss(batch, preds)[0].sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(float_model.parameters(), max_norm=10.0)
        optimizer.step()
        fq.clamp_scales()
        total += float(loss.detach()) / max(n, 1) * n
        images += n
    return total / max(images, 1), lr


def save_checkpoint(path: Path, fq: Any, optimizer: Any, epoch: int, history: Sequence[Any], fingerprint: dict,
                    wall_s: float = 0.0) -> Path:
    """Write the resumable state after ``epoch`` atomically (``wall_s``: seconds spent so far, all runs)."""
    import torch

    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "epoch": int(epoch), "fq": fq.state_dict(),
                "optimizer": optimizer.state_dict(), "history": [h.to_dict() for h in history],
                "fingerprint": fingerprint, "wall_s": float(wall_s)}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, fingerprint: dict) -> dict:
    """A checkpoint of a run with the same model, plan, data and settings (else InputError: another run's folder)."""
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise InputError(f"cannot read the QAT checkpoint {path} ({type(exc).__name__}); delete it to start over") \
            from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a trtalign QAT checkpoint; delete it or choose another output folder")
    old = state.get("fingerprint", {})
    diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
    if diff:
        raise InputError(f"{path} belongs to a QAT run with other {', '.join(diff)}; delete it to start over or "
                         f"choose another output folder")
    return state
