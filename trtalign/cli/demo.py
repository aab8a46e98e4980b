"""``trtalign demo``: the whole job on the bundled proxy model, on a fresh CPU machine, in a few minutes.

1. draws the demo dataset (the bundled model card's generator parameters, a fresh seed: never the training images);
2. exports the bundled detector to ONNX with an in-graph EfficientNMS_TRT node;
3. evaluates torch vs ONNX Runtime FP32 vs the FP16 and INT8 emulations (and TensorRT engines when TensorRT is
   importable), plus the naive full-graph INT8 placement to show why placement matters;
4. draws a separate fallback pool, sizes its tuning and validation splits from the measured noise, and searches the
   fewest units to fall back within the budget (the ``descend`` search over regions of the graph; chosen on the
   tuning split, confirmed on the validation split);
5. writes ``report.html`` (one self-contained file) and ``report.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from trtalign.cli.args import HIDDEN, check_outputs, with_example
from trtalign.cli.output import add_json_argument, emit

NAME = "demo"
HELP = "run the whole job on the bundled proxy model: data, export, mAP per precision, INT8 fallback, HTML report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--task", choices=["detect", "obb"], default="detect",
                        help="which bundled model: detect (axis-aligned) or obb (rotated); default detect")
    parser.add_argument("--val-images", dest="images", type=int, default=None, metavar="N",
                        help="validation images to draw (default 200; --quick 32)")
    parser.add_argument("--images", dest="images", type=int, default=None, help=HIDDEN)
    parser.add_argument("--calib-num", dest="calib_images", type=int, default=None, metavar="N",
                        help="calibration images to draw and use (default 64; --quick 16)")
    parser.add_argument("--calib-images", dest="calib_images", type=int, default=None, help=HIDDEN)
    parser.add_argument("--fallback-images", type=int, default=None, metavar="N",
                        help="images drawn for the fallback's own tuning and validation splits (hash-split in two; "
                             "the splits are then sized from the measured noise of the INT8 drop); default 800, "
                             "--quick 0: the fallback splits the validation images in two")
    parser.add_argument("--budget", type=float, default=0.5,
                        help="fallback budget: allowed mAP50-95 drop vs FP32 in mAP POINTS (default 0.5)")
    parser.add_argument("--seed", type=int, default=20261122, help="seed of the demo images (not the training seed)")
    parser.add_argument("--quick", action="store_true", help="a smaller run (for CI): fewer images, fewer evaluations")
    parser.add_argument("--backend", choices=["auto", "ort", "trt"], default="auto",
                        help="auto: TensorRT engines too when TensorRT is importable, else ONNX Runtime emulation")
    parser.add_argument("--no-fallback", action="store_true", help="skip the sensitivity / fallback stage")
    add_json_argument(parser)
    with_example(parser, "trtalign demo --quick --out demo_out   # re-running into the same folder replaces the "
                         "earlier run")


def _step(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from trtalign.cli.fallback import budget_from_points
    from trtalign.core.config import config_from_dict
    from trtalign.core.errors import InputError
    from trtalign.core.io import atomic_write_json
    from trtalign.eval.evaluate import EVAL_NMS, CalibrationSettings, evaluate
    from trtalign.export.loaders import OnnxFromModel, RangesFromCalibration
    from trtalign.tune.fallback_report import add_fallback_sections
    from trtalign.eval.report import eval_report
    from trtalign.data.synth.dataset import generate_dataset
    from trtalign.data.synth.params import SynthParams
    from trtalign.data.synth.proxy_models import load_card, proxy_model_path
    from trtalign.tune.tuning import session_from_config, sizing_summary, write_fallback_outputs

    t0 = time.perf_counter()
    n_val = args.images if args.images is not None else (32 if args.quick else 200)
    n_calib = args.calib_images if args.calib_images is not None else (16 if args.quick else 64)
    if n_val < 8:
        raise InputError(f"--val-images must be >= 8 (half of them tune the fallback, half confirm it), got {n_val}")
    if n_calib < 8:
        raise InputError(f"--calib-num must be >= 8, got {n_calib}")
    n_fallback = args.fallback_images if args.fallback_images is not None else (0 if args.quick else 800)
    if n_fallback and n_fallback < 32:
        raise InputError(f"--fallback-images must be 0 (split the validation images) or >= 32, got {n_fallback}")
    budget = budget_from_points(args.budget)
    check_outputs(args, folders=("out",))
    out = Path(args.out)
    _clear_earlier_run(out)
    out.mkdir(parents=True, exist_ok=True)

    weights = proxy_model_path(args.task)
    card = load_card(args.task)
    params = SynthParams.from_dict(card["dataset"]["params"])
    imgsz = int(params.imgsz)
    models_dir = out / "models"
    models_dir.mkdir(exist_ok=True)
    model = models_dir / weights.name
    if not model.is_file() or model.read_bytes() != weights.read_bytes():
        shutil.copyfile(weights, model)
    _step(f"bundled {args.task} model {weights.name} (card: mAP50-95 {card.get('check', {}).get('map50_95', '?')} "
          f"on its check split); drawing {n_val} val + {n_calib} calibration images at {imgsz} px", t0)

    data = out / "data"
    generate_dataset(data, params, train=n_calib, val=n_val, seed=args.seed)
    fallback_data = data
    if n_fallback and not args.no_fallback:
        fallback_data = out / "data_fallback"
        generate_dataset(fallback_data, params, train=0, val=n_fallback, seed=args.seed + 1, workers=2)
    _step(f"dataset in {data} (COCO json, YOLO txt, data.yaml)"
          f"{f' and {n_fallback} fallback images in {fallback_data}' if fallback_data != data else ''}; exporting ONNX",
          t0)

    # the recipe, each step once: one export, one calibration (shared by the precision runs, the naive placement
    # and the fallback session)
    workdir = out / "work"
    onnx = OnnxFromModel(model, out=out / f"{model.stem}.onnx", imgsz=imgsz, nms=EVAL_NMS)
    onnx_path = onnx()
    _step(f"exported {onnx_path}; evaluating torch / fp32 / fp16 / int8", t0)
    calib = CalibrationSettings(images=data / "images" / "train", num=n_calib)
    ranges = RangesFromCalibration(onnx, calib.images, calib.method, n_calib, cache_dir=workdir / "calibration_cache")
    precisions = ["torch", "fp32", "fp16", "int8"]
    result = evaluate(model, data, precisions=precisions, backend=args.backend, imgsz=imgsz, workdir=workdir,
                      calibration=calib, save_detections_dir=out / "detections", onnx=onnx, ranges=ranges)
    _step("precision results:\n" + result.summary(), t0)

    naive = evaluate(onnx_path, data, precisions=["int8"], backend="ort", imgsz=imgsz, workdir=workdir / "naive",
                     calibration=CalibrationSettings(images=calib.images, num=n_calib, method=calib.method,
                                                     qdq_mode="naive"), ranges=ranges)
    naive_map = naive.results[0].map if naive.results else None
    _step(f"naive full-graph INT8 (Q/DQ on every conv input, head included): mAP50-95 "
          f"{naive_map if naive_map is None else round(naive_map, 4)}", t0)

    report = eval_report(result, title=f"trtalign demo — bundled {args.task} proxy model")
    if naive_map is not None:
        fp32 = next((r.map for r in result.results if r.precision == "fp32"), None)
        ours = next((r.map for r in result.results if r.precision == "int8"), None)
        rows = [["FP32 (ONNX Runtime)", fp32], ["INT8, naive placement (every conv input, head included)", naive_map],
                ["INT8, trtalign placement (TensorRT rules, decode kept float)", ours]]
        report.add_table("Why Q/DQ placement matters", ["model", "mAP50-95"],
                         [[r[0], "-" if r[1] is None else f"{r[1]:.4f}"] for r in rows],
                         caption="naive: one shared scale for pixel boxes and [0,1] scores at the head's final Concat "
                                 "collapses the scores")

    summary = {"task": args.task, "model": str(model), "onnx": str(onnx_path), "data": str(data),
               "images": {"val": n_val, "calibration": n_calib, "fallback": n_fallback}, "eval": result.to_dict(),
               "naive_int8_map": naive_map, "fallback": None, "skipped": {}}
    if args.no_fallback:
        summary["skipped"]["fallback"] = "--no-fallback"
    else:
        cfg = config_from_dict({
            "model": str(onnx_path), "imgsz": imgsz,
            "data": {"val": str(fallback_data)},
            "calibration": {"images": str(calib.images), "num": n_calib, "method": calib.method},
            "fallback": {"budget": args.budget, "target": "fp16", "metric": "sqnr", "subset": min(16, n_val // 2),
                         "max_evals": 10 if args.quick else 14, "pilot": 100 if fallback_data != data else 0},
            "outputs": {"dir": str(out)},
        })
        session = session_from_config(cfg, workdir / "tuning", onnx=onnx_path, ranges=ranges)
        if cfg.fallback.pilot and budget > 0:
            _step("fallback " + sizing_summary(session.size_splits(budget, "fp16", pilot=cfg.fallback.pilot,
                                                                decision=cfg.fallback.decision)), t0)
        _step(f"sensitivity of {len(session.unit_names)} units ({len(session.plan(()).int8_units())} INT8 in the INT8 "
              f"plan; local SQNR, one FP32 pass) on the tuning split", t0)
        sens = session.sensitivity("sqnr", "disable-one", cfg.fallback.subset, "fp16", local=True)
        _step(f"fallback search, budget {args.budget} mAP points", t0)
        fb = session.fallback(budget, sensitivity=sens, target="fp16", max_evals=cfg.fallback.max_evals,
                              journal=out / "fallback" / "journal.json", search=cfg.fallback.search,
                              decision=cfg.fallback.decision)
        paths = write_fallback_outputs(session, fb, out / "fallback", sens)
        add_fallback_sections(report, fb, sens, splits=session.splits.to_dict(),
                              latency_ms=session.plan_latency(fb))
        summary["fallback"] = {**fb.to_dict(), "files": {k: str(v) for k, v in paths.items()}}
        _step(f"fallback: {len(fb.fallback_units)} of {len(session.unit_names)} units in fp16, INT8 MAC fraction "
              f"{fb.int8_mac_fraction if fb.int8_mac_fraction is None else round(fb.int8_mac_fraction, 3)}, "
              f"val mAP50-95 fp32 {fb.fp32_map_val:.4f} / int8 {fb.int8_map_val:.4f} / final {fb.final_map_val:.4f} "
              f"({fb.status})" + ("" if not fb.final_delta_val else f", val drop {-fb.final_delta_val[0]:.4f} (95% "
                                  f"interval {-fb.final_delta_val[2]:.4f} .. {-fb.final_delta_val[1]:.4f})"), t0)
        if fb.val_warning():
            _step(fb.val_warning(), t0)

    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    report.add_section("How this was made", (
        f"<p><code>trtalign demo --out {out}{' --task obb' if args.task == 'obb' else ''}"
        f"{' --quick' if args.quick else ''}</code>: {n_val} generated validation "
        f"images (seed {args.seed}), {n_calib} calibration images, in {summary['wall_seconds']} s. Re-score any "
        f"precision independently from <code>detections/*.json</code> with "
        f"{'a rotated-box mAP tool (DOTA devkit, mmrotate)' if args.task == 'obb' else 'pycocotools'}.</p>"))
    report.write(out / "report.html")
    atomic_write_json(out / "report.json", summary)
    text = f"wrote {out / 'report.html'} and {out / 'report.json'} in {summary['wall_seconds']} s"
    emit(summary, args, text)
    return 0


#: what a demo run writes into --out (all of it is replaced by the next run into the same folder)
DEMO_OUTPUTS = ("data", "data_fallback", "models", "work", "detections", "fallback", "report.html", "report.json")


def _clear_earlier_run(out: Path) -> None:
    """Remove an earlier demo run's outputs from ``out`` so that none of its files survive into this run; a folder
    with other content and no earlier run is refused (nothing is deleted that the demo did not write)."""
    from trtalign.core.errors import InputError

    if not out.is_dir() or not any(out.iterdir()):
        return
    ours = [p for p in out.iterdir() if p.name in DEMO_OUTPUTS or (p.suffix == ".onnx" and p.is_file())]
    if not (out / "report.json").is_file() and not (out / "work").is_dir():
        raise InputError(f"--out {out} is not empty and holds no earlier demo run; give a new or empty folder")
    for p in ours:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
