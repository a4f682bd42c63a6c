"""Interrupt another thread's blocking HTTP call by shutting its sockets down.

A thread blocked in ``recv`` is not woken when another thread closes the socket, only when it
shuts it down (``shutdown(SHUT_RDWR)`` makes the read return at once, on every platform we
run on). flux0lite keeps its sockets to itself, so this module learns them the way CPython
documents for watching a process: an audit hook (PEP 578) sees each ``socket.connect`` and
records the socket under the thread that connects it. A thread that is being interrupted may
not open new connections either (a retry would otherwise reconnect and block again), so the
hook refuses them.

This is a stand-in for a flux0lite hook (an ``abort()`` on the client that shuts down the
connections it has in flight); with such a hook this module goes away.
"""

from __future__ import annotations

import socket
import sys
import threading
import weakref
from typing import Any, Dict, Set, Tuple

__all__ = ["Interrupted", "watch_current_thread", "unwatch_current_thread", "interrupt", "allow"]


class Interrupted(ConnectionAbortedError):
    """A connection attempt refused because its thread is being interrupted."""


_lock = threading.Lock()
_sockets: Dict[int, "weakref.WeakSet[socket.socket]"] = {}
_interrupted: Set[int] = set()
_installed = False


def _audit(event: str, args: Tuple[Any, ...]) -> None:
    # Called for every audited event of the process: keep the common path to one comparison.
    if event != "socket.connect":
        return
    ident = threading.get_ident()
    with _lock:
        watched = _sockets.get(ident)
        if watched is None:
            return
        if ident in _interrupted:
            raise Interrupted("this fetch was cancelled")
        sock = args[0]
        if isinstance(sock, socket.socket):
            watched.add(sock)


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    sys.addaudithook(_audit)  # cannot be removed: one per process, and it ignores unwatched threads


def watch_current_thread() -> int:
    """Record the sockets this thread connects from now on; returns its id for :func:`interrupt`."""
    _install()
    ident = threading.get_ident()
    with _lock:
        _sockets.setdefault(ident, weakref.WeakSet())
    return ident


def unwatch_current_thread() -> None:
    ident = threading.get_ident()
    with _lock:
        _sockets.pop(ident, None)
        _interrupted.discard(ident)


def interrupt(ident: int) -> int:
    """Shut down every socket the thread holds and refuse its new ones; returns how many."""
    with _lock:
        watched = _sockets.get(ident)
        if watched is None:
            return 0
        _interrupted.add(ident)
        targets = list(watched)
    count = 0
    for sock in targets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
            count += 1
        except OSError:  # already closed or never connected
            pass
    return count


def allow(ident: int) -> None:
    """The thread may connect again (its interrupted call has returned)."""
    with _lock:
        _interrupted.discard(ident)
