"""``sdk.agents``: list, create, retrieve, and their ``_async`` twins, with the SDK's arguments."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

from flux0lite import Agent

from .basesdk import BaseSDK, RetriesArg
from .models.agentdto import AgentDTO
from .models.agentsdto import AgentsDTO
from .operation import Operation, data_list, segment
from .types import UNSET, Unset


def _agents(payload: Any) -> AgentsDTO:
    return AgentsDTO(data=[AgentDTO.from_native(Agent.from_dict(item)) for item in data_list(payload, "agents.list")])


def _agent(payload: Any) -> AgentDTO:
    return AgentDTO.from_native(Agent.from_dict(payload))


def _create(name: str, type_: str, description: Union[str, Unset, None]) -> Operation:
    body = {"name": name, "type": type_}
    if not isinstance(description, Unset):
        body["description"] = description  # type: ignore[assignment]
    return Operation("create_agent", "POST", "/api/agents", body=body)


def _retrieve(agent_id: str) -> Operation:
    return Operation("retrieve_agent", "GET", f"/api/agents/{segment(agent_id, 'agent_id')}", validation_422=True)


_LIST = Operation("list_agents", "GET", "/api/agents")


class Agents(BaseSDK):
    # ``retries`` may also come first and unnamed (the SDK's README example passes it so).
    def list(
        self,
        retries: RetriesArg = UNSET,
        *,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> AgentsDTO:
        """List Agents: every agent on the server, in no guaranteed order."""
        return self._json(
            _LIST, _agents, retries=retries, server_url=server_url, timeout_ms=timeout_ms, http_headers=http_headers
        )

    async def list_async(
        self,
        retries: RetriesArg = UNSET,
        *,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> AgentsDTO:
        return await self._json_async(
            _LIST, _agents, retries=retries, server_url=server_url, timeout_ms=timeout_ms, http_headers=http_headers
        )

    def create(
        self,
        *,
        name: str,
        type_: str,
        description: Union[str, Unset, None] = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> AgentDTO:
        """Create Agent. Never re-sent after it may have reached the server, whatever ``retries`` says."""
        return self._json(
            _create(name, type_, description),
            _agent,
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    async def create_async(
        self,
        *,
        name: str,
        type_: str,
        description: Union[str, Unset, None] = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> AgentDTO:
        return await self._json_async(
            _create(name, type_, description),
            _agent,
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    def retrieve(
        self,
        *,
        agent_id: str,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> AgentDTO:
        """Retrieve Agent by id (404: ``models.APIError``; 422 field errors: ``HTTPValidationError``)."""
        return self._json(
            _retrieve(agent_id),
            _agent,
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    async def retrieve_async(
        self,
        *,
        agent_id: str,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> AgentDTO:
        return await self._json_async(
            _retrieve(agent_id),
            _agent,
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )
