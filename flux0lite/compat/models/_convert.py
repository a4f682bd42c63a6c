"""Shared conversions from flux0lite's models to the SDK's field types."""

from __future__ import annotations

import datetime as _dt
from enum import Enum
from typing import Any, Optional, Type, TypeVar, Union

from flux0lite.errors import ModelError
from flux0lite.models import parse_timestamp

E = TypeVar("E", bound=Enum)


def member_or_str(enum_type: Type[E], value: Any) -> Union[E, str]:
    """The enum member for a known value; an unknown value is kept as the plain string it was."""
    try:
        return enum_type(value)
    except ValueError:
        return str(value)


def timestamp(value: Optional[str]) -> Union[_dt.datetime, str, None]:
    """An aware datetime; a timestamp this parser cannot read is kept as its text."""
    try:
        return parse_timestamp(value)
    except ModelError:
        return value


def plain(value: Any) -> Any:
    """An enum member as its value (for query strings, JSON bodies and set lookups)."""
    return value.value if isinstance(value, Enum) else value
