"""hadv37: async calls cancelled mid-way, failed async streams dropped unclosed."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import socket
import threading
import time
import weakref
from typing import Any, Callable, List, Optional, Tuple

import pytest

from flux0lite import APIConnectionError, Flux0, Flux0Error, RequestAborted, Retry
from flux0lite.compat.utils.retries import BackoffStrategy, RetryConfig, call_with_retries
from flux0lite.pool import CALL_CANCEL, CallCancel, ConnectionPool
from tests.fakeserver import FakeServer, json_response, sse_stream, sse_text


def test_a_cancelled_async_call_sends_no_retry_and_asyncio_run_returns_at_once(fake: FakeServer) -> None:
    """01: the call went on in its thread through every Retry-After wait, sending requests after
    the cancel (and after close), and asyncio.run() waited for it at exit."""
    fake.on("GET", "/api/agents", json_response(503, {"detail": "busy"}, {"Retry-After": "1"}))

    async def main() -> None:
        client = Flux0(fake.url, retry=Retry(total=5, max_retry_after=60))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.agents.list_async(), 0.3)
        client.close()

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 0.9  # not the second's wait of the first retry
    time.sleep(1.3)  # when a retry would have gone out
    assert fake.count("GET", "/api/agents") == 1


def test_a_cancelled_async_call_whose_connection_was_refused_sends_nothing_later() -> None:
    """01: a POST cancelled while nothing was sent (connection refused) was sent by the
    abandoned thread once the server came back."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    got: List[bytes] = []

    def serve_later() -> None:
        time.sleep(0.5)  # the server comes back after the cancel, before the retries are over
        with socket.create_server(("127.0.0.1", port)) as listener:
            listener.settimeout(2.5)
            try:
                conn, _ = listener.accept()
                got.append(conn.recv(65536))
                conn.close()
            except OSError:
                pass

    server = threading.Thread(target=serve_later)
    server.start()

    async def main() -> None:
        client = Flux0(f"http://127.0.0.1:{port}", retry=Retry(total=5, backoff_factor=0.4))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.sessions.create_event_async("s1", "hello"), 0.3)

    asyncio.run(main())
    server.join()
    assert got == []


def test_a_cancelled_call_shuts_its_socket_down_at_once(fake: FakeServer) -> None:
    """A call blocked on a silent server ends when its task is cancelled, not at its read timeout."""
    fake.on("GET", "/api/agents", lambda req, conn: time.sleep(5))

    async def main() -> None:
        client = Flux0(fake.url, timeout=30, retry=Retry(total=0))
        task = asyncio.ensure_future(client.agents.list_async())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    asyncio.run(main())  # waits for the default executor's thread: the call in it must end
    assert time.monotonic() - started < 2.0


def test_a_pool_abort_still_ends_a_call_holding_its_own_cancel() -> None:
    pool = ConnectionPool()
    own = threading.Event()
    assert pool.abort_signal(own) is own
    pool.abort()
    assert own.is_set()
    assert not pool.abort_signal(threading.Event()).is_set()  # a later call is not affected


def test_a_failed_async_stream_dropped_without_aclose_is_collected(fake: FakeServer) -> None:
    """02: the finalizer held the EventStream, whose kept error's frames held the
    AsyncEventStream: a failed stream dropped unclosed was never collected."""
    bad_chunk = {"correlation_id": "c", "seq": 0, "patches": [], "metadata": {}, "timestamp": 1.0}  # no event_id
    good = {
        "correlation_id": "c",
        "event_id": "e",
        "seq": 0,
        "patches": [{"op": "add", "path": "/-", "value": "x" * 1000}],
    }
    fake.on(
        "POST",
        "/api/sessions/s1/events/stream",
        sse_stream([sse_text([("chunk", good)] * 50 + [("chunk", bad_chunk)])]),
    )
    refs: List["weakref.ref[Any]"] = []

    async def main() -> None:
        async with Flux0(fake.url) as client:
            for _ in range(3):
                stream = await client.sessions.create_event_async("s1", "hi")
                with pytest.raises(Flux0Error):
                    async for _event in stream:
                        pass
                refs.append(weakref.ref(stream))
                del stream

    asyncio.run(main())
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


def _stopped_while_waiting(
    call: Callable[[], object], stop: Callable[[], None], after: float
) -> Tuple[Optional[BaseException], float]:
    """Run ``call`` in a thread, ``stop`` it ``after`` seconds in: (what the call raised, seconds
    from the stop to the call's end); fails if the call is still running 5 s after the stop."""
    failed: List[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            failed.append(exc)

    caller = threading.Thread(target=run)
    caller.start()
    time.sleep(after)
    stopped_at = time.monotonic()
    stop()
    caller.join(5)
    assert not caller.is_alive()
    return (failed[0] if failed else None), time.monotonic() - stopped_at


def test_closing_the_client_ends_a_call_waiting_to_retry(fake: FakeServer) -> None:
    """review: the closed client was seen only after the whole wait (up to max_retry_after)."""
    fake.on("GET", "/api/agents", json_response(503, {"detail": "busy"}, {"Retry-After": "5"}))
    client = Flux0(fake.url, retry=Retry(total=3, max_retry_after=60))
    failed, took = _stopped_while_waiting(client.agents.list, client.close, 0.3)
    assert took < 1.0
    assert isinstance(failed, RequestAborted) and "closed" in str(failed)
    assert fake.count("GET", "/api/agents") == 1


def test_a_compat_call_cancelled_while_it_waits_to_retry_stops_waiting() -> None:
    """hadv40 04: the SDK's retry loop slept out every Retry-After in the executor's thread."""
    cancel = CallCancel()
    cancel.cancel()
    attempts: List[int] = []

    def attempt() -> None:
        attempts.append(1)
        raise APIConnectionError("refused")

    config = RetryConfig("backoff", BackoffStrategy(500, 5000, 1.5, 60_000), retry_connection_errors=True)
    context = contextvars.copy_context()
    context.run(CALL_CANCEL.set, cancel)
    started = time.monotonic()
    with pytest.raises(RequestAborted):
        context.run(call_with_retries, attempt, config, "GET")
    assert attempts == [1] and time.monotonic() - started < 0.5


@pytest.mark.parametrize("how", ["abort", "close"])
def test_a_compat_call_waiting_to_retry_ends_on_abort_or_close(fake: FakeServer, how: str) -> None:
    """hadv41 03: a synchronous compat call slept out its own retry waits whatever abort() or
    close() said, and sent more requests after them."""
    from flux0lite.compat import Flux0 as CompatFlux0

    fake.on("GET", "/api/agents", json_response(503, {"detail": "busy"}, {"Retry-After": "3"}))
    sdk = CompatFlux0(server_url=fake.url, retry_config=RetryConfig("backoff", BackoffStrategy(100, 10000, 1.5, 7000)))
    failed, took = _stopped_while_waiting(sdk.agents.list, sdk.native.abort if how == "abort" else sdk.close, 0.5)
    assert took < 1.0
    assert isinstance(failed, RequestAborted), failed
    assert fake.count("GET", "/api/agents") == 1
    sdk.close()
