"""The CLI against hostile servers and odd input: never a traceback, a hang or a terminal escape.

Exit codes stay in the documented set; output to a terminal holds no control character but
newline and tab; ``--json``/``--jsonl`` stay exact JSON; URL credentials are never printed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from flux0lite import cli
from flux0lite.cli import main, redact, visible_text
from tests.conftest import ROOT, Strength, subprocess_env
from tests.fakeserver import FakeFlux0, FakeServer, json_response, raw_response, sse_stream, sse_text
from tests.hostile_server import HOSTILE_TEXT, Answer, HostileServer

DOCUMENTED_EXITS = {0, 1, 2, 3}
# What must never reach a terminal: C0 controls but \n and \t, DEL, C1, bidi overrides.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _TerminalBytes(io.BytesIO):
    def isatty(self) -> bool:
        return True


def inproc(args: List[str], *, tty: bool = False, stdin: Optional[Any] = None) -> Tuple[int, str, str]:
    out: io.StringIO = _Terminal() if tty else io.StringIO()
    err = _Terminal()
    code = main(args, stdout=out, stderr=err, stdin=stdin if stdin is not None else io.StringIO(""))
    return code, out.getvalue(), err.getvalue()


def run_cli(
    args: List[Any], *, stdin: Any = b"", env: Optional[Dict[str, str]] = None, **popen: Any
) -> Tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "flux0lite", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        env=subprocess_env(**(env or {})),
        cwd=str(ROOT),
        **popen,
    )
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def assert_clean(code: int, err: str) -> None:
    assert code in DOCUMENTED_EXITS, (code, err)
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    assert not RAW_CONTROL.search(err), repr(err)
    assert len(err.splitlines()) <= 3, err  # a message, not a dump


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``--debug`` in-process configures the process-wide ``flux0lite`` logger: undo it."""
    logger = logging.getLogger("flux0lite")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture
def hostile_flux0(
    fake: FakeServer, fake_flux0: FakeFlux0, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Tuple[FakeServer, str, str]]:
    """A flux0 whose agent, session, events and replies are full of hostile text."""
    monkeypatch.setenv("FLUX0_SERVER_URL", fake.url)
    agent = fake_flux0.add_agent(name="".join(HOSTILE_TEXT[:9]))
    sid = fake_flux0.add_session(agent, title="\x1b]0;title\x07 \u202eevil")
    fake_flux0.add_events(sid, 3, text="".join(HOSTILE_TEXT[:9]))
    chunks = [
        ("status", {"id": "s", "correlation_id": "c", "data": {"status": "processing", "data": {}}}),
        *[
            ("chunk", {"event_id": "e", "seq": i, "patches": [{"op": "add", "path": "/-", "value": text}]})
            for i, text in enumerate(HOSTILE_TEXT[:9])
        ],
        ("status", {"id": "s", "correlation_id": "c", "data": {"status": "completed", "data": {}}}),
    ]
    fake.on("POST", f"/api/sessions/{sid}/events/stream", sse_stream([sse_text(chunks)]))
    yield fake, agent, sid


# -- terminal escapes --------------------------------------------------------------------------


def test_visible_text_keeps_newlines_and_tabs_only() -> None:
    assert visible_text("a\x1b[31mb\x07\n\tc\r\x9b\u202e\x7f") == "a\\x1b[31mb\\x07\n\tc\\x0d\\x9b\\u202e\\x7f"
    assert visible_text("\ud800x") == "\ufffdx"
    assert visible_text("plain ☃ 😀") == "plain ☃ 😀"


def test_chat_to_a_terminal_shows_escapes_never_obeys_them(hostile_flux0: Tuple[FakeServer, str, str]) -> None:
    fake, _, sid = hostile_flux0
    code, out, err = inproc(["chat", sid, "hi"], tty=True)
    assert_clean(code, err)
    assert code == 0 and not RAW_CONTROL.search(out)
    assert "\\x1b[31mred" in out and "\\x1b]8;;http://evil.example/\\x07" in out and "\\u202e" in out
    assert "\ufffd lone surrogate" in out


def test_chat_to_a_pipe_keeps_the_text_exact_but_no_surrogates(hostile_flux0: Tuple[FakeServer, str, str]) -> None:
    fake, _, sid = hostile_flux0
    code, out, err = inproc(["chat", sid, "hi"], tty=False)
    assert code == 0 and "\x1b[31mred" in out and "\ufffd lone surrogate" in out


def test_tables_and_messages_always_show_escapes(hostile_flux0: Tuple[FakeServer, str, str]) -> None:
    fake, agent, sid = hostile_flux0
    for args in (["agents", "list"], ["agents", "get", agent], ["sessions", "list"], ["events", "list", sid]):
        code, out, err = inproc(args, tty=False)  # even into a file: a table is for eyes
        assert code == 0 and not RAW_CONTROL.search(out), (args, out)
        assert "\\x1b" in out
    fake.on(
        "GET", "/api/agents/evil", json_response(404, {"detail": "no \x1b]8;;http://x/\x07agent\x1b]8;;\x07 \x9b2J"})
    )
    code, out, err = inproc(["agents", "get", "evil"])
    assert code == 1 and "HTTP 404" in err and "\\x1b]8;;http://x/\\x07agent" in err
    assert_clean(code, err)


def test_json_output_is_exact_json_and_terminal_safe(hostile_flux0: Tuple[FakeServer, str, str]) -> None:
    fake, agent, sid = hostile_flux0
    name = "".join(HOSTILE_TEXT[:9])
    code, out, _ = inproc(["agents", "get", agent, "--json"], tty=True)
    assert code == 0 and not RAW_CONTROL.search(out)
    assert json.loads(out)["name"] == name  # every character, lone surrogate included
    code, out, _ = inproc(["events", "list", sid, "--jsonl"], tty=True)
    assert code == 0 and len([json.loads(line) for line in out.splitlines()]) == 3
    code, out, _ = inproc(["chat", sid, "hi", "--jsonl"], tty=True)
    docs = [json.loads(line) for line in out.splitlines()]
    texts = [d["data"]["patches"][0]["value"] for d in docs if d["event"] == "chunk"]
    assert texts == HOSTILE_TEXT[:9] and not RAW_CONTROL.search(out)
    code, out, _ = inproc(["chat", sid, "hi", "--json"], tty=True)
    assert json.loads(out)["text"] == "".join(HOSTILE_TEXT[:9])


def test_real_terminal_gets_no_escape(hostile_flux0: Tuple[FakeServer, str, str]) -> None:
    """Through a pseudo-terminal, as a user would run it."""
    pty = pytest.importorskip("pty")
    fake, _, sid = hostile_flux0
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flux0lite", "chat", sid, "hi"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            env=subprocess_env(FLUX0_SERVER_URL=fake.url),
            cwd=str(ROOT),
        )
        os.close(terminal)
        terminal = -1
        output = b""
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            output += data
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    text = output.decode("utf-8")
    assert proc.returncode == 0, err
    assert "\\x1b[31mred" in text and not RAW_CONTROL.search(text.replace("\r\n", "\n"))


# -- secrets -----------------------------------------------------------------------------------


def test_redact_removes_url_credentials() -> None:
    assert redact("bad 'htps://admin:pw@host/x' here") == "bad 'htps://***@host/x' here"
    assert redact("x HTTP://u:p%40ss@h y") == "x HTTP://***@h y"
    assert redact("scheme-less admin:pw@host", ["admin:pw"]) == "scheme-less ***@host"


@pytest.mark.parametrize(
    "url",
    [
        "htps://admin:pw-S3CRET@host",
        "http://admin:pw-S3CRET@127.0.0.1:1/",
        "admin:pw-S3CRET@127.0.0.1",
        "http://admin:pw/S3CRET@host/",
        "http://admin:pw-S3CRET@127.0.0.1:99999/",
    ],
)
def test_url_credentials_are_never_printed(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX0_SERVER_URL", url)
    code, out, err = inproc(["agents", "list"])
    assert code == 2 and "S3CRET" not in err and "S3CRET" not in out, err
    assert_clean(code, err)
    code, out, err = inproc(["--server-url", url, "--debug", "agents", "list"])
    assert code == 2 and "S3CRET" not in err, err


def test_redirect_to_credentials_or_bad_port_is_exit_1_without_secret(fake: FakeServer) -> None:
    for location in ("http://admin:hunter2-S3CRET@127.0.0.1:1/api/agents", "http://127.0.0.1:99999/api/agents"):
        fake.on("GET", "/api/agents", json_response(302, {}, {"location": location}))
        code, _, err = inproc(["--server-url", fake.url, "agents", "list"])
        assert code == 1 and "S3CRET" not in err, err
        assert_clean(code, err)


# -- text the output cannot take ---------------------------------------------------------------


def test_lone_surrogates_and_ascii_stdout_in_a_real_process(hostile_flux0: Tuple[FakeServer, str, str]) -> None:
    fake, agent, sid = hostile_flux0
    for encoding in ("utf-8", "ascii", "latin-1"):
        env = {"FLUX0_SERVER_URL": fake.url, "PYTHONIOENCODING": encoding}
        for args in (["events", "list", sid], ["agents", "list"], ["chat", sid, "hi"]):
            code, _, err = run_cli(args, env=env)
            assert code == 0, (encoding, args, err)
            assert_clean(code, err)
        for args in (
            ["events", "list", sid, "--jsonl"],
            ["agents", "get", agent, "--json"],
            ["chat", sid, "x", "--jsonl"],
        ):
            proc = subprocess.run(
                [sys.executable, "-m", "flux0lite", *args],
                capture_output=True,
                timeout=60,
                env=subprocess_env(**env),
                cwd=str(ROOT),
            )
            assert proc.returncode == 0, proc.stderr
            for line in proc.stdout.decode(encoding).split("\n\n" if "--json" in args else "\n"):
                if line.strip():
                    json.loads(line)  # valid JSON in whatever encoding stdout has


def test_lang_c_locale(hostile_flux0: Tuple[FakeServer, str, str]) -> None:
    fake, _, sid = hostile_flux0
    env = {"FLUX0_SERVER_URL": fake.url, "LANG": "C", "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    code, _, err = run_cli(["events", "list", sid], env=env)
    assert code == 0 and "Traceback" not in err


def test_ascii_stream_in_process(hostile_flux0: Tuple[FakeServer, str, str]) -> None:
    fake, agent, sid = hostile_flux0
    raw = _TerminalBytes()
    out = io.TextIOWrapper(raw, encoding="ascii")
    err = io.StringIO()
    code = main(["agents", "list"], stdout=out, stderr=err)
    out.flush()
    assert code == 0 and b"\\x1b[31mred" in raw.getvalue()
    raw = _TerminalBytes()
    out = io.TextIOWrapper(raw, encoding="ascii")
    assert main(["agents", "get", agent, "--json"], stdout=out, stderr=err) == 0
    out.flush()
    assert json.loads(raw.getvalue().decode("ascii"))["name"] == "".join(HOSTILE_TEXT[:9])


# -- command-line input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--token", "tök€n", "agents", "list"], "--token"),
        (["--token", "a b", "agents", "list"], "--token"),
        (["--user", "用户", "agents", "list"], "--user"),
        (["--user", "a;b", "agents", "list"], "--user"),
        (["--timeout", "nan", "agents", "list"], "--timeout"),
        (["--timeout", "inf", "agents", "list"], "--timeout"),
        (["--timeout", "-1", "agents", "list"], "--timeout"),
        (["--timeout", "0", "agents", "list"], "--timeout"),
        (["--timeout", "1e400", "agents", "list"], "--timeout"),
        (["--timeout", "1e7", "agents", "list"], "--timeout"),
        (["--retries", "1000000", "agents", "list"], "--retries"),
        (["--retries", "²", "agents", "list"], "--retries"),
        (["events", "list", "s", "--min-offset", "9" * 5000], "--min-offset"),
        (["events", "list", "s", "--min-offset", "٣"], "--min-offset"),
        (["agents", "get", ""], "AGENT_ID"),
        (["chat", "", "hi"], "SESSION_ID"),
        (["--server-url", "http://ü.example", "agents", "list"], "xn--"),
        (["--server-url", "http://127.0.0.1:8080/a b", "agents", "list"], "--server-url"),
        (["--server-url", "http://127.0.0.1:8080/\x1b[31m", "agents", "list"], "--server-url"),
        (["--server-url", "http://[::1/x", "agents", "list"], ""),
        (["agents", "get", "\udcff"], "UTF-8"),
        (["chat", "sess", "bad \udcff"], "UTF-8"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: List[str], needle: str, fake: FakeServer) -> None:
    code, _, err = inproc(["--server-url", fake.url, *args] if "--server-url" not in args else args)
    assert code == 2, err
    assert needle in err and err.count("\n") <= 2, err
    assert_clean(code, err)
    assert "tök€n" not in err  # a token is not echoed, even a bad one
    assert not fake.requests  # nothing was sent


def test_bad_token_from_the_environment(monkeypatch: pytest.MonkeyPatch, fake: FakeServer) -> None:
    monkeypatch.setenv("FLUX0_TOKEN", "tök€n-S3CRET")
    code, _, err = inproc(["--server-url", fake.url, "agents", "list"])
    assert code == 2 and "FLUX0_TOKEN" in err and "S3CRET" not in err


def test_stdin_closed_undecodable_or_unreadable(hostile_flux0: Tuple[FakeServer, str, str]) -> None:
    fake, _, sid = hostile_flux0
    env = {"FLUX0_SERVER_URL": fake.url}
    code, _, err = run_cli(["chat", sid, "-"], stdin=None, env=env, preexec_fn=lambda: os.close(0))
    assert code == 2 and "standard input" in err and "Traceback" not in err, err
    code, _, err = run_cli(["chat", sid, "-"], stdin=b"caf\xe9 \xff\n", env=env)
    assert code == 2 and "not UTF-8" in err and "Traceback" not in err, err
    code, _, err = run_cli(["chat", sid, "-"], stdin=b"", env=env)
    assert code == 2 and "empty" in err
    code, _, err = run_cli(["chat", sid, "-"], stdin="über ✓\n".encode(), env=env)
    assert code == 0, err
    assert json.loads(fake.requests[-1].body)["content"] == "über ✓"


def test_undecodable_argv_bytes(hostile_flux0: Tuple[FakeServer, str, str]) -> None:
    fake, _, sid = hostile_flux0
    code, _, err = run_cli([b"agents", b"get", b"\xff\xfe"], env={"FLUX0_SERVER_URL": fake.url})
    assert code == 2 and "UTF-8" in err and "Traceback" not in err, err
    code, _, err = run_cli([b"chat", sid.encode(), b"caf\xe9"], env={"FLUX0_SERVER_URL": fake.url})
    assert code == 2 and "UTF-8" in err and "Traceback" not in err, err
    code, _, err = run_cli([b"agents", b"list"], env={"FLUX0_SERVER_URL": fake.url + "/\udcff"})
    assert code == 2 and "Traceback" not in err, err


def test_help_names_the_clients_default_url() -> None:
    from flux0lite.cli_args import DEFAULT_SERVER_URL_HINT
    from flux0lite.client import DEFAULT_SERVER_URL

    assert DEFAULT_SERVER_URL_HINT == DEFAULT_SERVER_URL


def test_version_help_and_usage_errors_do_not_import_the_client() -> None:
    probe = (
        "import sys, io, contextlib\n"
        "from flux0lite.cli import main\n"
        "for args in (['--version'], ['-h'], ['agents', '-h'], ['agents', 'get'], ['--timeout', 'nan', 'agents', 'list']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        main(args, stdout=io.StringIO(), stderr=io.StringIO())\n"
        "heavy = sorted(m for m in sys.modules if m in ('flux0lite.client', 'flux0lite.transport', 'flux0lite.models',"
        " 'http.client', 'ssl', 'json', 'dataclasses', 'typing'))\n"
        "print(heavy)\n"
    )
    env = subprocess_env()
    env.pop("COVERAGE_PROCESS_START", None)  # coverage itself imports json, typing and dataclasses
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env, cwd=str(ROOT)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_internal_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, fake: FakeServer) -> None:
    """The last resort: a bug shows as one line (the traceback only with --debug)."""

    def broken(*args: object) -> int:
        raise RuntimeError("boom \x1b[31m")

    monkeypatch.setattr(cli, "_run", broken)
    code, _, err = inproc(["--server-url", fake.url, "agents", "list"])
    assert code == 1 and "internal error: RuntimeError: boom \\x1b[31m" in err and "Traceback" not in err
    code, _, err = inproc(["--server-url", fake.url, "--debug", "agents", "list"])
    assert code == 1 and "Traceback" in err


# -- fuzzing -----------------------------------------------------------------------------------

COMMANDS = [
    ["agents", "list"],
    ["agents", "list", "--json"],
    ["agents", "get", "id00000001", "--jsonl"],
    ["agents", "create", "--name", "n", "--type", "echo"],
    ["sessions", "list"],
    ["sessions", "get", "id00000001", "--json"],
    ["sessions", "create", "--agent", "id00000001"],
    ["events", "list", "id00000001"],
    ["events", "list", "id00000001", "--jsonl"],
    ["chat", "id00000001", "hi"],
    ["chat", "id00000001", "hi", "--jsonl"],
    ["chat", "id00000001", "hi", "--json"],
    ["chat", "--new", "--agent", "id00000001", "hi"],
]


def _fuzz_run(server: HostileServer, args: List[str], tty: bool, encoding: str) -> Tuple[int, str, str]:
    raw = _TerminalBytes() if tty else io.BytesIO()
    out = io.TextIOWrapper(raw, encoding=encoding, write_through=True)
    err = _Terminal()
    code = main(["--server-url", server.url, "--timeout", "0.3", "--retries", "0", *args], stdout=out, stderr=err)
    return code, raw.getvalue().decode(encoding), err.getvalue()


def test_fuzzing_server_in_process(strength: Strength) -> None:
    """Hundreds of random hostile answers (120 in the quick variant): each run ends in a documented
    exit, no traceback."""
    rng = random.Random(11)
    deadline = time.monotonic() + 60
    runs = 0
    seen_exits = set()
    for seed in range(strength.pick(full=400, quick=120)):
        if time.monotonic() > deadline:
            break
        server = HostileServer(seed=seed)
        try:
            args = rng.choice(COMMANDS)
            tty = rng.random() < 0.5
            started = time.monotonic()
            code, out, err = _fuzz_run(server, args, tty, rng.choice(["utf-8", "ascii"]))
        finally:
            server.close()
        runs += 1
        seen_exits.add(code)
        assert_clean(code, err)
        assert time.monotonic() - started < 10, (seed, args)  # no hang
        if tty:
            assert not RAW_CONTROL.search(out), (seed, args, out)
        if "--json" in args and code == 0:
            json.loads(out)
        if "--jsonl" in args:
            for line in out.splitlines():
                json.loads(line)  # every line printed is complete JSON, even if the run failed later
    assert runs >= 100 and {0, 1, 3} <= seen_exits


def test_fuzzing_server_subprocess() -> None:
    """A few real processes (real stdout, real stderr) against the same kind of server."""
    for seed in range(1000, 1010):
        server = HostileServer(seed=seed)
        try:
            args = COMMANDS[seed % len(COMMANDS)]
            code, _, err = run_cli(
                ["--timeout", "0.3", "--retries", "0", *args],
                env={"FLUX0_SERVER_URL": server.url, "PYTHONIOENCODING": "ascii" if seed % 2 else "utf-8"},
            )
        finally:
            server.close()
        assert_clean(code, err)


def test_answers_cut_at_every_byte() -> None:
    """One well-formed streamed reply, cut after each of its bytes in turn."""
    body = sse_text(
        [("chunk", {"event_id": "e", "seq": 0, "patches": [{"op": "add", "path": "/-", "value": "hello"}]})]
    )
    whole = raw_response(200, body, {"content-type": "text/event-stream"})
    for cut in range(0, len(whole), 3):
        server = HostileServer(answer=lambda head, cut=cut: Answer([whole[:cut]]))
        try:
            code, _, err = inproc(["--server-url", server.url, "--timeout", "0.3", "--retries", "0", "chat", "s", "x"])
        finally:
            server.close()
        assert_clean(code, err)
        assert code in (1, 3), (cut, err)


@pytest.mark.parametrize(
    "argv",
    [
        ["agents", "list", "--json"],
        ["--jsonl", "sessions", "create", "--agent", "a", "--title", "agents"],
        ["events", "list", "s", "--type", "message", "--type", "tool", "--min-offset", "3"],
        ["chat", "--new", "--agent", "a", "sessions", "hello"],
        ["chat", "s", "-", "--json"],
        ["agents", "get", "list"],
        ["--json", "agents", "create", "--name", "get", "--type", "echo"],
    ],
)
def test_a_parser_built_for_the_arguments_parses_them_as_the_full_one(argv: List[str]) -> None:
    assert cli.build_parser(argv).parse_args(argv) == cli.build_parser().parse_args(argv)


def test_debug_log_lines_show_server_headers_escaped(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", json_response(200, {"data": []}, {"x-evil": "\x1b]0;owned\x07\x1b[31m"}))
    for env in ({"FLUX0_DEBUG": "1"}, {}):
        args = ["agents", "list"] if env else ["--debug", "agents", "list"]
        code, _, err = run_cli(args, env={"FLUX0_SERVER_URL": fake.url, **env})
        assert code == 0 and "<- GET" in err, err
        assert "\\x1b]0;owned\\x07" in err and not RAW_CONTROL.search(err), err


def test_timeout_bounds_the_whole_command_against_a_trickling_server(fake: FakeServer) -> None:
    """--timeout is also the command's total deadline: one byte every 0.05 s cannot stretch it."""
    body = b'{"data": []}' + b" " * 400  # 20 s at this pace

    def respond(req: Any, conn: Any) -> None:
        try:
            for byte in raw_response(200, body, {"content-type": "application/json"}):
                conn.send(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            pass

    fake.on("GET", "/api/agents", respond)
    started = time.monotonic()
    code, out, err = run_cli(["--server-url", fake.url, "--timeout", "1", "agents", "list"])
    elapsed = time.monotonic() - started
    assert code == 3, err
    assert "Traceback" not in err and "deadline" in err
    # the same command without a server to wait for, under the same load: start-up and work apart,
    # the trickle held the command about its 1 s deadline, not the 20 s the body takes
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}"
    started = time.monotonic()
    assert run_cli(["--server-url", refused, "--timeout", "1", "--retries", "0", "agents", "list"])[0] == 3
    work = time.monotonic() - started
    assert elapsed - work < 7, f"{elapsed:.1f} s, of which {work:.1f} s without waiting"


def _answer_without_stdout(module: str, args: List[str], redirect: str) -> "subprocess.CompletedProcess[str]":
    """``python -m module args`` with its stdout redirected by the shell (``>&-``: closed;
    ``>/dev/full``: every write fails), its one-line error checked: exit 1, no traceback."""
    proc = subprocess.run(  # the shell redirects stdout and execs Python
        ["sh", "-c", f'exec "$0" "$@" {redirect}', sys.executable, "-m", module, *args],
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        env=subprocess_env(),
        cwd=str(ROOT),
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot write the output" in proc.stderr and "Traceback" not in proc.stderr
    return proc


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("flux0lite", ["--version"]),
        ("flux0lite", ["-h"]),
        ("flux0lite", ["--help"]),
        ("flux0lite", ["agents", "-h"]),
        ("flux0lite", ["events", "list", "-h"]),
        ("flux0sync", ["--version"]),
        ("flux0sync", ["-h"]),
        ("flux0sync", ["status", "-h"]),
    ],
)
def test_an_answer_that_cannot_be_written_is_one_line_and_exit_1(module: str, args: List[str]) -> None:
    """hadv12 10 and notes: flux0lite's --version and -h wrote before main's try, and a full disk
    (or a flush at exit) printed a traceback; argparse dropped flux0-sync's failed -h or
    --version, which exited 0 with its output lost."""
    assert "No space left" in _answer_without_stdout(module, args, ">/dev/full").stderr


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("flux0lite", ["--version"]),
        ("flux0lite", ["-h"]),
        ("flux0lite", ["agents", "-h"]),
        ("flux0sync", ["--version"]),
        ("flux0sync", ["-h"]),
        ("flux0sync", ["status", "-h"]),
        ("flux0sync", ["status", "--db", "/nonexistent/a.sqlite3"]),
    ],
)
def test_an_answer_to_a_closed_stdout_is_one_line_and_exit_1(module: str, args: List[str]) -> None:
    """hadv13 03/04: with stdout closed (sys.stdout None) flux0lite wrote nowhere and exited 0,
    flux0-sync printed two tracebacks (a flush of None)."""
    assert "closed" in _answer_without_stdout(module, args, ">&-").stderr


# -- hadv36 --------------------------------------------------------------------------------------------


def test_a_session_id_holding_a_line_break_forges_no_line_on_stderr(fake: FakeServer) -> None:
    # chat --new printed the server's id as it came: a line of its own on stderr (hadv36 01)
    forged = "s\nflux0lite: error: FORGED by the server\tx"
    doc = {"id": forged, "agent_id": "a", "user_id": "u", "title": "t", "created_at": "2026-11-25T00:00:00Z"}
    fake.on("POST", "/api/sessions", json_response(201, doc))
    fake.on("POST", "/api/sessions/*", sse_stream([sse_text([("chunk", {"event_id": "e", "seq": 0, "patches": []})])]))
    code, _, err = inproc(["--server-url", fake.url, "chat", "--new", "--agent", "a", "hello"])
    assert code == 0, err
    assert err.splitlines()[0] == "session s\\nflux0lite: error: FORGED by the server\\tx"
    assert not any(line.startswith("flux0lite: error: FORGED") for line in err.splitlines())


@pytest.mark.parametrize("data", ["hello", None, [1, 2], {"value": "hello"}, 7])
def test_events_list_json_prints_each_event_as_the_server_sent_it(fake: FakeServer, data: Any) -> None:
    # an untyped event's data was written back wrapped: "hello" as {"value": "hello"} (hadv36 02)
    event = {
        "id": "e1",
        "source": "user",
        "type": "custom",
        "offset": 0,
        "correlation_id": "c",
        "data": data,
        "deleted": False,
        "created_at": "2026-11-25T00:00:00Z",
        "extra": None,
    }
    other = dict(event, id="e2", offset=1, type="status")
    fake.on("GET", "/api/sessions/s1/events", json_response(200, {"data": [event, other]}))
    code, out, err = inproc(["--server-url", fake.url, "--jsonl", "events", "list", "s1", "--type", "custom"])
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [event]
