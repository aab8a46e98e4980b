"""A real detector as users have it: the official COCO YOLOv5n checkpoint through trtalign, reconciled with YOLOv5's own
validator, then FP16 emulation and INT8 (each calibration method, and naive Q/DQ), in one table with wall times.

    python benchmarks/real_models.py [--real ../shared/real] [--imgsz 640] [--val 64] [--calib 128]
                                     [--methods minmax,percentile,entropy,mse] [--json out.json]

Data: ``--real`` holds ``yolov5n.pt`` and ``coco/images/{val2017,train2017}`` with YOLO labels (see its README).
Accuracy is reported on the val2017 images; calibration uses the train2017 images.

Rows:
- ``yolov5 val.py``: YOLOv5's own validator (``yolov5`` package, ``val.run``) on YOLOv5's own dataloader with
  ``rect=False`` -- exactly how val.py validates an exported (fixed-size) model: ``load_image`` (long side to 640,
  INTER_AREA when shrinking) + square letterbox; its NMS (conf 0.001, IoU 0.6, max_det 300, multi-label) and its AP
  (``ap_per_class``, 101-point interpolation, matching per IoU threshold by IoU). The torch model runs here.
- ``yolov5 val.py rect``: the same validator with its ``.pt`` default (rectangular batches of 32): a different input.
- ``ort-fp32`` etc.: trtalign's exported ONNX (decode + EfficientNMS with the validator's settings) on trtalign's
  ``--preprocess yolov5`` tensors (``trtalign.core.preprocess.letterbox(mode="yolov5")``, pixel-identical to YOLOv5's
  dataloader, see tests/export/test_preprocess_yolov5.py), scored twice: with YOLOv5's own AP code (the
  ``yolov5`` columns: same labels, same matching) and with trtalign's COCO evaluation (``coco`` columns,
  ``CocoMetrics``' default backend ``numpy``, ``trtalign.eval.coco_fast``: bit-identical to pycocotools).
- ``ort-fp32 ultralytics-pre``: what ``trtalign eval`` does by default (ultralytics letterbox, NMS IoU 0.7).

The validator's NMS has a time limit (0.5 + 0.05 * batch seconds); on a loaded CPU it silently drops the remaining
images' detections. The number of "NMS time limit exceeded" warnings is reported; a non-zero count invalidates that row.

Measured 2026-11-29 on 2 shared CPU cores, ``nice -n 10 python benchmarks/real_models.py --json real.json`` (491 s;
mAP50-95, YOLOv5 AP code / COCO): yolov5 val.py square 0.335322 / 0.3364; ort-fp32 0.335321 / 0.3364 (-1e-6: ONNX
Runtime vs torch rounding; EfficientNMS keeps the best 5000 (box, class) pairs, val.py 30000); ort-fp32 with
trtalign's default pre-processing and IoU 0.7: 0.3306 / 0.3326; val.py rect (batch 32) hit the NMS time limit on both
batches: 0.1860 (invalid); fp16sim 0.3340 / 0.3360; INT8 every unit: minmax 0.3238 / 0.3251, mse 0.3239 / 0.3257,
percentile 0.3159 / 0.3176, entropy 0.2793 / 0.2796; naive Q/DQ 0.0000. ``--fallback 0.5 --tune 32 --methods minmax
--no-rect`` (1343 s, the fallback 908 s): the 32 tuning images measure the INT8 drop only to +/-0.017, the INT8 plan
(head outputs FP16) scored above FP32 on both splits (val 0.3420 vs 0.3355, COCO, trtalign's pre-processing) and the
search stopped at its evaluation limit with 46 units in FP16 (val 0.3451): use a larger --tune.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_REAL = ROOT.parent / "shared" / "real"
METHODS = ("minmax", "percentile", "entropy", "mse")
CONF, IOU, MAX_DET = 0.001, 0.6, 300  # YOLOv5 val.py defaults


class _Counter(logging.Handler):
    def __init__(self, needle: str):
        super().__init__(logging.WARNING)
        self.needle, self.count = needle, 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.count += 1


def _yolov5():
    """YOLOv5's validator pieces, imported through the adapter's scoped import context."""
    from trtalign.export.adapters.yolov5 import _yolov5_import_context

    if not hasattr(np, "trapz"):  # YOLOv5 7.0's compute_ap calls np.trapz, renamed np.trapezoid in NumPy 2 (same)
        np.trapz = np.trapezoid  # type: ignore[attr-defined]

    with _yolov5_import_context(None):
        import yolov5.val as v5val
        from yolov5.utils.callbacks import Callbacks
        from yolov5.utils.dataloaders import create_dataloader
        from yolov5.utils.general import scale_boxes, xywh2xyxy
        from yolov5.utils.metrics import ap_per_class
    return v5val, Callbacks, create_dataloader, scale_boxes, xywh2xyxy, ap_per_class


class Yolov5AP:
    """YOLOv5 val.py's metric for detections given in original-image pixels (its own process_batch / ap_per_class,
    labels transformed exactly as val.py transforms them)."""

    def __init__(self, items: list, names: list):
        import torch

        self.names = dict(enumerate(names))
        v5val, _, _, scale_boxes, xywh2xyxy, self.ap_per_class = _yolov5()
        self.process_batch = v5val.process_batch
        self.iouv = torch.linspace(0.5, 0.95, 10)
        self.labels = {}
        for im, targets, path, shapes in items:
            h, w = im.shape[1:]
            labels = targets[:, 1:].clone()
            labels[:, 1:] *= torch.tensor((w, h, w, h))  # val.py: targets[:, 2:] *= (w, h, w, h)
            tbox = xywh2xyxy(labels[:, 1:5])
            scale_boxes(im.shape[1:], tbox, shapes[0], shapes[1])
            self.labels[Path(path).name] = torch.cat((labels[:, 0:1], tbox), 1)

    def compute(self, dets: dict) -> dict:
        """``dets``: file name -> float tensor ``[n, 6]`` (x1, y1, x2, y2, conf, class) in original pixels."""
        import torch

        stats = []
        for name, labelsn in self.labels.items():
            pred = dets.get(name, torch.zeros((0, 6)))
            correct = torch.zeros(len(pred), 10, dtype=torch.bool)
            if len(pred) == 0:
                if len(labelsn):
                    stats.append((correct, torch.zeros(0), torch.zeros(0), labelsn[:, 0]))
                continue
            if len(labelsn):
                correct = self.process_batch(pred, labelsn, self.iouv)
            stats.append((correct, pred[:, 4], pred[:, 5], labelsn[:, 0]))
        stats = [torch.cat(x, 0).numpy() for x in zip(*stats)]
        tp, fp, p, r, f1, ap, ap_class = self.ap_per_class(*stats, plot=False, names=self.names)
        return {"map": float(ap.mean(1).mean()), "map50": float(ap[:, 0].mean())}


def coco_map(dataset, dets: dict) -> dict:
    """trtalign's COCO evaluation of ``dets`` (file name -> [n, 6] array in original pixels)."""
    from trtalign.core.detections import Detections
    from trtalign.core.enums import BoxFormat
    from trtalign.eval.coco_metrics import CocoMetrics

    metric = CocoMetrics(dataset)
    for im in dataset.images:
        d = np.asarray(dets.get(Path(im.path).name, np.zeros((0, 6), np.float32)), dtype=np.float32)
        metric.update(im.id, Detections(d[:, :4], d[:, 4], d[:, 5].astype(int), BoxFormat.XYXY))
    stats = metric.compute().stats
    return {"map": float(stats["map"]), "map50": float(stats["map50"])}


def run_validator(native, images: Path, imgsz: int, rect: bool, names: list) -> tuple[dict, dict, int, float]:
    """YOLOv5's val.run on its own dataloader; returns (its metrics, its detections per file, NMS limit hits, s)."""
    import torch

    v5val, Callbacks, create_dataloader, _, _, _ = _yolov5()
    batch = 32 if rect else 1
    loader = create_dataloader(str(images), imgsz, batch, 32, False, pad=0.5, rect=rect, workers=0, prefix="")[0]
    dets: dict = {}
    callbacks = Callbacks()
    callbacks.register_action("on_val_image_end", callback=lambda pred, predn, path, names_, im: dets.__setitem__(
        Path(path).name, predn.detach().clone()))
    counter = _Counter("NMS time limit")
    logging.getLogger("yolov5").addHandler(counter)
    start = time.perf_counter()
    try:
        with torch.no_grad():
            (mp, mr, map50, map_, *_), *_ = v5val.run(
                {"nc": len(names), "names": names, "val": str(images)}, batch_size=batch, imgsz=imgsz,
                conf_thres=CONF, iou_thres=IOU, max_det=MAX_DET, model=native, dataloader=loader, plots=False,
                half=False, callbacks=callbacks, save_dir=Path(tempfile.mkdtemp()))
    finally:
        logging.getLogger("yolov5").removeHandler(counter)
    return {"map": float(map_), "map50": float(map50)}, dets, counter.count, time.perf_counter() - start


def run_onnx(model, paths: list, imgsz: int, mode: str, name: str) -> tuple[dict, float]:
    """An ONNX with NMS outputs on trtalign's pre-processing; detections per file in original pixels."""
    from trtalign.core.preprocess import letterbox, read_image
    from trtalign.runtime.ort_runner import OrtRunner
    from trtalign.runtime.postprocess import nms_outputs_to_detections

    dets: dict = {}
    start = time.perf_counter()
    with OrtRunner(model, name=name) as runner:
        for p in paths:
            x, meta = letterbox(read_image(p), imgsz, mode=mode)
            d = nms_outputs_to_detections(runner.infer({"images": x}), [meta])[0]
            dets[Path(p).name] = np.concatenate([d.boxes, d.scores[:, None], d.class_ids[:, None]], axis=1) \
                .astype(np.float32)
    return dets, time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", default=str(DEFAULT_REAL), help="folder with yolov5n.pt and coco/ (../shared/real)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--val", type=int, default=64, help="val2017 images (at most 64 are there)")
    ap.add_argument("--calib", type=int, default=128, help="train2017 calibration images")
    ap.add_argument("--methods", default=",".join(METHODS), help="calibration methods (comma separated)")
    ap.add_argument("--no-rect", action="store_true", help="skip the validator's rectangular-batch row")
    ap.add_argument("--fallback", type=float, default=None, metavar="POINTS",
                    help="also run the fallback search (minmax ranges, local SQNR ranking) with this mAP50-95 budget in "
                         "points, tuned on --tune train2017 images, reported on the val images")
    ap.add_argument("--tune", type=int, default=64, help="train2017 images of the fallback's tuning split")
    ap.add_argument("--workdir", default=None, help="keep exports and calibration caches here")
    ap.add_argument("--json", default=None, help="write the table as JSON")
    args = ap.parse_args(argv)

    import torch

    from trtalign.core.io import atomic_write_json
    from trtalign.core.preprocess import list_images
    from trtalign.data.datasets import load_dataset
    from trtalign.export.adapters import load_adapter
    from trtalign.export.calibrate import calibrate
    from trtalign.export.fp16sim import fp16sim_model
    from trtalign.export.onnx_export import export_onnx
    from trtalign.export.qdq import insert_qdq

    real = Path(args.real)
    pt, val_dir, train_dir = real / "yolov5n.pt", real / "coco" / "images" / "val2017", real / "coco" / "images" / "train2017"
    for p in (pt, val_dir, train_dir):
        if not p.exists():
            print(f"missing {p}: this benchmark needs the shared real model and images", file=sys.stderr)
            return 2
    os.environ.setdefault("YOLOV5_CONFIG_DIR", tempfile.mkdtemp())  # YOLOv5 looks for a font there
    torch.set_num_threads(1)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="real_models_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    paths = list_images(val_dir)[:args.val]
    val_subset = work / "val" / "images"
    if not val_subset.exists():  # links, so that every row sees exactly these images
        (work / "val" / "labels").mkdir(parents=True, exist_ok=True)
        val_subset.mkdir(parents=True)
        for p in paths:
            (val_subset / p.name).symlink_to(p)
            label = real / "coco" / "labels" / "val2017" / (p.stem + ".txt")
            if label.exists():
                (work / "val" / "labels" / label.name).symlink_to(label)
    dataset = load_dataset(real / "coco" / "data.yaml", split="val").subset(len(paths))
    if sorted(Path(im.path).name for im in dataset.images) != sorted(p.name for p in paths):
        print("the dataset loader and list_images picked different images", file=sys.stderr)
        return 2

    adapter = load_adapter(pt)
    names = adapter.info.names
    rows = []

    def add(name: str, v5: dict | None, coco: dict | None, seconds: float, note: str = "") -> None:
        rows.append({"row": name, "yolov5_map": v5 and v5["map"], "yolov5_map50": v5 and v5["map50"],
                     "coco_map": coco and coco["map"], "coco_map50": coco and coco["map50"], "seconds": seconds,
                     "note": note})
        print(f"  {name}: {rows[-1]}", file=sys.stderr, flush=True)

    # -- YOLOv5's own validator (torch)
    _, _, create_dataloader, _, _, _ = _yolov5()
    v5_dataset = create_dataloader(str(val_subset), args.imgsz, 1, 32, False, pad=0.5, rect=False, workers=0,
                                   prefix="")[1]
    items = [v5_dataset[i] for i in range(len(v5_dataset))]
    v5ap = Yolov5AP(items, names)
    native = adapter.native_model(fuse=True)
    metrics, dets, hits, secs = run_validator(native, val_subset, args.imgsz, False, names)
    add("yolov5 val.py (torch, square)", metrics, coco_map(dataset, {k: v.numpy() for k, v in dets.items()}), secs,
        f"NMS time limit hits: {hits}")
    validator = metrics
    recomputed = v5ap.compute(dets)  # our use of its AP code on its own detections must give its number
    if abs(recomputed["map"] - validator["map"]) > 1e-9:
        print(f"warning: YOLOv5 AP recomputed {recomputed} != val.run {validator}", file=sys.stderr)
    if not args.no_rect:
        metrics, dets, hits, secs = run_validator(adapter.native_model(fuse=True), val_subset, args.imgsz, True, names)
        add("yolov5 val.py rect (its .pt default)", metrics,
            coco_map(dataset, {k: v.numpy() for k, v in dets.items()}), secs, f"NMS time limit hits: {hits}")

    # -- trtalign exports
    fp32 = work / "yolov5n_v5nms.onnx"
    export_onnx(pt, fp32, imgsz=args.imgsz, score_threshold=CONF, iou_threshold=IOU, max_det=MAX_DET, adapter=adapter)
    default = work / "yolov5n_default.onnx"
    export_onnx(pt, default, imgsz=args.imgsz, adapter=adapter)

    def score(name: str, model, mode: str = "yolov5", note: str = "") -> dict:
        dets, secs = run_onnx(model, paths, args.imgsz, mode, name)
        tensors = {k: torch.from_numpy(v) for k, v in dets.items()}
        v5 = v5ap.compute(tensors)
        add(name, v5, coco_map(dataset, dets), secs, note)
        return v5

    fp32_v5 = score("ort-fp32", str(fp32), note="trtalign --preprocess yolov5, EfficientNMS iou 0.6")
    score("ort-fp32 ultralytics-pre", str(default), mode="ultralytics", note="trtalign eval default (iou 0.7)")
    import onnx

    proto = onnx.load(str(fp32))
    start = time.perf_counter()
    sim, _ = fp16sim_model(proto)
    score("ort-fp16sim", sim.SerializeToString(), note=f"emulation built in {time.perf_counter() - start:.1f} s")
    calib_dir = work / "calib_images"
    if not calib_dir.exists():
        calib_dir.mkdir()
        for p in list_images(train_dir)[:args.calib]:
            (calib_dir / p.name).symlink_to(p)
    for method in [m for m in args.methods.split(",") if m]:
        start = time.perf_counter()
        ranges = calibrate(fp32, calib_dir, method=method, num=args.calib, imgsz=args.imgsz,
                           cache_dir=work / "calib_cache")
        qdq, _ = insert_qdq(proto, ranges, None, mode="trt")
        cal = time.perf_counter() - start
        score(f"ort-int8sim {method}", qdq.SerializeToString(),
              note=f"every unit INT8; calibration + Q/DQ {cal:.0f} s on {args.calib} train2017 images")
        if method == "minmax":
            naive, _ = insert_qdq(proto, ranges, None, mode="naive")
            score("ort-int8sim naive (minmax)", naive.SerializeToString(), note="Q/DQ on every conv and Concat input")

    if args.fallback is not None:
        from trtalign.tune.tuning import TuningSession

        start = time.perf_counter()
        ranges = calibrate(fp32, calib_dir, method="minmax", num=args.calib, imgsz=args.imgsz,
                           cache_dir=work / "calib_cache")
        tune = load_dataset(real / "coco" / "data.yaml", split="train").subset(args.tune)
        session = TuningSession(fp32, tune, dataset, ranges, work / "tuning")
        sens = session.sensitivity(metric="sqnr", local=True, subset=min(32, args.tune))
        result = session.fallback(args.fallback / 100.0, sensitivity=sens)
        secs = time.perf_counter() - start
        coco = {"map": result.final_map_val, "map50": float("nan")}
        add(f"fallback {args.fallback:g} pt (minmax)", None, coco, secs,
            f"{len(result.fallback_units)} unit(s) FP16, status {result.status}; tune {result.fp32_map_tune:.4f} -> "
            f"int8 {result.int8_map_tune:.4f} -> {result.final_map_tune:.4f}; val fp32 {result.fp32_map_val:.4f} int8 "
            f"{result.int8_map_val:.4f} (trtalign eval pre-processing, COCO)")

    print(f"\nYOLOv5n at {args.imgsz} on {len(paths)} COCO val2017 images ({real}); {platform.node()}, "
          f"{os.cpu_count()} CPUs; total {time.perf_counter() - t0:.0f} s")
    print(f"{'row':40s} {'yolov5 mAP50-95':>15s} {'d vs val.py':>11s} {'mAP50':>7s} {'coco mAP50-95':>13s} "
          f"{'mAP50':>7s} {'s':>6s}  note")
    def f(v, width: int) -> str:
        return f"{v:{width}.4f}" if isinstance(v, float) else " " * (width - 1) + "-"

    for r in rows:
        d = "" if r["yolov5_map"] is None else f"{r['yolov5_map'] - validator['map']:+.4f}"
        print(f"{r['row']:40s} {f(r['yolov5_map'], 15)} {d:>11s} {f(r['yolov5_map50'], 7)} {f(r['coco_map'], 13)} "
              f"{f(r['coco_map50'], 7)} {r['seconds']:6.0f}  {r['note']}")
    print(f"\nort-fp32 vs YOLOv5's validator (same images, same pre-processing, same AP code): "
          f"{fp32_v5['map'] - validator['map']:+.4f} mAP50-95")
    if args.json:
        atomic_write_json(args.json, {"model": str(pt), "imgsz": args.imgsz, "val_images": len(paths),
                                      "calib_images": args.calib, "validator": validator, "rows": rows,
                                      "seconds": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
