"""Cost of chunk patches as a reply grows: inserts at /0, in the middle, appends (issue 11).

    python bench/patch_linearity.py [--before DIR]

Feeds n one-patch chunk events to a ReplyAssembler and prints CPU seconds of the process
(best of 3, which a busy machine disturbs less than wall time) and the ratio per doubling of n
(2.0 is linear, 4.0 quadratic). ``--before DIR`` runs the same with the
flux0lite found in DIR (e.g. ``git archive REF flux0lite | tar -x -C DIR``) in a child process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
SIZES = (37_500, 75_000, 150_000, 300_000)
BEFORE_SIZES = (37_500, 75_000, 150_000)  # the quadratic code needs half a minute more per doubling


def _measure(sizes: List[int]) -> Dict[str, List[float]]:
    from flux0lite.models import ChunkEvent, JsonPatch
    from flux0lite.streaming import ReplyAssembler

    def path_for(kind: str, i: int) -> str:
        return {"insert at /0": "/0", "insert in the middle": f"/{i // 2}", "append /-": "/-"}[kind]

    results: Dict[str, List[float]] = {}
    for kind in ("insert at /0", "insert in the middle", "append /-"):
        for n in sizes:
            events = [
                ChunkEvent(event_id="e", seq=i, patches=(JsonPatch("add", path_for(kind, i), "ab"),)) for i in range(n)
            ]
            best = float("inf")
            for _ in range(3):
                assembler = ReplyAssembler()
                started = time.process_time()
                for event in events:
                    assembler.add(event)
                text = assembler.reply().text
                best = min(best, time.process_time() - started)
                assert len(text) == 2 * n
            results.setdefault(kind, []).append(best)
    return results


def _report(label: str, sizes: List[int], results: Dict[str, List[float]]) -> None:
    for kind, times in results.items():
        cells = "  ".join(f"n={n}: {t:6.3f} s" for n, t in zip(sizes, times))
        ratios = ", ".join(f"{b / a:.2f}" for a, b in zip(times, times[1:]))
        print(f"{label:7} {kind:22} {cells}  x per doubling: {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="a directory holding an older flux0lite package")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(_measure([int(n) for n in options.child.split(",")])))
        return
    trees = {"now": (str(ROOT), list(SIZES))}
    if options.before:
        trees["before"] = (options.before, list(BEFORE_SIZES))
    print(f"Python {sys.version.split()[0]}")
    for label, (path, sizes) in trees.items():
        env = dict(os.environ, PYTHONPATH=path)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", ",".join(map(str, sizes))],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            check=True,
        )
        _report(label, sizes, json.loads(proc.stdout))


if __name__ == "__main__":
    main()
