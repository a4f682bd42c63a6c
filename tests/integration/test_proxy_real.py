"""The real flux0 server behind the test forward proxy, under a name only the proxy resolves."""

from __future__ import annotations

from typing import Iterator, List

import pytest

from flux0lite import Flux0
from tests.netfixtures import HIDDEN, hidden_host, hidden_proxy
from tests.proxyserver import ForwardProxy


@pytest.fixture(autouse=True)
def lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[str]]:
    """This process cannot resolve ``flux0.internal`` (and records any attempt to)."""
    yield from hidden_host(monkeypatch)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with hidden_proxy(credentials=("flux0", "pa:ss")) as server:
        yield server


def test_the_real_server_through_the_proxy(
    server_url: str, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = server_url.rsplit(":", 1)[1]
    monkeypatch.setenv("HTTP_PROXY", proxy.url_with("flux0", "pa:ss"))
    with Flux0(f"http://{HIDDEN}:{port}") as client:
        agent = client.agents.create(name="Behind a proxy", type="echo")
        session = client.sessions.create(agent_id=agent.id)
        with client.sessions.create_event(session.id, "hello through the proxy") as stream:
            pieces = list(stream.text_deltas())
        assert "".join(pieces) == "Echo: hello through the proxy"
        assert len(pieces) > 1  # streamed piece by piece, not buffered whole
        events = client.sessions.list_events(session.id)
        assert events[0].source == "user"
        assert client.agents.retrieve(agent.id).name == "Behind a proxy"
    targets = [seen.target for seen in proxy.seen]
    assert all(t.startswith(f"http://{HIDDEN}:{port}/api/") for t in targets), targets
    assert f"http://{HIDDEN}:{port}/api/sessions/{session.id}/events/stream" in targets
