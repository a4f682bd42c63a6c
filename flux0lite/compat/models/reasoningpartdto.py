from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from ..types import BaseModel


class ReasoningPartDTOTypedDict(TypedDict, total=False):
    reasoning: Any
    type: str


@dataclass
class ReasoningPartDTO(BaseModel):
    reasoning: Any
    TYPE: str = field(default="reasoning", metadata={"alias": "type"})
