"""``agents list`` and ``sessions list`` with ``--json``/``--jsonl`` print the server's objects
as sent, without building models (issue 17); the table output still types them."""

from __future__ import annotations

import io
import json
from typing import List, Tuple

from flux0lite.cli import main
from tests.fakeserver import FakeServer, json_response

AGENTS = [
    {"id": "a1", "name": "Echo", "type": "echo", "description": None, "created_at": "2026-11-25T12:00:00Z"},
    {"id": "a2", "name": "Ünïcode \u2028", "type": "echo", "brand_new_field": {"x": [1, 2]}},
]


def run(args: List[str], url: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--server-url", url, "--retries", "0", *args], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_agents_list_json_is_the_servers_objects(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": AGENTS}))
    code, out, err = run(["agents", "list", "--json"], fake.url)
    assert code == 0, err
    assert json.loads(out) == AGENTS
    code, out, _ = run(["agents", "list", "--jsonl"], fake.url)
    assert code == 0 and [json.loads(line) for line in out.rstrip("\n").split("\n")] == AGENTS


def test_sessions_list_jsonl_sends_the_agent_filter(fake: FakeServer) -> None:
    sessions = [{"id": "s1", "agent_id": "a1", "title": None, "consumption_offsets": {"client": 3}}]
    fake.on("GET", "/api/sessions", json_response(200, {"data": sessions}))
    code, out, err = run(["sessions", "list", "--agent", "a1", "--jsonl"], fake.url)
    assert code == 0, err
    assert [json.loads(line) for line in out.rstrip("\n").split("\n")] == sessions
    assert fake.requests[-1].target == "/api/sessions?agent_id=a1"


def test_a_list_of_the_wrong_shape_is_a_clear_error(fake: FakeServer) -> None:
    for body in ({"data": "nope"}, [1, 2], {"data": [1]}, {"items": []}):
        fake.on("GET", "/api/agents", json_response(200, body))
        code, out, err = run(["agents", "list", "--json"], fake.url)
        assert code == 1 and out == "" and 'expected {"data": [objects]}' in err and "Traceback" not in err


def test_the_table_still_types_the_agents(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": [{"id": "a1", "name": "Echo"}]}))
    code, _, err = run(["agents", "list"], fake.url)
    assert code == 1 and "missing field 'type'" in err
