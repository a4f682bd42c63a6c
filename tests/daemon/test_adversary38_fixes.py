"""hadv38: the daemon as a service over time: its archive's files moved under it, a config file
grown huge, garbled watchdog variables, counts after reloads."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import time
from pathlib import Path
from typing import Callable, List, Tuple

import pytest
from flux0sync import store as store_module
from flux0sync.config import MAX_CONFIG_BYTES, ConfigError, load_config
from flux0sync.notify import Notifier, watchdog_interval
from flux0sync.rows import RawEvent
from flux0sync.service import store_exit_code
from flux0sync.store import ArchiveMovedError, Store

from tests.conftest import wait_for
from tests.daemon.helpers import archive_rows, exit_code, popen_daemon, populate
from tests.daemon.notify import NotifySocket
from tests.fakeserver import FakeFlux0


def _archived(db: str) -> int:
    return sum(len(rows) for rows in archive_rows(db).values())


def _grow(fake_flux0: FakeFlux0, sessions: list, events: int) -> None:  # type: ignore[type-arg]
    for sid in sessions:
        fake_flux0.add_events(sid, events)


def _daemon_meeting(fake_flux0: FakeFlux0, db: str, change: Callable[[], None]) -> Tuple[int, str]:
    """(exit code, stderr) of a live daemon that archived 3 sessions of 20 events, then met
    ``change`` to its archive's files, then had new events to write."""
    sessions = populate(fake_flux0, 3, 20)
    proc = popen_daemon(["--db", db, "--interval", "0.2"], fake_flux0.server.url)
    try:
        wait_for(lambda: _archived(db) == 60, "the first sync", 20.0, 0.05)
        change()
        _grow(fake_flux0, sessions, 10)  # something to write
        code = exit_code(proc)
        return code, proc.communicate()[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_an_archive_replaced_under_the_daemon_is_left_intact_and_the_daemon_restarts(
    tmp_path: Path, fake_flux0: FakeFlux0
) -> None:
    """01: a backup moved over the archive got the old archive's WAL frames applied to its
    pages (hundreds of integrity errors) while the daemon went on writing into the unlinked file."""
    db = str(tmp_path / "flux0.sqlite3")
    backup = str(tmp_path / "backup.sqlite3")

    def restore() -> None:
        source = sqlite3.connect(db)
        source.execute("VACUUM INTO ?", (backup,))  # a whole archive of its own: the backup
        source.close()
        os.replace(backup, db)  # the restore, under the running daemon

    code, err = _daemon_meeting(fake_flux0, db, restore)
    assert code == 1, err  # systemd restarts it, on the file the path names now
    assert "removed or replaced" in err
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT count(*) FROM events").fetchone()[0] == 60
    check.close()


def test_a_removed_wal_is_checkpointed_before_the_daemon_stops(tmp_path: Path, fake_flux0: FakeFlux0) -> None:
    """02: a removed -wal went unnoticed, and the next crash took every event not yet
    checkpointed with it (a young archive lives in its WAL: the whole archive)."""
    db = str(tmp_path / "flux0.sqlite3")
    code, err = _daemon_meeting(fake_flux0, db, lambda: os.unlink(db + "-wal"))
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
    with pytest.raises(ConfigError, match="over 1 MiB"):
        load_config({"config_file": str(path)}, {})
    path.write_text("[flux0-sync]\ninterval = 7\n" + "#" * (MAX_CONFIG_BYTES - 40) + "\n")
    assert load_config({"config_file": str(path)}, {}).interval == 7
    path.write_bytes(b"[flux0-sync]\rinterval = 8\r")  # CR line ends, as a text file reads them
    assert load_config({"config_file": str(path)}, {}).interval == 8


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
        wait_for(lambda: _archived(db) == 50, "the first sync", 20.0, 0.05)
        for _ in range(15):
            _grow(fake_flux0, sessions, 20)
            time.sleep(0.05)
            proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _archived(db) == 50 + 15 * 200, "the whole archive", 60, 0.05)
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc) == 0
        _, err = proc.communicate()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert f"{50 + 15 * 200} events archived" in err.splitlines()[-1], err[-2000:]


def test_a_state_change_that_finds_the_queue_full_goes_again_with_the_next_message(tmp_path: Path) -> None:
    """04, review: non-blocking sends dropped READY=1 too; systemd waits for it (a start timeout,
    a kill and a restart loop), so a state change goes again until the supervisor takes it."""
    stuck = NotifySocket(tmp_path, reading=False)
    try:
        notifier = Notifier(stuck.path)
        while notifier.watchdog():  # fill the supervisor's queue
            pass
        assert not notifier.ready("syncing")
        assert not notifier.status("still full")
        while True:  # the supervisor reads again
            try:
                stuck.sock.recv(4096)
            except OSError:
                break
        assert notifier.watchdog()
        last = stuck.sock.recv(4096).decode()
        assert {"READY=1", f"MAINPID={os.getpid()}", "WATCHDOG=1"} <= set(last.split("\n"))
        assert notifier.watchdog()
        assert stuck.sock.recv(4096).decode() == "WATCHDOG=1"  # sent once, not again and again
    finally:
        stuck.close()


def _event(offset: int) -> RawEvent:
    return RawEvent.from_doc({"id": f"e{offset}", "offset": offset, "type": "message", "source": "user"})


def test_a_wal_removed_before_the_first_write_is_seen(tmp_path: Path) -> None:
    """hadv40 01: the -wal's identity was taken before SQLite opened it, and any -wal found at
    the first write (or none) was adopted: one removed before it went unseen."""
    db = str(tmp_path / "a.sqlite3")
    Store(db).close()  # a clean close removes the -wal; the next open makes a new one
    store = Store(db)
    try:
        os.unlink(db + "-wal")
        with pytest.raises(ArchiveMovedError, match="-wal file was removed"):
            store.write_batch("s", [_event(0)])
        with pytest.raises(ArchiveMovedError):  # and every write after it
            store.write_batch("s", [_event(1)])
    finally:
        store.close()


def test_an_archive_path_whose_symlink_is_pointed_elsewhere_is_seen(tmp_path: Path) -> None:
    """review: the archive reached through a symlink that now leads to a restored copy."""
    first, second, link = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3", tmp_path / "archive.sqlite3"
    link.symlink_to(first)
    store = Store(str(link))
    try:
        store.write_batch("s", [_event(0)])
        source = sqlite3.connect(str(first))
        source.execute("VACUUM INTO ?", (str(second),))
        source.close()
        link.unlink()
        link.symlink_to(second)
        with pytest.raises(ArchiveMovedError, match="the path now leads to another file"):
            store.write_batch("s", [_event(1)])
    finally:
        store.close()
    assert sqlite3.connect(str(second)).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # hadv43 02: the first target's WAL was set aside, and that archive lost what it held
    assert not [name for name in os.listdir(tmp_path) if ".of-a-replaced-archive-" in name]
    assert sqlite3.connect(str(first)).execute("SELECT count(*) FROM events").fetchone()[0] == 1


def test_a_replaced_archive_whose_old_wal_readers_keep_from_emptying_has_it_set_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """review4 1, hadv42 04: the TRUNCATE checkpoint's answer was not read, and then a stop (exit
    3, "stop every reader, then restart") left the old frames in the path's -wal: the next open
    replayed them into the restored file. Now that WAL goes aside before the daemon stops."""
    monkeypatch.setattr(store_module, "_CHECKPOINT_PATIENCE", 0.3)
    db = str(tmp_path / "a.sqlite3")
    opened: List[Store] = []
    # the daemon's heartbeat, which the wait for readers feeds, checks the files too: once it
    # started a wait of its own inside that one, every 2 s, and never stopped (hadv42 04)
    store = Store(db, on_wait=lambda: opened[0].check_files() if opened else None)
    opened.append(store)
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        store.write_batch("s", [_event(0)])
        backup = str(tmp_path / "backup.sqlite3")
        source = sqlite3.connect(db)
        source.execute("VACUUM INTO ?", (backup,))  # the backup: 1 event
        source.close()
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()  # a snapshot that holds the WAL
        store.write_batch("s", [_event(1), _event(2)])
        os.replace(backup, db)
        with pytest.raises(ArchiveMovedError, match="moved aside") as raised:
            store.write_batch("s", [_event(3)])
        assert store_exit_code(raised.value) == 1  # systemd restarts it onto the restored file
    finally:
        reader.close()
        store.close()
    assert not os.path.exists(db + "-wal") or os.path.getsize(db + "-wal") == 0
    assert [name for name in os.listdir(tmp_path) if ".of-a-replaced-archive-" in name]
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT count(*) FROM events").fetchone()[0] == 1  # the backup, as restored
    check.close()


def test_environment_text_typed_in_utf8_is_read_under_an_ascii_locale() -> None:
    """review, hadv40 05: FLUX0_SYNC_SESSIONS=sé was refused as "not UTF-8" under LC_ALL=C with
    PYTHONUTF8=0, where --session sé was taken."""
    config = load_config({}, {"FLUX0_SYNC_SESSIONS": "s\udcc3\udca9 t", "FLUX0_SYNC_DB": "/srv/\udcc3\udca4.db"})
    assert config.session_ids == ("sé", "t")
    assert config.db_path == "/srv/\udcc3\udca4.db"  # a file name, as the system gave it
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config({}, {"FLUX0_SYNC_SESSIONS": "s\udcff"})


def test_a_pending_state_change_goes_again_from_the_loop(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-yet.sock"))
    assert not notifier.ready("syncing") and notifier.pending  # no supervisor listening yet
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "nobody-yet.sock"))
    sock.settimeout(1)
    try:
        assert notifier.resend() and not notifier.pending
        assert sock.recv(4096).decode().startswith("READY=1")
    finally:
        sock.close()


def test_a_status_quoting_a_lone_surrogate_is_sent_not_raised(tmp_path: Path) -> None:
    """hadv41 01: a 503 whose detail held a lone surrogate went into STATUS=, whose encoding
    raised out of the sync loop: exit 1 at every 503 under systemd (a crash loop)."""
    listener = NotifySocket(tmp_path)
    try:
        assert Notifier(listener.path).status("server unavailable: overloaded \ud800 try later")
        assert "overloaded ? try later" in listener.wait_for("STATUS=")
    finally:
        listener.close()


def test_the_newest_state_change_comes_last_when_older_ones_were_pending(tmp_path: Path) -> None:
    """hadv41 02: READY=1 pending, then RELOADING=1 and the reload's READY=1 dropped too: one
    message READY=1 ... RELOADING=1 left systemd "reloading" (it reads them in order)."""
    path = str(tmp_path / "later.sock")
    notifier = Notifier(path)  # nobody listens yet: every send fails and keeps what systemd waits for
    assert not notifier.ready("starting")
    assert not notifier.send("RELOADING=1")
    assert not notifier.send("READY=1")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1)
    try:
        assert notifier.resend()
        states = [a for a in sock.recv(4096).decode().split("\n") if a.split("=")[0] in ("READY", "RELOADING")]
        assert states == ["READY=1"]
    finally:
        sock.close()


def test_an_idle_daemon_sees_its_archive_restored_under_it(tmp_path: Path, fake_flux0: FakeFlux0) -> None:
    """hadv41 05: only a write looked: an idle daemon (the next poll an hour away) kept the old
    WAL beside a restored archive, and a crash then recovered it into the restore."""
    populate(fake_flux0, 2, 10)
    db = str(tmp_path / "flux0.sqlite3")
    backup = str(tmp_path / "backup.sqlite3")
    proc = popen_daemon(["--db", db, "--interval", "3600", "--idle-max", "3600"], fake_flux0.server.url)
    try:
        wait_for(lambda: _archived(db) == 20, "the first sync", 20.0, 0.05)
        source = sqlite3.connect(db)
        source.execute("VACUUM INTO ?", (backup,))
        source.close()
        os.replace(backup, db)  # nothing new to write: only the periodic check can see it
        code = exit_code(proc, timeout=15)
        err = proc.communicate()[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert code == 1 and "archive file was removed or replaced" in err, err
    assert not os.path.exists(db + "-wal") or os.path.getsize(db + "-wal") == 0


def test_a_removed_wal_that_readers_keep_from_emptying_is_rescued_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hadv43 01: the removed WAL, which the daemon's connection still held, was the only copy
    of what readers kept from the archive file, and that file alone is no consistent state (a
    checkpoint skips a page whose newest frame is past a reader): the archive came back empty.
    The whole archive is now copied from the daemon's connection into the path's place."""
    monkeypatch.setattr(store_module, "_CHECKPOINT_PATIENCE", 0.3)
    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        store.write_batch("s", [_event(0)])
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()  # a snapshot at 1 event
        store.write_batch("s", [_event(1), _event(2)])
        os.unlink(db + "-wal")
        with pytest.raises(ArchiveMovedError, match="copied whole") as raised:
            store.write_batch("s", [_event(3)])
        assert store_exit_code(raised.value) == 1
        assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == 1  # the reader reads on
    finally:
        reader.close()
        store.close()
    assert os.stat(db).st_mode & 0o077 == 0  # private, as the archive was
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT count(*) FROM events").fetchone()[0] == 3  # every event committed
    assert check.execute("SELECT last_offset FROM sync_state WHERE session_id = 's'").fetchone()[0] == 2
    check.close()
    reopened = Store(db)  # the daemon's next start takes it as its archive
    reopened.close()


def test_a_stop_during_the_wait_for_readers_ends_it_at_once(tmp_path: Path) -> None:
    """A SIGTERM while readers kept the WAL from emptying waited out the whole 10 s."""
    db = str(tmp_path / "a.sqlite3")
    stopping: List[bool] = []
    store = Store(db, should_stop=lambda: bool(stopping))
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        store.write_batch("s", [_event(0)])
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()
        store.write_batch("s", [_event(1)])
        os.replace(shutil.copy(db, str(tmp_path / "copy.sqlite3")), db)
        stopping.append(True)
        started = time.monotonic()
        with pytest.raises(ArchiveMovedError, match="moved aside"):
            store.write_batch("s", [_event(2)])
        assert time.monotonic() - started < 1.0
    finally:
        reader.close()
        store.close()
