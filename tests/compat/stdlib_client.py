"""A small real HTTP client with httpx's ``build_request``/``send`` shape, on http.client.

It is what a user might pass as ``client=`` when they have no httpx: it proves the layer only
duck-types the client, and lets that path run (and be measured) on every Python here.
"""

from __future__ import annotations

import asyncio
import http.client
import urllib.parse
from typing import Any, AsyncIterator, Dict, Iterator, List, Mapping, Optional


class Request:
    def __init__(
        self, method: str, url: str, headers: Dict[str, str], content: Optional[bytes], timeout: Optional[float]
    ):
        self.method, self.url, self.headers, self.content, self.timeout = method, url, headers, content, timeout


class Response:
    def __init__(self, conn: http.client.HTTPConnection, raw: http.client.HTTPResponse, url: str) -> None:
        self._conn, self._raw, self.url = conn, raw, url
        self.status_code = raw.status
        self.headers = {k.lower(): v for k, v in raw.getheaders()}
        self._content: Optional[bytes] = None

    @property
    def content(self) -> bytes:
        return self.read()

    @property
    def text(self) -> str:
        return self.read().decode("utf-8", "replace")

    def read(self) -> bytes:
        if self._content is None:
            self._content = self._raw.read()
            self.close()
        return self._content

    def iter_bytes(self) -> Iterator[bytes]:
        while True:
            piece = self._raw.read1(65536)
            if not piece:
                return
            yield piece

    def close(self) -> None:
        self._raw.close()
        self._conn.close()

    # the async face, for AsyncClient
    async def aread(self) -> bytes:
        return await asyncio.to_thread(self.read)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while True:
            piece = await asyncio.to_thread(self._raw.read1, 65536)
            if not piece:
                return
            yield piece

    async def aclose(self) -> None:
        self.close()


class Client:
    def __init__(self, headers: Optional[Mapping[str, str]] = None, timeout: float = 10.0) -> None:
        self.default_headers = dict(headers or {})
        self.timeout = timeout
        self.sent: List[Request] = []

    def build_request(
        self,
        method: str,
        url: str,
        *,
        params: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
        content: Optional[bytes] = None,
        timeout: Optional[float] = None,
        **ignored: Any,
    ) -> Request:
        if params:
            url += "?" + urllib.parse.urlencode(params)
        merged = dict(self.default_headers)
        merged.update(headers or {})
        return Request(method, url, merged, content, timeout if timeout is not None else self.timeout)

    def send(self, request: Request, *, stream: bool = False, **ignored: Any) -> Response:
        self.sent.append(request)
        parts = urllib.parse.urlsplit(request.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=request.timeout)
        target = parts.path + ("?" + parts.query if parts.query else "")
        conn.request(request.method, target, body=request.content, headers=request.headers)
        response = Response(conn, conn.getresponse(), request.url)
        if not stream:
            response.read()
        return response

    def close(self) -> None:
        pass


class AsyncClient(Client):
    async def send(self, request: Request, *, stream: bool = False, **ignored: Any) -> Response:  # type: ignore[override]
        return await asyncio.to_thread(Client.send, self, request, stream=stream)

    async def aclose(self) -> None:
        pass
