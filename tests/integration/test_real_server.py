"""Every client operation against the real flux0 server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import List

import pytest

from flux0lite import (
    Agent,
    BadRequestError,
    ChunkEvent,
    Flux0,
    MessageEventData,
    MethodNotAllowedError,
    NotFoundError,
    ReadTimeout,
    Retry,
    StatusEvent,
    StatusEventData,
    Timeout,
    ValidationError,
)
from tests.test_cli import run_cli


@pytest.fixture
def client(server_url: str) -> Flux0:
    return Flux0(server_url, timeout=Timeout(connect=5, read=20))


@pytest.fixture
def agent(client: Flux0) -> Agent:
    return client.agents.create(name="Echo", type="echo", description="integration")


def test_agents_create_list_retrieve(client: Flux0) -> None:
    created = client.agents.create(name="Ag ✓", type="echo", description="d")
    assert len(created.id) == 10 and created.name == "Ag ✓" and created.description == "d"
    assert client.agents.retrieve(created.id) == created
    assert created.id in {a.id for a in client.agents.list()}
    assert created.created_at is not None and created.created_at.endswith("Z")


def test_sessions_create_list_retrieve(client: Flux0, agent: Agent) -> None:
    session = client.sessions.create(agent_id=agent.id, title="first")
    assert session.agent_id == agent.id and session.consumption_offsets == {"client": 0}
    assert client.sessions.retrieve(session.id).title == "first"
    assert [s.id for s in client.sessions.list(agent_id=agent.id)] == [session.id]
    assert session.id in {s.id for s in client.sessions.list()}
    chosen = client.sessions.create(agent_id=agent.id, id="chosenid01")
    assert chosen.id == "chosenid01"


def test_stream_reply_text_equals_echo_and_is_stored(client: Flux0, agent: Agent) -> None:
    session = client.sessions.create(agent_id=agent.id)
    with client.sessions.create_event(session.id, "hello real server") as stream:
        events = list(stream)
        reply = stream.assembler.reply()
    assert stream.finished
    assert isinstance(events[0], StatusEvent) and events[0].status == "processing"
    assert sum(isinstance(e, ChunkEvent) for e in events) == 4
    assert reply.text == "Echo: hello real server"
    stored = client.sessions.list_events(session.id)
    assert [e.offset for e in stored] == list(range(len(stored)))
    assert stored[0].source == "user" and stored[0].text == "hello real server"
    final = stored[-1]
    assert final.source == "ai_agent" and final.type == "message" and final.text == reply.text
    # streamed ids differ from stored ids; the correlation id links them
    assert final.correlation_id == events[0].correlation_id


def test_non_ascii_round_trip(client: Flux0, agent: Agent) -> None:
    session = client.sessions.create(agent_id=agent.id, title="ünïcödé 标题 🚀")
    message = "Grüße, 世界! 🚀 ¿qué tal? \u2028 tab\tend"
    reply = client.sessions.create_event(session.id, message).reply()
    assert reply.text == "Echo: " + message.replace("\u2028 ", "\u2028 ")
    stored = client.sessions.list_events(session.id, source="user")
    assert stored[0].text == message
    assert client.sessions.retrieve(session.id).title == "ünïcödé 标题 🚀"


def test_tool_call_stream(client: Flux0, agent: Agent) -> None:
    session = client.sessions.create(agent_id=agent.id)
    reply = client.sessions.create_event(session.id, "!tool").reply()
    assert reply.text == "It is sunny."
    (call,) = reply.tool_calls
    assert call["tool_name"] == "search" and json.loads("".join(call["args"])) == {"query": "weather"}
    stored = client.sessions.list_events(session.id)
    kinds = {(e.type, e.source) for e in stored}
    assert ("message", "ai_agent") in kinds


def test_json_and_error_replies(client: Flux0, agent: Agent) -> None:
    session = client.sessions.create(agent_id=agent.id)
    reply = client.sessions.create_event(session.id, "!json").reply()
    assert list(reply.messages.values()) == [{"answer": {"n": 42, "ok": True}}]
    reply = client.sessions.create_event(session.id, "!error").reply()
    assert reply.error == {"exception": "EchoError: as asked"}


def test_list_events_filters_and_min_offset_paging(client: Flux0, agent: Agent) -> None:
    session = client.sessions.create(agent_id=agent.id)
    correlation_ids: List[str] = []
    for i in range(3):
        with client.sessions.create_event(session.id, f"message {i}") as stream:
            first = next(stream)
            correlation_ids.append(first.correlation_id)  # type: ignore[union-attr]
            stream.reply()
    everything = client.sessions.list_events(session.id)
    assert [e.offset for e in everything] == list(range(len(everything)))
    # page through with min_offset, as the daemon does
    paged, cursor = [], 0
    while True:
        page = client.sessions.list_events(session.id, min_offset=cursor)[:3]
        if not page:
            break
        paged += page
        cursor = page[-1].offset + 1
    assert [e.id for e in paged] == [e.id for e in everything]
    users = client.sessions.list_events(session.id, source="user")
    assert [e.text for e in users] == ["message 0", "message 1", "message 2"]
    ai = client.sessions.list_events(session.id, source="ai_agent")
    assert ai and all(e.source == "ai_agent" for e in ai)
    corr = client.sessions.list_events(session.id, correlation_id=everything[0].correlation_id)
    assert corr and all(e.correlation_id == everything[0].correlation_id for e in corr)
    statuses = client.sessions.list_events(session.id, types=["status"])
    assert statuses and all(isinstance(e.data, StatusEventData) for e in statuses)
    messages = client.sessions.list_events(session.id, types=["message"], min_offset=2)
    assert messages and all(isinstance(e.data, MessageEventData) and e.offset >= 2 for e in messages)


def test_real_error_responses_map_to_typed_errors(client: Flux0, agent: Agent) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        client.agents.retrieve("AAAAAAAAAA")
    with pytest.raises(NotFoundError):
        client.sessions.retrieve("AAAAAAAAAA")
    with pytest.raises(ValidationError) as info:
        client.agents.retrieve("short")
    assert info.value.errors[0]["loc"] == ["path", "agent_id"]
    with pytest.raises(ValidationError, match="not supported"):
        client.agents.create(name="x", type="no-such-type")
    with pytest.raises(BadRequestError):
        client.sessions.create(agent_id="AAAAAAAAAA")
    with pytest.raises(BadRequestError):
        client.sessions.list_events("AAAAAAAAAA")
    with pytest.raises(BadRequestError):
        client.sessions.create_event("AAAAAAAAAA", "hi")
    with pytest.raises(ValidationError, match="Only"):
        client.sessions.create_event(client.sessions.create(agent_id=agent.id).id, "x", source="ai_agent")
    with pytest.raises(MethodNotAllowedError) as not_allowed:
        client.request_json("DELETE", f"/api/agents/{agent.id}")
    assert not_allowed.value.allowed == ["GET"]
    with pytest.raises(NotFoundError):
        client.request_json("GET", "/api/no-such-route")


def test_stream_that_never_ends_is_cut_by_read_timeout(server_url: str, agent: Agent) -> None:
    client = Flux0(server_url, timeout=Timeout(connect=5, read=1.0), retry=Retry(total=0))
    session = client.sessions.create(agent_id=agent.id)
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        client.sessions.create_event(session.id, "!raise").reply()
    assert time.monotonic() - started < 10


def test_async_api_end_to_end(server_url: str) -> None:
    async def run() -> None:
        async with Flux0(server_url) as client:
            agent = await client.agents.create_async(name="Async", type="echo")
            assert (await client.agents.retrieve_async(agent.id)).name == "Async"
            assert agent.id in {a.id for a in await client.agents.list_async()}
            sessions = await asyncio.gather(
                *[client.sessions.create_async(agent_id=agent.id, title=str(i)) for i in range(3)]
            )
            assert len(await client.sessions.list_async(agent_id=agent.id)) == 3
            assert (await client.sessions.retrieve_async(sessions[0].id)).title == "0"

            async def chat(session_id: str, text: str) -> str:
                stream = await client.sessions.create_event_async(session_id, text)
                async with stream:
                    return (await stream.reply()).text

            replies = await asyncio.gather(*[chat(s.id, f"hi {i}") for i, s in enumerate(sessions)])
            assert replies == [f"Echo: hi {i}" for i in range(3)]
            stream = await client.sessions.create_event_async(sessions[0].id, "again")
            kinds = [type(e).__name__ async for e in stream]
            assert kinds[0] == "StatusEvent" and "ChunkEvent" in kinds
            events = await client.sessions.list_events_async(sessions[0].id, min_offset=1, types=["message"])
            assert events and all(e.type == "message" for e in events)

    asyncio.run(run())


def _cli_run(args: List[str], url: str, stdin: str = "") -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    code, out, err = run_cli(args, url, stdin)
    return subprocess.CompletedProcess(args, code, out, err)


def test_cli_every_subcommand_against_real_server(server_url: str) -> None:
    proc = _cli_run(["agents", "create", "--name", "CLI", "--type", "echo", "--json"], server_url)
    assert proc.returncode == 0, proc.stderr
    agent_id = json.loads(proc.stdout)["id"]
    assert agent_id in _cli_run(["agents", "list"], server_url).stdout
    assert json.loads(_cli_run(["agents", "get", agent_id, "--json"], server_url).stdout)["name"] == "CLI"
    proc = _cli_run(["sessions", "create", "--agent", agent_id, "--title", "cli", "--json"], server_url)
    session_id = json.loads(proc.stdout)["id"]
    assert session_id in _cli_run(["sessions", "list", "--agent", agent_id], server_url).stdout
    assert json.loads(_cli_run(["sessions", "get", session_id, "--json"], server_url).stdout)["title"] == "cli"
    proc = _cli_run(["chat", session_id, "hello", "cli"], server_url)
    assert proc.returncode == 0 and proc.stdout == "Echo: hello cli\n"
    proc = _cli_run(["chat", session_id, "-"], server_url, stdin="from stdin\n")
    assert proc.stdout == "Echo: from stdin\n"
    proc = _cli_run(["chat", session_id, "!tool", "--jsonl"], server_url)
    assert proc.returncode == 0 and all(
        json.loads(line)["event"] in ("status", "chunk") for line in proc.stdout.splitlines()
    )
    proc = _cli_run(["chat", "--new", "--agent", agent_id, "new session please", "--json"], server_url)
    assert json.loads(proc.stdout)["text"] == "Echo: new session please"
    proc = _cli_run(["events", "list", session_id, "--type", "message", "--source", "ai_agent", "--jsonl"], server_url)
    texts = [p.get("content") for line in proc.stdout.splitlines() for p in json.loads(line)["data"]["parts"]]
    assert "Echo: hello cli" in texts and "Echo: from stdin" in texts
    proc = _cli_run(["events", "list", session_id, "--min-offset", "3"], server_url)
    assert proc.returncode == 0 and proc.stdout.startswith("OFFSET")
    proc = _cli_run(["agents", "get", "AAAAAAAAAA"], server_url)
    assert proc.returncode == 1 and "HTTP 404" in proc.stderr
    proc = _cli_run(["chat", session_id, "!error"], server_url)
    assert proc.returncode == 1 and "EchoError" in proc.stderr
    proc = _cli_run(["--timeout", "1", "chat", session_id, "!raise"], server_url)
    assert proc.returncode == 3
