"""flux0's ``chunk`` and ``status`` events read by one regular expression each.

flux0 writes its stream events with ``json.dumps``' default separators and its keys in one
order, and these two shapes are nearly every event of a reply::

    {"correlation_id": S, "event_id": S, "seq": N, "patches": P,
     "metadata": {"agent_id": S, "agent_name": S}, "timestamp": F}
    {"id": S, "source": S, "type": S, "correlation_id": S,
     "data": {"type": S, "acknowledged_offset": N, "status": S, "data": D}, "metadata": null}

Reading them with the JSON scanner and then the generic model readers costs about twice what
one match of the whole text and building the models from its groups costs, which is most of
what typing a stream costs over ``json.loads``. Only text of exactly these shapes is read
here: S a string without escapes or control characters, N an integer of at most 18 digits,
F a number with a fraction and no exponent (below 10**18: always finite), P one patch of such
strings (its value may hold escapes: json's own string reader reads it) or else any JSON array,
D ``{}`` or else any JSON value (the scanner reads P and D, and must end exactly where the
shape goes on; the patches of such a P are read by JsonPatch's reader).

A reader gives None for any other text (other spacing or key order, an escape in the
envelope, a longer number, null where a string was...), and the general path decides, errors
included. Its contract is ``tests/test_streaming_shapes.py``: a text the reader takes reads to
the same model (==, repr, to_dict, field types, instance layout) as the general path reads it,
or raises the general path's error.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Optional, Tuple

from .jsonmodel import spec_of
from .models import ChunkEvent, JsonPatch, StatusEvent, StatusEventData

__all__ = ["scan_json", "chunk_reader", "status_reader"]

# The JSON scanner that json.loads calls (C where CPython has it): a value from a position, and
# where it ends. It raises StopIteration where no value starts (whitespace too).
# (JSONDecoder sets scan_once in __init__; typeshed does not declare it.)
scan_json: Callable[[str, int], Tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# The scanner's string reader (from the character after the opening quote; strict: no control
# characters): the string a JSON string's text decodes to, and where it ends.
scan_string: Callable[[str, int, bool], Tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]

ShapeReader = Callable[[str], Any]

_STRING = r'"([^"\\\x00-\x1f]*)"'  # what json decodes to the same text, character for character
# a string with escapes too (the escapes are json's to read: scanstring, as the scanner does)
_ESCAPED_STRING = r'"([^"\\\x00-\x1f]*(?:\\.[^"\\\x00-\x1f]*)*)"'
_INT = r"(-?(?:0|[1-9][0-9]{0,17}))"  # far below int()'s digit limit
_SECONDS = r"(-?(?:0|[1-9][0-9]{0,17})\.[0-9]+)"  # float() of it is finite, as json makes it

_CHUNK = (
    r'\{"correlation_id": <s>, "event_id": <s>, "seq": <int>, "patches": '
    r'(?:\[\{"op": <s>, "path": <s>, "value": <escaped>\}\]|(\[.*\])), '
    r'"metadata": \{"agent_id": <s>, "agent_name": <s>\}, "timestamp": <seconds>\}'
)
_STATUS = (
    r'\{"id": <s>, "source": <s>, "type": <s>, "correlation_id": <s>, '
    r'"data": \{"type": <s>, "acknowledged_offset": <int>, "status": <s>, "data": (?:\{\}|(.*))\}, '
    r'"metadata": null\}'
)


def _compiled(shape: str) -> Callable[[str], Optional["re.Match[str]"]]:
    pattern = (
        shape.replace("<s>", _STRING)
        .replace("<escaped>", _ESCAPED_STRING)
        .replace("<int>", _INT)
        .replace("<seconds>", _SECONDS)
    )
    return re.compile(pattern, re.DOTALL).fullmatch


def _json_at(text: str, start: int, end: int) -> Tuple[bool, Any]:
    """(True, the JSON value text[start:end] holds), or (False, None) where it holds no one
    value (the general path then says what is wrong)."""
    try:
        value, stop = scan_json(text, start)
    except (StopIteration, ValueError, RecursionError):
        return False, None
    return stop == end, value


def _never(text: str) -> None:
    return None


def chunk_reader() -> ShapeReader:
    """A reader of chunk event texts of flux0's shape (made on first need: it compiles a pattern)."""
    match = _compiled(_CHUNK)
    chunk_twin, patch_twin = spec_of(ChunkEvent).twin, spec_of(JsonPatch).twin
    read_patch = spec_of(JsonPatch).read
    if chunk_twin is None or patch_twin is None:  # models no longer built as the readers build them
        return _never

    def read_chunk(text: str) -> Optional[ChunkEvent]:
        found = match(text)
        if found is None:
            return None
        correlation_id, event_id, seq, op, path, value, patches_json, agent_id, agent_name, seconds = found.groups()
        if patches_json is None:  # one patch of strings: built here, as JsonPatch's reader builds it
            if "\\" in value:
                try:
                    value, end = scan_string(text, found.start(6), True)
                except ValueError:
                    return None  # a bad escape: the general path says so
                if end != found.end(6) + 1:
                    return None
            patch = patch_twin()
            patch.__dict__ = {"op": op, "path": path, "value": value, "extra": {}}
            patch.__class__ = JsonPatch
            patches: Tuple[JsonPatch, ...] = (patch,)
        else:
            ok, items = _json_at(text, found.start(7), found.end(7))
            if not ok:
                return None
            patches = (read_patch(items[0]),) if len(items) == 1 else tuple(map(read_patch, items))
        # The dict ChunkEvent's reader makes, in field order; it becomes the event's __dict__.
        event = chunk_twin()
        event.__dict__ = {
            "event_id": event_id,
            "seq": int(seq),
            "patches": patches,
            "correlation_id": correlation_id,
            "metadata": {"agent_id": agent_id, "agent_name": agent_name},
            "timestamp": float(seconds),
            "extra": {},
        }
        event.__class__ = ChunkEvent
        return event  # type: ignore[no-any-return]

    return read_chunk


def status_reader() -> ShapeReader:
    """A reader of status event texts of flux0's shape (made on first need: it compiles a pattern)."""
    match = _compiled(_STATUS)
    status_twin, data_twin = spec_of(StatusEvent).twin, spec_of(StatusEventData).twin
    if status_twin is None or data_twin is None:
        return _never

    def read_status(text: str) -> Optional[StatusEvent]:
        found = match(text)
        if found is None:
            return None
        event_id, source, kind, correlation_id, data_kind, offset, status, detail_json = found.groups()
        detail: Any = {}
        if detail_json is not None:
            ok, detail = _json_at(text, found.start(8), found.end(8))
            if not ok:
                return None
        data = data_twin()
        data.__dict__ = {
            "status": status,
            "acknowledged_offset": int(offset),
            "data": detail,
            "type": data_kind,
            "extra": {},
        }
        data.__class__ = StatusEventData
        event = status_twin()
        event.__dict__ = {
            "id": event_id,
            "correlation_id": correlation_id,
            "data": data,
            "source": source,
            "type": kind,
            "metadata": None,
            "extra": {},
        }
        event.__class__ = StatusEvent
        return event  # type: ignore[no-any-return]

    return read_status
