"""Async twins run the blocking call in a worker thread; asyncio loads only when one is used.

Two kinds of threads, so that flux0lite never starves the event loop's default executor:

- a one-shot call (``agents.list_async``, ``sessions.create_event_async`` up to the response
  headers) runs in the loop's default executor: it is bounded by its timeouts. Cancelled while
  it runs, it stops: its socket is shut down, nothing more is sent (no retry, no redirect),
  and a result that comes anyway (an event stream's socket, say) is closed, not left open;
- an async event stream reads in a :class:`StreamWorker`, a thread of its own for as long as
  it is read, however long the server stays silent. Cancelling a read shuts the socket down
  from the loop's side (``abort``), which ends the blocked read at once and tells the server.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Optional, TypeVar, overload

if TYPE_CHECKING:
    # mypy checks with Python 3.10's typing; at run time (3.9 too) the annotations below are
    # strings that nothing evaluates, so ParamSpec is needed only here.
    import concurrent.futures
    import queue
    from typing import ParamSpec

    P = ParamSpec("P")

T = TypeVar("T")
U = TypeVar("U")

__all__ = ["in_thread", "async_twin", "StreamWorker"]


def _close_quietly(value: object) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: S110 - nobody is left to tell: the caller was cancelled
            pass


class _Handoff:
    """Passes a worker thread's result to the loop, or closes it if the loop stopped waiting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._done = False
        self._result: Any = None

    def run(self, fn: Callable[[], T]) -> T:
        result = fn()
        with self._lock:
            abandoned = self._abandoned
            self._done, self._result = True, result
        if abandoned:
            _close_quietly(result)
        return result

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            leftover = self._result if self._done else None
        _close_quietly(leftover)


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread`` whose call, should the caller be cancelled, stops: no retry or
    redirect is sent after it, its socket in flight is shut down (see
    :class:`~flux0lite.pool.CallCancel`), and what it returns anyway gets closed."""
    import asyncio
    import contextvars

    from .pool import CALL_CANCEL, CallCancel

    loop = asyncio.get_running_loop()
    handoff = _Handoff()
    cancel = CallCancel()
    context = contextvars.copy_context()
    context.run(CALL_CANCEL.set, cancel)
    call = functools.partial(context.run, fn, *args, **kwargs)
    future = loop.run_in_executor(None, handoff.run, call)
    try:
        return await future
    except asyncio.CancelledError:
        cancel.cancel()
        handoff.abandon()
        raise


class StreamWorker:
    """One daemon thread that runs a stream's blocking reads, one after the other.

    The thread starts with the first read and ends on ``stop`` (a daemon thread, so a stream
    left open never holds up the interpreter's exit); a read after ``stop`` starts a new one.
    """

    def __init__(self, name: str = "flux0lite-stream") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._jobs: "Optional[queue.SimpleQueue[Any]]" = None

    def submit(self, fn: Callable[..., T], *args: Any) -> "concurrent.futures.Future[T]":
        import concurrent.futures
        import contextvars
        import queue

        future: "concurrent.futures.Future[T]" = concurrent.futures.Future()
        with self._lock:
            if self._jobs is None:
                # each thread has its own queue: a job can never land behind another's stop
                self._jobs = queue.SimpleQueue()
                threading.Thread(target=_work, args=(self._jobs,), name=self._name, daemon=True).start()
            self._jobs.put((future, functools.partial(contextvars.copy_context().run, fn, *args)))
        return future

    async def run(self, fn: Callable[..., T], *args: Any, abort: Callable[[], None]) -> T:
        """``fn(*args)`` in this worker, awaited; if the awaiting task is cancelled, ``abort``
        runs at once on the loop's thread (it must not block) and the read is abandoned."""
        import asyncio

        try:
            return await asyncio.wrap_future(self.submit(fn, *args))
        except asyncio.CancelledError:
            abort()
            self.stop()
            raise

    def stop(self) -> None:
        """End the thread once the read in progress, if any, returns."""
        with self._lock:
            jobs, self._jobs = self._jobs, None
        if jobs is not None:
            jobs.put(None)


def _work(jobs: "queue.SimpleQueue[Any]") -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        _run(*job)
        del job  # an idle worker holds nothing of its stream (a dropped stream can then go)


def _run(future: "concurrent.futures.Future[Any]", call: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = call()
    except BaseException as exc:  # handed to the awaiting task, as an executor would
        future.set_exception(exc)
    else:
        future.set_result(result)


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
