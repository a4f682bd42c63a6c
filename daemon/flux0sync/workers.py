"""Fetch workers: N threads that talk to the server while one thread owns the archive.

Each worker has its own flux0lite client per user (so its own keep-alive connection and the
user's cookie). A job runs on one worker; what it fetches is handed, piece by piece, to the
single writer through one bounded queue (a slow writer slows the workers down instead of
piling answers up in memory; by default it holds one message per worker, each up to a whole
1 MiB answer or a batch), followed by one :class:`Finished` for the job. Pieces of one job
arrive in order, before its ``Finished``.

Every job has a deadline. :meth:`FetchPool.supervise`, called by the writer's loop, cuts off a
job that is past it with its worker's client's :meth:`~flux0lite.Flux0.abort`, which shuts the
socket of the call in flight down and ends it at once, so a stalled server holds one worker
until the deadline, never the others and never the loop. :meth:`FetchPool.stop` does the same
to every job in flight. Because a cut aborts every call in flight on the worker's clients,
``make_client`` must hand each worker clients of its own (a new one per call).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generic, List, Optional, TypeVar, Union

from flux0lite import APITimeoutError, Flux0, Flux0Error

from .budget import Budget

__all__ = ["Job", "Piece", "Finished", "FetchPool", "FetchCancelled", "DeadlineExceeded", "Message"]

T = TypeVar("T")
Emit = Callable[[Any], None]


class FetchCancelled(Flux0Error):
    """The daemon is stopping: the fetch was cut off; what was handed over stays valid."""


class DeadlineExceeded(APITimeoutError):
    """The fetch took longer than its deadline and was cut off."""


@dataclass(frozen=True)
class Job(Generic[T]):
    """One unit of server work. ``key`` names what it fetches: one job per key at a time."""

    key: str
    user: Optional[str]
    run: Callable[[Flux0, Emit], T]
    meta: Any = None


@dataclass(frozen=True)
class Piece:
    job: Job[Any]
    payload: Any
    held: int = 0  # of the pool's budget, given back once the writer is done with it (settle)
    # the highest integer offset of its events (flux0sync.jobs.highest_offset from -1), if the
    # writer found it already (a small answer's batches): not looked for twice
    top: Optional[int] = None


@dataclass(frozen=True)
class Finished:
    job: Job[Any]
    value: Any = None
    error: Optional[Flux0Error] = None
    seconds: float = 0.0
    held: int = 0


Message = Union[Piece, Finished]


def _text_of(exc: BaseException) -> str:
    """``str(exc)``, or a note if even that fails (a ``__str__`` that raises; a hostile value
    nested too deep to show): the job fails, its worker goes on."""
    try:
        return str(exc)[:1000]
    except Exception:
        return "(its text could not be shown)"


class _Results(queue.Queue):  # type: ignore[type-arg]
    """The result queue; counts the budget its messages hold as the writer takes them, and the
    failed jobs finished and not taken yet (see :meth:`FetchPool.failures_waiting`)."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.taken = 0  # only the writer's thread gets messages: no lock needed
        self.failures = 0  # changed under the queue's own mutex (workers count them in, see _finish)

    def _get(self) -> Message:
        message: Message = super()._get()
        self.taken += message.held
        if type(message) is Finished and message.error is not None:
            self.failures -= 1
        return message

    def failed_job_done(self) -> None:
        """Count a failed job's Finished before it is put (and before its slot is free)."""
        with self.mutex:
            self.failures += 1

    def failed_job_dropped(self) -> None:
        """Take it back: the Finished was never put (the pool stops)."""
        with self.mutex:
            self.failures -= 1


class _Emitter:
    """A job's ``emit``; its ``take`` takes from the pool's budget what the job reads."""

    def __init__(self, pool: "FetchPool", slot: "_Slot", job: Job[Any]) -> None:
        self.pool, self.slot, self.job = pool, slot, job
        self.take = None if pool.budget is None else self._take

    def _take(self, cost: int) -> None:
        assert self.pool.budget is not None
        self.pool.budget.take(cost, self._check)

    def _check(self) -> None:
        if self.slot.cancelled is not None:
            raise self.pool._cancel_error(self.slot)

    def __call__(self, payload: Any) -> None:
        pool, slot = self.pool, self.slot
        piece = Piece(self.job, payload, pool.budget.hand_over() if pool.budget is not None else 0)
        while True:
            if slot.cancelled == "stop":  # nobody reads any more (past a deadline the writer still does)
                raise pool._cancel_error(slot)
            try:
                pool.results.put(piece, timeout=0.1)
                return
            except queue.Full:
                continue


@dataclass
class _Slot:
    """What one worker is doing; changed only under the pool's lock."""

    job: Optional[Job[Any]] = None
    deadline: float = 0.0
    cancelled: Optional[str] = None  # "deadline" or "stop"
    clients: Dict[Optional[str], Flux0] = field(default_factory=dict)


class FetchPool:
    """``workers`` threads running :class:`Job` s; results come out of :attr:`results`."""

    def __init__(
        self,
        make_client: Callable[[Optional[str]], Flux0],
        *,
        workers: int = 4,
        deadline: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        queue_size: Optional[int] = None,
        close_clients: bool = True,
        budget: Optional[Budget] = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.make_client = make_client
        self.deadline = deadline
        self.clock = clock
        self.close_clients = close_clients  # False: make_client hands out clients someone else owns
        self.results = _Results(queue_size or workers)
        # None: unmetered; else every job's reads are taken from it (see flux0sync.budget) and
        # the writer calls settle() once done with the messages it took
        self.budget = budget
        self._jobs: "queue.Queue[Optional[Job[Any]]]" = queue.Queue()
        self._lock = threading.Lock()
        self._slots = [_Slot() for _ in range(workers)]
        self._keys: Dict[str, Job[Any]] = {}  # queued or running
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, args=(slot,), name=f"flux0sync-fetch-{n}", daemon=True)
            for n, slot in enumerate(self._slots)
        ]
        for thread in self._threads:
            thread.start()

    # -- the writer's side -------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self._slots)

    def pending(self) -> int:
        """Jobs submitted and not finished (queued or running)."""
        with self._lock:
            return len(self._keys)

    def idle(self) -> int:
        """How many more jobs would start at once."""
        return max(0, self.size - self.pending())

    def failures_waiting(self) -> bool:
        """Whether a failed job has finished and the writer has not taken its result yet. A
        worker counts it before its slot is free: a caller that starts no job meanwhile starts
        none before it has seen the failure (a 429 pauses every request, see flux0sync.engine)."""
        return self.results.failures > 0

    def busy(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def submit(self, job: Job[Any]) -> None:
        with self._lock:
            if self._stopping:
                raise FetchCancelled("the pool is stopping")
            if job.key in self._keys:
                raise ValueError(f"a job for {job.key!r} is already in flight")
            self._keys[job.key] = job
        self._jobs.put(job)

    def settle(self) -> None:
        """Give the budget back for every message the writer has taken (and is done with)."""
        if self.budget is not None:
            self.budget.settle(self.results.taken)
        self.results.taken = 0

    def supervise(self) -> List[Job[Any]]:
        """Cut off every job past its deadline; returns them. Call it from the loop, often.

        A job cut off earlier that is still running is cut again, so that a call it began after
        the cut (between two requests) ends too.
        """
        now = self.clock()
        late: List[Job[Any]] = []
        with self._lock:
            for slot in self._slots:
                if slot.job is not None and slot.cancelled is None and now > slot.deadline:
                    slot.cancelled = "deadline"
                    late.append(slot.job)
            self._abort_cut_jobs()
        return late

    def _abort_cut_jobs(self) -> None:
        """End the calls in flight of every job that was cut off; called under the lock, which
        keeps a worker from starting its next job meanwhile (``abort`` never blocks)."""
        for slot in self._slots:
            if slot.job is not None and slot.cancelled is not None:
                for client in slot.clients.values():
                    client.abort()

    def stop(self, grace: float = 1.0) -> None:
        """Cut every fetch off, end the workers and close their clients (waits ``grace`` at most)."""
        with self._lock:
            self._stopping = True
            for slot in self._slots:
                if slot.job is not None and slot.cancelled is None:
                    slot.cancelled = "stop"
            self._abort_cut_jobs()
        while True:  # queued jobs never start
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._jobs.put(None)
        until = time.monotonic() + grace
        while any(thread.is_alive() for thread in self._threads) and time.monotonic() < until:
            for thread in self._threads:
                thread.join(max(0.0, min(0.05, until - time.monotonic())))
            with self._lock:
                self._abort_cut_jobs()  # a call a job began after the first abort ends too
        # A worker still inside a call after ``grace`` (a job doing slow work between calls)
        # is a daemon thread: it ends with the process and its answer is never read.

    # -- a worker's side ---------------------------------------------------------------------

    def _emit(self, slot: _Slot, job: Job[Any]) -> Emit:
        return _Emitter(self, slot, job)

    def _cancel_error(self, slot: _Slot) -> Flux0Error:
        if slot.cancelled == "deadline":
            return DeadlineExceeded(f"gave up after the {self.deadline:g} s per-session deadline")
        return FetchCancelled("the daemon is stopping")

    def _client(self, slot: _Slot, user: Optional[str]) -> Flux0:
        client = slot.clients.get(user)
        if client is None:
            client = self.make_client(user)
            with self._lock:  # _abort_cut_jobs reads the clients from the loop's thread
                slot.clients[user] = client
        return client

    def _work(self, slot: _Slot) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                with self._lock:
                    if self._stopping:
                        return
                    slot.job, slot.deadline, slot.cancelled = job, self.clock() + self.deadline, None
                self._finish(slot, job, *self._run(slot, job))
        finally:
            if self.close_clients:
                for client in slot.clients.values():
                    client.close()

    def _run(self, slot: _Slot, job: Job[Any]) -> "tuple[Any, Optional[Flux0Error], float]":
        started = time.monotonic()
        value: Any = None
        error: Optional[Flux0Error] = None
        try:
            value = job.run(self._client(slot, job.user), self._emit(slot, job))
        except Flux0Error as exc:
            error = exc
        except Exception as exc:  # a bug or a hostile answer must cost this job, not the worker
            error = Flux0Error(f"{type(exc).__name__}: {_text_of(exc)}")
            error.__cause__ = exc
        if slot.cancelled and (error is not None or value is None):
            # whatever the cut-off socket raised, say why it was cut off
            cause = error
            error = self._cancel_error(slot)
            error.__cause__ = cause
        return value, error, time.monotonic() - started

    def _finish(self, slot: _Slot, job: Job[Any], value: Any, error: Optional[Flux0Error], seconds: float) -> None:
        held = self.budget.hand_over() if self.budget is not None else 0
        with self._lock:
            cancelled_by_stop = slot.cancelled == "stop"
            if error is not None and not cancelled_by_stop:
                self.results.failed_job_done()
            slot.job, slot.cancelled = None, None
            self._keys.pop(job.key, None)
        if cancelled_by_stop:
            self._drop(held)
            return  # the writer has stopped reading
        finished = Finished(job, value, error, seconds, held)
        while True:
            try:
                self.results.put(finished, timeout=0.1)
                return
            except queue.Full:
                with self._lock:
                    if self._stopping:
                        if error is not None:
                            self.results.failed_job_dropped()
                        self._drop(held)
                        return

    def _drop(self, held: int) -> None:
        if self.budget is not None:
            self.budget.settle(held)
