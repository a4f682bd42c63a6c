"""One new connection for a :class:`~flux0lite.proxy.Route`, in each of the ways a server is reached.

Direct TCP or TLS, a unix socket, the proxy itself (for forwarded http:// requests), or a
``CONNECT`` tunnel through the proxy with TLS to the origin inside it. The connections are
``http.client`` ones, not yet connected; ``connect()`` raises ``OSError`` subclasses as usual,
or :class:`ProxyError` when the proxy refuses the tunnel.

Every socket a connection opens is shown to its ``opening`` callback before it blocks on the
network (before ``connect``, before the TLS handshake), so that another thread can shut it
down to end the call at once (:meth:`flux0lite.Flux0.abort`); the callback may raise to stop
the connection from being opened at all.

A connection's timeout bounds its whole opening once the name is resolved, every blocking step
of it together (each address tried, the proxy's answer to ``CONNECT``, the TLS handshake), not
each step alone: a server or proxy trickling bytes cannot stretch it. Each address gets an equal
share of what is left when it is tried (one that refuses at once leaves its share to the next).
"""

from __future__ import annotations

import http.client
import select
import socket
import time
from typing import TYPE_CHECKING, Callable, Optional

from .errors import ConfigError, ProxyAuthenticationError, ProxyError
from .httputil import lower_headers
from .proxy import Proxy, Route, proxy_auth_message
from .responses import RawResponse

if TYPE_CHECKING:
    import ssl

__all__ = ["new_connection", "Opening", "readable_now"]

_REASON_LIMIT = 100

Opening = Callable[[socket.socket], None]
"""Called with each socket a connection opens, before it blocks on it; may raise to refuse."""


def new_connection(
    route: Route, ssl_context: "Callable[[], ssl.SSLContext]", timeout: Optional[float], opening: Opening
) -> http.client.HTTPConnection:
    """An unconnected connection for ``route``; ``ssl_context`` is called only for TLS."""
    origin, proxy = route.origin, route.proxy
    if origin.is_unix:
        return _UnixHTTPConnection(origin.host, timeout, opening)
    if proxy is not None and route.tunnelled:
        return _TunnelledHTTPSConnection(route, proxy, ssl_context(), timeout, opening)
    if proxy is not None:
        return _TCPConnection(proxy.host, proxy.port, timeout, opening)
    if origin.scheme == "https":
        return _TLSConnection(origin.host, origin.port, ssl_context(), timeout, opening)
    return _TCPConnection(origin.host, origin.port, timeout, opening)


def readable_now(sock: socket.socket) -> bool:
    """Whether ``sock`` has something to read at once: bytes, or the end its peer closed (or
    an error: a broken socket reads as readable). A TLS socket may hold bytes already decrypted
    (the rest of a record an answer ended in) that no poll of its descriptor shows."""
    try:
        pending = getattr(sock, "pending", None)  # ssl.SSLSocket's
        if pending is not None and pending() > 0:
            return True
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


def _deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: Optional[float]) -> Optional[float]:
    """The timeout of the next blocking step: what is left of ``deadline``."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("the connect timeout has passed")
    return left


def _open_tcp(host: str, port: int, deadline: Optional[float], opening: Opening) -> socket.socket:
    """``socket.create_connection``, showing each socket to ``opening`` before it connects."""
    last_error: Optional[OSError] = None
    addresses = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    for position, (family, kind, proto, _, address) in enumerate(addresses):
        # an equal share of what is left for each address still to try: one that drops packets
        # cannot use up the time of those after it (socket.timeout once nothing is left)
        left = _left(deadline)
        sock = socket.socket(family, kind, proto)
        try:
            opening(sock)
            sock.settimeout(None if left is None else left / (len(addresses) - position))
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc  # the next address may work; else the last error stands
        except BaseException:
            sock.close()
            raise
    raise last_error if last_error is not None else OSError(f"no address found for {host}")


def _start_tls(
    sock: socket.socket, context: "ssl.SSLContext", hostname: str, deadline: Optional[float], opening: Opening
) -> socket.socket:
    """TLS on a connected socket, shown to ``opening`` before the handshake blocks on it."""
    sock.settimeout(_left(deadline))  # the TLS socket's, for the whole handshake
    tls = context.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)
    try:
        opening(tls)  # the plain socket is detached now: only the TLS one can be shut down
        tls.do_handshake()
    except BaseException:
        tls.close()
        raise
    return tls


class _TCPConnection(http.client.HTTPConnection):
    """Plain HTTP to a server or to the proxy that forwards it."""

    def __init__(self, host: str, port: int, timeout: Optional[float], opening: Opening) -> None:
        super().__init__(host, port, timeout=timeout)
        self._opening = opening

    def connect(self) -> None:
        self.sock = _open_tcp(self.host, self.port, _deadline(self.timeout), self._opening)


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS straight to the server."""

    def __init__(
        self, host: str, port: int, context: "ssl.SSLContext", timeout: Optional[float], opening: Opening
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls = context
        self._opening = opening

    def connect(self) -> None:
        deadline = _deadline(self.timeout)
        sock = _open_tcp(self.host, self.port, deadline, self._opening)
        try:
            self.sock = _start_tls(sock, self._tls, self.host, deadline, self._opening)
        except BaseException:
            sock.close()
            raise


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket; the ``Host`` header says ``localhost``."""

    def __init__(self, path: str, timeout: Optional[float], opening: Opening) -> None:
        if not hasattr(socket, "AF_UNIX"):
            raise ConfigError("unix sockets are not available on this platform")
        super().__init__("localhost", timeout=timeout)
        self._path = path
        self._opening = opening

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._opening(sock)
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _TunnelledHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the origin through a ``CONNECT`` tunnel; certificates are checked against the origin."""

    def __init__(
        self, route: Route, proxy: Proxy, context: "ssl.SSLContext", timeout: Optional[float], opening: Opening
    ) -> None:
        super().__init__(route.origin.host, route.origin.port, timeout=timeout, context=context)
        self._route = route
        self._proxy = proxy
        self._tls = context
        self._opening = opening

    def connect(self) -> None:
        deadline = _deadline(self.timeout)
        sock = _open_tcp(self._proxy.host, self._proxy.port, deadline, self._opening)
        try:
            open_tunnel(sock, self._route, self._proxy, deadline)
            self.sock = _start_tls(sock, self._tls, self._route.origin.host, deadline, self._opening)
        except BaseException:
            sock.close()
            raise


def open_tunnel(sock: socket.socket, route: Route, proxy: Proxy, deadline: Optional[float]) -> None:
    """Ask the proxy on ``sock`` to connect to the route's origin, all by ``deadline`` (a
    ``time.monotonic()``, else ``socket.timeout``); raise unless it says 2xx."""
    origin = route.origin
    host = _ascii_host(origin.host)
    authority = f"[{host}]:{origin.port}" if ":" in host else f"{host}:{origin.port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    sock.settimeout(_left(deadline))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
    # Interim answers skipped, every read cut to what is left of the deadline, and a byte at a
    # time: whatever follows the answer's head stays on the socket, where readable_now sees it.
    response = RawResponse(sock, method="CONNECT", deadline=deadline, read_ahead=False)
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
            if readable_now(sock):
                # the proxy hung up (maybe in the middle of its answer, which then reads as a
                # whole one), or said more than it was asked: no tunnel to speak TLS in
                raise ProxyError(
                    f"proxy {proxy.display} closed or garbled the tunnel to {authority} after its {status}"
                )
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
