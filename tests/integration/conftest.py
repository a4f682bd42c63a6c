"""Session-scoped real flux0 server (installed into a cached Python 3.13 venv)."""

from __future__ import annotations

import os
import sys
from typing import Iterator

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
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
    server.stop()


@pytest.fixture(scope="session")
def server_url(flux0_server: Flux0Server) -> str:
    return flux0_server.url


def pytest_collection_modifyitems(items: list) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
