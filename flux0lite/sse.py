"""A streaming Server-Sent Events decoder that follows the WHATWG HTML parsing rules.

Bytes go in as they arrive off the socket, in any chunking; events come out. The decoder works
on bytes: it splits lines on CR, LF and CRLF only (a CR at the end of a read may be half a CRLF,
so the line is processed at the CR and one LF after it is skipped), then decodes field values as
UTF-8 with U+FFFD for invalid bytes. CR and LF never occur inside a UTF-8 sequence, so per-line
decoding is equivalent to one incremental decoder over the whole stream. One leading BOM is
stripped, even when it is split across reads.

Memory stays bounded: a line or an event longer than ``max_line_bytes`` raises
:class:`ResponseTooLargeError` instead of growing without limit. Work per byte is constant:
unfinished lines are kept in a buffer and never rescanned.
"""

from __future__ import annotations

import re
from typing import List, NamedTuple, Optional, Union

from .errors import ConfigError, ResponseTooLargeError

__all__ = ["SSEEvent", "SSEDecoder", "DEFAULT_MAX_LINE_BYTES"]

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_CR = 13
_LF = 10
_EVENT_NAMES = {b"": "message", b"message": "message", b"status": "status", b"chunk": "chunk"}
_new_event = tuple.__new__
# One whole block of the shape flux0 sends: optional "event:", optional "id:" (without NUL),
# one "data:" line, blank line. The optional space after each colon is not part of the value.
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


class SSEDecoder:
    """Incremental SSE decoder: ``feed(bytes) -> [SSEEvent]``, then ``close()`` at end of stream."""

    def __init__(self, *, last_event_id: str = "", max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ConfigError("max_line_bytes must be >= 1")
        self._max = max_line_bytes
        self._last_event_id = last_event_id
        self._retry: Optional[int] = None
        # the unfinished line, as the reads that brought it (joined once, when it completes)
        self._partial: List[bytes] = []
        self._partial_len = 0
        self._skip_lf = False
        self._bom_checked = False
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
        return bool(self._partial or self._data or self._event_type or self._id_buffer is not None)

    def feed(self, data: bytes) -> List[SSEEvent]:
        if self._closed:
            raise ValueError("feed() after close()")
        if not data:
            return []
        if not self._bom_checked:
            data = self._strip_bom(data)
            if not data:
                return []
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == _LF:
                data = data[1:]
                if not data:
                    return []
        if b"\n" not in data and b"\r" not in data:
            # The middle of a long line: just buffer it.
            self._buffer(data)
            return []
        events: List[SSEEvent] = []
        if b"\r" in data:
            pieces = data.splitlines(True)
            tail = b"" if pieces[-1][-1] in (_CR, _LF) else pieces.pop()
            lines = [p[:-2] if p[-1] == _LF and p[-2:-1] == b"\r" else p[:-1] for p in pieces]
            self._skip_lf = not tail and pieces[-1][-1] == _CR
            self._lines(lines, tail, len(data), events)
            return events
        # LF only, as flux0 sends. Whole blocks of the usual shape are decoded by one regular
        # expression match each; anything else (a block cut by the read, several data lines,
        # comments, retry) goes line by line, after which the fast path resumes.
        pos, size = 0, len(data)
        fast = size <= self._max
        while pos < size:
            if fast and not self._partial and self._block_is_empty():
                pos = self._fast_blocks(data, pos, events)
                if pos >= size:
                    break
            if not self._partial and data[pos] == _LF:
                cut = pos + 1  # a blank line right at a line start
            else:
                blank = data.find(b"\n\n", pos)
                cut = blank + 2 if blank >= 0 else size
            lines = data[pos:cut].split(b"\n")
            tail = lines.pop()
            self._lines(lines, tail, cut - pos, events)
            pos = cut
        return events

    def _block_is_empty(self) -> bool:
        return not self._data and not self._event_type and self._id_buffer is None and self._block_retry is None

    def _fast_blocks(self, data: bytes, pos: int, events: List[SSEEvent]) -> int:
        """Decode consecutive ``[event:][id:]data:`` blocks from ``pos``; returns where it stopped."""
        match = _SIMPLE_BLOCK.match
        emit = events.append
        last_id = self._last_event_id
        while True:
            found = match(data, pos)
            if found is None:
                break
            event_type, event_id, value = found.group(1, 2, 3)
            if event_id is not None:
                last_id = event_id.decode("utf-8", "replace")
            name = _EVENT_NAMES.get(event_type) if event_type is not None else "message"
            if name is None:
                name = _event_name(event_type)
            emit(_new_event(SSEEvent, (value.decode("utf-8", "replace"), name, last_id, None)))
            pos = found.end()
        self._last_event_id = last_id
        return pos

    def _lines(self, lines: List[bytes], tail: bytes, span: int, events: List[SSEEvent]) -> None:
        """Process complete lines (and buffer an unfinished tail) the general way."""
        if lines:
            if self._partial:
                self._partial.append(lines[0])
                lines[0] = b"".join(self._partial)
                self._partial = []
                self._partial_len = 0
                if len(lines[0]) > self._max:
                    self._too_long()
            if span > self._max and any(len(line) > self._max for line in lines):
                self._too_long()
            self._process(lines, events)
        if tail:
            self._buffer(tail)

    def close(self) -> List[SSEEvent]:
        """End of stream: an unterminated final line and an undispatched block are discarded.

        A trailing CR was already taken as a line terminator when it arrived, so nothing that
        the spec dispatches is left to flush; the list is returned for symmetry with ``feed``.
        """
        self._closed = True
        self._partial = []
        self._partial_len = 0
        self._reset_block()
        return []

    def _buffer(self, piece: bytes) -> None:
        self._partial.append(piece)
        self._partial_len += len(piece)
        if self._partial_len > self._max:
            self._too_long()

    def _too_long(self) -> None:
        self._partial = []
        self._partial_len = 0
        self._reset_block()
        raise ResponseTooLargeError(f"SSE line or event longer than {self._max} bytes; stream rejected")

    def _strip_bom(self, data: bytes) -> bytes:
        head = b"".join(self._partial) + data
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._partial = [head]
            return b""
        self._bom_checked = True
        self._partial = []
        self._partial_len = 0
        if head.startswith(_BOM):
            return head[len(_BOM) :]
        return head

    def _process(self, lines: List[bytes], events: List[SSEEvent]) -> None:
        """Apply complete lines (terminators removed).

        This is the hot loop: block state lives in locals and is written back once per call,
        and dispatch is inlined, because per-line attribute and call overhead dominates.
        """
        data = self._data
        size = self._data_size
        event_type = self._event_type
        id_buffer = self._id_buffer
        block_retry = self._block_retry
        last_id = self._last_event_id
        limit = self._max
        emit = events.append
        for line in lines:
            if line:
                first = line[0]
                if first == 100 and line.startswith(b"data:"):
                    start = 6 if len(line) > 5 and line[5] == 32 else 5
                    # a long value is referenced, not copied (decoding reads it once)
                    value: Union[bytes, memoryview] = line[start:] if len(line) < 65536 else memoryview(line)[start:]
                    size += len(value) + 1
                    if size > limit:
                        self._too_long()
                    data.append(value)
                elif first == 101 and line.startswith(b"event:"):
                    event_type = bytes(line[7:] if len(line) > 6 and line[6] == 32 else line[6:])
                elif first == 105 and line.startswith(b"id:"):
                    value = line[4:] if len(line) > 3 and line[3] == 32 else line[3:]
                    if b"\x00" not in value:
                        id_buffer = value.decode("utf-8", "replace")
                elif first != 58:  # ':' starts a comment; anything else is a general field
                    name_bytes, colon, value = line.partition(b":")
                    if colon and value[:1] == b" ":
                        value = value[1:]
                    if name_bytes == b"data":  # "data" with no colon: an empty data line
                        size += 1
                        data.append(value)
                    elif name_bytes == b"event":
                        event_type = bytes(value)
                    elif name_bytes == b"id":
                        if b"\x00" not in value:
                            id_buffer = value.decode("utf-8", "replace")
                    elif name_bytes == b"retry":
                        if value.isdigit():  # bytes.isdigit() is ASCII-only: exactly [0-9]+
                            self._retry = block_retry = int(value)
                continue
            # a blank line dispatches the block
            if id_buffer is not None:
                last_id = id_buffer
                id_buffer = None
            if data:
                raw = data[0] if len(data) == 1 else b"\n".join(data)
                name = _EVENT_NAMES.get(event_type)
                if name is None:
                    name = _event_name(event_type)
                emit(_new_event(SSEEvent, (str(raw, "utf-8", "replace"), name, last_id, block_retry)))
                data = []
                size = 0
            event_type = b""
            block_retry = None
        self._data = data
        self._data_size = size
        self._event_type = event_type
        self._id_buffer = id_buffer
        self._block_retry = block_retry
        self._last_event_id = last_id


def _event_name(raw: bytes) -> str:
    name = raw.decode("utf-8", "replace")
    if len(_EVENT_NAMES) < 256 and len(raw) <= 64:  # a small cache; a hostile server cannot grow it
        _EVENT_NAMES[raw] = name
    return name
