"""Ctrl-C at random moments: every command must exit 130 with one line on stderr, no traceback, no half-written file.

    python benchmarks/interrupts.py [--runs 10] [--commands eval,demo,calibrate,fallback,synth] [--seed 0]
                                    [--images 48] [--work DIR] [--json FILE]

For each command, ``--runs`` times: start ``python -m trtalign ...`` in its own session (so SIGINT is not inherited
as ignored), wait a random time drawn uniformly from (0.3 s, the command's uninterrupted duration measured first,
capped by ``--max-delay``), send SIGINT to its process group (what a terminal's Ctrl-C does) and check:
  exit code 130; stderr ends with exactly one line ``trtalign <command>: interrupted (SIGINT)`` (warnings logged
  earlier in the run may precede it); no "Traceback" or "terminate called"; in its output folder no temporary file
  (``.*.tmp``, ``.*.synth-*``) and every file that exists complete (JSON parses, ONNX loads, HTML ends with
  ``</html>``, images decode).
A run that ends on its own before the signal counts as "finished" (exit 0), not as a pass.

Sizes are reduced (``--images``) so that a whole sweep fits in minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROXY = ROOT / "trtalign" / "assets" / "models" / "proxy_detect.pt"


def _env() -> dict:
    return dict(os.environ, TRTALIGN_NO_PROGRESS="1", TRTALIGN_ORT_THREADS=os.environ.get("TRTALIGN_ORT_THREADS", "1"),
                YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false",
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trtalign", *argv], cwd=str(cwd), env=_env(), capture_output=True,
                          text=True, timeout=1800)


def prepare(work: Path, images: int) -> None:
    """A dataset (val + train split), the exported proxy ONNX and a pipeline config for calibrate / fallback."""
    for argv in (["data", "synth", "--out", "ds", "--val", str(images), "--train", str(max(images // 2, 16)),
                  "--imgsz", "320", "--seed", "5"],
                 ["export", str(PROXY), "--imgsz", "320", "--out", "model.onnx"]):
        proc = _run(argv, work)
        if proc.returncode != 0:
            raise SystemExit(f"setup failed: trtalign {' '.join(argv)}\n{proc.stderr[-2000:]}")
    (work / "pipeline.yaml").write_text(
        f"model: {work}/model.onnx\nimgsz: 320\ncalibration: {{images: {work}/ds/images/train, num: 16, "
        f"method: minmax}}\nfallback: {{budget: 0.5, target: fp16, metric: sqnr, subset: 8, max_evals: 4}}\n"
        f"data: {{val: {work}/ds}}\n")


def commands(work: Path, images: int) -> dict[str, list[str]]:
    """command -> argv; every output goes under ``out/`` (relative to the run's folder)."""
    w = str(work)
    return {
        "eval": ["eval", f"{w}/model.onnx", "--data", f"{w}/ds", "--precisions", "fp32,int8", "--calib",
                 f"{w}/ds/images/train", "--calib-num", "16", "--calib-method", "minmax", "--report", "out/report.html",
                 "--json", "out/eval.json", "--workdir", "out/work"],
        "demo": ["demo", "--quick", "--images", str(max(images // 3, 8)), "--calib-images", "8", "--out", "out/demo"],
        "calibrate": ["calibrate", f"{w}/model.onnx", "--images", f"{w}/ds/images/train", "--num", "16", "--method",
                      "entropy", "--out", "out/ranges.json", "--json", "out/calibrate.json"],
        "fallback": ["fallback", f"{w}/pipeline.yaml", "--local", "--metric", "sqnr", "--max-evals", "2",
                     "--no-prune", "--out", "out/fallback", "--json", "out/fallback.json"],
        "synth": ["data", "synth", "--out", "out/ds", "--val", str(images * 4), "--imgsz", "320"],
    }


def incomplete_files(folder: Path) -> list[str]:
    """Temporary leftovers and files that do not parse as what their name says."""
    bad = []
    if not folder.exists():
        return bad
    for path in folder.rglob("*"):
        name = path.name
        if name.endswith(".tmp") or ".synth-" in name:
            bad.append(f"{path.relative_to(folder)} (temporary)")
            continue
        if not path.is_file():
            continue
        try:
            if name.endswith(".json"):
                json.loads(path.read_text())
            elif name.endswith(".onnx"):
                import onnx

                onnx.load(str(path), load_external_data=False)
            elif name.endswith(".html"):
                if not path.read_text().rstrip().endswith("</html>"):
                    raise ValueError("no </html>")
            elif name.endswith((".jpg", ".png")):
                import cv2

                if cv2.imread(str(path)) is None:
                    raise ValueError("does not decode")
        except Exception as exc:  # noqa: BLE001 - any failure to read back is what we look for
            bad.append(f"{path.relative_to(folder)} ({type(exc).__name__}: {exc})")
    return bad


def interrupt_once(name: str, argv: list[str], folder: Path, delay: float) -> dict:
    folder.mkdir(parents=True)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "trtalign", *argv], cwd=str(folder), env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=300)
        stop_s = time.monotonic() - sent
    else:
        _, err = proc.communicate()
        return {"command": name, "delay_s": round(delay, 2), "outcome": "finished", "exit": proc.returncode}
    if proc.returncode == 0 and "interrupted" not in err:  # the signal came after the work was done
        return {"command": name, "delay_s": round(delay, 2), "outcome": "finished", "exit": 0,
                "problems": incomplete_files(folder / "out")}
    lines = err.strip().splitlines()
    expected = f"trtalign {argv[0]}: interrupted (SIGINT)"
    problems = []
    if proc.returncode != 130:
        problems.append(f"exit {proc.returncode}")
    if "Traceback" in err or "terminate called" in err:
        problems.append("traceback/abort on stderr")
    # the interrupt adds exactly one line, the last (warnings the command logged before it are not its doing)
    if not lines or lines[-1] != expected or sum("interrupt" in line.lower() for line in lines) != 1:
        problems.append(f"stderr does not end with the one line {expected!r}: {err.strip()[-300:]!r}")
    problems += incomplete_files(folder / "out")
    return {"command": name, "delay_s": round(delay, 2), "outcome": "ok" if not problems else "FAIL",
            "exit": proc.returncode, "stop_s": round(stop_s, 2), "elapsed_s": round(time.monotonic() - start, 2),
            "problems": problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="interrupts per command (default 10)")
    parser.add_argument("--commands", default="eval,demo,calibrate,fallback,synth")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=48, help="validation images of the shared dataset (default 48)")
    parser.add_argument("--max-delay", type=float, default=60.0,
                        help="latest moment of an interrupt in seconds (default 60; long commands are interrupted "
                             "in their first minute)")
    parser.add_argument("--min-delay", type=float, default=0.3,
                        help="earliest moment of an interrupt in seconds (default 0.3); raise it to aim at late phases")
    parser.add_argument("--assume-duration", type=float, default=None,
                        help="skip the uninterrupted run and take this as every command's duration in seconds")
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="trtalign_interrupts_"))
    work.mkdir(parents=True, exist_ok=True)
    table = {}
    try:
        prepare(work, args.images)
        cmds = commands(work, args.images)
        results = []
        for name in args.commands.split(","):
            # the uninterrupted duration bounds the random moments
            folder = work / name / "full"
            folder.mkdir(parents=True)
            t0 = time.monotonic()
            if args.assume_duration is None:
                proc = subprocess.run([sys.executable, "-m", "trtalign", *cmds[name]], cwd=str(folder), env=_env(),
                                      capture_output=True, text=True, timeout=1800)
            else:
                proc = subprocess.CompletedProcess([], 0, "", "")
            full_s = args.assume_duration or time.monotonic() - t0
            if proc.returncode != 0:  # nothing to learn from interrupting it: say so and go on
                print(f"{name:10s} fails without interrupt (exit {proc.returncode}): "
                      f"{proc.stderr.strip().splitlines()[-1:]}", flush=True)
                table[name] = {"full_s": round(full_s, 1), "error": proc.stderr[-2000:]}
                continue
            latest = min(full_s, args.max_delay)
            runs = [interrupt_once(name, cmds[name], work / name / f"run{i}", rng.uniform(min(args.min_delay, latest),
                                                                                      latest))
                    for i in range(args.runs)]
            results += runs
            table[name] = {"full_s": round(full_s, 1), "ok": sum(r["outcome"] == "ok" for r in runs),
                           "finished": sum(r["outcome"] == "finished" for r in runs),
                           "fail": sum(r["outcome"] == "FAIL" for r in runs),
                           "max_stop_s": max((r.get("stop_s", 0.0) for r in runs), default=0.0)}
            print(f"{name:10s} uninterrupted {full_s:6.1f} s; {args.runs} interrupts: {table[name]['ok']} ok, "
                  f"{table[name]['finished']} finished first, {table[name]['fail']} failed; slowest stop "
                  f"{table[name]['max_stop_s']:.2f} s", flush=True)
            for r in runs:
                if r["outcome"] == "FAIL":
                    print(f"  FAIL at {r['delay_s']} s: {'; '.join(r['problems'])}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"summary": table, "runs": results}, indent=2) + "\n")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any(v.get("fail") or v.get("error") for v in table.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
