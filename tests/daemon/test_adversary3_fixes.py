"""Defects an adversary found in the daemon's scale features (issue 15), each pinned by a test.

Every test names the repro it comes from (``/work/wt/hadv3/repros/NN-*.py`` at the time): a
persisted schedule read back, N fetch workers, every user and agent, and ``--max-rps``.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import List

import pytest
from flux0sync import service
from flux0sync.backend import open_store
from flux0sync.config import Config, ConfigError, load_config
from flux0sync.engine import _from_wall
from flux0sync.jobs import MAX_ID_CHARS
from flux0sync.schedule import Policy, Schedule

from flux0lite.models import Session
from tests.daemon.helpers import execute, offsets, quick_engine, run_for, run_until
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, raw_response

engine = functools.partial(quick_engine, idle_max=1.0)


# -- 04: a session that reappears in a listing while its poll is in flight ----------------------


def test_a_session_forgotten_and_listed_again_while_in_flight_is_not_due_twice() -> None:
    schedule = Schedule(Policy(interval=1.0, idle_max=8.0, jitter=0.0))
    schedule.add("s1", due_at=0.0)
    assert schedule.pop_due(1.0, 10) == ["s1"]
    schedule.remove("s1")  # a listing left it out
    schedule.add("s1", due_at=1.0)  # the next one shows it again, as new
    assert schedule.pop_due(2.0, 10) == []  # its first poll still runs: not fetched twice at once
    assert schedule.in_flight == 1
    assert schedule.done("s1", 3.0, new_events=True) == (4.0, 0)  # that poll's end schedules it
    assert schedule.pop_due(4.0, 10) == ["s1"]


def test_a_forgotten_session_leaves_flight_when_its_answer_comes() -> None:
    schedule = Schedule(Policy(interval=1.0, idle_max=8.0, jitter=0.0))
    schedule.add("s1", due_at=0.0)
    assert schedule.pop_due(1.0, 10) == ["s1"]
    schedule.remove("s1")
    assert schedule.done("s1", 2.0, new_events=False) is None  # the answer of a forgotten session
    assert schedule.in_flight == 0 and "s1" not in schedule


def test_a_session_flapping_in_the_listing_during_a_slow_poll_keeps_the_daemon_running(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    flapping, steady = fake_flux0.add_session(agent), fake_flux0.add_session(agent)
    for sid in (flapping, steady):
        fake_flux0.add_events(sid, 2)
    listings = [0]

    def listing(req: Request, conn: Conn) -> None:  # the flapping session is in every other listing
        listings[0] += 1
        shown = [fake_flux0.sessions[steady]] + ([fake_flux0.sessions[flapping]] if listings[0] % 2 else [])
        conn.send(raw_response(200, json.dumps({"data": shown}).encode(), {"content-type": "application/json"}))

    events = fake_flux0.server.find("GET", f"/api/sessions/{flapping}/events")
    assert events is not None

    def slowly(req: Request, conn: Conn) -> None:
        time.sleep(1.2)  # in flight across several listing rounds
        events(req, conn)

    fake.on("GET", "/api/sessions", listing)
    fake.on("GET", f"/api/sessions/{flapping}/events", slowly)
    archive = open_store(str(tmp_path / "a.sqlite3"))
    try:
        db = str(tmp_path / "a.sqlite3")
        both = lambda: offsets(db, flapping) == offsets(db, steady) == [0, 1] and listings[0] >= 3  # noqa: E731
        run_until(engine(archive, fake), both, 3.0)  # raised ValueError ("a job for 'events ...' is already in flight")
        assert offsets(str(tmp_path / "a.sqlite3"), flapping) == [0, 1]
        assert offsets(str(tmp_path / "a.sqlite3"), steady) == [0, 1]
    finally:
        archive.close()
    assert listings[0] >= 3


# -- 05: the same agent given twice ---------------------------------------------------------------


def test_a_repeated_agent_session_or_user_setting_is_kept_once() -> None:
    config = load_config(
        {"agent_ids": ["a1", "a2", "a1"], "session_ids": ["s1", "s1"], "users": ["u", "u"]},
        {"FLUX0_SYNC_DB": "x.sqlite3"},
    )
    assert (config.agent_ids, config.session_ids, config.users) == (("a1", "a2"), ("s1",), ("u",))
    from_env = load_config({}, {"FLUX0_SYNC_DB": "x.sqlite3", "FLUX0_SYNC_AGENTS": "a1, a1 a1"})
    assert from_env.agent_ids == ("a1",)


def test_an_engine_given_an_agent_and_a_user_twice_lists_each_once(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 2)
    archive = open_store(str(tmp_path / "a.sqlite3"))
    try:
        target = engine(archive, fake, agent_ids=[agent, agent], users=["u", "u"], once=True)
        run_for(target, 10.0)  # raised ValueError ("a job for 'listing u ...' is already in flight")
        assert target.totals.ok and target.totals.synced == [sid]
        assert offsets(str(tmp_path / "a.sqlite3"), sid) == [0, 1]
    finally:
        archive.close()
    assert fake.count("GET", "/api/sessions") == 1


# -- 01 and 02: a poll schedule read back from the archive -------------------------------------


def test_a_restored_poll_time_is_brought_within_the_longest_idle_delay() -> None:
    policy = Policy(interval=1.0, idle_max=100.0, jitter=0.1, max_backoff=300.0)
    schedule = Schedule(policy)
    now = 1_000_000.0
    for sid, due in (("ahead", now + 365 * 86400), ("text", "soon"), ("nan", float("nan")), ("inf", float("inf"))):
        restored = _from_wall(due, now, wall=now)  # type: ignore[arg-type]  # what SQLite hands back
        schedule.add(sid, due_at=restored, level=3, now=now)
    schedule.add("kept", due_at=now + 50.0, level=6, now=now)
    # the longest its level's delay, jittered, can be (hadv4/01: not idle_max whatever the level)
    assert schedule.state("ahead") == (now + policy.delay(3) * 1.1, 3)
    assert schedule.state("text") == schedule.state("nan") == schedule.state("inf") == (now, 3)
    assert schedule.state("kept") == (now + 50.0, 6)


def _sync_once_then(tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, statement: str) -> str:
    """Archive one session, spoil its saved schedule with ``statement``, then give it a new event."""
    db = str(tmp_path / "a.sqlite3")
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 1)
    archive = open_store(db)
    try:
        run_for(engine(archive, fake, once=True), 10.0)
    finally:
        archive.close()
    assert offsets(db, sid) == [0]
    execute(db, statement)
    fake_flux0.add_events(sid, 1)
    return sid


def test_a_poll_time_saved_a_year_ahead_is_polled_within_idle_max(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    db = str(tmp_path / "a.sqlite3")
    sid = _sync_once_then(
        tmp_path, fake, fake_flux0, f"UPDATE poll_schedule SET next_poll_at = {time.time() + 365 * 86400}"
    )
    archive = open_store(db)
    try:
        # idle_max 1 s: the year was obeyed, the event never came
        run_until(engine(archive, fake), lambda: offsets(db, sid) == [0, 1], 2.5)
    finally:
        archive.close()
    assert offsets(db, sid) == [0, 1]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE poll_schedule SET next_poll_at = 'soon'",
        "UPDATE poll_schedule SET next_poll_at = X'00ff'",
        "UPDATE poll_schedule SET idle_level = 1e308 * 10",
        "UPDATE poll_schedule SET idle_level = 'high'",
        "UPDATE poll_schedule SET idle_level = -5.5",
    ],
)
def test_a_saved_schedule_value_that_is_not_a_number_is_taken_as_unknown(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, statement: str
) -> None:
    db = str(tmp_path / "a.sqlite3")
    sid = _sync_once_then(tmp_path, fake, fake_flux0, statement)
    archive = open_store(db)
    try:
        listed = archive.record_listing(None, [Session.from_dict(fake_flux0.sessions[sid])])
        assert [(item.session_id, item.idle_level) for item in listed] == [(sid, 0)]
        # raised TypeError, OverflowError or ValueError: exit 1
        run_until(engine(archive, fake), lambda: offsets(db, sid) == [0, 1], 2.5)
    finally:
        archive.close()
    assert offsets(db, sid) == [0, 1]


# -- 06: discovery listings and --max-rps ------------------------------------------------------------


def test_a_discovery_round_of_many_listings_waits_for_the_rate_cap(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 2)
    users = [f"user{n}" for n in range(4)]
    agents = [agent] + [f"agent{n}" for n in range(3)]  # 1 + 4 x 4 = 17 listings a round
    archive = open_store(str(tmp_path / "a.sqlite3"))
    try:
        target = engine(archive, fake, users=users, agent_ids=agents, max_rps=5.0)
        started = time.monotonic()
        synced = lambda: target.totals.rounds >= 1 and offsets(str(tmp_path / "a.sqlite3"), sid) == [0, 1]  # noqa: E731
        run_until(target, synced, 4.0)  # sent every round's 17 listings at once, every 0.3 s
        seconds = time.monotonic() - started
    finally:
        archive.close()
    sent = len(fake.requests)
    assert sent <= 5 + 5 * seconds + 1, sent  # one second of burst, then 5 a second
    assert target.totals.rounds >= 1  # the round still completes, spread out
    assert offsets(str(tmp_path / "a.sqlite3"), sid) == [0, 1]


# -- 03: a server answering 429 and --max-rps --------------------------------------------------------


def test_a_server_answering_429_gets_no_more_than_max_rps_with_the_daemons_client(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    for _ in range(20):
        fake_flux0.add_events(fake_flux0.add_session(agent), 1)

    def too_many(req: Request, conn: Conn) -> None:
        conn.send(raw_response(429, b'{"detail": "too many requests"}', {"content-type": "application/json"}))

    fake.on("GET", "/api/sessions/*", too_many)
    config = Config(server_url=fake.url, proxy="none", timeout=5.0)
    archive = open_store(str(tmp_path / "a.sqlite3"))
    try:
        target = engine(archive, fake, max_rps=5.0, workers=4, discover_interval=100.0)
        target.make_client = lambda user: service.make_client(config, user)
        started = time.monotonic()
        run_for(target, 2.5)  # each poll's client retried the 429 twice by itself: 3 x --max-rps
        seconds = time.monotonic() - started
    finally:
        archive.close()
    sent = len(fake.requests)
    assert sent <= 5 + 5 * seconds + 1, sent  # one second of burst, then 5 a second, 429s included
    # a 429 pauses every request (test_adversary4a_fixes.py): no session is marked failing
    assert target.totals.failed_polls == 0 and any("429" in error for error in target.totals.errors)


def test_a_round_of_configured_sessions_sends_one_request_per_token(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    sessions = [fake_flux0.add_session(agent) for _ in range(12)]
    for sid in sessions:
        fake_flux0.add_events(sid, 1)
    archive = open_store(str(tmp_path / "a.sqlite3"))
    try:
        target = engine(archive, fake, session_ids=sessions + sessions[:2], max_rps=4.0)
        started = time.monotonic()
        run_for(target, 2.5)  # the round's job fetched all 12 sessions at once
        seconds = time.monotonic() - started
    finally:
        archive.close()
    sent = len(fake.requests)
    assert sent <= 4 + 4 * seconds + 1, sent
    assert 0 < fake.count("GET", f"/api/sessions/{sessions[0]}") <= 1  # given twice, retrieved once a round


# -- 10 and 11: one session whose answer the server cuts mid-body -------------------------------------


def _cut_mid_body(req: Request, conn: Conn) -> None:
    conn.send(raw_response(200, b"", {"content-type": "application/json", "content-length": "1000"}, length=False))
    conn.send(b'{"data": [')
    time.sleep(0.05)
    conn.reset()


def _one_poisoned_session(fake: FakeServer, fake_flux0: FakeFlux0, healthy: int) -> List[str]:
    agent = fake_flux0.add_agent()
    poisoned = fake_flux0.add_session(agent)  # the first in id order: polled first
    others = [fake_flux0.add_session(agent) for _ in range(healthy)]
    for sid in [poisoned] + others:
        fake_flux0.add_events(sid, 1)
    fake.on("GET", f"/api/sessions/{poisoned}/events", _cut_mid_body)
    return [poisoned] + others


def test_once_a_session_whose_answer_is_cut_fails_alone_and_the_pass_goes_on(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    poisoned, *others = _one_poisoned_session(fake, fake_flux0, 10)
    archive = open_store(str(tmp_path / "a.sqlite3"))
    try:
        target = engine(archive, fake, once=True, workers=2)
        run_for(target, 20.0)  # the cut answer was taken for an outage: the pass ended at once
    finally:
        archive.close()
    assert target.totals.outage is None
    assert set(target.totals.failed) == {poisoned} and sorted(target.totals.synced) == sorted(others)
    assert all(offsets(str(tmp_path / "a.sqlite3"), sid) == [0] for sid in others)


def test_a_session_whose_answer_is_always_cut_backs_off_alone(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    poisoned, *others = _one_poisoned_session(fake, fake_flux0, 5)
    outages: List[str] = []
    archive = open_store(str(tmp_path / "a.sqlite3"))
    try:
        target = engine(archive, fake, policy=Policy(interval=0.2, idle_max=0.4, jitter=0.0))
        target.on_outage = lambda error, wait: outages.append(str(error))
        run_for(target, 3.0)  # every cut paused every session for 2 s
    finally:
        archive.close()
    assert outages == []
    assert poisoned in target.totals.failing
    polls = [fake.count("GET", f"/api/sessions/{sid}/events") for sid in others]
    assert min(polls) >= 5, polls  # every 0.2-0.4 s for 3 s, not once per pause
    assert fake.count("GET", f"/api/sessions/{poisoned}/events") <= 3  # 0, then 1-2 s, then 2-4 s


# -- 09: an interval so long its jittered delay overflows ------------------------------------------------


@pytest.mark.parametrize(
    "name, largest",
    # a timeout becomes a flux0lite Timeout, whose bound is 1e8 (tests/daemon/test_adversary28_fixes.py)
    [("interval", 1e9), ("idle_max", 1e9), ("max_backoff", 1e9), ("discover_interval", 1e9), ("timeout", 1e8)],
)
def test_a_number_of_seconds_beyond_a_billion_is_a_configuration_error(name: str, largest: float) -> None:
    with pytest.raises(ConfigError, match=name.replace("_", "-")):
        load_config({name: "1.7e308"}, {"FLUX0_SYNC_DB": "x.sqlite3"})
    assert getattr(load_config({name: str(largest)}, {"FLUX0_SYNC_DB": "x.sqlite3"}), name) == largest


def test_the_longest_policy_schedules_without_overflow() -> None:
    with pytest.raises(ValueError, match="interval"):
        Policy(interval=1.7e308, idle_max=1.7e308)
    schedule = Schedule(Policy(interval=1e9, idle_max=1e9, jitter=0.5, max_backoff=1e9))
    schedule.add("s1", due_at=0.0)
    assert schedule.pop_due(1.0, 1) == ["s1"]
    state = schedule.done("s1", 1.0, new_events=False)  # raised OverflowError (floor of infinity)
    assert state is not None and 5e8 <= state[0] <= 1.5e9 + 1


# -- 08: one user's listing that keeps failing ------------------------------------------------------------


def test_a_listing_that_keeps_failing_is_retried_alone_and_the_others_keep_their_spacing(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 2)
    listing = fake.find("GET", "/api/sessions")
    assert listing is not None
    cookies: List[str] = []

    def forbidden_for_bad(req: Request, conn: Conn) -> None:  # a user removed on the server, or a typo
        cookie = req.headers.get("cookie", "")
        cookies.append(cookie)
        if cookie.endswith("=bad"):
            conn.send(raw_response(403, b'{"detail": "forbidden"}', {"content-type": "application/json"}))
        else:
            listing(req, conn)

    fake.on("GET", "/api/sessions", forbidden_for_bad)
    origin = time.monotonic()
    archive = open_store(str(tmp_path / "a.sqlite3"))
    try:
        target = engine(
            archive,
            fake,
            users=["good", "bad"],
            discover_interval=60.0,
            policy=Policy(interval=5.0, idle_max=10.0, jitter=0.0),
            clock=lambda: origin + (time.monotonic() - origin) * 20,  # 20 times as fast: 2 s are 40 s
        )
        run_for(target, 2.0)  # the whole round was listed again every 5 s
    finally:
        archive.close()
    good = sum(1 for cookie in cookies if cookie.endswith("=good"))
    bad = sum(1 for cookie in cookies if cookie.endswith("=bad"))
    assert good == 1, cookies  # the next full round is 60 s after the first
    assert 2 <= bad <= 5, cookies  # at 0, then 5, 15 and 35 s: backing off
    assert fake.count("GET", "/api/agents") == 1
    assert offsets(str(tmp_path / "a.sqlite3"), sid) == [0, 1]  # the good user's sessions are synced


# -- 07: the wall clock stepped back while the daemon runs ------------------------------------------------


def test_a_wall_clock_stepped_back_an_hour_does_not_stall_the_polls(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    db = str(tmp_path / "a.sqlite3")
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 1)
    started = time.time()
    wall = [0.0]  # the step: NTP correcting a clock that ran an hour ahead

    def stepped() -> float:
        return time.time() + wall[0]

    archive = open_store(db)
    try:
        target = engine(archive, fake, wall_clock=stepped)
        end = time.monotonic() + 3.0

        def stop_after_the_step() -> bool:
            if time.monotonic() > end - 2.0 and wall[0] == 0.0:
                wall[0] = -3600.0
                fake_flux0.add_events(sid, 1)  # a new event after the step
            if wall[0] == 0.0 or offsets(db, sid) != [0, 1]:
                return time.monotonic() > end
            # the poll after the step is saved (once a second) in wall time as it is now
            return time.monotonic() > end or execute(db, "SELECT next_poll_at FROM poll_schedule")[0][0] < started

        target.should_stop = stop_after_the_step
        target.run()  # on the wall clock, the session was next due an hour later
    finally:
        archive.close()
    assert offsets(db, sid) == [0, 1]
    ((saved,),) = execute(db, "SELECT next_poll_at FROM poll_schedule")
    assert started - 3600 <= saved <= started - 3600 + 10  # the archive keeps wall time, as it is now


# -- 13: session ids of any length -------------------------------------------------------------------------


def test_a_listed_session_whose_id_is_longer_than_the_bound_is_left_out_with_one_warning(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture
) -> None:
    db = str(tmp_path / "a.sqlite3")
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 1)
    for n in range(3):  # every known id is held in memory: 12,000 ids of 25 KB passed MemoryMax
        long_id = f"{n}" + "x" * MAX_ID_CHARS
        fake_flux0.sessions[long_id] = dict(fake_flux0.sessions[sid], id=long_id)
    bounded = "y" * MAX_ID_CHARS
    fake_flux0.sessions[bounded] = dict(fake_flux0.sessions[sid], id=bounded)
    fake_flux0.events[bounded] = []
    archive = open_store(db)
    try:
        target = engine(archive, fake, once=True)
        run_for(target, 10.0)
    finally:
        archive.close()
    assert sorted(target.totals.synced) == sorted([sid, bounded])
    assert sorted(row[0] for row in execute(db, "SELECT id FROM sessions")) == sorted([sid, bounded])
    warned = [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()]
    assert warned == [f"list sessions: skipping every item whose id is longer than {MAX_ID_CHARS} characters"]


# -- 12: a session two users see with different entries ------------------------------------------------------


def test_a_session_two_users_see_differently_is_not_changed_by_the_other_users_entry(archive_db: str) -> None:
    archive = open_store(archive_db)
    doc = {"id": "s1", "agent_id": "a1", "user_id": "u", "title": None, "created_at": "2026-11-25T00:00:00Z"}
    try:
        assert [x.new for x in archive.record_listing("alice", [Session.from_dict(dict(doc, title="A"))])] == [True]
        for user, title in (("bob", "B"), ("alice", "A"), ("bob", "B")):  # a per-viewer title
            listed = archive.record_listing(user, [Session.from_dict(dict(doc, title=title))])
            assert [(x.new, x.changed) for x in listed] == [(False, False)], user
        listed = archive.record_listing("bob", [Session.from_dict(dict(doc, title="B, renamed"))])
        assert [x.changed for x in listed] == [True]  # the same user's entry did change
    finally:
        archive.close()


def test_an_idle_session_two_users_see_differently_backs_off(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 1)  # and never another
    polled: List[float] = []
    events = fake.find("GET", f"/api/sessions/{sid}/events")
    assert events is not None

    def per_viewer(req: Request, conn: Conn) -> None:
        viewer = req.headers.get("cookie", "").rpartition("=")[2]
        body = json.dumps({"data": [dict(fake_flux0.sessions[sid], title=f"seen by {viewer}")]}).encode()
        conn.send(raw_response(200, body, {"content-type": "application/json"}))

    def counted(req: Request, conn: Conn) -> None:
        polled.append(time.monotonic())
        events(req, conn)

    fake.on("GET", "/api/sessions", per_viewer)
    fake.on("GET", f"/api/sessions/{sid}/events", counted)
    archive = open_store(str(tmp_path / "a.sqlite3"))
    try:
        policy = Policy(interval=0.2, idle_max=100.0, jitter=0.0, active_for=0.0)
        started = time.monotonic()
        run_for(engine(archive, fake, users=["alice", "bob"], policy=policy), 3.0)
    finally:
        archive.close()
    # idle from the start: 0, 0.2, 0.6, 1.4 and 3.0 s; moved up at every round (0.3 s), it was polled ~10 times
    assert len(polled) <= 5, [round(t - started, 2) for t in polled]
    assert offsets(str(tmp_path / "a.sqlite3"), sid) == [0]


def test_a_change_of_a_session_two_users_see_moves_it_up(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """A session both users list is written under each in turn; each user's entry is compared
    with that user's previous one, so a change is seen at the next round (hadv24 03: each
    user's entry was compared with the archive's, the other user's, so no change ever counted
    and the session waited for its idle poll)."""
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 1)
    polled: List[float] = []
    events = fake.find("GET", f"/api/sessions/{sid}/events")
    listing = fake.find("GET", "/api/sessions")
    assert events is not None and listing is not None

    def counted(req: Request, conn: Conn) -> None:
        polled.append(time.monotonic())
        events(req, conn)

    def bob_answers_last(req: Request, conn: Conn) -> None:  # each round: alice's listing, then bob's
        if req.headers.get("cookie", "").endswith("=bob"):
            time.sleep(0.05)
        listing(req, conn)

    fake.on("GET", f"/api/sessions/{sid}/events", counted)
    fake.on("GET", "/api/sessions", bob_answers_last)
    db = str(tmp_path / "a.sqlite3")
    archive = open_store(db)
    try:
        policy = Policy(interval=0.2, idle_max=100.0, jitter=0.0, active_for=0.0)
        target = engine(archive, fake, users=["alice", "bob"], policy=policy)
        run_for(target, 3.3)  # idle: polled at 0, 0.2, 0.6, 1.4 and 3.0 s, next at 6.2 s
        fake_flux0.sessions[sid]["title"] = "renamed"
        fake_flux0.add_events(sid, 1)
        changed = time.monotonic()
        run_until(target, lambda: offsets(db, sid) == [0, 1], 8)
        fetched = time.monotonic()
    finally:
        archive.close()
    assert fetched - changed < 1.5  # the next listing round (0.3 s), not the idle poll (~3 s)
