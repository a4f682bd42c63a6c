"""One sync pass: discover agents and sessions, then pull each session's new events.

A session's events are fetched from its checkpoint (``min_offset = checkpoint + 1``) as a
stream, parsed element by element and written in batches, each batch with the checkpoint it
earns in one transaction (see :mod:`flux0sync.store`): memory is bounded by the batch size, not
by the session's backlog. Offsets are verified, not assumed: a hole is held open and fetched
again on later passes, and only after ``gap_patience`` seconds is it recorded and passed.

Every network call runs in a worker thread while the main thread waits in short steps: it
pings the watchdog, notices a stop request at once, and gives up on a session whose fetch
passes ``session_deadline`` (the progress it made stays). So one stalled or trickling session
never holds up the others, the watchdog, or a shutdown. A failing session backs off on its
own (exponentially, with jitter).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, Set, TypeVar, Union

from flux0lite import (
    Agent,
    APIConnectionError,
    APITimeoutError,
    ConnectError,
    ContentTypeError,
    DecodeError,
    Flux0,
    Flux0Error,
    NotFoundError,
    Session,
)
from flux0lite.jsonstream import iter_array

from .rows import RawEvent, storable_text
from .store import Store, StoreError, WriteResult

__all__ = ["Syncer", "PassResult", "Interrupted", "SessionDeadlineError"]

log = logging.getLogger("flux0sync")

_T = TypeVar("_T")
_M = TypeVar("_M")
_STEP = 0.2  # seconds between the waiting main thread's looks at the stop flag and the watchdog
_QUEUED_CHUNKS = 4  # read-ahead of the worker; a chunk is at most 1 MiB (the transport's inflate step)
_END = object()
# One event larger than this fails its session: flux0 events are small, and the unit's memory
# cap (MemoryMax) must hold the buffer, the decoded value and its text at once.
_MAX_EVENT_CHARS = 16 * 1024 * 1024


class Interrupted(Exception):
    """A stop was requested while the pass waited; whatever was committed stays."""


class SessionDeadlineError(APITimeoutError):
    """One session's fetch took longer than ``session_deadline``; its stored progress stays."""


@dataclass
class PassResult:
    sessions_seen: int = 0
    sessions_synced: int = 0
    sessions_failed: int = 0
    sessions_skipped: int = 0
    sessions_cut: int = 0  # stopped at the per-session deadline with progress; continued next pass
    events_inserted: int = 0
    errors: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every session seen was brought up to date (what ``--once`` reports with exit 0)."""
        return not self.errors and not self.sessions_cut


class _Waiter:
    """Runs blocking calls in worker threads; the caller's thread waits in short, watchful steps."""

    def __init__(self, heartbeat: Callable[[], None], should_stop: Callable[[], bool]) -> None:
        self.heartbeat = heartbeat
        self.should_stop = should_stop

    def get(self, box: "queue.Queue[Any]", deadline: float, what: str) -> Any:
        while True:
            if self.should_stop():
                raise Interrupted()
            left = deadline - time.monotonic()
            if left <= 0:
                raise SessionDeadlineError(f"{what}: gave up after the per-session deadline")
            try:
                item = box.get(timeout=min(_STEP, left))
            except queue.Empty:
                self.heartbeat()
                continue
            self.heartbeat()
            if isinstance(item, BaseException):
                raise item
            return item

    def call(self, fn: Callable[[], _T], deadline: float, what: str) -> _T:
        box: "queue.Queue[Any]" = queue.Queue(maxsize=1)

        def work() -> None:
            try:
                box.put(fn())
            except BaseException as exc:  # handed to the waiting thread, which raises it
                box.put(exc)

        threading.Thread(target=work, name=f"flux0sync {what}", daemon=True).start()
        result: _T = self.get(box, deadline, what)
        return result

    def stream(self, open_stream: Callable[[], Any], deadline: float, what: str) -> Generator[bytes, None, None]:
        """The body of a streaming response, read ahead by a worker at most a few chunks."""
        chunks: "queue.Queue[Any]" = queue.Queue(maxsize=_QUEUED_CHUNKS)
        cancelled = threading.Event()

        def put(item: Any) -> bool:
            while not cancelled.is_set():
                try:
                    chunks.put(item, timeout=_STEP)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                response = open_stream()
                try:
                    media = response.content_type
                    if media and media != "application/json" and not media.endswith("+json"):
                        raise ContentTypeError(f"{what}: expected JSON, got {media!r}")
                    for chunk in response.iter_bytes():
                        if not put(chunk):
                            return
                finally:
                    response.close()
                put(_END)
            except BaseException as exc:  # handed to the waiting thread, which raises it
                put(exc)

        threading.Thread(target=work, name=f"flux0sync {what}", daemon=True).start()
        try:
            while True:
                item = self.get(chunks, deadline, what)
                if item is _END:
                    return
                yield item
        finally:
            cancelled.set()  # the worker closes the connection at its next chunk or timeout


class Syncer:
    def __init__(
        self,
        client: Flux0,
        store: Store,
        *,
        agent_ids: Sequence[str] = (),
        session_ids: Sequence[str] = (),
        batch_size: int = 500,
        max_backoff: float = 300.0,
        gap_patience: float = 300.0,
        session_deadline: float = 120.0,
        heartbeat: Callable[[], None] = lambda: None,
        should_stop: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.store = store
        self.agent_ids = tuple(agent_ids)
        self.session_ids = tuple(session_ids)
        self.batch_size = batch_size
        self.max_backoff = max_backoff
        self.gap_patience = gap_patience
        self.session_deadline = session_deadline
        self.heartbeat = heartbeat
        self.should_stop = should_stop
        self.clock = clock
        self._waiter = _Waiter(heartbeat, should_stop)
        self._retry_at: Dict[str, float] = {}
        self._warned: Set[str] = set()
        self._cut = False  # did the session being synced stop at its deadline?

    def _backoff(self, errors: int) -> float:
        ceiling = min(self.max_backoff, 2.0 ** min(errors, 20))
        return ceiling / 2 + random.random() * ceiling / 2

    def _deadline(self) -> float:
        return time.monotonic() + self.session_deadline

    def _listed(self, path: str, params: Optional[Dict[str, str]], model: Callable[[Any], _M], what: str) -> List[_M]:
        """A ``{"data": [...]}`` list, typed item by item: one malformed item is skipped, not fatal."""
        payload = self._waiter.call(
            lambda: self.client.request_json("GET", path, params=params), self._deadline(), what
        )
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            raise DecodeError(f'{what}: expected {{"data": [...]}}, got {type(payload).__name__}')
        items: List[_M] = []
        for raw in payload["data"]:
            try:
                item = model(raw)
            except Flux0Error as exc:
                self._warn_once(f"{what}: skipping an item the server sent malformed: {exc}")
                continue
            if storable_text(getattr(item, "id", "")) is None:
                self._warn_once(f"{what}: skipping an item whose id is not valid Unicode: {item.id!r}")  # type: ignore[attr-defined]
                continue
            items.append(item)
        return items

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)

    def discover(self) -> List[Session]:
        """Agents and sessions from the server, stored; returns the sessions to sync."""
        agents = self._listed("/api/agents", None, Agent.from_dict, "list agents")
        if self.agent_ids:
            agents = [a for a in agents if a.id in self.agent_ids]
        self.store.upsert_agents(agents)
        sessions: List[Session] = []
        if self.session_ids:
            for session_id in self.session_ids:
                try:
                    sessions.append(
                        self._waiter.call(
                            lambda sid=session_id: self.client.sessions.retrieve(sid),  # type: ignore[misc]
                            self._deadline(),
                            f"session {session_id}",
                        )
                    )
                except NotFoundError:
                    log.warning("session %s does not exist on the server; skipping it", session_id)
        elif self.agent_ids:
            for agent_id in self.agent_ids:
                sessions.extend(
                    self._listed("/api/sessions", {"agent_id": agent_id}, Session.from_dict, "list sessions")
                )
        else:
            sessions = self._listed("/api/sessions", None, Session.from_dict, "list sessions")
        self.store.upsert_sessions(sessions)
        return sessions

    def _events(self, session_id: str, min_offset: int) -> Generator[RawEvent, None, None]:
        if storable_text(session_id) is None:
            raise Flux0Error(f"session id {session_id!r} is not valid Unicode; it cannot be fetched")
        path = f"/api/sessions/{urllib.parse.quote(session_id, safe='')}/events"
        what = f"GET {path}"
        chunks = self._waiter.stream(
            lambda: self.client.request_stream("GET", path, params={"min_offset": str(min_offset)}),
            self._deadline(),
            what,
        )
        try:
            for element in iter_array(chunks, key="data", what=what, max_element_chars=_MAX_EVENT_CHARS):
                yield RawEvent(element.value, element.text)
        finally:
            chunks.close()

    def sync_session(self, session_id: str) -> int:
        """Pull and store a session's new events; returns how many were inserted.

        A fault mid-answer (a cut stream, the deadline, malformed JSON) still stores the events
        read before it, then raises: their checkpoint is earned, the rest is fetched next time.
        """
        checkpoint = self.store.checkpoint(session_id)
        inserted = 0
        highest = checkpoint
        batch: List[RawEvent] = []

        def flush() -> None:
            nonlocal inserted, batch
            if batch:
                result = self.store.write_batch(session_id, batch)
                inserted += result.inserted
                self._report(session_id, result)
                batch = []
                self.heartbeat()

        events = self._events(session_id, checkpoint + 1)
        try:
            for event in events:
                offset = event.doc.get("offset") if isinstance(event.doc, dict) else None
                if type(offset) is int and offset > highest:
                    highest = offset
                batch.append(event)
                if len(batch) >= self.batch_size:
                    flush()
                    if self.should_stop():
                        break
        except SessionDeadlineError:
            flush()
            if inserted == 0:
                raise
            # Slow but moving: what arrived is stored; the rest comes next pass, without a backoff.
            log.info("session %s: +%d events, then cut at the per-session deadline", session_id, inserted)
            self._cut = True
            return inserted
        except (Flux0Error, Interrupted):
            flush()
            raise
        finally:
            events.close()
        flush()
        if inserted == 0:
            self.store.mark_synced(session_id)
        self._check_gaps(session_id, highest)
        return inserted

    def _report(self, session_id: str, result: WriteResult) -> None:
        if result.conflicts:
            log.warning(
                "session %s: %d events clash with stored ones (same id or offset, different content);"
                " kept in the conflicts table",
                session_id,
                result.conflicts,
            )

    def _check_gaps(self, session_id: str, highest_seen: int) -> None:
        if highest_seen <= self.store.checkpoint(session_id) and not self.store.gaps(session_id, open_only=True):
            return
        held, skipped = self.store.reconcile_gaps(session_id, self.gap_patience)
        for gap in skipped:
            log.warning(
                "session %s: offsets %d..%d never arrived in %.0f s; recorded as a gap and passed",
                session_id,
                gap.first_offset,
                gap.last_offset,
                gap.skipped_at - gap.first_seen_at if gap.skipped_at else 0.0,
            )
        for gap in held:
            log.debug("session %s: holding gap %d..%d open", session_id, gap.first_offset, gap.last_offset)

    def run_pass(self) -> PassResult:
        result = PassResult()
        try:
            sessions = self.discover()
        except Interrupted:
            return result
        self.heartbeat()
        result.sessions_seen = len(sessions)
        now = self.clock()
        for session in sessions:
            if self.should_stop():
                break
            if self._retry_at.get(session.id, 0.0) > now:
                result.sessions_skipped += 1
                continue
            try:
                self._cut = False
                result.events_inserted += self.sync_session(session.id)
                if self._cut:
                    result.sessions_cut += 1
                else:
                    result.sessions_synced += 1
                self._retry_at.pop(session.id, None)
            except Interrupted:
                break
            except ConnectError:
                raise  # the server is unreachable: the whole pass backs off, not this session
            except APIConnectionError as exc:
                if not isinstance(exc, APITimeoutError):
                    raise  # the server dropped us: likely down for everyone
                self._failed(session.id, exc, result)  # slow or stalled: this session alone
            except Flux0Error as exc:
                self._failed(session.id, exc, result)
            except StoreError:
                raise  # the archive, not this session, is in trouble: the service decides
            except Exception as exc:  # the last line of defence: an answer's content never stops the daemon
                log.error("session %s: unexpected %s", session.id, type(exc).__name__, exc_info=True)
                self._failed(session.id, exc, result)
        return result

    def _failed(self, session_id: str, exc: Union[Flux0Error, Exception], result: PassResult) -> None:
        message = str(exc) or type(exc).__name__
        errors = self.store.mark_error(session_id, message)
        delay = self._backoff(errors)
        self._retry_at[session_id] = self.clock() + delay
        result.sessions_failed += 1
        result.errors.append(f"{session_id}: {message}")
        log.warning("session %s failed (%d in a row), retry in %.0f s: %s", session_id, errors, delay, message)

    def pending_retry(self, session_id: str) -> Optional[float]:
        return self._retry_at.get(session_id)
