"""Regressions for the client defects an adversary confirmed (repros in the hadv branch)."""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from flux0lite import Flux0, Timeout
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
