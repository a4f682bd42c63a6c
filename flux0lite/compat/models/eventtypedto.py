from __future__ import annotations

from enum import Enum


class EventTypeDTO(str, Enum):
    MESSAGE = "message"
    TOOL = "tool"
    STATUS = "status"
    CUSTOM = "custom"
