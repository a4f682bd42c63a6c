"""The long-running service: the sync loop, signals, systemd notify and the watchdog.

Shutdown is prompt and safe: SIGTERM or SIGINT interrupts whatever the loop is waiting on (a
poll sleep, an HTTP read); an open database transaction is allowed to commit first. Either way
the process exits 0 with a consistent archive.

The stop is an exception raised from the signal handler, like KeyboardInterrupt, but only
where that is known to be safe: while this package, flux0lite or the socket layer is running,
never inside a transaction, and never inside someone else's code (a tracer, the import system,
logging) that may hold a lock it would then never release. Elsewhere the handler only sets a
flag and re-checks every 50 ms (SIGALRM) until the main thread reaches such a point.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import sys
import time
from types import FrameType
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

from flux0lite import APIConnectionError, Flux0, Flux0Error, Retry, Timeout

from .config import Config, ConfigError, load_config
from .notify import Notifier, watchdog_interval
from .store import Store, StoreError, StoreFullError
from .sync import PassResult, Syncer

__all__ = ["Daemon", "Shutdown", "acquire_lock", "setup_logging", "EXIT_OK", "EXIT_FAILED", "EXIT_CONFIG", "EXIT_STORE"]

log = logging.getLogger("flux0sync")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_STORE = 3

_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class Shutdown(BaseException):
    """Raised by the signal handler to unwind the loop; never caught by ``except Exception``."""


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
    """One writer per archive: a second daemon on the same file exits with a clear message."""
    try:
        import fcntl
    except ImportError:  # not POSIX: SQLite's own locking still keeps the file consistent
        yield
        return
    lock_path = db_path + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StoreError(f"another flux0-sync (pid {holder}) is already syncing into {db_path}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


# Where a stop exception may be raised: code that keeps no lock across a bytecode boundary.
_INTERRUPTIBLE_MODULES = ("flux0sync", "flux0lite", "socket", "ssl", "http.client", "selectors")
_RECHECK_SECONDS = 0.05


def _interruptible(frame: Optional[FrameType]) -> bool:
    """Is the innermost Python frame one where raising Shutdown cannot leave a lock held?"""
    if frame is None:
        return False
    module = str(frame.f_globals.get("__name__", ""))
    return any(module == name or module.startswith(name + ".") for name in _INTERRUPTIBLE_MODULES)


def _schedule_recheck() -> None:
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, _RECHECK_SECONDS, _RECHECK_SECONDS)


def _cancel_rechecks() -> None:
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)


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
    ) -> None:
        self.config = config
        self.once = once
        self.check = check
        self._flags = dict(flags or {})
        self._env = env
        self.notifier = notifier or Notifier()
        self.watchdog_every = watchdog_interval()
        self._last_ping = 0.0
        self._stop = False
        self._stop_signal: Optional[int] = None
        self._finishing = False
        self._reload = False
        self.store: Optional[Store] = None
        self.totals: Dict[str, int] = {"passes": 0, "inserted": 0}

    # -- signals ---------------------------------------------------------------------------

    def _on_stop(self, signum: int, frame: Optional[FrameType]) -> None:
        # No I/O here: the handler can interrupt a write to stderr or a send to the notify
        # socket, and re-entering either can raise or block. run() reports the stop.
        if self._stop_signal is None:
            self._stop_signal = signum
        self._stop = True
        self._interrupt_if_safe(frame)

    def _on_recheck(self, signum: int, frame: Optional[FrameType]) -> None:
        if self._stop:
            self._interrupt_if_safe(frame)

    def _interrupt_if_safe(self, frame: Optional[FrameType]) -> None:
        if self._finishing:
            _cancel_rechecks()  # already unwinding: a second signal must not interrupt the cleanup
            return
        store = self.store
        in_transaction = store is not None and store.db.in_transaction
        if in_transaction or not _interruptible(frame):
            _schedule_recheck()  # the loop also checks the flag after every batch and sleep step
            return
        _cancel_rechecks()
        self._finishing = True
        raise Shutdown()

    def _on_hup(self, signum: int, frame: Optional[FrameType]) -> None:
        self._reload = True

    def _install_signals(self) -> Dict[int, Any]:
        previous: Dict[int, Any] = {}
        for sig, handler in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop)):
            previous[sig] = signal.signal(sig, handler)
        if hasattr(signal, "SIGHUP"):
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        if hasattr(signal, "setitimer"):
            previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_recheck)
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
        return line

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop and not self._reload:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.heartbeat()
            time.sleep(min(left, 0.5, self.watchdog_every or 0.5))

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
        syncer.client.close()
        self.config = fresh
        log.info("configuration reloaded (server %s, every %.1f s)", fresh.server_url or "(default)", fresh.interval)
        self.notifier.send("READY=1")
        return self._make_syncer()

    def _make_syncer(self) -> Syncer:
        assert self.store is not None
        return Syncer(
            make_client(self.config),
            self.store,
            agent_ids=self.config.agent_ids,
            session_ids=self.config.session_ids,
            batch_size=self.config.batch_size,
            max_backoff=self.config.max_backoff,
            heartbeat=self.heartbeat,
            should_stop=lambda: self._stop,
        )

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> int:
        previous = self._install_signals()
        try:
            with acquire_lock(self.config.db_path):
                self.store = Store(
                    self.config.db_path,
                    synchronous=self.config.synchronous,
                    max_page_count=self.config.max_db_pages,
                    check=self.check,
                )
                try:
                    return self._loop()
                finally:
                    self.store.close()
        except Shutdown:
            return EXIT_OK
        except StoreError as exc:
            log.error("%s", exc)
            self.notifier.status(f"failed: {exc}")
            return EXIT_STORE
        finally:
            self._finishing = True
            _cancel_rechecks()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._stop_signal is not None:  # reported here, never from the handler (see _on_stop)
                name = signal.Signals(self._stop_signal).name
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
        syncer = self._make_syncer()
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
                except StoreFullError as exc:
                    outage += 1
                    log.error("%s", exc)
                    wait = min(self.config.max_backoff, 2.0**outage)
                except (APIConnectionError, Flux0Error) as exc:
                    outage += 1
                    wait = min(self.config.max_backoff, max(wait, 2.0**outage))
                    log.warning("server unavailable (%s); retrying in %.0f s", exc, wait)
                    self.notifier.status(f"server unavailable: {exc}")
                    if self.once:
                        return EXIT_FAILED
                    self._sleep(wait)
                    continue
                self.notifier.status(self._status_line(result))
                self.heartbeat()
                if self.once:
                    return EXIT_OK if result is not None and result.ok else EXIT_FAILED
                self._sleep(wait)
        finally:
            self._finishing = True  # from here on a signal must not interrupt the cleanup
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
) -> int:
    os.umask(0o077)
    setup_logging(log_level)
    return Daemon(config, once=once, check=check, flags=flags, env=env, notifier=notifier_factory()).run()
