from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest

from flux0lite.errors import ModelError
from flux0lite.models import (
    Agent,
    ChunkEvent,
    ContentPart,
    Event,
    JsonPatch,
    MessageEventData,
    ReasoningPart,
    Session,
    StatusEvent,
    StatusEventData,
    ToolCallPart,
    ToolEventData,
    UnknownPart,
    parse_timestamp,
)
from tests.conftest import shared_path


def test_list_events_capture_parses_and_round_trips() -> None:
    doc = json.loads(shared_path("flux0-api", "captures", "list-events-sample.json").read_text())
    events = [Event.from_dict(e) for e in doc["data"]]
    assert [e.offset for e in events] == list(range(len(events)))
    assert events[0].text == "hello flux0" and events[0].source == "user"
    assert isinstance(events[1].data, StatusEventData) and events[1].data.status == "processing"
    for raw, event in zip(doc["data"], events):
        assert event.to_dict() == raw
        assert Event.from_dict(event.to_dict()) == event


def test_unknown_fields_and_enum_values_are_kept() -> None:
    raw = {
        "id": "e1",
        "type": "hologram",
        "source": "satellite",
        "offset": 3,
        "data": {"beam": 1},
        "deleted": False,
        "metadata": None,
        "created_at": "2026-01-01T00:00:00Z",
        "correlation_id": None,
        "new_field": {"x": [1, 2]},
    }
    event = Event.from_dict(raw)
    assert event.type == "hologram" and event.source == "satellite"
    assert event.data == {"beam": 1}
    assert event.extra == {"new_field": {"x": [1, 2]}}
    assert event.to_dict() == raw


def test_message_parts_of_every_kind() -> None:
    data = MessageEventData.from_dict(
        {
            "type": "message",
            "tags": None,
            "flagged": None,
            "participant": {"id": "p", "name": "n", "avatar": "a"},
            "parts": [
                {"type": "content", "content": "Hi "},
                {"type": "content", "content": {"structured": True}},
                {"type": "reasoning", "reasoning": "thinking"},
                {"type": "tool_call", "tool_call_id": "c1", "tool_name": "search", "args": {"q": 1}},
                {"type": "video", "url": "x"},
                {"type": "content", "content": "there"},
            ],
        }
    )
    assert data.text == "Hi there"
    kinds = [type(p) for p in data.parts]
    assert kinds == [ContentPart, ContentPart, ReasoningPart, ToolCallPart, UnknownPart, ContentPart]
    assert data.parts[4].to_dict() == {"type": "video", "url": "x"}
    assert data.participant is not None and data.participant.extra == {"avatar": "a"}
    assert MessageEventData.from_dict(data.to_dict()) == data


def test_tool_event_data() -> None:
    data = ToolEventData.from_dict(
        {
            "type": "tool_call_result",
            "tool_calls": [{"tool_call_id": "c", "tool_name": "t", "args": {}, "result": {"data": 1}, "error": None}],
        }
    )
    assert data.tool_calls[0].result == {"data": 1}
    event = Event.from_dict({"id": "e", "type": "tool", "source": "ai_agent", "offset": 0, "data": data.to_dict()})
    assert isinstance(event.data, ToolEventData) and event.text == ""


def test_agent_and_session() -> None:
    agent = Agent.from_dict({"id": "a", "name": "n", "type": "echo", "created_at": "2026-11-24T13:21:14.173636Z"})
    assert agent.description is None and agent.to_dict()["type"] == "echo"
    session = Session.from_dict(
        {"id": "s", "agent_id": "a", "user_id": "u", "consumption_offsets": {"client": 2}, "title": "t"}
    )
    assert session.consumption_offsets == {"client": 2}
    assert Session.from_dict(session.to_dict()) == session


@pytest.mark.parametrize(
    "cls,raw",
    [
        (Agent, []),
        (Agent, {"name": "no id", "type": "echo"}),
        (Agent, {"id": 5, "name": "n", "type": "t"}),
        (Session, {"id": "s", "agent_id": "a", "consumption_offsets": {"client": "x"}}),
        (Session, {"id": "s", "agent_id": "a", "consumption_offsets": []}),
        (Event, {"id": "e", "type": "message", "source": "user", "offset": True, "data": {}}),
        (Event, {"id": "e", "type": "message", "source": "user", "offset": 1, "data": {"parts": "nope"}}),
        (Event, {"id": "e", "type": "status", "source": "user", "offset": 1, "data": {"type": "status"}}),
        (Event, {"id": "e", "type": "status", "source": "user", "offset": 1, "data": None}),
        (ChunkEvent, {"event_id": "e", "patches": [{"path": "/-"}]}),
        (ChunkEvent, {"event_id": "e", "patches": [], "timestamp": "yesterday"}),
        (StatusEvent, {"id": "s", "data": "x"}),
    ],
)
def test_wrong_shapes_raise_model_error(cls: Any, raw: Any) -> None:
    with pytest.raises(ModelError):
        cls.from_dict(raw)


def test_custom_event_data_kept_as_dict() -> None:
    event = Event.from_dict({"id": "e", "type": "custom", "source": "system", "offset": 0, "data": [1, 2]})
    assert event.data == {"value": [1, 2]}
    assert Event.from_dict({"id": "e", "type": "custom", "source": "system", "offset": 0}).data == {}


def test_chunk_event_text_and_patch_round_trip() -> None:
    chunk = ChunkEvent.from_dict(
        {
            "event_id": "e",
            "seq": 2,
            "patches": [{"op": "add", "path": "/-", "value": "hi", "from": "x"}],
            "timestamp": 1,
        }
    )
    assert chunk.text == "hi" and chunk.timestamp == 1.0
    assert chunk.patches[0] == JsonPatch("add", "/-", "hi")
    assert chunk.patches[0].to_dict() == {"op": "add", "path": "/-", "value": "hi", "from": "x"}


def test_parse_timestamp_on_every_python() -> None:
    assert parse_timestamp("2026-11-24T13:24:26.038350Z") == dt.datetime(
        2026, 11, 24, 13, 24, 26, 38350, tzinfo=dt.timezone.utc
    )
    assert parse_timestamp("2026-11-24T13:21:13.1Z") == dt.datetime(
        2026, 11, 24, 13, 21, 13, 100000, tzinfo=dt.timezone.utc
    )
    assert parse_timestamp("2026-11-24T13:21:13") == dt.datetime(2026, 11, 24, 13, 21, 13, tzinfo=dt.timezone.utc)
    assert parse_timestamp(None) is None
    with pytest.raises(ModelError):
        parse_timestamp("last tuesday")


def test_the_none_rule_null_reads_as_default_and_writes_as_null_unless_omitted() -> None:
    # reading: null and missing are the same
    assert Event.from_dict({"id": "e", "type": "x", "source": "s", "offset": 0, "deleted": None}).deleted is False
    assert ChunkEvent.from_dict({"event_id": "e", "seq": None}).seq == 0
    # writing: None is null ...
    event = Event.from_dict({"id": "e", "type": "x", "source": "s", "offset": 0})
    assert event.to_dict()["correlation_id"] is None and event.to_dict()["metadata"] is None
    # ... except the fields declared omit_none (flux0's create responses leave them out)
    agent = Agent.from_dict({"id": "a", "name": "n", "type": "echo", "description": None})
    assert agent.to_dict() == {"id": "a", "name": "n", "type": "echo"}
    session = Session.from_dict({"id": "s", "agent_id": "a"})
    assert session.to_dict() == {"id": "s", "agent_id": "a", "consumption_offsets": {}}


def test_unknown_fields_written_first_and_declared_fields_win() -> None:
    agent = Agent.from_dict({"zz": 1, "id": "a", "name": "n", "type": "echo"})
    assert list(agent.to_dict()) == ["zz", "id", "name", "type"]
    part = MessageEventData.from_dict({"parts": [{"type": "content", "content": "x", "lang": "en"}]}).parts[0]
    assert isinstance(part, ContentPart) and part.extra == {"lang": "en"}
    assert part.to_dict() == {"content": "x", "type": "content", "lang": "en"}


def test_models_share_nothing_mutable_with_their_input() -> None:
    raw = {"id": "e", "type": "custom", "source": "s", "offset": 0, "data": {"k": 1}, "metadata": {"m": 1}}
    event = Event.from_dict(raw)
    raw["data"]["k"] = 2
    raw["metadata"]["m"] = 2
    assert event.data == {"k": 1} and event.metadata == {"m": 1}


def test_reader_is_made_on_first_use_and_runs_post_init() -> None:
    from dataclasses import dataclass, field

    from flux0lite.jsonmodel import INT, STR, JsonModel, json_field

    seen = []

    @dataclass(frozen=True)
    class Probe(JsonModel):
        name: str = field(metadata=json_field(STR, required=True))
        count: int = field(default=1, metadata=json_field(INT, key="n"))

        def __post_init__(self) -> None:
            seen.append(self.name)

    assert "_json_spec_" not in Probe.__dict__  # nothing is compiled at class creation
    probe = Probe.from_dict({"name": "p", "n": 3})
    assert "_json_spec_" in Probe.__dict__
    assert probe == Probe("p", 3) and seen == ["p", "p"]  # __post_init__ ran for from_dict too
    assert probe.to_dict() == {"name": "p", "n": 3}
    with pytest.raises(ModelError, match="Probe: field 'n' should be int, got bool"):
        Probe.from_dict({"name": "p", "n": True})
    with pytest.raises(ModelError, match="Probe: missing field 'name'"):
        Probe.from_dict({"n": 1})


def test_unknown_fields_are_kept_when_as_many_known_ones_are_missing() -> None:
    """The reader counts missing keys to see unknown ones cheaply: a missing known key and an
    unknown one in its place (same number of keys) must still keep the unknown one, and null
    values are present keys, not missing ones."""
    patch = JsonPatch.from_dict({"op": "add", "path": "/-", "surprise": 1})  # "value" missing
    assert patch.extra == {"surprise": 1} and patch.value is None
    assert JsonPatch.from_dict({"op": "add", "path": "/-", "value": None}).extra == {}
    assert JsonPatch.from_dict({"op": "add", "path": "/-"}).extra == {}
    event = ChunkEvent.from_dict({"event_id": "e", "metadata": None, "new": [1], "timestamp": None})
    assert event.extra == {"new": [1]}
    assert event.to_dict()["new"] == [1]


def test_a_timestamp_with_a_long_fraction_is_read_in_linear_time() -> None:
    # each digit copied the rest of the text: 600,000 digits took 8.8 s (hadv36 03)
    from flux0lite.models import parse_timestamp

    started = time.monotonic()
    parsed = parse_timestamp("2024-01-01T00:00:00." + "1" * 600_000 + "Z")
    assert parsed is not None and parsed.microsecond == 111111
    with pytest.raises(ModelError) as caught:
        parse_timestamp("2024-01-01T00:00:00." + "1" * 600_000 + "Zjunk")
    assert len(str(caught.value)) < 200  # the value is quoted cut short
    assert time.monotonic() - started < 2
