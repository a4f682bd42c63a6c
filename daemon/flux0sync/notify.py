"""The systemd notify protocol (``Type=notify``) without libsystemd: one datagram per message."""

from __future__ import annotations

import os
import socket
from typing import Optional, Tuple

__all__ = ["Notifier", "watchdog_interval"]

_STATE_CHANGES = ("READY=", "RELOADING=", "STOPPING=")
# what systemd waits for: sent again until the supervisor takes it (see Notifier)
_WAITED_FOR = (*_STATE_CHANGES, "WATCHDOG=", "MAINPID=")


class Notifier:
    """Sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1`` and ``STOPPING=1`` to ``$NOTIFY_SOCKET``.

    Without ``NOTIFY_SOCKET`` (not under systemd) every call is a no-op. Send errors are
    swallowed: a missing supervisor must never stop the archive from syncing. A supervisor
    that stops reading must not stop it either: a datagram socket's queue is short (Linux:
    ``net.unix.max_dgram_qlen``, often 10), and a plain send to a full queue blocks for ever,
    so each send is non-blocking: a message that finds the queue full is dropped at once (the
    sync loop sends them, and must not wait on the supervisor at all). What systemd waits for
    is not lost that way: a state change (``READY=1``, ``RELOADING=1``, ``STOPPING=1``) or a
    watchdog ping goes again with the next message, or with :meth:`resend` (the sync loop calls
    it every second while one is pending).
    """

    def __init__(self, address: Optional[str] = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._address: Optional[str] = None
        if address and (address.startswith("/") or address.startswith("@")):
            # '@' names a socket in the abstract namespace
            self._address = "\0" + address[1:] if address.startswith("@") else address
        self.sent = 0
        self.dropped = 0
        self._pending: Tuple[str, ...] = ()  # a state change that found the queue full

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        if self._address is None:
            return False
        pending = self._pending
        if any(a.startswith(_STATE_CHANGES) for a in assignments):
            # the newest state is the one to say (and the last in the message: systemd reads
            # them in order): a pending older one goes
            pending = tuple(a for a in pending if not a.startswith(_STATE_CHANGES))
        message = pending + tuple(a for a in assignments if a not in pending)
        # a STATUS quoting a server's text may hold a lone surrogate: never an error here
        payload = "\n".join(a.replace("\n", " ") for a in message).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.connect(self._address)
                sock.send(payload)
        except OSError:  # BlockingIOError included: the supervisor's queue is full
            self.dropped += 1
            self._pending = tuple(a for a in message if a.startswith(_WAITED_FOR))
            return False
        self._pending = ()
        self.sent += 1
        return True

    @property
    def pending(self) -> bool:
        """A state change or a watchdog ping found the queue full and waits to go again."""
        return bool(self._pending)

    def resend(self) -> bool:
        """Send what is pending again (nothing new)."""
        return self.send() if self._pending else True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")


def watchdog_interval() -> Optional[float]:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), if systemd asked for them."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not _decimal(usec) or int(usec) == 0:  # anything else (garbage, a sign) is ignored
        return None
    if _decimal(pid) and int(pid) != os.getpid():
        return None
    return int(usec) / 2_000_000


def _decimal(text: str) -> bool:
    """ASCII digits, at most 20 (2**64 has 20): ``isdigit()`` alone takes "²" and other digits
    ``int()`` refuses, and ``int()`` refuses over 4,300 digits."""
    return text.isascii() and text.isdigit() and len(text) <= 20
