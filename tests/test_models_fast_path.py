"""The contract of the readers' fast path (flux0lite.jsonmodel._fast_path): any JSON reads to
the same model (==, repr, to_dict, extra) or raises the same error as the general lines; and
read_owned (which may keep the JSON object it is given as the instance's __dict__) reads any
JSON as from_dict does.

The general lines read every object that is not exactly a ``dict``: the same JSON with each
object a dict subclass takes them all the way down, so comparing the two readings compares
the paths, hostile shapes included (missing, null, unknown and wrongly typed fields, huge
numbers, lone surrogates, unknown enum values).
"""

from __future__ import annotations

import copy
import json
from typing import Any, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flux0lite.errors import ModelError
from flux0lite.jsonmodel import spec_of
from flux0lite.models import Agent, ChunkEvent, Event, JsonPatch, Session, StatusEvent

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
CAPTURE = "/work/shared/flux0-api/captures/list-events-sample.json"


class Slow(dict):  # type: ignore[type-arg]
    """A dict that the fast path does not take."""


def slow(value: Any) -> Any:
    if isinstance(value, dict):
        return Slow((k, slow(v)) for k, v in value.items())
    if isinstance(value, list):
        return [slow(v) for v in value]
    return value


def plain(value: Any) -> Any:  # to_dict of a slow reading may hold Slow dicts: compare as JSON
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def reading(cls: Any, raw: Any, owned: bool = False) -> Tuple[str, Any]:
    try:
        model = spec_of(cls).read_owned(copy.deepcopy(raw)) if owned else cls.from_dict(raw)
    except ModelError as exc:
        return "error", str(exc).replace("got Slow", "got dict")  # the test's stand-in for dict
    return "model", (model, repr(model), plain(model.to_dict()), plain(getattr(model, "extra", None)))


def assert_same(cls: Any, raw: Any) -> None:
    fast = reading(cls, raw)
    for other in (reading(cls, slow(raw)), reading(cls, raw, owned=True), reading(cls, slow(raw), owned=True)):
        assert fast[0] == other[0], (fast, other)
        if fast[0] == "error":
            assert fast == other
        else:
            assert fast[1][0] == other[1][0] and fast[1][1:] == other[1][1:]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.sampled_from([float("inf"), 1e308, 10**400, "\ud800", "", "message", "status", "tool", "custom", "new"]),
    st.text(max_size=5),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip

with open(CAPTURE, encoding="utf-8") as capture:
    EVENTS = json.load(capture)["data"]

STREAM = [
    (ChunkEvent, {"correlation_id": "c", "event_id": "e", "seq": 0, "patches": [{"op": "add", "path": "/-", "value": "x"}],
                  "metadata": {"agent_id": "a"}, "timestamp": 1795526666.04}),
    (StatusEvent, {"id": "i", "source": "ai_agent", "type": "status", "correlation_id": "c",
                   "data": {"type": "status", "acknowledged_offset": 0, "status": "typing", "data": {}}, "metadata": None}),
    (Agent, {"id": "a", "name": "n", "type": "echo", "description": None, "created_at": "2026"}),
    (Session, {"id": "s", "agent_id": "a", "user_id": "u", "title": None, "consumption_offsets": {"client": 1},
               "created_at": "2026"}),
    (JsonPatch, {"op": "add", "path": "/-", "value": "x"}),
]  # fmt: skip
SAMPLES = [(Event, event) for event in EVENTS] + STREAM


def mutate(raw: Any, path: Tuple[Any, ...], value: Any, drop: bool) -> Any:
    """A copy of raw with the object or list at ``path`` (as far as it goes) changed at one key."""
    raw = json.loads(json.dumps(raw))
    node = raw
    for step in path:
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        child = node[keys[step % len(keys)]]
        if not isinstance(child, (dict, list)):
            break
        node = child
    if isinstance(node, dict) and node:
        key = list(node)[path[-1] % len(node)] if path else next(iter(node))
        if drop:
            del node[key]
        else:
            node[key] = value
    elif isinstance(node, dict):
        node["x"] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node) if path else 0] = value
    return raw


@SETTINGS
@given(
    st.sampled_from(range(len(SAMPLES))),
    st.lists(st.integers(min_value=0, max_value=20), max_size=4).map(tuple),
    json_values,
    st.booleans(),
    st.one_of(st.none(), st.text(max_size=4)),
)
def test_fast_path_reads_as_the_general_lines(
    sample: int, path: Tuple[int, ...], value: Any, drop: bool, key: Any
) -> None:
    cls, raw = SAMPLES[sample]
    changed = mutate(raw, path, value, drop)
    if key is not None and isinstance(changed, dict):
        changed[key] = value  # an unknown field (or a known one replaced)
    assert_same(cls, raw)
    assert_same(cls, changed)


@SETTINGS
@given(json_values)
def test_fast_path_on_arbitrary_json(raw: Any) -> None:
    for cls in (Event, ChunkEvent, StatusEvent, Agent, Session, JsonPatch):
        assert_same(cls, raw)


def test_the_captured_answer_takes_the_fast_path_and_matches() -> None:
    for cls, raw in SAMPLES:
        assert type(raw) is dict
        assert_same(cls, raw)


def test_a_read_instance_is_its_class_made_through_init() -> None:
    """Readers make instances as a plain twin class's and then assign ``__class__``: the
    object is the one ``cls(**fields)`` makes (type, fields, frozen, equality, hashing, weak
    references, pickling), for every reader of this module's models, read_owned's too (whose
    instance's __dict__ may be the JSON object it was given)."""
    import dataclasses
    import pickle
    import weakref

    raw = json.loads(open(CAPTURE, encoding="utf-8").read())["data"][3]
    read = Event.from_dict(raw)
    owned = spec_of(Event).read_owned(copy.deepcopy(raw))
    assert vars(owned) is not vars(read) and owned == read
    made = Event(**{f.name: getattr(read, f.name) for f in dataclasses.fields(Event)})
    for instance in (read, read.data, read.data.parts[0], read.data.participant, owned, owned.data.parts[0]):
        cls = type(instance)
        assert instance.__class__ is cls and isinstance(instance, cls)
        assert vars(instance) == {f.name: getattr(instance, f.name) for f in dataclasses.fields(cls)}
        assert weakref.ref(instance)() is instance
        assert pickle.loads(pickle.dumps(instance)) == instance == copy.deepcopy(instance)
        try:
            instance.extra = {}  # type: ignore[misc]
        except dataclasses.FrozenInstanceError:
            pass
        else:
            raise AssertionError("a read instance is frozen")
    assert read == made and repr(read) == repr(made) and read.to_dict() == made.to_dict() == raw
    participant = read.data.participant
    assert hash(participant) == hash(type(participant)(id=participant.id, name=participant.name))


def test_a_model_of_another_layout_is_read_without_a_twin() -> None:
    from dataclasses import field

    from flux0lite.jsonmodel import STR, JsonModel, _twin_of, json_field, model

    @model(frozen=True)
    class Slotted(JsonModel):
        __slots__ = ("spare",)  # one slot more than a plain class has
        name: str = field(metadata=json_field(STR, required=True))

    assert _twin_of(Slotted) is None and _twin_of(Event) is not None
    assert Slotted.from_dict({"name": "x"}) == Slotted(name="x")
