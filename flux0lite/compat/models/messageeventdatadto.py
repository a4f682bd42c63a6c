from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, TypedDict, Union

from flux0lite.models import ContentPart, MessageEventData, MessagePart, ReasoningPart, ToolCallPart

from ..types import BaseModel, keep_extra
from .contentpartdto import ContentPartDTO, ContentPartDTOTypedDict
from .reasoningpartdto import ReasoningPartDTO, ReasoningPartDTOTypedDict
from .toolpartdto import ToolPartDTO, ToolPartDTOTypedDict

# A part of a type the SDK does not know stays the dict the server sent.
Part = Union[ContentPartDTO, ReasoningPartDTO, ToolPartDTO, Dict[str, Any]]
PartTypedDict = Union[ContentPartDTOTypedDict, ReasoningPartDTOTypedDict, ToolPartDTOTypedDict]


def part_from_native(part: MessagePart) -> Part:
    if isinstance(part, ContentPart):
        return ContentPartDTO(content=part.content)
    if isinstance(part, ReasoningPart):
        return ReasoningPartDTO(reasoning=part.reasoning)
    if isinstance(part, ToolCallPart):
        return ToolPartDTO(tool_call_id=part.tool_call_id, tool_name=part.tool_name, args=part.args)
    return part.to_dict()


class MessageEventDataDTOTypedDict(TypedDict, total=False):
    parts: List[PartTypedDict]
    type: str
    tags: Optional[List[str]]
    flagged: Optional[bool]
    participant: Optional[Dict[str, str]]


@dataclass
class MessageEventDataDTO(BaseModel):
    parts: List[Part]
    TYPE: str = field(default="message", metadata={"alias": "type"})
    tags: Optional[List[str]] = None
    flagged: Optional[bool] = None
    participant: Optional[Dict[str, Any]] = None

    @classmethod
    def from_native(cls, data: MessageEventData) -> "MessageEventDataDTO":
        model = cls(
            parts=[part_from_native(p) for p in data.parts],
            tags=data.tags,
            flagged=data.flagged,
            participant=data.participant.to_dict() if data.participant is not None else None,
        )
        return keep_extra(model, data.extra)
