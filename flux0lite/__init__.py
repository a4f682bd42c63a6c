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

# Every public name and the module it lives in. Attributes load their module on first use
# (PEP 562), so "import flux0lite" stays cheap for one-liners and cron jobs; the first request
# pays only for what it uses.
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
    "TLSError": "errors",
    "ProxyError": "errors",
    "ProxyAuthenticationError": "errors",
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
    "RequestAborted": "errors",
    "TotalTimeout": "errors",
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
    "Timeout": "timeout",
}

if TYPE_CHECKING:
    from typing import Any, List

    from .client import DEFAULT_SERVER_URL as DEFAULT_SERVER_URL
    from .client import Flux0 as Flux0
    from .client import enable_debug_logging as enable_debug_logging
    from .errors import APIConnectionError as APIConnectionError
    from .errors import APIError as APIError
    from .errors import APITimeoutError as APITimeoutError
    from .errors import AuthenticationError as AuthenticationError
    from .errors import BadRequestError as BadRequestError
    from .errors import ConfigError as ConfigError
    from .errors import ConflictError as ConflictError
    from .errors import ConnectError as ConnectError
    from .errors import ConnectTimeout as ConnectTimeout
    from .errors import ContentTypeError as ContentTypeError
    from .errors import DecodeError as DecodeError
    from .errors import Flux0Error as Flux0Error
    from .errors import MethodNotAllowedError as MethodNotAllowedError
    from .errors import ModelError as ModelError
    from .errors import NotFoundError as NotFoundError
    from .errors import PatchError as PatchError
    from .errors import PermissionDeniedError as PermissionDeniedError
    from .errors import ProtocolError as ProtocolError
    from .errors import ProxyAuthenticationError as ProxyAuthenticationError
    from .errors import ProxyError as ProxyError
    from .errors import RateLimitedError as RateLimitedError
    from .errors import ReadTimeout as ReadTimeout
    from .errors import RedirectError as RedirectError
    from .errors import RequestAborted as RequestAborted
    from .errors import ResponseTooLargeError as ResponseTooLargeError
    from .errors import ServerError as ServerError
    from .errors import StreamError as StreamError
    from .errors import TLSError as TLSError
    from .errors import TotalTimeout as TotalTimeout
    from .errors import ValidationError as ValidationError
    from .models import Agent as Agent
    from .models import ChunkEvent as ChunkEvent
    from .models import ContentPart as ContentPart
    from .models import Event as Event
    from .models import JsonPatch as JsonPatch
    from .models import MessageEventData as MessageEventData
    from .models import Participant as Participant
    from .models import RawStreamEvent as RawStreamEvent
    from .models import ReasoningPart as ReasoningPart
    from .models import Session as Session
    from .models import StatusEvent as StatusEvent
    from .models import StatusEventData as StatusEventData
    from .models import StreamEvent as StreamEvent
    from .models import ToolCall as ToolCall
    from .models import ToolCallPart as ToolCallPart
    from .models import ToolEventData as ToolEventData
    from .models import UnknownPart as UnknownPart
    from .retry import Retry as Retry
    from .sse import SSEDecoder as SSEDecoder
    from .sse import SSEEvent as SSEEvent
    from .streaming import AsyncEventStream as AsyncEventStream
    from .streaming import EventStream as EventStream
    from .streaming import Reply as Reply
    from .streaming import ReplyAssembler as ReplyAssembler
    from .timeout import Timeout as Timeout

# The lazy table is the list of public names. The imports above are for type checkers (the
# "as" form marks a re-export); tests/test_client.py checks that they name the same ones.
__all__ = ["__version__", *_LAZY]


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
