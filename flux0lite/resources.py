"""The API's operations, grouped as flux0 groups them: ``agents`` and ``sessions``.

Every operation takes per-call ``timeout`` and ``retry`` overrides and has an ``_async`` twin
that runs it in a worker thread (``asyncio.to_thread``), so async code never blocks its loop.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union, overload

from .aio import async_twin
from .errors import ConfigError, ModelError
from .jsonmodel import read_owned, spec_of
from .models import Agent, Event, Session
from .retry import Retry
from .streaming import AsyncEventStream, EventStream
from .timeout import Timeout

if TYPE_CHECKING:
    from typing import Literal, Protocol

    from .responses import StreamingResponse

    class _Client(Protocol):
        """What the resources need of :class:`~flux0lite.client.Flux0` (which imports them)."""

        max_line_bytes: int
        max_response_bytes: int

        @overload
        def request(
            self,
            method: str,
            path: str,
            *,
            params: Optional[Mapping[str, str]] = ...,
            json_body: Any = ...,
            timeout: TimeoutArg = ...,
            retry: Optional[Retry] = ...,
            stream: Literal[False] = ...,
        ) -> Any: ...

        @overload
        def request(
            self,
            method: str,
            path: str,
            *,
            params: Optional[Mapping[str, str]] = ...,
            json_body: Any = ...,
            timeout: TimeoutArg = ...,
            retry: Optional[Retry] = ...,
            stream: Literal[True],
        ) -> StreamingResponse: ...


TimeoutArg = Union[Timeout, float, None]


def path_segment(value: str, name: str) -> str:
    """``value`` as one path segment. "." and ".." are dot-segments that a normalising proxy
    or server would resolve (``/api/sessions/../events``), so their dots are encoded too."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string")
    if value in (".", ".."):
        return "%2E" * len(value)
    try:
        return urllib.parse.quote(value, safe="")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{name} is not valid Unicode text (a lone surrogate at {exc.start})") from exc


def _data_list(payload: Any, what: str) -> List[Any]:
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        return list(payload["data"])
    raise ModelError(f'{what}: expected {{"data": [...]}}, got {type(payload).__name__}')


def events_query(
    session_id: str, min_offset: Optional[int], source: Optional[str], correlation_id: Optional[str]
) -> Tuple[str, Optional[Dict[str, str]]]:
    """The path and query of a session's stored events (``list_events``; the CLI's ``--json``)."""
    if min_offset is not None and (isinstance(min_offset, bool) or not isinstance(min_offset, int) or min_offset < 0):
        raise ConfigError(f"min_offset must be an int >= 0, got {min_offset!r}")
    params: Dict[str, str] = {}
    if min_offset is not None:
        params["min_offset"] = str(min_offset)
    if source is not None:
        params["source"] = source
    if correlation_id is not None:
        params["correlation_id"] = correlation_id
    return f"/api/sessions/{path_segment(session_id, 'session_id')}/events", params or None


class Agents:
    def __init__(self, client: "_Client") -> None:
        self._client = client

    def list(self, *, timeout: TimeoutArg = None, retry: Optional[Retry] = None) -> List[Agent]:
        payload = self._client.request("GET", "/api/agents", timeout=timeout, retry=retry)
        read = spec_of(Agent).read_owned
        return [read(item) for item in _data_list(payload, "agents.list")]

    def create(
        self,
        *,
        name: str,
        type: str,
        description: Optional[str] = None,
        timeout: TimeoutArg = None,
        retry: Optional[Retry] = None,
    ) -> Agent:
        body: Dict[str, Any] = {"name": name, "type": type}
        if description is not None:
            body["description"] = description
        payload = self._client.request("POST", "/api/agents", json_body=body, timeout=timeout, retry=retry)
        return read_owned(Agent, payload)

    def retrieve(self, agent_id: str, *, timeout: TimeoutArg = None, retry: Optional[Retry] = None) -> Agent:
        path = f"/api/agents/{path_segment(agent_id, 'agent_id')}"
        return read_owned(Agent, self._client.request("GET", path, timeout=timeout, retry=retry))

    list_async = async_twin(list)
    create_async = async_twin(create)
    retrieve_async = async_twin(retrieve)


class Sessions:
    def __init__(self, client: "_Client") -> None:
        self._client = client

    def create(
        self,
        *,
        agent_id: str,
        id: Optional[str] = None,
        title: Optional[str] = None,
        allow_greeting: bool = False,
        timeout: TimeoutArg = None,
        retry: Optional[Retry] = None,
    ) -> Session:
        body: Dict[str, Any] = {"agent_id": agent_id}
        if id is not None:
            body["id"] = id
        if title is not None:
            body["title"] = title
        payload = self._client.request(
            "POST",
            "/api/sessions",
            params={"allow_greeting": "true" if allow_greeting else "false"},
            json_body=body,
            timeout=timeout,
            retry=retry,
        )
        return read_owned(Session, payload)

    def list(
        self, *, agent_id: Optional[str] = None, timeout: TimeoutArg = None, retry: Optional[Retry] = None
    ) -> List[Session]:
        params = {"agent_id": agent_id} if agent_id else None
        payload = self._client.request("GET", "/api/sessions", params=params, timeout=timeout, retry=retry)
        read = spec_of(Session).read_owned
        return [read(item) for item in _data_list(payload, "sessions.list")]

    def retrieve(self, session_id: str, *, timeout: TimeoutArg = None, retry: Optional[Retry] = None) -> Session:
        path = f"/api/sessions/{path_segment(session_id, 'session_id')}"
        return read_owned(Session, self._client.request("GET", path, timeout=timeout, retry=retry))

    def create_event(
        self,
        session_id: str,
        content: str,
        *,
        type: str = "message",
        source: str = "user",
        timeout: TimeoutArg = None,
        retry: Optional[Retry] = None,
    ) -> EventStream:
        """Post a message and stream the agent's reply.

        The stream is never re-posted on failure (that would send the message twice); use
        ``list_events`` to recover what the agent stored.
        """
        path = f"/api/sessions/{path_segment(session_id, 'session_id')}/events/stream"
        body = {"type": type, "source": source, "content": content}
        response = self._client.request("POST", path, json_body=body, timeout=timeout, retry=retry, stream=True)
        return EventStream(
            response, max_line_bytes=self._client.max_line_bytes, max_reply_bytes=self._client.max_response_bytes
        )

    def list_events(
        self,
        session_id: str,
        *,
        min_offset: Optional[int] = None,
        source: Optional[str] = None,
        correlation_id: Optional[str] = None,
        types: Optional[Iterable[str]] = None,
        timeout: TimeoutArg = None,
        retry: Optional[Retry] = None,
    ) -> List[Event]:
        """Stored events in offset order.

        ``types`` is applied here, not sent: the server's own type filter does not work.
        """
        path, params = events_query(session_id, min_offset, source, correlation_id)
        payload = self._client.request("GET", path, params=params, timeout=timeout, retry=retry)
        read = spec_of(Event).read_owned  # Event.from_dict of an answer nobody else holds, looked up once
        events: List[Event] = [read(item) for item in _data_list(payload, "sessions.list_events")]
        if types is not None:
            wanted = {types} if isinstance(types, str) else set(types)
            events = [e for e in events if e.type in wanted]
        return events

    create_async = async_twin(create)
    list_async = async_twin(list)
    retrieve_async = async_twin(retrieve)
    create_event_async = async_twin(create_event, AsyncEventStream)
    list_events_async = async_twin(list_events)
