"""Servers on a unix socket, named ``http+unix://%2Fpath%2Fto.sock/...``.

The real flux0 server runs on a socket (uvicorn's ``uds``, set by a small wrapper around the
project's launcher script), and a stdlib server on a socket covers the faults.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Iterator

import pytest

from flux0lite import ConfigError, Flux0, Retry
from flux0lite.errors import APIConnectionError, ConnectError
from tests.conftest import ROOT
from tests.fakeserver import FakeServer, _Handler, json_response

# the project's launcher: installs the real server (cached) and knows the echo agent
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))
from flux0_server import (
    ECHO_DIR,
    Flux0Server,
    NoSuitablePython,
    ServerUnavailable,
    install,
)

AGENTS = {
    "data": [{"id": "a1", "name": "Echo", "type": "echo", "description": None, "created_at": "2026-11-25T00:00:00Z"}]
}

# uvicorn binds a unix socket when its Config gets uds=...; the project's launcher script
# (serve_loopback.py) subclasses whatever uvicorn.Config is, so this wrapper goes first.
_UDS_WRAPPER = """
import os, runpy, sys
import uvicorn

class _UnixSocketConfig(uvicorn.Config):
    def __init__(self, *args, **kwargs):
        kwargs["uds"] = os.environ["FLUX0LITE_UDS"]
        super().__init__(*args, **kwargs)

uvicorn.Config = _UnixSocketConfig
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def socket_url(path: str, base: str = "") -> str:
    return f"http+unix://{urllib.parse.quote(path, safe='')}{base}"


@pytest.fixture(autouse=True)
def _dead_proxy_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # a unix socket is never proxied: a proxy variable pointing nowhere must not matter
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)


@contextlib.contextmanager
def _short_folder() -> Iterator[Path]:
    """A folder with a short path: a socket's path must fit in about 100 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="f0u-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    with _short_folder() as folder:
        yield folder


# -- the real flux0 server on a socket -----------------------------------------------------------


class _RealServerOnSocket(Flux0Server):
    """The launcher's real server, bound to a unix socket (by the wrapper above) instead of a port.

    Only starting differs; stopping (the whole process group, SIGTERM then SIGKILL), the log and
    the work folder are the launcher's own.
    """

    def __init__(self, path: str) -> None:
        super().__init__()  # its port is passed on but unused: uvicorn binds only the socket
        self.path = path
        self.url = socket_url(path)

    def start(self, timeout: float = 60.0, cancelled: Callable[[], bool] = lambda: False) -> "_RealServerOnSocket":
        python = install()
        wrapper = self.workdir / "uds_wrapper.py"
        wrapper.write_text(_UDS_WRAPPER)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("FLUX0_", "PYTHON")) and "proxy" not in k.lower()
        }
        env.update(
            PYTHONPATH=str(ECHO_DIR),
            FLUX0_MODULES="flux0lite_echo",
            FLUX0_PORT=str(self.port),
            FLUX0_HOST="127.0.0.1",
            FLUX0_DB_URI=self.db_uri,
            FLUX0_ENV="development",
            FLUX0_LOG_LEVEL="3",
            FLUX0LITE_ECHO_DELAY=str(self.echo_delay),
            FLUX0LITE_UDS=self.path,
            PYTHONUNBUFFERED="1",
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(python), str(wrapper), str(ECHO_DIR / "serve_loopback.py")],
                cwd=str(self.workdir),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        with Flux0(self.url, retry=Retry(total=0), timeout=2) as client:
            while time.monotonic() < deadline and not cancelled():
                if self.process.poll() is not None:
                    raise ServerUnavailable(f"exited with {self.process.returncode}: {self.log_tail()}")
                try:
                    client.agents.list()
                    return self
                except APIConnectionError:
                    time.sleep(0.1)
        self.stop()
        raise ServerUnavailable(f"no answer on {self.path} within {timeout} s: {self.log_tail()}")


@pytest.fixture(scope="module")
def real_socket() -> Iterator[str]:
    with _short_folder() as folder:
        server = _RealServerOnSocket(str(folder / "flux0.sock"))
        try:
            try:
                server.start()
            except NoSuitablePython as exc:
                pytest.skip(f"real flux0 server unavailable: {exc}")
            except ServerUnavailable as exc:
                if os.environ.get("FLUX0LITE_REQUIRE_SERVER", "1") == "1":
                    pytest.fail(f"the real flux0 server is required here but unavailable: {exc}")
                pytest.skip(f"real flux0 server unavailable: {exc}")
            yield server.path
        finally:
            server.close()


def test_the_real_server_on_a_unix_socket(real_socket: str) -> None:
    with Flux0(socket_url(real_socket)) as client:
        agent = client.agents.create(name="Over a socket", type="echo")
        assert agent.id in [a.id for a in client.agents.list()]
        session = client.sessions.create(agent_id=agent.id, title="uds")
        with client.sessions.create_event(session.id, "hello over a socket") as stream:
            reply = stream.reply()
        assert reply.text == "Echo: hello over a socket"
        events = client.sessions.list_events(session.id)
        assert [e.source for e in events][:1] == ["user"]
        assert client.sessions.retrieve(session.id).title == "uds"


def test_the_real_server_answers_errors_over_the_socket(real_socket: str) -> None:
    from flux0lite import NotFoundError

    with Flux0(socket_url(real_socket) + "/", retry=Retry(total=0)) as client:
        with pytest.raises(NotFoundError) as caught:
            client.agents.retrieve("nonexist00")
    assert caught.value.url.startswith(socket_url(real_socket) + "/api/agents/")


# -- a stdlib server on a socket -------------------------------------------------------------------


class _UnixFakeServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    fake: FakeServer


@pytest.fixture
def unix_fake(short_dir: Path) -> Iterator[FakeServer]:
    """A FakeServer's routes and records, served on ``<short_dir>/fake.sock``."""
    fake = FakeServer(routes=[("GET", "/api/agents", json_response(200, AGENTS))])
    server = _UnixFakeServer(str(short_dir / "fake.sock"), _Handler)
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    fake.url = socket_url(str(short_dir / "fake.sock"))
    yield fake
    server.shutdown()
    server.server_close()
    fake.close()


def test_keep_alive_and_host_header_on_a_socket(unix_fake: FakeServer) -> None:
    with Flux0(unix_fake.url) as client:
        for _ in range(3):
            assert client.agents.list()[0].id == "a1"
    assert unix_fake.connections == 1
    assert unix_fake.requests[0].headers["host"] == "localhost"
    assert unix_fake.requests[0].target == "/api/agents"


def test_a_base_path_and_a_relative_redirect_stay_on_the_socket(unix_fake: FakeServer) -> None:
    unix_fake.on("GET", "/flux0/api/agents", json_response(307, {}, {"location": "../moved/agents"}))
    unix_fake.on("GET", "/flux0/moved/agents", json_response(200, AGENTS))
    with Flux0(unix_fake.url + "/flux0/") as client:
        assert client.agents.list()[0].id == "a1"
    assert [r.target for r in unix_fake.requests] == ["/flux0/api/agents", "/flux0/moved/agents"]


def test_a_redirect_to_another_socket_is_refused(unix_fake: FakeServer) -> None:
    from flux0lite.errors import RedirectError

    other = socket_url("/tmp/other.sock", "/api/agents")
    unix_fake.on("GET", "/api/agents", json_response(302, {}, {"location": other}))
    with Flux0(unix_fake.url) as client, pytest.raises(RedirectError):
        client.agents.list()


def test_a_missing_socket_is_a_connect_error_naming_it(short_dir: Path) -> None:
    path = str(short_dir / "absent.sock")
    with Flux0(socket_url(path), retry=Retry(total=1, backoff_factor=0)) as client:
        with pytest.raises(ConnectError, match=f"cannot connect to {path}: No such file"):
            client.agents.create(name="x", type="echo")


def test_a_file_that_is_not_a_socket_is_a_connect_error(short_dir: Path) -> None:
    plain = short_dir / "plain.txt"
    plain.write_text("not a socket")
    with Flux0(socket_url(str(plain)), retry=Retry(total=0)) as client:
        with pytest.raises(ConnectError, match="Connection refused"):
            client.agents.list()


def test_a_path_too_long_for_a_socket_is_a_connect_error(short_dir: Path) -> None:
    with Flux0(socket_url("/tmp/" + "x" * 200 + ".sock"), retry=Retry(total=0)) as client:
        with pytest.raises(ConnectError, match="too long"):
            client.agents.list()


@pytest.mark.parametrize(
    "url, message",
    [
        ("http+unix:///run/flux0.sock/api", "no socket path"),
        ("http+unix://", "no socket path"),
        ("http+unix://%00abstract", "contains NUL"),
        ("unix:///run/flux0.sock", "unsupported URL scheme"),
    ],
)
def test_bad_socket_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Flux0(url)


def test_the_socket_path_round_trips_through_server_url() -> None:
    path = "/run/flux0 dir/ü.sock"
    client = Flux0(socket_url(path, "/base"))
    assert client.server_url == socket_url(path, "/base")
    assert client._origin.host == path
    client.close()


def test_the_cli_and_a_daemon_pass_over_the_socket(real_socket: str, tmp_path: Path) -> None:
    import io
    import json
    import sqlite3

    from flux0sync.cli import main as sync_main

    from flux0lite.cli import main as cli_main

    url = socket_url(real_socket)
    out, err = io.StringIO(), io.StringIO()
    assert (
        cli_main(
            ["--server-url", url, "agents", "create", "--name", "CLI socket", "--type", "echo", "--json"],
            stdout=out,
            stderr=err,
        )
        == 0
    ), err.getvalue()
    agent_id = json.loads(out.getvalue())["id"]
    out = io.StringIO()
    assert (
        cli_main(
            ["--server-url", url, "chat", "--new", "--agent", agent_id, "hi socket", "--json"], stdout=out, stderr=err
        )
        == 0
    ), err.getvalue()
    reply = json.loads(out.getvalue())
    assert reply["text"] == "Echo: hi socket"
    db = str(tmp_path / "archive.sqlite3")
    assert (
        sync_main(
            ["--once", "--db", db, "--server-url", url, "--agent", agent_id], stdout=io.StringIO(), stderr=io.StringIO()
        )
        == 0
    )
    with sqlite3.connect(db) as archive:
        stored = archive.execute("SELECT COUNT(*) FROM events WHERE session_id = ?", (reply["session_id"],)).fetchone()[
            0
        ]
    assert stored >= 2  # the message and the agent's reply, at least
