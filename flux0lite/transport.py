"""HTTP on ``http.client``: pooled keep-alive connections, timeouts, gzip, redirects, retries.

One :class:`Transport` per client, safe to share between threads (the async API runs calls in
worker threads). Connections are kept per origin and reused; before reuse a connection is
checked for having been closed by the server. A request whose method is not idempotent always
gets a fresh connection, so a failure on it can be classified exactly: a failure while
connecting proves the request was never sent (safe to retry), anything later does not.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from ._version import __version__
from .errors import (
    APIConnectionError,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    ContentTypeError,
    DecodeError,
    Flux0Error,
    ProtocolError,
    ReadTimeout,
    RedirectError,
    ResponseTooLargeError,
    StreamError,
    error_for_status,
)
from .retry import DEFAULT_RETRY, Retry

__all__ = [
    "Timeout",
    "Origin",
    "Response",
    "StreamingResponse",
    "Transport",
    "parse_server_url",
    "redact_headers",
    "USER_AGENT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_RESPONSE_BYTES",
]

if TYPE_CHECKING:
    import logging

_DEBUG = 10  # logging.DEBUG


def _default_logger() -> "Optional[logging.Logger]":
    """The ``flux0lite`` logger, if the application uses logging at all.

    Nobody can have enabled debug output without importing ``logging``, so until something
    has, requests skip logging entirely and the module is not imported on their behalf.
    """
    logging_module = sys.modules.get("logging")
    return logging_module.getLogger("flux0lite") if logging_module is not None else None


USER_AGENT = f"flux0lite/{__version__}"
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
_READ_SIZE = 64 * 1024
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


@dataclass(frozen=True)
class Timeout:
    """Seconds to wait for a connection, and for each read from it.

    The read timeout is an idle timeout: on a stream it limits the silence between two reads,
    not the whole stream, so a stream that never ends is cut once the server goes quiet.
    ``None`` disables a timeout (not recommended: flux0 can leave a stream open forever).
    """

    connect: Optional[float] = 10.0
    read: Optional[float] = 60.0

    def __post_init__(self) -> None:
        for name in ("connect", "read"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(f"Timeout.{name} must be a positive number or None, got {value!r}")

    @classmethod
    def coerce(cls, value: Union["Timeout", float, int, None]) -> "Timeout":
        """A bare number sets both timeouts."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(None, None)
        return cls(float(value), float(value))


DEFAULT_TIMEOUT = Timeout()


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_server_url(url: str) -> Tuple[Origin, str]:
    """Split a server URL into its origin and base path; only http and https are accepted."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("server URL must be a non-empty string")
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"unsupported URL scheme {parts.scheme or '(none)'!r} in {url!r}: use http:// or https://")
    if not parts.hostname:
        raise ConfigError(f"server URL has no host: {url!r}")
    if parts.username or parts.password:
        raise ConfigError("put credentials in token=..., not in the server URL")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid port in server URL {url!r}") from exc
    origin = Origin(scheme, parts.hostname, port or (443 if scheme == "https" else 80))
    return origin, parts.path.rstrip("/")


def redact_headers(headers: Mapping[str, str]) -> Dict[str, str]:
    """Headers fit for a log line: credentials replaced by ``<redacted>``."""
    return {k: ("<redacted>" if k.lower() in _SENSITIVE_HEADERS else v) for k, v in headers.items()}


def media_type(headers: Mapping[str, str]) -> str:
    """The ``Content-Type`` without parameters, lower-cased (``""`` when absent)."""
    return headers.get("content-type", "").split(";")[0].strip().lower()


class Response:
    """A complete response: status, lower-cased headers and the (decompressed) body."""

    def __init__(self, status: int, reason: str, headers: Dict[str, str], body: bytes, method: str, url: str) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.method = method
        self.url = url

    @property
    def content_type(self) -> str:
        return media_type(self.headers)

    def json(self) -> Any:
        if self.content_type and not (self.content_type == "application/json" or self.content_type.endswith("+json")):
            raise ContentTypeError(
                f"expected JSON from {self.method} {self.url}, got {self.content_type!r} ({_preview(self.body)})"
            )
        return decode_json(self.body, f"{self.method} {self.url}")

    def raise_for_status(self) -> None:
        if 200 <= self.status < 300:
            return
        body: Any
        try:
            body = json.loads(self.body.decode("utf-8")) if self.body else None
        except (UnicodeDecodeError, ValueError, RecursionError):
            body = self.body.decode("utf-8", "replace")[:2000]
        raise error_for_status(self.status, body, self.headers, reason=self.reason, method=self.method, url=self.url)


def _preview(body: bytes) -> str:
    text = body[:80].decode("utf-8", "replace")
    return f"body starts {text!r}" if body else "empty body"


def decode_json(raw: bytes, what: str) -> Any:
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


class StreamingResponse:
    """A response whose body is read as it arrives; owns its connection until closed."""

    def __init__(
        self,
        conn: http.client.HTTPConnection,
        raw: http.client.HTTPResponse,
        headers: Dict[str, str],
        method: str,
        url: str,
    ) -> None:
        self._conn = conn
        self._raw = raw
        self.status = raw.status
        self.reason = raw.reason
        self.headers = headers
        self.method = method
        self.url = url
        self._closed = False
        encoding = headers.get("content-encoding", "").strip().lower()
        self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip") else None

    @property
    def content_type(self) -> str:
        return media_type(self.headers)

    def iter_bytes(self) -> Iterator[bytes]:
        """Body bytes as they arrive; raises ReadTimeout, StreamError or APIConnectionError."""
        while not self._closed:
            try:
                data = self._raw.read1(_READ_SIZE)
            except socket.timeout as exc:
                self.close()
                raise ReadTimeout(f"no data from {self.method} {self.url} within the read timeout") from exc
            except http.client.IncompleteRead as exc:
                self.close()
                raise StreamError(f"{self.method} {self.url}: stream cut off mid-body") from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise APIConnectionError(f"{self.method} {self.url}: connection lost mid-stream: {exc}") from exc
            except ValueError as exc:  # read on a closed response
                if self._closed:
                    return
                raise StreamError(f"{self.method} {self.url}: bad chunked encoding") from exc
            if not data:
                remaining = self._raw.length
                if remaining:
                    self.close()
                    raise StreamError(f"{self.method} {self.url}: body cut off {remaining} bytes short of its length")
                if self._gunzip is not None:
                    tail = self._gunzip.flush()
                    if tail:
                        yield tail
                return
            if self._gunzip is None:
                yield data
                continue
            # Inflate in bounded pieces: a small gzip bomb must meet the size limits piece by
            # piece, not after it has been expanded whole.
            while data:
                try:
                    piece = self._gunzip.decompress(data, _READ_SIZE * 16)
                except zlib.error as exc:
                    self.close()
                    raise DecodeError(f"{self.method} {self.url}: corrupt gzip stream") from exc
                data = self._gunzip.unconsumed_tail
                if piece:
                    yield piece

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

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Closing the socket (not draining it) is what cancels a flux0 agent run we gave up on.
        try:
            self._raw.close()
        finally:
            self._conn.close()

    def __enter__(self) -> "StreamingResponse":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class _AttemptFailed(Exception):
    def __init__(self, error: Flux0Error, request_sent: bool, retryable: bool = True) -> None:
        super().__init__(str(error))
        self.error = error
        self.request_sent = request_sent
        self.retryable = retryable


def _connection_dropped(conn: http.client.HTTPConnection) -> bool:
    sock = conn.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


class Transport:
    """Sends requests with retries, redirects and pooled keep-alive connections."""

    def __init__(
        self,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retry: Retry = DEFAULT_RETRY,
        headers: Optional[Mapping[str, str]] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_idle_per_origin: int = 8,
        sleep: Any = time.sleep,
        log: "Optional[logging.Logger]" = None,
    ) -> None:
        self._log = log
        self.timeout = timeout
        self.retry = retry
        self.headers: Dict[str, str] = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
        self.headers.update(headers or {})
        self._ssl_context = ssl_context
        self.max_response_bytes = max_response_bytes
        self._max_idle = max_idle_per_origin
        self._idle: Dict[Origin, List[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._sleep = sleep
        self._closed = False

    # -- connection pool -------------------------------------------------------------------

    def _new_connection(self, origin: Origin, timeout: Timeout) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if origin.scheme == "https":
            context = self._ssl_context or ssl.create_default_context()
            conn = http.client.HTTPSConnection(origin.host, origin.port, timeout=timeout.connect, context=context)
        else:
            conn = http.client.HTTPConnection(origin.host, origin.port, timeout=timeout.connect)
        try:
            conn.connect()
        except socket.timeout as exc:
            conn.close()
            raise _AttemptFailed(
                ConnectTimeout(f"connecting to {origin.netloc} timed out after {timeout.connect} s"), False
            ) from exc
        except ssl.SSLError as exc:
            conn.close()
            raise _AttemptFailed(
                ConnectError(f"TLS handshake with {origin.netloc} failed: {exc}"), False, False
            ) from exc
        except OSError as exc:
            conn.close()
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise _AttemptFailed(ConnectError(f"cannot connect to {origin.netloc}: {reason}"), False) from exc
        assert conn.sock is not None
        try:
            # small requests must not wait for a delayed ACK (Nagle)
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn.sock.settimeout(timeout.read)
        return conn

    def _checkout(self, origin: Origin, timeout: Timeout, reuse: bool) -> Tuple[http.client.HTTPConnection, bool]:
        if reuse:
            while True:
                with self._lock:
                    idle = self._idle.get(origin)
                    conn = idle.pop() if idle else None
                if conn is None:
                    break
                if _connection_dropped(conn):
                    conn.close()
                    continue
                assert conn.sock is not None
                conn.sock.settimeout(timeout.read)
                return conn, True
        return self._new_connection(origin, timeout), False

    def _checkin(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                idle = self._idle.setdefault(origin, [])
                if len(idle) < self._max_idle:
                    idle.append(conn)
                    return
        conn.close()

    def close(self) -> None:
        """Close every pooled connection (streams in flight close themselves)."""
        with self._lock:
            self._closed = True
            pools, self._idle = self._idle, {}
        for conns in pools.values():
            for conn in conns:
                conn.close()

    # -- one attempt -----------------------------------------------------------------------

    def _attempt(
        self,
        method: str,
        origin: Origin,
        target: str,
        headers: Dict[str, str],
        body: Optional[bytes],
        timeout: Timeout,
        idempotent: bool,
    ) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn, reused = self._checkout(origin, timeout, reuse=idempotent)
        url = f"{origin.scheme}://{origin.netloc}{target}"
        try:
            conn.request(method, target, body=body, headers=headers)
            raw = conn.getresponse()
        except socket.timeout as exc:
            conn.close()
            raise _AttemptFailed(ReadTimeout(f"{method} {url}: no response within {timeout.read} s"), True) from exc
        except http.client.RemoteDisconnected as exc:
            conn.close()
            what = "kept-alive connection was closed by the server" if reused else "server closed the connection"
            raise _AttemptFailed(APIConnectionError(f"{method} {url}: {what} before answering"), True) from exc
        except http.client.HTTPException as exc:
            conn.close()
            raise _AttemptFailed(
                ProtocolError(f"{method} {url}: malformed HTTP response: {type(exc).__name__}: {exc}"), True, False
            ) from exc
        except OSError as exc:
            conn.close()
            what = "kept-alive connection was closed by the server" if reused else str(exc) or type(exc).__name__
            raise _AttemptFailed(APIConnectionError(f"{method} {url}: {what}"), True) from exc
        return conn, raw

    def _finish(
        self, origin: Origin, conn: http.client.HTTPConnection, raw: http.client.HTTPResponse, method: str, url: str
    ) -> bytes:
        """Read a whole (bounded) body, undoing gzip, then give the connection back to the pool."""
        streaming = StreamingResponse(conn, raw, _lower_headers(raw), method, url)
        try:
            payload = streaming.read_all(self.max_response_bytes)
        except (APIConnectionError, StreamError) as exc:
            raise _AttemptFailed(exc, True) from exc
        raw.close()  # releases the response only; the socket stays open for reuse
        if raw.will_close:
            conn.close()
        else:
            self._checkin(origin, conn)
        return payload

    # -- the request loop ------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        body: Optional[bytes] = None,
        timeout: Optional[Timeout] = None,
        retry: Optional[Retry] = None,
        stream: bool = False,
    ) -> Union[Response, StreamingResponse]:
        """Send a request; follow safe redirects; retry as the policy allows.

        Error statuses are returned, not raised (callers decide); connection failures raise
        subclasses of :class:`APIConnectionError` once retries are exhausted.
        """
        if self._closed:
            raise ConfigError("this client is closed")
        method = method.upper()
        timeout = timeout or self.timeout
        policy = retry or self.retry
        send_headers = dict(self.headers)
        send_headers.update(headers or {})
        origin, target = _split_url(url)
        log = self._log or _default_logger()
        debug = log is not None and log.isEnabledFor(_DEBUG)
        retries_done = 0
        redirects: List[str] = []
        while True:
            idempotent = policy.is_idempotent(method)
            full_url = f"{origin.scheme}://{origin.netloc}{target}"
            started = time.monotonic()
            if debug:
                assert log is not None
                log.debug("-> %s %s headers=%s", method, full_url, redact_headers(send_headers))
            try:
                conn, raw = self._attempt(method, origin, target, send_headers, body, timeout, idempotent)
                response_headers = _lower_headers(raw)
                status = raw.status
                if debug:
                    assert log is not None
                    log.debug(
                        "<- %s %s %d in %.1f ms headers=%s",
                        method,
                        full_url,
                        status,
                        (time.monotonic() - started) * 1000,
                        redact_headers(response_headers),
                    )
                if status in _REDIRECT_STATUSES and response_headers.get("location"):
                    self._finish(origin, conn, raw, method, full_url)
                    origin, target, method, body, send_headers = self._follow_redirect(
                        origin, full_url, response_headers["location"], method, body, send_headers, redirects
                    )
                    continue
                if status >= 400 and policy.may_retry_status(method, status) and retries_done < policy.total:
                    self._finish(origin, conn, raw, method, full_url)
                    retries_done += 1
                    wait = policy.delay(retries_done, response_headers)
                    if log is not None:
                        log.debug(
                            "retry %d/%d of %s %s after HTTP %d in %.2f s",
                            retries_done,
                            policy.total,
                            method,
                            full_url,
                            status,
                            wait,
                        )
                    self._sleep(wait)
                    continue
                if stream and 200 <= status < 300:
                    return StreamingResponse(conn, raw, response_headers, method, full_url)
                payload = self._finish(origin, conn, raw, method, full_url)
                return Response(status, raw.reason, response_headers, payload, method, full_url)
            except _AttemptFailed as failure:
                can_retry = (
                    failure.retryable
                    and retries_done < policy.total
                    and policy.may_retry_error(method, request_sent=failure.request_sent)
                )
                if log is not None:
                    log.debug(
                        "%s %s failed: %s%s", method, full_url, failure.error, " (will retry)" if can_retry else ""
                    )
                if not can_retry:
                    raise failure.error from failure.__cause__
                retries_done += 1
                self._sleep(policy.backoff(retries_done))

    def _follow_redirect(
        self,
        origin: Origin,
        current_url: str,
        location: str,
        method: str,
        body: Optional[bytes],
        headers: Dict[str, str],
        seen: List[str],
    ) -> Tuple[Origin, str, str, Optional[bytes], Dict[str, str]]:
        new_url = urllib.parse.urljoin(current_url, location)
        scheme = urllib.parse.urlsplit(new_url).scheme.lower()
        if scheme not in ("http", "https"):
            raise RedirectError(f"refusing redirect from {current_url} to a {scheme or 'relative'!r} URL: {new_url}")
        if origin.scheme == "https" and scheme == "http":
            raise RedirectError(f"refusing redirect from https to plain http: {new_url}")
        if len(seen) >= _MAX_REDIRECTS or new_url in seen:
            raise RedirectError(f"too many redirects or a redirect loop at {new_url}")
        seen.append(new_url)
        new_origin, target = _split_url(new_url)
        headers = dict(headers)
        if new_origin != origin:
            # Credentials were meant for the first host only.
            for name in list(headers):
                if name.lower() in _SENSITIVE_HEADERS:
                    del headers[name]
        if method not in ("GET", "HEAD"):
            # 307/308 would re-send the body: for a chat message that could deliver it twice.
            raise RedirectError(f"refusing to follow a redirect of {method} {current_url} to {new_url}")
        return new_origin, target, method, body, headers


def _split_url(url: str) -> Tuple[Origin, str]:
    origin, _ = parse_server_url(url)
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return origin, target


def _lower_headers(raw: http.client.HTTPResponse) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    for name, value in raw.getheaders():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers
