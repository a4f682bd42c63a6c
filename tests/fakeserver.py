"""A stdlib fake HTTP server for fault tests: every response is raw bytes we control.

Routes map (method, path prefix) to a responder ``f(request, conn) -> None`` that writes to
the socket however it likes: well-formed JSON, chunked streams cut in half, resets, stalls.
Every request is recorded, so tests can count what the server really saw.
"""

from __future__ import annotations

import json
import random
import socket
import socketserver
import ssl
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple


@dataclass
class Request:
    method: str
    target: str
    headers: Dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> Dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.target).query))

    def json(self) -> Any:
        return json.loads(self.body)


class Conn:
    """The client connection as a responder sees it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.keep_alive = True

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reset(self) -> None:
        """Abort with a TCP RST instead of a clean FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.keep_alive = False
        self.sock.close()

    def close(self) -> None:
        self.keep_alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


Responder = Callable[[Request, Conn], None]


def raw_response(
    status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None, reason: str = "X", length: bool = True
) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    hdrs = {"content-length": str(len(body))} if length else {}
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(status: int, doc: Any, headers: Optional[Dict[str, str]] = None) -> Responder:
    body = json.dumps(doc).encode()
    hdrs = {"content-type": "application/json"}
    hdrs.update(headers or {})

    def respond(req: Request, conn: Conn) -> None:
        conn.send(raw_response(status, body, hdrs))

    return respond


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def sse_stream(
    pieces: List[bytes], *, delay: float = 0.0, content_type: str = "text/event-stream; charset=utf-8", end: bool = True
) -> Responder:
    """A chunked response made of ``pieces``; ``end=False`` stalls forever after them."""

    def respond(req: Request, conn: Conn) -> None:
        conn.send(raw_response(200, b"", {"content-type": content_type, "transfer-encoding": "chunked"}, length=False))
        for piece in pieces:
            conn.send(chunked(piece))
            if delay:
                time.sleep(delay)
        if end:
            conn.send(b"0\r\n\r\n")
        else:
            time.sleep(3600)

    return respond


def sse_text(events: List[Tuple[str, Any]]) -> bytes:
    out = b""
    for name, data in events:
        out += f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
    return out


def read_request(reader: BinaryIO) -> Optional[Request]:
    """The next request on a connection (lenient, for tests); None when the client closed first.

    A malformed request line or Content-Length raises ValueError.
    """
    line = reader.readline(65536)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: Dict[str, str] = {}
    while True:
        raw = reader.readline(65536)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = (reader.read(length) or b"") if length else b""
    return Request(method, target, headers, body)


class _Handler(socketserver.BaseRequestHandler):
    server: "_TCPServer"

    def handle(self) -> None:
        fake = self.server.fake
        sock: socket.socket = self.request
        sock.settimeout(30)
        fake.connections += 1
        reader = sock.makefile("rb")
        conn = Conn(sock)
        try:
            while conn.keep_alive:
                req = read_request(reader)
                if req is None:
                    return
                with fake.lock:
                    fake.requests.append(req)
                responder = fake.find(req.method, req.path)
                if responder is None:
                    conn.send(raw_response(404, b'{"detail":"Not Found"}', {"content-type": "application/json"}))
                else:
                    responder(req, conn)
                if req.headers.get("connection", "").lower() == "close":
                    return
        except (OSError, ValueError):
            return
        finally:
            try:
                reader.close()
                sock.close()
            except OSError:
                pass


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: "FakeServer"
    ssl_context: Optional[ssl.SSLContext] = None

    def get_request(self) -> Tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.ssl_context is not None:  # the handshake runs in the handler's thread, on first read
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address


class FakeServer:
    def __init__(
        self,
        port: int = 0,
        routes: Sequence[Tuple[str, str, Responder]] = (),
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        """``routes`` are in place before the first connection is accepted (see ``on``).

        With ``ssl_context`` it speaks HTTPS, at ``https://localhost:PORT``.
        """
        self.routes: List[Tuple[str, str, Responder]] = []
        for method, path, responder in routes:
            self.on(method, path, responder)
        self.requests: List[Request] = []
        self.lock = threading.Lock()
        self.connections = 0
        self._server = _TCPServer(("127.0.0.1", port), _Handler)
        self._server.fake = self
        self._server.ssl_context = ssl_context
        self.port = self._server.server_address[1]
        self.url = f"https://localhost:{self.port}" if ssl_context else f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def on(self, method: str, path: str, responder: Responder) -> None:
        """Route ``method path``: exact, or a prefix ending in ``*`` (longest wins, newest on ties)."""
        self.routes.insert(0, (method.upper(), path, responder))

    def find(self, method: str, path: str) -> Optional[Responder]:
        best: Optional[Tuple[int, Responder]] = None
        for m, prefix, responder in self.routes:
            if m == method and (path == prefix or (prefix.endswith("*") and path.startswith(prefix[:-1]))):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), responder)
        return best[1] if best else None

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.path == path)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def sequence(*responders: Responder) -> Responder:
    """Answer the n-th request with the n-th responder (the last one repeats)."""
    state = {"n": 0}
    lock = threading.Lock()

    def respond(req: Request, conn: Conn) -> None:
        with lock:
            index = min(state["n"], len(responders) - 1)
            state["n"] += 1
        responders[index](req, conn)

    return respond


# -- an in-memory flux0, for daemon tests and the CLI -----------------------------------------


@dataclass
class FakeFlux0:
    """A small in-memory flux0 API on a FakeServer, with optional random failures."""

    server: FakeServer
    failure_rate: float = 0.0
    seed: int = 1
    agents: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    sessions: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    events: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._ids = 0
        s = self.server
        s.on("GET", "/api/agents", self._guard(self._list_agents))
        s.on("POST", "/api/agents", self._guard(self._create_agent))
        s.on("GET", "/api/agents/*", self._guard(self._get_agent))
        s.on("GET", "/api/sessions", self._guard(self._list_sessions))
        s.on("POST", "/api/sessions", self._guard(self._create_session))
        s.on("GET", "/api/sessions/*", self._guard(self._session_get))

    def new_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"id{self._ids:08d}"

    def add_agent(self, name: str = "Echo") -> str:
        aid = self.new_id()
        self.agents[aid] = {
            "id": aid,
            "name": name,
            "type": "echo",
            "description": None,
            "created_at": "2026-11-25T00:00:00Z",
        }
        return aid

    def add_session(self, agent_id: str, title: Optional[str] = None) -> str:
        sid = self.new_id()
        self.sessions[sid] = {
            "id": sid,
            "agent_id": agent_id,
            "user_id": "user000001",
            "title": title,
            "consumption_offsets": {"client": 0},
            "created_at": "2026-11-25T00:00:00Z",
        }
        self.events[sid] = []
        return sid

    def add_events(self, session_id: str, count: int, text: str = "message") -> None:
        log = self.events[session_id]
        with self._lock:
            for _ in range(count):
                offset = len(log)
                self._ids += 1
                source = "user" if offset % 2 == 0 else "ai_agent"
                log.append(
                    {
                        "id": f"ev{self._ids:08d}",
                        "correlation_id": f"RID(x)::{offset // 2}",
                        "type": "message",
                        "source": source,
                        "offset": offset,
                        "data": {
                            "type": "message",
                            "tags": [],
                            "flagged": False,
                            "parts": [{"type": "content", "content": f"{text} {session_id} #{offset}"}],
                            "participant": {"id": "p", "name": "n"},
                        },
                        "deleted": False,
                        "metadata": None,
                        "created_at": "2026-11-25T00:00:00.000001Z",
                    }
                )

    def _guard(self, fn: Callable[[Request], Tuple[int, Any]]) -> Responder:
        def respond(req: Request, conn: Conn) -> None:
            if self.failure_rate and self._rng.random() < self.failure_rate:
                kind = self._rng.choice(["503", "reset", "truncate", "500"])
                if kind == "503":
                    conn.send(
                        raw_response(
                            503, b'{"detail":"busy"}', {"content-type": "application/json", "retry-after": "0"}
                        )
                    )
                elif kind == "500":
                    conn.send(raw_response(500, b"oops", {"content-type": "text/plain"}))
                elif kind == "reset":
                    conn.reset()
                else:
                    status, doc = fn(req)
                    body = json.dumps(doc).encode()
                    conn.send(
                        raw_response(status, body, {"content-type": "application/json"})[: -max(1, len(body) // 2)]
                    )
                    conn.close()
                return
            status, doc = fn(req)
            conn.send(raw_response(status, json.dumps(doc).encode(), {"content-type": "application/json"}))

        return respond

    def _list_agents(self, req: Request) -> Tuple[int, Any]:
        return 200, {"data": list(self.agents.values())}

    def _create_agent(self, req: Request) -> Tuple[int, Any]:
        body = req.json()
        aid = self.add_agent(body["name"])
        self.agents[aid]["type"] = body["type"]
        return 201, self.agents[aid]

    def _get_agent(self, req: Request) -> Tuple[int, Any]:
        aid = urllib.parse.unquote(req.path.rsplit("/", 1)[1])
        if aid not in self.agents:
            return 404, {"detail": f"Agent with ID {aid} not found"}
        return 200, self.agents[aid]

    def _list_sessions(self, req: Request) -> Tuple[int, Any]:
        agent = req.query.get("agent_id")
        return 200, {"data": [s for s in self.sessions.values() if not agent or s["agent_id"] == agent]}

    def _create_session(self, req: Request) -> Tuple[int, Any]:
        body = req.json()
        if body["agent_id"] not in self.agents:
            return 400, {"detail": f"Agent with ID {body['agent_id']} not found"}
        sid = self.add_session(body["agent_id"], body.get("title"))
        return 201, self.sessions[sid]

    def _session_get(self, req: Request) -> Tuple[int, Any]:
        parts = req.path.split("/")
        sid = urllib.parse.unquote(parts[3])
        if len(parts) == 5 and parts[4] == "events":
            if sid not in self.sessions:
                return 400, {"detail": f"Cannot list events for non-existent session with ID {sid}"}
            q = req.query
            low = int(q.get("min_offset", "0"))
            evs = [e for e in self.events[sid] if e["offset"] >= low]
            if "source" in q:
                evs = [e for e in evs if e["source"] == q["source"]]
            if "correlation_id" in q:
                evs = [e for e in evs if e["correlation_id"] == q["correlation_id"]]
            return 200, {"data": evs}
        if sid not in self.sessions:
            return 404, {"detail": f"Session with ID {sid} not found"}
        return 200, self.sessions[sid]
