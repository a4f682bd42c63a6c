"""The fast paths of :mod:`flux0lite.patch` and the reply assembler against the general path.

Contract: whatever the patches and the starting document (hostile values included: huge
numbers, NaN, lone surrogates, unknown ops, bad paths), the fast paths give the same document,
text, kept size and error (type and message) as the general path: every list a
:class:`_PieceList` from its first touch, every value copied by the Python walk, every patch
through ``_apply``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from flux0lite import patch as patch_module
from flux0lite.errors import Flux0Error, PatchError, ResponseTooLargeError
from flux0lite.models import ChunkEvent, JsonPatch
from flux0lite.patch import VALUE_OVERHEAD, PatchedDocument, sized_copy
from flux0lite.streaming import ReplyAssembler

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

_TEXT = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(), max_size=6)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**30, max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _TEXT
)
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TEXT, inner, max_size=4), max_leaves=12
)
_TOKENS = st.sampled_from(["-", "0", "1", "2", "3", "01", "a", "b", "tool_calls", "args", "~0", "~1x", "²", "9" * 20])
# the paths flux0 sends and their neighbours: most reach into containers earlier ones made
_FLUX0_PATHS = st.sampled_from(
    ["/tool_calls/0", "/tool_calls/1", "/tool_calls/0/args/-", "/tool_calls/0/args/0", "/tool_calls/0/tool_name"]
    + ["/tool_calls/0/args", "/answer", "/a/b", "/a/b/-", "/a/0/b", "/0/0", "/0/-", "/tool_call_results"]
    + ["/tool_call_results/-", "/tool_call_results/0/data", "/a", "/b/1", "/tool_calls/00", "/tool_calls/9999"]
)
_PATHS = st.one_of(
    st.lists(_TOKENS, min_size=1, max_size=4).map(lambda tokens: "/" + "/".join(tokens)),
    st.sampled_from(["", "/-", "/-", "/-", "no-slash", "/" + "/".join("a" * 70)]),
    _FLUX0_PATHS,
    _FLUX0_PATHS,
)
_OPS = st.sampled_from(["add", "add", "add", "replace", "remove", "move"])
_PATCH = st.builds(JsonPatch, _OPS, _PATHS, st.one_of(_TEXT, _VALUES))
_PATCHES = st.lists(_PATCH, max_size=25)
# documents whose members the paths name, so that patches reach into existing containers
_KEYED = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(["a", "b", "tool_calls", "args", "0", "-", "~", "/"]), inner, max_size=4)
    ),
    max_leaves=12,
)
_STARTS = st.one_of(st.none(), _VALUES, st.lists(_TEXT, max_size=8), _KEYED)


def _outcome(action: Any) -> Tuple[str, str]:
    """What one step did: ("ok", "") or the error's type and message."""
    try:
        action()
    except Flux0Error as exc:
        return type(exc).__name__, str(exc)
    return "ok", ""


def _general_text(root: Any) -> str:
    if isinstance(root, str):
        return root
    if isinstance(root, (list, patch_module._PieceList)):
        return "".join(piece for piece in root if isinstance(piece, str))
    return ""


@contextmanager
def _long_lists_from(length: int) -> Iterator[None]:
    """Plain lists of ``length`` items or more become _PieceLists when a patch reaches them."""
    saved = patch_module._LONG
    patch_module._LONG = length
    try:
        yield
    finally:
        patch_module._LONG = saved


class _General:
    """The general path alone: lists become _PieceLists at their first touch (a plain list
    never takes a patch) and every value is copied by the Python walk."""

    def __init__(self, start: Any) -> None:
        self.document = PatchedDocument(start)

    def apply(self, patch: JsonPatch) -> None:
        value = patch.value if patch.op == "remove" else patch_module._plain(patch.value)
        with _long_lists_from(0):
            self.document._apply(patch.op, patch.path, value)

    def value(self) -> Any:
        return patch_module._plain(self.document._root)


@hypothesis.settings(max_examples=250, deadline=None)
@hypothesis.given(_STARTS, _PATCHES, st.sampled_from([1, 2, 3, patch_module._LONG]))
def test_fast_paths_match_the_general_path(start: Any, patches: List[JsonPatch], long: int) -> None:
    general = _General(start)
    fast = PatchedDocument(start)
    with _long_lists_from(long):  # small thresholds: plain lists turn into _PieceLists mid-run
        for patch in patches:
            expected = _outcome(lambda: general.apply(patch))
            assert _outcome(lambda: fast.apply(patch)) == expected
            # repr, not ==: NaN is not equal to itself, and -0.0 must stay -0.0
            assert repr(fast.value()) == repr(general.value())
            assert fast.text() == _general_text(general.document._root)


def _reference_size(value: Any) -> int:
    """The kept-size estimate as documented, computed the obvious way."""
    if isinstance(value, str):
        return VALUE_OVERHEAD + len(value)
    if type(value) is int:
        return VALUE_OVERHEAD + value.bit_length() // 7
    if isinstance(value, dict):
        return VALUE_OVERHEAD + sum(len(key) + _reference_size(item) for key, item in value.items())
    if isinstance(value, list):
        return VALUE_OVERHEAD + sum(_reference_size(item) for item in value)
    return VALUE_OVERHEAD


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(_VALUES)
def test_sized_copy_is_a_deep_copy_and_the_documented_size(value: Any) -> None:
    copy, size = sized_copy(value)
    assert repr(copy) == repr(value) and size == _reference_size(value)
    containers: List[Any] = [value]
    copies: List[Any] = [copy]
    while containers:  # no container is shared with the original
        source, target = containers.pop(), copies.pop()
        if isinstance(source, (dict, list)):
            assert source is not target
            items: Iterator[Tuple[Any, Any]] = (
                zip(source.values(), target.values()) if isinstance(source, dict) else zip(source, target)
            )
            for a, b in items:
                containers.append(a)
                copies.append(b)


def _chunk(event_id: str, patches: List[JsonPatch]) -> ChunkEvent:
    return ChunkEvent(event_id=event_id, seq=0, patches=tuple(patches))


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    st.lists(st.tuples(st.sampled_from(["a", "b"]), st.lists(_PATCH, max_size=4)), max_size=10),
    st.sampled_from([200, 2_000, 10**9]),
)
def test_assembler_matches_the_general_path(events: List[Tuple[str, List[JsonPatch]]], max_bytes: int) -> None:
    """The assembler's chunk path (text pieces uncopied, other values copied once and measured
    in one walk, a rejected event undone) against the general path on a copy of the message,
    kept only if every patch applies, with the documented accounting: a chunk's values, paths
    and new message id are all counted, and checked against the cap, before any is applied;
    a rejected chunk is not counted."""
    assembler = ReplyAssembler(max_bytes=max_bytes)
    documents: Dict[str, _General] = {}
    kept = 0
    reordered = False  # a rejected event put back an object member it removed: it comes last
    for event_id, patches in events:
        charge = 3 * VALUE_OVERHEAD + len(event_id) if event_id not in documents else 0
        charge += sum(_reference_size(p.value) for p in patches if p.op != "remove")
        charge += sum(len(p.path) + 2 * VALUE_OVERHEAD * p.path.count("/") for p in patches if p.path != "/-")
        if kept + charge > max_bytes:
            with pytest.raises(ResponseTooLargeError, match=f"over {max_bytes} bytes"):
                assembler.add(_chunk(event_id, patches))
            # counted as far as it was measured: a value stops being measured (and copied)
            # once the count passes the cap
            assert max_bytes < assembler.kept_bytes <= kept + charge
            break
        trial = _General(documents[event_id].value() if event_id in documents else None)
        expected: Tuple[str, str] = ("ok", "")
        for p in patches:
            expected = _outcome(lambda: trial.apply(p))
            if expected != ("ok", ""):
                reordered = reordered or any(p.op == "remove" for p in patches)
                break
        assert _outcome(lambda: assembler.add(_chunk(event_id, patches))) == expected
        if expected == ("ok", ""):
            documents[event_id] = trial
            kept += charge
        assert assembler.kept_bytes == kept
    assert list(assembler.reply().messages) == list(documents)
    for event_id, general in documents.items():
        if reordered:
            assert _unordered(assembler.document(event_id)) == _unordered(general.value())
        else:
            assert repr(assembler.document(event_id)) == repr(general.value())
    reply = assembler.reply()
    assert reply.text == "".join(_general_text(g.document._root) for g in documents.values())


def _unordered(value: Any) -> Any:
    """A value compared as JSON (object members in any order; repr keeps NaN and -0.0 apart)."""
    if isinstance(value, dict):
        return sorted((key, repr(_unordered(item))) for key, item in value.items())
    if isinstance(value, list):
        return [_unordered(item) for item in value]
    return repr(value)


def test_text_pieces_stay_one_plain_list_until_another_patch() -> None:
    document = PatchedDocument()
    for piece in ("a", "b", "c"):
        document.apply(JsonPatch("add", "/-", piece))
    assert type(document._root) is list and document.text() == "abc"
    document.apply(JsonPatch("add", "/0", "z"))  # short: still a plain list, an O(1) insert
    assert document.value() == ["z", "a", "b", "c"]
    many = PatchedDocument()
    for number in range(patch_module._LONG + 5):
        many.apply(JsonPatch("add", "/-", str(number)))
    many.apply(JsonPatch("add", "/1", "x"))  # long: the general structure from now on
    assert type(many._root) is patch_module._PieceList
    assert many.value()[:3] == ["0", "x", "1"]


def test_value_copies_deep_documents_and_odd_values_without_marshal() -> None:
    deep: Any = "leaf"
    for _ in range(5000):  # deeper than marshal goes
        deep = [deep]
    document = PatchedDocument()
    document.apply(JsonPatch("add", "/d", deep))
    document.apply(JsonPatch("add", "/s", "\udcff"))
    value = document.value()
    assert value["s"] == "\udcff"
    node = value["d"]
    for _ in range(5000):
        node = node[0]
    assert node == "leaf"


def test_a_text_message_is_copied_per_reply_and_keeps_its_pieces_when_another_patch_comes() -> None:
    """A message of text pieces only is a plain list in the assembler: each reply and document()
    is a copy of it, and a later patch of another kind builds on the same pieces, atomically."""
    assembler = ReplyAssembler()
    for piece in ("a", "b"):
        assembler.add(_chunk("m", [JsonPatch("add", "/-", piece)]))
    assembler.reply().messages["m"].append("x")
    assembler.document("m").append("y")
    assert assembler.reply().messages == {"m": ["a", "b"]} and assembler.text == "ab"
    assembler.add(_chunk("m", [JsonPatch("add", "/-", "c"), JsonPatch("replace", "/0", "z")]))
    assert assembler.document("m") == ["z", "b", "c"] and assembler.reply().text == "zbc"
    kept = assembler.kept_bytes
    with pytest.raises(PatchError):
        assembler.add(_chunk("m", [JsonPatch("add", "/-", "d"), JsonPatch("remove", "/9")]))
    assert assembler.document("m") == ["z", "b", "c"] and assembler.kept_bytes == kept
    assembler.add(_chunk("n", []))  # no patch yet: the message is null, not an empty list
    assert assembler.document("n") is None and assembler.reply().messages["n"] is None
