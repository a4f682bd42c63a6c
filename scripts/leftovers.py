#!/usr/bin/env python3
"""List, and with --kill end, the processes still alive that carry a marker in their environment.

scripts/test and the demo tests start everything with a marker variable (NAME=VALUE); every child,
grandchild and server inherits it, so this finds exactly what one run left behind and nothing that
another run or another worktree started. Linux only (it reads /proc); elsewhere it finds nothing.

    python scripts/leftovers.py NAME=VALUE [--kill] [--grace SECONDS]

Exit status 0: nothing left; 1: something survived the grace period (listed, and killed with --kill).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Set, Tuple

PROC = Path("/proc")


def _ancestors() -> Set[int]:
    """This process and every parent up to init: they carry the marker because they are the caller."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = (PROC / str(pid) / "stat").read_text()
            pid = int(stat.rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def find(marker: str) -> List[Tuple[int, str, str]]:
    """(pid, matching environment entry, command line) of each live process whose environment has an
    entry starting with `marker`, other than the caller and its ancestors."""
    wanted = marker.encode()
    skip = _ancestors()
    found = []
    for entry in PROC.glob("[0-9]*"):
        pid = int(entry.name)
        if pid in skip:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        match = next((item for item in environ.split(b"\0") if item.startswith(wanted)), None)
        if match is not None:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            found.append((pid, match.decode(errors="replace"), command))
    return sorted(found)


def wait_until_gone(marker: str, grace: float) -> List[Tuple[int, str, str]]:
    """What is still there after `grace` seconds (a process that was just told to stop may need them)."""
    deadline = time.monotonic() + grace
    survivors = find(marker)
    while survivors and time.monotonic() < deadline:
        time.sleep(0.2)
        survivors = find(marker)
    return survivors


def kill(pids: List[int]) -> None:
    """SIGKILL each one, with its whole process group when it leads one (a server and its children)."""
    own_group = os.getpgid(0)
    for pid in pids:
        try:
            group = os.getpgid(pid)
            if group == pid and group != own_group:
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("marker", help="NAME=VALUE (or a prefix of it) that the run's processes inherited")
    parser.add_argument("--kill", action="store_true", help="SIGKILL what survived")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds to let stopping processes finish")
    args = parser.parse_args()
    if "=" not in args.marker:
        parser.error("the marker is NAME=VALUE")
    survivors = wait_until_gone(args.marker, args.grace)
    for pid, entry, command in survivors:
        print(f"still running: pid {pid} ({entry}): {command[:300]}")
    if survivors and args.kill:
        kill([pid for pid, _, _ in survivors])
        print(f"killed {len(survivors)} leftover process(es)")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
