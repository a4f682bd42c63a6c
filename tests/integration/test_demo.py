"""The README's "run the main job" command, end to end, exactly as written."""

from __future__ import annotations

import subprocess

from flux0_server import Flux0Server

from tests.conftest import ROOT, subprocess_env


def test_scripts_demo_runs_clean(flux0_server: Flux0Server) -> None:
    # the fixture proves the server can be installed and started here (else it skips or fails)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(),
        cwd=str(ROOT),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Echo: Hello flux0, this reply streams token by token" in proc.stdout
    assert "demo finished" in proc.stdout
