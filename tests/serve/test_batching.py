"""DynamicBatcher with real threads: batch limits, waiting, overload, draining on close, error propagation."""

from __future__ import annotations

import threading
import time

import pytest

from trtalign.core.errors import ConfigError
from trtalign.serve.batching import BatchingConfig, DynamicBatcher
from trtalign.serve.errors import OverloadedError, ShuttingDownError
from trtalign.serve.metrics import ServerMetrics, parse_prometheus_text


class Recorder:
    """A batch function that squares its inputs and records every batch it saw (optionally slowly)."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None):
        self.batches: list[list[int]] = []
        self.delay = delay
        self.gate = gate

    def __call__(self, items):
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay)
        self.batches.append(list(items))
        return [x * x for x in items]


def test_results_match_items_and_batches_respect_max_batch():
    rec = Recorder(delay=0.01)
    metrics = ServerMetrics()
    with DynamicBatcher(rec, BatchingConfig(max_batch=4, max_wait_ms=50, max_queue=100), metrics) as b:
        futures = [b.submit(i) for i in range(37)]
        assert [f.result(10) for f in futures] == [i * i for i in range(37)]
    assert sorted(x for batch in rec.batches for x in batch) == list(range(37))  # each item exactly once
    assert max(len(batch) for batch in rec.batches) == 4 and len(rec.batches) >= 10
    text = parse_prometheus_text(metrics.render())
    assert text["trtalign_batch_size_sum"] == 37 and text["trtalign_batch_size_count"] == len(rec.batches)
    assert text["trtalign_queue_wait_seconds_count"] == 37


def test_single_item_waits_at_most_max_wait():
    rec = Recorder()
    with DynamicBatcher(rec, BatchingConfig(max_batch=8, max_wait_ms=30)) as b:
        start = time.perf_counter()
        assert b(3, timeout=5) == 9
        took = time.perf_counter() - start
    assert 0.025 <= took < 2.0 and rec.batches == [[3]]


def test_concurrent_submitters_are_batched_together():
    gate = threading.Event()
    rec = Recorder(gate=gate)
    with DynamicBatcher(rec, BatchingConfig(max_batch=8, max_wait_ms=1)) as b:
        first = b.submit(0)  # the worker holds this batch at the gate while the others queue up
        time.sleep(0.05)
        rest = [b.submit(i) for i in range(1, 9)]
        gate.set()
        assert [f.result(5) for f in [first, *rest]] == [i * i for i in range(9)]
    assert rec.batches == [[0], list(range(1, 9))]


def test_full_queue_raises_overloaded_then_recovers():
    gate = threading.Event()
    rec = Recorder(gate=gate)
    b = DynamicBatcher(rec, BatchingConfig(max_batch=1, max_wait_ms=0, max_queue=3)).start()
    try:
        held = b.submit(0)
        deadline = time.time() + 5
        while b.pending and time.time() < deadline:  # the worker has taken item 0 and waits at the gate
            time.sleep(0.001)
        queued = [b.submit(i) for i in range(1, 4)]
        with pytest.raises(OverloadedError) as info:
            b.submit(99)
        assert info.value.status == 503 and "limit 3" in info.value.message
        gate.set()
        assert held.result(5) == 0 and [f.result(5) for f in queued] == [1, 4, 9]
        assert b.submit(5).result(5) == 25
    finally:
        gate.set()
        b.close()


def test_close_drains_everything_accepted_and_refuses_new_items():
    rec = Recorder(delay=0.01)
    b = DynamicBatcher(rec, BatchingConfig(max_batch=2, max_wait_ms=1000)).start()
    futures = [b.submit(i) for i in range(9)]
    assert b.close(10)
    assert all(f.done() for f in futures) and [f.result() for f in futures] == [i * i for i in range(9)]
    with pytest.raises(ShuttingDownError):
        b.submit(1)


def test_process_errors_reach_every_waiter_and_the_worker_survives():
    calls = []

    def flaky(items):
        calls.append(list(items))
        if 13 in items:
            raise ValueError("bad batch")
        return [x + 1 for x in items]

    with DynamicBatcher(flaky, BatchingConfig(max_batch=2, max_wait_ms=20)) as b:
        bad = [b.submit(13), b.submit(14)]
        for f in bad:
            with pytest.raises(ValueError, match="bad batch"):
                f.result(5)
        assert b.submit(1).result(5) == 2


def test_wrong_result_count_is_an_error():
    with DynamicBatcher(lambda items: [], BatchingConfig(max_batch=2, max_wait_ms=50)) as b:
        fs = [b.submit(1), b.submit(2)]
        for f in fs:
            with pytest.raises(RuntimeError, match="returned 0 results for"):
                f.result(5)


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_wait_ms": -1}, {"max_queue": 0}])
def test_invalid_config(kwargs):
    with pytest.raises(ConfigError):
        BatchingConfig(**kwargs)
