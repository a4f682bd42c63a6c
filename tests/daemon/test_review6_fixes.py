"""No poll starts while a failed job's result waits to be read (a 429 pauses every request).

A worker frees its slot before the writer reads its result, so the engine's loop could start
another poll on that slot, or on any idle one, between a 429 coming back and the loop reading
it: one request more than those in flight when the server asked for a pause (seen as a flaky
``test_daemon_429_with_retry_after_pauses_every_request_for_it`` on a loaded machine: 5
requests where 4 were in flight). A failed job is now counted before its slot is free, and the
engine starts nothing until the loop has read it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from flux0sync.store import Store
from flux0sync.workers import FetchPool, Finished, Job

from flux0lite import Flux0, Flux0Error, RateLimitedError
from tests.daemon.helpers import quick_engine
from tests.fakeserver import FakeServer


def _pool() -> FetchPool:
    return FetchPool(lambda user: Flux0("http://127.0.0.1:9"), workers=2)


def _until(done: Callable[[], bool]) -> None:
    end = time.monotonic() + 10
    while not done():
        assert time.monotonic() < end, "the job did not finish"
        time.sleep(0.005)


def _failing(client: Flux0, emit: Any) -> None:
    raise RateLimitedError(429, "Too Many Requests", headers={"retry-after": "30"})


def test_a_failed_job_is_waiting_from_the_moment_its_slot_is_free_until_its_result_is_read() -> None:
    pool = _pool()
    try:
        pool.submit(Job("events a", None, _failing))
        _until(lambda: pool.pending() == 0)  # the slot is free ...
        assert pool.failures_waiting()  # ... and the failure is known before its result is read
        finished = pool.results.get(timeout=5)
        assert isinstance(finished, Finished) and isinstance(finished.error, RateLimitedError)
        assert not pool.failures_waiting()
        pool.submit(Job("events b", None, lambda client, emit: 7))
        _until(lambda: pool.pending() == 0)
        assert not pool.failures_waiting()  # a job that succeeded holds nothing back
        assert pool.results.get(timeout=5).value == 7
    finally:
        pool.stop()


def test_the_engine_starts_no_request_while_a_failure_waits_to_be_read(store: Store, fake: FakeServer) -> None:
    engine = quick_engine(store, fake, workers=2)
    engine._pool = pool = _pool()
    try:
        assert engine._may_send()
        pool.submit(Job("events a", None, _failing))
        _until(lambda: pool.pending() == 0)
        assert pool.idle() == 2 and not engine._may_send()  # idle slots, yet nothing starts
        pool.results.get(timeout=5)
        assert engine._may_send()
    finally:
        pool.stop()


@pytest.mark.parametrize("error", [Flux0Error("lost"), None])
def test_a_failure_dropped_by_a_stopping_pool_is_not_counted_as_waiting(error: Any) -> None:
    pool = FetchPool(lambda user: Flux0("http://127.0.0.1:9"), workers=1, queue_size=1)
    try:
        pool.submit(Job("events a", None, lambda client, emit: 1))
        _until(lambda: pool.results.full())  # the queue is full: the next result waits to be put

        def run(client: Flux0, emit: Any) -> int:
            if error is not None:
                raise error
            return 2

        pool.submit(Job("events b", None, run))
        time.sleep(0.05)
    finally:
        pool.stop()
    assert not pool.failures_waiting()
