from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from ..types import BaseModel


class ContentPartDTOTypedDict(TypedDict, total=False):
    content: Any
    type: str


@dataclass
class ContentPartDTO(BaseModel):
    content: Any
    TYPE: str = field(default="content", metadata={"alias": "type"})
