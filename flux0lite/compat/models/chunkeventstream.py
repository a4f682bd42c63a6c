from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from flux0lite.models import ChunkEvent

from ..types import BaseModel
from .chunkeventdto import ChunkEventDTO, ChunkEventDTOTypedDict


class ChunkEventStreamTypedDict(TypedDict, total=False):
    data: ChunkEventDTOTypedDict
    event: str


@dataclass
class ChunkEventStream(BaseModel):
    """A ``chunk`` event of the reply stream: JSON patches for the message being built."""

    data: ChunkEventDTO
    EVENT: str = field(default="chunk", metadata={"alias": "event"})

    @classmethod
    def from_native(cls, chunk: ChunkEvent) -> "ChunkEventStream":
        return cls(data=ChunkEventDTO.from_native(chunk))
