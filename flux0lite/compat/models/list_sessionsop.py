from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, TypedDict

from ..types import BaseModel


class ListSessionsRequestTypedDict(TypedDict, total=False):
    agent_id: Optional[str]


@dataclass
class ListSessionsRequest(BaseModel):
    agent_id: Optional[str] = None
