from __future__ import annotations

import asyncio
import gzip
import json
import logging
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

from flux0lite import (
    Agent,
    APIConnectionError,
    BadRequestError,
    ConfigError,
    ConnectError,
    ContentTypeError,
    DecodeError,
    Event,
    Flux0,
    MessageEventData,
    MethodNotAllowedError,
    ModelError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    ReadTimeout,
    RedirectError,
    ResponseTooLargeError,
    Retry,
    ServerError,
    Session,
    Timeout,
    ValidationError,
    __version__,
)
from flux0lite.transport import parse_server_url, redact_headers
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, json_response, raw_response, sequence
from tests.netfixtures import BlackHole, refused_port

FAST = Retry(total=3, backoff_factor=0.0)


def client_for(server: FakeServer, **kwargs: object) -> Flux0:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("timeout", Timeout(connect=2, read=2))
    return Flux0(server.url, **kwargs)  # type: ignore[arg-type]


AGENT = {
    "id": "agent00001",
    "name": "Echo",
    "type": "echo",
    "description": None,
    "created_at": "2026-11-24T13:21:13.1Z",
}
SESSION = {
    "id": "sess000001",
    "agent_id": "agent00001",
    "user_id": "u",
    "title": None,
    "consumption_offsets": {"client": 0},
    "created_at": "2026-11-24T13:21:13Z",
}


# -- configuration -----------------------------------------------------------------------------


def test_server_url_default_env_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Flux0().server_url == "http://127.0.0.1:8080"
    monkeypatch.setenv("FLUX0_SERVER_URL", "https://flux0.example:8443/base/")
    assert Flux0().server_url == "https://flux0.example:8443/base"
    for bad in ("file:///etc/passwd", "ftp://x", "127.0.0.1:8080", "http://", "http://user:pw@host", "http://h:99999"):
        with pytest.raises(ConfigError):
            Flux0(bad)
    with pytest.raises(ValueError):  # ConfigError is also a ValueError
        parse_server_url("javascript:alert(1)")


def test_header_injection_is_rejected() -> None:
    with pytest.raises(ConfigError):
        Flux0("http://h", token="abc\r\nX-Evil: 1")
    with pytest.raises(ConfigError):
        Flux0("http://h", user_sub="a;b")


def test_timeout_values() -> None:
    assert Timeout.coerce(3) == Timeout(3.0, 3.0)
    assert Timeout.coerce(None) == Timeout(None, None)
    with pytest.raises(ConfigError):
        Timeout(connect=-1)
    with pytest.raises(ConfigError):
        Timeout(read=0)


# -- every operation ---------------------------------------------------------------------------


def test_agents_operations(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": [AGENT]}))
    fake.on("POST", "/api/agents", json_response(201, AGENT))
    fake.on("GET", "/api/agents/*", json_response(200, AGENT))
    with client_for(fake) as client:
        assert client.agents.list() == [Agent.from_dict(AGENT)]
        created = client.agents.create(name="Echo", type="echo", description="d")
        assert created.id == "agent00001"
        assert fake.requests[-1].json() == {"name": "Echo", "type": "echo", "description": "d"}
        assert fake.requests[-1].headers["content-type"] == "application/json"
        assert client.agents.retrieve("a/b c?").name == "Echo"
    assert fake.requests[-1].target == "/api/agents/a%2Fb%20c%3F"


def test_sessions_operations(fake: FakeServer) -> None:
    fake.on("GET", "/api/sessions", json_response(200, {"data": [SESSION]}))
    fake.on("POST", "/api/sessions", json_response(201, SESSION))
    fake.on("GET", "/api/sessions/*", json_response(200, SESSION))
    with client_for(fake) as client:
        assert client.sessions.list(agent_id="agent00001") == [Session.from_dict(SESSION)]
        assert fake.requests[-1].query == {"agent_id": "agent00001"}
        created = client.sessions.create(agent_id="agent00001", id="sess000001", title="t")
        assert created.consumption_offsets == {"client": 0}
        assert fake.requests[-1].query == {"allow_greeting": "false"}
        assert fake.requests[-1].json() == {"agent_id": "agent00001", "id": "sess000001", "title": "t"}
        assert client.sessions.retrieve("sess000001").id == "sess000001"


def test_list_events_filters(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    agent = fake_flux0.add_agent()
    sid = fake_flux0.add_session(agent)
    fake_flux0.add_events(sid, 10)
    fake_flux0.events[sid][3]["type"] = "status"
    fake_flux0.events[sid][3]["data"] = {
        "type": "status",
        "status": "brand-new-status",
        "acknowledged_offset": 0,
        "data": {},
    }
    with client_for(fake) as client:
        events = client.sessions.list_events(sid)
        assert [e.offset for e in events] == list(range(10))
        assert isinstance(events[0].data, MessageEventData) and events[0].text.endswith("#0")
        assert [e.offset for e in client.sessions.list_events(sid, min_offset=7)] == [7, 8, 9]
        assert fake.requests[-1].query == {"min_offset": "7"}
        assert all(e.source == "ai_agent" for e in client.sessions.list_events(sid, source="ai_agent"))
        assert [e.offset for e in client.sessions.list_events(sid, correlation_id="RID(x)::1")] == [2, 3]
        statuses = client.sessions.list_events(sid, types=["status"])
        assert [e.offset for e in statuses] == [3]
        assert statuses[0].data.status == "brand-new-status"  # type: ignore[union-attr]
        assert "types" not in fake.requests[-1].query  # the server's own filter is broken
        with pytest.raises(ConfigError):
            client.sessions.list_events(sid, min_offset=-1)


def test_async_twins(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    async def run() -> None:
        async with client_for(fake) as client:
            agent = await client.agents.create_async(name="A", type="echo")
            assert (await client.agents.retrieve_async(agent.id)).id == agent.id
            assert len(await client.agents.list_async()) == 1
            session = await client.sessions.create_async(agent_id=agent.id, title="x")
            assert (await client.sessions.retrieve_async(session.id)).title == "x"
            assert len(await client.sessions.list_async(agent_id=agent.id)) == 1
            fake_flux0.add_events(session.id, 4)
            results = await asyncio.gather(
                *[client.sessions.list_events_async(session.id, min_offset=i) for i in range(4)]
            )
            assert [len(r) for r in results] == [4, 3, 2, 1]

    asyncio.run(run())


# -- headers -----------------------------------------------------------------------------------


def test_default_headers_token_and_cookie(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": []}))
    with client_for(fake, token="s3cret", user_sub="alice", headers={"X-Trace": "1"}) as client:
        client.agents.list()
    headers = fake.requests[-1].headers
    assert headers["user-agent"] == f"flux0lite/{__version__}"
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["cookie"] == "flux0_user_sub=alice"
    assert headers["accept-encoding"] == "gzip"
    assert headers["x-trace"] == "1"


def test_gzip_body_is_decoded(fake: FakeServer) -> None:
    body = gzip.compress(json.dumps({"data": [AGENT]}).encode())

    def respond(req: Request, conn: Conn) -> None:
        conn.send(raw_response(200, body, {"content-type": "application/json", "content-encoding": "gzip"}))

    fake.on("GET", "/api/agents", respond)
    with client_for(fake) as client:
        assert client.agents.list()[0].id == "agent00001"


def test_gzip_bomb_meets_the_size_limit_without_inflating_whole(fake: FakeServer) -> None:
    bomb = gzip.compress(b'{"data": ["' + b"a" * (200 * 1024 * 1024) + b'"]}', compresslevel=9)
    assert len(bomb) < 400_000

    def respond(req: Request, conn: Conn) -> None:
        conn.send(raw_response(200, bomb, {"content-type": "application/json", "content-encoding": "gzip"}))

    fake.on("GET", "/api/agents", respond)
    with client_for(fake, max_response_bytes=4 * 1024 * 1024) as client, pytest.raises(ResponseTooLargeError):
        client.agents.list()


def test_a_gzip_body_is_inflated_in_pieces_no_larger_than_a_plain_read(fake: FakeServer) -> None:
    """hadv14 01: 1 MiB pieces of small events, each taken from the daemon's memory budget as a
    whole and built after the batch before it was handed over: 16 workers, 388 MB."""
    from flux0lite.responses import READ_SIZE

    body = b'{"data": [' + b",".join(b'{"":{"":{}}}' for _ in range(400_000)) + b"]}"

    def respond(req: Request, conn: Conn) -> None:
        conn.send(
            raw_response(200, gzip.compress(body, 6), {"content-type": "application/json", "content-encoding": "gzip"})
        )

    fake.on("GET", "/api/agents", respond)
    with client_for(fake) as client:
        response = client.request_stream("GET", "/api/agents")
        pieces = list(response.iter_bytes())
    assert b"".join(pieces) == body and len(pieces) > 16
    assert max(map(len, pieces)) <= READ_SIZE


def test_corrupt_gzip_is_a_decode_error(fake: FakeServer) -> None:
    def respond(req: Request, conn: Conn) -> None:
        conn.send(
            raw_response(
                200,
                b"\x1f\x8b\x08\x00garbage-garbage",
                {"content-type": "application/json", "content-encoding": "gzip"},
            )
        )

    fake.on("GET", "/api/agents", respond)
    with client_for(fake, retry=Retry(total=0)) as client, pytest.raises(DecodeError):
        client.agents.list()


def test_keep_alive_reuses_one_connection(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": []}))
    with client_for(fake) as client:
        for _ in range(20):
            client.agents.list()
    assert fake.connections == 1


def test_server_closed_idle_connection_is_replaced(fake: FakeServer) -> None:
    def close_after(req: Request, conn: Conn) -> None:
        conn.send(raw_response(200, b'{"data": []}', {"content-type": "application/json"}))
        time.sleep(0.05)
        conn.close()

    fake.on("GET", "/api/agents", close_after)
    with client_for(fake, retry=Retry(total=0)) as client:
        client.agents.list()
        time.sleep(0.5)  # well after the server's close, even on a loaded machine
        client.agents.list()  # the dead pooled connection is detected, not used
    assert fake.count("GET", "/api/agents") == 2


# -- error statuses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,body,cls",
    [
        (400, {"detail": "Session with ID X not found"}, BadRequestError),
        (404, {"detail": "Agent with ID X not found"}, NotFoundError),
        (405, {"detail": "Method Not Allowed"}, MethodNotAllowedError),
        (422, {"detail": [{"type": "missing", "loc": ["body", "type"], "msg": "Field required"}]}, ValidationError),
        (422, {"detail": "Agent type 'nope' is not supported"}, ValidationError),
        (500, "Internal Server Error", ServerError),
        (418, {"detail": "teapot"}, Exception),
    ],
)
def test_error_statuses_map_to_typed_errors(fake: FakeServer, status: int, body: object, cls: type) -> None:
    payload = json.dumps(body).encode() if isinstance(body, dict) else str(body).encode()
    ctype = "application/json" if isinstance(body, dict) else "text/plain"

    def respond(req: Request, conn: Conn) -> None:
        conn.send(raw_response(status, payload, {"content-type": ctype, "allow": "GET"}))

    fake.on("GET", "/api/agents/*", respond)
    with client_for(fake) as client, pytest.raises(cls) as info:
        client.agents.retrieve("agent00001")
    err = info.value
    assert err.status_code == status  # type: ignore[attr-defined]
    assert "\n" not in str(err)
    if status == 422 and isinstance(body, dict) and isinstance(body["detail"], list):
        assert "type: Field required" in str(err)
        assert err.errors[0]["loc"] == ["body", "type"]  # type: ignore[attr-defined]
    if status == 405:
        assert err.allowed == ["GET"]  # type: ignore[attr-defined]
    assert fake.count("GET", "/api/agents/agent00001") == 1  # 4xx/500 are not retried


# -- retries -----------------------------------------------------------------------------------


def test_get_retries_503_then_succeeds_and_counts_requests(fake: FakeServer) -> None:
    busy = json_response(503, {"detail": "busy"}, {"retry-after": "0"})
    fake.on("GET", "/api/agents", sequence(busy, busy, json_response(200, {"data": []})))
    with client_for(fake) as client:
        assert client.agents.list() == []
    assert fake.count("GET", "/api/agents") == 3


def test_retries_exhausted_raise_last_status(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(429, {"detail": "slow down"}, {"retry-after": "0"}))
    with client_for(fake, retry=Retry(total=2, backoff_factor=0)) as client, pytest.raises(RateLimitedError) as info:
        client.agents.list()
    assert info.value.retry_after == 0
    assert fake.count("GET", "/api/agents") == 3


def test_retry_after_is_honoured(fake: FakeServer) -> None:
    fake.on(
        "GET", "/api/agents", sequence(json_response(503, {}, {"retry-after": "1"}), json_response(200, {"data": []}))
    )
    with client_for(fake) as client:
        started = time.monotonic()
        client.agents.list()
        assert time.monotonic() - started >= 0.9


def test_per_call_retry_override(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(503, {}))
    with client_for(fake) as client, pytest.raises(ServerError):
        client.agents.list(retry=Retry(total=0))
    assert fake.count("GET", "/api/agents") == 1


def test_post_is_never_resent_after_reaching_the_server(fake: FakeServer) -> None:
    def reset(req: Request, conn: Conn) -> None:
        conn.reset()

    fake.on("POST", "/api/agents", reset)
    fake.on("POST", "/api/sessions/*", json_response(503, {"detail": "busy"}))
    with client_for(fake) as client:
        with pytest.raises(APIConnectionError):
            client.agents.create(name="x", type="echo")
        with pytest.raises(ServerError):
            client.sessions.create_event("sess000001", "hello")
    assert fake.count("POST", "/api/agents") == 1
    assert fake.count("POST", "/api/sessions/sess000001/events/stream") == 1


def test_get_is_retried_after_reset(fake: FakeServer) -> None:
    def reset(req: Request, conn: Conn) -> None:
        conn.reset()

    fake.on("GET", "/api/agents", sequence(reset, reset, json_response(200, {"data": []})))
    with client_for(fake) as client:
        assert client.agents.list() == []
    assert fake.count("GET", "/api/agents") == 3


def test_connection_refused_is_retried_even_for_post_then_raises() -> None:
    port = refused_port()
    sleeps: List[float] = []
    client = Flux0(f"http://127.0.0.1:{port}", retry=Retry(total=2, backoff_factor=0.01, jitter=False))
    client._transport._sleep = sleeps.append
    with pytest.raises(ConnectError) as info:
        client.agents.create(name="x", type="echo")
    assert "refused" in str(info.value).lower()
    assert sleeps == [0.01, 0.02]


def test_refused_then_server_appears_post_succeeds() -> None:
    port = refused_port()  # refused until the server below takes it
    holder: List[FakeServer] = []

    def start_later() -> None:
        time.sleep(0.3)
        # the route must exist before the port accepts: else a request lands in between (404)
        server = FakeServer(port, routes=[("POST", "/api/agents", json_response(201, AGENT))])
        holder.append(server)

    starter = threading.Thread(target=start_later, daemon=True)
    starter.start()
    client = Flux0(f"http://127.0.0.1:{port}", retry=Retry(total=10, backoff_factor=0.1, jitter=False, max_backoff=0.2))
    try:
        assert client.agents.create(name="Echo", type="echo").id == "agent00001"
        starter.join(10)  # the server may answer before its starter thread has recorded it (a busy machine)
        assert holder[0].count("POST", "/api/agents") == 1
    finally:
        for server in holder:
            server.close()


# -- bad responses -----------------------------------------------------------------------------


def _respond_raw(data: bytes):  # type: ignore[no-untyped-def]
    def respond(req: Request, conn: Conn) -> None:
        conn.send(data)

    return respond


@pytest.mark.parametrize(
    "raw,cls",
    [
        (raw_response(200, b"<html>proxy error</html>", {"content-type": "text/html"}), ContentTypeError),
        (raw_response(200, b'{"data": [', {"content-type": "application/json"}), DecodeError),
        (raw_response(200, b'{"data": ["\xff\xfe"]}', {"content-type": "application/json"}), DecodeError),
        (raw_response(200, b'{"data": 5}', {"content-type": "application/json"}), ModelError),
        (raw_response(200, b'{"data": [{"name": "no id"}]}', {"content-type": "application/json"}), ModelError),
        (raw_response(200, b"[" * 100000 + b"]" * 100000, {"content-type": "application/json"}), DecodeError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\ncontent-type: application/json\r\n\r\n{}", ProtocolError),
        (b"garbage that is not HTTP\r\n\r\n", ProtocolError),
    ],
)
def test_bad_bodies_raise_typed_errors(fake: FakeServer, raw: bytes, cls: type) -> None:
    def respond(req: Request, conn: Conn) -> None:
        conn.send(raw)
        conn.close()

    fake.on("GET", "/api/agents", respond)
    with client_for(fake, retry=Retry(total=0)) as client, pytest.raises(cls):
        client.agents.list()


def test_body_over_limit_is_rejected(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": [AGENT] * 100}))
    with client_for(fake, max_response_bytes=1000) as client, pytest.raises(ResponseTooLargeError):
        client.agents.list()


def test_read_timeout_when_server_stalls_before_headers(fake: FakeServer) -> None:
    def stall(req: Request, conn: Conn) -> None:
        time.sleep(3)

    fake.on("GET", "/api/agents", stall)
    with client_for(fake, timeout=Timeout(connect=1, read=0.3), retry=Retry(total=1, backoff_factor=0)) as client:
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            client.agents.list()
        assert time.monotonic() - started < 2.5
    assert fake.count("GET", "/api/agents") == 2  # a GET read timeout is retried


def test_connect_timeout() -> None:
    with BlackHole() as hole:
        client = Flux0(hole.url, timeout=Timeout(connect=0.3, read=1), retry=Retry(total=0))
        started = time.monotonic()
        with pytest.raises(APIConnectionError):
            client.agents.list()
        assert time.monotonic() - started < 3


# -- redirects ---------------------------------------------------------------------------------


def test_redirect_to_file_scheme_is_refused(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", _respond_raw(raw_response(302, b"", {"location": "file:///etc/passwd"})))
    with client_for(fake) as client, pytest.raises(RedirectError):
        client.agents.list()


def test_cross_host_redirect_drops_credentials(fake: FakeServer) -> None:
    other = FakeServer()
    try:
        other.on("GET", "/api/agents", json_response(200, {"data": []}))
        target = other.url.replace("127.0.0.1", "localhost") + "/api/agents"
        fake.on("GET", "/api/agents", _respond_raw(raw_response(307, b"", {"location": target})))
        with client_for(fake, token="s3cret", user_sub="alice") as client:
            assert client.agents.list() == []
        assert fake.requests[-1].headers["authorization"] == "Bearer s3cret"
        seen = other.requests[-1].headers
        assert "authorization" not in seen and "cookie" not in seen
    finally:
        other.close()


def test_same_host_redirect_keeps_credentials_and_loops_stop(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", _respond_raw(raw_response(301, b"", {"location": "/api/agents2"})))
    fake.on("GET", "/api/agents2", json_response(200, {"data": []}))
    fake.on("GET", "/api/loop", _respond_raw(raw_response(302, b"", {"location": "/api/loop"})))
    with client_for(fake, token="t") as client:
        assert client.agents.list() == []
        assert fake.requests[-1].headers["authorization"] == "Bearer t"
        with pytest.raises(RedirectError):
            client.request_json("GET", "/api/loop")


def test_post_redirect_is_not_followed(fake: FakeServer) -> None:
    fake.on("POST", "/api/agents", _respond_raw(raw_response(307, b"", {"location": "/elsewhere"})))
    with client_for(fake) as client, pytest.raises(RedirectError):
        client.agents.create(name="x", type="echo")
    assert fake.count("POST", "/elsewhere") == 0


# -- logging -----------------------------------------------------------------------------------


def test_debug_log_redacts_credentials(fake: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": []}, {"set-cookie": "flux0_user_sub=zzz"}))
    with caplog.at_level(logging.DEBUG, logger="flux0lite"):
        with client_for(fake, token="s3cret-token", user_sub="alice-sub") as client:
            client.agents.list()
    text = caplog.text
    assert "GET" in text and "<redacted>" in text
    assert "s3cret-token" not in text and "alice-sub" not in text and "zzz" not in text
    assert redact_headers({"Authorization": "x", "Accept": "y"}) == {"Authorization": "<redacted>", "Accept": "y"}


def test_env_debug_turns_logging_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX0_DEBUG", "1")
    log = logging.getLogger("flux0lite")
    before = list(log.handlers)
    try:
        Flux0("http://127.0.0.1:1")
        assert log.level == logging.DEBUG and len(log.handlers) == len(before) + 1
    finally:
        log.handlers = before
        log.setLevel(logging.NOTSET)


def test_closed_client_refuses_requests(fake: FakeServer) -> None:
    client = client_for(fake)
    client.close()
    with pytest.raises(ConfigError):
        client.agents.list()
    assert repr(client).startswith("Flux0(")


def test_event_model_reexported() -> None:
    assert Event.__name__ == "Event"


# -- public names -------------------------------------------------------------------------------


def test_public_names_are_the_lazy_table_and_the_type_checking_imports_match_it() -> None:
    import ast
    import importlib

    import flux0lite

    tree = ast.parse(Path(flux0lite.__file__).read_text(encoding="utf-8"))
    checked: Dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.level == 1:
                    for alias in statement.names:
                        assert alias.asname == alias.name  # "X as X": an explicit re-export for mypy
                        checked[alias.name] = str(statement.module)
    assert checked == flux0lite._LAZY
    assert flux0lite.__all__ == ["__version__", *flux0lite._LAZY]
    for name, module_name in flux0lite._LAZY.items():
        module = importlib.import_module(f"flux0lite.{module_name}")
        assert name in module.__all__, (name, module_name)
        assert getattr(flux0lite, name) is getattr(module, name)


def test_async_twins_keep_the_sync_signature() -> None:
    import inspect

    from flux0lite.resources import Agents, Sessions

    for resource in (Agents, Sessions):
        for name, method in vars(resource).items():
            if name.endswith("_async"):
                sync = getattr(resource, name[: -len("_async")])
                assert inspect.iscoroutinefunction(method)
                assert inspect.signature(method).parameters == inspect.signature(sync).parameters


def test_one_request_method_behind_request_json_and_request_stream(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": []}))
    with client_for(fake) as client:
        assert client.request("GET", "/api/agents") == {"data": []}
        assert client.request_json("GET", "/api/agents") == {"data": []}
        with client.request("GET", "/api/agents", stream=True) as stream:
            assert stream.status == 200 and b"".join(stream.iter_bytes()) == b'{"data": []}'
        with client.request_stream("GET", "/api/agents") as stream:
            assert stream.status == 200
        # an error status raises the same way whichever way it was asked for
        for ask in (client.request, client.request_json, client.request_stream):
            with pytest.raises(NotFoundError):
                ask("GET", "/api/nothing")
    accepts = [r.headers.get("accept") for r in fake.requests]
    assert accepts[:4] == ["application/json"] * 2 + ["text/event-stream"] * 2
