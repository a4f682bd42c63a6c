from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, TypedDict

from flux0lite.models import ToolCall

from ..types import BaseModel, keep_extra
from .toolresultdto import ToolResultDTO, ToolResultDTOTypedDict


class ToolCallDTOTypedDict(TypedDict, total=False):
    tool_call_id: str
    tool_name: str
    args: Dict[str, Any]
    result: Optional[ToolResultDTOTypedDict]
    error: Optional[str]


@dataclass
class ToolCallDTO(BaseModel):
    tool_call_id: str
    tool_name: str
    args: Any = field(default_factory=dict)
    result: Any = None
    error: Any = None

    @classmethod
    def from_native(cls, call: ToolCall) -> "ToolCallDTO":
        model = cls(
            tool_call_id=call.tool_call_id,
            tool_name=call.tool_name,
            args=call.args,
            result=ToolResultDTO.from_json(call.result) if call.result is not None else None,
            error=call.error,
        )
        return keep_extra(model, call.extra)
