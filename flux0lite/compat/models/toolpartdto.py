from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from ..types import BaseModel


class ToolPartDTOTypedDict(TypedDict, total=False):
    tool_call_id: str
    tool_name: str
    args: Any
    type: str


@dataclass
class ToolPartDTO(BaseModel):
    tool_call_id: str
    tool_name: str
    args: Any
    TYPE: str = field(default="tool_call", metadata={"alias": "type"})
