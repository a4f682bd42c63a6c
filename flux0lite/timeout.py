"""How long to wait: :class:`Timeout`, an immutable value the client and each call can set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from .errors import ConfigError

__all__ = ["Timeout", "DEFAULT_TIMEOUT"]


@dataclass(frozen=True)
class Timeout:
    """Seconds to wait for a connection, and for each read from it.

    The read timeout is an idle timeout: on a stream it limits the silence between two reads,
    not the whole stream, so a stream that never ends is cut once the server goes quiet.
    ``None`` disables a timeout (not recommended: flux0 can leave a stream open forever).
    """

    connect: Optional[float] = 10.0
    read: Optional[float] = 60.0

    def __post_init__(self) -> None:
        for name in ("connect", "read"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(f"Timeout.{name} must be a positive number or None, got {value!r}")

    @classmethod
    def coerce(cls, value: Union["Timeout", float, int, None]) -> "Timeout":
        """A bare number sets both timeouts."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(None, None)
        return cls(float(value), float(value))


DEFAULT_TIMEOUT = Timeout()
