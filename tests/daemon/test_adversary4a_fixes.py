"""Outage and throttling defects adversary hadv4 found in the daemon (issue 15), each pinned by
a test named after its repro (``/work/wt/hadv4/repros/NN-*.py`` at the time).

The rule under test (flux0sync.engine's docstring): a request that got no answer status, or a
429/502/503/504 answer, pauses every request (a busy answer for its ``Retry-After``); anything
else fails that session alone.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any, Dict, List, Optional

import pytest
from flux0sync.engine import _outage
from flux0sync.schedule import Policy
from flux0sync.store import Store
from hypothesis import given
from hypothesis import strategies as st

from flux0lite import APIConnectionError, ConnectTimeout, ReadTimeout, StreamError
from flux0lite.errors import error_for_status
from tests.daemon.helpers import archive_rows, quick_engine, run_for, run_until
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, Responder, raw_response

Switch = Dict[str, bool]


engine = functools.partial(quick_engine, idle_max=0.4)


def sessions(fake_flux0: FakeFlux0, count: int) -> List[str]:
    agent = fake_flux0.add_agent()
    ids = [fake_flux0.add_session(agent, f"s{i}") for i in range(count)]
    for sid in ids:
        fake_flux0.add_events(sid, 1)
    return ids


def while_broken(fake: FakeServer, broken: Responder) -> Switch:
    """Every GET the fake flux0 serves answers with ``broken`` while ``switch["on"]`` holds."""
    switch = {"on": True}
    lock = threading.Lock()
    for path in ("/api/agents", "/api/agents/*", "/api/sessions", "/api/sessions/*"):
        healthy = fake.find("GET", path)
        assert healthy is not None

        def respond(req: Request, conn: Conn, healthy: Responder = healthy) -> None:
            with lock:
                on = switch["on"]
            (broken if on else healthy)(req, conn)

        fake.on("GET", path, respond)
    return switch


def hang_up(req: Request, conn: Conn) -> None:
    conn.close()  # accepted, then closed before any status line: a proxy with no backend


def answer(status: int, headers: Optional[Dict[str, str]] = None) -> Responder:
    def respond(req: Request, conn: Conn) -> None:
        body = b'{"detail": "busy"}'
        conn.send(raw_response(status, body, {"content-type": "application/json", **(headers or {})}))

    return respond


def requests_since(fake: FakeServer, start: int) -> int:
    return len(fake.requests) - start


# -- repro 02: connections closed before any answer are an outage ------------------------------


def test_daemon_connections_closed_before_any_status_pause_every_request(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    ids = sessions(fake_flux0, 20)
    running = engine(store, fake, workers=4, max_rps=50.0)
    run_until(running, lambda: set(archive_rows(store.path)) == set(ids), 10)
    switch = while_broken(fake, hang_up)
    start = len(fake.requests)
    outages: List[float] = []
    running.on_outage = lambda error, wait: outages.append(wait)
    totals = run_for(running, 4.0)
    # paused (2 s, then 4 s), one probe after each pause: not 50 requests a second
    assert requests_since(fake, start) <= 4 + 2, requests_since(fake, start)
    assert outages[:2] == [2.0, 4.0]
    assert not totals.failing and all(row.errors == 0 for row in store.session_statuses())
    switch["on"] = False
    fake_flux0.add_events(ids[0], 1)
    caught_up = lambda: len(archive_rows(store.path).get(ids[0], [])) >= 2  # noqa: E731
    run_until(running, caught_up, 10)  # the rest of the 4 s pause, then everything catches up
    assert [offset for offset, _ in archive_rows(store.path)[ids[0]]] == [0, 1]  # caught up, exactly once


# -- repro 03: a connect timeout is an outage, a read timeout is not ---------------------------


def test_a_connect_timeout_is_an_outage_and_a_read_timeout_or_a_cut_answer_is_not() -> None:
    assert _outage(ConnectTimeout("connect timed out"))  # the request never left
    assert _outage(APIConnectionError("connection reset before the status line"))
    assert not _outage(ReadTimeout("read timed out"))  # a slow answer: maybe one session's doing
    assert not _outage(StreamError("connection lost after the status"))


@given(st.integers(min_value=400, max_value=599), st.one_of(st.none(), st.text(max_size=30)))
def test_a_status_pauses_everything_exactly_when_the_server_says_it_is_busy(status: int, retry_after: Any) -> None:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    error = error_for_status(status, None, headers)
    assert _outage(error) == (status in (429, 502, 503, 504))


# -- repro 06: Retry-After is honoured, 502/503/504 are waited out -----------------------------


def test_daemon_429_with_retry_after_pauses_every_request_for_it(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    ids = sessions(fake_flux0, 10)
    running = engine(store, fake, workers=4, max_rps=50.0)
    run_until(running, lambda: set(archive_rows(store.path)) == set(ids), 10)
    while_broken(fake, answer(429, {"retry-after": "30"}))
    start = len(fake.requests)
    outages: List[float] = []
    running.on_outage = lambda error, wait: outages.append(wait)
    stop_at: List[float] = []

    def stop() -> bool:
        if time.monotonic() > began + 1.5:  # ~40 requests unpaused
            stop_at.append(time.monotonic())
            return True
        return False

    running.should_stop = stop
    began = time.monotonic()
    totals = running.run()
    returned = time.monotonic()
    assert outages == [30.0]  # as the server asked (under max_backoff's 300 s)
    assert requests_since(fake, start) <= 4  # the polls in flight when the first 429 came back
    assert not totals.failing and totals.failed_polls == 0
    assert returned - stop_at[0] < 1.0  # a stop during the pause is prompt


def test_retry_after_is_capped_at_max_backoff_and_a_bare_503_pauses_the_outage_step(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sessions(fake_flux0, 3)
    policy = Policy(interval=0.2, idle_max=0.4, jitter=0.0, max_backoff=1.0)
    running = engine(store, fake, workers=1, policy=policy)
    while_broken(fake, answer(429, {"retry-after": "99999999999999999999"}))
    outages: List[float] = []
    running.on_outage = lambda error, wait: outages.append(wait)
    run_until(running, lambda: len(outages) >= 2, 5)  # the second: after the first pause's probe
    assert all(wait == 1.0 for wait in outages)
    plain = engine(store, fake, workers=1)
    while_broken(fake, answer(503))
    waits: List[float] = []
    plain.on_outage = lambda error, wait: waits.append(wait)
    run_until(plain, lambda: bool(waits), 5)
    assert waits[:1] == [2.0]  # the outage's doubling, from 2 s


@pytest.mark.parametrize("status", [502, 503, 504, 429])
def test_once_a_brief_busy_spell_is_waited_out_and_the_pass_succeeds(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0, status: int
) -> None:
    ids = sessions(fake_flux0, 5)
    switch = while_broken(fake, answer(status, {"retry-after": "1"}))
    outages: List[float] = []

    def server_back(error: Any, wait: float) -> None:  # a server restart behind a proxy, over by the probe
        outages.append(wait)
        switch.update(on=False)

    totals = engine(store, fake, once=True, workers=2, on_outage=server_back).run()
    assert outages[:1] == [1.0]  # the busy answer's Retry-After was waited out
    assert totals.outage is None and not totals.failing and totals.ok
    assert sorted(totals.synced) == sorted(ids)
    assert set(archive_rows(store.path)) == set(ids)


def test_once_busy_polls_are_polled_again_after_the_pause(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    ids = sessions(fake_flux0, 4)
    healthy = fake.find("GET", "/api/sessions/*")
    assert healthy is not None
    state = {"busy": 2}
    lock = threading.Lock()

    def first_polls_busy(req: Request, conn: Conn) -> None:
        with lock:
            busy = req.path.endswith("/events") and state["busy"] > 0
            state["busy"] -= busy
        (answer(503, {"retry-after": "1"}) if busy else healthy)(req, conn)

    fake.on("GET", "/api/sessions/*", first_polls_busy)
    totals = engine(store, fake, once=True, workers=1).run()
    assert totals.ok and sorted(totals.synced) == sorted(ids)


def test_once_a_busy_storm_ends_the_pass_after_a_bounded_wait(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flux0sync import engine as engine_module

    monkeypatch.setattr(engine_module, "_ONCE_PAUSES", 2)
    sessions(fake_flux0, 2)
    while_broken(fake, answer(503, {"retry-after": "0"}))
    started = time.monotonic()
    totals = engine(store, fake, once=True).run()
    assert totals.outage is not None and not totals.ok
    assert time.monotonic() - started < 10.0  # 1 s + 1 s of pauses (Retry-After 0 is 1 s)


def test_after_a_pause_any_answer_ends_the_probing_not_only_a_successful_poll(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """One request probes after a pause; a 400 proves the server up as well as a 200 would, so
    the workers go back to fetching side by side (serial probing would allow ~3 polls a second)."""
    sessions(fake_flux0, 20)
    began = time.monotonic()
    polls: List[float] = []
    lock = threading.Lock()

    def slow_refusal(req: Request, conn: Conn) -> None:
        with lock:
            polls.append(time.monotonic())
        time.sleep(0.3)
        answer(400)(req, conn)

    switch = while_broken(fake, hang_up)
    fake.on("GET", "/api/sessions/*", lambda req, conn: (hang_up if switch["on"] else slow_refusal)(req, conn))
    threading.Timer(0.3, lambda: switch.update(on=False)).start()
    running = engine(store, fake, workers=4, max_rps=50.0)
    outages: List[float] = []
    running.on_outage = lambda error, wait: outages.append(wait)
    after = lambda: [t for t in polls if t > began + 2.0]  # noqa: E731
    run_until(running, lambda: len(after()) >= 15, 4.5)  # by 4.5 s, as it was when it ran for 4.5 s
    assert outages[:1] == [2.0]
    assert len(after()) >= 15, len(after())  # 4 workers at ~3 polls a second each (30 measured; 9 serial)


@pytest.mark.parametrize(("retry_after", "max_backoff", "pause"), [("2", 300.0, 2.0), ("1000000", 2.0, 2.0)])
def test_a_session_busy_alone_backs_off_alone_after_the_first_pause(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0, retry_after: str, max_backoff: float, pause: float
) -> None:
    """One session whose events answer is always a 429 while the server serves the others (a
    per-path rate limit) paused every request again each time it was due, so every other
    conversation was archived a Retry-After late, for ever (hadv24 02). After the first pause
    the others go first; its next busy answer is its own failure: it backs off alone, no sooner
    than its Retry-After (up to max_backoff, as a pause), and the others keep their pace."""
    good, bad = sessions(fake_flux0, 2)
    events = fake.find("GET", "/api/sessions/*")
    assert events is not None
    bad_polls: List[float] = []

    def respond(req: Request, conn: Conn) -> None:
        if req.path.startswith(f"/api/sessions/{bad}/events"):
            bad_polls.append(time.monotonic())
            answer(429, {"retry-after": retry_after})(req, conn)
        else:
            events(req, conn)  # type: ignore[misc]

    fake.on("GET", "/api/sessions/*", respond)
    policy = Policy(interval=0.2, idle_max=0.4, jitter=0.0, max_backoff=max_backoff)
    running = engine(store, fake, workers=4, max_rps=50.0, policy=policy)
    outages: List[float] = []
    running.on_outage = lambda error, wait: outages.append(wait)
    run_until(running, lambda: len(bad_polls) >= 2 and good in archive_rows(store.path), 15)
    lags: List[float] = []
    for _ in range(4):  # a conversation on the good session, each reply archived within ~interval
        fake_flux0.add_events(good, 1)
        added, count = time.monotonic(), len(fake_flux0.events[good])
        run_until(running, lambda: len(archive_rows(store.path).get(good, [])) == count, 10)
        lags.append(time.monotonic() - added)
    totals = run_for(running, 2.5)
    assert outages == [pause], outages  # the first busy answer paused everything; none after it
    assert max(lags) < 1.5, lags
    assert bad in totals.failing and 3 <= len(bad_polls) <= 5, bad_polls
    gaps = [b - a for a, b in zip(bad_polls[1:], bad_polls[2:])]
    assert all(pause <= gap < pause + 1.0 for gap in gaps), gaps  # its Retry-After, up to max_backoff


def test_once_waits_out_a_busy_spell_that_meets_answers_in_flight(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """A busy spell that begins while slow polls are in flight: their answers come in during the
    pause, and --once still waits the spell out rather than failing the sessions that answered
    busy (hadv26 03: they counted as busy alone, and the pass exited 1)."""
    ids = sessions(fake_flux0, 12)
    healthy = fake.find("GET", "/api/sessions/*")
    assert healthy is not None
    polls: List[float] = []
    began: List[float] = []

    def respond(req: Request, conn: Conn) -> None:
        if "/events" in req.path:
            polls.append(time.monotonic())
            if len(polls) > 2 and not began:
                began.append(time.monotonic())
            if began and time.monotonic() - began[0] < 1.5:
                answer(503, {"retry-after": "1"})(req, conn)
                return
            time.sleep(0.3)
        healthy(req, conn)  # type: ignore[misc]

    fake.on("GET", "/api/sessions/*", respond)
    totals = engine(store, fake, workers=4, max_rps=50.0, once=True).run()
    assert totals.ok and not totals.failing, totals.errors
    assert set(archive_rows(store.path)) == set(ids)


def test_once_a_session_busy_alone_is_retried_after_the_others(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """--once retries a session whose busy answer paused every request after the other sessions,
    so a pass pauses a bounded number of times (6 in a row at most, once only it is left), not
    once per few sessions (hadv27 01: it was retried first after each pause: 19 pauses and 55 s
    for 40 sessions)."""
    ids = sessions(fake_flux0, 30)
    bad = ids[0]
    healthy = fake.find("GET", "/api/sessions/*")
    assert healthy is not None

    def respond(req: Request, conn: Conn) -> None:
        if req.path.startswith(f"/api/sessions/{bad}/events"):
            answer(429, {"retry-after": "1"})(req, conn)
        else:
            healthy(req, conn)  # type: ignore[misc]

    fake.on("GET", "/api/sessions/*", respond)
    running = engine(store, fake, workers=4, max_rps=50.0, once=True)
    outages: List[float] = []
    running.on_outage = lambda error, wait: outages.append(wait)
    totals = running.run()
    assert not totals.ok and set(archive_rows(store.path)) == set(ids) - {bad}
    assert len(outages) <= 9, outages  # a few while the others finish, then 6 in a row at most
