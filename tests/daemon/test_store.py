from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import List

import pytest
from flux0sync.store import APPLICATION_ID, SCHEMA_VERSION, Store, StoreError, StoreFullError

from flux0lite import Event


def make_events(session: str, start: int, count: int, text: str = "hello") -> List[Event]:
    return [
        Event.from_dict(
            {
                "id": f"{session}-{i}",
                "type": "message",
                "source": "user",
                "offset": i,
                "correlation_id": "c",
                "data": {"type": "message", "parts": [{"type": "content", "content": f"{text} {i}"}]},
                "created_at": "2026-11-25T00:00:00Z",
                "deleted": False,
                "metadata": None,
            }
        )
        for i in range(start, start + count)
    ]


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "archive.sqlite3")


def test_new_archive_is_private_wal_and_versioned(db_path: str) -> None:
    store = Store(db_path)
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
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


def test_write_batch_is_idempotent_and_moves_checkpoint(db_path: str) -> None:
    store = Store(db_path)
    assert store.checkpoint("s1") == -1
    assert store.write_batch("s1", make_events("s1", 0, 10)) == 10
    assert store.checkpoint("s1") == 9
    assert store.write_batch("s1", make_events("s1", 5, 10)) == 5  # overlap stored once
    assert store.checkpoint("s1") == 14
    assert store.counts()[2] == 15
    assert [e["offset"] for e in store.iter_raw_events("s1")] == list(range(15))
    assert store.write_batch("s1", []) == 0


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
    assert store.write_batch("s1", make_events("s1", 10, 2000, text="x" * 200)) == 2000
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


def test_migration_from_v1_adds_search(db_path: str) -> None:
    import flux0sync.store as store_module

    original = store_module.MIGRATIONS
    store_module.MIGRATIONS = original[:1]
    store_module.SCHEMA_VERSION = 1
    try:
        old = Store(db_path)
        old.write_batch("s1", make_events("s1", 0, 3, text="needle"))
        old.close()
    finally:
        store_module.MIGRATIONS = original
        store_module.SCHEMA_VERSION = len(original)
    store = Store(db_path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(original)
    assert [h.offset for h in store.search("needle")] == [0, 1, 2]


def test_search_fts_and_like_fallback(db_path: str) -> None:
    store = Store(db_path)
    store.write_batch("s1", make_events("s1", 0, 3, text="refund please"))
    store.write_batch("s2", make_events("s2", 0, 2, text="weather 100%_sure"))
    hits = store.search("refund")
    assert [(h.session_id, h.offset) for h in hits] == [("s1", 0), ("s1", 1), ("s1", 2)]
    assert store.search('quote " inside') == []
    store.has_fts = False
    assert len(store.search("refund please 1")) == 1
    assert len(store.search("100%_")) == 2
    assert store.search("%x") == [] and len(store.search("%")) == 2


def test_status_rows_and_errors(db_path: str) -> None:
    store = Store(db_path)
    store.write_batch("s1", make_events("s1", 0, 4))
    assert store.mark_error("s1", "boom") == 1
    assert store.mark_error("s1", "boom again") == 2
    (row,) = store.session_statuses()
    assert row.events == 4 and row.last_offset == 3 and row.errors == 2 and row.last_error == "boom again"
    store.mark_synced("s1")
    assert store.session_statuses()[0].errors == 0
    assert store.session_exists("s1") and not store.session_exists("nope")
