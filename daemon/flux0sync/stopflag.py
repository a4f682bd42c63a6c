"""The SIGTERM/SIGINT handler: a flag, and nothing else (stdlib only, so it can go in first)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any, Dict, Optional

__all__ = ["StopFlag"]


class StopFlag:
    """Remembers the first stop signal; the code that waits looks at it in short steps."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.signal is None:
            self.signal = signum

    @property
    def is_set(self) -> bool:
        return self.signal is not None

    def install(self) -> Dict[int, Any]:
        """Handle SIGTERM and SIGINT from now on; returns the handlers it replaced."""
        return {sig: signal.signal(sig, self) for sig in (signal.SIGTERM, signal.SIGINT)}

    @classmethod
    def current(cls) -> "StopFlag":
        """The flag already handling SIGTERM (installed when ``python -m flux0sync`` began), or a new one."""
        handler = signal.getsignal(signal.SIGTERM)
        return handler if isinstance(handler, cls) else cls()
