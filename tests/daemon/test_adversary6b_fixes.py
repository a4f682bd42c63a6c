"""The daemon's memory bound, as a sixth adversary broke it, each defect pinned by a test.

Every test names the repro it comes from (``/work/wt/hadv6/repros/NN-*.py`` at the time): an
error answer's body was read whole, up to flux0lite's 256 MiB (05); recording a re-creation
read every archived raw of the session at once (06); and events within the per-event caps, a
16 MiB one (08) or a deep one (12), were read by every worker at once, past the systemd unit's
MemoryMax=256M. The daemon's peak is measured as its ``VmHWM`` (Linux).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Dict, List

import pytest
from flux0sync import store
from flux0sync.backend import open_store
from flux0sync.budget import Budget
from flux0sync.jsonread import MAX_DEEP_CHARS, Decoder
from flux0sync.rows import RawEvent

from flux0lite import APIError, Session
from flux0lite.transport import MAX_ERROR_BODY_BYTES
from tests.conftest import ROOT
from tests.daemon.helpers import LISTING_ENTRY, client_for, execute, popen_daemon
from tests.daemon.hostile import event
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, json_response, raw_response

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")


def memory_max_mb() -> int:
    unit = (Path(ROOT) / "systemd" / "flux0-sync.service").read_text(encoding="utf-8")
    found = re.search(r"^MemoryMax=(\d+)M", unit, re.M)
    assert found is not None
    return int(found.group(1))


def peak_rss_mb(args: List[str], url: str, timeout: float = 60) -> int:
    """Run the daemon to its end; its peak resident memory (VmHWM) in MB. Never under coverage
    (scripts/test's COVERAGE_PROCESS_START): its tracer and data are not the daemon's memory, and
    tracing a deep value's read cost more CPU than the whole pass."""
    proc = popen_daemon(args, url, COVERAGE_PROCESS_START="")
    peak = 0
    try:
        end = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < end:
            try:
                with open(f"/proc/{proc.pid}/status", encoding="ascii") as status:
                    for line in status:
                        if line.startswith("VmHWM"):
                            peak = max(peak, int(line.split()[1]) // 1024)
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(0.05)
        assert proc.poll() is not None, "the daemon did not finish its pass"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    return peak


# -- 05: an error answer's body ----------------------------------------------------------------------


def test_an_error_answer_is_read_only_up_to_its_cap_however_it_inflates(fake: FakeServer) -> None:
    bomb = gzip.compress(b'{"detail": "' + b"a" * (40 * 1024 * 1024) + b'"}', 6)  # ~40 KB on the wire

    def respond(req: Request, conn: Conn) -> None:
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        conn.send(raw_response(500, bomb, headers))

    fake.on("GET", "/api/sessions/s0/events", respond)
    fake.on("GET", "/api/agents", json_response(200, {"data": []}))
    client = client_for(fake)
    try:
        tracemalloc.start()
        try:
            with pytest.raises(APIError) as caught:
                client.request_stream("GET", "/api/sessions/s0/events")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert caught.value.status_code == 500  # still the server's status, typed
        assert isinstance(caught.value.body, str) and len(caught.value.body) <= 2000  # cut JSON: text
        assert peak < 4 * MAX_ERROR_BODY_BYTES + 2 * 1024 * 1024, peak  # was ~80 MiB (the body, twice)
        assert client.agents.list() == []  # the cut connection is not reused
    finally:
        client.close()


def test_a_small_error_answer_is_still_read_whole(fake: FakeServer) -> None:
    detail = [{"type": "missing", "loc": ["body", "x" * 1000], "msg": "Field required"}] * 20
    fake.on("GET", "/api/agents", json_response(422, {"detail": detail}))
    client = client_for(fake)
    try:
        with pytest.raises(APIError) as caught:
            client.agents.list()
    finally:
        client.close()
    assert caught.value.status_code == 422 and caught.value.body == {"detail": detail}


# -- 06: recording a re-creation -------------------------------------------------------------------


def test_a_recreation_moves_the_archive_a_piece_at_a_time(archive_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    piece = 1024 * 1024
    monkeypatch.setattr(store, "RETIRE_PIECE_CHARS", piece)
    if not archive_db.endswith(".sqlite3"):
        from flux0sync import pgstore  # psycopg is there: the fixture gave a PostgreSQL URL

        monkeypatch.setattr(pgstore, "RETIRE_PIECE_CHARS", piece)
    archive = open_store(archive_db)
    try:
        archive.record_listing(None, [Session.from_dict(LISTING_ENTRY)])
        big = "x" * (256 * 1024)
        events = [RawEvent.from_doc(event("s1", offset, text=big)) for offset in range(40)]  # 10 MiB
        events.append(RawEvent.from_doc(event("s1", 40, event_id="")))  # the empty id sorts first
        for start in range(0, len(events), 8):
            archive.write_batch("s1", events[start : start + 8])
        del events
        tracemalloc.start()
        try:
            listed = archive.record_listing(
                None, [Session.from_dict({**LISTING_ENTRY, "created_at": "2024-06-01T00:00:00Z"})]
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        archive.close()
    assert listed[0].recreated is not None and listed[0].recreated[2] == 41
    assert execute(archive_db, "SELECT count(*) FROM conflicts")[0][0] == 41
    assert execute(archive_db, "SELECT count(*) FROM events")[0][0] == 0
    assert peak < 4 * piece + 2 * 1024 * 1024, peak  # was the whole session: ~25 MiB


# -- 08, 12: several large or deep events at once ----------------------------------------------------


def _serve_gzip_bodies(flux0: FakeFlux0, bodies: Dict[str, bytes]) -> None:
    for sid, body in bodies.items():

        def respond(req: Request, conn: Conn, body: bytes = body) -> None:
            if req.query.get("min_offset", "0") != "0":
                conn.send(raw_response(200, b'{"data": []}', {"content-type": "application/json"}))
                return
            headers = {"content-type": "application/json", "content-encoding": "gzip"}
            conn.send(raw_response(200, body, headers))

        flux0.server.on("GET", f"/api/sessions/{sid}/events", respond)


@linux_only
def test_large_events_read_by_every_worker_stay_within_memorymax(tmp_path: Path, fake_flux0: FakeFlux0) -> None:
    agent = fake_flux0.add_agent()
    text = "a" * (8 * 1024 * 1024)
    bodies = {}
    for _ in range(4):
        sid = fake_flux0.add_session(agent)
        docs = [event(sid, offset, text=text) for offset in range(2)]
        bodies[sid] = gzip.compress(json.dumps({"data": docs}).encode(), 1)
    _serve_gzip_bodies(fake_flux0, bodies)
    db = str(tmp_path / "a.sqlite3")
    peak = peak_rss_mb(["--db", db, "--once", "--workers", "4"], fake_flux0.server.url)
    assert execute(db, "SELECT count(*) FROM events")[0][0] == 8
    assert peak < memory_max_mb(), peak  # was ~300 MB with these, ~380 MB with 12 such events


@linux_only
def test_deep_events_read_by_every_worker_stay_within_memorymax(tmp_path: Path, fake_flux0: FakeFlux0) -> None:
    agent = fake_flux0.add_agent()
    depth = 500_000  # 1,000,000 characters: within MAX_DEEP_CHARS, ~75 MB built
    bodies = {}
    for _ in range(4):
        sid = fake_flux0.add_session(agent)
        head = json.dumps(event(sid, 0))[:-1] + ', "extra": '
        bodies[sid] = gzip.compress(('{"data": [' + head + "[" * depth + "]" * depth + "}]}").encode(), 9)
    _serve_gzip_bodies(fake_flux0, bodies)
    db = str(tmp_path / "a.sqlite3")
    peak = peak_rss_mb(["--db", db, "--once", "--workers", "4"], fake_flux0.server.url)
    assert execute(db, "SELECT count(*) FROM events")[0][0] == 4
    assert peak < memory_max_mb() * 3 // 4, peak  # was ~334 MB


def test_a_deep_value_reserves_its_characters_once_even_when_read_again() -> None:
    taken: List[int] = []
    decoder = Decoder(reserve=taken.append)
    text = "[" * 20_000 + "]" * 20_000
    for cut in (10_000, 30_000):  # cut short: read again as more text arrives
        with pytest.raises(json.JSONDecodeError):
            decoder.raw_decode(text[:cut])
    value, end = decoder.raw_decode(text + " ")
    assert end == len(text) and value is decoder.deep
    assert sum(taken) == len(text) <= MAX_DEEP_CHARS  # each character once
    decoder.raw_decode(text)
    assert sum(taken) == 2 * len(text)  # the next deep value is its own


# -- the budget itself --------------------------------------------------------------------------------


def test_workers_that_each_hold_part_of_an_event_never_wait_on_each_other_forever() -> None:
    budget = Budget(100)
    order: List[str] = []
    gate = threading.Barrier(3)

    def worker(name: str) -> None:
        budget.take(60)  # part of an event: together the two hold more than the budget
        gate.wait()
        budget.take(60)  # the rest: one goes on past the budget, then the other
        order.append(name)
        budget.settle(budget.hand_over())  # the writer stored it

    threads = [threading.Thread(target=worker, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    gate.wait()
    for thread in threads:
        thread.join(10)
    assert sorted(order) == ["a", "b"] and budget.used == 0


def test_a_worker_waits_while_the_writer_holds_the_budget_and_goes_on_once_it_is_given_back() -> None:
    budget = Budget(100)
    budget.take(80)
    handed = budget.hand_over()  # now the writer's
    went_on = threading.Event()

    def worker() -> None:
        budget.take(50)
        went_on.set()

    thread = threading.Thread(target=worker)
    thread.start()
    assert not went_on.wait(0.3)  # the writer will give memory back: wait for it
    budget.settle(handed)
    assert went_on.wait(5)
    thread.join(5)
    assert budget.used == 50


def test_a_cut_job_stops_waiting_for_the_budget() -> None:
    budget = Budget(100)
    budget.take(80)
    budget.hand_over()

    class Cut(Exception):
        pass

    def check() -> None:
        raise Cut

    with pytest.raises(Cut):
        budget.take(50, check)
