from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, TypedDict

from flux0lite.models import ToolEventData

from ..types import BaseModel, keep_extra
from .toolcalldto import ToolCallDTO, ToolCallDTOTypedDict


class ToolEventDataDTOTypedDict(TypedDict, total=False):
    tool_calls: List[ToolCallDTOTypedDict]
    type: str


@dataclass
class ToolEventDataDTO(BaseModel):
    tool_calls: List[ToolCallDTO]
    TYPE: str = field(default="tool_call_result", metadata={"alias": "type"})

    @classmethod
    def from_native(cls, data: ToolEventData) -> "ToolEventDataDTO":
        return keep_extra(cls(tool_calls=[ToolCallDTO.from_native(c) for c in data.tool_calls]), data.extra)
