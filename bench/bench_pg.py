"""flux0-sync into PostgreSQL: events/s against SQLite, and 1 against 4 sharded daemons.

Run: ``python3 bench/bench_pg.py`` (``--quick`` for a smoke run). It starts a throwaway
PostgreSQL 15 cluster (tests/pgcluster.py: unix socket only, fsync off, so a figure here is the
daemon's cost and the database's CPU, not the disk's), the benchmark's fast local flux0 stand-in
(bench/bench.py), and real ``python -m flux0sync --once`` processes. Every configuration syncs the
same events from empty; rounds interleave the configurations so machine noise hits all alike.
Writes its section of bench/RESULTS.md (between the bench_pg markers) and prints it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "daemon")]

from tests.pgcluster import PgCluster, running_cluster  # noqa: E402

BEGIN, END = "<!-- bench_pg: begin -->", "<!-- bench_pg: end -->"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_bench() -> Any:
    """bench/bench.py's fast local flux0 stand-in (_Archive, _serve), loaded by path."""
    spec = importlib.util.spec_from_file_location("flux0_bench", ROOT / "bench" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _daemon(db: str, url: str, *extra: str) -> "subprocess.Popen[str]":
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "daemon"), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flux0sync",
            "--once",
            "--no-check",
            # an import from empty: measure the archive, not the request-rate cap (default 20/s)
            "--max-rps",
            "100000",
            "--log-level",
            "WARNING",
            "--db",
            db,
            "--server-url",
            url,
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(ROOT),
        start_new_session=True,
    )


def _run(db: str, url: str, shards: int) -> float:
    """Wall seconds from starting ``shards`` daemons (``--shard i/N`` when more than one) to the last exit."""
    started = time.perf_counter()
    procs = [_daemon(db, url, *(["--shard", f"{i}/{shards}"] if shards > 1 else [])) for i in range(shards)]
    failures = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            _, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"exit {proc.returncode}: {err[-400:]}")
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError("; ".join(failures))
    return elapsed


def _count_sqlite(path: str) -> Tuple[int, int]:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT count(*), count(DISTINCT session_id || '/' || \"offset\") FROM events").fetchone()
        return int(row[0]), int(row[1])
    finally:
        db.close()


def _count_pg(url: str) -> Tuple[int, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute('SELECT count(*), count(DISTINCT (session_id, "offset")) FROM events').fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k events, one round")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch bench/RESULTS.md")
    args = parser.parse_args()
    sessions, per_session, rounds = (200, 100, 1) if args.quick else (1000, 100, 3)
    total = sessions * per_session
    bench = _load_bench()
    started = time.time()
    archive = bench._Archive(sessions, per_session)
    server, url = bench._serve(archive)
    work = Path(tempfile.mkdtemp(prefix="flux0-bench-pg-"))
    samples: Dict[str, List[float]] = {"sqlite": [], "pg1": [], "pg4": []}
    try:
        with running_cluster() as cluster:
            runs: Dict[str, Callable[[int], float]] = {
                "sqlite": lambda n: _measure_sqlite(work / f"s{n}.sqlite3", url, total),
                "pg1": lambda n: _measure_pg(cluster, url, 1, total),
                "pg4": lambda n: _measure_pg(cluster, url, 4, total),
            }
            for n in range(rounds):
                order = list(runs) if n % 2 == 0 else list(reversed(runs))
                for name in order:
                    seconds = runs[name](n)
                    samples[name].append(seconds)
                    log(f"round {n + 1}/{rounds} {name}: {total / seconds:,.0f} events/s ({seconds:.2f} s)")
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in samples.items()}
    rate = {name: total / seconds for name, seconds in median.items()}
    section = _section(args, total, sessions, rounds, rate, median, time.time() - started)
    print(section)
    if not args.no_write:
        _write_section(ROOT / "bench" / "RESULTS.md", section)
    return 0


def _measure_sqlite(path: Path, url: str, total: int) -> float:
    seconds = _run(str(path), url, 1)
    stored = _count_sqlite(str(path))
    assert stored == (total, total), f"SQLite archive holds {stored}, expected {total}"
    return seconds


def _measure_pg(cluster: PgCluster, url: str, shards: int, total: int) -> float:
    db = cluster.new_database()
    seconds = _run(db, url, shards)
    stored = _count_pg(db)
    assert stored == (total, total), f"PostgreSQL archive holds {stored}, expected {total}"
    return seconds


def _section(
    args: argparse.Namespace,
    total: int,
    sessions: int,
    rounds: int,
    rate: Dict[str, float],
    median: Dict[str, float],
    took: float,
) -> str:
    lines = [
        BEGIN,
        "## PostgreSQL archive and sharded daemons (bench/bench_pg.py)",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({took:.0f} s);"
        f" machine: {platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}",
        f"- command: `python3 bench/bench_pg.py{' --quick' if args.quick else ''}`",
        f"- method: {total:,} events in {sessions:,} sessions, synced from empty by real `flux0-sync --once`"
        f" processes (imports and archive open included; 4 fetch workers, `--max-rps 100000`);"
        f" median of {rounds} interleaved round(s);"
        " PostgreSQL 15 on a unix socket with fsync off, the SQLite archive with its defaults (WAL,"
        " synchronous=NORMAL); every run checked to hold each event exactly once",
        "",
        "| configuration | events/s | wall time | ratio |",
        "|---|---|---|---|",
        f"| SQLite, 1 daemon | {rate['sqlite']:,.0f}/s | {median['sqlite']:.2f} s | 1.00 |",
        f"| PostgreSQL, 1 daemon | {rate['pg1']:,.0f}/s | {median['pg1']:.2f} s |"
        f" {rate['pg1'] / rate['sqlite']:.2f} of SQLite |",
        f"| PostgreSQL, 4 daemons `--shard i/4` | {rate['pg4']:,.0f}/s | {median['pg4']:.2f} s |"
        f" {rate['pg4'] / rate['pg1']:.2f}x one daemon |",
        "",
        f"Here the four daemons, the database and the stand-in server share {os.cpu_count()} cores; sharded"
        " daemons on separate machines would not compete for CPU.",
        END,
    ]
    return "\n".join(lines)


def _write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
