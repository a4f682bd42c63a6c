"""The exception tree: every error flux0lite raises derives from :class:`Flux0Error`.

::

    Flux0Error
    ├── ConfigError                 bad arguments or URL (also a ValueError)
    ├── APIConnectionError          the server could not be reached or the link broke
    │   ├── ConnectError            connecting failed; the request never left this host
    │   │   ├── TLSError            the TLS handshake failed (retrying cannot help)
    │   │   └── ProxyError          the proxy would not open a tunnel (CONNECT refused)
    │   │       └── ProxyAuthenticationError   407 from the proxy (retrying cannot help)
    │   ├── RequestAborted          ended by ``Flux0.abort()`` from another thread (never retried)
    │   └── APITimeoutError
    │       ├── ConnectTimeout      (also a ConnectError: the request never left)
    │       ├── ReadTimeout         the server went quiet, e.g. a stream that never ends
    │       └── TotalTimeout        the call outlasted ``Timeout(total=...)`` (never retried)
    ├── APIError                    the server answered with a non-2xx status
    │   ├── BadRequestError 400, AuthenticationError 401, PermissionDeniedError 403,
    │   │   NotFoundError 404, MethodNotAllowedError 405, ConflictError 409,
    │   │   ValidationError 422, RateLimitedError 429, ServerError 5xx
    └── ProtocolError               the server's answer is not what the API promises
        ├── ContentTypeError        e.g. HTML where JSON or an event stream was due
        ├── DecodeError             malformed JSON, a body that is not UTF-8
        │   └── ModelError          valid JSON of the wrong shape for a model
        ├── ResponseTooLargeError   a body or an SSE line over its limit
        ├── StreamError             a stream cut short (truncated body, partial event)
        ├── PatchError              a chunk's JSON patch that cannot be applied
        └── RedirectError           an unsafe or endless redirect

Messages fit on one line so that they read well in logs and on a terminal.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, Union

from .httputil import parse_retry_after

__all__ = [
    "Flux0Error",
    "ConfigError",
    "APIConnectionError",
    "ConnectError",
    "TLSError",
    "ProxyError",
    "ProxyAuthenticationError",
    "RequestAborted",
    "APITimeoutError",
    "ConnectTimeout",
    "ReadTimeout",
    "TotalTimeout",
    "APIError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "MethodNotAllowedError",
    "ConflictError",
    "ValidationError",
    "RateLimitedError",
    "ServerError",
    "ProtocolError",
    "ContentTypeError",
    "DecodeError",
    "ModelError",
    "ResponseTooLargeError",
    "StreamError",
    "PatchError",
    "RedirectError",
    "error_for_status",
]

_MESSAGE_LIMIT = 300


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MESSAGE_LIMIT else flat[: _MESSAGE_LIMIT - 1] + "…"


class Flux0Error(Exception):
    """Root of every error raised by flux0lite."""

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(Flux0Error, ValueError):
    """The caller passed something unusable (a bad URL, a negative timeout, ...)."""


class APIConnectionError(Flux0Error):
    """The request did not get an HTTP answer: refused, reset, DNS failure, timeout."""


class ConnectError(APIConnectionError):
    """Connecting failed, so the request provably never reached the server (safe to retry)."""


class TLSError(ConnectError):
    """The TLS handshake failed (certificate, protocol version): nothing was sent, and the same
    handshake would fail again, so it is never retried."""


class ProxyError(ConnectError):
    """The proxy did not open the way to the server (its CONNECT answer was not 2xx).

    The request itself was never sent to the server. ``status_code`` and ``headers`` are the
    proxy's answer, when it gave one.
    """

    def __init__(
        self, message: str, *, status_code: Optional[int] = None, headers: Optional[Mapping[str, str]] = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers: Dict[str, str] = dict(headers or {})

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_rebuild_proxy_error, (type(self), self.message, self.status_code, self.headers))


class ProxyAuthenticationError(ProxyError):
    """407: the proxy wants (other) credentials, given as ``http://user:password@proxy:port``.

    Never retried: the same credentials would be refused again. ``proxy_authenticate`` is the
    scheme the proxy asked for (its ``Proxy-Authenticate`` header).
    """

    @property
    def proxy_authenticate(self) -> str:
        return self.headers.get("proxy-authenticate", "")


def _rebuild_proxy_error(
    cls: Type[ProxyError], message: str, status_code: Optional[int], headers: Dict[str, str]
) -> ProxyError:
    return cls(message, status_code=status_code, headers=headers)


class RequestAborted(APIConnectionError):
    """The call was in flight when :meth:`Flux0.abort` was called (from any thread): it ended
    at once, whether it was connecting, waiting to retry or reading, and was not retried. The
    request may or may not have reached the server. Also the end of a call whose async task
    was cancelled, and of one waiting to retry when its client was closed."""


class APITimeoutError(APIConnectionError):
    """A connect or read timeout expired."""


class ConnectTimeout(APITimeoutError, ConnectError):
    """The TCP/TLS connection was not established in time; nothing was sent."""


class ReadTimeout(APITimeoutError):
    """The server sent nothing for longer than the read timeout."""


class TotalTimeout(APITimeoutError):
    """The whole call (every retry, redirect and, for a stream, every event) took longer than
    ``Timeout.total``: a server that trickles bytes cannot keep it alive. Never retried."""


class APIError(Flux0Error):
    """The server answered with an error status.

    ``detail`` is the server's ``detail`` field when the body is flux0's error JSON: a string
    for application errors, a list of ``{type, loc, msg, input}`` dicts for validation errors.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        method: str = "",
        url: str = "",
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.headers: Dict[str, str] = dict(headers or {})
        self.method = method
        self.url = url
        where = f" ({method} {url})" if method and url else ""
        super().__init__(f"HTTP {status_code}{where}: {message}")
        self.detail_message = _one_line(message)

    @property
    def detail(self) -> Union[str, List[Any], None]:
        if isinstance(self.body, dict):
            detail = self.body.get("detail")
            if isinstance(detail, (str, list)):
                return detail
        return None

    def __reduce__(self) -> Tuple[Any, ...]:
        return (
            _rebuild_api_error,
            (type(self), self.status_code, self.detail_message, self.body, self.headers, self.method, self.url),
        )


def _rebuild_api_error(
    cls: Type[APIError],
    status_code: int,
    message: str,
    body: Any,
    headers: Dict[str, str],
    method: str,
    url: str,
) -> APIError:
    return cls(status_code, message, body=body, headers=headers, method=method, url=url)


class BadRequestError(APIError):
    """400. flux0 also answers 400 for an unknown session on the events endpoints."""


class AuthenticationError(APIError):
    """401, e.g. from a proxy in front of flux0 that wants a bearer token."""


class PermissionDeniedError(APIError):
    """403."""


class NotFoundError(APIError):
    """404."""


class MethodNotAllowedError(APIError):
    """405; ``allowed`` lists the methods from the ``Allow`` header."""

    @property
    def allowed(self) -> List[str]:
        return [m.strip() for m in self.headers.get("allow", "").split(",") if m.strip()]


class ConflictError(APIError):
    """409."""


class ValidationError(APIError):
    """422: the request was well-formed HTTP but the server rejected its content."""

    @property
    def errors(self) -> List[Dict[str, Any]]:
        """Validation errors as dicts (a string detail becomes one ``{"msg": ...}`` entry)."""
        detail = self.detail
        if isinstance(detail, list):
            return [d if isinstance(d, dict) else {"msg": str(d)} for d in detail]
        if isinstance(detail, str):
            return [{"msg": detail}]
        return []


class RateLimitedError(APIError):
    """429; ``retry_after`` holds the parsed ``Retry-After`` in seconds, if any."""

    @property
    def retry_after(self) -> Optional[float]:
        return parse_retry_after(self.headers.get("retry-after"))


class ServerError(APIError):
    """Any 5xx."""


class ProtocolError(Flux0Error):
    """The server's answer breaks the API's contract."""


class ContentTypeError(ProtocolError):
    """Unexpected ``Content-Type`` (HTML error page from a proxy, JSON instead of a stream, ...)."""


class DecodeError(ProtocolError):
    """A body that is not valid UTF-8 JSON."""


class ModelError(DecodeError):
    """Valid JSON whose shape does not fit the expected model (missing id, wrong types)."""


class ResponseTooLargeError(ProtocolError):
    """A body, SSE line or SSE event exceeded its configured size limit."""


class StreamError(ProtocolError):
    """An event stream ended badly: cut mid-body or in the middle of an event."""


class PatchError(ProtocolError):
    """A chunk's JSON patch could not be applied to the message it builds."""


class RedirectError(ProtocolError):
    """A redirect to a forbidden scheme, a loop, too many hops, or a ``Location`` that is no
    usable URL (a malformed host, a port out of range, credentials in it)."""


_BY_STATUS: Dict[int, Type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitedError,
}


def _detail_text(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list):
            parts = []
            try:
                for item in detail:
                    if isinstance(item, dict):
                        where = item.get("loc")
                        if isinstance(where, list):  # FastAPI's: ["body", "field", 0]
                            loc = ".".join(str(x) for x in where if x != "body")
                        else:  # anything else a server may send, null included
                            loc = "" if where is None else str(where)
                        msg = str(item.get("msg", item))
                        parts.append(f"{loc}: {msg}" if loc else msg)
                    else:
                        parts.append(str(item))
            except RecursionError:  # a value nested too deep to print: the status line says enough
                return fallback
            if parts:
                return "; ".join(parts)
    if isinstance(body, str) and body.strip():
        return body.strip()
    return fallback


def error_for_status(
    status_code: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    reason: str = "",
    method: str = "",
    url: str = "",
) -> APIError:
    """Build the most specific :class:`APIError` subclass for an error response."""
    if status_code in _BY_STATUS:
        cls = _BY_STATUS[status_code]
    elif status_code >= 500:
        cls = ServerError
    else:
        cls = APIError
    message = _detail_text(body, reason or "error")
    return cls(status_code, message, body=body, headers=headers, method=method, url=url)
