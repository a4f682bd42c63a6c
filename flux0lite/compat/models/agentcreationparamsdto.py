from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, TypedDict

from ..types import BaseModel


class AgentCreationParamsDTOTypedDict(TypedDict, total=False):
    name: str
    type: str
    description: Optional[str]


@dataclass
class AgentCreationParamsDTO(BaseModel):
    name: str
    type: str
    description: Optional[str] = None
