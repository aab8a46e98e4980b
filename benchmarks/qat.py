"""QAT benchmark on the bundled proxy models (CPU): FP32, PTQ with every unit INT8, PTQ + fallback, QAT with every
unit INT8 -- mAP50-95 on a held-out generated split, % of conv MACs in INT8, wall time.

    python benchmarks/qat.py --out scratch/qat --json scratch/qat/qat.json [--tasks detect obb] [--epochs 3]

Data (``trtalign.data.synth``, the proxy models' generator parameters): fine-tuning images from seed 101 (train
split; its val split scores every epoch and is the fallback search's tuning split), the held-out split from seed 202
(val split, never trained or tuned on). ``--json`` writes ``{"models": [{"model", "fp32_map", "ptq_map",
"ptq_fallback_map", "qat_map", "qat_int8_mac_fraction", "onnx", "epochs", "wall_s"}], "details": [...]}``
(``wall_s``: the QAT run, over all its resumed parts), plus what the run used: ``loss``, ``train_images``, ``lr``,
``heldout_images`` (``details``: splits, fallback units, per-epoch curve, timings). ``loss`` / ``lr`` / ``epochs``
are the resolved values: by default (``--loss auto``, no ``--lr`` / ``--epochs``) each task gets its measured recipe
(``trtalign.tune.qat.RECIPES``, the README's table): detect distillation from the FP32 model, lr 5e-4, 3 epochs; OBB
``both`` (labels + distillation), lr 1e-4, 2 epochs; both without ultralytics' training augmentations (``--augment``
turns them on); on 1000 generated fine-tuning images (``--train``). Measured with the defaults (1000 held-out images):
detect QAT -0.05 [-0.22, +0.10] points at 100% INT8 (PTQ -0.60, PTQ + fallback -0.39 at 96.9% MACs INT8), OBB QAT
+0.66 [+0.42, +0.91] (PTQ -0.57, PTQ + fallback -0.32 at 90.7%); about 25 min per task on one thread.
``--no-fallback`` skips the PTQ + fallback search (recipe exploration; ``ptq_fallback_map`` is then null).

Noise: every model is scored on the same 1000 held-out images (``--heldout``, about 35 s per evaluation; 150 images
spread recipes that score the same on 1000 by up to ~0.4 points), and each drop from FP32 carries its paired
bootstrap 95% interval over those images (``details``: ``ptq_delta``, ``ptq_fallback_delta``, ``qat_delta``, in mAP
points, ``eval.bootstrap``). The PTQ + fallback row is ``TuningSession``'s defaults (``scorebox`` ranking on the gated
model, ``descend`` search, the ``auto`` decision) with the tuning split of ``--val`` images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

TASKS = ("detect", "obb")


def parse_args(argv=None) -> argparse.Namespace:
    from trtalign.tune.qat_distill import LOSSES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="work / output folder")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--model", default=None, help="a checkpoint instead of the bundled proxy (one task)")
    p.add_argument("--train", type=int, default=1000, help="fine-tuning images")
    p.add_argument("--val", type=int, default=400, help="per-epoch validation images (fallback tuning split)")
    p.add_argument("--heldout", type=int, default=1000, help="held-out images for the reported mAP")
    p.add_argument("--epochs", type=int, default=None, help="default: the task's recipe (trtalign.tune.qat.RECIPES)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="default: the task's recipe for the loss")
    p.add_argument("--lr-final", type=float, default=0.01, help="the cosine schedule ends at lr x this")
    p.add_argument("--label-weight", type=float, default=1.0, help="--loss both: weight of the label loss")
    p.add_argument("--feature-weight", type=float, default=0.0,
                   help="distill / both: weight of the neck-feature distillation (0: off)")
    p.add_argument("--scale-lr", type=float, default=1e-4)
    p.add_argument("--mosaic", type=float, default=0.0, help="ultralytics' mosaic probability for the training images")
    p.add_argument("--seed", type=int, default=0, help="QAT's seed (shuffle order, augmentation)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="ultralytics' training augmentations (default: the task's recipe for the loss)")
    p.add_argument("--fixed-scales", action="store_true", help="do not learn activation scales")
    p.add_argument("--loss", choices=("auto",) + LOSSES, default="auto",
                   help="QAT loss (qat.loss): auto (the task's measured recipe), distill from the FP32 model, "
                        "ultralytics' label loss, or both")
    p.add_argument("--val-images", type=int, default=None, help="cap on the per-epoch validation images")
    p.add_argument("--budget", type=float, default=0.5, help="fallback budget in mAP points")
    p.add_argument("--max-evals", type=int, default=16, help="fallback search: full tuning evaluations at most")
    p.add_argument("--resamples", type=int, default=1000, help="paired bootstrap resamples per interval")
    p.add_argument("--calib", type=int, default=128, help="calibration images (from the fine-tuning split)")
    p.add_argument("--calib-method", default="", help="calibration method (default: the project's, minmax)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--no-fallback", action="store_true",
                   help="skip the PTQ + fallback search (recipe exploration: ptq_fallback_map is null)")
    return p.parse_args(argv)


def run_task(task: str, args: argparse.Namespace, out: Path) -> dict:
    import torch

    from trtalign.data.datasets import load_dataset
    from trtalign.data.synth import SynthParams, generate_dataset
    from trtalign.data.synth.proxy_models import load_card, proxy_model_path
    from trtalign.export.calibrate import calibrate
    from trtalign.export.qdq import save_qdq
    from trtalign.export.units import Plan, analyze_graph, int8_mac_fraction
    from trtalign.eval.bootstrap import MatchTable, bootstrap_tables
    from trtalign.eval.evaluate import score_detections
    from trtalign.tune.qat import QatSettings, qdq_detections, run_qat
    from trtalign.tune.tuning import TuningSession

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    model = Path(args.model) if args.model else proxy_model_path(task)
    card = load_card(task) if not args.model else {}
    params = SynthParams(**card["dataset"]["params"]) if card else SynthParams(task=task)
    work = out / task
    train_dir, held_dir = work / "data_train", work / "data_heldout"
    if not (train_dir / "data.yaml").is_file():
        generate_dataset(train_dir, params, train=args.train, val=args.val, seed=101)
    if not (held_dir / "data.yaml").is_file():
        generate_dataset(held_dir, params, train=0, val=args.heldout, seed=202)
    held = load_dataset(held_dir, split="val", task=task)
    tune = load_dataset(train_dir, split="val", task=task)

    settings = QatSettings(epochs=args.epochs, batch=args.batch, lr=args.lr, scale_lr=args.scale_lr,
                           learn_scales=not args.fixed_scales, calibration_images=args.calib,
                           calibration_method=args.calib_method, loss=args.loss, val_images=args.val_images,
                           lr_final=args.lr_final, label_weight=args.label_weight,
                           feature_weight=args.feature_weight, mosaic=args.mosaic, seed=args.seed,
                           augment=args.augment)
    t0 = time.perf_counter()
    qat = run_qat(model, train_dir, work / "qat", settings)
    qat_wall = time.perf_counter() - t0
    used = qat.settings  # loss / lr / epochs resolved for the task (trtalign.tune.qat.resolve_recipe)
    fp32 = sorted((work / "qat" / "work").glob("*.fp32.onnx"))[0]
    ranges = calibrate(fp32, train_dir / "images" / "train", method=settings.calibration_method,
                       num=settings.calibration_images, cache_dir=work / "qat" / "work" / "calibration_cache")
    analysis = analyze_graph(str(fp32))
    all_int8 = Plan(units={u.name: "int8" for u in analysis.units})

    rows = {}
    ref_table = None

    def score(key: str, onnx_path: Path) -> None:
        """mAP of ``onnx_path`` on the held-out split into rows[key_map]; its drop from FP32 with the interval."""
        nonlocal ref_table
        dets = qdq_detections(onnx_path, held)
        rows[f"{key}_map"] = float(score_detections(held, dets).map)
        table = MatchTable(held, dets)
        if ref_table is None:
            ref_table = table
            return
        ci = bootstrap_tables(table, ref_table, args.resamples)
        rows[f"{key}_delta"] = {"points": 100 * ci.delta, "ci95": [100 * ci.low, 100 * ci.high],
                                "images": ci.images, "resamples": ci.resamples}

    t0 = time.perf_counter()
    score("fp32", fp32)
    rows["fp32_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ptq = work / "ptq_int8.qdq.onnx"
    save_qdq(str(fp32), ranges, ptq, plan=all_int8)
    score("ptq", ptq)
    rows["ptq_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if args.no_fallback:
        rows.update(ptq_fallback_map=None, ptq_fallback_units=[], ptq_fallback_int8_mac_fraction=None)
    else:
        session = TuningSession(fp32, tune, held, ranges, work / "fallback")
        sens = session.sensitivity(subset=16)
        fb = session.fallback(args.budget / 100.0, sensitivity=sens, target="fp16", max_evals=args.max_evals)
        fb_onnx = work / "ptq_fallback.qdq.onnx"
        save_qdq(str(fp32), ranges, fb_onnx, plan=session.plan_for(fb))
        score("ptq_fallback", fb_onnx)  # the plan's float units in FP32 here, like the PTQ and QAT rows' float ops
        rows["ptq_fallback_search_map"] = fb.final_map_val  # the search's own figure (fallen-back units in FP16)
        rows["ptq_fallback_units"] = list(fb.fallback_units)
        rows["ptq_fallback_int8_mac_fraction"] = fb.int8_mac_fraction
    rows["ptq_fallback_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    score("qat", Path(qat.files["onnx"]))
    entry = {"model": str(model), "fp32_map": rows["fp32_map"], "ptq_map": rows["ptq_map"],
             "ptq_fallback_map": rows["ptq_fallback_map"], "qat_map": rows["qat_map"],
             "qat_int8_mac_fraction": qat.int8_mac_fraction, "onnx": str(qat.files["onnx"]), "epochs": used["epochs"],
             "wall_s": qat.wall_s, "loss": used["loss"], "train_images": qat.notes["train_images"], "lr": used["lr"],
             "scale_lr": args.scale_lr, "lr_final": used["lr_final"], "label_weight": used["label_weight"],
             "feature_weight": used["feature_weight"], "mosaic": args.mosaic, "seed": args.seed,
             "augment": used["augment"],
             "heldout_images": len(held.images)}
    details = {"model": str(model), "task": task, **rows, "ptq_int8_mac_fraction": int8_mac_fraction(
        analysis.units, all_int8), "qat_run_wall_s": qat_wall, "qat_val_curve": [e.to_dict() for e in qat.epochs],
        "train_images": qat.notes["train_images"], "val_images": qat.val_images, "heldout_images": len(held.images),
        "qat_settings": qat.settings, "total_s": time.perf_counter() - t_start}
    return entry, details


def _delta(details: dict, key: str) -> str:
    d = details.get(f"{key}_delta")
    return "" if not d else f"{d['points']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]"


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, details = [], []
    for task in args.tasks:
        r, d = run_task(task, args, out)
        results.append(r)
        details.append(d)
        fb = ("skipped" if r["ptq_fallback_map"] is None else f"{r['ptq_fallback_map']:.4f} "
              f"{_delta(d, 'ptq_fallback')} ({d['ptq_fallback_int8_mac_fraction']:.3f} MACs INT8, "
              f"{len(d['ptq_fallback_units'])} units)")
        print(f"{task} ({d['heldout_images']} held-out images; drops from FP32 in mAP50-95 points, paired 95% "
              f"intervals):\n  FP32 {r['fp32_map']:.4f}  PTQ int8 {r['ptq_map']:.4f} {_delta(d, 'ptq')}  "
              f"PTQ+fallback {fb}\n  QAT {r['qat_map']:.4f} {_delta(d, 'qat')} ({r['qat_int8_mac_fraction']:.3f} "
              f"MACs INT8, {r['epochs']} epochs on {d['train_images']} images, {r['wall_s']:.0f} s)", flush=True)
    if args.json:
        from trtalign.core.io import atomic_write_json

        # "models": exactly the keys of issue 16; "details": everything else measured, same order
        atomic_write_json(args.json, {"models": results, "details": details})
    return 0


if __name__ == "__main__":
    sys.exit(main())
