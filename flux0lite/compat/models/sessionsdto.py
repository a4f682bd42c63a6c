from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, TypedDict

from ..types import BaseModel
from .sessiondto import SessionDTO, SessionDTOTypedDict


class SessionsDTOTypedDict(TypedDict, total=False):
    data: List[SessionDTOTypedDict]


@dataclass
class SessionsDTO(BaseModel):
    data: List[SessionDTO] = field(default_factory=list)
