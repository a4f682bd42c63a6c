"""Keep-alive connections, kept per route (origin and proxy) and checked for a server-side close
before reuse; and the connections in flight, so that :meth:`ConnectionPool.abort` can end them.

Connecting raises :class:`ConnectError` (or :class:`ConnectTimeout`, :class:`TLSError`,
:class:`ProxyError`): the type itself says that nothing was sent, which is what the retry
policy needs to know.
"""

from __future__ import annotations

import contextvars
import http.client
import socket
import ssl
import threading
import weakref
from typing import Dict, List, Optional, Tuple

from .connections import new_connection, readable_now
from .errors import ConnectError, ConnectTimeout, Flux0Error, RequestAborted, TLSError
from .proxy import Route
from .timeout import Timeout
from .tls import system_context

__all__ = ["ConnectionPool", "CallCancel", "CALL_CANCEL"]

# a connection in flight: the socket that ends it when shut down, and its call's abort signal
_InFlight = Tuple[Optional[socket.socket], threading.Event]


class CallCancel:
    """One call's own abort, for a caller that stops waiting for it (an async task cancelled,
    see :func:`flux0lite.aio.in_thread`): :meth:`cancel` ends the call as
    :meth:`ConnectionPool.abort` ends every call, no retry or redirect is sent after it, and
    the socket it has in flight is shut down. The call finds it in :data:`CALL_CANCEL`."""

    def __init__(self) -> None:
        self.signal = threading.Event()
        self._lock = threading.Lock()
        self._pools: "weakref.WeakSet[ConnectionPool]" = weakref.WeakSet()

    def watch(self, pool: "ConnectionPool") -> None:
        """``pool`` runs this call (before the call puts anything in flight there)."""
        with self._lock:
            self._pools.add(pool)

    def cancel(self) -> None:
        # the signal first: a pool watched from here on sees it before connecting (_enter)
        self.signal.set()
        with self._lock:
            pools = list(self._pools)
        for pool in pools:
            pool.end_calls(self.signal)


# The CallCancel of the call running in this context, if its caller may cancel it
CALL_CANCEL: "contextvars.ContextVar[Optional[CallCancel]]" = contextvars.ContextVar(
    "flux0lite_call_cancel", default=None
)


class ConnectionPool:
    """Idle connections per route, at most ``max_idle_per_origin`` each; thread-safe.

    Every connection checked out is *in flight* until it is checked in or discarded. A call
    takes the pool's current *abort signal* when it starts (:meth:`abort_signal`) and hands it
    to :meth:`checkout`; :meth:`abort` sets that signal, so the calls holding it see it, and
    shuts down the sockets in flight, so the ones blocked on the network wake up at once.
    """

    def __init__(self, *, ssl_context: Optional[ssl.SSLContext] = None, max_idle_per_origin: int = 8) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle_per_origin
        self._idle: Dict[Route, List[http.client.HTTPConnection]] = {}
        # each connection in flight, the socket to shut down to end it (the one it is opening
        # while it connects: it only becomes ``conn.sock`` once connected) and its call's abort
        # signal; weak, so that a stream dropped unclosed is still collected and its socket
        # closed, as before
        self._in_flight: "weakref.WeakKeyDictionary[http.client.HTTPConnection, _InFlight]"
        self._in_flight = weakref.WeakKeyDictionary()
        self._abort_signal = threading.Event()
        # the calls' own signals (CallCancel) that the next abort sets too
        self._own_signals: "weakref.WeakSet[threading.Event]" = weakref.WeakSet()
        self._lock = threading.Lock()
        self.closed = False
        # the route last looked up and its idle list (see _idle_list); changed under the lock
        self._last: Optional[Tuple[Route, List[http.client.HTTPConnection]]] = None

    def abort_signal(self, own: Optional[threading.Event] = None) -> threading.Event:
        """The signal that the next :meth:`abort` sets: a call takes it when it starts. A call
        with a signal of its own (:class:`CallCancel`) keeps it, and the next abort sets it too."""
        with self._lock:
            if own is None:
                return self._abort_signal
            self._own_signals.add(own)
            return own

    def abort(self) -> None:
        """End every call in flight: set their signal, shut their sockets down (thread-safe).

        Calls that start afterwards take a fresh signal and are not affected.
        """
        with self._lock:
            signal, self._abort_signal = self._abort_signal, threading.Event()
            signal.set()  # under the lock: a socket registered after this sees it (_enter)
            own, self._own_signals = list(self._own_signals), weakref.WeakSet()
            for other in own:
                other.set()
            sockets = [sock for sock, _ in self._in_flight.values()]
        _shut_down(sockets)

    def end_calls(self, signal: threading.Event) -> None:
        """Shut down the sockets in flight of the calls holding ``signal``, which is set."""
        with self._lock:
            sockets = [sock for sock, held in self._in_flight.values() if held is signal]
        _shut_down(sockets)

    def checkout(
        self, route: Route, timeout: Timeout, *, reuse: bool, aborted: threading.Event
    ) -> Tuple[http.client.HTTPConnection, bool]:
        """A connection for ``route`` and whether it was reused (an idle one, if ``reuse``).

        Raises :class:`RequestAborted` once ``aborted`` is set, instead of connecting.
        """
        while reuse:
            with self._lock:
                idle = self._idle_list(route)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            if _dropped(conn):
                conn.close()
                continue
            assert conn.sock is not None
            try:
                self._enter(conn, conn.sock, aborted)
            except RequestAborted:
                conn.close()
                raise
            conn.sock.settimeout(timeout.read)
            return conn, True
        return self._connect(route, timeout, aborted), False

    def _idle_list(self, route: Route) -> Optional[List[http.client.HTTPConnection]]:
        """The idle connections of ``route`` (None if it never had one); under the lock. A
        client's requests mostly share one Route object: it is not hashed again for them."""
        last = self._last
        if last is not None and last[0] is route:
            return last[1]
        idle = self._idle.get(route)
        if idle is not None:
            self._last = (route, idle)
        return idle

    def _enter(self, conn: http.client.HTTPConnection, sock: Optional[socket.socket], aborted: threading.Event) -> None:
        """Put ``conn`` in flight with ``sock`` as its socket, unless its call was aborted."""
        with self._lock:
            if aborted.is_set():
                raise RequestAborted("the call was aborted")
            self._in_flight[conn] = (sock, aborted)

    def discard(self, conn: http.client.HTTPConnection) -> None:
        """Close a connection that will not be reused (its call failed, its stream is done)."""
        with self._lock:
            self._in_flight.pop(conn, None)
        conn.close()

    def checkin(self, route: Route, conn: http.client.HTTPConnection) -> None:
        """Keep a connection whose response was read whole (or close it when the pool is full)."""
        with self._lock:
            self._in_flight.pop(conn, None)
            if not self.closed:
                idle = self._idle_list(route)
                if idle is None:
                    idle = self._idle[route] = []
                    self._last = (route, idle)
                if len(idle) < self._max_idle:
                    idle.append(conn)
                    return
        conn.close()

    def close(self) -> None:
        """Close every idle connection (streams in flight close themselves)."""
        with self._lock:
            self.closed = True
            pools, self._idle, self._last = self._idle, {}, None
        for conns in pools.values():
            for conn in conns:
                conn.close()

    def _tls_context(self) -> ssl.SSLContext:
        # Loading the system's CA store costs milliseconds: once per pool, not per connection.
        if self._ssl_context is None:
            self._ssl_context = system_context()
        return self._ssl_context

    def _connect(self, route: Route, timeout: Timeout, aborted: threading.Event) -> http.client.HTTPConnection:
        origin = route.origin
        where = (origin.host if origin.is_unix else origin.netloc) + route.via

        def opening(sock: socket.socket) -> None:
            self._enter(conn, sock, aborted)

        conn = new_connection(route, self._tls_context, timeout.connect, opening)
        try:
            self._enter(conn, None, aborted)
            conn.connect()
            # again with the socket connected: an abort that came before its ``connect`` began
            # could not shut it down
            self._enter(conn, conn.sock, aborted)
        except Flux0Error:
            self.discard(conn)
            raise
        except socket.timeout as exc:
            self.discard(conn)
            raise ConnectTimeout(f"connecting to {where} timed out after {timeout.connect} s") from exc
        except ssl.SSLError as exc:
            self.discard(conn)
            raise TLSError(f"TLS handshake with {origin.netloc}{route.via} failed: {exc}") from exc
        except OSError as exc:
            self.discard(conn)
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


def _shut_down(sockets: List[Optional[socket.socket]]) -> None:
    for sock in sockets:
        if sock is None:
            continue
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv or connect
        except OSError:
            pass  # already closed, or not connected yet (its call sees the signal)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle connection with something to read was closed (or broken) by the server."""
    return conn.sock is None or readable_now(conn.sock)
