"""What the layer sends and how it retries, times out and fails, seen from a fake server.

(The fake server is for faults and for seeing the exact requests; correctness against the
real flux0 server is in test_readme_blocks.py and test_flux0_cli.py.)
"""

from __future__ import annotations

import asyncio
import json
import pickle
import time
from typing import Any, Dict

import pytest

import flux0lite
from flux0lite.compat import Flux0, models
from flux0lite.compat.utils import BackoffStrategy, RetryConfig
from flux0lite.compat.utils.retries import next_wait
from tests.fakeserver import FakeServer, json_response, raw_response, sequence, sse_stream, sse_text

AGENT = {"id": "agent00001", "name": "Echo", "type": "echo", "description": None, "created_at": "2025-03-01T10:00:00Z"}
SESSION = {
    "id": "sess000001",
    "agent_id": "agent00001",
    "user_id": "user000001",
    "title": None,
    "consumption_offsets": {"client": 0},
    "created_at": "2025-03-01T10:00:01.5Z",
}
FAST = RetryConfig("backoff", BackoffStrategy(1, 10, 1.5, 5000), False)


def event(offset: int, kind: str = "message", data: Any = None, **extra: Any) -> Dict[str, Any]:
    doc = {
        "id": f"ev{offset:08d}",
        "correlation_id": "corr",
        "type": kind,
        "source": "user",
        "offset": offset,
        "data": data if data is not None else {"type": "message", "parts": [{"type": "content", "content": "hi"}]},
        "deleted": False,
        "created_at": "2025-03-01T10:00:02Z",
        "metadata": {},
    }
    doc.update(extra)
    return doc


def unavailable() -> Any:
    return json_response(503, {"detail": "busy"})


# -- requests as the SDK sends them --------------------------------------------------------------


def test_query_and_body_encoding(fake: FakeServer) -> None:
    fake.on("POST", "/api/agents", json_response(201, AGENT))
    fake.on("POST", "/api/sessions", json_response(201, SESSION))
    fake.on(
        "GET",
        "/api/sessions/*",
        json_response(200, {"data": [event(0), event(1, "status", {"type": "status", "status": "ready"})]}),
    )
    with Flux0(server_url=fake.url) as sdk:
        sdk.agents.create(name="n", type_="t")
        assert fake.requests[-1].json() == {"name": "n", "type": "t"}  # omitted: key absent
        sdk.agents.create(name="n", type_="t", description=None)
        assert fake.requests[-1].json() == {"name": "n", "type": "t", "description": None}  # None: null
        sdk.sessions.create(agent_id="agent00001", title="x")
        assert fake.requests[-1].query == {"allow_greeting": "false"}
        assert fake.requests[-1].json() == {"agent_id": "agent00001", "title": "x"}
        got = sdk.sessions.list_events(
            session_id="a/b?c#d",
            min_offset=3,
            source=models.EventSourceDTO.USER,
            correlation_id="corr",
            types=[models.EventTypeDTO.MESSAGE],
        )
    request = fake.requests[-1]
    assert request.path == "/api/sessions/a%2Fb%3Fc%23d/events"  # path parameters are encoded
    assert request.query == {"min_offset": "3", "source": "user", "correlation_id": "corr"}
    assert [e.type for e in got.data] == [models.EventTypeDTO.MESSAGE]  # types filtered here


def test_per_call_headers_server_url_and_timeout(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": [AGENT]}))
    with Flux0(server_url="http://127.0.0.1:9") as sdk:  # nothing listens there
        res = sdk.agents.list(server_url=fake.url, http_headers={"X-Trace": "abc"}, timeout_ms=2000)
        assert res.data[0].id == "agent00001"
        assert fake.requests[-1].headers["x-trace"] == "abc"
        with pytest.raises(flux0lite.ConnectError):
            sdk.agents.list(retries=None)


def test_timeout_ms_cuts_a_silent_server(fake: FakeServer) -> None:
    fake.on("POST", "/api/sessions/*", sse_stream([b": hello\n\n"], end=False))
    with Flux0(server_url=fake.url, timeout_ms=300) as sdk:
        started = time.monotonic()
        with pytest.raises(flux0lite.ReadTimeout):
            with sdk.sessions.create_event(session_id="sess000001", type_="message", source="user", content="x") as s:
                list(s)
    assert time.monotonic() - started < 5


# -- retries ---------------------------------------------------------------------------------


def test_per_call_retry_config_retries_a_get(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", sequence(unavailable(), unavailable(), json_response(200, {"data": [AGENT]})))
    with Flux0(server_url=fake.url) as sdk:
        assert sdk.agents.list(retries=FAST).data[0].name == "Echo"
    assert fake.count("GET", "/api/agents") == 3


def test_global_retry_config_and_per_call_none(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", sequence(unavailable(), json_response(200, {"data": []})))
    with Flux0(server_url=fake.url, retry_config=FAST) as sdk:
        assert sdk.agents.list().data == []
        assert fake.count("GET", "/api/agents") == 2
        fake.on("GET", "/api/agents", unavailable())
        with pytest.raises(models.APIError) as caught:
            sdk.agents.list(retries=None)  # None: a single attempt, as in the SDK
    assert fake.count("GET", "/api/agents") == 3
    assert caught.value.status_code == 503 and isinstance(caught.value, flux0lite.ServerError)


def test_posts_are_never_resent_after_reaching_the_server(fake: FakeServer) -> None:
    fake.on("POST", "/api/agents", unavailable())
    fake.on("POST", "/api/sessions/*", unavailable())
    eager = RetryConfig("backoff", BackoffStrategy(1, 10, 1.5, 5000), True)
    with Flux0(server_url=fake.url, retry_config=eager) as sdk:
        with pytest.raises(models.APIError):
            sdk.agents.create(name="n", type_="t")
        with pytest.raises(models.APIError):
            sdk.sessions.create_event(session_id="sess000001", type_="message", source="user", content="once")
    assert fake.count("POST", "/api/agents") == 1
    assert fake.count("POST", "/api/sessions/sess000001/events/stream") == 1


def test_max_elapsed_time_caps_retrying(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", unavailable())
    capped = RetryConfig("backoff", BackoffStrategy(20, 40, 2.0, 200), False)
    with Flux0(server_url=fake.url) as sdk:
        started = time.monotonic()
        with pytest.raises(models.APIError):
            sdk.agents.list(retries=capped)
        elapsed = time.monotonic() - started
    assert 2 <= fake.count("GET", "/api/agents") <= 12
    assert elapsed < 1.0  # no retry started after the 200 ms cap


def test_retry_after_is_honoured(fake: FakeServer) -> None:
    fake.on(
        "GET",
        "/api/agents",
        sequence(json_response(429, {"detail": "slow down"}, {"retry-after": "1"}), json_response(200, {"data": []})),
    )
    with Flux0(server_url=fake.url) as sdk:
        started = time.monotonic()
        sdk.agents.list(retries=FAST)
    assert time.monotonic() - started >= 0.9


def test_without_any_retry_config_flux0lites_safe_default_applies(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", sequence(unavailable(), json_response(200, {"data": []})))
    fake.on("POST", "/api/agents", unavailable())
    with Flux0(server_url=fake.url) as sdk:
        assert sdk.agents.list().data == []
        with pytest.raises(models.APIError):
            sdk.agents.create(name="n", type_="t")
    assert fake.count("GET", "/api/agents") == 2 and fake.count("POST", "/api/agents") == 1


def test_retry_decisions() -> None:
    eager = RetryConfig("backoff", BackoffStrategy(100, 1000, 2.0, 60_000), True)
    shy = RetryConfig("backoff", BackoffStrategy(100, 1000, 2.0, 60_000), False)
    refused, read_timeout = flux0lite.ConnectError("refused"), flux0lite.ReadTimeout("quiet")
    assert next_wait(refused, "POST", eager, 0, 0.0) is not None  # nothing was sent
    assert next_wait(refused, "GET", shy, 0, 0.0) is None
    assert next_wait(read_timeout, "GET", eager, 0, 0.0) is not None
    assert next_wait(read_timeout, "POST", eager, 0, 0.0) is None  # it may have arrived
    assert next_wait(flux0lite.DecodeError("bad"), "GET", eager, 0, 0.0) is None
    other = RetryConfig("none", BackoffStrategy(100, 1000, 2.0, 60_000), True)
    assert next_wait(refused, "GET", other, 0, 0.0) is None
    waits = [eager.backoff.wait_seconds(n) for n in range(6)]  # type: ignore[union-attr]
    assert 0.05 <= waits[0] <= 0.1 and 0.4 <= waits[3] <= 0.8 and 0.5 <= waits[5] <= 1.0
    assert next_wait(refused, "GET", eager, 0, 59.99) is None  # past the elapsed-time cap


# -- hostile answers -------------------------------------------------------------------------


def test_malformed_and_foreign_answers_raise_flux0lite_errors(fake: FakeServer) -> None:
    fake.on(
        "GET",
        "/api/agents",
        lambda req, conn: conn.send(raw_response(200, b"{not json", {"content-type": "application/json"})),
    )
    fake.on(
        "GET", "/api/sessions", lambda req, conn: conn.send(raw_response(200, b"<html>", {"content-type": "text/html"}))
    )
    fake.on("GET", "/api/agents/*", lambda req, conn: conn.send(raw_response(502, b"\xff\xfe<b>bad gateway\x1b[31m")))
    with Flux0(server_url=fake.url) as sdk:
        with pytest.raises(flux0lite.DecodeError):
            sdk.agents.list(retries=None)
        with pytest.raises(flux0lite.ContentTypeError):
            sdk.sessions.list()
        with pytest.raises(models.APIError) as caught:
            sdk.agents.retrieve(agent_id="agent00001", retries=None)
    assert caught.value.status_code == 502 and "\x1b" not in str(caught.value)


def test_unknown_values_and_fields_are_kept(fake: FakeServer) -> None:
    custom = event(0, "custom", {"anything": [1, 2]}, source="robot", novel="kept")
    odd_status = event(1, "status", {"type": "status", "status": "stopped"})
    fake.on("GET", "/api/sessions/*", json_response(200, {"data": [custom, odd_status]}))
    with Flux0(server_url=fake.url) as sdk:
        got = sdk.sessions.list_events(session_id="sess000001").data
    assert (
        got[0].type == models.EventTypeDTO.CUSTOM and got[0].source == "robot" and got[0].data == {"anything": [1, 2]}
    )
    assert got[0].model_extra == {"novel": "kept"}
    assert got[1].data.status == "stopped" and not isinstance(got[1].data.status, models.StatusEventDataStatusField)
    assert got[1].model_dump(mode="json")["data"] == {
        "status": "stopped",
        "TYPE": "status",
        "acknowledged_offset": None,
        "data": None,
    }


def test_stream_events_keep_unknown_names_and_go_on(fake: FakeServer) -> None:
    status = {
        "id": "st00000001",
        "correlation_id": "c",
        "type": "status",
        "source": "ai_agent",
        "data": {"type": "status", "status": "processing"},
        "metadata": None,
    }
    chunk = {
        "correlation_id": "c",
        "event_id": "ev1",
        "seq": 0,
        "patches": [{"op": "add", "path": "/-", "value": "Hi"}],
        "metadata": {},
        "timestamp": 1.5,
    }
    body = sse_text([("status", status), ("future", {"x": 1}), ("chunk", chunk)])
    fake.on("POST", "/api/sessions/*", sse_stream([body]))
    with Flux0(server_url=fake.url) as sdk:
        stream = sdk.sessions.create_event(session_id="sess000001", type_="message", source="user", content="x")
        events = list(stream.generator)
    assert [e.EVENT for e in events] == ["status", "future", "chunk"]
    assert isinstance(events[0], models.EmittedEventStream) and events[0].id == "st00000001"
    assert events[0].data.data.status == models.StatusEventDataStatusField.PROCESSING
    assert events[0].data.status == "processing"  # shortcut
    assert json.loads(events[1].data) == {"x": 1}
    assert isinstance(events[2], models.ChunkEventStream) and events[2].data.patches[0].value == "Hi"
    assert events[2].model_dump(by_alias=True)["event"] == "chunk"


def test_async_stream_closes_and_errors_map(fake: FakeServer) -> None:
    fake.on("POST", "/api/sessions/*", json_response(400, {"detail": "Cannot create event for non-existent session"}))

    async def go() -> None:
        async with Flux0(server_url=fake.url) as sdk:
            with pytest.raises(models.APIError) as caught:
                await sdk.sessions.create_event_async(
                    session_id="missing001", type_="message", source="user", content="x"
                )
            assert caught.value.status_code == 400 and isinstance(caught.value, flux0lite.BadRequestError)
            assert caught.value.detail == "Cannot create event for non-existent session"

    asyncio.run(go())


# -- models and errors -----------------------------------------------------------------------


def test_model_dump_shapes() -> None:
    agent = models.AgentDTO.from_native(flux0lite.Agent.from_dict(dict(AGENT, extra_field=1)))
    dumped = agent.model_dump()
    assert list(dumped) == ["id", "name", "type", "created_at", "description"]
    assert dumped["created_at"].year == 2025 and agent.model_extra == {"extra_field": 1}
    assert agent.model_dump(mode="json")["created_at"] == "2025-03-01T10:00:00Z"
    assert json.loads(agent.model_dump_json())["name"] == "Echo"
    session = models.SessionDTO.from_native(flux0lite.Session.from_dict(SESSION))
    assert session.consumption_offsets.client == 0 and session.created_at.microsecond == 500000
    part = models.ContentPartDTO(content="x")
    assert part.model_dump() == {"content": "x", "TYPE": "content"}
    assert part.model_dump(by_alias=True) == {"content": "x", "type": "content"}


def test_errors_pickle_and_print_safely() -> None:
    raw = flux0lite.errors.error_for_status(404, {"detail": "gone"}, {"content-type": "application/json"})
    from flux0lite.compat.models.apierror import from_native

    error = from_native(raw)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and again.body == '{"detail":"gone"}' and again.raw_response.status_code == 404
    assert isinstance(again, flux0lite.NotFoundError)
    plain = models.APIError("No response received")
    assert plain.status_code == -1 and str(plain) == "No response received: Status -1"
    data = models.HTTPValidationErrorData(
        detail=[models.ValidationError(loc=["body", "name"], msg="too long", type="x")]
    )
    validation = pickle.loads(pickle.dumps(models.HTTPValidationError(data)))
    assert validation.data.detail[0].msg == "too long" and validation.status_code == 422


def test_server_selection_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX0_SERVER_URL", "http://127.0.0.1:7001")
    assert Flux0().sdk_configuration.server_url == "http://127.0.0.1:7001"
    assert Flux0(server_idx=0).sdk_configuration.server_url == "http://127.0.0.1:8080"
    assert Flux0(server_url="http://127.0.0.1:{port}/", url_params={"port": "7002"}).sdk_configuration.server_url == (
        "http://127.0.0.1:7002"
    )
    with pytest.raises(IndexError):
        Flux0(server_idx=1)
    with pytest.raises(flux0lite.ConfigError):
        Flux0(server_url="http://127.0.0.1:{port}")
    with pytest.raises(flux0lite.ConfigError):
        Flux0(client=object())
    with pytest.raises(flux0lite.ConfigError):
        Flux0(timeout_ms=0)


def test_bad_arguments_get_clear_errors(fake: FakeServer) -> None:
    fake.on(
        "GET",
        "/api/sessions/*",
        json_response(200, {"data": [event(0), event(1, "status", {"type": "status", "status": "ready"})]}),
    )
    for bad in (0, -5, float("nan"), float("inf"), 10**20, "5", True):
        with pytest.raises(flux0lite.ConfigError):
            Flux0(server_url=fake.url, timeout_ms=bad)  # type: ignore[arg-type]
    for bad_number in ("1", -1, float("nan"), None):
        with pytest.raises(flux0lite.ConfigError):
            BackoffStrategy(bad_number, 10, 1.5, 100)  # type: ignore[arg-type]
    with pytest.raises(flux0lite.ConfigError):
        Flux0(debug_logger=object())  # type: ignore[arg-type]
    with Flux0(server_url=fake.url) as sdk:
        for session_id in ("", None, 5):
            with pytest.raises(flux0lite.ConfigError):
                sdk.sessions.list_events(session_id=session_id)  # type: ignore[arg-type]
        for offset in (-1, True, "3"):
            with pytest.raises(flux0lite.ConfigError):
                sdk.sessions.list_events(session_id="sess000001", min_offset=offset)  # type: ignore[arg-type]
        with pytest.raises(flux0lite.ConfigError):
            sdk.agents.list(http_headers={"X-Bad": "a\r\nInjected: 1"})
        # a single type given as a plain value, not a list
        assert [e.offset for e in sdk.sessions.list_events(session_id="sess000001", types="message").data] == [0]
        assert [
            e.offset for e in sdk.sessions.list_events(session_id="sess000001", types=models.EventTypeDTO.STATUS).data
        ] == [1]  # type: ignore[arg-type]


def test_idle_async_streams_leave_the_default_executor_free(fake: FakeServer) -> None:
    """hadv18 02: each compat async stream read in the loop's default executor; as many idle ones
    as it has threads (min(32, cores + 4)) and every other async call waited."""
    import os
    import threading

    quiet = threading.Event()

    def thinking(req: Any, conn: Any) -> None:  # the headers, then an agent that says nothing
        conn.send(raw_response(200, b"", {"content-type": "text/event-stream"}, length=False))
        quiet.wait(10)
        conn.keep_alive = False

    fake.on("POST", "/api/sessions/*", thinking)
    fake.on("GET", "/api/agents", json_response(200, {"data": []}))
    client = Flux0(server_url=fake.url)

    async def scenario() -> float:
        streams = [
            await client.sessions.create_event_async(
                session_id="s", type_=models.EventTypeDTO.MESSAGE, source=models.EventSourceDTO.USER, content="hi"
            )
            for _ in range(min(32, (os.cpu_count() or 1) + 4))
        ]

        async def read(stream: Any) -> None:
            async for _ in stream:
                pass

        readers = [asyncio.create_task(read(stream)) for stream in streams]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await asyncio.wait_for(client.agents.list_async(), 5)
        took = time.monotonic() - started
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for stream in streams:
            await stream.aclose()
        return took

    try:
        assert asyncio.run(scenario()) < 2
    finally:
        quiet.set()


@pytest.mark.parametrize(
    "target, message",
    [
        ("no_such_module_xyz", "cannot import no_such_module_xyz: no module named 'no_such_module_xyz'"),
        (":", "cannot import : no module named ''"),
        ("no_such_package_xyz.sub", "cannot import no_such_package_xyz.sub"),
        ("flux0_client", "cannot be run as a program: name a function"),
    ],
)
def test_the_runner_says_in_one_line_what_it_cannot_run(
    target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # a module that does not exist, or the import alias, gave a traceback (hadv36 05)
    from flux0lite.compat.__main__ import main

    assert main([target]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
