"""Fixtures for the compat layer's tests: the real server (shared with tests/integration) and
a cached Python 3.13 venv with httpx and the official flux0 CLI, for the parts that need them."""

from __future__ import annotations

import fcntl
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import flux0_server, server_url  # noqa: F401 (re-exported fixtures)

COMPAT_VENV = ROOT / ".cache" / "venv-compat"
# flux0-cli declares flux0-client (not on PyPI) and imports pydantic without declaring it.
CLI_DEPENDENCIES = ["httpx", "click>=8.1.8", "jsonpath-ng>=1.7.0", "pyyaml>=6.0.2", "rich>=13.9.4", "pydantic"]
PROBE = "import httpx, click, jsonpath_ng, yaml, rich, pydantic, flux0_cli"


def skip_with_reason(reason: str) -> None:
    print(f"SKIPPED: {reason}", file=sys.stderr)
    pytest.skip(reason)


def _venv_ready(python: Path) -> bool:
    return python.exists() and subprocess.run([str(python), "-c", PROBE], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def compat_venv_python() -> Path:
    """Python 3.13 with httpx and flux0-cli (installed with --no-deps, plus its other dependencies)."""
    python = COMPAT_VENV / "bin" / "python"
    if _venv_ready(python):
        return python
    # scripts/test runs two Pythons at once: one builds the venv while the other waits for it
    COMPAT_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(str(COMPAT_VENV) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _venv_ready(python):
            _build_compat_venv(python)
    return python


def _build_compat_venv(python: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from flux0_server import NoSuitablePython, find_python

    try:
        base = find_python()
    except NoSuitablePython as exc:
        skip_with_reason(f"flux0-cli needs Python >= 3.13: {exc}")
    steps = [
        [base, "-m", "venv", "--clear", str(COMPAT_VENV)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *CLI_DEPENDENCIES],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "flux0-cli"],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            skip_with_reason(f"cannot build {COMPAT_VENV} (is PyPI reachable?): {exc}")
        if done.returncode != 0:
            skip_with_reason(f"cannot build {COMPAT_VENV} (is PyPI reachable?): {done.stderr[-400:]}")
    if not _venv_ready(python):
        skip_with_reason(f"{COMPAT_VENV} was built but cannot import flux0-cli and httpx")


@pytest.fixture(scope="session")
def httpx_python(request: pytest.FixtureRequest) -> Path:
    """A Python that can import httpx: this one if it can, else the cached compat venv."""
    if importlib.util.find_spec("httpx") is not None:
        return Path(sys.executable)
    path: Path = request.getfixturevalue("compat_venv_python")
    return path


@pytest.fixture
def sdk_env(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:  # noqa: F811
    """``Flux0()`` with no arguments reaches the test server, through ``$FLUX0_SERVER_URL``."""
    monkeypatch.setenv("FLUX0_SERVER_URL", server_url)
    yield server_url
