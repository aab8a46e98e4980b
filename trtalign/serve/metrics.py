"""Prometheus metrics written by hand in the text exposition format (version 0.0.4); thread-safe, no dependency."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: seconds, for stage latencies from ~0.1 ms to 10 s
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for k, v in labels.items())
    return "{" + body + "}"


class Counter:
    def __init__(self, name: str, help: str, label_names: tuple = ()):
        self.name, self.help, self.label_names = name, help, tuple(label_names)
        self._values: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        key = tuple(str(labels[n]) for n in self.label_names)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: object) -> float:
        key = tuple(str(labels[n]) for n in self.label_names)
        with self._lock:
            return self._values.get(key, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.label_names:
            items = [((), 0.0)]
        for key, val in items:
            lines.append(f"{self.name}{_labels(dict(zip(self.label_names, key)))} {_fmt(val)}")
        return lines


class Gauge:
    def __init__(self, name: str, help: str):
        self.name, self.help = name, help
        self._value = 0.0
        self._lock = threading.Lock()

    def set(self, value: float) -> None:
        with self._lock:
            self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)

    @property
    def value(self) -> float:
        with self._lock:
            return self._value

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {_fmt(self.value)}"]


class Histogram:
    """Cumulative-bucket histogram; ``observe`` is O(log buckets)."""

    def __init__(self, name: str, help: str, buckets: tuple = LATENCY_BUCKETS):
        self.name, self.help = name, help
        self.buckets = tuple(sorted(float(b) for b in buckets))
        self._counts = [0] * (len(self.buckets) + 1)  # last = +Inf overflow
        self._sum = 0.0
        self._count = 0
        self._max = float("-inf")
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        import bisect

        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value
            self._count += 1
            self._max = max(self._max, value)

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def sum(self) -> float:
        with self._lock:
            return self._sum

    @property
    def max(self) -> float:
        with self._lock:
            return self._max

    def render(self) -> list[str]:
        with self._lock:
            counts, total, n = list(self._counts), self._sum, self._count
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        cum = 0
        for bound, c in zip(self.buckets, counts):
            cum += c
            lines.append(f'{self.name}_bucket{{le="{_fmt(bound)}"}} {cum}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {n}')
        lines.append(f"{self.name}_sum {_fmt(total)}")
        lines.append(f"{self.name}_count {n}")
        return lines


@dataclass
class ServerMetrics:
    """Every metric the detection server exports under ``/metrics``."""

    prefix: str = "trtalign"
    items: list = field(default_factory=list)

    def __post_init__(self) -> None:
        p = self.prefix
        stage = "Seconds spent in the {} stage per request"
        self.decode_seconds = Histogram(f"{p}_decode_seconds", stage.format("image decode"))
        self.preprocess_seconds = Histogram(f"{p}_preprocess_seconds", stage.format("letterbox pre-processing"))
        self.inference_seconds = Histogram(f"{p}_inference_seconds", "Seconds of one batched runner.infer call")
        self.postprocess_seconds = Histogram(f"{p}_postprocess_seconds", stage.format("post-processing"))
        self.queue_wait_seconds = Histogram(f"{p}_queue_wait_seconds", "Seconds a request waited in the batch queue")
        self.request_seconds = Histogram(f"{p}_request_seconds", "End-to-end seconds of POST /v1/detect")
        self.batch_size = Histogram(f"{p}_batch_size", "Requests per inference batch", BATCH_BUCKETS)
        self.queue_depth = Gauge(f"{p}_queue_depth", "Requests waiting in the batch queue")
        self.in_flight = Gauge(f"{p}_requests_in_flight", "Detect requests being handled")
        self.requests = Counter(f"{p}_requests_total", "HTTP requests by path and status code", ("path", "code"))
        self.items = [self.decode_seconds, self.preprocess_seconds, self.inference_seconds, self.postprocess_seconds,
                      self.queue_wait_seconds, self.request_seconds, self.batch_size, self.queue_depth, self.in_flight,
                      self.requests]

    def render(self) -> str:
        lines: list[str] = []
        for item in self.items:
            lines.extend(item.render())
        return "\n".join(lines) + "\n"


def parse_prometheus_text(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` from exposition text (for tests and the load benchmark)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out
