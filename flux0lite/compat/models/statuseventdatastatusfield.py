from __future__ import annotations

from enum import Enum


class StatusEventDataStatusField(str, Enum):
    ACKNOWLEDGED = "acknowledged"
    CANCELLED = "cancelled"
    PROCESSING = "processing"
    READY = "ready"
    TYPING = "typing"
    ERROR = "error"
    COMPLETED = "completed"
