"""When each session is polled next, and how many requests per second the daemon may send.

flux0 cannot tell a client which sessions changed (no change feed, no ``updated_at``, and the
one counter a session listing carries, ``consumption_offsets``, is never advanced by the
server), so the only way to learn of new events is to ask each session. The daemon makes that
cost follow activity instead of history:

* a session that had new events within the last ``active_for`` seconds (six intervals, one
  minute by default) is **active** and is polled every ``interval``: a conversation at a
  human pace gets each reply archived within ``interval``;
* after that, each poll that finds nothing doubles the session's delay (``level`` counts the
  doublings), up to ``idle_max``; every delay is jittered by ``±jitter`` so sessions spread out;
* new sessions start active; a session whose listing entry changed is moved up to now;
* a failing session waits ``min(max_backoff, 2**errors)`` seconds (half of it jittered) and
  keeps its idle level.

Steady request rate (all requests, before the cap), with ``S`` sessions of which ``A`` are
active (new events within ``active_for``), and ``D`` listing requests per discovery round::

    R = A / interval + (S - A) / idle_max + D / L,    sent = min(R, max_rps)
    L = max(discover_interval, S / LISTED_PER_SECOND)

``D`` is one agents listing plus one sessions listing per user (per user and agent with
``--agent``). ``L`` is the time between discovery rounds (:func:`listing_interval`): a listing
answers with every session at once, so its cost grows with ``S`` however rarely anything is
new; beyond 6,000 sessions the rounds are spaced so that listings carry at most
``LISTED_PER_SECOND`` sessions a second on average (at 100,000 sessions one round every
1,000 s). The price is the time a brand-new session waits to be found: at most ``L``.

Idle sessions reach ``idle_max`` after ``log2(idle_max / interval)`` empty polls (about 85
minutes with the defaults); until then they cost more. The price of the savings is latency
for a session that wakes up after idling: its first new event waits for the session's next
poll, at most its current delay (``idle_max`` at worst, half of it on average); later events of
a conversation that keeps going are archived within ``interval``. The default ``idle_max`` of
one hour is what keeps the idle sessions' share small at a few thousand sessions (see the
README's scale section for the measured figures). A session's activity clock is kept in memory
only: a session restored at level 0 (a restart, or a reload's new engine) is taken as active
for one window from then (``Schedule.add(active=True)``).
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Set, Tuple

__all__ = [
    "Policy",
    "Schedule",
    "TokenBucket",
    "steady_rate",
    "discovery_requests",
    "listing_interval",
    "LISTED_PER_SECOND",
    "IDLE_MAX",
]

IDLE_MAX = 3600.0  # the default longest delay between polls of an idle session
# Sessions a discovery listing may carry per second on average. The real server spends about
# 15 us of CPU per session it lists (75 ms for 5,000), so 100 a second is 1.5 ms of CPU a
# second, less than the idle polls cost at any size; at 6,000 sessions or fewer the configured
# discover_interval (60 s) is the longer of the two.
LISTED_PER_SECOND = 100.0
_MAX_LEVEL = 62  # 2**62 * interval overflows every sane idle_max; bounds a hostile stored value
_LONGEST = 1e9  # seconds (31 years): a longer delay, jittered, could overflow to infinity


@dataclass(frozen=True)
class Policy:
    """The delay rules; all times in seconds."""

    interval: float = 10.0
    idle_max: float = IDLE_MAX
    jitter: float = 0.1
    max_backoff: float = 300.0
    active_for: Optional[float] = None  # None: six intervals

    def __post_init__(self) -> None:
        for name in ("interval", "idle_max", "max_backoff"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value <= _LONGEST):
                raise ValueError(f"{name} must be a positive number of seconds up to {_LONGEST:g}, got {value!r}")
        if not (math.isfinite(self.jitter) and 0 <= self.jitter < 1):
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        if self.idle_max < self.interval:
            raise ValueError(f"idle_max ({self.idle_max}) must not be shorter than interval ({self.interval})")
        if self.active_for is not None and not (math.isfinite(self.active_for) and self.active_for >= 0):
            raise ValueError(f"active_for must be a number >= 0, got {self.active_for!r}")

    @property
    def active_window(self) -> float:
        return 6 * self.interval if self.active_for is None else self.active_for

    def delay(self, level: int) -> float:
        """The un-jittered delay after ``level`` empty polls in a row."""
        level = max(0, min(int(level), _MAX_LEVEL))
        return min(self.idle_max, self.interval * 2.0**level)

    def next_level(self, level: int, new_events: bool) -> int:
        if new_events:
            return 0
        if self.delay(level) >= self.idle_max:
            return level  # already idling at the cap: no need to count further
        return min(level + 1, _MAX_LEVEL)

    def jittered(self, seconds: float, rng: random.Random) -> float:
        return seconds * (1 + rng.uniform(-self.jitter, self.jitter))

    def error_delay(self, errors: int, rng: random.Random) -> float:
        ceiling = min(self.max_backoff, 2.0 ** min(max(errors, 0), 30))
        return ceiling / 2 + rng.random() * ceiling / 2


def discovery_requests(users: int, agent_filters: int = 0) -> int:
    """Requests of one discovery round: the agents listing, then sessions per user (and agent)."""
    return 1 + max(1, users) * max(1, agent_filters)


def listing_interval(discover_interval: float, listed: int) -> float:
    """Seconds from one discovery round to the next, after a round that listed ``listed`` sessions."""
    return max(discover_interval, max(0, listed) / LISTED_PER_SECOND)


def steady_rate(
    sessions: int,
    active: int,
    *,
    interval: float,
    idle_max: float,
    discover_interval: float,
    discovery: int = 2,
    max_rps: Optional[float] = None,
) -> float:
    """Requests per second once idle sessions have reached ``idle_max`` (see the module doc)."""
    active = max(0, min(active, sessions))
    rounds = discovery / listing_interval(discover_interval, sessions)
    rate = active / interval + (sessions - active) / idle_max + rounds
    return min(rate, max_rps) if max_rps else rate


class TokenBucket:
    """At most ``rate`` requests per second on average, in bursts of at most ``burst``."""

    def __init__(self, rate: Optional[float], burst: Optional[float] = None) -> None:
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number or None, got {rate!r}")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else (rate or 1.0))
        self._tokens = self.burst
        self._at: Optional[float] = None

    def _refill(self, now: float) -> None:
        if self._at is not None and self.rate is not None:
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now

    def take(self, now: float) -> float:
        """Take a token and return 0, or return the seconds until one is available."""
        if self.rate is None:
            return 0.0
        self._refill(now)
        if self._tokens >= 1 - 1e-9:  # float refills land a hair short of a whole token
            self._tokens = max(0.0, self._tokens - 1)
            return 0.0
        return (1 - self._tokens) / self.rate


class Schedule:
    """Every known session's next poll: due times in one-second buckets, and each idle level.

    A session taken by :meth:`pop_due` is *in flight*: it is not due again until its poll is
    reported with :meth:`done` or :meth:`failed`, so one session never has two fetches at once.
    Memory is about 200 bytes per session with its id (a dict entry for its due time, one for
    its level, a slot in a bucket): at 100k sessions the whole schedule is about 20 MB.
    """

    def __init__(self, policy: Policy, *, rng: Optional[random.Random] = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self._level: Dict[str, int] = {}
        self._due: Dict[str, float] = {}  # absent while in flight
        self._buckets: Dict[int, List[str]] = {}  # second -> sessions due in it (stale entries allowed)
        self._seconds: List[int] = []  # heap of the bucket keys
        self._entries = 0  # bucket entries, stale ones included
        self._in_flight: Set[str] = set()
        self._active_until: Dict[str, float] = {}  # only sessions with recent events

    def __len__(self) -> int:
        return len(self._level)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._level

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def _set_due(self, session_id: str, due_at: float) -> None:
        self._due[session_id] = due_at
        second = math.floor(due_at)
        bucket = self._buckets.get(second)
        if bucket is None:
            self._buckets[second] = [session_id]
            heapq.heappush(self._seconds, second)
        else:
            bucket.append(session_id)
        self._entries += 1
        if self._entries > 2 * len(self._due) + 64:  # stale entries (moved up, removed): rebuild
            self._buckets, self._seconds, self._entries = {}, [], 0
            for sid, due in list(self._due.items()):
                self._set_due(sid, due)

    def _front(self) -> Optional[List[str]]:
        """The earliest bucket's live sessions, most overdue first (stale entries dropped)."""
        while self._seconds:
            second = self._seconds[0]
            bucket = self._buckets.get(second, [])
            # live: due in this second; once each (a session moved within the second is listed twice)
            live = list(
                dict.fromkeys(sid for sid in bucket if sid in self._due and math.floor(self._due[sid]) == second)
            )
            self._entries -= len(bucket) - len(live)
            if live:
                live.sort(key=self._due.__getitem__)
                self._buckets[second] = live
                return live
            heapq.heappop(self._seconds)
            self._buckets.pop(second, None)
        return None

    def add(
        self, session_id: str, due_at: float, level: int = 0, now: Optional[float] = None, *, active: bool = False
    ) -> None:
        """Know a session: new ones are due now at level 0; restored ones keep their state.

        ``active``: a restored session, not a new one. At level 0 (it was in a conversation when
        its state was saved, or its listing changed) it keeps a conversation's pace for an active
        window from ``now``, as if it had just had events (its time of activity is not saved), so
        that a reload or a restart does not slow a conversation down.

        A restored time (a finite number: the engine reads it back from the archive and checks
        it, see ``engine._from_wall``) beyond the longest delay its stored level gives, with
        ``now`` (saved while the clock was set ahead or before it was stepped back, by a run
        with a longer ``idle_max``, or by hand), is brought forward to it, so an active session
        is polled within ``interval`` of a start, an idle one within ``idle_max`` (a failing one
        backing off for longer too: one request more).
        """
        if session_id in self._level:
            return
        level = max(0, min(int(level), _MAX_LEVEL))
        if now is not None:
            due_at = min(due_at, now + self.policy.delay(level) * (1 + self.policy.jitter))
        self._level[session_id] = level
        if active and level == 0:
            self._active_until[session_id] = (due_at if now is None else now) + self.policy.active_window
        if session_id not in self._in_flight:  # back while its poll runs: that poll's end schedules it
            self._set_due(session_id, due_at)

    def remove(self, session_id: str) -> None:
        """Forget a session (gone from the server); an answer still in flight is ignored.

        It stays in flight until that answer is reported, so that a session a later listing
        shows again is not fetched twice at once.
        """
        self._level.pop(session_id, None)
        self._due.pop(session_id, None)
        self._active_until.pop(session_id, None)

    def move_up(self, session_id: str, now: float) -> None:
        """The listing shows a change: poll soon, as an active session."""
        if session_id not in self._level:
            return
        self._level[session_id] = 0
        self._active_until[session_id] = now + self.policy.active_window
        if session_id not in self._in_flight and self._due.get(session_id, now) > now:
            self._set_due(session_id, now)

    def next_due(self) -> Optional[float]:
        front = self._front()
        return self._due[front[0]] if front else None

    def pop_due(self, now: float, limit: int) -> List[str]:
        """Up to ``limit`` sessions whose time has come, most overdue first; now in flight."""
        taken: List[str] = []
        while len(taken) < limit:
            front = self._front()
            if not front or self._due[front[0]] > now:
                break
            count = 0
            for sid in front:
                if len(taken) >= limit or self._due[sid] > now:
                    break
                taken.append(sid)
                count += 1
            for sid in front[:count]:
                del self._due[sid]
                self._in_flight.add(sid)
            del front[:count]
            self._entries -= count
        return taken

    def take(self, session_id: str) -> bool:
        """Put a session in flight whether due or not (``--once`` polls every session)."""
        if session_id not in self._level or session_id in self._in_flight:
            return False
        self._due.pop(session_id, None)
        self._in_flight.add(session_id)
        return True

    def done(self, session_id: str, now: float, new_events: bool) -> Optional[Tuple[float, int]]:
        """A poll succeeded; returns the session's next ``(due_at, level)`` (None if forgotten).

        Memory: one heap entry and one small int per session, plus a float for active ones.
        """
        self._in_flight.discard(session_id)
        level = self._level.get(session_id)
        if level is None:
            return None
        if new_events:
            self._active_until[session_id] = now + self.policy.active_window
        elif self._active_until.get(session_id, now) > now:
            new_events = True  # still within its active window: keep the pace of a conversation
        else:
            self._active_until.pop(session_id, None)
        level = self.policy.next_level(level, new_events)
        self._level[session_id] = level
        due_at = now + self.policy.jittered(self.policy.delay(level), self.rng)
        self._set_due(session_id, due_at)
        return due_at, level

    def failed(self, session_id: str, now: float, errors: int) -> Optional[Tuple[float, int]]:
        """A poll failed ``errors`` times in a row: back off; the idle level is kept."""
        self._in_flight.discard(session_id)
        level = self._level.get(session_id)
        if level is None:
            return None
        due_at = now + self.policy.error_delay(errors, self.rng)
        self._set_due(session_id, due_at)
        return due_at, level

    def release(self, session_id: str, due_at: float) -> None:
        """A poll was dropped unanswered (the daemon is stopping, or it never started)."""
        self._in_flight.discard(session_id)
        if session_id in self._level:
            self._set_due(session_id, due_at)

    def state(self, session_id: str) -> Optional[Tuple[Optional[float], int]]:
        """``(due_at or None while in flight, level)``."""
        if session_id not in self._level:
            return None
        return self._due.get(session_id), self._level[session_id]

    def known(self) -> Iterator[str]:
        """Every session, in no particular order (do not add or remove while iterating)."""
        return iter(self._level)
