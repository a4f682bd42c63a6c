"""Regressions for the client defects an adversary confirmed (repros in the hadv branch)."""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import threading
import time
from typing import Any, Callable, Iterator, List, Tuple

import pytest

from flux0lite import ConfigError, Flux0, Retry, Timeout
from flux0lite.cli import main
from tests.rawserver import RawServer

AGENTS = [
    {"id": f"ag{i:08d}", "name": "n" * 100, "type": "echo", "created_at": "2024-01-01T00:00:00Z"} for i in range(1000)
]
BIG_BODY = json.dumps({"data": AGENTS}).encode()


@pytest.fixture()
def raw_server() -> Iterator[RawServer]:
    with RawServer() as server:
        yield server


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
        % len(BIG_BODY)
        + BIG_BODY,
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + BIG_BODY,
    ],
    ids=["connection-close", "http-1.0"],
)
def test_total_timeout_reads_a_body_ended_by_closing(raw_server: RawServer, answer: bytes) -> None:
    # http.client closes its connection as soon as such an answer starts; the deadline-aware
    # reader must keep the socket open until the body is read (as socket.makefile's would)
    raw_server.answer = answer
    with Flux0(raw_server.url, timeout=Timeout(total=30)) as client:
        assert [agent.id for agent in client.agents.list()] == [agent["id"] for agent in AGENTS]


class _SlowCreateThenTrickle(http.server.BaseHTTPRequestHandler):
    """Takes 3 s to create a session, then trickles a reply that never ends."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.split("?")[0] == "/api/sessions":
            time.sleep(3)
            data = json.dumps(
                {"id": "sess000001", "agent_id": "agent00001", "created_at": "2024-01-01T00:00:00Z"}
            ).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for seq in range(100):
                chunk = {"correlation_id": "c", "event_id": "e", "seq": seq, "timestamp": 1.0}
                chunk["patches"] = [{"op": "add", "path": "/-", "value": "x"}]
                event = f"event: chunk\ndata: {json.dumps(chunk)}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                time.sleep(0.3)
        except OSError:
            pass


def test_chat_new_timeout_bounds_the_whole_command() -> None:
    # creating the session and streaming the reply share one --timeout, as README promises
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowCreateThenTrickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        code = main(
            ["--server-url", f"http://127.0.0.1:{server.server_port}", "--no-proxy", "--timeout", "3.5"]
            + ["chat", "--new", "--agent", "agent00001", "hi"],
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            stdin=io.StringIO(),
        )
        took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert code == 3
    assert took < 5.5  # a fresh budget for the reply would end it at 3 + 3.5 s


def _circular() -> List[Any]:
    loop: List[Any] = []
    loop.append(loop)
    return loop


def _deep(depth: int) -> List[Any]:
    doc: List[Any] = []
    for _ in range(depth):
        doc = [doc]
    return doc


ODD_CALLS: List[Tuple[str, Callable[[Flux0], Any]]] = [
    ("json_body object", lambda c: c.request("POST", "/api/x", json_body=object())),
    ("json_body circular", lambda c: c.request("POST", "/api/x", json_body=_circular())),
    ("json_body 100k deep", lambda c: c.request("POST", "/api/x", json_body=_deep(100_000))),
    ("title bytes", lambda c: c.sessions.create(agent_id="a", title=b"x")),  # type: ignore[arg-type]
    ("content bytes", lambda c: c.sessions.create_event("s", b"x")),  # type: ignore[arg-type]
    ("retry=5", lambda c: c.agents.list(retry=5)),  # type: ignore[arg-type]
    ("retry=5 request", lambda c: c.request("GET", "/api/agents", retry=5)),  # type: ignore[call-overload]
    ("retry=5 async", lambda c: asyncio.run(c.agents.list_async(retry=5))),  # type: ignore[arg-type]
    ("params list", lambda c: c.request("GET", "/api/agents", params=[1, 2])),  # type: ignore[call-overload]
    ("params int", lambda c: c.request("GET", "/api/agents", params=5)),  # type: ignore[call-overload]
    ("method int", lambda c: c.request(5, "/api/agents")),  # type: ignore[call-overload]
    ("headers list", lambda c: Flux0(c.server_url, headers=[("a", "b")])),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("call", [call for _, call in ODD_CALLS], ids=[name for name, _ in ODD_CALLS])
def test_odd_arguments_raise_config_error(call: Callable[[Flux0], Any]) -> None:
    # the user's own argument: a ConfigError (a Flux0Error), never a bare TypeError/ValueError/...
    with Flux0("http://127.0.0.1:9", retry=Retry(total=0)) as client:
        with pytest.raises(ConfigError) as caught:
            call(client)
    assert "\n" not in str(caught.value)
