"""Property tests: arbitrary bytes, arbitrary chunkings and arbitrary JSON."""

from __future__ import annotations

import json
from typing import Any, List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flux0lite.errors import ModelError, PatchError, ResponseTooLargeError
from flux0lite.models import Agent, ChunkEvent, Event, JsonPatch, Session, StatusEvent
from flux0lite.patch import apply_patches
from flux0lite.sse import SSEDecoder, SSEEvent

# the examples of the profile that tests/conftest.py loads: 300 at full strength, fewer in the quick variant
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# bytes biased towards the characters that matter to the SSE grammar
sse_bytes = st.lists(
    st.one_of(
        st.sampled_from(
            [b"\n", b"\r", b"\r\n", b":", b" ", b"data", b"event", b"id", b"retry", b"\xef\xbb\xbf", b"\x00", b"1"]
        ),
        st.binary(max_size=8),
    ),
    max_size=60,
).map(b"".join)


def decode(chunks: List[bytes], limit: int = 1 << 20) -> Any:
    decoder = SSEDecoder(max_line_bytes=limit)
    events: List[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.close()
    return events, decoder.last_event_id, decoder.retry


@SETTINGS
@given(sse_bytes, st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_same_events_for_every_chunking(data: bytes, cuts: List[int]) -> None:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    assert decode(pieces) == decode([data])
    assert decode([data[i : i + 1] for i in range(len(data))]) == decode([data])


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    events, last_id, retry = decode([data])
    for event in events:
        assert isinstance(event.data, str) and isinstance(event.event, str) and "\x00" not in event.id
    assert retry is None or retry >= 0


@SETTINGS
@given(st.binary(min_size=1, max_size=300), st.integers(min_value=1, max_value=64))
def test_limits_raise_only_the_documented_error(data: bytes, limit: int) -> None:
    try:
        decode([data], limit=limit)
    except ResponseTooLargeError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)
keys = st.sampled_from(
    [
        "id",
        "name",
        "type",
        "source",
        "offset",
        "data",
        "agent_id",
        "event_id",
        "patches",
        "parts",
        "status",
        "seq",
        "metadata",
        "consumption_offsets",
        "deleted",
        "created_at",
    ]
)
model_like = st.dictionaries(keys, json_values, max_size=10) | json_values


@SETTINGS
@given(model_like)
def test_model_parsers_raise_only_model_error(raw: Any) -> None:
    for parse in (Agent.from_dict, Session.from_dict, Event.from_dict, ChunkEvent.from_dict, StatusEvent.from_dict):
        try:
            model = parse(raw)
        except ModelError:
            continue
        json.dumps(model.to_dict())  # whatever parsed can be written back as JSON
        assert type(model).from_dict(model.to_dict()) == model


@SETTINGS
@given(
    st.lists(
        st.builds(
            JsonPatch,
            st.sampled_from(["add", "replace", "remove", "copy"]),
            st.sampled_from(["/-", "/0", "/a", "/a/-", "/a/0", "/a/b", "", "x", "/01", "/tool_calls/0/args/-"]),
            json_values,
        ),
        max_size=8,
    )
)
def test_patches_raise_only_patch_error(patches: List[JsonPatch]) -> None:
    try:
        apply_patches(None, patches)
    except PatchError:
        pass


field_values = st.sampled_from(
    [b"", b" ", b"  x", b"a:b", b"st\x00tus", b"chunk", b"status", b"\xff\xfe", b"caf\xc3\xa9", b"1"]
)
block = st.tuples(
    st.one_of(st.none(), field_values),
    st.one_of(st.none(), field_values),
    st.lists(field_values, min_size=0, max_size=2),
    st.sampled_from([b"", b": comment\n", b"retry: 5\n", b"junk\n", b"\n"]),
).map(
    lambda t: (
        (b"event:" + t[0] + b"\n" if t[0] is not None else b"")
        + (b"id:" + t[1] + b"\n" if t[1] is not None else b"")
        + b"".join(b"data:" + v + b"\n" for v in t[2])
        + t[3]
        + b"\n"
    )
)


@SETTINGS
@given(st.lists(block, max_size=12).map(b"".join), st.lists(st.integers(min_value=0, max_value=2000), max_size=6))
def test_flux0_shaped_streams_decode_alike_whole_chunked_and_bytewise(data: bytes, cuts: List[int]) -> None:
    # bytewise feeding can never see a whole block, so it checks the whole-block fast path
    reference = decode([data[i : i + 1] for i in range(len(data))])
    assert decode([data]) == reference
    points = sorted({c % (len(data) + 1) for c in cuts})
    assert decode([data[a:b] for a, b in zip([0, *points], [*points, len(data)])]) == reference
