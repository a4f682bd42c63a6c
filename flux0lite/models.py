"""The flux0 API's resources as frozen dataclasses, read from and written to JSON by hand.

Parsing is tolerant where a newer server may differ and strict where the API promises:
- unknown fields are kept in ``extra`` and written back by ``to_dict``;
- enum-like fields (event ``type``, ``source``, status) are plain strings, so a value this
  version has never heard of is kept as it is, never a crash; the ``KNOWN_*`` sets list the
  values this version knows;
- a missing id or a field of the wrong JSON type raises :class:`ModelError` naming the field.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Tuple, TypeVar, Union

from .errors import ModelError

__all__ = [
    "KNOWN_EVENT_TYPES",
    "KNOWN_EVENT_SOURCES",
    "KNOWN_STATUSES",
    "Agent",
    "Session",
    "Participant",
    "ContentPart",
    "ReasoningPart",
    "ToolCallPart",
    "UnknownPart",
    "MessagePart",
    "MessageEventData",
    "StatusEventData",
    "ToolCall",
    "ToolEventData",
    "EventData",
    "Event",
    "JsonPatch",
    "StatusEvent",
    "ChunkEvent",
    "RawStreamEvent",
    "StreamEvent",
    "parse_timestamp",
]

KNOWN_EVENT_TYPES = frozenset({"message", "tool", "status", "custom"})
KNOWN_EVENT_SOURCES = frozenset({"user", "ai_agent", "system"})
KNOWN_STATUSES = frozenset({"acknowledged", "cancelled", "processing", "ready", "typing", "error", "completed"})

T = TypeVar("T")
_PARTICIPANT_FIELDS = frozenset(("id", "name"))
_TOOL_EVENT_FIELDS = frozenset(("type", "tool_calls"))
_PATCH_FIELDS = frozenset(("op", "path", "value"))
JsonDict = Dict[str, Any]


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
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}" if digits else head + rest
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ModelError(f"not an ISO-8601 timestamp: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)


def _build(cls: Callable[..., T], **fields: Any) -> T:
    """Create a frozen dataclass instance without its ``__init__``.

    The generated frozen ``__init__`` sets every field through ``object.__setattr__``; parsing a
    thousand events spends most of its time there. Every field is passed, so the result is the
    same object ``cls(**fields)`` would make.
    """
    instance: T = object.__new__(cls)  # type: ignore[arg-type]
    instance.__dict__.update(fields)
    return instance


def _require_object(raw: Any, model: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise ModelError(f"{model}: expected a JSON object, got {type(raw).__name__}")
    return raw


def _get(raw: Mapping[str, Any], key: str, model: str, kind: Union[type, Tuple[type, ...]], *, required: bool) -> Any:
    value = raw.get(key)
    if value is None:
        if required:
            raise ModelError(f"{model}: missing field {key!r}")
        return None
    if type(value) is kind:  # the common case, decided without isinstance() and its bool caveat
        return value
    # bool is an int in Python, but never a valid number in these models
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, float))):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ModelError(f"{model}: field {key!r} should be {names}, got {type(value).__name__}")
    return value


def _req_str(raw: Mapping[str, Any], key: str, model: str) -> str:
    value: str = _get(raw, key, model, str, required=True)
    return value


def _opt_str(raw: Mapping[str, Any], key: str, model: str) -> Optional[str]:
    value: Optional[str] = _get(raw, key, model, str, required=False)
    return value


def _extra(raw: Mapping[str, Any], known: FrozenSet[str]) -> Dict[str, Any]:
    if raw.keys() <= known:
        return {}
    return {k: v for k, v in raw.items() if k not in known}


def _with_extra(known: JsonDict, extra: Mapping[str, Any]) -> JsonDict:
    out = dict(extra)
    out.update(known)
    return out


def _items(raw: Mapping[str, Any], key: str, model: str, parse: Callable[[Any], T]) -> Tuple[T, ...]:
    value = _get(raw, key, model, list, required=False)
    return tuple(parse(item) for item in value or ())


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    type: str
    description: Optional[str] = None
    created_at: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _FIELDS = frozenset(("id", "name", "type", "description", "created_at"))

    @classmethod
    def from_dict(cls, raw: Any) -> "Agent":
        obj = _require_object(raw, "Agent")
        return _build(
            cls,
            id=_req_str(obj, "id", "Agent"),
            name=_req_str(obj, "name", "Agent"),
            type=_req_str(obj, "type", "Agent"),
            description=_opt_str(obj, "description", "Agent"),
            created_at=_opt_str(obj, "created_at", "Agent"),
            extra=_extra(obj, cls._FIELDS),
        )

    def to_dict(self) -> JsonDict:
        known: JsonDict = {"id": self.id, "name": self.name, "type": self.type}
        if self.description is not None:
            known["description"] = self.description
        if self.created_at is not None:
            known["created_at"] = self.created_at
        return _with_extra(known, self.extra)


@dataclass(frozen=True)
class Session:
    id: str
    agent_id: str
    user_id: Optional[str] = None
    title: Optional[str] = None
    consumption_offsets: Dict[str, int] = field(default_factory=dict)
    created_at: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _FIELDS = frozenset(("id", "agent_id", "user_id", "title", "consumption_offsets", "created_at"))

    @classmethod
    def from_dict(cls, raw: Any) -> "Session":
        obj = _require_object(raw, "Session")
        offsets_raw = _get(obj, "consumption_offsets", "Session", dict, required=False) or {}
        offsets: Dict[str, int] = {}
        for key, value in offsets_raw.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise ModelError(f"Session: consumption_offsets[{key!r}] should be int")
            offsets[str(key)] = value
        return _build(
            cls,
            id=_req_str(obj, "id", "Session"),
            agent_id=_req_str(obj, "agent_id", "Session"),
            user_id=_opt_str(obj, "user_id", "Session"),
            title=_opt_str(obj, "title", "Session"),
            consumption_offsets=offsets,
            created_at=_opt_str(obj, "created_at", "Session"),
            extra=_extra(obj, cls._FIELDS),
        )

    def to_dict(self) -> JsonDict:
        known: JsonDict = {"id": self.id, "agent_id": self.agent_id}
        if self.user_id is not None:
            known["user_id"] = self.user_id
        if self.title is not None:
            known["title"] = self.title
        known["consumption_offsets"] = dict(self.consumption_offsets)
        if self.created_at is not None:
            known["created_at"] = self.created_at
        return _with_extra(known, self.extra)


@dataclass(frozen=True)
class Participant:
    id: Optional[str]
    name: Optional[str]
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, raw: Any) -> "Participant":
        obj = _require_object(raw, "Participant")
        pid, name = obj.get("id"), obj.get("name")
        if (pid is None or type(pid) is str) and (name is None or type(name) is str):
            return _build(cls, id=pid, name=name, extra=_extra(obj, _PARTICIPANT_FIELDS))
        return _build(
            cls,
            id=_opt_str(obj, "id", "Participant"),
            name=_opt_str(obj, "name", "Participant"),
            extra=_extra(obj, _PARTICIPANT_FIELDS),
        )

    def to_dict(self) -> JsonDict:
        return _with_extra({"id": self.id, "name": self.name}, self.extra)


@dataclass(frozen=True)
class ContentPart:
    """Message text, or any JSON value a structured agent produced."""

    content: Any
    type: str = "content"

    def to_dict(self) -> JsonDict:
        return {"type": self.type, "content": self.content}


@dataclass(frozen=True)
class ReasoningPart:
    reasoning: Any
    type: str = "reasoning"

    def to_dict(self) -> JsonDict:
        return {"type": self.type, "reasoning": self.reasoning}


@dataclass(frozen=True)
class ToolCallPart:
    tool_call_id: str
    tool_name: str
    args: Any
    type: str = "tool_call"

    def to_dict(self) -> JsonDict:
        return {"type": self.type, "tool_call_id": self.tool_call_id, "tool_name": self.tool_name, "args": self.args}


@dataclass(frozen=True)
class UnknownPart:
    """A part type this version does not know, kept whole."""

    type: str
    raw: Dict[str, Any]

    def to_dict(self) -> JsonDict:
        return dict(self.raw)


MessagePart = Union[ContentPart, ReasoningPart, ToolCallPart, UnknownPart]


def _parse_part(raw: Any) -> MessagePart:
    if type(raw) is dict and raw.get("type") == "content":
        return _build(ContentPart, content=raw.get("content"), type="content")
    obj = _require_object(raw, "MessagePart")
    kind = _opt_str(obj, "type", "MessagePart") or ""
    if kind == "content":
        return _build(ContentPart, content=obj.get("content"), type="content")
    if kind == "reasoning":
        return _build(ReasoningPart, reasoning=obj.get("reasoning"), type="reasoning")
    if kind == "tool_call":
        return ToolCallPart(
            tool_call_id=_opt_str(obj, "tool_call_id", "ToolCallPart") or "",
            tool_name=_opt_str(obj, "tool_name", "ToolCallPart") or "",
            args=obj.get("args"),
        )
    return UnknownPart(type=kind, raw=dict(obj))


@dataclass(frozen=True)
class MessageEventData:
    parts: Tuple[MessagePart, ...]
    participant: Optional[Participant] = None
    tags: Optional[List[str]] = None
    flagged: Optional[bool] = None
    type: str = "message"
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _FIELDS = frozenset(("type", "parts", "participant", "tags", "flagged"))

    @property
    def text(self) -> str:
        """The concatenated string contents of the message (structured content is skipped)."""
        return "".join(p.content for p in self.parts if isinstance(p, ContentPart) and isinstance(p.content, str))

    @classmethod
    def from_dict(cls, raw: Any) -> "MessageEventData":
        obj = _require_object(raw, "MessageEventData")
        get = obj.get
        kind, parts, participant, tags, flagged = (
            get("type"),
            get("parts"),
            get("participant"),
            get("tags"),
            get("flagged"),
        )
        if (
            (kind is None or type(kind) is str)
            and (parts is None or type(parts) is list)
            and (tags is None or type(tags) is list)
            and (flagged is None or type(flagged) is bool)
        ):
            return _build(
                cls,
                type=kind or "message",
                parts=tuple(_parse_part(p) for p in parts) if parts else (),
                participant=Participant.from_dict(participant) if participant is not None else None,
                tags=list(tags) if tags is not None else None,
                flagged=flagged,
                extra=_extra(obj, cls._FIELDS),
            )
        participant = obj.get("participant")
        tags = _get(obj, "tags", "MessageEventData", list, required=False)
        return _build(
            cls,
            type=_opt_str(obj, "type", "MessageEventData") or "message",
            parts=_items(obj, "parts", "MessageEventData", _parse_part),
            participant=Participant.from_dict(participant) if participant is not None else None,
            tags=list(tags) if tags is not None else None,
            flagged=_get(obj, "flagged", "MessageEventData", bool, required=False),
            extra=_extra(obj, cls._FIELDS),
        )

    def to_dict(self) -> JsonDict:
        known: JsonDict = {
            "type": self.type,
            "tags": self.tags,
            "flagged": self.flagged,
            "parts": [p.to_dict() for p in self.parts],
            "participant": self.participant.to_dict() if self.participant else None,
        }
        return _with_extra(known, self.extra)


@dataclass(frozen=True)
class StatusEventData:
    status: str
    acknowledged_offset: Optional[int] = None
    data: Any = None
    type: str = "status"
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _FIELDS = frozenset(("type", "status", "acknowledged_offset", "data"))

    @classmethod
    def from_dict(cls, raw: Any) -> "StatusEventData":
        obj = _require_object(raw, "StatusEventData")
        kind, status, acked = obj.get("type"), obj.get("status"), obj.get("acknowledged_offset")
        if (kind is None or type(kind) is str) and type(status) is str and (acked is None or type(acked) is int):
            return _build(
                cls,
                type=kind or "status",
                status=status,
                acknowledged_offset=acked,
                data=obj.get("data"),
                extra=_extra(obj, cls._FIELDS),
            )
        return _build(
            cls,
            type=_opt_str(obj, "type", "StatusEventData") or "status",
            status=_req_str(obj, "status", "StatusEventData"),
            acknowledged_offset=_get(obj, "acknowledged_offset", "StatusEventData", int, required=False),
            data=obj.get("data"),
            extra=_extra(obj, cls._FIELDS),
        )

    def to_dict(self) -> JsonDict:
        known: JsonDict = {
            "type": self.type,
            "status": self.status,
            "acknowledged_offset": self.acknowledged_offset,
            "data": self.data,
        }
        return _with_extra(known, self.extra)


@dataclass(frozen=True)
class ToolCall:
    tool_call_id: str
    tool_name: str
    args: Any = None
    result: Any = None
    error: Any = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _FIELDS = frozenset(("tool_call_id", "tool_name", "args", "result", "error"))

    @classmethod
    def from_dict(cls, raw: Any) -> "ToolCall":
        obj = _require_object(raw, "ToolCall")
        return _build(
            cls,
            tool_call_id=_opt_str(obj, "tool_call_id", "ToolCall") or "",
            tool_name=_opt_str(obj, "tool_name", "ToolCall") or "",
            args=obj.get("args"),
            result=obj.get("result"),
            error=obj.get("error"),
            extra=_extra(obj, cls._FIELDS),
        )

    def to_dict(self) -> JsonDict:
        known: JsonDict = {
            "tool_call_id": self.tool_call_id,
            "tool_name": self.tool_name,
            "args": self.args,
            "result": self.result,
            "error": self.error,
        }
        return _with_extra(known, self.extra)


@dataclass(frozen=True)
class ToolEventData:
    tool_calls: Tuple[ToolCall, ...]
    type: str = "tool_call_result"
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, raw: Any) -> "ToolEventData":
        obj = _require_object(raw, "ToolEventData")
        return _build(
            cls,
            type=_opt_str(obj, "type", "ToolEventData") or "tool_call_result",
            tool_calls=_items(obj, "tool_calls", "ToolEventData", ToolCall.from_dict),
            extra=_extra(obj, _TOOL_EVENT_FIELDS),
        )

    def to_dict(self) -> JsonDict:
        known: JsonDict = {"type": self.type, "tool_calls": [c.to_dict() for c in self.tool_calls]}
        return _with_extra(known, self.extra)


EventData = Union[MessageEventData, StatusEventData, ToolEventData, Dict[str, Any]]


def _parse_event_data(event_type: str, raw: Any) -> EventData:
    """Typed data for the known event types; anything else (``custom``, new types) stays a dict."""
    if event_type == "message":
        return MessageEventData.from_dict(raw)
    if event_type == "status":
        return StatusEventData.from_dict(raw)
    if event_type == "tool":
        return ToolEventData.from_dict(raw)
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    return {"value": raw}


def _data_to_json(data: EventData) -> Any:
    if isinstance(data, dict):
        return dict(data)
    return data.to_dict()


@dataclass(frozen=True)
class Event:
    """A stored session event, as ``list_events`` returns it."""

    id: str
    type: str
    source: str
    offset: int
    data: EventData
    correlation_id: Optional[str] = None
    deleted: bool = False
    metadata: Optional[Dict[str, Any]] = None
    created_at: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _FIELDS = frozenset(
        ("id", "correlation_id", "type", "source", "offset", "data", "deleted", "metadata", "created_at")
    )

    @property
    def text(self) -> str:
        """Message text for message events, ``""`` otherwise."""
        return self.data.text if isinstance(self.data, MessageEventData) else ""

    @classmethod
    def from_dict(cls, raw: Any) -> "Event":
        obj = _require_object(raw, "Event")
        get = obj.get
        event_id, event_type, source, offset = get("id"), get("type"), get("source"), get("offset")
        correlation_id, created_at, metadata, deleted = (
            get("correlation_id"),
            get("created_at"),
            get("metadata"),
            get("deleted"),
        )
        # Fast path for well-formed events (the daemon parses millions); anything unusual
        # goes through the checked path, which names the offending field.
        if (
            type(event_id) is str
            and type(event_type) is str
            and type(source) is str
            and type(offset) is int
            and (correlation_id is None or type(correlation_id) is str)
            and (created_at is None or type(created_at) is str)
            and (metadata is None or type(metadata) is dict)
            and (deleted is None or type(deleted) is bool)
        ):
            return _build(
                cls,
                id=event_id,
                correlation_id=correlation_id,
                type=event_type,
                source=source,
                offset=offset,
                data=_parse_event_data(event_type, get("data")),
                deleted=bool(deleted),
                metadata=dict(metadata) if metadata is not None else None,
                created_at=created_at,
                extra=_extra(obj, cls._FIELDS),
            )
        return cls._from_dict_checked(obj)

    @classmethod
    def _from_dict_checked(cls, obj: Mapping[str, Any]) -> "Event":
        event_type = _req_str(obj, "type", "Event")
        metadata = _get(obj, "metadata", "Event", dict, required=False)
        return _build(
            cls,
            id=_req_str(obj, "id", "Event"),
            correlation_id=_opt_str(obj, "correlation_id", "Event"),
            type=event_type,
            source=_req_str(obj, "source", "Event"),
            offset=_get(obj, "offset", "Event", int, required=True),
            data=_parse_event_data(event_type, obj.get("data")),
            deleted=bool(_get(obj, "deleted", "Event", bool, required=False)),
            metadata=dict(metadata) if metadata is not None else None,
            created_at=_opt_str(obj, "created_at", "Event"),
            extra=_extra(obj, cls._FIELDS),
        )

    def to_dict(self) -> JsonDict:
        known: JsonDict = {
            "id": self.id,
            "correlation_id": self.correlation_id,
            "type": self.type,
            "source": self.source,
            "offset": self.offset,
            "data": _data_to_json(self.data),
            "deleted": self.deleted,
            "metadata": self.metadata,
            "created_at": self.created_at,
        }
        return _with_extra(known, self.extra)


@dataclass(frozen=True)
class JsonPatch:
    """One RFC 6902 operation of a chunk (flux0 sends ``add`` and ``replace``)."""

    op: str
    path: str
    value: Any = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, raw: Any) -> "JsonPatch":
        obj = _require_object(raw, "JsonPatch")
        return _build(
            cls,
            op=_req_str(obj, "op", "JsonPatch"),
            path=_get(obj, "path", "JsonPatch", str, required=True),
            value=obj.get("value"),
            extra=_extra(obj, _PATCH_FIELDS),
        )

    def to_dict(self) -> JsonDict:
        return _with_extra({"op": self.op, "path": self.path, "value": self.value}, self.extra)


@dataclass(frozen=True)
class StatusEvent:
    """A ``status`` event of a live stream (its id is the streamed id, not the stored one)."""

    id: str
    correlation_id: Optional[str]
    data: StatusEventData
    source: str = "ai_agent"
    type: str = "status"
    metadata: Optional[Dict[str, Any]] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _FIELDS = frozenset(("id", "source", "type", "correlation_id", "data", "metadata"))

    @property
    def status(self) -> str:
        return self.data.status

    @classmethod
    def from_dict(cls, raw: Any) -> "StatusEvent":
        obj = _require_object(raw, "StatusEvent")
        metadata = _get(obj, "metadata", "StatusEvent", dict, required=False)
        return _build(
            cls,
            id=_req_str(obj, "id", "StatusEvent"),
            source=_opt_str(obj, "source", "StatusEvent") or "ai_agent",
            type=_opt_str(obj, "type", "StatusEvent") or "status",
            correlation_id=_opt_str(obj, "correlation_id", "StatusEvent"),
            data=StatusEventData.from_dict(obj.get("data")),
            metadata=dict(metadata) if metadata is not None else None,
            extra=_extra(obj, cls._FIELDS),
        )

    def to_dict(self) -> JsonDict:
        known: JsonDict = {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "correlation_id": self.correlation_id,
            "data": self.data.to_dict(),
            "metadata": self.metadata,
        }
        return _with_extra(known, self.extra)


@dataclass(frozen=True)
class ChunkEvent:
    """A ``chunk`` event: JSON patches that extend the message ``event_id`` is building."""

    event_id: str
    seq: int
    patches: Tuple[JsonPatch, ...]
    correlation_id: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None
    timestamp: Optional[float] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _FIELDS = frozenset(("correlation_id", "event_id", "seq", "patches", "metadata", "timestamp"))

    @property
    def text(self) -> str:
        """The text this chunk appends to a plain-text reply (``/-`` string patches)."""
        return "".join(p.value for p in self.patches if p.path == "/-" and isinstance(p.value, str))

    @classmethod
    def from_dict(cls, raw: Any) -> "ChunkEvent":
        obj = _require_object(raw, "ChunkEvent")
        metadata = _get(obj, "metadata", "ChunkEvent", dict, required=False)
        timestamp = _get(obj, "timestamp", "ChunkEvent", (int, float), required=False)
        return _build(
            cls,
            correlation_id=_opt_str(obj, "correlation_id", "ChunkEvent"),
            event_id=_req_str(obj, "event_id", "ChunkEvent"),
            seq=_get(obj, "seq", "ChunkEvent", int, required=False) or 0,
            patches=_items(obj, "patches", "ChunkEvent", JsonPatch.from_dict),
            metadata=dict(metadata) if metadata is not None else None,
            timestamp=float(timestamp) if timestamp is not None else None,
            extra=_extra(obj, cls._FIELDS),
        )

    def to_dict(self) -> JsonDict:
        known: JsonDict = {
            "correlation_id": self.correlation_id,
            "event_id": self.event_id,
            "seq": self.seq,
            "patches": [p.to_dict() for p in self.patches],
            "metadata": self.metadata,
            "timestamp": self.timestamp,
        }
        return _with_extra(known, self.extra)


@dataclass(frozen=True)
class RawStreamEvent:
    """A stream event with a name this version does not know, kept as received."""

    event: str
    data: str
    id: str = ""

    def to_dict(self) -> JsonDict:
        return {"event": self.event, "data": self.data, "id": self.id}


StreamEvent = Union[StatusEvent, ChunkEvent, RawStreamEvent]
