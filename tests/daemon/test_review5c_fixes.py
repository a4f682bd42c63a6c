"""Defects found by the fifth reviewer (``/work/wt/hrev5/repros/``), each pinned by a test.

06: a value too deep for CPython's C scanner was built without recursion at ~75 bytes per
character, whatever its size (4 MB of brackets took 310 MiB, past the unit's MemoryMax=256M);
only an element of up to ``jsonread.MAX_DEEP_CHARS`` is built now, a larger one is the reader's
typed error. 04: ``flux0-sync export`` refused the events the daemon archives (an integer of
over 4,300 digits, nesting past Python's json). And decode_without_recursion's error promise
is the one it keeps: a JSONDecodeError within the element, its message not always json's.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from flux0sync.cli import main
from flux0sync.jobs import read_batches
from flux0sync.jsonread import MAX_DEEP_CHARS, Decoder, decode_without_recursion, element_end
from flux0sync.rows import RawEvent
from flux0sync.store import Store
from hypothesis import given
from hypothesis import strategies as st

from flux0lite.jsonstream import JSONStreamError
from tests.daemon.hostile import past_the_c_scanner, too_deep_for_the_c_scanner

HEAD = (
    '{"id":"e0","source":"ai_agent","type":"custom","offset":0,"correlation_id":"c","deleted":false,'
    '"created_at":"2024-01-01T00:00:00Z","data":'
)
ROOT = Path(__file__).resolve().parents[2]


def _deep_event(depth: int) -> str:
    return HEAD + "[" * depth + "]" * depth + "}"


def _body(*events: str) -> bytes:
    return ('{"data":[' + ",".join(events) + "]}").encode("ascii")


# -- 06: a deep event is built only up to MAX_DEEP_CHARS -----------------------------------------


def test_a_deep_event_larger_than_the_bound_is_the_readers_typed_error() -> None:
    text = _deep_event(MAX_DEEP_CHARS // 2 + 1)
    assert len(text) > MAX_DEEP_CHARS
    with pytest.raises(JSONStreamError, match="unreadable JSON value"):
        list(read_batches("s1", [_body(text)], 100))


def test_a_deep_event_within_the_bound_is_read_and_those_before_it_are_kept() -> None:
    depth = (MAX_DEEP_CHARS - len(HEAD) - 1) // 2
    text = _deep_event(depth)
    assert len(text) <= MAX_DEEP_CHARS
    before = HEAD.replace('"e0"', '"e1"') + "1}"
    events = [e for batch in read_batches("s1", [_body(before, text)], 100) for e in batch]
    assert [e.text for e in events] == [before, text]
    data = events[1].doc["data"]
    for _ in range(depth - 1):
        (data,) = data
    assert data == []


def test_reading_deep_events_stays_well_inside_the_units_memory() -> None:
    """The repro's 4 MB event is refused, one of the largest accepted takes < 128 MiB of peak
    RSS (MemoryMax is 256M, the daemon ~40 MB); measured in a fresh process."""
    script = textwrap.dedent(
        f"""
        import resource, sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "daemon")!r}]
        from flux0lite import Flux0Error
        from flux0sync.jobs import read_batches
        from flux0sync.jsonread import MAX_DEEP_CHARS
        head = {HEAD!r}
        def body(depth):
            return ('{{"data":[' + head + "[" * depth + "]" * depth + "}}]}}").encode()
        refused = body(2_000_000)
        accepted = body((MAX_DEEP_CHARS - len(head) - 1) // 2)
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            list(read_batches("s1", [refused], 100))
            print("accepted")
        except Flux0Error:
            print("refused")
        assert len(list(read_batches("s1", [accepted], 100))) == 1
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) * 1024)
        """
    )
    plain = {**os.environ, "COVERAGE_PROCESS_START": ""}  # never under coverage: not the reader's memory
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True, env=plain
    )
    verdict, grew = out.stdout.split()
    assert verdict == "refused"

    assert int(grew) < 128 * 2**20, int(grew) / 2**20


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(alphabet=st.sampled_from('a"\\[]{}\n')),
    lambda inner: (
        st.lists(inner, min_size=0, max_size=4)
        | st.dictionaries(st.text(alphabet=st.sampled_from('k"\\[]{}'), max_size=3), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.lists(_JSON, max_size=3) | st.dictionaries(st.text(max_size=3), _JSON, max_size=3), st.text(max_size=4))
def test_the_scan_that_builds_nothing_ends_where_json_ends(value: Any, after: str) -> None:
    text = json.dumps(value, ensure_ascii=False)
    _, end = json.JSONDecoder().raw_decode(text + after)
    assert element_end(text + after, 0, len(text)) == end == len(text)
    assert element_end(" " + text + after, 1, len(text) + 5) == len(text) + 1
    if len(text) > 2:
        assert element_end(text + after, 0, len(text) - 1) in (None, len(text + after))
        assert element_end(text[:-1], 0, len(text) + 5) == len(text) - 1  # cut short: the text's end


def test_the_scan_skips_brackets_and_escaped_quotes_inside_strings() -> None:
    text = '["]\\"[", "\\\\", {"a]": "}\\\\\\""}]'
    assert json.loads(text) == [']"[', "\\", {"a]": '}\\"'}]
    assert element_end(text + "]]", 0, 1000) == len(text)
    assert element_end("[" * 10 + "]" * 9, 0, 1000) == 19  # cut short
    assert element_end("[" * 10 + "]" * 10, 0, 19) is None  # past the limit


# -- 04: export writes what the daemon archived --------------------------------------------------


# deep: just past the C decoder on this Python (100,000 levels cost up to 60x more)
@pytest.mark.parametrize(
    "data", ["9" * 5000, "[" * past_the_c_scanner() + "]" * past_the_c_scanner()], ids=["big-int", "deep"]
)
def test_export_writes_every_event_the_daemon_archives(tmp_path: Path, data: str) -> None:
    path = str(tmp_path / "archive.db")
    text = HEAD + data + "}"
    assert data.isdigit() or too_deep_for_the_c_scanner(text)
    store = Store(path)
    try:
        assert store.write_batch("s1", [RawEvent(Decoder().raw_decode(text)[0], text)]).inserted == 1
    finally:
        store.close()
    for flags in ([], ["--json"]):
        out, err = io.StringIO(), io.StringIO()
        assert main(["export", "s1", "--db", path, *flags], stdout=out, stderr=err) == 0, err.getvalue()
        written = out.getvalue()
        assert text in written  # the stored raw, as it is: valid JSON
        doc = Decoder().decode(written)  # the whole output is JSON
        (event,) = doc if flags else [doc]
        assert event["id"] == "e0"


def test_export_still_refuses_a_raw_edited_into_something_not_json(tmp_path: Path) -> None:
    path = str(tmp_path / "archive.db")
    store = Store(path)
    try:
        text = HEAD + "1}"
        store.write_batch("s1", [RawEvent(json.loads(text), text)])
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE events SET raw = ?", (HEAD + "[1,]}",))
    db.close()
    out, err = io.StringIO(), io.StringIO()
    assert main(["export", "s1", "--db", path], stdout=out, stderr=err) == 3
    assert "not JSON" in err.getvalue()


# -- decode_without_recursion's promise: json's error type, at a position within the element ---


@pytest.mark.parametrize("text", ["[1,]", '{"a":1,}', "[1,,2]", "[1 2]", '{"a" 1}', "[", '{"a":', "[1,"])
def test_without_recursion_an_error_is_a_jsondecodeerror_within_the_element(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as jsons:
        json.JSONDecoder().raw_decode(text)
    with pytest.raises(json.JSONDecodeError) as ours:
        decode_without_recursion(text, 0, json.JSONDecoder())
    assert 0 <= ours.value.pos <= len(text)
    assert abs(ours.value.pos - jsons.value.pos) <= 1  # 3.13's "Illegal trailing comma" is one before
