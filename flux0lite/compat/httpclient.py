"""The SDK's ``HttpClient``/``AsyncHttpClient``: what a ``client=``/``async_client=`` must offer.

``httpx.Client`` and ``httpx.AsyncClient`` fit, as does any wrapper with the same methods;
flux0lite never imports httpx itself.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["HttpClient", "AsyncHttpClient"]


@runtime_checkable
class HttpClient(Protocol):
    def send(self, request: Any, *, stream: bool = False, **kwargs: Any) -> Any: ...

    def build_request(self, method: str, url: Any, **kwargs: Any) -> Any: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncHttpClient(Protocol):
    async def send(self, request: Any, *, stream: bool = False, **kwargs: Any) -> Any: ...

    def build_request(self, method: str, url: Any, **kwargs: Any) -> Any: ...

    async def aclose(self) -> None: ...
