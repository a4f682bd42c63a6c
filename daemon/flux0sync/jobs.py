"""What a fetch worker does for one session or one listing, and what the writer does with it.

Worker side (runs on a :class:`~flux0sync.workers.FetchPool` thread, never touches SQLite):

* :func:`fetch_events` asks for ``list_events(min_offset=checkpoint + 1)``. A small answer
  (declared length up to 1 MiB, uncompressed, not chunked) is returned whole, in the pieces it
  arrived in, for the writer to parse (:func:`read_batches`); a larger one is parsed element by
  element as it streams in (:func:`flux0lite.jsonstream.iter_array`) and handed over in batches
  of :class:`~flux0sync.rows.RawEvent`: memory is bounded by the batch size, not by the
  session's backlog. A small answer whose body fails before its end (cut short, cut off at the
  deadline) is read the large one's way from its first byte, so both give the same events.
* :func:`list_sessions` streams a sessions listing the same way and hands over pages of
  typed sessions; one malformed item is skipped (and warned about once), not fatal.

Writer side (the thread that owns the archive): :func:`read_batches` parses a small answer a
transaction's worth at a time (parsed events take about seven times their text's memory);
:class:`SessionWriter` stores batches with the checkpoints they earn (several sessions'
batches in one transaction on SQLite, see :mod:`flux0sync.store`), reports clashing events,
and after a poll holds or records offset gaps: a hole is fetched again on later polls and only
after ``gap_patience`` seconds recorded and passed.
"""

from __future__ import annotations

import decimal
import itertools
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, TypeVar, Union

from flux0lite import (
    Agent,
    APIConnectionError,
    APITimeoutError,
    ContentTypeError,
    DecodeError,
    Flux0,
    Flux0Error,
    NotFoundError,
    RequestAborted,
    ResponseTooLargeError,
    Session,
    StreamError,
)
from flux0lite.jsonstream import Element, iter_array
from flux0lite.resources import path_segment

from .backend import Archive
from .budget import CHAR_COST, DEEP_CHAR_COST, ITEM_COST, element_cost, metered
from .gaps import SeenHere
from .jsonread import LEFT_OUT, Decoder
from .rows import EventRow, RawEvent, UnidentifiableEventError, check_identity, event_rows, storable_text
from .store import StoreBusyError, StoreFullError, WriteResult

__all__ = [
    "MAX_BATCH_CHARS",
    "highest_offset",
    "Fetched",
    "fetch_events",
    "read_events",
    "read_batches",
    "list_sessions",
    "list_agents",
    "retrieve_sessions",
    "count_events",
    "SessionWriter",
    "NOTHING_WRITTEN",
    "Warnings",
]

log = logging.getLogger("flux0sync")

Emit = Callable[[Any], None]
_M = TypeVar("_M")
# The archive could not take a batch, but may later (full disk, another process's long lock),
# or one batch holds an event without an id: that poll fails, the daemon goes on.
BATCH_FAILURES = (StoreFullError, StoreBusyError, UnidentifiableEventError)
# One event larger than this fails its session: flux0 events are small. The cap bounds an
# event's text, not all its memory: small items decode to up to ~41 bytes a character (one
# event of tiny items over ~5 MiB passes the unit's MemoryMax=256M alone: 16 MiB, 580-675 MB
# peak); such an event is not flux0's, and reading it may cost the daemon a restart. A value too deep for the C
# scanner (~75 bytes per character built without recursion) is read only up to
# jsonread.MAX_DEEP_CHARS (1 MiB, ~75 MB) and counts as a whole batch.
_MAX_EVENT_CHARS = 16 * 1024 * 1024
# A batch is handed over once its events' JSON text reaches this many characters, whatever the
# count: a few batches wait in the result queue, and 500 events of megabytes each would not fit
# the unit's memory cap.
MAX_BATCH_CHARS = 4 * 1024 * 1024
# An events batch is also handed over once what it decodes to may reach this (estimated as the
# budget charges it, flux0sync.budget.element_cost; counted per event, not by what was read:
# the reader reads ahead, up to an event): 4 Mi characters of small items would hold
# ~160 MB, and the worker past the budget holds its batch beyond it. An event read without
# recursion counts as a whole batch: a batch holds at most one such value (~75 MB), never four.
_MAX_BATCH_COST = MAX_BATCH_CHARS * CHAR_COST
# A smaller event is charged what any text of its size may cost (every character a value)
# instead of counting its values, which would cost ~4% of the daemon's CPU with ordinary events:
# a batch of those (a few hundred characters each) is handed over by count long before.
_COUNTED_EVENT_CHARS = 4096
_MAX_CHAR_COST = CHAR_COST + ITEM_COST
# An events answer up to this size is read whole by the worker and parsed by the writer (see
# Fetched); the result queue holds a few of them at most, so memory stays bounded.
_WHOLE_BODY_MAX = 1024 * 1024
# A small answer up to this size, arrived in several pieces, is parsed as one (read_batches):
# no more text in memory at once than one piece of a larger answer.
_JOINED_MAX = 64 * 1024
# What SessionWriter.write_many reports for a batch that held no rows (its checkpoint unknown: -1).
NOTHING_WRITTEN = WriteResult(0, 0, 0, -1)
# Sessions handed to the writer at a time: a few pages wait in the bounded result queue, so
# this keeps a 100k-session listing to a few MB in flight.
LISTING_PAGE = 200
MAX_ID_CHARS = 1024  # flux0's ids are 10 characters; a listing of ids of any length could fill memory


class Warnings:
    """Says each distinct warning once (a malformed listing item would otherwise repeat forever)."""

    def __init__(self) -> None:
        self._said: Set[str] = set()

    def once(self, message: str) -> None:
        if message not in self._said and len(self._said) < 10_000:
            self._said.add(message)
            log.warning("%s", message)


def _stream_array(client: Flux0, path: str, params: Optional[Dict[str, str]], what: str) -> Any:
    response = client.request_stream("GET", path, params=params)
    media = response.content_type
    if media and media != "application/json" and not media.endswith("+json"):
        response.close()
        raise ContentTypeError(f"{what}: expected JSON, got {media!r}")
    return response


def _answer_bytes(response: Any) -> Iterator[bytes]:
    """The body of an answer whose status line has arrived. A connection lost now is this
    answer's fault (a StreamError, like a body cut short), not an outage: the server is up and
    answering, so one session whose answer it always cuts off (a crash serialising it) fails
    and backs off alone instead of pausing every request (see engine._outage)."""
    try:
        yield from response.iter_bytes()
    except (APITimeoutError, RequestAborted):
        raise
    except APIConnectionError as exc:
        raise StreamError(str(exc)) from exc


@dataclass(frozen=True)
class Fetched:
    """What a finished :func:`fetch_events` job returns.

    A small answer comes back whole, as ``body``, for the writer to read (:func:`read_events`):
    the worker then only waits on the network and hardly ever holds the interpreter lock the
    writer needs between its SQLite calls. A large one was read element by element in bounded
    memory and handed over in batches; ``tail`` is its last batch (handed over with the result,
    one hand-off fewer) and ``highest`` the highest offset it saw.
    """

    highest: int
    tail: List[RawEvent]
    body: Optional[List[bytes]] = None


def _small_body_length(response: Any) -> Optional[int]:
    """The answer's length if it is read whole: uncompressed, declared, and at most _WHOLE_BODY_MAX.

    A chunked answer is streamed even if it also declares a length: Transfer-Encoding
    overrides Content-Length (RFC 9112 6.3), and the body is read by its chunks.
    """
    headers = response.headers
    if "transfer-encoding" in headers:
        return None
    if headers.get("content-encoding", "identity").strip().lower() != "identity":
        return None
    declared = headers.get("content-length", "").strip()
    if not (declared.isascii() and declared.isdigit()) or len(declared) > 12 or int(declared) > _WHOLE_BODY_MAX:
        return None
    return int(declared)


def _read_body(chunks: Iterator[bytes], length: int) -> Union[List[bytes], Iterator[bytes]]:
    """The whole answer of its declared ``length``, in the pieces it arrived in (64 KiB at
    most): joined, it would be held twice, and one large buffer per answer leaves the C
    allocator holding memory no small object can reuse.

    If the body fails before its end (cut short, cut off at the deadline, a lost connection)
    or runs past its length, what the streaming reader reads instead: the pieces read, then
    the fault or the rest of the body. So such an answer gives exactly what it gives streamed:
    the complete events before the fault are stored, with their checkpoint, then it fails.
    """
    pieces: List[bytes] = []
    got = 0
    try:
        for piece in chunks:
            pieces.append(piece)
            got += len(piece)
            if got > length:
                return itertools.chain(pieces, chunks)
    except Flux0Error as exc:
        return _replay(pieces, exc)
    return pieces


def _replay(pieces: List[bytes], fault: Flux0Error) -> Iterator[bytes]:
    """``pieces``, then ``fault`` raised where the body failed (each piece let go once read)."""
    pieces.reverse()
    while pieces:
        yield pieces.pop()
    raise fault


def fetch_events(
    session_id: str, min_offset: int, batch_size: int, resume: Optional[Tuple[int, int]] = None
) -> Callable[[Flux0, Emit], Fetched]:
    """A job: the session's events from ``min_offset``: a small answer whole, a large one in batches.

    With ``resume`` = (hole_end, stored): once an offset past ``hole_end`` arrives, the answer
    goes on from ``stored + 1`` in a second request. The caller reads both from the archive:
    every offset after ``hole_end`` up to ``stored`` is stored (see Engine._resume_point).
    """

    def run(client: Flux0, emit: Emit) -> Fetched:
        if storable_text(session_id) is None:
            raise Flux0Error(f"session id {session_id!r} is not valid Unicode; it cannot be fetched")
        path = _events_path(session_id)
        what = f"GET {path}"
        highest = min_offset - 1
        batch: List[RawEvent] = []
        cost = 0  # of the batch, estimated (_MAX_BATCH_COST)
        start: Optional[int] = min_offset
        jump = resume
        take = _budget_of(emit)
        while start is not None:
            response = _stream_array(client, path, {"min_offset": str(start)}, what)
            start = None
            try:
                chunks: Iterator[bytes] = metered(_answer_bytes(response), take)
                length = _small_body_length(response) if jump is None and not batch else None
                if length is not None:
                    body = _read_body(chunks, length)
                    if isinstance(body, list):
                        return Fetched(highest, [], body)
                    chunks = body  # it failed or overran: read as streamed, from its first byte
                decoder = Decoder(_deep_cost(take), shallow_events=True)
                elements = iter_array(
                    chunks,
                    key="data",
                    what=what,
                    max_element_chars=_MAX_EVENT_CHARS,
                    decoder=decoder,
                    errors="surrogateescape",
                    element=RawEvent,
                )
                for event in elements:
                    check_identity(session_id, event)  # raised here, the events before it are stored
                    offset = event.doc.get("offset")
                    if type(offset) is int and offset > highest:
                        highest = offset
                    batch.append(event)
                    if event.doc is decoder.deep:
                        decoder.deep = None  # held by the batch alone: freed once it is stored
                        cost += _MAX_BATCH_COST
                    else:
                        size = len(event.text)
                        cost += size * _MAX_CHAR_COST if size <= _COUNTED_EVENT_CHARS else element_cost(event.text)
                    if len(batch) >= batch_size or cost >= _MAX_BATCH_COST:
                        emit(batch)
                        batch, cost, event = [], 0, None  # type: ignore[assignment]  # handed over: not held while reading on
                    if jump is not None and type(offset) is int and offset > jump[0]:
                        start = jump[1] + 1 if jump[1] > offset else None
                        jump = None
                        if start is not None:
                            break
            except Flux0Error:
                if batch:  # what arrived before a fault is stored; its checkpoint is earned
                    emit(batch)
                raise
            finally:
                response.close()
        return Fetched(highest, batch)

    return run


def _budget_of(emit: Emit) -> Optional[Callable[[int], None]]:
    """How a job takes from the daemon's memory budget (flux0sync.budget): its emit's ``take``,
    if its pool has a budget."""
    take: Optional[Callable[[int], None]] = getattr(emit, "take", None)
    return take


def _deep_cost(take: Optional[Callable[[int], None]]) -> Optional[Callable[[int], None]]:
    """What a value built without recursion takes from the budget, per character."""
    if take is None:
        return None
    return lambda chars: take(chars * DEEP_CHAR_COST)


def count_events(client: Flux0, session_id: str, min_offset: int) -> int:
    """How many events the server holds for a session from ``min_offset`` (``status --server``):
    its answer read as a poll reads it, element by element, and nothing kept, a value too
    costly or too deep to build counted unbuilt (one event of 12 MB of small items, typed to
    be counted, took ~430 MB)."""
    path = _events_path(session_id)
    what = f"GET {path}"
    response = _stream_array(client, path, {"min_offset": str(min_offset)}, what)
    try:
        elements = iter_array(
            _answer_bytes(response),
            key="data",
            what=what,
            max_element_chars=_MAX_EVENT_CHARS,
            decoder=Decoder(build_deep=False, leave_out_large=True),
            errors="surrogateescape",
        )
        return sum(1 for _ in elements)
    finally:
        response.close()


def read_events(session_id: str, fetched: Fetched) -> "Tuple[Fetched, Optional[Flux0Error]]":
    """A small answer read at once: its events (those before a fault, if it is malformed;
    their checkpoint is earned as when streaming) and the fault."""
    if fetched.body is None:
        return fetched, None
    events: List[RawEvent] = []
    body = fetched.body
    pieces = [body] if isinstance(body, bytes) else body  # one piece, or as it arrived
    try:
        for batch in read_batches(session_id, pieces, 2**62):
            events += batch
    except Flux0Error as exc:
        return Fetched(highest_offset(events, fetched.highest), events), exc
    return Fetched(highest_offset(events, fetched.highest), events), None


def read_batches(session_id: str, body: Iterable[bytes], size: int) -> Iterator[List[RawEvent]]:
    """The writer's half of a small answer: its events, parsed ``size`` at a time as they are
    stored (parsed events take about seven times the bytes of their text). Raises the
    answer's fault after the batch of the events before it, which are stored: their
    checkpoint is earned as when streaming."""
    batch: List[RawEvent] = []
    if isinstance(body, list) and len(body) > 1 and sum(map(len, body)) <= _JOINED_MAX:
        # an answer no larger than a piece is read as one: an event cut between two pieces
        # costs the reader a failed scan and a second one (same events, same faults)
        body = [b"".join(body)]
    elements = iter_array(
        body,  # piece by piece: the text in memory is one piece's, not the whole answer's
        key="data",
        what=f"GET {_events_path(session_id)}",
        max_element_chars=_MAX_EVENT_CHARS,
        decoder=Decoder(),
        errors="surrogateescape",  # a byte that is not UTF-8 is kept (see rows.undecodable_raw)
        element=RawEvent,
    )
    try:
        for event in elements:
            doc = event.doc  # check_identity's test inline (it runs for every event); it raises
            if type(doc) is not dict or type(doc.get("id")) is not str or not doc["id"]:
                check_identity(session_id, event)  # the events before one without an id are stored
            batch.append(event)
            if len(batch) >= size:
                yield batch
                batch = []
    except Flux0Error:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def _events_path(session_id: str) -> str:
    return f"/api/sessions/{path_segment(session_id, 'session id')}/events"


def highest_offset(events: Sequence[RawEvent], highest: int) -> int:
    """The highest integer offset of ``events``, or ``highest`` if that is higher."""
    for doc, _ in events:  # unpacked, not read by attribute: this runs twice for every event read
        if type(doc) is dict:
            offset = doc.get("offset")
            if type(offset) is int and offset > highest:
                highest = offset
    return highest


def _typed(items: Sequence[Any], model: Callable[[Any], _M], what: str, warnings: Warnings) -> List[_M]:
    typed: List[_M] = []
    for raw in items:
        try:
            item = model(raw)
        except Flux0Error as exc:
            warnings.once(f"{what}: skipping an item the server sent malformed: {exc}")
            continue
        if storable_text(getattr(item, "id", "")) is None:
            warnings.once(f"{what}: skipping an item whose id is not valid Unicode: {item.id!r}")  # type: ignore[attr-defined]
            continue
        if len(getattr(item, "id", "")) > MAX_ID_CHARS:  # each known id is held in memory: bound it
            warnings.once(f"{what}: skipping every item whose id is longer than {MAX_ID_CHARS} characters")
            continue
        typed.append(item)
    return typed


def _emit_pages(
    elements: Iterable[Element], model: Callable[[Any], _M], what: str, warnings: Warnings, emit: Emit
) -> int:
    """Typed items handed over in pages (of LISTING_PAGE items, MAX_BATCH_CHARS characters or
    what they may decode to: _MAX_BATCH_COST, as for events, so a few wide entries are never
    held and typed together); returns how many."""
    count = chars = cost = 0
    page: List[Any] = []
    for element in elements:
        page.append(element.value)
        chars += len(element.text)
        cost += element_cost(element.text)
        if len(page) >= LISTING_PAGE or chars >= MAX_BATCH_CHARS or cost >= _MAX_BATCH_COST:
            typed = _typed(page, model, what, warnings)
            count += len(typed)
            emit(typed)
            # handed over: not held while the next entry is read (a wide one each, on every
            # worker, took 8 users' listings to ~345 MB)
            page, chars, cost, typed, element = [], 0, 0, [], None  # type: ignore[assignment]
    typed = _typed(page, model, what, warnings)
    emit(typed)
    return count + len(typed)


def list_sessions(agent_id: Optional[str], warnings: Warnings) -> Callable[[Flux0, Emit], int]:
    """A job: one user's sessions (of one agent), handed over in pages; returns how many."""

    params = {"agent_id": agent_id} if agent_id else None
    return _listing("/api/sessions", params, "list sessions", Session.from_dict, warnings)


def list_agents(warnings: Warnings) -> Callable[[Flux0, Emit], int]:
    """A job: the agents, streamed and handed over in pages like the sessions; returns how many."""

    return _listing("/api/agents", None, "list agents", Agent.from_dict, warnings)


def _readable(elements: Iterable[Element], decoder: Decoder, what: str, warnings: Warnings) -> Iterator[Element]:
    """The elements, less those holding a value the decoder read past one of CPython's refusals:
    an entry's typed model is stored as JSON, which such a value cannot be written back as
    (looked into only when the decoder met one)."""
    unusual = 0
    for element in elements:
        if decoder.unusual != unusual:
            unusual = decoder.unusual
            reason = _unwritable(element.value, decoder.deep)
            if reason is not None:
                warnings.once(f"{what}: skipping every item {reason}")
                continue
        yield element
        element = None  # type: ignore[assignment]  # not held while the next one is read


def _unwritable(value: Any, deep: Any) -> Optional[str]:
    """Why ``value`` cannot be written back as JSON, if it is the decoder's ``deep`` value or
    holds an integer it read as a Decimal."""
    if value is deep:  # TOO_LARGE: measured before any scan, which a deep value may be too
        deeper = "nested deeper than Python's JSON decoder reads"
        return deeper if deep is LEFT_OUT else f"{deeper}, or too large to read in memory"
    stack = [value]  # no recursion: nesting is the server's
    while stack:
        item = stack.pop()
        if isinstance(item, decimal.Decimal):
            return "with an integer of over 4,300 digits"
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _listing(
    path: str, params: Optional[Dict[str, str]], what: str, parse: Callable[[Any], _M], warnings: Warnings
) -> Callable[[Flux0, Emit], int]:
    """A job that streams the ``data`` array at ``path`` and hands it over in pages."""

    def run(client: Flux0, emit: Emit) -> int:
        response = _stream_array(client, path, params, what)
        try:
            take = _budget_of(emit)
            # an entry too deep or too costly to build is left out: never built, at any size
            decoder = Decoder(build_deep=False, leave_out_large=True)
            elements = iter_array(
                metered(_answer_bytes(response), take),
                key="data",
                what=what,
                max_element_chars=_MAX_EVENT_CHARS,
                decoder=decoder,
            )
            return _emit_pages(_readable(elements, decoder, what, warnings), parse, what, warnings, emit)
        finally:
            response.close()

    return run


def _retrieve_session(client: Flux0, session_id: str) -> Tuple[Session, int]:
    """One session and the size of its answer, read up to _MAX_EVENT_CHARS bytes (not the client's 256 MiB)."""
    if storable_text(session_id) is None:
        raise Flux0Error(f"session id {session_id!r} is not valid Unicode; it cannot be fetched")
    if len(session_id) > MAX_ID_CHARS:  # the bound every listed id has
        raise Flux0Error(f"a session id longer than {MAX_ID_CHARS} characters is not archived")
    segment = path_segment(session_id, "session id")
    what = f"GET /api/sessions/{segment}"
    response = _stream_array(client, f"/api/sessions/{segment}", None, what)
    body = bytearray()
    try:
        for chunk in _answer_bytes(response):
            body += chunk
            if len(body) > _MAX_EVENT_CHARS:
                raise ResponseTooLargeError(f"{what}: an answer over {_MAX_EVENT_CHARS} bytes")
    finally:
        response.close()
    # read as json.loads reads bytes, but measured before it is built, as a listing entry is: an
    # answer of many small items (16 MiB of them would take ~460 MB built) is refused unbuilt
    decoder = Decoder(build_deep=False, leave_out_large=True)
    try:
        doc = decoder.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON
        raise DecodeError(f"{what}: unreadable JSON: {exc}") from exc
    if decoder.unusual:
        raise DecodeError(f"{what}: the answer holds a value too deep, too costly or too long to read")
    session = Session.from_dict(doc)
    if session.id != session_id:  # another session's document: never schedule what was not configured
        raise DecodeError(f"{what}: the answer is another session's ({session.id[:80]!r})")
    return session, len(body)


def retrieve_sessions(session_ids: Sequence[str], warnings: Warnings) -> Callable[[Flux0, Emit], int]:
    """A job: the configured sessions, one request each, handed over in pages; returns how many."""

    def run(client: Flux0, emit: Emit) -> int:
        found: List[Session] = []
        count = chars = 0
        for session_id in session_ids:
            try:
                session, size = _retrieve_session(client, session_id)
            except NotFoundError:
                warnings.once(f"session {session_id} does not exist on the server; skipping it")
                continue
            # any other failure (a 503, a 403, a wrong answer) fails this lookup's job, as a failed
            # listing: --once exits 1, the daemon tries it again alone, backing off
            found.append(session)
            chars += size
            if len(found) >= LISTING_PAGE or chars >= MAX_BATCH_CHARS:
                emit(found)
                count, found, chars = count + len(found), [], 0
        emit(found)
        return count + len(found)

    return run


class SessionWriter:
    """The writer's half of a poll: batches with their checkpoints, clashes, gaps.

    It remembers which sessions have open gaps (read once, then kept by every reconcile it
    runs), so that after a poll it reads nothing: the poll knows its checkpoint from its writes.
    """

    def __init__(self, store: Archive, gap_patience: float, seen_here: Optional[SeenHere] = None) -> None:
        self.store = store
        self.gap_patience = gap_patience
        self.seen_here = seen_here or SeenHere()  # gap ages on this process's own clock too
        self._gapped: Optional[Set[str]] = None  # sessions with an open gap, read at the first finish

    def write(self, session_id: str, batch: Sequence[RawEvent], generation: Optional[int] = None) -> WriteResult:
        """Store one batch; returns what it did (how many events were new, the checkpoint)."""
        result = self.store.write_batch(session_id, batch, generation)
        self._report(session_id, result)
        return result

    def write_many(
        self, batches: Sequence[Tuple[str, Sequence[RawEvent]]], generations: Optional[Dict[str, int]] = None
    ) -> List[Union[WriteResult, Exception]]:
        """Store the batches of several sessions: for each, what it did (a batch without rows
        gives NOTHING_WRITTEN), or the error (one of ``BATCH_FAILURES``) that kept it out.
        ``generations``: each session's as its poll began (a stale batch writes nothing, see
        :meth:`flux0sync.store.Store.write_rows`).

        On SQLite (``write_rows``) they share one transaction, each batch with its own
        checkpoint. A batch with an event that has no id is left out before anything is
        written, and if the disk fills up each batch is tried alone, so one oversized batch
        costs only its own session.
        """
        outcome: List[Union[WriteResult, Exception]] = [NOTHING_WRITTEN] * len(batches)
        failed: Dict[str, Exception] = {}  # a session's later batches wait for its failed one: left out too
        write_rows = getattr(self.store, "write_rows", None)
        if write_rows is None or len(batches) == 1:  # PostgreSQL: one transaction per batch
            for n, (session_id, batch) in enumerate(batches):
                try:
                    if session_id in failed:
                        raise failed[session_id]
                    outcome[n] = self.write(session_id, batch, (generations or {}).get(session_id))
                except BATCH_FAILURES as exc:
                    outcome[n] = failed[session_id] = exc
            return outcome
        pending: List[Tuple[int, str, List[EventRow]]] = []
        for n, (session_id, batch) in enumerate(batches):
            try:
                if session_id in failed:
                    raise failed[session_id]
                rows = event_rows(session_id, batch)
            except UnidentifiableEventError as exc:
                outcome[n] = failed[session_id] = exc
                continue
            if rows:
                pending.append((n, session_id, rows))
        if not pending:
            return outcome
        try:
            batch_rows = [(session_id, rows) for _, session_id, rows in pending]
            results: List[WriteResult] = write_rows(batch_rows, generations)
        except StoreFullError as exc:
            for n, session_id, rows in pending:
                outcome[n] = exc if len(pending) == 1 else self._write_alone(write_rows, session_id, rows, generations)
            return outcome
        except StoreBusyError as exc:  # it waited its patience out already: not once more per batch
            for n, _, _ in pending:
                outcome[n] = exc
            return outcome
        for (n, session_id, _), result in zip(pending, results):
            self._report(session_id, result)
            outcome[n] = result
        return outcome

    def _write_alone(
        self, write_rows: Any, session_id: str, rows: List[EventRow], generations: Optional[Dict[str, int]]
    ) -> Union[WriteResult, Exception]:
        try:
            result: WriteResult = write_rows([(session_id, rows)], generations)[0]
        except BATCH_FAILURES as exc:
            return exc
        self._report(session_id, result)
        return result

    @staticmethod
    def _report(session_id: str, result: WriteResult) -> None:
        if result.conflicts:
            log.warning(
                "session %s: %d events clash with stored ones (same id or offset, different content);"
                " kept in the conflicts table",
                session_id,
                result.conflicts,
            )

    def finish(
        self,
        session_id: str,
        highest_seen: int,
        checkpoint: Optional[int] = None,
        *,
        may_pass: bool = True,
        generation: Optional[int] = None,
    ) -> int:
        """After a complete answer: hold an offset gap open, or record and pass it once too old.

        ``checkpoint`` is the session's as the poll's own writes left it (read if not given).
        With ``may_pass`` False (the poll skipped or did not finish part of its answer) gaps are
        recorded, none passed; none is passed either if the session was re-created since the
        poll began (its ``generation`` moved on). Returns the checkpoint after: it moves only
        if a gap was passed.
        """
        if self._gapped is None:
            self._gapped = {gap.session_id for gap in self.store.gaps(open_only=True)}
        if checkpoint is None:
            checkpoint = self.store.checkpoint(session_id)
        if highest_seen <= checkpoint and session_id not in self._gapped:
            return checkpoint
        held, skipped = self.store.reconcile_gaps(
            session_id, self.gap_patience if may_pass else math.inf, generation, self.seen_here
        )
        if not held:
            self.seen_here.forget(session_id)
        if held:
            self._gapped.add(session_id)
        else:
            self._gapped.discard(session_id)
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
        return self.store.checkpoint(session_id) if skipped else checkpoint
