"""The SQLite archive: schema, migrations, and exactly-once batch writes.

Exactly-once rests on three rules. Each batch of a session's events and that session's
checkpoint are written in one ``BEGIN IMMEDIATE`` transaction (which may hold other sessions'
batches and checkpoints too, see :meth:`Store.write_rows`), so after a crash at any instant
the archive and the checkpoints agree. The checkpoint is the highest offset up to which every
offset is stored (or was recorded as a gap the server never filled): it is computed here, from
what is stored, never taken from what the server claims. And inserts are idempotent (an event
is identified by ``(session_id, id)``; ``(session_id, offset)`` is unique too), so re-fetching a
tail whose commit was lost stores nothing twice, while a different event under a known id or
offset is kept in ``conflicts`` instead of being dropped.

With ``synchronous=NORMAL`` in WAL mode a commit survives a killed process; a power loss may
roll back the last commits, which the checkpoint then simply re-fetches. Another process
holding the write lock (``SQLITE_BUSY``) is waited out with backoff, not treated as fatal.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import itertools
import json
import math
import os
import re
import sqlite3
import stat
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generator, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar

from flux0lite.jsonstream import string_end
from flux0lite.models import Agent, Session

from .gaps import Gap, SeenHere, reconcile
from .jsonread import SHALLOW_MIN_CHARS, same_json
from .rows import EventRow, RawEvent, count_clashes, dumps_lossless, event_rows, storable_text, stored_message_text

__all__ = [
    "Store",
    "StoreError",
    "StoreFullError",
    "StoreBusyError",
    "SessionStatus",
    "SearchHit",
    "Gap",
    "WriteResult",
    "Listed",
    "PollRecord",
    "APPLICATION_ID",
    "SCHEMA_VERSION",
]

APPLICATION_ID = 0x46305359  # "F0SY": marks a file as ours, so a foreign database is never touched
_SQLITE_MAGIC = b"SQLite format 3\x00"
_MAX_ROWID = 2**63 - 1
_T = TypeVar("_T")


class StoreError(Exception):
    """The archive cannot be used (foreign, corrupt, newer schema, unwritable, bad path)."""


class StoreFullError(StoreError):
    """The disk, or the configured page cap, is full; nothing of the batch was written."""


class StoreBusyError(StoreError):
    """Another process held the write lock for longer than we were willing to wait; nothing was written."""


class ArchiveMovedError(StoreError):
    """The archive file, or its ``-wal`` file, is no longer the one that was opened (removed, or
    replaced: a backup restored over it). What was committed is in the file that was opened;
    nothing more is written, and a restart opens the file the path names now."""


# How long a write waits for readers to let the WAL be emptied into an archive moved away
_CHECKPOINT_PATIENCE = 10.0


def _set_aside(path: str) -> str:
    """Rename the ``-wal`` and ``-shm`` beside ``path`` (another file's, now) out of its way;
    where they went."""
    moved = []
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for suffix in ("-wal", "-shm"):
        try:
            os.replace(path + suffix, f"{path}{suffix}.of-a-replaced-archive-{stamp}")
            moved.append(f"{os.path.basename(path)}{suffix}.of-a-replaced-archive-{stamp}")
        except OSError:
            pass  # gone already, or not ours to move: nothing left to replay from it
    return ", ".join(moved) or "nothing was left"


def _file_id(path: str) -> Optional[Tuple[int, int]]:
    """The (device, inode) of a file, or None."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


@dataclass(frozen=True)
class SessionStatus:
    session_id: str
    agent_id: Optional[str]
    title: Optional[str]
    events: int
    last_offset: int
    last_success_at: Optional[float]
    errors: int
    last_error: Optional[str]
    gaps_open: int = 0
    gaps_skipped: int = 0
    conflicts: int = 0
    next_poll_at: Optional[float] = None
    idle_level: Optional[int] = None
    found_under_user: Optional[str] = None


@dataclass(frozen=True)
class Listed:
    """A session from a listing, as the archive knew it before: new, changed, and its schedule."""

    session_id: str
    new: bool
    changed: bool
    next_poll_at: Optional[float]
    idle_level: int
    # the entry says the session was created anew under the same id (see recreated_at): its
    # created_at before and now, and how many archived events were moved to ``conflicts``
    recreated: Optional[Tuple[str, str, int]] = None
    # listed under another user than the one whose entry the archive holds: a digest of this
    # entry, for the engine to compare with this user's previous one (users may see a session
    # differently, so the archive's entry says nothing of this user's)
    view: Optional[int] = None


@dataclass(frozen=True)
class PollRecord:
    """A finished poll for :meth:`Store.save_polls`; ``succeeded_at`` is None after a failure."""

    session_id: str
    next_poll_at: float
    idle_level: int
    succeeded_at: Optional[float]


@dataclass(frozen=True)
class SearchHit:
    session_id: str
    offset: Optional[int]
    source: str
    text: str


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    duplicates: int
    conflicts: int
    checkpoint: int
    # nothing was written: the session was created anew since the poll that read the batch began
    # (its generation moved on), so the batch belongs to the earlier conversation
    stale: bool = False


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Run statements one by one: ``executescript`` would COMMIT the migration's transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise StoreError(f"incomplete SQL in migration: {statement.strip()[:80]}")


def _schema_v1(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            name TEXT,
            type TEXT,
            description TEXT,
            created_at TEXT,
            raw TEXT NOT NULL,
            synced_at REAL NOT NULL
        );
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            agent_id TEXT,
            user_id TEXT,
            title TEXT,
            created_at TEXT,
            raw TEXT NOT NULL,
            synced_at REAL NOT NULL
        );
        CREATE INDEX sessions_agent ON sessions(agent_id);
        CREATE TABLE sync_state (
            session_id TEXT PRIMARY KEY,
            last_offset INTEGER NOT NULL DEFAULT -1,
            last_attempt_at REAL,
            last_success_at REAL,
            errors INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        );
        CREATE TABLE events (
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            "offset" INTEGER NOT NULL,
            type TEXT NOT NULL,
            source TEXT NOT NULL,
            correlation_id TEXT,
            created_at TEXT,
            deleted INTEGER NOT NULL DEFAULT 0,
            text TEXT,
            raw TEXT NOT NULL,
            UNIQUE (session_id, "offset")
        );
        CREATE INDEX events_correlation ON events(correlation_id);
        """,
    )


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    """Whether the archive holds a table (or trigger, index) of that name."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def _fts_available(db: sqlite3.Connection) -> bool:
    try:
        db.execute("CREATE VIRTUAL TABLE temp.fts_probe USING fts5(x)")
        db.execute("DROP TABLE temp.fts_probe")
        return True
    except sqlite3.OperationalError:
        return False


def _schema_v2(db: sqlite3.Connection) -> None:
    """Full-text search over message text, when this SQLite has FTS5 (else search uses LIKE)."""
    if not _fts_available(db):
        return
    _run_script(
        db,
        """
        CREATE VIRTUAL TABLE events_fts USING fts5(text, content='events', content_rowid='rowid');
        INSERT INTO events_fts(rowid, text) SELECT rowid, text FROM events WHERE text IS NOT NULL AND text != '';
        """,
    )
    _fts_triggers(db)


def _schema_v3(db: sqlite3.Connection) -> None:
    """Event identity per session, storable-or-NULL offsets, and records of gaps and conflicts.

    The events table is rebuilt with its rowids kept, so the full-text index stays valid.
    """
    has_fts = _has_table(db, "events_fts")
    _run_script(
        db,
        """
        CREATE TABLE events_v3 (
            session_id TEXT NOT NULL,
            id TEXT NOT NULL,
            "offset" INTEGER,
            type TEXT NOT NULL,
            source TEXT NOT NULL,
            correlation_id TEXT,
            created_at TEXT,
            deleted INTEGER NOT NULL DEFAULT 0,
            text TEXT,
            raw TEXT NOT NULL,
            UNIQUE (session_id, id),
            UNIQUE (session_id, "offset")
        );
        INSERT INTO events_v3 (rowid, session_id, id, "offset", type, source, correlation_id, created_at,
                               deleted, text, raw)
            SELECT rowid, session_id, id, "offset", type, source, correlation_id, created_at, deleted, text, raw
            FROM events;
        DROP TABLE events;
        ALTER TABLE events_v3 RENAME TO events;
        CREATE INDEX events_correlation ON events(correlation_id);
        CREATE TABLE gaps (
            session_id TEXT NOT NULL,
            first_offset INTEGER NOT NULL,
            last_offset INTEGER NOT NULL,
            first_seen_at REAL NOT NULL,
            skipped_at REAL,
            PRIMARY KEY (session_id, first_offset)
        );
        CREATE TABLE conflicts (
            session_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            "offset" INTEGER,
            reason TEXT NOT NULL,
            raw TEXT NOT NULL,
            digest TEXT NOT NULL,
            seen_at REAL NOT NULL,
            UNIQUE (session_id, digest)
        );
        """,
    )
    if has_fts:
        _fts_triggers(db)


def _fts_triggers(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TRIGGER events_fts_insert AFTER INSERT ON events
            WHEN new.text IS NOT NULL AND new.text != ''
            BEGIN INSERT INTO events_fts(rowid, text) VALUES (new.rowid, new.text); END;
        CREATE TRIGGER events_fts_delete AFTER DELETE ON events
            WHEN old.text IS NOT NULL AND old.text != ''
            BEGIN INSERT INTO events_fts(events_fts, rowid, text) VALUES ('delete', old.rowid, old.text); END;
        """,
    )


def _schema_v4(db: sqlite3.Connection) -> None:
    """When each session is polled next (so a restart does not poll them all at once), and the
    user (``flux0_user_sub``) whose session listing showed each session ('' for no cookie)."""
    _run_script(
        db,
        """
        CREATE TABLE poll_schedule (
            session_id TEXT PRIMARY KEY,
            next_poll_at REAL NOT NULL,
            idle_level INTEGER NOT NULL DEFAULT 0
        );
        ALTER TABLE sessions ADD COLUMN found_under_user TEXT;
        """,
    )


def _schema_fts_per_batch(db: sqlite3.Connection) -> None:
    """The full-text index is filled once per batch by ``write_batch``, in the batch's own
    transaction, instead of by a trigger per row (which cost about half of all write time).

    Deletes still go through their trigger. ``IF EXISTS``: this step does not depend on the
    migrations before it, so it may be renumbered freely when migrations are merged.
    """
    db.execute("DROP TRIGGER IF EXISTS events_fts_insert")


def _schema_generation(db: sqlite3.Connection) -> None:
    """Each session's conversation count: a recorded re-creation adds one, and a write of a poll
    started before it is refused (see :meth:`Store.write_rows`)."""
    db.execute("ALTER TABLE sync_state ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")


def _schema_searchable_text(db: sqlite3.Connection) -> None:
    """Message text holding a character UTF-8 cannot carry (a lone surrogate) was stored as no
    text at all, so no word of it was found: such rows get their searchable text (see
    :func:`~flux0sync.rows.searchable_text`), indexed in the same transaction.

    Only messages without text whose raw holds a surrogate's escape (``\\uD800``-``\\uDFFF``,
    in either case) are read, one raw at a time and by the daemon's bounded reader; what
    their raw says is unchanged."""
    indexed = _has_table(db, "events_fts")
    after = 0
    while True:  # a page of rowids at a time, then each raw alone: memory stays one raw's
        rowids = [
            rowid
            for (rowid,) in db.execute(
                "SELECT rowid FROM events WHERE rowid > ? AND text IS NULL AND type = 'message'"
                " AND raw GLOB '*\\u[dD][89a-fA-F]*'"
                " ORDER BY rowid LIMIT 500",
                (after,),
            )
        ]
        if not rowids:
            return
        for rowid in rowids:
            (raw,) = db.execute("SELECT raw FROM events WHERE rowid = ?", (rowid,)).fetchone()
            text = stored_message_text(raw)
            del raw
            if text:
                db.execute("UPDATE events SET text = ? WHERE rowid = ?", (text, rowid))
                if indexed:
                    db.execute("INSERT INTO events_fts(rowid, text) VALUES (?, ?)", (rowid, text))
        after = rowids[-1]


MIGRATIONS: Sequence[Callable[[sqlite3.Connection], None]] = (
    _schema_v1,
    _schema_v2,
    _schema_v3,
    _schema_v4,
    _schema_fts_per_batch,
    _schema_generation,
    _schema_searchable_text,
)
SCHEMA_VERSION = len(MIGRATIONS)
# A reader copes with every version from this one up (the v3 tables are looked up before use).
_OLDEST_READABLE = 1


def _check_file(path: str) -> None:
    """Refuse anything that is not an empty file or one of our own SQLite archives."""
    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        raise StoreError(f"{path} is a directory, not an archive file")
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not regular:
        raise StoreError(f"{path} is not a regular file (a device, a pipe or a socket)")
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not header:
        return
    if not header.startswith(_SQLITE_MAGIC):
        raise StoreError(f"{path} is not a SQLite database; refusing to touch it (move it away or pick another --db)")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id not in (0, APPLICATION_ID):
        raise StoreError(f"{path} belongs to another application (application_id {app_id:#x}); refusing to touch it")


def _create_private(path: str) -> None:
    """The archive's directory (0700 if we make it) and the file itself (0600), or a one-line error."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
        os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot create the archive {path}: {exc.strerror or exc}") from exc


def _force_private(path: str) -> None:
    """An archive created by an older version, or copied in, may be world-readable: make it 0600."""
    for name in (path, path + "-wal", path + "-shm"):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(f"cannot make {name} private (mode 0600): {exc.strerror or exc}") from exc


def _is_busy(exc: BaseException) -> bool:
    message = str(exc).lower()
    return isinstance(exc, (sqlite3.OperationalError, StoreBusyError)) and ("locked" in message or "busy" in message)


class Store:
    """One archive file. Not thread-safe: one Store per thread.

    ``busy_patience`` is how long (seconds) a write waits out another process's lock, retrying
    with backoff; ``on_wait`` is called between tries (the daemon pings its watchdog there) and
    ``should_stop`` ends the wait early (nothing is written then).
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout_ms: int = 250,
        busy_patience: float = 120.0,
        synchronous: str = "NORMAL",
        max_page_count: Optional[int] = None,
        check: bool = True,
        on_wait: Callable[[], None] = lambda: None,
        should_stop: Callable[[], bool] = lambda: False,
        readonly: bool = False,
    ) -> None:
        self.path = path
        self._given_path = os.path.abspath(path)  # absolute: the working folder may change
        self.real_path = os.path.realpath(path)
        self.readonly = readonly
        self.busy_patience = busy_patience
        self.on_wait = on_wait
        self.should_stop = should_stop
        self.version = 0
        self._writing = False  # inside a write transaction (read by interrupt(), from another thread)
        self._abort = False  # set by interrupt(): SQLite's progress handler then ends the statement
        self._uncapped_pages = 0  # SQLite's own page limit, read before a cap is set (_configure)
        # the (device, inode) of the archive and of its -wal as SQLite opened them, and the error
        # once either is another file (see _check_files)
        self._opened_ids: Optional[Tuple[Optional[Tuple[int, int]], Optional[Tuple[int, int]]]] = None
        self._moved: Optional[StoreError] = None
        self._checking = False  # inside _check_files' checkpoint (which feeds the watchdog)
        if readonly:
            self.db = self._open_readonly()
        else:
            _check_file(self.real_path)
            _create_private(self.real_path)
            try:
                self.db = sqlite3.connect(self.real_path, isolation_level=None, timeout=busy_timeout_ms / 1000)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open {path}: {exc}") from exc
            # sqlite3's interrupt() is lost between the rows of an executemany: a flag is not
            self.db.set_progress_handler(lambda: self._abort, 1000)
            try:
                self._retry_busy(lambda: self._configure(busy_timeout_ms, synchronous, check))
                self._retry_busy(self._migrate)
                if max_page_count:
                    # after the migrations: one that grows a full archive (v7 indexes text) must
                    # not stop the daemon at start; its writes meet the cap as usual
                    self.set_max_page_count(max_page_count)
                _force_private(self.real_path)
                # the -wal exists now: SQLite made it at the first read in WAL mode (_migrate's)
                self._opened_ids = (_file_id(self.real_path), _file_id(self.real_path + "-wal"))
            except sqlite3.DatabaseError as exc:
                self.db.close()
                raise StoreError(f"{path} is corrupt or unusable: {exc}") from exc
            except StoreError:
                self.db.close()
                raise
        self.has_fts = self._table_exists("events_fts")
        # An archive at schema v2 or v3 (seen read-only, or in a migration test) indexes by trigger.
        self._fills_fts = self.has_fts and not self._table_exists("events_fts_insert")
        self._has_gaps = self._table_exists("gaps")  # asked after every poll: not looked up each time

    # -- setup -------------------------------------------------------------------------------

    def _open_readonly(self) -> sqlite3.Connection:
        """Open without ever writing: works for another uid's archive, a 0444 file, a read-only mount."""
        _check_file(self.real_path)
        if not os.path.exists(self.real_path):
            raise StoreError(f"no archive at {self.path}")
        # the name's bytes (a locale that is not UTF-8 keeps non-ASCII ones as surrogates)
        uri = "file:" + urllib.parse.quote(os.fsencode(self.real_path))
        db: Optional[sqlite3.Connection] = None
        for query in ("?mode=ro", "?immutable=1"):
            # A WAL archive whose -shm cannot be created (read-only directory) opens only as
            # immutable; that is exact when no -wal is left, i.e. no daemon is writing it.
            if query == "?immutable=1" and os.path.exists(self.real_path + "-wal"):
                break
            try:
                db = sqlite3.connect(uri + query, uri=True, isolation_level=None)
                db.execute("PRAGMA query_only = ON")
                self.version = int(db.execute("PRAGMA user_version").fetchone()[0])
                break
            except sqlite3.Error as exc:
                if db is not None:
                    db.close()
                    db = None
                error = exc
        if db is None:
            raise StoreError(f"cannot read {self.path}: {error}")
        try:
            app_id = int(db.execute("PRAGMA application_id").fetchone()[0])
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"{self.path} is corrupt or unusable: {exc}") from exc
        if app_id != APPLICATION_ID or self.version < _OLDEST_READABLE:
            db.close()
            raise StoreError(f"{self.path} is not a flux0-sync archive (or no daemon has written it yet)")
        if self.version > SCHEMA_VERSION:
            db.close()
            raise StoreError(f"{self.path} has schema version {self.version}, newer than this flux0-sync knows")
        return db

    def _configure(self, busy_timeout_ms: int, synchronous: str, check: bool) -> None:
        db = self.db
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if check:
            result = db.execute("PRAGMA quick_check").fetchone()
            if not result or result[0] != "ok":
                raise StoreError(f"{self.path} failed its integrity check: {result[0] if result else '?'}")
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()[0]
        if app_id != APPLICATION_ID and tables:
            raise StoreError(f"{self.path} is some other SQLite database ({tables} tables); refusing to touch it")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode})")
        self._apply_synchronous(synchronous)
        # Checkpoint every ~40 MB of WAL instead of 4 MB: each checkpoint syncs the WAL and the
        # database file, and pages written by many batches (indexes, the full-text index) are
        # copied once. A first sync writes about 10% faster; commits are as durable as before.
        db.execute("PRAGMA wal_autocheckpoint = 10000")
        # A 512 KiB page cache, not the default 2 MiB: what a write touches (the end of the
        # events table, one session's stretch of each index, the newest full-text segment) fits
        # (writing 300,000 events took the same CPU with either), and the default's other 1.5 MiB
        # were a twentieth of the daemon's peak memory.
        db.execute("PRAGMA cache_size = -512")
        db.execute("PRAGMA foreign_keys = ON")
        self._uncapped_pages = int(db.execute("PRAGMA max_page_count").fetchone()[0])  # SQLite's own limit

    def _apply_synchronous(self, synchronous: str) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"unknown synchronous mode {synchronous!r}")
        self.db.execute(f"PRAGMA synchronous = {synchronous.upper()}")

    def set_max_page_count(self, pages: int) -> int:
        """Cap (or, with a large number, uncap) the archive size; returns the cap in force."""
        return int(self.db.execute(f"PRAGMA max_page_count = {int(pages)}").fetchone()[0])

    def apply_options(self, synchronous: str, max_page_count: Optional[int]) -> None:
        """The options a reload may change on the open archive: the sync mode and the page cap
        (None: SQLite's own limit, as at open without a cap)."""
        try:  # the cap first: a reload's log says both were kept when it fails
            self.set_max_page_count(max_page_count or self._uncapped_pages)
            self._apply_synchronous(synchronous)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot apply synchronous or max_db_pages: {exc}") from exc

    def _table_exists(self, name: str) -> bool:
        return _has_table(self.db, name)

    def _migrate(self) -> None:
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this flux0-sync knows ({SCHEMA_VERSION})"
            )
        while version < SCHEMA_VERSION:
            with self.transaction():
                if version == 0:
                    self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                MIGRATIONS[version](self.db)
                version += 1
                self.db.execute(f"PRAGMA user_version = {version}")
        self.version = version

    # -- transactions ------------------------------------------------------------------------

    class _Transaction:
        def __init__(self, store: "Store") -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._abort = False
            self.store._check_files()
            try:
                self.store.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _translate(exc, self.store.path) from exc
            self.store._writing = True
            return self.store.db

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            self.store._abort = False  # the ROLLBACK must run
            try:
                self._end(exc_type, exc)
            finally:
                self.store._writing = False

        def _end(self, exc_type: Any, exc: Any) -> None:
            db = self.store.db
            if exc_type is None:
                try:
                    db.execute("COMMIT")
                    return
                except sqlite3.Error as commit_error:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise _translate(commit_error, self.store.path) from commit_error
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, self.store.path) from exc

    def transaction(self) -> "Store._Transaction":
        return Store._Transaction(self)

    def check_files(self) -> None:
        """The daemon asks every few seconds, writing or not: an idle daemon would otherwise not
        see an archive restored under it until its next write (a crash before that would
        recover the old WAL into the restored file). See :meth:`_check_files`."""
        self._check_files()

    def _check_files(self) -> None:
        """Before each write: are the archive and its ``-wal`` still the files this connection
        writes? SQLite does not look. A file moved over the archive (a backup restored, or the
        archive's path a symlink pointed elsewhere) would get the old archive's WAL frames
        applied to its pages, corrupting it; a removed ``-wal`` would take every frame not yet
        checkpointed with it at the next crash. (A file written over the archive in place, by
        ``cp`` or ``rsync --inplace``, is this file still: SQLite's own warning holds, such a
        copy into a database in use corrupts it.) Either way the frames go into the file that was
        opened (a TRUNCATE checkpoint, which also leaves the path's WAL empty) and
        :class:`ArchiveMovedError` stops the writes: a restart opens the file the path names now
        and syncs into it what it lacks. Where readers keep the checkpoint from finishing (for
        ``_CHECKPOINT_PATIENCE`` seconds), a moved archive's old WAL is set aside (a restart would
        replay it into the new file), and of a removed WAL what the readers held back is let go:
        the archive keeps its commits up to their snapshots, checkpoints included, and a restart
        fetches the rest again."""
        if self._moved is not None:
            raise self._moved
        if self._opened_ids is None or self._checking:  # _checkpoint_whole's on_wait comes back here
            return
        opened, wal = self._opened_ids
        replaced = _file_id(self.real_path) != opened  # another file (or none) at the path itself
        repointed = not replaced and not self._same_path()  # the given path, a symlink, leads elsewhere
        if not replaced and not repointed and _file_id(self.real_path + "-wal") == wal:
            return
        self._checking = True
        try:
            whole = self._checkpoint_whole()
        finally:
            self._checking = False
        if repointed:
            # the file opened is where it was, with its own WAL beside it: nothing to move, and
            # what the checkpoint left there goes in at that file's next open
            what = f"the path now leads to another file than {self.real_path}, which keeps what was archived"
        elif replaced and whole:
            what = (
                "the archive file was removed or replaced; what was archived is in the file opened,"
                f" which {self.path} no longer names"
            )
        elif replaced:
            # Readers kept the old file's frames from leaving the path's WAL: beside the new file
            # they would be replayed into it at its next open. They go aside, with the index that
            # names them; what they held is fetched again from the server.
            what = (
                "the archive file was removed or replaced, and readers kept its WAL from being emptied for"
                f" {_CHECKPOINT_PATIENCE:.0f} s: that WAL was moved aside ({_set_aside(self.real_path)})"
            )
        elif whole:
            what = "its -wal file was removed or replaced; what it held is in the archive file now"
        else:
            # The removed WAL, which this connection still holds, is the only copy of what the
            # readers kept from the archive file (which alone is no consistent state: a
            # checkpoint skips a page whose newest frame is past a reader): the whole archive, as
            # this connection sees it, is copied to a new file that takes the path's place; the
            # old one stays with its readers.
            what = f"its -wal file was removed or replaced, and readers kept it from being emptied: {self._rescue()}"
        self._moved = ArchiveMovedError(
            f"{self.path}: {what}; nothing more is written: restart to sync into the file the path names now"
        )
        raise self._moved

    def _rescue(self) -> str:
        """Copy the whole archive, as this connection sees it, over the path (see _check_files);
        what was done."""
        rescued = f"{self.real_path}.rescued-{time.strftime('%Y%m%dT%H%M%S')}"
        try:
            self.db.execute("VACUUM INTO ?", (rescued,))
            os.chmod(rescued, 0o600)  # private as the archive is, before the path names it
            os.replace(rescued, self.real_path)
        except (sqlite3.Error, OSError) as exc:
            return f"copying it whole failed ({exc}): stop every reader of the archive before this daemon stops"
        aside = _set_aside(self.real_path)  # the old file's index (and WAL) must not meet the new file
        return f"the archive was copied whole from this daemon's connection in its place (aside: {aside})"

    def _same_path(self) -> bool:
        """Whether the path given still leads to the file opened (a symlink may be repointed)."""
        return self._given_path == self.real_path or os.path.realpath(self._given_path) == self.real_path

    def _checkpoint_whole(self) -> bool:
        """Every WAL frame into the file this connection opened, the WAL left empty; False if
        readers kept it from finishing within ``_CHECKPOINT_PATIENCE`` seconds, or until a stop
        was asked for (a SIGTERM is answered within a second, not after the whole wait)."""
        deadline = time.monotonic() + _CHECKPOINT_PATIENCE
        while True:
            try:
                busy, frames, copied = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if busy == 0 and frames == copied:
                    return True
            except sqlite3.Error:
                pass
            if time.monotonic() > deadline or self.should_stop():
                return False
            self.on_wait()
            time.sleep(0.2)

    def interrupt(self) -> None:
        """From any thread: end the write transaction in progress, if any, rolled back whole (its
        caller gets a StoreError; a batch is then fetched again later). A stop signal uses it: one
        batch can take seconds, and the signal handler itself runs only once SQLite returns."""
        if self._writing:
            self._abort = True

    def _retry_busy(self, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt``, waiting out another process's write lock with backoff."""
        deadline = time.monotonic() + self.busy_patience
        delay = 0.05
        while True:
            try:
                return attempt()
            except (sqlite3.OperationalError, StoreBusyError) as exc:
                if not _is_busy(exc):
                    raise
                if self.should_stop() or time.monotonic() + delay > deadline:
                    raise StoreBusyError(
                        f"{self.path}: another process held the archive's write lock too long; nothing written"
                    ) from exc
            self.on_wait()
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        def attempt() -> _T:
            with self.transaction() as db:
                return work(db)

        return self._retry_busy(attempt)

    def close(self) -> None:
        self.db.close()

    # -- writes ------------------------------------------------------------------------------

    def upsert_agents(self, agents: Sequence[Agent]) -> None:
        now = time.time()
        rows = [
            (
                _key(a.id),
                storable_text(a.name),
                storable_text(a.type),
                storable_text(a.description),
                storable_text(a.created_at),
                dumps_lossless(a.to_dict()),
                now,
            )
            for a in agents
        ]
        self._write(
            lambda db: db.executemany(
                "INSERT INTO agents (id, name, type, description, created_at, raw, synced_at) VALUES (?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET name=excluded.name, type=excluded.type,"
                " description=excluded.description, created_at=excluded.created_at, raw=excluded.raw,"
                " synced_at=excluded.synced_at",
                rows,
            )
        )

    def upsert_sessions(self, sessions: Sequence[Session]) -> None:
        now = time.time()
        rows = [
            (
                _key(s.id),
                storable_text(s.agent_id),
                storable_text(s.user_id),
                storable_text(s.title),
                storable_text(s.created_at),
                dumps_lossless(s.to_dict()),
                now,
            )
            for s in sessions
        ]

        def work(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO sessions (id, agent_id, user_id, title, created_at, raw, synced_at) VALUES (?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET agent_id=excluded.agent_id, user_id=excluded.user_id,"
                " title=excluded.title, created_at=excluded.created_at, raw=excluded.raw, synced_at=excluded.synced_at",
                rows,
            )
            db.executemany("INSERT OR IGNORE INTO sync_state (session_id) VALUES (?)", [(r[0],) for r in rows])

        self._write(work)

    def checkpoint(self, session_id: str) -> int:
        """The offset up to which the session is complete (stored, or a recorded gap), or -1."""
        return _checkpoint(self.db, session_id)

    def stored_through(self, session_id: str, offset: int) -> int:
        """The highest offset reached from ``offset`` through stored offsets without a hole
        (asked before every poll of a session with a hole; see :func:`_advance`)."""
        return _advance(self.db, session_id, offset)

    def poll_starts(self, session_ids: Sequence[str]) -> Dict[str, Tuple[int, int]]:
        """Where a poll of each session starts: (checkpoint, generation), in a few queries (each
        read outside a write transaction costs about as much as a small write's statements:
        --once reads them ahead, 200 at a time). The generation goes with the poll's writes."""
        found: Dict[str, Tuple[int, int]] = {}
        usable = [sid for sid in session_ids if storable_text(sid) is not None]
        for start in range(0, len(usable), 400):  # within SQLite's 999 host parameters
            chunk = usable[start : start + 400]
            marks = ",".join("?" * len(chunk))  # only placeholders go into the SQL text
            query = f"{_POLL_STARTS_QUERY} WHERE session_id IN ({marks})"
            found.update((sid, (int(offset), int(gen))) for sid, offset, gen in self.db.execute(query, chunk))
        return {sid: found.get(sid, (-1, 0)) for sid in session_ids}

    def write_batch(self, session_id: str, events: Sequence[RawEvent], generation: Optional[int] = None) -> WriteResult:
        """Store events (in offset order) and advance the checkpoint over what is now contiguous.

        Raises UnidentifiableEventError (before writing anything) for an event without an id.
        ``generation``: see :meth:`write_rows`.
        """
        rows = event_rows(session_id, events)
        if not rows:
            return WriteResult(0, 0, 0, self.checkpoint(session_id))
        return self.write_rows([(session_id, rows)], None if generation is None else {session_id: generation})[0]

    def write_rows(
        self, batches: Sequence[Tuple[str, Sequence[EventRow]]], generations: Optional[Mapping[str, int]] = None
    ) -> List[WriteResult]:
        """Store several batches of rows (see :func:`~flux0sync.rows.event_rows`), each with the
        checkpoint it earns, all in one transaction: all of them or none.

        One commit and one full-text statement for many small sessions is what makes a first
        sync of many sessions fast; each session's checkpoint still commits with its events.
        A session may appear more than once (in offset order); results are in the given order.
        A session given in ``generations`` (as :meth:`poll_starts` read it when its poll began)
        whose generation has moved on since (a re-creation was recorded) writes nothing: its
        result says ``stale``.
        """
        batches = [(session_id, rows) for session_id, rows in batches if rows]
        if not batches:
            return []
        now = time.time()
        total = sum(len(rows) for _, rows in batches)

        def work(db: sqlite3.Connection) -> List[WriteResult]:
            last_rowid = _last_rowid(db, total) if self._fills_fts else 0
            expected = generations or {}
            results = [_insert_rows(db, sid, rows, now, expected.get(sid)) for sid, rows in batches]
            if self._fills_fts and any(result.inserted for result in results):
                _index_new_rows(db, last_rowid)
            return results

        return self._write(work)

    def reconcile_gaps(
        self,
        session_id: str,
        patience: float,
        generation: Optional[int] = None,
        seen: Optional[SeenHere] = None,
    ) -> Tuple[List[Gap], List[Gap]]:
        """Record the offsets missing below the highest stored one; skip those older than ``patience``
        (on ``seen``'s clock too: see :func:`flux0sync.gaps.reconcile`).

        Returns (open gaps, gaps skipped just now). A skipped gap moves the checkpoint past it.
        A poll of an earlier conversation (``generation`` no longer the session's) skips none.
        """
        now = time.time()

        def work(db: sqlite3.Connection) -> Tuple[List[Gap], List[Gap]]:
            current = generation is None or _generation(db, session_id) == generation
            return reconcile(_SqliteGaps(db, session_id), patience if current else math.inf, now, seen)

        return self._write(work)

    def mark_synced(self, session_id: str) -> None:
        now = time.time()
        self._write(
            lambda db: db.execute(
                "INSERT INTO sync_state (session_id, last_attempt_at, last_success_at) VALUES (?, ?, ?)"
                " ON CONFLICT(session_id) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,"
                " last_success_at = excluded.last_success_at, errors = 0, last_error = NULL",
                (session_id, now, now),
            )
        )

    def mark_error(self, session_id: str, message: str) -> int:
        """Record a failed sync; returns the number of consecutive errors."""
        now = time.time()
        text = storable_text(message[:500]) or dumps_lossless(message[:500])
        try:
            self._write(
                lambda db: db.execute(
                    "INSERT INTO sync_state (session_id, last_attempt_at, errors, last_error) VALUES (?, ?, 1, ?)"
                    " ON CONFLICT(session_id) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,"
                    " errors = errors + 1, last_error = excluded.last_error",
                    (session_id, now, text),
                )
            )
        except StoreError:
            pass  # a full disk or a held lock must not hide the original error
        row = self.db.execute("SELECT errors FROM sync_state WHERE session_id = ?", (session_id,)).fetchone()
        return int(row[0]) if row else 1

    # -- reads -------------------------------------------------------------------------------

    def counts(self, *, events: bool = True) -> Tuple[int, int, int]:
        """Agents, sessions and events archived; ``events=False`` skips the slow one (0)."""
        agents = self.db.execute("SELECT count(*) FROM agents").fetchone()[0]
        sessions = self.db.execute("SELECT count(*) FROM sessions").fetchone()[0]
        stored = self.db.execute("SELECT count(*) FROM events").fetchone()[0] if events else 0
        return int(agents), int(sessions), int(stored)

    def session_statuses(self) -> List[SessionStatus]:
        if self._table_exists("poll_schedule"):
            query = _STATUS_V4
        else:
            query = _STATUS_V3 if self._table_exists("gaps") else _STATUS_V1
        return [SessionStatus(*row) for row in self.db.execute(query).fetchall()]

    def gaps(self, session_id: Optional[str] = None, *, open_only: bool = False) -> List[Gap]:
        if not self._has_gaps:
            return []
        if session_id is not None:
            return _gaps(self.db, session_id, open_only=open_only)
        rows = self.db.execute(
            "SELECT session_id, first_offset, last_offset, first_seen_at, skipped_at FROM gaps"
            " WHERE skipped_at IS NULL OR NOT ? ORDER BY session_id, first_offset",
            (open_only,),
        ).fetchall()
        return [Gap(*row) for row in rows]

    def iter_raw_events(self, session_id: str) -> Generator[str, None, None]:
        """Each stored event's JSON text, in offset order (events without a storable offset last).

        Two queries, each in an order SQLite reads from an index or the table: one ORDER BY
        over both sorted the raws themselves in a temporary B-tree (a session of 16 MiB events
        held whole: 252 MB to export eight). Both read one snapshot, in one read transaction: a
        daemon's write between them (a re-creation moving the session's events) is seen by
        both or by neither."""
        own_transaction = not self.db.in_transaction
        if own_transaction:
            self.db.execute("BEGIN")
        try:
            for query in (
                'SELECT raw FROM events WHERE session_id = ? AND "offset" IS NOT NULL ORDER BY "offset"',
                'SELECT raw FROM events WHERE session_id = ? AND "offset" IS NULL ORDER BY rowid',
            ):
                for (raw,) in self.db.execute(query, (session_id,)):
                    yield raw
        finally:
            if own_transaction and self.db.in_transaction:
                self.db.execute("ROLLBACK")  # it read only

    def status_snapshot(self) -> Tuple[List[SessionStatus], Tuple[int, int, int], List[Gap]]:
        """What ``status`` prints, read in one snapshot (one read transaction): the sessions, the
        totals and the gaps of one instant, however the daemon writes meanwhile."""
        own_transaction = not self.db.in_transaction
        if own_transaction:
            self.db.execute("BEGIN")
        try:
            return self.session_statuses(), self.counts(), self.gaps()
        finally:
            if own_transaction and self.db.in_transaction:
                self.db.execute("ROLLBACK")  # it read only

    def session_exists(self, session_id: str) -> bool:
        return (
            self.db.execute(
                "SELECT 1 FROM sessions WHERE id = ? UNION SELECT 1 FROM sync_state WHERE session_id = ?",
                (session_id, session_id),
            ).fetchone()
            is not None
        )

    def search(self, text: str, limit: int = 50) -> Generator[SearchHit, None, None]:
        """The hits, one at a time as the archive gives them (a hit's text may be 16 MiB).
        Full text (FTS5) for words; LIKE without the index, or for text of punctuation only,
        which FTS5 makes no word of (as PostgreSQL's search does)."""
        if self.has_fts and any(character.isalnum() for character in text):
            phrase = '"' + text.replace('"', '""') + '"'
            rows = self.db.execute(
                'SELECT e.session_id, e."offset", e.source, e.text FROM events_fts f JOIN events e ON e.rowid = f.rowid'
                ' WHERE events_fts MATCH ? ORDER BY e.session_id, e."offset" LIMIT ?',
                (phrase, limit),
            )
        else:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self.db.execute(
                "SELECT session_id, \"offset\", source, text FROM events WHERE text LIKE ? ESCAPE '\\'"
                ' ORDER BY session_id, "offset" LIMIT ?',
                (pattern, limit),
            )
        for row in rows:
            yield SearchHit(*row)

    def integrity_ok(self) -> bool:
        return bool(self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    # -- the poll schedule (see flux0sync.schedule) --------------------------------------------

    def record_listing(self, user: Optional[str], sessions: Sequence[Session]) -> List[Listed]:
        """Store the new and changed sessions of one listing page; report each as it was before.

        Unchanged sessions are not rewritten: at 100k sessions a listing every minute would
        otherwise rewrite the whole table each time (a session several users list is written
        under each in turn). A session id that is not valid Unicode
        cannot be fetched either and is left out. A re-created session (see
        :func:`listing_change`) is retired and its generation moves on in the same transaction.
        """
        now = time.time()
        found_under = user or ""
        listed: List[Listed] = []
        rows = []
        renewed: List[Tuple[str, str]] = []  # (session id, reason) of sessions re-created
        usable = [x for x in sessions if storable_text(x.id) is not None]
        for chunk_start in range(0, len(usable), 400):  # within SQLite's 999 host parameters
            chunk = usable[chunk_start : chunk_start + 400]
            marks = ",".join("?" * len(chunk))  # only placeholders go into the SQL text
            query = f"{_LISTED_QUERY} WHERE s.id IN ({marks})"
            known = {row[0]: row[1:] for row in self.db.execute(query, [x.id for x in chunk])}
            for session in chunk:
                doc = session.to_dict()
                raw = dumps_lossless(doc)
                before = known.get(session.id)
                if before is None:
                    listed.append(Listed(session.id, True, False, None, 0))
                else:
                    level = before[3] if isinstance(before[3], int) else 0  # SQLite keeps any type written
                    changed, renewal = listing_change(before[0], before[1], before[4], doc, raw, found_under)
                    if renewal is not None:
                        renewed.append((session.id, recreation_reason(*renewal)))
                    recreated = None if renewal is None else (*renewal, 0)
                    view = hash(raw) if before[1] != found_under else None
                    listed.append(Listed(session.id, False, changed, before[2], level, recreated, view))
                    if before[0] == raw and before[1] == found_under:
                        continue
                rows.append(
                    (
                        session.id,
                        storable_text(session.agent_id),
                        storable_text(session.user_id),
                        storable_text(session.title),
                        readable_created_at(doc.get("created_at")),
                        raw,
                        now,
                        found_under,
                    )
                )

        def work(db: sqlite3.Connection) -> Dict[str, int]:
            db.executemany(
                "INSERT INTO sessions (id, agent_id, user_id, title, created_at, raw, synced_at, found_under_user)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET agent_id=excluded.agent_id,"
                " user_id=excluded.user_id, title=excluded.title,"
                " created_at=coalesce(excluded.created_at, sessions.created_at), raw=excluded.raw,"
                " synced_at=excluded.synced_at, found_under_user=excluded.found_under_user",
                rows,
            )
            db.executemany("INSERT OR IGNORE INTO sync_state (session_id) VALUES (?)", [(r[0],) for r in rows])
            # A changed entry calls for a poll now; no later listing shows the change again, so
            # the poll is saved with the entry (an engine that stops or meets an outage first
            # would lose it).
            db.executemany(_SAVE_POLL, [(item.session_id, now, 0) for item in listed if item.changed and not item.new])
            # with the new entry, in one transaction: a stop in between cannot hide the re-creation
            moved = {_key(sid): _retire_events(db, sid, reason, now) for sid, reason in renewed}
            db.executemany(
                "UPDATE sync_state SET generation = generation + 1 WHERE session_id = ?", [(sid,) for sid in moved]
            )
            return moved

        if rows:
            moved = self._write(work)
            listed = [_with_moved(item, moved, _key) for item in listed] if moved else listed
        return listed

    def save_polls(self, polls: Sequence[PollRecord]) -> None:
        """Many finished polls in one transaction: next poll times, and when empty polls succeeded."""
        if not polls:
            return

        def work(db: sqlite3.Connection) -> None:
            db.executemany(_SAVE_POLL, [(p.session_id, p.next_poll_at, p.idle_level) for p in polls])
            db.executemany(
                "UPDATE sync_state SET last_attempt_at = ?, last_success_at = ?, errors = 0, last_error = NULL"
                " WHERE session_id = ?",
                [(p.succeeded_at, p.succeeded_at, p.session_id) for p in polls if p.succeeded_at is not None],
            )

        self._write(work)


_SAVE_POLL = (  # (session id, next poll, idle level)
    "INSERT INTO poll_schedule (session_id, next_poll_at, idle_level) VALUES (?, ?, ?)"
    " ON CONFLICT(session_id) DO UPDATE SET next_poll_at = excluded.next_poll_at, idle_level = excluded.idle_level"
)
_STATUS_V1 = """
    SELECT st.session_id, s.agent_id, s.title,
           (SELECT count(*) FROM events e WHERE e.session_id = st.session_id),
           st.last_offset, st.last_success_at, st.errors, st.last_error, 0, 0, 0, NULL, NULL, NULL
    FROM sync_state st LEFT JOIN sessions s ON s.id = st.session_id
    ORDER BY st.session_id
"""
_STATUS_V3 = """
    SELECT st.session_id, s.agent_id, s.title,
           (SELECT count(*) FROM events e WHERE e.session_id = st.session_id),
           st.last_offset, st.last_success_at, st.errors, st.last_error,
           (SELECT count(*) FROM gaps g WHERE g.session_id = st.session_id AND g.skipped_at IS NULL),
           (SELECT count(*) FROM gaps g WHERE g.session_id = st.session_id AND g.skipped_at IS NOT NULL),
           (SELECT count(*) FROM conflicts c WHERE c.session_id = st.session_id), NULL, NULL, NULL
    FROM sync_state st LEFT JOIN sessions s ON s.id = st.session_id
    ORDER BY st.session_id
"""
_STATUS_V4 = """
    SELECT st.session_id, s.agent_id, s.title,
           (SELECT count(*) FROM events e WHERE e.session_id = st.session_id),
           st.last_offset, st.last_success_at, st.errors, st.last_error,
           (SELECT count(*) FROM gaps g WHERE g.session_id = st.session_id AND g.skipped_at IS NULL),
           (SELECT count(*) FROM gaps g WHERE g.session_id = st.session_id AND g.skipped_at IS NOT NULL),
           (SELECT count(*) FROM conflicts c WHERE c.session_id = st.session_id),
           p.next_poll_at, p.idle_level, s.found_under_user
    FROM sync_state st LEFT JOIN sessions s ON s.id = st.session_id
    LEFT JOIN poll_schedule p ON p.session_id = st.session_id
    ORDER BY st.session_id
"""


def _key(value: str) -> str:
    """A primary key the server sent; one UTF-8 cannot carry is kept as its JSON escape."""
    return storable_text(value) or json.dumps(value)


def _last_rowid(db: sqlite3.Connection, batch: int) -> int:
    """The highest rowid of the events table, below which this batch's rows cannot land.

    The one writer holds the write lock for the whole batch, and SQLite gives a new row the
    highest rowid plus one until rowids run out, so the rows this transaction inserts are
    exactly those above this mark. Running out (only possible in an archive edited by hand)
    is refused rather than indexed wrongly.
    """
    last = int(db.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0])
    if last > _MAX_ROWID - batch:
        raise StoreError("the archive's events table has run out of rowids; cannot index new events")
    return last


def _index_new_rows(db: sqlite3.Connection, last_rowid: int) -> None:
    """Add this transaction's new events to the full-text index: one statement per batch, and
    committed (or rolled back) with the events themselves."""
    db.execute(
        "INSERT INTO events_fts(rowid, text) SELECT rowid, text FROM events"
        " WHERE rowid > ? AND text IS NOT NULL AND text != ''",
        (last_rowid,),
    )


_INSERT_EVENTS = (
    'INSERT OR IGNORE INTO events (session_id, id, "offset", type, source, correlation_id, created_at,'
    " deleted, text, raw) VALUES "
)
# Rows per INSERT statement, largest first. One statement of many rows costs a quarter less than
# executemany's one per row (each row there is a reset, a bind and a step of its own), and it
# inserts the same rows: each row's conflict is ignored alone, in order, and the statement's
# rowcount counts those inserted. A few fixed sizes, not one statement per batch size: SQLite
# keeps each prepared statement (about 0.5 KB a row), and 99 sizes took 5 MB. With every power of
# two up to 64 (127 rows kept, ~64 KB) what is left after the 64-row statements takes one
# statement per set bit (a session of 10 events: 2, not 4; of 100: 3, not 4): 3 % fewer
# instructions writing 10-event sessions. 64 rows of 10 values stay within the 999 host
# parameters of an older SQLite.
_INSERT_SIZES = (64, 32, 16, 8, 4, 2, 1)
_INSERT_SQL = {size: _INSERT_EVENTS + ",".join(["(?,?,?,?,?,?,?,?,?,?)"] * size) for size in _INSERT_SIZES}


def _insert_events(db: sqlite3.Connection, rows: Sequence[EventRow]) -> int:
    """Insert ``rows`` in order (those whose id or offset is stored already are skipped); how many were new."""
    inserted = start = 0
    for size in _INSERT_SIZES:
        sql = _INSERT_SQL[size]
        while len(rows) - start >= size:
            chunk = rows[start : start + size]
            inserted += db.execute(sql, list(itertools.chain.from_iterable(chunk))).rowcount
            start += size
    return inserted


def _insert_rows(
    db: sqlite3.Connection, session_id: str, rows: Sequence[EventRow], now: float, generation: Optional[int] = None
) -> WriteResult:
    """One session's rows, its clashes and its checkpoint, inside the caller's transaction;
    nothing if the session's generation is no longer ``generation`` (when given)."""
    if generation is None:
        before = _checkpoint(db, session_id)
    else:
        state = db.execute(_POLL_STARTS_QUERY + " WHERE session_id = ?", (session_id,)).fetchone()
        before = int(state[1]) if state else -1
        if (int(state[2]) if state else 0) != generation:
            return WriteResult(0, 0, 0, before, stale=True)
    inserted = _insert_events(db, rows)
    clashes = conflicts = 0
    if inserted < len(rows):
        clashes, conflicts = count_clashes(
            rows, lambda row: _clash(db, row), lambda row, reason: _record_conflict(db, row, reason, now)
        )
    checkpoint = _advance(db, session_id, before)
    _set_checkpoint(db, session_id, checkpoint, now, success=True)
    return WriteResult(inserted, len(rows) - inserted - clashes, conflicts, checkpoint)


def _generation(db: sqlite3.Connection, session_id: str) -> int:
    row = db.execute("SELECT generation FROM sync_state WHERE session_id = ?", (session_id,)).fetchone()
    return int(row[0]) if row else 0


def _checkpoint(db: sqlite3.Connection, session_id: str) -> int:
    row = db.execute("SELECT last_offset FROM sync_state WHERE session_id = ?", (session_id,)).fetchone()
    return int(row[0]) if row else -1


def _set_checkpoint(db: sqlite3.Connection, session_id: str, checkpoint: int, now: float, *, success: bool) -> None:
    if success:
        db.execute(
            "INSERT INTO sync_state (session_id, last_offset, last_attempt_at, last_success_at, errors)"
            " VALUES (?, ?, ?, ?, 0) ON CONFLICT(session_id) DO UPDATE SET"
            " last_offset = max(last_offset, excluded.last_offset), last_attempt_at = excluded.last_attempt_at,"
            " last_success_at = excluded.last_success_at, errors = 0, last_error = NULL",
            (session_id, checkpoint, now, now),
        )
    else:
        db.execute(
            "INSERT INTO sync_state (session_id, last_offset) VALUES (?, ?) ON CONFLICT(session_id) DO UPDATE SET"
            " last_offset = max(last_offset, excluded.last_offset)",
            (session_id, checkpoint),
        )


def _advance(db: sqlite3.Connection, session_id: str, checkpoint: int) -> int:
    """The highest offset reached from ``checkpoint`` through stored offsets without a hole."""
    if checkpoint >= _MAX_ROWID:  # nothing can follow the largest offset (and 2**63 cannot be bound)
        return checkpoint
    expected = checkpoint + 1
    # The common case in one step of the (session_id, offset) index: offsets are unique per
    # session, so n integer offsets from ``expected`` up to ``expected + n - 1`` leave no hole.
    count, highest, others = db.execute(
        'SELECT count(*), max("offset"), count(*) - count(CASE WHEN typeof("offset") = \'integer\' THEN 1 END)'
        ' FROM events WHERE session_id = ? AND "offset" >= ?',
        (session_id, expected),
    ).fetchone()
    if not others and (count == 0 or (type(highest) is int and highest - expected + 1 == count)):
        return checkpoint + int(count)
    cursor = db.execute(
        'SELECT "offset" FROM events WHERE session_id = ? AND "offset" >= ? ORDER BY "offset"', (session_id, expected)
    )
    for (offset,) in cursor:
        if offset != expected:
            break
        expected += 1
    cursor.close()
    return expected - 1


def _missing_ranges(db: sqlite3.Connection, session_id: str, checkpoint: int) -> Iterator[Tuple[int, int]]:
    expected = checkpoint + 1
    for (offset,) in db.execute(
        'SELECT "offset" FROM events WHERE session_id = ? AND "offset" > ? ORDER BY "offset"', (session_id, checkpoint)
    ):
        if offset > expected:
            yield expected, offset - 1
        expected = offset + 1


def _gaps(db: sqlite3.Connection, session_id: str, *, open_only: bool) -> List[Gap]:
    rows = db.execute(
        "SELECT session_id, first_offset, last_offset, first_seen_at, skipped_at FROM gaps"
        " WHERE session_id = ? AND (skipped_at IS NULL OR NOT ?) ORDER BY first_offset",
        (session_id, open_only),
    ).fetchall()
    return [Gap(*row) for row in rows]


class _SqliteGaps:
    """The :class:`~flux0sync.gaps.GapLedger` of one session in a write transaction."""

    def __init__(self, db: sqlite3.Connection, session_id: str) -> None:
        self.db, self.session_id = db, session_id

    def checkpoint(self) -> int:
        return _checkpoint(self.db, self.session_id)

    def missing_ranges(self, checkpoint: int) -> Iterator[Tuple[int, int]]:
        return _missing_ranges(self.db, self.session_id, checkpoint)

    def record(self, found: Sequence[Tuple[int, int]], now: float) -> None:
        firsts = {first for first, _ in found}
        for (first,) in self.db.execute(
            "SELECT first_offset FROM gaps WHERE session_id = ? AND skipped_at IS NULL", (self.session_id,)
        ).fetchall():
            if first not in firsts:
                self.db.execute("DELETE FROM gaps WHERE session_id = ? AND first_offset = ?", (self.session_id, first))
        self.db.executemany(
            "INSERT INTO gaps (session_id, first_offset, last_offset, first_seen_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(session_id, first_offset) DO UPDATE SET last_offset = excluded.last_offset,"
            " first_seen_at = CASE WHEN excluded.last_offset > gaps.last_offset"
            " THEN excluded.first_seen_at ELSE gaps.first_seen_at END",
            [(self.session_id, first, last, now) for first, last in found],
        )

    def open_gaps(self) -> List[Gap]:
        return _gaps(self.db, self.session_id, open_only=True)

    def stored_after(self, offset: int, count: int) -> bool:
        (found,) = self.db.execute(
            'SELECT count(*) FROM (SELECT 1 FROM events WHERE session_id = ? AND "offset" > ? LIMIT ?)',
            (self.session_id, offset, min(count, _MAX_ROWID)),
        ).fetchone()
        return int(found) >= count

    def mark_skipped(self, first_offset: int, now: float) -> None:
        self.db.execute(
            "UPDATE gaps SET skipped_at = ? WHERE session_id = ? AND first_offset = ?",
            (now, self.session_id, first_offset),
        )

    def advance(self, checkpoint: int) -> int:
        return _advance(self.db, self.session_id, checkpoint)

    def save_checkpoint(self, checkpoint: int, now: float) -> None:
        _set_checkpoint(self.db, self.session_id, checkpoint, now, success=False)


_JSON_SPACE = re.compile(r"[ \t\n\r]+")


def _same(raw_a: str, raw_b: str) -> bool:
    """Equal as JSON (jsonread.same_json: other spacing, key order or escapes, the same values).

    Two raws kept as text (an event holding bytes that are not UTF-8, rows.undecodable_raw)
    are the same only if their bytes are, but for whitespace between tokens: such an event's
    strings cannot be read as JSON reads them (a byte 0xFF and the escapes ``\\udcff`` or
    ``\\u00ff`` would read alike), so other escapes or key order count as another event there
    (kept in ``conflicts``: noise, never a loss). A comparison that cannot be made (a value
    nested deeper than the C scanner reads, or a copy of over jsonread.SHALLOW_MIN_CHARS, which
    building twice could take past the unit's MemoryMax) counts as different: the event is
    then kept in ``conflicts``, and the daemon goes on."""
    if raw_a == raw_b:
        return True
    if len(raw_a) > SHALLOW_MIN_CHARS or len(raw_b) > SHALLOW_MIN_CHARS:
        return False
    try:
        if raw_a.startswith('"') and raw_b.startswith('"'):  # both kept as text: an event is an object
            return bool(_tokens_as_sent(json.loads(raw_a)) == _tokens_as_sent(json.loads(raw_b)))
        return same_json(raw_a, raw_b)
    except (ValueError, RecursionError, ArithmeticError):  # ArithmeticError: decimal's, should one slip through
        return False


def _tokens_as_sent(text: str) -> str:
    """An event's text kept as text (rows.undecodable_raw), less the whitespace between its
    tokens: its strings exactly as sent, escapes and bytes alike."""
    pieces: List[str] = []
    pos = 0
    while pos >= 0:
        opening = text.find('"', pos)
        outside = text[pos:] if opening < 0 else text[pos:opening]
        pieces.append(_JSON_SPACE.sub("", outside))
        if opening < 0:
            break
        pos = string_end(text, opening, len(text))
        pieces.append(text[opening:] if pos < 0 else text[opening:pos])
    return "".join(pieces)


def _clash(db: sqlite3.Connection, row: EventRow) -> Optional[str]:
    """Why a row that was not inserted is not simply a re-fetched copy of a stored event, or None."""
    session_id, event_id, offset, raw = row[0], row[1], row[2], row[9]
    found = db.execute(
        'SELECT "offset", raw FROM events WHERE session_id = ? AND id = ?', (session_id, event_id)
    ).fetchone()
    if found is None:
        return "same offset, different id"
    if found[0] == offset and _same(found[1], raw):
        return None
    return "same id, different event"


# What a re-creation moves to ``conflicts`` at a time (see _retire_events): as much raw text as
# a write batch holds (flux0sync.jobs.MAX_BATCH_CHARS).
RETIRE_PIECE_CHARS = 4 * 1024 * 1024


def _conflict_digest(*identity: Any) -> str:
    """A conflict's identity within its session (``conflicts`` holds each digest once).

    A clash is (reason, event id, offset), its content left out: a re-fetched variant of the
    same clash (a volatile field changed) is recorded once, not once per pass while a hole has
    the events fetched again. An event moved by a re-creation is (event id, offset, raw), its
    reason left out: a server that keeps changing a session's created_at moves the same
    re-read events again at every listing round, and each is stored once.
    """
    return hashlib.sha256(json.dumps(list(identity)).encode("ascii")).hexdigest()


def _record_conflict(db: sqlite3.Connection, row: EventRow, reason: str, now: float) -> int:
    session_id, event_id, offset, raw = row[0], row[1], row[2], row[9]
    digest = _conflict_digest(reason, event_id, offset)
    cursor = db.execute(
        'INSERT OR IGNORE INTO conflicts (session_id, event_id, "offset", reason, raw, digest, seen_at)'
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (session_id, event_id, offset, reason, raw, digest, now),
    )
    return int(cursor.rowcount)


_POLL_STARTS_QUERY = "SELECT session_id, last_offset, generation FROM sync_state"
_LISTED_QUERY = (
    "SELECT s.id, s.raw, s.found_under_user, p.next_poll_at, p.idle_level, s.created_at FROM sessions s"
    " LEFT JOIN poll_schedule p ON p.session_id = s.id"
)


_QUOTED_CHARS = 64  # of each created_at in a re-creation's reason, stored in every moved row


def recreation_reason(old: str, new: str) -> str:
    """The ``conflicts`` reason of the events a re-creation moves. Both created_at values come
    from the server: each is shortened and JSON-escaped (ASCII), so neither a lone surrogate
    (which SQLite cannot encode), a NUL (which PostgreSQL refuses) nor a huge value reaches
    every moved row."""
    return f"session re-created (created_at {_quoted(old)}, then {_quoted(new)}): an event of its earlier conversation"


def _quoted(text: str) -> str:
    return json.dumps(text[:_QUOTED_CHARS]) + ("..." if len(text) > _QUOTED_CHARS else "")


def listing_change(
    stored_raw: str, stored_user: Optional[str], stored_at: Any, doc: Any, raw: str, found_under: str
) -> Tuple[bool, Optional[Tuple[str, str]]]:
    """Whether a known session's listing entry ``doc`` (``raw``, listed under ``found_under``)
    changed, and (created_at known, listed) if it says the session was created anew; one rule
    for every archive backend.

    ``stored_at`` is the session's created_at as the archive keeps it: the last listed value
    that was a readable instant (:func:`readable_created_at`); a null, missing or unreadable
    one leaves it as it was (the stores write ``coalesce``). A re-creation is seen under any
    user (a new conversation may well belong to another); any other difference counts only
    under the user that stored the entry (another user's may differ in a per-viewer field).
    """
    listed_at = doc.get("created_at") if isinstance(doc, dict) else None
    renewal = None if listed_at == stored_at else recreated_at(stored_at, listed_at)  # parsed only if it differs
    if renewal is not None:
        return True, renewal
    same = _same(stored_raw, raw)
    return not same and stored_user in (None, found_under), None


def readable_created_at(value: Any) -> Optional[str]:
    """``value`` if it is a text :func:`_reading` reads as an instant, else None."""
    return value if isinstance(value, str) and _reading(value) is not None else None


def recreated_at(known: Any, listed: Any) -> Optional[Tuple[str, str]]:
    """(known, listed) if two created_at values say a session was created anew, else None.

    flux0 lets a client choose a session's id, and a server whose storage was reset gives the
    same id a new conversation whose offsets start again at 0: its created_at differs. Only
    two readable instants (:func:`_reading`, RFC 3339 / ISO 8601, the same on every Python)
    count, and only when they are further apart than the coarser one's precision (its last
    fractional digit, else its second, minute or hour: flux0 writes microseconds, and a
    session deleted and created again under its id half a second later is a new one): the
    same instant written differently (``Z``, ``+00:00`` or ``+0000``, the basic or the extended
    format, more or fewer digits, to the minute) or a server upgrade that changes the precision
    (microseconds truncated or rounded to milliseconds or seconds) re-creates nothing. A value
    that is not a readable instant (null, missing, a number, other text) never counts.
    """
    if not isinstance(known, str) or not isinstance(listed, str):
        return None
    old, new = _reading(known), _reading(listed)
    if old is None or new is None:
        return None
    (old_at, old_unit), (new_at, new_unit) = old, new
    return (known, listed) if abs(old_at - new_at) > max(old_unit, new_unit) else None


_NANOS = 10**9
_EPOCH = datetime.datetime(1970, 1, 1)
# ISO 8601 date and time, extended (2024-03-10T12:00:00) or basic (20240310T120000), to the
# hour, minute or second, a fraction on the seconds, and a zone (Z, +hh, +hh:mm, +hhmm) or none
_TIMESTAMP = re.compile(
    r"(\d{4})(-?)(\d{2})\2(\d{2})[Tt ](\d{2})(?:(:?)(\d{2})(?:\6(\d{2})(?:[.,](\d+))?)?)?"
    r"(?:[Zz]|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,
)


def _reading(text: str) -> Optional[Tuple[int, int]]:
    """A timestamp as (nanoseconds since 1970, UTC when it names no offset; its precision in
    nanoseconds: its fraction's last digit but trailing zeros, else the second, minute or hour
    it names), or None.

    A small strict parser rather than datetime.fromisoformat, which before Python 3.11 refuses
    9 fractional digits, ``.5``, ``+0000`` and the basic format: the same text must mean the
    same instant on every Python. Digits past nanoseconds are ignored.
    """
    found = _TIMESTAMP.fullmatch(text)
    if found is None:
        return None
    year, _, month, day, hour, _, minute, second, fraction, sign, off_h, off_m = found.groups()
    try:
        local = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    offset = 0
    if sign is not None:
        hours, minutes = int(off_h), int(off_m or 0)
        if hours > 23 or minutes > 59:
            return None
        offset = (hours * 3600 + minutes * 60) * (1 if sign == "+" else -1)
    since = local - _EPOCH
    seconds = since.days * 86400 + since.seconds - offset
    digits = (fraction or "").rstrip("0")  # zeros padding a fraction (pydantic writes .123000) say nothing
    if digits:  # its last digit: .5 names a tenth of a second, .123456 a microsecond
        unit = 10 ** (9 - min(len(digits), 9))
    else:
        unit = (1 if second is not None else 60 if minute is not None else 3600) * _NANOS
    return seconds * _NANOS + int(fraction[:9].ljust(9, "0") if fraction else 0), unit


def _instant(text: str) -> Optional[int]:
    """A timestamp in nanoseconds since 1970 (see :func:`_reading`), or None."""
    reading = _reading(text)
    return None if reading is None else reading[0]


def _with_moved(item: Listed, moved: Dict[str, int], key: Callable[[str], str] = lambda sid: sid) -> Listed:
    """``item`` with how many events its re-creation moved (``moved`` is by archive key)."""
    count = moved.get(key(item.session_id)) if item.recreated is not None else None
    if item.recreated is None or count is None:
        return item
    return dataclasses.replace(item, recreated=(item.recreated[0], item.recreated[1], count))


def _retire_events(db: sqlite3.Connection, session_id: str, reason: str, now: float) -> int:
    """A re-created session: its archived events (the earlier conversation) move to
    ``conflicts`` with ``reason``, its gaps are forgotten and its checkpoint starts again, so
    the new conversation is read from offset 0. Returns how many events moved.

    The events are read and moved a piece at a time (RETIRE_PIECE_CHARS of raw text), in the
    same transaction: a session of any size costs the daemon one piece of memory, not all of it.
    """
    key = _key(session_id)
    insert = (
        'INSERT OR IGNORE INTO conflicts (session_id, event_id, "offset", reason, raw, digest, seen_at)'
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    moved = chars = 0
    piece: List[Tuple[Any, ...]] = []
    for eid, offset, raw in db.execute('SELECT id, "offset", raw FROM events WHERE session_id = ?', (key,)):
        piece.append((key, eid, offset, reason, raw, _conflict_digest(eid, offset, raw), now))
        chars += len(raw)
        if chars >= RETIRE_PIECE_CHARS:
            db.executemany(insert, piece)
            moved += len(piece)
            piece, chars = [], 0
    db.executemany(insert, piece)
    moved += len(piece)
    db.execute("DELETE FROM events WHERE session_id = ?", (key,))
    db.execute("DELETE FROM gaps WHERE session_id = ?", (key,))
    db.execute("UPDATE sync_state SET last_offset = -1 WHERE session_id = ?", (key,))
    return moved


def _translate(exc: sqlite3.Error, path: str) -> StoreError:
    message = str(exc)
    if "full" in message.lower():
        return StoreFullError(f"{path}: archive is full ({message}); batch rolled back, will retry")
    if "locked" in message.lower() or "busy" in message.lower():
        return StoreBusyError(f"{path}: database is locked by another process ({message})")
    if "readonly" in message.lower() or "read-only" in message.lower():
        return StoreError(f"{path}: database is read-only ({message})")
    return StoreError(f"{path}: {message}")
