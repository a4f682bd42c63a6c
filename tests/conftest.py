from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
for entry in (str(ROOT), str(ROOT / "daemon")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from tests.fakeserver import FakeFlux0, FakeServer  # noqa: E402

# scripts/test runs the slow crash, property and demo tests at full strength on the newest Python only and
# a quick variant on the others (FLUX0LITE_FULL_STRENGTH=0); a plain `pytest` run is at full strength.
FULL_STRENGTH = os.environ.get("FLUX0LITE_FULL_STRENGTH", "1") != "0"
HYPOTHESIS_EXAMPLES = {"full": 300, "quick": 40}

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test extra: the property tests report its absence themselves
    pass
else:
    for _name, _examples in HYPOTHESIS_EXAMPLES.items():
        settings.register_profile(
            _name, max_examples=_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        )
    settings.load_profile("full" if FULL_STRENGTH else "quick")


@dataclass(frozen=True)
class Strength:
    """How hard a slow test pushes in this run; see FULL_STRENGTH."""

    full: bool

    def pick(self, full: int, quick: int) -> int:
        """The number of rounds/items/kills to use: `full` at full strength, else `quick`."""
        return full if self.full else quick


@pytest.fixture
def strength() -> Strength:
    return Strength(FULL_STRENGTH)


def pytest_report_header() -> List[str]:
    profile = "full" if FULL_STRENGTH else "quick"
    return [f"flux0lite strength: {profile} (hypothesis profile {profile!r}, {HYPOTHESIS_EXAMPLES[profile]} examples)"]


def _quick_examples(test: object) -> None:
    """The quick variant of a property test that sets its own max_examples: scaled as the profiles
    are (40 of 300), never below the quick profile's. Hypothesis reads a test's settings from this
    attribute when the test runs; without it (another hypothesis) the test keeps its own count."""
    own = getattr(test, "_hypothesis_internal_use_settings", None)
    quick, full = HYPOTHESIS_EXAMPLES["quick"], HYPOTHESIS_EXAMPLES["full"]
    if own is None or own.max_examples <= quick:
        return
    scaled = max(quick, own.max_examples * quick // full)
    test._hypothesis_internal_use_settings = settings(own, max_examples=scaled)  # type: ignore[attr-defined]


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    if FULL_STRENGTH:
        return
    for item in items:
        function = getattr(item, "obj", None)
        if getattr(function, "is_hypothesis_test", False):
            _quick_examples(getattr(function, "__func__", function))
        marker = item.get_closest_marker("full_strength_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"runs at full strength only (the newest Python): {reason}"))


def pytest_collection_finish(session: pytest.Session) -> None:
    # The modules, test functions and hypothesis strategies collected live as long as the process:
    # kept out of every collection the tests' garbage triggers (~0.7 s of CPU per Python's run).
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    # and out of the interpreter's last full collection at exit, as flux0lite.__main__ does
    gc.freeze()


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


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 10.0, every: float = 0.01) -> None:
    """Return once ``condition()`` holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def subprocess_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX0_")}
    paths = [str(ROOT), str(ROOT / "daemon")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


# FLUX0LITE_TEST_CPU=FILE: each test's CPU seconds (this process, and the children it waited for)
# appended to FILE, tab-separated; to find where the suite's CPU time goes (wall time mostly waits).
_CPU_LOG = os.environ.get("FLUX0LITE_TEST_CPU", "")


if _CPU_LOG:
    import resource

    def _cpu() -> tuple:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item: pytest.Item, nextitem: object) -> Iterator[None]:
        own, children = _cpu()
        yield
        own_after, children_after = _cpu()
        with open(_CPU_LOG, "a") as log:
            log.write(f"{item.nodeid}\t{own_after - own:.3f}\t{children_after - children:.3f}\n")
