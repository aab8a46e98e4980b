"""Knowledge distillation for QAT: the fake-quant student matches the raw head outputs of the float teacher (the
network QAT started from, BatchNorm folded, no fake quantization) on the same batch. Label-free, so it can use any
number of images, and its target is exactly what PTQ loses: the float model's own outputs.

Loss per batch (``distill_loss``), on the training-mode head outputs of ultralytics' Detect / OBB heads
(``{"boxes": [B, 4*reg_max, A], "scores": [B, nc, A], "angle": [B, 1, A]}``):

- classes: Bernoulli KL(teacher sigmoid || student sigmoid) per class and anchor, summed (every anchor: the
  background's low scores are what keeps false positives out);
- boxes: KL(teacher softmax || student softmax) over the ``reg_max`` bins of each side's DFL distribution, summed
  over the 4 sides, weighted per anchor by the teacher's highest class probability (background anchors' boxes are
  never decoded into detections);
- angle (OBB): |student - teacher| in radians, with the same weights;

each summed over anchors and divided by the sum of the weights (as ultralytics normalises by the target score sum).
Every term is zero when the student equals the teacher.
"""

from __future__ import annotations

from typing import Any

from trtalign.core.errors import ModelError

LOSSES = ("distill", "labels", "both")


def head_outputs(preds: Any) -> dict:
    """The raw head dict of a training-mode forward (an end-to-end head's ``one2many`` branch)."""
    if isinstance(preds, dict) and "one2many" in preds:
        preds = preds["one2many"]
    if not isinstance(preds, dict) or "boxes" not in preds or "scores" not in preds:
        raise ModelError(f"QAT distillation needs the raw head outputs of an ultralytics Detect / OBB head "
                         f"(a dict with 'boxes' and 'scores'), got {type(preds).__name__}")
    return preds


def distill_loss(student: Any, teacher: Any) -> tuple[Any, dict]:
    """(loss, {"cls", "box", "angle"}) of the student's head outputs against the teacher's (see the module text).

    Args:
        student: training-mode output of the fake-quant model (gradients flow through it).
        teacher: training-mode output of the float teacher on the same images (detached here).

    Returns:
        a 0-d tensor (per image: multiply by the batch size to match ultralytics' loss scale) and its parts as floats.
    """
    import torch
    import torch.nn.functional as F

    s, t = head_outputs(student), head_outputs(teacher)
    t_scores = t["scores"].detach()
    p = torch.sigmoid(t_scores)
    # Bernoulli KL(p || q) = BCE(q_logits, p) - BCE(t_logits, p): zero when the logits are equal
    cls = (F.binary_cross_entropy_with_logits(s["scores"], p, reduction="none")
           - F.binary_cross_entropy_with_logits(t_scores, p, reduction="none")).sum(1)  # [B, A]
    w = p.amax(1)  # [B, A]
    b, c4, a = s["boxes"].shape
    sb = s["boxes"].view(b, 4, c4 // 4, a)
    tb = t["boxes"].detach().view(b, 4, c4 // 4, a)
    box = F.kl_div(F.log_softmax(sb, 2), F.log_softmax(tb, 2), reduction="none", log_target=True).sum((1, 2))
    norm = w.sum().clamp_min(1.0)
    parts = {"cls": cls.sum() / norm, "box": (box * w).sum() / norm}
    if "angle" in s and "angle" in t:
        parts["angle"] = ((s["angle"] - t["angle"].detach()).abs().sum(1) * w).sum() / norm
    loss = sum(parts.values()) / b
    return loss, {k: float(v.detach()) / b for k, v in parts.items()}


def head_inputs_hook(model: Any) -> tuple[list, Any]:
    """(list that receives the feature maps entering ``model``'s head on every forward, hook handle): the head's input
    list is copied because ultralytics' heads replace its entries in place."""
    store: list = []

    def hook(_module, args):
        store[:] = list(args[0])

    return store, model.model[-1].register_forward_pre_hook(hook)


def feature_loss(student: list, teacher: list) -> Any:
    """Sum over the head's input levels of the relative squared error ``mean((s - t)^2) / mean(t^2)``: the neck
    features of the fake-quant student against the float teacher's (zero when they are equal)."""
    return sum(((s - t.detach()) ** 2).mean() / (t.detach() ** 2).mean().clamp_min(1e-12)
               for s, t in zip(student, teacher))


def make_teacher(float_model: Any) -> Any:
    """A frozen copy of the float network (the distillation target); training mode so that it returns the raw head
    outputs (BatchNorm is folded, so the mode changes nothing else)."""
    import copy

    teacher = copy.deepcopy(float_model).float().train()
    for p in teacher.parameters():
        p.requires_grad_(False)
    if hasattr(teacher, "criterion"):
        teacher.criterion = None
    return teacher
