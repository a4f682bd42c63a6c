"""How every operation runs: per-call options, retries, transport choice, SDK-shaped errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, TypeVar, Union

from flux0lite import EventStream as NativeEventStream
from flux0lite import Retry
from flux0lite import errors as native

from . import customclient
from .operation import Operation, sdk_error
from .sdkconfiguration import SDKConfiguration, timeout_from_ms
from .types import Unset
from .utils.eventstreaming import EventStream, EventStreamAsync
from .utils.retries import RetryConfig, call_with_retries, call_with_retries_async

__all__ = ["BaseSDK", "RetriesArg"]

R = TypeVar("R")
RetriesArg = Union[RetryConfig, None, Unset, Any]
_SINGLE_ATTEMPT = Retry(total=0)


def _plan(
    retries: RetriesArg, configured: Union[RetryConfig, Unset, None]
) -> Tuple[Optional[RetryConfig], Optional[Retry]]:
    """(the RetryConfig to run, the flux0lite policy for each attempt).

    Nothing configured anywhere: flux0lite's default policy (safe retries) does the work.
    A RetryConfig: it runs, each attempt being a single try. ``None`` (or anything else, as in
    the SDK): a single attempt.
    """
    chosen = configured if isinstance(retries, Unset) else retries
    if isinstance(chosen, Unset):
        return None, None
    if isinstance(chosen, RetryConfig):
        return chosen, _SINGLE_ATTEMPT
    return None, _SINGLE_ATTEMPT


def _log_for(config: SDKConfiguration) -> logging.Logger:
    # flux0lite's own logger (what FLUX0_DEBUG switches on) unless the caller gave one
    return config.debug_logger or logging.getLogger("flux0lite")


class BaseSDK:
    def __init__(self, sdk_configuration: SDKConfiguration) -> None:
        self.sdk_configuration = sdk_configuration

    # -- JSON operations ---------------------------------------------------------------------

    def _json(
        self,
        op: Operation,
        parse: Callable[[Any], R],
        *,
        retries: RetriesArg,
        server_url: Optional[str],
        timeout_ms: Optional[int],
        http_headers: Optional[Mapping[str, str]],
        use_client: bool = True,
    ) -> R:
        config = self.sdk_configuration
        plan, policy = _plan(retries, config.retry_config)
        effective_ms = timeout_ms if timeout_ms is not None else config.timeout_ms
        client = config.client if use_client else None
        if client is not None:
            base = (server_url or config.server_url).rstrip("/")
            headers = dict(http_headers or {})
            payload = call_with_retries(
                lambda: customclient.send_json(client, base, op, headers, effective_ms, _log_for(config)),
                plan,
                op.method,
            )
            return parse(payload)
        native_client, release = config.native_for(server_url, http_headers)
        timeout = timeout_from_ms(timeout_ms)
        try:
            payload = call_with_retries(
                lambda: native_client.request_json(
                    op.method, op.path, params=op.params, json_body=op.body, timeout=timeout, retry=policy
                ),
                plan,
                op.method,
            )
        except native.APIError as exc:
            raise sdk_error(exc, op) from exc
        finally:
            release()
        return parse(payload)

    async def _json_async(
        self,
        op: Operation,
        parse: Callable[[Any], R],
        *,
        retries: RetriesArg,
        server_url: Optional[str],
        timeout_ms: Optional[int],
        http_headers: Optional[Mapping[str, str]],
    ) -> R:
        config = self.sdk_configuration
        client = config.async_client
        if client is None:
            # flux0lite's async is its sync code in a worker thread
            return await asyncio.to_thread(
                self._json,
                op,
                parse,
                retries=retries,
                server_url=server_url,
                timeout_ms=timeout_ms,
                http_headers=http_headers,
                use_client=False,
            )
        plan, _ = _plan(retries, config.retry_config)
        effective_ms = timeout_ms if timeout_ms is not None else config.timeout_ms
        base = (server_url or config.server_url).rstrip("/")
        headers: Dict[str, str] = dict(http_headers or {})
        payload = await call_with_retries_async(
            lambda: customclient.send_json_async(client, base, op, headers, effective_ms, _log_for(config)),
            plan,
            op.method,
        )
        return parse(payload)

    # -- the event stream --------------------------------------------------------------------

    def _stream(
        self,
        op: Operation,
        *,
        retries: RetriesArg,
        server_url: Optional[str],
        timeout_ms: Optional[int],
        http_headers: Optional[Mapping[str, str]],
        use_client: bool = True,
    ) -> EventStream[Any]:
        config = self.sdk_configuration
        plan, policy = _plan(retries, config.retry_config)
        effective_ms = timeout_ms if timeout_ms is not None else config.timeout_ms
        client = config.client if use_client else None
        if client is not None:
            base = (server_url or config.server_url).rstrip("/")
            headers = dict(http_headers or {})
            events, close_client_stream, response = call_with_retries(
                lambda: customclient.open_stream(client, base, op, headers, effective_ms, _log_for(config)),
                plan,
                op.method,
            )
            return EventStream(events, close_client_stream, response)
        native_client, release = config.native_for(server_url, http_headers)
        timeout = timeout_from_ms(timeout_ms)

        def attempt() -> NativeEventStream:
            response = native_client.request_stream(
                op.method, op.path, params=op.params, json_body=op.body, timeout=timeout, retry=policy
            )
            return NativeEventStream(response, max_line_bytes=native_client.max_line_bytes)

        try:
            stream = call_with_retries(attempt, plan, op.method)
        except native.APIError as exc:
            release()
            raise sdk_error(exc, op) from exc
        except BaseException:
            release()
            raise

        def close() -> None:
            try:
                stream.close()
            finally:
                release()

        return EventStream(iter(stream), close, stream.response)

    async def _stream_async(
        self,
        op: Operation,
        *,
        retries: RetriesArg,
        server_url: Optional[str],
        timeout_ms: Optional[int],
        http_headers: Optional[Mapping[str, str]],
    ) -> EventStreamAsync[Any]:
        config = self.sdk_configuration
        client = config.async_client
        if client is None:
            stream = await asyncio.to_thread(
                self._stream,
                op,
                retries=retries,
                server_url=server_url,
                timeout_ms=timeout_ms,
                http_headers=http_headers,
                use_client=False,
            )
            return EventStreamAsync.over_thread(stream)
        plan, _ = _plan(retries, config.retry_config)
        effective_ms = timeout_ms if timeout_ms is not None else config.timeout_ms
        base = (server_url or config.server_url).rstrip("/")
        headers: Dict[str, str] = dict(http_headers or {})
        events, aclose, response = await call_with_retries_async(
            lambda: customclient.open_stream_async(client, base, op, headers, effective_ms, _log_for(config)),
            plan,
            op.method,
        )
        return EventStreamAsync(events, aclose, response)
