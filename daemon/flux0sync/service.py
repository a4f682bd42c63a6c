"""The long-running service: the sync loop, signals, systemd notify and the watchdog.

Shutdown is prompt and safe without raising anything from a signal handler: SIGTERM and SIGINT
only set a flag (:class:`StopFlag`). The main thread never blocks for long (network calls run in
worker threads it waits on in short steps, see :mod:`flux0sync.sync`; sleeps are short), so it
sees the flag within a fraction of a second, lets an open transaction commit, and returns.
Any number of signals at any moment ends the same way: exit 0 with a consistent archive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import stat
import sys
import time
from types import FrameType
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

from flux0lite import APIConnectionError, Flux0, Flux0Error, Retry, Timeout

from .config import Config, ConfigError, load_config
from .notify import Notifier, watchdog_interval
from .stopflag import StopFlag
from .store import Store, StoreBusyError, StoreError, StoreFullError
from .sync import PassResult, Syncer

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
_SLEEP_STEP = 0.2


class _JournalFormatter(logging.Formatter):
    """One line per record; ``<N>`` priority prefixes when stderr goes to journald."""

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", " | ")
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
    handler.setFormatter(_JournalFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    handler._flux0sync = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


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
    real = os.path.realpath(db_path)
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
        yield
    finally:
        os.close(fd)


def make_client(config: Config) -> Flux0:
    return Flux0(
        config.server_url,
        timeout=Timeout(connect=min(10.0, config.timeout), read=config.timeout),
        retry=Retry(total=3, backoff_factor=0.5, max_backoff=10),
        token=config.token,
        user_sub=config.user_sub,
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
        self.stop = stop or StopFlag()
        self._reload = False
        self.store: Optional[Store] = None
        self.totals: Dict[str, int] = {"passes": 0, "inserted": 0}

    @property
    def _stop(self) -> bool:
        return self.stop.is_set

    # -- signals ---------------------------------------------------------------------------

    def _on_hup(self, signum: int, frame: Optional[FrameType]) -> None:
        self._reload = True

    def _install_signals(self) -> Dict[int, Any]:
        previous = self.stop.install()
        if hasattr(signal, "SIGHUP"):
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        return previous

    # -- helpers ---------------------------------------------------------------------------

    def heartbeat(self) -> None:
        if self.watchdog_every is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_every:
            self.notifier.watchdog()
            self._last_ping = now

    def _status_line(self, result: Optional[PassResult]) -> str:
        assert self.store is not None
        agents, sessions, events = self.store.counts()
        line = f"{events} events in {sessions} sessions of {agents} agents archived"
        if result is not None:
            line += f"; last pass +{result.events_inserted} events"
            if result.sessions_failed:
                line += f", {result.sessions_failed} sessions failing"
            if result.sessions_cut:
                line += f", {result.sessions_cut} sessions catching up"
        return line

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop and not self._reload:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.heartbeat()
            time.sleep(min(left, _SLEEP_STEP, self.watchdog_every or _SLEEP_STEP))

    def _apply_reload(self, syncer: Syncer) -> Syncer:
        self._reload = False
        self.notifier.reloading()
        try:
            fresh = load_config(self._flags, self._env if self._env is not None else os.environ)
        except ConfigError as exc:
            log.error("reload failed, keeping the old configuration: %s", exc)
            self.notifier.status("reload failed; old configuration kept")
            self.notifier.send("READY=1")
            return syncer
        if fresh.db_path != self.config.db_path:
            log.warning("the archive path cannot change on reload (restart instead); keeping %s", self.config.db_path)
            fresh = fresh.__class__(**{**fresh.__dict__, "db_path": self.config.db_path})
        try:
            fresh_syncer = self._make_syncer(fresh)
        except Flux0Error as exc:
            log.error("reload failed, keeping the old configuration: %s", exc)
            self.notifier.send("READY=1")
            return syncer
        syncer.client.close()
        self.config = fresh
        log.info("configuration reloaded (server %s, every %.1f s)", fresh.server_url or "(default)", fresh.interval)
        self.notifier.send("READY=1")
        return fresh_syncer

    def _make_syncer(self, config: Config) -> Syncer:
        assert self.store is not None
        return Syncer(
            make_client(config),
            self.store,
            agent_ids=config.agent_ids,
            session_ids=config.session_ids,
            batch_size=config.batch_size,
            max_backoff=config.max_backoff,
            gap_patience=config.gap_patience,
            session_deadline=config.session_deadline,
            heartbeat=self.heartbeat,
            should_stop=lambda: self._stop,
        )

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> int:
        previous = self._install_signals()
        try:
            if self._stop:
                return EXIT_OK
            with acquire_lock(self.config.db_path):
                self.store = Store(
                    self.config.db_path,
                    synchronous=self.config.synchronous,
                    max_page_count=self.config.max_db_pages,
                    check=self.check,
                    on_wait=self.heartbeat,
                    should_stop=lambda: self._stop,
                )
                try:
                    return self._loop()
                finally:
                    self.store.close()
        except StoreError as exc:
            if self._stop:
                return EXIT_OK  # stopped while waiting for a locked archive: nothing was written
            log.error("%s", exc)
            self.notifier.status(f"failed: {exc}")
            return EXIT_STORE
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.stop.signal is not None:  # reported here, never from the handler
                name = signal.Signals(self.stop.signal).name
                log.info("received %s: stopping", name)
                self.notifier.stopping()
                log.info(
                    "stopped on %s after %d passes, %d events archived",
                    name,
                    self.totals["passes"],
                    self.totals["inserted"],
                )

    def _loop(self) -> int:
        assert self.store is not None
        syncer = self._make_syncer(self.config)
        self.notifier.ready(self._status_line(None))
        log.info("archive %s open; syncing from %s", self.config.db_path, syncer.client.server_url)
        outage = 0
        try:
            while not self._stop:
                if self._reload:
                    syncer = self._apply_reload(syncer)
                wait = self.config.interval * (1 + random.uniform(-self.config.jitter, self.config.jitter))
                result: Optional[PassResult] = None
                try:
                    result = syncer.run_pass()
                    outage = 0
                    self.totals["passes"] += 1
                    self.totals["inserted"] += result.events_inserted
                    if result.events_inserted or result.sessions_failed:
                        log.info(
                            "pass: %d sessions, +%d events, %d failing",
                            result.sessions_seen,
                            result.events_inserted,
                            result.sessions_failed,
                        )
                except (StoreFullError, StoreBusyError) as exc:
                    if self._stop:
                        break
                    outage += 1
                    log.error("%s", exc)
                    wait = min(self.config.max_backoff, 2.0**outage)
                    if self.once:
                        return EXIT_FAILED
                except (APIConnectionError, Flux0Error) as exc:
                    outage += 1
                    wait = min(self.config.max_backoff, max(wait, 2.0**outage))
                    log.warning("server unavailable (%s); retrying in %.0f s", exc, wait)
                    self.notifier.status(f"server unavailable: {exc}")
                    if self.once:
                        return EXIT_FAILED
                    self._sleep(wait)
                    continue
                if self._stop:
                    break
                self.notifier.status(self._status_line(result))
                self.heartbeat()
                if self.once:
                    return EXIT_OK if result is not None and result.ok else EXIT_FAILED
                self._sleep(wait)
        finally:
            syncer.client.close()
        return EXIT_OK


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
    setup_logging(log_level)
    daemon = Daemon(config, once=once, check=check, flags=flags, env=env, notifier=notifier_factory(), stop=stop)
    return daemon.run()
