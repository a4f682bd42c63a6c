"""A third adversary's findings (hadv11): re-fetched copies compared as JSON defines equality.

A copy of a stored event (same id, same offset) is a duplicate only if it holds the same JSON
value; any other value is a conflict, never dropped. Python's ``==`` on decoded values took
``true`` for ``1``, two numbers that round to one float (or past its range) for one, and, for
events kept as text because they hold bytes that are not UTF-8, a byte 0xFF for a ``\\udcff``
escape (flux0sync.jsonread.same_json, flux0sync.store._same, shared by both backends).
"""

from __future__ import annotations

import io
import json
from typing import Any, Iterator, List, Tuple

import pytest
from flux0sync.backend import open_store
from flux0sync.jsonread import same_json
from flux0sync.rows import undecodable_raw
from flux0sync.store import _same
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.daemon.helpers import client_for, execute, one_session, quick_engine
from tests.daemon.hostile import event, serve_bytes
from tests.fakeserver import FakeFlux0, FakeServer

DIFFERENT = [
    ("true", "1"),
    ("false", "0"),
    ("[1]", "[true]"),
    ("null", "false"),
    ('"1"', "1"),
    ("1e400", "2e400"),
    ("0.1", "0.10000000000000001"),
    ("9007199254740992", "9007199254740993.0"),
    ("NaN", "Infinity"),
    ("-Infinity", "Infinity"),
    ("NaN", "null"),
    ('{"a": 1}', '{"a": 1, "b": 1}'),
    ("[1, 2]", "[2, 1]"),
    # too deep for the C scanner: not built to compare (~75 bytes a character), so never the same
    ("[" * 200_000 + "]" * 200_000, " " + "[" * 200_000 + "]" * 200_000),
    ('"\\u00e9"', '"e"'),
]
SAME = [
    ("1", "1.0"),
    ("100", "1e2"),
    ("1E2", "100.0"),
    ("0", "-0.0"),
    ("NaN", "NaN"),
    ("Infinity", " Infinity"),
    ('"\\u00e9"', '"\u00e9"'),
    ('{"a": 1, "b": 2}', '{"b":2,"a":1}'),
    ('{"a": 1, "a": 2}', '{"a": 2}'),
    ("1" + "0" * 5000, "1" + "0" * 5000 + ".0"),
    ("[" * 200 + "]" * 200, " " + "[" * 200 + "]" * 200),
]


def _event_text(value: str, spacing: str = "") -> str:
    return '{"id":"e",' + spacing + '"offset":0,"metadata":{"x":' + spacing + value + "}}"


@pytest.mark.parametrize(("first", "second"), DIFFERENT)
def test_copies_holding_different_json_values_are_a_clash(first: str, second: str) -> None:
    assert not same_json(first, second) and not same_json(second, first)
    assert not _same(_event_text(first), _event_text(second, " "))


@pytest.mark.parametrize(("first", "second"), SAME)
def test_copies_holding_one_json_value_written_differently_are_a_duplicate(first: str, second: str) -> None:
    assert same_json(first, second) and same_json(second, first)
    assert _same(_event_text(first), _event_text(second, " "))


def _strictly_equal(a: Any, b: Any) -> bool:
    """The oracle: JSON equality of two Python values, true/false apart from numbers, numbers by
    their exact value (Python compares int and float exactly), containers member by member."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strictly_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_strictly_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 0.0, -0.0, 1.0, 0.1, 1e16, 2**53, 2**53 + 1, 1e300]),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4)),
    max_leaves=12,
)
RENDERINGS = st.sampled_from(
    [
        {},
        {"separators": (",", ":")},
        {"indent": 1, "sort_keys": True},
        {"ensure_ascii": False},
        {"ensure_ascii": False, "sort_keys": True, "separators": (" ,", " : ")},
    ]
)


@settings(max_examples=300, deadline=None)
@given(VALUES, VALUES, RENDERINGS, RENDERINGS)
def test_same_json_is_json_equality_whatever_the_spelling(a: Any, b: Any, style_a: Any, style_b: Any) -> None:
    text_a, text_b = json.dumps(a, **style_a), json.dumps(b, **style_b)
    assert same_json(text_a, json.dumps(a, **style_b))
    assert same_json(text_a, text_b) is _strictly_equal(a, b)


UNDECODABLE = '{"id":"e","metadata":{"x":"\udcff","y":"\\udcff"}}'  # the byte 0xFF, and flux0's own escape


def test_undecodable_copies_compare_by_their_bytes() -> None:
    swapped = '{"id":"e","metadata":{"x":"\\udcff","y":"\udcff"}}'
    assert not _same(undecodable_raw(UNDECODABLE), undecodable_raw(swapped))
    assert _same(undecodable_raw(UNDECODABLE), undecodable_raw(UNDECODABLE.replace(":", " : ")))
    assert not _same(undecodable_raw(UNDECODABLE), undecodable_raw(UNDECODABLE.replace("y", "z")))
    # hadv12 02: read as Latin-1, a byte 0xFF was the escape \u00ff, UTF-8 é two escapes
    latin = '{"id":"e","x":"\udcff","y":"\u00e9","z":"\udcfe"}'  # 0xFF, é as UTF-8, 0xFE
    escaped = '{"id":"e","x":"\\u00ff","y":"\\u00c3\\u00a9","z":"\udcfe"}'
    assert not _same(undecodable_raw(latin), undecodable_raw(escaped))
    assert _same(undecodable_raw(latin), undecodable_raw(latin.replace(",", " ,\n ")))


def test_a_refetched_copy_holding_a_number_past_decimals_range_is_compared_not_raised() -> None:
    """hadv12 01: decimal raised InvalidOperation (no ValueError) for 1e9999999999999999999: the
    daemon exited 1 at every pass (a crash loop), nothing archived."""
    huge = '{"id": "e", "n": 1e9999999999999999999}'
    assert _same(huge, huge.replace(": ", ":"))
    assert not _same(huge, huge.replace("1e", "2e")) and not _same(huge, '{"id": "e", "n": 1}')


def _answer(texts: List[str]) -> bytes:
    return ("{" + '"data":[' + ",".join(texts) + "]}").encode("utf-8", "surrogateescape")


def _archive_once(fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str, sid: str, answer: bytes) -> None:
    """One daemon pass (in-process) over a server whose events answer for ``sid`` is ``answer``."""
    serve_bytes(fake_flux0, sid, answer)
    archive = open_store(archive_db)
    try:
        quick_engine(archive, fake, once=True).run()
    finally:
        archive.close()


PAIRS: List[Tuple[str, str]] = [("true", "1"), ("1e400", "2e400"), ("0.1", "0.10000000000000001"), ("1", "1.0")]


def test_a_daemon_keeps_each_changed_copy_in_conflicts_and_drops_only_true_duplicates(
    fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str
) -> None:
    sid = one_session(fake_flux0)
    texts = []
    for offset, (first, second) in enumerate(PAIRS):
        base = json.dumps(event(sid, offset, metadata={"x": 0}))
        texts.append(base.replace('"x": 0', '"x": ' + first))
        texts.append(base.replace('"x": 0', '"x":' + second))
    base = json.dumps(event(sid, len(PAIRS), metadata={"x": 0}))
    texts.append(base.replace('"metadata": {"x": 0}', '"metadata": {"x": "\udcff", "y": "\\udcff"}'))
    texts.append(base.replace('"metadata": {"x": 0}', '"metadata": {"x": "\\udcff", "y": "\udcff"}'))
    _archive_once(fake, fake_flux0, archive_db, sid, _answer(texts))
    stored, conflicts = (
        execute(archive_db, f"SELECT count(*) FROM {table}")[0][0] for table in ("events", "conflicts")
    )
    assert stored == len(PAIRS) + 1
    assert conflicts == len(PAIRS) - 1 + 1  # 1 and 1.0 are one number: that copy is a duplicate


def test_a_listing_entry_whose_value_changed_from_true_to_1_is_a_change() -> None:
    from flux0sync.store import listing_change

    stored = '{"id":"s","created_at":"2024-01-01T00:00:00Z","title":true}'
    doc: Any = json.loads(stored.replace("true", "1"))
    assert listing_change(stored, None, "2024-01-01T00:00:00Z", doc, json.dumps(doc), "u") == (True, None)
    doc = json.loads(stored)
    assert listing_change(stored, None, "2024-01-01T00:00:00Z", doc, json.dumps(doc), "u") == (False, None)


def test_a_session_lookup_answer_too_costly_to_build_fails_typed_and_unbuilt(
    fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """hadv11 04: a --session lookup answer was built whole with json.loads: ~15 MiB of small
    items took the daemon to 442 MB. Now it is measured first, as a listing entry is."""
    from flux0sync.jobs import _retrieve_session

    from flux0lite import DecodeError

    sid = one_session(fake_flux0)
    fake_flux0.sessions[sid]["extra"] = [{"": {}}] * 200_000  # ~2 MiB of JSON, ~60 MB built
    with client_for(fake, timeout=30) as client:
        # "too costly": measured and refused before it is built (jsonread.TOO_LARGE)
        with pytest.raises(DecodeError, match="too costly"):
            _retrieve_session(client, sid)
        fake_flux0.sessions[sid].pop("extra")
        assert _retrieve_session(client, sid)[0].id == sid


def _blank_strings(value: Any) -> Any:
    if isinstance(value, str):
        return ""
    if isinstance(value, list):
        return [_blank_strings(item) for item in value]
    if isinstance(value, dict):
        return {str(n): _blank_strings(item) for n, item in enumerate(value.values())}
    return value


TEXTY = st.text(alphabet=st.sampled_from(',{[:"\\ a\u00e9\U0001f600\n'), max_size=12)
JSONISH = st.recursive(
    st.one_of(st.none(), st.integers(), TEXTY),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(TEXTY, inner, max_size=5)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSONISH, st.booleans())
def test_values_outside_strings_are_the_values_structure(value: Any, ascii_only: bool) -> None:
    from flux0sync.budget import values_in
    from flux0sync.jsonread import _values_outside_strings

    text = json.dumps(value, ensure_ascii=ascii_only)
    structure = json.dumps(_blank_strings(value))
    assert _values_outside_strings(text, 0, len(text)) == values_in(structure, 0, len(structure))


def test_a_listing_entry_holding_one_long_string_of_commas_is_read_not_left_out() -> None:
    """hadv11 09: built_cost counted the commas inside a 1.2 MB title as 600,000 values (72 MB
    estimated, past MAX_BUILT_COST): the session was left out of the archive, never polled."""
    from flux0sync.jsonread import MAX_BUILT_COST, TOO_LARGE, Decoder, built_cost

    entry = json.dumps({"id": "s", "title": "a," * 600_000, "tags": ["x,y"] * 3})
    assert built_cost(entry, 0, len(entry)) < 1024 * 1024
    decoder = Decoder(build_deep=False, leave_out_large=True)
    listing = '{"data": [' + entry + "]}"
    value = decoder.decode(listing)
    assert value["data"][0] is not TOO_LARGE and value["data"][0]["title"] == "a," * 600_000
    quoted = json.dumps({"id": "s", "title": '"a",' * 600_000})  # hadv12 03: CSV of quoted fields
    assert built_cost(quoted, 0, len(quoted)) < 1024 * 1024
    rows = json.dumps({"id": "s", "rows": ["1,2,3,4"] * 200_000})  # hadv13 02: many CSV rows
    assert built_cost(rows, 0, len(rows)) < 32 * 1024 * 1024
    wide = json.dumps([{"": {}}] * 600_000)
    assert built_cost(wide, 0, len(wide)) > MAX_BUILT_COST  # many values outside strings: still costly


_OLD_STRING_OR_NON_FINITE = r'"[^"\\]*(?:\\.[^"\\]*)*"|-?Infinity|NaN'
WORDY = st.lists(st.sampled_from(['"', "\\", "N", "aN", "I", "nfinity", "-", "\u00e9", "\n", " "]), max_size=8).map(
    "".join
)
NON_FINITE_JSON = st.recursive(
    st.one_of(st.sampled_from([float("nan"), float("inf"), float("-inf"), 1.5, None, True]), WORDY),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(WORDY, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(NON_FINITE_JSON, st.booleans())
def test_printable_json_writes_non_finite_numbers_as_null_as_the_regex_did(value: Any, ascii_only: bool) -> None:
    """hadv11 08: the string-or-number regex kept ~60 bytes of state an escape (~1 GB for a 16 MB
    raw of escapes holding the word NaN); the scan that replaced it gives the same text."""
    import re

    from flux0lite.cli import _NON_FINITE, _non_finite_as_null

    text = json.dumps(value, ensure_ascii=ascii_only)
    old = re.sub(_OLD_STRING_OR_NON_FINITE, lambda m: m.group() if m.group()[0] == '"' else "null", text)
    assert _non_finite_as_null(text, re.compile(_NON_FINITE)) == old


def test_printable_json_of_a_text_of_escapes_holding_nan_reads_it_in_place() -> None:
    from flux0lite.cli import printable_json

    text = json.dumps({"content": "NaN" + "\n" * 200_000, "n": float("nan"), "i": [float("-inf")]})
    assert printable_json(text) == text.replace(": NaN", ": null").replace("[-Infinity]", "[null]")


def test_export_and_search_read_a_large_event_alone_and_write_what_a_whole_read_wrote(
    fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hadv11 06/07: search fetched every hit's whole text before printing one (20 hits of 8 MB:
    206 MB), PostgreSQL's export cursor brought 500 raws a round trip (12 of 8 MB: 245 MB). Hits
    are now read one at a time and a raw of over 64 KiB alone; the output is what it was."""
    import io

    from flux0sync.cli import main

    sid = one_session(fake_flux0)
    texts = ["needle " + ("x" * 100_000 if offset % 3 == 1 else f"small {offset}") for offset in range(7)]
    docs = [
        event(sid, offset, text=text, metadata={"n": float("nan")} if offset == 2 else None)
        for offset, text in enumerate(texts)
    ]
    _archive_once(fake, fake_flux0, archive_db, sid, json.dumps({"data": docs}).encode())
    monkeypatch.setenv("FLUX0_SERVER_URL", fake.url)

    def cli(*args: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        assert main(list(args), stdout=out, stderr=err) == 0, err.getvalue()
        return out.getvalue()

    exported = cli("export", sid, "--db", archive_db, "--jsonl").splitlines()
    assert [json.loads(line)["data"]["parts"][0]["content"] for line in exported] == texts
    hits = json.loads(cli("search", "needle", "--db", archive_db, "--json"))
    assert [hit["text"] for hit in hits] == texts
    assert cli("search", "needle", "--db", archive_db, "--json") == json.dumps(hits, indent=2) + "\n"
    assert len(cli("search", "needle", "--db", archive_db, "--limit", "3").splitlines()) == 3


def test_an_export_reads_one_snapshot_while_the_daemon_writes(tmp_path: Any) -> None:
    """hadv11 12: export's two queries (events with an offset, then those without) each read
    their own snapshot: a re-creation committed between them mixed two conversations."""
    import sqlite3

    from flux0sync.rows import RawEvent
    from flux0sync.store import Store

    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    texts = [
        json.dumps({"id": name, "offset": offset, "type": "status"})
        for name, offset in (("o0", 0), ("o1", 1), ("n1", None))
    ]
    store.write_batch("s", [RawEvent(json.loads(text), text) for text in texts])
    store.close()
    reader = Store(db, readonly=True)
    try:
        export = reader.iter_raw_events("s")
        first = [next(export), next(export)]
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute('UPDATE events SET raw = \'{"id":"n2"}\' WHERE "offset" IS NULL')
        writer.close()
        assert [json.loads(raw)["id"] for raw in [*first, *export]] == ["o0", "o1", "n1"]
        assert [json.loads(raw)["id"] for raw in reader.iter_raw_events("s")] == ["o0", "o1", "n2"]
    finally:
        reader.close()


def test_status_server_counts_what_a_poll_would_read_without_building_it(
    fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """hadv11 11: `status --server` typed every event it was behind to count them (one 12 MB
    event of small items: ~430 MB), and an event typed Event refuses (metadata no object, a
    5,000-digit offset), which the daemon archives, made the count "?"."""
    from flux0sync.jobs import count_events

    sid = one_session(fake_flux0)
    texts = [
        json.dumps(event(sid, 0)),
        json.dumps(event(sid, 1)).replace('"offset": 1', '"offset": 1' + "0" * 5000),
        json.dumps({**event(sid, 2), "metadata": [1, 2]}),
        json.dumps({**event(sid, 3), "metadata": {"extra": [{"": {}}] * 200_000}}),  # ~2 MiB, ~60 MB built
    ]
    serve_bytes(fake_flux0, sid, _answer(texts))
    with client_for(fake, timeout=30) as client:
        assert count_events(client, sid, 0) == 4


def test_status_rows_hold_no_line_break_and_blank_search_is_a_usage_error(tmp_path: Any) -> None:
    """hadv11 notes: a session id holding LF forged a row of `status`; `search ''` found nothing
    on SQLite and everything on PostgreSQL."""
    import io

    from flux0sync.cli import main
    from flux0sync.rows import RawEvent
    from flux0sync.store import Store

    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    text = '{"id": "e", "offset": 0}'
    store.write_batch("s\nforged  0  row", [RawEvent(json.loads(text), text)])
    store.close()
    out, err = io.StringIO(), io.StringIO()
    assert main(["status", "--db", db], stdout=out, stderr=err) == 0
    assert "s\\nforged" in out.getvalue() and "\nforged" not in out.getvalue()
    for blank in ("", "  "):
        out, err = io.StringIO(), io.StringIO()
        assert main(["search", blank, "--db", db], stdout=out, stderr=err) == 2
        assert "empty" in err.getvalue() and "Traceback" not in err.getvalue()


def test_a_listing_page_handed_over_is_not_held_while_the_next_entry_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """hadv11 05: after handing a page over, the listing job still held its last entry (the loop
    variables of _emit_pages and _readable) while it read the next one, waiting on the memory
    budget: 8 users' listings of ~1.2 MiB entries on 8 workers, one built entry each, ~345 MB
    (now ~103 MB, as on one worker)."""
    import weakref

    from flux0sync import jobs
    from flux0sync.jobs import Warnings, _emit_pages, _readable
    from flux0sync.jsonread import Decoder

    from flux0lite.jsonstream import Element

    class Entry:
        pass

    held: List[Any] = []

    def entries() -> Iterator[Element]:
        for _ in range(3):
            if held:
                assert held[-1]() is None, "the entry handed over is still held while the next is read"
            entry = Entry()
            held.append(weakref.ref(entry))
            yield Element(entry, "{}")
            del entry

    monkeypatch.setattr(jobs, "LISTING_PAGE", 1)
    pages: List[Any] = []
    decoder = Decoder(build_deep=False, leave_out_large=True)
    _emit_pages(_readable(entries(), decoder, "list", Warnings()), lambda value: 1, "list", Warnings(), pages.append)
    assert pages == [[1], [1], [1], []]


def test_printable_json_of_many_non_finite_numbers_and_controls_is_written_a_window_at_a_time() -> None:
    """hadv12 04/07: two pieces a NaN (3.2 million NaN: ~300 MB) and a piece a C1 control (7
    million: ~500 MB) were held until one join; now joined a window at a time, the same text."""
    from flux0lite.cli import printable_json

    numbers = json.dumps({"v": [float("nan"), float("-inf"), 1.5, "NaN"] * 3000})
    assert json.loads(printable_json(numbers))["v"] == [None, None, 1.5, "NaN"] * 3000
    controls = json.dumps({"t": ("\x85" * 70_000 + "\u202e") * 2}, ensure_ascii=False)
    written = printable_json(controls)
    assert written.isascii() and json.loads(written) == json.loads(controls)
    assert written == json.dumps(json.loads(controls))  # json's own escapes of the same characters


def test_an_export_keeps_its_snapshot_for_the_raws_it_reads_alone(
    fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str
) -> None:
    """hadv12 05: PostgreSQL's export read a raw of over 64 KiB in a statement of its own, a
    snapshot of its own under READ COMMITTED: an event deleted meanwhile (a re-creation) made
    the export fail as a broken archive. Both backends now read one snapshot."""
    sid = one_session(fake_flux0)
    docs = [event(sid, 0, text="small"), event(sid, 1, text="x" * 100_000)]
    _archive_once(fake, fake_flux0, archive_db, sid, json.dumps({"data": docs}).encode())
    reader = open_store(archive_db, readonly=True)
    try:
        export = reader.iter_raw_events(sid)
        assert json.loads(next(export))["offset"] == 0
        execute(archive_db, 'DELETE FROM events WHERE session_id = ? AND "offset" = 1', (sid,))
        assert [json.loads(raw)["offset"] for raw in export] == [1]
        assert [json.loads(raw)["offset"] for raw in reader.iter_raw_events(sid)] == [0]
    finally:
        reader.close()


def test_status_lines_below_the_table_show_a_line_break_in_an_id_escaped(tmp_path: Any) -> None:
    """hadv12 06: the last-error, clash and gap lines wrote a server's session id raw."""
    import io

    from flux0sync.cli import main
    from flux0sync.rows import RawEvent
    from flux0sync.store import Store

    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    sid = "s1\nFORGED: 0 events, everything is fine"
    text = '{"id": "e", "offset": 0}'
    store.write_batch(sid, [RawEvent(json.loads(text), text)])
    store.mark_error(sid, "boom\nFORGED too")
    store.close()
    out, err = io.StringIO(), io.StringIO()
    assert main(["status", "--db", db], stdout=out, stderr=err) == 0
    assert "last error" in out.getvalue()
    assert not any(line.startswith("FORGED") for line in out.getvalue().splitlines()), out.getvalue()


class _FullDisk(io.StringIO):
    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, text: str) -> int:
        self.room -= 1
        if self.room < 0:
            raise OSError(28, "No space left on device")
        return super().write(text)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("args", [[], ["--json"]])
def test_an_export_stopped_early_ends_its_read_on_an_open_archive(
    tmp_path: Any, args: List[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """hadv12 09: the store was closed before the export's generator, whose read transaction
    then ended on a closed database: 'Exception ignored ... Cannot operate on a closed database'."""
    import gc

    from flux0sync.cli import main
    from flux0sync.rows import RawEvent
    from flux0sync.store import Store

    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    texts = [json.dumps({"id": f"e{n}", "offset": n}) for n in range(50)]
    store.write_batch("s", [RawEvent(json.loads(text), text) for text in texts])
    store.close()
    err = io.StringIO()
    assert main(["export", "s", "--db", db, *args], stdout=_FullDisk(5), stderr=err) != 0
    gc.collect()
    assert len(err.getvalue().splitlines()) == 1, err.getvalue()
    assert "Exception ignored" not in capsys.readouterr().err


def test_a_search_of_punctuation_only_finds_it_on_sqlite_as_on_postgresql(archive_db: str) -> None:
    """hadv12 08: FTS5 makes no word of '$$$': the phrase matched nothing on SQLite, where
    PostgreSQL falls back to ILIKE and finds it."""
    from flux0sync.rows import RawEvent

    store = open_store(archive_db)
    try:
        doc = event("s", 0, text="price is $$$ or ??? ok")
        store.write_batch("s", [RawEvent(doc, json.dumps(doc))])
        assert [hit.offset for hit in store.search("$$$")] == [0]
        assert [hit.offset for hit in store.search("price")] == [0]
        assert list(store.search("%%%")) == []
    finally:
        store.close()


def test_status_reads_one_instant_of_the_archive(archive_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """hadv14 03: status read its sessions, totals and gaps in three snapshots: while a daemon
    wrote, the events total differed from the sum of the rows printed with it (608 of 984)."""
    from flux0sync.rows import RawEvent

    def write(offset: int) -> None:  # as a daemon writes: on a connection of its own
        writer = open_store(archive_db)
        try:
            doc = event("s", offset)
            writer.write_batch("s", [RawEvent(doc, json.dumps(doc))])
        finally:
            writer.close()

    write(0)
    reader = open_store(archive_db, readonly=True)
    read_rows = type(reader).session_statuses

    def rows_then_a_daemon_writes(self: Any) -> Any:
        rows = read_rows(self)
        write(1)
        return rows

    monkeypatch.setattr(type(reader), "session_statuses", rows_then_a_daemon_writes)
    try:
        rows, (_, _, events), _ = reader.status_snapshot()
        assert [row.events for row in rows] == [1] and events == 1
        monkeypatch.undo()
        assert reader.status_snapshot()[1][2] == 2
    finally:
        reader.close()
