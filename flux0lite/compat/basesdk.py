"""How every operation runs (per-call options, retries, transport choice, SDK-shaped errors),
and how each one written once becomes a method and its ``_async`` twin."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Coroutine,
    Dict,
    Generic,
    Mapping,
    NamedTuple,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from flux0lite import EventStream as NativeEventStream
from flux0lite import Retry
from flux0lite import errors as native
from flux0lite.aio import in_thread

from . import customclient
from .operation import Operation, sdk_error
from .sdkconfiguration import SDKConfiguration, timeout_from_ms
from .types import Unset
from .utils.eventstreaming import EventStream, EventStreamAsync, SDKStreamEvent
from .utils.retries import RetryConfig, call_with_retries, call_with_retries_async

if TYPE_CHECKING:
    # mypy checks with Python 3.10's typing; at run time (3.9 too) the annotations below are
    # strings that nothing evaluates (as in flux0lite.aio).
    from typing import Concatenate, ParamSpec

    P = ParamSpec("P")

__all__ = ["BaseSDK", "RetriesArg", "CallOptions", "JsonCall", "StreamCall", "operation", "operation_async"]

R = TypeVar("R")
A = TypeVar("A")
S = TypeVar("S", bound="BaseSDK")
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


class CallOptions(NamedTuple):
    """The arguments every operation takes after its own."""

    retries: RetriesArg
    server_url: Optional[str]
    timeout_ms: Optional[int]
    http_headers: Optional[Mapping[str, str]]


class _Connection(NamedTuple):
    """Where and how a user-supplied client sends one call."""

    base: str
    headers: Dict[str, str]
    timeout_ms: Optional[int]
    log: logging.Logger


class BaseSDK:
    def __init__(self, sdk_configuration: SDKConfiguration) -> None:
        self.sdk_configuration = sdk_configuration

    def _connection(self, options: CallOptions) -> _Connection:
        config = self.sdk_configuration
        return _Connection(
            (options.server_url or config.server_url).rstrip("/"),
            dict(options.http_headers or {}),
            options.timeout_ms if options.timeout_ms is not None else config.timeout_ms,
            # flux0lite's own logger (what FLUX0_DEBUG switches on) unless the caller gave one
            config.debug_logger or logging.getLogger("flux0lite"),
        )

    # -- JSON operations ---------------------------------------------------------------------

    def _json(self, op: Operation, parse: Callable[[Any], R], options: CallOptions, *, use_client: bool = True) -> R:
        config = self.sdk_configuration
        plan, policy = _plan(options.retries, config.retry_config)
        client = config.client if use_client else None
        if client is not None:
            to = self._connection(options)
            payload = call_with_retries(
                lambda: customclient.send_json(client, to.base, op, to.headers, to.timeout_ms, to.log), plan, op.method
            )
            return parse(payload)
        native_client, release = config.native_for(options.server_url, options.http_headers)
        timeout = timeout_from_ms(options.timeout_ms)
        try:
            payload = call_with_retries(
                lambda: native_client.request_json(
                    op.method, op.path, params=op.params, json_body=op.body, timeout=timeout, retry=policy
                ),
                plan,
                op.method,
                sleep=native_client._pause,  # abort(), close() and a cancel end the wait
            )
        except native.APIError as exc:
            raise sdk_error(exc, op) from exc
        finally:
            release()
        return parse(payload)

    async def _json_async(self, op: Operation, parse: Callable[[Any], R], options: CallOptions) -> R:
        config = self.sdk_configuration
        client = config.async_client
        if client is None:
            # flux0lite's async is its sync code in a worker thread
            return await in_thread(self._json, op, parse, options, use_client=False)
        plan, _ = _plan(options.retries, config.retry_config)
        to = self._connection(options)
        payload = await call_with_retries_async(
            lambda: customclient.send_json_async(client, to.base, op, to.headers, to.timeout_ms, to.log),
            plan,
            op.method,
        )
        return parse(payload)

    # -- the event stream --------------------------------------------------------------------

    def _stream(self, op: Operation, options: CallOptions, *, use_client: bool = True) -> EventStream[Any]:
        config = self.sdk_configuration
        plan, policy = _plan(options.retries, config.retry_config)
        client = config.client if use_client else None
        if client is not None:
            to = self._connection(options)
            events, close_client_stream, response = call_with_retries(
                lambda: customclient.open_stream(client, to.base, op, to.headers, to.timeout_ms, to.log),
                plan,
                op.method,
            )
            return EventStream(events, close_client_stream, response)
        native_client, release = config.native_for(options.server_url, options.http_headers)
        timeout = timeout_from_ms(options.timeout_ms)

        def attempt() -> NativeEventStream:
            response = native_client.request_stream(
                op.method, op.path, params=op.params, json_body=op.body, timeout=timeout, retry=policy
            )
            return NativeEventStream(response, max_line_bytes=native_client.max_line_bytes)

        try:
            stream = call_with_retries(attempt, plan, op.method, sleep=native_client._pause)
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

    async def _stream_async(self, op: Operation, options: CallOptions) -> EventStreamAsync[Any]:
        config = self.sdk_configuration
        client = config.async_client
        if client is None:
            # opened in the default executor (bounded by its timeouts), closed if the caller is
            # cancelled meanwhile; then read in a thread of its own
            stream = await in_thread(self._stream, op, options, use_client=False)
            return EventStreamAsync.over_thread(stream)
        plan, _ = _plan(options.retries, config.retry_config)
        to = self._connection(options)
        events, aclose, response = await call_with_retries_async(
            lambda: customclient.open_stream_async(client, to.base, op, to.headers, to.timeout_ms, to.log),
            plan,
            op.method,
        )
        return EventStreamAsync(events, aclose, response)


# -- one operation, two methods ---------------------------------------------------------------
#
# Each operation is written once, as a method that turns its arguments into a Call; ``operation``
# and ``operation_async`` make the public sync method and its ``_async`` twin from it, with the
# same parameters (mypy checks the calls of both against them). The twin cannot simply run the
# sync method in a thread, as flux0lite's client does (``flux0lite.aio.async_twin``): with a
# user-supplied async client (``Flux0(async_client=...)``) it must await that client instead.


class Call(Generic[R, A]):
    """An operation's request: run by the sync method (giving R), awaited by its twin (giving A)."""

    def __init__(self, op: Operation, options: CallOptions) -> None:
        self.op, self.options = op, options

    def run(self, sdk: BaseSDK) -> R:
        raise NotImplementedError

    async def run_async(self, sdk: BaseSDK) -> A:
        raise NotImplementedError


class JsonCall(Call[R, R]):
    """An operation answered by one JSON document, turned into the SDK's model by ``parse``."""

    def __init__(self, op: Operation, parse: Callable[[Any], R], options: CallOptions) -> None:
        super().__init__(op, options)
        self.parse = parse

    def run(self, sdk: BaseSDK) -> R:
        return sdk._json(self.op, self.parse, self.options)

    async def run_async(self, sdk: BaseSDK) -> R:
        return await sdk._json_async(self.op, self.parse, self.options)


class StreamCall(Call["EventStream[SDKStreamEvent]", "EventStreamAsync[SDKStreamEvent]"]):
    """An operation answered by an event stream."""

    def run(self, sdk: BaseSDK) -> EventStream[SDKStreamEvent]:
        return sdk._stream(self.op, self.options)

    async def run_async(self, sdk: BaseSDK) -> EventStreamAsync[SDKStreamEvent]:
        return await sdk._stream_async(self.op, self.options)


def _named(method: Callable[..., Any], describe: Callable[..., Any], suffix: str) -> None:
    """Name ``method`` after the operation; its signature is ``describe``'s but for the result
    (a Call there), which ``help()`` would show wrong: the types mypy sees are the right ones."""
    name = describe.__name__.lstrip("_") + suffix
    method.__name__ = name
    method.__qualname__ = f"{describe.__qualname__.rpartition('.')[0]}.{name}"
    method.__signature__ = inspect.signature(describe).replace(  # type: ignore[attr-defined]
        return_annotation=inspect.Signature.empty
    )


def operation(describe: "Callable[Concatenate[S, P], Call[R, Any]]") -> "Callable[Concatenate[S, P], R]":
    """The sync method of the operation ``describe`` (named ``_list``, say) describes."""

    @functools.wraps(describe)
    def method(self: S, /, *args: "P.args", **kwargs: "P.kwargs") -> R:
        return describe(self, *args, **kwargs).run(self)

    _named(method, describe, "")
    return method


def operation_async(
    describe: "Callable[Concatenate[S, P], Call[Any, A]]",
) -> "Callable[Concatenate[S, P], Coroutine[Any, Any, A]]":
    """The ``_async`` twin of the operation ``describe`` describes."""

    @functools.wraps(describe)
    async def method(self: S, /, *args: "P.args", **kwargs: "P.kwargs") -> A:
        return await describe(self, *args, **kwargs).run_async(self)

    _named(method, describe, "_async")
    method.__doc__ = f"Async twin of :meth:`{describe.__name__.lstrip('_')}`."
    return method
