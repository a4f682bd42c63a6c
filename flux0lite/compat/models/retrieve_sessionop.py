from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from ..types import BaseModel


class RetrieveSessionRequestTypedDict(TypedDict, total=False):
    session_id: str


@dataclass
class RetrieveSessionRequest(BaseModel):
    session_id: str
