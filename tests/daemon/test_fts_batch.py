"""The full-text index is filled once per batch, inside the batch's transaction: it stays
complete (every stored event with text is indexed exactly once, nothing else is) through
duplicates, conflicts, gaps, odd events, failed batches and the migration from the trigger."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Dict, List

import pytest
from flux0sync.rows import RawEvent
from flux0sync.store import SCHEMA_VERSION, Store, StoreError


def doc(session: str, offset: int, word: str, **extra: Any) -> Dict[str, Any]:
    event: Dict[str, Any] = {
        "id": f"{session}-e{offset}",
        "type": "message",
        "source": "user",
        "offset": offset,
        "correlation_id": "c",
        "data": {"type": "message", "parts": [{"type": "content", "content": f"tok{word} plain"}]},
        "created_at": "2026-11-25T00:00:00Z",
        "deleted": False,
        "metadata": None,
    }
    event.update(extra)
    return event


def raw(documents: List[Dict[str, Any]]) -> List[RawEvent]:
    return [RawEvent.from_doc(d) for d in documents]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store(str(tmp_path / "archive.sqlite3"))
    if not opened.has_fts:
        opened.close()
        pytest.skip("this SQLite has no FTS5")
    return opened


def assert_index_complete(store: Store) -> None:
    """The index holds exactly the stored events that have text, each once, with their text."""
    db = store.db
    db.execute("INSERT INTO events_fts(events_fts) VALUES ('integrity-check')")  # the index itself is sound
    with_text = db.execute("SELECT rowid, text FROM events WHERE text IS NOT NULL AND text != ''").fetchall()
    indexed = db.execute("SELECT count(*) FROM events_fts_docsize").fetchone()[0]
    assert indexed == len(with_text)
    for rowid, text in with_text:
        token = text.split()[0]
        hits = [r for (r,) in db.execute("SELECT rowid FROM events_fts WHERE events_fts MATCH ?", (f'"{token}"',))]
        assert hits == [rowid], (token, hits)


def test_the_insert_trigger_is_gone_and_the_schema_is_current(store: Store) -> None:
    names = {n for (n,) in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert "events_fts_insert" not in names and "events_fts_delete" in names
    assert store.version == SCHEMA_VERSION


def test_every_batch_is_indexed_once_through_duplicates_conflicts_gaps_and_odd_events(store: Store) -> None:
    store.write_batch("s1", raw([doc("s1", i, f"a{i}") for i in range(50)]))
    # a re-fetched tail (duplicates) with new events after it
    store.write_batch("s1", raw([doc("s1", i, f"a{i}") for i in range(40, 80)]))
    # a different event under a known id and one under a known offset: kept as conflicts, not indexed
    store.write_batch("s1", raw([doc("s1", 3, "clash"), doc("s1", 5, "clash2", id="other-id")]))
    # a gap (offsets 90..) and events without text: status, empty text, structured content, no parts
    odd = [
        doc("s2", 0, "b0"),
        doc("s2", 1, "x", type="status", data={"type": "status", "status": "typing"}),
        doc("s2", 2, "x", data={"type": "message", "parts": [{"type": "content", "content": ""}]}),
        doc("s2", 3, "x", data={"type": "message", "parts": [{"type": "content", "content": {"k": 1}}]}),
        doc("s2", 4, "x", data={"type": "message"}),
        doc("s2", 5, "x", data={"type": "message", "parts": "not a list"}),
        doc("s2", 90, "b90"),
        doc("s2", 91, "b91", data={"type": "message", "parts": [{"type": "reasoning", "reasoning": "r"}]}),
    ]
    store.write_batch("s2", raw(odd))
    store.write_batch("s3", [])
    assert store.counts()[2] == 80 + 8
    assert_index_complete(store)
    assert [h.offset for h in store.search("toka45")] == [45]
    assert list(store.search("tokclash")) == []


def test_text_is_read_from_the_json_as_the_model_reads_it(store: Store) -> None:
    parts = [
        {"type": "content", "content": "tokone "},
        {"type": "reasoning", "reasoning": "hidden"},
        {"content": "untyped part"},
        {"type": "content", "content": "two"},
        "not an object",
    ]
    store.write_batch("s1", raw([doc("s1", 0, "x", data={"type": "message", "parts": parts})]))
    (text,) = store.db.execute("SELECT text FROM events").fetchone()
    assert text == "tokone two"
    assert_index_complete(store)


def test_a_failed_batch_leaves_neither_events_nor_index_rows(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import flux0sync.store as store_module

    store.write_batch("s1", raw([doc("s1", i, f"a{i}") for i in range(10)]))

    def fail(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error (injected after the index was filled)")

    monkeypatch.setattr(store_module, "_set_checkpoint", fail)
    with pytest.raises(StoreError):
        store.write_batch("s1", raw([doc("s1", i, f"a{i}") for i in range(10, 20)]))
    monkeypatch.undo()
    assert store.counts()[2] == 10 and store.checkpoint("s1") == 9
    assert_index_complete(store)
    assert list(store.search("toka15")) == []
    store.write_batch("s1", raw([doc("s1", i, f"a{i}") for i in range(10, 20)]))
    assert store.counts()[2] == 20
    assert_index_complete(store)


def test_an_archive_written_with_the_trigger_migrates_and_stays_complete(tmp_path: Path) -> None:
    import flux0sync.store as store_module

    path = str(tmp_path / "old.sqlite3")
    original = store_module.MIGRATIONS
    store_module.MIGRATIONS = original[:3]  # schema v3: the index filled by a trigger per row
    store_module.SCHEMA_VERSION = 3
    try:
        old = Store(path)
        if not old.has_fts:
            pytest.skip("this SQLite has no FTS5")
        old.write_batch("s1", raw([doc("s1", i, f"old{i}") for i in range(30)]))
        old.close()
    finally:
        store_module.MIGRATIONS = original
        store_module.SCHEMA_VERSION = len(original)
    store = Store(path)
    assert store.version == SCHEMA_VERSION
    store.write_batch("s1", raw([doc("s1", i, f"new{i}") for i in range(25, 60)]))  # overlaps the old tail
    store.write_batch("s2", raw([doc("s2", i, f"other{i}") for i in range(5)]))
    assert store.counts()[2] == 65
    assert_index_complete(store)
    assert [h.offset for h in store.search("tokold7")] == [7] and [h.offset for h in store.search("toknew40")] == [40]


def test_rowids_run_out_is_refused_not_indexed_wrongly(store: Store) -> None:
    store.write_batch("s1", raw([doc("s1", 0, "a0")]))
    with store.transaction() as db:  # an archive edited by hand: the highest possible rowid taken
        db.execute("UPDATE events SET rowid = ? WHERE id = 's1-e0'", (2**63 - 1,))
        db.execute("INSERT INTO events_fts(events_fts) VALUES ('rebuild')")
    with pytest.raises(StoreError, match="run out of rowids"):
        store.write_batch("s1", raw([doc("s1", 1, "a1")]))
    assert store.counts()[2] == 1
    assert_index_complete(store)
