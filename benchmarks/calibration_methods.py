"""INT8 calibration methods and Q/DQ placements compared in one table, on the bundled proxy model (ONNX Runtime, CPU).

    python benchmarks/calibration_methods.py [--task detect] [--val 200] [--calib 128] [--json out.json]
    python benchmarks/calibration_methods.py --model runs/x.pt --imgsz 320     # any ultralytics .pt instead

Steps: regenerate a val split and a calibration (train) split from the proxy model card's dataset parameters (seed
of the card + 1, so no image was seen in training); export the FP32 end-to-end ONNX and score it
(``trtalign.eval.evaluate``); collect activation histograms once over the calibration split
(``trtalign.export.calibrate``, cached), then for every method (minmax, percentile 99.99, entropy, mse, best) write
three Q/DQ ONNX files and score each with the same evaluation:

- ``trt all-int8``: our TensorRT placement, every unit INT8 (what ``trtalign eval`` runs for int8; no fallback);
- ``trt default``: our placement with the default plan (head's last convs FP16);
- ``naive``: Q/DQ on every conv and Concat input, head and decode included (boxes and scores share one scale).

Prints one table (mAP50-95, delta vs FP32 with its paired bootstrap 95% interval over the val images, mAP50,
share of conv MACs in INT8, and the class-score SQNR of the all-INT8 Q/DQ model vs FP32 on 8 calibration images with
the verdict of ``export.calibrate.score_guard``) and writes ``--json`` (every ``delta_map`` with ``delta_map_ci95``).
``--placements`` restricts the placements (e.g. ``"trt default"``).

Measured 2026-11-22 on the bundled proxy_detect.pt (CPU-trained, FP32 mAP50-95 0.184 on val[0:100]), 2 shared CPU
cores, ``python benchmarks/calibration_methods.py --task detect --val 100 --calib 128 --methods minmax,entropy``
(509 s): minmax + our placement 0.1860 (all units INT8) / 0.1849 (default plan, 99.0% of conv MACs INT8);
entropy 0.1643 / 0.1658; naive full-graph Q/DQ 0.0000 with either method.

Measured 2026-11-29 on the retrained proxy_detect.pt, heavily shared CPU, ``nice -n 10 python
benchmarks/calibration_methods.py --task detect --val 100 --calib 64 --methods minmax,entropy,best --placements
"trt default"`` (714 s), default plan (99.0% of conv MACs INT8), FP32 0.6998: minmax 0.6961 (-0.37 pts, 95% interval
[-0.76, +0.11]; score SQNR 21.3 dB), entropy 0.6838 (-1.61 pts, [-2.20, -0.78]; 11.9 dB), best 0.6960 (-0.39 pts,
[-0.81, +0.04]; 22.4 dB). The guard (10 dB) passed all three; entropy is the only one whose drop is certain.

Real model, ``nice -n 10 python benchmarks/calibration_methods.py --model ../shared/real/yolov5n.pt --data
../shared/real/coco --imgsz 640 --calib 64 --methods minmax,entropy,best --placements "trt default"`` (780 s; 64 COCO
val2017 images, calibration on train2017; default plan, 91.8% of conv MACs INT8): FP32 0.3326; minmax 0.3397 (+0.72
pts, [-1.75, +1.84]; score SQNR 12.9 dB, ok); entropy 0.3095 (-2.30 pts, [-4.91, -0.29]; 2.5 dB: the guard reports the
collapse); best 0.3405 (+0.79 pts, [-0.90, +1.76]; 16.7 dB, ok). 64 images cannot tell minmax or best from FP32.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("minmax", "percentile", "entropy", "mse", "best")
PLACEMENTS = ("trt all-int8", "trt default", "naive")


def _dataset(task: str, workdir: Path, val: int, calib: int, imgsz: int | None):
    from trtalign.data.synth import SynthParams, generate_dataset

    try:
        from trtalign.data.synth.proxy_models import load_card

        card = load_card(task)
        params, seed = SynthParams.from_dict(card["dataset"]["params"]), int(card["dataset"]["seed"]) + 1
    except Exception as exc:  # noqa: BLE001 - no card: default generator parameters
        print(f"note: no proxy model card ({exc}); generating with default parameters", file=sys.stderr)
        params, seed = SynthParams(task=task, **({"imgsz": imgsz} if imgsz else {})), 1
    return generate_dataset(workdir / "data", params, train=calib, val=val, seed=seed, show_progress=False)


def _score(model: Path, data: Path, workdir: Path, max_images: int | None) -> dict:
    from trtalign.eval.evaluate import evaluate

    res = evaluate(model, data, precisions=["fp32"], backend="ort", workdir=workdir, max_images=max_images)
    if not res.results:
        raise SystemExit(f"evaluation of {model} failed: {res.skipped}")
    m = res.results[0].metrics
    return {"map": float(m.map), "map50": float(m.to_dict()["stats"]["map50"]), "_dets": res.results[0].detections}


def _verdict(guard: dict | None) -> str:
    if guard is None:
        return "-"
    return "ok" if guard["ok"] else "COLLAPSE: " + (", ".join(c["tensor"] for c in guard["culprits"]) or "?")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("detect", "obb"), default="detect")
    ap.add_argument("--model", default=None, help="a .pt instead of the bundled proxy model")
    ap.add_argument("--imgsz", type=int, default=None, help="input size (default: the card's)")
    ap.add_argument("--val", type=int, default=200, help="val images to score (default 200)")
    ap.add_argument("--calib", type=int, default=128, help="calibration images (default 128)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--placements", default=",".join(PLACEMENTS))
    ap.add_argument("--data", default=None, help="an ultralytics data.yaml (val split scored, train images "
                                                 "calibrate) instead of generated data, e.g. ../shared/real/coco")

    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None, help="write the table as JSON")
    args = ap.parse_args(argv)

    from trtalign.core.io import atomic_write_json
    from trtalign.export.calibrate import collect_statistics
    from trtalign.export.qdq import save_qdq
    from trtalign.export.units import Plan, analyze_graph, default_plan, int8_mac_fraction

    tmp = tempfile.TemporaryDirectory(prefix="trtalign_calib_bench_") if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.model:
        model = Path(args.model)
    else:
        from trtalign.data.synth.proxy_models import proxy_model_path

        model = proxy_model_path(args.task)
    if args.data:
        import yaml

        data = Path(args.data)
        data = data / "data.yaml" if data.is_dir() else data
        spec = yaml.safe_load(data.read_text())
        base = data.parent / spec.get("path", ".")
        calib_root = base / spec["train"]
    else:
        ds = _dataset(args.task, work, args.val, args.calib, args.imgsz)
        data = ds.data_yaml
        calib_root = Path(ds.out) / "images" / "train"

    from trtalign.eval.evaluate import evaluate

    fp32_eval = evaluate(model, data, precisions=["fp32"], backend="ort", workdir=work / "fp32", imgsz=args.imgsz)
    onnx_fp32 = Path(fp32_eval.results[0].model)
    fp32 = {"map": float(fp32_eval.results[0].metrics.map),
            "map50": float(fp32_eval.results[0].metrics.to_dict()["stats"]["map50"])}
    fp32_dets = fp32_eval.results[0].detections
    from trtalign.core.preprocess import letterbox, list_images, read_image
    from trtalign.data.datasets import load_dataset
    from trtalign.eval.bootstrap import paired_bootstrap, round_interval
    from trtalign.export.calibrate import score_guard
    from trtalign.export.metadata import read_metadata

    dataset = load_dataset(data, split="val")
    imgsz = tuple(read_metadata(str(onnx_fp32))["imgsz"])
    guard_inputs = [letterbox(read_image(p), imgsz)[0] for p in list_images(calib_root)[:8]]
    analysis = analyze_graph(onnx_fp32)
    plans = {"trt all-int8": Plan(units={u.name: "int8" for u in analysis.units}),
             "trt default": default_plan(analysis.units)}
    calib_dir = calib_root
    stats = collect_statistics(onnx_fp32, calib_dir, num=args.calib, cache_dir=work / "calib_cache")
    rows = [{"method": "-", "placement": "fp32", "int8_macs": 0.0, **fp32, "delta_map": 0.0,
             "delta_map_ci95": [0.0, 0.0], "score_sqnr_db": None, "guard": None}]
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        ranges = stats.ranges(method)
        guard = score_guard(onnx_fp32, ranges, guard_inputs)
        for placement in [p.strip() for p in args.placements.split(",") if p.strip()]:
            out = work / f"qdq_{method}_{placement.replace(' ', '_')}.onnx"
            if placement == "naive":
                save_qdq(onnx_fp32, ranges, out, mode="naive")
                frac = 1.0
            else:
                save_qdq(onnx_fp32, ranges, out, plan=plans[placement])
                frac = int8_mac_fraction(analysis.units, plans[placement])
            score = _score(out, data, work / "eval", None)
            ci = paired_bootstrap(dataset, score.pop("_dets"), fp32_dets)
            rows.append({"method": method, "placement": placement, "int8_macs": frac, **score,
                         "delta_map": score["map"] - fp32["map"], "delta_map_ci95": round_interval(ci.ci95),
                         "score_sqnr_db": guard.score_sqnr_db, "guard": guard.to_dict()})
            print(f"{method:10s} {placement:13s} mAP50-95 {score['map']:.4f} (FP32 {fp32['map']:.4f})",
                  file=sys.stderr, flush=True)
    lines = [f"model {model.name}, {len(dataset)} val images, {args.calib} calibration images, ONNX Runtime CPU "
             f"(Q/DQ fake-quant), {time.perf_counter() - start:.0f} s",
             "| method | placement | INT8 conv MACs | mAP50-95 | delta vs FP32 | delta 95% interval | mAP50 | "
             "score SQNR (all INT8) | guard |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = r["delta_map_ci95"]
        g = r["guard"]
        lines.append(f"| {r['method']} | {r['placement']} | {100 * r['int8_macs']:.1f}% | {r['map']:.4f} | "
                     f"{100 * r['delta_map']:+.2f} pts | [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}] pts | "
                     f"{r['map50']:.4f} | "
                     f"{'-' if r['score_sqnr_db'] is None else format(r['score_sqnr_db'], '.1f') + ' dB'} | "
                     f"{_verdict(g)} |")
    print("\n".join(lines))
    if args.json:
        atomic_write_json(args.json, {"model": str(model), "task": args.task, "val": args.val,
                                      "calib": args.calib, "rows": rows, "platform": platform.platform(),
                                      "command": " ".join(sys.argv)})
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
