"""The live reply stream of ``sessions.create_event``: typed events and the reply they build.

:class:`EventStream` is an iterator and a context manager; leaving the ``with`` block (or
calling ``close``) closes the connection, which tells flux0 to cancel the agent run. Stream
events are decoded lazily, as bytes arrive, so tokens can be shown while they stream.
"""

from __future__ import annotations

import json
import threading
import weakref
from typing import Any, AsyncIterator, Callable, Dict, Generator, Iterator, List, Optional, Tuple, Type, Union, cast

from .aio import StreamWorker
from .errors import ConfigError, ContentTypeError, DecodeError, ResponseTooLargeError, StreamError
from .jsonmodel import LazyDataclass, field, model, spec_of
from .models import ChunkEvent, RawStreamEvent, StatusEvent, StreamEvent
from .patch import VALUE_OVERHEAD, PatchedDocument, sized_copy
from .sse import DEFAULT_MAX_LINE_BYTES, SSEDecoder, SSEEvent
from .streamshapes import ShapeReader, chunk_reader, scan_json, status_reader
from .transport import DEFAULT_MAX_RESPONSE_BYTES, StreamingResponse

__all__ = [
    "EventStream",
    "AsyncEventStream",
    "Reply",
    "ReplyAssembler",
    "parse_stream_event",
    "DEFAULT_MAX_REPLY_BYTES",
]

_DONE = object()

DEFAULT_MAX_REPLY_BYTES = DEFAULT_MAX_RESPONSE_BYTES
"""What a :class:`ReplyAssembler` keeps at most, by default: the default body limit, 256 MiB."""

_TOKEN_OVERHEAD = 2 * VALUE_OVERHEAD
"""Charged per token of a patch path other than ``/-``: a container it may create (an object
with one member holds ~230 bytes on Python 3.9) and the slot of its key."""

_MESSAGE_OVERHEAD = 3 * VALUE_OVERHEAD
"""Charged per message (per chunk ``event_id``), besides its id: the document, its entry in the
assembler and the list or object at its root."""


def not_a_stream(method: str, url: str, content_type: str) -> ContentTypeError:
    got = content_type or "no content type"
    return ContentTypeError(f"expected text/event-stream from {method} {url}, got {got!r}")


# json.loads(text) is the scanner's call plus two whitespace matches and three Python frames
# (loads, decode, raw_decode), which on a stream of small events cost a third as much as the
# parsing itself: the scanner is called directly. It raises StopIteration where no value starts
# at 0 (leading whitespace too): json.loads decides then. Before it, flux0's own shapes are
# read by one match each (see :mod:`.streamshapes`).
_STREAM_MODELS: Dict[str, Tuple[Type[Union[StatusEvent, ChunkEvent]], Callable[[], ShapeReader]]] = {
    "status": (StatusEvent, status_reader),
    "chunk": (ChunkEvent, chunk_reader),
}
# (shape reader, model reader) per event name, made on first use of each
_STREAM_READERS: Dict[str, Tuple[ShapeReader, Callable[[Any], StreamEvent]]] = {}


def _load_json_slowly(sse: SSEEvent) -> Any:
    """json.loads' answer for what the scanner alone did not take."""
    text = sse.data
    try:
        return json.loads(text)  # a value with whitespace around it, or an error
    except RecursionError as exc:
        raise DecodeError(f"{sse.event!r} stream event: JSON nested too deeply") from exc
    except ValueError as exc:
        raise DecodeError(f"{sse.event!r} stream event: malformed JSON: {exc}") from exc


def parse_stream_event(sse: SSEEvent) -> StreamEvent:
    """Type one SSE event: ``status`` and ``chunk`` by their JSON; other names kept raw."""
    readers = _STREAM_READERS.get(sse.event)
    if readers is None:
        known = _STREAM_MODELS.get(sse.event)
        if known is None:
            return RawStreamEvent(event=sse.event, data=sse.data, id=sse.id)
        model, shape_reader = known
        readers = _STREAM_READERS[sse.event] = (shape_reader(), spec_of(model).read_owned)
    read_shape, read = readers
    text = sse.data
    event = read_shape(text)
    if event is not None:
        return event  # type: ignore[no-any-return]
    try:
        value, end = scan_json(text, 0)
    except (StopIteration, ValueError, RecursionError):
        end = -1
    return read(value if end == len(text) else _load_json_slowly(sse))


@model(frozen=True)
class Reply(LazyDataclass):
    """What a finished stream said: text, structured messages, statuses, and any error.

    A frozen dataclass, made on first use (:func:`flux0lite.jsonmodel.model`)."""

    text: str
    messages: Dict[str, Any] = field(default_factory=dict)
    statuses: Tuple[str, ...] = ()
    error: Any = None

    @property
    def tool_calls(self) -> List[Dict[str, Any]]:
        calls: List[Dict[str, Any]] = []
        for doc in self.messages.values():
            if isinstance(doc, dict) and isinstance(doc.get("tool_calls"), list):
                calls.extend(c for c in doc["tool_calls"] if isinstance(c, dict))
        return calls


class ReplyAssembler:
    """Applies chunk patches per ``event_id`` in arrival order; feed it every stream event.

    What it keeps is bounded: once its estimate of what it holds exceeds ``max_bytes`` it
    raises :class:`ResponseTooLargeError` (a chunk or status event over the cap changes no
    message but stays counted, so every later event is refused too; a value is measured and
    copied only until the count passes the cap), so a stream that never stops cannot exhaust
    memory. The estimate
    (``kept_bytes``) charges :data:`~flux0lite.patch.VALUE_OVERHEAD` bytes plus one per
    character for every status text and error detail (by
    :func:`~flux0lite.patch.sized_copy`), every patch value (replaced or removed values are
    not refunded), every patch path but ``/-`` (plus ``2 * VALUE_OVERHEAD`` per token: the
    keys and containers it may create), and every message id (plus ``3 * VALUE_OVERHEAD``). The
    memory actually held stays under about 4 x ``max_bytes`` (text outside Latin-1 takes up
    to 4 bytes per character; a small object up to ~3 x its charge).

    A chunk event's patches apply all or nothing (RFC 6902): one rejected with
    :class:`~flux0lite.errors.PatchError` changes no message and is not counted.
    Every patch costs O(log n) in the length of the list it touches (see :mod:`.patch`).
    """

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ConfigError(f"max_bytes must be a positive int, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.kept_bytes = 0
        # Each message by its event id: a plain list while it holds only text pieces appended
        # at /- (a text reply, copied by list()), else the document its patches build.
        self._documents: Dict[str, Union[List[str], PatchedDocument]] = {}
        self._statuses: List[str] = []
        self._error: Any = None

    def add(self, event: StreamEvent) -> None:
        # An exact type test first: isinstance() on a model class is slow (and no cast(): a call).
        if type(event) is ChunkEvent or (type(event) is not StatusEvent and isinstance(event, ChunkEvent)):
            self._add_chunk(event)
        elif type(event) is StatusEvent or isinstance(event, StatusEvent):
            data = event.data
            status = data.status
            kept = self.kept_bytes + len(status) + VALUE_OVERHEAD
            if status == "error" or kept > self.max_bytes:
                self._add_rare_status(status, data.data, kept)
                return
            self.kept_bytes = kept
            self._statuses.append(status)

    def _add_rare_status(self, status: str, detail: Any, kept: int) -> None:
        """A status event that is an error, or over the cap."""
        error: Any = "error"
        if status == "error" and detail not in (None, {}):
            # our own copy (no caller's edit reaches a reply), not made past the cap
            error, size = sized_copy(detail, self.max_bytes - kept)
            kept += size
        self.kept_bytes = kept
        if kept > self.max_bytes:
            raise self._too_large()
        self._statuses.append(status)
        if status == "error":
            self._error = error

    def _too_large(self) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"the streamed reply holds over {self.max_bytes} bytes (max_bytes of ReplyAssembler)"
        )

    def _add_chunk(self, event: ChunkEvent) -> None:
        patches = event.patches
        event_id = event.event_id
        document = self._documents.get(event_id)
        if len(patches) == 1:
            # One text piece appended to a message: nearly every event of a text reply. As
            # below, without the lists: counted, checked, then applied.
            patch = patches[0]
            value = patch.value
            if type(value) is str and patch.path == "/-" and patch.op == "add":
                kept = self.kept_bytes + VALUE_OVERHEAD + len(value)
                if document is None:
                    kept += _MESSAGE_OVERHEAD + len(event_id)
                if kept > self.max_bytes:
                    self.kept_bytes = kept
                    raise self._too_large()
                if isinstance(document, list):
                    document.append(value)
                elif document is None:
                    self._documents[event_id] = [value]
                else:
                    # fails only on a root that is no list, object or nothing, changing
                    # nothing: then uncounted
                    document.apply_own("add", "/-", value)
                self.kept_bytes = kept
                return
        before = kept = self.kept_bytes
        if document is None:
            kept += _MESSAGE_OVERHEAD + len(event_id)
        # Every value is measured, and copied for the document to keep, before any is
        # applied: an event over the cap changes no document.
        owned: List[Tuple[str, str, Any]] = []  # each patch's fields, read once (op, path, value)
        pieces_only = True  # text pieces at /- only: the first fails or none (see below)
        for patch in patches:
            op, path, value = patch.op, patch.path, patch.value
            if type(value) is str and path == "/-" and op == "add":  # by far the most common patch
                kept += VALUE_OVERHEAD + len(value)
            else:
                pieces_only = False
                if path != "/-":  # the keys and containers a path may create
                    kept += len(path) + _TOKEN_OVERHEAD * path.count("/")
                if op == "remove":
                    pass  # nothing kept
                elif type(value) is str:
                    kept += VALUE_OVERHEAD + len(value)
                else:
                    value, size = sized_copy(value, self.max_bytes - kept)  # not copied past the cap
                    kept += size
            owned.append((op, path, value))
        self.kept_bytes = kept
        if kept > self.max_bytes:
            raise self._too_large()
        if pieces_only and (isinstance(document, list) or (document is None and owned)):
            # A message of text pieces only stays a plain list of them (appending to one
            # cannot fail). (A message no patch has touched yet is null: a document.)
            pieces = [value for _, _, value in owned]
            if document is None:
                self._documents[event_id] = pieces
            else:
                document += pieces
            return
        new = document is None
        if document is None:
            document = self._documents[event_id] = PatchedDocument()
        elif isinstance(document, list):  # another patch to a message of text pieces: the list becomes its root
            document = self._documents[event_id] = PatchedDocument.owning(document)
        try:
            if pieces_only or new:
                # No undo log needed: appending a text piece fails only on a root that is no
                # list, object or nothing, where the first one fails and changes nothing; a
                # new message is dropped whole.
                for op, path, value in owned:
                    document.apply_own(op, path, value)
            else:
                document.apply_all(owned)
        except BaseException:
            self.kept_bytes = before  # nothing of the event is kept
            if new:
                del self._documents[event_id]  # a message only the rejected event started
            raise

    def document(self, event_id: str) -> Any:
        """The message ``event_id`` as plain JSON so far (a copy), or None."""
        document = self._documents.get(event_id)
        if isinstance(document, list):
            return list(document)
        return document.value() if document is not None else None

    @property
    def text(self) -> str:
        return "".join(
            "".join(document) if isinstance(document, list) else document.text()
            for document in self._documents.values()
        )

    def reply(self) -> Reply:
        return Reply(
            text=self.text,
            messages={
                event_id: list(document) if isinstance(document, list) else document.value()
                for event_id, document in self._documents.items()
            },
            statuses=tuple(self._statuses),
            error=sized_copy(self._error)[0],  # each reply its own copy, as messages
        )


class EventStream:
    """Iterate typed stream events; ``reply()`` drains the stream and returns the :class:`Reply`.

    Threads may share one: their reads take turns, each event going to one of them. A read after
    a failed one, or after a close before the stream's end, raises :class:`StreamError`."""

    def __init__(
        self,
        response: StreamingResponse,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        self.response = response
        if response.content_type != "text/event-stream":
            response.close()
            raise not_a_stream(response.method, response.url, response.content_type)
        self._decoder = SSEDecoder(max_line_bytes=max_line_bytes)
        self._assembler = ReplyAssembler(max_bytes=max_reply_bytes)
        self._events = self._generate()
        # Reads from several threads take turns, as an async stream's reads do: a generator
        # entered twice at once raises ValueError. (close() never waits for its turn: it ends a
        # read in progress, and closes the generator only when no read is running it.)
        self._reading = threading.Lock()
        self._closed = False
        # The error that ended the events before the stream's end: every later read raises, in
        # any thread, instead of ending as if the stream were whole (as a read after a close does).
        self._failure: Optional[BaseException] = None
        self.finished = False

    @property
    def headers(self) -> Dict[str, str]:
        return self.response.headers

    def _generate(self) -> Generator[StreamEvent, None, None]:
        feed, add = self._decoder.feed, self._assembler.add  # read once, not per event
        try:
            for chunk in self.response.iter_bytes():
                for sse in feed(chunk):
                    event = parse_stream_event(sse)
                    add(event)
                    yield event
            if self._decoder.has_pending:
                raise StreamError(f"{self.response.method} {self.response.url}: stream ended in the middle of an event")
            self._decoder.close()
            self.finished = True
        finally:
            self.response.close()

    def __iter__(self) -> "EventStream":
        return self

    def __next__(self) -> StreamEvent:
        with self._reading:
            if self._failure is not None:
                raise self._cut_short(f"by an earlier {type(self._failure).__name__}") from self._failure
            if self._closed and not self.finished:
                raise self._cut_short("by a close before its end")
            try:
                return next(self._events)
            except StopIteration:
                if self.finished:
                    raise
                # closed before its end, by this thread or another (maybe between two reads of
                # a loop that would else end as if the reply were whole)
                raise self._cut_short("by a close before its end") from None
            except BaseException as exc:
                self._failure = exc
                raise

    def _cut_short(self, reason: str) -> StreamError:
        return StreamError(
            f"{self.response.method} {self.response.url}: the stream was cut short {reason};"
            " what arrived is in its .assembler"
        )

    def text_deltas(self) -> Iterator[str]:
        """Only the reply text, piece by piece, as it arrives."""
        for event in self:
            if isinstance(event, ChunkEvent):
                text = event.text
                if text:
                    yield text

    def reply(self) -> Reply:
        """Read the stream to its end and give the whole reply (a read that fails, or finds the
        stream closed before its end, raises: a reply cut short is no reply)."""
        for _ in self:
            pass
        return self._assembler.reply()

    @property
    def assembler(self) -> ReplyAssembler:
        return self._assembler

    def close(self) -> None:
        """Close the connection, from any thread (a read in progress ends at once), but not
        from a signal handler: it takes the response's lock and closes its reader, which the
        interrupted code may hold (set a flag there, or let ``KeyboardInterrupt`` end the read)."""
        self._closed = True  # first: a read that starts from here on raises (see __next__)
        self.response.close()  # ends a read in progress, in any thread
        if self._reading.acquire(blocking=False):  # no read running: the generator's end runs too
            try:
                self._events.close()
            finally:
                self._reading.release()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncEventStream:
    """The async face of :class:`EventStream`: its reads run in a thread of its own (see
    :class:`~flux0lite.aio.StreamWorker`), never in the loop's default executor. Cancelling a
    read, or ``aclose``, shuts the connection down at once: the loop never waits for the server.
    A read after a cancelled one raises :class:`~flux0lite.errors.StreamError`."""

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream
        self._worker = StreamWorker()
        self._cancelled = False  # a read was cancelled, which shut the stream down
        # Dropped before its end (an ``async for`` left by ``break``, no ``aclose``), it closes
        # its connection, as a dropped EventStream's socket closes, and its thread ends. The
        # finalizer holds the response, not the stream: a failed read's error, kept by the
        # stream, holds frames that hold this object, and the stream would never be collected.
        self._close = weakref.finalize(self, _close_stream, stream.response, self._worker)

    @property
    def headers(self) -> Dict[str, str]:
        return self._stream.headers

    @property
    def assembler(self) -> ReplyAssembler:
        return self._stream.assembler

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self

    def _abort(self) -> None:
        """A read was cancelled: shut the stream down (at once, from the loop's thread)."""
        self._cancelled = True
        self._stream.response.abort()

    def _refuse_if_cancelled(self) -> None:
        # The cancelled read's thread may still be inside the stream, on its way out: another
        # read must not enter it, and the stream has no more events to give anyway.
        if self._cancelled:
            response = self._stream.response
            raise StreamError(f"{response.method} {response.url}: a read of this stream was cancelled, which closed it")

    async def __anext__(self) -> StreamEvent:
        self._refuse_if_cancelled()
        try:
            event: object = await self._worker.run(next, self._stream, _DONE, abort=self._abort)
        except Exception:
            self._worker.stop()
            raise
        if event is _DONE:
            self._worker.stop()
            raise StopAsyncIteration
        return cast(StreamEvent, event)

    async def reply(self) -> Reply:
        self._refuse_if_cancelled()
        try:
            return await self._worker.run(self._stream.reply, abort=self._abort)
        finally:
            self._worker.stop()

    async def aclose(self) -> None:
        self._stream.close()
        self._close()

    async def __aenter__(self) -> "AsyncEventStream":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()


def _close_stream(response: StreamingResponse, worker: StreamWorker) -> None:
    response.close()  # shuts the socket down first: a read in progress ends at once
    worker.stop()
