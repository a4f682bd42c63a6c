"""Session-scoped real flux0 server (installed into a cached Python 3.13 venv)."""

from __future__ import annotations

import os
import sys
import uuid
from typing import Dict, Iterator

import pytest

from tests.conftest import ROOT, subprocess_env

sys.path.insert(0, str(ROOT / "scripts"))
import leftovers
from flux0_server import Flux0Server, NoSuitablePython, ServerUnavailable


def start_or_skip(**kwargs: object) -> Flux0Server:
    try:
        return Flux0Server(**kwargs).start()  # type: ignore[arg-type]
    except NoSuitablePython as exc:
        pytest.skip(f"real flux0 server unavailable: {exc}")
    except ServerUnavailable as exc:
        # A Python 3.13 exists, so the server should run: unless told otherwise, that is a failure.
        if os.environ.get("FLUX0LITE_REQUIRE_SERVER", "1") == "1":
            pytest.fail(f"the real flux0 server is required here but unavailable: {exc}")
        pytest.skip(f"real flux0 server unavailable: {exc}")


@pytest.fixture(scope="session")
def flux0_server() -> Iterator[Flux0Server]:
    server = start_or_skip()
    yield server
    server.close()


@pytest.fixture(scope="session")
def server_url(flux0_server: Flux0Server) -> str:
    return flux0_server.url


@pytest.fixture
def run_marker() -> Iterator[str]:
    """NAME=VALUE for a subprocess's environment: all it starts inherits it, so leftovers.find sees all."""
    marker = f"FLUX0LITE_TEST_PROBE={uuid.uuid4().hex}"
    yield marker
    leftovers.kill([pid for pid, _, _ in leftovers.find(marker)])  # a failed test leaves nothing either


def marked_env(marker: str) -> Dict[str, str]:
    name, _, value = marker.partition("=")
    return subprocess_env(**{name: value})


def pytest_collection_modifyitems(items: list) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
