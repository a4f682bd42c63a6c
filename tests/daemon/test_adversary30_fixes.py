"""Regression tests for the hadv30 round, on the daemon's side (the client's are beside the
tests of what they fix: test_streaming.py, test_proxy.py, test_hostile_transport.py).

Every test names the repro it comes from (``/work/wt/hadv30/repros/NN-*.py`` at the time).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import flux0sync.rows as rows_module
import pytest
from flux0sync.backend import open_store
from flux0sync.rows import stored_message_text

from tests.archive_events import raw_event
from tests.conftest import subprocess_env
from tests.daemon.helpers import execute

# -- 03: an archive written before message text was made searchable kept it unsearchable ----------


def _write_as_before(db: str) -> None:
    """An archive as the code before the searchable text column wrote it: a message holding a
    lone surrogate (and one holding a NUL) with no text, nothing of them in the full-text index,
    at the schema version before the one that mends them."""
    store = open_store(db)
    store.write_batch(
        "s",
        [
            raw_event("s", 0, text="please refund my order"),
            raw_event("s", 1, text="please refund my order \ud83d"),
            raw_event("s", 2, text="please refund my order \x00"),
            raw_event("s", 3, text=""),  # no text, and none after the migration either
        ],
    )
    store.close()
    if db.startswith("postgresql"):
        execute(db, 'UPDATE events SET text = NULL WHERE "offset" IN (1, 2)')
        execute(db, "UPDATE flux0sync_meta SET value = '4' WHERE key = 'schema_version'")
        return
    # (SQLite text holds a NUL: only the lone surrogate was left without text there)
    execute(
        db,
        "INSERT INTO events_fts(events_fts, rowid, text) SELECT 'delete', rowid, text FROM events WHERE \"offset\" = 1",
    )
    execute(db, 'UPDATE events SET text = NULL WHERE "offset" = 1')
    execute(db, "PRAGMA user_version = 6")


def test_an_archive_written_before_searchable_text_is_mended_when_opened(archive_db: str) -> None:
    _write_as_before(archive_db)
    reader = open_store(archive_db, readonly=True)  # a reader migrates nothing: it finds the old rows only
    assert 1 not in [hit.offset for hit in reader.search("refund")]
    reader.close()
    store = open_store(archive_db)
    try:
        hits = sorted((hit.offset, hit.text) for hit in store.search("refund"))
        nul = "\ufffd" if archive_db.startswith("postgresql") else "\x00"
        assert hits == [
            (0, "please refund my order"),
            (1, "please refund my order \ufffd"),
            (2, f"please refund my order {nul}"),
        ]
        texts = dict(execute(archive_db, 'SELECT "offset", text FROM events'))
        assert texts[3] is None
        raws: Any = [json.loads(raw) for raw in store.iter_raw_events("s")]
        assert raws[1]["data"]["parts"][0]["content"] == "please refund my order \ud83d"  # raw untouched
    finally:
        store.close()


# -- hadv31 01/02: the migration built every textless message's raw whole, past MemoryMax -------------

_ITEMS = 500_000


def _wide_raw(offset: int, text: str) -> str:
    """A message of ~5.5 MB: a content part, and a tool call's args of half a million tiny items
    (about 150 MB built by json.loads)."""
    head = json.dumps(raw_event("s", offset, text=text).doc)[:-1]
    return head + ', "tool_args": [' + ", ".join(['{"a": {}}'] * _ITEMS) + "]}"


# The peak of this process's own memory (VmHWM): ru_maxrss would also count the parent's, which a
# child started by vfork inherits at exec (the test process's, over 100 MB late in a shard).
_OPEN_AND_MEASURE = """
import sys
from flux0sync.backend import open_store
store = open_store(sys.argv[1])
hits = [(hit.offset, hit.text) for hit in store.search("refund")]
store.close()
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(peak, repr(hits))
"""


def test_the_searchable_text_migration_reads_within_the_units_memory(archive_db: str) -> None:
    store = open_store(archive_db)
    store.write_batch("s", [raw_event("s", offset) for offset in range(3)])
    store.close()
    # stored by the old code without text: wide tool calls, one also holding half an emoji
    for offset, text in ((0, ""), (1, "refund \ud83d"), (2, "")):
        execute(
            archive_db, 'UPDATE events SET text = NULL, raw = ? WHERE "offset" = ?', (_wide_raw(offset, text), offset)
        )
    if archive_db.startswith("postgresql"):
        execute(archive_db, "UPDATE flux0sync_meta SET value = '4' WHERE key = 'schema_version'")
    else:
        execute(archive_db, "DELETE FROM events_fts")
        execute(archive_db, "PRAGMA user_version = 6")
    # the daemon's first step, in a process of its own: its peak memory is the migration's
    opened = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_MEASURE, archive_db], capture_output=True, text=True, env=subprocess_env()
    )
    assert opened.returncode == 0, opened.stderr
    peak, hits = opened.stdout.split(" ", 1)
    assert hits.strip() == repr([(1, "refund \ufffd")])
    assert int(peak) < 100_000_000, peak  # json.loads of one such raw alone takes ~150 MB


# -- review3 1, 4: a full archive, and a raw cut short, during the migration ---------------------------


def test_an_archive_at_its_page_cap_is_migrated_and_still_capped(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the migration grows an archive (text and its index entries): with the cap set before it,
    # a full archive stopped the daemon at start, exit 3, never restarted (review3 1)
    import flux0sync.store as store_module

    db = str(tmp_path / "a.sqlite3")
    with monkeypatch.context() as old_code:  # the schema and the writer before v7
        old_code.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:6])
        old_code.setattr(store_module, "SCHEMA_VERSION", 6)
        old_code.setattr(rows_module, "searchable_text", lambda text: "")
        old = open_store(db)
        old.write_batch("s", [raw_event("s", offset, text=f"refund {offset} \ud83d") for offset in range(2000)])
        old.close()
    execute(db, "VACUUM")
    pages = execute(db, "PRAGMA page_count")[0][0]
    store = open_store(db, max_page_count=pages)  # full, as far as the cap goes
    try:
        assert store.version == store_module.SCHEMA_VERSION
        assert len(list(store.search("refund", limit=5000))) == 2000
        assert (
            store.db.execute("PRAGMA max_page_count").fetchone()[0]
            == store.db.execute("PRAGMA page_count").fetchone()[0]
        )
    finally:
        store.close()


def test_a_raw_cut_short_is_left_without_text_not_a_traceback() -> None:
    assert stored_message_text('{"id": "e", "type": "message", "data":') is None
    assert (
        stored_message_text(
            '{"id": "e", "type": "message", "data": {"parts": [{"type": "content", "content": "a\\ud83d'
        )
        is None
    )
    assert stored_message_text('"{\\"type\\": \\"message\\", \\"data\\":"') is None
    assert stored_message_text("[1, 2]") is None and stored_message_text("") is None
