"""Defects an adversary found in the daemon's scale features (issue 15), each pinned by the
test that first failed on it.

Every test names the repro it comes from (``/work/wt/hadv3/repros/NN-*.py`` at the time).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Dict, Iterator, List, Optional

import pytest
from flux0sync.jobs import fetch_events
from flux0sync.store import Store
from hypothesis import given, settings
from hypothesis import strategies as st

from flux0lite import APIConnectionError, Flux0Error, ReadTimeout, RequestAborted, StreamError
from tests.daemon.helpers import archive_rows, quick_engine, run_for, run_until
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, raw_response

engine = functools.partial(quick_engine, idle_max=0.4)


def cut_after_status(req: Request, conn: Conn) -> None:
    """Status 200 and the start of the body, then a reset: what a server that crashes while
    serialising one poisoned session sends."""
    conn.send(raw_response(200, b'{"data": [', {"content-type": "application/json", "content-length": "1000"}))
    conn.reset()


def sessions_with_one_cut(fake_flux0: FakeFlux0, healthy: int) -> "tuple[str, List[str]]":
    agent = fake_flux0.add_agent()
    bad = fake_flux0.add_session(agent, "bad")
    fake_flux0.add_events(bad, 1)
    ids = [fake_flux0.add_session(agent, f"s{i}") for i in range(healthy)]
    for sid in ids:
        fake_flux0.add_events(sid, 2)
    fake_flux0.server.on("GET", f"/api/sessions/{bad}/events", cut_after_status)
    return bad, ids


# -- repro 11: --once, one answer cut after its status ends the whole pass -----------------------


def test_once_an_answer_cut_after_its_status_fails_that_session_alone(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    bad, healthy = sessions_with_one_cut(fake_flux0, 20)
    totals = engine(store, fake, once=True, workers=1).run()
    archived = archive_rows(store.path)
    assert totals.outage is None  # the server answered: it is up
    assert totals.failing == {bad} and bad in totals.failed
    assert set(healthy) <= set(archived) and bad not in archived
    assert sorted(totals.synced) == sorted(healthy)
    assert not totals.ok  # the pass still says it failed (exit 1), for that one session


def test_once_a_server_that_hangs_up_before_answering_still_ends_the_pass(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """The other side of the line: no answer at all is an outage, and the pass ends with it."""

    def hang_up(req: Request, conn: Conn) -> None:
        conn.reset()  # before any status: the request got no answer

    agent = fake_flux0.add_agent()
    for i in range(5):
        fake_flux0.add_events(fake_flux0.add_session(agent, f"s{i}"), 1)
    fake.on("GET", "/api/sessions/*", hang_up)  # the listing (its own route) still answers
    totals = engine(store, fake, once=True, workers=1).run()
    assert isinstance(totals.outage, APIConnectionError)
    assert not totals.synced and not totals.failing and not archive_rows(store.path)


# -- repro 10: the running daemon paused every poll after each attempt of the cut session --------


def test_daemon_an_answer_cut_after_its_status_backs_off_that_session_alone(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    bad, healthy = sessions_with_one_cut(fake_flux0, 5)
    running = engine(store, fake, workers=2)
    outages: List[str] = []
    running.on_outage = lambda error, wait: outages.append(str(error))
    totals = run_for(running, 4.0)
    polls = [r.path.split("/")[3] for r in fake.requests if r.path.endswith("/events")]
    assert not outages  # nothing paused: the server answered every request
    assert totals.failing == {bad}
    # backed off alone: 1-2 s after its first failure, 2-4 s after its second (jitter aside)
    assert 1 <= polls.count(bad) <= 3
    assert min(polls.count(sid) for sid in healthy) >= 4  # the others kept their pace (0.2-0.4 s)
    assert set(healthy) <= set(archive_rows(store.path))
    (errors,) = [row for row in store.session_statuses() if row.session_id == bad]
    assert errors.errors == polls.count(bad) and "connection lost" in (errors.last_error or "")


def test_daemon_a_sessions_listing_cut_after_its_status_pauses_nothing(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture
) -> None:
    """A listing cut the same way is that listing's failure (tried again next round), not an outage."""
    agent = fake_flux0.add_agent()
    fake_flux0.add_events(fake_flux0.add_session(agent), 1)
    fake.on("GET", "/api/sessions", cut_after_status)
    running = engine(store, fake)
    outages: List[str] = []
    running.on_outage = lambda error, wait: outages.append(str(error))
    with caplog.at_level(logging.WARNING, logger="flux0sync"):
        # the failure is taken for an outage or not when it is logged: no need to run on after it
        run_until(running, lambda: "sessions listing failed" in caplog.text, 1.0)
    assert not outages and fake.count("GET", "/api/sessions") >= 1
    assert "sessions listing failed" in caplog.text and "connection lost" in caplog.text


class _Response:
    """An answer whose status has arrived; its body is ``pieces``, then ``fault`` (if any)."""

    content_type = "application/json"

    def __init__(self, headers: Dict[str, str], pieces: List[bytes], fault: Optional[Flux0Error]) -> None:
        self.headers, self.pieces, self.fault = headers, pieces, fault

    def iter_bytes(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.fault is not None:
            raise self.fault

    def close(self) -> None:
        pass


class _Client:
    def __init__(self, response: _Response) -> None:
        self.response = response

    def request_stream(self, method: str, path: str, params: Any = None) -> _Response:
        return self.response


def _poll(headers: Dict[str, str], pieces: List[bytes], fault: Flux0Error) -> "tuple[List[str], Any]":
    """The events a poll hands over (streamed, or the whole small answer) and how it ended."""
    handed: List[str] = []
    try:
        value = fetch_events("s", 0, 3)(_Client(_Response(headers, pieces, fault)), handed.extend)  # type: ignore[arg-type]
    except Flux0Error as exc:
        return [e.text for e in handed], (type(exc), str(exc))
    return [e.text for e in handed], value


@settings(deadline=None)
@given(
    events=st.integers(0, 6),
    cut=st.integers(0, 10_000),
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=6),
    chunked=st.booleans(),
    garbage=st.binary(max_size=8),
)
def test_a_connection_lost_mid_body_is_the_same_answer_as_a_body_cut_short(
    events: int, cut: int, sizes: List[int], chunked: bool, garbage: bytes
) -> None:
    """The contract of jobs._answer_bytes: once the status has arrived, a lost connection is the
    answer's fault, a StreamError with the connection error's message, and the poll keeps what
    a body cut short there keeps (byte for byte); a timeout and an abort stay what they are."""
    docs = ",".join(f'{{"id": "e{n}", "offset": {n}}}' for n in range(events))
    body = (f'{{"data": [{docs}]}}'.encode() + garbage)[: cut % 400]
    pieces, start = [], 0
    for size in sizes * 40:
        if start >= len(body):
            break
        pieces.append(body[start : start + size])
        start += size
    headers = {"transfer-encoding": "chunked"} if chunked else {"content-length": str(len(body) + 5)}
    message = "GET x: connection lost mid-stream: [Errno 104] Connection reset by peer"
    lost = _poll(headers, pieces, APIConnectionError(message))
    short = _poll(headers, pieces, StreamError(message))
    assert lost == short  # the same events kept, the same error (the fault, or the JSON's before it)
    assert lost[1][0] is not APIConnectionError
    for kept in (ReadTimeout("GET x: read timeout"), RequestAborted("GET x: aborted by the client")):
        texts, (kind, _) = _poll(headers, pieces, kept)
        assert texts == lost[0] and kind is (type(kept) if lost[1] == (StreamError, message) else lost[1][0])
