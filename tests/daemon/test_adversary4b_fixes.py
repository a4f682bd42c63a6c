"""Defects a fourth adversary found in the daemon's fixes of issue 15, each pinned by a test.

Every test names the repro it comes from (``/work/wt/hadv4/repros/NN-*.py`` at the time):
``--session`` lookups (07, 05), a listing entry the JSON parser refuses (08), and poll times
read back after the wall clock was stepped back (01).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from flux0sync.backend import open_store
from flux0sync.engine import Engine
from flux0sync.jobs import MAX_ID_CHARS
from flux0sync.jsonread import Decoder
from flux0sync.schedule import Policy, Schedule
from hypothesis import given
from hypothesis import strategies as st

from tests.daemon.helpers import (
    StopWhen,
    archive_beside_a_poisoned_agents_entry,
    archive_beside_a_poisoned_sessions_entry,
    execute,
    offsets,
    quick_engine,
)
from tests.fakeserver import FakeFlux0, FakeServer, json_response, sequence

BIG = "9" * 5000  # past CPython's 4,300-digit int-from-text limit


engine = functools.partial(quick_engine, idle_max=1.0)


def run_until(target: Engine, done: Any, seconds: float = 20.0) -> None:
    target.should_stop = StopWhen(done, seconds)
    target.run()


# -- 07: a configured session whose lookup fails ------------------------------------------------


# 429/502/503/504 say the whole server is busy: --once waits them out, and a storm ends the pass
# (tests/daemon/test_adversary4a_fixes.py); any other failed lookup fails that session alone.
@pytest.mark.parametrize("status", [500, 403, 401])
def test_a_failed_lookup_fails_the_once_pass_and_the_other_sessions_are_still_polled(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    agent = fake_flux0.add_agent()
    good, blip = fake_flux0.add_session(agent), fake_flux0.add_session(agent)
    for sid in (good, blip):
        fake_flux0.add_events(sid, 2)
    fake.on("GET", f"/api/sessions/{blip}", json_response(status, {"detail": "busy"}))
    db = str(tmp_path / "a.sqlite3")
    archive = open_store(db)
    try:
        with caplog.at_level(logging.WARNING, logger="flux0sync"):
            totals = engine(archive, fake, once=True, session_ids=[good, blip]).run()
    finally:
        archive.close()
    assert not totals.ok  # --once exits 1: not every session synced
    assert offsets(db, good) == [0, 1] and offsets(db, blip) == []
    assert any(f"lookup of session {blip} failed" in r.getMessage() for r in caplog.records)


def test_the_daemon_tries_a_failed_lookup_again_and_archives_the_session(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    good, blip = fake_flux0.add_session(agent), fake_flux0.add_session(agent)
    for sid in (good, blip):
        fake_flux0.add_events(sid, 2)
    fine = fake.find("GET", f"/api/sessions/{blip}")
    assert fine is not None
    fake.on("GET", f"/api/sessions/{blip}", sequence(json_response(503, {"detail": "busy"}), fine))
    db = str(tmp_path / "a.sqlite3")
    archive = open_store(db)
    try:
        origin = time.monotonic()
        four_times_as_fast = lambda: origin + (time.monotonic() - origin) * 4  # noqa: E731  # the 5 s are 1.25 s
        target = engine(archive, fake, session_ids=[good, blip], discover_interval=60.0, clock=four_times_as_fast)
        run_until(target, lambda: len(offsets(db, blip)) == 2)
    finally:
        archive.close()
    assert offsets(db, good) == [0, 1] and offsets(db, blip) == [0, 1]  # retried (5 s later), not dropped


# -- 05: an answer that is not the configured session -------------------------------------------


def test_an_answer_carrying_another_session_is_a_failed_lookup_and_nothing_else_is_archived(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture
) -> None:
    agent = fake_flux0.add_agent()
    asked, other = fake_flux0.add_session(agent), fake_flux0.add_session(agent)
    for sid in (asked, other):
        fake_flux0.add_events(sid, 2)
    fake.on("GET", f"/api/sessions/{asked}", json_response(200, fake_flux0.sessions[other]))
    db = str(tmp_path / "a.sqlite3")
    archive = open_store(db)
    try:
        with caplog.at_level(logging.WARNING, logger="flux0sync"):
            totals = engine(archive, fake, once=True, session_ids=[asked]).run()
    finally:
        archive.close()
    assert not totals.ok
    assert offsets(db, asked) == [] and offsets(db, other) == []
    assert execute(db, "SELECT count(*) FROM sessions") == [(0,)]
    said = [r.getMessage() for r in caplog.records if f"lookup of session {asked} failed" in r.getMessage()]
    assert len(said) == 1 and "another session" in said[0]


# -- 08: one listing entry with a number the parser refuses -------------------------------------


# A listing entry holding valid JSON that CPython's decoder refuses: an integer past its
# 4,300-digit limit (08), or a value nested deeper than its recursion (hadv4 09, read without
# recursion since): that entry alone is left out, with one warning.
_DEPTH = 100_000
_POISONS = {
    "huge-number": (BIG, "4,300 digits"),
    "deep": ("[" * _DEPTH + "]" * _DEPTH, "nested deeper"),
}


@pytest.mark.parametrize("poison", sorted(_POISONS))
def test_one_sessions_entry_json_cannot_read_is_left_out_alone_with_one_warning(
    poison: str, tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, caplog: pytest.LogCaptureFixture
) -> None:
    value, warning = _POISONS[poison]
    db = str(tmp_path / "a.sqlite3")
    archived, poisoned, logged = archive_beside_a_poisoned_sessions_entry(
        fake, fake_flux0, db, caplog, value, sessions=5, seconds=10.0
    )
    assert archived == {sid: ([] if sid == poisoned else [0, 1]) for sid in archived}
    assert len([m for m in logged if warning in m]) == 1  # once, however many rounds
    assert not [m for m in logged if "failed" in m]


@pytest.mark.parametrize("poison", sorted(_POISONS))
def test_one_agents_entry_json_cannot_read_is_left_out_alone(
    poison: str, tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    db = str(tmp_path / "a.sqlite3")
    totals, kept, sid = archive_beside_a_poisoned_agents_entry(fake, fake_flux0, db, _POISONS[poison][0])
    assert totals.ok and offsets(db, sid) == [0]
    assert execute(db, "SELECT id FROM agents") == [(kept,)]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON)
def test_the_daemons_decoder_reads_what_json_reads_and_counts_nothing_unusual(value: Any) -> None:
    text = json.dumps(value)
    decoder = Decoder()
    assert decoder.decode(text) == json.loads(text) and decoder.unusual == 0


# -- 01: poll times read back after the clock was stepped back ---------------------------------


def test_a_restored_poll_time_is_capped_by_its_own_levels_longest_delay() -> None:
    policy = Policy(interval=2.0, idle_max=3600.0, jitter=0.1, max_backoff=300.0)
    schedule = Schedule(policy)
    now = 1_000_000.0
    stepped = now + 86400.0  # saved before the wall clock went back a day
    for level in (0, 3, 62):
        schedule.add(f"level {level}", due_at=stepped, level=level, now=now)
    assert schedule.state("level 0") == (now + 2.0 * 1.1, 0)  # active: within --interval, jittered
    assert schedule.state("level 3") == (now + 16.0 * 1.1, 3)
    assert schedule.state("level 62") == (now + 3600.0 * 1.1, 62)  # idle: within --idle-max
    schedule.add("due soon", due_at=now + 1.0, level=5, now=now)
    assert schedule.state("due soon") == (now + 1.0, 5)  # a time within the cap is kept


def test_a_configured_session_id_over_the_id_bound_is_a_failed_lookup_without_a_request(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    agent = fake_flux0.add_agent()
    good = fake_flux0.add_session(agent)
    fake_flux0.add_events(good, 1)
    long_id = "x" * (MAX_ID_CHARS + 1)
    db = str(tmp_path / "a.sqlite3")
    archive = open_store(db)
    try:
        totals = engine(archive, fake, once=True, session_ids=[long_id, good]).run()
    finally:
        archive.close()
    assert not totals.ok and offsets(db, good) == [0]
    assert not [r for r in fake.requests if long_id in r.path]
