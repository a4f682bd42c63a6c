#!/usr/bin/env python3
"""Install and run the real flux0 server (PyPI flux0-server) with flux0lite's echo agent.

Used by the integration tests, the demo and the benchmarks. The server needs Python >= 3.13;
this script itself runs on any Python >= 3.9.

    python scripts/flux0_server.py install          # create/refresh the cached venv
    python scripts/flux0_server.py run [--port N]   # run until Ctrl-C, SIGTERM or SIGHUP

The venv is cached under .cache/ (ignored by git), so only the first run pays for pip.
The server runs in its own process group; every way out of `run` stops that whole group.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, List, Optional

ROOT = Path(__file__).resolve().parent.parent
SERVER_SPEC = "flux0-server==0.1.0b4"
VENV = Path(os.environ.get("FLUX0LITE_SERVER_VENV", str(ROOT / ".cache" / "flux0-server-0.1.0b4")))
ECHO_DIR = ROOT / "scripts" / "echo_agent"


class ServerUnavailable(RuntimeError):
    """The real server cannot be installed or started here (the reason is the message)."""


class NoSuitablePython(ServerUnavailable):
    """No Python >= 3.13 on this machine: the server cannot run here at all."""


def _is_313(python: str) -> bool:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info >= (3, 13))"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "True"


def find_python() -> str:
    """A Python >= 3.13: $FLUX0_PYTHON, then python3.13+ on PATH, then pyenv's versions."""
    candidates: List[str] = []
    if os.environ.get("FLUX0_PYTHON"):
        candidates.append(os.environ["FLUX0_PYTHON"])
    for name in ("python3.14", "python3.13"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.1[3-9]*", "bin", "python3")), reverse=True)
    for candidate in candidates:
        if _is_313(candidate):
            return candidate
    raise NoSuitablePython("flux0-server needs Python >= 3.13 and none was found (set FLUX0_PYTHON)")


def venv_python() -> Path:
    return VENV / "bin" / "python"


def install(quiet: bool = True) -> Path:
    """Create the venv and install the server unless it is already there."""
    python = venv_python()
    if (
        python.exists()
        and subprocess.run([str(python), "-c", "import flux0_server"], capture_output=True).returncode == 0
    ):
        return python
    base = find_python()
    if VENV.exists():
        shutil.rmtree(VENV)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", SERVER_SPEC]
    if quiet:
        cmd.insert(4, "-q")
    result = subprocess.run(cmd, capture_output=quiet, text=True)
    if result.returncode != 0:
        raise ServerUnavailable(f"pip install {SERVER_SPEC} failed: {(result.stderr or '')[-500:]}")
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Flux0Server:
    """One real flux0 server process on 127.0.0.1."""

    def __init__(self, port: Optional[int] = None, db_uri: str = "nanodb://memory", echo_delay: float = 0.01) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_uri = db_uri
        self.echo_delay = echo_delay
        self.workdir = Path(tempfile.mkdtemp(prefix="flux0-server-"))
        self.log_path = self.workdir / "server.log"
        self.process: Optional[subprocess.Popen] = None  # type: ignore[type-arg]

    def start(self, timeout: float = 60.0, cancelled: Callable[[], bool] = lambda: False) -> "Flux0Server":
        """Start and wait until it answers; `cancelled()` turning true stops it and raises ServerUnavailable."""
        python = install()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUX0_", "PYTHON"))}
        env.update(
            PYTHONPATH=str(ECHO_DIR),
            FLUX0_MODULES="flux0lite_echo",
            FLUX0_PORT=str(self.port),
            FLUX0_HOST="127.0.0.1",
            FLUX0_DB_URI=self.db_uri,
            FLUX0_ENV="development",
            FLUX0_LOG_LEVEL="3",
            FLUX0LITE_ECHO_DELAY=str(self.echo_delay),
            PYTHONUNBUFFERED="1",
        )
        log = open(self.log_path, "ab")
        # cwd is an empty folder: the server reads ./.env and ./flux0.toml from it
        self.process = subprocess.Popen(
            [str(python), str(ECHO_DIR / "serve_loopback.py")],
            cwd=str(self.workdir),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancelled():
                self.stop()
                raise ServerUnavailable("stopped before it answered")
            if self.process.poll() is not None:
                raise ServerUnavailable(f"flux0 server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/agents", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ServerUnavailable(f"flux0 server did not answer within {timeout} s: {self.log_tail()}")

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole process group, as a crash would."""
        if self.running():
            self._signal_group(signal.SIGKILL)
            self.process.wait(10)  # type: ignore[union-attr]

    def stop(self) -> None:
        """SIGTERM to the whole process group; SIGKILL if it is not gone within 10 s."""
        if self.running():
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(10)  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        """Stop the server and remove its working folder (log, .env)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)  # type: ignore[union-attr]
        except ProcessLookupError:  # the group is already gone
            pass

    def __enter__(self) -> "Flux0Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop_when_parent_dies(signum: int) -> None:
    """Linux only: have the kernel send `signum` when our parent dies, even by SIGKILL.

    A demo or test killed outright then still stops the server through the usual signal path.
    """
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signum)
    except (OSError, AttributeError):
        pass


def run(port: int, db_uri: str) -> int:
    """Run the server until Ctrl-C, SIGTERM, SIGHUP or its own exit; every path stops its process group."""
    signalled: List[int] = []

    def on_signal(signum: int, _frame: object) -> None:  # only records: the loop below does the work
        signalled.append(signum)

    parent = os.getppid()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    _stop_when_parent_dies(signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the kernel was told to tell us
        signalled.append(signal.SIGTERM)
    server = Flux0Server(port, db_uri)
    try:
        server.start(cancelled=lambda: bool(signalled))
        print(
            f"flux0 server with the echo agent at {server.url} (pid {server.process.pid}); Ctrl-C stops it", flush=True
        )  # type: ignore[union-attr]
        while server.running() and not signalled:
            time.sleep(0.2)
        if not signalled:
            print(f"flux0 server exited with {server.process.returncode}: {server.log_tail()}", file=sys.stderr)  # type: ignore[union-attr]
            return 1
        return 0
    except (ServerUnavailable, OSError, subprocess.SubprocessError) as exc:
        print(f"flux0 server: {exc}", file=sys.stderr)
        return 0 if signalled else 1
    finally:
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["install", "run"])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db-uri", default="nanodb://memory")
    args = parser.parse_args()
    if args.command == "run":
        return run(args.port, args.db_uri)
    try:
        print(install(quiet=False))
    except (ServerUnavailable, OSError, subprocess.SubprocessError) as exc:
        print(f"flux0 server install failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
