"""When to retry a request, and how long to wait first: an immutable policy value.

The policy is data, not control flow (the transport asks it questions). Its safety rule is the
one that matters for a chat API: a request that may have reached the server is retried only if
its method is idempotent, so a POSTed message is never delivered twice. A POST is retried only
after a connect failure, which proves nothing was sent.
"""

from __future__ import annotations

from typing import Callable, FrozenSet, Iterable, Mapping, Optional

from .errors import (
    APIConnectionError,
    ConfigError,
    ConnectError,
    Flux0Error,
    ProxyAuthenticationError,
    RequestAborted,
    StreamError,
    TLSError,
    TotalTimeout,
)
from .frozen import Frozen
from .httputil import parse_retry_after

# parse_retry_after is re-exported: it was defined here before it moved to the leaf module.
__all__ = ["Retry", "parse_retry_after", "DEFAULT_RETRY", "NO_RETRY"]


class Retry(Frozen):
    """How many times to retry and how long to back off.

    total
        Retries after the first attempt (0 disables retrying).
    backoff_factor
        Base of the exponential backoff: the n-th retry waits up to ``factor * 2**(n-1)`` s.
    max_backoff
        Cap on a computed backoff, in seconds.
    jitter
        "Full jitter": wait a uniform random time in ``[0, backoff]``, so that many clients
        retrying at once spread out instead of hammering the server in step.
    statuses
        Response statuses worth retrying (for idempotent methods only).
    respect_retry_after
        Wait what ``Retry-After`` asks for on a retryable status, clamped to ``max_retry_after``.
    max_retry_after
        Longest wait a server may ask for; longer requests are clamped to it.
    idempotent_methods
        Methods that may be re-sent after they reached the server.
    """

    _field_names = (
        "total",
        "backoff_factor",
        "max_backoff",
        "jitter",
        "statuses",
        "respect_retry_after",
        "max_retry_after",
        "idempotent_methods",
        "random_source",
    )
    __slots__ = _field_names
    _not_shown = _not_compared = ("random_source",)
    total: int
    backoff_factor: float
    max_backoff: float
    jitter: bool
    statuses: FrozenSet[int]
    respect_retry_after: bool
    max_retry_after: float
    idempotent_methods: FrozenSet[str]
    random_source: Optional[Callable[[], float]]

    def __init__(
        self,
        total: int = 2,
        backoff_factor: float = 0.5,
        max_backoff: float = 30.0,
        jitter: bool = True,
        statuses: Iterable[int] = frozenset({429, 502, 503, 504}),
        respect_retry_after: bool = True,
        max_retry_after: float = 60.0,
        idempotent_methods: Iterable[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}),
        random_source: Optional[Callable[[], float]] = None,
    ) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ConfigError(f"Retry.total must be an int >= 0, got {total!r}")
        for name, value in (
            ("backoff_factor", backoff_factor),
            ("max_backoff", max_backoff),
            ("max_retry_after", max_retry_after),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1e9:
                raise ConfigError(f"Retry.{name} must be a number of seconds in [0, 1e9], got {value!r}")
        self._set("total", total)
        self._set("backoff_factor", backoff_factor)
        self._set("max_backoff", max_backoff)
        self._set("jitter", jitter)
        self._set("statuses", frozenset(statuses))
        self._set("respect_retry_after", respect_retry_after)
        self._set("max_retry_after", max_retry_after)
        self._set("idempotent_methods", frozenset(m.upper() for m in idempotent_methods))
        self._set("random_source", random_source)

    def with_total(self, total: int) -> "Retry":
        return self._replace(total=total)

    def is_idempotent(self, method: str) -> bool:
        return method.upper() in self.idempotent_methods

    def may_retry_status(self, method: str, status: int) -> bool:
        return status in self.statuses and self.is_idempotent(method)

    def may_retry_error(self, method: str, error: Flux0Error) -> bool:
        """Whether a request that failed without an answer may be sent again; the error's type decides.

        - :class:`ConnectError` (and :class:`ConnectTimeout`): connecting failed, so nothing was
          sent and any method may be retried, except after a :class:`TLSError` or a
          :class:`ProxyAuthenticationError`, which would only fail the same way again;
        - any other :class:`APIConnectionError` (a read timeout, a dropped connection) or a
          :class:`StreamError` (a body cut short): the request may have reached the server, so
          only an idempotent method is retried;
        - a :class:`TotalTimeout` (the call's time is up), a :class:`RequestAborted` (the caller
          ended it) or anything else (a malformed answer, a body over its limit) is not retried.
        """
        if isinstance(error, (TotalTimeout, RequestAborted)):
            return False
        if isinstance(error, ConnectError):
            return not isinstance(error, (TLSError, ProxyAuthenticationError))
        if isinstance(error, (APIConnectionError, StreamError)):
            return self.is_idempotent(method)
        return False

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry number ``retry_number`` (1 for the first retry)."""
        if retry_number < 1 or self.backoff_factor == 0:
            return 0.0
        exponent = min(retry_number - 1, 62)
        ceiling = min(self.max_backoff, self.backoff_factor * (2.0**exponent))
        if self.jitter:
            if self.random_source is None:
                import random

                return ceiling * random.random()
            return ceiling * self.random_source()
        return ceiling

    def delay(self, retry_number: int, headers: Optional[Mapping[str, str]] = None) -> float:
        """Wait before a retry: ``Retry-After`` when honoured and present, else the backoff."""
        if self.respect_retry_after and headers is not None:
            asked = parse_retry_after(headers.get("retry-after"))
            if asked is not None:
                return min(asked, self.max_retry_after)
        return self.backoff(retry_number)


DEFAULT_RETRY = Retry()
NO_RETRY = Retry(total=0)
