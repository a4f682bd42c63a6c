from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import pytest
from flux0sync.workers import DeadlineExceeded, FetchCancelled, FetchPool, Finished, Job, Message, Piece

from flux0lite import APIConnectionError, Flux0, Flux0Error, Retry, Timeout
from tests.fakeserver import Conn, FakeServer, Request, raw_response


def client_factory(fake: FakeServer, read: float = 30.0) -> Callable[[Optional[str]], Flux0]:
    def make(user: Optional[str]) -> Flux0:
        return Flux0(fake.url, timeout=Timeout(2, read), retry=Retry(total=1, backoff_factor=0), user_sub=user)

    return make


def fetch_events(session_id: str) -> Callable[[Flux0, Callable[[Any], None]], int]:
    def run(client: Flux0, emit: Callable[[Any], None]) -> int:
        events = client.sessions.list_events(session_id)
        for event in events:
            emit(event.offset)
        return len(events)

    return run


class Gauge:
    """How many requests the server is answering at once, at most."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def events_body(session_id: str, count: int) -> bytes:
    doc = {"data": [event(session_id, offset) for offset in range(count)]}
    return json.dumps(doc).encode()


def event(session_id: str, offset: int) -> Dict[str, Any]:
    return {
        "id": f"{session_id}-{offset}",
        "correlation_id": "c",
        "type": "message",
        "source": "user",
        "offset": offset,
        "data": {"type": "message", "parts": []},
        "deleted": False,
        "metadata": None,
        "created_at": "2026-11-25T00:00:00Z",
    }


def route(fake: FakeServer, *, delay: float = 0.0, stall: Optional[str] = None, gauge: Optional[Gauge] = None) -> None:
    """``/api/sessions/<sid>/events``: 3 events each; ``stall`` never answers (until the socket goes)."""

    def respond(req: Request, conn: Conn) -> None:
        sid = req.path.split("/")[3]
        with gauge or Gauge():
            if sid == stall:
                conn.sock.settimeout(None)
                conn.sock.recv(1)  # returns only when the client side goes away
                conn.keep_alive = False
                return
            time.sleep(delay)
            conn.send(raw_response(200, events_body(sid, 3), {"content-type": "application/json"}))

    fake.on("GET", "/api/sessions/*", respond)


def collect(pool: FetchPool, jobs: int, timeout: float = 20) -> List[Message]:
    out: List[Message] = []
    deadline = time.monotonic() + timeout
    while sum(isinstance(m, Finished) for m in out) < jobs:
        out.append(pool.results.get(timeout=max(0.01, deadline - time.monotonic())))
    return out


def job(sid: str, user: Optional[str] = None) -> Job[int]:
    return Job(key=sid, user=user, run=fetch_events(sid))


def test_workers_fetch_concurrently_and_hand_pieces_over_in_order(fake: FakeServer) -> None:
    gauge = Gauge()
    route(fake, delay=0.3, gauge=gauge)
    pool = FetchPool(client_factory(fake), workers=4)
    try:
        for i in range(8):
            pool.submit(job(f"s{i}"))
        messages = collect(pool, 8)
    finally:
        pool.stop()
    assert gauge.peak == 4  # four workers, four requests at once, never more
    finished = [m for m in messages if isinstance(m, Finished)]
    assert sorted(m.job.key for m in finished) == [f"s{i}" for i in range(8)]
    assert all(m.error is None and m.value == 3 for m in finished)
    for i in range(8):  # each job's pieces arrive in order, before its Finished
        mine = [m for m in messages if m.job.key == f"s{i}"]
        assert [m.payload for m in mine if isinstance(m, Piece)] == [0, 1, 2]
        assert isinstance(mine[-1], Finished)
    assert len(fake.requests) == 8 and fake.connections == 4  # one kept-alive connection per worker


def test_one_job_per_key_at_a_time(fake: FakeServer) -> None:
    route(fake, delay=0.2)
    pool = FetchPool(client_factory(fake), workers=2)
    try:
        pool.submit(job("s1"))
        assert pool.busy("s1") and pool.pending() == 1 and pool.idle() == 1
        with pytest.raises(ValueError, match="already in flight"):
            pool.submit(job("s1"))
        collect(pool, 1)
        pool.submit(job("s1"))  # finished: the key is free again
        collect(pool, 1)
    finally:
        pool.stop()


def test_a_stalled_session_holds_one_worker_until_its_deadline(fake: FakeServer) -> None:
    route(fake, stall="stuck")
    pool = FetchPool(client_factory(fake, read=60), workers=2, deadline=1.0)
    try:
        pool.submit(job("stuck"))
        for i in range(6):
            pool.submit(job(f"ok{i}"))
        started = time.monotonic()
        finished: List[Finished] = []
        while len(finished) < 7 and time.monotonic() - started < 30:
            pool.supervise()  # the loop's duty: cut off what is past its deadline
            try:
                message = pool.results.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(message, Finished):
                finished.append(message)
        waited = time.monotonic() - started
    finally:
        pool.stop()
    assert [m.job.key for m in finished[:6]] == [f"ok{i}" for i in range(6)]  # the others went on
    stuck = finished[-1]
    assert stuck.job.key == "stuck" and isinstance(stuck.error, DeadlineExceeded)
    assert waited < 30  # cut off at the deadline, not at the 60 s read timeout
    assert "deadline" in str(stuck.error)


def test_stop_interrupts_blocked_fetches_and_ends_every_worker(fake: FakeServer) -> None:
    route(fake, stall="stuck")
    pool = FetchPool(client_factory(fake, read=60), workers=3, deadline=600)
    pool.submit(Job("a", None, fetch_events("stuck")))
    pool.submit(Job("b", None, fetch_events("stuck")))
    deadline = time.monotonic() + 10
    while sum(1 for r in fake.requests if "stuck" in r.path) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    pool.stop(grace=10)
    assert not any(t.is_alive() for t in pool._threads)  # the shut-down sockets woke them
    with pytest.raises(FetchCancelled):
        pool.submit(job("late"))


def test_each_user_gets_its_own_client_and_cookie(fake: FakeServer) -> None:
    route(fake)
    pool = FetchPool(client_factory(fake), workers=1)
    try:
        pool.submit(job("s1", user="alice"))
        collect(pool, 1)
        pool.submit(job("s2", user="bob"))
        collect(pool, 1)
        pool.submit(job("s3"))
        collect(pool, 1)
    finally:
        pool.stop()
    cookies = [r.headers.get("cookie") for r in fake.requests]
    assert cookies == ["flux0_user_sub=alice", "flux0_user_sub=bob", None]


def test_a_job_that_crashes_costs_only_itself(fake: FakeServer) -> None:
    route(fake)

    def broken(client: Flux0, emit: Callable[[Any], None]) -> int:
        raise KeyError("a bug")

    pool = FetchPool(client_factory(fake), workers=1)
    try:
        pool.submit(Job("bad", None, broken))
        pool.submit(job("good"))
        messages = collect(pool, 2)
    finally:
        pool.stop()
    bad, good = (m for m in messages if isinstance(m, Finished))
    assert isinstance(bad.error, Flux0Error) and "KeyError" in str(bad.error)
    assert isinstance(bad.error.__cause__, KeyError)
    assert good.error is None and good.value == 3


def test_a_slow_writer_slows_the_workers_down(fake: FakeServer) -> None:
    route(fake)

    def many(client: Flux0, emit: Callable[[Any], None]) -> int:
        for n in range(50):
            emit(n)
        return 50

    pool = FetchPool(client_factory(fake), workers=2, queue_size=4)
    try:
        pool.submit(Job("a", None, many))
        time.sleep(0.3)
        assert pool.results.qsize() == 4  # bounded: the worker waits for the writer
        payloads = [m.payload for m in collect(pool, 1) if isinstance(m, Piece)]
    finally:
        pool.stop()
    assert payloads == list(range(50))


def stubborn(attempts: List[str]) -> Callable[[Flux0, Callable[[Any], None]], Optional[int]]:
    """A job that swallows connection errors and calls again, three times."""

    def run(client: Flux0, emit: Callable[[Any], None]) -> Optional[int]:
        for _ in range(3):
            try:
                client.sessions.list_events("stuck")
            except APIConnectionError as exc:
                attempts.append(type(exc).__name__)
        return None

    return run


def test_a_cut_job_that_calls_again_is_cut_again_and_its_worker_lives_on(fake: FakeServer) -> None:
    route(fake, stall="stuck")
    attempts: List[str] = []
    pool = FetchPool(client_factory(fake, read=60), workers=1, deadline=0.3)
    try:
        pool.submit(Job("stuck", None, stubborn(attempts)))
        started = time.monotonic()
        finished: Optional[Finished] = None
        while finished is None and time.monotonic() - started < 30:
            pool.supervise()  # each round cuts the job's next call too
            try:
                message = pool.results.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(message, Finished):
                finished = message
        waited = time.monotonic() - started
        pool.submit(job("ok"))  # the same worker and client, usable again
        (ok,) = [m for m in collect(pool, 1) if isinstance(m, Finished)]
    finally:
        pool.stop()
    assert attempts == ["RequestAborted"] * 3  # every call it made ended by its client's abort()
    assert finished is not None and isinstance(finished.error, DeadlineExceeded)
    assert waited < 10  # not three 60 s read timeouts
    assert ok.error is None and ok.value == 3


def test_stop_also_ends_a_job_that_calls_again(fake: FakeServer) -> None:
    route(fake, stall="stuck")
    attempts: List[str] = []
    pool = FetchPool(client_factory(fake, read=60), workers=2, deadline=600)
    pool.submit(Job("stuck", None, stubborn(attempts)))
    deadline = time.monotonic() + 10
    while not any("stuck" in r.path for r in fake.requests) and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    pool.stop(grace=10)
    assert not any(t.is_alive() for t in pool._threads)
    assert time.monotonic() - started < 5
    assert attempts == ["RequestAborted"] * 3
