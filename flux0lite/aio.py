"""Async twins run the blocking call in a worker thread; asyncio loads only when one is used."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")

__all__ = ["in_thread"]


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    import asyncio

    return await asyncio.to_thread(fn, *args, **kwargs)
