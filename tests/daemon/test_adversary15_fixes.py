"""The findings of the adversary rounds hadv15 to hadv17 on the daemon: settings the schedule
refuses, ids that took another's row, wall-clock steps that passed a hole seen a second earlier,
a stray offset that made a session's future a hole, and the memory and age of many holes; and
hadv22's STATUS refresh during a database outage (its live tests: tests/postgres/test_daemons.py)."""

from __future__ import annotations

import io
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, List

import flux0sync.store as store_module
import pytest
from flux0sync.backend import open_store
from flux0sync.cli import main
from flux0sync.config import ConfigError, load_config
from flux0sync.gaps import MAX_GAPS, Gap, SeenHere, capped
from flux0sync.notify import Notifier
from flux0sync.rows import RawEvent, event_row
from flux0sync.service import Daemon
from flux0sync.sync import Syncer
from hypothesis import given
from hypothesis import strategies as st

from tests.daemon.helpers import client_for, execute, one_session
from tests.daemon.hostile import event, serve_bytes, serve_trickle
from tests.fakeserver import FakeFlux0, FakeServer


@pytest.mark.parametrize("value", ["0", "0.0", "-0"])
def test_a_max_backoff_the_schedule_refuses_is_a_configuration_error(tmp_path: Path, value: str) -> None:
    """It passed the settings' checks, then stopped the daemon with "unexpected ValueError"
    (exit 1, restarted by systemd: a crash loop), or killed it on a reload."""
    with pytest.raises(ConfigError, match="max-backoff"):
        load_config({"max_backoff": value, "db_path": str(tmp_path / "a.sqlite3")}, {})
    code = main(["--once", "--max-backoff", value, "--db", str(tmp_path / "a.sqlite3")])
    assert code == 2


def test_a_reload_to_a_max_backoff_of_zero_keeps_the_running_configuration(tmp_path: Path, fake: FakeServer) -> None:
    ini = tmp_path / "sync.ini"
    ini.write_text("[flux0-sync]\nmax_backoff = 30\n")
    flags = {"config_file": str(ini), "db_path": str(tmp_path / "a.sqlite3")}
    env = {"FLUX0_SERVER_URL": fake.url}
    daemon = Daemon(load_config(flags, env), flags=flags, env=env, notifier=Notifier(""))
    ini.write_text("[flux0-sync]\nmax_backoff = 0\n")
    daemon._reload = True
    daemon._apply_reload()
    assert daemon.config.max_backoff == 30


def _row_id(event_id: str) -> str:
    return event_row("s", RawEvent({"id": event_id, "offset": 0}, json.dumps({"id": event_id})))[1]


@given(st.text(min_size=1), st.text(min_size=1))
def test_two_ids_never_share_an_id_column(first: str, second: str) -> None:
    assert (_row_id(first) == _row_id(second)) == (first == second)


def test_an_id_that_is_the_text_of_anothers_escape_keeps_its_own_row(
    fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str
) -> None:
    sid = one_session(fake_flux0)
    ids = ["\ud800", json.dumps("\ud800"), json.dumps(json.dumps("\ud800")), '"plain']
    texts = [json.dumps(event(sid, offset, event_id)) for offset, event_id in enumerate(ids)]
    serve_bytes(fake_flux0, sid, ('{"data":[' + ",".join(texts) + "]}").encode())
    archive = open_store(archive_db)
    try:
        Syncer(client_for(fake), archive, gap_patience=0.0).run_pass()
    finally:
        archive.close()
    assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 0
    assert sorted(execute(archive_db, 'SELECT "offset" FROM events')) == [(0,), (1,), (2,), (3,)]


class _SteppedClock:
    """The time module, its wall clock moved ``shift`` seconds."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def time(self) -> float:
        return time.time() + self.shift


def test_a_wall_clock_step_passes_no_hole_the_daemon_saw_seconds_ago(
    fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _SteppedClock()
    sid = one_session(fake_flux0)
    fake_flux0.add_events(sid, 4)
    late = fake_flux0.events[sid].pop(2)
    archive = open_store(archive_db)
    for backend in (store_module, sys.modules.get("flux0sync.pgstore")):  # the latter once imported
        if backend is not None:
            monkeypatch.setattr(backend, "time", clock)
    try:
        syncer = Syncer(client_for(fake), archive, gap_patience=300.0)
        syncer.run_pass()
        clock.shift = 3600.0  # NTP, or a VM resumed from a snapshot: an hour later, a second on
        syncer.run_pass()
        assert [(gap.first_offset, gap.skipped_at) for gap in archive.gaps(sid)] == [(2, None)]
        assert archive.checkpoint(sid) == 1
        fake_flux0.events[sid].insert(2, late)
        syncer.run_pass()
        assert archive.checkpoint(sid) == 3 and archive.gaps(sid) == []
    finally:
        archive.close()


@pytest.mark.parametrize("steps", [(3600.0,), (-3600.0, 0.0)], ids=["forward", "back-then-forward"])
def test_a_wall_clock_step_either_way_passes_no_hole_this_process_recorded(
    fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str, monkeypatch: pytest.MonkeyPatch, steps: Any
) -> None:
    """hadv16 01: a hole recorded while the clock was an hour behind, passed at once when NTP
    put it right, since it looked recorded before the daemon started."""
    clock = _SteppedClock()
    sid = one_session(fake_flux0)
    fake_flux0.add_events(sid, 4)
    late = fake_flux0.events[sid].pop(2)
    archive = open_store(archive_db)
    for backend in (store_module, sys.modules.get("flux0sync.pgstore")):
        if backend is not None:
            monkeypatch.setattr(backend, "time", clock)
    try:
        syncer = Syncer(client_for(fake), archive, gap_patience=300.0)
        clock.shift = steps[0] if len(steps) > 1 else 0.0
        syncer.run_pass()
        clock.shift = steps[-1]
        syncer.run_pass()
        assert archive.checkpoint(sid) == 1 and [gap.skipped_at for gap in archive.gaps(sid)] == [None]
        fake_flux0.events[sid].insert(2, late)
        syncer.run_pass()
        assert archive.checkpoint(sid) == 3
    finally:
        archive.close()


def test_a_hole_another_process_recorded_goes_by_the_archives_clock_one_recorded_here_by_both() -> None:
    ticks = [1000.0]
    seen = SeenHere(monotonic=lambda: ticks[0])
    now = time.time()
    theirs, ours = Gap("s", 2, 2, now - 3600, None), Gap("s", 4, 4, now, None)
    seen.note([theirs, ours], now)
    assert not seen.young(theirs, 300.0)  # only the archive's record: an hour old
    assert seen.young(ours, 300.0) and not seen.young(ours, 0.0)
    ticks[0] += 300.0
    assert not seen.young(ours, 300.0)


def test_the_gaps_recorded_here_are_one_entry_per_recording_and_go_when_closed() -> None:
    seen = SeenHere(monotonic=lambda: 0.0)
    now = time.time()
    seen.note([Gap("s", offset, offset, now, None) for offset in range(2, 20_000, 2)], now)
    assert seen._recorded == {"s": {now: 0.0}}
    seen.note([Gap("s", 2, 2, now, None), Gap("s", 8, 9, now + 1, None)], now + 2)  # not recorded at now + 2
    assert seen._recorded == {"s": {now: 0.0}}
    seen.forget("s")
    assert seen._recorded == {}


def test_past_max_gaps_the_missing_ranges_are_recorded_as_one_span() -> None:
    ranges = [(offset, offset) for offset in range(1, 2 * (MAX_GAPS + 500), 2)]
    assert capped(iter(ranges)) == [*ranges[:MAX_GAPS], (ranges[MAX_GAPS][0], ranges[-1][1])]
    assert capped(ranges[: MAX_GAPS + 1]) == ranges[: MAX_GAPS + 1]
    assert capped(ranges[:3]) == ranges[:3] and capped([]) == []


def test_a_session_that_skips_every_other_offset_keeps_its_gaps_bounded(
    fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str
) -> None:
    """hadv16 02: one gap per event, all built at every reconcile, took ~650,000 events past
    MemoryMax; past MAX_GAPS the rest is one span, and every event is still archived."""
    sid = one_session(fake_flux0)
    count = MAX_GAPS + 200
    _serve_offsets(fake_flux0, sid, [0, *range(10**12, 10**12 + 2 * count, 2)])
    archive = open_store(archive_db)
    try:
        Syncer(client_for(fake), archive, gap_patience=0.0).run_pass()
        gaps = archive.gaps(sid, open_only=True)
    finally:
        archive.close()
    assert len(gaps) == MAX_GAPS + 1
    assert (gaps[0].first_offset, gaps[0].last_offset) == (1, 10**12 - 1)
    assert (gaps[-1].first_offset, gaps[-1].last_offset) == (10**12 + 2 * MAX_GAPS - 1, 10**12 + 2 * count - 3)
    assert execute(archive_db, "SELECT count(*) FROM events")[0][0] == count + 1


def _serve_offsets(fake_flux0: FakeFlux0, sid: str, offsets: List[int]) -> None:
    fake_flux0.events[sid] = [event(sid, offset) for offset in offsets]


def test_an_event_at_a_stray_offset_does_not_make_the_sessions_future_a_hole_to_pass(
    fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str
) -> None:
    """Offsets 3 .. 999,999 below a stray 1,000,000 are not a hole to pass after gap_patience:
    passing it made every later event of the session (3, 4, 5 ...) one never asked for."""
    sid = one_session(fake_flux0)
    _serve_offsets(fake_flux0, sid, [0, 1, 2, 1_000_000])
    archive = open_store(archive_db)
    try:
        syncer = Syncer(client_for(fake), archive, gap_patience=0.0)
        syncer.run_pass()
        syncer.run_pass()
        assert archive.checkpoint(sid) == 2
        _serve_offsets(fake_flux0, sid, [0, 1, 2, 3, 4, 5, 1_000_000])
        syncer.run_pass()
        assert archive.checkpoint(sid) == 5
        assert [gap.skipped_at for gap in archive.gaps(sid)] == [None]
    finally:
        archive.close()
    assert execute(archive_db, 'SELECT "offset" FROM events ORDER BY "offset"') == [
        (0,), (1,), (2,), (3,), (4,), (5,), (1_000_000,)
    ]  # fmt: skip


def test_a_hole_is_passed_once_the_offsets_stored_after_it_outnumber_it(
    fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str
) -> None:
    sid = one_session(fake_flux0)
    _serve_offsets(fake_flux0, sid, [0, 4])  # 1 .. 3 missing, one offset after them
    archive = open_store(archive_db)
    try:
        syncer = Syncer(client_for(fake), archive, gap_patience=0.0)
        syncer.run_pass()
        assert archive.checkpoint(sid) == 0
        _serve_offsets(fake_flux0, sid, [0, 4, 5])
        syncer.run_pass()
        assert archive.checkpoint(sid) == 0
        _serve_offsets(fake_flux0, sid, [0, 4, 5, 6])  # three after three missing: the server moved on
        syncer.run_pass()
        assert archive.checkpoint(sid) == 6
        assert [(gap.first_offset, gap.last_offset, gap.skipped_at is not None) for gap in archive.gaps(sid)] == [
            (1, 3, True)
        ]
    finally:
        archive.close()


def test_status_server_counts_an_answer_no_longer_than_the_session_deadline(
    fake: FakeServer, fake_flux0: FakeFlux0, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer that trickles on (one byte every 0.2 s here) held ``status --server`` for ever,
    printing nothing; it now gives up at ``session_deadline``, as a poll does, with "?"."""
    sid = one_session(fake_flux0)
    fake_flux0.add_events(sid, 2)
    db = str(tmp_path / "a.sqlite3")
    archive = open_store(db)
    try:
        Syncer(client_for(fake), archive).run_pass()
    finally:
        archive.close()
    fake_flux0.add_events(sid, 3)
    serve_trickle(fake_flux0, sid, lambda: fake_flux0.events[sid], every=0.2)
    monkeypatch.setenv("FLUX0_SYNC_SESSION_DEADLINE", "1")
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code = main(["status", "--db", db, "--server", "--server-url", fake.url], stdout=out, stderr=err)
    assert time.monotonic() - started < 10
    assert code == 0, err.getvalue()
    assert sid in err.getvalue() and len(err.getvalue().splitlines()) == 1
    assert [line.split()[-1] for line in out.getvalue().splitlines() if line.startswith(sid)] == ["?"]


def test_a_session_id_that_is_the_text_of_anothers_escape_is_another_session(
    fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str
) -> None:
    """hadv16 04: on PostgreSQL (whose text holds no NUL) ``a<NUL>b`` was kept as the escape
    ``"a\\u0000b"``, the very key of a session of that name: two sessions in one row."""
    agent = fake_flux0.add_agent()
    ids = ["a\x00b", json.dumps("a\x00b")]
    for sid in ids:
        fake_flux0.sessions[sid] = {"id": sid, "agent_id": agent, "user_id": "u", "created_at": "2026-11-25T00:00:00Z"}
        fake_flux0.events[sid] = []
        fake_flux0.add_events(sid, 2)
    archive = open_store(archive_db)
    try:
        Syncer(client_for(fake), archive).run_pass()
        exported = {sid: [json.loads(raw)["id"] for raw in archive.iter_raw_events(sid)] for sid in ids}
        rows, _, _ = archive.status_snapshot()
        hits = {hit.session_id for hit in archive.search("message")}
    finally:
        archive.close()
    assert exported == {sid: [event["id"] for event in fake_flux0.events[sid]] for sid in ids}
    assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 0
    # hadv18 01: readers show (and take) the ids the server sent, not the keys they are kept under
    # (on PostgreSQL the text of a<NUL>b's events, NUL and all, is not kept for search)
    assert sorted(row.session_id for row in rows) == sorted(ids) and ids[1] in hits and hits <= set(ids)


def test_a_span_of_gaps_that_takes_in_a_new_hole_is_first_seen_again(
    fake: FakeServer, fake_flux0: FakeFlux0, archive_db: str
) -> None:
    """hadv17 01: the gaps past MAX_GAPS are one span; it kept its age as it grew, so a hole
    that joined it a moment ago was passed with it, and the late event never asked for."""
    sid = one_session(fake_flux0)
    edge = 2 * MAX_GAPS + 4  # holes 1, 3, ..., 2 * MAX_GAPS + 3: MAX_GAPS of them, then a span of two
    first = [offset for offset in range(edge + 1) if offset % 2 == 0 or offset > edge]
    _serve_offsets(fake_flux0, sid, first)
    archive = open_store(archive_db)
    try:
        syncer = Syncer(client_for(fake), archive, gap_patience=0.5)
        syncer.run_pass()
        time.sleep(0.6)  # every hole is now older than gap_patience
        _serve_offsets(fake_flux0, sid, [*first, *range(edge + 2, edge + 3000)])  # edge + 1 comes late
        syncer.run_pass()
        assert archive.checkpoint(sid) < edge + 1
        _serve_offsets(fake_flux0, sid, [*first, *range(edge + 1, edge + 3000)])
        syncer.run_pass()
    finally:
        archive.close()
    assert (edge + 1,) in execute(archive_db, 'SELECT "offset" FROM events')


def test_a_status_refresh_while_the_archive_is_unavailable_keeps_the_last_counts(tmp_path: Path) -> None:
    """The heartbeat (between passes too, while the daemon waits for its database) refreshes
    STATUS by reading the archive: a database server that was down ended the daemon there
    (hadv22 01), outside the loop that pauses for it. Now STATUS keeps its last counts."""
    from flux0sync.backend import StoreUnavailableError
    from flux0sync.engine import Totals

    class DownArchive:
        def counts(self, events: bool = True) -> Any:
            raise StoreUnavailableError("postgresql://***@/archive: the database server cannot be reached")

        def check_files(self) -> None:  # a PostgreSQL archive has no files of its own to check
            pass

    statuses: List[str] = []
    notifier = Notifier("")
    notifier.status = statuses.append  # type: ignore[method-assign]
    daemon = Daemon(load_config({"db_path": str(tmp_path / "a.sqlite3")}, {}), notifier=notifier)
    daemon.store = DownArchive()  # type: ignore[assignment]
    daemon._counts = (1, 2, 30)
    daemon._base_events = 30
    daemon._progress = Totals(inserted=5)
    daemon.heartbeat()
    assert statuses == ["35 events in 2 sessions of 1 agents archived"] and daemon._progress is None


def test_a_conversation_keeps_its_pace_across_a_new_engine(tmp_path: Path) -> None:
    """A reload (SIGHUP) or a restart makes a new engine, whose schedule is restored from the
    archive: a session in a conversation lost its active window there, and its next reply came
    2, 4, 8 intervals late (hadv24 01). Polls after the new engine starts stay an interval apart."""
    from flux0sync.store import Store

    from tests.daemon.helpers import quick_engine, run_until

    fake = FakeServer()
    try:
        fake_flux0 = FakeFlux0(fake)
        sid = one_session(fake_flux0)
        polls: List[float] = []
        events = fake.find("GET", "/api/sessions/*")
        assert events is not None

        def counted(req: Any, conn: Any) -> None:
            if req.path.startswith(f"/api/sessions/{sid}/events"):
                polls.append(time.monotonic())
            events(req, conn)  # type: ignore[misc]

        fake.on("GET", "/api/sessions/*", counted)
        archive = Store(str(tmp_path / "a.sqlite3"))
        try:
            first = quick_engine(archive, fake, idle_max=30.0)
            fake_flux0.add_events(sid, 1)
            run_until(first, lambda: bool(execute(archive.path, "SELECT 1 FROM events")), 10)
            second = quick_engine(archive, fake, idle_max=30.0)  # the next engine, as after a reload
            started = time.monotonic()
            run_until(second, lambda: time.monotonic() - started > 1.3, 10)
        finally:
            archive.close()
        after = [t for t in polls if t >= started]
        gaps = [b - a for a, b in zip(after, after[1:])]
        assert len(after) >= 5 and max(gaps) < 0.35, gaps  # the 0.2 s interval, not 0.4, 0.8...
    finally:
        fake.close()


def test_an_archive_outage_after_a_healthy_spell_waits_from_the_start_again(tmp_path: Path) -> None:
    """The daemon's pause for an unavailable archive doubles while the archive stays unavailable,
    and starts over once the daemon ran for longer than it last waited (hadv27 02: brief blips
    hours apart paused it 2, 4, 8... up to max_backoff, for as long as it ran)."""
    from flux0sync.backend import StoreUnavailableError

    waits: List[float] = []
    runs = iter([0.0, 2.2, 0.0, 0.0, 0.0])  # how long each engine runs before the archive fails it

    class FailingEngine:
        def run(self) -> Any:
            time.sleep(next(runs))
            raise StoreUnavailableError("postgresql://***@/archive: the database is read-only now")

    daemon = Daemon(load_config({"db_path": str(tmp_path / "a.sqlite3")}, {}), notifier=Notifier(""))
    daemon.store = type("Archive", (), {"counts": lambda self, events=True: (0, 0, 0), "path": "a"})()  # type: ignore[assignment]
    daemon._make_engine = FailingEngine  # type: ignore[assignment,method-assign]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 4:
            daemon.stop(signal.SIGTERM, None)  # the next engine's failure ends the loop

    daemon._sleep = sleep  # type: ignore[method-assign]
    assert daemon._loop() == 0
    assert waits == [2.0, 2.0, 4.0, 8.0]  # the second engine ran 2.2 s, longer than the 2 s wait before it
