from __future__ import annotations

import pytest

from flux0lite.errors import PatchError
from flux0lite.models import JsonPatch
from flux0lite.patch import apply_patch, apply_patches, document_text


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
