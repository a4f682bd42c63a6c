#!/usr/bin/env python3
"""Split the test files into shards (one pytest process each) that scripts/test runs side by side.

The suite mostly waits (servers, subprocesses, timeouts), so several pytest processes per Python run
at once on two cores. Each shard is a set of whole test files, packed so that the shards of one
Python take about the same time, using the per-file durations that the last run recorded (read from
its junit reports). Files that share a session-scoped resource (the real flux0 server, the
PostgreSQL cluster) are packed together where they fit, so that fewer processes start one.

    python scripts/shards.py plan VERSION[:MODE] ... [--shards N] [-- PYTEST_ARGS...]
        one line per shard, longest first: VERSION TAB ESTIMATE TAB FILE FILE ...
        MODE: full (full strength) or coverage (quick variant under coverage); none: quick variant.
        (PYTEST_ARGS go to every shard; if they name files or tests, each Python gets one shard that
        runs just those)
    python scripts/shards.py record REPORT_DIR VERSION[:MODE] ...
        add the durations of the junit reports in REPORT_DIR (named pyVERSION-N.xml) to the record
    python scripts/shards.py seed
        write the record to the committed seed, scripts/test-durations.json (after a whole
        scripts/test run, when files were added or their cost changed much)
    python scripts/shards.py summary REPORT_DIR [--slowest N]
        per Python: passed, failed, skipped and the slowest tests, from the junit reports

Durations live in .cache/test-durations.json (per Python version and mode, per file: seconds). A
clean clone has no record: it plans with the committed seed, scripts/test-durations.json (a whole
run's record), so its first run is as well balanced as later ones; a file that neither knows is
estimated from its size.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
RECORD = ROOT / ".cache" / "test-durations.json"
SEED = ROOT / "scripts" / "test-durations.json"
# Files under these folders share one session-scoped resource; the rest share nothing costly.
AFFINITY = {"integration": "real server", "compat": "real server", "postgres": "postgresql", "daemon": "postgresql"}
SECONDS_PER_BYTE = 0.0004  # a rough fallback: about 4 s per 10 kB of test file
# a mode's cost against the quick variant's, for a file recorded in no run of that mode
MODE_FACTOR = {"full": 1.6, "coverage": 1.5, "": 1.0}

Durations = Dict[str, Dict[str, float]]


def test_files(paths: Sequence[str]) -> List[str]:
    """Every file pytest collects under `paths` (its default rule, test_*.py), relative to ROOT."""
    found = set()
    for given in paths:
        path = (ROOT / given).resolve() if not os.path.isabs(given) else Path(given)
        if path.is_file():
            found.add(path)
        elif path.is_dir():
            found.update(p for p in path.rglob("test_*.py") if "__pycache__" not in p.parts)
    return sorted(str(p.relative_to(ROOT)) for p in found)


def _read(path: Path) -> Durations:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_record() -> Durations:
    """The last runs' durations, over the committed seed's (which is all that a clean clone has)."""
    data = _read(SEED)
    for key, files in _read(RECORD).items():
        data.setdefault(key, {}).update(files)
    return data


def estimate(record: Durations, spec: str, path: str) -> float:
    """Seconds that `path` is expected to take in `spec` (VERSION[:MODE]): recorded, borrowed or guessed."""
    mode = spec.partition(":")[2]
    if path in record.get(spec, {}):
        return record[spec][path]
    others = [r[path] for k, r in record.items() if path in r and k.partition(":")[2] == mode]
    if others:
        return max(others)
    quick = [r[path] for k, r in record.items() if path in r and not k.partition(":")[2]]
    guess = max(quick) if quick else (ROOT / path).stat().st_size * SECONDS_PER_BYTE
    return guess * MODE_FACTOR.get(mode, 1.0)


def group_of(path: str) -> str:
    parts = Path(path).parts
    return AFFINITY.get(parts[1], "") if len(parts) > 2 else ""


def pack(files: Dict[str, float], target: float) -> List[Tuple[float, List[str]]]:
    """Shards of about `target` seconds: each affinity group into as few as fit, longest file first
    into the least loaded one (a file longer than the target is a shard of its own)."""
    groups: Dict[str, List[str]] = defaultdict(list)
    for path in files:
        groups[group_of(path)].append(path)
    shards: List[Tuple[float, List[str]]] = []
    for members in groups.values():
        total = sum(files[p] for p in members)
        count = max(1, min(len(members), round(total / target)))
        bins: List[Tuple[float, List[str]]] = [(0.0, []) for _ in range(count)]
        for path in sorted(members, key=lambda p: (-files[p], p)):
            load, paths = min(bins, key=lambda b: b[0])
            bins.remove((load, paths))
            bins.append((load + files[path], paths + [path]))
        shards.extend(b for b in bins if b[1])
    return shards


def plan(versions: Sequence[str], shards: float, pytest_args: Sequence[str]) -> List[str]:
    """`shards` per Python on average: a longer Python's tests (full strength) get more of them."""
    files = test_files(["tests"])
    record = load_record()
    named = any(not a.startswith("-") and os.path.exists(ROOT / a.split("::")[0]) for a in pytest_args)
    if named:  # the caller chose the tests: one process per Python, nothing to split
        return [f"{spec.partition(':')[0]}\t0\t" for spec in versions]
    estimates = {}
    for spec in versions:
        estimates[spec.partition(":")[0]] = {path: estimate(record, spec, path) for path in files}
    target = sum(sum(e.values()) for e in estimates.values()) / (shards * len(versions))
    lines = []
    for version, per_file in estimates.items():
        for load, paths in pack(per_file, target):
            lines.append((load, f"{version}\t{load:.0f}\t{' '.join(sorted(paths))}"))
    return [line for _, line in sorted(lines, key=lambda item: -item[0])]


def reports(directory: str) -> Iterable[Tuple[str, ET.Element]]:
    """(version, testcase) for every test of every pyVERSION-N.xml report in `directory`."""
    for path in sorted(glob.glob(os.path.join(directory, "py*.xml"))):
        version = os.path.basename(path)[2:].rsplit(".", 1)[0].split("-")[0]
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError):
            continue
        for case in root.iter("testcase"):
            yield version, case


def file_of(case: ET.Element) -> str:
    """tests/daemon/test_sync.py for classname tests.daemon.test_sync (or ...test_sync.TestClass)."""
    parts = case.get("classname", "").split(".")
    for end in range(len(parts), 0, -1):
        path = "/".join(parts[:end]) + ".py"
        if (ROOT / path).is_file():
            return path
    return ""


def record(directory: str, specs: Sequence[str]) -> None:
    key_of = {spec.partition(":")[0]: spec for spec in specs}
    totals: Durations = defaultdict(lambda: defaultdict(float))
    for version, case in reports(directory):
        path = file_of(case)
        if path:
            totals[key_of.get(version, version)][path] += float(case.get("time") or 0)
    if not totals:
        return
    data = _read(RECORD)
    for key, files in totals.items():  # a file this run did not run keeps its last duration
        data.setdefault(key, {}).update((path, round(seconds, 2)) for path, seconds in files.items())
        data[key] = dict(sorted(data[key].items()))
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    _write(RECORD, data)


def seed() -> None:
    """The record (over the old seed), rounded, becomes the committed seed; files gone are dropped."""
    present = set(test_files(["tests"]))
    data = {
        key: {p: round(s, 1) for p, s in sorted(files.items()) if p in present} for key, files in load_record().items()
    }
    _write(SEED, data)


def _write(path: Path, data: Durations) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    temporary.replace(path)


def summary(directory: str, slowest: int) -> int:
    """Prints each Python's counts, skips and slowest tests, then the total line; returns failures."""
    per_version: Dict[str, List[ET.Element]] = defaultdict(list)
    for version, case in reports(directory):
        per_version[version].append(case)
    total: Dict[str, int] = defaultdict(int)
    for version in sorted(per_version, key=lambda v: [int(n) for n in v.split(".")]):
        cases = per_version[version]
        counts: Dict[str, int] = defaultdict(int)
        real = real_ok = real_skipped = 0
        for case in cases:
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                elif child.tag == "skipped" and outcome == "passed":
                    outcome = "skipped"
            counts[outcome] += 1
            total[outcome] += 1
            if case.get("classname", "").startswith("tests.integration"):
                real += 1
                real_ok += outcome == "passed"
                real_skipped += outcome == "skipped"
        print(
            f"  Python {version}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped;"
            f" against the real flux0 server: {real_ok} of {real} passed, {real_skipped} skipped"
        )
        for case in cases:
            for child in case.iter("skipped"):
                print(f"    skipped {case.get('classname')}.{case.get('name')}: {child.get('message', '')[:200]}")
        ranked = sorted(cases, key=lambda c: -float(c.get("time") or 0))[:slowest]
        slow = ", ".join(f"{c.get('name')} {float(c.get('time') or 0):.1f} s" for c in ranked)
        print(f"    slowest: {slow}")
    print("== total over all Pythons:")
    print(f"{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    return total["failed"]


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    planning = commands.add_parser("plan")
    planning.add_argument("versions", nargs="+", help="X.Y, X.Y:full (full strength) or X.Y:coverage")
    planning.add_argument("--shards", type=float, default=4, help="shards per Python, on average")
    recording = commands.add_parser("record")
    recording.add_argument("reports")
    recording.add_argument("versions", nargs="*", help="X.Y[:MODE] as given to plan")
    commands.add_parser("seed")
    summarising = commands.add_parser("summary")
    summarising.add_argument("reports")
    summarising.add_argument("--slowest", type=int, default=5)
    own, pytest_args = argv, []
    if "--" in argv:
        own, pytest_args = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args = parser.parse_args(own)
    if args.command == "plan":
        print("\n".join(plan(args.versions, args.shards, pytest_args)))
    elif args.command == "record":
        record(args.reports, args.versions)
    elif args.command == "seed":
        seed()
    else:
        return 1 if summary(args.reports, args.slowest) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
