from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "flux0-sync.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_unit_has_the_contract_the_daemon_implements() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["DynamicUser"] == "yes" and service["StateDirectory"] == "flux0-sync"
    assert service["Restart"] == "on-failure" and "WatchdogSec" in service
    assert service["ExecReload"].startswith("/bin/kill -HUP")
    assert set(service["RestartPreventExitStatus"].split()) == {"2", "3"}
    assert "-m flux0sync" in service["ExecStart"]


@pytest.fixture
def unit_alone(tmp_path: Path) -> Path:
    """The unit copied on its own, as the README's first recipe installs it: systemd-analyze given
    ``systemd/flux0-sync.service`` also reads the PostgreSQL drop-in beside it (hadv34 01)."""
    alone = tmp_path / UNIT.name
    shutil.copy(UNIT, alone)
    return alone


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_is_clean(unit_alone: Path) -> None:
    proc = subprocess.run(["systemd-analyze", "verify", str(unit_alone)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_security_exposure_is_the_readmes_1_1(unit_alone: Path) -> None:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit_alone)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert match, proc.stdout[-500:] + proc.stderr
    assert float(match.group(1)) <= 1.1
