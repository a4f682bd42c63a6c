"""flux0lite: a zero-dependency client for the flux0 agent server.

>>> from flux0lite import Flux0
>>> with Flux0("http://127.0.0.1:8080") as client:          # doctest: +SKIP
...     agent = client.agents.create(name="Echo", type="echo")
...     session = client.sessions.create(agent_id=agent.id)
...     with client.sessions.create_event(session.id, "hello") as stream:
...         print(stream.reply().text)
"""

from ._version import __version__
from .client import DEFAULT_SERVER_URL, Flux0, enable_debug_logging
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ConflictError,
    ConnectError,
    ConnectTimeout,
    ContentTypeError,
    DecodeError,
    Flux0Error,
    MethodNotAllowedError,
    ModelError,
    NotFoundError,
    PatchError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    ReadTimeout,
    RedirectError,
    ResponseTooLargeError,
    ServerError,
    StreamError,
    ValidationError,
)
from .models import (
    Agent,
    ChunkEvent,
    ContentPart,
    Event,
    JsonPatch,
    MessageEventData,
    Participant,
    RawStreamEvent,
    ReasoningPart,
    Session,
    StatusEvent,
    StatusEventData,
    StreamEvent,
    ToolCall,
    ToolCallPart,
    ToolEventData,
    UnknownPart,
)
from .retry import Retry
from .sse import SSEDecoder, SSEEvent
from .streaming import AsyncEventStream, EventStream, Reply, ReplyAssembler
from .transport import Timeout

__all__ = [
    "__version__",
    "DEFAULT_SERVER_URL",
    "Flux0",
    "enable_debug_logging",
    "Retry",
    "Timeout",
    "SSEDecoder",
    "SSEEvent",
    "EventStream",
    "AsyncEventStream",
    "Reply",
    "ReplyAssembler",
    "Agent",
    "Session",
    "Event",
    "Participant",
    "ContentPart",
    "ReasoningPart",
    "ToolCallPart",
    "UnknownPart",
    "MessageEventData",
    "StatusEventData",
    "ToolCall",
    "ToolEventData",
    "JsonPatch",
    "StatusEvent",
    "ChunkEvent",
    "RawStreamEvent",
    "StreamEvent",
    "Flux0Error",
    "ConfigError",
    "APIConnectionError",
    "ConnectError",
    "APITimeoutError",
    "ConnectTimeout",
    "ReadTimeout",
    "APIError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "MethodNotAllowedError",
    "ConflictError",
    "ValidationError",
    "RateLimitedError",
    "ServerError",
    "ProtocolError",
    "ContentTypeError",
    "DecodeError",
    "ModelError",
    "ResponseTooLargeError",
    "StreamError",
    "PatchError",
    "RedirectError",
]
