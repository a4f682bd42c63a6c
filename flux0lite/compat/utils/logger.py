"""``debug_logger``: the SDK takes any object with ``.debug()``; flux0lite wants a Logger."""

from __future__ import annotations

import logging
import os
from typing import Any, Optional, Protocol

from flux0lite import ConfigError

__all__ = ["Logger", "get_default_logger", "as_logging_logger"]


class Logger(Protocol):
    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None: ...


class _Forward(logging.Handler):
    def __init__(self, target: Logger) -> None:
        super().__init__(logging.DEBUG)
        self._target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._target.debug(record.getMessage())
        except Exception:
            self.handleError(record)


def as_logging_logger(debug_logger: Optional[Logger]) -> Optional[logging.Logger]:
    """A real Logger for flux0lite: the given one, or one that forwards to its ``.debug()``."""
    if debug_logger is None or isinstance(debug_logger, logging.Logger):
        return debug_logger
    if not callable(getattr(debug_logger, "debug", None)):
        raise ConfigError(f"debug_logger needs a debug() method, got {type(debug_logger).__name__}")
    forward = logging.Logger(f"flux0lite.compat.debug.{id(debug_logger):x}", logging.DEBUG)
    forward.addHandler(_Forward(debug_logger))
    return forward


def get_default_logger() -> Optional[logging.Logger]:
    """``logging.getLogger("flux0_client")`` when ``FLUX0_DEBUG`` asks for debug output, else None.

    Unlike the SDK, this does not reconfigure the root logger: flux0lite's own
    ``FLUX0_DEBUG`` handling already sends its log to stderr.
    """
    if os.environ.get("FLUX0_DEBUG", "") in ("", "0", "false", "no"):
        return None
    return logging.getLogger("flux0_client")
