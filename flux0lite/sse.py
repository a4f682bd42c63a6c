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
from dataclasses import dataclass
from typing import List, Optional

from .errors import ConfigError, ResponseTooLargeError

__all__ = ["SSEEvent", "SSEDecoder", "DEFAULT_MAX_LINE_BYTES"]

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_RETRY_DIGITS = re.compile(rb"[0-9]+")
_CR = 13
_LF = 10


@dataclass(frozen=True)
class SSEEvent:
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
        self._partial = bytearray()
        self._skip_lf = False
        self._bom_checked = False
        self._closed = False
        self._reset_block()

    def _reset_block(self) -> None:
        self._data: List[bytes] = []
        self._data_size = 0
        self._event_type = b""
        self._id_buffer: Optional[str] = None
        self._block_retry: Optional[int] = None
        self._block_started = False

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
        """True when bytes of an undispatched event are buffered (the stream is mid-event)."""
        return bool(self._partial) or self._block_started

    def feed(self, data: bytes) -> List[SSEEvent]:
        if self._closed:
            raise ValueError("feed() after close()")
        if not data:
            return []
        if not self._bom_checked:
            data = self._strip_bom(data)
            if not data:
                return []
        events: List[SSEEvent] = []
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == _LF:
                data = data[1:]
        lines = data.splitlines(True)
        if not lines:
            return events
        last = lines[-1]
        tail_complete = last[-1] in (_CR, _LF)
        complete = lines if tail_complete else lines[:-1]
        if complete:
            if self._partial:
                first = bytes(self._partial) + complete[0]
                self._partial.clear()
                complete[0] = first
            for line in complete:
                end = len(line) - 1
                if line[end] == _LF and end > 0 and line[end - 1] == _CR:
                    end -= 1
                if len(line) > self._max + 2:
                    self._too_long()
                self._process_line(line[:end], events)
            if last[-1] == _CR:
                self._skip_lf = True
        if not tail_complete:
            self._partial += last
            if len(self._partial) > self._max:
                self._too_long()
        return events

    def close(self) -> List[SSEEvent]:
        """End of stream: an unterminated final line and an undispatched block are discarded.

        A trailing CR was already taken as a line terminator when it arrived, so nothing that
        the spec dispatches is left to flush; the list is returned for symmetry with ``feed``.
        """
        self._closed = True
        self._partial.clear()
        self._reset_block()
        return []

    def _too_long(self) -> None:
        self._partial.clear()
        self._reset_block()
        raise ResponseTooLargeError(f"SSE line or event longer than {self._max} bytes; stream rejected")

    def _strip_bom(self, data: bytes) -> bytes:
        head = bytes(self._partial) + data
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._partial = bytearray(head)
            return b""
        self._bom_checked = True
        self._partial.clear()
        if head.startswith(_BOM):
            return head[len(_BOM) :]
        return head

    def _process_line(self, line: bytes, events: List[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == 58:  # ':' starts a comment
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        self._block_started = True
        if name == b"data":
            self._data_size += len(value) + 1
            if self._data_size > self._max:
                self._too_long()
            self._data.append(value)
        elif name == b"event":
            self._event_type = value
        elif name == b"id":
            if b"\x00" not in value:
                self._id_buffer = value.decode("utf-8", "replace")
        elif name == b"retry":
            if _RETRY_DIGITS.fullmatch(value):
                self._retry = self._block_retry = int(value)

    def _dispatch(self, events: List[SSEEvent]) -> None:
        if self._id_buffer is not None:
            self._last_event_id = self._id_buffer
        if self._data:
            raw = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
            events.append(
                SSEEvent(
                    data=raw.decode("utf-8", "replace"),
                    event=self._event_type.decode("utf-8", "replace") if self._event_type else "message",
                    id=self._last_event_id,
                    retry=self._block_retry,
                )
            )
        self._reset_block()
