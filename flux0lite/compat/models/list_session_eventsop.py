from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, TypedDict, Union

from ..types import BaseModel
from .eventsourcedto import EventSourceDTO
from .eventtypedto import EventTypeDTO


class ListSessionEventsRequestTypedDict(TypedDict, total=False):
    session_id: str
    min_offset: Optional[int]
    source: Optional[EventSourceDTO]
    correlation_id: Optional[str]
    types: Optional[List[EventTypeDTO]]


@dataclass
class ListSessionEventsRequest(BaseModel):
    session_id: str
    min_offset: Optional[int] = None
    source: Union[EventSourceDTO, str, None] = None
    correlation_id: Optional[str] = None
    types: Optional[List[Union[EventTypeDTO, str]]] = None
