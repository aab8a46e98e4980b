"""Dynamic batching: concurrent requests -> batches of up to ``max_batch``, waiting at most ``max_wait_ms``.

One worker thread owns the model (``workers > 1`` runs that many batches at once, for runners whose ``infer`` is
thread-safe, such as ONNX Runtime sessions). ``submit`` puts an item on a bounded queue and returns a Future; a full queue raises
:class:`OverloadedError` (HTTP 503) at once instead of letting latency grow without bound. The worker takes the first
waiting item, then keeps collecting until the batch is full or ``max_wait_ms`` has passed since that first item
arrived, and hands the list to ``process(items) -> results`` (one result per item, same order). ``close`` stops
accepting new items and returns once every accepted item has been processed (graceful shutdown).
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from trtalign.core.errors import ConfigError
from trtalign.core.logging import get_logger
from trtalign.serve.errors import OverloadedError, ShuttingDownError
from trtalign.serve.metrics import ServerMetrics

T = TypeVar("T")
R = TypeVar("R")
log = get_logger(__name__)


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 256
    workers: int = 1  # batches run at once (>1 only for runners whose infer is thread-safe, e.g. ONNX Runtime)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue < 1:
            raise ConfigError(f"max_queue must be >= 1, got {self.max_queue}")

    def to_dict(self) -> dict:
        return {"max_batch": self.max_batch, "max_wait_ms": self.max_wait_ms, "max_queue": self.max_queue,
                "workers": self.workers}


class _Job:
    __slots__ = ("item", "future", "enqueued")

    def __init__(self, item: Any):
        self.item = item
        self.future: Future = Future()
        self.enqueued = time.perf_counter()


class DynamicBatcher(Generic[T, R]):
    """Run ``process`` on batches of concurrently submitted items in one worker thread."""

    def __init__(self, process: Callable[[list[T]], Sequence[R]], config: BatchingConfig = BatchingConfig(),
                 metrics: ServerMetrics | None = None, name: str = "trtalign-batcher"):
        self.process = process
        self.config = config
        self.metrics = metrics
        self.name = name
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._no_wait = False  # draining: run what is queued at once instead of waiting to fill batches
        self._threads: list[threading.Thread] = []
        self._collecting = 0  # jobs taken off the queue by the worker, batch not yet started
        self.batches = 0
        self.max_batch_seen = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "DynamicBatcher[T, R]":
        if not self._threads:
            self._threads = [threading.Thread(target=self._run, name=f"{self.name}-{i}", daemon=True)
                             for i in range(self.config.workers)]
            for t in self._threads:
                t.start()
        return self

    def stop_waiting(self) -> None:
        """Keep accepting items but stop waiting to fill batches (the first step of a graceful shutdown)."""
        with self._cond:
            self._no_wait = True
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting; process everything already queued; True if the worker finished within ``timeout``."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if not self._threads:
            self._fail_pending(ShuttingDownError("batcher closed before it was started"))
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
        return not any(t.is_alive() for t in self._threads)

    @property
    def closing(self) -> bool:
        return self._closing

    def __enter__(self) -> "DynamicBatcher[T, R]":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def queue_depth(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def pending(self) -> int:
        """Accepted items whose batch has not started yet (queued + being collected into the next batch)."""
        with self._cond:
            return len(self._queue) + self._collecting

    # ------------------------------------------------------------------ producers
    def submit(self, item: T) -> Future:
        """Queue ``item``; the Future resolves to its result (or the exception ``process`` raised)."""
        job = _Job(item)
        with self._cond:
            if self._closing:
                raise ShuttingDownError()
            if len(self._queue) >= self.config.max_queue:
                raise OverloadedError(f"server overloaded: {len(self._queue)} requests already queued "
                                      f"(limit {self.config.max_queue}); retry later")
            self._queue.append(job)
            depth = len(self._queue)
            self._cond.notify()
        if self.metrics is not None:
            self.metrics.queue_depth.set(depth)
        return job.future

    def __call__(self, item: T, timeout: float | None = None) -> R:
        return self.submit(item).result(timeout)

    # ------------------------------------------------------------------ worker
    def _take_batch(self) -> list[_Job]:
        """Block for the first job, then gather more until the batch is full or the wait budget is spent."""
        cfg = self.config
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return []  # closing and drained
            batch = [self._queue.popleft()]
            self._collecting += 1
            deadline = batch[0].enqueued + cfg.max_wait_ms / 1000.0
            while len(batch) < cfg.max_batch:
                if self._queue:
                    batch.append(self._queue.popleft())
                    self._collecting += 1
                    continue
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._closing or self._no_wait:
                    break
                self._cond.wait(remaining)
            self._collecting -= len(batch)
            depth = len(self._queue)
        if self.metrics is not None:
            self.metrics.queue_depth.set(depth)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return
            self._process(batch)

    def _process(self, batch: list[_Job]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        now = time.perf_counter()
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(live))
            for job in live:
                self.metrics.queue_wait_seconds.observe(now - job.enqueued)
        with self._cond:
            self.batches += 1
            self.max_batch_seen = max(self.max_batch_seen, len(live))
        try:
            results = list(self.process([job.item for job in live]))
            if len(results) != len(live):
                raise RuntimeError(f"batch process returned {len(results)} results for {len(live)} items")
        except Exception as exc:  # every waiting request learns about the failure; the worker keeps going
            log.error("batch of %d failed: %s", len(live), exc)
            for job in live:
                job.future.set_exception(exc)
            return
        for job, res in zip(live, results):
            job.future.set_result(res)

    def _fail_pending(self, exc: BaseException) -> None:
        with self._cond:
            jobs = list(self._queue)
            self._queue.clear()
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(exc)
