from __future__ import annotations

import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Tuple

import pytest
from flux0sync.cli import main
from flux0sync.config import Config, ConfigError, load_config
from flux0sync.notify import Notifier, watchdog_interval
from flux0sync.service import Daemon, StopFlag

from tests.conftest import ROOT, Strength, subprocess_env
from tests.daemon.helpers import (
    archive_rows,
    assert_archive_equals_server,
    daemon_cmd,
    exit_code,
    popen_daemon,
    populate,
    run_daemon,
)
from tests.daemon.notify import NotifySocket
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request

# -- config ------------------------------------------------------------------------------------


def test_config_precedence_and_validation(tmp_path: Path) -> None:
    ini = tmp_path / "sync.ini"
    ini.write_text("[flux0-sync]\nserver_url = http://ini:1\ndb = /ini.db\ninterval = 30\nagents = a1, a2\n")
    env = {"FLUX0_SYNC_CONFIG": str(ini), "FLUX0_SYNC_INTERVAL": "20", "STATE_DIRECTORY": "/var/lib/flux0-sync"}
    config = load_config({"interval": 5.0, "server_url": None}, env)
    assert config.server_url == "http://ini:1" and config.interval == 5.0 and config.agent_ids == ("a1", "a2")
    assert config.db_path == "/ini.db" and config.config_file == str(ini)
    assert load_config({}, {"STATE_DIRECTORY": "/var/lib/x:/other"}).db_path == "/var/lib/x/flux0.sqlite3"
    assert load_config({}, {"FLUX0_SYNC_INTERVAL": "20"}).interval == 20.0
    assert "token" not in repr(load_config({"token": "secret-token"}, {})).replace("token=", "")
    for bad in ({"interval": "0"}, {"batch_size": "-3"}, {"synchronous": "sometimes"}, {"timeout": "soon"}):
        with pytest.raises(ConfigError):
            load_config(bad, {})
    (tmp_path / "bad.ini").write_text("[flux0-sync]\nfrobnicate = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config({"config_file": str(tmp_path / "bad.ini")}, {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config({"config_file": str(tmp_path / "missing.ini")}, {})
    assert Config().interval == 10.0


def test_notifier_datagrams_and_watchdog_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listener = NotifySocket(tmp_path)
    try:
        notifier = Notifier(listener.path)
        assert notifier.enabled and notifier.ready("up") and notifier.watchdog() and notifier.stopping()
        listener.wait_for("STOPPING=1")
        messages = listener.drain()
        assert messages[0].startswith("READY=1\nSTATUS=up\nMAINPID=")
        assert messages[1:] == ["WATCHDOG=1", "STOPPING=1\nSTATUS=stopping"]
    finally:
        listener.close()
    assert not Notifier("").send("READY=1")
    assert not Notifier(str(tmp_path / "nobody-listens")).send("READY=1")
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    assert watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval() is None


# -- the process -------------------------------------------------------------------------------


def test_once_mirrors_and_exit_codes(tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    populate(fake_flux0, 5, 30)
    db = str(tmp_path / "a.sqlite3")
    proc = run_daemon(["--once", "--db", db], fake.url)
    assert proc.returncode == 0, proc.stderr
    assert_archive_equals_server(db, fake_flux0)
    assert "pass: 5 sessions, +150 events" in proc.stderr
    assert run_daemon(["--once", "--db", db, "--retries-bogus"], fake.url).returncode == 2
    assert run_daemon(["--once", "--db", db], "http://127.0.0.1:1", FLUX0_SYNC_TIMEOUT="1").returncode == 1
    assert run_daemon(["--once", "--db", db, "--interval", "0"], fake.url).returncode == 2


def test_state_directory_default_and_journal_format(tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    populate(fake_flux0, 1, 3)
    # stderr is the journal's stream when JOURNAL_STREAM names it (device:inode), as systemd sets it
    read_end, write_end = os.pipe()
    stream = os.fstat(write_end)
    env = subprocess_env(FLUX0_SERVER_URL=fake.url, STATE_DIRECTORY=str(tmp_path))
    env["JOURNAL_STREAM"] = f"{stream.st_dev}:{stream.st_ino}"
    with os.fdopen(read_end) as journal:
        proc = subprocess.run(daemon_cmd("--once"), stderr=write_end, env=env, cwd=str(ROOT), timeout=120)
        os.close(write_end)
        lines = journal.read().splitlines()
    assert proc.returncode == 0
    assert os.path.exists(tmp_path / "flux0.sqlite3")
    assert lines and all(line.startswith("<") for line in lines)
    # a JOURNAL_STREAM inherited from a parent service, stderr elsewhere: plain lines (hadv34 03)
    plain = run_daemon(["--once"], fake.url, STATE_DIRECTORY=str(tmp_path), JOURNAL_STREAM="8:123")
    assert (
        plain.returncode == 0 and plain.stderr and not any(line.startswith("<") for line in plain.stderr.splitlines())
    )


def test_read_side_status_export_search(
    archive_db: str, tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read commands on either archive: a process for a pass, a status and a refusal (exit codes
    0 and 3 as the process's; test_once_mirrors_and_exit_codes has 1 and 2), the rest in-process
    through the same ``main`` (a daemon process costs ~0.1 s of CPU to start, on five Pythons)."""
    (sid,) = populate(fake_flux0, 1, 6)
    db = archive_db
    assert run_daemon(["--once", "--db", db], fake.url).returncode == 0
    proc = run_daemon(["status", "--db", db], None)
    assert proc.returncode == 0 and sid in proc.stdout and "6 events, 1 sessions" in proc.stdout
    assert run_daemon(["status", "--db", str(tmp_path / "none.sqlite3")], None).returncode == 3
    fake_flux0.add_events(sid, 4)
    monkeypatch.setenv("FLUX0_SERVER_URL", fake.url)

    def cli(*args: str) -> Tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(args), stdout=out, stderr=err)
        assert "Traceback" not in err.getvalue()
        return code, out.getvalue()

    code, out = cli("status", "--db", db, "--server", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["events"] == 6 and doc["per_session"][0]["behind"] == 4
    code, out = cli("export", sid, "--db", db, "--jsonl")
    assert code == 0 and [json.loads(line)["offset"] for line in out.splitlines()] == list(range(6))
    assert cli("export", "nosuchsess", "--db", db)[0] == 1
    code, out = cli("search", f"message {sid} #3", "--db", db)
    assert code == 0 and len(out.splitlines()) == 1
    assert cli("search", "zebra", "--db", db)[0] == 1


def test_sigterm_while_every_fetch_stalls_exits_0_at_once(tmp_path: Path, fake: FakeServer) -> None:
    """Blocked reads are cut by shutting their sockets down; the 30 s read timeout never matters."""
    server = FakeFlux0(fake)
    populate(server, 10, 0)

    def stall(req: Request, conn: Conn) -> None:
        conn.sock.settimeout(None)
        conn.sock.recv(1)
        conn.keep_alive = False

    fake.on("GET", "/api/sessions/*", stall)
    db = str(tmp_path / "a.sqlite3")
    listener = NotifySocket(tmp_path)
    proc = popen_daemon(["--db", db, "--workers", "4", "--timeout", "30"], fake.url, NOTIFY_SOCKET=listener.path)
    try:
        listener.wait_for("READY=1")
        deadline = time.monotonic() + 20
        while sum(1 for r in fake.requests if r.path.endswith("/events")) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc, 10) == 0
        assert "received SIGTERM: stopping" in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()


def test_stop_handler_only_sets_a_flag(tmp_path: Path) -> None:
    """No exception is ever raised from a signal handler: the loop sees the flag and returns."""
    stop = StopFlag()
    previous = stop.install()
    try:
        for _ in range(50):
            os.kill(os.getpid(), random.choice([signal.SIGTERM, signal.SIGINT]))
        time.sleep(0.05)
        assert stop.is_set and stop.signal in (signal.SIGTERM, signal.SIGINT)
        daemon = Daemon(Config(db_path=str(tmp_path / "a.sqlite3")), notifier=Notifier(""), stop=stop)
        assert daemon.run() == 0  # asked to stop before it started: nothing opened, exit 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_notifier_gives_up_on_a_supervisor_that_stopped_reading(tmp_path: Path) -> None:
    stuck = NotifySocket(tmp_path, reading=False)
    try:
        notifier = Notifier(stuck.path)
        started = time.monotonic()
        results = [notifier.watchdog() for _ in range(40)]
        elapsed = time.monotonic() - started
        # the kernel queues a few datagrams, then every send is dropped at once (hadv38 04: each
        # waited 0.5 s, on the sync loop's thread)
        assert results[0] and not results[-1]
        assert notifier.dropped == results.count(False) and notifier.sent == results.count(True)
        assert elapsed < 1.0
    finally:
        stuck.close()


def test_sigterm_stops_promptly_even_when_the_supervisor_stopped_reading(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """A full notify queue once hung the daemon: the SIGTERM handler itself blocked in a send."""
    populate(fake_flux0, 3, 10)
    stuck = NotifySocket(tmp_path, reading=False)
    db = str(tmp_path / "a.sqlite3")
    proc = popen_daemon(["--db", db, "--interval", "0.1"], fake.url, NOTIFY_SOCKET=stuck.path, WATCHDOG_USEC="100000")
    try:
        deadline = time.monotonic() + 30
        while not archive_rows(db) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # long enough for the queue to fill and every send to wait
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc, 10) == 0
        assert "received SIGTERM: stopping" in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
        stuck.close()
    assert_archive_equals_server(db, fake_flux0)


def test_sd_notify_ready_status_watchdog_stopping_and_sigterm(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    populate(fake_flux0, 3, 10)
    listener = NotifySocket(tmp_path)
    db = str(tmp_path / "a.sqlite3")
    proc = popen_daemon(
        ["--db", db, "--interval", "0.3"], fake.url, NOTIFY_SOCKET=listener.path, WATCHDOG_USEC="400000"
    )
    try:
        ready = listener.wait_for("READY=1")
        assert "STATUS=" in ready
        listener.wait_for("STATUS=30 events in 3 sessions")
        listener.wait_for("WATCHDOG=1")
        pings = sum(1 for m in listener.drain() if m == "WATCHDOG=1")
        within = time.monotonic() + 1.0
        while time.monotonic() < within and sum(1 for m in listener.drain() if m == "WATCHDOG=1") < pings + 2:
            time.sleep(0.05)
        assert sum(1 for m in listener.drain() if m == "WATCHDOG=1") >= pings + 2  # within 1 s
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc) == 0
        listener.wait_for("STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
    assert_archive_equals_server(db, fake_flux0)


def test_sighup_reloads_config(tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    agent_a = fake_flux0.add_agent()
    agent_b = fake_flux0.add_agent()
    fake_flux0.add_events(fake_flux0.add_session(agent_a), 2)
    sb = fake_flux0.add_session(agent_b)
    fake_flux0.add_events(sb, 3)
    ini = tmp_path / "sync.ini"
    ini.write_text(f"[flux0-sync]\nagents = {agent_a}\ninterval = 0.2\n")
    db = str(tmp_path / "a.sqlite3")
    listener = NotifySocket(tmp_path)
    proc = popen_daemon(["--db", db, "--config", str(ini)], fake.url, NOTIFY_SOCKET=listener.path)
    try:
        listener.wait_for("STATUS=2 events")
        ini.write_text(f"[flux0-sync]\nagents = {agent_a} {agent_b}\ninterval = 0.2\n")
        proc.send_signal(signal.SIGHUP)
        listener.wait_for("RELOADING=1")
        listener.wait_for("STATUS=5 events")
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
    assert sb in archive_rows(db)


def test_two_daemons_on_one_archive(tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    populate(fake_flux0, 2, 5)
    db = str(tmp_path / "a.sqlite3")
    listener = NotifySocket(tmp_path)
    first = popen_daemon(["--db", db, "--interval", "0.2"], fake.url, NOTIFY_SOCKET=listener.path)
    try:
        listener.wait_for("READY=1")
        second = run_daemon(["--db", db, "--once"], fake.url)
        assert second.returncode == 3
        assert f"already syncing into {db}" in second.stderr and str(first.pid) in second.stderr
        # readers are never blocked by the writer
        assert run_daemon(["status", "--db", db], None).returncode == 0
    finally:
        first.send_signal(signal.SIGTERM)
        assert exit_code(first) == 0
        listener.close()
    assert_archive_equals_server(db, fake_flux0)


def test_foreign_database_is_refused_at_start(tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    other = tmp_path / "other.db"
    db = sqlite3.connect(str(other))
    db.execute("CREATE TABLE ledger (x)")
    db.commit()
    db.close()
    before = other.read_bytes()
    proc = run_daemon(["--once", "--db", str(other)], fake.url)
    assert proc.returncode == 3 and "refusing to touch it" in proc.stderr
    assert other.read_bytes() == before
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(os.urandom(8192))
    assert run_daemon(["--once", "--db", str(garbage)], fake.url).returncode == 3


def test_full_disk_then_recovery(tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    populate(fake_flux0, 4, 400)
    db = str(tmp_path / "a.sqlite3")
    proc = run_daemon(["--once", "--db", db, "--max-db-pages", "40", "--batch-size", "50"], fake.url)
    assert proc.returncode == 1 and "archive is full" in proc.stderr
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for sid, last in check.execute("SELECT session_id, last_offset FROM sync_state"):
        count = check.execute("SELECT count(*) FROM events WHERE session_id = ?", (sid,)).fetchone()[0]
        assert count == last + 1
    check.close()
    proc = run_daemon(["--once", "--db", db], fake.url)
    assert proc.returncode == 0, proc.stderr
    assert_archive_equals_server(db, fake_flux0)


def test_sigterm_during_batches_exits_0_consistent(tmp_path: Path, fake: FakeServer) -> None:
    slow = FakeFlux0(fake)
    populate(slow, 30, 200)
    original = fake.find("GET", "/api/sessions/x")
    assert original is not None

    def slow_events(req: Request, conn: Conn) -> None:
        time.sleep(0.02)
        original(req, conn)  # type: ignore[misc]

    fake.on("GET", "/api/sessions/*", slow_events)
    db = str(tmp_path / "a.sqlite3")
    listener = NotifySocket(tmp_path)
    for delay in (0.05, 0.3, 0.6):
        listener.forget()  # the last daemon's READY=1 must not count for this one
        proc = popen_daemon(
            ["--db", db, "--batch-size", "10", "--synchronous", "FULL"], fake.url, NOTIFY_SOCKET=listener.path
        )
        listener.wait_for("READY=1")  # before READY, SIGTERM meets Python's default handler
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc) == 0
        rows = archive_rows(db)
        for sid, items in rows.items():
            assert [o for o, _ in items] == list(range(len(items)))
    listener.close()
    proc = run_daemon(["--once", "--db", db], fake.url)
    assert proc.returncode == 0
    assert_archive_equals_server(db, slow)


@pytest.mark.slow
def test_kill_9_loop_loses_and_duplicates_nothing(archive_db: str, fake: FakeServer, strength: Strength) -> None:
    server = FakeFlux0(fake)
    sessions = populate(server, 40, 100)  # 4,000 events to start with
    original = fake.find("GET", "/api/sessions/x")
    assert original is not None

    def slow_events(req: Request, conn: Conn) -> None:  # a server far away: a pass takes a while
        time.sleep(0.015)
        original(req, conn)  # type: ignore[misc]

    fake.on("GET", "/api/sessions/*", slow_events)
    db = archive_db
    rng = random.Random(42)
    kills = mid_sync = 0
    rounds = strength.pick(full=25, quick=8)
    while kills < rounds:
        # the log keeps growing while the daemon is being killed
        for sid in rng.sample(sessions, 10):
            server.add_events(sid, rng.randint(20, 80))
        # COVERAGE_PROCESS_START empty: a daemon killed with SIGKILL never saves coverage data, so
        # measuring it (scripts/test, newest Python) would only cost CPU; the last run below is measured
        proc = popen_daemon(
            ["--db", db, "--workers", "4", "--batch-size", "7", "--interval", "0.05", "--no-check"],
            fake.url,
            COVERAGE_PROCESS_START="",
        )
        time.sleep(rng.uniform(0.15, 0.6))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        kills += 1
        rows = archive_rows(db)
        for sid, items in rows.items():  # never a gap, at any instant
            assert [o for o, _ in items] == list(range(len(items)))
        if sum(len(v) for v in rows.values()) < sum(len(v) for v in server.events.values()):
            mid_sync += 1
    assert mid_sync >= rounds * 4 // 5, f"only {mid_sync} of {kills} kills landed mid-sync"
    total = sum(len(v) for v in server.events.values())
    assert total > 4000
    proc = run_daemon(["--once", "--db", db, "--workers", "4"], fake.url)
    assert proc.returncode == 0, proc.stderr
    assert_archive_equals_server(db, server)
