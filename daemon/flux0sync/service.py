"""The long-running service: the sync engine, signals, systemd notify and the watchdog.

Stopping never raises from a signal handler (CPython's docs advise against it: the exception
can land anywhere, inside a lock or a half-done cleanup). SIGTERM and SIGINT only set a flag
(:class:`StopFlag`). The loop of :class:`~flux0sync.engine.Engine` looks at it at least four
times a second and between two writes (a SQLite write in progress is rolled back, see
:func:`_interrupt_writes_on_stop`): it then cuts every fetch off by
shutting its socket down, and the process exits 0 with a consistent archive, within a second or
two whatever the server is doing. Any number of signals at any moment ends the same way. SIGHUP
sets another flag: the loop ends the same way and starts again with the configuration re-read
(with ``--once``, a new pass: one cut short by the reload is never reported as complete).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import sys
import threading
import time
from types import FrameType
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

from flux0lite import Flux0, Flux0Error, Retry, Timeout
from flux0lite.cli import visible_text

from .backend import (
    Archive,
    DriverMissingError,
    StoreUnavailableError,
    is_postgres_url,
    open_store,
    redact_db_url,
    sqlite_path,
)
from .budget import give_back_freed_memory
from .config import Config, ConfigError, load_config
from .engine import Engine, Totals
from .gaps import SeenHere
from .notify import Notifier, watchdog_interval
from .schedule import Policy
from .stopflag import StopFlag
from .store import ArchiveMovedError, Store, StoreBusyError, StoreError, StoreFullError

__all__ = [
    "Daemon",
    "StopFlag",
    "acquire_lock",
    "setup_logging",
    "make_client",
    "run_daemon",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_CONFIG",
    "EXIT_STORE",
]

log = logging.getLogger("flux0sync")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_STORE = 3

_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    """One line per record; ``<N>`` priority prefixes when stderr goes to journald."""

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        message = visible_text(record.getMessage().replace("\n", " | "))  # server text: no raw controls
        if record.exc_info and record.levelno >= logging.ERROR:
            message += f" ({record.exc_info[1]!r})"
        if self.journal:
            return f"<{_PRIORITIES.get(record.levelno, 6)}>{message}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}Z {record.levelname} {record.name}: {message}"


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_flux0sync", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JournalFormatter(journal=_stderr_is_the_journal()))
    handler._flux0sync = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def _stderr_is_the_journal() -> bool:
    """systemd.exec(5): JOURNAL_STREAM is ``device:inode`` of the journal's stream, inherited by
    every child of a service; only a stderr that is that stream gets ``<N>`` prefixes."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        found = os.fstat(sys.stderr.fileno())
        return (found.st_dev, found.st_ino) == (int(device), int(inode))
    except (AttributeError, OSError, ValueError):  # unset or garbled, or a stderr with no descriptor
        return False


def store_exit_code(error: StoreError) -> int:
    """The exit code for an archive that cannot be used: 1 where a restart may help (systemd
    restarts on it), 2 for a missing driver, else 3 (systemd does not restart: a person must)."""
    if isinstance(error, DriverMissingError):
        return EXIT_CONFIG
    if isinstance(error, (StoreUnavailableError, ArchiveMovedError)):
        # the database server is down or unreachable, or the archive file was replaced or
        # removed: a restart opens it again (the file the path names now)
        return EXIT_FAILED
    return EXIT_STORE


@contextlib.contextmanager
def acquire_lock(db_path: str) -> Iterator[None]:
    """One writer per archive, however it is named: the lock sits next to the archive's real path.

    The lock file is opened without following a symlink (a planted ``<db>.lock`` link must not
    make us truncate its target) and created 0600.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: SQLite's own locking still keeps the file consistent
        yield
        return
    real = os.path.realpath(sqlite_path(db_path))
    lock_path = real + ".lock"
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        os.makedirs(os.path.dirname(real), mode=0o700, exist_ok=True)
        fd = os.open(lock_path, flags, 0o600)
    except OSError as exc:
        reason = "it is a symlink" if os.path.islink(lock_path) else (exc.strerror or str(exc))
        raise StoreError(f"cannot open the lock file {lock_path}: {reason}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreError(f"the lock file {lock_path} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StoreError(f"another flux0-sync (pid {holder}) is already syncing into {real}") from None
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        archive_fd = _lock_archive_itself(real)
        try:
            yield
        finally:
            if archive_fd is not None:
                os.close(archive_fd)
    finally:
        os.close(fd)


def _lock_archive_itself(real: str) -> Optional[int]:
    """Lock the archive file too: a hard link is an alias that realpath cannot see through.

    flock is apart from SQLite's own (fcntl) locks. The file is created 0600 if missing, as the
    store would (a link made later must find it locked); anything but a regular file is left
    for the store to refuse.
    """
    import fcntl

    flags = os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags, 0o600)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"another flux0-sync is already syncing into {real} (under another name)") from None
    return fd


def make_client(config: Config, user: Optional[str] = None, total: Optional[float] = None) -> Flux0:
    """A client for one user (``flux0_user_sub`` cookie; None sends none); ``total`` bounds each
    whole call (the engine bounds a poll itself, at ``session_deadline``)."""
    return Flux0(
        config.server_url,
        timeout=Timeout(connect=min(10.0, config.timeout), read=config.timeout, total=total),
        # no answer is retried here: a 429/502/503/504 pauses every request in the engine (for its
        # Retry-After), so every request the server answers has passed --max-rps (a request that
        # could not connect, or whose connection dropped, is still tried again at once)
        retry=Retry(total=2, backoff_factor=0.25, max_backoff=2, statuses=()),
        token=config.token,
        user_sub=user,
        proxy=False if (config.proxy or "").lower() in ("none", "direct", "off") else config.proxy,
        cacert=config.cacert,
        cert=config.cert,
        key=config.key,
    )


def policy_for(config: Config) -> Policy:
    return Policy(
        interval=config.interval,
        idle_max=max(config.idle_max, config.interval),
        jitter=config.jitter,
        max_backoff=config.max_backoff,
    )


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        once: bool = False,
        check: bool = True,
        flags: Optional[Mapping[str, Any]] = None,
        env: Optional[Mapping[str, str]] = None,
        notifier: Optional[Notifier] = None,
        stop: Optional[StopFlag] = None,
    ) -> None:
        self.config = config
        self.once = once
        self.check = check
        self._flags = dict(flags or {})
        self._env = env
        self.notifier = notifier or Notifier()
        self.watchdog_every = watchdog_interval()
        self._last_ping = 0.0
        self._last_status = 0.0
        self._last_resend = 0.0  # when a notify message that found the queue full last went again
        self._last_files_check = 0.0  # when the archive's files were last checked (Store.check_files)
        self.stop = stop or StopFlag()
        self.seen_here = SeenHere()  # the gaps its engines saw open, on this process's clock
        self._reload = False
        self.store: Optional[Archive] = None
        self.totals: Dict[str, int] = {"polls": 0, "inserted": 0}
        self._counts = (0, 0, 0)
        self._base_events = 0
        self._progress: Optional[Totals] = None

    @property
    def _stop(self) -> bool:
        return self.stop.is_set

    # -- signals: flags only (see the module doc) ------------------------------------------

    def _on_hup(self, signum: int, frame: Optional[FrameType]) -> None:
        self._reload = True

    def _install_signals(self) -> Dict[int, Any]:
        previous = self.stop.install()
        if hasattr(signal, "SIGHUP"):
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        return previous

    # -- helpers ---------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Called by the engine's loop (never by a fetch): the watchdog, STATUS, and the
        archive's files when due."""
        now = time.monotonic()
        if self._progress is not None and now - self._last_status >= 2.0:
            self._refresh_status(self._progress)
        if self.notifier.pending and now - self._last_resend >= 1.0:  # READY=1 found the queue full
            self._last_resend = now
            self.notifier.resend()
        if self.store is not None and now - self._last_files_check >= 2.0:
            self._last_files_check = now
            self.store.check_files()  # raises once the archive was moved away (exit 1, restart)
        if self.watchdog_every is None:
            return
        if now - self._last_ping >= self.watchdog_every:
            self.notifier.watchdog()
            self._last_ping = now

    def _status_line(self, totals: Optional[Totals]) -> str:
        agents, sessions, events = self._counts
        line = f"{events} events in {sessions} sessions of {agents} agents archived"
        if totals is not None and totals.failing:
            line += f"; {len(totals.failing)} sessions failing"
        if totals is not None and totals.cut:
            line += f"; {totals.cut} sessions catching up"
        return line

    def _on_progress(self, totals: Totals) -> None:
        """New events or a finished discovery: STATUS is refreshed at most every 2 s."""
        self._progress = totals

    def _refresh_status(self, totals: Totals) -> None:
        assert self.store is not None
        self._progress = None
        self._last_status = time.monotonic()
        agents, sessions, _ = self._counts
        try:
            agents, sessions, _ = self.store.counts(events=False)
        except StoreError as exc:
            # The archive cannot be read now (a database server that is down): the loop pauses
            # for it where it writes; STATUS keeps the last counts it read meanwhile.
            log.debug("STATUS keeps its last counts: %s", exc)
        self._counts = (agents, sessions, self._base_events + totals.inserted)
        self.notifier.status(self._status_line(totals))

    def _on_outage(self, error: Exception, wait: float) -> None:
        self.notifier.status(f"server unavailable: {error}")

    def _apply_reload(self) -> None:
        self._reload = False
        self.notifier.reloading()
        try:
            fresh = load_config(self._flags, self._env if self._env is not None else os.environ)
            for user in fresh.users or (None,):
                make_client(fresh, user).close()  # a setting the client refuses fails here, not later
        except (ConfigError, Flux0Error) as exc:
            log.error("reload failed, keeping the old configuration: %s", exc)
            self.notifier.status("reload failed; old configuration kept")
            self.notifier.send("READY=1")
            return
        if fresh.db_path != self.config.db_path:
            log.warning(
                "the archive cannot change on reload (restart instead); keeping %s", redact_db_url(self.config.db_path)
            )
            fresh = fresh.__class__(**{**fresh.__dict__, "db_path": self.config.db_path})
        if self.store is not None:
            try:  # the open archive's own options: a raised max_db_pages makes room at once
                self.store.apply_options(fresh.synchronous, fresh.max_db_pages)
            except StoreError as exc:
                log.error("reload kept the archive's options (restart to apply them): %s", exc)
        self.config = fresh
        log.info("configuration reloaded (server %s, every %.1f s)", fresh.server_url or "(default)", fresh.interval)
        self.notifier.send("READY=1")

    def _make_engine(self) -> Engine:
        assert self.store is not None
        config = self.config
        return Engine(
            self.store,
            lambda user: make_client(config, user),
            policy=policy_for(config),
            users=config.users or (None,),
            agent_ids=config.agent_ids,
            session_ids=config.session_ids,
            discover_interval=config.discover_interval,
            max_rps=config.max_rps,
            workers=config.workers,
            fetch_deadline=config.session_deadline,
            batch_size=config.batch_size,
            gap_patience=config.gap_patience,
            seen_here=self.seen_here,
            once=self.once,
            heartbeat=self.heartbeat,
            shard=config.shard,
            should_stop=lambda: self._stop or self._reload,
            on_progress=self._on_progress,
            on_outage=self._on_outage,
        )

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> int:
        previous = self._install_signals()
        try:
            if self._stop:
                return EXIT_OK
            for user in self.config.users or (None,):
                # a setting the client refuses (a TLS file, a proxy) is a ConfigError now: exit 2
                make_client(self.config, user).close()
            # one daemon per SQLite file; a PostgreSQL archive takes several (see flux0sync.pgstore)
            lock = (
                contextlib.nullcontext() if is_postgres_url(self.config.db_path) else acquire_lock(self.config.db_path)
            )
            with lock:
                self.store = open_store(
                    self.config.db_path,
                    synchronous=self.config.synchronous,
                    max_page_count=self.config.max_db_pages,
                    check=self.check,
                    on_wait=self.heartbeat,
                    should_stop=lambda: self._stop,
                )
                try:
                    with _interrupt_writes_on_stop(self.store):
                        return self._loop()
                finally:
                    self.store.close()
        except StoreError as exc:
            if self._stop:
                if isinstance(exc, ArchiveMovedError):  # what it did to the files is worth a line
                    log.error("%s", exc)
                return EXIT_OK  # stopped while waiting for a locked archive: nothing was written
            log.error("%s", exc)
            self.notifier.status(f"failed: {exc}")
            return store_exit_code(exc)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.stop.signal is not None:  # reported here, never from the handler
                name = signal.Signals(self.stop.signal).name
                log.info("received %s: stopping", name)
                self.notifier.stopping()
                log.info(
                    "stopped on %s after %d polls, %d events archived",
                    name,
                    self.totals["polls"],
                    self.totals["inserted"],
                )

    def _loop(self) -> int:
        assert self.store is not None
        self._counts = self.store.counts()
        self._base_events = self._counts[2]
        self.notifier.ready(self._status_line(None))
        log.info(
            "archive %s open; syncing from %s with %d workers%s",
            self.store.path,
            self.config.server_url or os.environ.get("FLUX0_SERVER_URL") or "the default server",
            self.config.workers,
            f" (shard {self.config.shard})" if self.config.shard else "",
        )
        outage, wait = 0, 0.0
        while True:
            started = time.monotonic()
            try:
                totals = self._make_engine().run()
            except (StoreFullError, StoreBusyError, StoreUnavailableError) as exc:
                # the archive cannot be read or written now (a full disk, a long-held lock, a
                # database server that is down or read-only): nothing half-written stays; start over later
                if self._stop or self.once:
                    log.error("%s", exc)
                    return EXIT_OK if self._stop else EXIT_FAILED
                if time.monotonic() - started > wait:
                    outage = 0  # it ran for longer than it last waited: a new outage, not the same one
                outage += 1
                wait = min(self.config.max_backoff, 2.0**outage)
                log.error("%s; trying again in %.0f s", exc, wait)
                self.notifier.status(f"archive unavailable: {exc}")
                self._sleep(wait)
                continue
            outage = 0
            self.totals["polls"] += totals.polls
            self.totals["inserted"] += totals.inserted
            self._base_events += totals.inserted
            if self._stop:
                return EXIT_OK
            if self._reload:
                # the loop starts again with the configuration re-read; with --once that is a
                # new pass (sessions already up to date cost one request each): a pass cut
                # short by a reload is not a complete one, and its exit code is the new pass's
                self._apply_reload()
                if self.once:
                    log.info("the pass starts again after the reload")
                continue
            if self.once:
                if totals.outage is not None:  # the pass ended early: say why, once
                    log.error("server unavailable, pass not finished: %s", totals.outage)
                return EXIT_OK if totals.ok else EXIT_FAILED

    def _sleep(self, seconds: float) -> None:
        """Wait, looking at the stop and reload flags and feeding the watchdog in short steps."""
        deadline = time.monotonic() + seconds
        while not self._stop and not self._reload:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.heartbeat()
            time.sleep(min(left, 0.25))


@contextlib.contextmanager
def _interrupt_writes_on_stop(store: Archive) -> Iterator[None]:
    """A stop signal also ends a SQLite write in progress (rolled back whole; fetched again later).

    A Python signal handler runs only between two bytecodes, i.e. after a long SQLite call
    returns; the C-level handler writes the signal to the wakeup fd at once, and a thread
    watching it interrupts the write, so the daemon stops within a second or two.
    """
    if not isinstance(store, Store) or threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = signal.set_wakeup_fd(write_fd)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            received = os.read(read_fd, 64)
            if signal.SIGTERM in received or signal.SIGINT in received:
                store.interrupt()

    watcher = threading.Thread(target=watch, name="flux0sync-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        done.set()
        with contextlib.suppress(BlockingIOError):  # full: the watcher has bytes to wake up to anyway
            os.write(write_fd, b"\0")  # wakes the watcher
        watcher.join(1.0)
        os.close(read_fd)
        os.close(write_fd)


def run_daemon(
    config: Config,
    *,
    once: bool,
    check: bool,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    log_level: str = "INFO",
    notifier_factory: Callable[[], Notifier] = Notifier,
    stop: Optional[StopFlag] = None,
) -> int:
    os.umask(0o077)
    give_back_freed_memory()  # before any worker thread starts
    setup_logging(log_level)
    daemon = Daemon(config, once=once, check=check, flags=flags, env=env, notifier=notifier_factory(), stop=stop)
    return daemon.run()
