from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, TypedDict, Union

from flux0lite.models import StatusEvent

from ..types import BaseModel, keep_extra
from ._convert import member_or_str
from .eventdto import EventDTOData, EventDTODataTypedDict, data_from_native
from .eventsourcedto import EventSourceDTO
from .eventtypedto import EventTypeDTO
from .statuseventdatadto import StatusEventDataDTO
from .statuseventdatastatusfield import StatusEventDataStatusField

EmittedEventDTOData = EventDTOData
EmittedEventDTODataTypedDict = EventDTODataTypedDict


class EmittedEventDTOTypedDict(TypedDict, total=False):
    id: str
    correlation_id: str
    type: EventTypeDTO
    source: EventSourceDTO
    data: EmittedEventDTODataTypedDict
    metadata: Optional[Dict[str, Any]]


@dataclass
class EmittedEventDTO(BaseModel):
    id: str
    correlation_id: Optional[str]
    type: Union[EventTypeDTO, str]
    source: Union[EventSourceDTO, str]
    data: EmittedEventDTOData
    metadata: Optional[Dict[str, Any]] = None

    @property
    def status(self) -> Union[StatusEventDataStatusField, str, None]:
        """Shortcut for ``data.status`` (every event flux0 streams is a status event)."""
        return self.data.status if isinstance(self.data, StatusEventDataDTO) else None

    @classmethod
    def from_native(cls, event: StatusEvent) -> "EmittedEventDTO":
        model = cls(
            id=event.id,
            correlation_id=event.correlation_id,
            type=member_or_str(EventTypeDTO, event.type),
            source=member_or_str(EventSourceDTO, event.source),
            data=data_from_native(event.data),
            metadata=event.metadata,
        )
        return keep_extra(model, event.extra)
