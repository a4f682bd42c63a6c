"""Applying flux0's chunk patches (RFC 6902 subset) to rebuild a streamed message.

A reply starts as nothing; ``/-`` appends to a list (of text pieces, usually), other paths build
an object, e.g. ``/tool_calls/0/args/-``. :class:`PatchedDocument` keeps the message being
built; every operation costs O(log n) in the length of the list it touches (plus the path's
length), so a hostile stream of inserts at ``/0`` is n log n, not n squared: a list is a
plain Python list while it is shorter than one block of :class:`_PieceList` (an insert into it
moves fewer pointers than a block's), and becomes one when a patch reaches into it longer.
The document is turned into plain JSON values (lists and dicts) only when asked for.

Limits against hostile paths, each a :class:`PatchError`: at most :data:`MAX_PATH_DEPTH`
tokens; array indexes are ASCII digits without leading zeros (``/²`` is not an index) and a
list never has more than 10**18 items, so a longer index is out of range without being parsed.
"""

from __future__ import annotations

import marshal
from itertools import chain
from math import isqrt
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .errors import PatchError
from .models import JsonPatch

__all__ = ["MAX_PATH_DEPTH", "VALUE_OVERHEAD", "PatchedDocument", "apply_patch", "apply_patches", "document_text"]
__all__ += ["sized_copy"]

MAX_PATH_DEPTH = 64
"""Most tokens a patch path may have (flux0's deepest is 4: ``/tool_calls/0/args/-``)."""

_MAX_INDEX_DIGITS = 18


class _PieceList:
    """A list with cheap index, insert and delete anywhere, for documents built by patches.

    Items live in blocks whose sizes a Fenwick tree sums, so finding index i costs O(log n);
    an insert moves at most one block's items (at most 2 * max(512, sqrt(n)) pointers, one
    C memmove). Appends, the common case, go to a tail list outside the tree: O(1).
    """

    __slots__ = ("_blocks", "_empty_blocks", "_len", "_tail", "_tree")

    _MIN_BLOCK = 512

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._blocks: List[List[Any]] = []
        self._tree: List[int] = [0]
        self._tail: List[Any] = list(items)
        self._len = len(self._tail)
        self._empty_blocks = 0

    def _block_size(self) -> int:
        return max(self._MIN_BLOCK, isqrt(self._len))

    def _rebuild(self) -> None:
        tree = [0] * (len(self._blocks) + 1)
        for number, block in enumerate(self._blocks, 1):
            tree[number] += len(block)
            parent = number + (number & -number)
            if parent < len(tree):
                tree[parent] += tree[number]
        self._tree = tree

    def _prefix(self, count: int) -> int:
        """Items in the first ``count`` blocks."""
        total = 0
        while count:
            total += self._tree[count]
            count -= count & -count
        return total

    def _push_tail(self) -> None:
        """The full tail becomes the last block: a Fenwick append, O(log n)."""
        number = len(self._blocks) + 1
        self._blocks.append(self._tail)
        self._tree.append(len(self._tail) + self._prefix(number - 1) - self._prefix(number - (number & -number)))
        self._tail = []

    def _grow(self, block: int, delta: int) -> None:
        tree = self._tree
        number = block + 1
        while number < len(tree):
            tree[number] += delta
            number += number & -number

    def _locate(self, index: int) -> Tuple[List[Any], int, int]:
        """(items, offset, block number or -1 for the tail) of position ``index``."""
        head = self._len - len(self._tail)
        if index >= head:
            return self._tail, index - head, -1
        tree = self._tree
        position, remaining = 0, index
        step = 1 << (len(tree).bit_length() - 1)
        while step:
            probe = position + step
            if probe < len(tree) and tree[probe] <= remaining:
                position = probe
                remaining -= tree[probe]
            step >>= 1
        return self._blocks[position], remaining, position

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Any]:
        return chain(chain.from_iterable(self._blocks), self._tail)

    def __getitem__(self, index: int) -> Any:
        items, offset, _ = self._locate(index)
        return items[offset]

    def __setitem__(self, index: int, value: Any) -> None:
        items, offset, _ = self._locate(index)
        items[offset] = value

    def append(self, value: Any) -> None:
        tail = self._tail
        tail.append(value)
        self._len += 1
        if len(tail) >= self._MIN_BLOCK and len(tail) >= self._block_size():
            self._push_tail()

    def insert(self, index: int, value: Any) -> None:
        if index == self._len:
            self.append(value)
            return
        items, offset, block = self._locate(index)
        items.insert(offset, value)
        self._len += 1
        if block < 0:
            if len(self._tail) >= self._block_size():
                self._push_tail()
            return
        size = self._block_size()
        if len(items) > 2 * size:
            # Splitting renumbers the blocks: rebuild the tree, O(n / size) after at least
            # size inserts into this block, so O(1) per insert once size ~ sqrt(n).
            self._blocks[block : block + 1] = [items[:size], items[size:]]
            self._rebuild()
        else:
            self._grow(block, 1)

    def __delitem__(self, index: int) -> None:
        items, offset, block = self._locate(index)
        del items[offset]
        self._len -= 1
        if block < 0:
            return
        self._grow(block, -1)
        if not items:
            # Empty blocks stay until they are half of all blocks: no rebuild per delete.
            self._empty_blocks += 1
            if 2 * self._empty_blocks > len(self._blocks):
                self._blocks = [b for b in self._blocks if b]
                self._empty_blocks = 0
                self._rebuild()


Container = Union[Dict[str, Any], List[Any], _PieceList]

_LONG = _PieceList._MIN_BLOCK
"""A plain list this long becomes a :class:`_PieceList` when a patch reaches into it; a
shorter one stays plain, as an insert into it moves fewer pointers than a block's."""


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~") if "~" in token else token


def _split(path: str) -> List[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {path[:80]!r}")
    if path.count("/") > MAX_PATH_DEPTH:
        raise PatchError(f"patch path deeper than {MAX_PATH_DEPTH} levels: {path[:80]!r}…")
    tokens = path[1:].split("/")
    return [_unescape(t) for t in tokens] if "~" in path else tokens


def _is_index(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _index(length: int, token: str, path: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return length
    if not _is_index(token) or (len(token) > 1 and token[0] == "0"):
        raise PatchError(f"bad array index {token[:40]!r} in {path[:80]!r}")
    index = int(token) if len(token) <= _MAX_INDEX_DIGITS else length + 1
    if index > (length if allow_end else length - 1):
        raise PatchError(f"array index {token[:40]} out of range in {path[:80]!r}")
    return index


def _empty_for(token: str) -> Container:
    return [] if token == "-" or _is_index(token) else {}


def _own(value: Any) -> Any:
    """A long plain list becomes a :class:`_PieceList` when a patch reaches into it."""
    return _PieceList(value) if type(value) is list and len(value) >= _LONG else value


_SCALARS = frozenset({str, int, float, bool, type(None)})
_FIXED_SIZE = frozenset({float, bool, type(None)})


VALUE_OVERHEAD = 64
"""Bytes :func:`sized_copy` charges per JSON value, about a small Python object's size."""

_BITS_PER_BYTE = 7
"""An int holds 30 bits in 4 bytes: charging one byte per 7 bits of its magnitude covers it."""

_CONTAINERS = (dict, list, _PieceList)


def sized_copy(value: Any, limit: Optional[int] = None) -> Tuple[Any, int]:
    """A deep copy as plain JSON values (lists, dicts), and the memory it holds, estimated:
    :data:`VALUE_OVERHEAD` bytes per value (each string, number, list or object) plus one per
    character of every string and object key, and one per 7 bits of an int's magnitude (a
    4,300-digit number holds about 1.9 kB). No recursion: any depth is fine.

    With a ``limit``, a container whose copy would take the estimate past it is not copied:
    the answer is then ``(None, an estimate over limit)``, having held at most about ``limit``
    bytes of copy on the way (a value over a cap costs no more than the cap to refuse)."""
    kind = type(value)
    if kind is str:
        return value, VALUE_OVERHEAD + len(value)
    if kind is int:
        return value, VALUE_OVERHEAD + value.bit_length() // _BITS_PER_BYTE
    if kind in _SCALARS or not isinstance(value, _CONTAINERS):
        return value, VALUE_OVERHEAD + (len(value) if isinstance(value, str) else 0)
    size = VALUE_OVERHEAD  # each container is counted as it is found, before it is copied
    root: List[Any] = [None]
    # (source container, target container, key or index in the parent target)
    work: List[Tuple[Any, Any, Any]] = [(value, root, 0)]
    while work:
        source, parent, key = work.pop()
        # every item is a value of VALUE_OVERHEAD at least: a container too long for what is
        # left is refused before its copy (or the work list) holds anything of it
        if limit is not None and size + len(source) * VALUE_OVERHEAD > limit:
            return None, size + len(source) * VALUE_OVERHEAD
        # Two copies of one loop, for objects and for lists: this walk runs on every patch
        # value that is not a string, and a shared loop costs a call or a test per item.
        if isinstance(source, dict):
            target: Any = dict(source)  # nested containers are replaced by their copies below
            for name, item in target.items():
                kind = type(item)
                if kind is str:
                    size += VALUE_OVERHEAD + len(item) + len(name)
                elif kind in _FIXED_SIZE:
                    size += VALUE_OVERHEAD + len(name)
                elif kind is int:
                    size += VALUE_OVERHEAD + len(name) + item.bit_length() // _BITS_PER_BYTE
                elif isinstance(item, _CONTAINERS):
                    size += VALUE_OVERHEAD + len(name)
                    work.append((item, target, name))
                else:  # not JSON, kept as it is (a str subclass counts as a string)
                    size += VALUE_OVERHEAD + len(name) + (len(item) if isinstance(item, str) else 0)
        else:
            target = list(source)
            for position, item in enumerate(target):
                kind = type(item)
                if kind is str:
                    size += VALUE_OVERHEAD + len(item)
                elif kind in _FIXED_SIZE:
                    size += VALUE_OVERHEAD
                elif kind is int:
                    size += VALUE_OVERHEAD + item.bit_length() // _BITS_PER_BYTE
                elif isinstance(item, _CONTAINERS):
                    size += VALUE_OVERHEAD
                    work.append((item, target, position))
                else:
                    size += VALUE_OVERHEAD + (len(item) if isinstance(item, str) else 0)
        parent[key] = target
    if limit is not None and size > limit:
        return None, size  # (its strings and numbers passed it: what was copied is bounded)
    return root[0], size


def _plain(value: Any) -> Any:
    """A deep copy as plain JSON values (lists, dicts)."""
    return sized_copy(value)[0]


_OPS = frozenset({"add", "replace", "remove"})

# The undo log of PatchedDocument.apply_all: (what to do, container, key or index, old value),
# undone last first. _PUT: container[key] = old; _DROP: del container[key]; _REINSERT:
# container.insert(key, old) (a list item removed). A changed root is not logged: apply_all
# keeps the root it started with.
_PUT, _DROP, _REINSERT = 0, 1, 2
_MISSING = object()
UndoLog = Optional[List[Tuple[int, Any, Any, Any]]]


def _child(parent: Any, token: str, next_token: str, path: str, log: UndoLog = None) -> Any:
    """The container at ``token`` of ``parent``, made (or made a :class:`_PieceList`) if need be."""
    kind = type(parent)
    if kind is dict:
        child = parent.get(token)
        if child is None:  # missing or null: the patch builds what its path needs
            if log is not None:
                log.append((_PUT, parent, token, None) if token in parent else (_DROP, parent, token, None))
            child = parent[token] = _empty_for(next_token)
        elif type(child) is list and len(child) >= _LONG:
            if log is not None:
                log.append((_PUT, parent, token, child))
            child = parent[token] = _PieceList(child)
        return child
    if kind is list or kind is _PieceList:
        index = _index(len(parent), token, path, allow_end=True)
        if index == len(parent):
            if log is not None:
                log.append((_DROP, parent, index, None))
            child = _empty_for(next_token)
            parent.append(child)
            return child
        child = parent[index]
        if type(child) is list and len(child) >= _LONG:
            if log is not None:
                log.append((_PUT, parent, index, child))
            child = parent[index] = _PieceList(child)
        return child
    raise PatchError(f"cannot descend into {type(parent).__name__} at {path[:80]!r}")


def _change(parent: Any, last: str, op: str, path: str, value: Any, log: UndoLog = None) -> None:
    kind = type(parent)
    if kind is dict:
        if op != "remove":
            if log is not None:
                old = parent.get(last, _MISSING)
                log.append((_DROP, parent, last, None) if old is _MISSING else (_PUT, parent, last, old))
            parent[last] = value
        elif last in parent:
            if log is not None:  # put back, it comes last among its object's members
                log.append((_PUT, parent, last, parent[last]))
            del parent[last]
        else:
            raise PatchError(f"nothing to remove at {path[:80]!r}")
    elif kind is list or kind is _PieceList:
        if op == "add":
            if last == "-":
                index = len(parent)
                parent.append(value)
            else:
                index = _index(len(parent), last, path, allow_end=True)
                parent.insert(index, value)
            if log is not None:
                log.append((_DROP, parent, index, None))
        elif op == "replace":
            index = _index(len(parent), last, path, allow_end=False)
            if log is not None:
                log.append((_PUT, parent, index, parent[index]))
            parent[index] = value
        else:
            index = _index(len(parent), last, path, allow_end=False)
            if log is not None:
                log.append((_REINSERT, parent, index, parent[index]))
            del parent[index]
    else:
        raise PatchError(f"cannot patch into {type(parent).__name__} at {path[:80]!r}")


def _undo(log: List[Tuple[int, Any, Any, Any]]) -> None:
    for action, container, key, old in reversed(log):
        if action == _PUT:
            container[key] = old
        elif action == _DROP:
            del container[key]
        else:
            container.insert(key, old)


class PatchedDocument:
    """One message being built by patches; :meth:`value` gives it as plain JSON.

    Its lists are plain lists until a patch reaches into one of :data:`_LONG` items or more,
    which becomes a :class:`_PieceList` then, once, in O(n). A string appended at ``/-`` (a
    text reply: nearly every patch flux0 sends) is one ``list.append``, at any length.
    """

    __slots__ = ("_log", "_root")

    def __init__(self, value: Any = None) -> None:
        # Our own copy: patches change it in place, and neither the caller's document nor a
        # patch's value (still visible in its event) may change with it.
        self._root: Any = None if value is None else _own(_plain(value))
        self._log: UndoLog = None  # a list while apply_all runs

    @classmethod
    def owning(cls, root: Any) -> "PatchedDocument":
        """A document whose root is ``root`` itself, not a copy: plain JSON values that
        nobody else holds (a reply assembler's list of text pieces)."""
        document = cls()
        document._root = _own(root)
        return document

    def apply(self, patch: JsonPatch) -> None:
        """Apply one operation (``add``, ``replace`` or ``remove``).

        Missing containers on the way are created (a chunk may address ``/tool_calls/0``
        before any ``tool_calls`` exists). An operation that fails may leave containers its
        path created: :meth:`apply_all` is all or nothing.
        """
        op, value = patch.op, patch.value
        if op != "remove" and type(value) not in _SCALARS:
            value = _plain(value)
        self.apply_own(op, patch.path, value)

    def apply_own(self, op: str, path: str, value: Any) -> None:
        """:meth:`apply` with a value the document may keep as it is: one nobody else holds
        (see :func:`sized_copy`) or a scalar."""
        if type(value) is str and path == "/-" and op == "add":
            root = self._root
            if type(root) is list or type(root) is _PieceList:
                root.append(value)
                return
            if root is None:
                self._root = [value]
                return
        elif (op == "add" or op == "replace") and self._set_in_place(path, op == "add", value):
            return
        self._apply(op, path, value)

    def _set_in_place(self, path: str, add: bool, value: Any) -> bool:
        """The common patch of flux0's tool calls and JSON replies (``/tool_calls/0``,
        ``/tool_calls/0/args/-``, ``/tool_calls/0/tool_name``, ``/answer``) in one call, not
        one per token: every container on the path is an object or a plain list shorter than
        :data:`_LONG`, each step a member or an index of at most 4 digits (not ``-``), and the
        last one sets a member, appends or inserts. Anything else changes nothing more than
        :meth:`_apply` would on its way and says False; :meth:`_apply` then goes on (or
        rejects). Every change is :meth:`_apply`'s, with the same undo entry: a missing root,
        member or list end gets the container the next token asks for. Its contract is
        tests/test_patch_contract.py."""
        if path[:1] != "/" or "~" in path or path.count("/") > MAX_PATH_DEPTH:
            return False
        tokens = path[1:].split("/")
        parent = self._root
        if parent is None:
            parent = self._root = _empty_for(tokens[0])  # as _apply makes it (and never logs)
        kind = type(parent)
        if not (kind is dict or (kind is list and len(parent) < _LONG)):
            return False
        log = self._log
        for depth in range(len(tokens) - 1):
            token = tokens[depth]
            if kind is dict:
                child = parent.get(token)
                if child is None:  # missing or null: _child's new container
                    if log is not None:
                        log.append((_PUT, parent, token, None) if token in parent else (_DROP, parent, token, None))
                    child = parent[token] = _empty_for(tokens[depth + 1])
            elif token.isdigit() and token.isascii() and (token[0] != "0" or token == "0") and len(token) <= 4:
                index = int(token)
                if index < len(parent):
                    child = parent[index]
                elif index == len(parent):
                    if log is not None:
                        log.append((_DROP, parent, index, None))
                    child = _empty_for(tokens[depth + 1])
                    parent.append(child)
                else:
                    return False  # out of range: _apply rejects it
            else:
                return False  # "-" (_apply would append again), or no index
            parent = child
            kind = type(parent)
            if not (kind is dict or (kind is list and len(parent) < _LONG)):
                return False  # a scalar, or a list that becomes a _PieceList
        last = tokens[-1]
        if kind is dict:
            if log is not None:
                old = parent.get(last, _MISSING)
                log.append((_DROP, parent, last, None) if old is _MISSING else (_PUT, parent, last, old))
            parent[last] = value
            return True
        if not add:
            return False
        if last == "-":
            index = len(parent)
        elif last.isdigit() and last.isascii() and (last[0] != "0" or last == "0") and len(last) <= 4:
            index = int(last)
            if index > len(parent):
                return False
        else:
            return False
        if log is not None:
            log.append((_DROP, parent, index, None))
        parent.insert(index, value)
        return True

    def apply_all(self, operations: Iterable[Tuple[str, str, Any]]) -> None:
        """Apply ``(op, path, value)`` operations as :meth:`apply_own` does, all or nothing
        (RFC 6902: a patch document is atomic): on :class:`PatchError` the document is as it
        was before (as JSON: an object member removed and put back comes last), then the error
        propagates. Cheap: text pieces appended at ``/-`` are undone by cutting the list back
        to its length; other operations log what they change."""
        root = self._root
        mark = len(root) if type(root) is list or type(root) is _PieceList else 0
        log: List[Tuple[int, Any, Any, Any]] = []
        self._log = log
        try:
            for op, path, value in operations:
                self.apply_own(op, path, value)
        except BaseException:  # a PatchError; anything else (an interrupt) undoes it too
            _undo(log)
            # Appends to this root that nothing logged (the text fast path) are its last items.
            self._root = root
            if type(root) is list:
                del root[mark:]
            elif type(root) is _PieceList:
                while len(root) > mark:
                    del root[len(root) - 1]
            raise
        finally:
            self._log = None

    def _apply(self, op: str, path: str, value: Any) -> None:
        """The general path, for every operation."""
        if op not in _OPS:
            raise PatchError(f"unsupported patch op {op[:40]!r} at {path[:80]!r}")
        tokens = _split(path)
        if not tokens:
            self._root = None if op == "remove" else _own(value)
            return
        root = self._root
        if root is None:
            root = self._root = _empty_for(tokens[0])
        elif type(root) is list and len(root) >= _LONG:
            root = self._root = _PieceList(root)
        parent = root
        log = self._log
        for depth in range(len(tokens) - 1):
            parent = _child(parent, tokens[depth], tokens[depth + 1], path, log)
        _change(parent, tokens[-1], op, path, value, log)

    def value(self) -> Any:
        root = self._root
        if type(root) in _SCALARS:
            return root
        try:
            # The same copy as _plain's, made in C: marshal's format (version 2 has no shared
            # references) holds every JSON value exactly, floats too.
            return marshal.loads(marshal.dumps(root, 2))  # noqa: S302 - bytes made just above
        except ValueError:  # a _PieceList, nesting deeper than marshal goes, or no JSON value
            return _plain(root)

    def text(self) -> str:
        """A plain-text reply: the joined string pieces of a list, or a string as is."""
        root = self._root
        if type(root) is list:
            try:
                return "".join(root)
            except TypeError:
                pass  # not only strings: the general case below
        elif isinstance(root, str):
            return root
        elif type(root) is not _PieceList:
            return ""
        return "".join(piece for piece in root if isinstance(piece, str))


def apply_patch(document: Any, patch: JsonPatch) -> Any:
    """Apply one operation to a plain JSON document and return the (possibly new) document."""
    return apply_patches(document, (patch,))


def apply_patches(document: Any, patches: Sequence[JsonPatch]) -> Any:
    """Apply operations in order to a plain JSON document; returns a new plain document."""
    patched = PatchedDocument(document)
    for patch in patches:
        patched.apply(patch)
    return patched.value()


def document_text(document: Any) -> str:
    """A plain-text reply: the joined string pieces of a list, or a string as is."""
    if isinstance(document, str):
        return document
    if isinstance(document, list):
        return "".join(piece for piece in document if isinstance(piece, str))
    return ""
