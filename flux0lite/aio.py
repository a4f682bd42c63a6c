"""Async twins run the blocking call in a worker thread; asyncio loads only when one is used."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Optional, TypeVar, overload

if TYPE_CHECKING:
    # mypy checks with Python 3.10's typing; at run time (3.9 too) the annotations below are
    # strings that nothing evaluates, so ParamSpec is needed only here.
    from typing import ParamSpec

    P = ParamSpec("P")

T = TypeVar("T")
U = TypeVar("U")

__all__ = ["in_thread", "async_twin"]


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    import asyncio

    return await asyncio.to_thread(fn, *args, **kwargs)


@overload
def async_twin(fn: "Callable[P, T]") -> "Callable[P, Coroutine[Any, Any, T]]": ...


@overload
def async_twin(fn: "Callable[P, T]", then: Callable[[T], U]) -> "Callable[P, Coroutine[Any, Any, U]]": ...


def async_twin(fn: "Callable[P, Any]", then: Optional[Callable[[Any], Any]] = None) -> "Callable[P, Any]":
    """The ``_async`` twin of a method: same parameters, run in a worker thread, awaited.

    ``then`` turns the result into what the twin returns (e.g. a stream into its async form).
    Used in a class body, ``list_async = async_twin(list)``, so the signature is written once
    and mypy checks the twin's calls against it.
    """

    @functools.wraps(fn)
    async def twin(*args: "P.args", **kwargs: "P.kwargs") -> Any:
        result = await in_thread(fn, *args, **kwargs)
        return result if then is None else then(result)

    twin.__name__ = f"{fn.__name__}_async"
    twin.__qualname__ = f"{fn.__qualname__}_async"
    twin.__doc__ = f"Async twin of :meth:`{fn.__name__}`, run in a worker thread."
    return twin
