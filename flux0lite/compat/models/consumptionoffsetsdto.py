from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, TypedDict

from ..types import BaseModel


class ConsumptionOffsetsDTOTypedDict(TypedDict, total=False):
    client: Optional[int]


@dataclass
class ConsumptionOffsetsDTO(BaseModel):
    client: Optional[int] = None
