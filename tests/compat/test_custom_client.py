"""``client=``/``async_client=`` with a non-httpx client of the same shape, on the real server
(the httpx examples of the SDK README are in test_readme_blocks.py)."""

from __future__ import annotations

import asyncio
from typing import Any, List, Tuple

import pytest

import flux0lite
from flux0lite.compat import Flux0, models
from tests.compat.stdlib_client import AsyncClient, Client, Response

pytestmark = pytest.mark.integration


def run_flow(sdk: Flux0) -> Tuple[models.AgentDTO, List[str], models.EventsDTO]:
    agent = sdk.agents.create(name="Custom", type_="echo", description=None)
    assert agent.id in {a.id for a in sdk.agents.list().data}
    assert sdk.agents.retrieve(agent_id=agent.id).description is None
    session = sdk.sessions.create(agent_id=agent.id, title="custom client")
    assert sdk.sessions.retrieve(session_id=session.id).title == "custom client"
    assert [s.id for s in sdk.sessions.list(agent_id=agent.id).data] == [session.id]
    with sdk.sessions.create_event(
        session_id=session.id, type_=models.EventTypeDTO.MESSAGE, source=models.EventSourceDTO.USER, content="!tool"
    ) as stream:
        kinds = [event.EVENT for event in stream]
    return agent, kinds, sdk.sessions.list_events(session_id=session.id, types=["tool", "message"])


def check_flow(kinds: List[str], events: models.EventsDTO) -> None:
    assert "chunk" in kinds and "status" in kinds
    tool = next(e for e in events.data if e.type == models.EventTypeDTO.TOOL)
    assert isinstance(tool.data, models.ToolEventDataDTO)
    call = tool.data.tool_calls[0]
    assert call.tool_name == "search" and call.tool_call_id == "call_1"
    assert events.data[-1].type == "message" and events.data[-1].source == "ai_agent"


def test_sync_custom_client_carries_every_operation(server_url: str) -> None:
    client = Client(headers={"x-custom-header": "someValue"})
    with Flux0(server_url=server_url, client=client) as sdk:
        _, kinds, events = run_flow(sdk)
        check_flow(kinds, events)
        with pytest.raises(models.APIError) as missing:
            sdk.agents.retrieve(agent_id="0123456789")
        with pytest.raises(models.HTTPValidationError) as malformed:
            sdk.agents.retrieve(agent_id="short")
        with pytest.raises(models.APIError) as no_session:
            sdk.sessions.create_event(session_id="0123456789", type_="message", source="user", content="x")
        sdk.agents.list(http_headers={"x-per-call": "1"}, timeout_ms=5000)
    assert isinstance(missing.value.raw_response, Response) and missing.value.raw_response.status_code == 404
    assert isinstance(missing.value, flux0lite.NotFoundError) and "not found" in missing.value.body
    assert malformed.value.data.detail[0].loc == ["path", "agent_id"]
    assert no_session.value.status_code == 400 and isinstance(no_session.value, flux0lite.BadRequestError)
    assert len(client.sent) == 12 and all(r.headers["x-custom-header"] == "someValue" for r in client.sent)
    assert client.sent[-1].headers["x-per-call"] == "1" and client.sent[-1].timeout == 5.0
    assert client.sent[0].headers["user-agent"].startswith("flux0lite/")


def test_async_custom_client_carries_every_operation(server_url: str) -> None:
    client = AsyncClient()

    async def flow() -> Any:
        async with Flux0(server_url=server_url, async_client=client) as sdk:
            agent = await sdk.agents.create_async(name="Async custom", type_="echo")
            assert agent.id in {a.id for a in (await sdk.agents.list_async()).data}
            assert (await sdk.agents.retrieve_async(agent_id=agent.id)).name == "Async custom"
            session = await sdk.sessions.create_async(agent_id=agent.id)
            assert (await sdk.sessions.retrieve_async(session_id=session.id)).id == session.id
            assert len((await sdk.sessions.list_async(agent_id=agent.id)).data) == 1
            stream = await sdk.sessions.create_event_async(
                session_id=session.id, type_="message", source="user", content="!tool"
            )
            async with stream as events:
                kinds = [event.EVENT async for event in events]
            listed = await sdk.sessions.list_events_async(session_id=session.id, min_offset=0)
            with pytest.raises(models.APIError):
                await sdk.sessions.create_event_async(
                    session_id="0123456789", type_="message", source="user", content="x"
                )
            with pytest.raises(models.HTTPValidationError):
                await sdk.sessions.retrieve_async(session_id="short")
            return kinds, listed

    kinds, listed = asyncio.run(flow())
    check_flow(kinds, listed)
    assert len(client.sent) == 10


def test_a_custom_clients_own_errors_pass_through_unchanged() -> None:
    # Only httpx's exceptions are renamed; a connection error of the caller's client is theirs.
    with Flux0(server_url="http://127.0.0.1:9", client=Client(timeout=2)) as sdk:
        with pytest.raises(ConnectionRefusedError):
            sdk.agents.list()


def test_native_transport_tool_events(server_url: str) -> None:
    with Flux0(server_url=server_url) as sdk:
        _, kinds, events = run_flow(sdk)
    check_flow(kinds, events)
    tool = next(e for e in events.data if e.type == "tool").model_dump(mode="json")
    assert tool["type"] == "tool" and tool["data"]["TYPE"] == "tool_call_result"
    assert tool["data"]["tool_calls"][0]["tool_name"] == "search"
