"""The contract of flux0lite.streamshapes: a stream event text that a shape reader takes reads to
the model the general path reads (json.loads' value through the model's reader): the same
class, ==, repr, to_dict, extra, field types (int, float, bool, str) and instance layout, or the
general path's error (type and message). Texts are built from flux0's two shapes with hostile
field values (escapes, unicode, lone surrogates raw and escaped, control characters, huge
ints, 1e400, -0.0, NaN, leading zeros, null, nested values, unknown enum values), other spacing,
duplicate, extra, missing and reordered keys.
"""

from __future__ import annotations

import json
from typing import Any, Callable, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flux0lite import streaming
from flux0lite.errors import Flux0Error
from flux0lite.jsonmodel import spec_of
from flux0lite.models import ChunkEvent, StatusEvent
from flux0lite.sse import SSEDecoder, SSEEvent
from flux0lite.streaming import parse_stream_event
from flux0lite.streamshapes import chunk_reader, status_reader
from tests.conftest import SHARED

SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = {"chunk": ChunkEvent, "status": StatusEvent}
READERS = {"chunk": chunk_reader(), "status": status_reader()}


def general(name: str, text: str) -> Any:
    """The general path: json.loads (its errors as parse_stream_event raises them), then the
    model's reader."""
    return spec_of(MODELS[name]).read(streaming._load_json_slowly(SSEEvent(data=text, event=name)))


def described(value: Any) -> Any:
    """A value's repr with the type of every part (repr alone shows 1 and 1.0, True and 1 apart,
    and NaN as nan, but not a dict subclass or a tuple's item types). A model's attributes by
    name: read_owned's instances keep the JSON's order in their __dict__."""
    if isinstance(value, dict):
        return (type(value).__name__, [(described(k), described(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [described(v) for v in value])
    if hasattr(value, "__dict__"):
        return (type(value).__name__, [(k, described(v)) for k, v in sorted(vars(value).items())])
    return (type(value).__name__, repr(value))


def outcome(action: Callable[[], Any]) -> Tuple[str, Any]:
    try:
        model = action()
    except Flux0Error as exc:
        return type(exc).__name__, str(exc)
    return "ok", (described(model), repr(model), repr(model.to_dict()))


def assert_same(name: str, text: str) -> None:
    expected = outcome(lambda: general(name, text))
    try:
        taken = READERS[name](text)
    except Flux0Error as exc:  # a value the general path rejects the same way (a patch's)
        assert (type(exc).__name__, str(exc)) == expected, text
        taken = None
    if taken is not None:
        assert outcome(lambda: taken) == expected, text
        model = general(name, text)
        if "nan" not in repr(model):  # NaN is no NaN's equal
            assert taken == model
    assert outcome(lambda: parse_stream_event(SSEEvent(data=text, event=name))) == expected, text


# -- field texts: flux0's, and hostile ones ---------------------------------------------------


def mostly(usual: Any, other: Any) -> Any:
    """``usual`` about six times in seven: a text of the shape needs every field usual. (An
    index, not one_of: hypothesis draws one_of's first choices, and small numbers, far more
    often than the others.)"""
    return st.integers(min_value=0, max_value=6).flatmap(lambda i: other if i == 3 else usual)


_CHARS = st.characters(min_codepoint=0, max_codepoint=0x10FFFF)  # surrogates and controls too
_TEXTS = st.text(_CHARS, max_size=6)
usual_strings = st.one_of(
    st.text(st.characters(blacklist_characters='"\\', min_codepoint=0x20), max_size=8).map(lambda s: f'"{s}"'),
    st.sampled_from(['"add"', '"/-"', '"move"', '"processing"', '"errorish"', '""', '"\ud800x"', '"\x7f\u2028"']),
)
strings = mostly(
    usual_strings,
    st.one_of(
        _TEXTS.map(lambda s: json.dumps(s, ensure_ascii=False)),  # escapes for quotes, backslashes, controls
        _TEXTS.map(json.dumps),  # \\uXXXX escapes, lone surrogates among them
        _TEXTS.map(lambda s: '"' + s.replace('"', "") + '"'),  # raw controls, a backslash: not JSON, or escapes
        st.sampled_from(['"\\ud800"', '"\\udfff\\ud83d"', '"\\x"', '"\\u12"', '"a\x01"', '"\\/"', '"\\u00e9"']),
        st.sampled_from(["null", "1", "true", '["x"]', '{"a": "b"}', "'x'"]),
    ),
)
_HUGE = "9" * 4400  # past int()'s default digit limit (3.11+)
integers = mostly(
    st.integers(min_value=-(10**18), max_value=10**18).map(str),
    st.one_of(
        st.integers(min_value=-(10**25), max_value=10**25).map(str),
        st.sampled_from(["0", "-0", "01", "-01", "1e400", "1E5", "-0.0", "NaN", "Infinity", "1.0", _HUGE, "-" + _HUGE]),
        st.sampled_from(["123456789012345678", "1234567890123456789", "null", '"3"', "true", "[1]", "1.", ".5", "+1"]),
    ),
)
numbers = mostly(
    st.floats(min_value=-1e18, max_value=1e18).map(repr),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(json.dumps),
        st.integers(min_value=-(10**25), max_value=10**25).map(str),
        st.sampled_from(["1795526666.0400836", "-0.0", "0.0", "1e400", "1.5e3", "NaN", "-Infinity", "9" * 400 + ".5"]),
        st.sampled_from(["123456789012345678.5", "1234567890123456789.5", "01.5", "1.", _HUGE + ".0", "null", '"1.5"']),
        st.sampled_from(["0." + "1" * 5000, "-0.000", "1.0000000000000002", "0.1e1"]),
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXTS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXTS, inner, max_size=3),
    max_leaves=6,
).map(json.dumps)
any_values = st.one_of(strings, integers, numbers, json_values, st.sampled_from(["[", "[[]", "{}", "[]", "[" * 3000]))


@st.composite
def objects(draw: Any, fields: List[Tuple[str, Any]]) -> str:
    """An object with these keys in this order, mostly; else keys dropped, added, repeated or
    moved, and other spacing."""
    items = [(f'"{key}"', draw(values)) for key, values in fields]
    for _ in range(draw(st.sampled_from([0] * 8 + [1, 2]))):
        change = draw(st.sampled_from(["drop", "extra", "repeat", "swap"]))
        at = draw(st.integers(min_value=0, max_value=len(items)))
        if change == "drop" and items:
            del items[at % len(items)]
        elif change == "extra":
            items.insert(at, (draw(st.sampled_from(['"x"', '"extra"', '""', '"seq"', '"id"'])), draw(any_values)))
        elif change == "repeat" and items:  # a duplicate key: JSON keeps the last
            items.insert(at, (items[at % len(items)][0], draw(any_values)))
        elif change == "swap" and len(items) > 1:
            items[0], items[-1] = items[-1], items[0]
    comma, colon = draw(st.sampled_from([(", ", ": ")] * 8 + [(",", ":"), (" ,\n", " :\t")]))
    lead, trail = draw(st.sampled_from([("", "")] * 8 + [(" ", ""), ("", "\n"), ("\ufeff", "")]))
    return lead + "{" + comma.join(f"{key}{colon}{value}" for key, value in items) + "}" + trail


def _patch() -> Any:
    # escaped text too, as tool arguments are
    values = st.integers(min_value=0, max_value=5).flatmap(
        lambda i: (strings, _TEXTS.map(json.dumps), any_values)[i % 3]
    )
    return objects([("op", strings), ("path", strings), ("value", values)])


patch_lists = mostly(
    _patch().map(lambda p: f"[{p}]"),
    st.one_of(st.lists(_patch(), max_size=3).map(lambda ps: "[" + ", ".join(ps) + "]"), any_values),
)
metadata = mostly(objects([("agent_id", strings), ("agent_name", strings)]), any_values)
chunks = objects(
    [
        ("correlation_id", strings),
        ("event_id", strings),
        ("seq", integers),
        ("patches", patch_lists),
        ("metadata", metadata),
        ("timestamp", numbers),
    ]
)
status_data = mostly(
    objects(
        [
            ("type", strings),
            ("acknowledged_offset", integers),
            ("status", strings),
            ("data", st.one_of(st.just("{}"), st.just("{}"), json_values, any_values)),
        ]
    ),
    any_values,
)
statuses = objects(
    [
        ("id", strings),
        ("source", strings),
        ("type", strings),
        ("correlation_id", strings),
        ("data", status_data),
        ("metadata", mostly(st.just("null"), any_values)),
    ]
)


@SETTINGS
@given(chunks)
def test_a_chunk_text_reads_as_the_general_path_reads_it(text: str) -> None:
    assert_same("chunk", text)


@SETTINGS
@given(statuses)
def test_a_status_text_reads_as_the_general_path_reads_it(text: str) -> None:
    assert_same("status", text)


@settings(max_examples=200, deadline=None)
@given(st.one_of(chunks, statuses), st.sampled_from(["chunk", "status"]))
def test_a_text_of_the_other_shape_reads_as_the_general_path_reads_it(text: str, name: str) -> None:
    assert_same(name, text)


def _captured() -> List[SSEEvent]:
    captures = sorted((SHARED / "flux0-api" / "captures").glob("sse-sample*.txt"))
    data = b"".join(p.read_bytes().rstrip(b"\n") + b"\n\n" for p in captures if "headers" not in p.name)
    return SSEDecoder().feed(data)


def test_flux0s_captured_events_are_taken_by_the_shape_readers() -> None:
    """The contract above is not empty: every chunk and status event of the captured flux0
    streams (text, JSON, tool calls, an error) is read by its shape reader, to the general
    path's model."""
    events = _captured()
    if not events:
        pytest.skip("no captures")
    for sse in events:
        taken = READERS[sse.event](sse.data)
        assert taken is not None, sse.data
        assert outcome(lambda: taken) == outcome(lambda: general(sse.event, sse.data))


@pytest.mark.parametrize(
    "text",
    [
        # well shaped but for one value: each reads as the general path reads it
        '{"correlation_id": "c", "event_id": "e", "seq": 01, "patches": [], "metadata": {"agent_id": "a", "agent_name": "n"}, "timestamp": 1.5}',
        '{"correlation_id": "c", "event_id": "e", "seq": '
        + _HUGE
        + ', "patches": [], "metadata": {"agent_id": "a", "agent_name": "n"}, "timestamp": 1.5}',
        '{"correlation_id": "c", "event_id": "e", "seq": 1, "patches": [], "metadata": {"agent_id": "a", "agent_name": "n"}, "timestamp": 1e400}',
        '{"correlation_id": "c", "event_id": "e", "seq": 1, "patches": [], "metadata": {"agent_id": "a", "agent_name": "n"}, "timestamp": '
        + "9" * 400
        + ".5}",
        '{"correlation_id": "c", "event_id": "e", "seq": 1, "patches": [{"op": "add", "path": "/-", "value": "\\ud800\\x"}], "metadata": {"agent_id": "a", "agent_name": "n"}, "timestamp": 1.5}',
        '{"correlation_id": "c", "event_id": "e", "seq": 1, "patches": [{"op": "add", "path": "/-", "value": "\\ud800"}], "metadata": {"agent_id": "a", "agent_name": "n"}, "timestamp": -0.0}',
        '{"correlation_id": "c", "event_id": "e", "seq": 1, "patches": [{"op": 1, "path": "/-"}], "metadata": {"agent_id": "a", "agent_name": "n"}, "timestamp": 1.5}',
        '{"correlation_id": "c", "event_id": "e", "seq": 1, "patches": [{"op": "add", "path": "/-", "value": "x"}], "metadata": {"agent_id": "a", "agent_name": "n"}, "timestamp": 1.5, "seq": 2}',
        '{"correlation_id": "c", "event_id": "e", "seq": 1, "patches": [' * 2000 + "]",
        '{"id": "i", "source": "s", "type": "t", "correlation_id": "c", "data": {"type": "status", "acknowledged_offset": 1, "status": "new", "data": NaN}, "metadata": null}',
        '{"id": "i", "source": "s", "type": "t", "correlation_id": "c", "data": {"type": "status", "acknowledged_offset": 1, "status": "x", "data": {"a": 1, "a": [1e400]}}, "metadata": null}',
        '{"id": "i", "source": "s", "type": "t", "correlation_id": "c", "data": {"type": "status", "acknowledged_offset": 1, "status": "x", "data": }, "metadata": null}',
        '{"id": "i", "source": "s", "type": "t", "correlation_id": "c", "data": {"type": "status", "acknowledged_offset": 1, "status": "x", "data": ['
        + "[" * 100_000
        + ']}, "metadata": null}',
        '{"id": "i", "source": "s", "type": "t", "correlation_id": "c", "data": {"type": "status", "acknowledged_offset": 1, "status": "x", "data": {} }, "metadata": null}',
        '{"id": "i", "source": "s", "type": "t", "correlation_id": "c", "data": {"type": "status", "acknowledged_offset": 1, "status": "x", "data": {}, "metadata": null}',
    ],
)
def test_hostile_values_in_flux0s_shapes(text: str) -> None:
    name = "chunk" if text.startswith('{"correlation_id"') else "status"
    assert_same(name, text)
