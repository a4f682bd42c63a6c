"""hadv38: the daemon as a service over time: its archive's files moved under it, a config file
grown huge, garbled watchdog variables, counts after reloads."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path
from typing import Callable

import pytest
from flux0sync.config import MAX_CONFIG_BYTES, ConfigError, load_config
from flux0sync.notify import watchdog_interval

from tests.daemon.helpers import archive_rows, exit_code, popen_daemon, populate
from tests.fakeserver import FakeFlux0


def _wait(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _archived(db: str) -> int:
    return sum(len(rows) for rows in archive_rows(db).values())


def _grow(fake_flux0: FakeFlux0, sessions: list, events: int) -> None:  # type: ignore[type-arg]
    for sid in sessions:
        fake_flux0.add_events(sid, events)


def test_an_archive_replaced_under_the_daemon_is_left_intact_and_the_daemon_restarts(
    tmp_path: Path, fake_flux0: FakeFlux0
) -> None:
    """01: a backup moved over the archive got the old archive's WAL frames applied to its
    pages (hundreds of integrity errors) while the daemon went on writing into the unlinked file."""
    sessions = populate(fake_flux0, 3, 20)
    db = str(tmp_path / "flux0.sqlite3")
    backup = str(tmp_path / "backup.sqlite3")
    proc = popen_daemon(["--db", db, "--interval", "0.2"], fake_flux0.server.url)
    try:
        _wait(lambda: _archived(db) == 60, "the first sync")
        source = sqlite3.connect(db)
        source.execute("VACUUM INTO ?", (backup,))  # a whole archive of its own: the backup
        source.close()
        os.replace(backup, db)  # the restore, under the running daemon
        _grow(fake_flux0, sessions, 10)  # something to write
        code = exit_code(proc)
        _, err = proc.communicate()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert code == 1, err  # systemd restarts it, on the file the path names now
    assert "removed or replaced" in err
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT count(*) FROM events").fetchone()[0] == 60
    check.close()


def test_a_removed_wal_is_checkpointed_before_the_daemon_stops(tmp_path: Path, fake_flux0: FakeFlux0) -> None:
    """02: a removed -wal went unnoticed, and the next crash took every event not yet
    checkpointed with it (a young archive lives in its WAL: the whole archive)."""
    sessions = populate(fake_flux0, 3, 20)
    db = str(tmp_path / "flux0.sqlite3")
    proc = popen_daemon(["--db", db, "--interval", "0.2"], fake_flux0.server.url)
    try:
        _wait(lambda: _archived(db) == 60, "the first sync")
        os.unlink(db + "-wal")
        _grow(fake_flux0, sessions, 10)
        code = exit_code(proc)
        _, err = proc.communicate()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert code == 1 and "-wal file was removed or replaced" in err, err
    shutil.copy(db, tmp_path / "alone.sqlite3")  # the main file alone holds everything archived
    check = sqlite3.connect(str(tmp_path / "alone.sqlite3"))
    assert check.execute("SELECT count(*) FROM events").fetchone()[0] >= 60
    check.close()


def test_a_config_file_over_the_cap_is_refused_unread(tmp_path: Path) -> None:
    """03: a 300 MiB config file (a sparse line of NUL bytes) was parsed whole at every reload
    and start: 630 MB, past the unit's MemoryMax."""
    path = tmp_path / "sync.ini"
    with open(path, "wb") as handle:
        handle.write(b"[flux0-sync]\n#")
        handle.truncate(300 * 1024 * 1024)
    with pytest.raises(ConfigError, match="over 1024 KiB"):
        load_config({"config_file": str(path)}, {})
    path.write_text("[flux0-sync]\ninterval = 7\n" + "#" * (MAX_CONFIG_BYTES - 40) + "\n")
    assert load_config({"config_file": str(path)}, {}).interval == 7


@pytest.mark.parametrize(
    "usec, pid",
    [("²", ""), ("1" * 5000, ""), ("1000000", "³"), ("1000000", "9" * 5000), ("-5", ""), ("abc", "")],
)
def test_a_garbled_watchdog_variable_is_ignored(usec: str, pid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """05: "²" passed isdigit() and int() refused it: exit 1 at every start, a crash loop."""
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    monkeypatch.setenv("WATCHDOG_PID", pid)
    interval = watchdog_interval()
    assert interval is None or (usec == "1000000" and interval == 0.5)


def test_the_daemon_counts_what_polls_cut_by_a_reload_archived(tmp_path: Path, fake_flux0: FakeFlux0) -> None:
    """06: a poll cut by a reload had its batches committed but never counted: the stop line
    and STATUS= said fewer events than the archive held."""
    sessions = populate(fake_flux0, 10, 5)
    db = str(tmp_path / "a.sqlite3")
    proc = popen_daemon(["--db", db, "--interval", "0.05", "--batch-size", "7"], fake_flux0.server.url)
    try:
        _wait(lambda: _archived(db) == 50, "the first sync")
        for _ in range(15):
            _grow(fake_flux0, sessions, 20)
            time.sleep(0.05)
            proc.send_signal(signal.SIGHUP)
        _wait(lambda: _archived(db) == 50 + 15 * 200, "the whole archive", 60)
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc) == 0
        _, err = proc.communicate()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert f"{50 + 15 * 200} events archived" in err.splitlines()[-1], err[-2000:]
