from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, Dict, Optional, TypedDict, Union

from flux0lite.models import Event, EventData, MessageEventData, StatusEventData, ToolEventData

from ..types import BaseModel, keep_extra
from ._convert import member_or_str, timestamp
from .eventsourcedto import EventSourceDTO
from .eventtypedto import EventTypeDTO
from .messageeventdatadto import MessageEventDataDTO, MessageEventDataDTOTypedDict
from .statuseventdatadto import StatusEventDataDTO, StatusEventDataDTOTypedDict
from .tooleventdatadto import ToolEventDataDTO, ToolEventDataDTOTypedDict

# ``custom`` events (which the SDK cannot read at all) keep their data as the dict it was.
EventDTOData = Union[MessageEventDataDTO, StatusEventDataDTO, ToolEventDataDTO, Dict[str, Any]]
EventDTODataTypedDict = Union[MessageEventDataDTOTypedDict, StatusEventDataDTOTypedDict, ToolEventDataDTOTypedDict]


def data_from_native(data: EventData) -> EventDTOData:
    if isinstance(data, MessageEventData):
        return MessageEventDataDTO.from_native(data)
    if isinstance(data, StatusEventData):
        return StatusEventDataDTO.from_native(data)
    if isinstance(data, ToolEventData):
        return ToolEventDataDTO.from_native(data)
    return dict(data)


class EventDTOTypedDict(TypedDict, total=False):
    id: str
    correlation_id: str
    type: EventTypeDTO
    source: EventSourceDTO
    offset: int
    data: EventDTODataTypedDict
    deleted: bool
    created_at: _dt.datetime
    metadata: Optional[Dict[str, Any]]


@dataclass
class EventDTO(BaseModel):
    id: str
    correlation_id: Optional[str]
    type: Union[EventTypeDTO, str]
    source: Union[EventSourceDTO, str]
    offset: int
    data: EventDTOData
    deleted: bool
    created_at: Union[_dt.datetime, str, None]
    metadata: Optional[Dict[str, Any]] = None

    @classmethod
    def from_native(cls, event: Event) -> "EventDTO":
        model = cls(
            id=event.id,
            correlation_id=event.correlation_id,
            type=member_or_str(EventTypeDTO, event.type),
            source=member_or_str(EventSourceDTO, event.source),
            offset=event.offset,
            data=data_from_native(event.data),
            deleted=event.deleted,
            created_at=timestamp(event.created_at),
            metadata=event.metadata,
        )
        return keep_extra(model, event.extra)
