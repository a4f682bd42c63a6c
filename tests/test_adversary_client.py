"""Regressions for the client defects an adversary confirmed (repros in the hadv branch)."""

from __future__ import annotations

import http.server
import io
import json
import threading
import time
from typing import Any, Iterator

import pytest

from flux0lite import Flux0, Timeout
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
