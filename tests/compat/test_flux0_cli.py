"""The official flux0 CLI (PyPI flux0-cli), unchanged, on flux0lite through the import hook.

flux0-cli cannot be installed normally (it requires flux0-client, which is not on PyPI), so
the fixture installs it with --no-deps plus its other dependencies into a cached venv, then
every command runs as ``python -m flux0lite.compat flux0_cli.main:main ...`` against the real
server: ``import flux0_client`` inside the CLI resolves to flux0lite.compat.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import List

import pytest

from flux0lite.compat import Flux0
from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.integration


def flux0_cli(python: Path, server_url: str, *args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(
        [str(python), "-m", "flux0lite.compat", "flux0_cli.main:main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
        env=subprocess_env(FLUX0_SERVER_URL=server_url, COLUMNS="200"),
    )


@pytest.fixture(scope="module")
def seeded(server_url: str) -> List[str]:
    with Flux0(server_url=server_url) as sdk:
        agent = sdk.agents.create(name="CLI agent", type_="echo", description="for flux0-cli")
        session = sdk.sessions.create(agent_id=agent.id, title="CLI session")
        with sdk.sessions.create_event(session_id=session.id, type_="message", source="user", content="seed") as s:
            list(s)
    return [agent.id, session.id]


def test_cli_agents_list(compat_venv_python: Path, server_url: str, seeded: List[str]) -> None:
    agent_id, _ = seeded
    done = flux0_cli(compat_venv_python, server_url, "agents", "list", "-o", "json")
    assert done.returncode == 0, done.stderr
    agents = json.loads(done.stdout)
    mine = next(a for a in agents if a["id"] == agent_id)
    assert mine["name"] == "CLI agent" and mine["type"] == "echo" and mine["description"] == "for flux0-cli"
    assert set(mine) == {"id", "name", "type", "created_at", "description"}
    table = flux0_cli(compat_venv_python, server_url, "agents", "list")
    assert table.returncode == 0 and agent_id in table.stdout and "CLI agent" in table.stdout
    jsonpath = flux0_cli(compat_venv_python, server_url, "agents", "list", "-o", "json", "--jsonpath", "$.name")
    assert jsonpath.returncode == 0 and "CLI agent" in json.loads(jsonpath.stdout)


def test_cli_sessions_list(compat_venv_python: Path, server_url: str, seeded: List[str]) -> None:
    agent_id, session_id = seeded
    done = flux0_cli(compat_venv_python, server_url, "sessions", "list", "-o", "json")
    assert done.returncode == 0, done.stderr
    mine = next(s for s in json.loads(done.stdout) if s["id"] == session_id)
    assert mine["agent_id"] == agent_id and mine["title"] == "CLI session"
    assert mine["consumption_offsets"] == {"client": 0}


def test_cli_sessions_list_events(compat_venv_python: Path, server_url: str, seeded: List[str]) -> None:
    _, session_id = seeded
    done = flux0_cli(
        compat_venv_python, server_url, "sessions", "list-events", "--session-id", session_id, "-o", "json"
    )
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)
    assert [e["offset"] for e in events] == list(range(len(events)))
    assert events[0]["source"] == "user" and events[0]["data"]["parts"][0]["content"] == "seed"
    assert events[-1]["source"] == "ai_agent" and events[-1]["data"]["parts"][0]["content"] == "Echo: seed"


def test_cli_sessions_create_event(compat_venv_python: Path, server_url: str, seeded: List[str]) -> None:
    _, session_id = seeded
    done = flux0_cli(
        compat_venv_python, server_url, "sessions", "create-event", "--session-id", session_id, "--content", "from cli"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("status : ") and "PROCESSING" in line for line in lines), lines
    chunks = [line for line in lines if line.startswith("chunk event: [JSONPatchOperationDTO(")]
    assert chunks and any("'Echo: '" in line for line in chunks), lines
    with Flux0(server_url=server_url) as sdk:
        stored = sdk.sessions.list_events(session_id=session_id).data
    assert stored[-1].data.parts[0].content == "Echo: from cli"


def test_cli_single_object_commands_need_pydantic(compat_venv_python: Path, server_url: str, seeded: List[str]) -> None:
    # The CLI formats one object with isinstance(x, pydantic.BaseModel); ours are not pydantic
    # instances (no dependencies), so `agents get` reports an error instead of a table.
    agent_id, _ = seeded
    done = flux0_cli(compat_venv_python, server_url, "agents", "get", agent_id)
    assert done.returncode == 0 and "Unexpected error" in done.stderr and "not iterable" in done.stderr


def test_runner_reports_a_missing_module_without_traceback(compat_venv_python: Path, server_url: str) -> None:
    done = subprocess.run(
        [str(compat_venv_python), "-m", "flux0lite.compat", "no_such_module_x:main"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
        env=subprocess_env(),
    )
    assert done.returncode == 2 and "cannot import no_such_module_x" in done.stderr and "Traceback" not in done.stderr
