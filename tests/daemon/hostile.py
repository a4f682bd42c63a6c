"""Misbehaving list_events answers, for the daemon's "never trust the server" tests.

Each helper routes ``GET /api/sessions/<id>/events`` of one session of a FakeFlux0 to an answer
that a buggy proxy, another flux0 version or a broken network could give.
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from typing import Any, Callable, Dict, List, Tuple

from tests.fakeserver import Conn, FakeFlux0, Request, chunked, raw_response

Docs = Callable[[], List[Dict[str, Any]]]


_SCANNER_LIMITS: Dict[Tuple[str, str, int], int] = {}


def past_the_c_scanner(opener: str = "[", closer: str = "]") -> int:
    """Levels of ``opener`` just past what CPython's C JSON scanner reads here and now: the
    cheapest nest that takes the decoder's deep path. The limit is ~1,000 ``[`` on 3.9-3.11,
    ~1,500 on 3.12, ~10,000 on 3.13, and before 3.12 it follows the recursion limit (hypothesis
    raises it while a test runs), so it is probed where the nest is used, once per recursion
    limit, plus 500 levels for the frames of whatever reads the nest."""
    key = (opener, closer, sys.getrecursionlimit())
    if key not in _SCANNER_LIMITS:
        scanner = json.JSONDecoder()
        low, high = 1, 1_000_000
        while low < high:
            middle = (low + high) // 2
            try:
                scanner.raw_decode(opener * middle + "0" + closer * middle)
            except RecursionError:
                high = middle
            else:
                low = middle + 1
        _SCANNER_LIMITS[key] = low
    return _SCANNER_LIMITS[key] + 500


def too_deep_for_the_c_scanner(text: str) -> bool:
    """Whether the C scanner gives up on ``text`` (a RecursionError), as a test's nest must."""
    try:
        json.JSONDecoder().raw_decode(text)
    except RecursionError:
        return True
    except ValueError:
        return False
    return False


def event(session_id: str, offset: Any, event_id: str = "", text: str = "hello", **extra: Any) -> Dict[str, Any]:
    doc: Dict[str, Any] = {
        "id": event_id or f"{session_id}-e{offset}",
        "correlation_id": "RID(x)::0",
        "type": "message",
        "source": "user",
        "offset": offset,
        "data": {"type": "message", "parts": [{"type": "content", "content": text}], "participant": {"id": "p"}},
        "deleted": False,
        "metadata": None,
        "created_at": "2026-11-25T00:00:00Z",
    }
    doc.update(extra)
    return doc


def _above(req: Request, docs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """What a flux0 server returns for ``min_offset``: events at or above it (in the given order)."""
    low = int(req.query.get("min_offset", "0"))
    return [d for d in docs if not isinstance(d.get("offset"), int) or d["offset"] >= low]


def serve_events(flux0: FakeFlux0, session_id: str, docs: Docs, *, raw_body: bool = False) -> None:
    """Answer with ``docs()`` (re-read on every request, so a test can change them between passes)."""

    def respond(req: Request, conn: Conn) -> None:
        body = json.dumps({"data": _above(req, docs())}).encode()
        conn.send(raw_response(200, body, {"content-type": "application/json"}))

    flux0.server.on("GET", f"/api/sessions/{session_id}/events", respond)


def serve_bytes(flux0: FakeFlux0, session_id: str, body: bytes, content_type: str = "application/json") -> None:
    def respond(req: Request, conn: Conn) -> None:
        conn.send(raw_response(200, body, {"content-type": content_type}))

    flux0.server.on("GET", f"/api/sessions/{session_id}/events", respond)


def serve_trickle(flux0: FakeFlux0, session_id: str, docs: Docs, *, every: float, piece: int = 1) -> None:
    """A chunked answer sent ``piece`` bytes at a time, one piece every ``every`` seconds."""

    def respond(req: Request, conn: Conn) -> None:
        body = json.dumps({"data": _above(req, docs())}).encode()
        conn.send(
            raw_response(200, b"", {"content-type": "application/json", "transfer-encoding": "chunked"}, length=False)
        )
        try:
            for start in range(0, len(body), piece):
                conn.send(chunked(body[start : start + piece]))
                time.sleep(every)
            conn.send(b"0\r\n\r\n")
        except OSError:
            conn.keep_alive = False

    flux0.server.on("GET", f"/api/sessions/{session_id}/events", respond)


def serve_gzip(flux0: FakeFlux0, session_id: str, docs: Docs) -> None:
    def respond(req: Request, conn: Conn) -> None:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        body = compressor.compress(json.dumps({"data": _above(req, docs())}).encode()) + compressor.flush()
        conn.send(raw_response(200, body, {"content-type": "application/json", "content-encoding": "gzip"}))

    flux0.server.on("GET", f"/api/sessions/{session_id}/events", respond)
