"""One sync pass over every session: the engine's ``--once`` mode, for scripts and tests.

:class:`Syncer` runs :class:`~flux0sync.engine.Engine` once (discovery, then every listed
session polled once on the fetch workers, everything written by the calling thread) and keeps,
from one pass to the next, when each failing session may be tried again. How a session is
fetched and written (streamed, batch by batch, offsets verified, gaps held then recorded) is in
:mod:`flux0sync.jobs`; why that never loses or duplicates an event is in :mod:`flux0sync.store`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from flux0lite import Flux0

from .backend import Archive
from .engine import Engine
from .gaps import SeenHere
from .jobs import Warnings
from .schedule import Policy
from .shard import Shard

__all__ = ["Syncer", "PassResult"]


@dataclass
class PassResult:
    sessions_seen: int = 0
    sessions_synced: int = 0
    sessions_failed: int = 0
    sessions_skipped: int = 0
    sessions_cut: int = 0  # stopped at the per-session deadline with progress; continued next pass
    events_inserted: int = 0
    errors: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every session seen was brought up to date (what ``--once`` reports with exit 0)."""
        return not self.errors and not self.sessions_cut


class Syncer:
    """Passes over every session.

    With ``client`` alone the pass runs on one fetch worker that uses that client (never closed
    here). For more workers give ``make_client`` (one new client per worker and user, closed
    after the pass): a fetch past its deadline is cut with its client's ``abort()``, which ends
    every call in flight on that client, so workers cannot share one. With ``client`` alone, a
    cut also ends any call made on that client from another thread at that moment.

    A pass that cannot reach the server raises its :class:`~flux0lite.APIConnectionError`
    (what was stored stays); any other failure costs only its session, which then backs off
    (exponentially, jittered) for the passes that follow.
    """

    def __init__(
        self,
        client: Flux0,
        store: Archive,
        *,
        agent_ids: Sequence[str] = (),
        session_ids: Sequence[str] = (),
        batch_size: int = 500,
        max_backoff: float = 300.0,
        gap_patience: float = 300.0,
        session_deadline: float = 120.0,
        workers: int = 1,
        make_client: Optional[Callable[[Optional[str]], Flux0]] = None,
        heartbeat: Callable[[], None] = lambda: None,
        should_stop: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        shard: Optional[Shard] = None,
    ) -> None:
        self.client = client
        self.store = store
        self.shard = shard
        self.agent_ids = tuple(agent_ids)
        self.session_ids = tuple(session_ids)
        self.batch_size = batch_size
        self.max_backoff = max_backoff
        self.gap_patience = gap_patience
        self.seen_here = SeenHere()  # the gaps its passes saw open, on this process's clock
        self.session_deadline = session_deadline
        if workers > 1 and make_client is None:
            raise ValueError("more than one worker needs make_client (one client per worker)")
        self.workers = workers
        self.make_client = make_client
        self.heartbeat = heartbeat
        self.should_stop = should_stop
        self.clock = clock
        self._retry_at: Dict[str, float] = {}
        self._warnings = Warnings()  # a malformed listing item is warned about once, not every pass

    def _backoff(self, errors: int) -> float:
        ceiling = min(self.max_backoff, 2.0 ** min(errors, 20))
        return ceiling / 2 + random.random() * ceiling / 2

    def run_pass(self) -> PassResult:
        now = self.clock()
        engine = Engine(
            self.store,
            self.make_client or (lambda user: self.client),
            policy=Policy(max_backoff=self.max_backoff),
            agent_ids=self.agent_ids,
            session_ids=self.session_ids,
            shard=self.shard,
            max_rps=None,
            workers=self.workers,
            fetch_deadline=self.session_deadline,
            batch_size=self.batch_size,
            gap_patience=self.gap_patience,
            seen_here=self.seen_here,
            once=True,
            warnings=self._warnings,
            skip=lambda session_id: self._retry_at.get(session_id, 0.0) > now,
            close_clients=self.make_client is not None,
            heartbeat=self.heartbeat,
            should_stop=self.should_stop,
        )
        totals = engine.run()
        for session_id in totals.synced:
            self._retry_at.pop(session_id, None)
        for session_id, errors in totals.failed.items():
            self._retry_at[session_id] = self.clock() + self._backoff(errors)
        if totals.outage is not None:
            raise totals.outage
        return PassResult(
            sessions_seen=totals.listed,
            sessions_synced=len(totals.synced),
            sessions_failed=len(totals.failed),
            sessions_skipped=totals.skipped,
            sessions_cut=totals.cut,
            events_inserted=totals.inserted,
            errors=list(totals.errors),
        )

    def pending_retry(self, session_id: str) -> Optional[float]:
        return self._retry_at.get(session_id)
