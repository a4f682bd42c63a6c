"""jsonread's scans that build nothing take runs of openers and object keys at once.

A value nested an object key per level (``{"a": {"a": ...``) was scanned a level per loop turn
in Python: ~1.5 s for a 2.1 MB listing entry, every listing round (many times that under
coverage's tracer). Both scans now take such runs by one bounded regex. The contract is the
same: :func:`~flux0sync.jsonread.element_end` ends where json ends, and
:func:`~flux0sync.jsonread.skip_value` where the path that builds the value ends, or raises the
same typed error, whatever the keys (escapes, brackets, quotes) and the whitespace between.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from flux0sync import jsonread
from flux0sync.jsonread import Decoder, decode_without_recursion, element_end
from hypothesis import given
from hypothesis import strategies as st

_KEYS = st.text(alphabet=st.sampled_from('a"\\[]{}\n :,'), max_size=3)
_SEPARATORS = st.sampled_from([(", ", ": "), (",", ":"), (" ,\n", " :\t"), ("\r\n,", ":\n ")])


@st.composite
def _nests(draw: st.DrawFn) -> str:
    """A value nested a level per key or list, written with any JSON whitespace, maybe cut short."""
    item, key = draw(_SEPARATORS)
    text = draw(st.sampled_from(["1", '"x"', "[]", "{}", "null"]))
    for _ in range(draw(st.integers(1, 40))):
        if draw(st.booleans()):
            text = "{" + json.dumps(draw(_KEYS)) + key + text + "}"
        else:
            text = "[" + text + draw(st.sampled_from(["", item + "2"])) + "]"
    return text


def _outcome(read: Callable[[str], Any], text: str) -> Any:
    try:
        return read(text)
    except json.JSONDecodeError:
        return "JSONDecodeError"


@given(_nests(), st.sampled_from(["", "]", ",", " ]}"]), st.integers(0, 3))
def test_element_end_ends_where_json_ends_for_keyed_nests(text: str, after: str, cut: int) -> None:
    _, end = json.JSONDecoder().raw_decode(text + after)
    assert element_end(text + after, 0, len(text)) == end == len(text)
    if cut and len(text) > cut:
        assert element_end(text[:-cut], 0, len(text)) == len(text) - cut  # cut short: the text's end


@given(_nests(), st.sampled_from(["", "]", ",", "}", " 1", '"a"']), st.integers(0, 3))
def test_skip_value_ends_where_the_built_value_ends_for_keyed_nests(text: str, after: str, cut: int) -> None:
    decoder = Decoder()
    sample = text[: len(text) - cut] + after
    built = _outcome(lambda s: decode_without_recursion(s, 0, decoder)[1], sample)
    assert _outcome(lambda s: jsonread.skip_value(s, 0, decoder), sample) == built


def test_nests_longer_than_one_run_end_where_they_are_built() -> None:
    """Runs are taken 1,024 at a time: nests of many runs, keys simple and not, whitespace between."""
    for opener, closer in [('{"a": ', "}"), ('[{"b" :\n', "}]"), ('{ "c":[', "]}"), ('{"[":', "}"), ('{"\\"":', "}")]:
        levels = 3000 // len(closer)
        text = opener * levels + "1" + closer * levels
        assert element_end(text + ",]", 0, len(text)) == len(text)
        decoder = Decoder()
        assert (
            jsonread.skip_value(text + " ]", 0, decoder) == decode_without_recursion(text, 0, decoder)[1] == len(text)
        )
