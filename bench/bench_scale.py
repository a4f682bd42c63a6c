"""flux0-sync at scale: adaptive polling against today's poll-everything design, side by side.

    python3.13 bench/bench_scale.py                 # 1,000 and 5,000 sessions (real server), 100k (fake)
    python3.13 bench/bench_scale.py --sizes 1000 --window 20 --reps 1 --skip-fake   # a quick look

"Today's" daemon is ``git archive`` of commit ``ab55c07`` (main just before adaptive polling
was merged), extracted to a temporary folder; the new one is this checkout.

Part 1, the real flux0 server (scripts/flux0_server.py, in-memory store, echo agent), N empty
sessions of which 1 % can talk:

1. **What one request costs the server**: server CPU (``/proc/<pid>/stat``) over a few hundred
   requests of each kind sent back to back, interleaved, twice: an empty poll as today's daemon
   sends it (a new connection each) and kept alive, a poll of a talking session, the agents
   listing and the N-session listing. It gives a cost model that the window figures below can
   be checked against without the noise of a shared machine.
2. **Idle steady state (0 % talking)**: nothing talks; repeated interleaved windows of today's
   daemon, the new one and no daemon at all (the server's own idle load).
3. **1 % talking**: a driver posts a message to each talking session every ``--cadence``
   seconds and records when the echo agent's reply is stored; repeated interleaved windows of
   today's daemon, the new one and the driver alone. Server CPU "for the daemon" is the
   window's minus the driver-alone window of the same repetition; the spread over repetitions
   is shown. Latency to archive: from a reply being stored on the server to it being in the
   archive.

Requests and new TCP connections are counted by a loopback proxy between a daemon and the
server. Each daemon first archives everything once (``--once``, timed). Windows are
interleaved because the server's cost per request grows as the driver adds events (its
in-memory store scans every event on each poll): a fixed order would favour whichever daemon
ran first. The new daemon is measured in its steady state: before each of its windows the
schedule a daemon reaches after about 85 minutes (idle sessions at ``idle_max``, their next
polls spread over it; talking sessions active) is written into its archive, and its window
(60 s, one discovery interval) starts 5 s after it does, so it holds exactly one listing round.
Today's daemon has no steady state to reach: every pass costs the same; its window is as long,
so that it holds one pass and the ``interval`` it sleeps after it. There are ``--reps``
repetitions at 5,000 sessions or more, one below; the largest size also has one window of the
new daemon with ``--idle-max 1800`` (the default before it was raised to one hour).

Part 2, a simulated 100k-session server (stdlib, loopback, below): the archive is seeded the
same way, the new daemon runs for ``--fake-window`` seconds, and its RSS (``/proc/<pid>/status``)
and the request rate are sampled every second and compared with the formula in
:mod:`flux0sync.schedule`.

Every server and daemon started here is stopped on every exit path.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "daemon"), str(ROOT / "scripts")]

from flux0_server import Flux0Server  # noqa: E402
from flux0sync.schedule import IDLE_MAX, listing_interval, steady_rate  # noqa: E402
from flux0sync.store import PollRecord, Store  # noqa: E402

from flux0lite import Flux0, Retry, Timeout  # noqa: E402
from flux0lite.models import Session  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
INTERVAL = 10.0
DISCOVER = 60.0
TODAY_REF = "ab55c07"  # main just before adaptive polling (016c7f0^1): one poll per session per pass
IDLE_LEVEL = math.ceil(math.log2(IDLE_MAX / INTERVAL))  # the level whose delay is idle_max
ROWS: List[Tuple[str, str, str, str]] = []
CLEANUP: List[Callable[[], None]] = []


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def row(section: str, measurement: str, value: str, verdict: str = "") -> None:
    ROWS.append((section, measurement, value, verdict))
    log(f"  {section} | {measurement} | {value} | {verdict}")


def target(ok: bool, text: str) -> str:
    return f"{'met' if ok else 'MISSED'}: {text}"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- a loopback proxy that counts the daemon's requests ---------------------------------------


class CountingProxy:
    """Forwards 127.0.0.1:<port> to the server; counts request lines sent by the client side."""

    _REQUEST = re.compile(rb"(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP/1\.[01]\r\n")

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.requests: List[Tuple[float, bytes]] = []  # (time, path)
        self.connections: List[float] = []  # when each client connection was accepted
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections.append(time.monotonic())
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        carry = b""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if count:
                    text = carry + data
                    now = time.monotonic()
                    found = [m.group(2) for m in self._REQUEST.finditer(text)]
                    if found:
                        with self.lock:
                            self.requests.extend((now, path) for path in found)
                    cut = text.rfind(b"\r\n")
                    carry = text[cut + 2 :][-4096:] if cut >= 0 else text[-4096:]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def kinds(self, since: float, until: float) -> Dict[str, int]:
        """Requests sent in [since, until): event polls, session listings, agents listings, other."""
        counts = {"poll": 0, "sessions": 0, "agents": 0, "other": 0}
        with self.lock:
            window = [path for stamp, path in self.requests if since <= stamp < until]
        for path in window:
            plain = path.split(b"?")[0]
            if plain.endswith(b"/events"):
                counts["poll"] += 1
            elif plain == b"/api/sessions":
                counts["sessions"] += 1
            elif plain == b"/api/agents":
                counts["agents"] += 1
            else:
                counts["other"] += 1
        return counts

    def connected(self, since: float, until: float) -> int:
        """New TCP connections the client opened in [since, until)."""
        with self.lock:
            return sum(1 for stamp in self.connections if since <= stamp < until)

    def polls_per_session(self, since: float, until: float) -> Dict[str, int]:
        with self.lock:
            window = [path for stamp, path in self.requests if since <= stamp < until and b"/events" in path]
        counts: Dict[str, int] = {}
        for path in window:
            sid = path.split(b"/")[3].decode()
            counts[sid] = counts.get(sid, 0) + 1
        return counts

    def close(self) -> None:
        self.closed = True
        self.listener.close()


# -- the real server: sessions, and a driver that keeps 1 % of them talking ------------------


def populate(url: str, sessions: int) -> Tuple[str, List[str]]:
    client = Flux0(url, timeout=Timeout(10, 60), retry=Retry(total=5, backoff_factor=0.2))
    agent = client.agents.create(name="Scale", type="echo").id
    ids: List[str] = []
    lock = threading.Lock()

    def create(count: int) -> None:
        mine = Flux0(url, timeout=Timeout(10, 60), retry=Retry(total=5, backoff_factor=0.2))
        made = [mine.sessions.create(agent_id=agent).id for _ in range(count)]
        mine.close()
        with lock:
            ids.extend(made)

    workers = [
        threading.Thread(target=create, args=(sessions // 4 + (1 if i < sessions % 4 else 0),)) for i in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.close()
    return agent, ids


class Driver:
    """Posts a message to each active session every ``cadence`` s (staggered) from 2 threads."""

    def __init__(self, url: str, active: List[str], cadence: float) -> None:
        self.url = url
        self.active = active
        self.cadence = cadence
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.stored: List[Tuple[str, int, float]] = []  # (session, reply offset, stored at)
        self.chats = 0
        self.threads = [threading.Thread(target=self._run, args=(active[i::2], i), daemon=True) for i in range(2)]

    def start(self) -> "Driver":
        for thread in self.threads:
            thread.start()
        return self

    def _run(self, mine: List[str], seed: int) -> None:
        client = Flux0(self.url, timeout=Timeout(10, 60), retry=Retry(total=3, backoff_factor=0.2))
        rng = random.Random(seed)
        due = {sid: time.monotonic() + rng.uniform(0, self.cadence) for sid in mine}
        last: Dict[str, int] = {sid: -1 for sid in mine}
        try:
            while not self.stop.is_set():
                sid = min(due, key=due.__getitem__)
                wait = due[sid] - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    return
                try:
                    client.sessions.create_event(sid, "hello").reply()
                    events = client.sessions.list_events(sid, min_offset=last[sid] + 1)
                except Exception as exc:  # the benchmark goes on; the count shows it
                    log(f"    driver: {sid}: {exc}")
                    due[sid] = time.monotonic() + self.cadence
                    continue
                stored_at = time.monotonic()
                if events:
                    last[sid] = max(e.offset for e in events)
                    with self.lock:
                        self.stored.append((sid, last[sid], stored_at))
                        self.chats += 1
                due[sid] += self.cadence
        finally:
            client.close()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


class LatencyProbe:
    """Watches the archive: when does each stored reply show up in it?"""

    def __init__(self, db: str, driver: Driver) -> None:
        self.db = db
        self.driver = driver
        self.latencies: List[float] = []
        self.unseen = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.start_at = time.monotonic()

    def start(self) -> "LatencyProbe":
        with self.driver.lock:
            self.seen_before = len(self.driver.stored)
        self.thread.start()
        return self

    def _run(self) -> None:
        pending: List[Tuple[str, int, float]] = []
        taken = self.seen_before
        conn: Optional[sqlite3.Connection] = None
        while not self.stop.wait(0.1):
            with self.driver.lock:
                pending += self.driver.stored[taken:]
                taken = len(self.driver.stored)
            if not pending:
                continue
            try:
                if conn is None:
                    conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
                rows = conn.execute(
                    'SELECT session_id, max("offset") FROM events WHERE session_id IN (%s) GROUP BY session_id'
                    % ",".join("?" * len({p[0] for p in pending})),
                    sorted({p[0] for p in pending}),
                ).fetchall()
            except sqlite3.Error:
                continue
            now = time.monotonic()
            highest = dict(rows)
            still = []
            for sid, offset, stored_at in pending:
                if highest.get(sid, -1) >= offset:
                    self.latencies.append(now - stored_at)
                else:
                    still.append((sid, offset, stored_at))
            pending = still
        # a reply stored in the last interval + 2 s may still be on its way: not judged
        judged_until = time.monotonic() - (INTERVAL + 2)
        self.unseen = sum(1 for _, _, stored_at in pending if stored_at < judged_until)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


# -- the two daemons ----------------------------------------------------------------------------


def todays_daemon(ref: str) -> Path:
    """``git archive <ref>`` of flux0lite/ and daemon/, in a temporary folder."""
    where = Path(tempfile.mkdtemp(prefix="flux0sync-today-"))
    CLEANUP.append(lambda: shutil.rmtree(where, ignore_errors=True))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "flux0lite", "daemon"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    return where


def daemon_env(code: Path, url: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUX0_", "PYTHON"))}
    env.update(PYTHONPATH=f"{code}{os.pathsep}{code / 'daemon'}", FLUX0_SERVER_URL=url, PYTHONDONTWRITEBYTECODE="1")
    return env


class Daemon:
    def __init__(self, code: Path, url: str, db: str, extra: List[str]) -> None:
        self.cmd = [sys.executable, "-m", "flux0sync", "--db", db, "--no-check", "--log-level", "WARNING", *extra]
        self.env = daemon_env(code, url)
        # ``python -m`` puts the working directory first on sys.path: run each daemon from its
        # own code's folder, or today's daemon would import this checkout's flux0lite
        self.cwd = str(code)
        self.proc: Optional["subprocess.Popen[bytes]"] = None

    def once(self) -> float:
        started = time.monotonic()
        done = subprocess.run([*self.cmd, "--once"], env=self.env, cwd=self.cwd, capture_output=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"--once failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
        return time.monotonic() - started

    def start(self) -> "Daemon":
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        CLEANUP.append(self.kill)
        return self

    def stop(self) -> Tuple[float, int]:
        """SIGTERM; returns (seconds until it exited, exit code)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        return time.monotonic() - started, code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def seed_steady_state(db: str, active: List[str], interval: float, idle_max: float, seed: int = 7) -> None:
    """Write the schedule a long-running daemon reaches: idle sessions at idle_max, spread over it."""
    rng = random.Random(seed)
    idle_level = math.ceil(math.log2(idle_max / interval))
    now = time.time()
    talking = set(active)
    conn = sqlite3.connect(db)
    with conn:
        sessions = [sid for (sid,) in conn.execute("SELECT session_id FROM poll_schedule")]
        conn.executemany(
            "UPDATE poll_schedule SET idle_level = ?, next_poll_at = ? WHERE session_id = ?",
            [
                (0, now + rng.uniform(0, interval), sid)
                if sid in talking
                else (idle_level, now + rng.uniform(0, idle_max), sid)
                for sid in sessions
            ],
        )
    conn.close()
    if not sessions:
        raise RuntimeError(f"{db} holds no schedule to seed")


# -- what one request costs the server ---------------------------------------------------------


def request_costs(
    section: str, port: int, pid: int, idle: List[str], talking: List[str], size: int
) -> Dict[str, float]:
    """Server CPU seconds per request of each kind: back to back, interleaved, two rounds."""
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(path: str, fresh: bool) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60) if fresh else kept
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status}")
        if fresh:
            conn.close()

    ahead = 10**6  # past any session's end: the answer is empty
    kinds: List[Tuple[str, str, int, Callable[[int], None]]] = [
        (
            "new_conn",
            "empty poll, a new connection each (today's daemon)",
            200,
            lambda i: get(f"/api/sessions/{idle[i % len(idle)]}/events?min_offset=0", True),
        ),
        (
            "kept",
            "empty poll, kept alive (the new daemon)",
            200,
            lambda i: get(f"/api/sessions/{idle[i % len(idle)]}/events?min_offset=0", False),
        ),
        (
            "talk_nothing",
            "poll of a talking session, nothing new (min_offset past its end)",
            200,
            lambda i: get(f"/api/sessions/{talking[i % len(talking)]}/events?min_offset={ahead}", False),
        ),
        (
            "talk_events",
            "poll of a talking session from offset 0 (its events)",
            200,
            lambda i: get(f"/api/sessions/{talking[i % len(talking)]}/events?min_offset=0", False),
        ),
        ("agents", "agents listing", 200, lambda i: get("/api/agents", False)),
        (
            "listing",
            f"sessions listing ({size:,} sessions)",
            max(5, 50_000 // size),
            lambda i: get("/api/sessions", False),
        ),
    ]
    spent: Dict[str, List[float]] = {key: [] for key, *_ in kinds}
    try:
        for _ in range(2):
            for key, _, count, send in kinds:
                cpu0 = cpu_seconds(pid)
                for i in range(count):
                    send(i)
                spent[key].append((cpu_seconds(pid) - cpu0) / count)
    finally:
        kept.close()
    costs = {key: statistics.mean(values) for key, values in spent.items()}
    row(
        section,
        "server CPU per request, two interleaved rounds of a few hundred each (ms: mean, rounds)",
        "; ".join(
            f"{what}: {1000 * costs[key]:.2f} ({', '.join(f'{1000 * v:.2f}' for v in spent[key])})"
            for key, what, *_ in kinds
        ),
    )
    return costs


# -- measuring windows ---------------------------------------------------------------------------


def window(
    label: str,
    daemon: Optional[Daemon],
    proxy: CountingProxy,
    server_pid: int,
    seconds: float,
    *,
    driver: Optional[Driver] = None,
    db: Optional[str] = None,
) -> Dict[str, Any]:
    """One measured window: a daemon (started 5 s before it, stopped with SIGTERM after it), or none."""
    if daemon is not None:
        daemon.start()
        time.sleep(5.0)  # start-up is not the steady state (the new daemon's first listing is in it)
    probe = LatencyProbe(db, driver).start() if daemon is not None and driver is not None and db else None
    cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(0.5)
        if daemon is not None and daemon.proc is not None and daemon.proc.poll() is not None:
            raise RuntimeError(f"{label}: the daemon exited: {daemon.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    cpu1, t1 = cpu_seconds(server_pid), time.monotonic()
    if probe is not None:
        probe.close()
    stop_seconds, code = daemon.stop() if daemon is not None else (0.0, 0)
    kinds = proxy.kinds(t0, t1)
    span = t1 - t0
    result: Dict[str, Any] = {
        "label": label,
        "seconds": span,
        "rps": sum(kinds.values()) / span,
        "kinds": kinds,
        "connections": proxy.connected(t0, t1),
        "cpu": (cpu1 - cpu0) / span,
        "latencies": probe.latencies if probe is not None else [],
        "unseen": probe.unseen if probe is not None else 0,
        "stop": stop_seconds,
        "exit": code,
    }
    if driver is not None:
        per_session = proxy.polls_per_session(t0, t1)
        talking = set(driver.active)
        result["to_talking"] = sum(n for sid, n in per_session.items() if sid in talking)
    else:
        result["to_talking"] = 0
    log(
        f"    {label}: {dict(kinds)} ({result['to_talking']} polls to talking sessions), {result['connections']}"
        f" new connections in {span:.0f} s; {result['rps']:.2f} req/s, server {100 * result['cpu']:.1f} % of a core"
        + (f", exit {code} after {stop_seconds:.2f} s" if daemon is not None else "")
    )
    return result


def pct(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def model_cpu(result: Dict[str, Any], costs: Dict[str, float], poll_cost: str) -> float:
    """The window's server CPU per second as the per-request costs predict it."""
    kinds = result["kinds"]
    idle_polls = kinds["poll"] - result["to_talking"]
    spent = (
        idle_polls * costs[poll_cost]
        + result["to_talking"] * costs["talk_events"]
        + kinds["sessions"] * costs["listing"]
        + (kinds["agents"] + kinds["other"]) * costs["agents"]
    )
    return spent / result["seconds"]


def spread(values: List[float], scale: float = 100.0, unit: str = " %") -> str:
    if len(values) == 1:
        return f"{scale * values[0]:.1f}{unit}"
    return f"{scale * min(values):.1f}-{scale * max(values):.1f}{unit}"


def compare(
    section: str,
    title: str,
    size: int,
    active: int,
    todays: List[Dict[str, Any]],
    news: List[Dict[str, Any]],
    bases: List[Dict[str, Any]],
    costs: Dict[str, float],
    base_label: str,
) -> None:
    """The requests and server-CPU rows of one block of interleaved windows."""
    reps = len(news)
    formula = steady_rate(size, active, interval=INTERVAL, idle_max=IDLE_MAX, discover_interval=DISCOVER)
    rps_todays = [r["rps"] for r in todays]
    rps_news = [r["rps"] for r in news]
    rps_today, rps_new = statistics.mean(rps_todays), statistics.mean(rps_news)
    ratio = rps_new / rps_today if rps_today else float("nan")
    row(
        section,
        f"{title}: requests/s, today / new (formula), mean of {reps} interleaved windows",
        f"{rps_today:.1f} / {rps_new:.2f} ({formula:.2f}) = {100 * ratio:.1f} %"
        f" (per window: {', '.join(f'{100 * n / t:.1f} %' for t, n in zip(rps_todays, rps_news) if t)})",
        target(ratio <= 0.10, "new <= 10 % of today"),
    )
    cpu_today = [max(0.0, t["cpu"] - b["cpu"]) for t, b in zip(todays, bases)]
    cpu_new = [max(0.0, n["cpu"] - b["cpu"]) for n, b in zip(news, bases)]
    cpu_ratio = statistics.mean(cpu_new) / statistics.mean(cpu_today) if statistics.mean(cpu_today) else float("nan")
    row(
        section,
        f"{title}: server CPU for the daemon (window minus {base_label} of the same repetition): today / new",
        f"{100 * statistics.mean(cpu_today):.1f} % / {100 * statistics.mean(cpu_new):.2f} % of a core"
        f" = {100 * cpu_ratio:.1f} % (per repetition: {', '.join(f'{100 * n / t:.1f} %' for t, n in zip(cpu_today, cpu_new) if t)};"
        f" {base_label}: {spread([b['cpu'] for b in bases])} of a core)",
        target(cpu_ratio <= 0.10, "new <= 10 % of today"),
    )
    model_today = statistics.mean(model_cpu(t, costs, "new_conn") for t in todays)
    model_new = statistics.mean(model_cpu(n, costs, "kept") for n in news)
    model_ratio = model_new / model_today if model_today else float("nan")
    connections = [
        sum(r["connections"] for r in group) / max(1, sum(sum(r["kinds"].values()) for r in group))
        for group in (todays, news)
    ]
    row(
        section,
        f"{title}: the same from the per-request costs and the windows' request counts: today / new;"
        " new TCP connections per request: today / new",
        f"{100 * model_today:.1f} % / {100 * model_new:.2f} % of a core = {100 * model_ratio:.1f} %;"
        f" {connections[0]:.2f} / {connections[1]:.3f}",
    )


def real_server(
    sizes: List[int], window_s: float, base_window: float, reps_at_5000: int, cadence: float, today_code: Path
) -> None:
    for size in sizes:
        reps = reps_at_5000 if size >= 5000 else 1
        section = f"real server, {size:,} sessions"
        log(f"== {section}")
        server = Flux0Server(echo_delay=0.01).start()
        CLEANUP.append(server.stop)
        proxy = CountingProxy(server.port)
        CLEANUP.append(proxy.close)
        driver: Optional[Driver] = None
        try:
            assert server.process is not None
            pid = server.process.pid
            started = time.monotonic()
            _, sessions = populate(server.url, size)
            active = sessions[: max(1, size // 100)]
            log(f"    {size} sessions created in {time.monotonic() - started:.0f} s")
            talker = Flux0(server.url, timeout=Timeout(10, 60), retry=Retry(total=3, backoff_factor=0.2))
            for sid in active:  # one exchange each, so that their polls have events to return
                talker.sessions.create_event(sid, "hello").reply()
            talker.close()
            costs = request_costs(section, server.port, pid, sessions[len(active) :], active, size)
            work = Path(tempfile.mkdtemp(prefix="flux0sync-scale-"))
            CLEANUP.append(lambda work=work: shutil.rmtree(work, ignore_errors=True))
            old_db, new_db = str(work / "today.sqlite3"), str(work / "new.sqlite3")
            old = Daemon(today_code, proxy.url, old_db, ["--interval", str(INTERVAL)])
            new = Daemon(ROOT, proxy.url, new_db, ["--interval", str(INTERVAL), "--idle-max", str(IDLE_MAX)])
            old_first = old.once()
            new_first = Daemon(ROOT, proxy.url, new_db, ["--max-rps", "1000"]).once()
            row(
                section,
                "first pass (--once): today / new (4 workers, --max-rps 1000)",
                f"{old_first:.1f} s / {new_first:.1f} s",
            )
            # the idle steady state: nothing talks
            todays, news, bases = [], [], []
            for rep in range(reps):
                todays.append(window("today, idle", old, proxy, pid, window_s))
                seed_steady_state(new_db, [], INTERVAL, IDLE_MAX, seed=rep)
                news.append(window("new, idle", new, proxy, pid, window_s))
                bases.append(window("no daemon", None, proxy, pid, base_window / 2))
            compare(section, "0 % talking (idle)", size, 0, todays, news, bases, costs, "the server alone")
            # 1 % talking
            driver = Driver(server.url, active, cadence).start()
            time.sleep(min(cadence, 10))
            todays, news, bases = [], [], []
            variant: Optional[Dict[str, Any]] = None
            for rep in range(reps):
                todays.append(window("today, 1 % talking", old, proxy, pid, window_s, driver=driver, db=old_db))
                seed_steady_state(new_db, active, INTERVAL, IDLE_MAX, seed=10 + rep)
                news.append(window("new, 1 % talking", new, proxy, pid, window_s, driver=driver, db=new_db))
                bases.append(window("driver alone", None, proxy, pid, base_window))
                if rep == 0 and size == max(sizes):  # the old default, for comparison, at the largest size
                    old_idle = 1800.0
                    seed_steady_state(new_db, active, INTERVAL, old_idle, seed=20)
                    extra = ["--interval", str(INTERVAL), "--idle-max", str(old_idle)]
                    variant = window(
                        "new, --idle-max 1800",
                        Daemon(ROOT, proxy.url, new_db, extra),
                        proxy,
                        pid,
                        window_s,
                        driver=driver,
                        db=new_db,
                    )
            title = f"1 % talking ({len(active)} sessions, a message each per {cadence:.0f} s)"
            compare(section, title, size, len(active), todays, news, bases, costs, "the driver alone")
            for label, group in (("today", todays), ("new", news)):
                lat = sorted(x for r in group for x in r["latencies"])
                unseen = sum(r["unseen"] for r in group)
                verdict = ""
                if label == "new":
                    verdict = target(bool(lat) and lat[-1] <= INTERVAL + 2 and not unseen, "<= interval + 2 s")
                if lat:
                    value = (
                        f"{pct(lat, 0.5):.1f} / {pct(lat, 0.95):.1f} / {lat[-1]:.1f} s ({len(lat)} replies;"
                        f" {unseen} more not archived within the window)"
                    )
                else:
                    value = f"none of {unseen} replies archived within its windows"
                row(section, f"1 % talking: latency to archive, {label}: median / p95 / max", value, verdict)
            slowest = max(news, key=lambda r: r["stop"])
            row(
                section,
                "SIGTERM to exit, new (driver still talking), slowest of its windows",
                f"{slowest['stop']:.2f} s, exit {max(r['exit'] for r in news)}",
                target(all(r["stop"] <= 2 and r["exit"] == 0 for r in news), "exit 0 within 2 s"),
            )
            if variant is not None:
                formula = steady_rate(size, len(active), interval=INTERVAL, idle_max=1800.0, discover_interval=DISCOVER)
                cpu_v = max(0.0, variant["cpu"] - bases[0]["cpu"])
                cpu_t = max(0.0, todays[0]["cpu"] - bases[0]["cpu"])
                row(
                    section,
                    "1 % talking, with --idle-max 1800 (the old default), first repetition:"
                    " requests/s (formula); server CPU for the daemon",
                    f"{variant['rps']:.2f} ({formula:.2f}) = {100 * variant['rps'] / todays[0]['rps']:.1f} % of today;"
                    f" {100 * cpu_v:.2f} % of a core = {100 * cpu_v / cpu_t:.1f} % of today"
                    if cpu_t
                    else "",
                )
        finally:
            if driver is not None:
                driver.close()
            proxy.close()
            server.stop()


# -- a simulated 100k-session flux0 -------------------------------------------------------------


class FakeFlux0:
    """Just enough flux0 for a daemon: agents, a sessions listing, events per session."""

    def __init__(self, sessions: int, active: int, cadence: float) -> None:
        self.ids = [f"s{i:09d}" for i in range(sessions)]
        self.active = set(self.ids[:active])
        self.events: Dict[str, List[bytes]] = {sid: [] for sid in self.active}
        docs = [
            {
                "id": sid,
                "agent_id": "agent00001",
                "user_id": "user000001",
                "title": None,
                "consumption_offsets": {"client": 0},
                "created_at": "2026-11-26T00:00:00Z",
            }
            for sid in self.ids
        ]
        self.listing = json.dumps({"data": docs}).encode()
        self.agents = json.dumps(
            {"data": [{"id": "agent00001", "name": "A", "type": "echo", "created_at": "2026-11-26T00:00:00Z"}]}
        ).encode()
        self.lock = threading.Lock()
        self.hits: List[Tuple[float, bool]] = []  # (time, is an events poll)
        self.cadence = cadence
        self.stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._talk, daemon=True).start()

    def _talk(self) -> None:
        """Each active session gets one event every ``cadence`` seconds, staggered."""
        order = sorted(self.active)
        step = self.cadence / max(1, len(order))
        while not self.stop.is_set():
            for sid in order:
                if self.stop.wait(step):
                    return
                with self.lock:
                    log_ = self.events[sid]
                    offset = len(log_)
                    log_.append(
                        json.dumps(
                            {
                                "id": f"{sid}-{offset}",
                                "correlation_id": "c",
                                "type": "message",
                                "source": "user",
                                "offset": offset,
                                "data": {"type": "message", "parts": [{"type": "content", "content": "hi"}]},
                                "deleted": False,
                                "metadata": None,
                                "created_at": "2026-11-26T00:00:00Z",
                            }
                        ).encode()
                    )

    def _handler(self) -> type:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                path = parts.path
                polls = path.endswith("/events")
                with fake.lock:
                    fake.hits.append((time.monotonic(), polls))
                if path == "/api/agents":
                    body = fake.agents
                elif path == "/api/sessions":
                    body = fake.listing
                elif polls:
                    sid = path.split("/")[3]
                    low = int(urllib.parse.parse_qs(parts.query).get("min_offset", ["0"])[0])
                    with fake.lock:
                        items = fake.events.get(sid, [])[low:]
                        body = b'{"data":[' + b",".join(items) + b"]}"
                else:
                    body = b'{"detail":"Not Found"}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def rate(self, since: float, until: float) -> Tuple[float, float]:
        with self.lock:
            window = [polls for stamp, polls in self.hits if since <= stamp < until]
        seconds = until - since
        return sum(window) / seconds, (len(window) - sum(window)) / seconds

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def seed_archive(db: str, fake: FakeFlux0, interval: float, idle_max: float) -> None:
    """The archive of a daemon that has run for a while: every session listed and scheduled."""
    rng = random.Random(3)
    now = time.time()
    store = Store(db, check=False)
    try:
        docs = json.loads(fake.listing)["data"]
        for start in range(0, len(docs), 5000):
            page = [Session.from_dict(doc) for doc in docs[start : start + 5000]]
            store.record_listing(None, page)
            store.save_polls(
                [
                    PollRecord(s.id, now + rng.uniform(0, interval), 0, now)
                    if s.id in fake.active
                    else PollRecord(s.id, now + rng.uniform(0, idle_max), IDLE_LEVEL, now)
                    for s in page
                ]
            )
    finally:
        store.close()


def fake_100k(sessions: int, active: int, window: float, max_rps: float) -> None:
    section = f"simulated server, {sessions:,} sessions, {active:,} talking (one event each per {INTERVAL:.0f} s)"
    log(f"== {section}")
    fake = FakeFlux0(sessions, active, cadence=INTERVAL)
    CLEANUP.append(fake.close)
    work = Path(tempfile.mkdtemp(prefix="flux0sync-100k-"))
    CLEANUP.append(lambda: shutil.rmtree(work, ignore_errors=True))
    db = str(work / "archive.sqlite3")
    try:
        started = time.monotonic()
        seed_archive(db, fake, INTERVAL, IDLE_MAX)
        log(f"    archive seeded in {time.monotonic() - started:.0f} s")
        extra = ["--interval", str(INTERVAL), "--idle-max", str(IDLE_MAX), "--max-rps", str(max_rps)]
        daemon = Daemon(ROOT, fake.url, db, extra).start()
        assert daemon.proc is not None
        samples: List[Tuple[float, float]] = []
        t_start = time.monotonic()
        # past the first listing of every session and the start-up; the next round comes after
        # listing_interval (1,000 s at 100k sessions), beyond the window
        warmup = 45.0
        while time.monotonic() - t_start < warmup + window:
            time.sleep(1.0)
            if daemon.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited: {daemon.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            samples.append((time.monotonic() - t_start, rss_mb(daemon.proc.pid)))
        t_end = time.monotonic()
        polls, other = fake.rate(t_start + warmup, t_end)
        stop_seconds, code = daemon.stop()
        expected = steady_rate(
            sessions, active, interval=INTERVAL, idle_max=IDLE_MAX, discover_interval=DISCOVER, max_rps=max_rps
        )
        uncapped = steady_rate(sessions, active, interval=INTERVAL, idle_max=IDLE_MAX, discover_interval=DISCOVER)
        measured = polls + other
        row(
            section,
            "requests/s, steady (after 45 s): measured / formula",
            f"{measured:.1f} / {expected:.1f} (uncapped {uncapped:.1f}, --max-rps {max_rps:g};"
            f" a listing round every {listing_interval(DISCOVER, sessions):.0f} s)",
            target(abs(measured - expected) <= 0.15 * expected, "within 15 % of the formula"),
        )
        steady = [rss for stamp, rss in samples if stamp >= warmup]
        peak = max(rss for _, rss in samples)
        half = len(steady) // 2
        drift = statistics.mean(steady[half:]) - statistics.mean(steady[:half]) if half else 0.0
        row(
            section,
            "daemon RSS: peak / after 45 s min-max / drift (2nd half - 1st half)",
            f"{peak:.1f} MB / {min(steady):.1f}-{max(steady):.1f} MB / {drift:+.1f} MB",
            target(peak < 64 and abs(drift) < 2, "flat, under 64 MB"),
        )
        row(
            section,
            "SIGTERM to exit",
            f"{stop_seconds:.2f} s, exit {code}",
            target(stop_seconds <= 2 and code == 0, "exit 0 within 2 s"),
        )
    finally:
        fake.close()


def write_results(path: Path, started: float, argv: List[str], today_ref: str) -> None:
    lines = [
        "",
        "## flux0-sync at scale (bench/bench_scale.py)",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({time.time() - started:.0f} s);"
        f" command: `python3.13 bench/bench_scale.py {' '.join(argv)}`".rstrip(),
        f"- daemon settings: --interval {INTERVAL:g} --idle-max {IDLE_MAX:g}, 4 workers, --max-rps 20 unless shown;"
        f" today's daemon is `git archive {today_ref}` run from a temporary folder",
        "",
        "| benchmark | measurement | result | target |",
        "|---|---|---|---|",
        *[f"| {s} | {m} | {v} | {t} |" for s, m, v, t in ROWS],
        "",
    ]
    path.write_text("\n".join(lines))
    log(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000", help="session counts on the real server")
    parser.add_argument("--window", type=float, default=DISCOVER, help="seconds per window of each daemon")
    parser.add_argument(
        "--base-window", type=float, default=30.0, help="seconds per window of the driver alone (half: no daemon)"
    )
    parser.add_argument(
        "--reps", type=int, default=2, help="interleaved repetitions at 5,000 sessions or more (else 1)"
    )
    parser.add_argument("--today-ref", default=TODAY_REF, help="the commit today's daemon is taken from")
    parser.add_argument("--fake-window", type=float, default=60.0)
    parser.add_argument("--cadence", type=float, default=30.0, help="seconds between messages to a talking session")
    parser.add_argument("--fake-sessions", type=int, default=100_000)
    parser.add_argument("--fake-active", type=int, default=200)
    parser.add_argument("--fake-max-rps", type=float, default=200.0)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-fake", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / ".work" / "scale.md"))
    args = parser.parse_args()
    # SIGTERM must run the finally blocks below (they stop every server and daemon started here)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    try:
        if not args.skip_real:
            sizes = [int(s) for s in args.sizes.split(",") if s]
            real_server(sizes, args.window, args.base_window, args.reps, args.cadence, todays_daemon(args.today_ref))
        if not args.skip_fake:
            fake_100k(args.fake_sessions, args.fake_active, args.fake_window, args.fake_max_rps)
    finally:
        for cleanup in reversed(CLEANUP):
            try:
                cleanup()
            except Exception as exc:
                log(f"cleanup: {exc}")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_results(out, started, sys.argv[1:], args.today_ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
