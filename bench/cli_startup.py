"""CLI start-up time against bare Python, interleaved runs, medians (issue 17).

Reports wall time and the child's CPU time (user + system, from wait4), which a busy machine
disturbs less.

    python bench/cli_startup.py [--runs 40] [--before DIR]

``--before DIR`` also times a copy of an older flux0lite found in DIR (for example one made
with ``git archive REF flux0lite | tar -x -C DIR``), in the same interleaved loop.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent

CASES: List[Tuple[str, List[str]]] = [
    ("python -c pass", ["-c", "pass"]),
    ("python -c 'import argparse' (floor: argparse)", ["-c", "import argparse"]),
    ("python -m json.tool -h (floor: runpy + argparse help)", ["-m", "json.tool", "-h"]),
    (
        "argparse usage error (reference: before cli_reader)",
        ["-c", "import argparse; argparse.ArgumentParser(prog='p').parse_args(['-x'])"],
    ),
    ("-m flux0lite --version", ["-m", "flux0lite", "--version"]),
    ("-m flux0lite -h", ["-m", "flux0lite", "-h"]),
    ("-m flux0lite agents get (usage error)", ["-m", "flux0lite", "agents", "get"]),
    ("-m flux0lite bogus (usage error)", ["-m", "flux0lite", "bogus"]),
    ("-m flux0lite agents list --bogus (usage error)", ["-m", "flux0lite", "agents", "list", "--bogus"]),
    ("-m flux0lite --timeout nan agents list (usage error)", ["-m", "flux0lite", "--timeout", "nan", "agents", "list"]),
    ("-m flux0lite agents get -h (argparse's help)", ["-m", "flux0lite", "agents", "get", "-h"]),
]


def _time(argv: List[str], pythonpath: str) -> Tuple[float, float]:
    # Bytecode caches as a user has them; a neutral working directory so that PYTHONPATH,
    # not the current directory, decides which flux0lite runs.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = pythonpath
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *argv],
        env=env,
        cwd=tempfile.gettempdir(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped above
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--before", help="a directory holding an older flux0lite package")
    options = parser.parse_args()
    trees = {"now": str(ROOT)}
    if options.before:
        trees["before"] = options.before
    samples: Dict[Tuple[str, str], List[Tuple[float, float]]] = {}
    for path in trees.values():  # warm-up: writes the bytecode caches
        _time(["-m", "flux0lite", "-h"], path)
    for _ in range(options.runs):
        for tree, path in trees.items():
            for name, argv in CASES:
                if tree != "now" and "flux0lite" not in argv:
                    continue
                samples.setdefault((tree, name), []).append(_time(argv, path))
    bare = samples[("now", "python -c pass")]
    bare_wall = statistics.median(w for w, _ in bare)
    bare_cpu = statistics.median(c for _, c in bare)
    print(f"Python {sys.version.split()[0]}, {options.runs} interleaved runs, medians")
    print(f"{'tree':7} {'command':55} {'wall ms':>8} {'x bare':>7} {'cpu ms':>7} {'x bare':>7}")
    for (tree, name), values in samples.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"{tree:7} {name:55} {wall * 1000:8.1f} {wall / bare_wall:7.2f} {cpu * 1000:7.1f} {cpu / bare_cpu:7.2f}")


if __name__ == "__main__":
    main()
