"""Every Python code block of the official SDK README, run against the real flux0 server.

Each block runs twice: with its imports renamed to ``flux0lite.compat`` (``renamed``), and
unchanged, through ``install_as_flux0_client()`` (``hook``). Blocks that only construct a
client get a short epilogue that uses it, so each one proves a request really works.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

import flux0lite
from flux0lite.compat import Flux0, install_as_flux0_client, models, uninstall_as_flux0_client
from flux0lite.compat.models import AgentsDTO
from tests.compat.readme_blocks import (
    python_blocks,
    rename_imports,
    repair_empty_with_blocks,
    repair_missing_typing_import,
    repair_stray_comma,
)
from tests.conftest import ROOT, shared_path, subprocess_env

pytestmark = pytest.mark.integration

MODES = ["renamed", "hook"]
SSE_SESSION = "zv3h4j5Fjv"  # the id the README's streaming example posts to
MISSING_AGENT = "vUfk4PgjTm"  # the id the README's error example asks for


@pytest.fixture(scope="module")
def blocks() -> Dict[str, List[str]]:
    found = python_blocks(shared_path("flux0-client-sdk", "README.md"))
    assert sum(len(v) for v in found.values()) == 12, found.keys()
    return found


def run_block(code: str, mode: str) -> Dict[str, Any]:
    """Execute a README block as a script; returns its globals."""
    namespace: Dict[str, Any] = {"__name__": "__sdk_readme__"}
    if mode == "renamed":
        exec(compile(rename_imports(code), "<SDK README block>", "exec"), namespace)
        return namespace
    install_as_flux0_client()
    try:
        exec(compile(code, "<SDK README block>", "exec"), namespace)
    finally:
        uninstall_as_flux0_client()
    return namespace


def printed(fn: Callable[[], Any]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fn()
    return out.getvalue()


@pytest.fixture
def agent_id(sdk_env: str) -> str:
    with Flux0() as sdk:
        return sdk.agents.create(name="Readme", type_="echo", description="SDK README blocks").id


# -- SDK Installation ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_installation_script_block(blocks: Dict[str, List[str]], sdk_env: str, agent_id: str, mode: str) -> None:
    ns = run_block(blocks["SDK Installation"][0], mode)
    sdk = ns["sdk"]
    assert isinstance(sdk, Flux0)
    assert agent_id in {a.id for a in sdk.agents.list().data}


# -- SDK Example Usage -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_sync_example_block(blocks: Dict[str, List[str]], sdk_env: str, agent_id: str, mode: str) -> None:
    holder: Dict[str, Any] = {}
    out = printed(lambda: holder.update(run_block(blocks["SDK Example Usage"][0], mode)))
    res = holder["res"]
    assert isinstance(res, AgentsDTO) and agent_id in {a.id for a in res.data}
    assert out.startswith("data=[AgentDTO(") and agent_id in out
    agent = next(a for a in res.data if a.id == agent_id)
    assert agent.model_dump()["description"] == "SDK README blocks"
    assert agent.created_at.tzinfo is not None


@pytest.mark.parametrize("mode", MODES)
def test_async_example_block(blocks: Dict[str, List[str]], sdk_env: str, agent_id: str, mode: str) -> None:
    out = printed(lambda: run_block(blocks["SDK Example Usage"][1], mode))
    assert out.startswith("data=[AgentDTO(") and agent_id in out


# -- Server-sent event streaming -------------------------------------------------------------


@pytest.fixture
def sse_session(sdk_env: str, agent_id: str) -> str:
    with Flux0() as sdk:
        try:
            sdk.sessions.retrieve(session_id=SSE_SESSION)
        except models.APIError:
            sdk.sessions.create(agent_id=agent_id, id=SSE_SESSION, title="README SSE example")
    return SSE_SESSION


@pytest.mark.parametrize("mode", MODES)
def test_sse_block(blocks: Dict[str, List[str]], sse_session: str, mode: str) -> None:
    with Flux0() as sdk:
        before = len(sdk.sessions.list_events(session_id=sse_session).data)
    out = printed(lambda: run_block(blocks["Server-sent event streaming"][0], mode))
    lines = out.splitlines()
    assert any("EVENT='status'" in line and "status=<StatusEventDataStatusField.PROCESSING" in line for line in lines)
    assert any("EVENT='chunk'" in line and "patches=[JSONPatchOperationDTO(op=<Op.ADD" in line for line in lines)
    with Flux0() as sdk:
        stored = sdk.sessions.list_events(session_id=sse_session, min_offset=before).data
    question, answer = stored[0], stored[-1]
    assert (
        question.source == models.EventSourceDTO.USER and question.data.parts[0].content == "What's the weather in SF?"
    )
    assert answer.source == "ai_agent" and answer.data.parts[0].content == "Echo: What's the weather in SF?"


# -- Retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_retries_per_call_block(blocks: Dict[str, List[str]], sdk_env: str, agent_id: str, mode: str) -> None:
    holder: Dict[str, Any] = {}
    out = printed(lambda: holder.update(run_block(repair_stray_comma(blocks["Retries"][0]), mode)))
    assert isinstance(holder["res"], AgentsDTO) and agent_id in out


@pytest.mark.parametrize("mode", MODES)
def test_retries_global_block(blocks: Dict[str, List[str]], sdk_env: str, agent_id: str, mode: str) -> None:
    holder: Dict[str, Any] = {}
    out = printed(lambda: holder.update(run_block(blocks["Retries"][1], mode)))
    assert isinstance(holder["res"], AgentsDTO) and agent_id in out
    config = holder["flux0"].sdk_configuration.retry_config
    assert (config.strategy, config.backoff.max_elapsed_time, config.retry_connection_errors) == ("backoff", 100, False)


# -- Error Handling --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_error_handling_block_api_error(blocks: Dict[str, List[str]], sdk_env: str, mode: str) -> None:
    code = blocks["Error Handling"][0]
    assert MISSING_AGENT in code
    with pytest.raises(models.APIError) as caught:
        run_block(code, mode)
    error = caught.value
    assert error.status_code == 404 and error.message == "API error occurred"
    assert f"Agent with ID {MISSING_AGENT} not found" in error.body
    assert error.raw_response.status_code == 404
    assert error.raw_response.headers["Content-Type"].startswith("application/json")
    assert error.raw_response.text == error.body
    assert str(error).startswith("API error occurred: Status 404\n{")
    # still flux0lite's own tree
    assert isinstance(error, flux0lite.NotFoundError) and isinstance(error, flux0lite.Flux0Error)


@pytest.mark.parametrize("mode", MODES)
def test_error_handling_block_validation_error(blocks: Dict[str, List[str]], sdk_env: str, mode: str) -> None:
    # the same block with an id the server rejects as malformed (422), to reach its first branch
    code = blocks["Error Handling"][0].replace(MISSING_AGENT, "short")
    with pytest.raises(models.HTTPValidationError) as caught:
        run_block(code, mode)
    error = caught.value
    detail = error.data.detail[0]
    assert detail.loc == ["path", "agent_id"] and detail.type == "string_too_short" and "10 characters" in detail.msg
    assert isinstance(error, flux0lite.ValidationError) and error.status_code == 422
    assert not isinstance(error, models.APIError)  # as in the SDK: a separate class
    assert str(error).startswith('{"detail":[{"loc":["path","agent_id"]')


# -- Server Selection ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_server_selection_block(blocks: Dict[str, List[str]], server_url: str, agent_id: str, mode: str) -> None:
    code = blocks["Server Selection"][0]
    assert 'server_url="http://127.0.0.1:8080"' in code
    # the README names the default port; point it at the test's server instead
    holder: Dict[str, Any] = {}
    out = printed(lambda: holder.update(run_block(code.replace("http://127.0.0.1:8080", server_url), mode)))
    assert holder["flux0"].sdk_configuration.server_url == server_url and agent_id in out


# -- Custom HTTP Client (needs httpx: a cached venv when this Python lacks it) -------------------

SYNC_CLIENT_EPILOGUE = """
seen = []
http_client.event_hooks["request"] = [lambda request: seen.append(dict(request.headers))]
res = s.agents.list()
assert type(res).__name__ == "AgentsDTO", res
agent = s.agents.create(name="via httpx", type_="echo")
session = s.sessions.create(agent_id=agent.id)
with s.sessions.create_event(session_id=session.id, type_="message", source="user", content="hi httpx") as stream:
    kinds = [event.EVENT for event in stream]
assert "chunk" in kinds and "status" in kinds, kinds
stored = s.sessions.list_events(session_id=session.id).data
assert stored[-1].data.parts[0].content == "Echo: hi httpx"
try:
    s.agents.retrieve(agent_id="0123456789")
except models.APIError as error:
    assert type(error.raw_response).__name__ == "Response" and error.raw_response.status_code == 404
    assert isinstance(error, flux0lite.NotFoundError)
assert all(h["x-custom-header"] == "someValue" for h in seen) and len(seen) == 6, seen
print("SYNC-CLIENT-OK", len(seen))
"""

ASYNC_CLIENT_EPILOGUE = """
import asyncio
seen = []
async def remember(request):
    seen.append(dict(request.headers))
s.sdk_configuration.async_client.client.event_hooks["request"] = [remember]
async def go():
    res = await s.agents.list_async()
    agent = await s.agents.create_async(name="via async httpx", type_="echo")
    session = await s.sessions.create_async(agent_id=agent.id)
    stream = await s.sessions.create_event_async(
        session_id=session.id, type_="message", source="user", content="hi async"
    )
    async with stream as events:
        kinds = [event.EVENT async for event in events]
    stored = await s.sessions.list_events_async(session_id=session.id)
    return res, kinds, stored
res, kinds, stored = asyncio.run(go())
assert type(res).__name__ == "AgentsDTO" and "chunk" in kinds, kinds
assert stored.data[-1].data.parts[0].content == "Echo: hi async"
assert all(h["client-level-header"] == "added by client" for h in seen) and len(seen) == 5, seen
print("ASYNC-CLIENT-OK", len(seen))
"""


def run_with_httpx(python: Path, code: str, mode: str, server_url: str) -> str:
    if mode == "renamed":
        script = rename_imports(code)
    else:
        script = "from flux0lite.compat import install_as_flux0_client\ninstall_as_flux0_client()\n" + code
    script += "\nimport flux0lite\nfrom flux0lite.compat import models\n"
    done = subprocess.run(
        [str(python), "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
        env=subprocess_env(FLUX0_SERVER_URL=server_url),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("mode", MODES)
def test_custom_http_client_block(blocks: Dict[str, List[str]], httpx_python: Path, server_url: str, mode: str) -> None:
    code = blocks["Custom HTTP Client"][0] + "\nimport flux0lite\nfrom flux0lite.compat import models\n"
    out = run_with_httpx(httpx_python, code + SYNC_CLIENT_EPILOGUE, mode, server_url)
    assert "SYNC-CLIENT-OK 6" in out


@pytest.mark.parametrize("mode", MODES)
def test_custom_async_client_wrapper_block(
    blocks: Dict[str, List[str]], httpx_python: Path, server_url: str, mode: str
) -> None:
    code = repair_missing_typing_import(blocks["Custom HTTP Client"][1])
    out = run_with_httpx(httpx_python, code + ASYNC_CLIENT_EPILOGUE, mode, server_url)
    assert "ASYNC-CLIENT-OK 5" in out


# -- Resource Management ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_resource_management_block(blocks: Dict[str, List[str]], sdk_env: str, mode: str) -> None:
    ns = run_block(repair_empty_with_blocks(blocks["Resource Management"][0]), mode)
    ns["main"]()
    asyncio.run(ns["amain"]())
    # after the with block the client is closed: a later call fails cleanly, inside flux0lite's tree
    with Flux0() as sdk:
        pass
    with pytest.raises(flux0lite.ConfigError, match="closed"):
        sdk.agents.list()


# -- Debugging -------------------------------------------------------------------------------


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize("mode", MODES)
def test_debugging_block(
    blocks: Dict[str, List[str]], sdk_env: str, restore_root_logging: None, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    ns = run_block(blocks["Debugging"][0], mode)
    with caplog.at_level(logging.DEBUG, logger="flux0_client"):
        ns["s"].agents.list()
    lines = [r.getMessage() for r in caplog.records if r.name == "flux0_client"]
    assert any(line.startswith("-> GET ") and "/api/agents" in line for line in lines), lines
    assert any(line.startswith("<- GET ") and " 200 " in line for line in lines), lines


def test_debug_logger_may_be_any_object_with_debug(sdk_env: str) -> None:
    class Collector:
        def __init__(self) -> None:
            self.lines: List[str] = []

        def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
            self.lines.append(msg % args if args else msg)

    collector = Collector()
    with Flux0(debug_logger=collector) as sdk:
        sdk.agents.list()
    assert any(line.startswith("-> GET ") for line in collector.lines), collector.lines


def test_flux0_debug_environment_variable(server_url: str) -> None:
    # "You can also enable a default debug logger by setting ... FLUX0_DEBUG to true."
    import sys

    code = "from flux0lite.compat import Flux0\nFlux0().agents.list()\n"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
        env=subprocess_env(FLUX0_SERVER_URL=server_url, FLUX0_DEBUG="true"),
    )
    assert done.returncode == 0, done.stderr
    assert "-> GET " in done.stderr and "/api/agents" in done.stderr
