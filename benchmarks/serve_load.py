"""Load benchmark: the HTTP server vs calling the predictor directly, at the same concurrency, in one run.

    python benchmarks/serve_load.py [--model M.onnx] [--imgsz 320] [--concurrency 8] [--requests 240] [--json FILE]

Both sides take the same JPEG bytes and return Detections in original-image pixels:
  direct  N threads in this process, each: cv2.imdecode -> letterbox -> OrtRunner.infer (batch 1) -> postprocess
  server  `trtalign serve MODEL --port 0` in a child process (dynamic batching); N client threads in this process,
          each with a keep-alive connection, POST /v1/detect -> JSON
The two sides alternate in rounds (direct, server, server, direct, ...) so that drifting load on a shared machine
affects both alike. Server overhead = server mean latency / direct mean latency - 1 (target <= 15% at 8 clients, CPU
backend).
Traffic goes to 127.0.0.1 only; the number of requests and the run time are bounded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _percentile(values: list, q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _stats(latencies: list, wall: float, errors: int = 0) -> dict:
    return {"requests": len(latencies), "errors": errors, "wall_s": round(wall, 3),
            "throughput_rps": round(len(latencies) / wall, 2) if wall > 0 else 0.0,
            "mean_ms": round(statistics.fmean(latencies) * 1e3, 2) if latencies else None,
            "p50_ms": round(_percentile(latencies, 50) * 1e3, 2), "p99_ms": round(_percentile(latencies, 99) * 1e3, 2)}


def make_jpegs(count: int, seed: int = 0) -> list[bytes]:
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        h, w = (480, 640) if i % 2 == 0 else (360, 640)
        img = np.full((h, w, 3), 114, np.uint8)
        for _ in range(6):
            x, y = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 80))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 80)), y + int(rng.integers(20, 80))),
                          tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(buf.tobytes())
    return out


def _run_threads(n_threads: int, n_requests: int, work, timeout_s: float) -> tuple[list, int, float]:
    """Run ``work(i)`` for i in range(n_requests) on n_threads; returns (latencies, errors, wall seconds)."""
    lock = threading.Lock()
    counter = iter(range(n_requests))
    latencies: list = []
    errors = [0]
    deadline = time.perf_counter() + timeout_s

    def loop(tid: int) -> None:
        state: dict = {}
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                work(i, state)
            except Exception:
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(n_threads)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - start


def direct_work(predictor, jpegs: list[bytes]):
    """One direct call: the same JPEG bytes -> decode -> letterbox -> runner.infer (batch 1) -> Detections, filtered
    with the server's default serve-time filter (score >= 0.25, at most 300) so both sides return the same boxes."""
    import cv2

    from trtalign.serve.predictor import OutputFilter

    output_filter = OutputFilter()

    def work(i: int, state: dict) -> None:
        img = cv2.imdecode(np.frombuffer(jpegs[i % len(jpegs)], np.uint8), cv2.IMREAD_COLOR)
        for det in predictor.predict([img]):
            output_filter.apply(det)

    return work


def start_server(model: Path, max_batch: int, max_wait_ms: float, workers: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "trtalign", "serve", str(model), "--host", "127.0.0.1", "--port", "0",
           "--backend", "ort", "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
           "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    line = proc.stdout.readline()
    if " on http://" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line}{proc.stderr.read()[-2000:]}")
    return proc, line.split(" on ", 1)[1].split()[0]


def server_work(url: str, jpegs: list[bytes]):
    """One server call: POST the JPEG bytes to /v1/detect on a per-thread keep-alive connection, parse the JSON."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"refusing to load-test a non-local server {url}")

    def work(i: int, state: dict) -> None:
        conn = state.get("conn")
        if conn is None:
            conn = state["conn"] = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            conn.request("POST", "/v1/detect", body=jpegs[i % len(jpegs)], headers={"Content-Type": "image/jpeg"})
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            state.pop("conn", None)
            raise
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
        json.loads(body)

    return work


def interleaved(works: dict, concurrency: int, requests: int, rounds: int, timeout_s: float) -> dict:
    """Alternate the sides in ``rounds`` rounds (so drifting machine load hits both alike); pooled statistics."""
    pooled = {name: ([], 0, 0.0) for name in works}
    for name, work in works.items():  # warm-up
        _run_threads(concurrency, 2 * concurrency, work, timeout_s)
    per_round = max(requests // rounds, concurrency)
    for r in range(rounds):
        order = list(works) if r % 2 == 0 else list(reversed(works))
        for name in order:
            lat, err, wall = _run_threads(concurrency, per_round, works[name], timeout_s / rounds)
            prev = pooled[name]
            pooled[name] = (prev[0] + lat, prev[1] + err, prev[2] + wall)
    return {name: _stats(lat, wall, err) for name, (lat, err, wall) in pooled.items()}


def server_metrics(url: str) -> dict:
    from trtalign.serve.metrics import parse_prometheus_text

    host, port = url.split("://", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/metrics")
    values = parse_prometheus_text(conn.getresponse().read().decode())
    conn.close()
    out = {"batches": values.get("trtalign_batch_size_count", 0),
           "mean_batch": round(values["trtalign_batch_size_sum"] / values["trtalign_batch_size_count"], 2)
           if values.get("trtalign_batch_size_count") else None}
    for stage in ("decode", "preprocess", "queue_wait", "inference", "postprocess", "request"):
        n = values.get(f"trtalign_{stage}_seconds_count", 0)
        out[f"{stage}_mean_ms"] = round(values[f"trtalign_{stage}_seconds_sum"] / n * 1e3, 2) if n else None
    return out


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="ONNX with in-graph NMS (default: export yolov8n.yaml, random init)")
    p.add_argument("--imgsz", type=int, default=320, help="input size when exporting the default model")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--requests", type=int, default=240, help="measured requests per side (bounded)")
    p.add_argument("--rounds", type=int, default=3, help="alternating direct/server rounds (default 3)")
    p.add_argument("--timeout-s", type=float, default=480.0, help="time limit per side, all rounds together")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=0, help="server batch workers (trtalign serve --workers; 0 = auto)")
    p.add_argument("--target", type=float, default=0.15, help="largest acceptable server overhead (fraction)")
    p.add_argument("--json", default=None, help="write the result to FILE (atomically)")
    args = p.parse_args(argv)
    if not 1 <= args.requests <= 20000 or not 1 <= args.concurrency <= 256 or not 1 <= args.rounds <= 20:
        p.error("--requests must be in 1..20000, --concurrency in 1..256, --rounds in 1..20")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("TRTALIGN_NO_PROGRESS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else None
        if model is None:
            os.environ.setdefault("YOLO_CONFIG_DIR", tmp)
            from trtalign.export.onnx_export import export_onnx

            model = Path(tmp) / f"yolov8n_{args.imgsz}.onnx"
            export_onnx("yolov8n.yaml", model, imgsz=args.imgsz, dynamic_batch=max(args.max_batch, 1))
        jpegs = make_jpegs(16)
        print(f"model {model.name}, {args.concurrency} concurrent clients, {args.requests} requests per side, "
              f"{os.cpu_count()} CPUs", flush=True)
        from trtalign.serve.predictor import Predictor

        predictor = Predictor.load(model, backend="ort", max_batch=1)
        proc, url = start_server(model, args.max_batch, args.max_wait_ms, args.workers)
        try:
            sides = interleaved({"direct": direct_work(predictor, jpegs), "server": server_work(url, jpegs)},
                                args.concurrency, args.requests, args.rounds, args.timeout_s)
            direct, server = sides["direct"], sides["server"]
            stages = server_metrics(url)
        finally:
            predictor.close()
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    overhead = server["mean_ms"] / direct["mean_ms"] - 1 if direct["mean_ms"] and server["mean_ms"] else None
    result = {"model": str(model.name), "concurrency": args.concurrency, "max_batch": args.max_batch,
              "max_wait_ms": args.max_wait_ms, "workers": args.workers, "rounds": args.rounds, "cpus": os.cpu_count(),
              "load_average": list(os.getloadavg()), "direct": direct, "server": server, "server_stages": stages,
              "latency_ratio_mean": round(server["mean_ms"] / direct["mean_ms"], 3) if overhead is not None else None,
              "latency_ratio_p50": round(server["p50_ms"] / direct["p50_ms"], 3),
              "throughput_ratio": round(server["throughput_rps"] / direct["throughput_rps"], 3)
              if direct["throughput_rps"] else None,
              "overhead": round(overhead, 4) if overhead is not None else None, "target": args.target,
              "passed": overhead is not None and overhead <= args.target and server["errors"] == 0}
    for name in ("direct", "server"):
        s = result[name]
        print(f"{name:7s} {s['throughput_rps']:8.2f} req/s   p50 {s['p50_ms']:8.2f} ms   p99 {s['p99_ms']:8.2f} ms   "
              f"mean {s['mean_ms']:8.2f} ms   errors {s['errors']}")
    print(f"server/direct: mean latency x{result['latency_ratio_mean']}, p50 x{result['latency_ratio_p50']}, "
          f"throughput x{result['throughput_ratio']}; overhead {100 * (overhead or 0):.1f}% "
          f"(target <= {100 * args.target:.0f}%): {'PASS' if result['passed'] else 'FAIL'}")
    print(f"server stages (mean ms): {json.dumps(stages)}")
    if args.json:
        from trtalign.core.io import atomic_write_json

        atomic_write_json(args.json, result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
