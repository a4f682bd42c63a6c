"""``Flux0.abort()`` against the real flux0 server: an open reply stream ends with
RequestAborted, and the same client then works as before."""

from __future__ import annotations

import threading

import pytest

from flux0lite import Flux0, RequestAborted, Timeout


def test_abort_ends_a_real_reply_stream_and_the_client_lives_on(server_url: str) -> None:
    with Flux0(server_url, timeout=Timeout(connect=5, read=20)) as client:
        agent = client.agents.create(name="Echo", type="echo", description="abort")
        session = client.sessions.create(agent_id=agent.id)
        with client.sessions.create_event(session.id, "hello before the abort") as stream:
            next(stream)  # the stream is open and answering
            aborter = threading.Thread(target=client.abort)
            aborter.start()
            aborter.join(10)
            # the stream's next read raises, even when the rest of the reply already arrived
            with pytest.raises(RequestAborted, match="aborted by the client"):
                for _ in stream:
                    pass
            assert not stream.finished
        reply = client.sessions.create_event(session.id, "hello after the abort").reply()
        assert reply.text == "Echo: hello after the abort"
        stored = client.sessions.list_events(session.id)
        assert any(event.text == "hello after the abort" for event in stored)
