from __future__ import annotations

from typing import List

import pytest

from flux0lite.errors import PatchError
from flux0lite.models import JsonPatch
from flux0lite.patch import MAX_PATH_DEPTH, PatchedDocument, apply_patch, apply_patches, document_text


def test_append_pieces_to_nothing() -> None:
    doc = apply_patches(None, [JsonPatch("add", "/-", "a"), JsonPatch("add", "/-", "b")])
    assert doc == ["a", "b"] and document_text(doc) == "ab"


def test_tool_call_paths_build_objects() -> None:
    doc = apply_patches(
        None,
        [
            JsonPatch("add", "/tool_calls/0", {"tool_name": "", "args": []}),
            JsonPatch("replace", "/tool_calls/0/tool_name", "search"),
            JsonPatch("add", "/tool_calls/0/args/-", '{"q": '),
            JsonPatch("add", "/tool_calls/0/args/-", "1}"),
        ],
    )
    assert doc == {"tool_calls": [{"tool_name": "search", "args": ['{"q": ', "1}"]}]}
    assert document_text(doc) == ""


def test_escaped_pointer_tokens_remove_and_root() -> None:
    doc = apply_patch({}, JsonPatch("add", "/a~1b/c~0d", 1))
    assert doc == {"a/b": {"c~d": 1}}
    assert apply_patch(doc, JsonPatch("remove", "/a~1b")) == {}
    assert apply_patch({"x": 1}, JsonPatch("replace", "", "whole")) == "whole"
    assert apply_patch(["a", "b"], JsonPatch("remove", "/0")) == ["b"]
    assert apply_patch(["a"], JsonPatch("add", "/0", "z")) == ["z", "a"]
    assert document_text("plain") == "plain"


@pytest.mark.parametrize(
    "doc,patch",
    [
        (None, JsonPatch("move", "/a")),
        ({}, JsonPatch("add", "no-slash", 1)),
        ([], JsonPatch("replace", "/0", 1)),
        (["a"], JsonPatch("add", "/5", 1)),
        (["a"], JsonPatch("add", "/01", 1)),
        ({"a": 1}, JsonPatch("add", "/a/b", 1)),
        ({"a": "s"}, JsonPatch("add", "/a/b/c", 1)),
        ({}, JsonPatch("remove", "/missing")),
    ],
)
def test_impossible_patches_raise_patch_error(doc: object, patch: JsonPatch) -> None:
    with pytest.raises(PatchError):
        apply_patch(doc, patch)


# -- hostile paths (issue 11) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/²",  # a digit to str.isdigit(), not to int()
        "/٣",  # ARABIC-INDIC DIGIT THREE
        "/" + "9" * 5000,  # int() refuses it on 3.11+; it is out of range anyway
        "/" + "1" * 19,
        "/a" * 50_000,  # 50k levels: no RecursionError, no 50k nested dicts
        "/" + "/".join(["0"] * (MAX_PATH_DEPTH + 1)),
    ],
)
def test_hostile_paths_raise_patch_error(path: str) -> None:
    with pytest.raises(PatchError) as info:
        apply_patches(["x"], [JsonPatch("add", path, 1)])
    assert len(str(info.value)) < 400  # the message does not carry the whole path


def test_deepest_allowed_path_builds_nested_objects() -> None:
    path = "/a" * MAX_PATH_DEPTH
    doc = apply_patch(None, JsonPatch("add", path, "deep"))
    for _ in range(MAX_PATH_DEPTH):
        doc = doc["a"]
    assert doc == "deep"


def test_caller_document_and_patch_values_are_not_changed() -> None:
    value = {"tool_name": "", "args": []}
    doc = {"tool_calls": [dict(value, args=["x"])]}
    result = apply_patches(
        doc,
        [
            JsonPatch("add", "/tool_calls/1", value),
            JsonPatch("add", "/tool_calls/1/args/-", "piece"),
            JsonPatch("add", "/tool_calls/0/args/0", "first"),
        ],
    )
    assert result == {"tool_calls": [{"tool_name": "", "args": ["first", "x"]}, {"tool_name": "", "args": ["piece"]}]}
    assert value == {"tool_name": "", "args": []}  # the patch's own value, still seen in its event
    assert doc == {"tool_calls": [{"tool_name": "", "args": ["x"]}]}


def test_long_lists_at_both_ends_and_in_the_middle() -> None:
    """Enough items for many blocks: the same result as a plain list, op by op."""
    patched = PatchedDocument()
    expected: List[int] = []
    for i in range(6000):
        if i % 3 == 0:
            patched.apply(JsonPatch("add", "/0", i))
            expected.insert(0, i)
        elif i % 3 == 1:
            patched.apply(JsonPatch("add", "/-", i))
            expected.append(i)
        else:
            patched.apply(JsonPatch("add", f"/{len(expected) // 2}", i))
            expected.insert(len(expected) // 2, i)
    for i in range(0, 3000, 7):
        patched.apply(JsonPatch("replace", f"/{i}", -i))
        expected[i] = -i
    for _ in range(2500):
        patched.apply(JsonPatch("remove", f"/{len(expected) // 3}"))
        del expected[len(expected) // 3]
    assert patched.value() == expected


def test_value_of_a_deeply_nested_document_needs_no_recursion() -> None:
    deep: object = "leaf"
    for _ in range(100_000):
        deep = [deep]
    patched = PatchedDocument({"v": deep})
    patched.apply(JsonPatch("add", "/w", 1))
    value = patched.value()
    assert value["w"] == 1 and isinstance(value["v"], list)
