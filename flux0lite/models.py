"""The flux0 API's resources as frozen dataclasses; each field declares its JSON once.

Each is declared with ``@model(frozen=True)``: ``@dataclass(frozen=True)`` whose methods are
compiled on first need, so importing this module compiles no code (see :mod:`flux0lite.jsonmodel`).

``from_dict`` and ``to_dict`` come from :mod:`flux0lite.jsonmodel`, which reads the field
declarations (``field(metadata=json_field(...))``, :func:`flux0lite.jsonmodel.field`: ``dataclasses.field``
once the dataclass is made) on each class's first use.

Parsing is tolerant where a newer server may differ and strict where the API promises:
- unknown fields are kept in ``extra`` and written back by ``to_dict``;
- enum-like fields (event ``type``, ``source``, status) are plain strings, so a value this
  version has never heard of is kept as it is, never a crash; the ``KNOWN_*`` sets list the
  values this version knows;
- a missing required field or a field of the wrong JSON type raises :class:`ModelError`
  naming the model and the field.

The None rule. Reading, a JSON ``null`` and a missing key are the same: the field takes its
default (``None`` unless declared otherwise), and a required field raises. Writing, a field
that is None is written as ``null``, except the fields declared ``omit_none``: Agent's and
Session's optional fields, which flux0 leaves out of its create responses. So ``to_dict`` gives
back the JSON the server sends.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Dict, List, Optional, Tuple, Type, Union

from .errors import ModelError
from .jsonmodel import (
    ANY,
    BOOL,
    INT,
    LIST,
    OBJECT,
    STR,
    JsonDict,
    JsonModel,
    Kind,
    LazyDataclass,
    TaggedReader,
    field,
    json_field,
    model,
    nested,
    nested_list,
    spec_of,
    typed_by,
)

__all__ = ["KNOWN_EVENT_TYPES", "KNOWN_EVENT_SOURCES", "KNOWN_STATUSES", "Agent", "Session", "Participant"]
__all__ += ["ContentPart", "ReasoningPart", "ToolCallPart", "UnknownPart", "MessagePart", "MessageEventData"]
__all__ += ["StatusEventData", "ToolCall", "ToolEventData", "EventData", "Event", "JsonPatch", "StatusEvent"]
__all__ += ["ChunkEvent", "RawStreamEvent", "StreamEvent", "parse_timestamp"]

KNOWN_EVENT_TYPES = frozenset({"message", "tool", "status", "custom"})
KNOWN_EVENT_SOURCES = frozenset({"user", "ai_agent", "system"})
KNOWN_STATUSES = frozenset({"acknowledged", "cancelled", "processing", "ready", "typing", "error", "completed"})


def parse_timestamp(value: Optional[str]) -> Optional[_dt.datetime]:
    """flux0's ISO-8601 timestamps (``...Z``) as aware datetimes; works on Python 3.9."""
    if value is None:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python < 3.11 accepts only 3 or 6 fractional digits.
    if "." in text:
        head, _, rest = text.partition(".")
        end = 0
        while end < len(rest) and rest[end].isdigit():  # an index, not a copy per digit: linear
            end += 1
        digits, rest = rest[:end], rest[end:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}" if digits else head + rest
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ModelError(f"not an ISO-8601 timestamp: {value[:80]!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)


def _seconds(value: Union[int, float]) -> float:
    """A JSON number of seconds as a finite float: a 400-digit integer or ``1e400`` is no time."""
    try:
        seconds = float(value)
    except OverflowError as exc:
        raise ModelError("timestamp: an integer too large to be a time") from exc
    if not math.isfinite(seconds):
        raise ModelError(f"timestamp {value!r} is not a finite number")
    return seconds


SECONDS = Kind("int/float", float, (int, float), _seconds)


# -- the models ----------------------------------------------------------------------------------


def _int_map(raw: Dict[Any, Any]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for key, value in raw.items():
        if type(value) is not int:
            raise ModelError(f"Session: consumption_offsets[{key!r}] should be int")
        out[str(key)] = value
    return out


@model(frozen=True)
class Agent(JsonModel):
    id: str = field(metadata=json_field(STR, required=True))
    name: str = field(metadata=json_field(STR, required=True))
    type: str = field(metadata=json_field(STR, required=True))
    description: Optional[str] = field(default=None, metadata=json_field(STR, omit_none=True))
    created_at: Optional[str] = field(default=None, metadata=json_field(STR, omit_none=True))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@model(frozen=True)
class Session(JsonModel):
    id: str = field(metadata=json_field(STR, required=True))
    agent_id: str = field(metadata=json_field(STR, required=True))
    user_id: Optional[str] = field(default=None, metadata=json_field(STR, omit_none=True))
    title: Optional[str] = field(default=None, metadata=json_field(STR, omit_none=True))
    consumption_offsets: Dict[str, int] = field(
        default_factory=dict, metadata=json_field(Kind("dict", dict, (dict,), _int_map, dict))
    )
    created_at: Optional[str] = field(default=None, metadata=json_field(STR, omit_none=True))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@model(frozen=True)
class Participant(JsonModel):
    id: Optional[str] = field(metadata=json_field(STR))
    name: Optional[str] = field(metadata=json_field(STR))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@model(frozen=True)
class ContentPart(JsonModel):
    """Message text, or any JSON value a structured agent produced."""

    content: Any = field(metadata=json_field(ANY))
    type: str = field(default="content", metadata=json_field(STR))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@model(frozen=True)
class ReasoningPart(JsonModel):
    reasoning: Any = field(metadata=json_field(ANY))
    type: str = field(default="reasoning", metadata=json_field(STR))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@model(frozen=True)
class ToolCallPart(JsonModel):
    tool_call_id: str = field(metadata=json_field(STR, absent=""))
    tool_name: str = field(metadata=json_field(STR, absent=""))
    args: Any = field(metadata=json_field(ANY))
    type: str = field(default="tool_call", metadata=json_field(STR))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@model(frozen=True)
class UnknownPart(LazyDataclass):
    """A part type this version does not know, kept whole."""

    type: str
    raw: Dict[str, Any]

    def to_dict(self) -> JsonDict:
        return dict(self.raw)


MessagePart = Union[ContentPart, ReasoningPart, ToolCallPart, UnknownPart]
_PART_TYPES: Dict[str, Type[Union[ContentPart, ReasoningPart, ToolCallPart]]] = {
    "content": ContentPart,
    "reasoning": ReasoningPart,
    "tool_call": ToolCallPart,
}


def _part_to_json(part: MessagePart) -> JsonDict:
    return part.to_dict() if type(part) is UnknownPart else spec_of(type(part)).write(part)


def _unknown_part(kind: Any, raw: Any) -> MessagePart:
    """A part whose ``type`` names no model, kept whole; or the error of one that is no part."""
    if not isinstance(raw, dict):
        raise ModelError(f"MessagePart: expected a JSON object, got {type(raw).__name__}")
    if kind is not None and type(kind) is not str:
        raise ModelError(f"MessagePart: field 'type' should be str, got {type(kind).__name__}")
    return UnknownPart(type=kind or "", raw=dict(raw))


_PARTS = TaggedReader(_PART_TYPES, _unknown_part, tag_key="type")


@model(frozen=True)
class MessageEventData(JsonModel):
    parts: Tuple[MessagePart, ...] = field(metadata=json_field(nested_list(_PARTS, _part_to_json), absent=()))
    participant: Optional[Participant] = field(default=None, metadata=json_field(nested(Participant)))
    tags: Optional[List[str]] = field(default=None, metadata=json_field(LIST))
    flagged: Optional[bool] = field(default=None, metadata=json_field(BOOL))
    type: str = field(default="message", metadata=json_field(STR))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def text(self) -> str:
        """The concatenated string contents of the message (structured content is skipped)."""
        return "".join(p.content for p in self.parts if isinstance(p, ContentPart) and isinstance(p.content, str))


@model(frozen=True)
class StatusEventData(JsonModel):
    status: str = field(metadata=json_field(STR, required=True))
    acknowledged_offset: Optional[int] = field(default=None, metadata=json_field(INT))
    data: Any = field(default=None, metadata=json_field(ANY))
    type: str = field(default="status", metadata=json_field(STR))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@model(frozen=True)
class ToolCall(JsonModel):
    tool_call_id: str = field(metadata=json_field(STR, absent=""))
    tool_name: str = field(metadata=json_field(STR, absent=""))
    args: Any = field(default=None, metadata=json_field(ANY))
    result: Any = field(default=None, metadata=json_field(ANY))
    error: Any = field(default=None, metadata=json_field(ANY))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@model(frozen=True)
class ToolEventData(JsonModel):
    tool_calls: Tuple[ToolCall, ...] = field(metadata=json_field(nested_list(ToolCall), absent=()))
    type: str = field(default="tool_call_result", metadata=json_field(STR))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


EventData = Union[MessageEventData, StatusEventData, ToolEventData, Dict[str, Any]]
_EVENT_DATA_TYPES: Dict[str, Type[Union[MessageEventData, StatusEventData, ToolEventData]]] = {
    "message": MessageEventData,
    "status": StatusEventData,
    "tool": ToolEventData,
}


def _untyped_event_data(event_type: Any, raw: Any) -> EventData:
    """The data of an event type no model reads (``custom``, new types): a dict."""
    if raw is None:
        return {}
    return dict(raw) if isinstance(raw, dict) else {"value": raw}


def _data_to_json(data: EventData) -> Any:
    return dict(data) if isinstance(data, dict) else spec_of(type(data)).write(data)


_DATA_BY_TYPE = typed_by("type", TaggedReader(_EVENT_DATA_TYPES, _untyped_event_data), _data_to_json)


@model(frozen=True)
class Event(JsonModel):
    """A stored session event, as ``list_events`` returns it."""

    id: str = field(metadata=json_field(STR, required=True))
    type: str = field(metadata=json_field(STR, required=True))
    source: str = field(metadata=json_field(STR, required=True))
    offset: int = field(metadata=json_field(INT, required=True))
    data: EventData = field(metadata=json_field(_DATA_BY_TYPE))
    correlation_id: Optional[str] = field(default=None, metadata=json_field(STR))
    deleted: bool = field(default=False, metadata=json_field(BOOL))
    metadata: Optional[Dict[str, Any]] = field(default=None, metadata=json_field(OBJECT))
    created_at: Optional[str] = field(default=None, metadata=json_field(STR))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def text(self) -> str:
        """Message text for message events, ``""`` otherwise."""
        return self.data.text if isinstance(self.data, MessageEventData) else ""


@model(frozen=True)
class JsonPatch(JsonModel):
    """One RFC 6902 operation of a chunk (flux0 sends ``add`` and ``replace``)."""

    op: str = field(metadata=json_field(STR, required=True))
    path: str = field(metadata=json_field(STR, required=True))
    value: Any = field(default=None, metadata=json_field(ANY))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@model(frozen=True)
class StatusEvent(JsonModel):
    """A ``status`` event of a live stream (its id is the streamed id, not the stored one)."""

    id: str = field(metadata=json_field(STR, required=True))
    correlation_id: Optional[str] = field(metadata=json_field(STR))
    data: StatusEventData = field(metadata=json_field(nested(StatusEventData), required=True))
    source: str = field(default="ai_agent", metadata=json_field(STR))
    type: str = field(default="status", metadata=json_field(STR))
    metadata: Optional[Dict[str, Any]] = field(default=None, metadata=json_field(OBJECT))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def status(self) -> str:
        return self.data.status


@model(frozen=True)
class ChunkEvent(JsonModel):
    """A ``chunk`` event: JSON patches that extend the message ``event_id`` is building."""

    event_id: str = field(metadata=json_field(STR, required=True))
    seq: int = field(metadata=json_field(INT, absent=0))
    patches: Tuple[JsonPatch, ...] = field(metadata=json_field(nested_list(JsonPatch), absent=()))
    correlation_id: Optional[str] = field(default=None, metadata=json_field(STR))
    metadata: Optional[Dict[str, Any]] = field(default=None, metadata=json_field(OBJECT))
    timestamp: Optional[float] = field(default=None, metadata=json_field(SECONDS))
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def text(self) -> str:
        """The text this chunk appends to a plain-text reply (``/-`` string patches)."""
        return "".join(p.value for p in self.patches if p.path == "/-" and isinstance(p.value, str))


@model(frozen=True)
class RawStreamEvent(JsonModel):
    """A stream event with a name this version does not know, kept as received."""

    event: str = field(metadata=json_field(STR, required=True))
    data: str = field(metadata=json_field(STR, required=True))
    id: str = field(default="", metadata=json_field(STR))


StreamEvent = Union[StatusEvent, ChunkEvent, RawStreamEvent]
