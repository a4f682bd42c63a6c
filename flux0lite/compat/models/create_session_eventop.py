from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from ..types import BaseModel
from .eventcreationparamsdto import EventCreationParamsDTO, EventCreationParamsDTOTypedDict


class CreateSessionEventRequestTypedDict(TypedDict, total=False):
    session_id: str
    event_creation_params_dto: EventCreationParamsDTOTypedDict


@dataclass
class CreateSessionEventRequest(BaseModel):
    session_id: str
    event_creation_params_dto: EventCreationParamsDTO
