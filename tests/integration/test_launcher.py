"""scripts/flux0_server.py run: a signal stops the server it started, whole process group included."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import leftovers
import pytest
from flux0_server import Flux0Server, free_port

from tests.conftest import ROOT
from tests.integration.conftest import marked_env


def test_sighup_stops_the_server_and_its_group(flux0_server: Flux0Server, run_marker: str) -> None:
    # SIGTERM is what scripts/demo's trap sends (tests/integration/test_demo.py); this is the launcher
    # itself, on the Python under test, told to stop as a closed terminal would
    if not Path("/proc/self/environ").exists():
        pytest.skip("finding a run's processes needs Linux's /proc")
    command = [sys.executable, str(ROOT / "scripts" / "flux0_server.py"), "run", "--port", str(free_port())]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=marked_env(run_marker)
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()  # printed once the server answers
        assert "echo agent at" in ready, ready + proc.stdout.read()[-2000:]
        assert any("serve_loopback" in command for _, _, command in leftovers.find(run_marker))
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert leftovers.wait_until_gone(run_marker, grace=15) == []
