"""The QAT section of an HTML report: validation mAP per epoch and the training loss curve, plus a table of the
epochs; optionally a comparison table (FP32 / FP16 / PTQ / QAT) the caller measured."""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def qat_curve_figure(epochs: Sequence[Any]) -> Any:
    """Loss (left axis) and validation mAP50-95 (right axis) per epoch; epoch 0 is the model before fine-tuning."""
    from trtalign.eval.report import new_figure

    fig = new_figure()
    ax = fig.add_subplot(111)
    xs = [e.epoch for e in epochs if e.loss is not None]
    ax.plot(xs, [e.loss for e in epochs if e.loss is not None], "o-", color="tab:red", label="train loss / image")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="tab:red")
    ax2 = ax.twinx()
    ax2.plot([e.epoch for e in epochs], [e.val_map for e in epochs], "s-", color="tab:blue", label="val mAP50-95")
    ax2.set_ylabel("val mAP50-95 (Q/DQ ONNX)", color="tab:blue")
    ax.set_xticks([e.epoch for e in epochs])
    fig.tight_layout()
    return fig


def add_qat_section(report: Any, result: Any, comparison: Mapping[str, float] | None = None) -> Any:
    """Add the QAT section to ``report`` (an ``eval.report.Report``): the curve, the per-epoch table and, when given,
    ``comparison`` ({label: mAP50-95}) as a table. Returns the report."""
    e0, last = result.epochs[0], result.epochs[-1]
    report.add_section("Quantization-aware training", (
        f"<p>{len(result.epochs) - 1} epoch(s) of fine-tuning with fake quantization at trtalign's Q/DQ sites "
        f"({result.notes.get('sites', '?')} sites, {result.notes.get('scale_groups', '?')} scale groups), "
        f"{result.int8_mac_fraction * 100:.1f}% of conv MACs in INT8; activation scales "
        f"{'learned (LSQ)' if result.settings.get('learn_scales') else 'fixed at calibration'}. Validation mAP50-95 "
        f"of the exported Q/DQ ONNX in ONNX Runtime on {result.val_images} images: {e0.val_map:.4f} before, "
        f"{last.val_map:.4f} after.</p>"))
    report.add_figure("QAT loss and validation mAP per epoch", qat_curve_figure(result.epochs),
                      caption="epoch 0: the plan with calibrated scales, before fine-tuning (PTQ)")
    report.add_table("QAT epochs", ["epoch", "train loss / image", "val mAP50-95", "val mAP50", "seconds", "lr"],
                     [[e.epoch, "" if e.loss is None else e.loss, e.val_map, e.val_map50, e.seconds,
                       "" if e.lr is None else f"{e.lr:.2e}"] for e in result.epochs])
    if comparison:
        report.add_table("QAT beside FP32 / PTQ", ["model", "mAP50-95"], [[k, v] for k, v in comparison.items()])
    return report


def qat_report(result: Any, comparison: Mapping[str, float] | None = None, title: str = "trtalign qat") -> Any:
    """A standalone report holding only the QAT section."""
    from trtalign.eval.report import Report

    return add_qat_section(Report(title, subtitle=str(result.model)), result, comparison)
