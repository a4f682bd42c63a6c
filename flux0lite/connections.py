"""One new connection for a :class:`~flux0lite.proxy.Route`, in each of the ways a server is reached.

Direct TCP or TLS, a unix socket, the proxy itself (for forwarded http:// requests), or a
``CONNECT`` tunnel through the proxy with TLS to the origin inside it. The connections are
``http.client`` ones, not yet connected; ``connect()`` raises ``OSError`` subclasses as usual,
or :class:`ProxyError` when the proxy refuses the tunnel.
"""

from __future__ import annotations

import http.client
import socket
from typing import TYPE_CHECKING, Callable, Optional

from .errors import ConfigError, ProxyAuthenticationError, ProxyError
from .httputil import lower_headers
from .proxy import Proxy, Route, proxy_auth_message

if TYPE_CHECKING:
    import ssl

__all__ = ["new_connection"]

_REASON_LIMIT = 100


def new_connection(
    route: Route, ssl_context: "Callable[[], ssl.SSLContext]", timeout: Optional[float]
) -> http.client.HTTPConnection:
    """An unconnected connection for ``route``; ``ssl_context`` is called only for TLS."""
    origin, proxy = route.origin, route.proxy
    if origin.is_unix:
        return _UnixHTTPConnection(origin.host, timeout)
    if proxy is not None and route.tunnelled:
        return _TunnelledHTTPSConnection(route, proxy, ssl_context(), timeout)
    if proxy is not None:
        return http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)
    if origin.scheme == "https":
        return http.client.HTTPSConnection(origin.host, origin.port, timeout=timeout, context=ssl_context())
    return http.client.HTTPConnection(origin.host, origin.port, timeout=timeout)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket; the ``Host`` header says ``localhost``."""

    def __init__(self, path: str, timeout: Optional[float]) -> None:
        if not hasattr(socket, "AF_UNIX"):
            raise ConfigError("unix sockets are not available on this platform")
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _TunnelledHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the origin through a ``CONNECT`` tunnel; certificates are checked against the origin."""

    def __init__(self, route: Route, proxy: Proxy, context: "ssl.SSLContext", timeout: Optional[float]) -> None:
        super().__init__(route.origin.host, route.origin.port, timeout=timeout, context=context)
        self._route = route
        self._proxy = proxy
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._proxy.host, self._proxy.port), self.timeout)
        try:
            open_tunnel(sock, self._route, self._proxy)
            self.sock = self._tls.wrap_socket(sock, server_hostname=self._route.origin.host)
        except BaseException:
            sock.close()
            raise


def open_tunnel(sock: socket.socket, route: Route, proxy: Proxy) -> None:
    """Ask the proxy on ``sock`` to connect to the route's origin; raise unless it says 2xx."""
    origin = route.origin
    host = _ascii_host(origin.host)
    authority = f"[{host}]:{origin.port}" if ":" in host else f"{host}:{origin.port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
    response = http.client.HTTPResponse(sock, method="CONNECT")
    try:
        response.begin()
    except http.client.RemoteDisconnected as exc:
        raise ProxyError(
            f"proxy {proxy.display} closed the connection instead of answering CONNECT {authority}"
        ) from exc
    except http.client.HTTPException as exc:
        raise ProxyError(
            f"proxy {proxy.display} sent a malformed answer to CONNECT {authority}: {type(exc).__name__}"
        ) from exc
    try:
        status = response.status
        if 200 <= status < 300:
            return
        headers = lower_headers(response)
        if status == 407:
            raise ProxyAuthenticationError(proxy_auth_message(proxy), status_code=status, headers=headers)
        reason = "".join(ch for ch in response.reason[:_REASON_LIMIT] if ch.isprintable())
        raise ProxyError(
            f"proxy {proxy.display} refused CONNECT to {authority}: {status} {reason}",
            status_code=status,
            headers=headers,
        )
    finally:
        # Releases the reader only: on success the socket carries the tunnel from here on.
        response.close()


def _ascii_host(host: str) -> str:
    """The host as it goes on the wire: internationalised names in their IDNA form."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ConfigError(f"host name {host!r} cannot be encoded for the proxy") from exc
