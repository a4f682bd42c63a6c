"""Keep-alive connections, kept per route (origin and proxy) and checked for a server-side close
before reuse.

Connecting raises :class:`ConnectError` (or :class:`ConnectTimeout`, :class:`TLSError`,
:class:`ProxyError`): the type itself says that nothing was sent, which is what the retry
policy needs to know.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from typing import Dict, List, Optional, Tuple

from .connections import new_connection
from .errors import ConnectError, ConnectTimeout, Flux0Error, TLSError
from .proxy import Route
from .timeout import Timeout

__all__ = ["ConnectionPool"]


class ConnectionPool:
    """Idle connections per route, at most ``max_idle_per_origin`` each; thread-safe."""

    def __init__(self, *, ssl_context: Optional[ssl.SSLContext] = None, max_idle_per_origin: int = 8) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle_per_origin
        self._idle: Dict[Route, List[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self.closed = False

    def checkout(self, route: Route, timeout: Timeout, *, reuse: bool) -> Tuple[http.client.HTTPConnection, bool]:
        """A connection for ``route`` and whether it was reused (an idle one, if ``reuse``)."""
        while reuse:
            with self._lock:
                idle = self._idle.get(route)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            if _dropped(conn):
                conn.close()
                continue
            assert conn.sock is not None
            conn.sock.settimeout(timeout.read)
            return conn, True
        return self._connect(route, timeout), False

    def checkin(self, route: Route, conn: http.client.HTTPConnection) -> None:
        """Keep a connection whose response was read whole (or close it when the pool is full)."""
        with self._lock:
            if not self.closed:
                idle = self._idle.setdefault(route, [])
                if len(idle) < self._max_idle:
                    idle.append(conn)
                    return
        conn.close()

    def close(self) -> None:
        """Close every idle connection (streams in flight close themselves)."""
        with self._lock:
            self.closed = True
            pools, self._idle = self._idle, {}
        for conns in pools.values():
            for conn in conns:
                conn.close()

    def _tls_context(self) -> ssl.SSLContext:
        # Loading the system's CA store costs milliseconds: once per pool, not per connection.
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _connect(self, route: Route, timeout: Timeout) -> http.client.HTTPConnection:
        origin = route.origin
        where = (origin.host if origin.is_unix else origin.netloc) + route.via
        conn = new_connection(route, self._tls_context, timeout.connect)
        try:
            conn.connect()
        except Flux0Error:
            conn.close()
            raise
        except socket.timeout as exc:
            conn.close()
            raise ConnectTimeout(f"connecting to {where} timed out after {timeout.connect} s") from exc
        except ssl.SSLError as exc:
            conn.close()
            raise TLSError(f"TLS handshake with {origin.netloc}{route.via} failed: {exc}") from exc
        except OSError as exc:
            conn.close()
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectError(f"cannot connect to {where}: {reason}") from exc
        assert conn.sock is not None
        if not origin.is_unix:
            try:
                # small requests must not wait for a delayed ACK (Nagle)
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        conn.sock.settimeout(timeout.read)
        return conn


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle connection with something to read was closed (or broken) by the server."""
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
