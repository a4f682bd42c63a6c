from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypedDict, Union

from ..types import BaseModel


class Mode(str, Enum):
    AUTO = "auto"
    MANUAL = "manual"


class ControlOptionsTypedDict(TypedDict, total=False):
    mode: Mode


@dataclass
class ControlOptions(BaseModel):
    mode: Union[Mode, str]
