"""Contracts of the writer's shortcuts: each gives exactly what the general path gives, on any
input, hostile ones included.

* ``jsonread.Decoder.quick_scan`` (json's own scanner, integers read in C) against the
  decoder's own ``scan_once`` (integers through ``Decoder._int``) and against ``raw_decode``
  alone: same elements (values, texts), same count of unusual values, same typed error.
* ``rows._ASCII_TIMESTAMP`` against ``rows._TIMESTAMP`` on ASCII text.
* ``engine._unpacked``'s ``Piece.top`` against ``jobs.highest_offset`` of the piece's events.
* ``jobs.read_batches`` of a small answer's pieces (joined when small) against the same pieces
  read one by one: same batches, same typed error (cut short, not UTF-8, malformed).
"""

from __future__ import annotations

import json
import string
from typing import Any, Callable, List, Optional, Tuple

from flux0sync import rows
from flux0sync.engine import _unpacked
from flux0sync.jobs import Fetched, highest_offset, read_batches
from flux0sync.jsonread import Decoder
from flux0sync.rows import RawEvent
from flux0sync.workers import Finished, Job, Piece
from hypothesis import given, settings
from hypothesis import strategies as st

from flux0lite import Flux0Error
from flux0lite.jsonstream import iter_array

_HUGE = "9" * 4400  # past CPython's int-from-text limit: read as a Decimal
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)
_ODD = st.sampled_from(
    [
        _HUGE,
        "-" + _HUGE,
        '{"offset": ' + _HUGE + "}",
        "[" + _HUGE + ", 1]",
        "[" * 3000 + "]" * 3000,  # too deep for the C scanner: read without recursion
        "NaN",
        "-Infinity",
        "1e999",
        '"\\ud83d"',
        '"\udcff"',  # a byte that is not UTF-8, as surrogateescape reads it
        "01",
        "[1,]",
        '{"a" 1}',
        "tru",
        '"cut',
        "1 2",
    ]
)


def _element_texts() -> Any:
    return st.one_of(_VALUES.map(lambda value: json.dumps(value)), _ODD)


def _read(text: str, decoder: Decoder) -> Tuple[List[Tuple[str, str]], int, Optional[Tuple[type, str]]]:
    """What iter_array reads with ``decoder``: (repr of value, text) per element, unusual, error."""
    got: List[Tuple[str, str]] = []
    error = None
    try:
        for element in iter_array([text], key="data", decoder=decoder, errors="surrogateescape"):
            got.append((repr(element.value), element.text))
    except (Flux0Error, RecursionError) as exc:
        error = (type(exc), str(exc))
    return got, decoder.unusual, error


def _general(scan: Callable[[Decoder], Callable[[str, int], Any]]) -> Decoder:
    decoder = Decoder()
    decoder.quick_scan = scan(decoder)  # type: ignore[attr-defined]
    return decoder


@settings(max_examples=400, deadline=None)
@given(elements=st.lists(_element_texts(), max_size=5), spaces=st.sampled_from(["", " ", "\n  "]))
def test_quick_scan_reads_what_the_general_path_reads(elements: List[str], spaces: str) -> None:
    text = '{"data": [' + ("," + spaces).join(elements) + "]}"
    quick = _read(text, Decoder())
    assert quick == _read(text, _general(lambda decoder: decoder.scan_once))  # type: ignore[attr-defined]
    assert quick == _read(text, _general(lambda decoder: decoder.raw_decode))


def test_a_huge_integer_is_read_as_a_decimal_and_counted() -> None:
    decoder = Decoder()
    got, unusual, error = _read('{"data": [{"offset": ' + _HUGE + '}, {"offset": 3}]}', decoder)
    assert error is None and unusual == 1
    assert got[0][0] == "{'offset': Decimal('" + _HUGE + "')}" and got[1][0] == "{'offset': 3}"


_ASCII = st.text(alphabet=string.printable, max_size=40)
_NEAR = st.from_regex(
    r"\A[0-9 ]{3,5}-[0-9]{1,3}-[0-9]{2}[T tZ][0-9]{2}:[0-9]{1,2}(:[0-9]{2}(\.[0-9]{0,11})?)?(Z|z|[+-][0-9]{2}:?[0-9]{1,3})?\n?\Z"
)


@settings(max_examples=600, deadline=None)
@given(text=st.one_of(_ASCII, _NEAR))
def test_the_ascii_timestamp_pattern_matches_what_the_general_one_does(text: str) -> None:
    assert text.isascii()
    assert bool(rows._ASCII_TIMESTAMP.match(text)) == bool(rows._TIMESTAMP.match(text))


_OFFSETS = st.one_of(
    st.integers(min_value=-5, max_value=60),
    st.sampled_from([2**63, -(2**63), 10**30, None, "7", 3.0, True, [1]]),
)


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.one_of(_OFFSETS, st.just("no-offset"), st.just("not-an-object")), max_size=12),
    size=st.integers(min_value=1, max_value=5),
)
def test_the_top_a_piece_carries_is_the_highest_offset_of_its_events(offsets: List[Any], size: int) -> None:
    docs: List[Any] = []
    for n, offset in enumerate(offsets):
        if offset == "not-an-object":
            docs.append([n])
        elif offset == "no-offset":
            docs.append({"id": f"e{n}"})
        else:
            docs.append({"id": f"e{n}", "offset": offset})
    body = json.dumps({"data": docs}).encode()
    job: Job[Any] = Job("events:s", None, lambda client, emit: None, ("events", "s"))
    messages = list(_unpacked(Finished(job, Fetched(-1, [], [body])), size))
    pieces = [message for message in messages if isinstance(message, Piece)]
    for piece in pieces:
        batch: List[RawEvent] = piece.payload
        assert piece.top == highest_offset(batch, -1)
    final = messages[-1]
    assert isinstance(final, Finished) and isinstance(final.value, Fetched)
    assert final.value.highest == highest_offset([event for piece in pieces for event in piece.payload], -1)


def _batches(pieces: Any, size: int) -> Tuple[List[List[Tuple[str, str]]], Optional[Tuple[type, str]]]:
    got: List[List[Tuple[str, str]]] = []
    error = None
    try:
        for batch in read_batches("s", pieces, size):
            got.append([(repr(event.doc), event.text) for event in batch])
    except Flux0Error as exc:
        error = (type(exc), str(exc))
    return got, error


@settings(max_examples=300, deadline=None)
@given(
    docs=st.lists(st.one_of(st.fixed_dictionaries({"id": st.text(min_size=1, max_size=4)}), _VALUES), max_size=6),
    hostile=st.sampled_from([b"", b"\xff", b"\xe2\x82", b"]}", b"x", b",", b"}"]),
    cut=st.integers(min_value=0, max_value=400),
    splits=st.lists(st.integers(min_value=0, max_value=400), max_size=4),
    size=st.integers(min_value=1, max_value=4),
)
def test_a_small_answer_in_pieces_is_read_as_when_streamed(
    docs: List[Any], hostile: bytes, cut: int, splits: List[int], size: int
) -> None:
    body = json.dumps({"data": docs}).encode()
    body = body[: min(cut, len(body))] + hostile + body[min(cut, len(body)) :]
    bounds = sorted({min(s, len(body)) for s in splits} | {0, len(body)})
    pieces = [body[a:b] for a, b in zip(bounds, bounds[1:])]
    joined = _batches(list(pieces), size)  # a list of pieces: read as one when small
    assert joined == _batches(iter(pieces), size)  # an iterator: read piece by piece
