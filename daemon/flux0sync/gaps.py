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
daemon too) and, for a gap this process saw open, on its monotonic clock as well
(:class:`SeenHere`): a step of the wall clock (NTP, a VM resumed from a snapshot, ``date -s``)
must not pass a hole seen seconds ago, and the event that fills it a moment later with it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

__all__ = ["Gap", "GapLedger", "SeenHere", "reconcile"]


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

    def missing_ranges(self, checkpoint: int) -> List[Tuple[int, int]]:
        """``(first, last)`` of each run of offsets missing between ``checkpoint`` and the highest stored."""
        ...

    def record(self, found: Sequence[Tuple[int, int]], now: float) -> None:
        """Make the open gaps exactly ``found``: forget the others (filled, or narrowed), add the
        new ones as first seen ``now``, and keep a known one's ``first_seen_at``."""
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


def reconcile(
    ledger: GapLedger, patience: float, now: float, young: Optional[Callable[[Gap], bool]] = None
) -> Tuple[List[Gap], List[Gap]]:
    """Record the offsets missing below the highest stored one; skip those older than ``patience``
    (and not ``young``, when given: see :class:`SeenHere`).

    Returns (open gaps, gaps skipped just now). A skipped gap moves the checkpoint past it.
    """
    checkpoint = ledger.checkpoint()
    ledger.record(ledger.missing_ranges(checkpoint), now)
    skipped: List[Gap] = []
    for gap in ledger.open_gaps():
        if gap.first_offset != checkpoint + 1 or gap.first_seen_at + patience > now or (young and young(gap)):
            break  # the checkpoint passes gaps in offset order: one still young holds it there
        if not ledger.stored_after(gap.last_offset, gap.last_offset - gap.first_offset + 1):
            break  # outnumbered by no run after it: held open (see the module's docstring)
        ledger.mark_skipped(gap.first_offset, now)
        skipped.append(dataclasses.replace(gap, skipped_at=now))
        checkpoint = ledger.advance(gap.last_offset)
    if skipped:
        ledger.save_checkpoint(checkpoint, now)
    return ledger.open_gaps(), skipped


class SeenHere:
    """When this process first saw each session's open gaps, on its monotonic clock.

    Kept per session by the wall-clock time the archive recorded (gaps recorded together share
    one), so a server that opens many holes at once costs one entry. A gap recorded before this
    process started has only the archive's record to go by.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._started = time.time()
        self._seen: Dict[str, Dict[float, float]] = {}  # session -> first_seen_at -> monotonic

    def young(self, gap: Gap, patience: float) -> bool:
        """Whether this process has seen ``gap`` open for less than ``patience`` (one it has not
        noted yet it sees now: young unless patience is 0)."""
        if gap.first_seen_at < self._started:
            return False
        seen = self._seen.get(gap.session_id, {}).get(gap.first_seen_at)
        return self._monotonic() - seen < patience if seen is not None else patience > 0

    def note(self, session_id: str, open_gaps: Sequence[Gap]) -> None:
        """Note the session's open gaps after a reconcile: those new to it as seen now; the
        entries of gaps no longer open go."""
        known = self._seen.pop(session_id, {})
        now = self._monotonic()
        current = {
            g.first_seen_at: known.get(g.first_seen_at, now) for g in open_gaps if g.first_seen_at >= self._started
        }
        if current:
            self._seen[session_id] = current
