"""Cost of chunk patches as a reply grows: inserts at /0, in the middle, appends (issue 11).

    python bench/patch_linearity.py [--before DIR]

Feeds n one-patch chunk events to a ReplyAssembler and prints seconds and the ratio per
doubling of n (2.0 is linear, 4.0 quadratic). ``--before DIR`` runs the same with the
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
SIZES = (37_500, 75_000, 150_000)


def _measure() -> Dict[str, List[float]]:
    from flux0lite.models import ChunkEvent, JsonPatch
    from flux0lite.streaming import ReplyAssembler

    def path_for(kind: str, i: int) -> str:
        return {"insert at /0": "/0", "insert in the middle": f"/{i // 2}", "append /-": "/-"}[kind]

    results: Dict[str, List[float]] = {}
    for kind in ("insert at /0", "insert in the middle", "append /-"):
        for n in SIZES:
            events = [
                ChunkEvent(event_id="e", seq=i, patches=(JsonPatch("add", path_for(kind, i), "ab"),)) for i in range(n)
            ]
            assembler = ReplyAssembler()
            started = time.perf_counter()
            for event in events:
                assembler.add(event)
            text = assembler.reply().text
            results.setdefault(kind, []).append(time.perf_counter() - started)
            assert len(text) == 2 * n
    return results


def _report(label: str, results: Dict[str, List[float]]) -> None:
    for kind, times in results.items():
        cells = "  ".join(f"n={n}: {t:6.3f} s" for n, t in zip(SIZES, times))
        ratios = ", ".join(f"{b / a:.2f}" for a, b in zip(times, times[1:]))
        print(f"{label:7} {kind:22} {cells}  x per doubling: {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="a directory holding an older flux0lite package")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(_measure()))
        return
    trees = {"now": str(ROOT)}
    if options.before:
        trees["before"] = options.before
    print(f"Python {sys.version.split()[0]}")
    for label, path in trees.items():
        env = dict(os.environ, PYTHONPATH=path)
        proc = subprocess.run(
            [sys.executable, __file__, "--child"], env=env, cwd="/", capture_output=True, text=True, check=True
        )
        _report(label, json.loads(proc.stdout))


if __name__ == "__main__":
    main()
