"""How long to wait: :class:`Timeout`, an immutable value the client and each call can set."""

from __future__ import annotations

import math
import time
from typing import Optional, Union

from .errors import ConfigError
from .frozen import Frozen

__all__ = ["Timeout", "DEFAULT_TIMEOUT", "MAX_SECONDS"]

MAX_SECONDS = 1e8
"""Longest timeout accepted (about three years): the socket layer overflows on larger values."""


class Timeout(Frozen):
    """Seconds to wait for a connection, for each read from it, and for the whole call.

    The connect timeout bounds the whole opening of a connection once its name is resolved:
    the TCP connect (each address tried gets an equal share of what is left), a proxy's answer
    to ``CONNECT`` and the TLS handshake together.

    The read timeout is an idle timeout: on a stream it limits the silence between two reads,
    not the whole stream, so a stream that never ends is cut once the server goes quiet.
    ``total`` (off by default) bounds the whole call, however the server trickles its bytes:
    every retry, redirect and wait included, and for a stream every event up to the last; past
    it the call raises :class:`~flux0lite.TotalTimeout`.
    ``None`` disables a timeout (not recommended: flux0 can leave a stream open forever).
    """

    _field_names = ("connect", "read", "total")
    __slots__ = _field_names
    connect: Optional[float]
    read: Optional[float]
    total: Optional[float]

    def __init__(
        self, connect: Optional[float] = 10.0, read: Optional[float] = 60.0, total: Optional[float] = None
    ) -> None:
        for name, value in (("connect", connect), ("read", read), ("total", total)):
            self._set(name, value)
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not 0 < value <= MAX_SECONDS
            ):
                raise ConfigError(
                    f"Timeout.{name} must be a number of seconds in (0, {MAX_SECONDS:g}] or None, got {value!r}"
                )

    @classmethod
    def coerce(cls, value: Union["Timeout", float, int, None]) -> "Timeout":
        """A bare number sets the connect and read timeouts (``total`` stays off)."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(None, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"timeout must be a Timeout, a number of seconds or None, got {value!r}")
        return cls(value, value)

    def deadline(self) -> Optional[float]:
        """The ``time.monotonic()`` by which a call started now must end, or None."""
        return None if self.total is None else time.monotonic() + self.total

    def within(self, deadline: Optional[float]) -> "Timeout":
        """This timeout with connect and read cut to the time left before ``deadline``.

        Callers check that some time is left; the floor keeps a socket from being set to block.
        """
        if deadline is None:
            return self
        left = max(deadline - time.monotonic(), 0.001)
        return self._replace(
            connect=left if self.connect is None else min(self.connect, left),
            read=left if self.read is None else min(self.read, left),
        )


DEFAULT_TIMEOUT = Timeout()
