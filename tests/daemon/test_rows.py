"""The contract of rows.event_row and rows.event_rows: the inline tests of each column's common
case are only a shortcut. For any event, hostile ones included (lone surrogates, huge or
negative offsets, non-strings, empty ids, odd timestamps, non-ASCII digits, unknown types), the
row is exactly what each column's own helper gives, and the batch is in the same order as a
stable sort by offset; an event without a usable id raises the same typed error."""

from __future__ import annotations

import json
from typing import Any, List, Optional

from flux0sync import rows
from flux0sync.rows import MAX_OFFSET, EventRow, RawEvent, UnidentifiableEventError, event_row, event_rows
from hypothesis import given, settings
from hypothesis import strategies as st

_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "message", "status", "user", "ai_agent", "content", "x\ud83d", "\udcff", "é", "٣"]),
)
_TIMESTAMPS = st.one_of(
    st.sampled_from(
        [
            "2026-11-25T12:00:00.000000Z",
            "2026-11-25 12:00",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.123456789+02:00",
            "2026-١١-25T12:00:00Z",
            "٢٠٢٦-11-25T12:00:00Z",
            "2026-11-25T12:00:00Z\n",
            "2026-11-25T12:00:00.0000000000Z",
            "2026-11-25T12:00:00" + "0" * 40,
        ]
    ),
    st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,10})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?\Z"
    ),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([-1, 0, MAX_OFFSET, MAX_OFFSET + 1, 2**64]),
    st.floats(allow_nan=False),
    _TEXT,
)
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=2), st.dictionaries(_TEXT, _SCALARS, max_size=2))
_PART = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["content", "other"]), "content": st.one_of(_TEXT, _SCALARS)}),
    _VALUES,
)
_DATA = st.one_of(st.fixed_dictionaries({"parts": st.one_of(st.lists(_PART, max_size=3), _VALUES)}), _VALUES)
_DOC = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(_TEXT, _SCALARS),
        "offset": st.one_of(st.integers(min_value=-3, max_value=40), _SCALARS),
        "type": st.one_of(st.just("message"), _TEXT, _SCALARS),
        "source": st.one_of(_TEXT, _SCALARS),
        "correlation_id": st.one_of(_TEXT, _SCALARS),
        "created_at": st.one_of(_TIMESTAMPS, _TEXT, _SCALARS),
        "deleted": st.one_of(st.booleans(), _SCALARS),
        "data": _DATA,
    },
)


def _raw_event(doc: Any) -> RawEvent:
    return RawEvent(doc, json.dumps(doc, ensure_ascii=False))


def _by_the_helpers(session_id: str, event: RawEvent) -> EventRow:
    """The row, column by column, from each column's own helper (the general path)."""
    rows.check_identity(session_id, event)
    doc = event.doc
    raw = event.text if rows.storable_text(event.text) is not None else rows.undecodable_raw(event.text)
    return (
        session_id,
        rows._column(doc.get("id")),
        rows.storable_offset(doc.get("offset")),
        rows._column(doc.get("type")),
        rows._column(doc.get("source")),
        rows.storable_text(doc.get("correlation_id")),
        rows._storable_timestamp(doc.get("created_at")),
        1 if doc.get("deleted") is True else 0,
        rows._message_text(doc),
        raw,
    )


def _outcome(make: Any, *args: Any) -> Any:
    try:
        return make(*args)
    except UnidentifiableEventError as exc:
        return ("error", str(exc))


@settings(max_examples=600, deadline=None)
@given(doc=st.one_of(_DOC, _VALUES))
def test_a_row_is_what_each_columns_helper_gives(doc: Any) -> None:
    event = _raw_event(doc)
    assert _outcome(event_row, "s", event) == _outcome(_by_the_helpers, "s", event)


@settings(max_examples=300, deadline=None)
@given(docs=st.lists(_DOC, max_size=8))
def test_a_batch_is_in_stable_offset_order_whatever_order_it_came_in(docs: List[Any]) -> None:
    events = [_raw_event(dict(doc, id=f"e{n}")) for n, doc in enumerate(docs)]

    def order(row: EventRow) -> "tuple[bool, int]":
        offset: Optional[int] = row[2]
        return (offset is None, offset if offset is not None else 0)

    expected = sorted((_by_the_helpers("s", event) for event in events), key=order)
    assert event_rows("s", events) == expected


def test_a_well_formed_event_keeps_its_values_as_they_are() -> None:
    doc = {
        "id": "e1",
        "offset": 7,
        "type": "message",
        "source": "user",
        "correlation_id": "RID::1",
        "created_at": "2026-11-25T12:00:00.000000Z",
        "deleted": False,
        "data": {"parts": [{"type": "content", "content": "hello"}]},
    }
    event = _raw_event(doc)
    assert event_row("s", event) == (
        "s",
        "e1",
        7,
        "message",
        "user",
        "RID::1",
        "2026-11-25T12:00:00.000000Z",
        0,
        "hello",
        event.text,
    )
