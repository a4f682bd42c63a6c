from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, TypedDict, Union

from ..types import BaseModel, keep_extra

Loc = Union[str, int]
LocTypedDict = Union[str, int]


class ValidationErrorTypedDict(TypedDict, total=False):
    loc: List[LocTypedDict]
    msg: str
    type: str


@dataclass
class ValidationError(BaseModel):
    """One entry of a 422 answer's ``detail`` list (a model, not an exception)."""

    loc: List[Loc] = field(default_factory=list)
    msg: str = ""
    type: str = ""

    @classmethod
    def from_json(cls, raw: Any) -> "ValidationError":
        if not isinstance(raw, dict):
            return cls(msg=str(raw))
        loc = raw.get("loc")
        model = cls(
            loc=[x if isinstance(x, (str, int)) else str(x) for x in loc] if isinstance(loc, list) else [],
            msg=str(raw.get("msg", "")),
            type=str(raw.get("type", "")),
        )
        return keep_extra(model, {k: v for k, v in raw.items() if k not in ("loc", "msg", "type")})
