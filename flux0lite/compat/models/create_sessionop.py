from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from ..types import BaseModel
from .sessioncreationparamsdto import SessionCreationParamsDTO, SessionCreationParamsDTOTypedDict


class CreateSessionRequestTypedDict(TypedDict, total=False):
    session_creation_params_dto: SessionCreationParamsDTOTypedDict
    allow_greeting: bool


@dataclass
class CreateSessionRequest(BaseModel):
    session_creation_params_dto: SessionCreationParamsDTO
    allow_greeting: bool = False
