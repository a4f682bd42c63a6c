from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from flux0sync.backend import Archive, is_postgres_url, open_store
from flux0sync.engine import Engine, Totals
from flux0sync.schedule import Policy

from flux0lite import Flux0, Retry, Timeout
from tests.conftest import ROOT, subprocess_env
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, chunked, raw_response
from tests.pgcluster import connection


def populate(fake: FakeFlux0, sessions: int, events: int) -> List[str]:
    """One agent with ``sessions`` sessions of ``events`` events each; returns the session ids."""
    agent = fake.add_agent()
    ids = [fake.add_session(agent, f"s{i}") for i in range(sessions)]
    for sid in ids:
        fake.add_events(sid, events)
    return ids


def execute(db: str, query: str, params: Tuple[Any, ...] = ()) -> List[Tuple[Any, ...]]:
    """Run one statement (``?`` placeholders) on either archive, a SQLite path or a PostgreSQL URL,
    on a connection that is not the archive's own (on PostgreSQL the tests' autocommit connection
    to that database, see tests.pgcluster.connection); returns the rows it produced."""
    if is_postgres_url(db):
        cursor = connection(db).execute(query.replace("?", "%s"), params or None)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def _has_events_table(db: str) -> bool:
    if is_postgres_url(db):
        return bool(execute(db, "SELECT to_regclass('events') IS NOT NULL")[0][0])
    return bool(execute(db, "SELECT count(*) FROM sqlite_master WHERE name = 'events'")[0][0])


def archive_rows(db_path: str) -> Dict[str, List[Tuple[int, str]]]:
    """session -> [(offset, event id)] in offset order, read with a plain connection of its own."""
    out: Dict[str, List[Tuple[int, str]]] = {}
    if not (is_postgres_url(db_path) or os.path.exists(db_path)) or not _has_events_table(db_path):
        return out  # a daemon has just created the archive and not yet its schema
    for sid, offset, eid in execute(
        db_path, 'SELECT session_id, "offset", id FROM events ORDER BY session_id, "offset"'
    ):
        out.setdefault(sid, []).append((offset, eid))
    return out


def server_rows(fake: FakeFlux0) -> Dict[str, List[Tuple[int, str]]]:
    return {sid: [(e["offset"], e["id"]) for e in evs] for sid, evs in fake.events.items() if evs}


def assert_archive_equals_server(db_path: str, fake: FakeFlux0) -> None:
    archived = archive_rows(db_path)
    expected = server_rows(fake)
    assert archived.keys() == expected.keys()
    for sid, rows in expected.items():
        assert archived[sid] == rows, f"session {sid} differs"
    if not is_postgres_url(db_path):  # PostgreSQL checks its own pages
        assert execute(db_path, "PRAGMA integrity_check")[0][0] == "ok"
    dup = execute(
        db_path, 'SELECT count(*) FROM (SELECT session_id, "offset" FROM events GROUP BY 1, 2 HAVING count(*) > 1) d'
    )[0][0]
    assert dup == 0
    stored = dict(execute(db_path, 'SELECT session_id, max("offset") FROM events GROUP BY session_id'))
    for sid, last in execute(db_path, "SELECT session_id, last_offset FROM sync_state"):
        assert last == stored.get(sid, -1), f"checkpoint of {sid} is {last}, archive holds up to {stored.get(sid)}"
    for (raw,) in execute(db_path, "SELECT raw FROM events LIMIT 5"):
        json.loads(raw)


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


def client_for(fake: FakeServer, timeout: float = 2) -> Flux0:
    """A client of the fake server that never retries: each test sees every failure."""
    return Flux0(fake.url, timeout=Timeout(timeout, timeout), retry=Retry(total=0))


def one_session(fake_flux0: FakeFlux0) -> str:
    return fake_flux0.add_session(fake_flux0.add_agent())


def offsets(db: str, session_id: str) -> List[int]:
    """The offsets archived for one session, in order."""
    return [o for o, _ in archive_rows(db).get(session_id, [])]


def quick_engine(
    archive: Archive, fake: FakeServer, *, idle_max: float = 1.0, retries: int = 0, **options: Any
) -> Engine:
    """An engine on ``fake`` at test speed: 0.2 s interval, no jitter, a listing every 0.3 s,
    and a client that retries no answer (``retries`` connection retries at most)."""

    def make(user: Optional[str]) -> Flux0:
        return Flux0(fake.url, timeout=Timeout(2, 5), retry=Retry(total=retries, statuses=()), user_sub=user)

    settings: Dict[str, Any] = {"policy": Policy(interval=0.2, idle_max=idle_max, jitter=0.0), "discover_interval": 0.3}
    settings.update(options)
    return Engine(archive, make, **settings)


def run_for(target: Engine, seconds: float) -> Totals:
    end = time.monotonic() + seconds
    target.should_stop = lambda: time.monotonic() > end
    return target.run()


class StopWhen:
    """An engine's ``should_stop``: ``done()`` held or ``seconds`` passed. ``done()`` is looked at
    every ``every`` seconds at most, not at every turn of the engine's loop: it may read the
    archive, on a new connection (a PostgreSQL backend each)."""

    def __init__(self, done: Callable[[], bool], seconds: float, every: float = 0.05) -> None:
        self.done, self.every = done, every
        self.end = time.monotonic() + seconds
        self.held = False
        self.next = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now >= self.next:
            self.next = now + self.every
            self.held = bool(self.done())
        return self.held or now > self.end


def run_until(target: Engine, done: Callable[[], bool], seconds: float = 20.0, every: float = 0.05) -> Totals:
    """Run the engine on this thread until ``done()`` holds (see StopWhen) or ``seconds`` pass;
    fails if ``done()`` never held. Tests wait on what they assert, not for a fixed time that has
    to cover a loaded machine."""
    stop = StopWhen(done, seconds, every)
    target.should_stop = stop
    totals = target.run()
    assert stop.held or done(), f"not done within {seconds} s"
    return totals


# A sessions-listing entry as flux0 sends it, for tests that record listings directly.
LISTING_ENTRY: Dict[str, Any] = {
    "id": "s1",
    "agent_id": "a",
    "user_id": "u",
    "title": "t",
    "consumption_offsets": {"client": 0},
    "created_at": "2024-01-01T00:00:00Z",
}


def listing_with_a_poisoned_entry(docs: Any, poisoned: str, value: str) -> Callable[[Request, Conn], None]:
    """A responder for a listing of ``docs`` whose entry mentioning ``poisoned`` also carries
    ``"odd": value`` (raw JSON text: a huge number, a deep value)."""

    def respond(req: Request, conn: Conn) -> None:
        items = [json.dumps(doc) for doc in docs.values()]
        items = [text.replace('"id": ', f'"odd": {value}, "id": ', 1) if poisoned in text else text for text in items]
        body = ('{"data": [' + ", ".join(items) + "]}").encode()
        conn.send(raw_response(200, body, {"content-type": "application/json"}))

    return respond


def archive_beside_a_poisoned_sessions_entry(
    fake: FakeServer,
    fake_flux0: FakeFlux0,
    db: str,
    caplog: pytest.LogCaptureFixture,
    value: str,
    *,
    sessions: int,
    seconds: float,
) -> Tuple[Dict[str, List[int]], str, List[str]]:
    """``sessions`` sessions of two events each, listed with ``"odd": value`` (raw JSON text) in
    the middle one's entry; an engine runs until every other one is archived (``seconds`` at
    most: a guard against a hang). Returns each session's archived offsets, the poisoned
    session and the messages the daemon logged at WARNING and above."""
    agent = fake_flux0.add_agent()
    sids = [fake_flux0.add_session(agent) for _ in range(sessions)]
    for sid in sids:
        fake_flux0.add_events(sid, 2)
    poisoned = sids[sessions // 2]
    fake.on("GET", "/api/sessions", listing_with_a_poisoned_entry(fake_flux0.sessions, poisoned, value))
    archive = open_store(db)
    try:
        with caplog.at_level(logging.WARNING, logger="flux0sync"):
            target = quick_engine(archive, fake, idle_max=1.0, discover_interval=0.3)
            run_until(target, lambda: sum(len(offsets(db, s)) for s in sids) >= 2 * (sessions - 1), seconds)
    finally:
        archive.close()
    return {sid: offsets(db, sid) for sid in sids}, poisoned, [r.getMessage() for r in caplog.records]


def archive_beside_a_poisoned_agents_entry(
    fake: FakeServer, fake_flux0: FakeFlux0, db: str, value: str
) -> Tuple[Totals, str, str]:
    """Agents "kept" (with a session of one event) and "poisoned", listed with ``"odd": value``
    (raw JSON text) in the latter's entry; one ``once`` pass. Returns its totals, the kept
    agent and its session."""
    kept, poisoned = fake_flux0.add_agent("kept"), fake_flux0.add_agent("poisoned")
    sid = fake_flux0.add_session(kept)
    fake_flux0.add_events(sid, 1)
    fake.on("GET", "/api/agents", listing_with_a_poisoned_entry(fake_flux0.agents, poisoned, value))
    archive = open_store(db)
    try:
        return quick_engine(archive, fake, idle_max=1.0, once=True).run(), kept, sid
    finally:
        archive.close()


def serve_events_body(fake_flux0: FakeFlux0, sid: str, body: bytes, framing: str) -> None:
    """Answer every listing of ``sid``'s events with ``body``, sent ``"whole"`` (with its
    length) or in chunks."""

    def respond(req: Request, conn: Conn) -> None:
        if framing == "whole":
            conn.send(raw_response(200, body, {"content-type": "application/json"}))
        else:
            headers = {"content-type": "application/json", "transfer-encoding": "chunked"}
            conn.send(raw_response(200, b"", headers, length=False) + chunked(body) + b"0\r\n\r\n")

    fake_flux0.server.on("GET", f"/api/sessions/{sid}/events", respond)
