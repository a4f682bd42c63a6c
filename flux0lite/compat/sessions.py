"""``sdk.sessions``: create, list, retrieve, create_event (a stream), list_events; ``_async`` twins."""

from __future__ import annotations

from enum import Enum
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from flux0lite import ConfigError, Event, Session

from .basesdk import BaseSDK, RetriesArg
from .models._convert import plain
from .models.eventdto import EventDTO
from .models.eventsdto import EventsDTO
from .models.eventsourcedto import EventSourceDTO
from .models.eventtypedto import EventTypeDTO
from .models.sessiondto import SessionDTO
from .models.sessionsdto import SessionsDTO
from .operation import Operation, data_list, segment
from .types import UNSET, Unset
from .utils.eventstreaming import EventStream, EventStreamAsync, SDKStreamEvent

OptStr = Union[str, None, Unset]


def _session(payload: Any) -> SessionDTO:
    return SessionDTO.from_native(Session.from_dict(payload))


def _sessions(payload: Any) -> SessionsDTO:
    items = data_list(payload, "sessions.list")
    return SessionsDTO(data=[SessionDTO.from_native(Session.from_dict(item)) for item in items])


def _create(agent_id: str, allow_greeting: Optional[bool], id: OptStr, title: OptStr) -> Operation:
    body: Dict[str, Any] = {"agent_id": agent_id}
    if not isinstance(id, Unset):
        body["id"] = id
    if not isinstance(title, Unset):
        body["title"] = title
    params = {"allow_greeting": "true" if allow_greeting else "false"}
    return Operation("create_session", "POST", "/api/sessions", params=params, body=body)


def _list(agent_id: OptStr) -> Operation:
    params = {"agent_id": agent_id} if isinstance(agent_id, str) else None
    return Operation("list_sessions", "GET", "/api/sessions", params=params, validation_422=True)


def _retrieve(session_id: str) -> Operation:
    path = f"/api/sessions/{segment(session_id, 'session_id')}"
    return Operation("retrieve_session", "GET", path, validation_422=True)


def _create_event(session_id: str, type_: Any, source: Any, content: OptStr) -> Operation:
    body: Dict[str, Any] = {"type": plain(type_), "source": plain(source)}
    if not isinstance(content, Unset):
        body["content"] = content
    path = f"/api/sessions/{segment(session_id, 'session_id')}/events/stream"
    return Operation("create_session_event", "POST", path, body=body)


def _list_events(session_id: str, min_offset: Any, source: Any, correlation_id: OptStr) -> Operation:
    params: Dict[str, str] = {}
    if isinstance(min_offset, int) and not isinstance(min_offset, bool) and min_offset >= 0:
        params["min_offset"] = str(min_offset)
    elif min_offset is not None and not isinstance(min_offset, Unset):
        raise ConfigError(f"min_offset must be an int >= 0, got {min_offset!r}")
    if source is not None and not isinstance(source, Unset):
        params["source"] = str(plain(source))
    if isinstance(correlation_id, str):
        params["correlation_id"] = correlation_id
    path = f"/api/sessions/{segment(session_id, 'session_id')}/events"
    return Operation("list_session_events", "GET", path, params=params or None)


def _events_parser(types: Any) -> Callable[[Any], EventsDTO]:
    # The server ignores its ``types`` filter, so (as flux0lite does) it is applied here.
    wanted = None
    if isinstance(types, (str, Enum)):
        wanted = {str(plain(types))}
    elif types is not None and not isinstance(types, Unset):
        wanted = {str(plain(t)) for t in types}

    def parse(payload: Any) -> EventsDTO:
        events = [Event.from_dict(item) for item in data_list(payload, "sessions.list_events")]
        return EventsDTO(data=[EventDTO.from_native(e) for e in events if wanted is None or e.type in wanted])

    return parse


class Sessions(BaseSDK):
    def create(
        self,
        *,
        agent_id: str,
        allow_greeting: Optional[bool] = False,
        id: OptStr = UNSET,
        title: OptStr = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> SessionDTO:
        """Create a new session between a user and an agent (never re-sent once it may have arrived)."""
        return self._json(
            _create(agent_id, allow_greeting, id, title),
            _session,
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    async def create_async(
        self,
        *,
        agent_id: str,
        allow_greeting: Optional[bool] = False,
        id: OptStr = UNSET,
        title: OptStr = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> SessionDTO:
        return await self._json_async(
            _create(agent_id, allow_greeting, id, title),
            _session,
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    def list(
        self,
        *,
        agent_id: OptStr = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> SessionsDTO:
        """List Sessions, optionally only those of one agent."""
        return self._json(
            _list(agent_id),
            _sessions,
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    async def list_async(
        self,
        *,
        agent_id: OptStr = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> SessionsDTO:
        return await self._json_async(
            _list(agent_id),
            _sessions,
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    def retrieve(
        self,
        *,
        session_id: str,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> SessionDTO:
        return self._json(
            _retrieve(session_id),
            _session,
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    async def retrieve_async(
        self,
        *,
        session_id: str,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> SessionDTO:
        return await self._json_async(
            _retrieve(session_id),
            _session,
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    def create_event(
        self,
        *,
        session_id: str,
        type_: Union[EventTypeDTO, str],
        source: Union[EventSourceDTO, str],
        content: OptStr = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> EventStream[SDKStreamEvent]:
        """Post an event (a user message) and stream the agent's reply.

        The POST is never re-sent once it may have reached the server: that would post the
        message twice. ``list_events`` recovers what the agent stored.
        """
        return self._stream(
            _create_event(session_id, type_, source, content),
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    async def create_event_async(
        self,
        *,
        session_id: str,
        type_: Union[EventTypeDTO, str],
        source: Union[EventSourceDTO, str],
        content: OptStr = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> EventStreamAsync[SDKStreamEvent]:
        return await self._stream_async(
            _create_event(session_id, type_, source, content),
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    def list_events(
        self,
        *,
        session_id: str,
        min_offset: Union[int, Unset, None] = UNSET,
        source: Union[EventSourceDTO, str, Unset, None] = UNSET,
        correlation_id: OptStr = UNSET,
        types: Union[List[Union[EventTypeDTO, str]], Unset, None] = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> EventsDTO:
        """List Events of a session in offset order, optionally filtered."""
        return self._json(
            _list_events(session_id, min_offset, source, correlation_id),
            _events_parser(types),
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )

    async def list_events_async(
        self,
        *,
        session_id: str,
        min_offset: Union[int, Unset, None] = UNSET,
        source: Union[EventSourceDTO, str, Unset, None] = UNSET,
        correlation_id: OptStr = UNSET,
        types: Union[List[Union[EventTypeDTO, str]], Unset, None] = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> EventsDTO:
        return await self._json_async(
            _list_events(session_id, min_offset, source, correlation_id),
            _events_parser(types),
            retries=retries,
            server_url=server_url,
            timeout_ms=timeout_ms,
            http_headers=http_headers,
        )
