"""Read one JSON array out of a byte stream an element at a time, in bounded memory.

``{"data": [e0, e1, ...]}`` of a large ``list_events`` answer need never be held whole: each
element is decoded with :meth:`json.JSONDecoder.raw_decode` as soon as its text is complete,
and the text before it is dropped. Memory is bounded by the largest element plus one read.
Every element comes with its exact source text, so a caller can keep what the server sent.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple, TypeVar, Union, overload

from .errors import DecodeError

__all__ = ["JSONStreamError", "Element", "iter_array", "read_array", "string_end", "DEFAULT_MAX_ELEMENT_CHARS"]

DEFAULT_MAX_ELEMENT_CHARS = 64 * 1024 * 1024
_NOT_WHITESPACE = re.compile(r"[^ \t\n\r]")
_LARGE_READ = 1024 * 1024  # characters read past which the careful path drops them at once
_NUMBER_TAIL = "0123456789.eE+-"
_DIGITS = frozenset("0123456789")
_SPACE = frozenset(" \t\n\r")
_SEPARATORS = frozenset(",]")
_T = TypeVar("_T")
_Chunks = Iterable[Union[bytes, bytearray, str]]
_Scanner = Callable[[str, int], Tuple[Any, int]]  # JSONDecoder.raw_decode: (value, end) of the value at an index


class JSONStreamError(DecodeError):
    """The stream is not the JSON expected: malformed, truncated, not UTF-8, or an element too large."""


@dataclass(frozen=True)
class Element:
    value: Any
    text: str


class _Reader:
    """A text buffer over the chunk iterator; ``pos`` is the read position within ``buf``."""

    def __init__(self, chunks: _Chunks, what: str, max_element_chars: int, errors: str) -> None:
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors)
        self.what = what
        self.max_element_chars = max_element_chars
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.consumed = 0  # characters dropped before buf, for error positions

    def fail(self, message: str) -> JSONStreamError:
        return JSONStreamError(f"{self.what}: {message} (at character {self.consumed + self.pos})")

    def more(self, at_least: int = 1) -> bool:
        """Append at least ``at_least`` more characters (fewer at the end of the stream), dropping
        what was read; False if nothing could be added."""
        if self.eof:
            return False
        parts: List[str] = []
        added = 0
        for chunk in self._chunks:
            try:
                text = chunk if isinstance(chunk, str) else self._utf8.decode(chunk)
            except UnicodeDecodeError as exc:
                raise self.fail(f"body is not valid UTF-8 ({exc.reason})") from exc
            parts.append(text)
            added += len(text)
            if added >= at_least:
                break
        else:
            try:
                parts.append(self._utf8.decode(b"", final=True))
            except UnicodeDecodeError as exc:
                raise self.fail("body ends inside a UTF-8 sequence") from exc
            self.eof = True
        # One join per call, not one concatenation per chunk: a large value stays linear. What
        # was read goes first: a large buffer is not held while the new one is made.
        self.drop_read()
        self.buf = "".join([self.buf, *parts])
        return any(parts)

    def drop_read(self) -> None:
        """Let go of the text before the read position."""
        self.consumed += self.pos
        self.buf = self.buf[self.pos :]
        self.pos = 0

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end of the stream), not consumed."""
        char = self.buf[self.pos : self.pos + 1]
        if char and char not in _SPACE:
            return char
        while True:
            found = _NOT_WHITESPACE.search(self.buf, self.pos)
            if found is not None:
                self.pos = found.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)  # all whitespace: drop it (a body padded to gigabytes stays small)
            if not self.more():
                return ""

    def expect(self, char: str) -> None:
        got = self.peek()
        if got != char:
            raise self.fail(f"expected {char!r}, got {got[:1]!r}" if got else f"expected {char!r}, got end of stream")
        self.pos += 1

    def value(self, decoder: json.JSONDecoder, decode: Optional[_Scanner] = None) -> Element:
        """Decode the value at the read position (with ``decode``, else the decoder's
        ``raw_decode``), reading more until it is complete."""
        read = decode or decoder.raw_decode
        self.peek()
        want = 0  # buffer length to reach before trying again: doubling keeps re-parses linear
        while True:
            if len(self.buf) - self.pos >= want or self.eof:
                start = self.pos
                try:
                    value, end = read(self.buf, start)
                    # A number read up to the buffer's end may go on in the next chunk ("1" of
                    # "12", "0." of "0.5"): wait unless something that cannot continue it follows.
                    tail = self.buf[end : end + 32]
                    if (
                        self.eof
                        or self.buf[end - 1 : end] not in _DIGITS  # only a number can go on
                        or tail.strip(_NUMBER_TAIL)
                        or end + 32 < len(self.buf)
                    ):
                        self.pos = end
                        return Element(value, self.buf[start:end])
                    error: Optional[str] = None
                except json.JSONDecodeError as exc:
                    if self.eof:
                        raise self.fail(f"malformed or truncated JSON: {exc.msg}") from exc
                    error = exc.msg
                except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit integer, deep nesting
                    raise self.fail(f"unreadable JSON value: {exc}") from exc
                if len(self.buf) - start > self.max_element_chars:
                    raise self.fail(f"a value over {self.max_element_chars} characters ({error or 'unfinished'})")
                want = min(2 * (len(self.buf) - start), self.max_element_chars + 1)
            if not self.more(want - (len(self.buf) - self.pos)):
                continue  # eof now set: the next round decodes for the last time


@overload
def iter_array(
    chunks: _Chunks,
    *,
    key: Optional[str] = ...,
    what: str = ...,
    max_element_chars: int = ...,
    decoder: Optional[json.JSONDecoder] = ...,
    errors: str = ...,
) -> Iterator[Element]: ...


@overload
def iter_array(
    chunks: _Chunks,
    *,
    key: Optional[str] = ...,
    what: str = ...,
    max_element_chars: int = ...,
    decoder: Optional[json.JSONDecoder] = ...,
    errors: str = ...,
    element: Callable[[Any, str], _T],
) -> Iterator[_T]: ...


def iter_array(
    chunks: _Chunks,
    *,
    key: Optional[str] = None,
    what: str = "JSON stream",
    max_element_chars: int = DEFAULT_MAX_ELEMENT_CHARS,
    decoder: Optional[json.JSONDecoder] = None,
    errors: str = "strict",
    element: Callable[[Any, str], Any] = Element,
) -> Iterator[Any]:
    """Yield the elements of a top-level array, or of the array under ``key`` of a top-level object.

    Other members of the object are read and dropped; the whole document is checked, so a
    stream cut short or followed by garbage raises :class:`JSONStreamError` (after the
    elements before the fault were yielded: the caller decides whether they count).
    ``errors`` is the UTF-8 decoder's error handler: with ``"surrogateescape"`` a byte that is
    not UTF-8 becomes the lone surrogate U+DC80..U+DCFF instead of failing the stream, so an
    archiver can keep it (and give the byte back) rather than lose the element and all after it.
    ``element`` makes what is yielded from each element's value and text (an :class:`Element`
    by default): a caller that keeps its own record of both saves building one per element.
    """
    reader = _Reader(chunks, what, max_element_chars, errors)
    json_decoder = decoder or json.JSONDecoder()
    # the members beside the array are dropped: a decoder may check them without building them
    skip: Optional[_Scanner] = getattr(json_decoder, "skip_member", None)
    if key is None:
        yield from _array(reader, json_decoder, element)
    else:
        found = False
        reader.expect("{")
        if reader.peek() == "}":
            reader.pos += 1
        else:
            while True:
                name = reader.value(json_decoder)
                if not isinstance(name.value, str):
                    raise reader.fail("an object key is not a string")
                reader.expect(":")
                if name.value == key:
                    if found:
                        raise reader.fail(f"key {key!r} appears twice")
                    found = True
                    if reader.peek() != "[":
                        raise reader.fail(f"{key!r} is not an array")
                    yield from _array(reader, json_decoder, element)
                else:
                    reader.value(json_decoder, skip)
                separator = reader.peek()
                reader.pos += 1
                if separator == "}":
                    break
                if separator == "":
                    raise reader.fail("stream ends inside the object (truncated)")
                if separator != ",":
                    raise reader.fail(f"expected ',' or '}}' in the object, got {separator[:1]!r}")
        if not found:
            raise reader.fail(f"no {key!r} array in the object")
    if reader.peek() != "":
        raise reader.fail("unexpected data after the JSON document")


def _quick_scanner(decoder: json.JSONDecoder) -> _Scanner:
    """What the fast loop of _array reads an element with: the C scanner itself where the
    decoder's ``raw_decode`` gives what it gives whenever it succeeds (json's own, which only
    turns the scanner's StopIteration into an error; or a decoder naming its scanner
    ``quick_scan``), else ``raw_decode``. One Python call less per element; whatever the
    scanner raises sends the element to the careful path, which reads it with ``raw_decode``,
    so values and errors are the same either way."""
    quick: Optional[_Scanner] = getattr(decoder, "quick_scan", None)
    if quick is not None:
        return quick
    if type(decoder).raw_decode is json.JSONDecoder.raw_decode:
        return decoder.scan_once  # type: ignore[attr-defined, no-any-return]
    return decoder.raw_decode


def _array(reader: _Reader, decoder: json.JSONDecoder, element: Callable[[Any, str], _T]) -> Iterator[_T]:
    reader.expect("[")
    if reader.peek() == "]":
        reader.pos += 1
        return
    scan = _quick_scanner(decoder)
    search = _NOT_WHITESPACE.search
    # A decoder may want to see large elements itself before they are built (the daemon's
    # measures an event's cost first): those further than this from the buffer's end are read
    # by the careful path, through its raw_decode.
    quick_limit: Optional[int] = getattr(decoder, "max_quick_chars", None)
    if quick_limit is None:
        quick_limit = 2**62
    while True:
        # Most elements are read here: the buffer already holds the element and the separator
        # after it, so one raw_decode (the C scanner) reads it, no number can go on in the next
        # chunk, and nothing is read from the stream. Whatever this loop cannot read (an
        # element cut by the end of the buffer, malformed JSON) is left to the careful path
        # below, which reads on and reports errors properly.
        buf = reader.buf
        start = reader.pos
        while True:
            if buf[start : start + 1] in _SPACE:
                found = search(buf, start)
                if found is None:
                    break
                start = found.start()
            if len(buf) - start > quick_limit:
                break
            try:
                value, end = scan(buf, start)
            except (ValueError, RecursionError, StopIteration):  # StopIteration: the C scanner's "no value here"
                break
            at = end
            if buf[at : at + 1] not in _SEPARATORS:
                found = search(buf, end)
                if found is None or buf[found.start()] not in _SEPARATORS:
                    break
                at = found.start()
            reader.pos = at + 1
            yield element(value, buf[start:end])
            if buf[at] == "]":
                return
            start = at + 1
        reader.pos = start
        # The last element and the old buffer are let go before reading on: a caller that
        # waits for memory inside the chunk iterator (the daemon's budget) must not hold them.
        value = buf = None  # type: ignore[assignment]
        careful = reader.value(decoder)
        if reader.pos > _LARGE_READ:
            # a large element's text is in careful.text: the buffer's copy of it goes now, not
            # at the next read (the caller may hold the element a while: the daemon's writer)
            reader.drop_read()
        yield element(careful.value, careful.text)
        careful = None  # type: ignore[assignment]
        separator = reader.peek()
        reader.pos += 1
        if separator == "]":
            return
        if separator == "":
            raise reader.fail("stream ends inside the array (truncated)")
        if separator != ",":
            raise reader.fail(f"expected ',' or ']' in the array, got {separator[:1]!r}")


def read_array(chunks: Iterable[Union[bytes, str]], **options: Any) -> List[Any]:
    """All elements' values at once (for small documents and tests)."""
    return [element.value for element in iter_array(chunks, **options)]


def string_end(text: str, opening: int, end: int) -> int:
    """Where the JSON string whose opening quote is at ``opening`` ends (the index after its
    closing quote), looking no further than ``end``; -1 if it does not end there.

    One ``find`` a quote, and a step back over the backslashes before it: a regular expression
    for a string with escapes (``"[^"\\\\]*(?:\\\\.[^"\\\\]*)*"``) keeps state for every escape in
    Python's ``re``, ~60 bytes each, ~1 GB for a 16 MB text of escapes.
    """
    closing = opening
    while True:
        closing = text.find('"', closing + 1, end)
        if closing < 0:
            return -1
        before = closing - 1
        while text[before] == "\\":
            before -= 1
        if (closing - before) % 2:  # an even run of backslashes: the quote is not escaped
            return closing + 1
