"""``Flux0.abort()``: another thread ends every call in flight at once, and the client lives on.

The servers here stall (they hold a request until the test ends), never answer a TLS
handshake, or never accept at all, so a call that ends does so only because it was aborted:
each must end within ABORT_WITHIN seconds, far below its timeouts (30 s), and its retries are
counted on the server to show that an aborted call does not reconnect.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import flux0lite
from flux0lite import APIConnectionError, Flux0, RequestAborted, Retry, Timeout
from tests.certs import Certs, make_certs
from tests.conftest import wait_for
from tests.fakeserver import Conn, FakeServer, Request, chunked, json_response, raw_response, sse_text
from tests.netfixtures import BlackHole
from tests.proxyserver import ForwardProxy

ABORT_WITHIN = 0.5
PATIENT = Timeout(connect=30, read=30)
AGENTS = {"data": [{"id": "a1", "name": "Echo", "type": "echo", "created_at": "2026-11-25T00:00:00Z"}]}
STATUS = {"id": "s", "source": "ai_agent", "type": "status", "data": {"type": "status", "status": "processing"}}


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of each test: stalled responders return, so their threads end too."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def server(release: threading.Event) -> Iterator[FakeServer]:
    def stall(req: Request, conn: Conn) -> None:
        release.wait(30)
        conn.close()

    def stream_then_stall(req: Request, conn: Conn) -> None:
        conn.send(
            raw_response(200, b"", {"content-type": "text/event-stream", "transfer-encoding": "chunked"}, length=False)
        )
        conn.send(chunked(sse_text([("status", STATUS)])))
        release.wait(30)
        conn.close()

    fake = FakeServer(
        routes=[
            ("GET", "/api/agents", json_response(200, AGENTS)),
            ("GET", "/stall", stall),
            ("POST", "/api/sessions/*", stream_then_stall),
        ]
    )
    yield fake
    release.set()
    fake.close()


def in_thread(call: Callable[[], Any]) -> Tuple[threading.Thread, Dict[str, Any]]:
    """Run ``call`` in a thread; the dict gets its ``error`` (or ``value``) and when it ``ended``."""
    outcome: Dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test, which asserts on it
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def abort_and_collect(client: Flux0, threads: List[Tuple[threading.Thread, Dict[str, Any]]]) -> List[BaseException]:
    """Abort, then each call's error; every call must have ended within ABORT_WITHIN seconds."""
    time.sleep(0.1)  # let each call get back into its blocking read or wait
    assert all(thread.is_alive() for thread, _ in threads), "a call ended before the abort"
    aborted_at = time.monotonic()
    client.abort()
    errors = []
    for thread, outcome in threads:
        thread.join(ABORT_WITHIN + 5)
        assert not thread.is_alive(), "the call is still blocked after abort()"
        assert outcome["ended"] - aborted_at < ABORT_WITHIN
        errors.append(outcome["error"])
    return errors


def test_abort_wakes_a_call_blocked_reading_and_it_is_not_retried(server: FakeServer) -> None:
    with Flux0(server.url, timeout=PATIENT, retry=Retry(total=3, backoff_factor=0)) as client:
        call = in_thread(lambda: client.request_json("GET", "/stall"))
        wait_for(lambda: server.count("GET", "/stall") == 1, "the request")
        (error,) = abort_and_collect(client, [call])
    assert isinstance(error, RequestAborted) and isinstance(error, APIConnectionError)
    assert "GET" in str(error) and "/stall" in str(error) and "aborted" in str(error)
    assert server.count("GET", "/stall") == 1
    assert server.connections == 1


def test_a_call_waiting_to_retry_ends_at_once_and_does_not_reconnect(server: FakeServer) -> None:
    server.on("GET", "/busy", json_response(503, {"detail": "busy"}, {"retry-after": "30"}))
    notices: List[str] = []
    with Flux0(server.url, timeout=PATIENT, retry=Retry(total=3), on_retry=notices.append) as client:
        call = in_thread(lambda: client.request_json("GET", "/busy"))
        wait_for(lambda: len(notices) == 1, "the retry notice")
        (error,) = abort_and_collect(client, [call])
        assert isinstance(error, RequestAborted)
        assert "retry" in str(error)
        time.sleep(0.2)
    assert server.count("GET", "/busy") == 1
    assert server.connections == 1


def test_a_call_waiting_to_retry_after_a_lost_connection_does_not_reconnect(server: FakeServer) -> None:
    server.on("GET", "/drop", lambda req, conn: conn.reset())
    notices: List[str] = []
    retry = Retry(total=3, backoff_factor=30, jitter=False)
    with Flux0(server.url, timeout=PATIENT, retry=retry, on_retry=notices.append) as client:
        call = in_thread(lambda: client.request_json("GET", "/drop"))
        wait_for(lambda: len(notices) == 1, "the retry notice")
        (error,) = abort_and_collect(client, [call])
        assert isinstance(error, RequestAborted)
        time.sleep(0.2)
    assert server.count("GET", "/drop") == 1


def test_an_open_stream_ends_mid_read(server: FakeServer) -> None:
    with Flux0(server.url, timeout=PATIENT) as client:
        stream = client.sessions.create_event("sess1", "hi")
        first = next(stream)
        assert getattr(first, "status", None) == "processing"
        (error,) = abort_and_collect(client, [in_thread(stream.reply)])
        assert isinstance(error, RequestAborted)
        assert client.agents.list()[0].id == "a1"


def test_an_open_stream_not_being_read_ends_at_its_next_read(server: FakeServer) -> None:
    with Flux0(server.url, timeout=PATIENT) as client:
        with client.sessions.create_event("sess1", "hi") as stream:
            next(stream)
            client.abort()
            started = time.monotonic()
            with pytest.raises(RequestAborted):
                next(stream)
            assert time.monotonic() - started < ABORT_WITHIN
        assert client.agents.list()[0].id == "a1"


def test_an_async_stream_ends_mid_read(server: FakeServer) -> None:
    async def main() -> None:
        with Flux0(server.url, timeout=PATIENT) as client:
            stream = await client.sessions.create_event_async("sess1", "hi")
            await stream.__anext__()
            asyncio.get_running_loop().call_later(0.2, client.abort)
            started = time.monotonic()
            with pytest.raises(RequestAborted):
                await stream.reply()
            assert time.monotonic() - started < 0.2 + ABORT_WITHIN
            await stream.aclose()
            assert (await client.agents.list_async())[0].id == "a1"

    asyncio.run(main())


def test_calls_after_abort_work_on_the_same_client(server: FakeServer) -> None:
    with Flux0(server.url, timeout=PATIENT) as client:
        call = in_thread(lambda: client.request_json("GET", "/stall"))
        wait_for(lambda: server.count("GET", "/stall") == 1, "the request")
        (error,) = abort_and_collect(client, [call])
        assert isinstance(error, RequestAborted)
        assert client.agents.list()[0].id == "a1"
        assert client.agents.list()[0].id == "a1"


def test_abort_with_nothing_in_flight_does_nothing(server: FakeServer) -> None:
    with Flux0(server.url, timeout=PATIENT) as client:
        client.abort()  # before any call
        assert client.agents.list()[0].id == "a1"
        client.abort()  # with an idle kept-alive connection, which stays usable
        assert client.agents.list()[0].id == "a1"
    assert server.connections == 1


def test_abort_ends_concurrent_calls_from_several_threads(server: FakeServer) -> None:
    with Flux0(server.url, timeout=PATIENT, retry=Retry(total=2, backoff_factor=0)) as client:
        calls = [in_thread(lambda: client.request_json("GET", "/stall")) for _ in range(4)]
        wait_for(lambda: server.count("GET", "/stall") == 4, "four requests")
        errors = abort_and_collect(client, calls)
        assert all(isinstance(error, RequestAborted) for error in errors)
        assert client.agents.list()[0].id == "a1"
    assert server.count("GET", "/stall") == 4


def test_a_call_through_a_forwarding_proxy_is_aborted(server: FakeServer) -> None:
    with ForwardProxy() as proxy, Flux0(server.url, timeout=PATIENT, proxy=proxy.url) as client:
        call = in_thread(lambda: client.request_json("GET", "/stall"))
        wait_for(lambda: server.count("GET", "/stall") == 1, "the request")
        (error,) = abort_and_collect(client, [call])
        assert isinstance(error, RequestAborted)
        assert client.agents.list()[0].id == "a1"
    assert [seen.method for seen in proxy.seen] == ["GET", "GET"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_a_call_through_a_connect_tunnel_is_aborted(certs: Certs, release: threading.Event) -> None:
    def stall(req: Request, conn: Conn) -> None:
        release.wait(30)
        conn.close()

    tls_server = FakeServer(routes=[("GET", "/stall", stall)], ssl_context=certs.server_context())
    try:
        url = f"https://127.0.0.1:{tls_server.port}"
        with ForwardProxy() as proxy, Flux0(url, timeout=PATIENT, proxy=proxy.url, cacert=certs.ca) as client:
            call = in_thread(lambda: client.request_json("GET", "/stall"))
            wait_for(lambda: tls_server.count("GET", "/stall") == 1, "the request")
            (error,) = abort_and_collect(client, [call])
            assert isinstance(error, RequestAborted)
        assert proxy.tunnels == 1
    finally:
        release.set()
        tls_server.close()


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A TCP port whose connections the kernel accepts and nobody ever answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener
    listener.close()


def test_abort_wakes_a_call_blocked_in_the_tls_handshake(silent_listener: socket.socket, certs: Certs) -> None:
    url = f"https://127.0.0.1:{silent_listener.getsockname()[1]}"
    with Flux0(url, timeout=PATIENT, cacert=certs.ca, retry=Retry(total=3, backoff_factor=0)) as client:
        call = in_thread(client.agents.list)
        (error,) = abort_and_collect(client, [call])
    assert isinstance(error, RequestAborted)


def test_abort_wakes_a_call_on_a_unix_socket_nobody_answers() -> None:
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no unix sockets on this platform")
    with tempfile.TemporaryDirectory(prefix="f0a") as folder:
        path = str(Path(folder) / "s")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            listener.listen(8)
            url = "http+unix://" + path.replace("/", "%2F")
            with Flux0(url, timeout=PATIENT) as client:
                (error,) = abort_and_collect(client, [in_thread(client.agents.list)])
            assert isinstance(error, RequestAborted)
        finally:
            listener.close()


def test_abort_wakes_a_call_blocked_connecting() -> None:
    with BlackHole() as hole:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", hole.port))
            pytest.skip("this kernel does not make a connect hang on a full accept queue")
        except socket.timeout:
            pass
        finally:
            probe.close()
        with Flux0(hole.url, timeout=PATIENT, retry=Retry(total=3, backoff_factor=0)) as client:
            (error,) = abort_and_collect(client, [in_thread(client.agents.list)])
        assert isinstance(error, RequestAborted)


def test_request_aborted_is_public_pickles_and_is_never_retried() -> None:
    import pickle

    assert flux0lite.RequestAborted is RequestAborted
    assert "RequestAborted" in flux0lite.__all__
    error = pickle.loads(pickle.dumps(RequestAborted("GET /x: aborted by the client")))
    assert isinstance(error, RequestAborted) and str(error) == "GET /x: aborted by the client"
    assert not Retry().may_retry_error("GET", error)  # policy users (the compat layer) agree


def test_a_stream_dropped_unclosed_is_still_collected(server: FakeServer) -> None:
    with Flux0(server.url, timeout=PATIENT) as client:
        response = client.request_stream("POST", "/api/sessions/s1/events/stream")
        connection = weakref.ref(response._conn)  # what the pool tracks while it is in flight
        del response
        gc.collect()
        assert connection() is None  # tracking it for abort() does not keep it (and its socket) alive
        client.abort()
        assert client.agents.list()[0].id == "a1"
