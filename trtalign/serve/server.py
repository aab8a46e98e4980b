"""The HTTP detection server: standard library ``http.server`` with one thread per connection, one batching worker.

Endpoints:
    POST /v1/detect   raw image bytes (image/png, image/jpeg, ..., application/octet-stream: the format is sniffed)
                      or multipart/form-data with an ``image`` field
                      -> JSON detections in original-image pixels (rotated: x, y, w, h, angle and 4 corners)
                      query parameters ``score_threshold`` (0..1, default the server's, 0.25) and ``max_det``
                      (>= 1, default the server's, 300) filter the model's NMS output; the response's ``filter``
                      says what was applied and the model's own NMS threshold (the floor)
    GET  /healthz     200 {"status": "ok"} while serving, 503 while draining
    GET  /v1/model    classes, input size, precision, batching and build info
    GET  /metrics     Prometheus text: stage latency histograms, queue depth, batch sizes, request counts

Every error is JSON ``{"error": {"status", "code", "message"}}`` with a 4xx/5xx status, and the server keeps serving.
:meth:`DetectionServer.shutdown` is graceful: it stops accepting, lets in-flight requests finish (their batches run),
closes idle keep-alive connections, then stops the batcher and deactivates the runner.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from trtalign import __version__
from trtalign.core.errors import ConfigError
from trtalign.core.logging import get_logger
from trtalign.serve.batching import BatchingConfig, DynamicBatcher
from trtalign.serve.decode import DecodeLimits, check_content_length, check_content_type, decode_request_body
from trtalign.serve.errors import RequestError, ShuttingDownError
from trtalign.serve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from trtalign.serve.metrics import ServerMetrics
from trtalign.serve.predictor import OutputFilter, Predictor, detections_payload

log = get_logger(__name__)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    request_timeout_s: float = 30.0  # socket read timeout and the longest a request waits for its batch
    backlog: int = 1024
    output_filter: OutputFilter = field(default_factory=OutputFilter)  # per request: ?score_threshold=&max_det=

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {self.port}")


#: query parameters of POST /v1/detect -> the OutputFilter field and its type
QUERY_PARAMETERS = {"score_threshold": float, "max_det": int}


def filter_from_query(query: str, default: OutputFilter) -> OutputFilter:
    """The ``?score_threshold=0.5&max_det=10`` of a detect request over ``default``; 400 for an unknown name or a
    bad value (the message names the valid parameters and ranges)."""
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise RequestError(400, "bad_query", f"cannot parse the query string {query!r}") from None
    values: dict[str, Any] = {}
    for name, raw in pairs:
        kind = QUERY_PARAMETERS.get(name)
        if kind is None:
            raise RequestError(400, "bad_query", f"unknown query parameter {name!r}; valid: "
                                                 f"{', '.join(QUERY_PARAMETERS)}")
        try:
            values[name] = kind(raw)
        except ValueError:
            expected = "a number in [0, 1]" if kind is float else "an integer >= 1"
            raise RequestError(400, "bad_query", f"{name}={raw!r}: expected {expected}") from None
    if not values:
        return default
    try:
        return dataclasses.replace(default, **values)
    except ConfigError as exc:
        raise RequestError(400, "bad_query", f"{exc} (query parameters: {', '.join(QUERY_PARAMETERS)})") from None


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True  # DetectionServer waits for in-flight requests itself, with a deadline
    allow_reuse_address = True

    def __init__(self, address: tuple, app: "DetectionServer", backlog: int):
        self.request_queue_size = backlog
        self.app = app
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"trtalign/{__version__}"
    server: _HttpServer

    # ------------------------------------------------------------------ connection bookkeeping
    def setup(self) -> None:
        self.timeout = self.server.app.config.request_timeout_s
        super().setup()
        self.server.app._connection_opened(self)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.app._connection_closed(self)

    def handle_one_request(self) -> None:
        # idle = waiting for the next request line of a keep-alive connection (safe to close on shutdown)
        self.server.app._mark_idle(self, getattr(self, "_served_one", False))
        try:
            super().handle_one_request()
        except (ConnectionError, socket.timeout):
            self.close_connection = True

    def parse_request(self) -> bool:
        self._served_one = True
        self.server.app._mark_idle(self, False)
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: refuse a wrong type or size before the client sends the body."""
        if self.command == "POST" and self.path.split("?", 1)[0] == "/v1/detect":
            try:
                self._check_headers()
            except RequestError as exc:  # the body was never sent: answer and close
                self.close_connection = True
                self._send_json(exc.status, exc.to_dict(), "/v1/detect")
                return False
        return super().handle_expect_100()

    def _check_headers(self) -> int:
        """Content-Type, Transfer-Encoding and Content-Length of a detect request -> the body length."""
        check_content_type(self.headers.get("Content-Type"))
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            raise RequestError(411, "length_required", "chunked uploads are not accepted; send Content-Length")
        raw_length = self.headers.get("Content-Length")
        try:
            length = int(raw_length) if raw_length is not None else None
        except ValueError:
            raise RequestError(400, "bad_content_length", f"Content-Length {raw_length!r} is not an integer") from None
        return check_content_length(length, self.server.app.config.limits)

    def _discard_body(self) -> bool:
        """Read and drop a refused body (up to a cap) so the client can read the error; True if fully read."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return False
        cap = min(max(4 * self.server.app.config.limits.max_bytes, 1 << 20), 64 << 20)
        if length <= 0 or length > cap or self.headers.get("Transfer-Encoding"):
            return length == 0
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    return False
                length -= len(chunk)
        except (ConnectionError, socket.timeout):
            return False
        return True

    def log_message(self, format: str, *args: Any) -> None:  # route to the package logger, not stderr
        log.debug("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------------ responses
    def _send(self, status: int, body: bytes, content_type: str, path: str) -> None:
        app = self.server.app
        if app.draining:
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        app.metrics.requests.inc(path=path, code=status)

    def _send_json(self, status: int, obj: Any, path: str) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), "application/json", path)

    def _send_error(self, exc: RequestError, path: str, body_read: bool = True) -> None:
        if not body_read and not self._discard_body():  # an unread body would be parsed as the next request
            self.close_connection = True
        self._send_json(exc.status, exc.to_dict(), path)

    # ------------------------------------------------------------------ routes
    def do_GET(self) -> None:
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            if app.draining:
                self._send_json(503, {"status": "draining"}, path)
            else:
                self._send_json(200, {"status": "ok", "queue_depth": app.batcher.queue_depth}, path)
        elif path == "/v1/model":
            self._send_json(200, app.model_dict(), path)
        elif path == "/metrics":
            self._send(200, app.metrics.render().encode("utf-8"), METRICS_CONTENT_TYPE, path)
        else:
            self._send_error(RequestError(404, "not_found", f"no route GET {path}; routes: GET /healthz, "
                                                            f"GET /v1/model, GET /metrics, POST /v1/detect"), "other")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/v1/detect":
            self._send_error(RequestError(404, "not_found", f"no route POST {path}; use POST /v1/detect"), "other",
                             body_read=False)
            return
        app = self.server.app
        app.metrics.in_flight.inc()
        start = time.perf_counter()
        body_read = False
        try:
            if app.draining:
                raise ShuttingDownError()
            content_type = self.headers.get("Content-Type")
            output_filter = filter_from_query(self.path.partition("?")[2], app.config.output_filter)
            length = self._check_headers()
            body = self.rfile.read(length)
            body_read = True
            if len(body) != length:
                raise RequestError(400, "truncated_body", f"expected {length} body bytes, received {len(body)}")
            result = app.detect(body, content_type, output_filter)
            app.metrics.request_seconds.observe(time.perf_counter() - start)
            self._send_json(200, result, path)
        except RequestError as exc:
            self._send_error(exc, path, body_read)
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        except Exception as exc:  # a bug or a runner failure: 500, and keep serving
            log.exception("POST /v1/detect failed")
            self._send_error(RequestError(500, "internal_error", f"{type(exc).__name__}: {exc}"), path, body_read)
        finally:
            app.metrics.in_flight.dec()

    def do_HEAD(self) -> None:
        self.do_GET()


class DetectionServer:
    """A :class:`Predictor` behind HTTP with dynamic batching. ``start()`` returns at once; ``shutdown()`` drains."""

    def __init__(self, predictor: Predictor, config: ServerConfig = ServerConfig(),
                 metrics: ServerMetrics | None = None):
        self.predictor = predictor
        self.config = config
        self.metrics = metrics or predictor.metrics or ServerMetrics()
        predictor.metrics = self.metrics
        batching = config.batching
        if batching.max_batch != predictor.info.max_batch:  # the model's fixed batch wins (warned at load)
            batching = dataclasses.replace(batching, max_batch=predictor.info.max_batch)
        if batching.workers > 1 and predictor.info.backend != "ort":
            raise ConfigError(f"--workers {batching.workers} needs a thread-safe runner (the ort backend); the "
                              f"{predictor.info.backend} runner has one execution context: use --workers 1")
        self.batching = batching
        self.batcher: DynamicBatcher = DynamicBatcher(self.predictor.infer_batch, batching, self.metrics)
        self.draining = False
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._conn_lock = threading.Condition()
        self._connections: dict[_Handler, bool] = {}  # handler -> idle (waiting for the next request line)
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "DetectionServer":
        try:
            self._httpd = _HttpServer((self.config.host, self.config.port), self, self.config.backlog)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}") \
                from None
        self.batcher.start()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="trtalign-http", daemon=True)
        self._thread.start()
        log.info("serving %s on %s", self.predictor.info.path, self.url)
        return self

    @property
    def address(self) -> tuple[str, int]:
        if self._httpd is None:
            return self.config.host, self.config.port
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def wait(self) -> None:
        """Block until the server stops (``shutdown`` from another thread or a signal handler)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Graceful stop; True if every in-flight request finished within ``timeout`` seconds."""
        if self._closed:
            return True
        self._closed = True
        deadline = time.monotonic() + timeout
        self.draining = True
        self.batcher.stop_waiting()
        if self._httpd is not None:
            self._httpd.shutdown()  # no new connections are accepted after this returns
        with self._conn_lock:
            self._close_idle_locked()
            while self._connections and time.monotonic() < deadline:
                self._conn_lock.wait(min(0.2, max(deadline - time.monotonic(), 0.0)))
                self._close_idle_locked()
            clean = not self._connections
        drained = self.batcher.close(max(deadline - time.monotonic(), 0.1))
        if self._httpd is not None:
            self._httpd.server_close()
        if drained:  # never free the model under a batch that is still running
            self.predictor.close()
        log.info("server stopped (%s)", "clean" if clean and drained else "timed out with requests in flight")
        return clean and drained

    def __enter__(self) -> "DetectionServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ connections
    def _connection_opened(self, handler: _Handler) -> None:
        with self._conn_lock:
            self._connections[handler] = False
            if self.draining:
                handler.close_connection = True

    def _connection_closed(self, handler: _Handler) -> None:
        with self._conn_lock:
            self._connections.pop(handler, None)
            self._conn_lock.notify_all()

    def _mark_idle(self, handler: _Handler, idle: bool) -> None:
        with self._conn_lock:
            if handler in self._connections:
                self._connections[handler] = idle

    def _close_idle_locked(self) -> None:
        for handler, idle in list(self._connections.items()):
            if idle:
                self._shutdown_socket(handler)

    @staticmethod
    def _shutdown_socket(handler: _Handler) -> None:
        try:
            handler.connection.shutdown(socket.SHUT_RD)  # a blocked readline() sees EOF and the handler returns
        except OSError:
            pass

    # ------------------------------------------------------------------ work
    def detect(self, body: bytes, content_type: str | None, output_filter: OutputFilter | None = None) -> dict:
        """Decode, letterbox, batch-infer, scale back, filter (``output_filter``, default the server's): the whole of
        POST /v1/detect after the body is read."""
        output_filter = output_filter or self.config.output_filter
        t0 = time.perf_counter()
        image = decode_request_body(body, content_type, self.config.limits)
        t1 = time.perf_counter()
        self.metrics.decode_seconds.observe(t1 - t0)
        tensor, meta = self.predictor.preprocess(image)
        t2 = time.perf_counter()
        future = self.batcher.submit(tensor)
        try:
            outputs = future.result(self.config.request_timeout_s)
        except FutureTimeout:
            future.cancel()
            raise RequestError(503, "timeout", f"inference did not finish within {self.config.request_timeout_s} s")
        t3 = time.perf_counter()
        det = output_filter.apply(self.predictor.postprocess(outputs, meta))
        t4 = time.perf_counter()
        timing = {"decode": t1 - t0, "preprocess": t2 - t1, "queue_and_inference": t3 - t2, "postprocess": t4 - t3}
        return detections_payload(det, self.predictor.info, {"timing_ms": {k: round(v * 1e3, 3)
                                                                           for k, v in timing.items()}},
                                  output_filter=output_filter)

    def model_dict(self) -> dict:
        info = self.predictor.info.to_dict()
        info["batching"] = self.batching.to_dict()
        info["limits"] = self.config.limits.to_dict()
        info["filter"] = {**self.config.output_filter.to_dict(),
                          "model_score_threshold": self.predictor.info.model_score_threshold}
        info["server"] = {"version": __version__}
        return info


def serve(predictor: Predictor, config: ServerConfig = ServerConfig()) -> DetectionServer:
    """Start a server for ``predictor`` and return it (already listening)."""
    return DetectionServer(predictor, config).start()
