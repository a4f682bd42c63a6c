from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from ..types import BaseModel


class RetrieveAgentRequestTypedDict(TypedDict, total=False):
    agent_id: str


@dataclass
class RetrieveAgentRequest(BaseModel):
    agent_id: str
