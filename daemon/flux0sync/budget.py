"""The daemon's memory budget: what answers in flight may cost, shared by every fetch worker.

The per-event caps (16 MiB of text; a value too deep for the C scanner only up to
:data:`~flux0sync.jsonread.MAX_DEEP_CHARS`) hold per event, but each worker reads its own
answer, the result queue holds a message per worker and the writer a transaction: several
large events at once would pass the unit's ``MemoryMax``. So every character of an answer a
worker reads is first taken from one :class:`Budget`, at an estimated cost (:func:`text_cost`:
:data:`CHAR_COST` a character plus :data:`ITEM_COST` a value the text may start;
:data:`DEEP_CHAR_COST` a character for a value built without recursion), and given back once
the writer is done with the message that carried it (:meth:`Budget.settle`).

A worker that finds the budget spent waits for the writer. One that holds part of an event
cannot hand it over, so several could wait on each other with nothing left for the writer to
give back: then one of them (the first to ask) may go past the budget alone, until it hands
what it holds over. The budget is thus passed by one worker's batch and event at most, and
nothing waits forever.

Memory freed must also go back: :func:`give_back_freed_memory` asks glibc's allocator for
that, or the peak of each worker's own pool of memory would add up (see there).
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, Iterable, Iterator, Optional

__all__ = [
    "Budget",
    "CHAR_COST",
    "DEEP_CHAR_COST",
    "DEFAULT_BUDGET",
    "ITEM_COST",
    "element_cost",
    "give_back_freed_memory",
    "metered",
    "text_cost",
    "values_in",
]

# Estimated bytes of memory per character of answer text in flight: the reader's buffer, the
# element's text and parsed document (~5 bytes a character at their peak), then the rows the
# writer builds and SQLite binds (~10 at the write's peak; measured with 15 MiB events).
CHAR_COST = 10
# What each value costs on top, counted by the bytes that may start or key one (, { [ :): JSON
# of many small items decodes to far more than its text (an empty dict is 64 bytes for 3
# characters, a one-key dict 184-232 for 5). With this, every shape measured is charged at
# least its decoded size plus CHAR_COST a character on 3.9-3.13 (worst: one-key dicts nested,
# ~115 bytes a count on 3.9; [{"":{}},...] decodes to 38 bytes a character there, 32 on 3.13).
# Counted per chunk in one pass in C (bytes.translate deleting them: ~25 us for 64 KiB).
ITEM_COST = 120
_ITEM_BYTES = b",{[:"
# What a character of a value built without recursion costs (jsonread: ~75 bytes at worst).
DEEP_CHAR_COST = 75
# The default budget (estimated bytes). The daemon's own ~30 MB, this, and the one worker that
# may pass it (an event of up to 16 MiB, ~170 MB while it is written; or one deep value, ~75
# MB) stay within the unit's MemoryMax=256M (15 MiB events, 4 workers: 190-225 MB measured;
# with 48 MB, up to 320). A backlog of small events is limited by the writer, not by this.
DEFAULT_BUDGET = 24 * 1024 * 1024


class Budget:
    """Bytes (estimated) of answers in flight: taken by workers, given back by the writer."""

    def __init__(self, limit: int = DEFAULT_BUDGET) -> None:
        self.limit = limit
        self.used = 0
        self._held: Dict[int, int] = {}  # by worker thread: taken and not handed over yet
        self._over: Optional[int] = None  # the worker that may go past the limit, if one is
        self._cond = threading.Condition()

    def take(self, cost: int, check: Callable[[], None] = lambda: None) -> None:
        """Take ``cost`` for the calling worker, waiting while the budget is spent; ``check``
        is called while waiting and may raise (the job was cut off or the daemon stops)."""
        me = threading.get_ident()
        with self._cond:
            while self.used + cost > self.limit and self._over != me:
                if self._over is None and self.used == sum(self._held.values()):
                    # Nothing is with the writer, so nothing will come back: every holder waits
                    # on the others. The first to ask goes on alone.
                    self._over = me
                    break
                self._cond.wait(0.1)
                check()
            self.used += cost
            self._held[me] = self._held.get(me, 0) + cost

    def hand_over(self) -> int:
        """What the calling worker holds, now the writer's (returned: its message carries it)."""
        me = threading.get_ident()
        with self._cond:
            held = self._held.pop(me, 0)
            if self._over == me:
                self._over = None
            self._cond.notify_all()
            return held

    def settle(self, cost: int) -> None:
        """Give back what the writer is done with (or what was dropped)."""
        if cost:
            with self._cond:
                self.used -= cost
                self._cond.notify_all()


def metered(chunks: Iterable[bytes], take: Optional[Callable[[int], None]]) -> Iterator[bytes]:
    """``chunks``, each taken from the budget (``take`` of its :func:`text_cost`) before it is passed on."""
    if take is None:
        yield from chunks
        return
    for chunk in chunks:
        take(text_cost(chunk))
        yield chunk


def text_cost(text: bytes) -> int:
    """The estimated cost of JSON ``text`` in memory, once read and decoded (see ITEM_COST)."""
    items = len(text) - len(text.translate(None, _ITEM_BYTES))
    return len(text) * CHAR_COST + items * ITEM_COST


def element_cost(text: str) -> int:
    """:func:`text_cost` of one element's text, as decoded (what a batch of them holds)."""
    return len(text) * CHAR_COST + values_in(text, 0, len(text)) * ITEM_COST


def values_in(text: str, start: int, end: int) -> int:
    """How many values ``text[start:end]`` may start or key (each ``,`` ``{`` ``[`` ``:``), counted in C."""
    return (
        text.count(",", start, end)
        + text.count("{", start, end)
        + text.count("[", start, end)
        + text.count(":", start, end)
    )


def give_back_freed_memory() -> None:
    """Have glibc's malloc hand large freed blocks back to the system and keep one pool.

    By default it gives each thread a pool (arena) of its own and, once a large block has been
    freed, serves blocks of that size from the heap, where freed memory stays with the process:
    after a few large events every worker's pool keeps the peak it reached, and the sum passes
    the unit's MemoryMax (measured: 8 MiB events, 4 workers, 290 MB; with this, 150 MB). A
    fixed threshold (256 KiB) for blocks of their own and two pools undo both; call before the
    workers start. Nothing is done where the C library has no ``mallopt`` (musl's is a no-op).
    """
    try:
        import ctypes  # a Python built without it still runs the daemon, with glibc's defaults

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, 2)
    mallopt(_M_MMAP_THRESHOLD, 256 * 1024)


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_M_ARENA_MAX = -8
