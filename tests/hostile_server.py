"""A loopback server that answers every request with seeded nonsense, for fuzzing the CLI.

Each connection gets one :class:`Answer`: raw bytes in pieces (with short pauses), then a clean
close, a reset or a bounded hang. :func:`random_answer` builds answers from a
``random.Random``: arbitrary status lines, headers and bodies, broken framing, gzip, redirects,
and JSON and event streams full of what a hostile flux0 could send (control characters, lone
surrogates, huge numbers, deep nesting, hostile patch paths). Every pause and hang is bounded,
so a run's time is too. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import gzip
import json
import random
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

HOSTILE_TEXT = [
    "\x1b[31mred\x1b[0m",
    "\x1b]8;;http://evil.example/\x07link\x1b]8;;\x07",
    "\x1b]0;pwned title\x07",
    "bell\x07\x07",
    "c1 csi \x9b31m and nel \x85",
    "\u202eevil-override",
    "carriage\roverwrite",
    "nul\x00byte",
    "\ud800 lone surrogate",
    "snow ☃ and emoji 😀",
    "",
    "x" * 3000,
]


@dataclass
class Answer:
    pieces: List[bytes]
    pause: float = 0.0
    ending: str = "close"  # "close", "reset" or "hang"
    hang: float = 0.0


@dataclass
class HostileServer:
    """``answer(request_head)`` decides each connection's answer (default: random, seeded)."""

    seed: int = 0
    answer: Optional[Callable[[bytes], Answer]] = None
    requests: List[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)  # accept() wakes up to see close()
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = threading.Event()
        self._threads: List[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(2.0)
            head = _read_request(sock)
            with self._lock:
                self.requests.append(head)
                answer = self.answer(head) if self.answer else random_answer(self._rng, self.url, head)
            for piece in answer.pieces:
                sock.sendall(piece)
                if answer.pause and self._closed.wait(answer.pause):
                    break
            if answer.ending == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif answer.ending == "hang":
                self._closed.wait(answer.hang)
        except OSError:
            pass
        finally:
            sock.close()

    def close(self) -> None:
        self._closed.set()
        self._acceptor.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            missing = int(value.strip()) - len(body)
            while missing > 0:
                chunk = sock.recv(min(missing, 65536))
                if not chunk:
                    break
                missing -= len(chunk)
    return head


# -- random answers ----------------------------------------------------------------------------


def _text(rng: random.Random) -> str:
    return rng.choice(HOSTILE_TEXT)


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 5)
    if kind == 0:
        return _text(rng)
    if kind == 1:
        return rng.choice([0, -1, 2**70, 1.5, True, None])
    if kind == 2:
        return "2026-11-25T00:00:00Z" if rng.random() < 0.5 else "9" * 400
    if kind == 3:
        return rng.choice(["message", "tool", "status", "custom", "new-type", "\x1b[2J"])
    if kind == 4:
        return {}
    if kind in (5, 6):
        return {_text(rng)[:20]: _json_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def _record(rng: random.Random) -> Any:
    """Something shaped like a flux0 agent, session or event, with hostile values."""
    record = {
        "id": rng.choice(["id00000001", _text(rng), 7, None]),
        "name": _text(rng),
        "type": rng.choice(["echo", "message", "status", _text(rng)]),
        "description": rng.choice([None, _text(rng)]),
        "agent_id": "id00000001",
        "title": _text(rng),
        "created_at": rng.choice(["2026-11-25T00:00:00Z", "9" * 400, _text(rng), None]),
        "offset": rng.choice([0, 3, -1, 10**30, "x"]),
        "source": rng.choice(["user", "ai_agent", "system", _text(rng)]),
        "correlation_id": "RID(x)::1",
        "data": rng.choice(
            [
                {"type": "message", "parts": [{"type": "content", "content": _text(rng)}], "participant": {}},
                {"type": "status", "status": _text(rng), "data": _json_value(rng)},
                {"type": "tool_call_result", "tool_calls": [{"tool_name": _text(rng), "result": _json_value(rng)}]},
                _json_value(rng),
            ]
        ),
        "metadata": rng.choice([None, {}, _json_value(rng)]),
    }
    for key in list(record):
        if rng.random() < 0.1:
            del record[key]
    if rng.random() < 0.2:
        record[_text(rng)[:10]] = _json_value(rng)
    return record


def _json_body(rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        doc: Any = {"data": [_record(rng) for _ in range(rng.randrange(4))]}
    elif kind == 1:
        doc = _record(rng)
    elif kind == 2:
        doc = {"detail": rng.choice([_text(rng), [{"loc": ["body", _text(rng)], "msg": _text(rng)}], None])}
    elif kind == 3:
        doc = _json_value(rng)
    elif kind == 4:
        return b"[" * rng.choice([10, 5000, 100_000])
    elif kind == 5:
        return b'{"data": [' + b"1e400, " * 3 + b"1]}"
    elif kind == 6:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
    else:
        return b'{"data": [{"id": "a", "name": "\\ud800\\u001b[31m", "type": "echo", "created_at": null}]}'
    return json.dumps(doc).encode("utf-8", "surrogatepass")


_PATHS = ["/-", "/0", "/5", "/²", "/" + "9" * 5000, "/a" * 2000, "/tool_calls/0", "/tool_calls/0/args/-", "", "x"]


def _sse_body(rng: random.Random) -> bytes:
    out: List[bytes] = []
    for seq in range(rng.randrange(1, 12)):
        kind = rng.randrange(6)
        if kind == 0:
            payload: Any = {"id": "s", "correlation_id": "c", "data": {"status": _text(rng), "data": _json_value(rng)}}
            out.append(b"event: status\ndata: " + json.dumps(payload).encode("utf-8", "surrogatepass") + b"\n\n")
        elif kind in (1, 2, 3):
            patch = {"op": rng.choice(["add", "add", "replace", "remove", "move"]), "path": rng.choice(_PATHS)}
            patch["value"] = _text(rng) if rng.random() < 0.7 else _json_value(rng)
            payload = {"event_id": rng.choice(["e1", "e2"]), "seq": seq, "patches": [patch]}
            out.append(b"event: chunk\ndata: " + json.dumps(payload).encode("utf-8", "surrogatepass") + b"\n\n")
        elif kind == 4:
            out.append(b"event: " + _text(rng).encode("utf-8", "surrogatepass") + b"\ndata: x\n\n")
        else:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(100))) + b"\n\n")
    if rng.random() < 0.2:
        out.append(b'event: chunk\ndata: {"event_id": ')  # cut mid-event
    return b"".join(out)


def _gzip(data: bytes, rng: random.Random) -> bytes:
    packed = gzip.compress(data)
    return rng.choice([packed, packed[:-8], packed[: len(packed) // 2], packed + packed, b"\x1f\x8b junk"])


def _sane_record(rng: random.Random) -> Any:
    """A record of the right shape, with hostile text wherever the API has text."""
    return {
        "id": "id00000001",
        "name": _text(rng),
        "type": rng.choice(["echo", "message", "status", "tool", "custom", _text(rng)]),
        "description": rng.choice([None, _text(rng)]),
        "agent_id": "id00000001",
        "title": _text(rng),
        "created_at": "2026-11-25T00:00:00Z",
        "offset": rng.randrange(10),
        "source": rng.choice(["user", "ai_agent", _text(rng)]),
        "correlation_id": _text(rng),
        "data": rng.choice(
            [
                {"type": "message", "parts": [{"type": "content", "content": _text(rng)}], "participant": {}},
                {"type": "status", "status": _text(rng)},
                {"type": "tool_call_result", "tool_calls": [{"tool_name": _text(rng), "result": _json_value(rng)}]},
            ]
        ),
        "metadata": None,
    }


def sane_answer(rng: random.Random, head: bytes) -> Answer:
    """A well-formed answer of the shape the request expects, full of hostile text."""
    target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
    if target.endswith(b"/events/stream"):
        body, content_type = _sse_body(rng), b"text/event-stream"
    else:
        many = target.split(b"?")[0].endswith((b"/agents", b"/sessions", b"/events"))
        doc = {"data": [_sane_record(rng) for _ in range(rng.randrange(4))]} if many else _sane_record(rng)
        body, content_type = json.dumps(doc).encode("utf-8", "surrogatepass"), b"application/json"
    status = rng.choice([200, 200, 200, 201, 404, 422, 500])
    if status >= 400:
        body = json.dumps({"detail": _text(rng)}).encode("utf-8", "surrogatepass")
        content_type = b"application/json"
    head_bytes = b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (status, content_type, len(body))
    return Answer(_split(head_bytes + body, rng))


def random_answer(rng: random.Random, own_url: str, head: bytes = b"") -> Answer:
    """Half well-formed answers with hostile text, half anything at all."""
    if rng.random() < 0.5:
        return sane_answer(rng, head)
    status = rng.choice([200, 200, 200, 201, 204, 103, 100, 301, 302, 307, 400, 404, 409, 422, 429, 500, 503, 599, 999])
    reason = rng.choice(["OK", "", _text(rng).encode("utf-8", "replace").decode("latin-1"), "X" * 70000])
    status_line = rng.choice(
        [
            f"HTTP/1.1 {status} {reason}",
            f"HTTP/1.0 {status} {reason}",
            "HTTX/9 abc",
            "",
            f"HTTP/1.1 {'9' * 400} X",
            "HTTP/1.1 200",
        ]
    ).encode("latin-1", "replace")
    streaming = rng.random() < 0.4
    body = _sse_body(rng) if streaming else _json_body(rng)
    headers: List[bytes] = []
    content_type = rng.choice(
        ["text/event-stream", "application/json", "text/html", "", "application/problem+json", "\x1b[31m"]
        if rng.random() < 0.3
        else ["text/event-stream" if streaming else "application/json"]
    )
    if content_type:
        headers.append(b"Content-Type: " + content_type.encode("latin-1"))
    if rng.random() < 0.2:
        headers.append(b"Content-Encoding: gzip")
        body = _gzip(body, rng)
    framing = rng.randrange(5)
    if framing == 0:
        headers.append(b"Content-Length: %d" % len(body))
    elif framing == 1:
        headers.append(b"Transfer-Encoding: chunked")
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in _split(body, rng)) + rng.choice(
            [b"0\r\n\r\n", b"", b"zz\r\n"]
        )
    elif framing == 2:
        headers.append(b"Content-Length: " + rng.choice([b"-1", b"9" * 400, b"abc", b"%d" % (len(body) + 50)]))
    elif framing == 3:
        headers.append(b"Content-Length: %d, %d" % (len(body), len(body) + 1))
    if status in (301, 302, 307) or rng.random() < 0.05:
        location = rng.choice(
            [
                own_url + "/api/agents",
                "http://admin:hunter2@127.0.0.1:1/x",
                "http://127.0.0.1:99999/x",
                "http://[::1/x",
                "file:///etc/passwd",
                "/relative",
                "http://\x1b[31m/",
            ]
        )
        headers.append(b"Location: " + location.encode("latin-1", "replace"))
    if rng.random() < 0.2:
        headers.append(b"Retry-After: " + rng.choice([b"1", b"9" * 400, b"Wed, 21 Oct 2015 07:28:00 GMT", b"-5"]))
    if rng.random() < 0.15:
        headers.append(
            rng.choice([b"no colon here", b"X-Long: " + b"a" * 70000, b"X-Bin: \xff\xfe\x00", b" leading: space"])
        )
    head = status_line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"
    if rng.random() < 0.05:
        head = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    data = head + body
    if rng.random() < 0.15:
        data = data[: rng.randrange(len(data) + 1)]  # truncated anywhere
    pieces = _split(data, rng)
    ending = rng.choice(["close", "close", "close", "reset", "hang"])
    return Answer(pieces, pause=rng.choice([0.0, 0.0, 0.01]), ending=ending, hang=rng.uniform(0.0, 0.6))


def _split(data: bytes, rng: random.Random) -> List[bytes]:
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(4)))
    points = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a] or [b""]
