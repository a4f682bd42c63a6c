from __future__ import annotations

import random
from typing import Dict, List, Tuple

import pytest
from flux0sync.engine import _from_wall
from flux0sync.schedule import Policy, Schedule, TokenBucket, discovery_requests, steady_rate


def exact(**kwargs: float) -> Policy:
    return Policy(**{"jitter": 0.0, **kwargs})


def test_policy_doubles_each_empty_poll_up_to_idle_max_and_resets_on_new_events() -> None:
    policy = exact(interval=10, idle_max=100)
    level, delays = 0, []
    for _ in range(6):
        level = policy.next_level(level, new_events=False)
        delays.append(policy.delay(level))
    assert delays == [20, 40, 80, 100, 100, 100]
    assert policy.next_level(level, new_events=True) == 0 and policy.delay(0) == 10
    assert policy.delay(10**9) == 100 and policy.delay(-5) == 10  # a hostile stored level is clamped


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"interval": float("nan")},
        {"idle_max": float("inf")},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"interval": 60, "idle_max": 30},
        {"max_backoff": 0},
    ],
)
def test_policy_rejects_nonsense(kwargs: Dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Policy(**kwargs)


def test_jitter_stays_within_its_fraction_and_averages_out() -> None:
    policy = Policy(interval=10, idle_max=1000, jitter=0.2)
    rng = random.Random(3)
    samples = [policy.jittered(100, rng) for _ in range(5000)]
    assert min(samples) >= 80 and max(samples) <= 120
    assert abs(sum(samples) / len(samples) - 100) < 1.5
    backoffs = [policy.error_delay(3, rng) for _ in range(200)]
    assert all(4 <= b <= 8 for b in backoffs)
    assert all(policy.error_delay(99, rng) <= policy.max_backoff for _ in range(50))


def test_new_sessions_are_due_at_once_and_polled_one_at_a_time() -> None:
    schedule = Schedule(exact(interval=10, idle_max=80))
    for sid in ("a", "b", "c"):
        schedule.add(sid, due_at=100.0)
    assert schedule.pop_due(99.0, 10) == []
    first = schedule.pop_due(100.0, 2)
    assert len(first) == 2 and schedule.in_flight == 2
    assert schedule.pop_due(100.0, 10) == [next(s for s in "abc" if s not in first)]
    assert schedule.pop_due(1000.0, 10) == []  # all in flight: nothing is due twice
    assert schedule.done(first[0], 100.0, new_events=True) == (110.0, 0)
    assert schedule.done(first[1], 100.0, new_events=False) == (120.0, 1)
    assert schedule.next_due() == 110.0
    assert schedule.pop_due(115.0, 10) == [first[0]]


def _idle_gaps(schedule: Schedule, now: float, polls: int) -> Tuple[List[float], float]:
    """The delays of ``polls`` polls in a row that find nothing new, and when the last is due."""
    gaps = []
    for _ in range(polls):
        (sid,) = schedule.pop_due(now, 1)
        due, _ = schedule.done(sid, now, new_events=False) or (0.0, 0)
        gaps.append(due - now)
        now = due
    return gaps, now


def test_idle_session_backs_off_and_wakes_up() -> None:
    schedule = Schedule(exact(interval=10, idle_max=80))
    schedule.add("s", due_at=0.0)
    gaps, now = _idle_gaps(schedule, 0.0, 6)
    assert gaps == [20, 40, 80, 80, 80, 80]
    (sid,) = schedule.pop_due(now, 1)
    assert schedule.done(sid, now, new_events=True) == (now + 10, 0)


def test_move_up_makes_an_idle_session_due_now_and_active() -> None:
    schedule = Schedule(exact(interval=10, idle_max=1000))
    schedule.add("s", due_at=500.0, level=6)
    schedule.move_up("s", now=50.0)
    assert schedule.state("s") == (50.0, 0)
    assert schedule.pop_due(50.0, 5) == ["s"]
    schedule.move_up("s", now=60.0)  # in flight: it stays in flight, its answer decides
    assert schedule.pop_due(60.0, 5) == [] and schedule.state("s") == (None, 0)
    schedule.move_up("unknown", now=60.0)
    assert "unknown" not in schedule


def test_failures_back_off_without_losing_the_idle_level() -> None:
    schedule = Schedule(Policy(interval=10, idle_max=1000, max_backoff=60), rng=random.Random(1))
    schedule.add("s", due_at=0.0, level=3)
    schedule.pop_due(0.0, 1)
    due, level = schedule.failed("s", 0.0, errors=4) or (0.0, -1)
    assert 8 <= due <= 16 and level == 3


def test_removed_and_released_sessions() -> None:
    schedule = Schedule(exact(interval=10, idle_max=100))
    schedule.add("gone", due_at=0.0)
    schedule.add("kept", due_at=0.0)
    assert sorted(schedule.pop_due(0.0, 5)) == ["gone", "kept"]
    schedule.remove("gone")
    assert schedule.done("gone", 1.0, new_events=True) is None and "gone" not in schedule
    schedule.release("kept", 5.0)
    assert schedule.state("kept") == (5.0, 0) and schedule.in_flight == 0
    assert len(schedule) == 1 and list(schedule.known()) == ["kept"]


def test_restored_state_is_kept_and_heap_stays_bounded() -> None:
    schedule = Schedule(exact(interval=10, idle_max=100))
    schedule.add("s", due_at=42.0, level=3)
    schedule.add("s", due_at=0.0, level=0)  # a second add (next discovery) changes nothing
    assert schedule.state("s") == (42.0, 3)
    for step in range(1000):
        schedule.move_up("s", now=41.0 - step * 0.001)
    assert schedule._entries <= 2 * len(schedule) + 65


def test_many_sessions_poll_in_due_order() -> None:
    schedule = Schedule(exact(interval=10, idle_max=100))
    rng = random.Random(5)
    dues = {f"s{i}": rng.uniform(0, 100) for i in range(500)}
    for sid, due in dues.items():
        schedule.add(sid, due_at=due)
    order: List[str] = []
    while True:
        batch = schedule.pop_due(100.0, 7)
        if not batch:
            break
        order += batch
    assert order == sorted(dues, key=dues.__getitem__)


def test_token_bucket_caps_the_rate() -> None:
    bucket = TokenBucket(rate=5.0, burst=2.0)
    now, sent = 0.0, 0
    while now < 10.0:
        wait = bucket.take(now)
        if wait == 0:
            sent += 1
        else:
            assert 0 < wait <= 0.2 + 1e-9
            now += wait
    assert 50 <= sent <= 52  # 5/s for 10 s, plus the initial burst
    assert TokenBucket(None).take(0.0) == 0.0
    with pytest.raises(ValueError):
        TokenBucket(0.0)


def test_steady_rate_formula() -> None:
    # 5,000 sessions, 1 % active, defaults: 50/10 + 4,950/1,800 + 2/60
    assert steady_rate(5000, 50, interval=10, idle_max=1800, discover_interval=60) == pytest.approx(7.783, abs=1e-3)
    assert steady_rate(5000, 50, interval=10, idle_max=1800, discover_interval=60, max_rps=4) == 4
    assert steady_rate(10, 99, interval=10, idle_max=100, discover_interval=60, discovery=0) == 1.0
    assert discovery_requests(users=3) == 4 and discovery_requests(users=0, agent_filters=2) == 3


def test_simulated_steady_state_follows_the_formula() -> None:
    """Drive the schedule with a virtual clock: idle sessions settle at idle_max, active at interval."""
    policy = Policy(interval=10, idle_max=160, jitter=0.1)
    schedule = Schedule(policy, rng=random.Random(9))
    sessions, active = 2000, 20
    for i in range(sessions):
        schedule.add(f"s{i}", due_at=0.0)
    polls = 0
    now, warmup, end = 0.0, 1000.0, 3000.0
    while now < end:
        for sid in schedule.pop_due(now, 10**6):
            if now >= warmup:
                polls += 1
            schedule.done(sid, now, new_events=int(sid[1:]) < active)
        now += 0.5
    rate = polls / (end - warmup)
    expected = steady_rate(sessions, active, interval=10, idle_max=160, discover_interval=60, discovery=0)
    assert rate == pytest.approx(expected, rel=0.05)


def test_a_conversation_stays_active_for_its_window_then_backs_off() -> None:
    """A reply every 30 s is archived within the interval; after 60 s of silence doubling starts."""
    schedule = Schedule(exact(interval=10, idle_max=1000))  # active for six intervals: 60 s
    assert schedule.policy.active_window == 60
    schedule.add("s", due_at=0.0)
    now, gaps = 0.0, []
    for _ in range(10):
        (sid,) = schedule.pop_due(now, 1)
        due, _ = schedule.done(sid, now, new_events=now in (0.0, 30.0)) or (0.0, 0)
        gaps.append(due - now)
        now = due
    assert gaps == [10, 10, 10, 10, 10, 10, 10, 10, 10, 20]  # active until t=90, then 20, 40, ...
    assert Policy(interval=10, idle_max=100, active_for=0).active_window == 0
    with pytest.raises(ValueError):
        Policy(active_for=float("nan"))


def test_a_session_rescheduled_within_the_same_second_is_polled_once() -> None:
    schedule = Schedule(exact(interval=0.2, idle_max=1.6))
    schedule.add("s", due_at=10.9)
    schedule.move_up("s", now=10.1)  # the same second: the bucket lists it twice
    assert schedule.take("s") and not schedule.take("s")
    schedule.done("s", 10.2, new_events=True)  # due 10.4, the same second again
    assert schedule.pop_due(11.0, 10) == ["s"] and schedule.pop_due(11.0, 10) == []
    schedule.add("x", due_at=_from_wall(float("nan"), 11.0, 5.0))  # a hostile stored value is polled now, not never
    assert schedule.next_due() == 11.0


def test_a_session_restored_in_a_conversation_keeps_its_pace_for_a_window() -> None:
    """A reload (SIGHUP makes a new engine and schedule) or a restart restores a session from
    the archive without its time of activity: one saved at level 0 was in a conversation, and
    the next reply came 2, 4, 8... intervals late (hadv24 01). Restored as active, it keeps the
    interval for a window from the restore; restored at a higher level, or new, it is not."""
    for active, expected in ((True, [10, 10, 10, 10, 10, 10, 20]), (False, [20, 40, 80, 160, 320, 640, 1000])):
        schedule = Schedule(exact(interval=10, idle_max=1000))
        schedule.add("s", due_at=100.0, level=0, now=100.0, active=active)
        gaps, _ = _idle_gaps(schedule, 100.0, 7)
        assert gaps == expected, (active, gaps)
    schedule = Schedule(exact(interval=10, idle_max=1000))
    schedule.add("idle", due_at=100.0, level=3, now=100.0, active=True)  # only a level-0 one was active
    (sid,) = schedule.pop_due(100.0, 1)
    assert schedule.done(sid, 100.0, new_events=False) == (260.0, 4)
