from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
from flux0sync.backend import Archive, open_store
from flux0sync.rows import EventRow, RawEvent
from flux0sync.store import (
    _INSERT_SQL,
    APPLICATION_ID,
    SCHEMA_VERSION,
    PollRecord,
    Store,
    StoreBusyError,
    StoreError,
    StoreFullError,
    _advance,
    _insert_events,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flux0lite.models import Session
from tests.archive_events import make_events, raw_event
from tests.daemon.helpers import execute


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "archive.sqlite3")


def test_new_archive_is_private_wal_and_versioned(db_path: str) -> None:
    store = Store(db_path)
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # short waits inside SQLite: the Store retries with backoff (and pings the watchdog) itself
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 250
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    store.write_batch("s1", make_events("s1", 0, 3))
    store.close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(db_path + suffix):
            assert stat.S_IMODE(os.stat(db_path + suffix).st_mode) == 0o600
    reopened = Store(db_path)
    assert reopened.counts() == (0, 0, 3)
    reopened.close()


def test_failed_batch_rolls_back_events_and_checkpoint_together(db_path: str) -> None:
    store = Store(db_path)
    store.write_batch("s1", make_events("s1", 0, 5))
    store.db.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON events WHEN new.\"offset\" = 7 BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    with pytest.raises(StoreError, match="boom"):
        store.write_batch("s1", make_events("s1", 5, 5))
    assert store.checkpoint("s1") == 4 and store.counts()[2] == 5
    assert not store.db.in_transaction


def test_full_disk_gives_clear_error_no_corruption_and_recovers(db_path: str) -> None:
    store = Store(db_path)
    store.write_batch("s1", make_events("s1", 0, 10))
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.set_max_page_count(pages)
    with pytest.raises(StoreFullError, match="full"):
        store.write_batch("s1", make_events("s1", 10, 2000, text="x" * 200))
    assert store.checkpoint("s1") == 9 and store.counts()[2] == 10
    assert store.integrity_ok()
    store.set_max_page_count(1_000_000_000)
    assert store.write_batch("s1", make_events("s1", 10, 2000, text="x" * 200)).inserted == 2000
    assert store.checkpoint("s1") == 2009 and store.integrity_ok()


def test_foreign_files_are_refused_and_left_untouched(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"my precious notes\n" * 10)
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store(str(text))
    assert text.read_bytes() == b"my precious notes\n" * 10

    other = tmp_path / "other.db"
    db = sqlite3.connect(str(other))
    db.execute("CREATE TABLE customers (id INTEGER)")
    db.commit()
    db.close()
    before = other.read_bytes()
    with pytest.raises(StoreError, match="other SQLite database"):
        Store(str(other))
    assert other.read_bytes() == before

    app = tmp_path / "app.db"
    db = sqlite3.connect(str(app))
    db.execute("PRAGMA application_id = 1234")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="another application"):
        Store(str(app))
    with pytest.raises(StoreError, match="directory"):
        Store(str(tmp_path))


def test_corrupted_archive_is_reported(db_path: str) -> None:
    store = Store(db_path)
    store.write_batch("s1", make_events("s1", 0, 500, text="y" * 100))
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    with open(db_path, "r+b") as handle:
        handle.seek(4096 * 3)
        handle.write(os.urandom(4096 * 4))
    before = Path(db_path).read_bytes()
    with pytest.raises(StoreError):
        Store(db_path)
    assert Path(db_path).read_bytes() == before


def test_newer_schema_is_refused(db_path: str) -> None:
    Store(db_path).close()
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(db_path)


def write_old_archive(db_path: str, version: int) -> None:
    """An archive as schema ``version`` wrote it, holding offsets 0..2 of s1 ("needle 0"...)."""
    import flux0sync.store as store_module

    migrations, current = store_module.MIGRATIONS, store_module.SCHEMA_VERSION
    store_module.MIGRATIONS, store_module.SCHEMA_VERSION = migrations[:version], version
    try:
        old = Store(db_path)
        old.write_batch("s1", make_events("s1", 0, 3, text="needle"))
        old.close()
    finally:
        store_module.MIGRATIONS, store_module.SCHEMA_VERSION = migrations, current


def test_migration_from_v1_adds_search(db_path: str) -> None:
    write_old_archive(db_path, 1)
    store = Store(db_path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [h.offset for h in store.search("needle")] == [0, 1, 2]


def test_search_fts_and_like_fallback(db_path: str) -> None:
    store = Store(db_path)
    store.write_batch("s1", make_events("s1", 0, 3, text="refund please"))
    store.write_batch("s2", make_events("s2", 0, 2, text="weather 100%_sure"))
    hits = store.search("refund")
    assert [(h.session_id, h.offset) for h in hits] == [("s1", 0), ("s1", 1), ("s1", 2)]
    assert list(store.search('quote " inside')) == []
    store.has_fts = False
    assert len(list(store.search("refund please 1"))) == 1
    assert len(list(store.search("100%_"))) == 2
    assert list(store.search("%x")) == [] and len(list(store.search("%"))) == 2


def test_migration_from_v2_keeps_events_and_search_and_goes_per_session(db_path: str) -> None:
    write_old_archive(db_path, 2)
    store = Store(db_path)
    assert store.version == SCHEMA_VERSION >= 3
    assert [h.offset for h in store.search("needle")] == [0, 1, 2]
    # the same event id in another session is a different event now
    assert store.write_batch("s2", [raw_event("s2", 0, event_id="s1-0", text="needle too")]).inserted == 1
    assert [(h.session_id, h.offset) for h in store.search("needle")] == [("s1", 0), ("s1", 1), ("s1", 2), ("s2", 0)]
    assert store.integrity_ok()


def test_busy_archive_is_waited_out_not_fatal(db_path: str) -> None:
    import threading

    store = Store(db_path, busy_patience=20)
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    waits: List[int] = []
    store.on_wait = lambda: waits.append(1)
    threading.Timer(1.0, lambda: other.execute("COMMIT")).start()
    assert store.write_batch("s", [raw_event("s", 0)]).inserted == 1
    assert waits, "the watchdog hook ran while waiting"
    store.busy_patience = 0.3
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusyError):
            store.write_batch("s", [raw_event("s", 1)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.checkpoint("s") == 0


def test_existing_archive_and_wal_forced_private(db_path: str) -> None:
    Store(db_path).close()
    for suffix in ("", "-wal", "-shm"):
        if not os.path.exists(db_path + suffix):
            open(db_path + suffix, "wb").close()
        os.chmod(db_path + suffix, 0o644)
    store = Store(db_path)
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(db_path + suffix).st_mode) == 0o600, suffix
    store.close()


def test_parent_directory_created_private_and_bad_paths_are_store_errors(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "archive.sqlite3"
    Store(str(nested)).close()
    assert stat.S_IMODE(os.stat(nested.parent).st_mode) == 0o700
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create"):
        Store(str(blocker / "archive.sqlite3"))


def test_readonly_open_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "ro" / "archive.sqlite3"
    store = Store(str(path))
    store.write_batch("s", make_events("s", 0, 3, text="needle"))
    store.close()
    os.chmod(path, 0o444)
    os.chmod(path.parent, 0o555)
    try:
        reader = Store(str(path), readonly=True)
        assert reader.counts()[2] == 3 and len(list(reader.search("needle"))) == 3
        with pytest.raises(sqlite3.Error):
            reader.db.execute("DELETE FROM events")
        reader.close()
    finally:
        os.chmod(path.parent, 0o755)
    # (as root the directory mode does not bind; the CLI test runs a reader as another uid)


def _session(sid: str, title: str = "t") -> Session:
    return Session.from_dict({"id": sid, "agent_id": "a1", "title": title, "consumption_offsets": {}})


def test_listing_and_poll_schedule_on_either_backend(archive_db: str) -> None:
    """record_listing reports new and changed sessions and keeps their schedule; save_polls persists it."""
    store = open_store(archive_db)
    try:
        first = store.record_listing("alice", [_session("s1"), _session("s2"), _session("bad\udcff")])
        assert [(x.session_id, x.new, x.changed) for x in first] == [("s1", True, False), ("s2", True, False)]
        store.save_polls([PollRecord("s1", 2e9, 3, 1e9), PollRecord("s2", 2e9 + 5, 0, None)])
        again = store.record_listing("alice", [_session("s1"), _session("s2", "renamed")])
        assert [(x.session_id, x.new, x.changed, x.next_poll_at, x.idle_level) for x in again] == [
            ("s1", False, False, 2e9, 3),
            ("s2", False, True, 2e9 + 5, 0),
        ]
        store.record_listing(None, [_session("s1")])  # found under another user now: rewritten
        by_id = {s.session_id: s for s in store.session_statuses()}
        assert (by_id["s1"].found_under_user, by_id["s2"].found_under_user) == ("", "alice")
        assert (by_id["s1"].next_poll_at, by_id["s1"].idle_level, by_id["s1"].last_success_at) == (2e9, 3, 1e9)
        assert by_id["s2"].last_success_at is None
        assert store.counts(events=False) == (0, 2, 0)
        titles = dict(execute(archive_db, "SELECT id, title FROM sessions"))
        assert titles == {"s1": "t", "s2": "renamed"}
    finally:
        store.close()


# -- the same behaviour on both backends ---------------------------------------------------------


@pytest.fixture
def archive(archive_db: str) -> Iterator[Archive]:
    store = open_store(archive_db)
    yield store
    store.close()


def test_write_batch_is_idempotent_and_the_checkpoint_only_moves_forward(archive: Archive) -> None:
    assert archive.checkpoint("s1") == -1
    assert archive.write_batch("s1", make_events("s1", 0, 10)).inserted == 10
    assert archive.checkpoint("s1") == 9
    assert archive.write_batch("s1", make_events("s1", 5, 10)).inserted == 5  # overlap stored once
    assert archive.checkpoint("s1") == 14
    assert archive.write_batch("s1", make_events("s1", 0, 3)).inserted == 0  # a late, older batch
    assert archive.write_batch("s1", []).checkpoint == 14
    assert archive.checkpoint("s1") == 14
    # the same event id in another session is another event
    other = [RawEvent.from_doc({**e.doc, "id": "s1-0"}) for e in make_events("s2", 0, 1)]
    assert archive.write_batch("s2", other).inserted == 1
    assert archive.counts() == (0, 0, 16)
    assert [json.loads(raw)["offset"] for raw in archive.iter_raw_events("s1")] == list(range(15))


def test_status_rows_and_errors(archive: Archive) -> None:
    archive.write_batch("s1", make_events("s1", 0, 4))
    assert archive.mark_error("s2", "boom") == 1
    assert archive.mark_error("s2", "boom again") == 2
    archive.mark_synced("s3")
    rows = {r.session_id: r for r in archive.session_statuses()}
    assert rows["s1"].events == 4 and rows["s1"].last_offset == 3 and rows["s1"].errors == 0
    assert rows["s2"].errors == 2 and rows["s2"].last_error == "boom again"
    assert rows["s3"].last_success_at is not None and rows["s3"].last_offset == -1
    archive.mark_synced("s2")
    assert {r.session_id: r for r in archive.session_statuses()}["s2"].errors == 0
    assert archive.session_exists("s1") and not archive.session_exists("nope")


def test_checkpoint_never_passes_an_offset_that_is_not_stored(archive: Archive) -> None:
    result = archive.write_batch("s", [raw_event("s", o) for o in (3, 0, 1)])
    assert result.inserted == 3 and result.checkpoint == 1 and archive.checkpoint("s") == 1
    assert archive.write_batch("s", [raw_event("s", 2)]).checkpoint == 3
    assert [json.loads(r)["offset"] for r in archive.iter_raw_events("s")] == [0, 1, 2, 3]


def test_gap_is_held_then_recorded_and_skipped(archive: Archive) -> None:
    archive.write_batch("s", [raw_event("s", o) for o in (0, 1, 4, 5, 7)])
    open_gaps, skipped = archive.reconcile_gaps("s", patience=3600)
    assert [(g.first_offset, g.last_offset) for g in open_gaps] == [(2, 3), (6, 6)] and skipped == []
    assert archive.checkpoint("s") == 1
    archive.write_batch("s", [raw_event("s", 6)])  # the second gap fills: forgotten
    open_gaps, skipped = archive.reconcile_gaps("s", patience=0)
    assert open_gaps == [] and [(g.first_offset, g.last_offset) for g in skipped] == [(2, 3)]
    assert archive.checkpoint("s") == 7
    (status,) = archive.session_statuses()
    assert (status.gaps_open, status.gaps_skipped, status.last_offset) == (0, 1, 7)
    assert [(g.first_offset, g.skipped_at is not None) for g in archive.gaps()] == [(2, True)]
    assert archive.gaps("s") == archive.gaps() and archive.integrity_ok()


def test_old_gaps_are_skipped_in_offset_order_until_a_young_one(archive: Archive) -> None:
    archive.write_batch("s", [raw_event("s", o) for o in (0, 1, 4, 5, 7)])
    archive.reconcile_gaps("s", patience=3600)  # (2, 3) and (6, 6) first seen now
    time.sleep(0.3)
    archive.write_batch("s", [raw_event("s", 9)])  # (8, 8) is first seen by the next call
    open_gaps, skipped = archive.reconcile_gaps("s", patience=0.2)
    assert [(g.first_offset, g.last_offset) for g in skipped] == [(2, 3), (6, 6)]
    assert [(g.first_offset, g.last_offset) for g in open_gaps] == [(8, 8)]
    assert archive.checkpoint("s") == 7


def test_conflicting_events_are_recorded_never_swallowed(archive: Archive, archive_db: str) -> None:
    archive.write_batch("s", [raw_event("s", 0), raw_event("s", 1)])
    again = archive.write_batch("s", [raw_event("s", 0), raw_event("s", 1)])
    assert (again.inserted, again.duplicates, again.conflicts) == (0, 2, 0)
    clash = archive.write_batch("s", [raw_event("s", 1, event_id="other"), raw_event("s", 2, event_id="s-0")])
    assert (clash.inserted, clash.conflicts) == (0, 2)
    assert archive.write_batch("s", [raw_event("s", 1, event_id="other")]).conflicts == 0  # recorded once
    reasons = sorted(r for (r,) in execute(archive_db, "SELECT reason FROM conflicts"))
    assert reasons == ["same id, different event", "same offset, different id"]
    assert archive.session_statuses()[0].conflicts == 2


def test_unstorable_values_are_kept_in_raw_with_the_column_nulled(archive: Archive, archive_db: str) -> None:
    events = [
        raw_event("s", 0, text="lone \ud83d surrogate"),
        raw_event("s", 2**63, event_id="huge"),
        raw_event("s", 1, created_at="300000-01-01T00:00:00Z", source="\udcff"),
        raw_event("s", -5, event_id="negative"),
        raw_event("s", True, event_id="boolean"),
    ]
    archive.write_batch("s", events)
    by_id = {r[0]: r for r in execute(archive_db, 'SELECT id, "offset", source, created_at, text, raw FROM events')}
    assert by_id["s-0"][4] == "lone \ufffd surrogate"  # the text column stays searchable
    assert json.loads(by_id["s-0"][5])["data"]["parts"][0]["content"] == "lone \ud83d surrogate"
    assert by_id["huge"][1] is None and json.loads(by_id["huge"][5])["offset"] == 2**63
    assert by_id["s-1"][3] is None and by_id["s-1"][2] == '"\\udcff"'
    assert json.loads(by_id["s-1"][5])["created_at"] == "300000-01-01T00:00:00Z"
    assert by_id["negative"][1] is None and by_id["boolean"][1] is None
    assert archive.checkpoint("s") == 1
    again = archive.write_batch("s", events)  # a re-fetch stores nothing twice, offset or not
    assert (again.inserted, again.conflicts) == (0, 0)
    assert [json.loads(r)["id"] for r in archive.iter_raw_events("s")][:2] == ["s-0", "s-1"]


# -- the write path's shortcuts, against the statements they stand for ------------------------------

_IDS = st.sampled_from(["a", "b", "c", "d", "é", "x" * 40])
_OFFSETS = st.one_of(st.none(), st.integers(min_value=0, max_value=12), st.just(2**63 - 1))
_ROWS = st.lists(
    st.tuples(
        st.sampled_from(["s1", "s2"]),
        _IDS,
        _OFFSETS,
        st.sampled_from(["message", "status"]),
        st.sampled_from(["user", "ai_agent"]),
        st.one_of(st.none(), st.text(max_size=3)),
        st.none(),
        st.integers(min_value=0, max_value=1),
        st.one_of(st.none(), st.text(max_size=5)),
        st.text(max_size=5),
    ),
    max_size=230,  # statements of every size in store._INSERT_SIZES
)
_EVENTS_TABLE = 'SELECT rowid, session_id, id, "offset", type, source, correlation_id, created_at, deleted, text, raw FROM events ORDER BY rowid'


def _fresh(path: str) -> Store:
    for name in (path, path + "-wal", path + "-shm"):
        if os.path.exists(name):
            os.unlink(name)
    return Store(path, check=False)


def _table_after(path: str, stored: List[EventRow], rows: List[EventRow], general: bool) -> Tuple[int, List[Any]]:
    store = _fresh(path)
    try:
        with store.transaction() as db:
            if stored:
                _insert_events(db, stored)
            if general:
                inserted = db.executemany(_INSERT_SQL[1], rows).rowcount
            else:
                inserted = _insert_events(db, rows)
        return inserted, store.db.execute(_EVENTS_TABLE).fetchall()
    finally:
        store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=_ROWS, rows=_ROWS)
def test_many_rows_to_a_statement_insert_what_one_row_per_step_inserts(
    tmp_path: Path, stored: List[EventRow], rows: List[EventRow]
) -> None:
    """The contract of store._insert_events (99 rows to an INSERT): over any archive, with rows
    that repeat an id or an offset (within the batch or against what is stored), NULL offsets
    and the largest one, the table ends up row for row (rowids included) as executemany of the
    one-row statement leaves it, and the count of inserted rows is the same."""
    path = str(tmp_path / "contract.sqlite3")
    assert _table_after(path, stored, rows, general=False) == _table_after(path, stored, rows, general=True)


def _walk(db: sqlite3.Connection, session_id: str, checkpoint: int) -> int:
    """The general path of store._advance: offsets walked one by one from the checkpoint."""
    expected = checkpoint + 1
    for (offset,) in db.execute(
        'SELECT "offset" FROM events WHERE session_id = ? AND "offset" >= ? ORDER BY "offset"', (session_id, expected)
    ):
        if offset != expected:
            break
        expected += 1
    return expected - 1


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offsets=st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=15),
            st.sampled_from([2**63 - 1, 2**63 - 2, 0.5, 1.5, 3.5, 2.0, "4", "x", b"\x05", None]),  # as edited by hand
        ),
        max_size=20,
    ),
    other=st.lists(st.integers(min_value=0, max_value=15), max_size=5),
    checkpoint=st.one_of(st.integers(min_value=-1, max_value=16), st.just(2**63 - 3)),
)
@example(offsets=[0, 0.5, 2], other=[], checkpoint=-1)  # a real between integers: a hole the count misses
@example(offsets=[0, 1, 2, 4], other=[3], checkpoint=-1)
def test_advance_in_one_count_equals_the_offset_walk(
    tmp_path: Path, offsets: List[Any], other: List[int], checkpoint: int
) -> None:
    """The contract of store._advance's one-count shortcut: for any stored offsets, those a
    hand-edited archive may hold included (text, real, blob, NULL), and any checkpoint, the
    checkpoint reached is the one the walk over the offsets reaches."""
    store = _fresh(str(tmp_path / "advance.sqlite3"))
    try:
        db = store.db
        db.execute("DROP INDEX IF EXISTS events_correlation")
        for n, offset in enumerate(offsets):
            db.execute(
                'INSERT OR IGNORE INTO events (session_id, id, "offset", type, source, raw) VALUES (?,?,?,?,?,?)',
                ("s", f"e{n}", offset, "t", "u", "{}"),
            )
        for n, offset in enumerate(other):  # another session's offsets never count
            db.execute(
                'INSERT OR IGNORE INTO events (session_id, id, "offset", type, source, raw) VALUES (?,?,?,?,?,?)',
                ("t", f"e{n}", offset, "t", "u", "{}"),
            )
        assert _advance(db, "s", checkpoint) == (checkpoint if checkpoint >= 2**63 - 1 else _walk(db, "s", checkpoint))
    finally:
        store.close()
