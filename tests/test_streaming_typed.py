"""The contract of the typed-stream shortcut (``read_simple_block``): bytes to typed events give
the same events, and the same typed error at the same place, as the general path (every block
decoded by the spec's two layers, byte by byte, then typed by ``parse_stream_event``)."""

from __future__ import annotations

import json
import random
from typing import Any, List, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flux0lite.errors import Flux0Error
from flux0lite.sse import SSEDecoder, SSEEvent
from flux0lite.streaming import parse_stream_event, read_simple_block
from tests.conftest import shared_path

_CHUNK = {
    "correlation_id": "RID(x)::y",
    "event_id": "e1",
    "seq": 0,
    "patches": [{"op": "add", "path": "/-", "value": "hi "}],
    "metadata": {"agent_id": "a"},
    "timestamp": 1795526666.04,
}
_STATUS = {
    "id": "s1",
    "source": "ai_agent",
    "type": "status",
    "correlation_id": "RID(x)::y",
    "data": {"type": "status", "acknowledged_offset": 0, "status": "processing", "data": {}},
    "metadata": None,
}

# Data lines that are valid, hostile or malformed for a typed event, as bytes.
_DATA = [
    json.dumps(_CHUNK).encode(),
    json.dumps(_STATUS).encode(),
    json.dumps({**_CHUNK, "future": [1, 2]}).encode(),  # an unknown field, kept
    json.dumps({**_STATUS, "data": {**_STATUS["data"], "status": "brand-new"}}).encode(),  # unknown enum value
    json.dumps({**_CHUNK, "seq": "1"}).encode(),  # wrong type: ModelError
    json.dumps({**_CHUNK, "timestamp": 10**400}).encode(),  # a huge number: ModelError
    json.dumps({**_CHUNK, "timestamp": 1e400}).encode(),
    json.dumps({**_CHUNK, "patches": [{"op": "add", "path": "/-", "value": "\ud800"}]}).encode(),  # lone surrogate
    json.dumps({"seq": 1}).encode(),  # a required field missing
    b'{"event_id": "e2", "patches": [{"op": "add", "path": "/-", "value": "caf\xc3\xa9"}]}',
    b'{"event_id": "e2", "patches": [{"op": "add", "path": "/-", "value": "bad \xff\xfe"}]}',  # not UTF-8
    b'{"event_id": "e3"} ',  # whitespace after the value: still one JSON value
    b' {"event_id": "e3"}',
    b'{"event_id": "e3"} {"event_id": "e4"}',  # two values: malformed
    b'{"event_id": "e3"',  # truncated
    b"",
    b"null",
    b"[1, 2]",
    b"[" * 100_000 + b"]" * 100_000,  # nested too deeply
    b'{"event_id": NaN}',
    b"not json",
]
_NAMES = [b"chunk", b"status", b"message", b"custom-event", b"chunk\xff", b""]


def _block(name: bytes, data: bytes, block_id: bytes) -> bytes:
    head = (b"event: " + name + b"\n" if name else b"") + (b"id: " + block_id + b"\n" if block_id else b"")
    return head + b"data: " + data + b"\n\n"


def _outcome(item: Any) -> Tuple[str, str]:
    event = parse_stream_event(item) if type(item) is SSEEvent else item
    return type(event).__name__, json.dumps(event.to_dict())


def _typed(chunks: List[bytes], fast: bool) -> Tuple[List[Tuple[str, str]], Any]:
    """The typed events in order, and the error that ended the stream (type and message)."""
    decoder = SSEDecoder()
    decoder.shortcut = fast
    events: List[Tuple[str, str]] = []
    try:
        for chunk in chunks:
            for item in decoder.feed(chunk, read_simple_block) if fast else decoder.feed(chunk):
                events.append(_outcome(item))
    except Flux0Error as exc:
        return events, (type(exc).__name__, str(exc))
    return events, None


def _check(data: bytes, cuts: List[int]) -> None:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    general = _typed([data[i : i + 1] for i in range(len(data))], fast=False)
    assert _typed([data], fast=True) == general
    assert _typed(pieces, fast=True) == general


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(_NAMES), st.sampled_from(_DATA[:-3] + _DATA[-2:]), st.sampled_from([b"", b"7"])),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=5),
)
def test_typed_shortcut_matches_the_general_path(blocks: List[Tuple[bytes, bytes, bytes]], cuts: List[int]) -> None:
    _check(b"".join(_block(*block) for block in blocks), cuts)


def test_typed_shortcut_on_deep_nesting_and_captures() -> None:
    rng = random.Random(17)
    for data in _DATA:  # each hostile data line alone, the deeply nested one included
        _check(_block(b"chunk", data, b"") + _block(b"status", json.dumps(_STATUS).encode(), b"9"), [])
    for name in ("sse-sample.txt", "sse-sample-json.txt", "sse-sample-tool.txt", "sse-sample-error.txt"):
        data = shared_path("flux0-api", "captures", name).read_bytes()
        _check(data, [rng.randrange(len(data)) for _ in range(6)])
