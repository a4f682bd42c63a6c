from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

import pytest

from flux0lite import __version__
from flux0lite.cli import main
from tests.conftest import ROOT, shared_path, subprocess_env
from tests.fakeserver import FakeFlux0, FakeServer, json_response, sse_stream, sse_text


def run_cli(args: List[str], url: str, stdin: str = "") -> Tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "flux0lite", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(FLUX0_SERVER_URL=url),
        cwd=str(ROOT),
    )
    return proc.returncode, proc.stdout, proc.stderr


def inproc(args: List[str], stdin: str = "") -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def test_version_and_help() -> None:
    code, out, _ = run_cli(["--version"], "http://127.0.0.1:1")
    assert code == 0 and out.strip() == f"flux0lite {__version__}"
    levels = [["-h"], ["chat", "-h"]]
    for group, actions in (
        ("agents", ("list", "create", "get")),
        ("sessions", ("list", "create", "get")),
        ("events", ("list",)),
    ):
        levels.append([group, "-h"])
        levels += [[group, action, "-h"] for action in actions]
    for args in levels:
        code, out, _ = inproc(args)
        assert code == 0 and "usage:" in out and "examples:" in out, args
    code, out, _ = inproc(["chat", "-h"])
    assert "examples:" in out and "--new" in out


def test_usage_errors_exit_2(fake: FakeServer) -> None:
    assert inproc([])[0] == 2
    assert inproc(["agents"])[0] == 2
    assert inproc(["agents", "create", "--name", "x"])[0] == 2
    assert inproc(["--timeout", "-1", "agents", "list"])[0] == 2
    code, _, err = inproc(["--server-url", "file:///etc/passwd", "agents", "list"])
    assert code == 2 and "unsupported URL scheme" in err
    code, _, err = inproc(["--server-url", fake.url, "chat", "onlyone"])
    assert code == 2 and "SESSION_ID and MESSAGE" in err
    code, _, err = inproc(["--server-url", fake.url, "chat", "--new", "hi"])
    assert code == 2 and "--agent" in err


def test_agents_and_sessions_round_trip(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    code, out, err = run_cli(["agents", "create", "--name", "Echo", "--type", "echo", "--json"], fake.url)
    assert code == 0, err
    agent = json.loads(out)
    assert agent["name"] == "Echo" and set(agent) >= {"id", "name", "type", "created_at"}
    code, out, _ = run_cli(["agents", "list"], fake.url)
    assert code == 0 and out.splitlines()[0].split()[:3] == ["ID", "NAME", "TYPE"] and agent["id"] in out
    code, out, _ = run_cli(["agents", "get", agent["id"], "--jsonl"], fake.url)
    assert json.loads(out)["id"] == agent["id"]
    code, out, _ = run_cli(["sessions", "create", "--agent", agent["id"], "--title", "t1", "--json"], fake.url)
    session = json.loads(out)
    assert session["title"] == "t1"
    code, out, _ = run_cli(["--jsonl", "sessions", "list", "--agent", agent["id"]], fake.url)
    assert [json.loads(line)["id"] for line in out.splitlines()] == [session["id"]]
    code, out, _ = run_cli(["sessions", "get", session["id"]], fake.url)
    assert code == 0 and session["id"] in out


def test_events_list_with_filters(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    sid = fake_flux0.add_session(fake_flux0.add_agent())
    fake_flux0.add_events(sid, 6)
    code, out, _ = run_cli(["events", "list", sid, "--min-offset", "2", "--source", "ai_agent", "--jsonl"], fake.url)
    assert code == 0 and [json.loads(line)["offset"] for line in out.splitlines()] == [3, 5]
    code, out, _ = run_cli(["events", "list", sid, "--type", "status", "--json"], fake.url)
    assert json.loads(out) == []
    code, out, _ = run_cli(["events", "list", sid, "--correlation-id", "RID(x)::1"], fake.url)
    assert "#2" in out and "#3" in out and "#4" not in out


def test_api_error_exit_1_and_connection_error_exit_3(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    code, out, err = run_cli(["agents", "get", "AAAAAAAAAA"], fake.url)
    assert code == 1 and out == "" and "HTTP 404" in err and "not found" in err and "Traceback" not in err
    code, _, err = run_cli(["--retries", "0", "agents", "list"], "http://127.0.0.1:1")
    assert code == 3 and "cannot connect" in err


def _chat_server(fake: FakeServer, sid: str, capture: str = "sse-sample.txt", **kw: object) -> None:
    raw = shared_path("flux0-api", "captures", capture).read_bytes()
    fake.on(
        "POST",
        f"/api/sessions/{sid}/events/stream",
        sse_stream([raw[i : i + 50] for i in range(0, len(raw), 50)], **kw),
    )  # type: ignore[arg-type]


def test_chat_streams_text(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    sid = fake_flux0.add_session(fake_flux0.add_agent())
    _chat_server(fake, sid)
    code, out, err = run_cli(["chat", sid, "hello", "flux0"], fake.url)
    assert code == 0, err
    assert out == "Echo: hello flux0\n"
    assert fake.requests[-1].json()["content"] == "hello flux0"


def test_chat_reads_stdin_and_jsonl(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    sid = fake_flux0.add_session(fake_flux0.add_agent())
    _chat_server(fake, sid)
    code, out, _ = run_cli(["chat", sid, "-", "--jsonl"], fake.url, stdin="from stdin ✓\n")
    assert code == 0
    assert fake.requests[-1].json()["content"] == "from stdin ✓"
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["event"] for d in docs[:2]] == ["status", "status"] and docs[2]["event"] == "chunk"
    code, out, _ = run_cli(["chat", sid, "hi", "--json"], fake.url)
    assert json.loads(out)["text"] == "Echo: hello flux0"


def test_chat_new_session(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    agent = fake_flux0.add_agent()
    fake.on(
        "POST", "/api/sessions/*", sse_stream([shared_path("flux0-api", "captures", "sse-sample.txt").read_bytes()])
    )
    code, out, err = run_cli(["chat", "--new", "--agent", agent, "--title", "t", "hello"], fake.url)
    assert code == 0 and out == "Echo: hello flux0\n" and err.startswith("session ")
    assert len(fake_flux0.sessions) == 1


def test_chat_writes_every_message_that_is_not_the_text_it_streamed(fake: FakeServer) -> None:
    """Plain chat prints text pieces as they stream; a message that ended as anything else (a
    list of objects, pieces a later patch replaced, an object) is written as JSON after it
    (hadv23 01: a list of objects was never shown, an edited text showed its first form)."""

    def chunk(event_id: str, seq: int, *patches: Dict[str, Any]) -> Tuple[str, Any]:
        return "chunk", {"correlation_id": "c", "event_id": event_id, "seq": seq, "patches": list(patches)}

    fake.on(
        "POST",
        "/api/sessions/*",
        sse_stream(
            [
                sse_text(
                    [
                        chunk("text", 0, {"op": "add", "path": "/-", "value": "Hi "}),
                        chunk("text", 1, {"op": "add", "path": "/-", "value": "there"}),
                        chunk("orders", 0, {"op": "add", "path": "/-", "value": {"order": "42"}}),
                        chunk("edited", 0, {"op": "add", "path": "/-", "value": "Hello"}),
                        chunk("edited", 1, {"op": "replace", "path": "/0", "value": "Bye"}),
                        chunk("object", 0, {"op": "add", "path": "/answer", "value": 42}),
                    ]
                )
            ]
        ),
    )
    code, out, err = inproc(["--server-url", fake.url, "chat", "s1", "hi"])
    assert code == 0, err
    assert out == 'Hi thereHello\n[{"order":"42"}]\n["Bye"]\n{"answer":42}\n'


def test_chat_agent_error_exits_1(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    sid = fake_flux0.add_session(fake_flux0.add_agent())
    _chat_server(fake, sid, "sse-sample-error.txt")
    code, _, err = run_cli(["chat", sid, "!error"], fake.url)
    assert code == 1 and "EchoError" in err


def test_chat_timeout_exits_3(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    sid = fake_flux0.add_session(fake_flux0.add_agent())
    _chat_server(fake, sid, end=False)
    code, out, err = run_cli(["--timeout", "0.5", "chat", sid, "hi"], fake.url)
    # --timeout is both the idle read timeout and the command's total deadline: either may end it
    assert code == 3 and ("read timeout" in err or "total deadline" in err) and out.startswith("Echo: ")


def test_ctrl_c_exits_130_without_traceback(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    sid = fake_flux0.add_session(fake_flux0.add_agent())
    _chat_server(fake, sid, end=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flux0lite", "chat", sid, "hi"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(FLUX0_SERVER_URL=fake.url),
        cwd=str(ROOT),
        # a shell's background jobs inherit SIGINT ignored; give the child the terminal default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    first = proc.stdout.read(6)  # wait until the reply is streaming
    assert first == "Echo: "
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted" in err


def test_broken_pipe_is_quiet(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    sid = fake_flux0.add_session(fake_flux0.add_agent())
    fake_flux0.add_events(sid, 3000)
    env = subprocess_env(FLUX0_SERVER_URL=fake.url)
    proc = subprocess.run(
        f"{sys.executable} -m flux0lite events list {sid} --jsonl | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=60,
    )
    assert proc.stdout.count("\n") == 1 and "Traceback" not in proc.stderr


def test_token_from_env(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": []}))
    env = subprocess_env(FLUX0_SERVER_URL=fake.url, FLUX0_TOKEN="tok-123")
    subprocess.run(
        [sys.executable, "-m", "flux0lite", "agents", "list"],
        env=env,
        cwd=str(ROOT),
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert fake.requests[-1].headers["authorization"] == "Bearer tok-123"


def test_debug_flag_logs_redacted(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": []}))
    code, _, err = run_cli(["--debug", "--token", "very-secret", "--user", "bob", "agents", "list"], fake.url)
    assert code == 0 and "-> GET" in err and "very-secret" not in err and "bob" not in err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="posix only")
def test_works_when_copied_elsewhere_on_sys_path(tmp_path: "os.PathLike[str]") -> None:
    import shutil

    target = os.path.join(str(tmp_path), "vendor")
    shutil.copytree(str(ROOT / "flux0lite"), os.path.join(target, "flux0lite"))
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": target}
    proc = subprocess.run(
        [sys.executable, "-m", "flux0lite", "--version"],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and __version__ in proc.stdout
    code = "import sys, flux0lite; bad=[m for m in sys.modules if m.split('.')[0] in ('httpx','pydantic','requests','urllib3')]; print(bad)"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "[]"
    time.sleep(0)
