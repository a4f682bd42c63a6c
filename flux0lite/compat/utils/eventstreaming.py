"""The stream ``sessions.create_event`` returns, shaped like the SDK's ``EventStream``.

Events arrive as flux0lite parsed them and leave as the SDK's models: ``status`` events as
:class:`EmittedEventStream`, ``chunk`` events as :class:`ChunkEventStream`. An event name the
SDK does not know (where the SDK's iterator would raise and end the stream) comes out as an
:class:`UnknownEventStream` with its raw data, and the stream goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Generator, Generic, Iterator, Optional, TypeVar, Union

from flux0lite import ChunkEvent, RawStreamEvent, StatusEvent, StreamEvent
from flux0lite.aio import StreamWorker

from ..models.chunkeventstream import ChunkEventStream
from ..models.emittedeventstream import EmittedEventStream
from ..types import BaseModel

__all__ = ["EventStream", "EventStreamAsync", "UnknownEventStream", "to_sdk_event"]

T = TypeVar("T")
_DONE: Any = object()


@dataclass
class UnknownEventStream(BaseModel):
    """A stream event whose name the SDK does not know, kept as received."""

    EVENT: str
    data: str
    id: Optional[str] = None


SDKStreamEvent = Union[ChunkEventStream, EmittedEventStream, UnknownEventStream]


def to_sdk_event(event: StreamEvent) -> SDKStreamEvent:
    if isinstance(event, StatusEvent):
        return EmittedEventStream.from_native(event)
    if isinstance(event, ChunkEvent):
        return ChunkEventStream.from_native(event)
    assert isinstance(event, RawStreamEvent)
    return UnknownEventStream(EVENT=event.event, data=event.data, id=event.id or None)


class EventStream(Generic[T]):
    """Iterator and context manager; leaving ``with`` (or ``close()``) closes the connection.

    Closing before the end tells flux0 to cancel the agent's run, as with the SDK.
    """

    def __init__(self, events: Iterator[StreamEvent], close: Callable[[], None], response: Any = None) -> None:
        self.response = response
        self._close = close
        self._closed = False
        self.generator: Generator[T, None, None] = self._convert(events)

    def _convert(self, events: Iterator[StreamEvent]) -> Generator[T, None, None]:
        try:
            for event in events:
                yield to_sdk_event(event)  # type: ignore[misc]
        finally:
            self.close()

    def __iter__(self) -> "EventStream[T]":
        return self

    def __next__(self) -> T:
        return next(self.generator)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "EventStream[T]":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class EventStreamAsync(Generic[T]):
    """The async twin: ``async for`` and ``async with``."""

    def __init__(self, events: AsyncIterator[Any], aclose: Callable[[], Awaitable[None]], response: Any = None) -> None:
        self.response = response
        self._events = events
        self._aclose = aclose
        self._closed = False
        self.generator: AsyncIterator[T] = self

    @classmethod
    def over_thread(cls, stream: "EventStream[T]") -> "EventStreamAsync[T]":
        """Serve a blocking stream to async code: its reads in a thread of its own, as flux0lite's
        AsyncEventStream does (never in the loop's default executor, which idle streams would
        fill); a read cancelled shuts the connection down at once."""
        worker = StreamWorker()
        abort = getattr(stream.response, "abort", None) or stream.close

        def close() -> None:
            stream.close()  # shuts the socket down first: a read in progress ends at once
            worker.stop()

        async def events() -> AsyncIterator[Any]:
            try:
                while True:
                    item = await worker.run(next, stream, _DONE, abort=abort)
                    if item is _DONE:
                        return
                    yield item
            finally:  # its end, an error, or the stream dropped: no thread or socket left
                close()

        async def aclose() -> None:
            close()

        return cls(events(), aclose, stream.response)

    def __aiter__(self) -> "EventStreamAsync[T]":
        return self

    async def __anext__(self) -> T:
        try:
            event = await self._events.__anext__()
        except BaseException:
            await self.aclose()
            raise
        converted = event if isinstance(event, BaseModel) else to_sdk_event(event)
        return converted  # type: ignore[return-value]

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._aclose()

    async def __aenter__(self) -> "EventStreamAsync[T]":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
