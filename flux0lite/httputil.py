"""Small HTTP helpers that every layer needs: header handling, ``Retry-After``, error bodies.

This module imports nothing from flux0lite, so the error tree, the retry policy and the
transport can all use it without importing one another.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

if TYPE_CHECKING:
    import http.client

__all__ = [
    "SENSITIVE_HEADERS",
    "redact_headers",
    "redact_url",
    "strip_credentials",
    "header_problem",
    "media_type",
    "is_json_media_type",
    "lower_headers",
    "parse_retry_after",
    "RETRY_AFTER_CAP",
    "error_body",
    "body_preview",
]

RETRY_AFTER_CAP = 1e9
"""Largest ``Retry-After`` reported, in seconds (about 32 years): any larger one is capped."""

SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_URL_HEADERS = frozenset({"location", "content-location", "referer"})


def redact_headers(headers: Mapping[str, str]) -> Dict[str, str]:
    """Headers fit for a log line: credentials replaced by ``<redacted>``, and any in a URL
    (a ``Location`` a server sent) by ``***``."""
    return {
        k: "<redacted>" if k.lower() in SENSITIVE_HEADERS else redact_url(v) if k.lower() in _URL_HEADERS else v
        for k, v in headers.items()
    }


def redact_url(url: str) -> str:
    """``url`` fit for a message or a log line: any ``user:password@`` replaced by ``***@``.

    Works on text that is not a valid URL too (a message must never fail to be written).
    """
    return _USERINFO.sub(r"\1***@", url)


# user-info: after "//" (anywhere, so a URL inside a query is covered too) or right after a
# scheme without "//" ("admin:pw@host"), up to the authority's last "@"
_USERINFO = re.compile(r"(^[A-Za-z][A-Za-z0-9+.-]*:(?!//)|//)[^/?#\s]*@")
# RFC 9110 5.1: a field name is a token; 5.5: a value is visible ASCII, obs-text (bytes over
# 0x7F, sent as latin-1), spaces and tabs, so no CR, LF, NUL or other control characters.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def header_problem(name: object, value: object) -> Optional[str]:
    """What is wrong with a request header, or None when HTTP/1.1 can carry it as it is."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        return f"header name {name!r} is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~)"
    if not isinstance(value, str):
        return f"header {name} must be a string, got {type(value).__name__}"
    if not _FIELD_VALUE.fullmatch(value):
        return f"header {name} holds a control character (CR, LF, NUL, ...) or a character outside latin-1"
    return None


def strip_credentials(headers: Mapping[str, str]) -> Dict[str, str]:
    """Headers without credentials, for a request that leaves the host they were meant for."""
    return {k: v for k, v in headers.items() if k.lower() not in SENSITIVE_HEADERS}


def media_type(headers: Mapping[str, str]) -> str:
    """The ``Content-Type`` without parameters, lower-cased (``""`` when absent)."""
    return headers.get("content-type", "").split(";")[0].strip().lower()


def is_json_media_type(value: str) -> bool:
    return value == "application/json" or value.endswith("+json")


def lower_headers(raw: "http.client.HTTPResponse") -> Dict[str, str]:
    """Response headers keyed by lower-case name; repeated headers joined with ``", "``."""
    headers: Dict[str, str] = {}
    for name, value in raw.getheaders():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def parse_retry_after(value: Optional[str], *, now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns None when absent or unparseable; never negative, never over ``RETRY_AFTER_CAP``
    (a hostile server's hundred-digit number is a long wait, not an overflow).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit() and text.isascii():
        return min(float(text), RETRY_AFTER_CAP)  # float() of any digit string is finite or inf
    import email.utils  # HTTP dates are rare; keep the import off the common path

    try:
        parsed = email.utils.parsedate_tz(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    try:
        when = email.utils.mktime_tz(parsed)
    except (OverflowError, ValueError):
        return None
    current = time.time() if now is None else now
    return min(max(0.0, when - current), RETRY_AFTER_CAP)


def error_body(body: bytes) -> Any:
    """An error response's body: its JSON when it has some, else its text (cut to 2000 chars)."""
    if not body:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return body.decode("utf-8", "replace")[:2000]


def body_preview(body: bytes) -> str:
    """The start of a body, for an error message about its content type."""
    text = body[:80].decode("utf-8", "replace")
    return f"body starts {text!r}" if body else "empty body"
