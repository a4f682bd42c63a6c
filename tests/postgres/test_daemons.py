"""flux0-sync processes on a PostgreSQL archive: several daemons at once, crashes, setup errors."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import time
import urllib.parse
from typing import Dict, Iterator

import pytest
from flux0sync.config import load_config
from flux0sync.notify import Notifier
from flux0sync.service import Daemon

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
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request
from tests.pgcluster import PgCluster, connection

pytestmark = pytest.mark.usefixtures("pg_driver")


def slow_down(fake: FakeServer, seconds: float) -> None:
    original = fake.find("GET", "/api/sessions/x")
    assert original is not None

    def slow_events(req: Request, conn: Conn) -> None:  # a server far away: a pass takes a while
        time.sleep(seconds)
        original(req, conn)  # type: ignore[misc]

    fake.on("GET", "/api/sessions/*", slow_events)


@pytest.mark.slow
def test_sharded_daemons_killed_at_random_lose_and_duplicate_nothing(
    pg_url: str, fake: FakeServer, strength: Strength
) -> None:
    server = FakeFlux0(fake, failure_rate=0.3, seed=3)  # and 30 % of the server's answers fail
    sessions = populate(server, 40, 60)
    slow_down(fake, 0.01)
    rng = random.Random(7)
    # four shards, plus now and then a fifth daemon owning everything: a re-shard in progress
    shard_args = [["--shard", f"{i}/4"] for i in range(4)]
    running: Dict[int, "subprocess.Popen[str]"] = {}
    kills = 0
    rounds = strength.pick(full=30, quick=10)
    deadline = time.monotonic() + 40
    while kills < rounds and time.monotonic() < deadline:
        for sid in rng.sample(sessions, 5):
            server.add_events(sid, rng.randint(10, 40))
        for slot in range(5):
            if slot not in running and (slot < 4 or rng.random() < 0.5):
                extra = shard_args[slot] if slot < 4 else []
                # COVERAGE_PROCESS_START empty, as in test_service's kill -9 loop: a daemon killed with
                # SIGKILL never saves coverage data; the --once runs at the end are measured
                running[slot] = popen_daemon(
                    ["--db", pg_url, "--batch-size", "7", "--interval", "0.05", *extra],
                    fake.url,
                    COVERAGE_PROCESS_START="",
                )
        time.sleep(rng.uniform(0.1, 0.4))
        victim = rng.choice(sorted(running))
        os.killpg(running[victim].pid, signal.SIGKILL)
        running.pop(victim).wait(10)
        kills += 1
        for sid, items in archive_rows(pg_url).items():  # never a gap, at any instant
            assert [o for o, _ in items] == list(range(len(items))), sid
    for proc in running.values():
        os.killpg(proc.pid, signal.SIGTERM)
        assert exit_code(proc) == 0
    assert kills >= 10
    server.failure_rate = 0
    for shard in range(4):  # each shard's --once pass, in this process (the kills need processes)
        flags = {"db_path": pg_url, "shard": f"{shard}/4"}
        assert Daemon(load_config(flags, {"FLUX0_SERVER_URL": fake.url}), once=True, notifier=Notifier("")).run() == 0
    assert_archive_equals_server(pg_url, server)


def _archived_while_it_runs(proc: "subprocess.Popen[str]", db: str, server: FakeFlux0, seconds: float = 60) -> None:
    """Waits until the running daemon's archive holds what the server holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            assert_archive_equals_server(db, server)
            return
        except AssertionError:
            time.sleep(0.2)
    assert_archive_equals_server(db, server)


@contextlib.contextmanager
def _daemon_stopped_cleanly(db: str, url: str) -> Iterator["subprocess.Popen[str]"]:
    """A daemon on ``db`` at test speed, pausing at most 1 s; stopped with SIGTERM at the end,
    which it must answer with exit 0 (killed if the test failed first)."""
    proc = popen_daemon(["--db", db, "--interval", "0.05"], url, FLUX0_SYNC_MAX_BACKOFF="1")
    try:
        yield proc
        os.killpg(proc.pid, signal.SIGTERM)
        assert exit_code(proc) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.timeout(180)
def test_a_daemon_pauses_while_its_database_server_is_down_and_catches_up(
    pg_cluster: PgCluster, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """A database server that is down for a while pauses the daemon until it is back (hadv22 01:
    refreshing STATUS read the archive during the pause and ended the daemon, exit 1)."""
    db = pg_cluster.new_database()
    sessions = populate(fake_flux0, 4, 10)
    try:
        with _daemon_stopped_cleanly(db, fake.url) as proc:
            for _ in range(6):  # events archived moments ago: a STATUS refresh is due during the pause
                fake_flux0.add_events(sessions[1], 2)
                _archived_while_it_runs(proc, db, fake_flux0)
            pg_cluster.pause()
            try:
                for sid in sessions:  # new events, so that the daemon writes (and STATUS is due) while it is down
                    fake_flux0.add_events(sid, 5)
                time.sleep(4)
                assert proc.poll() is None
            finally:
                pg_cluster.resume()
            fake_flux0.add_events(sessions[0], 3)
            _archived_while_it_runs(proc, db, fake_flux0)
    finally:
        pg_cluster.drop_database(db)
    log = proc.stderr.read() if proc.stderr else ""
    assert "cannot be reached" in log and "Traceback" not in log, log


@pytest.mark.timeout(120)
def test_a_daemon_pauses_while_its_database_is_read_only_and_catches_up(
    pg_cluster: PgCluster, pg_url: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """A database made read-only for a while (maintenance, or a standby reached during a
    failover: SQLSTATE 25006) pauses the daemon, which connects anew for each try (hadv22 02:
    it exited 3, which systemd does not restart)."""
    name = urllib.parse.urlsplit(pg_url).path.lstrip("/")
    sessions = populate(fake_flux0, 3, 10)
    with _daemon_stopped_cleanly(pg_url, fake.url) as proc:
        _archived_while_it_runs(proc, pg_url, fake_flux0)
        admin = connection(pg_cluster.conninfo())
        admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (name, "flux0-sync"),
        )
        for sid in sessions:
            fake_flux0.add_events(sid, 5)
        time.sleep(3)
        assert proc.poll() is None
        admin.execute(f"ALTER DATABASE {name} RESET default_transaction_read_only")
        _archived_while_it_runs(proc, pg_url, fake_flux0)
    log = proc.stderr.read() if proc.stderr else ""
    assert "read-only" in log and "trying again in" in log and "Traceback" not in log, log
    assert "in a row" not in log, log  # the daemon paused; no session failed (hadv26 04: each re-polled every 1-2 s)


def test_missing_driver_exits_2_naming_the_extra(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    env = subprocess_env(FLUX0_SERVER_URL=fake.url)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "daemon")])  # without .cache/pydeps-*
    probe = subprocess.run(daemon_cmd()[:1] + ["-c", "import psycopg"], capture_output=True, env=env, timeout=60)
    if probe.returncode == 0:
        pytest.skip("psycopg is installed in the test venv itself")
    for args in (["--once", "--db", "postgresql://u@/db?host=/nonexistent"], ["status", "--db", "postgres://u@/db"]):
        proc = subprocess.run(daemon_cmd(*args), capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "pip install 'flux0lite[postgres]'" in proc.stderr and "Traceback" not in proc.stderr


def test_unreachable_database_exits_1_in_one_line_without_the_password(fake: FakeServer) -> None:
    url = "postgresql://me:s3cret@/nodb?host=/nonexistent-socket-dir"
    for args in (["--once", "--db", url], ["status", "--db", url]):
        proc = run_daemon(args, fake.url)
        assert proc.returncode == 1, proc.stderr
        # the log line keeps the user (me:***@); the command line's stderr hides the userinfo whole
        assert re.search(r"cannot connect to postgresql://(me:)?\*\*\*@/nodb", proc.stderr), proc.stderr
        assert "s3cret" not in proc.stderr and "Traceback" not in proc.stderr


def test_bad_shard_setting_exits_2(fake: FakeServer, pg_url: str) -> None:
    for bad in ("4/4", "x", "1/0"):
        proc = run_daemon(["--once", "--db", pg_url, "--shard", bad], fake.url)
        assert proc.returncode == 2 and "shard (FLUX0_SYNC_SHARD)" in proc.stderr, proc.stderr
    proc = run_daemon(["--once", "--db", pg_url], fake.url, FLUX0_SYNC_SHARD="2/1")
    assert proc.returncode == 2 and "shard" in proc.stderr


def test_wrong_database_name_is_a_setup_error_exit_3(pg_cluster: object, fake: FakeServer) -> None:
    url = pg_cluster.conninfo("no_such_database")  # type: ignore[attr-defined]
    proc = run_daemon(["--once", "--db", url], fake.url)
    assert proc.returncode == 3 and "does not exist" in proc.stderr, proc.stderr
