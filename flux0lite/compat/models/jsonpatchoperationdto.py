from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, TypedDict, Union

from flux0lite.models import JsonPatch

from ..types import BaseModel, keep_extra
from ._convert import member_or_str


class Op(str, Enum):
    ADD = "add"
    REPLACE = "replace"


class JSONPatchOperationDTOTypedDict(TypedDict, total=False):
    op: Op
    path: str
    value: Any


@dataclass
class JSONPatchOperationDTO(BaseModel):
    op: Union[Op, str]
    path: str
    value: Any = None

    @classmethod
    def from_native(cls, patch: JsonPatch) -> "JSONPatchOperationDTO":
        return keep_extra(cls(op=member_or_str(Op, patch.op), path=patch.path, value=patch.value), patch.extra)
