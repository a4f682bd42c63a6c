"""The SDK's ``RetryConfig``/``BackoffStrategy``, run on flux0lite's retry safety rules.

The numbers mean what they mean in the SDK: milliseconds, an exponential factor, and a cap on
the time spent retrying. What is retried follows flux0lite's :class:`~flux0lite.Retry` rules,
which are safer than the SDK's:

- an error status (429, 500, 502, 503, 504) is retried only for idempotent methods, so a POST
  that reached the server (a chat message, a new agent or session) is never sent twice;
- a connection failure is retried only with ``retry_connection_errors=True``, and for a POST
  only when connecting failed, which proves nothing was sent;
- ``Retry-After`` is honoured, and no retry starts after ``max_elapsed_time`` has passed.

Each wait is drawn uniformly from the upper half of ``min(initial * exponent**n, max)`` so
that many clients do not retry in step.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, List, Optional, TypeVar

from flux0lite import APIConnectionError, APIError, ConfigError, RequestAborted, Retry
from flux0lite.pool import CALL_CANCEL
from flux0lite.retry import parse_retry_after

__all__ = [
    "BackoffStrategy",
    "RetryConfig",
    "Retries",
    "RETRY_STATUSES",
    "call_with_retries",
    "call_with_retries_async",
]

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Only the safety questions are asked of this policy; the loop below does the waiting.
_SAFETY = Retry(statuses=RETRY_STATUSES)


@dataclass
class BackoffStrategy:
    """All in milliseconds, except ``exponent``."""

    initial_interval: int
    max_interval: int
    exponent: float
    max_elapsed_time: int

    def __post_init__(self) -> None:
        for name in ("initial_interval", "max_interval", "exponent", "max_elapsed_time"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ConfigError(f"BackoffStrategy.{name} must be a finite number >= 0, got {value!r}")

    def wait_seconds(self, retry_number: int) -> float:
        """The wait before retry ``retry_number`` (0 for the first one)."""
        try:
            grown = self.initial_interval * self.exponent ** min(retry_number, 1000)
        except OverflowError:
            grown = float(self.max_interval)
        ceiling = max(0.0, min(grown, float(self.max_interval))) / 1000.0
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class RetryConfig:
    strategy: str
    backoff: Optional[BackoffStrategy] = None
    retry_connection_errors: bool = False


@dataclass
class Retries:
    config: RetryConfig
    status_codes: List[str] = field(default_factory=lambda: [str(s) for s in sorted(RETRY_STATUSES)])


def _may_retry(error: Exception, method: str, config: RetryConfig) -> bool:
    if isinstance(error, APIError):
        return _SAFETY.may_retry_status(method, error.status_code)
    if isinstance(error, APIConnectionError):
        # the native rule decides what may be re-sent (a connect failure was never sent)
        return config.retry_connection_errors and _SAFETY.may_retry_error(method, error)
    return False


def next_wait(error: Exception, method: str, config: RetryConfig, retry_number: int, elapsed: float) -> Optional[float]:
    """Seconds to wait before retrying after ``error``, or None to give up and raise it."""
    backoff = config.backoff
    if config.strategy != "backoff" or backoff is None or not _may_retry(error, method, config):
        return None
    wait = backoff.wait_seconds(retry_number)
    if isinstance(error, APIError):
        asked = parse_retry_after(error.headers.get("retry-after"))
        if asked is not None:
            wait = max(wait, asked)
    if (elapsed + wait) * 1000.0 > backoff.max_elapsed_time:
        return None
    return wait


def _wait_unless_cancelled(seconds: float) -> None:
    """``time.sleep``, which the call's async caller ends by cancelling it (see
    :class:`flux0lite.pool.CallCancel`): the thread then stops, retrying nothing."""
    cancel = CALL_CANCEL.get()
    if cancel is None:
        time.sleep(seconds)
    elif cancel.signal.wait(seconds):
        raise RequestAborted("the call was cancelled while it waited to retry")


def call_with_retries(
    attempt: Callable[[], T],
    config: Optional[RetryConfig],
    method: str,
    *,
    sleep: Callable[[float], None] = _wait_unless_cancelled,
) -> T:
    """Run ``attempt`` until it succeeds or ``config`` says to stop; then its error is raised."""
    started = time.monotonic()
    retry_number = 0
    while True:
        try:
            return attempt()
        except Exception as error:
            wait = (
                None if config is None else next_wait(error, method, config, retry_number, time.monotonic() - started)
            )
            if wait is None:
                raise
        sleep(wait)
        retry_number += 1


async def call_with_retries_async(attempt: Callable[[], Awaitable[T]], config: Optional[RetryConfig], method: str) -> T:
    started = time.monotonic()
    retry_number = 0
    while True:
        try:
            return await attempt()
        except Exception as error:
            wait = (
                None if config is None else next_wait(error, method, config, retry_number, time.monotonic() - started)
            )
            if wait is None:
                raise
        await asyncio.sleep(wait)
        retry_number += 1
