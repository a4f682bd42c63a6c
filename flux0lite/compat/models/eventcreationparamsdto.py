from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, TypedDict, Union

from ..types import BaseModel
from .eventsourcedto import EventSourceDTO
from .eventtypedto import EventTypeDTO


class EventCreationParamsDTOTypedDict(TypedDict, total=False):
    type: EventTypeDTO
    source: EventSourceDTO
    content: Optional[str]


@dataclass
class EventCreationParamsDTO(BaseModel):
    type: Union[EventTypeDTO, str]
    source: Union[EventSourceDTO, str]
    content: Optional[str] = None
