from __future__ import annotations

import json
import random
from typing import Any, Dict, List

import pytest

from flux0lite.errors import ResponseTooLargeError
from flux0lite.sse import SSEDecoder, SSEEvent
from tests.conftest import shared_path


def _vectors() -> List[Dict[str, Any]]:
    return json.loads(shared_path("sse-vectors", "vectors.json").read_text(encoding="utf-8"))


def _chunks(case: Dict[str, Any]) -> List[bytes]:
    if "byte_chunks_hex" in case:
        return [bytes.fromhex(h) for h in case["byte_chunks_hex"]]
    if "chunks" in case:
        return [c.encode("utf-8") for c in case["chunks"]]
    return [case["input"].encode("utf-8")]


def _run(chunks: List[bytes]) -> Dict[str, Any]:
    decoder = SSEDecoder()
    events: List[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.close()
    return {
        "events": [{"event": e.event, "data": e.data, "id": e.id, "retry": e.retry} for e in events],
        "final": {"last_event_id": decoder.last_event_id, "reconnection_time": decoder.retry},
    }


def _ids() -> List[str]:
    try:
        return [c["name"] for c in _vectors()]
    except BaseException:
        return ["vectors"]


@pytest.mark.parametrize("name", _ids())
def test_vector_as_given(name: str) -> None:
    case = next(c for c in _vectors() if c["name"] == name)
    got = _run(_chunks(case))
    assert got["events"] == case["expected"]
    assert got["final"] == case["final_state"]


@pytest.mark.parametrize("name", _ids())
def test_vector_byte_by_byte_and_random_chunkings(name: str) -> None:
    case = next(c for c in _vectors() if c["name"] == name)
    data = b"".join(_chunks(case))
    expected = {"events": case["expected"], "final": case["final_state"]}
    if len(data) < 5000:
        assert _run([data[i : i + 1] for i in range(len(data))]) == expected
    rng = random.Random(name)
    for _ in range(5):
        cuts = (
            sorted(rng.sample(range(1, max(2, len(data))), k=min(len(data) - 1, rng.randint(0, 8))))
            if len(data) > 1
            else []
        )
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        assert _run(pieces) == expected


def test_flux0_capture_decodes_to_status_and_chunk_events() -> None:
    raw = shared_path("flux0-api", "captures", "sse-sample.txt").read_bytes()
    decoder = SSEDecoder()
    events = decoder.feed(raw) + decoder.close()
    assert [e.event for e in events[:2]] == ["status", "status"]
    assert {e.event for e in events} == {"status", "chunk"}
    for e in events:
        json.loads(e.data)
    # chunks carry no id: the status id stays in force, as the spec says
    assert events[2].event == "chunk" and events[2].id == events[1].id


def test_line_longer_than_limit_raises_instead_of_buffering() -> None:
    decoder = SSEDecoder(max_line_bytes=1024)
    decoder.feed(b"data: " + b"x" * 1000)
    with pytest.raises(ResponseTooLargeError):
        decoder.feed(b"y" * 100)


def test_complete_line_over_limit_in_one_read_raises() -> None:
    with pytest.raises(ResponseTooLargeError):
        SSEDecoder(max_line_bytes=100).feed(b"data: " + b"x" * 200 + b"\n\n")


def test_event_over_limit_across_many_data_lines_raises() -> None:
    decoder = SSEDecoder(max_line_bytes=1000)
    with pytest.raises(ResponseTooLargeError):
        decoder.feed(b"data: 0123456789\n" * 200)


def test_has_pending_tracks_partial_events() -> None:
    decoder = SSEDecoder()
    assert not decoder.has_pending
    decoder.feed(b"data: a\n")
    assert decoder.has_pending
    assert decoder.feed(b"\n") == [SSEEvent(data="a")]
    assert not decoder.has_pending
    decoder.feed(b"data: b")
    assert decoder.has_pending


def test_seeded_last_event_id_persists() -> None:
    decoder = SSEDecoder(last_event_id="41")
    assert decoder.feed(b"data: x\n\n")[0].id == "41"


def test_feed_after_close_is_an_error() -> None:
    decoder = SSEDecoder()
    decoder.close()
    with pytest.raises(ValueError):
        decoder.feed(b"data: x\n\n")


def test_large_event_in_small_reads_is_one_event() -> None:
    payload = b"z" * (2 * 1024 * 1024)
    raw = b"data: " + payload + b"\n\n"
    decoder = SSEDecoder()
    events: List[SSEEvent] = []
    for i in range(0, len(raw), 1024):
        events += decoder.feed(raw[i : i + 1024])
    assert len(events) == 1 and len(events[0].data) == len(payload)


def _decode(chunks: List[bytes], shortcut: bool) -> Any:
    decoder = SSEDecoder()
    decoder.shortcut = shortcut
    events: List[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events, decoder.last_event_id, decoder.retry, decoder.has_pending


def _random_stream(rng: random.Random) -> bytes:
    """Blocks the shortcut takes (flux0's shape) mixed with every kind it leaves to the layers."""
    blocks = [
        b'event: chunk\ndata: {"seq": 1}\n\n',
        b"event: status\nid: abc\ndata: {}\n\n",
        b"data:no space\n\n",
        b"id: \xff\xfe\ndata: bad utf-8 \xc3\n\n",
        b"data: a\ndata: b\n\n",  # two data lines
        b": comment\ndata: x\n\n",
        b"retry: 150\ndata: r\n\n",
        b"id: nul\x00\ndata: y\n\n",
        b"event: x\r\ndata: crlf\r\n\r\n",
        b"data: cr\r\r",
        b"event: only\n\n",
        b"data\n\n",
        b"\n",
    ]
    return b"".join(rng.choice(blocks) for _ in range(rng.randint(1, 30)))


def test_shortcut_decodes_as_the_two_layers() -> None:
    """The contract of the simple-block shortcut: same events, ids and state, any chunking."""
    rng = random.Random(12)
    inputs = [b"".join(_chunks(case)) for case in _vectors()]
    inputs += [shared_path("flux0-api", "captures", "sse-sample.txt").read_bytes()]
    inputs += [_random_stream(rng) for _ in range(300)]
    for data in inputs:
        byte_by_byte = _decode([data[i : i + 1] for i in range(len(data))], shortcut=False)
        assert _decode([data], shortcut=True) == byte_by_byte
        cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, 6))) if len(data) > 1 else []
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        assert _decode(pieces, shortcut=True) == byte_by_byte == _decode(pieces, shortcut=False)


def test_line_splitter_ends_lines_at_cr_lf_and_crlf_and_drops_one_bom() -> None:
    from flux0lite.sse import LineSplitter

    splitter = LineSplitter()
    assert splitter.feed(b"\xef\xbb") == []  # maybe half a BOM: wait
    assert splitter.feed(b"\xbfa\rb\nc\r") == [b"a", b"b", b"c"]
    assert splitter.feed(b"\nd\r\n\xef\xbb\xbfe") == [b"d"]  # that LF completed "c\r"'s CRLF
    assert splitter.has_partial and splitter.feed(b"\n") == [b"\xef\xbb\xbfe"]  # only a leading BOM goes
    with pytest.raises(ResponseTooLargeError):
        LineSplitter(max_line_bytes=4).feed(b"abcde\n")
