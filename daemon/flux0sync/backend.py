"""Which archive ``--db`` names: a SQLite file (a path, or ``sqlite:PATH``) or a PostgreSQL
database (``postgresql://...`` or ``postgres://...``).

The PostgreSQL driver, psycopg 3, is an optional extra (``pip install flux0lite[postgres]``) and
is imported only when a PostgreSQL URL is used; without it the user gets one clear error naming
what to install. The core stays standard-library only.
"""

from __future__ import annotations

import importlib.util
from typing import Callable, Dict, Generator, List, Optional, Protocol, Sequence, Tuple
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from flux0lite.models import Agent, Session

from .gaps import SeenHere
from .rows import RawEvent
from .store import Gap, Listed, PollRecord, SearchHit, SessionStatus, StoreError, WriteResult

__all__ = [
    "Archive",
    "POSTGRES_SCHEMES",
    "DriverMissingError",
    "StoreUnavailableError",
    "is_postgres_url",
    "sqlite_path",
    "redact_db_url",
    "redact_db_text",
    "require_postgres_driver",
    "open_store",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
INSTALL_HINT = "pip install 'flux0lite[postgres]' (or: pip install 'psycopg[binary]>=3.1')"
_SECRET_PARAMS = frozenset({"password", "sslpassword"})


class Archive(Protocol):
    """What the daemon and the readers use of an archive; SQLite's Store and PgStore both are one."""

    path: str
    has_fts: bool

    def close(self) -> None: ...
    def apply_options(self, synchronous: str, max_page_count: Optional[int]) -> None: ...
    def check_files(self) -> None: ...
    def upsert_agents(self, agents: Sequence[Agent]) -> None: ...
    def upsert_sessions(self, sessions: Sequence[Session]) -> None: ...
    def checkpoint(self, session_id: str) -> int: ...
    def poll_starts(self, session_ids: Sequence[str]) -> Dict[str, Tuple[int, int]]: ...
    def stored_through(self, session_id: str, offset: int) -> int: ...
    def write_batch(
        self, session_id: str, events: Sequence[RawEvent], generation: Optional[int] = None
    ) -> WriteResult: ...
    def reconcile_gaps(
        self,
        session_id: str,
        patience: float,
        generation: Optional[int] = None,
        seen: Optional[SeenHere] = None,
    ) -> Tuple[List[Gap], List[Gap]]: ...
    def gaps(self, session_id: Optional[str] = None, *, open_only: bool = False) -> List[Gap]: ...
    def mark_synced(self, session_id: str) -> None: ...
    def mark_error(self, session_id: str, message: str) -> int: ...
    def counts(self, *, events: bool = True) -> Tuple[int, int, int]: ...
    def session_statuses(self) -> List[SessionStatus]: ...
    def status_snapshot(self) -> Tuple[List[SessionStatus], Tuple[int, int, int], List[Gap]]: ...
    def iter_raw_events(self, session_id: str) -> Generator[str, None, None]: ...
    def session_exists(self, session_id: str) -> bool: ...
    def search(self, text: str, limit: int = 50) -> Generator[SearchHit, None, None]: ...
    def integrity_ok(self) -> bool: ...
    # the poll schedule (see flux0sync.schedule and flux0sync.engine)
    def record_listing(self, user: Optional[str], sessions: Sequence[Session]) -> List[Listed]: ...
    def save_polls(self, polls: Sequence[PollRecord]) -> None: ...


class DriverMissingError(StoreError):
    """A PostgreSQL archive was asked for and psycopg 3 is not installed (a setup problem)."""


class StoreUnavailableError(StoreError):
    """The database server cannot be reached now, or the database is read-only now; nothing was
    written. Transient, and the whole archive's: no batch's failure (not a StoreBusyError, which
    fails one poll), but the daemon's, which pauses and tries again later."""


def is_postgres_url(db: str) -> bool:
    return db.lower().startswith(POSTGRES_SCHEMES)


def sqlite_path(db: str) -> str:
    """The file a SQLite ``--db`` names: ``sqlite:PATH`` and ``sqlite://PATH`` are PATH."""
    for prefix in ("sqlite://", "sqlite:"):
        if db.lower().startswith(prefix):
            return db[len(prefix) :]
    return db


def redact_db_url(db: str) -> str:
    """The archive's name for messages and logs: a URL's password replaced by ``***``."""
    if not is_postgres_url(db):
        return db
    try:
        parts = urlsplit(db)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{hostinfo}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="/*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:  # not even a URL: show no part of it that could be a secret
        return db.split("://", 1)[0] + "://(unparseable URL)"


def redact_db_text(text: str, db: str) -> str:
    """A driver's message about ``db`` with the URL redacted and its passwords shown as ``***``
    wherever they occur (libpq quotes the whole URI, or the one token it could not parse)."""
    rest = db.split("://", 1)[-1]
    userinfo = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[0]
    secrets = [userinfo.partition(":")[2]]
    for pair in rest.partition("?")[2].partition("#")[0].split("&"):
        key, _, value = pair.partition("=")
        if unquote(key).lower() in _SECRET_PARAMS:
            secrets.append(value)
    text = text.replace(db, redact_db_url(db))
    for secret in sorted({form for raw in secrets for form in (raw, unquote(raw)) if form}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def require_postgres_driver() -> None:
    """Raise DriverMissingError unless psycopg 3 can be imported."""
    try:
        found = importlib.util.find_spec("psycopg") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise DriverMissingError(f"a PostgreSQL archive needs the psycopg 3 driver: {INSTALL_HINT}")


def open_store(
    db: str,
    *,
    readonly: bool = False,
    synchronous: str = "NORMAL",
    max_page_count: Optional[int] = None,
    check: bool = True,
    on_wait: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Archive:
    """Open the archive ``db`` names (see the module docstring).

    The SQLite options (synchronous, page cap, integrity check, waiting out a held write lock)
    do not apply to PostgreSQL, where the server owns durability and integrity.
    """
    if is_postgres_url(db):
        require_postgres_driver()
        try:
            from .pgstore import PgStore
        except ImportError as exc:  # installed but broken (e.g. no libpq for a pure-Python psycopg)
            raise DriverMissingError(f"the psycopg 3 driver does not import ({exc}): {INSTALL_HINT}") from exc
        return PgStore(db, readonly=readonly)
    from .store import Store

    return Store(
        sqlite_path(db),
        readonly=readonly,
        synchronous=synchronous,
        max_page_count=max_page_count,
        check=check,
        on_wait=on_wait,
        should_stop=should_stop,
    )
