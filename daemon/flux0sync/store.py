"""The SQLite archive: schema, migrations, and exactly-once batch writes.

Exactly-once rests on two rules. Each batch of a session's events and that session's
checkpoint (the highest stored offset) are written in one ``BEGIN IMMEDIATE`` transaction, so
after a crash at any instant the archive and the checkpoint agree. And inserts are idempotent
(the event id is the primary key, ``(session_id, offset)`` is unique), so re-fetching a tail
whose commit was lost stores nothing twice.

With ``synchronous=NORMAL`` in WAL mode a commit survives a killed process; a power loss may
roll back the last commits, which the checkpoint then simply re-fetches.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from flux0lite.models import Agent, Event, Session

__all__ = [
    "Store",
    "StoreError",
    "StoreFullError",
    "SessionStatus",
    "SearchHit",
    "Listed",
    "PollRecord",
    "APPLICATION_ID",
    "SCHEMA_VERSION",
]

APPLICATION_ID = 0x46305359  # "F0SY": marks a file as ours, so a foreign database is never touched
_SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreError(Exception):
    """The archive cannot be used (foreign, corrupt, newer schema, locked, unwritable)."""


class StoreFullError(StoreError):
    """The disk, or the configured page cap, is full; nothing of the batch was written."""


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
    offset: int
    source: str
    text: str


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
        CREATE TRIGGER events_fts_insert AFTER INSERT ON events
            WHEN new.text IS NOT NULL AND new.text != ''
            BEGIN INSERT INTO events_fts(rowid, text) VALUES (new.rowid, new.text); END;
        CREATE TRIGGER events_fts_delete AFTER DELETE ON events
            WHEN old.text IS NOT NULL AND old.text != ''
            BEGIN INSERT INTO events_fts(events_fts, rowid, text) VALUES ('delete', old.rowid, old.text); END;
        """,
    )


def _schema_poll_schedule(db: sqlite3.Connection) -> None:
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


MIGRATIONS: Sequence[Callable[[sqlite3.Connection], None]] = (_schema_v1, _schema_v2, _schema_poll_schedule)
SCHEMA_VERSION = len(MIGRATIONS)


def _check_file(path: str) -> None:
    """Refuse anything that is not an empty file or one of our own SQLite archives."""
    if not os.path.exists(path):
        return
    if os.path.isdir(path):
        raise StoreError(f"{path} is a directory, not an archive file")
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
    if not header:
        return
    if not header.startswith(_SQLITE_MAGIC):
        raise StoreError(f"{path} is not a SQLite database; refusing to touch it (move it away or pick another --db)")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id not in (0, APPLICATION_ID):
        raise StoreError(f"{path} belongs to another application (application_id {app_id:#x}); refusing to touch it")


def _create_private(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if not os.path.exists(path):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        except FileExistsError:
            pass


class Store:
    """One archive file. Not thread-safe: one Store per thread."""

    def __init__(
        self,
        path: str,
        *,
        busy_timeout_ms: int = 5000,
        synchronous: str = "NORMAL",
        max_page_count: Optional[int] = None,
        check: bool = True,
    ) -> None:
        self.path = path
        _check_file(path)
        _create_private(path)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        try:
            self._configure(busy_timeout_ms, synchronous, max_page_count, check)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise StoreError(f"{path} is corrupt or unusable: {exc}") from exc
        except StoreError:
            self.db.close()
            raise
        self.has_fts = self._table_exists("events_fts")

    # -- setup -------------------------------------------------------------------------------

    def _configure(self, busy_timeout_ms: int, synchronous: str, max_page_count: Optional[int], check: bool) -> None:
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
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"unknown synchronous mode {synchronous!r}")
        db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        db.execute("PRAGMA foreign_keys = ON")
        if max_page_count:
            db.execute(f"PRAGMA max_page_count = {int(max_page_count)}")

    def set_max_page_count(self, pages: int) -> int:
        """Cap (or, with a large number, uncap) the archive size; returns the cap in force."""
        return int(self.db.execute(f"PRAGMA max_page_count = {int(pages)}").fetchone()[0])

    def _table_exists(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None

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

    # -- transactions ------------------------------------------------------------------------

    class _Transaction:
        def __init__(self, store: "Store") -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            try:
                self.store.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _translate(exc, self.store.path) from exc
            return self.store.db

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
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

    def close(self) -> None:
        self.db.close()

    # -- writes ------------------------------------------------------------------------------

    def upsert_agents(self, agents: Sequence[Agent]) -> None:
        now = time.time()
        rows = [(a.id, a.name, a.type, a.description, a.created_at, _dumps(a.to_dict()), now) for a in agents]
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO agents (id, name, type, description, created_at, raw, synced_at) VALUES (?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET name=excluded.name, type=excluded.type,"
                " description=excluded.description, created_at=excluded.created_at, raw=excluded.raw,"
                " synced_at=excluded.synced_at",
                rows,
            )

    def upsert_sessions(self, sessions: Sequence[Session]) -> None:
        now = time.time()
        rows = [(s.id, s.agent_id, s.user_id, s.title, s.created_at, _dumps(s.to_dict()), now) for s in sessions]
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO sessions (id, agent_id, user_id, title, created_at, raw, synced_at) VALUES (?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET agent_id=excluded.agent_id, user_id=excluded.user_id,"
                " title=excluded.title, created_at=excluded.created_at, raw=excluded.raw, synced_at=excluded.synced_at",
                rows,
            )
            db.executemany("INSERT OR IGNORE INTO sync_state (session_id) VALUES (?)", [(s.id,) for s in sessions])

    def checkpoint(self, session_id: str) -> int:
        """The highest offset stored for a session, or -1."""
        row = self.db.execute("SELECT last_offset FROM sync_state WHERE session_id = ?", (session_id,)).fetchone()
        return int(row[0]) if row else -1

    def write_batch(self, session_id: str, events: Sequence[Event]) -> int:
        """Store events and move the checkpoint, all in one transaction; returns rows inserted."""
        if not events:
            return 0
        rows = [
            (
                e.id,
                session_id,
                e.offset,
                e.type,
                e.source,
                e.correlation_id,
                e.created_at,
                1 if e.deleted else 0,
                e.text or None,
                _dumps(e.to_dict()),
            )
            for e in events
        ]
        highest = max(e.offset for e in events)
        now = time.time()
        with self.transaction() as db:
            cursor = db.executemany(
                'INSERT OR IGNORE INTO events (id, session_id, "offset", type, source, correlation_id, created_at,'
                " deleted, text, raw) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            inserted = cursor.rowcount
            db.execute(
                "INSERT INTO sync_state (session_id, last_offset, last_attempt_at, last_success_at, errors)"
                " VALUES (?, ?, ?, ?, 0) ON CONFLICT(session_id) DO UPDATE SET"
                " last_offset = max(last_offset, excluded.last_offset), last_attempt_at = excluded.last_attempt_at,"
                " last_success_at = excluded.last_success_at, errors = 0, last_error = NULL",
                (session_id, highest, now, now),
            )
        return inserted

    def mark_synced(self, session_id: str) -> None:
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sync_state (session_id, last_attempt_at, last_success_at) VALUES (?, ?, ?)"
                " ON CONFLICT(session_id) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,"
                " last_success_at = excluded.last_success_at, errors = 0, last_error = NULL",
                (session_id, now, now),
            )

    def mark_error(self, session_id: str, message: str) -> int:
        """Record a failed sync; returns the number of consecutive errors."""
        now = time.time()
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO sync_state (session_id, last_attempt_at, errors, last_error) VALUES (?, ?, 1, ?)"
                    " ON CONFLICT(session_id) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,"
                    " errors = errors + 1, last_error = excluded.last_error",
                    (session_id, now, message[:500]),
                )
        except StoreError:
            pass  # a full disk must not hide the original error
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
        rows = self.db.execute(
            """
            SELECT st.session_id, s.agent_id, s.title,
                   (SELECT count(*) FROM events e WHERE e.session_id = st.session_id),
                   st.last_offset, st.last_success_at, st.errors, st.last_error,
                   p.next_poll_at, p.idle_level, s.found_under_user
            FROM sync_state st LEFT JOIN sessions s ON s.id = st.session_id
            LEFT JOIN poll_schedule p ON p.session_id = st.session_id
            ORDER BY st.session_id
            """
        ).fetchall()
        return [SessionStatus(*row) for row in rows]

    def iter_raw_events(self, session_id: str) -> Iterator[Dict[str, Any]]:
        cursor = self.db.execute('SELECT raw FROM events WHERE session_id = ? ORDER BY "offset"', (session_id,))
        for (raw,) in cursor:
            yield json.loads(raw)

    def session_exists(self, session_id: str) -> bool:
        return (
            self.db.execute(
                "SELECT 1 FROM sessions WHERE id = ? UNION SELECT 1 FROM sync_state WHERE session_id = ?",
                (session_id, session_id),
            ).fetchone()
            is not None
        )

    def search(self, text: str, limit: int = 50) -> List[SearchHit]:
        if self.has_fts:
            phrase = '"' + text.replace('"', '""') + '"'
            rows = self.db.execute(
                'SELECT e.session_id, e."offset", e.source, e.text FROM events_fts f JOIN events e ON e.rowid = f.rowid'
                ' WHERE events_fts MATCH ? ORDER BY e.session_id, e."offset" LIMIT ?',
                (phrase, limit),
            ).fetchall()
        else:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self.db.execute(
                "SELECT session_id, \"offset\", source, text FROM events WHERE text LIKE ? ESCAPE '\\'"
                ' ORDER BY session_id, "offset" LIMIT ?',
                (pattern, limit),
            ).fetchall()
        return [SearchHit(*row) for row in rows]

    def integrity_ok(self) -> bool:
        return bool(self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    # -- the poll schedule (see flux0sync.schedule) --------------------------------------------

    def record_listing(self, user: Optional[str], sessions: Sequence[Session]) -> List[Listed]:
        """Store the new and changed sessions of one listing page; report each as it was before.

        Unchanged sessions are not rewritten: at 100k sessions a listing every minute would
        otherwise rewrite the whole table each time.
        """
        now = time.time()
        found_under = user or ""
        listed: List[Listed] = []
        rows = []
        for chunk_start in range(0, len(sessions), 400):  # within SQLite's 999 host parameters
            chunk = sessions[chunk_start : chunk_start + 400]
            marks = ",".join("?" * len(chunk))  # only placeholders go into the SQL text
            query = f"{_LISTED_QUERY} WHERE s.id IN ({marks})"
            known = {row[0]: row[1:] for row in self.db.execute(query, [x.id for x in chunk])}
            for session in chunk:
                raw = _dumps(session.to_dict())
                before = known.get(session.id)
                if before is None:
                    listed.append(Listed(session.id, True, False, None, 0))
                else:
                    level = int(before[3]) if before[3] is not None else 0
                    same = before[0] == raw or _same_json(before[0], session.to_dict())
                    listed.append(Listed(session.id, False, not same, before[2], level))
                    if before[0] == raw and before[1] == found_under:
                        continue
                rows.append(
                    (
                        session.id,
                        session.agent_id,
                        session.user_id,
                        session.title,
                        session.created_at,
                        raw,
                        now,
                        found_under,
                    )
                )
        if rows:
            with self.transaction() as db:
                db.executemany(
                    "INSERT INTO sessions (id, agent_id, user_id, title, created_at, raw, synced_at, found_under_user)"
                    " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET agent_id=excluded.agent_id,"
                    " user_id=excluded.user_id, title=excluded.title, created_at=excluded.created_at, raw=excluded.raw,"
                    " synced_at=excluded.synced_at, found_under_user=excluded.found_under_user",
                    rows,
                )
                db.executemany("INSERT OR IGNORE INTO sync_state (session_id) VALUES (?)", [(r[0],) for r in rows])
        return listed

    def save_polls(self, polls: Sequence[PollRecord]) -> None:
        """Many finished polls in one transaction: next poll times, and when empty polls succeeded."""
        if not polls:
            return
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO poll_schedule (session_id, next_poll_at, idle_level) VALUES (?, ?, ?)"
                " ON CONFLICT(session_id) DO UPDATE SET next_poll_at = excluded.next_poll_at,"
                " idle_level = excluded.idle_level",
                [(p.session_id, p.next_poll_at, p.idle_level) for p in polls],
            )
            db.executemany(
                "UPDATE sync_state SET last_attempt_at = ?, last_success_at = ?, errors = 0, last_error = NULL"
                " WHERE session_id = ?",
                [(p.succeeded_at, p.succeeded_at, p.session_id) for p in polls if p.succeeded_at is not None],
            )


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(doc: Any) -> str:
    return _ENCODER.encode(doc)


_LISTED_QUERY = (
    "SELECT s.id, s.raw, s.found_under_user, p.next_poll_at, p.idle_level FROM sessions s"
    " LEFT JOIN poll_schedule p ON p.session_id = s.id"
)


def _same_json(stored: str, doc: Any) -> bool:
    """Equal as JSON (an older version may have written the same document differently)."""
    try:
        return bool(json.loads(stored) == doc)
    except ValueError:
        return False


def _translate(exc: sqlite3.Error, path: str) -> StoreError:
    message = str(exc)
    if "full" in message.lower():
        return StoreFullError(f"{path}: archive is full ({message}); batch rolled back, will retry")
    if "locked" in message.lower() or "busy" in message.lower():
        return StoreError(f"{path}: database is locked by another process ({message})")
    if "readonly" in message.lower() or "read-only" in message.lower():
        return StoreError(f"{path}: database is read-only ({message})")
    return StoreError(f"{path}: {message}")
