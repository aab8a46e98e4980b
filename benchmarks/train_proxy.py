"""Train the bundled proxy models: yolov8n (detect) and yolov8n-obb (rotated) on generated data, offline.

    python benchmarks/train_proxy.py --task detect --epochs 60 --train 2000 --val 300            # CPU (slow)
    python benchmarks/train_proxy.py --task both --device cuda --batch 64 --workers 12 --out runs/proxy

Per task: draws the dataset with ``trtalign.data.synth`` (seeded), trains from the architecture yaml (random init, or
``--init`` weights: a warm start whose history the card keeps)
with the ultralytics trainer (fixed seed, deterministic, AMP off, no plots), validates on the whole val split, scores
the check split on the CPU (``trtalign.data.synth.proxy_models.score_on_check_split``) and writes
``proxy_{task}.pt`` (EMA weights, fp16, no optimizer: ultralytics' strip_optimizer), ``proxy_{task}.json`` (the
model card) and ``proxy_{task}.md`` into ``--out``. ``--check-only`` re-scores existing weights and updates the card.
Copy the three files into ``trtalign/assets/models/`` to bundle them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trtalign.core.io import atomic_write_json, atomic_write_text, sha256_file  # noqa: E402
from trtalign.data.synth import SynthParams, generate_dataset  # noqa: E402
from trtalign.data.synth.proxy_models import score_on_check_split, score_weights  # noqa: E402

ARCH = {"detect": "yolov8n.yaml", "obb": "yolov8n-obb.yaml"}


def offline_environment(config_dir: Path) -> None:
    """ultralytics must not reach the network: offline flags and a local font (matplotlib's DejaVuSans)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    font_dir = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            if src.is_file() and not (font_dir / name).exists():
                shutil.copy(src, font_dir / name)
    except ImportError:
        pass


def device_text(device: str) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} logical cores)"


def train_one(task: str, args: argparse.Namespace, out: Path) -> dict:
    from ultralytics import YOLO, __version__ as ul_version
    import torch

    params = SynthParams(task=task, imgsz=args.imgsz)
    data_dir = out / f"data_{task}"
    t0 = time.perf_counter()
    data = generate_dataset(data_dir, params, train=args.train, val=args.val, seed=args.seed,
                            workers=args.synth_workers)
    synth_s = time.perf_counter() - t0
    print(f"[{task}] dataset: {data.to_dict()['counts']} in {synth_s:.1f} s", flush=True)
    init = None
    if args.init:
        # YOLO(weights), not YOLO(yaml).load(weights): the yaml has 80 classes, so load() would drop the class head
        init = _init_record(Path(args.init.format(task=task)))
        model = YOLO(init.pop("path"), task=task)
    else:
        model = YOLO(ARCH[task])
    t0 = time.perf_counter()
    train_kw = dict(data=str(data.data_yaml.resolve()), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                    workers=args.workers, device=args.device, seed=args.seed, deterministic=True, amp=False,
                    plots=False, project=str((out / "runs").resolve()), name=task, exist_ok=True, verbose=False,
                    cache=args.cache, patience=0, val=not args.final_val_only)
    if args.time_hours:
        train_kw["time"] = args.time_hours
    train_kw.update(args.hyp)
    model.train(**train_kw)
    wall = time.perf_counter() - t0
    run_dir = out / "runs" / task
    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        best = run_dir / "weights" / "last.pt"
    results_csv = run_dir / "results.csv"
    epochs_done = max(0, len(results_csv.read_text().strip().splitlines()) - 1) if results_csv.is_file() else None
    weights = out / f"proxy_{task}.pt"
    shutil.copy(best, weights)
    if results_csv.is_file():
        shutil.copy(results_csv, out / f"proxy_{task}_results.csv")
    val = score_weights(weights, data.data_yaml, args.imgsz, out / "runs" / f"{task}_val", device=args.device,
                        batch=args.batch, task=task)
    card = {
        "name": f"proxy_{task}",
        "file": weights.name,
        "task": task,
        "architecture": ARCH[task],
        "names": list(params.names),
        "command": "python benchmarks/train_proxy.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "seed": args.seed,
        "init": init,
        "dataset": {"generator": "trtalign.data.synth", "seed": args.seed, "train": args.train, "val": args.val,
                    "instances": data.instances, "params": params.to_dict()},
        "training": {"trainer": f"ultralytics {ul_version}", "torch": torch.__version__,
                     "device": device_text(args.device), "epochs_requested": args.epochs,
                     "epochs_done": epochs_done, "time_limit_hours": args.time_hours, "imgsz": args.imgsz,
                     "batch": args.batch, "workers": args.workers, "cache": args.cache,
                     "options": "ultralytics defaults except seed, deterministic=True, amp=False, plots=False, "
                                f"patience=0, val={not args.final_val_only}"
                                + "".join(f", {k}={v}" for k, v in args.hyp.items()), "wall_time_s": round(wall, 1), "dataset_time_s": round(synth_s, 1)},
        "metrics": {"split": f"val[0:{args.val}]", "device": device_text(args.device), "imgsz": args.imgsz,
                    "map50_95": round(val["map50_95"], 4), "map50": round(val["map50"], 4),
                    "scorer": "trtalign.data.synth.proxy_models.score_weights (ultralytics YOLO(path).val, "
                              "conf 0.001, iou 0.7, no NMS time limit)"},
    }
    write_card(card, out)
    return card


def check_one(task: str, args: argparse.Namespace, out: Path) -> dict:
    card_path = out / f"proxy_{task}.json"
    card = json.loads(card_path.read_text())
    params = SynthParams.from_dict(card["dataset"]["params"])
    with tempfile.TemporaryDirectory(prefix="trtalign_check_") as tmp:
        t0 = time.perf_counter()
        scores = score_on_check_split(out / card["file"], params, int(card["dataset"]["seed"]), args.check_images,
                                      tmp, device="cpu")
        took = time.perf_counter() - t0
    card["check"] = {"split": f"val[0:{args.check_images}] regenerated from dataset.seed and dataset.params",
                     "images": args.check_images, "device": device_text("cpu"), "imgsz": params.imgsz,
                     "scorer": "trtalign.data.synth.proxy_models.score_on_check_split "
                               "(ultralytics YOLO(path).val on cpu, batch 8, conf 0.001, iou 0.7, no NMS time limit)",
                     "map50_95": round(scores["map50_95"], 4), "map50": round(scores["map50"], 4),
                     "seconds": round(took, 1)}
    write_card(card, out)
    return card


def write_card(card: dict, out: Path) -> None:
    weights = out / card["file"]
    card["sha256"] = sha256_file(weights)
    card["size_bytes"] = weights.stat().st_size
    atomic_write_json(out / f"{card['name']}.json", card)
    t, m = card["training"], card["metrics"]
    lines = [f"# Model card: {card['name']} ({card['architecture']}, {card['task']})", "",
             f"Trained from {_init_text(card.get('init'))} on the synthetic dataset of `trtalign.data.synth` "
             f"({len(card['names'])} classes: {', '.join(card['names'])}).", "",
             f"- command: `{card['command']}`",
             f"- seed: {card['seed']}; dataset: {card['dataset']['train']} train / {card['dataset']['val']} val "
             f"images at {t['imgsz']} px (dataset parameters in the JSON card)",
             f"- trainer: {t['trainer']}, torch {t['torch']}, device {t['device']}",
             f"- epochs: {t['epochs_done']} (requested {t['epochs_requested']}, time limit {t['time_limit_hours']} h), "
             f"batch {t['batch']}, {t['options']}",
             f"- wall time: {t['wall_time_s']} s training (+{t['dataset_time_s']} s drawing the dataset)",
             f"- val mAP50-95 {m['map50_95']:.4f}, mAP50 {m['map50']:.4f} on {m['split']} ({m['device']}; {m['scorer']})"]
    if "check" in card:
        c = card["check"]
        lines.append(f"- check split: val[0:{c['images']}] on {c['device']}: mAP50-95 {c['map50_95']:.4f}, "
                     f"mAP50 {c['map50']:.4f} ({c['scorer']})")
    lines += [f"- file: {card['file']}, {card['size_bytes']} bytes, sha256 {card['sha256']}"]
    if card.get("notes"):
        lines += ["", "Notes: " + card["notes"]]
    lines.append("")
    atomic_write_text(out / f"{card['name']}.md", "\n".join(lines))


def _init_record(weights: Path) -> dict:
    """What a warm start began from: the weights' hash and, when a card sits beside them, how they were trained."""
    if not weights.is_file():
        raise SystemExit(f"--init: no weights file {weights}")
    record: dict = {"path": str(weights), "file": weights.name, "sha256": sha256_file(weights)}
    card_path = weights.with_suffix(".json")
    if card_path.is_file():
        prev = json.loads(card_path.read_text())
        if prev.get("sha256") == record["sha256"]:
            record["card"] = {k: prev.get(k) for k in ("command", "init", "training", "metrics")}
    return record


def _init_text(init: dict | None) -> str:
    if not init:
        return "random initialisation"
    text = f"the weights {init['file']} (sha256 {init['sha256'][:12]}...)"
    card = init.get("card")
    while card:
        t = card["training"]
        text += (f", themselves trained by `{card['command']}` ({t['epochs_done']} epochs, {t['wall_time_s']} s on "
                 f"{t['device']}, val mAP50-95 {card['metrics']['map50_95']:.4f})")
        card = (card.get("init") or {}).get("card")
        if card:
            text += " from"
    return text


def _parse_hyp(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep:
        raise SystemExit(f"--hyp expects KEY=VALUE, got {item!r}")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=["detect", "obb", "both"], default="both")
    ap.add_argument("--device", default="cpu", help="'cpu' (default), 'cuda' or a CUDA index such as '0'")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--time-hours", type=float, default=None,
                    help="ultralytics 'time': stop after this many hours, scheduling the LR to it (overrides epochs)")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=300)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", default="ram", choices=["ram", "disk", "none"])
    ap.add_argument("--final-val-only", action="store_true",
                    help="validate only after the last epoch (saves time on the CPU)")
    ap.add_argument("--hyp", action="append", default=[], metavar="KEY=VALUE",
                    help="extra ultralytics train argument (e.g. nbs=16 mosaic=0.0), repeatable; numbers are parsed")
    ap.add_argument("--init", default=None, metavar="WEIGHTS",
                    help="warm start from these weights instead of random init ('{task}' is replaced by the task, "
                         "e.g. trtalign/assets/models/proxy_{task}.pt); the card records their hash and history")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synth-workers", type=int, default=1)
    ap.add_argument("--check-images", type=int, default=24, help="size of the card's CPU check split")
    ap.add_argument("--skip-check", action="store_true", help="do not score the check split (run --check-only later)")
    ap.add_argument("--check-only", action="store_true", help="only (re)score the check split of existing cards")
    ap.add_argument("--out", default="runs/proxy")
    ap.add_argument("--install", action="store_true",
                    help="copy proxy_{task}.pt/.json/.md into trtalign/assets/models/ (the bundled models)")
    args = ap.parse_args(argv)
    args.hyp = dict(_parse_hyp(item) for item in args.hyp)
    if args.cache == "none":
        args.cache = False
    if args.device.isdigit() or args.device == "cuda":
        args.device = "0" if args.device == "cuda" else args.device
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    offline_environment(out / "yolo_config")
    tasks = ["detect", "obb"] if args.task == "both" else [args.task]
    for task in tasks:
        card = check_one(task, args, out) if args.check_only else train_one(task, args, out)
        if not args.check_only and not args.skip_check:
            card = check_one(task, args, out)
        print(json.dumps({k: card[k] for k in ("name", "metrics", "check") if k in card}), flush=True)
        if args.install:
            dest = ROOT / "trtalign" / "assets" / "models"
            dest.mkdir(parents=True, exist_ok=True)
            for suffix in (".pt", ".json", ".md"):
                shutil.copy(out / f"proxy_{task}{suffix}", dest / f"proxy_{task}{suffix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
