from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Optional, TypedDict, Union

from flux0lite.models import Session

from ..types import BaseModel, keep_extra
from ._convert import timestamp
from .consumptionoffsetsdto import ConsumptionOffsetsDTO, ConsumptionOffsetsDTOTypedDict


class SessionDTOTypedDict(TypedDict, total=False):
    id: str
    agent_id: str
    user_id: str
    consumption_offsets: ConsumptionOffsetsDTOTypedDict
    created_at: _dt.datetime
    title: Optional[str]


@dataclass
class SessionDTO(BaseModel):
    id: str
    agent_id: str
    user_id: Optional[str]
    consumption_offsets: ConsumptionOffsetsDTO
    created_at: Union[_dt.datetime, str, None]
    title: Optional[str] = None

    @classmethod
    def from_native(cls, session: Session) -> "SessionDTO":
        offsets = dict(session.consumption_offsets)
        consumption = keep_extra(ConsumptionOffsetsDTO(client=offsets.pop("client", None)), offsets)
        model = cls(
            id=session.id,
            agent_id=session.agent_id,
            user_id=session.user_id,
            consumption_offsets=consumption,
            created_at=timestamp(session.created_at),
            title=session.title,
        )
        return keep_extra(model, session.extra)
