from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, TypedDict

from ..types import BaseModel
from .agentdto import AgentDTO, AgentDTOTypedDict


class AgentsDTOTypedDict(TypedDict, total=False):
    data: List[AgentDTOTypedDict]


@dataclass
class AgentsDTO(BaseModel):
    data: List[AgentDTO] = field(default_factory=list)
