"""Defects a fifth reviewer found in the stores, each pinned by a test.

Every test names the repro it comes from (``/work/wt/hrev5/repros/NN-*.py`` at the time): a
deep event fetched again in other text raised RecursionError from the clash comparison (03); a
re-creation's reason carried the server's created_at raw, so a lone surrogate or a NUL stopped
the daemon and a huge one was copied into every moved row (01, 07); each re-creation round
copied the same events into ``conflicts`` again (05); and the same instant written differently
counted as a re-creation on Python 3.9/3.10 (02).
"""

from __future__ import annotations

import datetime
from typing import List

import pytest
from flux0sync.backend import open_store
from flux0sync.jsonread import Decoder
from flux0sync.rows import RawEvent
from flux0sync.store import _instant, _same, recreated_at, recreation_reason
from hypothesis import given, settings
from hypothesis import strategies as st

from flux0lite import Session
from tests.daemon.helpers import LISTING_ENTRY, execute
from tests.daemon.hostile import past_the_c_scanner, too_deep_for_the_c_scanner


def event(offset: int, event_id: str = "") -> RawEvent:
    return RawEvent.from_doc(
        {
            "id": event_id or f"e{offset}",
            "source": "user",
            "type": "message",
            "offset": offset,
            "correlation_id": "c",
            "deleted": False,
            "created_at": "2024-01-01T00:00:00Z",
            "data": {
                "type": "message",
                "participant": {"id": "u", "name": "u"},
                "parts": [{"type": "content", "content": f"hello {offset}"}],
            },
        }
    )


def listing(created_at: str) -> List[Session]:
    return [Session.from_dict({**LISTING_ENTRY, "created_at": created_at})]


# -- 03: a deep event fetched again in other text ----------------------------------------------------

DEPTH = past_the_c_scanner()  # past json.loads and == on this Python (150,000 cost up to 100x more)
HEAD = (
    '{"id":"e0","source":"ai_agent","type":"custom","offset":0,"correlation_id":"c","deleted":false,'
    '"created_at":"2024-01-01T00:00:00Z","data":'
)
DEEP = "[" * DEPTH + "]" * DEPTH
assert too_deep_for_the_c_scanner(DEEP)


def deep_event(text: str) -> RawEvent:
    doc, _ = Decoder().raw_decode(text)
    return RawEvent(doc, text)


def test_a_deep_event_fetched_again_in_other_text_is_a_clash_not_an_exception(archive_db: str) -> None:
    archive = open_store(archive_db)
    try:
        assert archive.write_batch("s1", [deep_event(HEAD + DEEP + "}")]).inserted == 1
        again = archive.write_batch("s1", [deep_event(HEAD + " " + DEEP + "}")])  # one space more
        same = archive.write_batch("s1", [deep_event(HEAD + DEEP + "}")])  # the very text: a duplicate
    finally:
        archive.close()
    assert (again.inserted, again.conflicts, again.checkpoint) == (0, 1, 0)
    assert (same.inserted, same.duplicates, same.conflicts) == (0, 1, 0)
    assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 1


def test_a_comparison_that_cannot_be_made_counts_as_different() -> None:
    assert _same(DEEP, DEEP)  # equal texts need no parse
    assert not _same(DEEP, " " + DEEP)
    assert not _same("[1]", "[1")
    assert _same('{"a": 1, "b": 2}', '{"b":2,"a":1}')


# -- 01, 07: the server's created_at in a re-creation's reason -----------------------------------------


@pytest.mark.parametrize(
    "created_at",
    ["2024-02-01T00:00:00\udc80", "2024-02-01T00:00:00\x00Z", "2024-02-01T00:00:00Z" + "x" * 100_000, "\ud800"],
    ids=["lone-surrogate", "nul", "huge", "only-a-surrogate"],
)
def test_a_hostile_created_at_that_is_no_instant_recreates_nothing(archive_db: str, created_at: str) -> None:
    archive = open_store(archive_db)
    try:
        archive.record_listing(None, listing(LISTING_ENTRY["created_at"]))
        archive.write_batch("s1", [event(o) for o in range(5)])
        listed = archive.record_listing(None, listing(created_at))
        checkpoint = archive.checkpoint("s1")
    finally:
        archive.close()
    assert listed[0].recreated is None  # hadv6 02: text that is not an instant never counts
    assert checkpoint == 4
    assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 0
    assert execute(archive_db, "SELECT created_at FROM sessions") == [(LISTING_ENTRY["created_at"],)]


def test_a_huge_created_at_recreates_the_session_and_the_reason_stays_small_and_ascii(archive_db: str) -> None:
    archive = open_store(archive_db)
    try:
        archive.record_listing(None, listing(LISTING_ENTRY["created_at"]))
        archive.write_batch("s1", [event(o) for o in range(5)])
        listed = archive.record_listing(None, listing("2024-02-01T00:00:00." + "1" * 100_000 + "Z"))
        checkpoint = archive.checkpoint("s1")
    finally:
        archive.close()
    assert listed[0].recreated is not None and listed[0].recreated[2] == 5
    assert checkpoint == -1
    reasons = [r for (r,) in execute(archive_db, "SELECT reason FROM conflicts")]
    assert len(reasons) == 5
    for reason in reasons:
        assert reason.isascii() and len(reason) < 300
        assert reason.startswith('session re-created (created_at "2024-01-01T00:00:00Z", then "2024-02-01T00:00:00.11')
    assert execute(archive_db, "SELECT count(*) FROM events")[0][0] == 0


def test_the_reason_quotes_each_created_at_escaped_and_shortened() -> None:
    reason = recreation_reason("2024-01-01T00:00:00Z", "\x00" + "y" * 100)
    assert reason == (
        'session re-created (created_at "2024-01-01T00:00:00Z", then "\\u0000' + "y" * 63 + '"...)'
        ": an event of its earlier conversation"
    )


# -- 05: a created_at that changes at every listing round ----------------------------------------------


def test_a_created_at_that_keeps_changing_stores_each_moved_event_once(archive_db: str) -> None:
    archive = open_store(archive_db)
    try:
        for minute in range(6):
            listed = archive.record_listing(None, listing(f"2024-01-01T00:{minute:02d}:00Z"))
            assert (listed[0].recreated is not None) is (minute > 0)
            archive.write_batch("s1", [event(o) for o in range(10)])  # the same conversation, read again
        archive.write_batch("s1", [event(3, "other")])  # a clash is still its own row
    finally:
        archive.close()
    moved = execute(archive_db, "SELECT reason FROM conflicts WHERE reason LIKE 'session re-created%'")
    assert len(moved) == 10
    assert all('"2024-01-01T00:00:00Z", then "2024-01-01T00:01:00Z"' in r for (r,) in moved)  # as first seen
    assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 11


def test_an_event_of_other_text_under_the_same_id_and_offset_is_moved_too(archive_db: str) -> None:
    archive = open_store(archive_db)
    try:
        archive.record_listing(None, listing("2024-01-01T00:00:00Z"))
        archive.write_batch("s1", [event(0)])
        archive.record_listing(None, listing("2024-01-02T00:00:00Z"))
        changed = event(0)
        archive.write_batch("s1", [RawEvent({**changed.doc, "deleted": True}, changed.text.replace("false", "true"))])
        archive.record_listing(None, listing("2024-01-03T00:00:00Z"))
    finally:
        archive.close()
    assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 2


# -- 02: the same instant written differently -----------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000000000Z"),
        ("2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00.500000Z"),
        ("2024-01-01T00:00:00.123456Z", "2024-01-01T00:00:00.1234560Z"),
        ("2024-01-01T00:00:00+0000", "2024-01-01T00:00:00Z"),
        ("2024-01-01T01:30:00+01:30", "2024-01-01T00:00:00z"),
        ("2024-01-01 00:00:00", "2024-01-01T00:00:00+00:00"),
        ("2023-12-31T23:00:00-01", "2024-01-01T00:00:00Z"),
        ("2024-01-01T00:00:00.123456Z", "2024-01-01T00:00:00.123Z"),  # precision lowered on upgrade
        ("2024-01-01T00:00:00.999999Z", "2024-01-01T00:00:00Z"),  # ... or truncated to seconds
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"),  # a second apart: not more
        ("2024-01-01T00:00:00.123656Z", "2024-01-01T00:00:00.124Z"),  # rounded to milliseconds
        ("2024-01-01T00:00:00.123456Z", "2024-01-01T00:00:00.123000Z"),  # ... written with 6 digits, as pydantic does
        ("2024-01-01T00:00:00.6Z", "2024-01-01T00:00:01Z"),  # ... or to seconds
        ("2024-01-01T00:00:00.1Z", "2024-01-01T00:00:00.2Z"),  # a tenth apart: not more
    ],
)
def test_instants_no_further_apart_than_the_coarser_precision_are_no_recreation(old: str, new: str) -> None:
    assert recreated_at(old, new) is None
    assert recreated_at(new, old) is None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:01.000000001Z"),
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00+01:00"),
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00+0100"),
        ("2024-01-01T00:00:00Z", "20240101T000002Z"),
        ("2024-01-01T00:00Z", "2024-01-01T00:01:00.000000001Z"),  # more than the coarser precision
    ],
)
def test_instants_more_than_a_second_apart_are_a_recreation(old: str, new: str) -> None:
    assert recreated_at(old, new) == (old, new)


@pytest.mark.parametrize(
    "new",
    [
        "2024-13-01T00:00:00Z",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:60Z",
        "２０２４-01-01T00:00:00Z",  # digits are ASCII
        "2024-01-01T00:00:00Z\n",
        "2024-0101T00:00:00Z",  # basic and extended mixed within the date
        "2024-06-01",  # a date is no instant
    ],
)
def test_text_that_is_no_instant_is_never_a_recreation(new: str) -> None:
    assert recreated_at("2024-01-01T00:00:00Z", new) is None
    assert recreated_at(new, "2024-01-01T00:00:00Z") is None


def test_the_parser_is_strict_and_linear_on_hostile_text() -> None:
    assert _instant("2024-01-01T00:00:00." + "9" * 100_000 + "Z") == _instant("2024-01-01T00:00:00.999999999Z")
    for text in ["", "2024-01-01", "2024-01-01T00:0Z", "2024-1-01T00:00:00Z", "2024-01-01T00:00:00.Z", "9" * 10_000]:
        assert _instant(text) is None
    assert _instant("0001-01-01T00:00:00+23:59") is not None  # before year 1 in UTC: still an instant
    assert _instant("9999-12-31T23:59:59-23:59") is not None


MOMENTS = st.datetimes(
    min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30), timezones=st.just(None)
)
OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda m: datetime.timezone(datetime.timedelta(minutes=m))
)


def nanos(moment: datetime.datetime) -> int:
    """The instant by datetime's own arithmetic (the oracle the parser must agree with)."""
    since = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (since.days * 86400 + since.seconds) * 10**9 + since.microseconds * 1000


@settings(max_examples=300, deadline=None)
@given(MOMENTS, OFFSETS, st.integers(min_value=0, max_value=3))
def test_every_rendering_of_an_instant_parses_to_it_on_every_python(
    moment: datetime.datetime, zone: datetime.timezone, style: int
) -> None:
    aware = moment.replace(tzinfo=zone)
    text = aware.isoformat(timespec="microseconds")  # +HH:MM
    expected = nanos(aware)
    assert _instant(text) == expected
    head, zone_text = text[:-6], text[-6:]
    renderings = {
        0: head + "000" + zone_text,  # nanoseconds
        1: head + zone_text.replace(":", ""),  # +HHMM
        2: aware.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z",
        3: head.rstrip("0").rstrip(".") + zone_text,  # fewest digits
    }
    assert _instant(renderings[style]) == expected
    assert recreated_at(text, renderings[style]) is None


@settings(max_examples=200, deadline=None)
@given(MOMENTS, st.integers(min_value=-(10**6), max_value=10**6))
def test_a_recreation_is_two_instants_further_apart_than_the_coarser_precision(
    moment: datetime.datetime, shift_ms: int
) -> None:
    aware = moment.replace(tzinfo=datetime.timezone.utc)
    other = aware + datetime.timedelta(milliseconds=shift_ms)
    if not (datetime.datetime(1, 1, 2, tzinfo=datetime.timezone.utc) <= other):
        return
    old, new = aware.isoformat(), other.isoformat()  # microseconds, or whole seconds when they are 0

    def precision_ns(value: datetime.datetime) -> int:  # the last digit but trailing zeros
        if not value.microsecond:
            return 10**9
        digits = f"{value.microsecond:06d}".rstrip("0")
        return 10 ** (9 - len(digits))

    apart = abs(shift_ms) * 10**6 > max(precision_ns(aware), precision_ns(other))
    assert (recreated_at(old, new) is not None) is apart


# -- duplication: stored_through is the checkpoint's own walk ----------------------------------------


def test_stored_through_walks_stored_offsets_as_the_checkpoint_does(archive_db: str) -> None:
    archive = open_store(archive_db)
    try:
        archive.write_batch("s1", [event(o) for o in (0, 1, 2, 4, 5, 7)])
        reached = [archive.stored_through("s1", start) for start in (-1, 0, 2, 3, 4, 5, 6, 7, 100)]
    finally:
        archive.close()
    assert reached == [2, 2, 2, 5, 5, 5, 7, 7, 100]
