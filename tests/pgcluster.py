"""A throwaway PostgreSQL cluster for tests and benchmarks, and psycopg 3 on demand.

The cluster lives in a fresh temp dir, listens only on a unix socket inside it, runs with
``fsync=off`` (its data is thrown away) and is owned by an unprivileged user: ``initdb`` refuses
to run as root, so as root every server process runs as ``postgres`` (``setpriv``). The tests'
cluster lives in memory (``/dev/shm`` where there is one) and drops each test's database after the
test: every database is a 7.5 MB copy of ``template1``, and writing, then deleting, a hundred of
them on disk cost about 25 s of CPU per test session (in the kernel), against 5 s in memory.

Teardown covers every exit path: ``stop()`` (fixture finaliser, ``atexit``) asks for a fast
shutdown and then kills the whole process group; and a small reaper process, in a session of its
own, holds a pipe from us: when we die in any way, even ``kill -9``, it reads EOF, shuts the
cluster down and removes the directory.

psycopg is not a dependency of the test venvs: :func:`ensure_psycopg` installs ``psycopg[binary]``
once per Python version into ``.cache/pydeps-X.Y`` (``pip --target``) and puts that directory on
``sys.path`` and ``PYTHONPATH`` (so daemons started as subprocesses find it too).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

ROOT = Path(__file__).resolve().parent.parent
PSYCOPG_REQUIREMENT = "psycopg[binary]>=3.1"
SUPERUSER = "flux0"
_UNPRIVILEGED = "postgres"


class ClusterUnavailable(Exception):
    """PostgreSQL cannot be had here; the message says why (tests skip with it)."""


# -- psycopg ------------------------------------------------------------------------------------


def _pydeps_dir() -> Path:
    return ROOT / ".cache" / f"pydeps-{sys.version_info[0]}.{sys.version_info[1]}"


def _add_to_paths(directory: str) -> None:
    if directory not in sys.path:
        sys.path.insert(0, directory)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if directory not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([*parts, directory])
    importlib.invalidate_caches()


def ensure_psycopg() -> Optional[str]:
    """Make ``import psycopg`` work; returns None when it does, else why it cannot."""
    target = _pydeps_dir()
    if (target / ".complete").exists():
        _add_to_paths(str(target))
    try:
        importlib.import_module("psycopg")
        return None
    except ImportError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(str(target) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest runs at once install once
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            command = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "--retries",
                "1",
                "--timeout",
                "20",
                "--target",
                str(target),
                PSYCOPG_REQUIREMENT,
            ]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"cannot install {PSYCOPG_REQUIREMENT}: {exc}"
            if done.returncode != 0:
                tail = " ".join(done.stderr.split())[-300:]
                return f"cannot install {PSYCOPG_REQUIREMENT} with pip (exit {done.returncode}): {tail}"
            (target / ".complete").touch()
    _add_to_paths(str(target))
    try:
        importlib.import_module("psycopg")
    except ImportError as exc:
        return f"{PSYCOPG_REQUIREMENT} installed into {target} but does not import: {exc}"
    return None


# -- binaries -----------------------------------------------------------------------------------


def _version_key(path: Path) -> List[int]:
    return [int(n) for n in re.findall(r"\d+", path.parent.name)]


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: $PG_BINDIR, then the newest install."""
    candidates: List[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(os.path.realpath(found)).parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise ClusterUnavailable("PostgreSQL server binaries (initdb, postgres) are not installed")


def _as_unprivileged() -> List[str]:
    """The command prefix that drops root to the ``postgres`` user; nothing when not root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(_UNPRIVILEGED)
    except KeyError:
        raise ClusterUnavailable("running as root and there is no 'postgres' user to run the server as") from None
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={_UNPRIVILEGED}", f"--regid={_UNPRIVILEGED}", "--clear-groups"]
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", _UNPRIVILEGED, "--"]
    raise ClusterUnavailable("running as root and neither setpriv nor runuser is available")


# -- the cluster --------------------------------------------------------------------------------

# Reads lines "PGID" from stdin; at EOF (our owner exited, however) it asks each group's leader
# for an immediate shutdown, kills what is left, and removes the cluster directory.
_REAPER = r"""
import os, shutil, signal, sys, time
groups = [int(line) for line in sys.stdin if line.strip()]
for pgid in groups:
    try:
        os.kill(pgid, signal.SIGQUIT)
    except OSError:
        pass
deadline = time.monotonic() + 5
for pgid in groups:
    while time.monotonic() < deadline:
        try:
            os.kill(pgid, 0)
        except OSError:
            break
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


# The tests' own statements on a database (tests.daemon.helpers.execute) share one autocommit
# connection per database URL, kept until the database is dropped: each statement still sees what
# is committed when it runs, and a connection per statement (a backend forked and set up each
# time) was most of the server's CPU in tests that poll the archive.
_CONNECTIONS: Dict[str, Any] = {}


def connection(url: str) -> Any:
    """The tests' autocommit connection to the database at `url` (a new one if it broke)."""
    import psycopg

    conn = _CONNECTIONS.get(url)
    if conn is None or conn.closed or conn.broken:
        conn = _CONNECTIONS[url] = psycopg.connect(url, autocommit=True)
    return conn


def forget_connections(prefix: str = "") -> None:
    """Closes the tests' connections to the databases whose URL starts with `prefix` (all: "")."""
    for url in [url for url in _CONNECTIONS if url.startswith(prefix)]:
        with contextlib.suppress(Exception):
            _CONNECTIONS.pop(url).close()


class PgCluster:
    """One PostgreSQL server in a temp dir. ``start()``, then ``new_database()``, then ``stop()``."""

    def __init__(self, bindir: Optional[Path] = None, parent: Optional[str] = None) -> None:
        """`parent`: the folder to make the cluster's temp dir in (default: the system's temp dir)."""
        self.bindir = bindir or find_bindir()
        self.parent = parent
        self.prefix = _as_unprivileged()
        self.base: Optional[Path] = None
        self.server: Optional["subprocess.Popen[bytes]"] = None
        self._reaper: Optional["subprocess.Popen[bytes]"] = None
        self._databases = 0

    @property
    def socket_dir(self) -> str:
        assert self.base is not None
        return str(self.base)

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.socket_dir}"

    def _log_tail(self) -> str:
        if self.base is None:
            return ""
        try:
            return (self.base / "server.log").read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def start(self, timeout: float = 60.0) -> "PgCluster":
        self.base = Path(tempfile.mkdtemp(prefix="flux0pg-", dir=self.parent))
        atexit.register(self.stop)
        self._reaper = subprocess.Popen(
            [sys.executable, "-c", _REAPER, str(self.base)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a killpg of our own group must not take the reaper along
        )
        if self.prefix:
            user = pwd.getpwnam(_UNPRIVILEGED)
            os.chown(self.base, user.pw_uid, user.pw_gid)
        data = self.base / "data"
        init = subprocess.run(
            [
                *self.prefix,
                str(self.bindir / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            cwd=str(self.base),
            timeout=120,
        )
        if init.returncode != 0:
            self.stop()
            raise ClusterUnavailable(f"initdb failed (exit {init.returncode}): {init.stderr.strip()[-500:]}")
        self._start_server(timeout)
        return self

    def _start_server(self, timeout: float) -> None:
        assert self.base is not None and self._reaper is not None
        data = self.base / "data"
        with open(self.base / "server.log", "ab") as log:
            self.server = subprocess.Popen(
                [
                    *self.prefix,
                    str(self.bindir / "postgres"),
                    "-D",
                    str(data),
                    "-k",
                    self.socket_dir,
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=60",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.base),
                start_new_session=True,  # its own process group: stop() kills every backend with it
            )
        assert self._reaper.stdin is not None
        self._reaper.stdin.write(f"{self.server.pid}\n".encode())
        self._reaper.stdin.flush()
        self._wait_ready(timeout)

    def pause(self) -> None:
        """Stops the server (a fast shutdown: every connection ends), keeping its data; ``resume``
        starts it again: a database server that is down for a while."""
        forget_connections()
        server, self.server = self.server, None
        assert server is not None
        os.kill(server.pid, signal.SIGINT)
        server.wait(30)

    def resume(self, timeout: float = 60.0) -> None:
        self._start_server(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        last: Optional[BaseException] = None
        while time.monotonic() < deadline:
            assert self.server is not None
            if self.server.poll() is not None:
                tail = self._log_tail()
                self.stop()
                raise ClusterUnavailable(f"postgres exited with {self.server.returncode}: {tail}")
            try:
                psycopg.connect(self.conninfo(), connect_timeout=5).close()
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.1)
        tail = self._log_tail()
        self.stop()
        raise ClusterUnavailable(f"postgres did not accept connections within {timeout:.0f} s: {last}; {tail}")

    def new_database(self) -> str:
        """A fresh, empty database; returns its ``postgresql://`` URL."""
        import psycopg

        self._databases += 1
        name = f"flux0_test_{self._databases}"
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            # PostgreSQL 15's default strategy writes the whole template through the WAL: a file
            # copy is the cheaper one for a small database (and the only one before 15)
            strategy = " STRATEGY FILE_COPY" if conn.info.server_version >= 150000 else ""
            conn.execute(f"CREATE DATABASE {name}{strategy}")
        return self.conninfo(name)

    def drop_database(self, url: str) -> None:
        """Removes a database that :meth:`new_database` made, with whatever is still connected to it."""
        import psycopg

        forget_connections(url)
        name = url.rsplit("/", 1)[1].split("?", 1)[0]
        force = " WITH (FORCE)"  # a killed daemon's connection may not have ended yet
        try:
            with psycopg.connect(self.conninfo(), autocommit=True) as conn:
                if conn.info.server_version < 130000:
                    force = ""
                conn.execute(f"DROP DATABASE IF EXISTS {name}{force}")
        except psycopg.Error:
            pass  # only memory is lost: stop() removes the whole cluster

    def stop(self) -> None:
        forget_connections()
        server, self.server = self.server, None
        if server is not None:
            with contextlib.suppress(OSError):
                os.kill(server.pid, signal.SIGINT)  # fast shutdown: backends end, shared memory freed
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(OSError):
                os.killpg(server.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(5)
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            with contextlib.suppress(OSError):
                assert reaper.stdin is not None
                reaper.stdin.close()  # EOF: the reaper removes the directory and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                reaper.wait(10)
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


@contextlib.contextmanager
def running_cluster(parent: Optional[str] = None) -> Iterator[PgCluster]:
    """A started cluster (its temp dir made in `parent`), stopped on the way out whatever happens."""
    reason = ensure_psycopg()
    if reason:
        raise ClusterUnavailable(reason)
    cluster = PgCluster(parent=parent)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


# -- pytest fixtures (imported by the conftest of each folder that uses them) -------------------

try:
    import pytest
except ImportError:  # the benchmark imports this module without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def _skip(reason: str) -> None:
        print(f"\nPostgreSQL tests skipped: {reason}", file=sys.stderr)
        pytest.skip(f"PostgreSQL unavailable: {reason}")

    @pytest.fixture(scope="session")
    def pg_driver() -> None:
        """psycopg 3 importable (installed into .cache on first use), or the test skips."""
        reason = ensure_psycopg()
        if reason:
            _skip(reason)

    def _in_memory() -> Optional[str]:
        """/dev/shm when it is a writable folder (Linux) with room for a cluster and its databases
        (a container's is often 64 MB), else None: the system's temp dir."""
        try:
            stats = os.statvfs("/dev/shm")
        except OSError:
            return None
        roomy = stats.f_bavail * stats.f_frsize >= 1 << 30
        return "/dev/shm" if roomy and os.access("/dev/shm", os.W_OK | os.X_OK) else None

    @pytest.fixture(scope="session")
    def pg_cluster(pg_driver: None) -> Iterator[PgCluster]:
        try:
            with running_cluster(_in_memory()) as cluster:
                yield cluster
        except ClusterUnavailable as exc:
            _skip(str(exc))

    @pytest.fixture
    def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
        """The URL of a fresh, empty database in the session's throwaway cluster (dropped after the
        test: the cluster is in memory)."""
        url = pg_cluster.new_database()
        yield url
        pg_cluster.drop_database(url)
