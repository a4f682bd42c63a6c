from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, TypedDict

from ..types import BaseModel
from .eventdto import EventDTO, EventDTOTypedDict


class EventsDTOTypedDict(TypedDict, total=False):
    data: List[EventDTOTypedDict]


@dataclass
class EventsDTO(BaseModel):
    data: List[EventDTO] = field(default_factory=list)
