"""flux0lite benchmarks, measured side by side with the peers in one run.

Run through ``bench/run`` (it builds the peers' venv). Writes bench/RESULTS.md and
bench/throughput.png. Every figure is a median of several runs; every comparison is a ratio of
numbers measured in this same run, interleaved, so machine noise hits both sides alike.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "daemon"), str(ROOT / "scripts")]

from flux0lite import Event, Flux0, Retry, Timeout  # noqa: E402
from flux0lite.jsonmodel import spec_of  # noqa: E402
from flux0lite.sse import SSEDecoder  # noqa: E402

SHARED = ROOT.parent / "shared"
ROWS: List[Tuple[str, str, str, str]] = []  # section, measurement, value, verdict
PLOT: Dict[str, List[Tuple[float, float]]] = {}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved(fns: Dict[str, Callable[[], Any]], repeat: int) -> Dict[str, float]:
    """Median seconds per function, running them in turn so that noise is shared."""
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    order = list(fns)
    shuffle = random.Random(1234).shuffle
    for _ in range(repeat):
        shuffle(order)  # no contender always runs right after the same other one
        for name in order:
            fn = fns[name]
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def row(section: str, measurement: str, value: str, verdict: str = "") -> None:
    ROWS.append((section, measurement, value, verdict))
    log(f"  {section} | {measurement} | {value} | {verdict}")


def target(ok: bool, text: str) -> str:
    return f"{'met' if ok else 'MISSED'}: {text}"


# -- 1. import cost -----------------------------------------------------------------------------


def bench_import(repeat: int) -> None:
    log("import cost")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="")
    python = sys.executable  # the bench venv's: the peers are installed there
    for warm in ("import flux0lite", "import httpx, httpx_sse, pydantic"):
        subprocess.run([python, "-c", warm], env=env, check=True)  # warm the bytecode caches

    def run(code: str) -> Tuple[List[str], Path]:
        return [python, "-c", code], ROOT

    wall, cpu = _interleaved_children(
        {
            "bare": run("pass"),
            "flux0lite": run("import flux0lite"),
            "peers": run("import httpx, httpx_sse, pydantic"),
            # What a first request really loads (everything "import flux0lite" defers), and the CLI.
            "client": run("from flux0lite import Flux0; Flux0('http://127.0.0.1:1')"),
            "peer client": run("import httpx, httpx_sse, pydantic; httpx.Client()"),
            "cli": ([python, "-m", "flux0lite", "--version"], ROOT),
        },
        repeat,
    )
    proc = subprocess.run(
        [python, "-X", "importtime", "-c", "import flux0lite"], env=env, capture_output=True, text=True
    )
    self_us = 0
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*flux0lite$", line)
        if match:
            self_us = int(match.group(1))
    modules = subprocess.run(
        [python, "-c", "import sys; before=set(sys.modules); import flux0lite; print(len(set(sys.modules)-before))"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()

    def over(name: str) -> Tuple[float, float]:
        return (wall[name] - wall["bare"]) * 1000, (cpu[name] - cpu["bare"]) * 1000

    # The difference can drown in process start-up noise; never count less than what
    # -X importtime measured inside the process.
    over_bare, over_cpu = (max(value, self_us / 1000) for value in over("flux0lite"))
    peers_over, peers_cpu = over("peers")
    row(
        "import",
        f"python -c pass (median of {repeat} interleaved runs, wall (CPU))",
        f"{wall['bare'] * 1000:.1f} ms (CPU {cpu['bare'] * 1000:.1f} ms)",
    )
    row(
        "import",
        "python -c 'import flux0lite'",
        f"{wall['flux0lite'] * 1000:.1f} ms (+{over_bare:.1f} ms; CPU +{over_cpu:.1f} ms)",
        target(max(over_bare, over_cpu) <= 15, "at most 15 ms over bare Python (wall and CPU)"),
    )
    row(
        "import",
        "python -c 'import httpx, httpx_sse, pydantic'",
        f"{wall['peers'] * 1000:.1f} ms (+{peers_over:.1f} ms; CPU +{peers_cpu:.1f} ms)",
    )
    ratio = min(peers_over / max(over_bare, 0.01), peers_cpu / max(over_cpu, 0.01))
    row(
        "import",
        "added import cost, peers / flux0lite (the lower of wall and CPU)",
        f"{ratio:.1f}x",
        target(ratio >= 10, "10x or more"),
    )
    (ours_use, ours_cpu), (peer_use, peer_cpu) = over("client"), over("peer client")
    row(
        "import",
        "first use: 'from flux0lite import Flux0; Flux0()' over bare (http.client, ssl, json; no models)",
        f"+{ours_use:.1f} ms (CPU +{ours_cpu:.1f} ms)",
        f"{peer_use / max(ours_use, 0.01):.1f}x less than httpx+httpx_sse+pydantic with httpx.Client()"
        f" (+{peer_use:.1f} ms; CPU +{peer_cpu:.1f} ms)",
    )
    row(
        "import",
        "python -m flux0lite --version",
        f"{wall['cli'] * 1000:.1f} ms (CPU {cpu['cli'] * 1000:.1f} ms)",
    )
    row("import", "-X importtime cumulative for flux0lite", f"{self_us / 1000:.1f} ms; {modules} modules loaded")


def _interleaved_children(
    cases: Dict[str, Tuple[List[str], Path]], repeat: int
) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Median wall and CPU seconds of each case's process, the cases run in turn (shuffled)."""
    for argv, tree in cases.values():
        _child(argv, tree)  # warm-up: bytecode caches written
    samples: Dict[str, List[Tuple[float, float]]] = {name: [] for name in cases}
    order = list(cases)
    shuffle = random.Random(17).shuffle
    for _ in range(repeat):
        shuffle(order)  # no contender always runs right after the same other one
        for name in order:
            samples[name].append(_child(*cases[name]))
    wall = {name: statistics.median(s[0] for s in values) for name, values in samples.items()}
    cpu = {name: statistics.median(s[1] for s in values) for name, values in samples.items()}
    return wall, cpu


# -- 1b. start-up: the CLI and a library's first call, as a user runs them ----------------------

_AGENTS_BODY = json.dumps(
    {
        "data": [
            {
                "id": f"a{i:09d}",
                "name": f"Agent {i}",
                "type": "echo",
                "description": "An agent that answers with what it was told" if i % 2 else None,
                "created_at": "2026-11-25T12:00:00.123456Z",
            }
            for i in range(20)
        ]
    }
).encode()

_URLLIB_PRINT = (
    "import json, sys, urllib.request; "
    "print(json.dumps(json.loads(urllib.request.urlopen(sys.argv[1] + '/api/agents').read())['data'], indent=2))"
)
_URLLIB_LOAD = (
    "import json, sys, urllib.request; json.loads(urllib.request.urlopen(sys.argv[1] + '/api/agents').read())"
)
_FIRST_USE = "import sys; from flux0lite import Flux0; Flux0(sys.argv[1]).agents.list()"
# Usage errors of each kind: a missing argument, an unknown command, an unknown option, a bad value.
_USAGE_ERRORS = {
    "usage error": ["agents", "get"],
    "usage error (unknown command)": ["bogus"],
    "usage error (unknown option)": ["agents", "list", "--bogus"],
    "usage error (bad value)": ["events", "list", "X", "--min-offset", "-1"],
}
# A reference, not a floor: any usage error through argparse (import argparse, one parser, one
# message) costs this; flux0lite's reader (cli_reader) reports the plain ones without argparse.
_ARGPARSE_USAGE_ERROR = "import argparse; argparse.ArgumentParser(prog='p').parse_args(['-x'])"


def _serve_agents() -> Tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(_AGENTS_BODY)))
            self.end_headers()
            self.wfile.write(_AGENTS_BODY)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _child(argv: List[str], tree: Path) -> Tuple[float, float]:
    """(wall s, CPU s) of one child process; bytecode caches as a user has them."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "FLUX0_SERVER_URL")}
    env["PYTHONPATH"] = str(tree)
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime


def _peak_rss(argv: List[str], tree: Path) -> Optional[float]:
    """Peak RSS in MB of one run, via /usr/bin/time: the rusage of a child forked from this
    (large) process would report this process's size instead."""
    if not os.path.exists("/usr/bin/time"):
        return None
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "FLUX0_SERVER_URL")}
    env["PYTHONPATH"] = str(tree)
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", report.name, *argv],
            env=env,
            cwd=tempfile.gettempdir(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return int(report.read().split()[-1]) / 1024


def _instructions(cases: Dict[str, Tuple[List[str], Path]]) -> Dict[str, int]:
    """Instructions each case executes (valgrind's callgrind, one run each): unlike time they
    repeat exactly on a busy machine, so they compare versions of the same code. Across
    different programs they weigh unlike work alike (the urllib one-liner spends a third of its
    instructions in OpenSSL's native code, which runs faster per instruction than the
    interpreter), so the verdicts stay with the measured times."""
    counts: Dict[str, int] = {}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "FLUX0_SERVER_URL")}
    env["PYTHONHASHSEED"] = "0"  # the same dict layouts each run
    for name, (argv, tree) in cases.items():
        if name == "curl":
            continue
        with tempfile.TemporaryDirectory() as work:
            proc = subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={work}/out", *argv],
                env=dict(env, PYTHONPATH=str(tree)),
                cwd=tempfile.gettempdir(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if match:
            counts[name] = int(match.group(1))
    return counts


def bench_startup(repeat: int, base: Optional[Path], base_rev: str) -> None:
    log("start-up")
    # The interpreter itself, not the bench venv's: its site-packages would slow every contender.
    python = getattr(sys, "_base_executable", sys.executable)
    server, url = _serve_agents()
    # The floor of any "python -m PACKAGE ...": runpy finding and running an empty module
    # (on 3.9 and 3.10 runpy alone imports typing and is over 2x a bare python -c pass).
    empty = Path(tempfile.mkdtemp(prefix="flux0lite-bench-"))
    (empty / "flux0lite_bench_empty.py").write_text("")
    cases: Dict[str, Tuple[List[str], Path]] = {
        "bare": ([python, "-c", "pass"], ROOT),
        "python -m (empty module)": ([python, "-m", "flux0lite_bench_empty"], empty),
        "--version": ([python, "-m", "flux0lite", "--version"], ROOT),
        "-h": ([python, "-m", "flux0lite", "-h"], ROOT),
        **{name: ([python, "-m", "flux0lite", *argv], ROOT) for name, argv in _USAGE_ERRORS.items()},
        "argparse usage error": ([python, "-c", _ARGPARSE_USAGE_ERROR], ROOT),
        "cli agents list --json": ([python, "-m", "flux0lite", "--server-url", url, "agents", "list", "--json"], ROOT),
        "urllib one-liner (prints)": ([python, "-c", _URLLIB_PRINT, url], ROOT),
        "first use": ([python, "-c", _FIRST_USE, url], ROOT),
        "urllib one-liner (loads)": ([python, "-c", _URLLIB_LOAD, url], ROOT),
    }
    if shutil.which("curl"):
        cases["curl"] = (["curl", "-s", "-o", "/dev/null", url + "/api/agents"], ROOT)
    if base is not None:
        cases[f"{base_rev} --version"] = ([python, "-m", "flux0lite", "--version"], base)
        cases[f"{base_rev} -h"] = ([python, "-m", "flux0lite", "-h"], base)
        cases[f"{base_rev} usage error"] = ([python, "-m", "flux0lite", "agents", "get"], base)
        cases[f"{base_rev} agents list --json"] = (
            [python, "-m", "flux0lite", "--server-url", url, "agents", "list", "--json"],
            base,
        )
        cases[f"{base_rev} first use"] = ([python, "-c", _FIRST_USE, url], base)
    try:
        wall, cpu = _interleaved_children(cases, repeat)
        rss: Dict[str, float] = {}
        for name in cases:
            if name in (
                "bare",
                "cli agents list --json",
                "urllib one-liner (prints)",
                f"{base_rev} agents list --json",
            ):
                peaks = [_peak_rss(*cases[name]) for _ in range(3)]
                if None not in peaks:
                    rss[name] = statistics.median(p for p in peaks if p is not None)
        instructions = _instructions(cases) if shutil.which("valgrind") else {}
    finally:
        server.shutdown()
        shutil.rmtree(empty, ignore_errors=True)
    section = "start-up"
    note = (
        f"median of {repeat} interleaved runs, wall (CPU: user + system of the child); a target is met"
        " only if both the wall and the CPU ratio of this run meet it"
    )

    def cell(name: str, versus: str) -> Tuple[str, float]:
        """The figures of one row, and the larger of its wall and CPU ratios (the verdict's)."""
        ratio, cpu_ratio = wall[name] / wall[versus], cpu[name] / cpu[versus]
        text = (
            f"{wall[name] * 1000:.1f} ms / {wall[versus] * 1000:.1f} ms = {ratio:.2f}"
            f" (CPU {cpu[name] * 1000:.1f} / {cpu[versus] * 1000:.1f} ms = {cpu_ratio:.2f})"
        )
        if name in instructions and versus in instructions:
            text += f"; instructions {instructions[name] / 1e6:.0f}M / {instructions[versus] / 1e6:.0f}M = "
            text += f"{instructions[name] / instructions[versus]:.2f}"
        return text, max(ratio, cpu_ratio)

    row(
        section, f"python -c pass ({python}; {note})", f"{wall['bare'] * 1000:.1f} ms (CPU {cpu['bare'] * 1000:.1f} ms)"
    )
    for name, label in (
        ("--version", "python -m flux0lite --version / python -c pass"),
        ("-h", "python -m flux0lite -h / python -c pass"),
        *(
            (name, f"python -m flux0lite {' '.join(argv)} ({name}) / python -c pass")
            for name, argv in _USAGE_ERRORS.items()
        ),
    ):
        text, ratio = cell(name, "bare")
        row(section, label, text, target(ratio <= 2.0, "within 2x of bare Python"))
    text, _ = cell("python -m (empty module)", "bare")
    row(
        section,
        "floor: python -m of an empty module (runpy: the floor of any python -m command) / python -c pass",
        text,
    )
    text, _ = cell("argparse usage error", "bare")
    row(
        section,
        "reference: python -c (argparse: a one-option parser's usage error) / python -c pass"
        " (what any usage error cost through argparse; the floor of the cases cli_reader leaves to argparse)",
        text,
    )
    text, ratio = cell("cli agents list --json", "urllib one-liner (prints)")
    row(
        section,
        "agents list --json (20 agents, local server) / urllib.request one-liner printing the same JSON",
        text,
        target(ratio <= 1.0, "ratio <= 1.0"),
    )
    if "curl" in wall:
        text, _ = cell("cli agents list --json", "curl")
        row(section, "agents list --json / curl -s (reference: no interpreter at all)", text)
    text, ratio = cell("first use", "urllib one-liner (loads)")
    row(
        section,
        "library first use: Flux0(url).agents.list() (typed) / urllib.request + json.loads, new process each",
        text,
        target(ratio <= 1.0, "ratio <= 1.0"),
    )
    if base is not None:
        for name, label in (
            ("--version", "--version"),
            ("-h", "-h"),
            ("usage error", "agents get (usage error)"),
            ("cli agents list --json", "agents list --json"),
            ("first use", "library first use"),
        ):
            text, _ = cell(name, f"{base_rev} {name.replace('cli ', '')}")
            row(section, f"{label}: this commit / {base_rev}", text)
    if not rss:
        return
    if base is not None:
        now, then = rss["cli agents list --json"], rss[f"{base_rev} agents list --json"]
        row(
            section,
            f"peak RSS of agents list --json: this commit / {base_rev}",
            f"{now:.1f} MB / {then:.1f} MB = {now / then:.2f}",
            target(now <= then, "no higher than before"),
        )
    row(
        section,
        "peak RSS: python -c pass / urllib one-liner / agents list --json",
        f"{rss['bare']:.1f} / {rss['urllib one-liner (prints)']:.1f} / {rss['cli agents list --json']:.1f} MB",
    )


# -- 2. SSE decoding ----------------------------------------------------------------------------


def chunks_of(data: bytes, size: int) -> List[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def decode_flux0lite(chunks: Iterable[bytes]) -> int:
    decoder = SSEDecoder(max_line_bytes=1 << 30)
    count = 0
    for chunk in chunks:
        count += len(decoder.feed(chunk))
    decoder.close()
    return count


def decode_httpx_sse(chunks: Iterable[bytes]) -> int:
    # What httpx-sse does on a response: httpx's incremental UTF-8 text, its SSE line splitter,
    # then its SSE decoder.
    from httpx_sse._decoders import SSEDecoder as PeerDecoder
    from httpx_sse._decoders import SSELineDecoder

    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines = SSELineDecoder()
    decoder = PeerDecoder()
    count = 0
    for chunk in chunks:
        for line in lines.decode(text.decode(chunk)):
            if decoder.decode(line.rstrip("\n")) is not None:
                count += 1
    for line in lines.flush():
        if decoder.decode(line.rstrip("\n")) is not None:
            count += 1
    return count


def decode_sseclient(chunks: Iterable[bytes]) -> int:
    import sseclient

    return sum(1 for _ in sseclient.SSEClient(iter(chunks)).events())


def split_floor(chunks: Iterable[bytes]) -> int:
    """The physical floor: touch every read once and split it on LF (no parsing, no decoding)."""
    count = 0
    for chunk in chunks:
        count += len(chunk.split(b"\n"))
    return count


DECODERS: Dict[str, Callable[[Iterable[bytes]], int]] = {
    "flux0lite": decode_flux0lite,
    "httpx-sse": decode_httpx_sse,
    "sseclient-py": decode_sseclient,
    "floor (bytes.split)": split_floor,
}

_SUBPROCESS_DECODE = """
import sys, time, pickle
sys.path[:0] = {paths!r}
from bench import decode_sseclient, decode_httpx_sse, chunks_of
data = open(sys.argv[1], "rb").read()
chunks = chunks_of(data, int(sys.argv[2]))
fn = {{"sseclient-py": decode_sseclient, "httpx-sse": decode_httpx_sse}}[sys.argv[3]]
started = time.perf_counter()
count = fn(chunks)
print(time.perf_counter() - started, count)
"""


def timed_in_subprocess(name: str, data: bytes, read_size: int, limit: float) -> Optional[float]:
    """Time a peer in a child process that is killed after ``limit`` seconds (None: too slow)."""
    with tempfile.NamedTemporaryFile(suffix=".sse", delete=False) as handle:
        handle.write(data)
    try:
        code = _SUBPROCESS_DECODE.format(paths=[str(ROOT / "bench"), str(ROOT)])
        proc = subprocess.run(
            [sys.executable, "-c", code, handle.name, str(read_size), name],
            capture_output=True,
            text=True,
            timeout=limit,
        )
        return float(proc.stdout.split()[0])
    except subprocess.TimeoutExpired:
        return None
    finally:
        os.unlink(handle.name)


def flux0_stream_sample() -> bytes:
    capture = SHARED / "flux0-api" / "captures" / "sse-sample.txt"
    if capture.exists():
        return capture.read_bytes()
    chunk = {
        "correlation_id": "RID(x)::y",
        "event_id": "e",
        "seq": 0,
        "patches": [{"op": "add", "path": "/-", "value": "word "}],
    }
    return b"".join(b"event: chunk\ndata: " + json.dumps(chunk).encode() + b"\n\n" for _ in range(10))


def bench_sse(repeat: int, quick: bool) -> None:
    log("SSE decoding")
    sample = flux0_stream_sample()
    recorded = sample * max(1, (20 << 20) // len(sample))
    small = b"".join(b'data: {"n": %d}\n\n' % i for i in range(100_000))
    workloads = [
        (
            "(a) recorded flux0 stream x%d, %.0f MB, 64 KiB reads"
            % (len(recorded) // len(sample), len(recorded) / 1e6),
            recorded,
            65536,
        ),
        ("(b) 100k small events, %.1f MB, 64 KiB reads" % (len(small) / 1e6), small, 65536),
    ]
    for title, data, read_size in workloads:
        chunks = chunks_of(data, read_size)
        expected = decode_flux0lite(chunks)
        for name in ("httpx-sse", "sseclient-py"):
            assert DECODERS[name](chunks) == expected, f"{name} disagrees on {title}"
        times = interleaved({name: (lambda fn=fn: fn(chunks)) for name, fn in DECODERS.items()}, repeat)
        mb = len(data) / 1e6
        for name, seconds in times.items():
            row("SSE " + title, name, f"{mb / seconds:.0f} MB/s, {expected / seconds / 1000:.0f}k events/s")
        ours = times["flux0lite"]
        faster = min(times["httpx-sse"], times["sseclient-py"]) / ours
        row(
            "SSE " + title,
            "flux0lite speed-up over the faster peer",
            f"{faster:.2f}x",
            target(faster > 1, "faster than both peers"),
        )
        floor_ratio = ours / times["floor (bytes.split)"]
        row(
            "SSE " + title,
            "flux0lite time / floor",
            f"{floor_ratio:.2f}x",
            target(floor_ratio <= 3, "within 3x of the floor"),
        )
    # (c) one huge event in 1 KiB reads, at several sizes: throughput must stay flat (linear time)
    sizes = [5, 10, 25] if quick else [10, 25, 50]
    for size in sizes:
        data = b"data: " + b"x" * (size << 20) + b"\n\n"
        chunks = chunks_of(data, 1024)
        ours = median_time(lambda: decode_flux0lite(chunks), max(1, repeat // 2))
        floor = median_time(lambda: split_floor(chunks), max(1, repeat // 2))
        PLOT.setdefault("flux0lite", []).append((size, size / ours))
        PLOT.setdefault("floor (bytes.split)", []).append((size, size / floor))
        label = f"(c) one {size} MiB event, 1 KiB reads"
        row(
            "SSE " + label,
            "flux0lite",
            f"{size / ours:.0f} MiB/s",
            target(ours / floor <= 3, f"within 3x of floor ({ours / floor:.2f}x)"),
        )
        for name in ("httpx-sse", "sseclient-py"):
            seconds = timed_in_subprocess(name, data, 1024, limit=30 if not quick else 20)
            if seconds is None:
                row("SSE " + label, name, "did not finish within the time limit (quadratic buffering)")
            else:
                PLOT.setdefault(name, []).append((size, size / seconds))
                row("SSE " + label, name, f"{size / seconds:.0f} MiB/s")
    speeds = [s for _, s in PLOT["flux0lite"]]
    flat = min(speeds) / max(speeds)
    row(
        "SSE (c) linearity",
        "flux0lite slowest/fastest throughput across sizes",
        f"{flat:.2f}",
        target(flat >= 0.6, "flat (linear time)"),
    )


# -- 2b. typed streams and typed lists ------------------------------------------------------------


def _captures() -> Dict[str, bytes]:
    """Each captured flux0 stream (text, JSON, tool calls, an error) by its file's name."""
    paths = sorted((SHARED / "flux0-api" / "captures").glob("sse-sample*.txt"))
    return {path.name: path.read_bytes().rstrip(b"\n") + b"\n\n" for path in paths if "headers" not in path.name}


def _captured_streams() -> bytes:
    """Every captured flux0 stream, one after another."""
    return b"".join(_captures().values()) or flux0_stream_sample()


def _copied(one: bytes, size: int) -> Tuple[int, bytes]:
    """Copies of a stream, about ``size`` bytes in all, each event id made unique per copy so
    that the reassembly builds as many replies as the streams hold: (copies, their bytes)."""
    copies = max(1, size // len(one))
    return copies, b"".join(one.replace(b'"event_id": "', b'"event_id": "c%d-' % i) for i in range(copies))


class _MemoryStream:
    """A finished 200 text/event-stream response whose body is read from memory, in the given
    reads: what EventStream reads from a socket, without one."""

    content_type = "text/event-stream"
    method = "POST"
    url = "memory:/typed-stream"

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.headers = {"content-type": "text/event-stream"}

    def iter_bytes(self) -> Iterable[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def typed_flux0lite(chunks: Iterable[bytes]) -> int:
    """The user's path: an EventStream's typed events, each iterated, then its reply()."""
    from flux0lite.streaming import EventStream

    stream = EventStream(_MemoryStream(chunks))  # type: ignore[arg-type]
    count = 0
    for _ in stream:
        count += 1
    stream.reply()
    return count


def typed_peer(chunks: Iterable[bytes]) -> int:
    from httpx_sse._decoders import SSEDecoder as PeerDecoder
    from httpx_sse._decoders import SSELineDecoder

    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines = SSELineDecoder()
    decoder = PeerDecoder()
    count = 0
    for chunk in chunks:
        for line in lines.decode(text.decode(chunk)):
            sse = decoder.decode(line.rstrip("\n"))
            if sse is not None:
                json.loads(sse.data)
                count += 1
    for line in lines.flush():
        sse = decoder.decode(line.rstrip("\n"))
        if sse is not None:
            json.loads(sse.data)
            count += 1
    return count


def _decode_only(chunks: Iterable[bytes], parse: bool) -> int:
    decoder = SSEDecoder()
    count = 0
    for chunk in chunks:
        for sse in decoder.feed(chunk):
            if parse:
                json.loads(sse.data)
            count += 1
    decoder.close()
    return count


def _typed_only(chunks: Iterable[bytes]) -> int:
    """typed_flux0lite without the reassembly: bytes to typed events, nothing kept."""
    from flux0lite.streaming import parse_stream_event

    decoder = SSEDecoder()
    count = 0
    for chunk in chunks:
        for sse in decoder.feed(chunk):
            parse_stream_event(sse)
            count += 1
    decoder.close()
    return count


def bench_typed_stream(repeat: int) -> None:
    log("typed streams")
    copies, data = _copied(_captured_streams(), 4_000_000)
    chunks = chunks_of(data, 64 * 1024)
    events = typed_peer(chunks)
    assert typed_flux0lite(chunks) == events == _decode_only(chunks, True) == _typed_only(chunks)
    times = interleaved(
        {
            "ours": lambda: typed_flux0lite(chunks),
            "peer": lambda: typed_peer(chunks),
            "decode": lambda: _decode_only(chunks, False),
            "decode+json": lambda: _decode_only(chunks, True),
            "typed": lambda: _typed_only(chunks),
        },
        repeat,
    )
    per = {name: value / events * 1e6 for name, value in times.items()}
    ours, peer = per["ours"], per["peer"]
    section = (
        f"typed stream: captured flux0 streams x{copies} ({events:,} events, {len(data) / 1e6:.1f} MB, 64 KiB reads)"
    )
    row(
        section,
        "bytes -> typed events -> reassembled replies (flux0lite: iterating an EventStream over the reads, then its "
        "reply()) / httpx-sse + json.loads per event (untyped, no reply)",
        f"{ours:.2f} µs / {peer:.2f} µs per event = {ours / peer:.2f}",
        target(ours <= peer, "ratio <= 1.0"),
    )
    row(
        section,
        "floors, per event: flux0lite's SSE decoder alone; decoder + json.loads (no typing, no reply)",
        f"{per['decode']:.2f} µs; {per['decode+json']:.2f} µs (typing and reassembly: {ours - per['decode+json']:.2f} µs)",
    )
    typed = per["typed"]
    row(
        section,
        "floor: typed events without reassembly (decoder + JSON + models, nothing kept) / httpx-sse + json.loads",
        f"{typed:.2f} µs / {peer:.2f} µs per event = {typed / peer:.2f} (reassembly: {ours - typed:.2f} µs)",
    )
    # The captures apart: a text reply's chunks are one piece of text each, the others' patches
    # build objects (tool calls, a JSON answer) or carry an error.
    ratios = []
    for name, one in _captures().items():
        copies, data = _copied(one, 1_000_000)
        chunks = chunks_of(data, 64 * 1024)
        apart = interleaved({"ours": lambda: typed_flux0lite(chunks), "peer": lambda: typed_peer(chunks)}, repeat)
        ratios.append(f"{name} {apart['ours'] / apart['peer']:.2f}")
    row(
        section,
        "each capture alone, copied to ~1 MB: the first row's two paths, flux0lite / httpx-sse + json.loads",
        "; ".join(ratios),
    )


# -- 3./4. requests and streams against the real flux0 server ------------------------------------


def _pydantic_adapters() -> Tuple[Any, Any]:
    """Models shaped like the generated SDK's (httpx + pydantic), for a like-for-like comparison."""
    import datetime as dt
    from typing import Literal, Union

    from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

    class Loose(BaseModel):
        model_config = ConfigDict(extra="allow")

    class AgentModel(Loose):
        id: str
        name: str
        type: str
        description: Optional[str] = None
        created_at: dt.datetime

    class Participant(Loose):
        id: Optional[str] = None
        name: Optional[str] = None

    class MessageData(Loose):
        type: Literal["message"]
        tags: Optional[List[str]] = None
        flagged: Optional[bool] = None
        parts: List[Dict[str, Any]]
        participant: Optional[Participant] = None

    class StatusData(Loose):
        type: Literal["status"]
        status: str
        acknowledged_offset: Optional[int] = None
        data: Any = None

    class ToolData(Loose):
        type: Literal["tool_call_result"]
        tool_calls: List[Dict[str, Any]]

    class EventModel(Loose):
        id: str
        correlation_id: Optional[str] = None
        type: str
        source: str
        offset: int
        data: Union[MessageData, StatusData, ToolData] = Field(discriminator="type")
        deleted: bool = False
        metadata: Optional[Dict[str, Any]] = None
        created_at: dt.datetime

    return TypeAdapter(List[AgentModel]), TypeAdapter(List[EventModel])


def bench_requests(repeat: int, quick: bool) -> None:
    import httpx
    import httpx_sse
    from flux0_server import Flux0Server, ServerUnavailable

    log("round trips and streaming against the real flux0 server")
    try:
        server = Flux0Server(echo_delay=0.0).start()
    except ServerUnavailable as exc:
        row("requests", "real flux0 server", f"unavailable: {exc}")
        return
    try:
        client = Flux0(server.url, timeout=Timeout(10, 120), retry=Retry(total=0))
        agent = client.agents.create(name="Bench", type="echo")
        session = client.sessions.create(agent_id=agent.id)
        for i in range(250):  # four stored events per exchange
            client.sessions.create_event(session.id, f"m{i}").reply()
        total = len(client.sessions.list_events(session.id))
        peer = httpx.Client(base_url=server.url, timeout=120)
        url_events = f"/api/sessions/{session.id}/events"
        n = 20 if quick else 50
        agents_adapter, events_adapter = _pydantic_adapters()
        times = interleaved(
            {
                "ours agents typed": lambda: client.agents.list(),
                "ours agents raw": lambda: client.request_json("GET", "/api/agents"),
                "httpx agents raw": lambda: peer.get("/api/agents").json(),
                "httpx agents typed": lambda: agents_adapter.validate_python(peer.get("/api/agents").json()["data"]),
                "ours events typed": lambda: client.sessions.list_events(session.id),
                "ours events raw": lambda: client.request_json("GET", url_events),
                "httpx events raw": lambda: peer.get(url_events).json(),
                "httpx events typed": lambda: events_adapter.validate_python(peer.get(url_events).json()["data"]),
            },
            n,
        )
        for key, what in (("agents", "agents.list"), ("events", f"list_events ({total} events)")):
            for kind, label in (
                ("raw", "raw JSON: flux0lite / httpx"),
                ("typed", "typed models: flux0lite / httpx + pydantic (the generated SDK's stack)"),
            ):
                ours, theirs = times[f"ours {key} {kind}"], times[f"httpx {key} {kind}"]
                goal = 0.9 if (key, kind) == ("events", "typed") else 1.0  # issue 17: typed list_events
                row(
                    "round trip, keep-alive",
                    f"{what}, {label}",
                    f"{ours * 1000:.2f} ms / {theirs * 1000:.2f} ms = {ours / theirs:.2f}",
                    target(ours / theirs <= goal, f"ratio <= {goal}"),
                )
            ours, theirs = times[f"ours {key} typed"], times[f"httpx {key} raw"]
            row(
                "round trip, keep-alive",
                f"{what}, flux0lite typed / httpx raw JSON (stricter)",
                f"{ours * 1000:.2f} ms / {theirs * 1000:.2f} ms = {ours / theirs:.2f}",
            )
        # The typing alone, without the network: the same answer's JSON text to typed events.
        body = peer.get(url_events).content
        read_events = spec_of(Event).read_owned  # as list_events reads the answer it owns
        parse = interleaved(
            {
                "ours": lambda: [read_events(item) for item in json.loads(body)["data"]],
                "ours from_dict": lambda: [Event.from_dict(item) for item in json.loads(body)["data"]],
                "pydantic": lambda: events_adapter.validate_python(json.loads(body)["data"]),
                "json": lambda: json.loads(body)["data"],
            },
            n,
        )
        row(
            "round trip, keep-alive",
            f"list_events ({total} events), typing alone (no network): json.loads + list_events' reader (read_owned:"
            " the parsed answer becomes the models) / json.loads + pydantic TypeAdapter (Rust core); json.loads +"
            " Event.from_dict (copies what it keeps); floor json.loads alone",
            f"{parse['ours'] * 1000:.2f} ms / {parse['pydantic'] * 1000:.2f} ms = {parse['ours'] / parse['pydantic']:.2f};"
            f" from_dict {parse['ours from_dict'] * 1000:.2f} ms; floor {parse['json'] * 1000:.2f} ms",
        )
        # streaming: POST to last token of a 10k-chunk reply
        chunks = 2000 if quick else 10_000
        stream_session = client.sessions.create(agent_id=agent.id)

        def ours_stream() -> None:
            reply = client.sessions.create_event(stream_session.id, f"!many {chunks}").reply()
            assert reply.text.count(" ") == chunks

        def peer_stream() -> None:
            body = {"type": "message", "source": "user", "content": f"!many {chunks}"}
            pieces = 0
            with httpx_sse.connect_sse(
                peer, "POST", f"/api/sessions/{stream_session.id}/events/stream", json=body
            ) as source:
                for sse in source.iter_sse():
                    if sse.event == "chunk":
                        pieces += 1
                        json.loads(sse.data)
            assert pieces == chunks

        times = interleaved({"flux0lite": ours_stream, "httpx+httpx-sse": peer_stream}, 3 if quick else 5)
        ratio = times["flux0lite"] / times["httpx+httpx-sse"]
        row(
            "streaming end to end",
            f"POST to last token, {chunks} chunks: flux0lite / httpx+httpx-sse",
            f"{times['flux0lite']:.2f} s / {times['httpx+httpx-sse']:.2f} s = {ratio:.2f}",
            target(ratio <= 1.0, "no slower"),
        )
        peer.close()
        client.close()
    finally:
        server.stop()


# -- 5. the daemon ------------------------------------------------------------------------------


class _Archive:
    """Pre-serialised event lists for a fast local server (the daemon, not the server, is measured)."""

    def __init__(self, sessions: int, per_session: int) -> None:
        self.sessions = [f"s{i:09d}" for i in range(sessions)]
        self.bodies: Dict[str, bytes] = {}
        self.rows: List[Tuple[Any, ...]] = []
        for sid in self.sessions:
            events = []
            for offset in range(per_session):
                doc = {
                    "id": f"{sid}e{offset:07d}",
                    "correlation_id": f"RID({sid})::{offset // 4}",
                    "type": "message",
                    "source": "user" if offset % 2 == 0 else "ai_agent",
                    "offset": offset,
                    "data": {
                        "type": "message",
                        "tags": [],
                        "flagged": False,
                        "parts": [{"type": "content", "content": f"message number {offset} of session {sid}"}],
                        "participant": {"id": "p000000001", "name": "Anonymous"},
                    },
                    "deleted": False,
                    "metadata": None,
                    "created_at": "2026-11-25T12:00:00.000000Z",
                }
                events.append(doc)
                self.rows.append(
                    (
                        sid,
                        doc["id"],
                        offset,
                        doc["type"],
                        doc["source"],
                        doc["correlation_id"],
                        doc["created_at"],
                        0,
                        doc["data"]["parts"][0]["content"],
                        json.dumps(doc),
                    )
                )
            self.bodies[sid] = json.dumps({"data": events}).encode()
        self.sessions_body = json.dumps(
            {
                "data": [
                    {
                        "id": sid,
                        "agent_id": "a000000001",
                        "user_id": "u000000001",
                        "title": None,
                        "consumption_offsets": {"client": 0},
                        "created_at": "2026-11-25T12:00:00Z",
                    }
                    for sid in self.sessions
                ]
            }
        ).encode()
        self.agents_body = json.dumps(
            {"data": [{"id": "a000000001", "name": "A", "type": "echo", "created_at": "2026-11-25T12:00:00Z"}]}
        ).encode()


def _serve(archive: _Archive) -> Tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/api/agents":
                body = archive.agents_body
            elif path == "/api/sessions":
                body = archive.sessions_body
            else:
                body = archive.bodies.get(path.split("/")[3], b'{"data": []}')
                if "min_offset=0" not in self.path and "min_offset" in self.path:
                    body = b'{"data": []}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# The floors: the archive's own insert statements (store._insert_events: many rows to a statement)
# with rows built in advance (one transaction per batch of 500, as the daemon commits), without and with the full-text index; and the network
# half alone: fetching every session's events and json.loads of each answer.
_FLOOR_SQL = """
import json, sqlite3, sys, time
sys.path[:0] = {paths!r}
from flux0sync.store import Store, _insert_events
rows = [tuple(r) for r in json.load(open(sys.argv[1]))]
store = Store(sys.argv[2])
with_fts = sys.argv[3] == "fts"
if not with_fts:
    store.db.execute("DROP TABLE IF EXISTS events_fts")
    store.db.execute("DROP TRIGGER IF EXISTS events_fts_delete")
started = time.perf_counter()
for start in range(0, len(rows), 500):
    with store.transaction() as db:
        last = db.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]
        _insert_events(db, rows[start:start + 500])
        if with_fts:
            db.execute("INSERT INTO events_fts(rowid, text) SELECT rowid, text FROM events"
                       " WHERE rowid > ? AND text IS NOT NULL AND text != ''", (last,))
print(time.perf_counter() - started)
"""

_FLOOR_FETCH = """
import http.client, json, sys, time
host, port, sessions = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
started = time.perf_counter()
conn = http.client.HTTPConnection(host, port)
count = 0
for sid in sessions:
    conn.request("GET", f"/api/sessions/{sid}/events?min_offset=0")
    count += len(json.loads(conn.getresponse().read())["data"])
print(time.perf_counter() - started, count)
"""

_DAEMON = """
import resource, runpy, sys, time
sys.argv = ["flux0sync", *sys.argv[1:]]
started = time.perf_counter()
code = 0
try:
    runpy.run_module("flux0sync", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
elapsed = time.perf_counter() - started
# VmHWM: this process's own peak RSS (ru_maxrss would include whoever forked it)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread's CPU, start-up included
print(elapsed, peak, code, usage.ru_utime + usage.ru_stime)
"""

BASE_REV = "e4ac073"  # the commit issue 17 measured: "today's" CLI and daemon


def _base_checkout(rev: str) -> Optional[Path]:
    """A temporary checkout of ``rev`` (removed by the caller) to run the older daemon beside this one."""
    where = Path(tempfile.mkdtemp(prefix="flux0-bench-base-")) / "tree"
    out = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev], capture_output=True, text=True
    )
    if out.returncode != 0:
        log(f"  cannot check out {rev}: {out.stderr.strip()[-200:]}")
        return None
    return where


def _drop_checkout(where: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], capture_output=True)
    shutil.rmtree(where.parent, ignore_errors=True)


# This tree's --once obeys the request-rate cap (--max-rps, default 20/s: 50 s for 1,000
# sessions whatever the daemon's speed); the older daemon has no cap. Lifted here, as for a
# first import (and as bench_pg does), so that the rows measure the daemon, not the cap.
_UNCAPPED = ["--max-rps", "1000000"]


def _run_daemon(tree: Path, url: str, db: Path, extra: Sequence[str] = ()) -> Tuple[float, float, float]:
    """(seconds, peak RSS in MB, CPU seconds) of one ``flux0-sync --once`` from empty, with ``tree``'s code."""
    env = dict(os.environ, PYTHONPATH=f"{tree}:{tree / 'daemon'}")
    for name in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        name.unlink(missing_ok=True)
    argv = ["--once", "--no-check", "--db", str(db), "--server-url", url, "--log-level", "WARNING", *extra]
    # not run from ROOT: "python -c" puts the working folder first on sys.path, and the older
    # daemon would then import this tree's flux0lite
    out = subprocess.run(
        [sys.executable, "-c", _DAEMON, *argv], env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True
    )
    elapsed, rss_kb, code, cpu = out.stdout.split() if out.stdout.strip() else ("0", "0", "x", "0")
    if code != "0":
        raise RuntimeError(f"daemon ({tree}) failed: {out.stderr[-300:]}")
    return float(elapsed), int(rss_kb) / 1024, float(cpu)


def _installed(tree: Path, where: Path) -> Path:
    """A copy of ``tree``'s two packages in ``where`` with their bytecode compiled, as a service
    runs once its first start has written it: each timed run then measures the daemon, not the
    compiling of its source, whether or not the caller's environment sets PYTHONDONTWRITEBYTECODE
    (where it is set, both daemons compiled all their modules at every run; this tree's, being
    larger, took 0.6 G instructions more than e4ac073's, against 0.07 G more once compiled)."""
    shutil.copytree(tree / "flux0lite", where / "flux0lite", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        tree / "daemon" / "flux0sync", where / "daemon" / "flux0sync", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(where)], check=True, capture_output=True)
    return where


def _floor(code: str, args: List[str]) -> float:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'daemon'}")
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0])


def bench_daemon(quick: bool, base: Optional[Path], base_rev: str) -> None:
    log("daemon")
    shapes = [(100, 100), (1000, 100), (1000, 1000)] if not quick else [(100, 100), (200, 100)]
    for sessions, per_session in shapes:
        _bench_daemon_shape(sessions, per_session, base, base_rev, repeat=1 if per_session >= 1000 else 3)


def _bench_daemon_shape(sessions: int, per_session: int, base: Optional[Path], base_rev: str, repeat: int) -> None:
    total = sessions * per_session
    archive = _Archive(sessions, per_session)
    server, url = _serve(archive)
    work = Path(tempfile.mkdtemp(prefix="flux0-bench-"))
    try:
        rows_path = work / "rows.json"
        rows_path.write_text(json.dumps(archive.rows))
        del archive.rows[:]
        paths = [str(ROOT), str(ROOT / "daemon")]
        host, port = url.rsplit("//", 1)[1].split(":")
        ours_tree = _installed(ROOT, work / "ours")
        contenders: Dict[str, Callable[[], Any]] = {
            "ours": lambda: _run_daemon(ours_tree, url, work / "ours.sqlite3", _UNCAPPED),
            "floor sql": lambda: _floor(_FLOOR_SQL.format(paths=paths), [str(rows_path), str(work / "f1"), "plain"]),
            "floor fts": lambda: _floor(_FLOOR_SQL.format(paths=paths), [str(rows_path), str(work / "f2"), "fts"]),
            "floor fetch": lambda: _floor(_FLOOR_FETCH, [host, port, ",".join(archive.sessions)]),
        }
        if base is not None:
            base_tree = _installed(base, work / "base")
            contenders["base"] = lambda: _run_daemon(base_tree, url, work / "base.sqlite3")
        results: Dict[str, List[Any]] = {name: [] for name in contenders}
        order = list(contenders)
        for _ in range(repeat):
            random.Random(len(order)).shuffle(order)
            for name in order:
                for leftover in work.glob("f[12]*"):
                    leftover.unlink()
                results[name].append(contenders[name]())
        times = {
            name: statistics.median(r[0] if isinstance(r, tuple) else r for r in values)
            for name, values in results.items()
        }
        stored = sqlite3.connect(str(work / "ours.sqlite3")).execute("SELECT count(*) FROM events").fetchone()[0]
        assert stored == total, f"daemon stored {stored} of {total}"
        db = sqlite3.connect(str(work / "ours.sqlite3"))
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events_fts'").fetchone():
            indexed = db.execute("SELECT count(*) FROM events_fts_docsize").fetchone()[0]
            assert indexed == total, f"full-text index holds {indexed} of {total}"
        db.close()
        ours = times["ours"]
        rate = total / ours
        PLOT.setdefault("daemon events/s", []).append((total, rate))
        section = f"daemon, {total:,} events in {sessions:,} sessions"
        runs = f"median of {repeat}" if repeat > 1 else "one run each"
        row(
            section,
            "this commit: events mirrored per second",
            f"{rate:,.0f}/s ({ours:.2f} s; imports of compiled bytecode, archive open, index included; --max-rps lifted; {runs})",
        )
        if base is not None:
            then = times["base"]
            row(
                section,
                f"{base_rev} (issue 17's 'today'), same run: events per second",
                f"{total / then:,.0f}/s ({then:.2f} s)",
            )
            row(
                section,
                f"speed-up: this commit / {base_rev} events per second",
                f"{then / ours:.2f}x",
                target(then / ours >= 2, "2x or more"),
            )
            cpu_ours, cpu_then = (statistics.median(r[2] for r in results[name]) for name in ("ours", "base"))
            row(
                section,
                f"CPU time of the daemon process (all threads, start-up included): {base_rev} / this commit",
                f"{cpu_then:.2f} s / {cpu_ours:.2f} s = {cpu_then / cpu_ours:.2f}x (less sensitive than time to a busy machine)",
            )
        for key, what in (
            (
                "floor sql",
                "floor 1: the store's insert statements on pre-built rows, 500 per transaction, no full-text index",
            ),
            ("floor fts", "floor 2: floor 1 plus the full-text index filled once per batch"),
            ("floor fetch", "floor 3: fetch every session's events over keep-alive + json.loads of each answer"),
        ):
            row(section, f"{what}: time, and daemon time / floor", f"{times[key]:.2f} s; {ours / times[key]:.2f}x")
        peak = statistics.median(r[1] for r in results["ours"])
        row(section, "peak RSS of the daemon (this commit)", f"{peak:.1f} MB", target(peak < 40, "under 40 MB"))
        if base is not None:
            row(
                section,
                f"peak RSS of the daemon ({base_rev})",
                f"{statistics.median(r[1] for r in results['base']):.1f} MB",
            )
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


class _Backlog:
    """One session with a long backlog, and a gzip answer that inflates far beyond its size."""

    def __init__(self, events: int) -> None:
        self.events = events
        parts = [b'{"data": [']
        for offset in range(events):
            doc = {
                "id": f"e{offset:09d}",
                "correlation_id": f"RID(s)::{offset // 4}",
                "type": "message",
                "source": "user" if offset % 2 == 0 else "ai_agent",
                "offset": offset,
                "data": {
                    "type": "message",
                    "tags": [],
                    "flagged": False,
                    "parts": [{"type": "content", "content": f"message number {offset} " + "lorem ipsum " * 20}],
                    "participant": {"id": "p000000001", "name": "Anonymous"},
                },
                "deleted": False,
                "metadata": None,
                "created_at": "2026-11-25T12:00:00.000000Z",
            }
            parts.append((b"," if offset else b"") + json.dumps(doc).encode())
        parts.append(b"]}")
        self.body = b"".join(parts)


def _gzip_padding(inflated_mb: int) -> bytes:
    """A valid, empty list_events answer padded with whitespace: tiny gzipped, huge inflated."""
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [compressor.compress(b'{"data": [')]
    block = b" " * (1024 * 1024)
    out += [compressor.compress(block) for _ in range(inflated_mb)]
    out += [compressor.compress(b"]}"), compressor.flush()]
    return b"".join(out)


def _serve_one_session(bodies: Dict[str, Tuple[bytes, Dict[str, str]]]) -> Tuple[ThreadingHTTPServer, str]:
    sessions = json.dumps(
        {
            "data": [
                {"id": sid, "agent_id": "a1", "user_id": "u1", "title": None, "created_at": "2026-11-25T12:00:00Z"}
                for sid in bodies
            ]
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            headers = {"content-type": "application/json"}
            if path == "/api/agents":
                body = b'{"data": [{"id": "a1", "name": "A", "type": "echo", "created_at": "2026-11-25T12:00:00Z"}]}'
            elif path == "/api/sessions":
                body = sessions
            elif "min_offset=0" in self.path:
                body, extra = bodies[path.split("/")[3]]
                headers.update(extra)
            else:
                body = b'{"data": []}'
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _daemon_peak(url: str, work: Path, name: str, env: Dict[str, str]) -> Tuple[float, float, int]:
    """(seconds, peak RSS in MB, events stored) for one ``flux0-sync --once`` run."""
    db = work / f"{name}.sqlite3"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _DAEMON,
            "--once",
            "--no-check",
            "--db",
            str(db),
            "--server-url",
            url,
            "--log-level",
            "ERROR",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed, rss_kb, code = out.stdout.split()[:3]
    if code != "0":
        raise RuntimeError(f"daemon failed: {out.stderr[-300:]}")
    stored = sqlite3.connect(str(db)).execute("SELECT count(*) FROM events").fetchone()[0]
    return float(elapsed), int(rss_kb) / 1024, int(stored)


def bench_backlog(quick: bool) -> None:
    """Memory is bounded by the batch size, not by one session's backlog (issue 10)."""
    log("daemon backlog")
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'daemon'}")
    big, small = (30_000, 300) if quick else (150_000, 1_500)
    work = Path(tempfile.mkdtemp(prefix="flux0-bench-"))
    bodies = {"big": (_Backlog(big).body, {}), "small": (_Backlog(small).body, {})}
    bomb_mb = 50 if quick else 250
    bomb = _gzip_padding(bomb_mb)
    try:
        results = {}
        for name, body in bodies.items():
            server, url = _serve_one_session({name: body})
            try:
                results[name] = _daemon_peak(url, work, name, env)
            finally:
                server.shutdown()
        server, url = _serve_one_session({"bomb": (bomb, {"content-encoding": "gzip"})})
        try:
            results["bomb"] = _daemon_peak(url, work, "bomb", env)
        finally:
            server.shutdown()
        (big_s, big_rss, big_n), (_, small_rss, small_n) = results["big"], results["small"]
        assert (big_n, small_n) == (big, small), f"stored {big_n}/{big}, {small_n}/{small}"
        row(
            "daemon backlog",
            f"one session of {big:,} events ({len(bodies['big'][0]) / 1e6:.0f} MB answer): peak RSS of the daemon",
            f"{big_rss:.1f} MB ({big_s:.1f} s)",
            target(big_rss < 64, "under 64 MB"),
        )
        row(
            "daemon backlog",
            f"peak RSS, {big:,} / {small:,} events in one session",
            f"{big_rss:.1f} / {small_rss:.1f} MB = {big_rss / small_rss:.2f}x",
            target(big_rss / small_rss < 1.5, "flat: under 1.5x for 100x the events"),
        )
        row(
            "daemon backlog",
            f"gzip answer of {len(bomb) / 1e6:.2f} MB inflating to {bomb_mb} MB: peak RSS of the daemon",
            f"{results['bomb'][1]:.1f} MB",
            target(results["bomb"][1] < 64, "under 64 MB"),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- report -------------------------------------------------------------------------------------


def write_plot(path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, points in PLOT.items():
        if name == "daemon events/s":
            continue
        xs, ys = zip(*points)
        left.plot(xs, ys, marker="o", label=name)
    left.set_title("SSE decode: one huge event in 1 KiB reads")
    left.set_xlabel("event size (MiB)")
    left.set_ylabel("throughput (MiB/s)")
    left.set_ylim(bottom=0)
    left.legend()
    if "daemon events/s" in PLOT:
        xs, ys = zip(*PLOT["daemon events/s"])
        right.plot(xs, ys, marker="o", color="tab:green")
        right.set_xscale("log")
        right.set_ylim(bottom=0)
    right.set_title("flux0-sync: events mirrored per second")
    right.set_xlabel("events on the server")
    right.set_ylabel("events/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


_BEGIN, _END = "<!-- bench.py: begin -->", "<!-- bench.py: end -->"


def write_results(path: Path, command: str, started: float, plot_ok: bool) -> None:
    """Write this script's part of RESULTS.md between its markers; other scripts' sections stay."""
    lines = [
        _BEGIN,
        "# flux0lite benchmark results",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({time.time() - started:.0f} s)",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()};"
        f" load average at the end {os.getloadavg()[0]:.2f} (shared with other work)",
        f"- Python: {platform.python_version()} ({sys.executable})",
        f"- command: `{command}`",
        "- method: medians of repeated runs; peers and flux0lite interleaved in the same run; servers on 127.0.0.1",
        "",
        "| benchmark | measurement | result | target |",
        "|---|---|---|---|",
    ]
    for section, measurement, value, verdict in ROWS:
        lines.append(f"| {section} | {measurement} | {value} | {verdict} |")
    if plot_ok:
        lines += ["", "![throughput vs size](throughput.png)"]
    lines.append(_END)
    ours = "\n".join(lines)
    old = path.read_text() if path.exists() else ""
    if _BEGIN in old and _END in old:
        head, rest = old.split(_BEGIN, 1)
        text = head + ours + rest.split(_END, 1)[1]
    else:  # an older file: its untagged top part was this script's; tagged sections are kept
        start = old.find("<!-- ")
        text = ours + "\n" + ("\n" + old[start:] if start >= 0 else "")
    path.write_text(text.rstrip("\n") + "\n")


SECTIONS = ["startup", "import", "sse", "typed", "requests", "daemon", "backlog"]


def main() -> int:
    parser = argparse.ArgumentParser(description="flux0lite benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (a smoke run)")
    parser.add_argument("--only", choices=SECTIONS, action="append")
    parser.add_argument("--base", default=BASE_REV, help="older commit run beside this one (CLI, daemon)")
    parser.add_argument("--output", default=str(ROOT / "bench"), help="folder for RESULTS.md and throughput.png")
    args = parser.parse_args()
    started = time.time()
    repeat = 5 if args.quick else 11
    only = set(args.only or SECTIONS)
    base = _base_checkout(args.base) if only & {"startup", "daemon"} else None
    try:
        if "startup" in only:
            bench_startup(repeat * 4, base, args.base)  # start-up is short and noisy: more runs
        if "import" in only:
            bench_import(repeat * 4)
        if "sse" in only:
            bench_sse(repeat, args.quick)
        if "typed" in only:
            bench_typed_stream(repeat)
        if "requests" in only:
            bench_requests(repeat, args.quick)
        if "daemon" in only:
            bench_daemon(args.quick, base, args.base)
        if "backlog" in only:
            bench_backlog(args.quick)
    finally:
        if base is not None:
            _drop_checkout(base)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    plot_ok = write_plot(out / "throughput.png")
    command = "bench/run" + (" --quick" if args.quick else "") + "".join(f" --only {o}" for o in args.only or [])
    write_results(out / "RESULTS.md", command, started, plot_ok)
    print((out / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
