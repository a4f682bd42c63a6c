"""The README's "run the main job" command, end to end, exactly as written, and that it leaves nothing."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import leftovers
import pytest
from flux0_server import Flux0Server

from tests.conftest import ROOT
from tests.integration.conftest import marked_env

DEMO = ["bash", str(ROOT / "scripts" / "demo")]
SAME_ON_EVERY_PYTHON = "scripts/demo runs python3 from PATH whatever Python runs pytest: another run repeats this one"


@pytest.mark.full_strength_only(SAME_ON_EVERY_PYTHON)
def test_scripts_demo_runs_clean(flux0_server: Flux0Server, run_marker: str) -> None:
    # the fixture proves the server can be installed and started here (else it skips or fails)
    proc = subprocess.run(
        DEMO,
        capture_output=True,
        text=True,
        timeout=600,
        env=marked_env(run_marker),
        cwd=str(ROOT),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Echo: Hello flux0, this reply streams token by token" in proc.stdout
    assert "demo finished" in proc.stdout
    assert leftovers.wait_until_gone(run_marker, grace=15) == []


@pytest.mark.full_strength_only(SAME_ON_EVERY_PYTHON)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_scripts_demo_stopped_mid_run_leaves_nothing(flux0_server: Flux0Server, run_marker: str, signum: int) -> None:
    if not Path("/proc/self/environ").exists():
        pytest.skip("finding a run's processes needs Linux's /proc")
    proc = subprocess.Popen(
        DEMO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=marked_env(run_marker),
        cwd=str(ROOT),
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # `set -x` traces the first CLI command once the server answers
            seen.append(line)
            if "flux0lite agents create" in line:
                break
        assert proc.poll() is None, "".join(seen)[-2000:]
        assert leftovers.find(run_marker), "the demo's processes must be found while it runs"
        proc.send_signal(signum)  # to the shell alone, as `kill` or a supervisor's timeout would
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode in (-signum, 128 + signum)
    assert leftovers.wait_until_gone(run_marker, grace=15) == []
