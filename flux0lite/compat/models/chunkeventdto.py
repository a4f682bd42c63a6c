from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, TypedDict

from flux0lite.models import ChunkEvent

from ..types import BaseModel, keep_extra
from .jsonpatchoperationdto import JSONPatchOperationDTO, JSONPatchOperationDTOTypedDict


class ChunkEventDTOTypedDict(TypedDict, total=False):
    event_id: str
    correlation_id: str
    seq: int
    patches: List[JSONPatchOperationDTOTypedDict]
    metadata: Dict[str, Any]
    timestamp: Optional[float]


@dataclass
class ChunkEventDTO(BaseModel):
    event_id: str
    correlation_id: Optional[str]
    seq: int
    patches: List[JSONPatchOperationDTO]
    metadata: Dict[str, Any] = field(default_factory=dict)
    timestamp: Optional[float] = None

    @classmethod
    def from_native(cls, chunk: ChunkEvent) -> "ChunkEventDTO":
        model = cls(
            event_id=chunk.event_id,
            correlation_id=chunk.correlation_id,
            seq=chunk.seq,
            patches=[JSONPatchOperationDTO.from_native(p) for p in chunk.patches],
            metadata=dict(chunk.metadata or {}),
            timestamp=chunk.timestamp,
        )
        return keep_extra(model, chunk.extra)
