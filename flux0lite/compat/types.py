"""The SDK's ``types`` module: ``UNSET`` and the model base class with pydantic's export methods.

Models here are plain dataclasses filled from flux0lite's own models; nothing re-parses JSON.
``model_dump()`` returns Python values (datetimes, enum members), ``model_dump(mode="json")``
JSON-ready ones, as pydantic does. Fields a response did not carry are ``None``; fields the
server sent that the SDK does not know are kept in ``model_extra``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
from typing import Any, Dict, Optional, TypeVar, Union

__all__ = ["BaseModel", "UNSET", "UNSET_SENTINEL", "Unset", "Nullable", "OptionalNullable"]

T = TypeVar("T")
UNSET_SENTINEL = "~?~unset~?~sentinel~?~"


class Unset:
    """An argument the caller left out (``None`` means "send null"); falsy, like the SDK's."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()
Nullable = Optional[T]
OptionalNullable = Union[Optional[T], Unset]


def _export(value: Any, mode: str, by_alias: bool) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode=mode, by_alias=by_alias)
    if isinstance(value, (list, tuple)):
        return [_export(item, mode, by_alias) for item in value]
    if isinstance(value, dict):
        return {key: _export(item, mode, by_alias) for key, item in value.items()}
    if mode == "json":
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, _dt.datetime):
            return value.isoformat().replace("+00:00", "Z")
    return value


class BaseModel:
    """Base of every SDK-shaped model (each subclass is a dataclass)."""

    @property
    def model_extra(self) -> Dict[str, Any]:
        """Fields the server sent that this model does not declare (kept, not dropped)."""
        extra: Dict[str, Any] = self.__dict__.get("_extra", {})
        return extra

    def model_dump(self, *, mode: str = "python", by_alias: bool = False, exclude_none: bool = False) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, spec.name)
            if exclude_none and value is None:
                continue
            key = spec.metadata.get("alias", spec.name) if by_alias else spec.name
            out[key] = _export(value, mode, by_alias)
        return out

    def model_dump_json(
        self, *, indent: Optional[int] = None, by_alias: bool = False, exclude_none: bool = False
    ) -> str:
        data = self.model_dump(mode="json", by_alias=by_alias, exclude_none=exclude_none)
        separators = (",", ":") if indent is None else None
        return json.dumps(data, indent=indent, separators=separators, ensure_ascii=False, default=str)

    def __str__(self) -> str:
        # pydantic's str(): the fields, space-separated, without the class name
        return " ".join(f"{spec.name}={getattr(self, spec.name)!r}" for spec in dataclasses.fields(self))  # type: ignore[arg-type]


def keep_extra(model: T, extra: Dict[str, Any]) -> T:
    """Attach unknown server fields to a model (see ``BaseModel.model_extra``)."""
    if extra:
        model.__dict__["_extra"] = dict(extra)
    return model
