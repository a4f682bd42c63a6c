"""Gap reconciliation, one algorithm for every archive backend.

A gap is a run of offsets, below the highest one stored, that the server has not returned. It is
recorded and held open while it may still fill (the server may commit out of order), forgotten
once it fills, and given up on (``skipped_at``) once it is the next offset after the checkpoint,
has been open longer than ``patience`` and is outnumbered by the offsets stored after it: only
then does the checkpoint move past offsets that are not stored, and the record says so. (flux0
gives offsets one by one: a hole wider than what follows it is likelier an offset out of place,
a glitch or a hostile one, than lost events, and the hole the session's future: passing it
would skip every event the conversation adds.) Each store supplies a :class:`GapLedger`, its own SQL for
one session inside its write transaction; :func:`reconcile` decides.

A gap's age is read on the wall clock (the archive records when it was first seen, for the next
daemon too) and, for a gap this process recorded, on its monotonic clock as well
(:class:`SeenHere`): a step of the wall clock (NTP, a VM resumed from a snapshot, ``date -s``)
must not pass a hole seen seconds ago, and the event that fills it a moment later with it. A
session's first :data:`MAX_GAPS` gaps are recorded one by one, the rest as one span.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple

__all__ = ["Gap", "GapLedger", "MAX_GAPS", "SeenHere", "capped", "reconcile"]


@dataclass(frozen=True)
class Gap:
    """Offsets ``first..last`` of a session the server skipped; ``skipped_at`` once given up on."""

    session_id: str
    first_offset: int
    last_offset: int
    first_seen_at: float
    skipped_at: Optional[float]


class GapLedger(Protocol):
    """One session's offsets and gap records, read and written inside a store's write transaction."""

    def checkpoint(self) -> int:
        """The stored checkpoint (a store with concurrent writers locks the session here)."""
        ...

    def missing_ranges(self, checkpoint: int) -> Iterable[Tuple[int, int]]:
        """``(first, last)`` of each run of offsets missing between ``checkpoint`` and the highest
        stored, in order, read as it is iterated (there may be one per stored event)."""
        ...

    def record(self, found: Sequence[Tuple[int, int]], now: float) -> None:
        """Make the open gaps exactly ``found``: forget the others (filled, or narrowed), add the
        new ones as first seen ``now``, and keep a known one's ``first_seen_at``, unless it grew
        (a span that took in newer holes: it is first seen ``now`` again)."""
        ...

    def open_gaps(self) -> List[Gap]:
        """The gaps not given up on, by first offset."""
        ...

    def stored_after(self, offset: int, count: int) -> bool:
        """Whether at least ``count`` offsets above ``offset`` are stored (reading no more than
        ``count`` of them)."""
        ...

    def mark_skipped(self, first_offset: int, now: float) -> None: ...

    def advance(self, checkpoint: int) -> int:
        """The highest offset reached from ``checkpoint`` through stored offsets without a hole."""
        ...

    def save_checkpoint(self, checkpoint: int, now: float) -> None:
        """Move the checkpoint forward (never back) without counting a successful sync."""
        ...


MAX_GAPS = 1000
"""Gaps recorded per session, at most: the missing ranges past the first MAX_GAPS are recorded as
one span (holding stored offsets too), so a server that skips every other offset costs the
daemon a bounded number of records, not one per event (the checkpoint passes them in order,
so only the first ones matter until they fill or pass)."""


def capped(ranges: Iterable[Tuple[int, int]], most: int = MAX_GAPS) -> List[Tuple[int, int]]:
    """The first ``most`` ranges, then the rest as one span from the first of them to the last
    (every range read, none kept)."""
    kept: List[Tuple[int, int]] = []
    span: Optional[Tuple[int, int]] = None
    for first, last in ranges:
        if len(kept) < most:
            kept.append((first, last))
        else:
            span = (first if span is None else span[0], last)
    return kept if span is None else [*kept, span]


def reconcile(
    ledger: GapLedger, patience: float, now: float, seen: Optional[SeenHere] = None
) -> Tuple[List[Gap], List[Gap]]:
    """Record the offsets missing below the highest stored one; skip those older than ``patience``
    (on ``seen``'s clock too, for the gaps it saw recorded: see :class:`SeenHere`).

    Returns (open gaps, gaps skipped just now). A skipped gap moves the checkpoint past it.
    """
    checkpoint = ledger.checkpoint()
    ledger.record(capped(ledger.missing_ranges(checkpoint)), now)
    skipped: List[Gap] = []
    open_gaps = ledger.open_gaps()
    if seen is not None:
        seen.note(open_gaps, now)
    for gap in open_gaps:
        if gap.first_offset != checkpoint + 1 or gap.first_seen_at + patience > now:
            break  # the checkpoint passes gaps in offset order: one still young holds it there
        if seen is not None and seen.young(gap, patience):
            break  # young on this process's own clock (the wall clock was stepped)
        if not ledger.stored_after(gap.last_offset, gap.last_offset - gap.first_offset + 1):
            break  # outnumbered by no run after it: held open (see the module's docstring)
        ledger.mark_skipped(gap.first_offset, now)
        skipped.append(dataclasses.replace(gap, skipped_at=now))
        checkpoint = ledger.advance(gap.last_offset)
    if skipped:
        ledger.save_checkpoint(checkpoint, now)
        open_gaps = ledger.open_gaps()
    return open_gaps, skipped


class SeenHere:
    """The gaps this process recorded, with when it recorded them on its monotonic clock.

    A gap recorded by this process (its ``first_seen_at`` is the wall-clock time of one of this
    process's reconciles of its session) is young until open ``patience`` on the monotonic clock
    too, however the wall clock was stepped, back or forward, since. A gap another process
    recorded (an earlier daemon, a ``--once`` before this one) has only the archive's record to
    go by. Kept per session by recording time (gaps recorded together share one entry).
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._recorded: Dict[str, Dict[float, float]] = {}  # session -> first_seen_at -> monotonic

    def note(self, open_gaps: Sequence[Gap], now: float) -> None:
        """After a reconcile of one session recorded its gaps at wall-clock ``now``: note those
        recorded now, keep the entries of the others still open, forget the rest."""
        if not open_gaps:
            return
        session_id = open_gaps[0].session_id
        known = self._recorded.pop(session_id, {})
        kept: Dict[float, float] = {}
        for gap in open_gaps:
            at = gap.first_seen_at
            if at in known:
                kept[at] = known[at]
            elif at == now:
                kept[at] = self._monotonic()
        if kept:
            self._recorded[session_id] = kept

    def forget(self, session_id: str) -> None:
        """The session has no open gap any more."""
        self._recorded.pop(session_id, None)

    def young(self, gap: Gap, patience: float) -> bool:
        """Whether this process recorded ``gap`` less than ``patience`` ago by its own clock."""
        at = self._recorded.get(gap.session_id, {}).get(gap.first_seen_at)
        return at is not None and self._monotonic() - at < patience
