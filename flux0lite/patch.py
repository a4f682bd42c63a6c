"""Applying flux0's chunk patches (RFC 6902 subset) to rebuild a streamed message.

A reply starts as nothing; ``/-`` appends to a list (of text pieces, usually), other paths build
an object, e.g. ``/tool_calls/0/args/-``. Documents are mutated in place for linear cost on long
replies; callers own the documents they pass in.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Union

from .errors import PatchError
from .models import JsonPatch

__all__ = ["apply_patch", "apply_patches", "document_text"]

_MISSING = object()


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split(path: str) -> List[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _index(container: List[Any], token: str, path: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        raise PatchError(f"bad array index {token!r} in {path!r}")
    index = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if index > limit:
        raise PatchError(f"array index {index} out of range in {path!r}")
    return index


def _empty_for(token: str) -> Union[List[Any], dict]:  # type: ignore[type-arg]
    return [] if token == "-" or token.isdigit() else {}


def apply_patch(document: Any, patch: JsonPatch) -> Any:
    """Apply one operation and return the (possibly new) root document.

    Missing containers on the way are created (a chunk may address ``/tool_calls/0`` before any
    ``tool_calls`` exists); ``add``, ``replace`` and ``remove`` are supported.
    """
    tokens = _split(patch.path)
    op = patch.op
    if op not in ("add", "replace", "remove"):
        raise PatchError(f"unsupported patch op {op!r} at {patch.path!r}")
    if not tokens:
        if op == "remove":
            return None
        return patch.value
    if document is None:
        document = _empty_for(tokens[0])
    parent = document
    for depth, token in enumerate(tokens[:-1]):
        if isinstance(parent, dict):
            child = parent.get(token, _MISSING)
            if child is _MISSING or child is None:
                child = _empty_for(tokens[depth + 1])
                parent[token] = child
        elif isinstance(parent, list):
            index = _index(parent, token, patch.path, allow_end=True)
            if index == len(parent):
                parent.append(_empty_for(tokens[depth + 1]))
            child = parent[index]
        else:
            raise PatchError(f"cannot descend into {type(parent).__name__} at {patch.path!r}")
        parent = child
    last = tokens[-1]
    if isinstance(parent, dict):
        if op == "remove":
            if last not in parent:
                raise PatchError(f"nothing to remove at {patch.path!r}")
            del parent[last]
        else:
            parent[last] = patch.value
    elif isinstance(parent, list):
        if op == "add":
            parent.insert(_index(parent, last, patch.path, allow_end=True), patch.value)
        elif op == "replace":
            parent[_index(parent, last, patch.path, allow_end=False)] = patch.value
        else:
            del parent[_index(parent, last, patch.path, allow_end=False)]
    else:
        raise PatchError(f"cannot patch into {type(parent).__name__} at {patch.path!r}")
    return document


def apply_patches(document: Any, patches: Sequence[JsonPatch]) -> Any:
    for patch in patches:
        document = apply_patch(document, patch)
    return document


def document_text(document: Any) -> str:
    """A plain-text reply: the joined string pieces of a list, or a string as is."""
    if isinstance(document, str):
        return document
    if isinstance(document, list):
        return "".join(piece for piece in document if isinstance(piece, str))
    return ""
