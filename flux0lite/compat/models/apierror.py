"""``models.APIError``: the SDK's error for any non-2xx answer, inside flux0lite's error tree.

It is a :class:`flux0lite.APIError` (and, per status, a :class:`flux0lite.NotFoundError`,
:class:`flux0lite.ServerError`, ...), so native ``except`` clauses keep working. Unlike the
native error, ``body`` is the response text, as in the SDK.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple, Type

from flux0lite import errors as native

from ..rawresponse import RawResponse

__all__ = ["APIError", "from_native", "printable"]

_BODY_IN_MESSAGE = 2000


def printable(text: str) -> str:
    """Text fit for a terminal: control characters other than newline and tab escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in "\n\t" else repr(ch)[1:-1] for ch in text)


def _json_or_text(body: str) -> Any:
    try:
        return json.loads(body) if body else None
    except (ValueError, RecursionError):
        return body


class APIError(native.APIError):
    """Attributes as in the SDK: ``message``, ``status_code``, ``body`` (text), ``raw_response``."""

    def __init__(self, message: str, status_code: int = -1, body: str = "", raw_response: Any = None) -> None:
        headers = getattr(raw_response, "headers", None) or {}
        super().__init__(
            status_code,
            message,
            body=_json_or_text(body),
            headers={str(k).lower(): str(v) for k, v in headers.items()},
            method=str(getattr(raw_response, "method", "") or ""),
            url=str(getattr(raw_response, "url", "") or ""),
        )
        self.body = body  # the SDK's body is the text; ``detail`` below still reads the JSON
        self.raw_response = raw_response
        self._sdk_message = message

    @property
    def message(self) -> str:
        return self._sdk_message

    @property
    def detail(self) -> Any:
        parsed = _json_or_text(self.body)
        if isinstance(parsed, dict) and isinstance(parsed.get("detail"), (str, list)):
            return parsed["detail"]
        return None

    def __str__(self) -> str:
        text = f"{self._sdk_message}: Status {self.status_code}"
        if self.body:
            text += "\n" + printable(self.body[:_BODY_IN_MESSAGE])
        return text

    def __reduce__(self) -> Tuple[Any, ...]:
        raw = self.raw_response if isinstance(self.raw_response, RawResponse) else None
        return (_rebuild, (_native_base(type(self)), self._sdk_message, self.status_code, self.body, raw))


# One subclass per native status class, so ``except flux0lite.NotFoundError`` catches ours too.
_SUBCLASSES: Dict[Type[native.APIError], Type[APIError]] = {native.APIError: APIError}


def _native_base(cls: Type[APIError]) -> Type[native.APIError]:
    return next(
        (b for b in cls.__mro__ if issubclass(b, native.APIError) and not issubclass(b, APIError)), native.APIError
    )


def class_for(native_class: Type[native.APIError]) -> Type[APIError]:
    cls = _SUBCLASSES.get(native_class)
    if cls is None:
        cls = type("APIError", (APIError, native_class), {"__module__": __name__, "__doc__": APIError.__doc__})
        _SUBCLASSES[native_class] = cls
    return cls


def _rebuild(
    native_class: Type[native.APIError], message: str, status_code: int, body: str, raw: Optional[RawResponse]
) -> APIError:
    return class_for(native_class)(message, status_code, body, raw)


def body_text(error: native.APIError) -> str:
    """The native error's body as text (flux0's JSON bodies re-serialized the way FastAPI writes them)."""
    if isinstance(error.body, str):
        return error.body
    if error.body is None:
        return ""
    return json.dumps(error.body, ensure_ascii=False, separators=(",", ":"))


def from_native(error: native.APIError, message: str = "API error occurred") -> APIError:
    text = body_text(error)
    raw = RawResponse(error.status_code, error.headers, text, error.url, error.method)
    return class_for(type(error))(message, error.status_code, text, raw)
