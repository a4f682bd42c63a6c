from __future__ import annotations

import json
import tracemalloc
import zlib
from typing import Any, Iterator, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flux0lite.errors import DecodeError, Flux0Error
from flux0lite.jsonstream import JSONStreamError, iter_array, read_array


def pieces(data: bytes, size: int) -> List[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None)
@given(items=st.lists(json_values, max_size=8), size=st.integers(1, 17), indent=st.sampled_from([None, 2]))
def test_any_split_of_any_document_reads_like_json_loads(items: List[Any], size: int, indent: Any) -> None:
    body = json.dumps({"before": [1, {"x": "]"}], "data": items, "after": "}"}, indent=indent).encode()
    elements = list(iter_array(pieces(body, size), key="data"))
    assert [e.value for e in elements] == json.loads(body)["data"]
    assert [json.loads(e.text) for e in elements] == [e.value for e in elements]
    assert read_array(pieces(json.dumps(items).encode(), size)) == items


def test_element_text_is_exactly_what_the_server_sent() -> None:
    body = b'{"data": [ {"a" : 1,\n "t": "\\ud83d"} , 12 , 1.50 ]}'
    assert [e.text for e in iter_array(pieces(body, 3), key="data")] == ['{"a" : 1,\n "t": "\\ud83d"}', "12", "1.50"]


def test_numbers_split_at_a_chunk_boundary_are_not_cut() -> None:
    assert read_array([b"[12", b"34, tr", b"ue, 5", b"]"]) == [1234, True, 5]


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"data": [1, 2', "truncated"),
        (b'{"data": [1, 2]', "truncated"),
        (b'{"data": [1 2]}', "expected ','"),
        (b'{"data": [1]} trailing', "unexpected data"),
        (b'{"other": []}', "no 'data'"),
        (b'{"data": {}}', "not an array"),
        (b'{"data": [], "data": []}', "twice"),
        (b'{"data": [1, \xff]}', "UTF-8"),
        (b'{"data": ["\xe2\x82', "UTF-8"),
        (b"[" + b"9" * 5000 + b"]", "unreadable"),
        (b"[" * 100000, "unreadable"),
        (b"", "end of stream"),
        (b'{"data": [nul]}', "truncated"),
    ],
)
def test_malformed_streams_raise_one_typed_error(body: bytes, message: str) -> None:
    key = "data" if body.startswith(b"{") else None
    with pytest.raises(JSONStreamError, match=message) as caught:
        list(iter_array(pieces(body, 4), key=key, what="GET /x"))
    assert isinstance(caught.value, DecodeError) and isinstance(caught.value, Flux0Error)
    assert "GET /x" in str(caught.value)


def test_huge_element_is_refused_at_the_limit() -> None:
    body = b'[1, "' + b"x" * 10000 + b'"]'
    with pytest.raises(JSONStreamError, match="over 1000 characters"):
        list(iter_array(pieces(body, 100), max_element_chars=1000))
    malformed_forever = b"[" + b"{" + b'"a" 1, ' * 10000
    with pytest.raises(JSONStreamError, match="over 1000 characters"):
        list(iter_array(pieces(malformed_forever, 100), max_element_chars=1000))


def test_elements_before_a_fault_are_yielded_first() -> None:
    seen: List[Any] = []
    with pytest.raises(JSONStreamError):
        for element in iter_array([b'{"data": [1, 2, {"cut'], key="data"):
            seen.append(element.value)
    assert seen == [1, 2]


def _gzip_stream(count: int) -> Iterator[bytes]:
    """A list_events-like body, gzipped, inflated in bounded pieces like the transport does."""
    event = json.dumps({"id": "e", "offset": 0, "data": {"text": "y" * 500}}).encode()
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    body = compressor.compress(b'{"data": [') + b"".join(
        compressor.compress((b"," if i else b"") + event) for i in range(count)
    )
    body += compressor.compress(b"]}") + compressor.flush()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in pieces(body, 64 * 1024):
        data = chunk
        while data:
            yield inflater.decompress(data, 1024 * 1024)
            data = inflater.unconsumed_tail


def test_memory_stays_bounded_by_one_element_and_one_read() -> None:
    tracemalloc.start()
    try:
        count = 0
        for element in iter_array(_gzip_stream(100_000), key="data"):  # ~52 MB of JSON
            count += 1
            assert element.value["offset"] == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_whitespace_padding_is_dropped_as_it_is_read() -> None:
    def padded() -> Iterator[bytes]:
        yield b'{"data": [1,'
        for _ in range(200):
            yield b" " * 1024 * 1024  # 200 MiB of padding, as a gzip bomb inflates it
        yield b"2]}"

    tracemalloc.start()
    try:
        assert read_array(padded(), key="data") == [1, 2]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_one_huge_element_in_small_chunks_is_read_in_linear_time() -> None:
    body = json.dumps({"data": [1, {"t": "z" * 20_000_000}, 2]}).encode()
    values = read_array(pieces(body, 64 * 1024), key="data")
    assert values[0] == 1 and len(values[1]["t"]) == 20_000_000 and values[2] == 2


def test_a_value_that_ends_where_a_read_ends_is_read_once_unless_it_is_a_number() -> None:
    """hadv10 01: a value ending exactly at a read's end was read again after the next read, as
    if it could go on (a 16 MiB event: its shallow read twice, ~8 s of CPU more); only a number can."""

    class Counting(json.JSONDecoder):
        calls = 0

        def raw_decode(self, s: str, idx: int = 0) -> Any:
            Counting.calls += 1
            return super().raw_decode(s, idx)

    # the quick loop tries each value once, and leaves one that ends the read to the careful path
    for first, second, expected in ((b'[{"a": [1, "x"]}', b"]", 2), (b'["x", 12', b"3]", 4)):
        Counting.calls = 0
        values = read_array([first, second], decoder=Counting())
        assert values == json.loads(first + second)
        assert Counting.calls == expected, (first, Counting.calls)
