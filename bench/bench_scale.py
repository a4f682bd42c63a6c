"""flux0-sync at scale: adaptive polling against today's poll-everything design, side by side.

    python3.13 bench/bench_scale.py                 # 1,000 and 5,000 sessions (real server), 100k (fake)
    python3.13 bench/bench_scale.py --sizes 1000 --window 40 --skip-fake

Part 1, the real flux0 server (scripts/flux0_server.py, in-memory store, echo agent): N empty
sessions, of which 1 % are in a conversation (a driver posts a message to each every
``--cadence`` seconds and asks the server which offset the reply got). For each N, one run of
today's daemon (``git archive main``, extracted to a temporary folder) and one of this
checkout's, each for ``--window`` seconds, through a counting loopback proxy:

* requests per second the daemon sends, and the server's CPU seconds (``/proc/<pid>/stat``)
  over the window, minus what the driver alone costs (measured in a third window);
* latency to archive: from a reply being stored on the server to it being in the archive.

Each daemon first archives everything once (``--once``, timed). The new daemon is then measured
in its steady state: the schedule a daemon reaches after about 42 minutes (idle sessions at
``idle_max``, their next polls spread over it; conversing sessions active) is written into its
archive before it starts, because a few-minute benchmark cannot wait for it. Today's daemon
has no steady state to reach: every pass costs the same.

Part 2, a simulated 100k-session server (stdlib, loopback, below): the archive is seeded the
same way, the new daemon runs for ``--window`` seconds, and its RSS (``/proc/<pid>/status``)
and the request rate are sampled every second and compared with the formula in
:mod:`flux0sync.schedule`.

Every server and daemon started here is stopped on every exit path.
"""

from __future__ import annotations

import argparse
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
from flux0sync.schedule import steady_rate  # noqa: E402
from flux0sync.store import PollRecord, Store  # noqa: E402

from flux0lite import Flux0, Retry, Timeout  # noqa: E402
from flux0lite.models import Session  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
INTERVAL = 10.0
IDLE_MAX = 1800.0
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
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
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

    def count(self, since: float, until: float) -> Tuple[int, int]:
        """(event polls, other requests) sent in [since, until)."""
        with self.lock:
            window = [path for stamp, path in self.requests if since <= stamp < until]
        polls = sum(1 for path in window if b"/events" in path)
        return polls, len(window) - polls

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


def todays_daemon() -> Path:
    """``git archive main`` of flux0lite/ and daemon/, in a temporary folder."""
    where = Path(tempfile.mkdtemp(prefix="flux0sync-main-"))
    CLEANUP.append(lambda: shutil.rmtree(where, ignore_errors=True))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "main", "flux0lite", "daemon"],
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
        self.proc: Optional["subprocess.Popen[bytes]"] = None

    def once(self) -> float:
        started = time.monotonic()
        done = subprocess.run([*self.cmd, "--once"], env=self.env, capture_output=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"--once failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
        return time.monotonic() - started

    def start(self) -> "Daemon":
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
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


def seed_steady_state(db: str, active: List[str], interval: float, idle_max: float) -> None:
    """Write the schedule a long-running daemon reaches: idle sessions at idle_max, spread over it."""
    rng = random.Random(7)
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


def measure(
    label: str, daemon: Daemon, proxy: CountingProxy, server_pid: int, window: float, driver: Driver, db: str
) -> Dict[str, Any]:
    daemon.start()
    assert daemon.proc is not None
    time.sleep(5.0)  # start-up and the first discovery are not the steady state
    probe = LatencyProbe(db, driver).start()
    cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
    rss: List[float] = []
    while time.monotonic() - t0 < window:
        time.sleep(1.0)
        rss.append(rss_mb(daemon.proc.pid))
    cpu1, t1 = cpu_seconds(server_pid), time.monotonic()
    probe.close()
    stop_seconds, code = daemon.stop()
    polls, other = proxy.count(t0, t1)
    seconds = t1 - t0
    per_session = proxy.polls_per_session(t0, t1)
    talking = set(driver.active)
    to_talking = sum(n for sid, n in per_session.items() if sid in talking)
    idle_repeats = sum(n - 1 for sid, n in per_session.items() if sid not in talking and n > 1)
    log(
        f"    {label}: {polls} polls ({to_talking} to talking sessions, {polls - to_talking} to idle ones,"
        f" {idle_repeats} repeats of an idle one), {other} other requests in {seconds:.0f} s"
    )
    result = {
        "label": label,
        "rps": (polls + other) / seconds,
        "polls": polls,
        "other": other,
        "cpu": (cpu1 - cpu0) / seconds,
        "latencies": sorted(probe.latencies),
        "unseen": probe.unseen,
        "stop": stop_seconds,
        "exit": code,
        "rss": max(rss) if rss else 0.0,
    }
    log(f"    {label}: {result['rps']:.1f} req/s, server {100 * result['cpu']:.1f} % of a core, exit {code}")
    return result


def driver_only(server_pid: int, window: float) -> float:
    cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
    time.sleep(window)
    return (cpu_seconds(server_pid) - cpu0) / (time.monotonic() - t0)


def pct(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def real_server(sizes: List[int], window: float, cadence: float, main_code: Path) -> None:
    for size in sizes:
        section = f"real server, {size:,} sessions, 1 % talking"
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
            work = Path(tempfile.mkdtemp(prefix="flux0sync-scale-"))
            CLEANUP.append(lambda work=work: shutil.rmtree(work, ignore_errors=True))
            old_db, new_db = str(work / "today.sqlite3"), str(work / "new.sqlite3")
            driver = Driver(server.url, active, cadence).start()
            time.sleep(min(cadence, 10))  # every talking session has its first reply
            old = Daemon(main_code, proxy.url, old_db, ["--interval", str(INTERVAL)])
            new = Daemon(ROOT, proxy.url, new_db, ["--interval", str(INTERVAL), "--idle-max", str(IDLE_MAX)])
            old_first = old.once()
            new_first = Daemon(ROOT, proxy.url, new_db, ["--max-rps", "1000"]).once()
            row(
                section,
                "first pass (--once): today / new (4 workers, --max-rps 1000)",
                f"{old_first:.1f} s / {new_first:.1f} s",
            )
            today = measure("today", old, proxy, pid, window, driver, old_db)
            seed_steady_state(new_db, active, INTERVAL, IDLE_MAX)  # just before it starts: nothing overdue
            adaptive = measure("new", new, proxy, pid, window, driver, new_db)
            base = driver_only(pid, min(window, 30))
            expected = steady_rate(size, len(active), interval=INTERVAL, idle_max=IDLE_MAX, discover_interval=60)
            ratio = adaptive["rps"] / today["rps"]
            row(
                section,
                "requests/s: today / new (formula)",
                f"{today['rps']:.1f} / {adaptive['rps']:.2f} ({expected:.2f}) = {100 * ratio:.1f} %",
                target(ratio <= 0.10, "new <= 10 % of today") if size >= 5000 else "",
            )
            cpu_today, cpu_new = max(0.0, today["cpu"] - base), max(0.0, adaptive["cpu"] - base)
            cpu_ratio = cpu_new / cpu_today if cpu_today else float("nan")
            row(
                section,
                "server CPU for the daemon (minus the driver's own load): today / new",
                f"{100 * cpu_today:.1f} % / {100 * cpu_new:.1f} % of a core = {100 * cpu_ratio:.1f} %"
                f" (driver alone: {100 * base:.1f} %)",
                target(cpu_ratio <= 0.10, "new <= 10 % of today") if size >= 5000 else "",
            )
            for result in (today, adaptive):
                lat = result["latencies"]
                verdict = ""
                if result is adaptive:
                    verdict = target(
                        bool(lat) and lat[-1] <= INTERVAL + 2 and not result["unseen"], "<= interval + 2 s"
                    )
                if lat:
                    value = (
                        f"{pct(lat, 0.5):.1f} / {pct(lat, 0.95):.1f} / {lat[-1]:.1f} s ({len(lat)} replies;"
                        f" {result['unseen']} more not archived within the window)"
                    )
                else:
                    value = f"none of {result['unseen']} replies archived within the {window:.0f} s window"
                row(section, f"latency to archive, {result['label']}: median / p95 / max", value, verdict)
            row(
                section,
                "SIGTERM to exit, new (driver still talking)",
                f"{adaptive['stop']:.2f} s, exit {adaptive['exit']}",
                target(adaptive["stop"] <= 2 and adaptive["exit"] == 0, "exit 0 within 2 s"),
            )
            if size >= 5000:  # what the formula says meets the target: idle sessions polled hourly
                slow_idle = 2 * IDLE_MAX
                seed_steady_state(new_db, active, INTERVAL, slow_idle)
                extra = ["--interval", str(INTERVAL), "--idle-max", str(slow_idle)]
                variant = measure(
                    "new, --idle-max 3600", Daemon(ROOT, proxy.url, new_db, extra), proxy, pid, window, driver, new_db
                )
                formula = steady_rate(size, len(active), interval=INTERVAL, idle_max=slow_idle, discover_interval=60)
                ratio = variant["rps"] / today["rps"]
                cpu_variant = max(0.0, variant["cpu"] - base)
                row(
                    section,
                    "with --idle-max 3600: requests/s (formula); server CPU for the daemon",
                    f"{variant['rps']:.2f} ({formula:.2f}) = {100 * ratio:.1f} % of today;"
                    f" {100 * cpu_variant:.1f} % of a core = {100 * cpu_variant / cpu_today:.1f} % of today",
                    target(ratio <= 0.10 and cpu_variant <= 0.10 * cpu_today, "new <= 10 % of today"),
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
        warmup = 75.0  # past the second discovery round (60 s): its transient is part of the steady state
        while time.monotonic() - t_start < warmup + window:
            time.sleep(1.0)
            if daemon.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited: {daemon.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            samples.append((time.monotonic() - t_start, rss_mb(daemon.proc.pid)))
        t_end = time.monotonic()
        polls, other = fake.rate(t_start + warmup, t_end)
        stop_seconds, code = daemon.stop()
        expected = steady_rate(
            sessions, active, interval=INTERVAL, idle_max=IDLE_MAX, discover_interval=60, max_rps=max_rps
        )
        uncapped = steady_rate(sessions, active, interval=INTERVAL, idle_max=IDLE_MAX, discover_interval=60)
        measured = polls + other
        row(
            section,
            "requests/s, steady (after 75 s): measured / formula",
            f"{measured:.1f} / {expected:.1f} (uncapped {uncapped:.1f}, --max-rps {max_rps:g})",
            target(abs(measured - expected) <= 0.15 * expected, "within 15 % of the formula"),
        )
        steady = [rss for stamp, rss in samples if stamp >= warmup]
        peak = max(rss for _, rss in samples)
        half = len(steady) // 2
        drift = statistics.mean(steady[half:]) - statistics.mean(steady[:half]) if half else 0.0
        row(
            section,
            "daemon RSS: peak / after 75 s min-max / drift (2nd half - 1st half)",
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


def write_results(path: Path, started: float, argv: List[str]) -> None:
    lines = [
        "",
        "## flux0-sync at scale (bench/bench_scale.py)",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({time.time() - started:.0f} s);"
        f" command: `python3.13 bench/bench_scale.py {' '.join(argv)}`".rstrip(),
        f"- daemon settings: --interval {INTERVAL:g} --idle-max {IDLE_MAX:g}, 4 workers, --max-rps 20 unless shown;"
        " today's daemon is `git archive main` run from a temporary folder",
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
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured per daemon")
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
            real_server([int(s) for s in args.sizes.split(",") if s], args.window, args.cadence, todays_daemon())
        if not args.skip_fake:
            fake_100k(args.fake_sessions, args.fake_active, args.window, args.fake_max_rps)
    finally:
        for cleanup in reversed(CLEANUP):
            try:
                cleanup()
            except Exception as exc:
                log(f"cleanup: {exc}")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_results(out, started, sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
