"""What a command's first request imports (issue 17), and the plain value classes that keep
``dataclasses`` off that path behaving as the frozen dataclasses they replaced."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import pytest

from flux0lite import Retry, Timeout
from flux0lite.errors import ConfigError
from flux0lite.frozen import FrozenInstanceError
from flux0lite.proxy import Proxy, Route
from flux0lite.urls import Origin
from tests.conftest import ROOT, subprocess_env
from tests.fakeserver import FakeFlux0


def _new_modules(code: str) -> str:
    probe = f"import sys\nbefore = set(sys.modules)\n{code}\nprint(sorted(set(sys.modules) - before))\n"
    env = subprocess_env()
    env.pop("COVERAGE_PROCESS_START", None)  # coverage itself imports much of the standard library
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env, cwd=str(ROOT)
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_client_that_only_sends_requests_imports_no_models_and_no_dataclasses() -> None:
    loaded = _new_modules(
        "from flux0lite import Flux0, Retry, Timeout\n"
        "Flux0('http://127.0.0.1:1', timeout=Timeout(1, 2, total=3), retry=Retry(total=1)).close()\n"
    )
    for name in ("'dataclasses'", "'inspect'", "'flux0lite.models'", "'flux0lite.streaming'", "'encodings.idna'"):
        assert name not in loaded, loaded
    assert "'flux0lite.transport'" in loaded


def test_a_first_typed_call_imports_no_dataclasses(fake_flux0: FakeFlux0) -> None:
    """Reading models compiles their readers only: ``dataclasses`` (and ``inspect``, ``ast``,
    ``dis``, ``tokenize`` with it) is imported when a dataclass is first made, never to read."""
    session = fake_flux0.add_session(fake_flux0.add_agent())
    fake_flux0.add_events(session, 3)
    loaded = _new_modules(
        "from flux0lite import Flux0\n"
        f"client = Flux0({fake_flux0.server.url!r})\n"
        "agents = client.agents.list()\n"
        f"events = client.sessions.list_events({session!r})\n"
        "print(agents[0].name, [e.offset for e in events], events[0].data.text)\n"
    )
    assert loaded.startswith("Echo [0, 1, 2] message"), loaded
    for name in ("'dataclasses'", "'inspect'", "'ast'", "'dis'", "'tokenize'"):
        assert name not in loaded, loaded


def test_the_resources_load_on_first_use() -> None:
    loaded = _new_modules("from flux0lite import Flux0\nc = Flux0('http://127.0.0.1:1')\nc.agents, c.sessions\n")
    assert "'flux0lite.resources'" in loaded and "'flux0lite.models'" in loaded


@pytest.mark.parametrize(
    "value, same, other",
    [
        (Timeout(), Timeout(10.0, 60.0, None), Timeout(read=5)),
        (Retry(), Retry(random_source=lambda: 0.5), Retry(total=3)),
        (Origin("http", "h", 80), Origin("http", "h", 80), Origin("https", "h", 443)),
        (Proxy("p", 3128, "u", "pw"), Proxy("p", 3128, "u", "pw"), Proxy("p", 3128, "u", "other")),
        (Route(Origin("http", "h", 80)), Route(Origin("http", "h", 80), None), Route(Origin("http", "h", 81))),
    ],
)
def test_values_compare_hash_copy_and_pickle_by_their_fields(value: object, same: object, other: object) -> None:
    assert value == same and hash(value) == hash(same) and value != other
    assert value != tuple() and len({value, same, other}) == 2
    for twin in (copy.copy(value), copy.deepcopy(value)):
        assert twin == value and type(twin) is type(value)
    if not isinstance(value, Retry):  # a Retry may hold a random_source that does not pickle
        assert pickle.loads(pickle.dumps(value)) == value
    with pytest.raises(FrozenInstanceError):
        value.anything = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):  # FrozenInstanceError is an AttributeError, as dataclasses' is
        del value.anything  # type: ignore[attr-defined]


def test_values_show_their_fields_but_no_secrets() -> None:
    assert repr(Timeout(1, 2)) == "Timeout(connect=1, read=2, total=None)"
    assert repr(Proxy("p", 3128, "u", "secret")) == "Proxy(host='p', port=3128, username='u')"
    assert "random_source" not in repr(Retry(random_source=lambda: 0.5))
    assert repr(Retry()).startswith("Retry(total=2, backoff_factor=0.5, max_backoff=30.0, jitter=True, statuses=")


def test_replacing_a_field_checks_it_again() -> None:
    assert Retry().with_total(5) == Retry(total=5)
    with pytest.raises(ConfigError):
        Retry().with_total(-1)
    assert Retry(idempotent_methods=["get"]).idempotent_methods == frozenset({"GET"})
    assert Retry(statuses=[503, 503]).statuses == frozenset({503})
    with pytest.raises(ConfigError):
        Timeout(connect=float("nan"))
