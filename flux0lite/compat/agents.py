"""``sdk.agents``: list, create, retrieve, and their ``_async`` twins, with the SDK's arguments."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

from flux0lite import Agent

from .basesdk import BaseSDK, CallOptions, JsonCall, RetriesArg, operation, operation_async
from .models.agentdto import AgentDTO
from .models.agentsdto import AgentsDTO
from .operation import Operation, data_list, segment
from .types import UNSET, Unset


def _agents(payload: Any) -> AgentsDTO:
    return AgentsDTO(data=[AgentDTO.from_native(Agent.from_dict(item)) for item in data_list(payload, "agents.list")])


def _agent(payload: Any) -> AgentDTO:
    return AgentDTO.from_native(Agent.from_dict(payload))


_LIST = Operation("list_agents", "GET", "/api/agents")


class Agents(BaseSDK):
    # Each operation is written once (``_list``...) and made into a method and its ``_async`` twin.
    # ``retries`` may also come first and unnamed (the SDK's README example passes it so).
    def _list(
        self,
        retries: RetriesArg = UNSET,
        *,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> JsonCall[AgentsDTO]:
        """List Agents: every agent on the server, in no guaranteed order."""
        return JsonCall(_LIST, _agents, CallOptions(retries, server_url, timeout_ms, http_headers))

    list = operation(_list)
    list_async = operation_async(_list)

    def _create(
        self,
        *,
        name: str,
        type_: str,
        description: Union[str, Unset, None] = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> JsonCall[AgentDTO]:
        """Create Agent. Never re-sent after it may have reached the server, whatever ``retries`` says."""
        body = {"name": name, "type": type_}
        if not isinstance(description, Unset):
            body["description"] = description  # type: ignore[assignment]
        op = Operation("create_agent", "POST", "/api/agents", body=body)
        return JsonCall(op, _agent, CallOptions(retries, server_url, timeout_ms, http_headers))

    create = operation(_create)
    create_async = operation_async(_create)

    def _retrieve(
        self,
        *,
        agent_id: str,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> JsonCall[AgentDTO]:
        """Retrieve Agent by id (404: ``models.APIError``; 422 field errors: ``HTTPValidationError``)."""
        path = f"/api/agents/{segment(agent_id, 'agent_id')}"
        op = Operation("retrieve_agent", "GET", path, validation_422=True)
        return JsonCall(op, _agent, CallOptions(retries, server_url, timeout_ms, http_headers))

    retrieve = operation(_retrieve)
    retrieve_async = operation_async(_retrieve)
