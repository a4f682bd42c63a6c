"""The sync loop: discover sessions, poll each when it is due, write what comes back.

One thread (the caller's) owns the archive and the schedule; :class:`~flux0sync.workers.FetchPool`
threads do the HTTP. The loop never blocks on the server: it waits on the pool's result queue
for at most a quarter of a second, so it notices a stop request, feeds the watchdog and cuts
off fetches past their deadline on time whatever the server does.

* **Discovery** (every ``discover_interval``, longer beyond 6,000 sessions: see
  :func:`~flux0sync.schedule.listing_interval`): the agents listing, then each user's sessions
  listing (with that user's ``flux0_user_sub`` cookie; per agent with ``agent_ids``), or the
  configured ``session_ids``. With a ``shard`` (``--shard i/N``) only the sessions it owns are
  kept: the others are neither stored nor polled. New sessions start active and due at once,
  unless the archive holds a schedule for them from an earlier run; a session whose listing
  entry changed is moved up (one created anew, by its ``created_at``, is read again from offset
  0: see :func:`flux0sync.store.recreated_at`); a session no listing shows any more is no longer polled. A
  listing that fails is tried again alone, backing off from 5 s, until the next round.
* **Polls** follow :class:`~flux0sync.schedule.Schedule`, at most ``workers`` at once and at
  most ``max_rps`` requests per second (listings included).
* **Writes**: each batch is stored with the checkpoint it earns in one transaction
  (exactly-once, see :mod:`flux0sync.store`); what is ready at once is written together, so
  many small sessions share a transaction of up to ``batch_size`` events (one commit and one
  full-text statement for all of them). The writer also parses the small answers (see
  :class:`~flux0sync.jobs.Fetched`): the workers then hardly hold the interpreter lock, which
  the writer would otherwise wait for after every SQLite call. The next poll times of finished
  polls are saved in one transaction every second.
* **Outages**: a request that got no answer status (refused, reset or closed before the status
  line, a connect timeout) or an answer saying the server cannot serve now (429, 502, 503, 504)
  pauses all requests without counting against any session: for the answer's ``Retry-After``
  (at least 1 s, at most ``max_backoff``), else doubling from 2 s up to ``max_backoff``; then
  one request probes the server, the others follow once it is answered. With
  ``once`` a connection failure ends the pass, while such answers are waited out (``_ONCE_PAUSES``
  pauses in a row at most). Any other failure backs that session off alone: a connection lost
  after the answer's status (:func:`flux0sync.jobs._answer_bytes`), a read timeout, any other
  status.
"""

from __future__ import annotations

import gc
import logging
import math
import operator
import queue
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from flux0lite import APIConnectionError, APIError, APITimeoutError, ConnectError, Flux0, Flux0Error
from flux0lite.httputil import parse_retry_after
from flux0lite.models import Agent, Session

from .backend import Archive
from .budget import Budget
from .gaps import SeenHere
from .jobs import (
    BATCH_FAILURES,
    MAX_BATCH_CHARS,
    Fetched,
    SessionWriter,
    Warnings,
    fetch_events,
    highest_offset,
    list_agents,
    list_sessions,
    read_batches,
    retrieve_sessions,
)
from .rows import RawEvent
from .schedule import Policy, Schedule, TokenBucket, listing_interval
from .shard import Shard
from .store import PollRecord, StoreBusyError, StoreFullError, WriteResult
from .workers import DeadlineExceeded, FetchCancelled, FetchPool, Finished, Job, Message, Piece

__all__ = ["Engine", "Totals"]

log = logging.getLogger("flux0sync")

_TICK = 0.25  # the longest the loop waits before looking at the stop flag, deadlines and the watchdog
_FLUSH_EVERY = 1.0
_READ_AHEAD = 200  # with once=True: sessions whose checkpoints are read in one query at dispatch
_GC_YOUNG = 20_000  # allocations between young-generation collections while the loop runs (see run)
Emit = Callable[[Any], None]
_TEXT_OF = operator.itemgetter(1)  # RawEvent.text


_BUSY_STATUSES = frozenset((429, 502, 503, 504))  # the server (or its proxy) cannot serve anyone now
_ONCE_PAUSES = 6  # with once=True: pauses in a row for busy answers before the pass gives up (2 s + ... + 64 s)


def _busy(error: Optional[Flux0Error]) -> bool:
    """An answer saying the server cannot serve now: waited out, not a session's failure."""
    return isinstance(error, APIError) and error.status_code in _BUSY_STATUSES


def _outage(error: Optional[Flux0Error]) -> bool:
    """Every request would fail alike: pause them all (the rule is in the module docstring).

    A request that got no status (a connect timeout included: nothing was sent) or a busy answer.
    A connection lost after the status arrives is the answer's StreamError (see
    jobs._answer_bytes) and a read timeout is a slow answer: one session's doing, maybe.
    """
    if isinstance(error, ConnectError) or _busy(error):
        return True
    return isinstance(error, APIConnectionError) and not isinstance(error, APITimeoutError)


def _retry_after(error: Flux0Error) -> Optional[float]:
    """The busy answer's ``Retry-After`` in seconds, or None."""
    return parse_retry_after(error.headers.get("retry-after")) if isinstance(error, APIError) else None


def _from_wall(stored: Optional[float], now: float, wall: float) -> float:
    """A poll time the archive kept (wall time, ``wall`` now) on the loop's clock (``now``).

    The one check of a restored time: none, or a value that is not a finite number (SQLite
    keeps any type written; nobody should have written it), is now. The schedule caps the
    rest by its level (:meth:`Schedule.add`)."""
    if not isinstance(stored, (int, float)) or not math.isfinite(stored):
        return now
    return now + (stored - wall)


def _to_wall(due: float, now: float, wall: float) -> float:
    """A poll time on the loop's clock (``now``) as the archive keeps it: wall time (``wall`` now)."""
    return due - now + wall


def _session_of(job: Job[Any]) -> Optional[str]:
    """The session a poll job fetches (its key is kept apart from the listings' keys), or None."""
    return job.meta[1] if job.meta and job.meta[0] == "events" else None


def _events_of(message: Message) -> Sequence[RawEvent]:
    """The events a poll's message hands over: a batch, or the last batch with the result."""
    if _session_of(message.job) is None:  # a listing
        return ()
    if isinstance(message, Piece):
        payload: Sequence[RawEvent] = message.payload
        return payload
    return message.value.tail if isinstance(message.value, Fetched) else ()


def _size_of(events: Sequence[RawEvent]) -> int:
    """Characters of JSON text: with the count, what bounds a transaction (and the memory it holds)."""
    return sum(map(len, map(_TEXT_OF, events)))  # in C: this runs twice for every event read


def _unpacked(message: Message, size: int) -> Iterator[Message]:
    """A poll's result with a small answer (see jobs.Fetched) as the writer reads it: its events
    in batches of ``size``, parsed one batch at a time, then the result; a malformed answer
    fails the poll after the events before the fault. Any other message as it is."""
    if not (isinstance(message, Finished) and isinstance(message.value, Fetched) and message.value.body is not None):
        yield message
        return
    highest = message.value.highest
    error: Optional[Flux0Error] = None
    try:
        for batch in read_batches(message.job.meta[1], message.value.body, size):
            top = highest_offset(batch, -1)
            if top > highest:
                highest = top
            yield Piece(message.job, batch, top=top)
    except Flux0Error as exc:
        error = exc
    yield replace(message, value=Fetched(highest, []), error=message.error or error)


@dataclass
class Totals:
    """What the loop has done so far (since start)."""

    polls: int = 0
    inserted: int = 0
    failed_polls: int = 0
    rounds: int = 0
    listed: int = 0  # sessions the last complete discovery showed
    failing: Set[str] = field(default_factory=set)
    errors: List[str] = field(default_factory=list)
    outage: Optional[Flux0Error] = None  # with once=True: the connection error that ended the pass
    # with once=True only (at 100k sessions these would be large): the pass, session by session
    synced: List[str] = field(default_factory=list)
    failed: Dict[str, int] = field(default_factory=dict)  # session -> errors in a row
    skipped: int = 0
    cut: int = 0  # cut at the deadline after storing something: it catches up at its next poll

    @property
    def ok(self) -> bool:
        """Nothing failed and nothing was left half done (what ``--once`` reports with exit 0)."""
        return not self.errors and not self.cut


@dataclass
class _Round:
    """One discovery round in progress."""

    pending: Set[str]
    seen: Set[str] = field(default_factory=set)
    listed: int = 0  # sessions the listings carried (a shard's daemon is sent all of them)
    complete: bool = True
    failed: Set[str] = field(default_factory=set)  # listings whose pages could not be stored
    unsent: List[Job[Any]] = field(default_factory=list)  # listings waiting for the rate cap
    errored: Set[str] = field(default_factory=set)  # listings that failed
    retry: bool = False  # only the listings that failed in the rounds before


class Engine:
    def __init__(
        self,
        store: Archive,
        make_client: Callable[[Optional[str]], Flux0],
        *,
        policy: Policy,
        users: Sequence[Optional[str]] = (None,),
        agent_ids: Sequence[str] = (),
        session_ids: Sequence[str] = (),
        shard: Optional[Shard] = None,
        discover_interval: float = 60.0,
        max_rps: Optional[float] = None,
        workers: int = 4,
        fetch_deadline: float = 120.0,
        batch_size: int = 500,
        gap_patience: float = 300.0,
        seen_here: Optional[SeenHere] = None,
        once: bool = False,
        warnings: Optional[Warnings] = None,
        skip: Callable[[str], bool] = lambda session_id: False,
        close_clients: bool = True,
        heartbeat: Callable[[], None] = lambda: None,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[["Totals"], None] = lambda totals: None,
        on_outage: Callable[[Flux0Error, float], None] = lambda error, wait: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.store = store
        self.make_client = make_client
        self.policy = policy
        # once each: a listing job per user and agent, and one job per key at a time
        self.users: Tuple[Optional[str], ...] = tuple(dict.fromkeys(users)) or (None,)
        self.agent_ids = tuple(dict.fromkeys(agent_ids))
        self.session_ids = tuple(dict.fromkeys(session_ids))
        self.shard = shard
        self.discover_interval = discover_interval
        self.workers = workers
        self.fetch_deadline = fetch_deadline
        self.batch_size = batch_size
        self.once = once
        self.heartbeat = heartbeat
        self.should_stop = should_stop
        self.on_progress = on_progress
        self.on_outage = on_outage
        self.skip = skip
        self.close_clients = close_clients
        # the gaps this process saw open, kept by the caller across its engines (see SeenHere)
        self.writer = SessionWriter(store, gap_patience, seen_here)
        self.warnings = warnings or Warnings()
        # Due times, rounds and pauses follow ``clock``, which a step of the system clock (NTP,
        # a VM snapshot, date -s) leaves alone; the archive keeps poll times in wall time.
        self.clock = clock
        self.wall_clock = wall_clock
        self.schedule = Schedule(policy, rng=rng)
        self.bucket = TokenBucket(max_rps)
        self.totals = Totals()
        self._user_of: Dict[str, Optional[str]] = {}
        self._inserted: Dict[str, int] = {}  # per poll in flight
        self._read: Dict[str, int] = {}  # per poll in flight: the highest offset it stored
        # per poll in flight: the session's checkpoint, read at dispatch, then as its writes left it
        # (each committed with them): nothing is read again after the poll
        self._checkpoint: Dict[str, int] = {}
        # per poll in flight: the session's generation at dispatch, which each write and the gap
        # decision check in their transaction (a re-creation recorded since moves it on)
        self._generation: Dict[str, int] = {}
        self._stale: Set[str] = set()  # polls whose session was re-created in flight: dropped, polled again
        # with once=True: (checkpoint, generation) of the next sessions, read together
        self._ahead: Dict[str, Tuple[int, int]] = {}
        # Sessions that may have a hole: the highest offset a poll read. Only a hint that the
        # archive is worth asking where a poll may resume (see _resume_point): a hostile offset
        # (2**63, a clash re-sent far ahead) or a restored archive makes it wrong.
        self._reached: Dict[str, int] = {}
        self._resumed: Set[str] = set()  # polls in flight given a resume point: they pass no gap
        # sessions whose last whole read (no resume point) was cut at the deadline: their next
        # poll resumes even with a gap due, so a backlog longer than the deadline still moves
        self._cut_whole: Set[str] = set()
        self._broken: Dict[str, str] = {}  # polls whose batch could not be written: why; the rest is ignored
        self._dirty: Dict[str, PollRecord] = {}
        self._flushed_at = 0.0
        self._round: Optional[_Round] = None
        self._next_round = 0.0
        # listings that failed, tried again alone (backing off) until the next full round
        self._retry_keys: Set[str] = set()
        self._retry_at = 0.0
        self._listing_failures = 0
        self._paused_until = 0.0
        self._outages = 0
        # Busy answers of one session while others are served (a per-path rate limit, a proxy
        # timing out on its slow answer): answers the server gave, and their count at each
        # session's last busy answer (see _busy_alone).
        self._answered = 0
        self._busy_at: Dict[str, int] = {}
        # sessions several users list: a digest of each user's last entry (see _view_changed)
        self._views: Dict[str, Dict[Optional[str], int]] = {}
        self._once_left: Optional[List[str]] = None
        self._pool: Optional[FetchPool] = None

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> Totals:
        self._pool = FetchPool(
            self.make_client,
            workers=self.workers,
            deadline=self.fetch_deadline,
            close_clients=self.close_clients,
            budget=Budget(),  # what answers in flight may cost, all workers together (flux0sync.budget)
        )
        # Every event read makes about six dicts and lists, alive until their batch is written:
        # a young-generation collection every 2,000 of them (the default) frees nothing, and
        # parsing and building rows took 7-8 % more CPU with it (side by side, 30,000 events).
        # Fewer collections while the loop runs; the threshold is given back at the end.
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], _GC_YOUNG), *thresholds[1:])
        try:
            while not self.should_stop():
                now = self.clock()
                self._pool.supervise()
                self._start_round(now)
                wait = self._dispatch(now)
                self._receive(wait)
                self._flush(force=False)
                self.heartbeat()
                if self.once and self._once_done():
                    break
        finally:
            gc.set_threshold(*thresholds)
            self._pool.stop()
            self._forget_cut_work()
            self._flush(force=True)
        if self.once and (self.totals.inserted or self.totals.failing):
            log.info(
                "pass: %d sessions, +%d events, %d failing",
                self.totals.listed,
                self.totals.inserted,
                len(self.totals.failing),
            )
        return self.totals

    def _forget_cut_work(self) -> None:
        """The stop dropped the jobs in flight: a later run() starts a new discovery round (one
        cut short would wait for its dropped listings forever) and polls those sessions again.
        What their batches committed already is counted in the totals (their polls never end)."""
        now = self.clock()
        for sid, inserted in self._inserted.items():
            self.schedule.release(sid, now)
            self.totals.inserted += inserted  # committed already: counted, though the poll never ends
        self._inserted.clear()
        self._read.clear()
        self._checkpoint.clear()
        self._generation.clear()
        self._stale.clear()
        self._ahead.clear()
        self._broken.clear()
        self._resumed.clear()
        if self._round is not None:
            self._round = None
            self._next_round = now

    def _once_done(self) -> bool:
        assert self._pool is not None
        return self._once_left == [] and self._pool.pending() == 0 and self.schedule.in_flight == 0

    # -- discovery ---------------------------------------------------------------------------

    def _round_jobs(self) -> List[Job[Any]]:
        warnings = self.warnings
        jobs: List[Job[Any]] = [Job("agents", self.users[0], list_agents(warnings), meta=("agents", None))]
        if self.session_ids:  # one job (and one request) each, so that each waits for the rate cap
            for sid in self.session_ids:
                retrieve = retrieve_sessions((sid,), warnings)
                jobs.append(Job(f"listing {sid}", self.users[0], retrieve, meta=("sessions", self.users[0], sid)))
            return jobs
        for user in self.users:
            for agent_id in self.agent_ids or (None,):
                key = f"listing {user or ''} {agent_id or ''}"
                jobs.append(Job(key, user, list_sessions(agent_id, warnings), meta=("sessions", user)))
        return jobs

    def _start_round(self, now: float) -> None:
        if self._round is not None:
            self._send_listings(now)
            return
        if now < self._paused_until or (self.once and self._once_left is not None):
            return
        retry = now < self._next_round
        if retry and not (self._retry_keys and now >= self._retry_at):
            return
        jobs = [job for job in self._round_jobs() if not retry or job.key in self._retry_keys]
        self._retry_keys = set()
        self._round = _Round(pending={job.key for job in jobs}, unsent=jobs, retry=retry)
        self._send_listings(now)

    def _send_listings(self, now: float) -> None:
        """Send the round's listings the rate cap allows now; they go before any poll (a round
        is 1 + users x agents requests: with many users, more than a second's worth)."""
        assert self._round is not None and self._pool is not None
        # Each to an idle worker only: a listing queued behind a busy one would start after a 429 the
        # loop has not read yet, whatever _may_send said when it was queued.
        while (
            self._round.unsent
            and now >= self._paused_until
            and self._pool.idle() > 0
            and self._may_send()
            and self.bucket.take(now) == 0
        ):
            self._pool.submit(self._round.unsent.pop(0))

    def _may_send(self) -> bool:
        """After an outage's pause one request probes the server; the rest wait for its answer.
        And none starts while a failed job's result waits to be read: it may be an outage (a
        429 pauses every request), which the loop sees once it has read it."""
        assert self._pool is not None
        return (self._outages == 0 or self._pool.pending() == 0) and not self._pool.failures_waiting()

    def _on_listing(self, user: Optional[str], sessions: Sequence[Session]) -> None:
        now, wall = self.clock(), self.wall_clock()
        assert self._round is not None
        self._round.listed += len(sessions)
        if self.shard is not None:  # another daemon stores and polls the rest (see flux0sync.shard)
            sessions = [s for s in sessions if self.shard.owns(s.id)]
        for item in self.store.record_listing(user, sessions):
            sid = item.session_id
            self._round.seen.add(sid)
            if user != self.users[0]:
                self._user_of[sid] = user  # only the exceptions: at 100k sessions every byte counts
            else:
                self._user_of.pop(sid, None)
            if item.recreated is not None:
                self._reached.pop(sid, None)
                self._cut_whole.discard(sid)
                if sid in self._inserted:  # its answer is the earlier conversation's (the writes check too)
                    self._stale.add(sid)
                log.warning(
                    "session %s was created anew on the server (created_at %.40r, then %.40r): the %d events"
                    " archived of its earlier conversation are kept in the conflicts table; it is read again"
                    " from offset 0",
                    sid,
                    *item.recreated,
                )
            changed = item.changed or self._view_changed(sid, user, item.view)
            if sid not in self.schedule:
                due = _from_wall(item.next_poll_at, now, wall) if not changed else now
                level = 0 if changed else item.idle_level
                self.schedule.add(sid, due_at=due, level=level, now=now, active=not item.new)
            elif changed:
                self.schedule.move_up(sid, now)
            if changed and not item.new:
                # the archive now holds the new entry (and, for a change it saw, the poll with
                # it), so no later listing shows the change again: a change only this user's
                # view shows (_view_changed) is saved here, or a stop before its poll would lose it
                self._dirty[sid] = PollRecord(sid, wall, 0, None)

    def _view_changed(self, sid: str, user: Optional[str], view: Optional[int]) -> bool:
        """Did the entry of a session that another user's entry stands for in the archive (a
        session several users list) change since this user last listed it?"""
        if view is None:
            return False
        views = self._views.setdefault(sid, {})
        before = views.get(user)
        views[user] = view
        return before is not None and before != view

    def _round_finished(self, job: Job[Any], error: Optional[Flux0Error]) -> None:
        current = self._round
        if current is None:
            return
        current.pending.discard(job.key)
        if error is not None:
            current.complete = False
            current.errored.add(job.key)
        if current.pending:
            return
        now = self.clock()
        self._round = None
        if not current.complete and self.once:  # a pass that cannot see every session has failed,
            if self.session_ids and "agents" not in current.errored and self.totals.outage is None:
                self.totals.listed = len(current.seen)  # but a configured session's failed lookup is its own
                self._set_once_left(current.seen)
            else:
                self._once_left = []
            return
        if not current.complete:
            # what failed (one user's listing, say) is tried again alone, backing off, so that a
            # listing that keeps failing does not bring every other one back early
            self._listing_failures += 1
            self._retry_keys = current.errored
            delay = min(self.discover_interval, 5.0) * 2.0 ** min(self._listing_failures - 1, 30)
            self._retry_at = max(now + delay, self._paused_until)
            if not current.retry:
                self._next_round = now + listing_interval(self.discover_interval, current.listed)
            return
        self._listing_failures = 0
        if current.retry:
            return  # sessions are forgotten only after a full round: this one did not list them all
        self.totals.rounds += 1
        self.totals.listed = len(current.seen)
        self._next_round = now + listing_interval(self.discover_interval, current.listed)
        for sid in [sid for sid in self.schedule.known() if sid not in current.seen]:
            self.schedule.remove(sid)
            self._user_of.pop(sid, None)
            self._cut_whole.discard(sid)
            self._busy_at.pop(sid, None)
            self._views.pop(sid, None)
        if self.once:
            self._set_once_left(current.seen)
        self.on_progress(self.totals)

    def _set_once_left(self, seen: Set[str]) -> None:
        self._once_left = sorted(seen, reverse=True)  # popped from the end: in order
        skipped = [sid for sid in self._once_left if self.skip(sid)]
        self.totals.skipped = len(skipped)
        if skipped:
            self._once_left = [sid for sid in self._once_left if not self.skip(sid)]

    # -- polls -------------------------------------------------------------------------------

    def _dispatch(self, now: float) -> float:
        """Start due polls on idle workers; returns how long the loop may wait for results."""
        assert self._pool is not None
        if now < self._paused_until:
            return min(_TICK, self._paused_until - now)
        if self.once and self._once_left is None:
            return _TICK  # --once polls what the finished discovery found, each session once
        while self._pool.idle() > 0 and self._may_send():
            if self._once_left is not None:
                if not self._once_left:
                    break
            else:
                due = self.schedule.next_due()
                if due is None:
                    break
                if due > now:
                    return max(0.005, min(_TICK, due - now))
            wait = self.bucket.take(now)
            if wait > 0:
                return max(0.005, min(_TICK, wait))
            if self._once_left is not None:
                sid = self._once_left.pop()
                if not self.schedule.take(sid):
                    continue
            else:
                (sid,) = self.schedule.pop_due(now, 1)
            checkpoint, generation = self._poll_start(sid)
            if self._pool.failures_waiting():  # one came back while the archive was read: read it first
                self._put_back(sid, now)
                break
            self._checkpoint[sid], self._generation[sid] = checkpoint, generation
            resume = self._resume_point(sid, checkpoint)
            if resume is not None:
                self._resumed.add(sid)
            fetch = fetch_events(sid, checkpoint + 1, self.batch_size, resume)
            # keyed apart from the listings: a session may well be called "agents"
            job = Job(f"events {sid}", self._user_of.get(sid, self.users[0]), fetch, meta=("events", sid))
            self._inserted[sid] = 0
            self._pool.submit(job)
        return _TICK

    def _poll_start(self, sid: str) -> Tuple[int, int]:
        """The session's (checkpoint, generation); with once=True read with the next sessions'
        (one query, not one each: a read outside a write transaction costs as much as a small
        write's statements). Read ahead is safe: a pass polls each session once, so nothing else
        of ours writes it meanwhile. Another process may move the checkpoint on (an older value
        re-fetches stored events, which are stored once) or record a re-creation: the generation
        then moved on, and the poll's writes are refused as stale (see flux0sync.store.Store.write_rows)."""
        known = self._ahead.pop(sid, None)
        if known is not None:
            return known
        if not self._once_left:
            return self.store.poll_starts([sid])[sid]
        self._ahead = self.store.poll_starts([sid, *self._once_left[-_READ_AHEAD:]])
        return self._ahead.pop(sid)

    def _resume_point(self, sid: str, checkpoint: int) -> Optional[Tuple[int, int]]:
        """(the last open hole's end, the end of the stored run after it), or None to read whole.

        A poll of a session with a hole reads the hole, then goes on after the offsets stored
        behind it (a backlog behind a hole is not re-read in full at every poll). Both ends
        come from the archive, never from what earlier polls read: the jump passes only offsets
        stored, so neither a hostile offset nor a restored archive can make it pass one that is
        not. It trusts the server's offset order (flux0 lists events in offset order) only to
        save reading: a hole due to be passed (open ``gap_patience`` seconds) is read whole
        first, and only a poll without a resume point that read its answer to the end passes
        one (see _on_polled), so an event listed after the offsets it precedes is still found.
        A whole read cut at the deadline passes nothing; the poll after it resumes (the archive
        moves on behind the hole), the next reads whole again, and so on.
        """
        reached = self._reached.get(sid)
        alternate = sid in self._cut_whole  # its last whole read was cut: this one goes on after the holes
        self._cut_whole.discard(sid)
        if reached is None or reached <= checkpoint:
            self._reached.pop(sid, None)
            return None
        holes = self.store.gaps(sid, open_only=True)
        due = self.wall_clock() - self.writer.gap_patience
        if any(gap.first_seen_at <= due for gap in holes) and not alternate:
            return None
        hole_end = max([checkpoint, *(gap.last_offset for gap in holes)])
        stored = self.store.stored_through(sid, hole_end)
        if stored <= hole_end:  # nothing stored behind the holes: the hint was wrong
            self._reached.pop(sid, None)
            return None
        return hole_end, stored

    def _receive(self, wait: float) -> None:
        assert self._pool is not None
        try:
            self._receive_some(wait)
        finally:
            self._pool.settle()  # what it took is written or dropped: its budget is free again

    def _receive_some(self, wait: float) -> None:
        assert self._pool is not None
        try:
            first: Message = self._pool.results.get(timeout=wait)
        except queue.Empty:
            return
        # Whatever else is ready, up to a transaction's worth of events (by count and by size),
        # is written together, then handled in order (a job's batches arrive before its result,
        # so they are stored first). A small answer is parsed a transaction's worth at a time.
        group: List[Message] = []
        events = chars = 0
        for message, count, size in self._ready(first):
            group.append(message)
            events += count
            chars += size
            if events >= self.batch_size or chars >= MAX_BATCH_CHARS:
                if not self._store(group):
                    return
                group, events, chars = [], 0, 0
        if group:
            self._store(group)

    def _ready(self, first: Message) -> Iterator[Tuple[Message, int, int]]:
        """``first`` and what else is ready, up to a transaction's worth of events, unpacked (see
        _unpacked; an answer begun is unpacked to its end), each with its events and characters."""
        assert self._pool is not None
        message, taken, events, chars = first, 1, 0, 0
        while True:
            for unpacked in _unpacked(message, self.batch_size):
                carried = _events_of(unpacked)
                count, size = len(carried), _size_of(carried)
                events += count
                chars += size
                yield unpacked, count, size
            if taken >= 256 or events >= self.batch_size or chars >= MAX_BATCH_CHARS:
                return
            try:
                message = self._pool.results.get_nowait()
            except queue.Empty:
                return
            taken += 1

    def _store(self, messages: Sequence[Message]) -> bool:
        """Write what ``messages`` carry, then handle them; False if a stop request came in."""
        if not self._write_batches(messages):
            return False
        for message in messages:
            self._handle(message)
            self.heartbeat()
            if self.should_stop():
                return False
        return True

    def _handle(self, message: Message) -> None:
        kind = message.job.meta[0] if message.job.meta else "events"
        if kind == "events":
            if isinstance(message, Finished):  # its batches are stored already (_write_batches)
                self._on_polled(message)
            return
        try:
            if isinstance(message, Piece):
                if self._round is not None and message.job.key not in self._round.failed:
                    if kind == "agents":  # streamed in pages: a huge listing never sits in memory whole
                        agents: List[Agent] = message.payload
                        self.store.upsert_agents([a for a in agents if not self.agent_ids or a.id in self.agent_ids])
                    else:
                        self._on_listing(message.job.meta[1], message.payload)
                return
            error = message.error
        except BATCH_FAILURES as exc:  # the listing is tried again at the next round
            log.error("%s listing: %s", kind, exc)
            if self._round is not None:
                self._round.failed.add(message.job.key)
            if isinstance(message, Piece):
                return
            error = Flux0Error(str(exc))
        if self._round is not None and message.job.key in self._round.failed and error is None:
            error = Flux0Error("the archive could not store the listing")
        if not isinstance(error, FetchCancelled) and not _outage(error):
            self._server_answered()
        if error is not None and not isinstance(error, FetchCancelled):
            what = f"lookup of session {message.job.meta[2]}" if len(message.job.meta) > 2 else f"{kind} listing"
            self._on_error(what, error)
            if self.once and _busy(error) and self.totals.outage is None and self._round is not None:
                self._round.unsent.append(message.job)  # sent again once the pause is over
                return
        self._round_finished(message.job, error)

    def _write_batches(self, messages: Sequence[Message]) -> bool:
        """Store the events these messages carry, in transactions of up to ``batch_size`` events
        (and about MAX_BATCH_CHARS characters) that may hold several sessions (see
        SessionWriter.write_many); False if a stop request came in between (the rest is left
        unwritten, as if it never arrived)."""
        transaction: List[Tuple[str, Sequence[RawEvent], Optional[int]]] = []
        size = chars = 0
        for message in messages:
            sid = _session_of(message.job)
            events = _events_of(message)
            if sid is None or sid not in self._inserted:
                continue
            whole_top = message.top if isinstance(message, Piece) and len(events) <= self.batch_size else None
            for start in range(0, len(events), self.batch_size):
                batch = events[start : start + self.batch_size]
                batch_chars = _size_of(batch)
                if transaction and (size + len(batch) > self.batch_size or chars + batch_chars > MAX_BATCH_CHARS):
                    if not self._write_transaction(transaction):
                        return False
                    transaction, size, chars = [], 0, 0
                transaction.append((sid, batch, whole_top))
                size += len(batch)
                chars += batch_chars
        return not transaction or self._write_transaction(transaction)

    def _write_transaction(self, batches: Sequence[Tuple[str, Sequence[RawEvent], Optional[int]]]) -> bool:
        """Write one transaction's batches, each with its highest offset if known (Piece.top)."""
        kept = [batch for batch in batches if batch[0] not in self._broken and batch[0] not in self._stale]
        outcomes = self.writer.write_many([(sid, events) for sid, events, _ in kept], self._generation)
        for (sid, events, known_top), outcome in zip(kept, outcomes):
            if isinstance(outcome, WriteResult) and outcome.stale:
                self._stale.add(sid)  # the rest of this poll is ignored; it is polled again
            elif isinstance(outcome, WriteResult):
                if sid not in self._broken and sid not in self._stale:
                    self._inserted[sid] += outcome.inserted
                    if outcome.checkpoint > self._checkpoint.get(sid, -1):
                        self._checkpoint[sid] = outcome.checkpoint
                    top = highest_offset(events, -1) if known_top is None else known_top
                    if top > self._read.get(sid, -1):
                        self._read[sid] = top
            elif sid not in self._broken:  # the rest of this poll is ignored; it fails
                log.error("session %s: %s", sid, outcome)
                self._broken[sid] = str(outcome)
        self.heartbeat()
        return not self.should_stop()

    def _on_polled(self, finished: Finished) -> None:
        sid = finished.job.meta[1]
        now = self.clock()
        inserted = self._inserted.pop(sid, 0)
        read = self._read.pop(sid, None)
        broken = self._broken.pop(sid, None)
        checkpoint = self._checkpoint.pop(sid, None)
        generation = self._generation.pop(sid, None)
        resumed = sid in self._resumed  # a resumed poll may have skipped a late event: see _resume_point
        self._resumed.discard(sid)
        error = finished.error
        self.totals.polls += 1
        self.totals.inserted += inserted
        if sid in self._stale:
            self._stale.discard(sid)
            self._repoll_stale(sid, now)
            return
        cut = isinstance(error, DeadlineExceeded) and broken is None
        moved = inserted > 0
        if cut and read is not None:  # an answer is in offset order: what it skipped below ``read`` is a hole
            # ... but one it did not read to the end passes none: the late event may come after the cut
            checkpoint = self.writer.finish(sid, read, checkpoint, may_pass=False, generation=generation)
            if not resumed:
                self._cut_whole.add(sid)
        if checkpoint is None:
            checkpoint = self.store.checkpoint(sid)
        if (cut or (error is None and broken is None)) and read is not None and read > checkpoint:
            moved = moved or read > self._reached.get(sid, -1)
            self._reached[sid] = max(read, self._reached.get(sid, -1))
        if cut and moved:
            # slow but moving: what arrived is stored, the rest comes at the next poll, no backoff
            log.info("session %s: +%d events, then cut at the per-session deadline", sid, inserted)
            if self.once:
                self.totals.cut += 1
            error = None
        elif error is None and broken is None:
            self.writer.finish(sid, finished.value.highest, checkpoint, may_pass=not resumed, generation=generation)
            if self.once:
                self.totals.synced.append(sid)
        if error is None and broken is None:
            self._server_answered()
            self._busy_at.pop(sid, None)
            self.totals.failing.discard(sid)
            state = self.schedule.done(sid, now, new_events=inserted > 0)
            if state is not None:
                wall = self.wall_clock()
                self._dirty[sid] = PollRecord(sid, _to_wall(state[0], now, wall), state[1], wall)
            if inserted:
                self.on_progress(self.totals)
            return
        if isinstance(error, FetchCancelled):
            self.schedule.release(sid, now)
            return
        busy_alone = self._busy_alone(sid, error)
        if _outage(error) and not busy_alone:
            assert error is not None
            resume_at = self._on_error("poll", error)
            if _busy(error):  # after the pause the others go first: whether it is busy alone shows then
                resume_at += self.policy.error_delay(1, self.schedule.rng)
            self.schedule.release(sid, resume_at)
            if self.once and _busy(error) and self.totals.outage is None and self._once_left is not None:
                self._once_left.insert(0, sid)  # polled again after the pause, once the others are
            return
        if not busy_alone:
            self._server_answered()
        message = broken or str(error) or type(error).__name__
        errors = self.store.mark_error(sid, message)
        self.totals.failed_polls += 1
        self.totals.failing.add(sid)
        self.totals.errors.append(f"{sid}: {message}")
        del self.totals.errors[:-100]
        if self.once:
            self.totals.failed[sid] = errors
        state = self.schedule.failed(sid, now, errors)
        asked = _retry_after(error) if busy_alone and error is not None else None
        if state is not None and asked is not None:
            # not before the time its own answer asked for, up to max_backoff as a pause is
            floor = now + min(asked, self.policy.max_backoff)
            if floor > state[0]:
                state = (floor, state[1])
                self.schedule.release(sid, floor)
        if state is not None:
            self._dirty[sid] = PollRecord(sid, _to_wall(state[0], now, self.wall_clock()), state[1], None)
            log.warning("session %s failed (%d in a row), retry in %.0f s: %s", sid, errors, state[0] - now, message)

    def _repoll_stale(self, sid: str, now: float) -> None:
        """A poll whose session was created anew while it was in flight: what it read is the
        earlier conversation's, so nothing of it was written after the re-creation (the store
        refused it) and it decides nothing; the session is polled again at once, from the
        checkpoint the re-creation reset."""
        log.info("session %s was created anew while a poll of it was in flight; polling it again", sid)
        self._cut_whole.discard(sid)
        self._put_back(sid, now)

    def _put_back(self, sid: str, now: float) -> None:
        """A session taken for a poll that is not sent (or whose answer decides nothing): due
        again at once, and in --once's list again."""
        self.schedule.release(sid, now)
        if self._once_left is not None:
            self._once_left.append(sid)

    def _server_answered(self) -> None:
        """The server gave an answer (not a busy one): it is up."""
        self._outages = 0
        if self.clock() >= self._paused_until:  # not one to a request sent before the pause began
            self._answered += 1

    def _busy_alone(self, sid: str, error: Optional[Flux0Error]) -> bool:
        """Is this busy answer the session's own? It is when the server answered other requests
        since the session's last busy answer, and not only requests sent before the pause that
        answer began: then it fails and backs off alone (no earlier than its Retry-After) instead
        of pausing every request again, for ever, each time it is due. ``--once`` waits busy
        answers out (at most _ONCE_PAUSES pauses in a row), as documented."""
        if not _busy(error) or self.once:
            return False
        last = self._busy_at.get(sid)
        self._busy_at[sid] = self._answered
        return last is not None and self._answered > last

    def _on_error(self, what: str, error: Flux0Error) -> float:
        """A listing failed, or a poll met an outage (see _outage); returns when to try again."""
        now = self.clock()
        outage = _outage(error)
        # a pass cannot go on without the server: it ends, failed, unless the server said it is
        # busy, which a pass waits out (_ONCE_PAUSES in a row at most) without failing
        ends_pass = self.once and outage and (not _busy(error) or self._outages >= _ONCE_PAUSES)
        if ends_pass or not (self.once and _busy(error)):
            self.totals.errors.append(f"{what}: {error}")
            del self.totals.errors[:-100]
        if not outage:
            log.warning("%s failed: %s", what, error)
            return now
        if ends_pass:
            self.totals.outage = self.totals.outage or error
            self._once_left = []
            return now
        if now >= self._paused_until:  # one message per outage step, not one per request
            self._outages += 1
            asked = _retry_after(error)
            wait = min(self.policy.max_backoff, 2.0**self._outages if asked is None else max(1.0, asked))
            self._paused_until = now + wait
            log.warning("server unavailable (%s); retrying in %.0f s", error, wait)
            self.on_outage(error, wait)
        return self._paused_until

    # -- the schedule in the archive ---------------------------------------------------------

    def _flush(self, *, force: bool) -> None:
        now = time.monotonic()
        if not self._dirty or (not force and now - self._flushed_at < _FLUSH_EVERY and len(self._dirty) < 2000):
            return
        records, self._dirty = list(self._dirty.values()), {}
        self._flushed_at = now
        try:
            self.store.save_polls(records)
        except (StoreFullError, StoreBusyError) as exc:  # only timing is lost: the polls are repeated
            log.error("%s", exc)
