"""What the daemon costs a server at scale: kept-alive connections, the listing cadence, the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from flux0sync import schedule
from flux0sync.config import Config
from flux0sync.engine import Engine
from flux0sync.schedule import IDLE_MAX, Policy, listing_interval, steady_rate
from flux0sync.store import Store

from flux0lite import Flux0, Retry, StreamError, Timeout
from tests.daemon.test_engine import make_client, run_for, run_until
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request


def client(fake: FakeServer) -> Flux0:
    return Flux0(fake.url, timeout=Timeout(2, 5), retry=Retry(total=0))


def read_stream(flux0: Flux0, path: str) -> bytes:
    response = flux0.request_stream("GET", path)
    try:
        return b"".join(response.iter_bytes())
    finally:
        response.close()


def test_a_streamed_get_read_to_its_end_leaves_its_connection_for_the_next_request(
    fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = fake_flux0.add_session(fake_flux0.add_agent())
    fake_flux0.add_events(sid, 3)
    with client(fake) as flux0:
        for _ in range(5):
            assert b'"offset":2' in read_stream(flux0, f"/api/sessions/{sid}/events").replace(b" ", b"")
        flux0.agents.list()
    assert fake.connections == 1  # five streamed polls and a plain request: one connection


def test_a_stream_closed_before_its_end_is_not_reused(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    sid = fake_flux0.add_session(fake_flux0.add_agent())
    fake_flux0.add_events(sid, 2000)  # larger than one read
    with client(fake) as flux0:
        response = flux0.request_stream("GET", f"/api/sessions/{sid}/events")
        next(iter(response.iter_bytes()))
        response.close()  # the rest of the body is still on the wire: this connection is done
        flux0.agents.list()
    assert fake.connections == 2


def test_a_body_cut_short_is_an_error_and_its_connection_is_not_reused(fake: FakeServer) -> None:
    def short(req: Request, conn: Conn) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{}")
        conn.close()

    fake.on("GET", "/short", short)
    fake.on(
        "GET", "/api/agents", lambda req, conn: conn.send(b'HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{"data":[]}')
    )
    with client(fake) as flux0:
        with pytest.raises(StreamError):
            read_stream(flux0, "/short")
        assert flux0.agents.list() == []
    assert fake.connections == 2


def test_a_post_stream_is_never_kept(fake: FakeServer) -> None:
    body = b"data: {}\n\n"
    fake.on(
        "POST",
        "/p",
        lambda req, conn: conn.send(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        ),
    )
    with client(fake) as flux0:
        for _ in range(2):
            response = flux0.request_stream("POST", "/p", json_body={})
            assert b"".join(response.iter_bytes()) == body
            response.close()
    assert fake.connections == 2  # closing a POST stream is what cancels a flux0 agent run


def test_the_daemon_polls_over_kept_alive_connections(store: Store, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    agent = fake_flux0.add_agent()
    for i in range(40):
        fake_flux0.add_events(fake_flux0.add_session(agent), i % 3)
    totals = Engine(
        store,
        make_client(fake),
        policy=Policy(interval=0.2, idle_max=1.6, jitter=0.0),
        workers=2,
        once=True,
    ).run()
    assert totals.ok and totals.polls == 40
    # 42 requests (agents, sessions, 40 polls) on two workers: one connection each
    assert len(fake.requests) == 42 and fake.connections <= 2


def test_listings_are_spaced_so_they_carry_a_bounded_number_of_sessions_a_second(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert listing_interval(60, 0) == listing_interval(60, 6000) == 60
    assert listing_interval(60, 100_000) == pytest.approx(100_000 / schedule.LISTED_PER_SECOND)
    agent = fake_flux0.add_agent()
    for _ in range(30):
        fake_flux0.add_session(agent)

    def listings_in(seconds: float, name: str, enough: int = 0) -> int:
        """Listings sent in ``seconds``; or as soon as there are ``enough``, if they come sooner."""
        before = sum(1 for r in fake.requests if r.path == "/api/sessions")
        archive = Store(str(tmp_path / name))
        try:
            target = Engine(
                archive,
                make_client(fake),
                policy=Policy(interval=0.2, idle_max=1.6, jitter=0.0),
                discover_interval=0.3,
            )
            if enough:
                sent = lambda: sum(1 for r in fake.requests if r.path == "/api/sessions") - before  # noqa: E731
                run_until(target, lambda: sent() >= enough, seconds)
            else:
                run_for(target, seconds)
        finally:
            archive.close()
        return sum(1 for r in fake.requests if r.path == "/api/sessions") - before

    assert listings_in(2.0, "a.sqlite3", enough=3) >= 3  # 30 sessions at 100 a second: every 0.3 s
    monkeypatch.setattr(schedule, "LISTED_PER_SECOND", 10.0)  # 30 sessions: one round per 3 s
    assert listings_in(2.0, "b.sqlite3") == 1


def test_the_default_idle_max_is_one_hour_and_the_formula_follows_the_listing_cadence() -> None:
    assert IDLE_MAX == Config().idle_max == Policy().idle_max == 3600.0
    # 5,000 sessions, 1 % active: 50/10 + 4,950/3,600 + 2/60
    assert steady_rate(5000, 50, interval=10, idle_max=IDLE_MAX, discover_interval=60) == pytest.approx(6.408, abs=1e-3)
    # 100,000 sessions: the two listing requests come every 1,000 s, not every 60 s
    rate = steady_rate(100_000, 200, interval=10, idle_max=IDLE_MAX, discover_interval=60)
    assert rate == pytest.approx(20 + 99_800 / 3600 + 2 / 1000)
