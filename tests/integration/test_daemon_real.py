"""flux0-sync against the real flux0 server, including server crashes and restarts."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path
from typing import Dict, List, Tuple

from flux0lite import Flux0, Retry, Timeout
from tests.conftest import Strength
from tests.daemon.helpers import archive_rows, exit_code, popen_daemon, run_daemon
from tests.integration.conftest import start_or_skip


def server_log(client: Flux0) -> Dict[str, List[Tuple[int, str]]]:
    out = {}
    for session in client.sessions.list():
        events = client.sessions.list_events(session.id)
        if events:
            out[session.id] = [(e.offset, e.id) for e in events]
    return out


def wait_equal(client: Flux0, db_path: str, timeout: float = 60) -> Dict[str, List[Tuple[int, str]]]:
    deadline = time.monotonic() + timeout
    expected: Dict[str, List[Tuple[int, str]]] = {}
    while time.monotonic() < deadline:
        expected = server_log(client)
        if Path(db_path).exists() and archive_rows(db_path) == expected:
            return expected
        time.sleep(0.3)
    raise AssertionError(f"archive never caught up: server {sum(map(len, expected.values()))} events")


def chat(client: Flux0, session_id: str, text: str) -> str:
    return client.sessions.create_event(session_id, text).reply().text


def test_once_mirror_equals_real_server_exactly(tmp_path: Path, server_url: str) -> None:
    client = Flux0(server_url)
    agent = client.agents.create(name="Mirror", type="echo")
    for i in range(3):
        session = client.sessions.create(agent_id=agent.id, title=f"m{i}")
        chat(client, session.id, f"hello {i}")
        chat(client, session.id, "!tool")
    db = str(tmp_path / "a.sqlite3")
    proc = run_daemon(["--once", "--db", db, "--agent", agent.id], server_url)
    assert proc.returncode == 0, proc.stderr
    expected = {s: v for s, v in server_log(client).items() if client.sessions.retrieve(s).agent_id == agent.id}
    assert archive_rows(db) == expected
    raw = (
        sqlite3.connect(db)
        .execute("SELECT raw FROM events WHERE source = 'ai_agent' AND type = 'message' LIMIT 1")
        .fetchone()[0]
    )
    assert '"participant"' in raw


def test_daemon_survives_server_crashes_and_catches_up(tmp_path: Path, strength: Strength) -> None:
    server = start_or_skip(db_uri=f"nanodb://json?dir={tmp_path / 'flux0-data'}")
    db = str(tmp_path / "archive.sqlite3")
    daemon = None
    try:
        client = Flux0(server.url, timeout=Timeout(5, 20), retry=Retry(total=5, backoff_factor=0.2))
        agent = client.agents.create(name="Restart", type="echo")
        sessions = [client.sessions.create(agent_id=agent.id, title=str(i)).id for i in range(3)]
        for sid in sessions:
            chat(client, sid, "before the crash")
        # new sessions are found within a second, idle ones are polled at least every 5 s
        args = ["--db", db, "--interval", "0.3", "--timeout", "3", "--discover-interval", "1", "--idle-max", "5"]
        daemon = popen_daemon(args, server.url)
        wait_equal(client, db)
        for round_number in range(strength.pick(full=2, quick=1)):
            server.kill()  # a crash, not a clean stop
            time.sleep(1.5)  # the daemon meets a dead server for a few passes
            assert daemon.poll() is None, "the daemon must keep running through an outage"
            server.start()
            for sid in sessions:
                assert chat(client, sid, f"after crash {round_number}") == f"Echo: after crash {round_number}"
            new = client.sessions.create(agent_id=agent.id, title=f"new {round_number}").id
            chat(client, new, "a new session appears")
            sessions.append(new)
            final = wait_equal(client, db)
        assert sum(len(v) for v in final.values()) >= 5 * 4
        daemon.send_signal(signal.SIGTERM)
        assert exit_code(daemon) == 0
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        server.close()
