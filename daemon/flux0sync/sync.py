"""One sync pass: discover agents and sessions, then pull each session's new events.

A session's events are fetched from its checkpoint (``min_offset = last + 1``) and written in
batches, each batch with its checkpoint in one transaction (see :mod:`flux0sync.store`). A
failing session backs off on its own (exponentially, with jitter) without holding up others.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from flux0lite import APIConnectionError, Flux0, Flux0Error, NotFoundError, Session

from .rows import RawEvent
from .store import Store

__all__ = ["Syncer", "PassResult"]

log = logging.getLogger("flux0sync")


@dataclass
class PassResult:
    sessions_seen: int = 0
    sessions_synced: int = 0
    sessions_failed: int = 0
    sessions_skipped: int = 0
    events_inserted: int = 0
    errors: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class Syncer:
    def __init__(
        self,
        client: Flux0,
        store: Store,
        *,
        agent_ids: Sequence[str] = (),
        session_ids: Sequence[str] = (),
        batch_size: int = 500,
        max_backoff: float = 300.0,
        heartbeat: Callable[[], None] = lambda: None,
        should_stop: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.store = store
        self.agent_ids = tuple(agent_ids)
        self.session_ids = tuple(session_ids)
        self.batch_size = batch_size
        self.max_backoff = max_backoff
        self.heartbeat = heartbeat
        self.should_stop = should_stop
        self.clock = clock
        self._retry_at: Dict[str, float] = {}

    def _backoff(self, errors: int) -> float:
        ceiling = min(self.max_backoff, 2.0 ** min(errors, 20))
        return ceiling / 2 + random.random() * ceiling / 2

    def discover(self) -> List[Session]:
        """Agents and sessions from the server, stored; returns the sessions to sync."""
        agents = self.client.agents.list()
        if self.agent_ids:
            agents = [a for a in agents if a.id in self.agent_ids]
        self.store.upsert_agents(agents)
        sessions: List[Session] = []
        if self.session_ids:
            for session_id in self.session_ids:
                try:
                    sessions.append(self.client.sessions.retrieve(session_id))
                except NotFoundError:
                    log.warning("session %s does not exist on the server; skipping it", session_id)
        elif self.agent_ids:
            for agent_id in self.agent_ids:
                sessions.extend(self.client.sessions.list(agent_id=agent_id))
        else:
            sessions = self.client.sessions.list()
        self.store.upsert_sessions(sessions)
        return sessions

    def sync_session(self, session_id: str) -> int:
        """Pull and store a session's new events; returns how many were inserted."""
        checkpoint = self.store.checkpoint(session_id)
        events = self.client.sessions.list_events(session_id, min_offset=checkpoint + 1)
        self.heartbeat()
        inserted = 0
        expected = checkpoint + 1
        for start in range(0, len(events), self.batch_size):
            batch = events[start : start + self.batch_size]
            if batch[0].offset != expected:
                log.warning("session %s: offsets jump from %d to %d", session_id, expected - 1, batch[0].offset)
            inserted += self.store.write_batch(session_id, [RawEvent.from_event(e) for e in batch]).inserted
            expected = batch[-1].offset + 1
            self.heartbeat()
            if self.should_stop():
                break
        if not events:
            self.store.mark_synced(session_id)
        return inserted

    def run_pass(self) -> PassResult:
        result = PassResult()
        sessions = self.discover()
        self.heartbeat()
        result.sessions_seen = len(sessions)
        now = self.clock()
        for session in sessions:
            if self.should_stop():
                break
            if self._retry_at.get(session.id, 0.0) > now:
                result.sessions_skipped += 1
                continue
            try:
                result.events_inserted += self.sync_session(session.id)
                result.sessions_synced += 1
                self._retry_at.pop(session.id, None)
            except APIConnectionError:
                raise  # the server is down: the whole pass backs off, not this session
            except Flux0Error as exc:
                errors = self.store.mark_error(session.id, str(exc))
                delay = self._backoff(errors)
                self._retry_at[session.id] = self.clock() + delay
                result.sessions_failed += 1
                result.errors.append(f"{session.id}: {exc}")
                log.warning("session %s failed (%d in a row), retry in %.0f s: %s", session.id, errors, delay, exc)
        return result

    def pending_retry(self, session_id: str) -> Optional[float]:
        return self._retry_at.get(session_id)
