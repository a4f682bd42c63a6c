"""HTTP on ``http.client``: a request goes through three small layers, outermost first.

``_send_handling_retries`` -> ``_send_handling_redirects`` -> ``_send_single_request``

One :class:`Transport` per client, safe to share between threads (the async API runs calls in
worker threads). A request whose method is not idempotent always gets a fresh connection, so a
failure on it is classified exactly: connecting raises :class:`ConnectError`, which proves the
request was never sent (safe to retry); anything later may have reached the server.

A connection goes back to the pool only when its response was read to the end as framed
(``Content-Length`` or chunked): interim 1xx answers are skipped first, and an answer whose end
cannot be known (a 204 or 304 that may carry bytes anyway) closes it, so no call can ever read
what the server sent for another. With ``Timeout(total=...)`` every attempt, wait and read is
cut to what is left of the call's deadline.

:meth:`Transport.abort` ends every call in flight with :class:`RequestAborted`: each call holds
the abort signal current when it started, checks it before connecting, before each retry and
redirect and after any failure, and waits for a retry on it rather than sleeping; the pool
shuts down the sockets of the connections in flight, which wakes the calls blocked on them.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, Type, Union, cast

from ._version import __version__
from .errors import (
    APIConnectionError,
    ConfigError,
    ConnectTimeout,
    Flux0Error,
    ProtocolError,
    ProxyAuthenticationError,
    RedirectError,
    RequestAborted,
    TLSError,
    TotalTimeout,
)
from .frozen import Frozen
from .httputil import lower_headers, redact_headers, redact_url, strip_credentials
from .pool import CALL_CANCEL, ConnectionPool
from .proxy import DIRECT, ProxyRules, proxy_auth_message
from .responses import RawResponse, Response, StreamingResponse, UnexpectedInterimResponse, decode_json, timeout_error
from .retry import DEFAULT_RETRY, Retry
from .timeout import DEFAULT_TIMEOUT, Timeout
from .urls import UNIX_SCHEME, Origin, join_url, parse_server_url, split_url

if TYPE_CHECKING:
    import logging

# Timeout, Origin, Response, StreamingResponse, parse_server_url, redact_headers and
# decode_json live in their own modules now; they stay importable from here.
__all__ = [
    "Timeout",
    "Origin",
    "Response",
    "StreamingResponse",
    "Transport",
    "parse_server_url",
    "redact_headers",
    "decode_json",
    "USER_AGENT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "MAX_ERROR_BODY_BYTES",
]

USER_AGENT = f"flux0lite/{__version__}"
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
# Of an answer that is not a success only this much body is read (inflated); the rest is
# dropped with its connection. What is kept of it is a message: a proxy's 13 MB error page or a
# 40 KB gzip that inflates to 40 MiB must not cost a long-running poller its memory.
MAX_ERROR_BODY_BYTES = 64 * 1024
_DEBUG = 10  # logging.DEBUG, without importing logging
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class _Request(Frozen):
    _field_names = (
        "method",
        "origin",
        "target",
        "headers",
        "body",
        "timeout",
        "stream",
        "reuse_connection",
        "deadline",
        "aborted",
    )
    __slots__ = _field_names
    method: str
    origin: Origin
    target: str
    headers: Dict[str, str]
    body: Optional[bytes]
    timeout: Timeout
    stream: bool
    reuse_connection: bool  # only for idempotent methods: see the module docstring
    deadline: Optional[float]  # time.monotonic() by which the call must be done, or None
    aborted: threading.Event  # set by Transport.abort while this call is in flight

    def __init__(
        self,
        method: str,
        origin: Origin,
        target: str,
        headers: Dict[str, str],
        body: Optional[bytes],
        timeout: Timeout,
        stream: bool,
        reuse_connection: bool,
        deadline: Optional[float],
        aborted: threading.Event,
    ) -> None:
        for name, value in zip(
            self._field_names,
            (method, origin, target, headers, body, timeout, stream, reuse_connection, deadline, aborted),
        ):
            self._set(name, value)

    @property
    def url(self) -> str:
        return self.origin.url(self.target)


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
        sleep: Optional[Callable[[float], Any]] = None,
        log: "Optional[logging.Logger]" = None,
        proxies: ProxyRules = DIRECT,
        on_retry: Optional[Callable[[str], None]] = None,
    ) -> None:
        self._log = log
        self._proxies = proxies
        self._on_retry = on_retry
        self.timeout = timeout
        self.retry = retry
        self.headers: Dict[str, str] = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
        self.headers.update(headers or {})
        self.max_response_bytes = max_response_bytes
        self._pool = ConnectionPool(ssl_context=ssl_context, max_idle_per_origin=max_idle_per_origin)
        self._sleep = sleep  # how to wait before a retry; None: on the call's abort signal

    def close(self) -> None:
        """Close every pooled connection (streams in flight close themselves)."""
        self._pool.close()

    def abort(self) -> None:
        """End every call in flight (streams included) with :class:`RequestAborted`; thread-safe."""
        self._pool.abort()

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
        subclasses of :class:`APIConnectionError` once retries are exhausted. With ``stream``,
        a 2xx answer comes back as a :class:`StreamingResponse`, anything else read whole.
        """
        if self._pool.closed:
            raise ConfigError("this client is closed")
        method = method.upper()
        policy = retry or self.retry
        origin, target = split_url(url)
        timeout = timeout or self.timeout
        request = _Request(
            method=method,
            origin=origin,
            target=target,
            headers={**self.headers, **(headers or {})},
            body=body,
            timeout=timeout,
            stream=stream,
            reuse_connection=policy.is_idempotent(method),
            deadline=timeout.deadline(),
            aborted=self._abort_signal(),
        )
        return self._send_handling_retries(request, policy, self._debug_logger())

    def _abort_signal(self) -> threading.Event:
        """What ends this call early: the pool's abort, and its own cancel if its caller may
        stop waiting for it (an async task, see :class:`~flux0lite.pool.CallCancel`)."""
        own = CALL_CANCEL.get()
        if own is None:
            return self._pool.abort_signal()
        own.watch(self._pool)
        return self._pool.abort_signal(own.signal)

    def _debug_logger(self) -> "Optional[logging.Logger]":
        """The logger to write debug lines to, or None when debug output is off.

        Nobody can have enabled debug output without importing ``logging``, so until something
        has, requests skip logging entirely and the module is not imported on their behalf.
        """
        log = self._log
        if log is None:
            logging_module = sys.modules.get("logging")
            if logging_module is None:
                return None
            log = logging_module.getLogger("flux0lite")
        return log if log.isEnabledFor(_DEBUG) else None

    def _send_handling_retries(
        self, request: _Request, policy: Retry, log: "Optional[logging.Logger]"
    ) -> Union[Response, StreamingResponse]:
        retries_done = 0
        while True:
            try:
                response = self._send_handling_redirects(request, log)
            except Flux0Error as error:
                if request.aborted.is_set():
                    raise _aborted(request, "") from error
                retry = retries_done < policy.total and policy.may_retry_error(request.method, error)
                if log is not None:
                    outcome = " (will retry)" if retry else ""
                    log.debug("%s %s failed: %s%s", request.method, request.url, error, outcome)
                if not retry:
                    raise
                retries_done += 1
                wait = policy.backoff(retries_done)
                if not _time_left_for(request, wait):
                    raise  # the deadline would pass before the retry: the last error stands
                self._notify_retry(f"{error}", retries_done, policy.total, wait)
                self._wait_to_retry(request, wait)
                continue
            if (
                response.status < 400
                or retries_done >= policy.total
                or not policy.may_retry_status(request.method, response.status)
            ):
                return response
            wait = policy.delay(retries_done + 1, response.headers)
            if not _time_left_for(request, wait):
                return response  # the deadline would pass before the retry: the answer stands
            retries_done += 1
            if log is not None:
                log.debug(
                    "retry %d/%d of %s %s after HTTP %d in %.2f s",
                    retries_done,
                    policy.total,
                    request.method,
                    response.url,
                    response.status,
                    wait,
                )
            what = f"{request.method} {response.url}: HTTP {response.status}"
            self._notify_retry(what, retries_done, policy.total, wait)
            self._wait_to_retry(request, wait)

    def _wait_to_retry(self, request: _Request, wait: float) -> None:
        self.pause(wait, request.aborted, f"{request.method} {request.url}")

    def pause(self, wait: float, aborted: Optional[threading.Event] = None, what: str = "the call") -> None:
        """Wait ``wait`` seconds before a retry, or less if the call is aborted (:meth:`abort`,
        its async caller's cancel) or the client closed meanwhile: either raises
        :class:`RequestAborted`. ``aborted``: the call's signal (the current one if None)."""
        signal = self._abort_signal() if aborted is None else aborted
        if self._sleep is None:
            # in steps: close() does not set the abort signal (streams in flight read on), and
            # a call that waits to retry must still see it soon
            until = time.monotonic() + wait
            while not signal.wait(min(_CLOSE_SEEN_WITHIN, max(0.0, until - time.monotonic()))):
                if self._pool.closed or time.monotonic() >= until:
                    break
        else:
            self._sleep(wait)
        if signal.is_set():
            raise RequestAborted(f"{what}: aborted by the client while waiting to retry")
        if self._pool.closed:  # nothing more is sent for a client closed meanwhile
            raise RequestAborted(f"{what}: the client was closed while the call waited to retry")

    def _notify_retry(self, what: str, retry_number: int, total: int, wait: float) -> None:
        """Tell ``on_retry`` (one line) that a retry follows, so that nobody waits in silence."""
        if self._on_retry is not None:
            self._on_retry(f"{what}; retry {retry_number}/{total} in {wait:.1f} s")

    def _send_handling_redirects(
        self, request: _Request, log: "Optional[logging.Logger]"
    ) -> Union[Response, StreamingResponse]:
        seen: List[str] = []
        while True:
            response = self._send_single_request(request, log)
            location = response.headers.get("location")
            if response.status not in _REDIRECT_STATUSES or not location:
                return response
            request = _redirected(request, location, seen)

    def _send_single_request(
        self, request: _Request, log: "Optional[logging.Logger]"
    ) -> Union[Response, StreamingResponse]:
        method, url = request.method, request.url
        route = self._proxies.route(request.origin)
        headers = {**request.headers, **route.proxy_headers()}
        if log is not None:
            log.debug("-> %s %s%s headers=%s", method, url, route.via, redact_headers(headers))
        started = time.monotonic()
        if request.deadline is not None and started >= request.deadline:
            raise TotalTimeout(f"{method} {url}: the total deadline of {request.timeout.total} s has passed")
        timeout = request.timeout.within(request.deadline)
        try:
            conn, reused = self._pool.checkout(route, timeout, reuse=request.reuse_connection, aborted=request.aborted)
        except ConnectTimeout as exc:
            if request.deadline is not None and time.monotonic() >= request.deadline - 0.01:
                raise TotalTimeout(f"{method} {url}: the total deadline passed while connecting") from exc
            raise
        # Set per request: a pooled connection may have served a call with another deadline.
        conn.response_class = (
            RawResponse
            if request.deadline is None
            else cast(
                Type[RawResponse],
                partial(RawResponse, read_timeout=request.timeout.read, deadline=request.deadline),
            )
        )
        try:
            conn.request(method, route.request_target(request.target), body=request.body, headers=headers)
            # the socket, kept for abort(): http.client lets go of it for an answer read to the
            # connection's end (no length, not chunked), which then still reads from it
            sock = conn.sock
            raw = conn.getresponse()
        except socket.timeout as exc:
            self._pool.discard(conn)
            raise timeout_error(f"{method} {url}: no response", request.deadline, request.timeout.read) from exc
        except UnexpectedInterimResponse as exc:
            self._pool.discard(conn)
            raise ProtocolError(f"{method} {url}: unexpected answer: {exc}") from exc
        except http.client.RemoteDisconnected as exc:
            self._pool.discard(conn)
            what = "kept-alive connection was closed by the server" if reused else "server closed the connection"
            raise APIConnectionError(f"{method} {url}: {what} before answering") from exc
        except http.client.HTTPException as exc:
            self._pool.discard(conn)
            raise ProtocolError(f"{method} {url}: malformed HTTP response: {type(exc).__name__}: {exc}") from exc
        except ssl.SSLError as exc:
            self._pool.discard(conn)
            if reused or "ALERT" not in (exc.reason or ""):
                raise APIConnectionError(f"{method} {url}: TLS failure: {exc}") from exc
            # TLS 1.3 servers judge the client's certificate after the handshake: on a new
            # connection, their refusal arrives as an alert in place of an answer, and the
            # request never reached the application.
            raise TLSError(f"{method} {url}: the server refused the TLS session: {exc.reason}") from exc
        except OSError as exc:
            self._pool.discard(conn)
            what = "kept-alive connection was closed by the server" if reused else str(exc) or type(exc).__name__
            raise APIConnectionError(f"{method} {url}: {what}") from exc
        except (ValueError, OverflowError, LookupError) as exc:
            # http.client parsing something no server should send (it raises these bare)
            self._pool.discard(conn)
            raise ProtocolError(f"{method} {url}: malformed HTTP response: {type(exc).__name__}") from exc
        headers = lower_headers(raw)
        if log is not None:
            elapsed = (time.monotonic() - started) * 1000
            log.debug("<- %s %s %d in %.1f ms headers=%s", method, url, raw.status, elapsed, redact_headers(headers))
        streaming = StreamingResponse(
            conn,
            raw,
            headers,
            method,
            url,
            deadline=request.deadline,
            read_timeout=request.timeout.read,
            aborted=request.aborted,
            sock=sock,
            release=self._pool.discard,
            # only where a pooled connection may be reused at all (see the module docstring)
            keep=partial(self._pool.checkin, route) if request.reuse_connection else None,
        )
        if request.stream and 200 <= raw.status < 300:
            return streaming
        whole = True
        body_error: Optional[Flux0Error] = None
        if 200 <= raw.status < 300:
            body = streaming.read_all(self.max_response_bytes)
        else:
            body, whole, body_error = _read_error_body(streaming, min(self.max_response_bytes, MAX_ERROR_BODY_BYTES))
            if body_error is not None and log is not None:
                log.debug("%s %s: HTTP %d body unreadable: %s", method, url, raw.status, body_error)
        if request.aborted.is_set():  # the body may look whole: a shut-down socket reads as its end
            streaming.close()
            raise _aborted(request, " while reading the answer")
        # http.client closes its reader when a framed body has been read to its end; a body
        # it took as empty without framing (204, 304) may still be followed by bytes.
        complete = raw.isclosed() or (raw.length == 0 and raw.status not in (204, 304) and method != "HEAD")
        raw.close()  # releases the response only; the socket stays open for reuse
        if not whole:
            pass  # the body was cut or could not be read: its response has released the connection
        elif raw.will_close or not complete:
            self._pool.discard(conn)
        else:
            self._pool.checkin(route, conn)
        if raw.status == 407 and route.proxy is not None:
            # The proxy's own answer: the request was not passed on (and is never retried).
            raise ProxyAuthenticationError(
                f"{method} {url}: {proxy_auth_message(route.proxy)}", status_code=407, headers=headers
            ) from body_error  # why its body could not be read, as for any other status
        return Response(raw.status, raw.reason, headers, body, method, url, body_error=body_error)


def _read_error_body(streaming: StreamingResponse, limit: int) -> Tuple[bytes, bool, Optional[Flux0Error]]:
    """An error answer's body (at most ``limit`` bytes), whether that is all of it, and why it
    could not be read, if so.

    The status, not the body, types the error and decides a retry; the body only words its
    message. So a body that cannot be read (corrupt or cut-off gzip, cut short, the connection
    lost or silent mid-body) becomes a short note instead of replacing the status's error. The
    call's own end (its total deadline, an abort) still ends it. Whatever failed has already
    closed the response, which released its connection (kept only if the framing ended)."""
    try:
        body, whole = streaming.read_head(limit)
    except (TotalTimeout, RequestAborted):
        raise
    except (ProtocolError, APIConnectionError) as exc:
        detail = str(exc)
        prefix = f"{streaming.method} {streaming.url}: "
        if detail.startswith(prefix):
            detail = detail[len(prefix) :]
        note = f"{streaming.reason or 'error'} (the body could not be read: {detail})"
        return note.encode("utf-8", "replace"), False, exc
    return body, whole, None


# How soon a call waiting to retry sees that its client was closed (seconds)
_CLOSE_SEEN_WITHIN = 0.1


def _aborted(request: _Request, when: str) -> RequestAborted:
    return RequestAborted(f"{request.method} {request.url}: aborted by the client{when}")


def _time_left_for(request: _Request, wait: float) -> bool:
    """Whether a retry after ``wait`` seconds would still start before the call's deadline."""
    return request.deadline is None or time.monotonic() + wait < request.deadline


# Kept as they are in a Location: characters that delimit or are already percent-encoded.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


def _redirected(request: _Request, location: str, seen: List[str]) -> _Request:
    """The request to send for a redirect to ``location``, or RedirectError if it is unsafe.

    ``location`` is whatever the server sent: it may be no URL at all. Bytes that cannot go
    on a request line (spaces, controls, non-ASCII) are percent-encoded, as browsers do, and
    credentials in it are neither used nor shown in any message.
    """
    current_url = request.url
    # http.client decoded the header as latin-1: encoding it back gives the bytes as sent.
    location = urllib.parse.quote(location.strip(), safe=_URL_SAFE, encoding="latin-1", errors="replace")
    try:
        new_url = join_url(current_url, location)
        parts = urllib.parse.urlsplit(new_url)
        scheme = parts.scheme.lower()
        has_credentials = parts.username is not None or parts.password is not None
        same_socket = scheme == UNIX_SCHEME and split_url(new_url)[0] == request.origin
    except ValueError as exc:  # e.g. "http://[::1/x": an unclosed IPv6 bracket
        raise RedirectError(f"{current_url} redirected to a malformed URL: {redact_url(location)}") from exc
    shown = redact_url(new_url)
    if scheme not in ("http", "https") and not same_socket:
        raise RedirectError(f"refusing redirect from {current_url} to a {scheme or 'relative'!r} URL: {shown}")
    if request.origin.scheme == "https" and scheme == "http":
        raise RedirectError(f"refusing redirect from https to plain http: {shown}")
    if has_credentials:
        raise RedirectError(f"refusing redirect from {current_url} to a URL with credentials: {shown}")
    if len(seen) >= _MAX_REDIRECTS or new_url in seen:
        raise RedirectError(f"too many redirects or a redirect loop at {shown}")
    if request.method not in ("GET", "HEAD"):
        # 307/308 would re-send the body: for a chat message that could deliver it twice.
        raise RedirectError(f"refusing to follow a redirect of {request.method} {current_url} to {shown}")
    seen.append(new_url)
    try:
        origin, target = split_url(new_url)
    except ValueError as exc:  # ConfigError too: a bad port, no host
        raise RedirectError(f"{current_url} redirected to an unusable URL: {shown}") from exc
    # Credentials were meant for the first host only.
    headers = request.headers if origin == request.origin else strip_credentials(request.headers)
    return request._replace(origin=origin, target=target, headers=headers)
