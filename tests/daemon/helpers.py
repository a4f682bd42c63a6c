from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

from tests.conftest import ROOT, subprocess_env
from tests.fakeserver import FakeFlux0


def archive_rows(db_path: str) -> Dict[str, List[Tuple[int, str]]]:
    """session -> [(offset, event id)] in offset order, read with a plain sqlite3 connection."""
    db = sqlite3.connect(db_path)
    try:
        out: Dict[str, List[Tuple[int, str]]] = {}
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone() is None:
            return out  # a daemon has just created the file and not yet its schema
        for sid, offset, eid in db.execute('SELECT session_id, "offset", id FROM events ORDER BY session_id, "offset"'):
            out.setdefault(sid, []).append((offset, eid))
        return out
    finally:
        db.close()


def server_rows(fake: FakeFlux0) -> Dict[str, List[Tuple[int, str]]]:
    return {sid: [(e["offset"], e["id"]) for e in evs] for sid, evs in fake.events.items() if evs}


def assert_archive_equals_server(db_path: str, fake: FakeFlux0) -> None:
    archived = archive_rows(db_path)
    expected = server_rows(fake)
    assert archived.keys() == expected.keys()
    for sid, rows in expected.items():
        assert archived[sid] == rows, f"session {sid} differs"
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        dup = db.execute(
            'SELECT count(*) FROM (SELECT session_id, "offset" FROM events GROUP BY 1, 2 HAVING count(*) > 1)'
        ).fetchone()[0]
        assert dup == 0
        for sid, last in db.execute("SELECT session_id, last_offset FROM sync_state"):
            stored = db.execute(
                'SELECT coalesce(max("offset"), -1) FROM events WHERE session_id = ?', (sid,)
            ).fetchone()[0]
            assert last == stored, f"checkpoint of {sid} is {last}, archive holds up to {stored}"
        for (raw,) in db.execute("SELECT raw FROM events LIMIT 5"):
            json.loads(raw)
    finally:
        db.close()


def daemon_cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "flux0sync", *args]


def run_daemon(args: List[str], url: Optional[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    extra = dict(env)
    if url:
        extra["FLUX0_SERVER_URL"] = url
    return subprocess.run(
        daemon_cmd(*args), capture_output=True, text=True, timeout=timeout, env=subprocess_env(**extra), cwd=str(ROOT)
    )


def popen_daemon(args: List[str], url: str, **env: str) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen(
        daemon_cmd(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # PYTHONFAULTHANDLER: a daemon that hangs prints every thread's stack on SIGABRT
        env=subprocess_env(FLUX0_SERVER_URL=url, PYTHONFAULTHANDLER="1", **env),
        cwd=str(ROOT),
        preexec_fn=os.setsid,
    )


def exit_code(proc: "subprocess.Popen[str]", timeout: float = 20) -> int:
    """The daemon's exit code; if it hangs, fail with the stack it was stuck in."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        raise AssertionError(f"the daemon did not exit within {timeout} s; its stderr:\n{err[-8000:]}") from None
