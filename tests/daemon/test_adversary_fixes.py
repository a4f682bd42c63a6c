"""Defects an adversary found in the daemon, each pinned by the test that first failed on it.

Every test names the repro it comes from (``/work/wt/hadv/repros/NN-*.py`` at the time); each
checks that a hostile answer costs at most its own session and loses nothing.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List

from flux0sync.backend import open_store
from flux0sync.sync import Syncer

from flux0lite import Flux0, Retry, Timeout
from tests.daemon.helpers import archive_rows
from tests.daemon.hostile import event, serve_events
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, raw_response

MAX_OFFSET = 2**63 - 1


def client_for(fake: FakeServer, timeout: float = 2) -> Flux0:
    return Flux0(fake.url, timeout=Timeout(timeout, timeout), retry=Retry(total=0))


def one_session(fake_flux0: FakeFlux0) -> str:
    return fake_flux0.add_session(fake_flux0.add_agent())


def offsets(db: str, session_id: str) -> List[int]:
    return [o for o, _ in archive_rows(db).get(session_id, [])]


def serve_ignoring_min_offset(fake_flux0: FakeFlux0, session_id: str, docs: Callable[[], List[Dict[str, Any]]]) -> None:
    """A hostile server: every answer holds every event, whatever ``min_offset`` asks for."""

    def respond(req: Request, conn: Conn) -> None:
        body = json.dumps({"data": docs()}).encode()
        conn.send(raw_response(200, body, {"content-type": "application/json"}))

    fake_flux0.server.on("GET", f"/api/sessions/{session_id}/events", respond)


# -- 01: the largest storable offset -------------------------------------------------------------


def test_a_checkpoint_at_the_largest_offset_neither_crashes_nor_stops_later_passes(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = one_session(fake_flux0)
    docs = [event(sid, 0), event(sid, MAX_OFFSET)]
    serve_ignoring_min_offset(fake_flux0, sid, lambda: docs)
    store = open_store(archive_db)
    try:
        syncer = Syncer(client_for(fake), store, gap_patience=0)
        for _ in range(3):  # the first pass passes the hole; the next ones start from 2**63 - 1
            result = syncer.run_pass()
            assert result.ok, result.errors
        assert store.checkpoint(sid) == MAX_OFFSET
        assert offsets(archive_db, sid) == [0, MAX_OFFSET]
    finally:
        store.close()
