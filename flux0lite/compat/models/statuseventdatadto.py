from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, TypedDict, Union

from flux0lite.models import StatusEventData

from ..types import BaseModel, keep_extra
from ._convert import member_or_str
from .statuseventdatastatusfield import StatusEventDataStatusField


class StatusEventDataDTOTypedDict(TypedDict, total=False):
    status: StatusEventDataStatusField
    type: str
    acknowledged_offset: Optional[int]
    data: Any


@dataclass
class StatusEventDataDTO(BaseModel):
    status: Union[StatusEventDataStatusField, str]
    TYPE: str = field(default="status", metadata={"alias": "type"})
    acknowledged_offset: Optional[int] = None
    data: Any = None

    @classmethod
    def from_native(cls, data: StatusEventData) -> "StatusEventDataDTO":
        model = cls(
            status=member_or_str(StatusEventDataStatusField, data.status),
            acknowledged_offset=data.acknowledged_offset,
            data=data.data,
        )
        return keep_extra(model, data.extra)
