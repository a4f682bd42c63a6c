"""The archive backends the daemon's tests run against: each test taking ``archive_db`` runs twice."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from flux0sync.store import Store

from tests.pgcluster import pg_cluster, pg_driver, pg_url

__all__ = ["archive_db", "pg_cluster", "pg_driver", "pg_url", "store"]


@pytest.fixture(params=["sqlite", "postgresql"])
def archive_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ``--db`` of a fresh, empty archive: a SQLite file, or a database of the throwaway PostgreSQL."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "a.sqlite3")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite archive, closed after the test."""
    archive = Store(str(tmp_path / "a.sqlite3"))
    yield archive
    archive.close()
