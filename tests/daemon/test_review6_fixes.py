"""No poll starts while a failed job's result waits to be read (a 429 pauses every request).

A worker frees its slot before the writer reads its result, so the engine's loop could start
another poll on that slot, or on any idle one, between a 429 coming back and the loop reading
it: one request more than those in flight when the server asked for a pause (seen as a flaky
``test_daemon_429_with_retry_after_pauses_every_request_for_it`` on a loaded machine: 5
requests where 4 were in flight). A failed job is now counted before its slot is free, and the
engine starts nothing until the loop has read it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Tuple

import pytest
from flux0sync.store import Store
from flux0sync.workers import FetchPool, Finished, Job

from flux0lite import Flux0, Flux0Error, RateLimitedError
from tests.daemon.helpers import quick_engine, run_for
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, raw_response


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


# -- an adversary of these fixes (hadv8) -------------------------------------------------------------


def test_listings_queued_behind_a_busy_worker_are_not_sent_during_a_429_pause(store: Store, fake: FakeServer) -> None:
    """A round's listings went into the job queue at once; the one worker took each after the
    429 before it, with nothing asking whether a pause had begun. Each now goes to an idle
    worker only, so the first 429 stops the round (hadv8/01)."""

    def busy(req: Request, conn: Conn) -> None:
        conn.send(raw_response(429, b'{"detail": "busy"}', {"content-type": "application/json", "retry-after": "30"}))

    for path in ("/api/agents", "/api/agents/*", "/api/sessions", "/api/sessions/*"):
        fake.on("GET", path, busy)
    engine = quick_engine(store, fake, workers=1, max_rps=100.0, users=("u1", "u2", "u3", "u4", "u5", "u6"))
    waits: List[float] = []
    engine.on_outage = lambda error, wait: waits.append(wait)
    run_for(engine, 1.0)
    assert waits == [30.0]
    assert len(fake.requests) == 1  # the first 429 pauses every request, queued listings too


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def _too_deep_to_show() -> ValueError:
    value: Any = []
    for _ in range(200_000):
        value = [value]
    return ValueError(value)


@pytest.mark.parametrize("error", [_Unprintable(), _too_deep_to_show()], ids=["str-raises", "too-deep"])
def test_a_job_error_that_cannot_be_shown_fails_its_job_and_the_worker_goes_on(error: Exception) -> None:
    """The worker made the job's error text with str(exc); when that raised, the worker thread
    died with the job's key held: the pool stalled (hadv8/02)."""
    pool = FetchPool(lambda user: Flux0("http://127.0.0.1:9"), workers=1)
    try:

        def fail(client: Flux0, emit: Any) -> None:
            raise error

        pool.submit(Job("events a", None, fail))
        finished = pool.results.get(timeout=10)
        assert isinstance(finished, Finished) and type(finished.error) is Flux0Error
        assert "could not be shown" in str(finished.error) and finished.error.__cause__ is error
        pool.submit(Job("events b", None, lambda client, emit: 3))  # the same worker goes on
        assert pool.results.get(timeout=10).value == 3
    finally:
        pool.stop()


def test_a_poll_made_ready_while_a_429_came_back_is_put_back_not_sent(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """_dispatch asked _may_send, then read the archive for the poll's start and sent it: a 429
    read back meanwhile did not stop it. It is asked again once the start is read, before
    anything of the poll is decided; the session is put back, due, and polled after the pause
    (hadv8/03). The test makes the timing a loaded machine may give: the server holds the first
    poll's 429 until the second poll is being made ready, which waits until that 429 is back."""
    agent = fake_flux0.add_agent()
    sids = [fake_flux0.add_session(agent) for _ in range(2)]
    for sid in sids:
        fake_flux0.add_events(sid, 1)
    healthy = fake.find("GET", "/api/sessions/*")
    assert healthy is not None
    polls: List[str] = []
    second_started = threading.Event()

    def events_busy(req: Request, conn: Conn) -> None:
        if "/events" not in req.path:
            healthy(req, conn)
            return
        polls.append(req.path)
        second_started.wait(5)
        conn.send(raw_response(429, b'{"detail": "busy"}', {"content-type": "application/json", "retry-after": "30"}))

    fake.on("GET", "/api/sessions/*", events_busy)
    engine = quick_engine(store, fake, workers=2, max_rps=100.0)
    original = engine._poll_start
    started: List[str] = []

    def held_poll_start(sid: str) -> Tuple[int, int]:
        started.append(sid)
        if len(started) == 2:
            second_started.set()
            _until(lambda: engine._pool is not None and engine._pool.failures_waiting())
        return original(sid)

    engine._poll_start = held_poll_start  # type: ignore[method-assign]
    waits: List[float] = []
    engine.on_outage = lambda error, wait: waits.append(wait)
    run_for(engine, 1.0)
    assert waits == [30.0] and len(started) == 2
    assert len(polls) == 1  # the second poll was made ready, then put back: not sent in the pause
    state = engine.schedule.state(started[1])
    assert state is not None and state[0] is not None  # due again, not in flight
