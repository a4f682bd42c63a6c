"""Regressions for the typed-streaming defects adversary hadv5 found (repros 01, 05, 06).

- 01: the reply cap counts everything the assembler keeps (status texts, message ids, path
  keys and the containers a path creates), and the memory held stays within the documented
  slack of ``max_bytes``.
- 05: a chunk event applies all or nothing: one rejected with PatchError leaves the reply as if
  it never arrived.
- 06: ``Reply.error`` is a copy per reply: no caller's edit reaches another reply or the event.
"""

from __future__ import annotations

import tracemalloc
from typing import Any, Callable, List, Tuple

import pytest

from flux0lite.errors import PatchError, ResponseTooLargeError
from flux0lite.models import ChunkEvent, JsonPatch, StatusEvent
from flux0lite.streaming import ReplyAssembler

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")


def _chunk(event_id: str, *patches: Tuple[str, str, Any]) -> ChunkEvent:
    return ChunkEvent(
        event_id=event_id, seq=0, patches=tuple(JsonPatch(op, path, value) for op, path, value in patches)
    )


def _status(status: str, detail: Any = None) -> StatusEvent:
    return StatusEvent.from_dict({"id": "s", "data": {"status": status, "data": detail}})


# -- 01: what the assembler keeps is counted -----------------------------------------------------

CAP = 200_000
SLACK = 4  # the documented bound: memory held under about 4 x max_bytes

_HOSTILE: List[Tuple[str, Callable[[int], Any]]] = [
    ("status text", lambda i: _status(f"{i}" + "s" * 10_000)),
    ("status text, astral", lambda i: _status(f"{i}" + "\U0001f600" * 2_500)),
    ("message id per chunk", lambda i: _chunk(f"{i}" + "e" * 10_000)),
    ("empty message ids", lambda i: _chunk(f"{i}")),
    ("path key", lambda i: _chunk("e", ("add", f"/{i}" + "k" * 10_000, 0))),
    ("path containers", lambda i: _chunk("e", *[("add", "/-" * 64, 0)] * 50)),
    ("object chain", lambda i: _chunk("e", ("add", f"/{i}" + "/ab" * 63, 0))),
    ("big ints", lambda i: _chunk("e", ("add", "/-", [10**4000] * 20))),
    ("error details", lambda i: _status("error", {"trace": ["x" * 100] * 50})),
]


@pytest.mark.parametrize("name, make", _HOSTILE, ids=[name for name, _ in _HOSTILE])
def test_endless_hostile_stream_hits_the_cap_within_the_documented_slack(name: str, make: Callable[[int], Any]) -> None:
    assembler = ReplyAssembler(max_bytes=CAP)
    events = [make(i) for i in range(5_000)]  # made before measuring: only what is kept counts
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLargeError):
            for event in events:
                assembler.add(event)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert assembler.kept_bytes > CAP
    assert held < SLACK * CAP, f"{name}: {held} bytes held for a {CAP}-byte cap"


def test_a_status_over_the_cap_changes_nothing() -> None:
    assembler = ReplyAssembler(max_bytes=1_000)
    assembler.add(_status("processing"))
    with pytest.raises(ResponseTooLargeError):
        assembler.add(_status("x" * 2_000))
    assert assembler.reply().statuses == ("processing",)


# -- 05: a chunk event applies all or nothing ---------------------------------------------------

_TOKENS = st.sampled_from(["-", "0", "1", "05", "a", "b", "tool_calls", "args", "~1"])
_PATHS = st.one_of(
    st.just("/-"),
    st.just(""),
    st.lists(_TOKENS, min_size=1, max_size=4).map(lambda tokens: "/" + "/".join(tokens)),
)
_VALUES = st.recursive(
    st.none() | st.integers() | st.text(max_size=3), lambda inner: st.lists(inner, max_size=3), max_leaves=5
)
_OPS = st.tuples(st.sampled_from(["add", "add", "add", "replace", "remove"]), _PATHS, _VALUES)
_TEXT_OPS = st.tuples(st.just("add"), st.just("/-"), st.text(max_size=3))
_EVENTS = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.lists(_TEXT_OPS | _OPS, max_size=5)), min_size=1, max_size=12
)
_FAILING = st.sampled_from(
    [("replace", "/99", "x"), ("add", "/meta/x/y/05", 1), ("remove", "/nothing/here", None), ("move", "/-", "x")]
)


def _replay(events: List[Tuple[str, List[Tuple[str, str, Any]]]]) -> Tuple[Any, ...]:
    """The reply of the events that apply, and which did not (their index)."""
    assembler = ReplyAssembler()
    rejected = []
    for number, (event_id, patches) in enumerate(events):
        try:
            assembler.add(_chunk(event_id, *patches))
        except PatchError:
            rejected.append(number)
    reply = assembler.reply()
    return reply.text, repr(reply.messages), assembler.kept_bytes, rejected


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(_EVENTS, st.data())
def test_a_rejected_event_leaves_the_reply_as_if_it_never_came(
    events: List[Tuple[str, List[Tuple[str, str, Any]]]], data: Any
) -> None:
    """Random patch sequences; a failing patch is inserted into one event (anywhere in it): the
    reply, and what the assembler counts, equal those of the stream without that event."""
    at = data.draw(st.integers(0, len(events) - 1))
    event_id, patches = events[at]
    where = data.draw(st.integers(0, len(patches)))
    spoiled = (event_id, patches[:where] + [data.draw(_FAILING)] + patches[where:])
    with_spoiled = _replay(events[:at] + [spoiled] + events[at:])
    hypothesis.assume(at in with_spoiled[3])  # "/99" of an object is a member, not an error
    without = _replay(events)
    assert with_spoiled[:3] == without[:3]
    # the spoiled event is rejected; every other event fares as it does without it
    assert with_spoiled[3] == sorted([at] + [n + (n >= at) for n in without[3]])


def test_repro_cases_of_a_half_applied_event() -> None:
    text = ReplyAssembler()
    text.add(_chunk("e", ("add", "/-", "Hello")))
    with pytest.raises(PatchError):
        text.add(_chunk("e", ("add", "/-", " world"), ("replace", "/7", "x")))
    assert text.reply().text == "Hello"
    tool = ReplyAssembler()
    tool.add(_chunk("e", ("add", "/tool_calls/0/args/-", "a")))
    with pytest.raises(PatchError):
        tool.add(_chunk("e", ("add", "/meta/x/y/05", 1)))
    assert tool.reply().messages == {"e": {"tool_calls": [{"args": ["a"]}]}}
    new = ReplyAssembler()
    with pytest.raises(PatchError):
        new.add(_chunk("n", ("add", "/a", 1), ("remove", "/b", None)))
    assert new.reply().messages == {} and new.kept_bytes == 0


def test_a_long_list_turned_into_a_piece_list_is_undone_too() -> None:
    assembler = ReplyAssembler()
    assembler.add(_chunk("e", *[("add", "/-", str(n)) for n in range(600)]))
    with pytest.raises(PatchError):
        assembler.add(_chunk("e", ("add", "/-", "x"), ("add", "/0", "y"), ("remove", "/0", None), ("add", "/9999", 1)))
    assert assembler.reply().text == "".join(str(n) for n in range(600))
    assembler.add(_chunk("e", ("add", "/-", "z")))
    assert assembler.reply().text.endswith("599z")


# -- 06: Reply.error is a copy -------------------------------------------------------------------


def test_reply_error_is_a_copy_per_reply() -> None:
    sent = {"exception": "boom", "trace": ["frame 1"]}
    assembler = ReplyAssembler()
    event = _status("error", {"exception": "boom", "trace": ["frame 1"]})
    assembler.add(event)
    event.data.data["trace"].append("the caller's edit of its event")
    first = assembler.reply()
    assert first.error == sent
    first.error["trace"].clear()
    assert assembler.reply().error == sent
    assert event.data.data["trace"] == ["frame 1", "the caller's edit of its event"]
    bare = ReplyAssembler()
    bare.add(_status("error"))
    assert bare.reply().error == "error"
