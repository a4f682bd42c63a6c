"""A daemon killed just before any one of its SQL statements loses and duplicates nothing.

The writer keeps a poll's checkpoint and the sessions with open gaps in memory between its
statements (see flux0sync.engine and jobs.SessionWriter) instead of reading them again: none of
it is trusted across a crash. Each run here dies (``os._exit``, no clean-up, as with SIGKILL)
right before its Nth statement, for N spread over a whole pass (about 320 statements: every
8th at full strength, so every kind of statement is hit); the archive must then hold each
session's events from offset 0 without a hole, with the checkpoint they earned and the full-text
rows that go with them, and a later pass must complete it exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
from flux0sync.config import load_config
from flux0sync.notify import Notifier
from flux0sync.service import Daemon

from tests.conftest import ROOT, Strength, subprocess_env
from tests.daemon.helpers import archive_rows, assert_archive_equals_server, execute, populate
from tests.fakeserver import FakeFlux0, FakeServer

# The daemon, dying before statement number CRASH_AT (counted from the archive's opening; a
# statement of an executemany counts once per row); at exit it prints how many it ran.
_CRASHING_DAEMON = """
import atexit, os, runpy, sys
import flux0sync.store as store

crash_at = int(os.environ["CRASH_AT"])
ran = [0]
opened = store.Store.__init__

def counting(self, *args, **kwargs):
    opened(self, *args, **kwargs)
    def before(statement):
        ran[0] += 1
        if ran[0] == crash_at:
            os._exit(9)
    self.db.set_trace_callback(before)

store.Store.__init__ = counting
atexit.register(lambda: sys.stderr.write(f"statements: {ran[0]}\\n"))
sys.argv = ["flux0sync", *sys.argv[1:]]
runpy.run_module("flux0sync", run_name="__main__")
"""


def _run(db: str, url: str, crash_at: int) -> "subprocess.CompletedProcess[str]":
    args = ["--once", "--db", db, "--workers", "3", "--batch-size", "4", "--no-check", "--log-level", "ERROR"]
    return subprocess.run(
        [sys.executable, "-c", _CRASHING_DAEMON, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(FLUX0_SERVER_URL=url, CRASH_AT=str(crash_at)),
        cwd=str(ROOT),
    )


def _assert_consistent(db: str) -> None:
    """Each session's events from offset 0 without a hole, its checkpoint on the last of them,
    and a full-text row for each event with text: what one transaction commits, whole or not at all."""
    for sid, items in archive_rows(db).items():
        assert [offset for offset, _ in items] == list(range(len(items))), sid
    stored: Dict[str, int] = dict(execute(db, 'SELECT session_id, max("offset") FROM events GROUP BY session_id'))
    for sid, last in execute(db, "SELECT session_id, last_offset FROM sync_state"):
        assert last == stored.get(sid, -1), f"checkpoint of {sid} is {last}, archive holds up to {stored.get(sid)}"
    texts = execute(db, "SELECT count(*) FROM events WHERE text IS NOT NULL AND text != ''")[0][0]
    assert execute(db, "SELECT count(*) FROM events_fts_docsize")[0][0] == texts


@pytest.mark.slow
def test_a_crash_before_any_statement_of_a_pass_loses_and_duplicates_nothing(
    tmp_path: Path, fake: FakeServer, strength: Strength
) -> None:
    server = FakeFlux0(fake)
    populate(server, 5, 9)  # several sessions per transaction and several transactions per session
    whole = _run(str(tmp_path / "whole.sqlite3"), fake.url, 0)
    assert whole.returncode == 0, whole.stderr
    statements = int(whole.stderr.rsplit("statements: ", 1)[1].split()[0])
    assert statements > 30
    step = strength.pick(full=8, quick=23)  # not a divisor of a batch's statements: each kind is hit
    for crash_at in range(1, statements + 1, step):
        db = str(tmp_path / f"crash-{crash_at}.sqlite3")
        crashed = _run(db, fake.url, crash_at)
        assert crashed.returncode == 9, (crash_at, crashed.stderr[-500:])
        if os.path.exists(db) and execute(db, "PRAGMA user_version")[0][0] > 0:
            _assert_consistent(db)
        # the pass after the crash: the daemon's own --once run, in this process (the crash is
        # what needs a process of its own; a start per crash point cost more than the pass)
        finished = Daemon(
            load_config({"db_path": db}, {"FLUX0_SERVER_URL": fake.url}), once=True, check=False, notifier=Notifier("")
        )
        assert finished.run() == 0, crash_at
        assert_archive_equals_server(db, server)
        _assert_consistent(db)
