"""Regression tests for the hadv28 round (the archive's readers and the daemon's configuration).

Every test names the repro it comes from (``/work/wt/hadv28/repros/NN-*.py`` at the time).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from flux0sync.backend import open_store
from flux0sync.cli import main
from flux0sync.config import ConfigError, load_config
from flux0sync.notify import Notifier
from flux0sync.rows import searchable_text
from flux0sync.service import Daemon, _stderr_is_the_journal
from flux0sync.store import Store, StoreFullError
from flux0sync.sync import Syncer

from tests.archive_events import make_events
from tests.daemon.helpers import client_for, one_session, run_daemon, serve_events_body
from tests.daemon.hostile import event
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, json_response

# -- 03: one character UTF-8 (or PostgreSQL) cannot hold hid every word of a message -------------


def test_a_message_with_a_lone_surrogate_a_stray_byte_or_a_nul_is_still_found_by_search(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    sid = one_session(fake_flux0)
    texts = [
        json.dumps(event(sid, 0, text="please refund my order")).encode(),
        json.dumps(event(sid, 1, text="please refund my order \ud83d")).encode(),  # half an emoji
        json.dumps(event(sid, 2, text="please refund my cafe order")).encode().replace(b"cafe", b"caf\xe9"),
        json.dumps(event(sid, 3, text="please refund my order\x00")).encode(),  # no PostgreSQL text holds NUL
    ]
    serve_events_body(fake_flux0, sid, b'{"data": [' + b", ".join(texts) + b"]}", "whole")
    store = open_store(archive_db)
    try:
        result = Syncer(client_for(fake), store).run_pass()
        assert result.ok, result.errors
        hits = sorted((hit.offset, hit.text) for hit in store.search("refund"))
        assert hits == [
            (0, "please refund my order"),
            (1, "please refund my order \ufffd"),
            (2, "please refund my caf\ufffd order"),
            (
                3,
                "please refund my order\ufffd" if archive_db.startswith("postgresql") else "please refund my order\x00",
            ),
        ]
        assert sorted(hit.offset for hit in store.search("refund my")) == [0, 1, 2, 3]  # by LIKE, not FTS
        raws = [json.loads(raw) for raw in store.iter_raw_events(sid)]
        assert raws[1]["data"]["parts"][0]["content"].endswith("\ud83d")  # raw keeps the exact text
    finally:
        store.close()


# -- 05: status --server counted every session without the cookie of the user it was found under --


def _a_session_of_three_events(fake: FakeServer) -> Tuple[FakeFlux0, str]:
    fake_flux0 = FakeFlux0(fake)
    mine = fake_flux0.add_session(fake_flux0.add_agent())
    fake_flux0.add_events(mine, 3)
    return fake_flux0, mine


def test_status_server_counts_each_session_with_its_users_cookie(tmp_path: Path, fake: FakeServer) -> None:
    fake_flux0, mine = _a_session_of_three_events(fake)
    listing, session_routes = fake.find("GET", "/api/sessions"), fake.find("GET", "/api/sessions/*")

    def alices_only(route: Any) -> Any:  # flux0 shows a user's sessions only under that user's cookie
        def respond(req: Request, conn: Conn) -> None:
            if "flux0_user_sub=alice" in req.headers.get("cookie", ""):
                route(req, conn)
            elif req.path == "/api/sessions":
                json_response(200, {"data": []})(req, conn)
            else:
                json_response(404, {"detail": "Session not found"})(req, conn)

        return respond

    fake.on("GET", "/api/sessions", alices_only(listing))
    fake.on("GET", "/api/sessions/*", alices_only(session_routes))
    db = str(tmp_path / "a.sqlite3")
    synced = run_daemon(["--once", "--db", db, "--user", "alice"], fake.url)
    assert synced.returncode == 0, synced.stderr
    fake_flux0.add_events(mine, 2)  # the archive is 2 events behind now
    status = run_daemon(["status", "--db", db, "--server", "--json"], fake.url)
    assert status.returncode == 0 and status.stderr == "", status.stderr
    (row,) = json.loads(status.stdout)["per_session"]
    assert (row["session_id"], row["found_under_user"], row["behind"]) == (mine, "alice", 2)


# -- 02: a reload that raised max_db_pages left the open archive full ------------------------------


def test_a_reload_applies_max_db_pages_and_synchronous_to_the_open_archive(tmp_path: Path, fake: FakeServer) -> None:
    db = str(tmp_path / "a.sqlite3")
    ini = tmp_path / "sync.ini"
    ini.write_text("[flux0-sync]\nmax_db_pages = 40\nsynchronous = NORMAL\n")
    flags = {"config_file": str(ini), "db_path": db}
    env = {"FLUX0_SERVER_URL": fake.url}
    daemon = Daemon(load_config(flags, env), flags=flags, env=env, notifier=Notifier(""))
    daemon.store = store = Store(db, max_page_count=40)
    try:
        with pytest.raises(StoreFullError):
            store.write_batch("s", make_events("s", 0, 400, text="x" * 2000))
        ini.write_text("[flux0-sync]\nsynchronous = FULL\n")  # no cap now: SQLite's own limit
        daemon._reload = True
        daemon._apply_reload()
        assert daemon.config.max_db_pages is None
        assert store.write_batch("s", make_events("s", 0, 400, text="x" * 2000)).inserted == 400
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.db.execute("PRAGMA max_page_count").fetchone()[0] >= 2**30 - 1  # SQLite's own limit
        ini.write_text("[flux0-sync]\nmax_db_pages = 100000\n")
        daemon._apply_reload()
        assert store.db.execute("PRAGMA max_page_count").fetchone()[0] == 100000
    finally:
        store.close()


# -- 04: a setting given under its name and its alias: the earlier one was dropped silently --------


@pytest.mark.parametrize(
    "lines",
    [["sessions = a", "session_ids = b"], ["user = alice", "users = bob"], ["agents = x", "agent_ids = y"]],
)
def test_a_setting_given_under_two_names_in_the_ini_file_is_refused(tmp_path: Path, lines: List[str]) -> None:
    ini = tmp_path / "sync.ini"
    ini.write_text("[flux0-sync]\n" + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="both set"):
        load_config({"config_file": str(ini)}, {})
    assert main(["--once", "--config", str(ini), "--db", str(tmp_path / "a.sqlite3")]) == 2


def test_a_user_given_in_both_environment_variables_is_refused() -> None:
    with pytest.raises(ConfigError, match="FLUX0_SYNC_USER and FLUX0_SYNC_USERS both set users"):
        load_config({}, {"FLUX0_SYNC_USER": "alice", "FLUX0_SYNC_USERS": "bob"})
    assert load_config({}, {"FLUX0_SYNC_USER": "alice"}).users == ("alice",)


# -- 01: a max_rps so small that --once waited for ever ----------------------------------------------


@pytest.mark.parametrize("rate", ["1e-300", "1e-12", "5e-10"])
def test_a_rate_of_under_one_request_in_31_years_is_refused(tmp_path: Path, rate: str) -> None:
    with pytest.raises(ConfigError, match="max-rps"):
        load_config({"max_rps": rate}, {})
    assert main(["--once", "--max-rps", rate, "--db", str(tmp_path / "a.sqlite3")]) == 2
    assert load_config({"max_rps": "1e-9"}, {}).max_rps == 1e-9


# -- hadv32 01: two lone halves side by side were glued into a character the server never sent -------


def test_lone_surrogates_side_by_side_each_become_a_replacement_character(
    archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    assert searchable_text("a \ud801\udc00 b \udc00\ud801") == "a \ufffd\ufffd b \ufffd\ufffd"
    sid = one_session(fake_flux0)
    two_parts = event(sid, 0)
    two_parts["data"]["parts"] = [
        {"type": "content", "content": "please refund \ud801"},  # (PostgreSQL's C locale: no space, one word)
        {"type": "content", "content": "\udc00 order"},
    ]
    # an escape of a high half, then a byte that is not UTF-8 (read as a low half)
    kept_as_text = json.dumps(event(sid, 1, text="gamma \ud801X delta")).encode().replace(b"X", b"\xff")
    body = b'{"data": [' + json.dumps(two_parts).encode() + b", " + kept_as_text + b"]}"
    serve_events_body(fake_flux0, sid, body, "whole")
    store = open_store(archive_db)
    try:
        assert Syncer(client_for(fake), store).run_pass().ok
        assert [(hit.offset, hit.text) for hit in store.search("refund")] == [(0, "please refund \ufffd\ufffd order")]
        assert [hit.offset for hit in store.search("delta")] == [1]
        assert list(store.search("\U00010400")) == [] and list(store.search("\U000104ff")) == []
    finally:
        store.close()


# -- hadv34 04, 03: status --server's deadline as a flag; journal prefixes only on the journal ------


def test_status_server_takes_session_deadline_as_a_flag(tmp_path: Path, fake: FakeServer) -> None:
    _, mine = _a_session_of_three_events(fake)
    db = str(tmp_path / "a.sqlite3")
    assert run_daemon(["--once", "--db", db], fake.url).returncode == 0
    release = threading.Event()

    def stall(req: Request, conn: Conn) -> None:  # the session's events never come
        release.wait(30)
        conn.close()

    fake.on("GET", f"/api/sessions/{mine}/events", stall)
    try:
        started = time.monotonic()
        status = run_daemon(["status", "--db", db, "--server", "--session-deadline", "1", "--json"], fake.url)
        assert time.monotonic() - started < 10
    finally:
        release.set()
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)["per_session"]
    assert row["behind"] is None and "the total deadline has passed" in status.stderr, status.stderr
    bad = run_daemon(["status", "--db", db, "--server", "--session-deadline", "nan"], fake.url)
    assert bad.returncode == 2 and "session-deadline" in bad.stderr


def test_journal_prefixes_only_when_stderr_is_the_journals_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "stream", "w") as journal, open(tmp_path / "other", "w") as other:
        found = os.fstat(journal.fileno())
        monkeypatch.setattr(sys, "stderr", journal)
        for value, expected in (
            (f"{found.st_dev}:{found.st_ino}", True),
            (f"{found.st_dev}:{found.st_ino + 1}", False),  # a parent service's stream, inherited
            ("", False),
            ("garbled", False),
            ("1:x", False),
        ):
            monkeypatch.setenv("JOURNAL_STREAM", value)
            assert _stderr_is_the_journal() is expected, value
        monkeypatch.setattr(sys, "stderr", other)
        monkeypatch.setenv("JOURNAL_STREAM", f"{found.st_dev}:{found.st_ino}")
        assert _stderr_is_the_journal() is False


# -- hadv35 03: seconds the daemon took but its client's Timeout refused later --------------------------


@pytest.mark.parametrize("name", ["timeout", "session_deadline"])
def test_seconds_that_become_a_client_timeout_are_bounded_where_they_are_read(name: str) -> None:
    with pytest.raises(ConfigError, match=name.replace("_", "-")):
        load_config({name: "5e8"}, {})  # under the 1e9 bound of other seconds, past a Timeout's 1e8
    assert getattr(load_config({name: "1e8"}, {}), name) == 1e8
