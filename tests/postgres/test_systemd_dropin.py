"""The PostgreSQL drop-in keeps the unit valid and hardened (systemd/flux0-sync.service.d/postgres.conf)."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "flux0-sync.service"
DROP_IN = ROOT / "systemd" / "flux0-sync.service.d" / "postgres.conf"
needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def _unit_dir(tmp_path: Path) -> dict:
    """A unit search path holding the unit and its drop-in, as /etc/systemd/system would."""
    shutil.copy(UNIT, tmp_path / UNIT.name)
    (tmp_path / "flux0-sync.service.d").mkdir()
    shutil.copy(DROP_IN, tmp_path / "flux0-sync.service.d" / DROP_IN.name)
    return {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}


def test_drop_in_sets_what_the_daemon_reads() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DROP_IN)
    service = parser["Service"]
    environment = dict(line.split("=", 1) for line in re.findall(r"^Environment=(\S+)$", DROP_IN.read_text(), re.M))
    database = urlsplit(environment["FLUX0_SYNC_DB"])
    assert database.scheme == "postgresql" and database.password is None  # the password comes as a credential
    assert environment["PGPASSFILE"] == "%d/pgpass" and service["LoadCredential"].startswith("pgpass:")
    assert environment["PYTHONPATH"].endswith("/opt/flux0lite/pydeps")
    assert "FLUX0_SYNC_SHARD=0/4" in DROP_IN.read_text()


@needs_systemd
def test_unit_with_drop_in_verifies_clean_and_stays_hardened(tmp_path: Path) -> None:
    env = _unit_dir(tmp_path)
    verify = subprocess.run(
        ["systemd-analyze", "verify", "flux0-sync.service"], capture_output=True, text=True, timeout=60, env=env
    )
    assert verify.returncode == 0 and verify.stdout.strip() == "" and verify.stderr.strip() == "", verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", "flux0-sync.service"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert match, security.stdout[-500:] + security.stderr
    assert float(match.group(1)) <= 1.2  # the README's figure with the drop-in
    assert "non-localhost" in security.stdout  # proof the drop-in was read: it opens the database's address
