"""An event too costly to build whole (many small items) is archived, exactly, within the unit's memory.

``jsonread.shallow_event`` reads such an event as far as its archive row needs it; the contract
with the general path (the whole value built, then ``rows.event_row``): the same row and the
same end for any JSON text, or an error for text that is not JSON where the general path fails
too. The daemon keeps the event's exact text as its ``raw``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
from flux0sync import jsonread
from flux0sync.jsonread import Decoder, built_cost, shallow_event
from flux0sync.rows import UNWRITABLE_COLUMN, RawEvent, event_row
from hypothesis import given, settings
from hypothesis import strategies as st

from flux0lite.jsonstream import iter_array
from tests.conftest import Strength
from tests.daemon.helpers import execute, one_session
from tests.daemon.hostile import event
from tests.daemon.test_adversary6b_fixes import _serve_gzip_bodies, linux_only, memory_max_mb, peak_rss_mb
from tests.fakeserver import FakeFlux0

# An object drawn as its members in order, a key possibly repeated (json keeps the last).
Members = List[Tuple[str, Any]]


class Obj:
    def __init__(self, members: Members) -> None:
        self.members = members


def render(value: Any, space: str) -> str:
    if isinstance(value, Obj):
        inner = f",{space}".join(f"{json.dumps(k)}{space}:{space}{render(v, space)}" for k, v in value.members)
        return "{" + space + inner + space + "}"
    if isinstance(value, list):
        return "[" + f",{space}".join(render(v, space) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.sampled_from(["message", "content", "status", "", "\udc80x", "2026-11-25T00:00:00Z", "a,{[:"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(st.tuples(st.text(max_size=3), inner), max_size=4).map(Obj)
    ),
    max_leaves=12,
)
PART = st.one_of(
    VALUES,
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["type"]), st.sampled_from(["content", "x"]) | VALUES),
            st.tuples(st.sampled_from(["content"]), st.text(max_size=5) | VALUES),
            st.tuples(st.sampled_from(["junk", "a"]), VALUES),
        ),
        max_size=4,
    ).map(Obj),
)
DATA = st.one_of(
    VALUES,
    st.lists(
        st.one_of(
            st.tuples(st.just("parts"), st.lists(PART, max_size=5) | VALUES),
            st.tuples(st.sampled_from(["type", "junk"]), VALUES),
        ),
        max_size=3,
    ).map(Obj),
)
ROW_FIELDS = ["id", "offset", "type", "source", "correlation_id", "created_at", "deleted"]


def events(field_values: Any) -> Any:
    member = st.one_of(
        st.tuples(st.sampled_from(ROW_FIELDS), field_values),
        st.tuples(st.just("type"), st.just("message")),
        st.tuples(st.just("id"), st.text(min_size=1, max_size=4)),
        st.tuples(st.just("data"), DATA),
        st.tuples(st.sampled_from(["metadata", "x"]), VALUES),
    )
    return st.lists(member, max_size=10).map(Obj)


def general(text: str) -> Tuple[Any, int]:
    return Decoder().read_built(text, 0)


def row_of(doc: Any, text: str) -> Any:
    try:
        return event_row("s", RawEvent(doc, text))
    except Exception as exc:  # no usable id: the same error type and message both ways
        return (type(exc), str(exc))


@settings(max_examples=300, deadline=None)
@given(events(VALUES), st.sampled_from(["", " ", "\n "]))
def test_the_shallow_read_gives_the_row_and_end_of_the_whole_value(doc: Obj, space: str) -> None:
    text = render(doc, space)
    whole, end = general(text)
    shallow, shallow_end = shallow_event(text, 0, Decoder())
    assert shallow_end == end == len(text)
    assert row_of(shallow, text) == row_of(whole, text)


@settings(max_examples=300, deadline=None)
@given(events(VALUES), st.data())
def test_text_that_is_not_json_fails_both_ways(doc: Obj, data: st.DataObject) -> None:
    text = render(doc, " ")
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    insert = data.draw(st.sampled_from(["", ",", "}", "]", "{", '"', ":", "x", "\\", "\x01"]))
    broken = text[:cut] + insert + text[cut + data.draw(st.integers(min_value=0, max_value=2)) :]
    try:
        whole = general(broken)
    except ValueError:
        whole = None
    if not broken.startswith("{"):
        return  # shallow_event reads objects only (raw_decode sends nothing else to it)
    try:
        shallow = shallow_event(broken, 0, Decoder())
    except ValueError:
        shallow = None
    assert (shallow is None) == (whole is None), broken
    if whole is not None and shallow is not None:
        assert shallow[1] == whole[1]
        assert row_of(shallow[0], broken[: whole[1]]) == row_of(whole[0], broken[: whole[1]])


def _chunked(body: bytes, size: int) -> Iterator[bytes]:
    return (body[i : i + size] for i in range(0, len(body), size))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=6), st.integers(1, 5000))
def test_a_stream_of_costly_and_small_events_reads_the_rows_of_the_whole_values(widths: List[int], chunk: int) -> None:
    """The reader's quick loop leaves an element far from the buffer's end to raw_decode, which
    measures it first: with a small threshold and cap, events with many items take the shallow
    read, the others the C scanner, in any chunking; the rows are those of the whole values."""
    docs = [event("s", offset, text=f"t{offset}", junk=[{"a": {}}] * width) for offset, width in enumerate(widths)]
    body = json.dumps({"data": docs}).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonread, "SHALLOW_MIN_CHARS", 200)
        patch.setattr(jsonread, "MAX_BUILT_COST", 120 * 60)
        decoder = Decoder(shallow_events=True)
        read = list(iter_array(_chunked(body, chunk), key="data", decoder=decoder, element=RawEvent))
    assert [e.text for e in read] == [json.dumps(doc) for doc in docs]
    assert [event_row("s", e) for e in read] == [event_row("s", RawEvent(doc, json.dumps(doc))) for doc in docs]
    costly = [built_cost(e.text, 0, len(e.text)) > 120 * 60 for e in read]  # each is over 200 characters
    assert [("junk" not in e.doc) for e in read] == costly  # the costly ones were not built


@settings(max_examples=300, deadline=None)
@given(events(VALUES))
def test_with_row_members_and_parts_read_the_careful_way_the_row_is_the_same(doc: Obj) -> None:
    """Caps so low that every array or object a row member holds is TOO_LARGE and every part is
    walked, not built: the same row, but for a type or source holding one, whose column is then
    the fixed note (the whole value's: its JSON text)."""
    text = render(doc, "")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonread, "MAX_ROW_MEMBER_CHARS", 0)
        patch.setattr(jsonread, "MAX_ROW_MEMBER_COST", -1)
        shallow, end = shallow_event(text, 0, Decoder())
    whole = general(text)[0]
    assert end == len(text)
    expected = row_of(whole, text)
    if isinstance(expected, tuple) and len(expected) == 10:
        fixed = list(expected)
        for column, key in ((3, "type"), (4, "source")):
            if isinstance(whole.get(key), (list, dict)):
                fixed[column] = UNWRITABLE_COLUMN
        expected = tuple(fixed)
    assert row_of(shallow, text) == expected


def test_a_row_member_too_large_or_too_deep_is_not_built_and_its_column_is_what_such_a_value_gives() -> None:
    wide, deep = [{"a": {}}] * 10, "[" * 5000 + "]" * 5000
    text = json.dumps(event("s", 1, created_at=wide, correlation_id=wide, deleted=wide))[:-1]
    text += ', "type": ' + deep + ', "source": ' + json.dumps(wide) + "}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonread, "MAX_ROW_MEMBER_CHARS", 20)
        doc, end = shallow_event(text, 0, Decoder())
    assert end == len(text)
    assert all(doc[key] is jsonread.TOO_LARGE for key in ("created_at", "correlation_id", "deleted", "type", "source"))
    row = event_row("s", RawEvent(doc, text))
    assert row[3:8] == (UNWRITABLE_COLUMN, UNWRITABLE_COLUMN, None, None, 0)


def test_a_type_too_deep_to_write_back_or_of_5000_digits_is_indexed_not_fatal() -> None:
    """rows.event_row writes a type or source that is no string as its JSON text: for one nested
    past the encoder's recursion that is the fixed note, for a 5,000-digit integer (a Decimal
    as read) its digits; it raised RecursionError and TypeError, which stopped the daemon."""
    deep_text = '{"id": "e", "type": ' + "[" * 100_000 + "]" * 100_000 + ', "source": 1' + "0" * 5000 + "}"
    doc = Decoder().decode(deep_text)
    row = event_row("s", RawEvent(doc, deep_text))
    assert row[3] == UNWRITABLE_COLUMN and row[4] == "1" + "0" * 5000


def test_an_answers_other_members_are_checked_not_built_nor_taken_for_events() -> None:
    """{"meta": <a wide object with a wide "type">, "data": [...]}: the member beside the events
    array is read with the decoder's skip_member (checked, nothing built); all events are read."""
    meta = {"type": [{"a": {}}] * 300, "junk": [{"a": {}}] * 300}
    docs = [event("s", offset) for offset in range(3)]
    body = json.dumps({"meta": meta, "data": docs, "after": meta}).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonread, "SHALLOW_MIN_CHARS", 100)
        patch.setattr(jsonread, "MAX_BUILT_COST", 120 * 50)
        read = list(iter_array(_chunked(body, 700), key="data", decoder=Decoder(shallow_events=True), element=RawEvent))
    assert [e.text for e in read] == [json.dumps(doc) for doc in docs]
    with pytest.raises(Exception, match="malformed or truncated JSON"):
        list(
            iter_array([body.replace(b'"junk": [', b'"junk": [}', 1)], key="data", decoder=Decoder(shallow_events=True))
        )


@linux_only
def test_a_wide_event_is_archived_exactly_within_the_units_memory(
    tmp_path: Path, fake_flux0: FakeFlux0, strength: Strength
) -> None:
    """An event of many tiny items (built whole: ~36 MB a MiB of text) among ordinary ones: the
    daemon archives them all, the wide one's raw exactly as sent and its text searchable, and
    its memory stays far below what building it would take."""
    sid = one_session(fake_flux0)
    items = strength.pick(full=700_000, quick=300_000)  # 6 MiB / 2.6 MiB of '{"":{}}' items
    wide = event(sid, 1, text="needle", junk=[{"": {}}] * items)
    docs = [event(sid, 0), wide, event(sid, 2)]
    texts = [json.dumps(doc, separators=(",", ":")) for doc in docs]
    body = ('{"data":[' + ",".join(texts) + "]}").encode()
    _serve_gzip_bodies(fake_flux0, {sid: gzip.compress(body, 1)})
    db = str(tmp_path / "a.sqlite3")
    peak = peak_rss_mb(["--db", db, "--once", "--workers", "1"], fake_flux0.server.url, timeout=120)
    assert execute(db, 'SELECT "offset", raw FROM events ORDER BY "offset"') == [(i, t) for i, t in enumerate(texts)]
    assert execute(db, "SELECT count(*) FROM events_fts WHERE events_fts MATCH 'needle'") == [(1,)]
    built = len(texts[1]) * 36 // 2**20  # MB that building it whole would take at least
    assert peak < min(memory_max_mb() * 3 // 4, 40 + built // 2), (peak, built)


def test_an_element_that_is_no_object_and_too_costly_is_checked_not_built() -> None:
    """An event that is a wide array fails as no object, as when built; a listing's wide entry is
    left out (TOO_LARGE); text that is not JSON is an error either way."""
    text = json.dumps([{"a": {}}] * 200)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonread, "SHALLOW_MIN_CHARS", 100)
        patch.setattr(jsonread, "MAX_BUILT_COST", 120 * 50)
        for decoder in (Decoder(shallow_events=True), Decoder(build_deep=False, leave_out_large=True)):
            assert decoder.raw_decode(text + " ,", 0) == (jsonread.TOO_LARGE, len(text))
            assert decoder.unusual == 1 and decoder.deep is jsonread.TOO_LARGE
            with pytest.raises(json.JSONDecodeError):
                decoder.raw_decode(text[:-1] + "}", 0)
        with pytest.raises(Exception, match="not a JSON object"):
            event_row("s", RawEvent(jsonread.TOO_LARGE, text))


@linux_only
def test_an_event_nested_too_deep_to_build_is_archived_exactly(tmp_path: Path, fake_flux0: FakeFlux0) -> None:
    """Over MAX_DEEP_CHARS and too deep for the C scanner (2 million levels, 4 MB): the daemon's
    event reader refused it, which failed its session at every poll; it is archived now, its
    raw as sent, its row read, within a small part of the unit's memory."""
    sid = one_session(fake_flux0)
    depth = 2_000_000
    head = json.dumps(event(sid, 1, text="deep needle"), separators=(",", ":"))[:-1]
    deep = head + ',"junk":' + "[" * depth + "]" * depth + "}"
    texts = [json.dumps(event(sid, 0), separators=(",", ":")), deep, json.dumps(event(sid, 2), separators=(",", ":"))]
    _serve_gzip_bodies(fake_flux0, {sid: gzip.compress(('{"data":[' + ",".join(texts) + "]}").encode(), 1)})
    db = str(tmp_path / "a.sqlite3")
    peak = peak_rss_mb(["--db", db, "--once"], fake_flux0.server.url, timeout=120)
    assert execute(db, 'SELECT "offset", raw FROM events ORDER BY "offset"') == list(enumerate(texts))
    assert execute(db, 'SELECT text FROM events WHERE "offset" = 1') == [("deep needle",)]
    assert peak < 100, peak


def test_a_type_nested_too_deep_or_of_5000_digits_does_not_stop_the_daemon(
    tmp_path: Path, fake_flux0: FakeFlux0
) -> None:
    """hadv9 11/12: the daemon exited 1 ("unexpected RecursionError" / "TypeError") at every
    start; now those events are archived and so is another session."""
    agent = fake_flux0.add_agent()
    sid, other = fake_flux0.add_session(agent), fake_flux0.add_session(agent)
    texts = [json.dumps(event(sid, offset), separators=(",", ":")) for offset in range(3)]
    texts[1] = texts[1].replace('"type":"message"', '"type":' + "[" * 100_000 + "]" * 100_000)
    texts[2] = texts[2].replace('"source":"user"', '"source":1' + "0" * 5000)
    plain = [json.dumps(event(other, offset), separators=(",", ":")) for offset in range(2)]
    _serve_gzip_bodies(
        fake_flux0,
        {
            sid: gzip.compress(('{"data":[' + ",".join(texts) + "]}").encode()),
            other: gzip.compress(('{"data":[' + ",".join(plain) + "]}").encode()),
        },
    )
    db = str(tmp_path / "a.sqlite3")
    peak_rss_mb(["--db", db, "--once"], fake_flux0.server.url)
    assert execute(db, 'SELECT session_id, "offset", type, source FROM events ORDER BY session_id, "offset"') == [
        (sid, 0, "message", "user"),
        (sid, 1, UNWRITABLE_COLUMN, "user"),
        (sid, 2, "message", "1" + "0" * 5000),
        (other, 0, "message", "user"),
        (other, 1, "message", "user"),
    ]


def test_a_listings_wide_entries_are_handed_over_one_page_each() -> None:
    """hadv10 06: pages closed by 200 entries or 4 Mi characters only, so a few entries of ~1 MiB
    of tiny items (each under the costly line) were built and typed together: 296-351 MB. A page
    is closed by what its entries may decode to too (element_cost), as an events batch is."""
    from flux0sync.jobs import LISTING_PAGE, Warnings, _emit_pages

    from flux0lite.jsonstream import Element

    wide = json.dumps({"id": "s", "extra": [{"": {"": {}}}] * 60_000})  # ~0.8 MiB, ~50 MB estimated: over the cap alone
    small = json.dumps({"id": "t"})
    elements = [Element(json.loads(text), text) for text in [small, wide, wide, small, wide]]
    pages: List[List[Any]] = []
    _emit_pages(elements, lambda value: value, "list sessions", Warnings(), pages.append)
    assert [len(page) for page in pages] == [2, 1, 2, 0] and LISTING_PAGE > 5


def test_a_refetched_copy_with_a_5000_digit_integer_is_the_same_event_not_a_clash() -> None:
    """hadv10 02: copies were compared with json.loads, which refuses such an integer, so a
    re-fetch in other spacing was kept in conflicts; the daemon's own decoder reads it."""
    from flux0sync.store import _same

    stored = '{"id":"e","x":' + "9" * 5000 + "}"
    assert _same(stored, stored.replace(":", ": "))
    assert not _same(stored, stored.replace("9}", "8}"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \t\n\u00a0\u3000x"), max_size=600), st.integers(1, 120))
def test_a_search_hits_snippet_is_the_whole_texts_read_from_as_little_as_it_needs(text: str, width: int) -> None:
    """hadv10 05: `flux0-sync search` split a hit's whole text (16 MiB: over 300 MB) to print 100 characters."""
    from flux0sync.cli import _snippet

    assert _snippet(text, width) == " ".join(text.split())[:width]


def test_a_refetched_copy_holding_a_byte_that_is_not_utf8_in_other_spacing_is_the_same_event() -> None:
    """hadv10 03: such an event's raw is its text as a JSON string (rows.undecodable_raw), and
    two of them were compared as strings, so other spacing made a duplicate a clash."""
    from flux0sync.rows import undecodable_raw
    from flux0sync.store import _same

    text = '{"id":"e","data":{"text":"caf\udce9"}}'  # 0xE9 alone, read with surrogateescape
    assert _same(undecodable_raw(text), undecodable_raw(text.replace(":", ": ")))
    assert not _same(undecodable_raw(text), undecodable_raw(text.replace("caf", "cab")))
