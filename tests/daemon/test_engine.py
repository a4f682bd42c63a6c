from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
from flux0sync.backend import Archive, open_store
from flux0sync.engine import Engine, Totals
from flux0sync.schedule import Policy
from flux0sync.shard import Shard
from flux0sync.store import Store

from flux0lite import Flux0, Retry, Timeout
from tests.daemon.helpers import archive_rows, assert_archive_equals_server, execute
from tests.daemon.hostile import event, serve_events
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, json_response
from tests.netfixtures import refused_port


def make_client(fake: FakeServer, read: float = 5.0) -> Any:
    def make(user: Optional[str]) -> Flux0:
        return Flux0(fake.url, timeout=Timeout(2, read), retry=Retry(total=2, backoff_factor=0), user_sub=user)

    return make


def engine(store: Archive, fake: FakeServer, **kwargs: Any) -> Engine:
    options: Dict[str, Any] = {
        "policy": Policy(interval=0.2, idle_max=1.6, jitter=0.0),
        "discover_interval": 0.5,
        "workers": 4,
    }
    options.update(kwargs)
    return Engine(store, make_client(fake), **options)


def run_until(target: Engine, condition: Callable[[], bool], timeout: float = 20.0) -> Totals:
    """Run the engine on this thread (it owns the archive) until ``condition`` holds."""
    deadline = time.monotonic() + timeout
    target.should_stop = lambda: condition() or time.monotonic() > deadline
    totals = target.run()
    assert condition(), "the condition never became true"
    return totals


def run_for(target: Engine, seconds: float) -> Totals:
    end = time.monotonic() + seconds
    return run_until(target, lambda: time.monotonic() > end, seconds + 5)


def event_polls(fake: FakeServer, since: int = 0) -> Counter:  # type: ignore[type-arg]
    return Counter(r.path.split("/")[3] for r in fake.requests[since:] if r.path.endswith("/events"))


@pytest.fixture
def archive(archive_db: str) -> Iterator[Archive]:
    """For the tests about what lands in the archive: they run on SQLite and on PostgreSQL."""
    opened = open_store(archive_db)
    yield opened
    opened.close()


def test_once_mirrors_everything_with_four_workers(
    archive: Archive, archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    for i in range(30):
        fake_flux0.add_events(fake_flux0.add_session(agent), i * 3)
    totals = engine(archive, fake, once=True, batch_size=7).run()
    assert totals.ok and totals.polls == 30 and totals.inserted == sum(i * 3 for i in range(30))
    assert_archive_equals_server(archive_db, fake_flux0)
    assert archive.counts() == (1, 30, totals.inserted)
    assert archive.counts(events=False) == (1, 30, 0)


def test_flaky_server_30_percent_failures_with_workers_archive_ends_equal(
    archive: Archive, archive_db: str, fake: FakeServer
) -> None:
    flaky = FakeFlux0(fake, failure_rate=0.3, seed=11)
    agent = flaky.add_agent()
    for i in range(25):
        flaky.add_events(flaky.add_session(agent), 20 + i)
    for _ in range(40):
        engine(archive, fake, once=True, batch_size=6, workers=4).run()
        try:
            assert_archive_equals_server(archive_db, flaky)
            break
        except AssertionError:
            continue
    assert_archive_equals_server(archive_db, flaky)


def test_idle_sessions_back_off_while_active_ones_are_polled_every_interval(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    sessions = [fake_flux0.add_session(agent) for _ in range(12)]
    active = sessions[:2]
    stop_writing = threading.Event()

    def talk() -> None:
        while not stop_writing.wait(0.1):
            for sid in active:
                fake_flux0.add_events(sid, 1)

    writer = threading.Thread(target=talk)
    writer.start()
    try:
        run_for(engine(store, fake), 4.0)
    finally:
        stop_writing.set()
        writer.join()
    polls = event_polls(fake)
    idle_polls = [polls[sid] for sid in sessions[2:]]
    # active: every 0.2 s (~20 polls); idle: 0, 0.4, 1.2, 2.8 s (4 polls; then every 1.6 s)
    assert min(polls[sid] for sid in active) >= 12
    assert max(idle_polls) <= 6 and min(idle_polls) >= 3


def test_restart_keeps_the_schedule_instead_of_polling_everything(
    archive: Archive, archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    for _ in range(10):
        fake_flux0.add_events(fake_flux0.add_session(agent), 2)
    slow = Policy(interval=60, idle_max=600, jitter=0.0)
    first = engine(archive, fake, policy=slow)
    run_until(first, lambda: first.totals.polls >= 10)
    assert_archive_equals_server(archive_db, fake_flux0)
    statuses = archive.session_statuses()
    assert all(s.next_poll_at is not None and s.next_poll_at > time.time() + 30 for s in statuses)
    assert all(s.idle_level == 0 and s.found_under_user == "" for s in statuses)
    before = len(fake.requests)
    again = open_store(archive_db)
    try:
        second = engine(again, fake, policy=slow)
        run_until(second, lambda: second.totals.rounds >= 2)
    finally:
        again.close()
    assert event_polls(fake, before) == Counter()  # nothing was due yet: no stampede


def test_every_user_is_listed_with_its_own_cookie(
    archive: Archive, archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    owner: Dict[str, str] = {}
    for user in ("alice", "bob"):
        for _ in range(3):
            sid = fake_flux0.add_session(agent)
            fake_flux0.add_events(sid, 4)
            owner[sid] = user

    def list_for_cookie(req: Request, conn: Conn) -> None:  # flux0 scopes the listing to the cookie
        user = req.headers.get("cookie", "").partition("flux0_user_sub=")[2]
        doc = {"data": [s for sid, s in fake_flux0.sessions.items() if owner.get(sid) == user]}
        json_response(200, doc)(req, conn)

    fake.on("GET", "/api/sessions", list_for_cookie)
    totals = engine(archive, fake, once=True, users=["alice", "bob"]).run()
    assert totals.ok
    assert_archive_equals_server(archive_db, fake_flux0)
    found = {s.session_id: s.found_under_user for s in archive.session_statuses()}
    assert found == owner
    listings = [r.headers.get("cookie") for r in fake.requests if r.path == "/api/sessions"]
    assert sorted(listings) == ["flux0_user_sub=alice", "flux0_user_sub=bob"]


def test_a_changed_listing_entry_moves_an_idle_session_up(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 1)
    slow = Policy(interval=60, idle_max=600, jitter=0.0)
    running = engine(store, fake, policy=slow, discover_interval=0.2)
    run_until(running, lambda: running.totals.polls >= 1)
    fake_flux0.add_events(sid, 2)
    fake_flux0.sessions[sid]["consumption_offsets"] = {"client": 3}  # what a newer flux0 might do
    run_until(running, lambda: running.totals.polls >= 2, timeout=10)
    assert_archive_equals_server(store.path, fake_flux0)


def test_a_run_stopped_mid_discovery_lets_the_next_run_discover_again(
    store: Store, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 1)
    slow_agents = threading.Event()
    answer = json_response(200, {"data": list(fake_flux0.agents.values())})

    def respond(req: Request, conn: Conn) -> None:
        if slow_agents.is_set():
            time.sleep(1.0)  # still in flight when the first run stops
        answer(req, conn)

    fake_flux0.server.on("GET", "/api/agents", respond)
    slow_agents.set()
    running = engine(store, fake, policy=Policy(interval=60, idle_max=600, jitter=0.0), discover_interval=0.2)
    run_until(running, lambda: running.totals.polls >= 1)  # stops with the agents listing unanswered
    slow_agents.clear()
    second = fake_flux0.add_session(agent)
    fake_flux0.add_events(second, 2)
    run_until(running, lambda: running.totals.polls >= 2, timeout=10)  # a new round finds the new session
    assert_archive_equals_server(store.path, fake_flux0)


def test_a_shard_stores_and_polls_only_the_sessions_it_owns(
    archive: Archive, archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    sessions = [fake_flux0.add_session(agent) for _ in range(24)]
    for sid in sessions:
        fake_flux0.add_events(sid, 2)
    shard = Shard(1, 3)
    mine = {sid for sid in sessions if shard.owns(sid)}
    assert 0 < len(mine) < len(sessions)
    totals = engine(archive, fake, once=True, shard=shard).run()
    assert totals.ok and totals.listed == len(mine) and totals.polls == len(mine)
    assert set(event_polls(fake)) == mine  # the others are not polled...
    assert {s.session_id for s in archive.session_statuses()} == mine  # ...nor stored
    assert {sid for (sid,) in execute(archive_db, "SELECT id FROM sessions")} == mine
    assert set(archive_rows(archive_db)) == mine


def test_rate_cap_limits_requests_per_second(store: Store, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    agent = fake_flux0.add_agent()
    for _ in range(200):
        fake_flux0.add_session(agent)
    run_for(engine(store, fake, max_rps=20.0, workers=4), 2.0)
    polls = sum(event_polls(fake).values())
    assert 20 <= polls <= 2.5 * 20 + 20  # 2 s at 20/s, plus one burst; never the 200 that were due


def test_stop_is_prompt_while_every_fetch_stalls(store: Store, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    agent = fake_flux0.add_agent()
    for _ in range(8):
        fake_flux0.add_session(agent)

    def stall(req: Request, conn: Conn) -> None:
        conn.sock.settimeout(None)
        conn.sock.recv(1)
        conn.keep_alive = False

    fake.on("GET", "/api/sessions/*", stall)
    running = engine(store, fake, fetch_deadline=600)
    stalled: List[float] = []

    def four_stalled() -> bool:
        if not stalled and len(event_polls(fake)) >= 4:
            stalled.append(time.monotonic())
        return bool(stalled)

    run_until(running, four_stalled)
    assert time.monotonic() - stalled[0] < 10  # the read timeout is 5 s x 3 tries, the deadline 600 s
    assert running._pool is not None and running._pool.pending() == 0


def test_deadline_cuts_a_stalled_session_and_the_rest_goes_on(
    archive: Archive, archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    stuck = fake_flux0.add_session(agent)
    others = [fake_flux0.add_session(agent) for _ in range(5)]
    for sid in others:
        fake_flux0.add_events(sid, 3)
    normal = fake.find("GET", "/api/sessions/x")
    assert normal is not None

    def maybe_stall(req: Request, conn: Conn) -> None:
        if stuck in req.path:
            conn.sock.settimeout(None)
            conn.sock.recv(1)
            conn.keep_alive = False
            return
        normal(req, conn)

    fake.on("GET", "/api/sessions/*", maybe_stall)
    run = Engine(
        archive,
        make_client(fake, read=30),
        policy=Policy(interval=0.2, idle_max=1.6),
        workers=2,
        fetch_deadline=1.0,
        once=True,
    ).run()
    assert not run.ok and list(run.failing) == [stuck]
    errors = {s.session_id: s.last_error for s in archive.session_statuses()}
    assert "deadline" in str(errors[stuck]) and all(errors[sid] is None for sid in others)
    assert execute(archive_db, "SELECT count(*) FROM events")[0][0] == 15


def test_server_outage_pauses_everything_then_recovers(tmp_path: Path) -> None:
    port = refused_port()
    store = Store(str(tmp_path / "a.sqlite3"))
    url = f"http://127.0.0.1:{port}"
    running = Engine(
        store,
        lambda user: Flux0(url, timeout=Timeout(1, 2), retry=Retry(total=0)),
        policy=Policy(interval=0.2, idle_max=1.6, max_backoff=1.0),
        discover_interval=0.3,
    )
    outages: List[str] = []
    paused = threading.Event()

    def on_outage(error: Exception, wait: float) -> None:
        outages.append(str(error))
        paused.set()

    running.on_outage = on_outage
    late: Dict[str, Any] = {}

    def come_back() -> None:  # the server starts during the first pause (max_backoff: 1 s)
        paused.wait(30)
        server = FakeServer(port=port)
        flux0 = FakeFlux0(server)
        flux0.add_events(flux0.add_session(flux0.add_agent()), 4)
        late.update(server=server, flux0=flux0)

    starter = threading.Thread(target=come_back)
    starter.start()
    try:
        run_until(running, lambda: running.totals.inserted == 4, timeout=30)
    finally:
        starter.join()
        store.close()
        if "server" in late:
            late["server"].close()
    assert outages and all("cannot connect" in o for o in outages)
    assert len(outages) <= 4  # one message per backoff step, not one per request
    assert_archive_equals_server(str(tmp_path / "a.sqlite3"), late["flux0"])


def test_once_against_a_dead_server_ends_with_its_error(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "a.sqlite3"))
    dead = Engine(
        store,
        lambda user: Flux0("http://127.0.0.1:1", timeout=Timeout(1, 1), retry=Retry(total=0)),
        policy=Policy(interval=0.2, idle_max=1.6),
        once=True,
    )
    totals = dead.run()
    store.close()
    assert not totals.ok and "cannot connect" in str(totals.outage)


def test_gaps_clashes_and_disorder_across_many_sessions_with_four_workers(
    archive: Archive, archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    """The exactly-once rules hold with sessions fetched in parallel: each keeps its own offsets."""
    agent = fake_flux0.add_agent()
    sessions = [fake_flux0.add_session(agent) for _ in range(12)]
    docs: Dict[str, List[Dict[str, Any]]] = {}
    for n, sid in enumerate(sessions):
        offsets_now = [5, 4, 3, 2, 1, 0] if n % 3 == 0 else [0, 1, 3] if n % 3 == 1 else [0, 1, 2]
        docs[sid] = [event(sid, o, event_id="shared" if o == 0 else "") for o in offsets_now]  # one id in all
        serve_events(fake_flux0, sid, lambda sid=sid: docs[sid])  # type: ignore[misc]
    first = engine(archive, fake, once=True, batch_size=2, gap_patience=3600).run()
    assert first.ok
    for n, sid in enumerate(sessions):
        expected = {0: 5, 1: 1, 2: 2}[n % 3]  # the hole at 2 holds the checkpoint at 1
        assert archive.checkpoint(sid) == expected
    for n, sid in enumerate(sessions):
        if n % 3 == 1:
            docs[sid].insert(2, event(sid, 2))  # the late event arrives
    assert engine(archive, fake, once=True, batch_size=2, gap_patience=3600).run().ok
    rows = archive_rows(archive_db)
    for n, sid in enumerate(sessions):
        want = [0, 1, 2, 3] if n % 3 == 1 else [0, 1, 2] if n % 3 == 2 else [0, 1, 2, 3, 4, 5]
        assert [o for o, _ in rows[sid]] == want and rows[sid][0][1] == "shared"  # per-session identity
        assert archive.checkpoint(sid) == want[-1]
    assert archive.gaps() == [] and execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 0
