"""``Flux0`` (alias ``Flux0Client``): the SDK's client, on top of :class:`flux0lite.Flux0`."""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

from flux0lite import ConfigError
from flux0lite import Flux0 as NativeFlux0

from .agents import Agents
from .sdkconfiguration import SDKConfiguration, resolve_server_url, timeout_from_ms
from .sessions import Sessions
from .types import UNSET, Unset
from .utils.logger import Logger, as_logging_logger
from .utils.retries import RetryConfig

__all__ = ["Flux0", "Flux0Client"]


def _check_client(client: Any, what: str) -> None:
    if client is None:
        return
    if not (callable(getattr(client, "build_request", None)) and callable(getattr(client, "send", None))):
        raise ConfigError(f"{what} needs build_request() and send() methods, as httpx clients have")


class Flux0:
    """A flux0 client with the official SDK's constructor, resources and results.

    ``server_url`` (or ``SERVERS[server_idx]``, else ``$FLUX0_SERVER_URL``, else
    ``http://127.0.0.1:8080``); ``timeout_ms`` (default: flux0lite's 10 s connect / 60 s read);
    ``retry_config`` (default: flux0lite's safe retries); ``client``/``async_client``: an
    httpx-like client to send through instead of flux0lite's transport; ``debug_logger``: any
    object with ``.debug()``.
    """

    def __init__(
        self,
        server_idx: Optional[int] = None,
        server_url: Optional[str] = None,
        url_params: Optional[Dict[str, str]] = None,
        client: Any = None,
        async_client: Any = None,
        retry_config: Union[RetryConfig, Unset, None] = UNSET,
        timeout_ms: Optional[int] = None,
        debug_logger: Optional[Logger] = None,
    ) -> None:
        _check_client(client, "client")
        _check_client(async_client, "async_client")
        url = resolve_server_url(server_idx, server_url, url_params)
        logger = as_logging_logger(debug_logger)
        timeout = timeout_from_ms(timeout_ms)
        options: Dict[str, Any] = {"debug_logger": logger}
        if timeout is not None:
            options["timeout"] = timeout
        native = NativeFlux0(url, **options)
        self.sdk_configuration = SDKConfiguration(
            server_url=url,
            native=native,
            client=client,
            async_client=async_client,
            retry_config=retry_config,
            timeout_ms=timeout_ms,
            debug_logger=logger,
            server_idx=server_idx,
            client_supplied=client is not None,
            async_client_supplied=async_client is not None,
        )
        self.agents = Agents(self.sdk_configuration)
        self.sessions = Sessions(self.sdk_configuration)

    @property
    def native(self) -> NativeFlux0:
        """The :class:`flux0lite.Flux0` underneath, for flux0lite's own helpers (replies, retries)."""
        return self.sdk_configuration.native

    def close(self) -> None:
        """Close flux0lite's connections; a client passed in stays open (it is the caller's)."""
        self.sdk_configuration.native.close()

    def __enter__(self) -> "Flux0":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self) -> "Flux0":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Flux0(server_url={self.sdk_configuration.server_url!r})"


Flux0Client = Flux0
