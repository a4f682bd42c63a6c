"""Settings of the adaptive daemon: users, workers, the rate cap, the schedule; and `status`."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from flux0sync.cli import main
from flux0sync.config import ENV_VARS, Config, ConfigError, load_config
from flux0sync.service import policy_for

from tests.daemon.helpers import run_daemon
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, json_response


def run(argv: List[str]) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_users_come_from_flags_ini_and_environment(tmp_path: Path) -> None:
    assert load_config({"users": ["alice", "bob", "alice"]}, {}).users == ("alice", "bob")
    ini = tmp_path / "sync.ini"
    ini.write_text("[flux0-sync]\nusers = carol, dave\n")
    assert load_config({"config_file": str(ini)}, {}).users == ("carol", "dave")
    ini.write_text("[flux0-sync]\nuser = erin\n")  # the older, singular key
    assert load_config({"config_file": str(ini)}, {}).users == ("erin",)
    assert load_config({}, {"FLUX0_SYNC_USERS": "f g"}).users == ("f", "g")
    assert load_config({}, {"FLUX0_SYNC_USER": "h"}).users == ("h",)
    with pytest.raises(ConfigError, match="both set users"):  # neither may hide the other
        load_config({}, {"FLUX0_SYNC_USER": "h", "FLUX0_SYNC_USERS": "i"})
    assert Config().users == ()


@pytest.mark.parametrize(
    "flags",
    [
        {"users": ["a b"]},
        {"users": ['x"y']},
        {"users": ["semi;colon"]},
        {"users": ["tab\there"]},
        {"workers": "0"},
        {"workers": "17"},
        {"max_rps": "0"},
        {"max_rps": "nan"},
        {"idle_max": "-1"},
        {"idle_max": "inf"},
        {"discover_interval": "0"},
        {"jitter": "1.5"},
    ],
)
def test_bad_scale_settings_are_configuration_errors(flags: Dict[str, object]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(flags, {})
    assert ENV_VARS[next(iter(flags))] in str(caught.value)  # the message names the setting


def test_defaults_and_the_policy_they_make() -> None:
    config = load_config({}, {})
    assert (config.workers, config.max_rps, config.idle_max, config.discover_interval) == (4, 20.0, 3600.0, 60.0)
    policy = policy_for(load_config({"interval": 3600.0}, {}))
    assert policy.idle_max == 3600.0  # an interval longer than idle_max wins, it is not an error


def test_bad_flags_exit_2(tmp_path: Path) -> None:
    for argv in (["--workers", "0"], ["--max-rps", "-3"], ["--user", "two words"], ["--idle-max", "nan"]):
        code, _, err = run([*argv, "--once", "--db", str(tmp_path / "a.sqlite3")])
        assert code == 2 and "configuration error" in err, (argv, err)


def test_status_shows_next_poll_and_user(archive_db: str, fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 2)

    def only_for_alice(req: Request, conn: Conn) -> None:
        mine = "flux0_user_sub=alice" in req.headers.get("cookie", "")
        json_response(200, {"data": list(fake_flux0.sessions.values()) if mine else []})(req, conn)

    fake.on("GET", "/api/sessions", only_for_alice)
    db = archive_db
    proc = run_daemon(["--once", "--db", db, "--user", "bob", "--user", "alice", "--workers", "2"], fake.url)
    assert proc.returncode == 0, proc.stderr
    code, out, _ = run(["status", "--db", db])
    assert code == 0
    header, row = out.splitlines()[1:3]
    assert header.split() == ["SESSION", "EVENTS", "LAST_OFFSET", "LAST_SYNC", "NEXT_POLL", "USER", "ERRORS", "GAPS"]
    assert row.split()[0] == sid and re.search(r" in \d+s ", row) and "alice" in row  # next poll in ~10 s
    code, out, _ = run(["status", "--db", db, "--json"])
    (entry,) = json.loads(out)["per_session"]
    assert entry["found_under_user"] == "alice" and entry["idle_level"] == 0 and entry["next_poll_at"] > 0
