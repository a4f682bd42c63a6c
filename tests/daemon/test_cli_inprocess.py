"""flux0-sync's command line, run in-process (fast, and measured by coverage directly)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import List, Tuple

import pytest
from flux0sync.cli import main
from flux0sync.config import load_config
from flux0sync.notify import Notifier
from flux0sync.service import Daemon, setup_logging

from tests.daemon.helpers import assert_archive_equals_server
from tests.fakeserver import FakeFlux0, FakeServer


def run(args: List[str]) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def archive(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, monkeypatch: pytest.MonkeyPatch
) -> Tuple[str, str]:
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent, "t")
    fake_flux0.add_events(sid, 8, text="refund please")
    db = str(tmp_path / "a.sqlite3")
    monkeypatch.setenv("FLUX0_SERVER_URL", fake.url)
    config = load_config({"db_path": db}, {"FLUX0_SERVER_URL": fake.url})
    assert Daemon(config, once=True, notifier=Notifier("")).run() == 0
    assert_archive_equals_server(db, fake_flux0)
    return db, sid


def test_once_in_process_then_read_commands(archive: Tuple[str, str], fake_flux0: FakeFlux0) -> None:
    db, sid = archive
    code, out, _ = run(["status", "--db", db])
    assert code == 0 and "8 events, 1 sessions, 1 agents" in out and sid in out
    code, out, _ = run(["status", "--db", db, "--json"])
    assert json.loads(out)["per_session"][0]["events"] == 8
    fake_flux0.add_events(sid, 2)
    code, out, _ = run(["status", "--db", db, "--server"])
    assert code == 0 and "BEHIND" in out and out.splitlines()[-1].split()[-1] == "2"
    code, out, _ = run(["export", sid, "--db", db])
    assert [json.loads(line)["offset"] for line in out.splitlines()] == list(range(8))
    code, out, _ = run(["export", sid, "--db", db, "--json"])
    assert len(json.loads(out)) == 8
    code, out, _ = run(["search", "refund", "--db", db, "--limit", "3"])
    assert code == 0 and len(out.splitlines()) == 3
    code, out, _ = run(["search", "refund", "--db", db, "--json"])
    assert len(json.loads(out)) == 8
    assert run(["search", "nothing-like-this", "--db", db])[0] == 1
    code, _, err = run(["export", "nosuchsess", "--db", db])
    assert code == 1 and "not in" in err


def test_errors_of_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(["--version"])[0] == 0
    code, _, err = run(["--interval", "-5", "--db", str(tmp_path / "x.sqlite3")])
    assert code == 2 and "interval" in err
    code, _, err = run(["status", "--db", str(tmp_path / "missing.sqlite3")])
    assert code == 3 and "no archive" in err
    bad = tmp_path / "bad.sqlite3"
    bad.write_text("not a database")
    code, _, err = run(["status", "--db", str(bad)])
    assert code == 3 and "not a SQLite database" in err
    code, _, err = run(["--config", str(tmp_path / "missing.ini")])
    assert code == 2 and "cannot read" in err


def test_reload_keeps_the_archive_path_and_survives_bad_config(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0
) -> None:
    ini = tmp_path / "sync.ini"
    ini.write_text("[flux0-sync]\ninterval = 5\n")
    db = str(tmp_path / "a.sqlite3")
    flags = {"config_file": str(ini), "db_path": db}
    env = {"FLUX0_SERVER_URL": fake.url}
    daemon = Daemon(load_config(flags, env), flags=flags, env=env, notifier=Notifier(""))
    from flux0sync.store import Store

    daemon.store = Store(db)
    ini.write_text("[flux0-sync]\ninterval = 0.5\nworkers = 2\ndb = /elsewhere.sqlite3\n")
    daemon._reload = True
    daemon._apply_reload()
    assert daemon.config.interval == 0.5 and daemon.config.db_path == db and not daemon._reload
    engine = daemon._make_engine()
    assert engine.workers == 2 and engine.policy.interval == 0.5
    ini.write_text("[flux0-sync]\ninterval = nope\n")
    daemon._reload = True
    daemon._apply_reload()
    assert daemon.config.interval == 0.5
    daemon.store.close()


def test_journal_log_format(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    with monkeypatch.context() as journal:  # (capsys's stderr is no file: no journal stream can match it)
        journal.setattr("flux0sync.service._stderr_is_the_journal", lambda: True)
        setup_logging("DEBUG")
    logging.getLogger("flux0sync").warning("two\nlines")
    setup_logging("INFO")
    logging.getLogger("flux0sync").info("plain")
    err = capsys.readouterr().err
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_flux0sync", False):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    assert "<4>two | lines" in err and "INFO flux0sync: plain" in err
