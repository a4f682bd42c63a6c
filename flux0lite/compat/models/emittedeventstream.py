from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from flux0lite.models import StatusEvent

from ..types import BaseModel
from .emittedeventdto import EmittedEventDTO, EmittedEventDTOTypedDict


class EmittedEventStreamTypedDict(TypedDict, total=False):
    id: str
    data: EmittedEventDTOTypedDict
    event: str


@dataclass
class EmittedEventStream(BaseModel):
    """A ``status`` event of the reply stream (``id`` is the stream's event id)."""

    id: str
    data: EmittedEventDTO
    EVENT: str = field(default="status", metadata={"alias": "event"})

    @classmethod
    def from_native(cls, event: StatusEvent) -> "EmittedEventStream":
        return cls(id=event.id, data=EmittedEventDTO.from_native(event))
