"""Issue 11, library side: what a hostile server (or a careless caller) can do to the client.

Every case ends in a documented Flux0Error subclass, never a bare exception, a hang or a
wrong answer. The servers are tests/fakeserver.py responders writing raw bytes.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import threading
import time
from typing import Any, Dict, List

import pytest

from flux0lite import (
    ChunkEvent,
    ConfigError,
    DecodeError,
    Flux0,
    ModelError,
    ProtocolError,
    RateLimitedError,
    RedirectError,
    Retry,
    ServerError,
    SSEDecoder,
    StreamError,
    Timeout,
    TotalTimeout,
)
from flux0lite.httputil import RETRY_AFTER_CAP, parse_retry_after, redact_url
from tests.fakeserver import Conn, FakeServer, Request, chunked, json_response, raw_response
from tests.netfixtures import BlackHole

STREAM_PATH = "/api/sessions/sess000001/events/stream"
JSON = {"content-type": "application/json"}
SSE = {"content-type": "text/event-stream"}  # a whole body with a Content-Length
SSE_HEADERS = {**SSE, "transfer-encoding": "chunked"}  # chunks follow


def agent(agent_id: str) -> Dict[str, Any]:
    return {"id": agent_id, "name": agent_id, "type": "echo"}


def client_for(server: FakeServer, **kwargs: Any) -> Flux0:
    kwargs.setdefault("retry", Retry(total=0))
    kwargs.setdefault("timeout", Timeout(connect=2, read=2))
    return Flux0(server.url, **kwargs)


def chunk_event(text: str, **extra: Any) -> bytes:
    doc = {"event_id": "e1", "seq": 0, "patches": [{"op": "add", "path": "/-", "value": text}], **extra}
    return b"event: chunk\ndata: " + json.dumps(doc).encode() + b"\n\n"


# -- numbers with hundreds of digits ---------------------------------------------------------------


def test_retry_after_with_hundreds_of_digits_is_a_capped_wait_not_an_overflow(fake: FakeServer) -> None:
    for digits in (400, 5000):
        assert parse_retry_after("9" * digits) == RETRY_AFTER_CAP
    busy = raw_response(429, b'{"detail": "slow down"}', {**JSON, "retry-after": "9" * 500})
    fake.on("GET", "/api/agents", lambda req, conn: conn.send(busy))
    retry = Retry(total=1, max_retry_after=0.01)
    with client_for(fake, retry=retry) as client, pytest.raises(RateLimitedError) as caught:
        client.agents.list()
    assert caught.value.retry_after == RETRY_AFTER_CAP
    assert fake.count("GET", "/api/agents") == 2  # the retry waited the clamped 0.01 s


@pytest.mark.parametrize("chunking", [1, 7, 100_000])
def test_sse_retry_with_thousands_of_digits_is_ignored_not_an_error(chunking: int) -> None:
    huge = b"9" * 5000
    stream = b"retry: 1500\nretry: " + huge + b"\ndata: a\n\nretry: " + b"0" * 5000 + b"42\ndata: b\n\n"
    stream += b"retry: 18446744073709551616\ndata: c\n\n"  # 2**64: one past what fits
    decoder = SSEDecoder()
    events = []
    for i in range(0, len(stream), chunking):
        events += decoder.feed(stream[i : i + chunking])
    assert [(e.data, e.retry) for e in events] == [("a", 1500), ("b", 42), ("c", None)]
    assert decoder.retry == 42


def test_sse_retry_with_thousands_of_digits_on_the_wire(fake: FakeServer) -> None:
    body = b"retry: " + b"9" * 5000 + b"\n\n" + chunk_event("Hi")
    fake.on("POST", STREAM_PATH, lambda req, conn: conn.send(raw_response(200, body, SSE)))
    with client_for(fake) as client:
        stream = client.sessions.create_event("sess000001", "x")
        assert stream.reply().text == "Hi" and stream.finished


@pytest.mark.parametrize("timestamp", [b"9" * 400, b"1e400", b"-1e999"])
def test_a_timestamp_with_hundreds_of_digits_is_a_model_error(fake: FakeServer, timestamp: bytes) -> None:
    doc = b'{"event_id": "e1", "seq": 0, "patches": [], "timestamp": ' + timestamp + b"}"
    body = b"event: chunk\ndata: " + doc + b"\n\n"
    fake.on("POST", STREAM_PATH, lambda req, conn: conn.send(raw_response(200, body, SSE)))
    with client_for(fake) as client, pytest.raises(ModelError):
        list(client.sessions.create_event("sess000001", "x"))


# -- redirects --------------------------------------------------------------------------------------


def redirect_to(location: str) -> bytes:
    return raw_response(302, b"", {"location": location})


@pytest.mark.parametrize(
    "location",
    [
        "http://[::1/x",  # an unclosed IPv6 bracket
        "http://127.0.0.1:99999/x",  # a port out of range
        "http://127.0.0.1:-1/x",
        "http://admin:hunter2@127.0.0.1:{port}/api/agents/b",  # credentials
        "http://:hunter2@127.0.0.1:{port}/api/agents/b",
        "http://127.0.0.1:8o/x",  # a port that is no number
        "gopher://127.0.0.1/x",
    ],
)
def test_unusable_redirect_is_a_redirect_error_without_credentials(fake: FakeServer, location: str) -> None:
    target = location.format(port=fake.port)
    fake.on("GET", "/api/agents/a", lambda req, conn: conn.send(redirect_to(target)))
    with client_for(fake) as client, pytest.raises(RedirectError) as caught:
        client.agents.retrieve("a")
    assert "hunter2" not in str(caught.value)
    assert fake.count("GET", "/api/agents/b") == 0


def test_redirect_target_with_spaces_controls_and_latin1_bytes_is_percent_encoded(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents/a", lambda req, conn: conn.send(redirect_to("/api/agents/b c\x01\xe9")))
    fake.on("GET", "/api/agents/b*", json_response(200, agent("b")))
    with client_for(fake) as client:
        assert client.agents.retrieve("a").id == "b"
    assert fake.requests[-1].target == "/api/agents/b%20c%01%E9"


def test_no_url_credentials_in_config_errors_or_the_debug_log(
    fake: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    for url in (
        "htps://admin:hunter2@host",
        "http://admin:hunter2@[::1",
        "http://admin:hunter2@h:99999",
        "admin:hunter2@h",
    ):
        with pytest.raises(ConfigError) as caught:
            Flux0(url)
        assert "hunter2" not in str(caught.value), caught.value
    assert redact_url("http://a:b@c@host/p@q") == "http://***@host/p@q"
    assert redact_url("http://h/?next=http://u:hunter2@x/") == "http://h/?next=http://***@x/"
    target = f"http://admin:hunter2@127.0.0.1:{fake.port}/api/agents/b"
    fake.on("GET", "/api/agents/a", lambda req, conn: conn.send(redirect_to(target)))
    log = logging.getLogger("flux0lite.test_hostile")
    log.setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger=log.name):
        with Flux0(fake.url, debug_logger=log, retry=Retry(total=0)) as client, pytest.raises(RedirectError):
            client.agents.retrieve("a")
    assert caplog.records and "hunter2" not in caplog.text


# -- interim (1xx) answers and what a connection may be reused after ---------------------------------


def test_early_hints_before_the_answer_are_skipped(fake: FakeServer) -> None:
    hints = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
    cont = b"HTTP/1.1 100 Continue\r\n\r\n"

    def respond(req: Request, conn: Conn) -> None:
        conn.send(hints + cont + hints)
        conn.send(raw_response(200, json.dumps(agent("first")).encode(), JSON))

    fake.on("GET", "/api/agents/first", respond)
    with client_for(fake) as client:
        assert client.agents.retrieve("first").id == "first"


def test_a_late_answer_after_early_hints_never_reaches_the_next_call(fake: FakeServer) -> None:
    def respond(req: Request, conn: Conn) -> None:
        name = req.path.rsplit("/", 1)[1]
        conn.send(b"HTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n")
        time.sleep(0.3)  # the real answer comes late
        conn.send(raw_response(200, json.dumps(agent(name)).encode(), JSON))

    fake.on("GET", "/api/agents/*", respond)
    with client_for(fake) as client:
        assert client.agents.retrieve("first").id == "first"
        assert client.agents.retrieve("second").id == "second"
    assert fake.connections == 1  # a clean keep-alive connection is still reused


def test_early_hints_before_a_chat_stream_are_skipped(fake: FakeServer) -> None:
    def respond(req: Request, conn: Conn) -> None:
        conn.send(b"HTTP/1.1 103 Early Hints\r\n\r\n")
        conn.send(raw_response(200, chunk_event("Hi"), SSE))

    fake.on("POST", STREAM_PATH, respond)
    with client_for(fake) as client:
        assert client.sessions.create_event("sess000001", "x").reply().text == "Hi"


@pytest.mark.parametrize(
    "opening",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\n\r\n" * 40,  # an endless run of interim answers
    ],
)
def test_unexpected_switching_protocols_or_endless_interim_answers_are_protocol_errors(
    fake: FakeServer, opening: bytes
) -> None:
    fake.on("GET", "/api/agents", lambda req, conn: conn.send(opening + raw_response(200, b'{"data": []}', JSON)))
    with client_for(fake) as client, pytest.raises(ProtocolError):
        client.agents.list()


@pytest.mark.parametrize("status", [204, 304])
def test_a_bodiless_status_with_bytes_after_it_does_not_poison_the_next_call(fake: FakeServer, status: int) -> None:
    smuggled = raw_response(200, json.dumps(agent("smuggled")).encode(), JSON)

    def respond(req: Request, conn: Conn) -> None:
        name = req.path.rsplit("/", 1)[1]
        if name == "first":
            # a 204 has no body by definition: whatever follows must not be taken as the next answer
            conn.send(raw_response(status, b"", {}, length=False) + smuggled)
        else:
            conn.send(raw_response(200, json.dumps(agent(name)).encode(), JSON))

    fake.on("GET", "/api/agents/*", respond)
    with client_for(fake) as client:
        with pytest.raises(Exception):  # a 204/304 is no agent; what matters is the next call
            client.agents.retrieve("first")
        assert client.agents.retrieve("second").id == "second"


# -- the total deadline ----------------------------------------------------------------------------


def trickle(data: bytes, every: float):  # type: ignore[no-untyped-def]
    def respond(req: Request, conn: Conn) -> None:
        try:
            for i in range(len(data)):
                conn.send(data[i : i + 1])
                time.sleep(every)
        except OSError:
            pass

    return respond


def test_total_deadline_stops_a_server_trickling_one_byte_at_a_time(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", trickle(raw_response(200, b'{"data": []}' + b" " * 200, JSON), 0.05))
    with client_for(fake, timeout=Timeout(connect=2, read=1, total=0.8)) as client:
        started = time.monotonic()
        with pytest.raises(TotalTimeout):
            client.agents.list()
        assert time.monotonic() - started < 3  # the whole answer would take over 11 s


def test_total_deadline_bounds_a_stream_that_never_ends(fake: FakeServer) -> None:
    def respond(req: Request, conn: Conn) -> None:
        conn.send(raw_response(200, b"", SSE_HEADERS, length=False))
        try:
            for _ in range(500):  # 10 s of events
                conn.send(chunked(chunk_event("x")))
                time.sleep(0.02)
        except OSError:
            pass

    fake.on("POST", STREAM_PATH, respond)
    with client_for(fake, timeout=Timeout(connect=2, read=1, total=0.6)) as client:
        started = time.monotonic()
        stream = client.sessions.create_event("sess000001", "x")
        with pytest.raises(TotalTimeout):
            for _ in stream:
                pass
        assert 0.5 < time.monotonic() - started < 3
        assert stream.assembler.text.startswith("x")  # what arrived is kept


def test_total_deadline_spans_retries_and_is_never_retried(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", lambda req, conn: time.sleep(0.5))  # no answer; the read times out
    retry = Retry(total=30, backoff_factor=0)
    with client_for(fake, retry=retry, timeout=Timeout(connect=2, read=0.2, total=0.7)) as client:
        started = time.monotonic()
        with pytest.raises(TotalTimeout):
            client.agents.list()
        assert time.monotonic() - started < 2.5  # 31 attempts would take over 6 s
    assert fake.count("GET", "/api/agents") <= 4


def test_total_deadline_spans_redirects(fake: FakeServer) -> None:
    def slow_redirect(req: Request, conn: Conn) -> None:
        time.sleep(0.25)
        conn.send(redirect_to(f"/api/agents/{int(req.path.rsplit('/', 1)[1]) + 1}"))

    fake.on("GET", "/api/agents/*", slow_redirect)
    with client_for(fake, timeout=Timeout(connect=2, read=1, total=0.6)) as client:
        started = time.monotonic()
        with pytest.raises(TotalTimeout):
            client.agents.retrieve("0")  # each hop is quick enough; all of them are not
        assert time.monotonic() - started < 2
    assert fake.count("GET", "/api/agents/3") == 0


def test_a_retry_wait_longer_than_the_time_left_returns_the_answer_at_once(fake: FakeServer) -> None:
    busy = raw_response(503, b'{"detail": "busy"}', {**JSON, "retry-after": "30"})
    fake.on("GET", "/api/agents", lambda req, conn: conn.send(busy))
    retry = Retry(total=3, max_retry_after=30)
    with client_for(fake, retry=retry, timeout=Timeout(connect=2, read=2, total=5)) as client:
        started = time.monotonic()
        with pytest.raises(ServerError):
            client.agents.list()
        assert time.monotonic() - started < 5  # it did not wait the 30 s asked for
    assert fake.count("GET", "/api/agents") == 1


def test_per_call_total_deadline(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", trickle(raw_response(200, b'{"data": []}' + b" " * 100, JSON), 0.05))
    with client_for(fake) as client, pytest.raises(TotalTimeout):
        client.agents.list(timeout=Timeout(connect=1, read=1, total=0.3))


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 1e300, "5", True])
def test_timeout_values_are_checked(bad: Any) -> None:
    with pytest.raises(ConfigError):
        Timeout(total=bad)
    with pytest.raises(ConfigError):
        Flux0("http://127.0.0.1:9", timeout=bad)


# -- gzip ------------------------------------------------------------------------------------------


def gzip_headers(**extra: str) -> Dict[str, str]:
    return {"content-encoding": "gzip", **extra}


def test_every_member_of_a_multi_member_gzip_stream_is_decoded(fake: FakeServer) -> None:
    members = [gzip.compress(chunk_event(word)) for word in ("one ", "two ", "three")]
    body = b"".join(members) + b"\0\0\0\0"  # gzip(1) allows zero padding after the last member

    def respond(req: Request, conn: Conn) -> None:
        conn.send(raw_response(200, b"", {**SSE_HEADERS, **gzip_headers()}, length=False))
        for piece in (body[:7], body[7:40], body[40:]):
            conn.send(chunked(piece))
        conn.send(b"0\r\n\r\n")

    fake.on("POST", STREAM_PATH, respond)
    with client_for(fake) as client:
        stream = client.sessions.create_event("sess000001", "x")
        assert stream.reply().text == "one two three"
        assert stream.finished


def test_multi_member_gzip_json_body(fake: FakeServer) -> None:
    doc = json.dumps({"data": [agent("a"), agent("b")]}).encode()
    body = gzip.compress(doc[:10]) + gzip.compress(doc[10:])
    fake.on("GET", "/api/agents", lambda req, conn: conn.send(raw_response(200, body, {**JSON, **gzip_headers()})))
    with client_for(fake) as client:
        assert [a.id for a in client.agents.list()] == ["a", "b"]


def test_gzip_without_its_trailer_is_a_stream_error(fake: FakeServer) -> None:
    whole = gzip.compress(json.dumps({"data": []}).encode())
    cut = whole[:-8]  # the CRC and length trailer are missing: the body may be incomplete
    fake.on("GET", "/api/agents", lambda req, conn: conn.send(raw_response(200, cut, {**JSON, **gzip_headers()})))
    stream_body = gzip.compress(chunk_event("Hi"))[:-8]
    fake.on(
        "POST",
        STREAM_PATH,
        lambda req, conn: conn.send(raw_response(200, stream_body, {**SSE, **gzip_headers()})),
    )
    with client_for(fake) as client:
        with pytest.raises(StreamError):
            client.agents.list()
        stream = client.sessions.create_event("sess000001", "x")
        with pytest.raises(StreamError):
            stream.reply()
        assert not stream.finished


def test_garbage_after_a_gzip_member_is_a_decode_error(fake: FakeServer) -> None:
    body = gzip.compress(b'{"data": []}') + b"trailing junk"
    fake.on("GET", "/api/agents", lambda req, conn: conn.send(raw_response(200, body, {**JSON, **gzip_headers()})))
    with client_for(fake) as client, pytest.raises(DecodeError):
        client.agents.list()


# -- paths and construction ---------------------------------------------------------------------------


def test_dot_segment_ids_are_encoded_so_no_proxy_resolves_them(fake: FakeServer) -> None:
    fake.on("GET", "/api/*", lambda req, conn: conn.send(raw_response(404, b'{"detail": "no"}', JSON)))
    with client_for(fake) as client:
        for call in (
            lambda: client.agents.retrieve(".."),
            lambda: client.sessions.retrieve("."),
            lambda: client.sessions.list_events(".."),
        ):
            with pytest.raises(Exception):  # the 404 is beside the point: the path sent is
                call()
    assert [r.target for r in fake.requests] == [
        "/api/agents/%2E%2E",
        "/api/sessions/%2E",
        "/api/sessions/%2E%2E/events",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token": "€"},
        {"token": "tök€n"},
        {"token": "a\r\nX-Injected: 1"},
        {"token": ""},
        {"headers": {"X-A: b": "1"}},
        {"headers": {"X A": "1"}},
        {"headers": {"": "1"}},
        {"headers": {"X-A": "a\r\nb"}},
        {"headers": {"X-A": "a\nb"}},
        {"headers": {"X-A": "a\x00b"}},
        {"headers": {"X-A": "€"}},
        {"headers": {"X-A": 5}},
        {"user_sub": "用户"},
        {"user_sub": "a b"},
        {"user_sub": "a;b"},
        {"max_response_bytes": 0},
        {"max_line_bytes": -1},
        {"retry": 3},
        {"server_url": "http://[::1"},
        {"server_url": "http://127.0.0.1:99999"},
    ],
)
def test_bad_configuration_is_a_config_error_at_construction(kwargs: Dict[str, Any]) -> None:
    kwargs.setdefault("server_url", "http://127.0.0.1:9")
    with pytest.raises(ConfigError):
        Flux0(**kwargs)


def test_latin1_header_values_are_accepted_and_sent_as_latin1(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": []}))
    with client_for(fake, headers={"X-Name": "José"}) as client:
        client.agents.list()
    assert fake.requests[0].headers["x-name"] == "José"  # the fake server decodes latin-1


def test_lone_surrogates_in_caller_text_are_config_errors(fake: FakeServer) -> None:
    fake.on("GET", "/api/*", json_response(200, {"data": []}))
    with client_for(fake) as client:
        for call in (
            lambda: client.agents.retrieve("a\udcff"),
            lambda: client.sessions.list(agent_id="\ud800"),
            lambda: client.sessions.create_event("s", "hi \udcff"),
        ):
            with pytest.raises(ConfigError):
                call()
    assert fake.requests == []


# -- async: cancellation and the default executor --------------------------------------------------


class SilentStreams:
    """A server that answers every request with stream headers, then says nothing; it records when
    each connection is closed by the client (EOF)."""

    def __init__(self) -> None:
        self.eof_at: List[float] = []
        self._lock = threading.Lock()
        self.server = FakeServer()
        self.server.on("POST", "/api/sessions/*", self._respond)

    def _respond(self, req: Request, conn: Conn) -> None:
        conn.send(raw_response(200, b"", SSE_HEADERS, length=False))
        conn.sock.settimeout(20)
        try:
            conn.sock.recv(1)
        except OSError:
            pass
        with self._lock:
            self.eof_at.append(time.monotonic())
        conn.close()


@pytest.fixture
def silent() -> Any:
    streams = SilentStreams()
    yield streams
    streams.server.close()


def test_cancelling_a_task_reading_an_async_stream_closes_it_at_once(silent: SilentStreams) -> None:
    async def run() -> None:
        beats: List[float] = []

        async def heartbeat() -> None:
            while True:
                beats.append(time.monotonic())
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(heartbeat())
        async with Flux0(silent.server.url, timeout=Timeout(2, 30), retry=Retry(total=0)) as client:
            stream = await client.sessions.create_event_async("s1", "x")

            async def consume() -> None:
                async with stream:  # leaving it on cancellation closes the stream
                    async for _ in stream:
                        pass

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.2)
            cancelled_at = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - cancelled_at < 0.5  # before: until the server spoke (read timeout 30 s)
            for _ in range(100):
                if silent.eof_at:
                    break
                await asyncio.sleep(0.01)
            assert silent.eof_at and silent.eof_at[0] - cancelled_at < 1  # the server saw the disconnect
        while len(beats) <= 11:  # enough beats to judge, however slowly a busy machine runs the loop
            await asyncio.sleep(0.01)
        ticker.cancel()
        gaps = [b - a for a, b in zip(beats, beats[1:])]
        assert len(gaps) > 10 and max(gaps) < 0.5  # the loop never froze

    asyncio.run(run())


def test_a_read_after_a_cancelled_read_raises_a_stream_error(silent: SilentStreams) -> None:
    """A read with a timeout (wait_for) that is cancelled closes the stream: the next read, or
    reply(), says so with a StreamError, and never enters the stream while the cancelled read's
    thread may still be on its way out of it (hadv21 02: ValueError 'generator already
    executing', or a silent end)."""

    async def run() -> None:
        async with Flux0(silent.server.url, timeout=Timeout(2, 30), retry=Retry(total=0)) as client:
            for _ in range(20):
                stream = await client.sessions.create_event_async("s1", "x")
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(stream.__anext__(), 0.02)
                with pytest.raises(StreamError, match="a read of this stream was cancelled, which closed it"):
                    await stream.__anext__()
                with pytest.raises(StreamError, match="cancelled"):
                    await stream.reply()
                await stream.aclose()

    asyncio.run(run())


def test_idle_async_streams_do_not_starve_the_default_executor(silent: SilentStreams) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        async with Flux0(silent.server.url, timeout=Timeout(2, 30), retry=Retry(total=0)) as client:
            streams = [await client.sessions.create_event_async(f"s{i}", "x") for i in range(12)]

            async def consume(stream: Any) -> None:
                async for _ in stream:
                    pass

            tasks = [asyncio.create_task(consume(s)) for s in streams]
            await asyncio.sleep(0.2)
            started = time.monotonic()
            assert await asyncio.wait_for(loop.run_in_executor(None, lambda: 42), 2) == 42
            await asyncio.wait_for(loop.getaddrinfo("127.0.0.1", 80), 2)
            assert time.monotonic() - started < 1.5  # starved, they waited for a stream's read timeout (30 s)
            closing = time.monotonic()
            for stream in streams:
                await stream.aclose()
            # closing a stream ends the read in progress elsewhere, as an error (it did not finish)
            results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 2)
            assert all(isinstance(r, StreamError) for r in results), results
            assert time.monotonic() - closing < 2

    asyncio.run(run())
    for _ in range(100):
        if len(silent.eof_at) == 12:
            break
        time.sleep(0.02)
    assert len(silent.eof_at) == 12
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name == "flux0lite-stream"]


def test_a_stream_whose_opening_call_was_cancelled_is_closed_when_it_arrives(fake: FakeServer) -> None:
    closed = threading.Event()

    def respond(req: Request, conn: Conn) -> None:
        time.sleep(0.3)  # the headers come after the caller gave up
        conn.send(raw_response(200, b"", SSE_HEADERS, length=False))
        conn.sock.settimeout(5)
        try:
            if conn.sock.recv(1) == b"":
                closed.set()
        except OSError:
            closed.set()

    fake.on("POST", STREAM_PATH, respond)

    async def run() -> None:
        async with client_for(fake, timeout=Timeout(2, 30)) as client:
            task = asyncio.create_task(client.sessions.create_event_async("sess000001", "x"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run())
    assert closed.wait(3)


def test_a_stream_closed_from_another_thread_ends_its_reader_at_once_and_is_not_finished(
    silent: SilentStreams,
) -> None:
    with Flux0(silent.server.url, timeout=Timeout(2, 30), retry=Retry(total=0)) as client:
        stream = client.sessions.create_event("s1", "x")
        closer = threading.Timer(0.2, stream.close)
        closer.start()
        started = time.monotonic()
        with pytest.raises(StreamError):
            list(stream)
        assert time.monotonic() - started < 3  # not the 30 s read timeout
        assert not stream.finished
        closer.join()


def test_async_stream_still_reads_events_and_replies(fake: FakeServer) -> None:
    body = chunk_event("Hel") + chunk_event("lo")
    fake.on("POST", STREAM_PATH, lambda req, conn: conn.send(raw_response(200, body, SSE)))

    async def run() -> None:
        async with client_for(fake) as client:
            async with await client.sessions.create_event_async("sess000001", "x") as stream:
                events = [event async for event in stream]
            assert [type(e) for e in events] == [ChunkEvent, ChunkEvent]
            stream2 = await client.sessions.create_event_async("sess000001", "x")
            assert (await stream2.reply()).text == "Hello"

    asyncio.run(run())


def test_an_address_that_drops_packets_leaves_time_for_the_next_one(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first address's connect took the whole connect timeout, so a working second address
    # was never tried (hadv30 02): each address gets a share of what is left
    fake.on("GET", "/api/agents", json_response(200, {"data": []}))
    real = socket.getaddrinfo
    with BlackHole() as hole:

        def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "dual.test":  # a dead replica first, as a name with a stale address lists it
                return [
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", hole.port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", fake.port)),
                ]
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        url = f"http://dual.test:{fake.port}"
        with Flux0(url, proxy=False, timeout=Timeout(connect=2, read=5), retry=Retry(total=0)) as client:
            started = time.monotonic()
            assert client.agents.list() == []
            assert time.monotonic() - started > 0.8  # the dead one had its half of the 2 s
