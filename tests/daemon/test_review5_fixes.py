"""Defects of the daemon found after the fourth adversary, each pinned by a test.

Valid JSON CPython's decoder refuses (``flux0sync.jsonread``): an event nested deeper than its
recursion (``/work/wt/hadv4/repros/09-*.py``) and, as before, an integer of over 4,300 digits,
read by one decoder for events and listings alike.
"""

from __future__ import annotations

import functools
import io
import json
import math
import sqlite3
from pathlib import Path
from typing import Any, Callable, List, Tuple

import pytest
from flux0sync.backend import open_store
from flux0sync.cli import _json_text, main
from flux0sync.engine import Engine, _from_wall, _to_wall
from flux0sync.jsonread import Decoder, decode_without_recursion
from flux0sync.rows import RawEvent
from flux0sync.schedule import Policy, Schedule
from flux0sync.store import Store
from flux0sync.sync import Syncer
from hypothesis import given
from hypothesis import strategies as st

from flux0lite.jsonstream import JSONStreamError, iter_array
from tests.daemon.helpers import StopWhen, client_for, execute, offsets, one_session, quick_engine, serve_events_body
from tests.daemon.hostile import event, past_the_c_scanner, serve_bytes, too_deep_for_the_c_scanner
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, raw_response

DEPTH = past_the_c_scanner()  # past the C decoder's recursion on this Python (100,000 cost up to 60x more)
DEEP = "[" * DEPTH + "]" * DEPTH
assert too_deep_for_the_c_scanner(DEEP)

engine = functools.partial(quick_engine, idle_max=1.0)


def run_until(target: Engine, done: Callable[[], bool], seconds: float = 20.0) -> None:
    target.should_stop = StopWhen(done, seconds)
    target.run()


# -- hadv4 09: an event nested deeper than the C decoder reads -----------------------------------


@pytest.mark.parametrize("framing", ["whole", "chunked"])  # read whole by the writer, or streamed
def test_an_event_nested_past_the_c_decoder_is_archived_with_its_raw_text_and_its_session_goes_on(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0, framing: str
) -> None:
    sid = one_session(fake_flux0)
    texts = [json.dumps(event(sid, o)) for o in range(4)]
    texts[1] = texts[1].replace('"deleted": false', f'"deleted": false, "deep": {DEEP}')
    body = ('{"data": [' + ", ".join(texts) + "]}").encode()
    serve_events_body(fake_flux0, sid, body, framing)
    store = open_store(archive_db)
    try:
        for _ in range(2):  # the second pass finds every event stored, and no clash
            result = Syncer(client_for(fake), store).run_pass()
            assert result.ok, result.errors
        rows = execute(archive_db, 'SELECT "offset", raw FROM events WHERE session_id = ? ORDER BY "offset"', (sid,))
        assert rows == [(n, text) for n, text in enumerate(texts)]  # each once, as sent
        assert store.checkpoint(sid) == 3
        assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 0
    finally:
        store.close()


@pytest.mark.parametrize("value", [DEEP, "7" * 5000], ids=["deep", "huge-integer"])
def test_an_event_json_cannot_write_back_keeps_a_byte_that_is_not_utf8(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0, value: str
) -> None:
    """The raw text of an event with a byte that is not UTF-8 was rewritten from its decoded
    value, which json cannot write when it holds a Decimal or nests this deep (a TypeError or
    RecursionError out of the writer): its own text is kept (rows.undecodable_raw)."""
    sid = one_session(fake_flux0)
    texts = [json.dumps(event(sid, o)).encode() for o in range(3)]
    texts[1] = texts[1].replace(b'"deleted": false', b'"deleted": false, "word": "caf\xe9", "v": ' + value.encode())
    serve_bytes(fake_flux0, sid, b'{"data": [' + b", ".join(texts) + b"]}")
    store = open_store(archive_db)
    try:
        result = Syncer(client_for(fake), store).run_pass()
        assert result.ok, result.errors
        rows = execute(archive_db, 'SELECT "offset", raw FROM events WHERE session_id = ? ORDER BY "offset"', (sid,))
        assert [offset for offset, _ in rows] == [0, 1, 2]
        assert json.loads(rows[1][1]).encode("utf-8", "surrogateescape") == texts[1]  # its own text, a JSON string
        word = Decoder().decode(json.loads(rows[1][1]))["word"]
        assert word.encode("utf-8", "surrogateescape") == b"caf\xe9"  # the byte comes back
    finally:
        store.close()


def test_a_listing_member_before_data_that_is_unusual_leaves_no_entry_out(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """The decoder counts what it read past a refusal anywhere in the answer; an entry is left
    out only if it holds such a value itself."""
    agent = fake_flux0.add_agent()
    sids = [fake_flux0.add_session(agent) for _ in range(2)]
    for sid in sids:
        fake_flux0.add_events(sid, 1)

    def respond(req: Request, conn: Conn) -> None:
        items = ", ".join(json.dumps(doc) for doc in fake_flux0.sessions.values())
        body = f'{{"deep": {DEEP}, "huge": {"9" * 5000}, "data": [{items}]}}'.encode()
        conn.send(raw_response(200, body, {"content-type": "application/json"}))

    fake.on("GET", "/api/sessions", respond)
    db = str(tmp_path / "a.sqlite3")
    archive = open_store(db)
    try:
        totals = engine(archive, fake, once=True).run()
    finally:
        archive.close()
    assert totals.ok and {sid: offsets(db, sid) for sid in sids} == {sid: [0] for sid in sids}


# -- the decoder without recursion: json's answer, whatever the text -----------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)


def _both(text: str) -> Any:
    """(json's answer, decode_without_recursion's) for the value at the start of ``text``:
    (value, end) or the error's type."""
    answers: List[Any] = []
    for read in (json.JSONDecoder().raw_decode, lambda s: decode_without_recursion(s, 0, json.JSONDecoder())):
        try:
            answers.append(repr(read(text)))
        except json.JSONDecodeError:
            answers.append(json.JSONDecodeError)
    return answers


@given(_JSON, st.sampled_from([None, 1]), st.integers(0, 200), st.text('[]{},:" \\1e.-tn', max_size=3))
def test_reading_without_recursion_is_jsons_reading_on_valid_cut_and_corrupted_text(
    value: Any, indent: Any, cut: int, noise: str
) -> None:
    text = json.dumps(value, indent=indent)
    for variant in (text, text[:cut], text[:cut] + noise + text[cut:], text + noise):
        if variant[:1] in "[{":  # what the fallback is called for: a container at the start
            first, second = _both(variant)
            assert first == second, variant


def test_too_deep_text_that_is_not_json_is_the_readers_typed_error_not_a_recursion_error() -> None:
    for body in ('{"data": [' + "[" * DEPTH + "1 2" + "]" * DEPTH + "]}", '{"data": [' + "[" * DEPTH):
        with pytest.raises(JSONStreamError, match="malformed or truncated"):
            list(iter_array([body.encode()], key="data", decoder=Decoder()))


def test_a_deep_value_streamed_in_small_pieces_is_bounded_by_the_element_size() -> None:
    depth = 100_000  # 200,000 characters: four times the bound below
    body = ('{"data": [' + "[" * depth + "]" * depth + "]}").encode()
    pieces = [body[n : n + 1000] for n in range(0, len(body), 1000)]
    assert len(list(iter_array(pieces, key="data", decoder=Decoder()))) == 1
    with pytest.raises(JSONStreamError, match="a value over 50000 characters"):
        list(iter_array(pieces, key="data", decoder=Decoder(), max_element_chars=50_000))


# -- status --json is JSON whatever the archive holds --------------------------------------------


def _strict_json(text: str) -> Any:
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON (RFC 8259)"))


def _status(db: str, *args: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["status", "--db", db, *args], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


_STORED_NUMBERS = ["9e999", "-9e999", "1e308", "-1e308", str(2**63 - 1), str(-(2**63)), "0.1", "NULL"]


@pytest.mark.parametrize("number", _STORED_NUMBERS)
def test_status_json_is_json_whatever_number_a_hand_edited_archive_holds(tmp_path: Path, number: str) -> None:
    """``Infinity`` was printed for an infinite stored poll time; every numeric field is tried."""
    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    store.write_batch("s", [RawEvent.from_doc({"id": "e1", "offset": 0, "type": "status", "source": "system"})])
    store.mark_error("s", "boom")
    store.close()
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO poll_schedule (session_id, next_poll_at, idle_level) VALUES ('s', 0, 0)")
        con.execute("INSERT INTO gaps VALUES ('s', 1, 2, 0, 0)")
        for table, column in [
            ("sync_state", "last_offset"),
            ("sync_state", "last_success_at"),
            ("sync_state", "errors"),
            ("poll_schedule", "next_poll_at"),
            ("poll_schedule", "idle_level"),
            ("gaps", "first_offset"),
            ("gaps", "last_offset"),
            ("gaps", "first_seen_at"),
            ("gaps", "skipped_at"),
        ]:
            con.execute(f"UPDATE OR IGNORE {table} SET {column} = {number}")  # NOT NULL columns keep theirs
            con.commit()
    con.close()
    code, out, err = _status(db, "--json")
    assert code == 0, err
    doc = _strict_json(out)
    row, gap = doc["per_session"][0], doc["gaps"][0]
    real = float(number) if number not in ("9e999", "-9e999", "NULL") else None  # REAL columns: null if not finite
    assert row["last_success_at"] == real and gap["skipped_at"] == real
    assert row["next_poll_at"] == gap["first_seen_at"] == (0.0 if number == "NULL" else real)
    assert _status(db)[0] == 0  # the table still reads


def test_the_json_fields_of_status_and_search_carry_no_nan() -> None:  # PostgreSQL's double precision holds NaN
    doc = {"a": math.nan, "b": math.inf, "c": -math.inf, "d": 1.5, "e": 7, "f": "NaN -Infinity", "g": None}
    text = _json_text([doc], indent=2)
    assert "NaN," not in text and "Infinity," not in text
    assert json.loads(text) == [{"a": None, "b": None, "c": None, "d": 1.5, "e": 7, "f": "NaN -Infinity", "g": None}]


# -- a poll time between the loop's clock and the archive's wall time: one function each way ----

_STORED = st.one_of(
    st.floats(),  # NaN and the infinities too
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.none(),
)


@given(
    due=st.floats(-1e9, 1e9),
    now=st.floats(0, 1e9),
    wall=st.floats(0, 4e9),
    stored=_STORED,
)
def test_a_poll_time_goes_to_wall_time_and_back_and_a_hostile_stored_one_is_due_now(
    due: float, now: float, wall: float, stored: Any
) -> None:
    assert _from_wall(_to_wall(due, now, wall), now, wall) == pytest.approx(due, abs=1e-5)
    restored = _from_wall(stored, now, wall)
    assert math.isfinite(restored)
    finite = type(stored) in (int, float) and math.isfinite(stored)
    assert restored == (now + (stored - wall) if finite else now)
    schedule = Schedule(Policy(interval=2.0, idle_max=3600.0, jitter=0.1))
    schedule.add("s", due_at=restored, level=3, now=now)  # the restore path: one check, then the level's cap
    state = schedule.state("s")
    assert state is not None and state[0] <= now + 16.0 * 1.1 and state[1] == 3
