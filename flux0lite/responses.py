"""What a request gives back: a whole :class:`Response`, or a :class:`StreamingResponse`."""

from __future__ import annotations

import http.client
import json
import socket
import zlib
from typing import Any, Dict, Iterator, List

from .errors import (
    APIConnectionError,
    ContentTypeError,
    DecodeError,
    ReadTimeout,
    ResponseTooLargeError,
    StreamError,
    error_for_status,
)
from .httputil import body_preview, error_body, is_json_media_type, media_type

__all__ = ["Response", "StreamingResponse", "decode_json", "READ_SIZE"]

READ_SIZE = 64 * 1024


def decode_json(raw: bytes, what: str) -> Any:
    """Parse a UTF-8 JSON body; anything else is a :class:`DecodeError` naming ``what``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what}: body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise DecodeError(f"{what}: JSON nested too deeply") from exc
    except ValueError as exc:
        raise DecodeError(f"{what}: malformed JSON: {exc}") from exc


class Response:
    """A complete response: status, lower-cased headers and the (decompressed) body."""

    def __init__(self, status: int, reason: str, headers: Dict[str, str], body: bytes, method: str, url: str) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.method = method
        self.url = url

    @property
    def content_type(self) -> str:
        return media_type(self.headers)

    def json(self) -> Any:
        if self.content_type and not is_json_media_type(self.content_type):
            raise ContentTypeError(
                f"expected JSON from {self.method} {self.url}, got {self.content_type!r} ({body_preview(self.body)})"
            )
        return decode_json(self.body, f"{self.method} {self.url}")

    def raise_for_status(self) -> None:
        if 200 <= self.status < 300:
            return
        raise error_for_status(
            self.status, error_body(self.body), self.headers, reason=self.reason, method=self.method, url=self.url
        )


class StreamingResponse:
    """A response whose body is read as it arrives; owns its connection until closed."""

    def __init__(
        self,
        conn: http.client.HTTPConnection,
        raw: http.client.HTTPResponse,
        headers: Dict[str, str],
        method: str,
        url: str,
    ) -> None:
        self._conn = conn
        self._raw = raw
        self.status = raw.status
        self.reason = raw.reason
        self.headers = headers
        self.method = method
        self.url = url
        self._closed = False
        encoding = headers.get("content-encoding", "").strip().lower()
        self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip") else None

    @property
    def content_type(self) -> str:
        return media_type(self.headers)

    def iter_bytes(self) -> Iterator[bytes]:
        """Body bytes as they arrive; raises ReadTimeout, StreamError or APIConnectionError."""
        while not self._closed:
            try:
                data = self._raw.read1(READ_SIZE)
            except socket.timeout as exc:
                self.close()
                raise ReadTimeout(f"no data from {self.method} {self.url} within the read timeout") from exc
            except http.client.IncompleteRead as exc:
                self.close()
                raise StreamError(f"{self.method} {self.url}: stream cut off mid-body") from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise APIConnectionError(f"{self.method} {self.url}: connection lost mid-stream: {exc}") from exc
            except ValueError as exc:  # read on a closed response
                if self._closed:
                    return
                raise StreamError(f"{self.method} {self.url}: bad chunked encoding") from exc
            if not data:
                remaining = self._raw.length
                if remaining:
                    self.close()
                    raise StreamError(f"{self.method} {self.url}: body cut off {remaining} bytes short of its length")
                if self._gunzip is not None:
                    tail = self._gunzip.flush()
                    if tail:
                        yield tail
                return
            if self._gunzip is None:
                yield data
                continue
            # Inflate in bounded pieces: a small gzip bomb must meet the size limits piece by
            # piece, not after it has been expanded whole.
            while data:
                try:
                    piece = self._gunzip.decompress(data, READ_SIZE * 16)
                except zlib.error as exc:
                    self.close()
                    raise DecodeError(f"{self.method} {self.url}: corrupt gzip stream") from exc
                data = self._gunzip.unconsumed_tail
                if piece:
                    yield piece

    def read_all(self, limit: int) -> bytes:
        chunks: List[bytes] = []
        size = 0
        for chunk in self.iter_bytes():
            size += len(chunk)
            if size > limit:
                self.close()
                raise ResponseTooLargeError(f"{self.method} {self.url}: body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Closing the socket (not draining it) is what cancels a flux0 agent run we gave up on.
        try:
            self._raw.close()
        finally:
            self._conn.close()

    def __enter__(self) -> "StreamingResponse":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
