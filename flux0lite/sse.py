"""A streaming Server-Sent Events decoder that follows the WHATWG HTML parsing rules.

Two layers, as the spec describes them:

- :class:`LineSplitter` turns bytes, in any chunking, into lines: it ends lines at CR, LF or
  CRLF (a CR at the end of a read may be half a CRLF, so the line ends at the CR and one LF
  after it is skipped), drops one leading BOM (even split across reads), and refuses a line
  longer than its limit instead of buffering it. Unfinished lines are kept as the pieces that
  brought them and joined once, so work per byte is constant.
- :class:`SSEDecoder` reads each line as a field, ``name:value``, and dispatches an event at a
  blank line. Values are decoded as UTF-8 with U+FFFD for invalid bytes; CR and LF never occur
  inside a UTF-8 sequence, so decoding line by line equals one incremental decoder over the
  whole stream. An event whose data grows past the limit is refused too.

One shortcut sits beside them: at the start of a block, a run of blocks of the one shape flux0
sends (``[event:][id:]data:`` lines, LF endings only, then a blank line) is decoded by one regular
expression match per block. It makes decoding about twice as fast, which keeps it ahead of the
peers in ``bench/`` (a flux0 stream is almost all such blocks); anything else falls through to
the two layers. Its contract is ``tests/test_sse.py::test_shortcut_decodes_as_the_two_layers``:
any input, in any chunking, decodes to the same events with and without it (byte by byte, the
shortcut never applies, since no single byte is a whole block).
"""

from __future__ import annotations

import re
from typing import Callable, List, NamedTuple, Optional, Tuple, Union

from .errors import ConfigError, ResponseTooLargeError

__all__ = ["SSEEvent", "SSEDecoder", "LineSplitter", "DEFAULT_MAX_LINE_BYTES"]

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_LONG_LINE = 65536
# Event names decoded once: the names flux0 sends (read-only; other names are decoded each time)
_KNOWN_NAMES = {b"": "message", b"message": "message", b"status": "status", b"chunk": "chunk"}
# One whole block of the shape flux0 sends, in a read without CR; the optional space after each
# colon is not part of the value, and an id with NUL is not simple.
_SIMPLE_BLOCK = re.compile(rb"(?:event: ?([^\n]*)\n)?(?:id: ?([^\n\x00]*)\n)?data: ?([^\n]*)\n\n")


class SSEEvent(NamedTuple):
    """One dispatched event.

    ``event`` is the event type (``"message"`` when the block named none); ``id`` is the last
    event ID in force when it was dispatched (IDs persist across events; ``""`` when none);
    ``retry`` is the reconnection time the block itself set, in ms, or None.
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: Optional[int] = None


# An event from a tuple of its four fields, as _new_event(SSEEvent, fields): what
# SSEEvent._make does, without its Python frame (one per event) or the keyword handling of
# SSEEvent(...).
_new_event = tuple.__new__


def _too_long(limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(f"SSE line or event longer than {limit} bytes; stream rejected")


class LineSplitter:
    """Bytes in, complete lines out (without their terminators)."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._partial: List[bytes] = []  # the unfinished line, as the reads that brought it
        self._partial_len = 0
        self._skip_lf = False  # the last read ended with CR: an LF first in the next is its half
        self._bom_checked = False

    @property
    def at_line_start(self) -> bool:
        """True when the next byte starts a line: nothing buffered, no CR half-way, BOM done."""
        return self._bom_checked and not self._partial and not self._skip_lf

    @property
    def has_partial(self) -> bool:
        """True while an unfinished line (or a possible BOM's first bytes) is buffered."""
        return bool(self._partial)

    def feed(self, data: bytes) -> List[bytes]:
        if not data:
            return []
        if not self._bom_checked:
            data = self._strip_bom(data)
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 10:
                data = data[1:]
        if not data:
            return []
        if b"\r" in data:
            pieces = data.splitlines(True)  # bytes.splitlines ends lines at CR, LF and CRLF only
            tail = b"" if pieces[-1][-1] in b"\r\n" else pieces.pop()
            self._skip_lf = not tail and pieces[-1][-1] == 13
            lines = [p[:-2] if p[-1] == 10 and p[-2:-1] == b"\r" else p[:-1] for p in pieces]
        elif b"\n" in data:
            lines = data.split(b"\n")
            tail = lines.pop()
        else:  # the middle of a long line
            self._buffer(data)
            return []
        if lines and self._partial:
            self._partial.append(lines[0])
            lines[0] = b"".join(self._partial)
            self._partial, self._partial_len = [], 0
            if len(lines[0]) > self._max:
                raise _too_long(self._max)
        if len(data) > self._max and any(len(line) > self._max for line in lines):
            raise _too_long(self._max)
        if tail:
            self._buffer(tail)
        return lines

    def reset(self) -> None:
        """Forget the unfinished line (end of stream, or a stream rejected)."""
        self._partial, self._partial_len = [], 0

    def _buffer(self, piece: bytes) -> None:
        self._partial.append(piece)
        self._partial_len += len(piece)
        if self._partial_len > self._max:
            self.reset()
            raise _too_long(self._max)

    def _strip_bom(self, data: bytes) -> bytes:
        head = b"".join(self._partial) + data
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._partial = [head]  # maybe a BOM split across reads: wait for more
            return b""
        self._bom_checked = True
        self._partial, self._partial_len = [], 0
        return head[len(_BOM) :] if head.startswith(_BOM) else head


def _simple_blocks(data: bytes, pos: int, last_id: str, emit: Callable[[SSEEvent], None]) -> Tuple[int, str]:
    """Decode the simple blocks from ``pos`` on: where they end, and the last event ID."""
    match = _SIMPLE_BLOCK.match
    while True:
        found = match(data, pos)
        if found is None:
            return pos, last_id
        event_type, event_id, value = found.group(1, 2, 3)
        if event_id is not None:
            last_id = event_id.decode("utf-8", "replace")
        event_type = event_type or b""
        name = _KNOWN_NAMES.get(event_type) or event_type.decode("utf-8", "replace")
        emit(_new_event(SSEEvent, (value.decode("utf-8", "replace"), name, last_id, None)))
        pos = found.end()


MAX_RETRY_MS = 2**64 - 1


def _retry_ms(digits: bytes) -> Optional[int]:
    """A ``retry:`` value's ASCII digits as milliseconds, or None when they exceed 64 bits.

    Browsers keep the reconnection time in 64 bits and ignore a value that does not fit, as
    here: a hostile server's thousand-digit number is an invalid field, never a ValueError from
    ``int()``'s digit limit. Leading zeros do not count.
    """
    significant = digits.lstrip(b"0")
    if len(significant) > 20:
        return None
    value = int(significant or b"0")
    return value if value <= MAX_RETRY_MS else None


class SSEDecoder:
    """Incremental SSE decoder: ``feed(bytes) -> [SSEEvent]``, then ``close()`` at end of stream."""

    shortcut = True  # the simple-block shortcut (see the module docstring); tests turn it off

    def __init__(self, *, last_event_id: str = "", max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ConfigError("max_line_bytes must be >= 1")
        self._max = max_line_bytes
        self._lines = LineSplitter(max_line_bytes)
        self._last_event_id = last_event_id
        self._retry: Optional[int] = None
        self._closed = False
        self._reset_block()

    def _reset_block(self) -> None:
        self._data: List[Union[bytes, memoryview]] = []
        self._data_size = 0
        self._event_type = b""
        self._id_buffer: Optional[str] = None
        self._block_retry: Optional[int] = None

    @property
    def last_event_id(self) -> str:
        """What a reconnect would send as ``Last-Event-ID`` (``""``: send no header)."""
        return self._last_event_id

    @property
    def retry(self) -> Optional[int]:
        """The reconnection time the server asked for, in ms, or None if it never did."""
        return self._retry

    @property
    def has_pending(self) -> bool:
        """True when part of an event is buffered: the stream would end mid-event.

        (A lone ``retry:`` line does not count: it has already taken effect.)
        """
        return bool(self._lines.has_partial or self._data or self._event_type or self._id_buffer is not None)

    def feed(self, data: bytes) -> List[SSEEvent]:
        if self._closed:
            raise ValueError("feed() after close()")
        events: List[SSEEvent] = []
        if not self.shortcut or b"\n" not in data or b"\r" in data or len(data) > self._max:
            self._read_lines(data, events)
            return events
        pos, size = 0, len(data)
        while pos < size:
            if self._lines.at_line_start and self._block_is_empty():
                pos, self._last_event_id = _simple_blocks(data, pos, self._last_event_id, events.append)
            if pos < size:
                # the two layers, up to the end of this block, so that the shortcut may resume
                blank = data.find(b"\n\n", pos)
                end = size if blank < 0 else blank + 2
                self._read_lines(data[pos:end] if pos or end < size else data, events)
                pos = end
        return events

    def _read_lines(self, data: bytes, events: List[SSEEvent]) -> None:
        try:
            lines = self._lines.feed(data)
        except ResponseTooLargeError:
            self._reset_block()
            raise
        if lines:
            events += self._read_fields(lines)

    def _block_is_empty(self) -> bool:
        return not self._data and not self._event_type and self._id_buffer is None and self._block_retry is None

    def close(self) -> List[SSEEvent]:
        """End of stream: an unterminated final line and an undispatched block are discarded.

        A trailing CR was already taken as a line terminator when it arrived, so nothing that
        the spec dispatches is left to flush; the list is returned for symmetry with ``feed``.
        """
        self._closed = True
        self._lines.reset()
        self._reset_block()
        return []

    def _read_fields(self, lines: List[bytes]) -> List[SSEEvent]:
        """Apply complete lines, as the spec's "process the field" and "dispatch the event".

        The block being built lives in locals and is written back once per call: per-line
        attribute access would dominate the cost of a stream of small events.
        """
        events: List[SSEEvent] = []
        emit, limit = events.append, self._max
        data, size, event_type = self._data, self._data_size, self._event_type
        id_buffer, block_retry, last_id = self._id_buffer, self._block_retry, self._last_event_id
        for line in lines:
            if not line:  # a blank line dispatches the block
                if id_buffer is not None:
                    last_id, id_buffer = id_buffer, None
                if data:
                    raw = data[0] if len(data) == 1 else b"\n".join(data)
                    name = _KNOWN_NAMES.get(event_type) or event_type.decode("utf-8", "replace")
                    emit(_new_event(SSEEvent, (str(raw, "utf-8", "replace"), name, last_id, block_retry)))
                    data, size = [], 0
                event_type, block_retry = b"", None
                continue
            if len(line) > _LONG_LINE and line.startswith(b"data:"):
                # a long value is referenced, not copied (decoding reads it once)
                value: Union[bytes, memoryview] = memoryview(line)[6 if line[5] == 32 else 5 :]
                size += len(value) + 1
                if size > limit:
                    self._reset_block()
                    raise _too_long(limit)
                data.append(value)
                continue
            field, colon, value = line.partition(b":")
            if not field:  # a line starting with ":" is a comment
                continue
            if colon and value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                size += len(value) + 1
                if size > limit:
                    self._reset_block()
                    raise _too_long(limit)
                data.append(value)
            elif field == b"event":
                event_type = value
            elif field == b"id":
                if b"\x00" not in value:
                    id_buffer = value.decode("utf-8", "replace")
            elif field == b"retry":
                if value.isdigit():  # bytes.isdigit() is ASCII-only: exactly [0-9]+
                    retry = _retry_ms(value)
                    if retry is not None:
                        self._retry = block_retry = retry
            # any other field is ignored, as the spec says
        self._data, self._data_size, self._event_type = data, size, event_type
        self._id_buffer, self._block_retry, self._last_event_id = id_buffer, block_retry, last_id
        return events
