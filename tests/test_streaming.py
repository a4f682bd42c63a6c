from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import tracemalloc
from typing import Any, Callable, List, Tuple

import pytest

from flux0lite import (
    APIConnectionError,
    ChunkEvent,
    ConfigError,
    ContentTypeError,
    DecodeError,
    EventStream,
    Flux0,
    Flux0Error,
    JsonPatch,
    ModelError,
    RawStreamEvent,
    ReadTimeout,
    ResponseTooLargeError,
    Retry,
    StatusEvent,
    StreamError,
    Timeout,
)
from flux0lite.patch import sized_copy
from flux0lite.sse import SSEDecoder
from flux0lite.streaming import ReplyAssembler, parse_stream_event
from tests.conftest import SHARED, shared_path
from tests.fakeserver import Conn, FakeServer, Request, chunked, json_response, raw_response, sse_stream, sse_text

PATH = "/api/sessions/sess000001/events/stream"


def client_for(server: FakeServer, read: float = 2.0, **kwargs: object) -> Flux0:
    return Flux0(server.url, timeout=Timeout(connect=2, read=read), retry=Retry(total=0), **kwargs)  # type: ignore[arg-type]


def capture(name: str) -> bytes:
    return shared_path("flux0-api", "captures", name).read_bytes()


def test_streamed_reply_from_real_capture(fake: FakeServer) -> None:
    raw = capture("sse-sample.txt")
    fake.on("POST", PATH, sse_stream([raw[i : i + 7] for i in range(0, len(raw), 7)]))
    with Flux0(fake.url) as client:
        with client.sessions.create_event("sess000001", "hello flux0") as stream:
            events = list(stream)
            reply = stream.assembler.reply()
        assert stream.finished
    assert isinstance(events[0], StatusEvent) and events[0].status == "processing"
    assert any(isinstance(e, ChunkEvent) for e in events)
    assert reply.text == "Echo: hello flux0"
    assert reply.statuses == ("processing", "typing")
    body = fake.requests[-1].json()
    assert body == {"type": "message", "source": "user", "content": "hello flux0"}
    assert fake.requests[-1].headers["accept"] == "text/event-stream"


def test_next_and_for_loops_share_one_sequence_of_events(fake: FakeServer) -> None:
    """A for loop resumes the stream's own generator (iter(stream)), next(stream) reads the
    same one: mixed, they take consecutive events, and an exhausted stream stays exhausted."""
    raw = capture("sse-sample-tool.txt")
    fake.on("POST", PATH, sse_stream([raw]))
    with client_for(fake) as client:
        expected = list(client.sessions.create_event("sess000001", "!tool"))
    fake.on("POST", PATH, sse_stream([raw[i : i + 5] for i in range(0, len(raw), 5)]))
    with client_for(fake) as client, client.sessions.create_event("sess000001", "!tool") as stream:
        got = [next(stream)]
        for event in stream:
            got.append(event)
            if len(got) == 3:
                break
        got.append(next(iter(stream)))
        got += list(stream)
        assert list(stream) == [] and next(stream, None) is None and stream.finished
    assert [repr(e) for e in got] == [repr(e) for e in expected] and len(expected) > 4
    assert stream.assembler.reply().text == "It is sunny."


def test_tool_call_stream_reassembles_calls_and_results(fake: FakeServer) -> None:
    fake.on("POST", PATH, sse_stream([capture("sse-sample-tool.txt")]))
    with client_for(fake) as client:
        reply = client.sessions.create_event("sess000001", "!tool").reply()
    assert reply.text == "It is sunny."
    call = reply.tool_calls[0]
    assert call["tool_name"] == "search" and "".join(call["args"]) == '{"query": "weather"}'
    results = [d for d in reply.messages.values() if isinstance(d, dict) and "tool_call_results" in d]
    assert results[0]["tool_call_results"][0]["data"] == {"result": "sunny"}


def test_json_and_error_streams(fake: FakeServer) -> None:
    fake.on("POST", PATH, sse_stream([capture("sse-sample-json.txt")]))
    with client_for(fake) as client:
        reply = client.sessions.create_event("sess000001", "!json").reply()
    assert list(reply.messages.values()) == [{"answer": {"n": 42, "ok": True}}]
    fake.on("POST", PATH, sse_stream([capture("sse-sample-error.txt")]))
    with client_for(fake) as client:
        reply = client.sessions.create_event("sess000001", "!error").reply()
    assert reply.error == {"exception": "EchoError: simulated failure"}


def test_text_deltas_arrive_live(fake: FakeServer) -> None:
    pieces = [
        f"event: chunk\ndata: {json.dumps({'event_id': 'e', 'seq': i, 'patches': [{'op': 'add', 'path': '/-', 'value': str(i)}]})}\n\n".encode()
        for i in range(3)
    ]
    fake.on("POST", PATH, sse_stream(pieces, delay=0.3))
    with client_for(fake) as client:
        arrivals = []
        started = time.monotonic()
        for delta in client.sessions.create_event("sess000001", "x").text_deltas():
            arrivals.append((delta, time.monotonic() - started))
    assert [d for d, _ in arrivals] == ["0", "1", "2"]
    # the first token is not held back until the end: the server paused 0.3 s between pieces
    assert arrivals[2][1] - arrivals[0][1] >= 0.4


def test_unknown_event_names_are_kept_raw(fake: FakeServer) -> None:
    fake.on(
        "POST",
        PATH,
        sse_stream(
            [
                b"event: heartbeat\ndata: {}\n\n: comment\n\nevent: status\nid: s1\ndata: "
                + json.dumps({"id": "s1", "data": {"type": "status", "status": "quantum"}}).encode()
                + b"\n\n"
            ]
        ),
    )
    with client_for(fake) as client:
        events = list(client.sessions.create_event("sess000001", "x"))
    assert events[0] == RawStreamEvent(event="heartbeat", data="{}", id="")
    assert isinstance(events[1], StatusEvent) and events[1].status == "quantum"


def test_stream_that_never_ends_is_cut_by_read_timeout(fake: FakeServer) -> None:
    fake.on("POST", PATH, sse_stream([capture("sse-sample.txt")[:400]], end=False))
    with client_for(fake, read=0.5) as client:
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            client.sessions.create_event("sess000001", "x").reply()
        assert time.monotonic() - started < 3


def test_stream_cut_mid_chunked_body_raises_stream_error(fake: FakeServer) -> None:
    def respond(req: Request, conn: Conn) -> None:
        conn.send(
            raw_response(200, b"", {"content-type": "text/event-stream", "transfer-encoding": "chunked"}, length=False)
        )
        conn.send(chunked(b"event: status\ndata: {}\n\n")[:-4])
        conn.close()

    fake.on("POST", PATH, respond)
    with client_for(fake) as client, pytest.raises((StreamError, APIConnectionError)):
        list(client.sessions.create_event("sess000001", "x"))


def test_stream_closed_mid_event_raises_stream_error(fake: FakeServer) -> None:
    fake.on(
        "POST",
        PATH,
        sse_stream([b'event: chunk\ndata: {"event_id": "e", "patches": []}\n\nevent: chunk\ndata: {"event_i']),
    )
    with client_for(fake) as client:
        stream = client.sessions.create_event("sess000001", "x")
        first = next(stream)
        assert isinstance(first, ChunkEvent)
        with pytest.raises(StreamError, match="middle of an event"):
            next(stream)


def test_stream_reset_raises_connection_error(fake: FakeServer) -> None:
    def respond(req: Request, conn: Conn) -> None:
        conn.send(
            raw_response(200, b"", {"content-type": "text/event-stream", "transfer-encoding": "chunked"}, length=False)
        )
        conn.send(chunked(b"event: status\n"))
        time.sleep(0.1)
        conn.reset()

    fake.on("POST", PATH, respond)
    with client_for(fake) as client, pytest.raises((APIConnectionError, StreamError)):
        list(client.sessions.create_event("sess000001", "x"))


def test_wrong_content_type_for_stream(fake: FakeServer) -> None:
    fake.on("POST", PATH, sse_stream([b'{"detail": "not a stream"}'], content_type="application/json"))
    with client_for(fake) as client, pytest.raises(ContentTypeError):
        client.sessions.create_event("sess000001", "x")


def test_malformed_json_in_stream_event(fake: FakeServer) -> None:
    fake.on("POST", PATH, sse_stream([b"event: chunk\ndata: {not json\n\n"]))
    with client_for(fake) as client, pytest.raises(DecodeError):
        list(client.sessions.create_event("sess000001", "x"))
    fake.on("POST", PATH, sse_stream([b'event: chunk\ndata: {"seq": 1}\n\n']))
    with client_for(fake) as client, pytest.raises(ModelError):
        list(client.sessions.create_event("sess000001", "x"))


def test_non_utf8_bytes_in_stream_become_replacement_chars(fake: FakeServer) -> None:
    fake.on("POST", PATH, sse_stream([b"event: odd\ndata: caf\xe9 \xff\n\n"]))
    with client_for(fake) as client:
        (event,) = list(client.sessions.create_event("sess000001", "x"))
    assert isinstance(event, RawStreamEvent) and event.data == "caf\ufffd \ufffd"


def test_huge_line_is_rejected_with_bounded_memory(fake: FakeServer) -> None:
    fake.on("POST", PATH, sse_stream([b"data: " + b"x" * 65536] * 40, end=False))
    with client_for(fake, max_line_bytes=1024 * 1024) as client, pytest.raises(ResponseTooLargeError):
        list(client.sessions.create_event("sess000001", "x"))


def test_closing_early_closes_the_connection(fake: FakeServer) -> None:
    fake.on("POST", PATH, sse_stream([capture("sse-sample.txt")], end=False))
    with client_for(fake) as client:
        with client.sessions.create_event("sess000001", "x") as stream:
            next(stream)
        with pytest.raises(StreamError, match="cut short by a close before its end"):
            next(stream)  # no quiet end, as if what arrived were the whole reply


def test_async_stream(fake: FakeServer) -> None:
    fake.on("POST", PATH, sse_stream([capture("sse-sample.txt")]))

    async def run() -> str:
        async with client_for(fake) as client:
            stream = await client.sessions.create_event_async("sess000001", "hello flux0")
            async with stream:
                kinds = [type(e).__name__ async for e in stream]
            assert kinds[0] == "StatusEvent"
            return stream.assembler.text

    assert asyncio.run(run()) == "Echo: hello flux0"


def test_async_reply(fake: FakeServer) -> None:
    fake.on("POST", PATH, sse_stream([capture("sse-sample.txt")]))

    async def run() -> str:
        async with client_for(fake) as client:
            stream = await client.sessions.create_event_async("sess000001", "hello flux0")
            return (await stream.reply()).text

    assert asyncio.run(run()) == "Echo: hello flux0"


def test_assembler_ignores_raw_events_and_handles_interleaving() -> None:
    decoder = SSEDecoder()
    assembler = ReplyAssembler()
    raw = (
        b'event: chunk\ndata: {"event_id": "a", "seq": 0, "patches": [{"op": "add", "path": "/-", "value": "A1"}]}\n\n'
        b'event: chunk\ndata: {"event_id": "b", "seq": 0, "patches": [{"op": "add", "path": "/-", "value": "B1"}]}\n\n'
        b'event: chunk\ndata: {"event_id": "a", "seq": 1, "patches": [{"op": "add", "path": "/-", "value": "A2"}]}\n\n'
        b"event: other\ndata: x\n\n"
    )
    for sse in decoder.feed(raw):
        assembler.add(parse_stream_event(sse))
    assert assembler.document("a") == ["A1", "A2"]
    assert assembler.text == "A1A2B1"


# -- what the assembler keeps is bounded (issue 11) --------------------------------------------


def _text_chunk(event_id: str, seq: int, text: str, path: str = "/-") -> ChunkEvent:
    return ChunkEvent.from_dict(
        {"event_id": event_id, "seq": seq, "patches": [{"op": "add", "path": path, "value": text}]}
    )


def test_assembler_cap_raises_response_too_large() -> None:
    assembler = ReplyAssembler(max_bytes=10_000)
    piece = "x" * 100
    with pytest.raises(ResponseTooLargeError, match="10000 bytes"):
        for seq in range(1000):
            assembler.add(_text_chunk("a", seq, piece))
    assert 9_000 < assembler.kept_bytes <= 10_000 + 164
    assert len(assembler.text) < 10_000  # what was kept before the cap is still there
    # Many tiny pieces are charged what they cost in memory, not just their characters.
    small = ReplyAssembler(max_bytes=64_000)
    with pytest.raises(ResponseTooLargeError):
        for seq in range(2000):
            small.add(_text_chunk("a", seq, "y"))
    assert len(small.text) < 1000


def test_assembler_cap_counts_nested_values_without_recursion() -> None:
    deep: object = "leaf"
    for _ in range(50_000):
        deep = {"k": deep}
    assembler = ReplyAssembler(max_bytes=1_000_000)
    with pytest.raises(ResponseTooLargeError):
        assembler.add(ChunkEvent(event_id="a", seq=0, patches=(JsonPatch("add", "/x", deep),)))


@pytest.mark.parametrize("kind", ["chunk", "error status"])
def test_a_value_over_the_cap_is_refused_before_it_is_copied(kind: str) -> None:
    # 400,000 empty lists: a copy (and its work list) would hold ~45 MB for a 64 KiB cap (hadv29 01)
    wide = [[] for _ in range(400_000)]
    if kind == "chunk":
        event: object = ChunkEvent(event_id="a", seq=0, patches=(JsonPatch("add", "/x", wide),))
    else:
        event = StatusEvent.from_dict({"id": "s", "data": {"type": "status", "status": "error", "data": wide}})
    assembler = ReplyAssembler(max_bytes=64 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLargeError):
            assembler.add(event)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert assembler.kept_bytes > 64 * 1024  # still counted: every later event is refused too
    with pytest.raises(ResponseTooLargeError):
        assembler.add(_text_chunk("b", 0, "x"))


def test_sized_copy_under_its_limit_is_the_unlimited_copy_and_over_it_no_copy() -> None:
    value = {"a": [1, {"b": "text", "c": None}], "d": 2**70, "e": [[]]}
    copy, size = sized_copy(value)
    assert copy == value and copy is not value and copy["a"] is not value["a"]
    assert sized_copy(value, size) == (copy, size)
    refused, over = sized_copy(value, size - 1)
    assert refused is None and over > size - 1


def test_threads_sharing_one_stream_take_turns_each_event_read_once(fake: FakeServer) -> None:
    # a generator entered twice at once raised a bare ValueError (hadv29 02)
    pieces = [
        f"event: chunk\ndata: {json.dumps({'event_id': 'e', 'seq': i, 'patches': [{'op': 'add', 'path': '/-', 'value': f'{i} '}]})}\n\n".encode()
        for i in range(40)
    ]
    fake.on("POST", PATH, sse_stream(pieces, delay=0.01))
    seen: List[int] = []
    failures: List[BaseException] = []

    def read(stream: object) -> None:
        try:
            for event in stream:  # type: ignore[attr-defined]
                seen.append(event.seq)
        except BaseException as exc:  # any failure fails the test below
            failures.append(exc)

    with client_for(fake) as client:
        stream = client.sessions.create_event("sess000001", "x")
        threads = [threading.Thread(target=read, args=(stream,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert failures == []
        assert sorted(seen) == list(range(40))
        assert stream.reply().text == "".join(f"{i} " for i in range(40))


def _cut_after(pieces: int) -> Callable[[Request, Conn], None]:
    """A stream of ``pieces`` text chunks, 20 ms apart, then cut off in the middle of a chunk."""

    def respond(req: Request, conn: Conn) -> None:
        conn.send(
            raw_response(200, b"", {"content-type": "text/event-stream", "transfer-encoding": "chunked"}, length=False)
        )
        for i in range(pieces):
            doc = {"event_id": "e", "seq": i, "patches": [{"op": "add", "path": "/-", "value": f"{i} "}]}
            conn.send(chunked(f"event: chunk\ndata: {json.dumps(doc)}\n\n".encode()))
            time.sleep(0.02)
        conn.send(b"ff\r\nevent: ch")
        conn.close()

    return respond


def test_after_a_failed_read_every_read_and_reply_raises_never_a_partial_reply(fake: FakeServer) -> None:
    # a later read ended as if the stream were whole, and reply() gave the part as the reply (hadv30 01)
    fake.on("POST", PATH, _cut_after(3))
    with client_for(fake) as client:
        stream = client.sessions.create_event("sess000001", "x")
        with pytest.raises((StreamError, APIConnectionError)) as first:
            list(stream)
        with pytest.raises(StreamError, match="cut short by an earlier") as later:
            next(stream)
        assert later.value.__cause__ is first.value
        with pytest.raises(StreamError, match="cut short"):
            stream.reply()
        assert stream.assembler.reply().text == "0 1 2 "  # what arrived is there, asked for as such


def test_threads_sharing_a_stream_that_fails_all_learn_it(fake: FakeServer) -> None:
    fake.on("POST", PATH, _cut_after(10))
    outcomes: List[str] = []

    def run(action: Callable[[], object]) -> None:
        try:
            action()
            outcomes.append("no error")
        except Flux0Error as exc:
            outcomes.append(type(exc).__name__)

    with client_for(fake) as client:
        stream = client.sessions.create_event("sess000001", "x")
        threads = [
            threading.Thread(target=run, args=(lambda: list(stream),)),
            threading.Thread(target=run, args=(stream.reply,)),
            threading.Thread(target=run, args=(lambda: list(stream.text_deltas()),)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert len(outcomes) == 3 and "no error" not in outcomes, outcomes


def test_a_stream_closed_before_its_end_by_another_thread_ends_no_loop_quietly(fake: FakeServer) -> None:
    # between two reads, a loop (text_deltas here) ended as if the reply were whole (review3 2)
    pieces = [
        f"event: chunk\ndata: {json.dumps({'event_id': 'e', 'seq': i, 'patches': [{'op': 'add', 'path': '/-', 'value': str(i)}]})}\n\n".encode()
        for i in range(40)
    ]
    fake.on("POST", PATH, sse_stream(pieces, delay=0.05))
    seen: List[str] = []
    with client_for(fake) as client:
        stream = client.sessions.create_event("sess000001", "x")
        with pytest.raises(StreamError, match="cut short by a close before its end"):
            for delta in stream.text_deltas():
                seen.append(delta)
                if len(seen) == 3:
                    threading.Thread(target=stream.close).start()
                    time.sleep(0.2)  # closed between this read and the next
        with pytest.raises(StreamError, match="cut short"):
            stream.reply()
    assert seen == ["0", "1", "2"] and not stream.finished


def test_a_close_in_another_thread_never_lets_a_read_into_the_generator_it_is_ending(fake: FakeServer) -> None:
    # close() ran the generator's end while a read entered it: a bare ValueError (hadv33 01)
    fake.on("POST", PATH, sse_stream([capture("sse-sample.txt")], end=False))
    inside_close = threading.Event()
    outcomes: List[str] = []

    def pause_in_the_generators_end(frame: Any, event: str, arg: Any) -> None:
        back = frame.f_back
        if event == "call" and frame.f_code.co_name == "close" and back and back.f_code.co_name == "_generate":
            inside_close.set()  # where CPython may switch threads: let the reader try now
            time.sleep(0.5)

    def closer() -> None:
        sys.settrace(pause_in_the_generators_end)
        try:
            stream.close()
        finally:
            sys.settrace(None)

    def reader() -> None:
        inside_close.wait(3)
        try:
            next(stream)
            outcomes.append("an event")
        except Flux0Error as exc:
            outcomes.append(type(exc).__name__)
        except BaseException as exc:  # the failure this test is for
            outcomes.append(f"not a Flux0Error: {exc!r}")

    with client_for(fake) as client:
        stream = client.sessions.create_event("sess000001", "x")
        next(stream)  # the generator is suspended at its yield
        threads = [threading.Thread(target=reader), threading.Thread(target=closer)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert outcomes == ["StreamError"]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_assembler_cap_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ConfigError):
        ReplyAssembler(max_bytes=bad)  # type: ignore[arg-type]


def test_endless_stream_stops_at_the_reply_cap_and_closes(fake: FakeServer) -> None:
    """A server streaming text without end: a typed error once the cap is reached, not OOM."""
    chunk = b"".join(
        b'event: chunk\ndata: {"event_id": "e", "seq": %d, "patches": [{"op": "add", "path": "/-", "value": "%s"}]}\n\n'
        % (i, b"z" * 1000)
        for i in range(64)
    )

    def respond(req: Request, conn: Conn) -> None:
        conn.send(
            raw_response(200, b"", {"content-type": "text/event-stream", "transfer-encoding": "chunked"}, length=False)
        )
        try:
            for _ in range(10_000):  # 640 MB if nobody stops
                conn.send(chunked(chunk))
        except OSError:
            pass  # the client hung up, as it should

    fake.on("POST", PATH, respond)
    with client_for(fake) as client:
        response = client.request_stream("POST", PATH, json_body={})
        stream = EventStream(response, max_reply_bytes=2 * 1024 * 1024)
        with pytest.raises(ResponseTooLargeError):
            stream.reply()
        assert 1_900_000 < stream.assembler.kept_bytes < 2_200_000
    assert response._closed


def test_create_event_caps_the_reply_at_the_clients_max_response_bytes(fake: FakeServer) -> None:
    """The client's one body limit also bounds what a streamed reply may rebuild."""
    piece = b"z" * 1000
    chunk = b"".join(
        b'event: chunk\ndata: {"event_id": "e", "seq": %d, "patches": [{"op": "add", "path": "/-", "value": "%s"}]}\n\n'
        % (i, piece)
        for i in range(64)
    )

    def respond(req: Request, conn: Conn) -> None:
        conn.send(
            raw_response(200, b"", {"content-type": "text/event-stream", "transfer-encoding": "chunked"}, length=False)
        )
        try:
            for _ in range(10_000):
                conn.send(chunked(chunk))
        except OSError:
            pass

    fake.on("POST", "/api/sessions/s1/events/stream", respond)
    with client_for(fake, max_response_bytes=1024 * 1024) as client:
        stream = client.sessions.create_event("s1", "hi")
        with pytest.raises(ResponseTooLargeError):
            stream.reply()
        assert stream.assembler.kept_bytes < 1_300_000


def test_jsonl_events_are_not_changed_by_later_patches(fake: FakeServer) -> None:
    """The assembler copies patch values: an event already handed out never changes."""
    events = [
        {"event_id": "t", "seq": 0, "patches": [{"op": "add", "path": "/tool_calls/0", "value": {"args": []}}]},
        {"event_id": "t", "seq": 1, "patches": [{"op": "add", "path": "/tool_calls/0/args/-", "value": "{}"}]},
    ]
    fake.on("POST", PATH, sse_stream([sse_text([("chunk", e) for e in events])]))
    with client_for(fake) as client:
        with client.sessions.create_event("sess000001", "x") as stream:
            seen = list(stream)
            reply = stream.assembler.reply()
    assert isinstance(seen[0], ChunkEvent) and seen[0].patches[0].value == {"args": []}
    assert reply.messages == {"t": {"tool_calls": [{"args": ["{}"]}]}}


# -- the JSON of a stream event: the scanner's shortcut is json.loads --------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from flux0lite.sse import SSEEvent  # noqa: E402

_JSON_ALPHABET = st.sampled_from(list('{}[]",:0123456789.eE+-truefalsnNIiy \t\n\r\\u\ufeffx'))
_CAPTURES = SHARED / "flux0-api" / "captures"
_CAPTURED_DATA = [
    line[len("data: ") :]
    for path in sorted(_CAPTURES.glob("sse-sample*.txt"))
    for line in path.read_text(encoding="utf-8").splitlines()
    if line.startswith("data: ")
] or ['{"event_id": "e", "patches": []}']  # the captures' shape, where they are not present
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(_JSON_ALPHABET, max_size=30),
        _JSON_VALUES.map(json.dumps),
        st.tuples(
            st.sampled_from(["", " ", "\n", "\ufeff"]), _JSON_VALUES.map(json.dumps), st.text(" \t}x", max_size=2)
        ).map("".join),
        # hostile values: huge ints (over 3.11+'s int max str digits), lone surrogates escaped
        # and raw, non-finite numbers, nesting deeper than the scanner's recursion allows
        st.sampled_from(["1" * 5000, '{"a": -' + "9" * 4301 + "}", '"\\ud800"', '"\ud800x"', '["\\udfff", "\\ud83d"]']),
        st.tuples(st.sampled_from(["", " "]), st.sampled_from(_CAPTURED_DATA), st.sampled_from(["", " ", "x"])).map(
            "".join
        ),
        st.sampled_from(
            ["NaN", "[Infinity, -Infinity]", "1e400", "-0.0", "[" * 100_000 + "]" * 100_000, "[" * 100_000]
        ),
    )
)
def test_stream_event_json_is_json_loads(text: str) -> None:
    """Any event data decodes to what json.loads gives, or fails as a DecodeError exactly when
    json.loads fails: the direct scanner call is a shortcut, never another parser."""
    try:
        expected = json.loads(text)
    except (ValueError, RecursionError):
        for name in ("chunk", "status"):
            with pytest.raises(DecodeError):
                parse_stream_event(SSEEvent(data=text, event=name))
        return
    assert json.dumps(expected)  # a JSON value: each event reads as its model reads it
    for name, model in (("chunk", ChunkEvent), ("status", StatusEvent)):
        assert _outcome(lambda: parse_stream_event(SSEEvent(data=text, event=name))) == _outcome(
            lambda: model.from_dict(json.loads(text))
        )


def _outcome(action: Callable[[], object]) -> Tuple[str, str]:
    """The repr of what ``action`` returned, or its error's type and message."""
    try:
        return "ok", repr(action())
    except Flux0Error as exc:
        return type(exc).__name__, str(exc)


def test_an_async_stream_dropped_before_its_end_ends_its_thread_and_closes_its_connection(fake: FakeServer) -> None:
    """hadv17 02: ``async for ...: break`` and the stream dropped, without aclose(): its reader
    thread waited for a next read for ever (one thread, and its socket, per reply)."""
    import gc
    import threading

    status = {"id": "e1", "event_id": "e1", "correlation_id": "c", "data": {"type": "status", "status": "processing"}}
    fake.on("POST", "/api/sessions/*", sse_stream([sse_text([("status", status)] * 3)]))

    def readers() -> int:
        return sum(1 for thread in threading.enumerate() if thread.name == "flux0lite-stream")

    async def drop_streams(client: Flux0) -> None:
        for _ in range(5):
            stream = await client.sessions.create_event_async("s", "hi")
            async for _event in stream:
                break
            del stream

    before = readers()
    with Flux0(fake.url, timeout=Timeout(5, 5), retry=Retry(total=0)) as client:
        asyncio.run(drop_streams(client))
        gc.collect()
        deadline = time.monotonic() + 5
        while readers() > before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert readers() == before


def test_cancelling_a_read_of_a_stream_read_to_the_connections_end_ends_it_at_once(fake: FakeServer) -> None:
    """hadv18 (found through the compat layer): an answer with neither a length nor chunks is
    read to the connection's end, and http.client then lets go of the connection's socket, so
    abort() found none to shut down: a cancelled read waited for the server (10 s here)."""
    import threading

    quiet = threading.Event()

    def thinking(req: Request, conn: Conn) -> None:
        conn.send(raw_response(200, b"", {"content-type": "text/event-stream"}, length=False))
        quiet.wait(10)
        conn.keep_alive = False

    fake.on("POST", "/api/sessions/*", thinking)

    async def cancel_a_read(client: Flux0) -> float:
        stream = await client.sessions.create_event_async("s", "hi")

        async def read() -> None:
            async for _ in stream:
                pass

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.2)
        started = time.monotonic()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await stream.aclose()
        return time.monotonic() - started

    try:
        with Flux0(fake.url, timeout=Timeout(5, 30), retry=Retry(total=0)) as client:
            assert asyncio.run(cancel_a_read(client)) < 2
    finally:
        quiet.set()


def test_a_finished_stream_closed_again_leaves_its_pooled_connection_to_the_next_call(fake: FakeServer) -> None:
    """hadv19 01: ``with`` after a ``for`` that read a stream to its end closed it a second time;
    the first close had handed its connection to the pool, and the second shut it down, under
    the call using it by then."""
    body = b"event: ping\ndata: hello\n\n"
    fake.on("GET", "/sse", lambda req, conn: conn.send(raw_response(200, body, {"content-type": "text/event-stream"})))
    fake.on("GET", "/api/agents", json_response(200, {"data": []}))
    with Flux0(fake.url, retry=Retry(total=0)) as client:
        with EventStream(client.request_stream("GET", "/sse")) as stream:
            assert len(list(stream)) == 1  # read to its end: the connection goes back to the pool
        assert client.request_json("GET", "/api/agents") == {"data": []}
    assert fake.connections == 1  # the pooled connection served the next call
