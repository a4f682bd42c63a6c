"""A supervisor's end of ``$NOTIFY_SOCKET``, for the tests that run the daemon as systemd would."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import List


class NotifySocket:
    """A supervisor's end of ``$NOTIFY_SOCKET``: like systemd, it reads every datagram at once.

    The kernel queues only a few datagrams per socket (``net.unix.max_dgram_qlen``, often 10),
    so a listener that reads only when a test looks would stall the daemon's sends.
    """

    def __init__(self, tmp_path: Path, *, reading: bool = True) -> None:
        self.path = str(tmp_path / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: List[str] = []
        self.arrivals: List[float] = []  # when each message arrived (time.monotonic()), for watchdog timing
        self._changed = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        if reading:
            self._reader.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                message = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._changed:
                self.arrivals.append(time.monotonic())
                self.messages.append(message)
                self._changed.notify_all()

    def drain(self) -> List[str]:
        with self._changed:
            return list(self.messages)

    def forget(self) -> None:
        """Drop what arrived so far, so that ``wait_for`` sees only what a new daemon sends."""
        with self._changed:
            self.messages.clear()

    def wait_for(self, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for message in self.messages[seen:]:
                    if needle in message:
                        return message
                seen = len(self.messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{needle!r} never arrived; got {self.messages}")
                self._changed.wait(left)

    def close(self) -> None:
        self._closed = True
        if self._reader.is_alive():
            self._reader.join(5)
        self.sock.close()
