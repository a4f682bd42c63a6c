"""The entry point: :class:`Flux0`, which holds configuration and the connection pool."""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable, Dict, Literal, Mapping, Optional, Union, overload

from .errors import ConfigError
from .httputil import header_problem
from .proxy import ProxyRules
from .responses import StreamingResponse
from .retry import Retry
from .sse import DEFAULT_MAX_LINE_BYTES
from .timeout import DEFAULT_TIMEOUT, Timeout
from .tls import PathLike, check_system_ca_file, tls_context
from .transport import DEFAULT_MAX_RESPONSE_BYTES, Transport
from .urls import parse_server_url

if TYPE_CHECKING:
    import logging
    import ssl

    from .resources import Agents, Sessions

__all__ = ["Flux0", "DEFAULT_SERVER_URL", "enable_debug_logging"]

DEFAULT_SERVER_URL = "http://127.0.0.1:8080"
_COOKIE_NAME = "flux0_user_sub"


def enable_debug_logging() -> None:
    """Send flux0lite's debug log (credentials redacted) to stderr."""
    import logging
    import sys

    log = logging.getLogger("flux0lite")
    if not any(getattr(h, "_flux0lite", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler._flux0lite = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.DEBUG)


def _checked_header(name: object, value: object) -> str:
    """``value``, once it is known to go out as this header unchanged; else ConfigError."""
    problem = header_problem(name, value)
    if problem is not None:
        raise ConfigError(problem)
    assert isinstance(value, str)
    return value


# RFC 6265 4.1.1: a cookie value is visible ASCII without space, '"', ',', ';' and '\\'.
_COOKIE_OCTETS = frozenset(chr(c) for c in range(0x21, 0x7F)) - set('",;\\')


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return value


class Flux0:
    """A flux0 server client. Thread-safe; use as a (sync or async) context manager.

    ``server_url`` defaults to ``$FLUX0_SERVER_URL``, else ``http://127.0.0.1:8080``.
    ``timeout`` is a :class:`Timeout` or a number of seconds for both connect and read;
    ``Timeout(..., total=s)`` also bounds each whole call.
    ``token`` is sent as a bearer token (for a proxy in front of flux0); ``user_sub`` as the
    ``flux0_user_sub`` cookie that flux0 uses to tell users apart.
    ``proxy`` is a proxy URL for every request, ``False`` for none, or ``None`` to follow
    ``http_proxy``/``https_proxy``/``all_proxy``/``no_proxy`` (see :mod:`flux0lite.proxy`).
    ``cacert``, ``cert`` and ``key`` name PEM files: a CA bundle to trust instead of the
    system's, and a client certificate (and its key) to present; or pass ``ssl_context``.
    ``on_retry`` is called with a one-line message before each retry's wait.

    ``abort()``, from any thread, ends every call this client has in flight at that moment
    with :class:`~flux0lite.RequestAborted`: one blocked connecting or reading, one waiting to
    retry (it is not retried), an open event stream. Calls started afterwards work as usual.
    """

    def __init__(
        self,
        server_url: Optional[str] = None,
        *,
        timeout: Union[Timeout, float, None] = DEFAULT_TIMEOUT,
        retry: Optional[Retry] = None,
        headers: Optional[Mapping[str, str]] = None,
        token: Optional[str] = None,
        user_sub: Optional[str] = None,
        debug_logger: "Optional[logging.Logger]" = None,
        ssl_context: "Optional[ssl.SSLContext]" = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        proxy: Union[str, bool, None] = None,
        cacert: Optional[PathLike] = None,
        cert: Optional[PathLike] = None,
        key: Optional[PathLike] = None,
        on_retry: Optional[Callable[[str], None]] = None,
    ) -> None:
        url = server_url or os.environ.get("FLUX0_SERVER_URL") or DEFAULT_SERVER_URL
        self._origin, self._base_path = parse_server_url(url)
        self.server_url = f"{self._origin.scheme}://{self._origin.netloc}{self._base_path}"
        # Everything that goes into a header is checked here, so that a bad value is a
        # ConfigError now rather than a bare error at the first request.
        extra_headers: Dict[str, str] = {}
        if headers is not None and not isinstance(headers, Mapping):
            raise ConfigError(f"headers must be a mapping of names to values, got {type(headers).__name__}")
        for name, value in (headers or {}).items():
            extra_headers[name] = _checked_header(name, value)
        if token is not None:
            if not isinstance(token, str) or not token or header_problem("Authorization", token) or " " in token:
                raise ConfigError("token must be a non-empty string of visible ASCII or latin-1 characters")
            extra_headers["Authorization"] = f"Bearer {token}"
        if user_sub is not None:
            if not isinstance(user_sub, str) or not user_sub or not set(user_sub) <= _COOKIE_OCTETS:
                raise ConfigError(
                    'user_sub must be a non-empty string of visible ASCII without space, ", comma, ; or \\'
                )
            extra_headers["Cookie"] = f"{_COOKIE_NAME}={user_sub}"
        if retry is not None and not isinstance(retry, Retry):
            raise ConfigError(f"retry must be a Retry, got {type(retry).__name__}")
        if os.environ.get("FLUX0_DEBUG", "") not in ("", "0", "false", "no") and debug_logger is None:
            enable_debug_logging()
        self.max_line_bytes = _positive_int(max_line_bytes, "max_line_bytes")
        # one limit for a whole body and for what a streamed reply may rebuild
        self.max_response_bytes = _positive_int(max_response_bytes, "max_response_bytes")
        files_context = tls_context(cacert=cacert, cert=cert, key=key)
        if files_context is not None and ssl_context is not None:
            raise ConfigError("give either ssl_context or cacert/cert/key, not both")
        if files_context is None and ssl_context is None and self._origin.scheme == "https":
            check_system_ca_file()  # the system store is loaded at the first connection: a bad file fails now
        proxies = ProxyRules.resolve(proxy)
        proxies.route(self._origin)  # an unusable proxy setting for this server fails here, not later
        self._transport = Transport(
            timeout=Timeout.coerce(timeout),
            retry=retry if retry is not None else Retry(),
            headers=extra_headers,
            ssl_context=ssl_context or files_context,
            max_response_bytes=self.max_response_bytes,
            log=debug_logger,
            proxies=proxies,
            on_retry=on_retry,
        )
        self._agents: Optional[Agents] = None
        self._sessions: Optional[Sessions] = None

    # The resources (and through them the models and the stream machinery) are imported on
    # first use: a call that only sends a request, as "agents list --json" does, never needs them.
    @property
    def agents(self) -> Agents:
        if self._agents is None:
            from .resources import Agents

            self._agents = Agents(self)
        return self._agents

    @property
    def sessions(self) -> Sessions:
        if self._sessions is None:
            from .resources import Sessions

            self._sessions = Sessions(self)
        return self._sessions

    @property
    def timeout(self) -> Timeout:
        return self._transport.timeout

    @property
    def retry(self) -> Retry:
        return self._transport.retry

    def _url(self, path: str, params: Optional[Mapping[str, str]]) -> str:
        url = f"{self._origin.scheme}://{self._origin.netloc}{self._base_path}{path}"
        if params:
            try:
                url += "?" + urllib.parse.urlencode(params)
            except UnicodeEncodeError as exc:
                raise ConfigError("a query parameter is not valid Unicode text (a lone surrogate)") from exc
            except TypeError as exc:
                raise ConfigError(f"params must be a mapping of names to values, got {type(params).__name__}") from exc
        return url

    @overload
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, str]] = None,
        json_body: Any = None,
        timeout: Union[Timeout, float, None] = None,
        retry: Optional[Retry] = None,
        stream: Literal[False] = False,
    ) -> Any: ...

    @overload
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, str]] = None,
        json_body: Any = None,
        timeout: Union[Timeout, float, None] = None,
        retry: Optional[Retry] = None,
        stream: Literal[True],
    ) -> StreamingResponse: ...

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, str]] = None,
        json_body: Any = None,
        timeout: Union[Timeout, float, None] = None,
        retry: Optional[Retry] = None,
        stream: bool = False,
    ) -> Any:
        """Send a request to ``path`` (under the server URL); error statuses raise APIError.

        Returns the decoded JSON body, or with ``stream=True`` the open event stream (anything
        but an error status or an event stream raises ContentTypeError).
        """
        if not isinstance(method, str):
            raise ConfigError(f"method must be a string, got {type(method).__name__}")
        if retry is not None and not isinstance(retry, Retry):
            raise ConfigError(f"retry must be a Retry, got {type(retry).__name__}")
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        body = None
        if json_body is not None:
            try:
                body = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ConfigError("the request body is not valid Unicode text (a lone surrogate)") from exc
            except (TypeError, ValueError, RecursionError) as exc:  # not serialisable, circular, too deep
                message = " ".join(str(exc).split())[:200]
                raise ConfigError(f"the request body cannot be sent as JSON: {message}") from exc
            headers["Content-Type"] = "application/json"
        response = self._transport.request(
            method,
            self._url(path, params),
            headers=headers,
            body=body,
            timeout=Timeout.coerce(timeout) if timeout is not None else None,
            retry=retry,
            stream=stream,
        )
        if isinstance(response, StreamingResponse):  # only a 2xx answer to stream=True
            return response
        response.raise_for_status()
        if stream:
            # An answer that is neither an error nor a stream (e.g. a 3xx without Location).
            from .streaming import not_a_stream

            raise not_a_stream(method, response.url, response.content_type)
        return response.json()

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, str]] = None,
        json_body: Any = None,
        timeout: Union[Timeout, float, None] = None,
        retry: Optional[Retry] = None,
    ) -> Any:
        """``request(..., stream=False)``: the decoded JSON body."""
        return self.request(method, path, params=params, json_body=json_body, timeout=timeout, retry=retry)

    def request_stream(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, str]] = None,
        json_body: Any = None,
        timeout: Union[Timeout, float, None] = None,
        retry: Optional[Retry] = None,
    ) -> StreamingResponse:
        """``request(..., stream=True)``: the open event stream."""
        return self.request(method, path, params=params, json_body=json_body, timeout=timeout, retry=retry, stream=True)

    def abort(self) -> None:
        """End every call in flight on this client now, from any thread; the client stays usable.

        Each such call raises :class:`~flux0lite.RequestAborted` (an :class:`APIConnectionError`)
        at once, wherever it is: connecting (its socket is shut down), waiting before a retry,
        reading an answer or an open event stream (async ones too). It is neither retried nor
        redirected, and may or may not have reached the server. A call that starts after
        ``abort()`` returns is not affected; with nothing in flight, ``abort()`` does nothing.
        It takes a lock: call it from a thread, not from a signal handler (set a flag there).
        """
        self._transport.abort()

    def close(self) -> None:
        self._transport.close()

    def _pause(self, seconds: float) -> None:
        """A wait before a retry of the caller's own (the compat layer's): ended with
        :class:`RequestAborted` by :meth:`abort`, :meth:`close` or an async caller's cancel."""
        self._transport.pause(seconds)

    def __enter__(self) -> "Flux0":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self) -> "Flux0":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Flux0(server_url={self.server_url!r})"
