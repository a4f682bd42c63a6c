"""A small events answer (read whole by its Content-Length) that goes wrong keeps what a streamed one keeps.

Each test pins a defect an adversary found in the whole-body path (``hadv2`` repros 05, 03
and 02): an answer that outlasts the per-session deadline, one cut short of its length, and a
chunked one that also declares a length. In each, the complete events that arrived are stored
once, with their checkpoint, and later polls go on from there, as they do when the same bytes
are streamed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Tuple

from flux0sync.backend import open_store
from flux0sync.sync import PassResult, Syncer

from flux0lite import Flux0, Retry, Timeout
from tests.daemon.helpers import archive_rows, assert_archive_equals_server, server_rows
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, chunked, raw_response

Rows = Dict[str, List[Tuple[int, str]]]


def _client(fake: FakeServer) -> Flux0:
    return Flux0(fake.url, timeout=Timeout(5, 5), retry=Retry(total=0))


def _session(fake_flux0: FakeFlux0, events: int) -> str:
    sid = fake_flux0.add_session(fake_flux0.add_agent())
    fake_flux0.add_events(sid, events, text="x" * 200)
    return sid


def _body(fake_flux0: FakeFlux0, sid: str, req: Request) -> bytes:
    low = int(req.query.get("min_offset", "0"))
    return json.dumps({"data": [e for e in fake_flux0.events[sid] if e["offset"] >= low]}).encode()


def _pass(fake: FakeServer, db: str, deadline: float = 120.0) -> Tuple[PassResult, Rows]:
    """One ``--once`` pass with a Syncer of its own (a failed session is not held back by an
    earlier pass's backoff); what it did and what the archive then holds."""
    store = open_store(db)
    try:
        syncer = Syncer(_client(fake), store, session_deadline=deadline, make_client=lambda user: _client(fake))
        result = syncer.run_pass()
    finally:
        store.close()
    return result, archive_rows(db)


def test_a_small_answer_slower_than_the_deadline_keeps_what_arrived_each_poll(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """hadv2 05: a whole answer taking longer than the deadline stored nothing, poll after poll."""
    sid = _session(fake_flux0, 30)

    def trickle(req: Request, conn: Conn) -> None:  # a slow link: 500 bytes every 50 ms
        body = _body(fake_flux0, sid, req)
        head = {"content-type": "application/json", "connection": "close"}
        try:
            conn.send(raw_response(200, b"", {**head, "content-length": str(len(body))}, length=False))
            for at in range(0, len(body), 500):
                conn.send(body[at : at + 500])
                time.sleep(0.05)
        except OSError:
            pass  # cut off at the deadline

    fake.on("GET", f"/api/sessions/{sid}/events", trickle)
    whole = server_rows(fake_flux0)[sid]
    db = str(tmp_path / "a.sqlite3")
    stored = 0
    for _ in range(12):
        result, rows = _pass(fake, db, deadline=0.6)
        now = len(rows.get(sid, []))
        assert rows.get(sid, []) == whole[:now]  # a prefix, each event once
        if result.ok:
            break
        assert result.sessions_cut == 1 and result.events_inserted == now - stored > 0, result.errors
        stored = now
    assert stored > 0 and result.ok  # it took several polls, each one kept what came in time
    assert_archive_equals_server(db, fake_flux0)


def _serve_cut_short(fake: FakeServer, fake_flux0: FakeFlux0, sid: str, framing: str) -> None:
    """The first 60 % of each answer, declared whole (``length``) or in one chunk (``chunked``), then the end."""

    def respond(req: Request, conn: Conn) -> None:
        body = _body(fake_flux0, sid, req)
        cut = body[: len(body) * 6 // 10] if len(body) > 600 else body
        head = {"content-type": "application/json", "connection": "close"}
        if framing == "length":
            head["content-length"] = str(len(body))
            conn.send(raw_response(200, b"", head, length=False) + cut)
        else:
            head["transfer-encoding"] = "chunked"
            conn.send(raw_response(200, b"", head, length=False) + chunked(cut))
        conn.close()

    fake.on("GET", f"/api/sessions/{sid}/events", respond)


def test_a_small_answer_cut_short_stores_the_events_before_the_cut_as_streaming_does(
    archive_db: str, tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """hadv2 03: a body ending before its Content-Length lost the complete events before the cut."""
    sid = _session(fake_flux0, 10)
    whole = server_rows(fake_flux0)[sid]
    path = f"/api/sessions/{sid}/events"
    complete = fake.find("GET", path)
    assert complete is not None
    _serve_cut_short(fake, fake_flux0, sid, "chunked")
    streamed_db = str(tmp_path / "streamed.sqlite3")
    streamed = [_pass(fake, streamed_db) for _ in range(3)]
    _serve_cut_short(fake, fake_flux0, sid, "length")
    polls = [_pass(fake, archive_db) for _ in range(3)]
    for (result, rows), (streamed_result, streamed_rows) in zip(polls, streamed):
        assert 0 < len(rows[sid]) < len(whole) and rows[sid] == whole[: len(rows[sid])]
        assert rows == streamed_rows and result.events_inserted == streamed_result.events_inserted > 0
        assert result.sessions_failed == 1 and "cut off" in result.errors[-1]
    fake.on("GET", path, complete)  # whole again
    result, _ = _pass(fake, archive_db)
    assert result.ok and result.events_inserted == len(whole) - len(polls[-1][1][sid])  # nothing twice
    assert_archive_equals_server(archive_db, fake_flux0)


def test_a_chunked_answer_that_also_declares_a_length_is_read_by_its_chunks(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """hadv2 02: Transfer-Encoding overrides Content-Length (RFC 9112 6.3); it was refused "over its length"."""
    sid = _session(fake_flux0, 5)

    def respond(req: Request, conn: Conn) -> None:
        body = _body(fake_flux0, sid, req)
        head = {
            "content-type": "application/json",
            "transfer-encoding": "chunked",
            "content-length": str(len(body) - 40),
        }
        pieces = b"".join(chunked(body[at : at + 64]) for at in range(0, len(body), 64))
        conn.send(raw_response(200, b"", head, length=False) + pieces + b"0\r\n\r\n")

    fake.on("GET", f"/api/sessions/{sid}/events", respond)
    db = str(tmp_path / "a.sqlite3")
    result, _ = _pass(fake, db)
    assert result.ok and result.events_inserted == 5, result.errors
    assert_archive_equals_server(db, fake_flux0)
