from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, TypedDict

from ..types import BaseModel


class SessionCreationParamsDTOTypedDict(TypedDict, total=False):
    agent_id: str
    id: Optional[str]
    title: Optional[str]


@dataclass
class SessionCreationParamsDTO(BaseModel):
    agent_id: str
    id: Optional[str] = None
    title: Optional[str] = None
