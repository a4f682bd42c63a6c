"""``sdk.sessions``: create, list, retrieve, create_event (a stream), list_events; ``_async`` twins."""

from __future__ import annotations

from enum import Enum
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from flux0lite import ConfigError, Event, Session

from .basesdk import BaseSDK, CallOptions, JsonCall, RetriesArg, StreamCall, operation, operation_async
from .models._convert import plain
from .models.eventdto import EventDTO
from .models.eventsdto import EventsDTO
from .models.eventsourcedto import EventSourceDTO
from .models.eventtypedto import EventTypeDTO
from .models.sessiondto import SessionDTO
from .models.sessionsdto import SessionsDTO
from .operation import Operation, data_list, segment
from .types import UNSET, Unset

OptStr = Union[str, None, Unset]


def _session(payload: Any) -> SessionDTO:
    return SessionDTO.from_native(Session.from_dict(payload))


def _sessions(payload: Any) -> SessionsDTO:
    items = data_list(payload, "sessions.list")
    return SessionsDTO(data=[SessionDTO.from_native(Session.from_dict(item)) for item in items])


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
    # Each operation is written once (``_create``...) and made into a method and its ``_async`` twin.
    def _create(
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
    ) -> JsonCall[SessionDTO]:
        """Create a new session between a user and an agent (never re-sent once it may have arrived)."""
        body: Dict[str, Any] = {"agent_id": agent_id}
        if not isinstance(id, Unset):
            body["id"] = id
        if not isinstance(title, Unset):
            body["title"] = title
        params = {"allow_greeting": "true" if allow_greeting else "false"}
        op = Operation("create_session", "POST", "/api/sessions", params=params, body=body)
        return JsonCall(op, _session, CallOptions(retries, server_url, timeout_ms, http_headers))

    create = operation(_create)
    create_async = operation_async(_create)

    def _list(
        self,
        *,
        agent_id: OptStr = UNSET,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> JsonCall[SessionsDTO]:
        """List Sessions, optionally only those of one agent."""
        params = {"agent_id": agent_id} if isinstance(agent_id, str) else None
        op = Operation("list_sessions", "GET", "/api/sessions", params=params, validation_422=True)
        return JsonCall(op, _sessions, CallOptions(retries, server_url, timeout_ms, http_headers))

    list = operation(_list)
    list_async = operation_async(_list)

    def _retrieve(
        self,
        *,
        session_id: str,
        retries: RetriesArg = UNSET,
        server_url: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> JsonCall[SessionDTO]:
        path = f"/api/sessions/{segment(session_id, 'session_id')}"
        op = Operation("retrieve_session", "GET", path, validation_422=True)
        return JsonCall(op, _session, CallOptions(retries, server_url, timeout_ms, http_headers))

    retrieve = operation(_retrieve)
    retrieve_async = operation_async(_retrieve)

    def _create_event(
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
    ) -> StreamCall:
        """Post an event (a user message) and stream the agent's reply.

        The POST is never re-sent once it may have reached the server: that would post the
        message twice. ``list_events`` recovers what the agent stored.
        """
        body: Dict[str, Any] = {"type": plain(type_), "source": plain(source)}
        if not isinstance(content, Unset):
            body["content"] = content
        path = f"/api/sessions/{segment(session_id, 'session_id')}/events/stream"
        op = Operation("create_session_event", "POST", path, body=body)
        return StreamCall(op, CallOptions(retries, server_url, timeout_ms, http_headers))

    create_event = operation(_create_event)
    create_event_async = operation_async(_create_event)

    def _list_events(
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
    ) -> JsonCall[EventsDTO]:
        """List Events of a session in offset order, optionally filtered."""
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
        op = Operation("list_session_events", "GET", path, params=params or None)
        return JsonCall(op, _events_parser(types), CallOptions(retries, server_url, timeout_ms, http_headers))

    list_events = operation(_list_events)
    list_events_async = operation_async(_list_events)
