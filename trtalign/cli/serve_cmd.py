"""``trtalign serve MODEL``: an HTTP detection server (dynamic batching), or ``--source`` video / stream mode."""

from __future__ import annotations

import argparse
import signal
import threading

from trtalign.cli.args import with_example
from trtalign.cli.output import add_json_argument, emit

# the serve defaults, repeated here so that `trtalign serve --help` needs no import of the serve package
DEFAULT_SCORE_THRESHOLD = 0.25
DEFAULT_MAX_DET = 300

NAME = "serve"
HELP = "serve detections over HTTP (POST /v1/detect) with dynamic batching, or run on a video/stream with --source"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="TensorRT engine (.engine/.plan) or ONNX with in-graph NMS (CPU backend)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--backend", default="auto", choices=["auto", "trt", "ort"],
                        help="auto: trt for engines, ort (ONNX Runtime, CPU) for ONNX")
    parser.add_argument("--plugin", action="append", default=[], metavar="LIB",
                        help="TensorRT plugin library the engine needs (repeatable; from `trtalign plugins build`)")
    parser.add_argument("--onnx", default=None,
                        help="for an engine: the ONNX it was built from (class names, task, input size)")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD, metavar="S",
                        help=f"return detections with score >= S (default {DEFAULT_SCORE_THRESHOLD}; a request may "
                             f"set ?score_threshold=); the model's own NMS threshold is the floor")
    parser.add_argument("--max-det", type=int, default=DEFAULT_MAX_DET, metavar="N",
                        help=f"return at most N detections per image, best first (default {DEFAULT_MAX_DET}; a "
                             f"request may set ?max_det=); the model's max_output_boxes is the cap")
    parser.add_argument("--max-batch", type=int, default=8, help="largest inference batch (default 8)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0,
                        help="longest a request waits for others to fill a batch (default 5)")
    parser.add_argument("--max-queue", type=int, default=256,
                        help="queued requests beyond which the server answers 503 (default 256)")
    parser.add_argument("--workers", type=int, default=0,
                        help="batches run at once (default 0 = auto: 4 for the ort backend, whose CPU sessions gain "
                             "more from concurrent runs than from big batches; 1 for trt)")
    parser.add_argument("--max-body-mb", type=float, default=16.0, help="largest accepted upload in MiB (default 16)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000,
                        help="largest accepted image, width x height, checked before decoding (default 40e6)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0,
                        help="seconds to let in-flight requests finish on SIGINT/SIGTERM (default 30)")
    parser.add_argument("--source", default=None,
                        help="video mode: a file, rtsp://..., /dev/videoN or a GStreamer pipeline ending in appsink")
    parser.add_argument("--out", default=None, help="video mode: annotated video to write (.mp4, .avi, .mkv)")
    parser.add_argument("--jsonl", default=None, help="video mode: JSON lines file, one object per frame")
    parser.add_argument("--max-frames", type=int, default=None, help="video mode: stop after N frames")
    add_json_argument(parser)
    with_example(parser, "trtalign serve out/model.int8.engine --onnx model.onnx --port 8000 --max-batch 8")


def _output_filter(args: argparse.Namespace):
    from trtalign.core.errors import ConfigError
    from trtalign.serve.predictor import OutputFilter

    try:
        return OutputFilter(args.score_threshold, args.max_det)
    except ConfigError as exc:
        raise ConfigError(f"--score-threshold / --max-det: {exc}") from None


def _run_video(args: argparse.Namespace) -> int:
    from trtalign.serve.predictor import Predictor
    from trtalign.serve.video import run_video

    output_filter = _output_filter(args)
    predictor = Predictor.load(args.model, backend=args.backend, max_batch=args.max_batch, plugins=args.plugin,
                               onnx=args.onnx)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        result = run_video(predictor, args.source, jsonl=args.jsonl, out=args.out, max_frames=args.max_frames,
                           stop=stop, output_filter=output_filter)
    finally:
        signal.signal(signal.SIGTERM, previous)
        predictor.close()
    emit(result, args, result.summary())
    if result.stopped_early and not stop.is_set():
        # Ctrl-C (run_video kept the frames processed and completed its files): exit 130 with one stderr line like
        # every other command (printed by trtalign.cli.main); SIGTERM sets ``stop`` and stays exit 0
        raise KeyboardInterrupt("SIGINT")
    return 0


def run(args: argparse.Namespace) -> int:
    from trtalign.core.errors import ConfigError

    if args.source is None and (args.out or args.jsonl or args.max_frames):
        raise ConfigError("--out, --jsonl and --max-frames belong to video mode: add --source")
    if args.source is not None:
        return _run_video(args)

    from trtalign.serve.batching import BatchingConfig
    from trtalign.serve.decode import DecodeLimits
    from trtalign.serve.metrics import ServerMetrics
    from trtalign.serve.predictor import Predictor
    from trtalign.serve.server import DetectionServer, ServerConfig

    if args.max_body_mb <= 0:
        raise ConfigError(f"--max-body-mb must be > 0, got {args.max_body_mb}")
    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0 = auto), got {args.workers}")
    output_filter = _output_filter(args)
    metrics = ServerMetrics()
    predictor = Predictor.load(args.model, backend=args.backend, max_batch=args.max_batch, metrics=metrics,
                               plugins=args.plugin, onnx=args.onnx)
    workers = args.workers or (4 if predictor.info.backend == "ort" else 1)
    try:
        config = ServerConfig(host=args.host, port=args.port,
                              batching=BatchingConfig(args.max_batch, args.max_wait_ms, args.max_queue, workers),
                              limits=DecodeLimits(max_bytes=int(args.max_body_mb * 1024 * 1024),
                                                  max_pixels=args.max_pixels),
                              output_filter=output_filter)
    except BaseException:
        predictor.close()
        raise
    try:
        server = DetectionServer(predictor, config, metrics).start()
    except BaseException:
        predictor.close()
        raise
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, _frame) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    if not args.quiet:
        info = predictor.info
        print(f"serving {info.path} ({info.runner}, {info.input_shape[0]}x{info.input_shape[1]}, "
              f"max batch {info.max_batch}, {workers} worker{'s' if workers > 1 else ''}, score >= "
              f"{output_filter.score_threshold}, max {output_filter.max_det} per image) on {server.url}  "
              f"(POST /v1/detect, GET /healthz /v1/model /metrics)",
              flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        clean = server.shutdown(args.shutdown_timeout)
    summary = {"url": server.url, "clean_shutdown": clean, "batches": server.batcher.batches,
               "max_batch_seen": server.batcher.max_batch_seen,
               "requests": int(metrics.request_seconds.count), "model": predictor.info.to_dict()}
    emit(summary, args, f"stopped {'cleanly' if clean else 'with requests unfinished'} after "
                        f"{summary['requests']} detect requests in {summary['batches']} batches")
    if received and received[0] == signal.SIGINT:
        # Ctrl-C: the server is closed and the summary out; exit like every other command (130 and one stderr line,
        # printed by trtalign.cli.main). SIGTERM (a service manager's stop) stays exit 0 on a clean drain.
        raise KeyboardInterrupt("SIGINT")
    return 0 if clean else 1
