"""Defects a fifth adversary found in the daemon, each pinned by a test.

Every test names the repro it comes from (``/work/wt/hadv5/repros/NN-*.py`` at the time): the
hole re-read's jump trusted an in-memory "read up to" mark and the answer's order (02, 07,
08), a session re-created under the same id lost its new conversation (03), and SIGHUP ended
a ``--once`` pass as a success (04).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from flux0sync.backend import open_store
from flux0sync.engine import Engine
from flux0sync.rows import RawEvent
from flux0sync.store import recreated_at

from tests.daemon.helpers import (
    StopWhen,
    archive_rows,
    assert_archive_equals_server,
    execute,
    exit_code,
    offsets,
    popen_daemon,
    quick_engine,
)
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request

engine = functools.partial(quick_engine, idle_max=1.0)


def run_until(target: Engine, done: Callable[[], bool], seconds: float) -> None:
    target.should_stop = StopWhen(done, seconds)
    target.run()


def session_with(fake_flux0: FakeFlux0, count: int) -> str:
    sid = fake_flux0.add_session(fake_flux0.add_agent())
    fake_flux0.add_events(sid, count)
    return sid


def min_offsets(fake: FakeServer, sid: str, since: int) -> List[str]:
    """The ``min_offset`` of each events request for ``sid`` after the first ``since`` requests."""
    path = f"/api/sessions/{sid}/events"
    return [r.query.get("min_offset", "") for r in fake.requests[since:] if r.path == path]


# -- 02: a late event listed after the offsets it precedes -----------------------------------------


def test_a_late_event_listed_after_the_offsets_it_precedes_is_archived_not_passed(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = session_with(fake_flux0, 11)
    late = fake_flux0.events[sid].pop(2)  # offset 2 commits late, and is listed where it was appended
    archive = open_store(archive_db)
    try:
        target = engine(archive, fake, gap_patience=1.0)
        run_until(target, lambda: len(offsets(archive_db, sid)) == 10 and bool(archive.gaps(sid)), 10)
        assert archive.gaps(sid, open_only=True)[0].first_offset == 2
        fake_flux0.events[sid].append(late)
        # the polls jump past the young hole; once due to be passed it is read whole first
        run_until(target, lambda: 2 in offsets(archive_db, sid) or skipped(archive_db) > 0, 10)
    finally:
        archive.close()
    assert offsets(archive_db, sid) == list(range(11))
    assert skipped(archive_db) == 0


def skipped(db: str) -> int:
    return int(execute(db, "SELECT count(*) FROM gaps WHERE skipped_at IS NOT NULL")[0][0])


def test_a_hole_that_never_fills_is_still_passed_after_a_whole_read(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = session_with(fake_flux0, 8)
    del fake_flux0.events[sid][2]
    archive = open_store(archive_db)
    try:
        target = engine(archive, fake, gap_patience=0.5)
        run_until(target, lambda: archive.checkpoint(sid) == 7, 10)
        skipped = [gap for gap in archive.gaps(sid) if gap.skipped_at is not None]
    finally:
        archive.close()
    assert [(gap.first_offset, gap.last_offset) for gap in skipped] == [(2, 2)]


# -- 08: a hostile offset raised the "read up to" mark past what is stored ---------------------------


def _offset_2e63(fake_flux0: FakeFlux0, sid: str) -> Dict[str, Any]:
    event = dict(fake_flux0.events[sid][0], id="huge-offset", offset=2**63)
    return event


def _clash_far_ahead(fake_flux0: FakeFlux0, sid: str) -> Dict[str, Any]:
    return dict(fake_flux0.events[sid][0], offset=10**6)  # event 0 re-sent: a clash, not stored there


@pytest.mark.parametrize("hostile", [_offset_2e63, _clash_far_ahead], ids=["offset-2e63", "clash-at-1e6"])
def test_a_hostile_offset_does_not_slow_the_session_to_one_event_per_poll(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0, hostile: Callable[[FakeFlux0, str], Dict[str, Any]]
) -> None:
    sid = session_with(fake_flux0, 105)
    later = fake_flux0.events[sid][5:]
    del fake_flux0.events[sid][5:]
    fake_flux0.events[sid].append(hostile(fake_flux0, sid))
    archive = open_store(archive_db)
    try:
        target = engine(archive, fake)
        # SQLite keeps 2**63 (past its integers) with no offset, which sorts first: left out here
        run_until(target, lambda: [o for o in offsets(archive_db, sid) if o is not None][:5] == list(range(5)), 10)
        run_until(target, lambda: False, 0.5)  # a few polls that read the hostile event again
        fake_flux0.events[sid][5:5] = later  # the conversation goes on, listed in offset order
        # one event per poll (0.2 s) would take 20 s
        run_until(target, lambda: [o for o in offsets(archive_db, sid) if o is not None][:105] == list(range(105)), 6)
    finally:
        archive.close()
    assert [o for o in offsets(archive_db, sid) if o is not None][:105] == list(range(105))


# -- 07: the archive restored from a backup while the daemon runs -------------------------------------


def test_a_session_restored_behind_what_the_daemon_read_catches_up_at_once(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = session_with(fake_flux0, 201)
    held = fake_flux0.events[sid].pop(2)
    archive = open_store(archive_db)
    try:
        target = engine(archive, fake, gap_patience=3600)
        run_until(target, lambda: len(offsets(archive_db, sid)) == 200, 10)
        run_until(target, lambda: False, 0.5)  # the poll that found the hole is over: "read up to" 200
        # an older backup restored into the live archive: offsets 0 and 1, no gap, checkpoint 1
        execute(archive_db, 'DELETE FROM events WHERE session_id = ? AND "offset" > 1', (sid,))
        execute(archive_db, "DELETE FROM gaps WHERE session_id = ?", (sid,))
        fake_flux0.events[sid].insert(2, held)
        # one event per poll (0.2 s) would take 40 s
        run_until(target, lambda: len(offsets(archive_db, sid)) == 201, 6)
    finally:
        archive.close()
    assert offsets(archive_db, sid) == list(range(201))


def test_the_jump_passes_only_offsets_the_archive_holds(archive_db: str) -> None:
    def event(offset: int, event_id: str = "") -> RawEvent:
        return RawEvent.from_doc({"id": event_id or f"e{offset}", "offset": offset, "type": "status", "data": {}})

    archive = open_store(archive_db)
    try:
        archive.write_batch("s", [event(o) for o in (0, 1, 3, 4, 5, 7)] + [event(2**63), event(10**6, "e0")])
        found = [archive.stored_through("s", o) for o in (-1, 1, 2, 5, 6, 7, 9)]
        assert archive.stored_through("nobody", -1) == -1
    finally:
        archive.close()
    # a hostile offset (2**63, stored with its column NULL; a clash at 10**6, kept in conflicts) is no stored offset
    assert found == [1, 1, 5, 5, 7, 7, 9]


# -- the cost the jump exists for is kept ----------------------------------------------------------


def test_a_backlog_behind_a_young_hole_is_not_read_again_at_every_poll(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = session_with(fake_flux0, 300)
    del fake_flux0.events[sid][2]
    archive = open_store(archive_db)
    try:
        target = engine(archive, fake, gap_patience=3600)
        run_until(target, lambda: len(offsets(archive_db, sid)) == 299, 10)
        run_until(target, lambda: False, 0.3)
        before, watched = len(fake.requests), time.monotonic() + 1.0
        # a second of polls, and a whole poll at least (on a loaded machine a second held only a first request)
        run_until(
            target, lambda: time.monotonic() > watched and {"2", "300"} <= set(min_offsets(fake, sid, before)), 10
        )
        asked = min_offsets(fake, sid, before)
    finally:
        archive.close()
    # each poll asks from the hole, then goes on after the stored backlog in a second request
    assert asked and set(asked) == {"2", "300"}, asked


# -- 03: a session created anew under the same id ----------------------------------------------------


def server_ids(fake_flux0: FakeFlux0, sid: str) -> List[Any]:
    return [(event["offset"], event["id"]) for event in fake_flux0.events[sid]]


@pytest.mark.parametrize(("old", "new"), [(5, 8), (10, 3)], ids=["longer-than-before", "shorter-than-before"])
def test_a_session_created_anew_is_archived_again_and_its_earlier_conversation_kept_in_conflicts(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture, old: int, new: int
) -> None:
    sid = session_with(fake_flux0, old)
    earlier = server_ids(fake_flux0, sid)
    archive = open_store(archive_db)
    try:
        target = engine(archive, fake)
        run_until(target, lambda: len(offsets(archive_db, sid)) == old, 10)
        # the server's storage is reset; the client creates the session again and talks on
        fake_flux0.sessions[sid]["created_at"] = "2026-12-01T00:00:00Z"
        fake_flux0.events[sid] = []
        fake_flux0.add_events(sid, new)
        with caplog.at_level(logging.WARNING, logger="flux0sync"):
            run_until(target, lambda: archive_rows(archive_db).get(sid) == server_ids(fake_flux0, sid), 10)
            fake_flux0.add_events(sid, 12 - new)  # the new conversation passes the old one's end
            run_until(target, lambda: archive_rows(archive_db).get(sid) == server_ids(fake_flux0, sid), 10)
        checkpoint = archive.checkpoint(sid)
    finally:
        archive.close()
    assert archive_rows(archive_db)[sid] == server_ids(fake_flux0, sid)
    assert checkpoint == 11
    kept = execute(archive_db, 'SELECT "offset", event_id, reason FROM conflicts WHERE session_id = ?', (sid,))
    # a poll sent before the listing showed the re-creation may have stored some of the new
    # conversation over the old (clashes, then moved too): the earlier conversation is all there
    assert set(earlier) <= {(offset, eid) for offset, eid, reason in kept if "re-created" in reason}
    assert any("created anew" in r.getMessage() for r in caplog.records)


def test_the_same_instant_written_differently_is_no_recreation(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = session_with(fake_flux0, 4)
    archive = open_store(archive_db)
    try:
        target = engine(archive, fake)
        run_until(target, lambda: len(offsets(archive_db, sid)) == 4, 10)
        fake_flux0.sessions[sid]["created_at"] = "2026-11-25T00:00:00.000000+00:00"  # was ...T00:00:00Z
        fake_flux0.sessions[sid]["title"] = "renamed"
        before = len(fake.requests)
        run_until(target, lambda: False, 1.0)
    finally:
        archive.close()
    assert "0" not in min_offsets(fake, sid, before)
    assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 0
    assert len(offsets(archive_db, sid)) == 4


@pytest.mark.parametrize(
    ("stored", "listed", "expected"),
    [
        ("2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", True),
        ("2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00", False),
        ("2024-01-01T00:00:00Z", None, False),
        (None, "2024-01-01T00:00:00Z", False),
        (5, "2024-01-01T00:00:00Z", False),
        ("not a time", "not a time", False),
        ("not a time", "another", False),  # text that is not an instant never counts (hadv6 02)
        ("\ud800", "2024-01-01T00:00:00Z", False),
        ("2024-01-01T00:00:00Z", [], False),
        ("[" * 100_000, "x", False),
    ],
)
def test_what_counts_as_a_recreation(stored: str, listed: Any, expected: bool) -> None:
    assert (recreated_at(stored, listed) is not None) is expected


# -- 04: SIGHUP during a --once pass -----------------------------------------------------------------


def test_sighup_during_a_once_pass_starts_it_again_and_never_ends_it_as_a_success(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    for _ in range(30):  # 1.5 s of polls: the SIGHUP comes at the third
        fake_flux0.add_events(fake_flux0.add_session(agent), 2)
    answer = fake_flux0._guard(fake_flux0._session_get)

    def slow(req: Request, conn: Conn) -> None:
        time.sleep(0.05)
        answer(req, conn)

    fake.on("GET", "/api/sessions/*", slow)
    db = str(tmp_path / "a.sqlite3")
    proc = popen_daemon(["--once", "--db", db, "--workers", "1", "--no-proxy"], fake.url)
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end and len(archive_rows(db)) < 3:
            time.sleep(0.05)
        proc.send_signal(signal.SIGHUP)
        code = exit_code(proc, 60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
    assert code == 0
    assert "configuration reloaded" in stderr, stderr  # mid-pass, not after it
    assert_archive_equals_server(db, fake_flux0)
