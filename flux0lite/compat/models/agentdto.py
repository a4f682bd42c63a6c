from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Optional, TypedDict, Union

from flux0lite.models import Agent

from ..types import BaseModel, keep_extra
from ._convert import timestamp


class AgentDTOTypedDict(TypedDict, total=False):
    id: str
    name: str
    type: str
    created_at: _dt.datetime
    description: Optional[str]


@dataclass
class AgentDTO(BaseModel):
    id: str
    name: str
    type: str
    created_at: Union[_dt.datetime, str, None]
    description: Optional[str] = None

    @classmethod
    def from_native(cls, agent: Agent) -> "AgentDTO":
        model = cls(
            id=agent.id,
            name=agent.name,
            type=agent.type,
            created_at=timestamp(agent.created_at),
            description=agent.description,
        )
        return keep_extra(model, agent.extra)
