from __future__ import annotations

from enum import Enum


class EventSourceDTO(str, Enum):
    USER = "user"
    AI_AGENT = "ai_agent"
    SYSTEM = "system"
