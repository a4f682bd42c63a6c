from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
for entry in (str(ROOT), str(ROOT / "daemon")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from tests.fakeserver import FakeFlux0, FakeServer  # noqa: E402


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared fixture {path} is not present")
    return path


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture
def fake_flux0(fake: FakeServer) -> FakeFlux0:
    return FakeFlux0(fake)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLUX0_SERVER_URL", "FLUX0_TOKEN", "FLUX0_DEBUG", "FLUX0_SYNC_DB", "FLUX0_SYNC_INTERVAL"):
        monkeypatch.delenv(name, raising=False)


def subprocess_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX0_")}
    paths = [str(ROOT), str(ROOT / "daemon")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env
