"""flux0lite: a zero-dependency client for the flux0 agent server.

>>> from flux0lite import Flux0
>>> with Flux0("http://127.0.0.1:8080") as client:          # doctest: +SKIP
...     agent = client.agents.create(name="Echo", type="echo")
...     session = client.sessions.create(agent_id=agent.id)
...     with client.sessions.create_event(session.id, "hello") as stream:
...         print(stream.reply().text)
"""

from __future__ import annotations

from ._version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy honours the name)

# Attributes load their module on first use (PEP 562), so "import flux0lite" stays cheap for
# one-liners and cron jobs; the first request pays only for what it uses.
_LAZY = {
    "DEFAULT_SERVER_URL": "client",
    "Flux0": "client",
    "enable_debug_logging": "client",
    "APIConnectionError": "errors",
    "APIError": "errors",
    "APITimeoutError": "errors",
    "AuthenticationError": "errors",
    "BadRequestError": "errors",
    "ConfigError": "errors",
    "ConflictError": "errors",
    "ConnectError": "errors",
    "ConnectTimeout": "errors",
    "ProxyError": "errors",
    "ProxyAuthenticationError": "errors",
    "TLSError": "errors",
    "ContentTypeError": "errors",
    "DecodeError": "errors",
    "Flux0Error": "errors",
    "MethodNotAllowedError": "errors",
    "ModelError": "errors",
    "NotFoundError": "errors",
    "PatchError": "errors",
    "PermissionDeniedError": "errors",
    "ProtocolError": "errors",
    "RateLimitedError": "errors",
    "ReadTimeout": "errors",
    "RedirectError": "errors",
    "ResponseTooLargeError": "errors",
    "ServerError": "errors",
    "StreamError": "errors",
    "ValidationError": "errors",
    "Agent": "models",
    "ChunkEvent": "models",
    "ContentPart": "models",
    "Event": "models",
    "JsonPatch": "models",
    "MessageEventData": "models",
    "Participant": "models",
    "RawStreamEvent": "models",
    "ReasoningPart": "models",
    "Session": "models",
    "StatusEvent": "models",
    "StatusEventData": "models",
    "StreamEvent": "models",
    "ToolCall": "models",
    "ToolCallPart": "models",
    "ToolEventData": "models",
    "UnknownPart": "models",
    "Retry": "retry",
    "SSEDecoder": "sse",
    "SSEEvent": "sse",
    "AsyncEventStream": "streaming",
    "EventStream": "streaming",
    "Reply": "streaming",
    "ReplyAssembler": "streaming",
    "Timeout": "transport",
}

if TYPE_CHECKING:
    from typing import Any, List

    from .client import (
        DEFAULT_SERVER_URL,
        Flux0,
        enable_debug_logging,
    )
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
        ProxyAuthenticationError,
        ProxyError,
        RateLimitedError,
        ReadTimeout,
        RedirectError,
        ResponseTooLargeError,
        ServerError,
        StreamError,
        TLSError,
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
    from .retry import (
        Retry,
    )
    from .sse import (
        SSEDecoder,
        SSEEvent,
    )
    from .streaming import (
        AsyncEventStream,
        EventStream,
        Reply,
        ReplyAssembler,
    )
    from .transport import (
        Timeout,
    )

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
    "TLSError",
    "ProxyError",
    "ProxyAuthenticationError",
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


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'flux0lite' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))
