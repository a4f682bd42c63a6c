"""The PostgreSQL archive: the SQLite archive's interface and guarantees on a database server.

Exactly-once rests on the same rules as in :mod:`flux0sync.store`, made safe for several daemons
writing at once:

- each batch of a session's events and that session's checkpoint are one transaction, which
  first locks the session's ``sync_state`` row: two daemons writing one session (overlapping
  shards) take turns, and each computes the checkpoint from what the other committed;
- the checkpoint is the highest offset up to which every offset is stored (or recorded as a gap
  given up on), computed from the stored rows, and it only moves forward (``GREATEST``);
- inserts are idempotent: ``ON CONFLICT DO NOTHING`` on ``(session_id, id)`` and
  ``(session_id, offset)``; a different event under a known id or offset goes to ``conflicts``;
- a serialization failure or deadlock (SQLSTATE 40001/40P01, which CockroachDB and YugabyteDB
  raise under contention) and a dropped connection re-run the whole transaction.

Every unique key starts with the session id (the poll schedule's too), so a distributed engine
(Citus, YugabyteDB, CockroachDB) can co-locate a session's rows. The schema is versioned in ``flux0sync_meta`` and
migrated step by step, each step in a transaction that holds the version row's lock, so daemons
starting together migrate once. Values PostgreSQL cannot hold (NUL, besides what rows.py already
handles) are nulled, or escaped in key columns; ``raw`` always keeps the event exactly.

This module imports psycopg 3 at the top: import it only through :mod:`flux0sync.backend`, which
turns a missing driver into one clear error.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, Tuple, TypeVar

import psycopg  # type: ignore[import-not-found, unused-ignore]
from psycopg import errors as pg_errors  # type: ignore[import-not-found, unused-ignore]

from flux0lite.models import Agent, Session

from .backend import StoreUnavailableError, redact_db_text, redact_db_url
from .config import ConfigError
from .gaps import MAX_GAPS, Gap, SeenHere, reconcile
from .rows import EventRow, RawEvent, count_clashes, dumps_lossless, event_row, storable_text, stored_message_text
from .store import (
    RETIRE_PIECE_CHARS,
    Listed,
    PollRecord,
    SearchHit,
    SessionStatus,
    StoreBusyError,
    StoreError,
    StoreFullError,
    WriteResult,
    _conflict_digest,
    _same,
    _with_moved,
    listing_change,
    readable_created_at,
    recreation_reason,
)

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
# An exported raw up to this size comes with the export cursor's rows (500 at a time); a larger one is read alone.
_INLINE_RAW_BYTES = 64 * 1024
_OUR_TABLES = ("agents", "sessions", "sync_state", "events", "gaps", "conflicts")

_SAVE_POLL = (  # (session key, next poll, idle level)
    "INSERT INTO poll_schedule (session_id, next_poll_at, idle_level) VALUES (%s, %s, %s)"
    " ON CONFLICT (session_id) DO UPDATE SET next_poll_at = excluded.next_poll_at, idle_level = excluded.idle_level"
)
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_READ_ONLY = "25006"  # read_only_sql_transaction
_MAX_ATTEMPTS = 8
_LOCK_TIMEOUT = "20s"  # a row another process keeps locked longer is a busy archive, not a hang


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
            id text NOT NULL,
            "offset" bigint,
            type text NOT NULL,
            source text NOT NULL,
            correlation_id text,
            created_at text,
            deleted boolean NOT NULL DEFAULT false,
            text text,
            raw text NOT NULL,
            PRIMARY KEY (session_id, id),
            UNIQUE (session_id, "offset")
        )
        """
    )
    cur.execute("CREATE INDEX events_correlation ON events (correlation_id)")
    cur.execute(
        """
        CREATE TABLE gaps (
            session_id text NOT NULL,
            first_offset bigint NOT NULL,
            last_offset bigint NOT NULL,
            first_seen_at double precision NOT NULL,
            skipped_at double precision,
            PRIMARY KEY (session_id, first_offset)
        )
        """
    )
    cur.execute(
        """
        CREATE TABLE conflicts (
            session_id text NOT NULL,
            event_id text NOT NULL,
            "offset" bigint,
            reason text NOT NULL,
            raw text NOT NULL,
            digest text NOT NULL,
            seen_at double precision NOT NULL,
            PRIMARY KEY (session_id, digest)
        )
        """
    )


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


def _schema_v3(cur: Any) -> None:
    """When each session is polled next (so a restart does not poll them all at once), and the
    user (``flux0_user_sub``) whose session listing showed each session ('' for no cookie);
    SQLite's schema v4."""
    cur.execute(
        """
        CREATE TABLE poll_schedule (
            session_id text PRIMARY KEY,
            next_poll_at double precision NOT NULL,
            idle_level integer NOT NULL DEFAULT 0
        )
        """
    )
    cur.execute("ALTER TABLE sessions ADD COLUMN found_under_user text")


def _schema_v4(cur: Any) -> None:
    """Each session's conversation count (SQLite's ``_schema_generation``): a recorded
    re-creation adds one, and a write of a poll started before it is refused."""
    cur.execute("ALTER TABLE sync_state ADD COLUMN generation bigint NOT NULL DEFAULT 0")


def _schema_v5(cur: Any) -> None:
    """Message text holding a NUL or a lone surrogate, which PostgreSQL text cannot hold, was
    stored as no text at all, so no word of it was found: such rows get their searchable text
    (SQLite's ``_schema_searchable_text``); the full-text index follows the column.

    Only messages without text whose raw holds the escape of a NUL or of a surrogate are read,
    one raw at a time and by the daemon's bounded reader; what their raw says is unchanged."""
    select = (
        "SELECT session_id, id FROM events WHERE text IS NULL AND type = 'message'"
        " AND (strpos(raw, %s) > 0 OR raw ~* %s)"
    )
    escapes = ("\\u0000", r"\\ud[89a-f]")
    page_of = " ORDER BY session_id, id LIMIT 500"
    cur.execute(select + page_of, escapes)
    while True:  # a page of keys at a time, then each raw alone: memory stays one raw's
        keys = cur.fetchall()
        if not keys:
            return
        for session_key, event_key in keys:
            cur.execute("SELECT raw FROM events WHERE session_id = %s AND id = %s", (session_key, event_key))
            text = stored_message_text(cur.fetchone()[0])
            if text:
                cur.execute(
                    "UPDATE events SET text = %s WHERE session_id = %s AND id = %s",
                    (_nul_free(text), session_key, event_key),
                )
        cur.execute(select + " AND (session_id, id) > (%s, %s)" + page_of, (*escapes, *keys[-1]))


MIGRATIONS: Sequence[Callable[[Any], None]] = (_schema_v1, _schema_v2, _schema_v3, _schema_v4, _schema_v5)
PG_SCHEMA_VERSION = len(MIGRATIONS)
_SCHEDULE_VERSION = 3  # from this version on the archive holds the poll schedule


def _text(value: Optional[str]) -> Optional[str]:
    """A nullable column's value, or None where PostgreSQL cannot store it (NUL, lone surrogate)."""
    if value is None or "\x00" in value:
        return None
    return storable_text(value)


def _nul_free(text: str) -> str:
    """A message's text column, searchable as SQLite's is: each NUL, which PostgreSQL text
    cannot hold, as U+FFFD (``raw`` keeps it)."""
    return text.replace("\x00", "\ufffd")


def _key(value: str) -> str:
    """A NOT NULL column's value; one PostgreSQL cannot store as is becomes its ASCII JSON escape."""
    return value if _text(value) is not None else json.dumps(value, ensure_ascii=True)


def _id_of(key: str) -> str:
    """The id a session key (:func:`_id_key`) stands for: what readers show and take."""
    if key[:1] == '"':
        try:
            value = json.loads(key)
        except ValueError:
            return key
        if isinstance(value, str):
            return value
    return key


def _id_key(value: str) -> str:
    """A session's, agent's or user's key, one to one with the id: as :func:`_key`, and escaped
    as well where it begins with a quote, as every escape does (``a<NUL>b`` and the text
    ``"a\\u0000b"`` are two sessions). Event ids come escaped alike from rows.event_row."""
    return value if _text(value) is not None and value[:1] != '"' else json.dumps(value, ensure_ascii=True)


def _pg_row(row: EventRow) -> EventRow:
    """rows.py made the row fit SQLite; PostgreSQL text also refuses NUL, which SQLite keeps."""
    sid, event_id, offset, kind, source, correlation_id, created_at, deleted, text, raw = row
    if "\x00" in raw:  # never from a JSON parser (it escapes NUL); kept exact all the same
        raw = dumps_lossless(json.loads(raw))
    return (
        _id_key(sid),
        _key(event_id),
        offset,
        _key(kind),
        _key(source),
        _text(correlation_id),
        _text(created_at),
        deleted,
        None if text is None else _nul_free(text),
        raw,
    )


def _translate(exc: BaseException, where: str) -> StoreError:
    sqlstate = getattr(exc, "sqlstate", None) or ""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if sqlstate in ("53100", "53200") or sqlstate.startswith("53"):
        return StoreFullError(f"{where}: the database is out of space or memory ({message}); batch rolled back")
    if sqlstate == "55P03":
        return StoreBusyError(f"{where}: another session kept a row locked too long ({message}); nothing written")
    if sqlstate == _READ_ONLY:
        # maintenance (default_transaction_read_only) or a standby reached during a failover:
        # a pause, as a database that cannot be reached is, not the end of the daemon
        return StoreUnavailableError(f"{where}: the database is read-only now ({message}); nothing written")
    if sqlstate == "42501":
        return StoreError(f"{where}: permission denied ({message})")
    return StoreError(f"{where}: {message}")


# What a starting, stopping or overloaded server answers; every other refusal is the setup's.
_TRANSIENT_REFUSALS = ("starting up", "shutting down", "too many", "recovery", "not yet accepting")


def _refused_for_good(exc: BaseException) -> bool:
    """Did the server itself refuse us (login, database, pg_hba) rather than being unreachable?

    libpq gives no SQLSTATE for a failed connection, only the server's FATAL message.
    """
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate:
        return sqlstate[:2] in ("28", "3D", "42")
    message = str(exc)
    return "FATAL:" in message and not any(phrase in message for phrase in _TRANSIENT_REFUSALS)


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
            self._has_schedule = self._version() >= _SCHEDULE_VERSION
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
            self.db.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
            if self.readonly:
                self.db.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            message = f"cannot connect to {self.path}: {redact_db_text(' '.join(str(exc).split()), self._url)}"
            if isinstance(exc, psycopg.ProgrammingError):  # the driver cannot parse the URL: a setting to fix
                raise ConfigError(message) from None  # (not from exc: the driver's text holds the password)
            if _refused_for_good(exc):
                raise StoreError(message) from exc  # a restart cannot help: fix the setup
            raise StoreUnavailableError(message) from exc

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
                lost = self._lost()
                if (
                    getattr(exc, "sqlstate", None) not in _RETRYABLE_SQLSTATES and not lost
                ) or attempt >= _MAX_ATTEMPTS:
                    if lost:
                        raise StoreUnavailableError(
                            f"{self.path}: the database server cannot be reached"
                            f" ({' '.join(str(exc).split())}); nothing written"
                        ) from exc
                    if getattr(exc, "sqlstate", None) == _READ_ONLY:
                        # the next transaction connects anew: a session keeps the read-only default
                        # it started with, and after a failover the primary is elsewhere
                        self._disconnect()
                    raise _translate(exc, self.path) from exc
                delay = min(2.0, 0.02 * 2**attempt) * (0.5 + random.random() / 2)
                log.info("%s: %s; re-running the transaction in %.2f s", self.path, exc.sqlstate or "reconnect", delay)
                time.sleep(delay)

    def _disconnect(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except psycopg.Error:
                pass
        self.db = None

    def _reconnect(self) -> None:
        self._disconnect()
        try:
            self._connect()
        except StoreError as exc:
            raise psycopg.OperationalError(str(exc)) from exc  # counted as one more failed attempt

    def _read(self, query: str, params: Sequence[Any] = ()) -> List[Tuple[Any, ...]]:
        def run(cur: Any) -> List[Tuple[Any, ...]]:
            cur.execute(query, params)
            return list(cur.fetchall())

        return self._transact(run)

    def apply_options(self, synchronous: str, max_page_count: Optional[int]) -> None:
        """SQLite's options: PostgreSQL has none of them (the server owns durability and size)."""

    def check_files(self) -> None:
        """SQLite's files moved away under the daemon: PostgreSQL's are the server's."""

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
            if not isinstance(
                exc.__cause__, (pg_errors.UniqueViolation, pg_errors.DuplicateObject, pg_errors.DuplicateTable)
            ):
                raise
            self._transact(create)
        self._check_ours(self._tables())

    # -- writes ------------------------------------------------------------------------------

    def upsert_agents(self, agents: Sequence[Agent]) -> None:
        now = time.time()
        # sorted: daemons upserting the same rows lock them in one order, so they never deadlock
        rows = sorted(
            (
                (_id_key(a.id), _text(a.name), _text(a.type), _text(a.description), _text(a.created_at))
                + (dumps_lossless(a.to_dict()), now)
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
                (_id_key(s.id), _text(s.agent_id), _text(s.user_id), _text(s.title), _text(s.created_at))
                + (dumps_lossless(s.to_dict()), now)
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
        """The offset up to which the session is complete (stored, or a recorded gap), or -1."""
        rows = self._read("SELECT last_offset FROM sync_state WHERE session_id = %s", (_id_key(session_id),))
        return int(rows[0][0]) if rows else -1

    def stored_through(self, session_id: str, offset: int) -> int:
        """The highest offset reached from ``offset`` through stored offsets without a hole."""
        sid = _id_key(session_id)
        return self._transact(lambda cur: _advance(cur, sid, offset))

    def poll_starts(self, session_ids: Sequence[str]) -> Dict[str, Tuple[int, int]]:
        """Where a poll of each session starts: (checkpoint, generation), in one query."""
        keys = {sid: _id_key(sid) for sid in session_ids}
        rows = self._read(
            "SELECT session_id, last_offset, generation FROM sync_state WHERE session_id = ANY(%s)",
            (list(set(keys.values())),),
        )
        found = {str(key): (int(offset), int(generation)) for key, offset, generation in rows}
        return {sid: found.get(key, (-1, 0)) for sid, key in keys.items()}

    def write_batch(self, session_id: str, events: Sequence[RawEvent], generation: Optional[int] = None) -> WriteResult:
        """Store events and advance the checkpoint over what is now contiguous, in one transaction.

        Raises UnidentifiableEventError (before writing anything) for an event without an id.
        With ``generation`` (as :meth:`poll_starts` read it when the poll began) a session
        re-created since writes nothing: the result says ``stale`` (as in SQLite).
        """
        rows = sorted(
            (_pg_row(event_row(session_id, e)) for e in events),
            key=lambda r: (r[2] is None, r[2] if r[2] is not None else 0),
        )
        if not rows:
            return WriteResult(0, 0, 0, self.checkpoint(session_id))
        sid = _id_key(session_id)

        def write(cur: Any) -> WriteResult:
            now = time.time()
            if generation is None:
                before = _lock_session(cur, sid)
            else:
                before, current = _lock_conversation(cur, sid)
                if current != generation:
                    return WriteResult(0, 0, 0, before, stale=True)
            cur.executemany(
                'INSERT INTO events (session_id, id, "offset", type, source, correlation_id, created_at, deleted,'
                " text, raw) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::int::boolean, %s, %s)"
                " ON CONFLICT DO NOTHING",
                rows,
            )
            inserted = max(0, int(cur.rowcount))
            clashes = conflicts = 0
            if inserted < len(rows):
                clashes, conflicts = count_clashes(
                    rows, lambda row: _clash(cur, row), lambda row, reason: _record_conflict(cur, row, reason, now)
                )
            checkpoint = _advance(cur, sid, before)
            _set_checkpoint(cur, sid, checkpoint, now, success=True)
            return WriteResult(inserted, len(rows) - inserted - clashes, conflicts, checkpoint)

        return self._transact(write)

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
        sid = _id_key(session_id)

        def work(cur: Any) -> Tuple[List[Gap], List[Gap]]:
            current = generation is None or _lock_conversation(cur, sid)[1] == generation
            return reconcile(_PgGaps(cur, sid), patience if current else math.inf, time.time(), seen)

        return self._transact(work)

    def mark_synced(self, session_id: str) -> None:
        now = time.time()

        def write(cur: Any) -> None:
            cur.execute(
                "INSERT INTO sync_state (session_id, last_attempt_at, last_success_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (session_id) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,"
                " last_success_at = excluded.last_success_at, errors = 0, last_error = NULL",
                (_id_key(session_id), now, now),
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
                (_id_key(session_id), now, _key(message[:500])),
            )
            row = cur.fetchone()
            return int(row[0]) if row else 1

        try:
            return self._transact(write)
        except StoreUnavailableError:
            raise  # the whole archive (down, or read-only): the daemon pauses
        except StoreError:
            return 1  # a full disk must not hide the original error

    # -- reads -------------------------------------------------------------------------------

    def counts(self, *, events: bool = True) -> Tuple[int, int, int]:
        """Agents, sessions and events archived; ``events=False`` skips the slow one (0)."""
        row = self._read(_COUNTS if events else _COUNTS_WITHOUT_EVENTS)[0]
        return int(row[0]), int(row[1]), int(row[2])

    def session_statuses(self) -> List[SessionStatus]:
        rows = self._read(_STATUS_V3 if self._has_schedule else _STATUS_V2)
        return [
            SessionStatus(
                _id_of(str(r[0])),
                r[1],
                r[2],
                int(r[3]),
                int(r[4]),
                r[5],
                int(r[6]),
                r[7],
                int(r[8]),
                int(r[9]),
                int(r[10]),
                None if r[11] is None else float(r[11]),
                None if r[12] is None else int(r[12]),
                r[13],
            )
            for r in rows
        ]

    def gaps(self, session_id: Optional[str] = None, *, open_only: bool = False) -> List[Gap]:
        if session_id is not None:
            return self._transact(lambda cur: _gaps(cur, _id_key(session_id), open_only=open_only))
        rows = self._read(
            "SELECT session_id, first_offset, last_offset, first_seen_at, skipped_at FROM gaps"
            " WHERE skipped_at IS NULL OR NOT %s ORDER BY session_id, first_offset",
            (open_only,),
        )
        return [_gap(r) for r in rows]

    def iter_raw_events(self, session_id: str) -> Generator[str, None, None]:
        """Each stored event's JSON text in offset order (events without a storable offset last),
        streamed through a server-side cursor: memory stays flat for a session of any length.
        The cursor brings 500 rows a round trip, a raw of over _INLINE_RAW_BYTES not among them:
        that one is read alone (500 events of 16 MiB would be 8 GB at once)."""
        key = _id_key(session_id)
        self._in_transaction = True
        try:
            with self.db.transaction(), self.db.cursor(name="flux0sync_export") as cur:
                # one snapshot for the cursor and the raws read alone (READ COMMITTED would give
                # each statement its own: a re-creation committed meanwhile showed half of it)
                self.db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur.itersize = 500
                cur.execute(
                    "SELECT id, CASE WHEN octet_length(raw) <= %s THEN raw END FROM events"
                    ' WHERE session_id = %s ORDER BY "offset" NULLS LAST, id',
                    (_INLINE_RAW_BYTES, key),
                )
                for event_id, raw in cur:
                    if raw is None:
                        found = self.db.execute(
                            "SELECT raw FROM events WHERE session_id = %s AND id = %s", (key, event_id)
                        ).fetchone()
                        raw = found[0]
                    yield str(raw)
        except psycopg.Error as exc:
            raise _translate(exc, self.path) from exc
        finally:
            self._in_transaction = False

    def status_snapshot(self) -> Tuple[List[SessionStatus], Tuple[int, int, int], List[Gap]]:
        """What ``status`` prints, read in one snapshot (REPEATABLE READ: each read below is a
        savepoint of this transaction), as in SQLite."""
        try:
            with self.db.transaction():
                self.db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return self.session_statuses(), self.counts(), self.gaps()
        except psycopg.Error as exc:
            raise _translate(exc, self.path) from exc

    def session_exists(self, session_id: str) -> bool:
        sid = _id_key(session_id)
        rows = self._read(
            "SELECT 1 FROM sessions WHERE id = %s UNION SELECT 1 FROM sync_state WHERE session_id = %s", (sid, sid)
        )
        return bool(rows)

    def search(self, text: str, limit: int = 50) -> Generator[SearchHit, None, None]:
        """Full-text (web-search syntax: words, "phrases", or, -word) or, without an index, ILIKE;
        the hits one at a time through a server-side cursor (a hit's text may be 16 MiB)."""
        # NUL and lone surrogates (undecodable command-line bytes) cannot be sent to the server
        query = text.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")
        use_fts = self.has_fts and int(self._read("SELECT numnode(websearch_to_tsquery('simple', %s))", (query,))[0][0])
        if use_fts:
            sql, params = _FTS_SEARCH, (query, limit)
        else:
            pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            sql = (
                "SELECT session_id, \"offset\", source, text FROM events WHERE text ILIKE %s ESCAPE '\\'"
                ' ORDER BY session_id, "offset" LIMIT %s'
            )
            params = (pattern, limit)
        self._in_transaction = True
        try:
            with self.db.transaction(), self.db.cursor(name="flux0sync_search") as cur:
                cur.itersize = 1
                cur.execute(sql, params)
                for r in cur:
                    yield SearchHit(_id_of(str(r[0])), None if r[1] is None else int(r[1]), str(r[2]), str(r[3] or ""))
        except psycopg.Error as exc:
            raise _translate(exc, self.path) from exc
        finally:
            self._in_transaction = False

    def integrity_ok(self) -> bool:
        """The database server guards its own pages; here: no checkpoint runs past what is stored or skipped."""
        rows = self._read(
            "SELECT count(*) FROM sync_state st WHERE st.last_offset > greatest("
            ' (SELECT coalesce(max(e."offset"), -1) FROM events e WHERE e.session_id = st.session_id),'
            " (SELECT coalesce(max(g.last_offset), -1) FROM gaps g WHERE g.session_id = st.session_id))"
        )
        return int(rows[0][0]) == 0

    # -- the poll schedule (see flux0sync.schedule) --------------------------------------------

    def record_listing(self, user: Optional[str], sessions: Sequence[Session]) -> List[Listed]:
        """Store the new and changed sessions of one listing page; report each as it was before.

        As in SQLite: unchanged sessions are not rewritten, and an id that is not valid Unicode
        (it cannot be fetched either) is left out. The look-up and the writes are one
        transaction, re-run whole on a serialization failure.
        """
        found_under = _id_key(user or "")
        usable = [x for x in sessions if storable_text(x.id) is not None]
        if not usable:
            return []
        keys = [_id_key(x.id) for x in usable]

        def work(cur: Any) -> List[Listed]:
            now = time.time()
            cur.execute(
                "SELECT s.id, s.raw, s.found_under_user, p.next_poll_at, p.idle_level, s.created_at FROM sessions s"
                " LEFT JOIN poll_schedule p ON p.session_id = s.id WHERE s.id = ANY(%s)",
                (keys,),
            )
            known = {row[0]: row[1:] for row in cur.fetchall()}
            listed: List[Listed] = []
            rows = []
            renewed: List[Tuple[str, str]] = []  # (session key, reason) of sessions re-created
            for session, sid in zip(usable, keys):
                doc = session.to_dict()
                raw = dumps_lossless(doc)
                before = known.get(sid)
                if before is None:
                    listed.append(Listed(session.id, True, False, None, 0))
                else:
                    level = int(before[3]) if before[3] is not None else 0
                    next_poll = None if before[2] is None else float(before[2])
                    changed, renewal = listing_change(str(before[0]), before[1], before[4], doc, raw, found_under)
                    if renewal is not None:
                        renewed.append((sid, recreation_reason(*renewal)))
                    recreated = None if renewal is None else (*renewal, 0)
                    view = hash(raw) if before[1] != found_under else None
                    listed.append(Listed(session.id, False, changed, next_poll, level, recreated, view))
                    if before[0] == raw and before[1] == found_under:
                        continue
                rows.append(
                    (sid, _text(session.agent_id), _text(session.user_id), _text(session.title))
                    + (readable_created_at(doc.get("created_at")), raw, now, found_under)
                )
            rows.sort(key=lambda r: r[0])  # daemons writing the same rows lock them in one order
            if rows:
                cur.executemany(
                    "INSERT INTO sessions (id, agent_id, user_id, title, created_at, raw, synced_at, found_under_user)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                    " agent_id = excluded.agent_id, user_id = excluded.user_id, title = excluded.title,"
                    " created_at = coalesce(excluded.created_at, sessions.created_at), raw = excluded.raw,"
                    " synced_at = excluded.synced_at, found_under_user = excluded.found_under_user",
                    rows,
                )
                cur.executemany(
                    "INSERT INTO sync_state (session_id) VALUES (%s) ON CONFLICT (session_id) DO NOTHING",
                    [(r[0],) for r in rows],
                )
            # a changed entry's poll, now, with the entry (see Store.record_listing)
            due = sorted(_id_key(item.session_id) for item in listed if item.changed and not item.new)
            if due:
                cur.executemany(_SAVE_POLL, [(key, now, 0) for key in due])
            # with the new entry, in one transaction (as in SQLite), each session locked
            moved = {sid: _retire_events(cur, sid, reason, now) for sid, reason in sorted(renewed)}
            if moved:
                cur.executemany(
                    "UPDATE sync_state SET generation = generation + 1 WHERE session_id = %s", [(sid,) for sid in moved]
                )
            return [_with_moved(item, moved, _key) for item in listed]

        return self._transact(work)

    def save_polls(self, polls: Sequence[PollRecord]) -> None:
        """Many finished polls in one transaction: next poll times, and when empty polls succeeded."""
        if not polls:
            return
        ordered = sorted(polls, key=lambda p: _id_key(p.session_id))  # one lock order for every daemon

        def work(cur: Any) -> None:
            cur.executemany(_SAVE_POLL, [(_id_key(p.session_id), p.next_poll_at, p.idle_level) for p in ordered])
            succeeded = [
                (p.succeeded_at, p.succeeded_at, _id_key(p.session_id)) for p in ordered if p.succeeded_at is not None
            ]
            if succeeded:
                cur.executemany(
                    "UPDATE sync_state SET last_attempt_at = %s, last_success_at = %s, errors = 0, last_error = NULL"
                    " WHERE session_id = %s",
                    succeeded,
                )

        self._transact(work)


_COUNTS = "SELECT (SELECT count(*) FROM agents), (SELECT count(*) FROM sessions), (SELECT count(*) FROM events)"
_COUNTS_WITHOUT_EVENTS = "SELECT (SELECT count(*) FROM agents), (SELECT count(*) FROM sessions), 0"
_STATUS_COLUMNS = """
    SELECT st.session_id, s.agent_id, s.title,
           (SELECT count(*) FROM events e WHERE e.session_id = st.session_id),
           st.last_offset, st.last_success_at, st.errors, st.last_error,
           (SELECT count(*) FROM gaps g WHERE g.session_id = st.session_id AND g.skipped_at IS NULL),
           (SELECT count(*) FROM gaps g WHERE g.session_id = st.session_id AND g.skipped_at IS NOT NULL),
           (SELECT count(*) FROM conflicts c WHERE c.session_id = st.session_id),
"""
_STATUS_V2 = (
    _STATUS_COLUMNS
    + """       NULL, NULL, NULL
    FROM sync_state st LEFT JOIN sessions s ON s.id = st.session_id
    ORDER BY st.session_id
"""
)
_STATUS_V3 = (
    _STATUS_COLUMNS
    + """       p.next_poll_at, p.idle_level, s.found_under_user
    FROM sync_state st LEFT JOIN sessions s ON s.id = st.session_id
    LEFT JOIN poll_schedule p ON p.session_id = st.session_id
    ORDER BY st.session_id
"""
)


# -- statements shared by the transactions above ---------------------------------------------------


def _retire_events(cur: Any, sid: str, reason: str, now: float) -> int:
    """A re-created session, as in SQLite (see flux0sync.store._retire_events): its archived
    events move to ``conflicts``, its gaps are forgotten and its checkpoint starts again.
    They are read in pages of about RETIRE_PIECE_CHARS (the page's first event whatever its
    size), in id order, so a session of any size costs the daemon one page of memory."""
    _lock_session(cur, sid)
    moved = 0
    after: Optional[str] = None  # the last id moved
    while True:
        if after is None:
            cur.execute(_RETIRE_PAGE.format(after=""), (sid, RETIRE_PIECE_CHARS))
        else:
            cur.execute(_RETIRE_PAGE.format(after="AND id > %s"), (sid, after, RETIRE_PIECE_CHARS))
        rows = cur.fetchall()
        if not rows:
            break
        cur.executemany(
            'INSERT INTO conflicts (session_id, event_id, "offset", reason, raw, digest, seen_at)'
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(sid, eid, offset, reason, raw, _conflict_digest(eid, offset, raw), now) for eid, offset, raw in rows],
        )
        moved += len(rows)
        after = rows[-1][0]
        del rows
    cur.execute("DELETE FROM events WHERE session_id = %s", (sid,))
    cur.execute("DELETE FROM gaps WHERE session_id = %s", (sid,))
    cur.execute("UPDATE sync_state SET last_offset = -1 WHERE session_id = %s", (sid,))
    return moved


# The next page of a session's events after an id: up to 500 of them, cut where their raw text
# passes the given size (the characters before an event are counted, so the first always comes).
_RETIRE_PAGE = """
    SELECT id, "offset", raw FROM (
        SELECT id, "offset", raw, sum(char_length(raw)) OVER (ORDER BY id) - char_length(raw) AS before
        FROM events WHERE session_id = %s {after} ORDER BY id LIMIT 500
    ) page WHERE before < %s ORDER BY id
"""


def _lock_session(cur: Any, sid: str) -> int:
    """Lock the session's sync_state row (creating it) for this transaction; returns its checkpoint.

    Two daemons writing one session (overlapping shards) take turns here, so each computes the
    checkpoint and the gaps from what the other committed.
    """
    cur.execute("INSERT INTO sync_state (session_id) VALUES (%s) ON CONFLICT (session_id) DO NOTHING", (sid,))
    cur.execute("SELECT last_offset FROM sync_state WHERE session_id = %s FOR UPDATE", (sid,))
    row = cur.fetchone()
    return int(row[0]) if row else -1


def _lock_conversation(cur: Any, sid: str) -> Tuple[int, int]:
    """:func:`_lock_session`, returning (checkpoint, generation)."""
    cur.execute("INSERT INTO sync_state (session_id) VALUES (%s) ON CONFLICT (session_id) DO NOTHING", (sid,))
    cur.execute("SELECT last_offset, generation FROM sync_state WHERE session_id = %s FOR UPDATE", (sid,))
    row = cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (-1, 0)


def _set_checkpoint(cur: Any, sid: str, checkpoint: int, now: float, *, success: bool) -> None:
    if success:
        cur.execute(
            "UPDATE sync_state SET last_offset = GREATEST(last_offset, %s), last_attempt_at = %s,"
            " last_success_at = %s, errors = 0, last_error = NULL WHERE session_id = %s",
            (checkpoint, now, now, sid),
        )
    else:
        cur.execute(
            "UPDATE sync_state SET last_offset = GREATEST(last_offset, %s) WHERE session_id = %s", (checkpoint, sid)
        )


def _advance(cur: Any, sid: str, checkpoint: int) -> int:
    """The highest offset reached from ``checkpoint`` through stored offsets without a hole.

    In a run of consecutive offsets, offset minus its rank is constant: the run that starts
    right after the checkpoint is the rows where it equals the checkpoint.
    """
    cur.execute(
        'SELECT max("offset") FROM (SELECT "offset", "offset" - row_number() OVER (ORDER BY "offset") AS run'
        ' FROM events WHERE session_id = %s AND "offset" > %s) AS tail WHERE run = %s',
        (sid, checkpoint, checkpoint),
    )
    row = cur.fetchone()
    return checkpoint if row is None or row[0] is None else int(row[0])


def _missing_ranges(cur: Any, sid: str, checkpoint: int) -> List[Tuple[int, int]]:
    """The first MAX_GAPS + 1 missing ranges and, if there are more, the last: all that
    gaps.capped keeps of them (the server reads every offset, the daemon no more than that)."""
    query = (
        'SELECT previous + 1, "offset" - 1 FROM (SELECT "offset", lag("offset", 1, %s) OVER (ORDER BY "offset")'
        ' AS previous FROM events WHERE session_id = %s AND "offset" > %s) AS tail'
        ' WHERE "offset" > previous + 1 ORDER BY 1 {} LIMIT %s'
    )
    cur.execute(query.format("ASC"), (checkpoint, sid, checkpoint, MAX_GAPS + 1))
    ranges = [(int(first), int(last)) for first, last in cur.fetchall()]
    if len(ranges) > MAX_GAPS:
        cur.execute(query.format("DESC"), (checkpoint, sid, checkpoint, 1))
        ranges += [(int(first), int(last)) for first, last in cur.fetchall()]
    return ranges


def _gap(row: Sequence[Any]) -> Gap:
    return Gap(_id_of(str(row[0])), int(row[1]), int(row[2]), float(row[3]), None if row[4] is None else float(row[4]))


def _gaps(cur: Any, sid: str, *, open_only: bool) -> List[Gap]:
    cur.execute(
        "SELECT session_id, first_offset, last_offset, first_seen_at, skipped_at FROM gaps"
        " WHERE session_id = %s AND (skipped_at IS NULL OR NOT %s) ORDER BY first_offset",
        (sid, open_only),
    )
    return [_gap(row) for row in cur.fetchall()]


class _PgGaps:
    """The :class:`~flux0sync.gaps.GapLedger` of one session in a transaction that holds its lock."""

    def __init__(self, cur: Any, sid: str) -> None:
        self.cur, self.sid = cur, sid

    def checkpoint(self) -> int:
        return _lock_session(self.cur, self.sid)

    def missing_ranges(self, checkpoint: int) -> List[Tuple[int, int]]:
        return _missing_ranges(self.cur, self.sid, checkpoint)

    def record(self, found: Sequence[Tuple[int, int]], now: float) -> None:
        self.cur.execute(
            "DELETE FROM gaps WHERE session_id = %s AND skipped_at IS NULL AND NOT (first_offset = ANY(%s))",
            (self.sid, [first for first, _ in found]),
        )
        if found:
            self.cur.executemany(
                "INSERT INTO gaps (session_id, first_offset, last_offset, first_seen_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (session_id, first_offset) DO UPDATE SET last_offset = excluded.last_offset,"
                " first_seen_at = CASE WHEN excluded.last_offset > gaps.last_offset"
                " THEN excluded.first_seen_at ELSE gaps.first_seen_at END",
                [(self.sid, first, last, now) for first, last in found],
            )

    def open_gaps(self) -> List[Gap]:
        return _gaps(self.cur, self.sid, open_only=True)

    def stored_after(self, offset: int, count: int) -> bool:
        self.cur.execute(
            'SELECT count(*) FROM (SELECT 1 FROM events WHERE session_id = %s AND "offset" > %s LIMIT %s) AS after',
            (self.sid, offset, count),
        )
        return int(self.cur.fetchone()[0]) >= count

    def mark_skipped(self, first_offset: int, now: float) -> None:
        self.cur.execute(
            "UPDATE gaps SET skipped_at = %s WHERE session_id = %s AND first_offset = %s", (now, self.sid, first_offset)
        )

    def advance(self, checkpoint: int) -> int:
        return _advance(self.cur, self.sid, checkpoint)

    def save_checkpoint(self, checkpoint: int, now: float) -> None:
        _set_checkpoint(self.cur, self.sid, checkpoint, now, success=False)


def _clash(cur: Any, row: EventRow) -> Optional[str]:
    """Why a row that was not inserted is not simply a re-fetched copy of a stored event, or None."""
    sid, event_id, offset, raw = row[0], row[1], row[2], row[9]
    cur.execute('SELECT "offset", raw FROM events WHERE session_id = %s AND id = %s', (sid, event_id))
    found = cur.fetchone()
    if found is None:
        return "same offset, different id"
    if found[0] == offset and _same(str(found[1]), raw):
        return None
    return "same id, different event"


def _record_conflict(cur: Any, row: EventRow, reason: str, now: float) -> int:
    sid, event_id, offset, raw = row[0], row[1], row[2], row[9]
    digest = _conflict_digest(reason, event_id, offset)
    cur.execute(
        'INSERT INTO conflicts (session_id, event_id, "offset", reason, raw, digest, seen_at)'
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (sid, event_id, offset, reason, raw, digest, now),
    )
    return max(0, int(cur.rowcount))
