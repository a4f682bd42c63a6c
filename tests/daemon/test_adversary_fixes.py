"""Defects an adversary found in the daemon, each pinned by the test that first failed on it.

Every test names the repro it comes from (``/work/wt/hadv/repros/NN-*.py`` at the time); each
checks that a hostile answer costs at most its own session and loses nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from flux0sync import service
from flux0sync.backend import open_store
from flux0sync.jobs import Warnings, fetch_events, list_agents
from flux0sync.rows import RawEvent
from flux0sync.stopflag import StopFlag
from flux0sync.store import Store, StoreError
from flux0sync.sync import Syncer

from flux0lite import APIConnectionError, Flux0, Retry, Timeout
from tests.daemon.helpers import client_for, execute, offsets, one_session, quick_engine, run_until, serve_events_body
from tests.daemon.hostile import event, serve_bytes, serve_events
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, chunked, json_response, raw_response
from tests.netfixtures import refused_port

MAX_OFFSET = 2**63 - 1


engine = functools.partial(quick_engine, idle_max=1.6)


def serve_ignoring_min_offset(fake_flux0: FakeFlux0, session_id: str, docs: Callable[[], List[Dict[str, Any]]]) -> None:
    """A hostile server: every answer holds every event, whatever ``min_offset`` asks for."""

    def respond(req: Request, conn: Conn) -> None:
        body = json.dumps({"data": docs()}).encode()
        conn.send(raw_response(200, body, {"content-type": "application/json"}))

    fake_flux0.server.on("GET", f"/api/sessions/{session_id}/events", respond)


# -- 01: the largest storable offset -------------------------------------------------------------


def test_a_checkpoint_at_the_largest_offset_neither_crashes_nor_stops_later_passes(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = one_session(fake_flux0)
    docs = [event(sid, 0), event(sid, MAX_OFFSET)]
    serve_ignoring_min_offset(fake_flux0, sid, lambda: docs)
    store = open_store(archive_db)
    try:
        syncer = Syncer(client_for(fake), store, gap_patience=0)
        assert syncer.run_pass().ok
        # the hole 1 .. 2**63 - 2 is held (wider than what follows it: see flux0sync.gaps), so the
        # checkpoint is put at the largest offset as an archive can hold it
        assert store.checkpoint(sid) == 0
        execute(archive_db, "UPDATE sync_state SET last_offset = ? WHERE session_id = ?", (MAX_OFFSET, sid))
        for _ in range(3):  # each pass starts from 2**63 - 1
            result = syncer.run_pass()
            assert result.ok, result.errors
        assert store.checkpoint(sid) == MAX_OFFSET
        assert offsets(archive_db, sid) == [0, MAX_OFFSET]
    finally:
        store.close()


# -- 02: a session named like a listing job --------------------------------------------------------


def test_a_session_called_agents_is_polled_while_discovery_lists_the_agents(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    for sid in ("agents", "listing", "listing  "):  # the names the discovery jobs had
        fake_flux0.sessions[sid] = {"id": sid, "agent_id": agent, "user_id": "u", "created_at": "2026-11-25T00:00:00Z"}
        fake_flux0.events[sid] = []
        fake_flux0.add_events(sid, 2)
    slow = fake_flux0.server.find("GET", "/api/sessions/agents/events")
    assert slow is not None

    def respond_slowly(req: Request, conn: Conn) -> None:
        time.sleep(0.8)  # in flight when the next discovery round starts
        slow(req, conn)

    for sid in ("agents", "listing", "listing  "):
        fake_flux0.server.on("GET", f"/api/sessions/{sid}/events", respond_slowly)
    archive = open_store(archive_db)
    try:
        # raised ValueError ("a job for 'agents' is already in flight"): a round comes every 0.3 s,
        # while the polls take 0.8 s
        polled = lambda: all(offsets(archive_db, sid) == [0, 1] for sid in ("agents", "listing", "listing  "))  # noqa: E731
        run_until(engine(archive, fake), polled, 2.5)
        assert {sid: offsets(archive_db, sid) for sid in ("agents", "listing", "listing  ")} == {
            "agents": [0, 1],
            "listing": [0, 1],
            "listing  ": [0, 1],
        }
    finally:
        archive.close()


# -- 03: an event without an id ------------------------------------------------------------------------


def test_the_events_before_one_without_an_id_are_stored_and_the_session_fails_alone(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    sid, other = fake_flux0.add_session(agent), fake_flux0.add_session(agent)
    fake_flux0.add_events(other, 3)
    idless = event(sid, 3)
    del idless["id"]
    docs = [event(sid, 0), event(sid, 1), event(sid, 2), idless, event(sid, 4)]
    serve_events(fake_flux0, sid, lambda: docs)
    store = open_store(archive_db)
    try:
        for _ in range(2):  # a new Syncer: no backoff between the passes
            result = Syncer(client_for(fake), store, batch_size=500).run_pass()
            assert result.sessions_failed == 1 and "no string id" in result.errors[0]
            assert offsets(archive_db, sid) == [0, 1, 2] and store.checkpoint(sid) == 2
            assert offsets(archive_db, other) == [0, 1, 2]
    finally:
        store.close()


# -- 13: one configured session the server answers badly ----------------------------------------------


def test_one_bad_configured_session_does_not_keep_the_others_from_being_archived(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture
) -> None:
    good = one_session(fake_flux0)
    fake_flux0.add_events(good, 2)
    fake_flux0.server.on("GET", "/api/sessions/malformed", json_response(200, {"id": "malformed", "agent_id": 12345}))
    fake_flux0.server.on("GET", "/api/sessions/broken", json_response(500, {"detail": "boom"}))
    db = str(tmp_path / "a.sqlite3")
    store = open_store(db)
    try:
        with caplog.at_level(logging.WARNING, logger="flux0sync"):
            result = Syncer(client_for(fake), store, session_ids=["malformed", good, "broken"]).run_pass()
        assert result.sessions_synced == 1 and offsets(db, good) == [0, 1]
        said = "\n".join(r.getMessage() for r in caplog.records)
        assert "lookup of session malformed failed" in said and "lookup of session broken failed" in said
    finally:
        store.close()


def test_a_refused_connection_still_fails_the_configured_sessions_round(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{refused_port()}"
    store = open_store(str(tmp_path / "a.sqlite3"))
    try:
        client = Flux0(url, timeout=Timeout(2, 2), retry=Retry(total=0))
        with pytest.raises(APIConnectionError):
            Syncer(client, store, session_ids=["one"]).run_pass()
    finally:
        store.close()


# -- 07: a number past Python's int-from-text limit ---------------------------------------------------


def test_an_integer_of_5000_digits_is_archived_with_its_raw_text_and_a_null_column(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = one_session(fake_flux0)
    huge = "7" * 5000  # valid JSON; int() refuses more than 4300 digits
    texts = [json.dumps(event(sid, o)) for o in range(4)]
    texts[1] = texts[1].replace('"deleted": false', f'"deleted": false, "n": {huge}')
    texts.append(json.dumps(event(sid, 0, "huge-offset")).replace('"offset": 0', f'"offset": {huge}'))
    serve_bytes(fake_flux0, sid, ('{"data": [' + ", ".join(texts) + "]}").encode())
    store = open_store(archive_db)
    try:
        for _ in range(2):  # the second pass finds every event stored, and no clash
            result = Syncer(client_for(fake), store).run_pass()
            assert result.ok, result.errors
        rows = execute(
            archive_db,
            'SELECT id, "offset", raw FROM events WHERE session_id = ? ORDER BY "offset" IS NULL, "offset"',
            (sid,),
        )
        assert [(eid, offset) for eid, offset, _ in rows] == [
            (f"{sid}-e0", 0),
            (f"{sid}-e1", 1),
            (f"{sid}-e2", 2),
            (f"{sid}-e3", 3),
            ("huge-offset", None),  # the column that cannot hold it is NULL
        ]
        assert [raw for _, _, raw in rows] == [texts[0], texts[1], texts[2], texts[3], texts[4]]  # as sent
        assert store.checkpoint(sid) == 3
        assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 0
    finally:
        store.close()


@pytest.mark.parametrize("framing", ["whole", "chunked"])  # read whole by the writer, or streamed
def test_a_byte_that_is_not_utf8_is_kept_and_loses_no_event(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0, framing: str
) -> None:
    sid = one_session(fake_flux0)
    texts = [json.dumps(event(sid, o)).encode() for o in range(4)]
    texts[1] = texts[1].replace(b'"deleted": false', b'"deleted": false, "word": "caf\xe9"')
    body = b'{"data": [' + b", ".join(texts) + b"]}"
    serve_events_body(fake_flux0, sid, body, framing)
    store = open_store(archive_db)
    try:
        for _ in range(2):  # the second pass finds every event stored, and no clash
            result = Syncer(client_for(fake), store).run_pass()
            assert result.ok, result.errors
        rows = execute(archive_db, 'SELECT "offset", raw FROM events WHERE session_id = ? ORDER BY "offset"', (sid,))
        assert [offset for offset, _ in rows] == [0, 1, 2, 3]
        word = json.loads(json.loads(rows[1][1]))["word"]  # raw: the event's text as a JSON string
        assert word == "caf\udce9" and word.encode("utf-8", "surrogateescape") == b"caf\xe9"  # the byte comes back
        assert store.checkpoint(sid) == 3
        assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 0
    finally:
        store.close()


# -- 14: a hole in front of a backlog longer than one deadline can stream -----------------------------


def serve_slowly(fake_flux0: FakeFlux0, session_id: str, docs: List[Dict[str, Any]], per_second: float) -> None:
    """A slow server: the events at or above ``min_offset``, one every ``1/per_second`` s."""

    def respond(req: Request, conn: Conn) -> None:
        low = int(req.query.get("min_offset", "0"))
        conn.send(
            raw_response(200, b"", {"content-type": "application/json", "transfer-encoding": "chunked"}, length=False)
        )
        try:
            conn.send(chunked(b'{"data": ['))
            sent = [doc for doc in docs if doc["offset"] >= low]
            for i, doc in enumerate(sent):
                conn.send(chunked((b", " if i else b"") + json.dumps(doc).encode()))
                time.sleep(1 / per_second)
            conn.send(chunked(b"]}") + b"0\r\n\r\n")
        except OSError:
            conn.keep_alive = False

    fake_flux0.server.on("GET", f"/api/sessions/{session_id}/events", respond)


@pytest.mark.parametrize("patience", [0.0, 3600.0])
def test_a_backlog_behind_a_hole_moves_on_at_every_poll_and_the_hole_is_recorded(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0, patience: float
) -> None:
    sid = one_session(fake_flux0)
    docs = [event(sid, o) for o in [0, *range(2, 301)]]  # offset 1 never comes
    serve_slowly(fake_flux0, sid, docs, per_second=200)  # 1.5 s for the whole backlog
    archive = open_store(archive_db)
    try:
        target = engine(archive, fake, fetch_deadline=0.6, batch_size=10, gap_patience=patience)
        seen: Dict[str, Any] = {}

        def tail_arrived_then_hole_filled() -> bool:
            # each poll used to start at the hole again: the tail never came, the hole was never recorded
            if "tail" not in seen and len(offsets(archive_db, sid)) == 300 and archive.gaps(sid):
                seen["tail"] = offsets(archive_db, sid)
                seen["gaps"] = archive.gaps(sid)
                seen["checkpoint"] = archive.checkpoint(sid)
                docs.insert(1, event(sid, 1, "late"))  # the hole is filled: a later poll still asks for it
            return archive.checkpoint(sid) == 300 and not archive.gaps(sid, open_only=True)

        # looked at every 0.05 s, not at every turn of the engine's loop (a connection each on PostgreSQL)
        run_until(target, tail_arrived_then_hole_filled, seconds=30)
        assert seen["tail"] == [0, *range(2, 301)]
        (gap,) = seen["gaps"]
        assert (gap.first_offset, gap.last_offset) == (1, 1)
        # recorded and held open, not passed, whatever the patience: every whole read of this
        # backlog is cut at the deadline, and a cut read passes no gap (hadv6 09)
        assert gap.skipped_at is None and seen["checkpoint"] == 0
        assert archive.checkpoint(sid) == 300 and offsets(archive_db, sid) == list(range(301))
        assert archive.gaps(sid) == []
    finally:
        archive.close()


# -- 04: a batch of few, huge events ---------------------------------------------------------------


def test_a_batch_is_handed_over_by_size_as_well_as_by_count(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    sid = one_session(fake_flux0)
    docs = [event(sid, o, text="x" * (1024 * 1024)) for o in range(12)]  # 1 MB each, well under the event cap
    serve_events(fake_flux0, sid, lambda: docs)
    batches: List[List[Any]] = []
    with client_for(fake, timeout=10) as client:
        fetched = fetch_events(sid, 0, 500)(client, batches.append)
    batches.append(fetched.tail)  # the last batch travels with the result
    assert fetched.highest == 11 and [e.doc["offset"] for batch in batches for e in batch] == list(range(12))
    sizes = [sum(len(e.text) for e in batch) for batch in batches]
    # all 12 in one batch of 12 MB used to wait in the result queue (a few such batches: past MemoryMax)
    assert len(batches) >= 3 and max(sizes) <= 4 * 1024 * 1024 + len(batches[0][0].text), sizes


# -- 11: the agents listing and the --session retrieves were read whole -------------------------------


def test_the_agents_listing_is_streamed_in_pages_bounded_by_size(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    for i in range(12):
        fake_flux0.add_agent(name=f"{i}" + "n" * (1024 * 1024))  # 12 MB in all
    pages: List[List[Any]] = []
    with client_for(fake, timeout=10) as client:
        count = list_agents(Warnings())(client, pages.append)
    assert count == 12 and sum(len(page) for page in pages) == 12
    assert len([page for page in pages if page]) >= 3  # never the whole listing at once
    db = str(tmp_path / "a.sqlite3")
    store = open_store(db)
    try:
        assert Syncer(client_for(fake, timeout=10), store).run_pass().ok
        assert store.counts(events=False)[0] == 12  # every page stored
    finally:
        store.close()


def test_a_configured_session_with_a_huge_answer_is_skipped_not_read_whole(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture
) -> None:
    good = one_session(fake_flux0)
    fake_flux0.add_events(good, 1)
    huge = {"id": "huge", "agent_id": "a", "user_id": "u", "title": "t" * (20 * 1024 * 1024)}
    fake_flux0.server.on("GET", "/api/sessions/huge", json_response(200, huge))
    db = str(tmp_path / "a.sqlite3")
    store = open_store(db)
    try:
        with caplog.at_level(logging.WARNING, logger="flux0sync"):
            result = Syncer(client_for(fake, timeout=10), store, session_ids=["huge", good]).run_pass()
        assert result.sessions_synced == 1 and offsets(db, good) == [0]
        assert any(
            "lookup of session huge failed" in r.getMessage() and "over" in r.getMessage() for r in caplog.records
        )
    finally:
        store.close()


# -- 05: a stop signal while one batch's transaction takes seconds -----------------------------------


def wordy_events(session_id: str, count: int, words: int = 200_000) -> List[RawEvent]:
    """Events of ``words`` distinct words each (2 MB by default): their full-text indexing takes a while."""
    return [
        RawEvent.from_doc(event(session_id, o, text=" ".join(f"w{o}x{i}" for i in range(words)))) for o in range(count)
    ]


def repeatedly(action: Callable[[], None], done: threading.Event, every: float = 0.1) -> threading.Thread:
    """``action`` every ``every`` s until ``done``: one of them lands inside the write, whenever it begins."""

    def loop() -> None:
        while not done.wait(every):
            action()

    thread = threading.Thread(target=loop)
    thread.start()
    return thread


def test_a_write_interrupted_from_another_thread_is_rolled_back_whole_and_stored_once_later(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "a.sqlite3"))
    try:
        # ~0.2 s of indexing (a quarter of the signal test's words, in 4 events), hit every 10 ms;
        # storing it whole afterwards was most of this test's 3 s of CPU at 16 events of 200,000 words
        batch = wordy_events("s", 4, words=50_000)
        done = threading.Event()
        interrupter = repeatedly(store.interrupt, done, every=0.01)
        try:
            with pytest.raises(StoreError, match="interrupted"):  # ended mid-write, not left to finish
                store.write_batch("s", batch)
        finally:
            done.set()
            interrupter.join()
        assert store.counts() == (0, 0, 0) and store.checkpoint("s") == -1  # nothing of it
        store.interrupt()  # no write in progress: does nothing, the next write is not hit
        assert store.write_batch("s", batch).inserted == 4 and store.checkpoint("s") == 3
        assert next(store.search("w3x49999")).offset == 3 and store.integrity_ok()
    finally:
        store.close()


def test_sigterm_during_a_long_write_ends_it_at_once_with_nothing_half_written(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "a.sqlite3"))
    flag = StopFlag()
    previous = flag.install()
    try:
        batch = wordy_events("s", 16)
        with service._interrupt_writes_on_stop(store):
            done = threading.Event()
            killer = repeatedly(lambda: os.kill(os.getpid(), signal.SIGTERM), done)
            try:
                with pytest.raises(StoreError, match="interrupted"):  # the daemon exits 0 on it once stopping
                    store.write_batch("s", batch)
            finally:
                done.set()
                killer.join()
        assert flag.is_set
        assert store.counts() == (0, 0, 0) and store.checkpoint("s") == -1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store.close()
