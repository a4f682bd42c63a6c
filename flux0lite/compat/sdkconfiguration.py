"""``SERVERS`` and the configuration every resource of one client shares."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from flux0lite import ConfigError, Flux0, Timeout, __version__

from .types import UNSET, Unset
from .utils.retries import RetryConfig
from .utils.url import template_url

__all__ = ["SERVERS", "SDKConfiguration", "ServerIndexError", "resolve_server_url"]

SERVERS: List[str] = ["http://127.0.0.1:8080"]
# about 24.8 days (2**31 - 1 ms): a larger socket timeout overflows the platform's time_t
MAX_TIMEOUT_MS = 2**31 - 1
"""Contains the list of servers available to the SDK."""


class ServerIndexError(ConfigError, IndexError):
    """``server_idx`` names no entry of ``SERVERS`` (an IndexError, as in the SDK)."""


def resolve_server_url(
    server_idx: Optional[int], server_url: Optional[str], url_params: Optional[Dict[str, str]]
) -> str:
    """``server_url`` (templated), else ``SERVERS[server_idx]``, else ``$FLUX0_SERVER_URL``, else ``SERVERS[0]``."""
    if server_url:
        return template_url(server_url.rstrip("/"), url_params) if url_params else server_url.rstrip("/")
    if server_idx is not None:
        if isinstance(server_idx, bool) or not isinstance(server_idx, int) or not 0 <= server_idx < len(SERVERS):
            raise ServerIndexError(f"server_idx {server_idx!r} is out of range: SERVERS has {len(SERVERS)} entry")
        return SERVERS[server_idx]
    return os.environ.get("FLUX0_SERVER_URL") or SERVERS[0]


def timeout_from_ms(timeout_ms: Optional[int]) -> Optional[Timeout]:
    """The SDK's one timeout (ms) as flux0lite's connect and read timeouts; None: the default."""
    if timeout_ms is None:
        return None
    if (
        isinstance(timeout_ms, bool)
        or not isinstance(timeout_ms, (int, float))
        or not 0 < timeout_ms <= MAX_TIMEOUT_MS  # also refuses NaN
    ):
        raise ConfigError(f"timeout_ms must be a number of milliseconds in (0, {MAX_TIMEOUT_MS}], got {timeout_ms!r}")
    return Timeout(connect=timeout_ms / 1000.0, read=timeout_ms / 1000.0)


def _noop() -> None:
    return None


@dataclass
class SDKConfiguration:
    server_url: str
    native: Flux0
    client: Any = None
    async_client: Any = None
    retry_config: Union[RetryConfig, Unset, None] = UNSET
    timeout_ms: Optional[int] = None
    debug_logger: Optional[logging.Logger] = None
    server_idx: Optional[int] = None
    language: str = "python"
    sdk_version: str = __version__
    user_agent: str = f"flux0lite/{__version__}"
    client_supplied: bool = False
    async_client_supplied: bool = False

    def native_for(
        self, server_url: Optional[str], http_headers: Optional[Mapping[str, str]]
    ) -> Tuple[Flux0, Callable[[], None]]:
        """The flux0lite client for one call and how to release it.

        flux0lite's requests take no per-call base URL or headers, so a call that overrides
        either gets a short-lived client of its own (same timeout and logger).
        """
        if server_url is None and not http_headers:
            return self.native, _noop
        temporary = Flux0(
            (server_url or self.server_url).rstrip("/"),
            timeout=self.native.timeout,
            headers=dict(http_headers or {}),
            debug_logger=self.debug_logger,
        )
        return temporary, temporary.close
