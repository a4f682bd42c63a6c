"""What a request gives back: a whole :class:`Response`, or a :class:`StreamingResponse`.

Both are read by :class:`RawResponse`, ``http.client``'s response made stricter about what a
server may send first (interim answers) and, under a total deadline, about how long it may
take to send it.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time
import zlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .errors import (
    APIConnectionError,
    ContentTypeError,
    DecodeError,
    Flux0Error,
    ReadTimeout,
    RequestAborted,
    ResponseTooLargeError,
    StreamError,
    TotalTimeout,
    error_for_status,
)
from .httputil import body_preview, error_body, is_json_media_type, media_type

__all__ = ["Response", "StreamingResponse", "RawResponse", "decode_json", "timeout_error", "READ_SIZE"]

READ_SIZE = 64 * 1024
MAX_INTERIM_RESPONSES = 32  # 1xx answers skipped before the final one; more is a hostile server


class UnexpectedInterimResponse(http.client.HTTPException):
    """A ``101 Switching Protocols`` nobody asked for, or an endless run of 1xx answers."""


class _DeadlineSocketIO(socket.SocketIO):
    """A socket reader that, before each read, cuts the socket's timeout to what is left of a
    deadline: a server sending a byte at a time cannot stretch a read past it."""

    def __init__(self, sock: socket.socket, read_timeout: Optional[float], deadline: float) -> None:
        super().__init__(sock, "rb")
        # counted as a reader of the socket, as socket.makefile does (close() uncounts it): else
        # http.client's close of a connection-ended answer closes the fd under the body's reader
        sock._io_refs += 1  # type: ignore[attr-defined]
        self._socket = sock
        self._read_timeout = read_timeout
        self._deadline = deadline

    def readinto(self, b: Any) -> Optional[int]:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the total deadline has passed")
        self._socket.settimeout(left if self._read_timeout is None else min(self._read_timeout, left))
        return super().readinto(b)


class RawResponse(http.client.HTTPResponse):
    """``http.client``'s response, skipping interim answers and reading under a deadline.

    RFC 9110 15.2: a client must skip 1xx answers it does not expect (``103 Early Hints``, a
    stray ``100 Continue``) and read the final answer that follows, on the same connection;
    ``http.client`` skips only 100. A ``101 Switching Protocols`` was never asked for: the
    connection no longer speaks HTTP, so it is an error.
    """

    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: Optional[str] = None,
        url: Optional[str] = None,
        *,
        read_timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        read_ahead: bool = True,
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        if deadline is not None:
            self.fp.close()  # the plain reader read nothing yet: swap it for a deadline-aware one
            self.fp = io.BufferedReader(_DeadlineSocketIO(sock, read_timeout, deadline))
        if not read_ahead:
            # a byte at a time: nothing past the answer's head is taken off the socket (a proxy's
            # answer to CONNECT, after which the socket carries the tunnel)
            self.fp = io.BufferedReader(self.fp.detach(), 1)
        self._interim_seen = 0

    def _read_status(self) -> Tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if status == 101:
                raise UnexpectedInterimResponse("101 Switching Protocols, which was never asked for")
            if not 100 <= status < 200:
                return version, status, reason
            self._interim_seen += 1
            if self._interim_seen > MAX_INTERIM_RESPONSES:
                raise UnexpectedInterimResponse(f"more than {MAX_INTERIM_RESPONSES} interim (1xx) answers")
            http.client.parse_headers(self.fp)  # an interim answer's headers: read and dropped


def timeout_error(what: str, deadline: Optional[float], read_timeout: Optional[float]) -> Exception:
    """The error for a socket timeout: the total deadline's if it has passed, else the read's."""
    if deadline is not None and time.monotonic() >= deadline - 0.01:
        return TotalTimeout(f"{what}: the total deadline has passed")
    return ReadTimeout(f"{what}: no data within the read timeout ({read_timeout} s)")


def decode_json(raw: bytes, what: str) -> Any:
    """Parse a UTF-8 JSON body; anything else is a :class:`DecodeError` naming ``what``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what}: body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise DecodeError(f"{what}: JSON nested too deeply") from exc
    except ValueError as exc:
        raise DecodeError(f"{what}: malformed JSON: {exc}") from exc


class Response:
    """A complete response: status, lower-cased headers and the (decompressed) body.

    ``body_error`` is why an error answer's body could not be read (``body`` is then a note
    saying so); :meth:`raise_for_status` chains the status's error to it."""

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Dict[str, str],
        body: bytes,
        method: str,
        url: str,
        *,
        body_error: Optional[Flux0Error] = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.method = method
        self.url = url
        self.body_error = body_error

    @property
    def content_type(self) -> str:
        return media_type(self.headers)

    def json(self) -> Any:
        if self.content_type and not is_json_media_type(self.content_type):
            raise ContentTypeError(
                f"expected JSON from {self.method} {self.url}, got {self.content_type!r} ({body_preview(self.body)})"
            )
        return decode_json(self.body, f"{self.method} {self.url}")

    def raise_for_status(self) -> None:
        if 200 <= self.status < 300:
            return
        error = error_for_status(
            self.status, error_body(self.body), self.headers, reason=self.reason, method=self.method, url=self.url
        )
        if self.body_error is not None:
            raise error from self.body_error
        raise error


class StreamingResponse:
    """A response whose body is read as it arrives; owns its connection until closed.

    ``aborted`` is its call's abort signal (see :meth:`flux0lite.Flux0.abort`): once set, a
    read raises :class:`RequestAborted`. ``release`` gets the connection when the response
    is closed (it closes it by default); ``keep``, if given, gets it instead when the body was
    read to its end, so that it can serve the next request (a poller's answers are mostly
    streamed and small: without this, each one costs a new connection).
    """

    def __init__(
        self,
        conn: http.client.HTTPConnection,
        raw: http.client.HTTPResponse,
        headers: Dict[str, str],
        method: str,
        url: str,
        *,
        deadline: Optional[float] = None,
        read_timeout: Optional[float] = None,
        aborted: Optional[threading.Event] = None,
        sock: Optional[socket.socket] = None,
        release: Callable[[http.client.HTTPConnection], None] = http.client.HTTPConnection.close,
        keep: Optional[Callable[[http.client.HTTPConnection], None]] = None,
    ) -> None:
        self._conn = conn
        self._sock = sock or conn.sock  # what abort() shuts down (see transport: conn.sock may go)
        # Set once the connection is given up, to the pool or closed: from then on it may be
        # another call's, and neither abort() nor a second close() may touch it.
        self._let_go = False
        self._let_go_lock = threading.Lock()
        self._raw = raw
        self._deadline = deadline
        self._read_timeout = read_timeout
        self._aborted = aborted
        self._release = release
        self._keep = keep
        self._ended = False  # the body was read to its framed end
        self.status = raw.status
        self.reason = raw.reason
        self.headers = headers
        self.method = method
        self.url = url
        self._closed = False
        encoding = headers.get("content-encoding", "").strip().lower()
        self._gzipped = encoding in ("gzip", "x-gzip")

    @property
    def content_type(self) -> str:
        return media_type(self.headers)

    def iter_bytes(self) -> Iterator[bytes]:
        """Body bytes as they arrive (decompressed); raises an APIConnectionError (a timeout,
        a lost connection) or a ProtocolError (a body cut short, corrupt gzip)."""
        raw = self._read_raw()
        if not self._gzipped:
            yield from raw
            return
        # A gzip body may hold several members, one after another (RFC 1952 2.2); each is
        # inflated in bounded pieces, so a small gzip bomb meets the size limits piece by piece.
        # A piece is no larger than a read of a plain body: a reader that takes memory for what
        # it reads (the daemon's budget) sees it as it comes (1 MiB pieces of small events, on
        # 16 workers, each built ahead of its charge: 388 MB; 64 KiB: 76 MB).
        gunzip = None
        for data in raw:
            while data:
                if gunzip is None:
                    data = data.lstrip(b"\0")  # zero padding after a member, as gzip(1) allows
                    if not data:
                        break
                    gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
                try:
                    piece = gunzip.decompress(data, READ_SIZE)
                except zlib.error as exc:
                    self.close()
                    raise DecodeError(f"{self.method} {self.url}: corrupt gzip body") from exc
                if gunzip.eof:
                    data = gunzip.unused_data
                    gunzip = None
                else:
                    data = gunzip.unconsumed_tail
                if piece:
                    yield piece
        if gunzip is not None:  # a member was started and never finished: no trailer came
            self.close()
            raise StreamError(f"{self.method} {self.url}: gzip body cut off before its end")

    def _read_raw(self) -> Iterator[bytes]:
        """The body as sent (chunked framing removed, still compressed)."""
        what = f"{self.method} {self.url}"
        while True:
            self._raise_if_aborted()
            if self._closed:
                # closed (or aborted) from another thread: the body did not end, say so
                raise StreamError(f"{what}: stream closed by the client before its end")
            try:
                data = self._raw.read1(READ_SIZE)
            except Exception as exc:
                self._raise_if_aborted(exc)
                if self._closed:
                    raise StreamError(f"{what}: stream closed by the client before its end") from exc
                self.close()
                if isinstance(exc, socket.timeout):
                    raise timeout_error(what, self._deadline, self._read_timeout) from exc
                if isinstance(exc, http.client.IncompleteRead):
                    raise StreamError(f"{what}: stream cut off mid-body") from exc
                if isinstance(exc, (OSError, http.client.HTTPException)):
                    raise APIConnectionError(f"{what}: connection lost mid-stream: {exc}") from exc
                if isinstance(exc, (ValueError, OverflowError)):  # a chunk size that is no number
                    raise StreamError(f"{what}: bad chunked encoding") from exc
                raise
            if not data:
                self._raise_if_aborted()  # a shut-down socket reads as the end of the body
                if self._closed:
                    raise StreamError(f"{what}: stream closed by the client before its end")
                remaining = self._raw.length
                if remaining:
                    self.close()
                    raise StreamError(f"{what}: body cut off {remaining} bytes short of its length")
                self._ended = True
                return
            yield data

    def _raise_if_aborted(self, cause: Optional[BaseException] = None) -> None:
        if self._aborted is not None and self._aborted.is_set():
            self.close()
            raise RequestAborted(f"{self.method} {self.url}: aborted by the client before the body ended") from cause

    def read_all(self, limit: int) -> bytes:
        chunks: List[bytes] = []
        size = 0
        for chunk in self.iter_bytes():
            size += len(chunk)
            if size > limit:
                self.close()
                raise ResponseTooLargeError(f"{self.method} {self.url}: body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def read_head(self, limit: int) -> Tuple[bytes, bool]:
        """The body's first ``limit`` bytes at most, and whether that is all of it; a longer
        body is cut there and its connection closed (the rest is never read or inflated)."""
        chunks: List[bytes] = []
        size = 0
        for chunk in self.iter_bytes():
            if size + len(chunk) > limit:
                chunks.append(chunk[: limit - size])
                self.close()
                return b"".join(chunks), False
            size += len(chunk)
            chunks.append(chunk)
        return b"".join(chunks), True

    def abort(self) -> None:
        """Shut the connection down at once, from any thread, without waiting for a read in
        progress elsewhere: that read returns and the server sees the disconnect now.
        ``close`` still releases the socket afterwards."""
        with self._let_go_lock:
            self._closed = True
            sock = None if self._let_go else self._sock
        _shut_down(sock)

    def close(self) -> None:
        with self._let_go_lock:
            if self._let_go:  # a second close (``with`` after a finished ``for``): nothing left
                return
            reusable = self._reusable()
            self._let_go = self._closed = True
        if reusable:
            # read to its end: nothing is left to cancel, and the next request saves a connect
            # (for a poller this is most of its requests; see ``keep``)
            keep, self._keep = self._keep, None
            assert keep is not None
            self._raw.close()  # the response only (Python < 3.12 leaves it open at its length's end)
            keep(self._conn)
            return
        # Closing the socket (not draining it) is what cancels a flux0 agent run we gave up on.
        # Shut it down first: closing the buffered reader waits for a read in progress in
        # another thread, which only a shutdown ends before the server sends more.
        _shut_down(self._sock)
        try:
            self._raw.close()
        finally:
            self._release(self._conn)

    def _reusable(self) -> bool:
        """Whether the connection can serve another request: the body ended where its framing
        said (chunked, or all of its length), the server did not ask to close, no abort came."""
        framed_end = self._raw.isclosed() or (self._raw.length == 0 and not self._raw.chunked)
        return (
            self._keep is not None
            and self._ended
            and not self._closed
            and framed_end
            and not self._raw.will_close
            and not (self._aborted is not None and self._aborted.is_set())
        )

    def __enter__(self) -> "StreamingResponse":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _shut_down(sock: Optional[socket.socket]) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already shut down or never connected
