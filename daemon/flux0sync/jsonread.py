"""The daemon's JSON decoder: every valid JSON value is read, including two kinds CPython refuses.

RFC 8259 sets no limit on a number's digits or on nesting; CPython's decoder refuses an integer
of over 4,300 digits (``int`` from text) and a value nested deeper than its recursion allows.
Both are valid JSON a hostile server may send, and one unreadable event would fail its session
at every poll, so :class:`Decoder` reads them: such an integer becomes a
:class:`decimal.Decimal`, and a value too deep for the C scanner is read again without
recursion, in time linear in its text. Built that way a value costs up to ~75 bytes per
character (a list per level; the C scanner's widest value takes ~23), so only an element of up
to :data:`MAX_DEEP_CHARS` is: its end is found first by a scan that builds nothing, and a larger
one stays the RecursionError CPython raises (the reader's typed error: its session fails, the
daemon goes on within its unit's MemoryMax). Each one read is counted in
:attr:`Decoder.unusual`, so that a caller who must also write the value back (a listing's
entry, stored through its typed model) can leave it out. Such a caller builds none:
``Decoder(build_deep=False)`` checks a value too deep for the C scanner as JSON, at any size
and holding one byte per open level (:func:`skip_value`), and gives :data:`LEFT_OUT` for it.

Width costs memory too: JSON of many small items decodes to far more than its text (an event
of 16 MiB holding ``{"a":{}}`` items would take ~460 MB built, past the unit's MemoryMax). A
``Decoder(shallow_events=True)`` (the daemon's event reader) builds an event object of over
:data:`SHALLOW_MIN_CHARS` whose estimated built size (:func:`built_cost`) passes
:data:`MAX_BUILT_COST` as :func:`shallow_event` does: checked as JSON throughout, nothing built
but what the archive row takes from it. Its exact text is what the archive keeps. So is an event
object nested too deep for the C scanner and over :data:`MAX_DEEP_CHARS` (which the other
decoders refuse): only a member the row reads must be small enough to build.
"""

from __future__ import annotations

import decimal
import json
import re
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from flux0lite.jsonstream import string_end

from .budget import ITEM_COST, values_in

__all__ = [
    "Decoder",
    "decode_without_recursion",
    "skip_value",
    "LEFT_OUT",
    "TOO_LARGE",
    "MAX_DEEP_CHARS",
    "element_end",
    "built_cost",
    "shallow_event",
    "SHALLOW_MIN_CHARS",
    "MAX_BUILT_COST",
    "MAX_ROW_MEMBER_CHARS",
    "same_json",
]

# The largest element read without recursion: ~75 MB at worst, next to the daemon's ~40 MB,
# well inside the systemd unit's MemoryMax=256M (a batch holds one such element: jobs.py).
MAX_DEEP_CHARS = 1024 * 1024
# An object or array of over this many characters of text is measured before it is built (a
# scan of its brackets, then four counts in C), and not built whole if it would cost over
# MAX_BUILT_COST bytes: up to ~45 MB measured for the widest shapes (the estimate is 2-4 times
# what they take), within the systemd unit's MemoryMax=256M beside the daemon's own.
SHALLOW_MIN_CHARS = 1024 * 1024
MAX_BUILT_COST = 64 * 1024 * 1024
# What shallow_event builds of one member the row reads (an array or object, by its text) or of
# one message part (by its estimated cost): a few MB at most each, so several stay far below
# MAX_BUILT_COST together.
MAX_ROW_MEMBER_CHARS = 64 * 1024
MAX_ROW_MEMBER_COST = 4 * 1024 * 1024
# The members of an event object its archive row reads (flux0sync.rows.event_row).
_ROW_FIELDS = frozenset(("id", "offset", "type", "source", "correlation_id", "created_at", "deleted"))
_SPACE = re.compile(r"[ \t\n\r]*")
# element_end's tokens, as a deep value is mostly runs of them: a run of openers and of strings
# holding no bracket or escape ('{"a": {"a": ...', an object key a level; its brackets are all
# openers), at most 1,024 at a time (a repeated group keeps state per repetition); a run of
# closers; or the start of any other string.
_STRUCTURE = re.compile(r'(?:[\[{]+|"[^"\\\[\]{}]*")(?:[ \t\n\r:,]*(?:[\[{]+|"[^"\\\[\]{}]*")){0,1023}|[\]}]+|"')
# skip_value's runs: '[' (or closing brackets) and the whitespace between them, taken at once.
# A character class, not a repeated group: re keeps no state per repetition of a class.
_OPENERS = re.compile(r"[\[ \t\n\r]+")
_CLOSERS = re.compile(r"[\]} \t\n\r]+")
_CLOSER_RUN = re.compile(r"[\]}]+")
# skip_value's runs of openers holding objects: '[' and '{"key":', a key with no escape, control
# character or bracket (any other key is read by _key), so the run's brackets are its openers.
# A repeated group keeps state per repetition: at most 1,024 are taken at a time.
_OPENER_RUN = re.compile(r'(?:\[[ \t\n\r]*|\{[ \t\n\r]*"[^"\\\x00-\x1f\[\]{}]*"[ \t\n\r]*:[ \t\n\r]*){1,1024}')
_NOT_OPENER = re.compile(r"[^\[{]+")
_OPENER_OF = str.maketrans("]}", "[{", " \t\n\r")  # each closer's opener; whitespace dropped
_OBJECT = ord("{")
_Open = Tuple[Union[List[Any], Dict[str, Any]], Optional[str]]  # a container being read, and its member's key


class _LeftOut:
    """A JSON value checked and left unread (see LEFT_OUT and TOO_LARGE)."""

    def __init__(self, why: str) -> None:
        self._why = why

    def __repr__(self) -> str:
        return f"<a JSON value {self._why}, checked and left unread>"


# What a ``Decoder(build_deep=False)`` gives for a value too deep for the C scanner.
LEFT_OUT: Any = _LeftOut("nested too deep")
# What a decoder that measures large values gives for one too costly to build (an event object
# excepted, with shallow_events: see shallow_event).
TOO_LARGE: Any = _LeftOut("too costly to build")


class Decoder(json.JSONDecoder):
    """One per job (a decoder is not shared by threads): :mod:`json`'s, less its two refusals.

    ``unusual`` counts the values read past a refusal; ``deep`` is the last value read without
    recursion (a whole element: the C scanner's failure unwinds to the value it was asked for).
    With ``build_deep=False`` such a value is checked, never built, whatever its size: ``deep``
    and the value given are :data:`LEFT_OUT` (for a caller that leaves it out anyway).
    """

    def __init__(
        self,
        reserve: Optional[Callable[[int], None]] = None,
        *,
        build_deep: bool = True,
        shallow_events: bool = False,
        leave_out_large: bool = False,
    ) -> None:
        super().__init__(parse_int=self._int)
        self.unusual = 0
        # A value of over SHALLOW_MIN_CHARS that would cost over MAX_BUILT_COST built is not
        # built: an event object is read by shallow_event (shallow_events), any other such
        # value is checked and given as TOO_LARGE (either flag; counted in ``unusual``).
        self._shallow_events = shallow_events
        # Read by flux0lite.jsonstream: an element starting further than this from the end of
        # its buffer goes through raw_decode (which measures it first), never the C scanner alone.
        self.max_quick_chars: Optional[int] = SHALLOW_MIN_CHARS if shallow_events or leave_out_large else None
        self.deep: Any = None
        self._build_deep = build_deep
        # Called with an element's characters before it is built without recursion (the
        # daemon's budget, see flux0sync.budget), once it is whole (one cut short is scanned,
        # never built); what was reserved for it is not reserved again.
        self.reserve = reserve
        self._reserved = 0
        # raw_decode below differs from the C scanner only where the scanner fails: a reader
        # may try the scanner first (one Python call less per event) and call raw_decode on
        # a failure (flux0lite.jsonstream does). The scanner tried first is json's own, which
        # reads integers in C: it gives what this one gives (int of the same digits) or, past
        # the int-from-text limit, fails with ValueError, and raw_decode then reads the Decimal
        # (and counts it). One Python call less per integer.
        self.quick_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

    def _int(self, digits: str) -> Any:
        try:
            return int(digits)
        except ValueError:  # past the int-from-text limit: the value is kept, exactly
            self.unusual += 1
            return decimal.Decimal(digits)

    def raw_decode(self, s: str, idx: int = 0) -> Tuple[Any, int]:
        if self.max_quick_chars is not None and len(s) - idx > self.max_quick_chars and s[idx : idx + 1] in ("{", "["):
            end = _closed_at(s, idx, len(s))
            if end is None:  # cut short: nothing is built before the whole value is here
                raise json.JSONDecodeError("Unterminated value", s, len(s))
            if built_cost(s, idx, end) > MAX_BUILT_COST:
                if self._shallow_events and s[idx] == "{":
                    return shallow_event(s, idx, self)
                end = skip_value(s, idx, self)  # an event that is no object fails as one; an entry is left out
                self.unusual += 1
                self.deep = TOO_LARGE
                return TOO_LARGE, end
        try:
            return self.read_built(s, idx)
        except RecursionError:
            # Nested deeper than the C scanner reads and over MAX_DEEP_CHARS, too large to build
            # without recursion: an event object is still read as far as its row needs it
            # (skip_value holds a byte a level), so it is archived rather than failing its session.
            if self._shallow_events and s[idx : idx + 1] == "{":
                return shallow_event(s, idx, self)
            raise

    def skip_member(self, s: str, idx: int) -> Tuple[None, int]:
        """(None, where the value at ``idx`` ends), checked as JSON and never built: what
        flux0lite.jsonstream reads an answer's members beside its array with (a wide or deep
        one costs nothing but the scan, and is never taken for an event)."""
        return None, skip_value(s, idx, self)

    def read_built(self, s: str, idx: int) -> Tuple[Any, int]:
        """The value at ``idx``, built whole (as json builds it, less its two refusals)."""
        try:  # json.JSONDecoder.raw_decode's body (called once per event: no frame more)
            return self.scan_once(s, idx)  # type: ignore[attr-defined, no-any-return]
        except StopIteration as exc:
            raise json.JSONDecodeError("Expecting value", s, exc.value) from None
        except RecursionError:
            if not self._build_deep:
                if _closed_at(s, idx, len(s)) is None:  # cut short (checked once it is whole: linear)
                    raise json.JSONDecodeError("Unterminated value", s, len(s)) from None
                end = skip_value(s, idx, self)
                self.unusual += 1
                self.deep = LEFT_OUT
                return LEFT_OUT, end
            stop = min(len(s), idx + MAX_DEEP_CHARS)
            whole = _closed_at(s, idx, stop)
            if whole is None:
                if stop == len(s):  # cut short: built once it is whole (a part built is memory wasted)
                    raise json.JSONDecodeError("Unterminated value", s, len(s)) from None
                raise  # too large to build within the unit's memory
        if self.reserve is not None and whole - idx > self._reserved:
            self.reserve(whole - idx - self._reserved)
            self._reserved = whole - idx
        value, end = decode_without_recursion(s, idx, self)
        self._reserved = 0
        self.unusual += 1
        self.deep = value
        return value, end


def built_cost(s: str, start: int, end: int) -> int:
    """The estimated bytes of memory the JSON value ``s[start:end]`` takes once built: a string
    its length, anything else the budget's ITEM_COST per value it starts or keys.

    The values are counted in C by the bytes that may start or key one (``,`` ``{`` ``[``
    ``:``), strings' contents included: an upper bound. Where that bound is costly, those
    inside strings are left out (:func:`_values_outside_strings`: a loop turn a string and an
    escaped quote, ~0.1 s a million strings): strings of commas (CSV rows, JSON text) build
    to strings, not to the values their commas would start.
    """
    if s[start : start + 1] == '"':
        return end - start
    values = values_in(s, start, end)
    if values * ITEM_COST > MAX_ROW_MEMBER_COST:  # costly by the bound: counted again, exactly
        values = _values_outside_strings(s, start, end)
    return values * ITEM_COST


def _values_outside_strings(s: str, start: int, end: int) -> int:
    """The values ``s[start:end]`` may start or key, counted outside its strings: one loop turn
    a string, nothing copied."""
    values, pos = 0, start
    while True:
        opening = s.find('"', pos, end)
        if opening < 0:
            return values + values_in(s, pos, end)
        values += values_in(s, pos, opening)
        pos = string_end(s, opening, end)
        if pos < 0:
            return values  # unterminated: the scan that follows reports it


def shallow_event(s: str, idx: int, decoder: Decoder) -> Tuple[Dict[str, Any], int]:
    """The event object at ``idx``, checked as JSON throughout (:func:`skip_value`: the same end,
    or a :class:`json.JSONDecodeError`) and built only as far as its archive row reads it: the
    members :func:`flux0sync.rows.event_row` takes, and for a message the text of its content
    parts, joined into one part. ``event_row`` gives the same row for it as for the whole
    object (tests/daemon/test_costly_events.py states that contract), but for a ``type`` or
    ``source`` that is an array or object of over :data:`MAX_ROW_MEMBER_CHARS` or too deep for
    the C scanner: such a member is :data:`TOO_LARGE` here (its column a fixed note, where the
    whole value's would be its JSON text). Nothing is built without recursion or past the C
    scanner's depth here: a member too deep for it is TOO_LARGE, a part too deep is walked."""
    doc: Dict[str, Any] = {}
    parts: List[Optional[List[Dict[str, Any]]]] = [None]  # the last "data" member's, if an object

    def read(key: str, start: int) -> int:
        if key == "data":
            parts[0] = None  # json keeps a repeated key's last value
            if s[start : start + 1] == "{":  # (text cut short after the key: skip_value says so)
                return _object(s, start, decoder, _parts_reader(s, decoder, parts))
        end = skip_value(s, start, decoder)
        if key in _ROW_FIELDS:
            doc[key] = _row_member(s, start, end, decoder)
        return end

    end = _object(s, idx, decoder, read)
    if doc.get("type") == "message" and parts[0] is not None:
        doc["data"] = {"parts": parts[0]}
    return doc, end


def _row_member(s: str, start: int, end: int, decoder: Decoder) -> Any:
    """A member the row reads: its value, or TOO_LARGE for an array or object of over
    MAX_ROW_MEMBER_CHARS or too deep for the C scanner (event_row makes NULL, 0, an error for a
    missing id, or an escape of such a value: never anything of its content)."""
    if s[start] in "[{" and end - start > MAX_ROW_MEMBER_CHARS:
        return TOO_LARGE
    try:
        return decoder.scan_once(s, start)[0]  # type: ignore[attr-defined]
    except RecursionError:
        return TOO_LARGE


def _parts_reader(s: str, decoder: Decoder, found: List[Optional[List[Dict[str, Any]]]]) -> Callable[[str, int], int]:
    """A reader of a message's ``data`` members (for _object): ``found[0]`` becomes its content
    parts as one part holding all their text (event_row reads nothing else), or ``[]``."""
    found[0] = []

    def read(key: str, start: int) -> int:
        if key != "parts" or s[start] != "[":
            end = skip_value(s, start, decoder)
            if key == "parts":
                found[0] = []
            return end
        pieces: List[str] = []
        end = _array(s, start, decoder, lambda element: _part_text(s, element, decoder, pieces))
        found[0] = [{"type": "content", "content": "".join(pieces)}] if pieces else []
        return end

    return read


def _part_text(s: str, start: int, decoder: Decoder, pieces: List[str]) -> int:
    """Read the part at ``start``; its content is added to ``pieces`` if it is text of a content part."""
    end = skip_value(s, start, decoder)
    if s[start] != "{":
        return end
    part: Any = None
    if built_cost(s, start, end) <= MAX_ROW_MEMBER_COST:
        try:
            part = decoder.scan_once(s, start)[0]  # type: ignore[attr-defined]
        except RecursionError:
            pass  # walked below: nothing is built without recursion here
    if part is None:
        part = {}

        def read(key: str, value_start: int) -> int:
            value_end = skip_value(s, value_start, decoder)
            if key in ("type", "content"):  # text or nothing the row reads
                part[key] = decoder.scan_once(s, value_start)[0] if s[value_start] == '"' else None  # type: ignore[attr-defined]
            return value_end

        _object(s, start, decoder, read)
    kind, content = part.get("type"), part.get("content")
    if kind == "content" and type(content) is str:
        pieces.append(content)
    return end


def _object(s: str, idx: int, decoder: Decoder, read: Callable[[str, int], int]) -> int:
    """Walk the object at ``idx``: ``read(key, start)`` reads each member's value and returns
    where it ends; where the object ends."""
    pos = _SPACE.match(s, idx + 1).end()  # type: ignore[union-attr]
    if s[pos : pos + 1] == "}":
        return pos + 1
    while True:
        key, start = _key(s, pos, decoder.strict)
        pos = _SPACE.match(s, read(key, start)).end()  # type: ignore[union-attr]
        char = s[pos : pos + 1]
        if char == "}":
            return pos + 1
        if char != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", s, pos)
        pos = _SPACE.match(s, pos + 1).end()  # type: ignore[union-attr]


def _array(s: str, idx: int, decoder: Decoder, read: Callable[[int], int]) -> int:
    """Walk the array at ``idx``: ``read(start)`` reads each element and returns where it ends;
    where the array ends."""
    pos = _SPACE.match(s, idx + 1).end()  # type: ignore[union-attr]
    if s[pos : pos + 1] == "]":
        return pos + 1
    while True:
        pos = _SPACE.match(s, read(pos)).end()  # type: ignore[union-attr]
        char = s[pos : pos + 1]
        if char == "]":
            return pos + 1
        if char != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", s, pos)
        pos = _SPACE.match(s, pos + 1).end()  # type: ignore[union-attr]


def element_end(s: str, idx: int, limit: int) -> Optional[int]:
    """Where the container starting at ``idx`` ends, found with no value built (O(1) memory):
    brackets are counted, strings and their escapes skipped. ``None`` if it does not end within
    ``limit`` characters; ``len(s)`` if the text ends first (cut short: the decoder then says
    where). Brackets of the wrong kind are not told apart: decoding the element does that."""
    stop = min(len(s), idx + limit)
    end = _closed_at(s, idx, stop)
    if end is None and stop == len(s):
        return len(s)
    return end


def _closed_at(s: str, idx: int, stop: int) -> Optional[int]:
    """:func:`element_end`'s scan: where the container at ``idx`` ends, or None if not before ``stop``."""
    depth = 0
    pos = idx
    search = _STRUCTURE.search
    while True:
        found = search(s, pos, stop)
        if found is None:
            return None
        pos = found.end()
        token = found.group()
        if token == '"':
            while True:  # the closing quote: one not preceded by an odd run of backslashes
                quote = s.find('"', pos, stop)
                if quote < 0:
                    return None
                slashes = quote
                while s[slashes - 1] == "\\":
                    slashes -= 1
                pos = quote + 1
                if (quote - slashes) % 2 == 0:
                    break
        elif token[0] in '[{"':
            depth += token.count("[") + token.count("{")
        elif depth <= len(token):
            return found.start() + depth
        else:
            depth -= len(token)


def _key(s: str, pos: int, strict: bool) -> Tuple[str, int]:
    """An object member's key and the position after its ':' and the whitespace after that."""
    if s[pos : pos + 1] != '"':
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", s, pos)
    key, pos = json.decoder.scanstring(s, pos + 1, strict)  # type: ignore[attr-defined]
    pos = _SPACE.match(s, pos).end()  # type: ignore[union-attr]
    if s[pos : pos + 1] != ":":
        raise json.JSONDecodeError("Expecting ':' delimiter", s, pos)
    return key, _SPACE.match(s, pos + 1).end()  # type: ignore[union-attr]


def decode_without_recursion(s: str, idx: int, decoder: json.JSONDecoder) -> Tuple[Any, int]:
    """What ``decoder.raw_decode(s, idx)`` gives with no recursion limit: the value at ``idx``
    and where it ends, or a :class:`json.JSONDecodeError` for text that is not JSON or is cut
    short, as json raises, at a position within the element (its message and position may
    differ from json's: 3.13 says "Illegal trailing comma" where this says "Expecting value"
    one character on). Open containers are kept on a list, not the call stack; scalars are read by
    the decoder's own scanner (``scan_once``), so they come out exactly as it reads them.
    """
    opened: List[_Open] = []
    key: Optional[str]
    scan = decoder.scan_once  # type: ignore[attr-defined]
    strict = decoder.strict
    pos = idx
    while True:
        char = s[pos : pos + 1]  # a value starts here
        value: Any
        if char == "[" or char == "{":
            after = _SPACE.match(s, pos + 1).end()  # type: ignore[union-attr]
            if s[after : after + 1] == ("]" if char == "[" else "}"):
                value, pos = ([] if char == "[" else {}), after + 1
            elif char == "[":
                opened.append(([], None))
                pos = after
                continue
            else:
                key, pos = _key(s, after, strict)
                opened.append(({}, key))
                continue
        else:
            try:
                value, pos = scan(s, pos)
            except StopIteration as exc:
                raise json.JSONDecodeError("Expecting value", s, exc.value) from None
        while True:  # the value is complete: it joins its container, which may end here too
            if not opened:
                return value, pos
            container, key = opened[-1]
            if isinstance(container, list):
                container.append(value)
            else:
                container[key] = value  # type: ignore[index]  # a dict's key is never None
            pos = _SPACE.match(s, pos).end()  # type: ignore[union-attr]
            char = s[pos : pos + 1]
            if char == ",":
                pos = _SPACE.match(s, pos + 1).end()  # type: ignore[union-attr]
                if key is not None:
                    key, pos = _key(s, pos, strict)
                    opened[-1] = (container, key)
                break
            if char != ("]" if key is None else "}"):
                raise json.JSONDecodeError("Expecting ',' delimiter", s, pos)
            pos += 1
            opened.pop()
            value = container


def skip_value(s: str, idx: int, decoder: json.JSONDecoder) -> int:
    """Where the value at ``idx`` ends, checked as :func:`decode_without_recursion` reads it
    (the same end, or a :class:`json.JSONDecodeError` for the same text), with nothing built:
    only the kinds of its open containers are held, one byte a level, so a value of any depth
    costs a small part of its own text. Scalars are read by the decoder's ``scan_once`` (each
    dropped at once); runs of openers ('[' and '{"key":') and of closing brackets are taken at
    once, as a deep value is mostly such runs."""
    opened = bytearray()  # b"[" or b"{" for each open container, the innermost last
    scan = decoder.scan_once  # type: ignore[attr-defined]
    strict = decoder.strict
    pos = idx
    while True:
        char = s[pos : pos + 1]  # a value starts here
        if char == "[":
            run = _OPENERS.match(s, pos).end()  # type: ignore[union-attr]
            opened += b"[" * s.count("[", pos, run)
            pos = run
            if s[pos : pos + 1] != "]":
                continue
            opened.pop()  # the innermost is empty
            pos += 1
        elif char == "{":
            keyed = _OPENER_RUN.match(s, pos)
            if keyed is not None:  # a deep value nested an object key per level is mostly such runs
                opened += _NOT_OPENER.sub("", keyed.group()).encode("ascii")
                pos = keyed.end()
                if opened[-1] == _OBJECT or s[pos : pos + 1] != "]":
                    continue  # a value starts here
                opened.pop()  # the innermost is an empty array
                pos += 1
            else:  # an empty object, or a key _OPENER_RUN leaves to _key
                pos = _SPACE.match(s, pos + 1).end()  # type: ignore[union-attr]
                if s[pos : pos + 1] == "}":
                    pos += 1
                else:
                    opened.append(_OBJECT)
                    pos = _key(s, pos, strict)[1]
                    continue
        else:
            try:
                pos = scan(s, pos)[1]
            except StopIteration as exc:
                raise json.JSONDecodeError("Expecting value", s, exc.value) from None
        while True:  # a value is complete: its containers may end here too
            if not opened:
                return pos
            pos = _SPACE.match(s, pos).end()  # type: ignore[union-attr]
            if s[pos : pos + 1] == ",":
                pos = _SPACE.match(s, pos + 1).end()  # type: ignore[union-attr]
                if opened[-1] == _OBJECT:
                    pos = _key(s, pos, strict)[1]
                break
            run = _CLOSERS.match(s, pos)
            if run is None:
                raise json.JSONDecodeError("Expecting ',' delimiter", s, pos)
            text = run.group()
            closes = text.translate(_OPENER_OF)  # the opener each closer needs
            if len(closes) > len(opened):  # the run goes on past the value's end: not its own
                closes = closes[: len(opened)]
                end = _after_closer(s, pos, run.end(), len(closes))
            else:
                end = pos + len(text.rstrip(" \t\n\r"))
            if opened[len(opened) - len(closes) :] != closes[::-1].encode("ascii"):
                wrong = next(i for i in range(len(closes)) if opened[-1 - i] != ord(closes[i]))
                raise json.JSONDecodeError("Expecting ',' delimiter", s, _after_closer(s, pos, end, wrong + 1) - 1)
            del opened[len(opened) - len(closes) :]
            pos = end


def _after_closer(s: str, pos: int, end: int, count: int) -> int:
    """The position just after the ``count``-th closing bracket of ``s[pos:end]`` (a run of
    closing brackets and whitespace holding at least that many)."""
    for run in _CLOSER_RUN.finditer(s, pos, end):
        if count <= run.end() - run.start():
            return run.start() + count
        count -= run.end() - run.start()
    raise AssertionError("fewer closing brackets than counted")  # pragma: no cover


class _Constant(tuple):  # type: ignore[type-arg]
    """NaN, Infinity or -Infinity as same_json reads them, or a number past decimal's range:
    equal only to the same name or text."""


def _exact_number(text: str) -> Any:
    """A number's exact value; one whose exponent is past what decimal holds (``1e99999999999999999999``:
    valid JSON) by its text, equal only to the same text."""
    try:
        return decimal.Decimal(text)
    except ArithmeticError:  # decimal.InvalidOperation
        return _Constant(("number", text))


def _exact_decoder() -> Decoder:
    """The daemon's decoder, its numbers read exactly (decimal.Decimal for a fraction or an
    exponent: 0.1 and 0.10000000000000001, or 1e400 and 2e400, are different numbers, while
    1, 1.0 and 1e0 are one) and NaN/Infinity kept as their names (no float NaN, unequal to
    itself)."""
    decoder = Decoder(build_deep=False)  # a value too deep for the C scanner is not built (LEFT_OUT)
    decoder.parse_float = _exact_number
    decoder.parse_constant = lambda name: _Constant(("constant", name))
    decoder.scan_once = json.scanner.make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder


def _kind(value: Any) -> Any:
    """A decoded value's JSON kind: true/false apart from numbers (Python's True == 1)."""
    kind = type(value)
    return "number" if kind is int or kind is decimal.Decimal or (kind is _Constant and value[0] == "number") else kind


def same_json(text_a: str, text_b: str) -> bool:
    """Whether two JSON texts hold the same value, as JSON defines it: objects by their members
    (the last of a duplicate key, as every reader here keeps), arrays in order, strings by their
    characters, numbers by their exact decimal value, and true, false, null and numbers all of
    different kinds (``==`` on decoded values takes True for 1, 0.1 for 0.10000000000000001
    and any two numbers past a float's range for one infinity). Raises ValueError for a text
    that is not JSON. A value nested too deep for the C scanner is not built (that could take
    ~75 bytes a character): two texts holding one are not the same, as far as this can tell."""
    decoder = _exact_decoder()
    pending = [(decoder.decode(text_a), decoder.decode(text_b))]
    while pending:
        a, b = pending.pop()
        if a is LEFT_OUT or b is LEFT_OUT:
            return False
        kind = _kind(a)
        if kind is not _kind(b):
            return False
        if kind is dict:
            if a.keys() != b.keys():
                return False
            pending.extend((value, b[key]) for key, value in a.items())
        elif kind is list:
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b))
        elif a != b:
            return False
    return True
