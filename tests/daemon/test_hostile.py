"""flux0-sync never trusts the server: a hostile or broken answer costs at most that one session.

Each test makes a fake flux0 misbehave the way buggy proxies, other flux0 versions or storage
hiccups do, and checks that no event is lost or duplicated without a record, and that the
daemon keeps going.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from flux0sync.backend import open_store
from flux0sync.cli import main
from flux0sync.store import Store
from flux0sync.sync import Syncer

from tests.conftest import ROOT, subprocess_env
from tests.daemon.helpers import (
    archive_rows,
    assert_archive_equals_server,
    client_for,
    daemon_cmd,
    execute,
    exit_code,
    offsets,
    one_session,
    popen_daemon,
    run_daemon,
)
from tests.daemon.hostile import event, serve_bytes, serve_events, serve_gzip, serve_trickle
from tests.daemon.notify import NotifySocket
from tests.fakeserver import FakeFlux0, FakeServer

# -- offsets are verified, not assumed ----------------------------------------------------------


def test_a_gap_is_held_open_and_filled_on_a_later_pass(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = one_session(fake_flux0)
    docs = [event(sid, 0), event(sid, 1), event(sid, 3)]
    serve_events(fake_flux0, sid, lambda: docs)
    db = archive_db
    store = open_store(db)
    syncer = Syncer(client_for(fake), store, gap_patience=3600)
    assert syncer.run_pass().ok
    assert offsets(db, sid) == [0, 1, 3] and store.checkpoint(sid) == 1
    assert [(g.first_offset, g.skipped_at) for g in store.gaps(sid)] == [(2, None)]
    docs.insert(2, event(sid, 2))  # the late event appears
    before = len(fake.requests)
    assert syncer.run_pass().ok
    assert [r.query["min_offset"] for r in fake.requests[before:] if r.path.endswith("/events")] == ["2"]
    assert offsets(db, sid) == [0, 1, 2, 3] and store.checkpoint(sid) == 3 and store.gaps(sid) == []


def test_a_persisting_gap_is_recorded_warned_once_shown_and_passed(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    sid = one_session(fake_flux0)
    docs = [event(sid, 0), event(sid, 1), event(sid, 4)]
    serve_events(fake_flux0, sid, lambda: docs)
    db = archive_db
    store = open_store(db)
    syncer = Syncer(client_for(fake), store, gap_patience=0.5)
    with caplog.at_level(logging.WARNING, logger="flux0sync"):
        syncer.run_pass()
        assert store.checkpoint(sid) == 1 and not caplog.records
        time.sleep(0.6)
        syncer.run_pass()
        docs.append(event(sid, 5))
        syncer.run_pass()
        syncer.run_pass()
    warnings = [r.getMessage() for r in caplog.records if "never arrived" in r.getMessage()]
    assert warnings == [f"session {sid}: offsets 2..3 never arrived in 1 s; recorded as a gap and passed"]
    assert store.checkpoint(sid) == 5 and offsets(db, sid) == [0, 1, 4, 5]
    (gap,) = store.gaps(sid)
    assert (gap.first_offset, gap.last_offset) == (2, 3) and gap.skipped_at is not None
    capsys.readouterr()
    assert main(["status", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "1 passed" in out and f"{sid}: gap at offsets 2..3: passed" in out
    assert main(["status", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gaps"][0]["first_offset"] == 2


def test_out_of_order_answer_stopped_after_one_batch_loses_nothing(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = one_session(fake_flux0)
    docs = [event(sid, o) for o in (5, 4, 3, 2, 1, 0)]
    serve_events(fake_flux0, sid, lambda: docs)
    db = archive_db
    store = open_store(db)
    stop = {"now": False}
    syncer = Syncer(client_for(fake), store, batch_size=2, should_stop=lambda: stop["now"])
    original = store.write_batch

    def write_then_stop(session_id: str, events: Any, *generation: Any) -> Any:
        stop["now"] = True
        return original(session_id, events, *generation)

    store.write_batch = write_then_stop  # type: ignore[method-assign]
    syncer.run_pass()
    assert offsets(db, sid) == [4, 5] and store.checkpoint(sid) == -1  # never past the missing 0..3
    store.write_batch = original  # type: ignore[method-assign]
    stop["now"] = False
    syncer.run_pass()
    assert offsets(db, sid) == [0, 1, 2, 3, 4, 5] and store.checkpoint(sid) == 5


def test_same_event_id_in_two_sessions_keeps_both_and_a_clash_is_recorded(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture
) -> None:
    agent = fake_flux0.add_agent()
    s1, s2 = fake_flux0.add_session(agent), fake_flux0.add_session(agent)
    docs1 = [event(s1, 0, event_id="shared")]
    serve_events(fake_flux0, s1, lambda: docs1)
    serve_events(fake_flux0, s2, lambda: [event(s2, 0, event_id="shared"), event(s2, 1)])
    db = archive_db
    store = open_store(db)
    syncer = Syncer(client_for(fake), store)
    assert syncer.run_pass().events_inserted == 3
    assert archive_rows(db) == {s1: [(0, "shared")], s2: [(0, "shared"), (1, f"{s2}-e1")]}
    # the server now shows a different event under an offset we already hold, and an old id at a new offset
    docs1[:] = [event(s1, 0, event_id="impostor"), event(s1, 1, event_id="shared")]
    execute(db, "UPDATE sync_state SET last_offset = -1 WHERE session_id = ?", (s1,))
    with caplog.at_level(logging.WARNING, logger="flux0sync"):
        syncer.run_pass()
    assert any("clash" in r.getMessage() for r in caplog.records)
    clashes = execute(db, "SELECT event_id, reason FROM conflicts ORDER BY event_id")
    assert clashes == [("impostor", "same offset, different id"), ("shared", "same id, different event")]
    assert archive_rows(db)[s1] == [(0, "shared")]


# -- content the archive cannot store as is -----------------------------------------------------


def test_unstorable_values_are_kept_losslessly_and_never_stop_the_daemon(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    odd, healthy = fake_flux0.add_session(agent), fake_flux0.add_session(agent)
    fake_flux0.add_events(healthy, 3)
    serve_bytes(
        fake_flux0,
        odd,
        (
            '{"data": ['
            + json.dumps(event(odd, 0, text="half an emoji \ud83d"))
            + ","
            + json.dumps(event(odd, 1, created_at="+275760-09-13T00:00:00Z", source="\udcff"))
            + ","
            + json.dumps(event(odd, 2**63, event_id="far"))
            + ","
            + json.dumps(event(odd, 2, created_at=1e308, correlation_id=["x"]))
            + "]}"
        ).encode(),
    )
    db = str(tmp_path / "a.sqlite3")
    done = run_daemon(["--once", "--db", db], fake.url)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = sqlite3.connect(db).execute(
        'SELECT id, "offset", text, created_at, source, correlation_id, raw FROM events WHERE session_id = ?', (odd,)
    )
    by_id = {r[0]: r for r in rows}
    assert by_id[f"{odd}-e0"][2] == "half an emoji \ufffd"  # searchable; raw keeps the half
    assert json.loads(by_id[f"{odd}-e0"][6])["data"]["parts"][0]["content"] == "half an emoji \ud83d"
    assert by_id[f"{odd}-e1"][3] is None and json.loads(by_id[f"{odd}-e1"][6])["source"] == "\udcff"
    assert by_id["far"][1] is None and json.loads(by_id["far"][6])["offset"] == 2**63
    assert by_id[f"{odd}-e2"][3] is None and by_id[f"{odd}-e2"][5] is None
    assert len(archive_rows(db)[healthy]) == 3
    exported = run_daemon(["export", odd, "--db", db], None)
    assert exported.returncode == 0 and len(exported.stdout.splitlines()) == 4
    assert json.loads(exported.stdout.splitlines()[0])["data"]["parts"][0]["content"].endswith("\ud83d")


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        (b'{"data": [{"id": "a", "offset": 0}, {"id": "b", "off', "application/json", "truncated"),
        # a byte that is not UTF-8 no longer fails its session: it is kept (test_adversary_fixes.py)
        (b"<html>proxy error</html>", "text/html", "expected JSON"),
        (b'{"data": [{"id": "a", "offset": 0}, 17]}', "application/json", "not a JSON object"),
        (b'{"data": [' + b"9" * 5000 + b"]}", "application/json", "not a JSON object"),  # a number, read whole
    ],
)
def test_a_broken_answer_fails_that_session_alone(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, body: bytes, content_type: str, message: str
) -> None:
    agent = fake_flux0.add_agent()
    broken, healthy = fake_flux0.add_session(agent), fake_flux0.add_session(agent)
    fake_flux0.add_events(healthy, 4)
    serve_bytes(fake_flux0, broken, body, content_type)
    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    result = Syncer(client_for(fake), store, batch_size=1).run_pass()
    assert result.sessions_failed == 1 and message in result.errors[0], result.errors
    assert len(archive_rows(db)[healthy]) == 4
    status = {s.session_id: s for s in store.session_statuses()}
    assert status[broken].errors == 1 and message in (status[broken].last_error or "")


def test_a_gzip_answer_of_many_events_is_streamed(tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    sid = one_session(fake_flux0)
    docs = [event(sid, o, text="x" * 200) for o in range(5000)]
    serve_gzip(fake_flux0, sid, lambda: docs)
    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    # a generous read timeout: compressing 1 MB before the first byte can take over 2 s on a busy machine
    assert Syncer(client_for(fake, timeout=30), store, batch_size=300).run_pass().events_inserted == 5000
    assert store.checkpoint(sid) == 4999


# -- time bounds ----------------------------------------------------------------------------------


def test_a_trickling_session_neither_holds_others_nor_starves_the_watchdog(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    slow = fake_flux0.add_session(agent)
    healthy = [fake_flux0.add_session(agent) for _ in range(3)]
    for sid in healthy:
        fake_flux0.add_events(sid, 5)
    slow_docs = [event(slow, o, text="y" * 50) for o in range(12)]
    # ~2.3 s for the whole answer: the 1 s deadline cuts it twice, keeping what arrived
    serve_trickle(fake_flux0, slow, lambda: slow_docs, every=0.05, piece=80)
    db = str(tmp_path / "a.sqlite3")
    notify = NotifySocket(tmp_path)
    proc = popen_daemon(
        ["--db", db, "--interval", "0.2", "--session-deadline", "1.0", "--timeout", "5"],
        fake.url,
        NOTIFY_SOCKET=notify.path,
        WATCHDOG_USEC="1000000",
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(len(archive_rows(db).get(s, [])) == 5 for s in healthy):
            time.sleep(0.1)
        assert all(len(archive_rows(db).get(s, [])) == 5 for s in healthy), "healthy sessions were held up"
        while time.monotonic() < deadline and len(archive_rows(db).get(slow, [])) < 12:
            time.sleep(0.2)  # the slow one gets there too, a deadline's worth of progress per pass
        assert offsets(db, slow) == list(range(12))
        while time.monotonic() < deadline and notify.drain().count("WATCHDOG=1") <= 5:
            time.sleep(0.1)  # pings every 0.5 s: seen across the trickle's passes, as below
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    stderr = proc.stderr.read()  # type: ignore[union-attr]
    assert "per-session deadline" in stderr and "Traceback" not in stderr
    pings = [t for t, m in zip(notify.arrivals, notify.messages) if m == "WATCHDOG=1"]
    assert len(pings) > 5
    assert max(b - a for a, b in zip(pings, pings[1:])) < 1.0  # WATCHDOG_USEC=1 s is never missed


def test_an_archive_locked_by_another_process_is_waited_out(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 3)
    db = str(tmp_path / "a.sqlite3")
    proc = popen_daemon(["--db", db, "--interval", "0.2"], fake.url)
    try:
        deadline = time.monotonic() + 20
        while len(archive_rows(db).get(sid, [])) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # "database is locked" for everyone else
        fake_flux0.add_events(sid, 4)
        polled = len(fake.requests)
        while time.monotonic() < deadline and not any(r.path.endswith("/events") for r in fake.requests[polled:]):
            time.sleep(0.05)
        time.sleep(1.5)  # the poll's answer has 4 events to write: the daemon waits on the lock meanwhile
        assert proc.poll() is None, "the daemon gave up on a briefly locked archive"
        holder.execute("COMMIT")
        holder.close()
        while len(archive_rows(db).get(sid, [])) < 7 and time.monotonic() < deadline + 10:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_archive_equals_server(db, fake_flux0)


# -- files ------------------------------------------------------------------------------------------


def test_a_planted_lock_symlink_is_not_followed(tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    one_session(fake_flux0)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    db = tmp_path / "a.sqlite3"
    (tmp_path / "a.sqlite3.lock").symlink_to(victim)
    done = run_daemon(["--once", "--db", str(db)], fake.url)
    assert done.returncode == 3
    assert done.stderr.strip().count("\n") == 0 and "symlink" in done.stderr
    assert victim.read_text() == "precious"


def test_a_second_daemon_through_a_symlinked_path_is_refused(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    fake_flux0.add_events(one_session(fake_flux0), 2)
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    (tmp_path / "alias").symlink_to(real_dir)
    db = str(real_dir / "a.sqlite3")
    proc = popen_daemon(["--db", db, "--interval", "0.2"], fake.url)
    try:
        deadline = time.monotonic() + 20
        while not archive_rows(db) and time.monotonic() < deadline:
            time.sleep(0.1)
        second = run_daemon(["--once", "--db", str(tmp_path / "alias" / "a.sqlite3")], fake.url)
        assert second.returncode == 3 and "already syncing" in second.stderr
        lock = real_dir / "a.sqlite3.lock"
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        proc.send_signal(signal.SIGINT)
        assert exit_code(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_an_existing_world_readable_archive_and_its_wal_become_private(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    fake_flux0.add_events(one_session(fake_flux0), 2)
    db = tmp_path / "a.sqlite3"
    assert run_daemon(["--once", "--db", str(db)], fake.url).returncode == 0
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(db) + suffix)
        if not path.exists():
            path.write_bytes(b"")
        path.chmod(0o644)
    probe = sqlite3.connect(str(db))  # holds the WAL files open while the daemon runs
    probe.execute("SELECT count(*) FROM events").fetchone()
    assert run_daemon(["--once", "--db", str(db)], fake.url).returncode == 0
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(str(db) + suffix).st_mode) == 0o600, suffix
    probe.close()


def test_missing_parent_directory_is_created_private(tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    fake_flux0.add_events(one_session(fake_flux0), 1)
    db = tmp_path / "state" / "flux0" / "a.sqlite3"
    assert run_daemon(["--once", "--db", str(db)], fake.url).returncode == 0
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("where", ["under a file", "a directory", "read-only working directory"])
def test_an_unusable_archive_path_exits_3_with_one_line(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, where: str
) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    args = {
        "under a file": ["--db", str(tmp_path / "file" / "a.sqlite3")],
        "a directory": ["--db", str(tmp_path / "dir")],
        "read-only working directory": [],
    }[where]
    done = subprocess.run(
        daemon_cmd("--once", *args),
        capture_output=True,
        text=True,
        timeout=60,
        # (coverage, when measuring subprocesses, would write its own data file into /proc and fail)
        env=subprocess_env(FLUX0_SERVER_URL=fake.url, COVERAGE_PROCESS_START=""),
        cwd="/proc" if where == "read-only working directory" else str(ROOT),
    )
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


# -- configuration, signals, readers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args, env, setting",
    [
        (["--server-url", "ftp://127.0.0.1/"], {}, "server-url"),
        (["--user", "a b"], {}, "user"),
        ([], {"FLUX0_TOKEN": "secret\r"}, "token"),
        (["--timeout", "nan"], {}, "timeout"),
        (["--interval", "nan"], {}, "interval"),
        (["--session-deadline", "inf"], {}, "session-deadline"),
        ([], {"FLUX0_SYNC_GAP_PATIENCE": "-1"}, "gap-patience"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(
    tmp_path: Path, args: List[str], env: Dict[str, str], setting: str
) -> None:
    done = run_daemon(["--once", "--db", str(tmp_path / "a.sqlite3"), *args], None, **env)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and setting in done.stderr and "Traceback" not in done.stderr
    assert "secret" not in done.stderr


def test_a_storm_of_stop_signals_always_exits_0_with_a_consistent_archive(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    for _ in range(20):
        fake_flux0.add_events(fake_flux0.add_session(agent), 200)
    for round_ in range(4):
        db = str(tmp_path / f"a{round_}.sqlite3")
        proc = popen_daemon(["--db", db, "--interval", "0.05", "--batch-size", "7"], fake.url)
        try:
            assert proc.stderr is not None
            proc.stderr.readline()  # "archive ... open": the handlers are in place
            time.sleep(0.05 * round_)
            for i in range(300):
                if proc.poll() is not None:
                    break
                proc.send_signal(signal.SIGTERM if i % 2 else signal.SIGINT)
                time.sleep(0.001)
            assert exit_code(proc) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        stderr = proc.stderr.read()
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
        check = sqlite3.connect(db)
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for sid, last in check.execute("SELECT session_id, last_offset FROM sync_state"):
            stored = [o for (o,) in check.execute('SELECT "offset" FROM events WHERE session_id = ?', (sid,))]
            assert sorted(stored) == list(range(len(stored))) and last == len(stored) - 1
        check.close()


def _world_readable_archive(fake: FakeServer, fake_flux0: FakeFlux0, base: Path) -> Path:
    fake_flux0.add_events(one_session(fake_flux0), 3, text="needle")
    folder = base / "archive"
    folder.mkdir()
    db = folder / "a.sqlite3"
    assert run_daemon(["--once", "--db", str(db)], fake.url).returncode == 0
    db.chmod(0o644)
    folder.chmod(0o755)
    base.chmod(0o755)
    return db


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"), reason="needs root to switch uid")
def test_readers_work_as_another_user_without_write_access(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="flux0-ro-"))
    try:
        db = _world_readable_archive(fake, fake_flux0, base)
        before = sorted(os.listdir(db.parent))
        python = "/usr/bin/python3"
        for command in (["status"], ["search", "needle"], ["export", next(iter(archive_rows(str(db))))]):
            done = subprocess.run(
                ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", python, "-m", "flux0sync"]
                + command
                + ["--db", str(db)],
                capture_output=True,
                text=True,
                timeout=60,
                env=subprocess_env(),
                cwd="/",
            )
            assert done.returncode == 0, (command, done.stderr)
            assert done.stdout
        assert sorted(os.listdir(db.parent)) == before
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_readers_reject_non_utf8_and_nul_arguments_in_one_line(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, capsys: Any
) -> None:
    fake_flux0.add_events(one_session(fake_flux0), 1)
    db = str(tmp_path / "a.sqlite3")
    assert run_daemon(["--once", "--db", db], fake.url).returncode == 0
    for command in ("search", "export"):
        done = subprocess.run(
            [os.fsencode(sys.executable), b"-m", b"flux0sync"] + [command.encode(), b"caf\xe9", b"--db", db.encode()],
            capture_output=True,
            timeout=60,
            env=subprocess_env(),
            cwd=str(ROOT),
        )
        assert done.returncode == 2 and done.stderr.count(b"\n") == 1 and b"UTF-8" in done.stderr
    assert main(["search", "a\x00b", "--db", db]) == 2
    assert main(["export", "a\x00b", "--db", db]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "NUL" in err


def test_a_malformed_agent_or_session_in_a_listing_is_skipped_not_fatal(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture
) -> None:
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 2)
    fake_flux0.agents["bad"] = {"id": 42, "name": ["not", "a", "name"]}
    fake_flux0.sessions["odd"] = {"id": "\ud800lone", "agent_id": agent}
    fake_flux0.sessions["worse"] = {"title": "no id at all"}
    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    syncer = Syncer(client_for(fake), store)
    with caplog.at_level(logging.WARNING, logger="flux0sync"):
        assert syncer.run_pass().ok
        syncer.run_pass()
    assert len(archive_rows(db)[sid]) == 2
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 3, skipped  # each warned once, not once per pass


def test_a_stop_during_start_up_imports_exits_0(tmp_path: Path, fake: FakeServer) -> None:
    """``python -m flux0sync`` takes the stop signals when its package is imported, before the rest."""
    script = (
        "import os, signal, sys\n"
        "sys.argv = ['-m']\n"  # what Python sets while it locates the module of -m
        "import flux0sync\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "from flux0sync.cli import main\n"
        f"sys.argv = ['flux0sync', '--db', {str(tmp_path / 'a.sqlite3')!r}]\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(FLUX0_SERVER_URL=fake.url),
        cwd=str(ROOT),
    )
    assert done.returncode == 0, done.stderr
    assert "received SIGINT: stopping" in done.stderr and "Traceback" not in done.stderr


def test_a_session_cut_at_its_deadline_keeps_its_progress_and_is_not_ok_for_once(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = one_session(fake_flux0)
    docs = [event(sid, o) for o in range(6)]
    serve_trickle(fake_flux0, sid, lambda: docs, every=0.05, piece=60)
    store = Store(str(tmp_path / "a.sqlite3"))
    syncer = Syncer(client_for(fake), store, batch_size=1, session_deadline=0.6)
    first = syncer.run_pass()
    assert first.sessions_cut == 1 and not first.ok and first.sessions_failed == 0
    progress = store.checkpoint(sid)
    assert progress >= 0
    for _ in range(20):
        if store.checkpoint(sid) == 5:
            break
        syncer.run_pass()
    assert store.checkpoint(sid) == 5 and offsets(str(tmp_path / "a.sqlite3"), sid) == list(range(6))
