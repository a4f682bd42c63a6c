"""Defects of the daemon found by the sixth adversary (``/work/wt/hadv6/repros/``), part d.

15: one sessions-listing entry nested deeper than Python's decoder reads and over
``jsonread.MAX_DEEP_CHARS`` failed the whole listing; it is now checked without being built
(``Decoder(build_deep=False)``, ``jsonread.skip_value``) and left out, at any size.
14: an event holding a byte that is not UTF-8 was archived with the byte as a ``\\udcXX`` escape
in its own JSON, which reads as another character after an escaped high surrogate and as the
server's own escape otherwise; its raw is now its exact text as a JSON string
(``rows.undecodable_raw``), from which the server's bytes come back.
"""

from __future__ import annotations

import functools
import json
import tracemalloc
from pathlib import Path
from typing import Any, Callable, List

import pytest
from flux0sync import jsonread
from flux0sync.backend import open_store
from flux0sync.engine import Engine
from flux0sync.jobs import read_batches
from flux0sync.jsonread import MAX_DEEP_CHARS, Decoder, decode_without_recursion
from flux0sync.rows import event_row
from hypothesis import given, settings
from hypothesis import strategies as st

from flux0lite.jsonstream import JSONStreamError, iter_array
from tests.daemon.helpers import (
    StopWhen,
    archive_beside_a_poisoned_agents_entry,
    archive_beside_a_poisoned_sessions_entry,
    execute,
    offsets,
    quick_engine,
)
from tests.daemon.hostile import past_the_c_scanner, too_deep_for_the_c_scanner
from tests.fakeserver import FakeFlux0, FakeServer

engine = functools.partial(quick_engine, idle_max=1.0)


def run_until(target: Engine, done: Callable[[], bool], seconds: float = 20.0) -> None:
    target.should_stop = StopWhen(done, seconds)
    target.run()


# -- hadv6 15: a deep listing entry over MAX_DEEP_CHARS -------------------------------------------

_LEVELS = 800_000  # 1.6 MB of brackets: past MAX_DEEP_CHARS, as in the repro
_DEEP_VALUES = {
    "arrays": "[" * _LEVELS + "]" * _LEVELS,
    "objects": '{"a": ' * 300_000 + "1" + "}" * 300_000,  # 2.1 MB: one key per level
}


@pytest.mark.parametrize("shape", sorted(_DEEP_VALUES))
def test_a_sessions_entry_nested_too_deep_over_max_deep_chars_is_left_out_alone(
    shape: str, tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture
) -> None:
    value = _DEEP_VALUES[shape]
    assert len(value) > MAX_DEEP_CHARS
    db = str(tmp_path / "a.sqlite3")
    # 90 s: a guard against a hang, not a time limit (loaded and under coverage, 20 s ran out)
    archived, poisoned, logged = archive_beside_a_poisoned_sessions_entry(
        fake, fake_flux0, db, caplog, value, sessions=3, seconds=90.0
    )
    assert archived == {sid: ([] if sid == poisoned else [0, 1]) for sid in archived}
    assert len([m for m in logged if "nested deeper" in m]) == 1  # once, however many rounds
    assert not [m for m in logged if "failed" in m]


def test_an_agents_entry_nested_too_deep_over_max_deep_chars_is_left_out_alone(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    db = str(tmp_path / "a.sqlite3")
    totals, kept, sid = archive_beside_a_poisoned_agents_entry(fake, fake_flux0, db, _DEEP_VALUES["arrays"])
    assert totals.ok and offsets(db, sid) == [0]
    assert execute(db, "SELECT id FROM agents") == [(kept,)]


def _listing_body(value: str) -> bytes:
    return ('{"data": [{"id": "a"}, {"id": "odd", "x": ' + value + '}, {"id": "b"}]}').encode()


def test_a_deep_listing_entry_is_checked_without_being_built() -> None:
    """The deep bound exists for memory: an entry of 8 MB nested 4 million deep (~300 MB built)
    is left out for a few MB more than its own text (the text, its copy, one byte a level)."""
    value = "[" * 4_000_000 + "]" * 4_000_000
    body = _listing_body(value)
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    del value, body
    tracemalloc.start()
    try:
        decoder = Decoder(build_deep=False)
        values = [e.value for e in iter_array(chunks, key="data", decoder=decoder, max_element_chars=16 * 2**20)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert values == [{"id": "a"}, jsonread.LEFT_OUT, {"id": "b"}]
    assert decoder.unusual == 1 and decoder.deep is jsonread.LEFT_OUT
    assert peak < 64 * 2**20, peak  # building it: ~300 MB


@pytest.mark.parametrize(
    "value",
    [
        "[" * _LEVELS + "}" + "]" * (_LEVELS - 1),  # a closer of the wrong kind
        "[" * _LEVELS + "1 2" + "]" * _LEVELS,  # no comma
        "[" * _LEVELS + "]" * (_LEVELS - 1),  # never closed (the listing's own ']' is taken)
        "[" * _LEVELS + "," + "]" * _LEVELS,  # a value missing
    ],
    ids=["wrong-closer", "no-comma", "unclosed", "missing-value"],
)
def test_a_deep_listing_entry_that_is_not_json_fails_the_listing_as_any_malformed_entry(value: str) -> None:
    """Left out means checked: a deep entry that is not JSON is the listing's typed error, as a
    shallow malformed one is (not skipped as if it were only deep)."""
    with pytest.raises(JSONStreamError):
        list(iter_array([_listing_body(value)], key="data", decoder=Decoder(build_deep=False)))


_TOKENS = st.sampled_from(
    ["[", "]", "{", "}", ",", ":", " ", "\n", '"a"', '"\\\\"', '"]"', '"\\ud83d"', "1", "-2.5e3", "1e999", "7" * 5000]
    + ["true", "null", "NaN", '"\\u005d"', '"', "\\", "x", '"\x01"']
    + ['{"a":', '{ "k" :\n', '[{"b":', '{"[":', '{"\\n":']  # skip_value's runs of keyed openers
)


def _outcome(read: Callable[[str], Any], text: str) -> Any:
    try:
        return read(text)
    except json.JSONDecodeError:
        return "JSONDecodeError"


@settings(max_examples=3000, deadline=None)
@given(st.lists(_TOKENS, min_size=1, max_size=40), st.integers(min_value=0, max_value=3))
def test_skip_value_ends_where_the_general_path_ends_or_raises_the_same_error(tokens: List[str], depth: int) -> None:
    """The contract of skip_value: for any text, hostile included, the same end as
    decode_without_recursion (the path that builds the value), or the same typed error."""
    text = "[" * depth + "".join(tokens)
    if text[0] in " \n":
        return  # raw_decode is only asked where a value starts
    decoder = Decoder()
    general = _outcome(lambda s: decode_without_recursion(s, 0, decoder)[1], text)
    assert _outcome(lambda s: jsonread.skip_value(s, 0, decoder), text) == general


_CLOSERS = {"[": "]", '{"k": ': "}", '[{"k": ': "}]"}


@settings(max_examples=200, deadline=None)
@given(st.lists(_TOKENS, min_size=1, max_size=12), st.sampled_from(list(_CLOSERS)))
def test_a_value_too_deep_for_the_c_scanner_ends_where_it_would_be_built(tokens: List[str], level: str) -> None:
    """Decoder(build_deep=False) against Decoder(): the same end or the same typed error for a
    value nested past the C scanner (within MAX_DEEP_CHARS, where the general path builds it)."""
    closer = _CLOSERS[level]
    depth = past_the_c_scanner(level, closer)  # a fixed 20,000 levels cost up to 20x more CPU
    text = level * depth + "".join(tokens) + closer * depth + "  ,"
    assert too_deep_for_the_c_scanner(text)

    def general(s: str) -> Any:
        return Decoder().raw_decode(s)[1]

    def checked(s: str) -> Any:
        decoder = Decoder(build_deep=False)
        value, end = decoder.raw_decode(s)
        assert value is jsonread.LEFT_OUT or decoder.unusual == 0
        return end

    assert _outcome(checked, text) == _outcome(general, text)


# -- hadv6 14: a byte that is not UTF-8 after an escaped high surrogate -----------------------------


def _event_bytes(content: bytes) -> bytes:
    """An event as compact JSON: what the old rule re-serialised an event with a byte to, so a
    lookalike sent as such text archived exactly the same raw."""
    return (
        b'{"id":"e0","offset":0,"type":"message","source":"user","correlation_id":"c",'
        b'"deleted":false,"created_at":"2024-01-01T00:00:00Z","data":{"type":"message",'
        b'"participant":{"id":"u","name":"u"},"parts":[{"type":"content","content":"' + content + b'"}]}}'
    )


def _server_bytes(raw: str) -> bytes:
    """The rule README states: a raw that is a JSON string holds the event's text, each byte that
    was not UTF-8 as its surrogateescape code point; any other raw is the event's text itself."""
    if raw.startswith('"'):
        text = json.loads(raw)
        assert isinstance(text, str)
        return text.encode("utf-8", "surrogateescape")
    return raw.encode("utf-8")


def _archived_raw(content: bytes) -> str:
    events = [
        event for batch in read_batches("s1", [b'{"data": [' + _event_bytes(content) + b"]}"], 100) for event in batch
    ]
    assert len(events) == 1
    return event_row("s1", events[0])[9]


# Contents the old rule archived alike, or archived as a character the server never sent.
_LOOKALIKES = {
    "high-escape-then-byte": b"A\\ud83d\xffB",  # was archived as \ud83d\udcff: U+1F4FF
    "escaped-pair": b"A\\ud83d\\udcffB",  # U+1F4FF, sent as a pair of escapes
    "the-character": "A\U0001f4ffB".encode(),  # U+1F4FF in UTF-8
    "low-escape": b"A\\udcffB",  # the server's own escape of U+DCFF
    "byte": b"A\xffB",  # the byte 0xFF, which was archived as that escape
    "low-escape-in-bytes-event": b"A\\udcff\xffB",
}


@pytest.mark.parametrize("name", sorted(_LOOKALIKES))
def test_each_lookalike_gives_back_its_own_bytes(name: str) -> None:
    content = _LOOKALIKES[name]
    raw = _archived_raw(content)
    assert _server_bytes(raw) == _event_bytes(content)
    raw.encode("utf-8")  # storable as it is (no lone surrogate)


def test_no_two_lookalikes_archive_the_same_raw() -> None:
    raws = {name: _archived_raw(content) for name, content in _LOOKALIKES.items()}
    assert len(set(raws.values())) == len(raws), raws


def test_the_value_read_comes_back_from_the_raw_of_an_event_with_a_byte_that_is_not_utf8() -> None:
    """The repro's value: 'A', U+D83D, U+DCFF, 'B', which no JSON text means (any reader pairs
    \\ud83d\\udcff): the raw, a JSON string, holds the text that reads as it once decoded again."""
    raw = _archived_raw(_LOOKALIKES["high-escape-then-byte"])
    read = Decoder().decode(json.loads(raw))["data"]["parts"][0]["content"]
    assert read == "A\ud83d\udcffB"


_PIECES = st.one_of(
    st.binary(max_size=6).map(lambda b: b.replace(b"\\", b"/").replace(b'"', b"'").translate(None, bytes(range(32)))),
    st.sampled_from(
        [b"\\ud83d", b"\\udcff", b"\\uDCFF", b"\\udc80", b"\\\\", b'\\"', b"\\n", b"\xed\xa0\xbd", b"\xf0\x9f"]
    ),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_PIECES, max_size=8))
def test_the_archived_raw_gives_back_the_servers_bytes_for_any_bytes(pieces: List[bytes]) -> None:
    """Hypothesis over arbitrary bytes (and escapes) in an event's string: the archived raw gives
    back exactly the bytes the server sent. A function from the archive back to the answer means
    no two answers can archive the same raw."""
    content = b"".join(pieces)
    assert _server_bytes(_archived_raw(content)) == _event_bytes(content)


def test_an_event_with_a_byte_that_is_not_utf8_is_stored_and_read_back_exactly(archive_db: str) -> None:
    """Both stores, through write_batch and iter_raw_events (what export reads)."""
    contents = [_LOOKALIKES["high-escape-then-byte"], _LOOKALIKES["escaped-pair"], _LOOKALIKES["byte"]]
    bodies = [
        _event_bytes(c).replace(b'"e0"', f'"e{n}"'.encode()).replace(b'"offset":0', f'"offset":{n}'.encode())
        for n, c in enumerate(contents)
    ]
    events = [
        event for batch in read_batches("s1", [b'{"data": [' + b", ".join(bodies) + b"]}"], 100) for event in batch
    ]
    store = open_store(archive_db)
    try:
        store.write_batch("s1", events)
        store.write_batch("s1", events)  # sent again: the same raws, no clash
        raws = list(store.iter_raw_events("s1"))
    finally:
        store.close()
    assert [_server_bytes(raw) for raw in raws] == bodies
    assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 0
