"""Regressions for the archive defects an adversary confirmed (repros in the hadv branch)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from flux0sync.backend import open_store
from flux0sync.rows import RawEvent
from flux0sync.service import acquire_lock
from flux0sync.store import StoreError


def event(offset: int, event_id: str, **metadata: object) -> RawEvent:
    return RawEvent.from_doc(
        {
            "id": event_id,
            "type": "status",
            "source": "system",
            "offset": offset,
            "correlation_id": "c",
            "data": {"type": "status", "status": "ready"},
            "created_at": "2026-11-25T00:00:00Z",
            "deleted": False,
            "metadata": metadata or None,
        }
    )


def test_a_clash_is_recorded_once_however_often_its_content_varies(archive_db: str) -> None:
    # a server adding a volatile field (a request id) to every answer re-fetched above a hole must
    # not add a conflicts row per event per pass: the archive would grow without bound
    store = open_store(archive_db)
    try:
        store.write_batch("s", [event(0, "e0"), event(1, "e1")])
        counts = [
            store.write_batch(
                "s", [event(1, "e1", request=uuid.uuid4().hex), event(0, "x", request=uuid.uuid4().hex)]
            ).conflicts
            for _ in range(5)
        ]
        assert counts == [2, 0, 0, 0, 0]
        (status,) = store.session_statuses()
        assert status.conflicts == 2
    finally:
        store.close()


def test_the_lock_of_sqlite_prefixed_path_is_the_archives_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "a.sqlite3")
    with acquire_lock("sqlite:" + db):
        assert os.path.exists(db + ".lock") and not os.path.exists("sqlite:")  # no ./sqlite:/... tree
        with pytest.raises(StoreError, match="already syncing"), acquire_lock(db):
            pass


def test_a_hard_link_to_a_locked_archive_finds_it_locked(tmp_path: Path) -> None:
    db, alias = str(tmp_path / "a.sqlite3"), str(tmp_path / "alias.sqlite3")
    with acquire_lock(db):  # the first daemon starts before the archive exists
        os.link(db, alias)
        with pytest.raises(StoreError, match="already syncing"), acquire_lock(alias):
            pass
    with acquire_lock(alias):  # released with the first
        pass
