"""Turn what the server sent into archive rows that any SQL store can hold.

The server's bytes are hostile: a lone surrogate, an offset of 2**63 or a created_at from the
year 300000 must never stop the archive. ``raw`` keeps the event exactly as the server sent it
(the element's own JSON text, where a lone surrogate is still an ASCII ``\\ud83d`` escape), and
an indexed column whose value cannot be stored as is becomes NULL (or, for the NOT NULL
identity columns, the value's JSON escape), so nothing is lost and nothing fails. The one text
no store can hold as is, an event holding bytes that are not UTF-8, is kept as a JSON string
(:func:`undecodable_raw`): never an event's own text, which is an object.
"""

from __future__ import annotations

import decimal
import json
import re
from typing import Any, Callable, Iterable, List, Mapping, NamedTuple, Optional, Tuple

from flux0lite import Event, Flux0Error

from .jsonread import Decoder, shallow_event

__all__ = [
    "count_clashes",
    "RawEvent",
    "EventRow",
    "check_identity",
    "event_row",
    "event_rows",
    "searchable_text",
    "storable_text",
    "stored_message_text",
    "storable_offset",
    "dumps_lossless",
    "undecodable_raw",
    "MAX_OFFSET",
]

MAX_OFFSET = 2**63 - 1  # SQLite's (and PostgreSQL's bigint) largest integer
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?\Z")
_MAX_TIMESTAMP_CHARS = 40
# _TIMESTAMP for ASCII text (event_row's common case; the same match there: \d is [0-9] in
# ASCII), in a third less time: no capturing groups, no Unicode digit class.
_ASCII_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9][0-9]-[0-9][0-9][T ][0-9][0-9]:[0-9][0-9]"
    r"(?::[0-9][0-9](?:\.[0-9]{1,9})?)?(?:Z|[+-][0-9][0-9]:?[0-9][0-9])?\Z"
)


class RawEvent(NamedTuple):
    """One event of a ``list_events`` answer: the decoded document and its exact JSON text.

    A named tuple, not a frozen dataclass: one is built for every event the daemon reads, and
    a frozen dataclass's two ``object.__setattr__`` calls make it 1.6 times as slow to build.
    """

    doc: Any
    text: str

    @classmethod
    def from_doc(cls, doc: Any) -> "RawEvent":
        return cls(doc, dumps_lossless(doc))

    @classmethod
    def from_event(cls, event: Event) -> "RawEvent":
        return cls.from_doc(event.to_dict())


# session_id, id, offset, type, source, correlation_id, created_at, deleted, text, raw
EventRow = Tuple[str, str, Optional[int], str, str, Optional[str], Optional[str], int, Optional[str], str]


class UnidentifiableEventError(Flux0Error):
    """An event without a usable id: it cannot be stored exactly once, so its session fails."""


def storable_text(value: Any) -> Optional[str]:
    """``value`` if it is a string SQLite can store as UTF-8, else None."""
    if type(value) is not str:
        return None
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # (a str holds a pair only as one astral character)


def searchable_text(text: str) -> str:
    """A message's text as its ``text`` column holds it, to be searched and shown: each
    character UTF-8 cannot carry (a lone surrogate: half an emoji, a byte that was not UTF-8)
    as U+FFFD, so one such character does not hide every word of the message (``raw`` keeps
    the exact text). Each one on its own: two halves side by side (from two parts, or an
    escape before a byte that was not UTF-8) are no character the server sent."""
    if storable_text(text) is not None:
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


# A NOT NULL column's stand-in for a value JSON cannot write back here: nested deeper than the
# encoder's recursion, or one the reader left unread (jsonread.TOO_LARGE, too large to build).
UNWRITABLE_COLUMN = '"<a JSON value too deep or too large to index>"'


def _escaped(value: Any) -> str:
    """A NOT NULL column's stand-in for an unstorable value: its ASCII JSON text (an integer of
    over 4,300 digits, read as a Decimal, its digits), or UNWRITABLE_COLUMN. Never raises: a
    hostile type or source must not stop the daemon."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=True)
    except (RecursionError, TypeError, ValueError):
        return UNWRITABLE_COLUMN


def storable_offset(value: Any) -> Optional[int]:
    if type(value) is int and 0 <= value <= MAX_OFFSET:
        return value
    return None


def _storable_timestamp(value: Any) -> Optional[str]:
    text = value if type(value) is str and value.isascii() else storable_text(value)
    if text is None or len(text) > _MAX_TIMESTAMP_CHARS or not _TIMESTAMP.match(text):
        return None
    return text if "0001" <= text[:4] <= "9999" else None


def _escape_surrogate(match: "re.Match[str]") -> str:
    return f"\\u{ord(match.group()):04x}"


def undecodable_raw(text: str) -> str:
    """The ``raw`` of an event whose text held bytes that are not UTF-8: the text as a JSON
    string, with each such byte's lone surrogate (U+DC80..U+DCFF, surrogateescape) as its
    ``\\udcXX`` escape, so ``json.loads(raw).encode("utf-8", "surrogateescape")`` gives back
    the server's bytes.

    Writing the byte's escape into the event's own JSON instead (the object read back as the
    value read) is ambiguous twice over: after a lone high-surrogate escape such as
    ``\\ud83d`` every JSON reader takes ``\\ud83d\\udcff`` for one character (U+1F4FF), and a
    server's own ``\\udcff`` escape reads the same as the byte 0xFF. Here neither can happen:
    the server's text, escapes included, is a string's content, whose only lone surrogates are
    bytes (text read with surrogateescape holds no other: UTF-8 cannot encode one, so a high
    surrogate never comes before a byte's), and an event is a JSON object, so a raw that is a
    string never is any event's own text. One raw, one answer.
    """
    return _LONE_SURROGATE.sub(_escape_surrogate, json.dumps(text, ensure_ascii=False))


def dumps_lossless(doc: Any) -> str:
    """Compact JSON; lone surrogates (which UTF-8 cannot carry) as ASCII escapes.

    Exact for a value read from UTF-8 text, where a JSON reader already made one character of a
    high surrogate's escape and a low one's after it; not for an event's text holding bytes
    that are not UTF-8 (:func:`undecodable_raw` keeps those).
    """
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    if storable_text(text) is None:
        text = json.dumps(doc, ensure_ascii=True, separators=(",", ":"))
    return text


def _message_text(doc: Mapping[str, Any]) -> Optional[str]:
    """What ``Event.text`` gives for a message event, read straight from the JSON.

    Building the model only to take its text cost a quarter of the daemon's time. Unlike the
    model, a malformed field elsewhere in the event does not hide the text from search.
    """
    data = doc.get("data") if doc.get("type") == "message" else None
    parts = data.get("parts") if type(data) is dict else None
    if type(parts) is not list:
        return None
    pieces = []
    for part in parts:
        if type(part) is dict and part.get("type") == "content":
            content = part.get("content")
            if type(content) is str:
                pieces.append(content)
    text = pieces[0] if len(pieces) == 1 else "".join(pieces)
    return (text if text.isascii() else searchable_text(text)) or None


def stored_message_text(raw: str) -> Optional[str]:
    """The ``text`` column of a stored message event, read again from its ``raw`` (for an
    archive written before :func:`searchable_text`), or None where it has none.

    Read as the daemon reads an event too costly to build (:func:`jsonread.shallow_event`):
    nothing is built but the row's members and the text of the content parts, whatever the
    raw's size or shape (a tool call of a million tiny items would take ~300 MB built)."""
    try:
        if raw[:1] == '"':  # kept as text (bytes that were not UTF-8): the event's own JSON
            raw = json.loads(raw)
            if type(raw) is not str:
                return None
        start = len(raw) - len(raw.lstrip(" \t\n\r"))
        if raw[start : start + 1] != "{":
            return None
        doc, _ = shallow_event(raw, start, Decoder())
    except (ValueError, RecursionError):  # not JSON (cut short, say), or too deep: left as it was
        return None
    return _message_text(doc)


def _column(value: Any) -> str:
    """A NOT NULL text column: the value, or its JSON escape if UTF-8 cannot carry it or it is
    empty or no string."""
    if type(value) is str and value and value.isascii():
        return value
    return storable_text(value) or _escaped(value)


def _id_column(event_id: str) -> str:
    """An event's id column, one to one with its id (the key of its row in its session): the id
    as it is, or its JSON escape where UTF-8 cannot carry it or where it begins with a quote, as
    every escape does (an id that is the text of another's escape must not take its row)."""
    text = storable_text(event_id)
    return text if text is not None and text[:1] != '"' else _escaped(event_id)


def check_identity(session_id: str, event: RawEvent) -> None:
    """Raise UnidentifiableEventError if the event has no usable id."""
    doc = event.doc
    if not isinstance(doc, dict):
        raise UnidentifiableEventError(f"session {session_id}: an event is not a JSON object ({event.text[:80]!r})")
    event_id = doc.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise UnidentifiableEventError(f"session {session_id}: an event has no string id ({event.text[:80]!r})")


def event_row(session_id: str, event: RawEvent) -> EventRow:
    """The archive row for one event; raises UnidentifiableEventError if it has no usable id.

    Called for every event the daemon stores: each column's common case (an ASCII string, a
    plain offset, a well-formed timestamp) is tested inline, and only what fails that test
    goes through its helper, which gives the same value for what passes it.
    """
    doc = event.doc
    if type(doc) is not dict:
        check_identity(session_id, event)  # raises: not a JSON object
    get = doc.get
    event_id = get("id")
    if type(event_id) is not str or not event_id or not event_id.isascii() or event_id[0] == '"':
        check_identity(session_id, event)  # raises if the id is no string or empty
        event_id = _id_column(event_id)
    raw = event.text
    if not raw.isascii() and storable_text(raw) is None:  # bytes that are not UTF-8
        raw = undecodable_raw(raw)
    offset = get("offset")
    event_type = get("type")
    source = get("source")
    correlation_id = get("correlation_id")
    created_at = get("created_at")
    if not (
        type(created_at) is str
        and created_at.isascii()
        and len(created_at) <= _MAX_TIMESTAMP_CHARS
        and _ASCII_TIMESTAMP.match(created_at)
        and "0001" <= created_at[:4] <= "9999"
    ):
        created_at = _storable_timestamp(created_at)
    text = None
    if event_type == "message":
        # the common message: one content part of ASCII text; anything else is _message_text's
        data = get("data")
        parts = data.get("parts") if type(data) is dict else None
        part = parts[0] if type(parts) is list and len(parts) == 1 else None
        if type(part) is dict and part.get("type") == "content":
            text = part.get("content")
        if not (type(text) is str and text and text.isascii()):
            text = _message_text(doc)
    return (
        session_id,
        event_id,
        offset if type(offset) is int and 0 <= offset <= MAX_OFFSET else None,
        event_type if type(event_type) is str and event_type and event_type.isascii() else _column(event_type),
        source if type(source) is str and source and source.isascii() else _column(source),
        correlation_id if type(correlation_id) is str and correlation_id.isascii() else storable_text(correlation_id),
        created_at,
        1 if get("deleted") is True else 0,
        text,
        raw,
    )


def _offset_order(row: EventRow) -> Tuple[bool, int]:
    return (row[2] is None, row[2] if row[2] is not None else 0)


def event_rows(session_id: str, events: Iterable[RawEvent]) -> List[EventRow]:
    """The rows of one session's batch in offset order (unstorable offsets last); raises
    UnidentifiableEventError if any event has no usable id."""
    rows = [event_row(session_id, event) for event in events]
    offsets = [row[2] if row[2] is not None else -1 for row in rows]  # -1: no stored offset is negative
    if offsets != sorted(offsets) or -1 in offsets:  # an answer comes in order: checked in C, not sorted
        rows.sort(key=_offset_order)
    return rows


def count_clashes(
    rows: Iterable[EventRow],
    clash: Callable[[EventRow], Optional[str]],
    record: Callable[[EventRow, str], int],
) -> Tuple[int, int]:
    """(rows that clash with stored ones, conflicts newly recorded), for a batch whose insert
    ignored some rows: ``clash`` says why a row differs from the stored one (None: a duplicate),
    ``record`` keeps it in the conflicts table and returns 1 if that is new. Both backends call it."""
    clashes = conflicts = 0
    for row in rows:
        reason = clash(row)
        if reason is not None:
            clashes += 1
            conflicts += record(row, reason)
    return clashes, conflicts
