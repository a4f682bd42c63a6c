"""``client=``/``async_client=``: requests sent through the caller's httpx-like client.

Only ``build_request(method, url, ...)`` and ``send(request, stream=...)`` are used, and the
response's ``status_code``, ``headers``, ``content``/``read()`` and ``iter_bytes()``; httpx is
never imported. No timeout is passed unless ``timeout_ms`` asks for one, so the client's own
timeout stays in force (the SDK passes ``None``, which silently disables it). httpx errors are
re-raised as flux0lite's (``ConnectError``, ``ReadTimeout``, ...), chained to the original.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Callable, Dict, Iterator, Optional, Tuple

from flux0lite import (
    APIConnectionError,
    ChunkEvent,
    ConnectError,
    ConnectTimeout,
    ContentTypeError,
    DecodeError,
    Flux0Error,
    RawStreamEvent,
    ReadTimeout,
    RedirectError,
    SSEDecoder,
    SSEEvent,
    StatusEvent,
    StreamError,
    StreamEvent,
    __version__,
)
from flux0lite.errors import error_for_status

from .operation import Operation, decode_json_body, error_body, lower_headers, sdk_error

__all__ = ["send_json", "send_json_async", "open_stream", "open_stream_async", "USER_AGENT"]

USER_AGENT = f"flux0lite/{__version__}"


def _from_httpx(exc: BaseException) -> Optional[Flux0Error]:
    names = {c.__name__ for c in type(exc).__mro__ if c.__module__.split(".")[0] in ("httpx", "httpcore")}
    if not names:
        return None  # the caller's own exception: not ours to rename
    text = f"{type(exc).__name__}: {exc}"
    if names & {"ConnectTimeout", "PoolTimeout"}:
        return ConnectTimeout(text)
    if "TimeoutException" in names:
        return ReadTimeout(text)
    if "ConnectError" in names:
        return ConnectError(text)
    if "TooManyRedirects" in names:
        return RedirectError(text)
    if "DecodingError" in names:
        return DecodeError(text)
    return APIConnectionError(text)


def _reraise(exc: BaseException) -> None:
    mapped = _from_httpx(exc)
    if mapped is not None:
        raise mapped from exc


def _request(
    client: Any, base_url: str, op: Operation, accept: str, headers: Dict[str, str], timeout_ms: Optional[int]
) -> Any:
    send_headers = {"accept": accept, "user-agent": USER_AGENT}
    body = op.body_bytes
    if body is not None:
        send_headers["content-type"] = "application/json"
    send_headers.update(headers)
    kwargs: Dict[str, Any] = {"headers": send_headers}
    if op.params:
        kwargs["params"] = dict(op.params)
    if body is not None:
        kwargs["content"] = body
    if timeout_ms is not None:
        kwargs["timeout"] = timeout_ms / 1000.0
    return client.build_request(op.method, base_url + op.path, **kwargs)


def _log(logger: Any, text: str, *args: Any) -> None:
    if logger is not None:
        logger.debug(text, *args)


def _status_error(response: Any, content: bytes, headers: Dict[str, str], op: Operation) -> Optional[Flux0Error]:
    """The SDK's error for an answer whose status is not 2xx, or None."""
    status = int(response.status_code)
    if 200 <= status < 300:
        return None
    error = error_for_status(status, error_body(content), headers, method=op.method, url=_url(response, op))
    return sdk_error(error, op, raw_response=response)


def _url(response: Any, op: Operation) -> str:
    return str(getattr(response, "url", op.path))


def _json_result(response: Any, op: Operation) -> Any:
    content = bytes(response.content)
    headers = lower_headers(response.headers)
    error = _status_error(response, content, headers, op)
    if error is not None:
        raise error
    return decode_json_body(content, headers.get("content-type", ""), f"{op.method} {_url(response, op)}")


def send_json(
    client: Any, base_url: str, op: Operation, headers: Dict[str, str], timeout_ms: Optional[int], logger: Any
) -> Any:
    request = _request(client, base_url, op, "application/json", headers, timeout_ms)
    _log(logger, "-> %s %s (custom client)", op.method, base_url + op.path)
    try:
        response = client.send(request)
    except Exception as exc:
        _reraise(exc)
        raise
    _log(logger, "<- %s %s %s", op.method, base_url + op.path, response.status_code)
    return _json_result(response, op)


async def send_json_async(
    client: Any, base_url: str, op: Operation, headers: Dict[str, str], timeout_ms: Optional[int], logger: Any
) -> Any:
    request = _request(client, base_url, op, "application/json", headers, timeout_ms)
    _log(logger, "-> %s %s (custom async client)", op.method, base_url + op.path)
    try:
        response = await client.send(request)
    except Exception as exc:
        _reraise(exc)
        raise
    _log(logger, "<- %s %s %s", op.method, base_url + op.path, response.status_code)
    return _json_result(response, op)


def stream_event(sse: SSEEvent) -> StreamEvent:
    if sse.event not in ("status", "chunk"):
        return RawStreamEvent(event=sse.event, data=sse.data, id=sse.id)
    try:
        payload = json.loads(sse.data)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"{sse.event!r} stream event: malformed JSON: {exc}") from exc
    return StatusEvent.from_dict(payload) if sse.event == "status" else ChunkEvent.from_dict(payload)


def _stream_failure(response: Any, content: bytes, op: Operation) -> Optional[Flux0Error]:
    """Why an opened stream cannot be read (error status or not an event stream), if it cannot."""
    headers = lower_headers(response.headers)
    error = _status_error(response, content, headers, op)
    if error is not None:
        return error
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "text/event-stream":
        url = _url(response, op)
        return ContentTypeError(f"expected text/event-stream from {op.method} {url}, got {media or 'nothing'!r}")
    return None


def open_stream(
    client: Any, base_url: str, op: Operation, headers: Dict[str, str], timeout_ms: Optional[int], logger: Any
) -> Tuple[Iterator[StreamEvent], Callable[[], None], Any]:
    request = _request(client, base_url, op, "text/event-stream", headers, timeout_ms)
    _log(logger, "-> %s %s (custom client, stream)", op.method, base_url + op.path)
    try:
        response = client.send(request, stream=True)
        ok = 200 <= int(response.status_code) < 300
        failure = _stream_failure(response, b"" if ok else bytes(response.read()), op)
    except Exception as exc:
        _reraise(exc)
        raise
    if failure is not None:
        response.close()
        raise failure

    def events() -> Iterator[StreamEvent]:
        decoder = SSEDecoder()
        try:
            for chunk in response.iter_bytes():
                for sse in decoder.feed(chunk):
                    yield stream_event(sse)
        except Exception as exc:
            _reraise(exc)
            raise
        finally:
            response.close()
        if decoder.has_pending:
            raise StreamError(f"{op.method} {base_url + op.path}: stream ended in the middle of an event")

    return events(), response.close, response


async def open_stream_async(
    client: Any, base_url: str, op: Operation, headers: Dict[str, str], timeout_ms: Optional[int], logger: Any
) -> Tuple[AsyncIterator[StreamEvent], Callable[[], Any], Any]:
    request = _request(client, base_url, op, "text/event-stream", headers, timeout_ms)
    _log(logger, "-> %s %s (custom async client, stream)", op.method, base_url + op.path)
    try:
        response = await client.send(request, stream=True)
        ok = 200 <= int(response.status_code) < 300
        failure = _stream_failure(response, b"" if ok else bytes(await response.aread()), op)
    except Exception as exc:
        _reraise(exc)
        raise
    if failure is not None:
        await response.aclose()
        raise failure

    async def events() -> AsyncIterator[StreamEvent]:
        decoder = SSEDecoder()
        try:
            async for chunk in response.aiter_bytes():
                for sse in decoder.feed(chunk):
                    yield stream_event(sse)
        except Exception as exc:
            _reraise(exc)
            raise
        finally:
            await response.aclose()
        if decoder.has_pending:
            raise StreamError(f"{op.method} {base_url + op.path}: stream ended in the middle of an event")

    return events(), response.aclose, response
