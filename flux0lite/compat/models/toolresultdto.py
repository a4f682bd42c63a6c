from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, TypedDict, Union

from ..types import BaseModel, keep_extra
from ._convert import member_or_str
from .controloptions import ControlOptions, ControlOptionsTypedDict, Mode

_FIELDS = frozenset(("data", "metadata", "control"))


class ToolResultDTOTypedDict(TypedDict, total=False):
    data: Any
    metadata: Dict[str, Any]
    control: ControlOptionsTypedDict


@dataclass
class ToolResultDTO(BaseModel):
    data: Any
    metadata: Dict[str, Any] = field(default_factory=dict)
    control: Optional[ControlOptions] = None

    @classmethod
    def from_json(cls, raw: Any) -> Union["ToolResultDTO", Any]:
        """A tool result as flux0 stores it; anything not shaped like one is returned as it is."""
        if not isinstance(raw, dict):
            return raw
        control_raw = raw.get("control")
        control = None
        if isinstance(control_raw, dict) and "mode" in control_raw:
            control = ControlOptions(mode=member_or_str(Mode, control_raw["mode"]))
        metadata = raw.get("metadata")
        model = cls(
            data=raw.get("data"), metadata=dict(metadata) if isinstance(metadata, dict) else {}, control=control
        )
        return keep_extra(model, {k: v for k, v in raw.items() if k not in _FIELDS})
