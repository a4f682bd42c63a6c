"""The PostgreSQL archive: the SQLite archive's interface and guarantees on a database server.

Exactly-once rests on the same rules as in :mod:`flux0sync.store`, made safe for several daemons
writing at once:

- each batch of a session's events and that session's checkpoint are one transaction;
- inserts are idempotent (``ON CONFLICT DO NOTHING`` on ``(session_id, offset)`` and
  ``(session_id, id)``), so a re-read tail, or a session two daemons read, is stored once;
- the checkpoint only moves forward (``GREATEST``), whoever commits last;
- a serialization failure or deadlock (SQLSTATE 40001/40P01, which CockroachDB and YugabyteDB
  raise under contention) and a dropped connection re-run the whole transaction.

Every unique key starts with the session id, so a distributed engine (Citus, YugabyteDB,
CockroachDB) can co-locate a session's rows. The schema is versioned in ``flux0sync_meta`` and
migrated step by step, each step in a transaction that holds the version row's lock, so daemons
starting together migrate once.

This module imports psycopg 3 at the top: import it only through :mod:`flux0sync.backend`, which
turns a missing driver into one clear error.
"""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import psycopg  # type: ignore[import-not-found, unused-ignore]
from psycopg import errors as pg_errors  # type: ignore[import-not-found, unused-ignore]

from flux0lite.models import Agent, Event, Session

from .backend import redact_db_url
from .store import SearchHit, SessionStatus, StoreError, StoreFullError

__all__ = ["PgStore", "PG_SCHEMA_VERSION", "APPLICATION"]

log = logging.getLogger("flux0sync")

APPLICATION = "flux0-sync"
T = TypeVar("T")

# Full-text search; the query repeats the index's expression exactly, or the index goes unused.
# Only the first 100,000 characters are indexed: to_tsvector fails on a tsvector over 1 MB, and
# that would fail the batch holding a huge message on every retry, forever.
_FTS_INDEX = (
    "CREATE INDEX events_text_search ON events USING gin (to_tsvector('simple', left(coalesce(text, ''), 100000)))"
)
_FTS_SEARCH = (
    'SELECT session_id, "offset", source, text FROM events'
    " WHERE to_tsvector('simple', left(coalesce(text, ''), 100000)) @@ websearch_to_tsquery('simple', %s)"
    ' ORDER BY session_id, "offset" LIMIT %s'
)
_OUR_TABLES = ("agents", "sessions", "sync_state", "events")

_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_MAX_ATTEMPTS = 8

# session_id, id, offset, type, source, correlation_id, created_at, deleted, text, raw
EventRow = Tuple[str, str, Optional[int], str, str, Optional[str], Optional[str], int, Optional[str], str]


def _schema_v1(cur: Any) -> None:
    cur.execute(
        """
        CREATE TABLE agents (
            id text PRIMARY KEY,
            name text,
            type text,
            description text,
            created_at text,
            raw text NOT NULL,
            synced_at double precision NOT NULL
        )
        """
    )
    cur.execute(
        """
        CREATE TABLE sessions (
            id text PRIMARY KEY,
            agent_id text,
            user_id text,
            title text,
            created_at text,
            raw text NOT NULL,
            synced_at double precision NOT NULL
        )
        """
    )
    cur.execute("CREATE INDEX sessions_agent ON sessions (agent_id)")
    cur.execute(
        """
        CREATE TABLE sync_state (
            session_id text PRIMARY KEY,
            last_offset bigint NOT NULL DEFAULT -1,
            last_attempt_at double precision,
            last_success_at double precision,
            errors integer NOT NULL DEFAULT 0,
            last_error text
        )
        """
    )
    cur.execute(
        """
        CREATE TABLE events (
            session_id text NOT NULL,
            "offset" bigint NOT NULL,
            id text NOT NULL,
            type text NOT NULL,
            source text NOT NULL,
            correlation_id text,
            created_at text,
            deleted boolean NOT NULL DEFAULT false,
            text text,
            raw text NOT NULL,
            PRIMARY KEY (session_id, "offset"),
            UNIQUE (session_id, id)
        )
        """
    )
    cur.execute("CREATE INDEX events_correlation ON events (correlation_id)")


def _schema_v2(cur: Any) -> None:
    """Full-text search, where the engine has it (PostgreSQL does; some distributed ones do not)."""
    try:
        with cur.connection.transaction():  # a savepoint: a refused index leaves the migration intact
            cur.execute(_FTS_INDEX)
        search = "tsvector"
    except (pg_errors.FeatureNotSupported, pg_errors.UndefinedFunction, pg_errors.UndefinedObject) as exc:
        log.warning("this database has no full-text index (%s); search will use ILIKE", exc.sqlstate)
        search = "ilike"
    cur.execute(
        "INSERT INTO flux0sync_meta (key, value) VALUES ('search', %s)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (search,),
    )


MIGRATIONS: Sequence[Callable[[Any], None]] = (_schema_v1, _schema_v2)
PG_SCHEMA_VERSION = len(MIGRATIONS)


def _dumps(doc: Any) -> str:
    # json escapes NUL (and every control character), so raw never holds one
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: keep it, as an ASCII escape
        text = json.dumps(doc, ensure_ascii=True, separators=(",", ":"))
    return text


def _storable(value: Optional[str]) -> Optional[str]:
    """A nullable column's value, or None when PostgreSQL cannot store it (NUL, lone surrogate)."""
    if value is None or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _key(value: str) -> str:
    """A NOT NULL column's value; what cannot be stored as is becomes its ASCII JSON escape."""
    if "\x00" in value:
        return json.dumps(value, ensure_ascii=True)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True)
    return value


def _event_rows(session_id: str, events: Sequence[Event]) -> List[EventRow]:
    sid = _key(session_id)
    return [
        (
            sid,
            _key(e.id),
            e.offset,
            _key(e.type),
            _key(e.source),
            _storable(e.correlation_id),
            _storable(e.created_at),
            1 if e.deleted else 0,
            _storable(e.text or None),
            _dumps(e.to_dict()),
        )
        for e in events
    ]


def _translate(exc: BaseException, where: str) -> StoreError:
    sqlstate = getattr(exc, "sqlstate", None) or ""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if sqlstate in ("53100", "53200") or sqlstate.startswith("53"):
        return StoreFullError(f"{where}: the database is out of space or memory ({message}); batch rolled back")
    if sqlstate == "25006":
        return StoreError(f"{where}: database is read-only ({message})")
    if sqlstate == "42501":
        return StoreError(f"{where}: permission denied ({message})")
    return StoreError(f"{where}: {message}")


class PgStore:
    """One PostgreSQL archive. Not thread-safe: one PgStore per thread."""

    def __init__(self, url: str, *, readonly: bool = False, connect_timeout: float = 10.0) -> None:
        self._url = url
        self.path = redact_db_url(url)  # what every message shows: never the password
        self.readonly = readonly
        self._connect_timeout = connect_timeout
        self._in_transaction = False
        self.db: Any = None
        self._connect()
        try:
            if readonly:
                self._check_readable()
            else:
                self._migrate()
            self.has_fts = self._meta("search") == "tsvector"
        except BaseException:
            self.close()
            raise

    # -- connection and transactions ---------------------------------------------------------

    def _connect(self) -> None:
        try:
            self.db = psycopg.connect(
                self._url,
                autocommit=True,  # every transaction is an explicit transaction() block
                connect_timeout=max(1, int(self._connect_timeout)),
                application_name=APPLICATION,
            )
            if self.readonly:
                self.db.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.path}: {' '.join(str(exc).split())}") from exc

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    def _lost(self) -> bool:
        return self.db is None or bool(self.db.closed) or bool(self.db.broken)

    def _transact(self, work: Callable[[Any], T]) -> T:
        """Run ``work(cursor)`` in one transaction, re-running it whole on a retryable failure."""
        attempt = 0
        while True:
            attempt += 1
            try:
                if self._lost():
                    self._reconnect()
                self._in_transaction = True
                try:
                    with self.db.transaction(), self.db.cursor() as cur:
                        return work(cur)
                finally:
                    self._in_transaction = False
            except psycopg.Error as exc:
                retryable = getattr(exc, "sqlstate", None) in _RETRYABLE_SQLSTATES or self._lost()
                if not retryable or attempt >= _MAX_ATTEMPTS:
                    raise _translate(exc, self.path) from exc
                delay = min(2.0, 0.02 * 2**attempt) * (0.5 + random.random() / 2)
                log.info("%s: %s; re-running the transaction in %.2f s", self.path, exc.sqlstate or "reconnect", delay)
                time.sleep(delay)

    def _reconnect(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except psycopg.Error:
                pass
        self.db = None
        try:
            self._connect()
        except StoreError as exc:
            raise psycopg.OperationalError(str(exc)) from exc  # counted as one more failed attempt

    def _read(self, query: str, params: Sequence[Any] = ()) -> List[Tuple[Any, ...]]:
        def run(cur: Any) -> List[Tuple[Any, ...]]:
            cur.execute(query, params)
            return list(cur.fetchall())

        return self._transact(run)

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except psycopg.Error:
                pass

    # -- schema ------------------------------------------------------------------------------

    def _tables(self) -> List[str]:
        rows = self._read(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_name IN ('flux0sync_meta', 'agents', 'sessions', 'sync_state', 'events')"
        )
        return [str(name) for (name,) in rows]

    def _meta(self, key: str) -> Optional[str]:
        rows = self._read("SELECT value FROM flux0sync_meta WHERE key = %s", (key,))
        return str(rows[0][0]) if rows else None

    def _check_ours(self, tables: List[str]) -> None:
        if "flux0sync_meta" not in tables:
            if any(name in tables for name in _OUR_TABLES):
                raise StoreError(
                    f"{self.path} already has tables of some other application ({', '.join(sorted(tables))});"
                    " refusing to touch it (use another database, or another schema via options=-csearch_path=...)"
                )
            return
        application = self._meta("application")
        if application != APPLICATION:
            raise StoreError(f"{self.path}: flux0sync_meta belongs to {application!r}; refusing to touch it")

    def _version(self) -> int:
        value = self._meta("schema_version")
        try:
            return int(value or 0)
        except ValueError:
            raise StoreError(f"{self.path}: unreadable schema version {value!r}") from None

    def _check_readable(self) -> None:
        tables = self._tables()
        self._check_ours(tables)
        if "flux0sync_meta" not in tables:
            raise StoreError(f"no flux0-sync archive in {self.path}")
        version = self._version()
        if version > PG_SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}, newer than this flux0-sync knows")

    def _migrate(self) -> None:
        self._check_ours(self._tables())
        self._create_meta()
        while True:

            def step(cur: Any) -> bool:
                # the row lock makes concurrent daemons migrate one after the other
                cur.execute("SELECT value FROM flux0sync_meta WHERE key = 'schema_version' FOR UPDATE")
                row = cur.fetchone()
                version = int(row[0]) if row else 0
                if version > PG_SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path} has schema version {version}, newer than this flux0-sync knows"
                        f" ({PG_SCHEMA_VERSION})"
                    )
                if version == PG_SCHEMA_VERSION:
                    return False
                MIGRATIONS[version](cur)
                cur.execute("UPDATE flux0sync_meta SET value = %s WHERE key = 'schema_version'", (str(version + 1),))
                return True

            if not self._transact(step):
                return

    def _create_meta(self) -> None:
        def create(cur: Any) -> None:
            cur.execute("CREATE TABLE IF NOT EXISTS flux0sync_meta (key text PRIMARY KEY, value text NOT NULL)")
            cur.execute(
                "INSERT INTO flux0sync_meta (key, value) VALUES ('application', %s), ('schema_version', '0')"
                " ON CONFLICT (key) DO NOTHING",
                (APPLICATION,),
            )

        try:
            self._transact(create)
        except StoreError as exc:
            # two daemons creating the table at the same instant: one loses on the catalog's
            # unique index, and the table is there for it now
            if not isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise
            self._transact(create)
        self._check_ours(self._tables())

    # -- writes ------------------------------------------------------------------------------

    def upsert_agents(self, agents: Sequence[Agent]) -> None:
        now = time.time()
        # sorted: daemons upserting the same rows lock them in one order, so they never deadlock
        rows = sorted(
            (
                (_key(a.id), _storable(a.name), _storable(a.type), _storable(a.description), _storable(a.created_at))
                + (_dumps(a.to_dict()), now)
                for a in agents
            ),
            key=lambda r: r[0],
        )

        def write(cur: Any) -> None:
            cur.executemany(
                "INSERT INTO agents (id, name, type, description, created_at, raw, synced_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                " type = excluded.type, description = excluded.description, created_at = excluded.created_at,"
                " raw = excluded.raw, synced_at = excluded.synced_at",
                rows,
            )

        if rows:
            self._transact(write)

    def upsert_sessions(self, sessions: Sequence[Session]) -> None:
        now = time.time()
        rows = sorted(
            (
                (_key(s.id), _storable(s.agent_id), _storable(s.user_id), _storable(s.title), _storable(s.created_at))
                + (_dumps(s.to_dict()), now)
                for s in sessions
            ),
            key=lambda r: r[0],
        )

        def write(cur: Any) -> None:
            cur.executemany(
                "INSERT INTO sessions (id, agent_id, user_id, title, created_at, raw, synced_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id,"
                " user_id = excluded.user_id, title = excluded.title, created_at = excluded.created_at,"
                " raw = excluded.raw, synced_at = excluded.synced_at",
                rows,
            )
            cur.executemany(
                "INSERT INTO sync_state (session_id) VALUES (%s) ON CONFLICT (session_id) DO NOTHING",
                [(r[0],) for r in rows],
            )

        if rows:
            self._transact(write)

    def checkpoint(self, session_id: str) -> int:
        """The highest offset stored for a session, or -1."""
        rows = self._read("SELECT last_offset FROM sync_state WHERE session_id = %s", (_key(session_id),))
        return int(rows[0][0]) if rows else -1

    def write_batch(self, session_id: str, events: Sequence[Event]) -> int:
        """Store events and move the checkpoint, all in one transaction; returns rows inserted."""
        if not events:
            return 0
        rows = _event_rows(session_id, events)
        highest = max(e.offset for e in events)
        sid = _key(session_id)

        def write(cur: Any) -> int:
            cur.executemany(
                'INSERT INTO events (session_id, id, "offset", type, source, correlation_id, created_at, deleted,'
                " text, raw) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::int::boolean, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )
            inserted = max(0, int(cur.rowcount))
            now = time.time()
            cur.execute(
                "INSERT INTO sync_state (session_id, last_offset, last_attempt_at, last_success_at, errors)"
                " VALUES (%s, %s, %s, %s, 0) ON CONFLICT (session_id) DO UPDATE SET"
                " last_offset = GREATEST(sync_state.last_offset, excluded.last_offset),"
                " last_attempt_at = excluded.last_attempt_at, last_success_at = excluded.last_success_at,"
                " errors = 0, last_error = NULL",
                (sid, highest, now, now),
            )
            return inserted

        return self._transact(write)

    def mark_synced(self, session_id: str) -> None:
        now = time.time()

        def write(cur: Any) -> None:
            cur.execute(
                "INSERT INTO sync_state (session_id, last_attempt_at, last_success_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (session_id) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,"
                " last_success_at = excluded.last_success_at, errors = 0, last_error = NULL",
                (_key(session_id), now, now),
            )

        self._transact(write)

    def mark_error(self, session_id: str, message: str) -> int:
        """Record a failed sync; returns the number of consecutive errors."""
        now = time.time()

        def write(cur: Any) -> int:
            cur.execute(
                "INSERT INTO sync_state (session_id, last_attempt_at, errors, last_error) VALUES (%s, %s, 1, %s)"
                " ON CONFLICT (session_id) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,"
                " errors = sync_state.errors + 1, last_error = excluded.last_error RETURNING errors",
                (_key(session_id), now, _storable(message[:500]) or "(unprintable error)"),
            )
            row = cur.fetchone()
            return int(row[0]) if row else 1

        try:
            return self._transact(write)
        except StoreError:
            return 1  # a full disk or a lost server must not hide the original error

    # -- reads -------------------------------------------------------------------------------

    def counts(self) -> Tuple[int, int, int]:
        row = self._read(
            "SELECT (SELECT count(*) FROM agents), (SELECT count(*) FROM sessions), (SELECT count(*) FROM events)"
        )[0]
        return int(row[0]), int(row[1]), int(row[2])

    def session_statuses(self) -> List[SessionStatus]:
        rows = self._read(
            """
            SELECT st.session_id, s.agent_id, s.title,
                   (SELECT count(*) FROM events e WHERE e.session_id = st.session_id),
                   st.last_offset, st.last_success_at, st.errors, st.last_error
            FROM sync_state st LEFT JOIN sessions s ON s.id = st.session_id
            ORDER BY st.session_id
            """
        )
        return [SessionStatus(str(r[0]), r[1], r[2], int(r[3]), int(r[4]), r[5], int(r[6]), r[7]) for r in rows]

    def iter_raw_events(self, session_id: str) -> Iterator[Dict[str, Any]]:
        """A session's events in offset order, streamed: memory stays flat for any length."""
        self._in_transaction = True
        try:
            with self.db.transaction(), self.db.cursor(name="flux0sync_export") as cur:
                cur.itersize = 500
                cur.execute('SELECT raw FROM events WHERE session_id = %s ORDER BY "offset"', (_key(session_id),))
                for (raw,) in cur:
                    yield json.loads(raw)
        except psycopg.Error as exc:
            raise _translate(exc, self.path) from exc
        finally:
            self._in_transaction = False

    def session_exists(self, session_id: str) -> bool:
        sid = _key(session_id)
        rows = self._read(
            "SELECT 1 FROM sessions WHERE id = %s UNION SELECT 1 FROM sync_state WHERE session_id = %s", (sid, sid)
        )
        return bool(rows)

    def search(self, text: str, limit: int = 50) -> List[SearchHit]:
        """Full-text (web-search syntax: words, "phrases", or, -word) or, without an index, ILIKE."""
        # NUL and lone surrogates (undecodable command-line bytes) cannot be sent to the server
        query = text.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")
        rows: List[Tuple[Any, ...]] = []
        use_fts = self.has_fts and int(self._read("SELECT numnode(websearch_to_tsquery('simple', %s))", (query,))[0][0])
        if use_fts:
            rows = self._read(_FTS_SEARCH, (query, limit))
        else:
            pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._read(
                "SELECT session_id, \"offset\", source, text FROM events WHERE text ILIKE %s ESCAPE '\\'"
                ' ORDER BY session_id, "offset" LIMIT %s',
                (pattern, limit),
            )
        return [SearchHit(str(r[0]), int(r[1]), str(r[2]), str(r[3] or "")) for r in rows]

    def integrity_ok(self) -> bool:
        """The database server guards its own pages; here: every checkpoint matches what is stored."""
        rows = self._read(
            'SELECT count(*) FROM sync_state st WHERE st.last_offset > (SELECT coalesce(max(e."offset"), -1)'
            " FROM events e WHERE e.session_id = st.session_id)"
        )
        return int(rows[0][0]) == 0
