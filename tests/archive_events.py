"""Events as ``list_events`` returns them, for the archive tests of both backends."""

from __future__ import annotations

from typing import List

from flux0sync.rows import RawEvent


def raw_event(session: str, offset: object, event_id: str = "", text: str = "hi", **extra: object) -> RawEvent:
    """One user message; ``extra`` overrides (or adds) top-level fields, hostile values included."""
    doc = {
        "id": event_id or f"{session}-{offset}",
        "type": "message",
        "source": "user",
        "offset": offset,
        "correlation_id": "c",
        "data": {"type": "message", "parts": [{"type": "content", "content": text}]},
        "created_at": "2026-11-25T00:00:00Z",
        "deleted": False,
        "metadata": None,
    }
    doc.update(extra)
    return RawEvent.from_doc(doc)


def make_events(session: str, start: int, count: int, text: str = "hello") -> List[RawEvent]:
    """Offsets ``start..start+count-1`` of a session, ids ``<session>-<offset>``, texts ``<text> <offset>``."""
    return [raw_event(session, i, text=f"{text} {i}") for i in range(start, start + count)]
