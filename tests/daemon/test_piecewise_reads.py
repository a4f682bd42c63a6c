"""A small answer read by the writer piece by piece and a transaction's worth at a time.

The contract: the writer's reading (``read_batches`` over the pieces the answer arrived in)
yields exactly the events, in order, that one pass of the general streaming reader yields over
the whole answer, and fails with the same typed error after the same events, whatever the
answer holds (malformed JSON, bytes that are not UTF-8, huge numbers, lone surrogates, deep
nesting, events without ids) and however it was cut into pieces. And a whole job, worker and
writer together, gives for a small answer (read whole by its Content-Length) exactly what it
gives for the same bytes streamed (chunked), including when the body ends early, is cut off at
the deadline or the connection is lost mid-read: the same events, once each, then the same error.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from flux0sync import engine
from flux0sync.jobs import Fetched, _read_body, fetch_events, read_batches, read_events
from flux0sync.jsonread import Decoder
from flux0sync.rows import RawEvent, check_identity
from flux0sync.store import Store
from flux0sync.sync import Syncer
from flux0sync.workers import Finished, Job, Message, Piece
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flux0lite import APIConnectionError, Flux0, Flux0Error, RequestAborted, Retry, StreamError, Timeout
from flux0lite.jsonstream import iter_array
from tests.daemon.helpers import assert_archive_equals_server
from tests.daemon.hostile import event, past_the_c_scanner, too_deep_for_the_c_scanner
from tests.fakeserver import FakeFlux0, FakeServer

Outcome = Tuple[List[Tuple[str, str]], Optional[Tuple[type, str]]]
DEEP = "\x00deep"  # in an answer, stands for a value nested deeper than CPython's decoder reads


def _deep_text() -> str:
    """What DEEP stands for: a nest just past the C scanner where the answer is read (a fixed
    20,000 levels cost up to 20x more CPU)."""
    depth = past_the_c_scanner()
    text = "[" * depth + "{}" + "]" * depth
    assert too_deep_for_the_c_scanner(text)
    return text


def _shown(doc: Any) -> str:
    """The decoded event, to compare (one nested too deep to show: its text says it all)."""
    try:
        return repr(doc)
    except RecursionError:
        return "too deep to show"


def _general(session_id: str, body: bytes) -> Outcome:
    """The reference: the streaming reader over the whole answer, an Element per value."""
    texts: List[Tuple[str, str]] = []
    try:
        for element in iter_array((body,), key="data", what="x", decoder=Decoder(), errors="surrogateescape"):
            raw = RawEvent(element.value, element.text)
            check_identity(session_id, raw)
            texts.append((_shown(raw.doc), raw.text))
    except Flux0Error as exc:
        return texts, (type(exc), str(exc).split(": ", 1)[1])
    return texts, None


def _piecewise(session_id: str, pieces: List[bytes], size: int) -> Outcome:
    texts: List[Tuple[str, str]] = []
    try:
        for batch in read_batches(session_id, pieces, size):
            assert 0 < len(batch) <= size
            texts += [(_shown(e.doc), e.text) for e in batch]
    except Flux0Error as exc:
        return texts, (type(exc), str(exc).split(": ", 1)[1])
    return texts, None


_ODD = st.one_of(
    st.integers(),
    st.integers(min_value=10**30, max_value=10**40),
    st.text(max_size=6),
    st.sampled_from(["\ud83d", "caf\u00e9", "\x00\x1f", "unknown_kind", DEEP]),
    st.none(),
    st.floats(allow_nan=False),
)


@st.composite
def _answers(draw: Any) -> bytes:
    """A list_events answer: mostly events, some odd, then maybe cut, corrupted or padded."""
    docs: List[Any] = []
    for n in range(draw(st.integers(0, 12))):
        doc: Any = event("s", draw(st.one_of(st.just(n), _ODD)), text=draw(st.text(max_size=20)))
        if draw(st.integers(0, 9)) == 0:
            doc = draw(st.one_of(_ODD, st.just({"offset": n}), st.just([[[[1]]]])))
        elif draw(st.booleans()):
            doc["extra"] = draw(_ODD)
        docs.append(doc)
    body = json.dumps({"data": docs}, indent=draw(st.sampled_from([None, 1])), ensure_ascii=draw(st.booleans()))
    if json.dumps(DEEP) in body:
        body = body.replace(json.dumps(DEEP), _deep_text())
    raw = body.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 3)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]  # cut anywhere, even inside a character
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"}", b"1" * 5000, b"[" * 3000, b" \n"])) + raw[at:]
    return raw


def _cut(body: bytes, cuts: List[int]) -> List[bytes]:
    marks = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in zip(marks, marks[1:])] or [b""]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # the profile's examples
@given(body=_answers(), cuts=st.lists(st.integers(0, 20_000), max_size=8), size=st.integers(1, 7))
def test_read_piecewise_in_batches_is_the_streaming_reader_on_hostile_answers(
    body: bytes, cuts: List[int], size: int
) -> None:
    assert _piecewise("s", _cut(body, cuts), size) == _general("s", body)


def test_read_events_reads_a_whole_body_as_read_batches_does() -> None:
    docs = [event("s", o) for o in range(5)]
    body = json.dumps({"data": docs}).encode()
    whole, error = read_events("s", Fetched(-1, [], [body[:7], body[7:]]))
    assert error is None and whole.highest == 4 and [e.doc for e in whole.tail] == docs
    assert [e.doc for e in read_events("s", Fetched(-1, [], body))[0].tail] == docs


def test_a_whole_answer_is_kept_in_its_pieces_and_one_that_overruns_its_length_is_streamed() -> None:
    assert _read_body(iter([b"ab", b"cd"]), 4) == [b"ab", b"cd"]
    overrun = _read_body(iter([b"ab", b"cde", b"f"]), 4)
    assert not isinstance(overrun, list) and list(overrun) == [b"ab", b"cde", b"f"]


def test_a_whole_answer_that_fails_mid_read_replays_its_pieces_then_the_fault() -> None:
    fault = StreamError("cut off")

    def chunks() -> Iterator[bytes]:
        yield b"ab"
        yield b"cd"
        raise fault

    replay = _read_body(chunks(), 10)
    assert not isinstance(replay, list)
    assert [next(replay), next(replay)] == [b"ab", b"cd"]
    with pytest.raises(StreamError) as caught:
        next(replay)
    assert caught.value is fault


# -- a whole job, worker and writer: a small answer read whole == the same bytes streamed ------

# The ways a body fails mid-read: cut short of its length, cut off at the deadline (the pool
# aborts the call), the connection lost. A new one per run: the same bytes meet the same fault.
_FAULTS: Dict[str, Callable[[], Flux0Error]] = {
    "short": lambda: StreamError("GET x: body cut off 9 bytes short of its length"),
    "deadline": lambda: RequestAborted("GET x: aborted by the client before the body ended"),
    "lost": lambda: APIConnectionError("GET x: connection lost mid-stream: reset"),
}


class _Response:
    method, url, content_type = "GET", "http://127.0.0.1/x", "application/json"

    def __init__(self, headers: Dict[str, str], pieces: List[bytes], fault: Optional[Flux0Error]) -> None:
        self.headers, self.pieces, self.fault = headers, pieces, fault
        self.closed = False

    def iter_bytes(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.fault is not None:
            raise self.fault

    def close(self) -> None:
        self.closed = True


class _Client:
    def __init__(self, response: _Response) -> None:
        self.response = response

    def request_stream(self, method: str, path: str, params: Any = None) -> _Response:
        return self.response


def _polled(headers: Dict[str, str], pieces: List[bytes], fault: Optional[str], size: int) -> Outcome:
    """One poll as the daemon runs it: the job on a worker (what it hands over, then its result
    or error), then the writer's reading of those messages (engine._unpacked)."""
    response = _Response(headers, pieces, _FAULTS[fault]() if fault else None)
    job = Job("events s", None, fetch_events("s", 0, size), meta=("events", "s"))
    handed: List[Message] = []
    try:
        value = job.run(_Client(response), lambda batch: handed.append(Piece(job, batch)))  # type: ignore[arg-type]
        handed.append(Finished(job, value))
    except Flux0Error as exc:
        handed.append(Finished(job, None, exc))
    assert response.closed
    texts: List[Tuple[str, str]] = []
    error: Optional[Flux0Error] = None
    for message in handed:
        for unpacked in engine._unpacked(message, size):
            texts += [(_shown(e.doc), e.text) for e in engine._events_of(unpacked)]
            if isinstance(unpacked, Finished):
                error = unpacked.error
    return texts, (type(error), str(error)) if error is not None else None


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # the profile's examples
@given(
    body=_answers(),
    cuts=st.lists(st.integers(0, 20_000), max_size=8),
    size=st.integers(1, 7),
    fault=st.one_of(st.none(), st.sampled_from(sorted(_FAULTS))),
    fault_at=st.integers(0, 9),
    declared=st.integers(-40, 40),
)
def test_a_small_answer_read_whole_is_the_same_answer_streamed_even_cut_stalled_or_lost(
    body: bytes, cuts: List[int], size: int, fault: Optional[str], fault_at: int, declared: int
) -> None:
    pieces = _cut(body, cuts)
    if fault is not None:
        pieces = pieces[: min(fault_at, len(pieces))]
    length = str(max(0, len(body) + declared))  # what it declared: its length, or more, or less
    whole = _polled({"content-length": length}, pieces, fault, size)
    streamed = _polled({"transfer-encoding": "chunked"}, pieces, fault, size)
    chunked_with_a_length = _polled({"transfer-encoding": "chunked", "content-length": length}, pieces, fault, size)
    assert whole == streamed == chunked_with_a_length
    if fault is None:
        texts, error = whole
        assert (texts, error and (error[0], error[1].split(": ", 1)[1])) == _general("s", b"".join(pieces))
    elif whole[1] is not None and whole[1][0] is _FAULTS[fault]().__class__:
        # failed by the fault: what was kept is what the bytes before it hold, in order (the
        # reader may have been reading ahead for the last of them when the fault came)
        arrived = _general("s", b"".join(pieces))[0]
        assert whole[0] == arrived[: len(whole[0])]


def _client(fake: FakeServer) -> Flux0:
    return Flux0(fake.url, timeout=Timeout(5, 5), retry=Retry(total=0))


def test_the_writer_parses_a_small_answer_a_transaction_at_a_time_and_stores_it_once(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, monkeypatch: pytest.MonkeyPatch
) -> None:
    largest: List[int] = []

    def spy(session_id: str, body: List[bytes], size: int) -> Iterator[List[RawEvent]]:
        for batch in read_batches(session_id, body, size):
            largest.append(len(batch))
            yield batch

    monkeypatch.setattr(engine, "read_batches", spy)
    agent = fake_flux0.add_agent()
    sessions = [fake_flux0.add_session(agent) for _ in range(3)]
    for n, sid in enumerate(sessions):
        fake_flux0.add_events(sid, 45 + n)
    db = str(tmp_path / "a.sqlite3")
    thresholds = gc.get_threshold()
    syncer = Syncer(_client(fake), Store(db), batch_size=10, workers=2, make_client=lambda user: _client(fake))
    result = syncer.run_pass()
    assert result.ok and result.events_inserted == 45 + 46 + 47
    assert_archive_equals_server(db, fake_flux0)
    assert largest and max(largest) == 10 and sum(largest) == 45 + 46 + 47
    assert gc.get_threshold() == thresholds  # the loop's collection threshold is given back
    fake_flux0.add_events(sessions[1], 12)
    assert syncer.run_pass().events_inserted == 12  # nothing twice
    assert_archive_equals_server(db, fake_flux0)
