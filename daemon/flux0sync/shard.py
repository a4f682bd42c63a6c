"""Splitting the sessions between daemons: ``--shard i/N``.

A daemon started with ``--shard i/N`` owns a session iff ``shard_of(session_id, N) == i``.
N daemons with shards 0/N .. N-1/N cover every session exactly once without talking to each
other. The hash is stable across processes, machines and Python versions: the first 8 bytes of
BLAKE2b over the id's UTF-8 bytes, big-endian, modulo N (never Python's salted ``hash()``).
Anyone can recompute it, e.g. ``b2sum -l 64`` on the id, as a hex number, modulo N.

Overlapping or changed shard maps are harmless in a shared archive: inserts are idempotent and
checkpoints only move forward, so a session read by two daemons is merely read twice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["Shard", "parse_shard", "shard_of", "MAX_SHARDS"]

MAX_SHARDS = 4096
_SPEC = re.compile(r"(\d{1,5})/(\d{1,5})", re.ASCII)


def shard_of(session_id: str, count: int) -> int:
    """The shard (0..count-1) that owns ``session_id``."""
    # surrogatepass: a hostile id with a lone surrogate still hashes, and always the same way
    digest = hashlib.blake2b(session_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def owns(self, session_id: str) -> bool:
        return self.count == 1 or shard_of(session_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"i/N"`` with 0 <= i < N <= MAX_SHARDS; raises ValueError saying what is wrong."""
    match = _SPEC.fullmatch(text.strip())
    if not match:
        raise ValueError(f"shard must look like i/N (e.g. 0/4), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"shard count must be between 1 and {MAX_SHARDS}, got {count}")
    if index >= count:
        raise ValueError(f"shard index must be below the count ({count}), got {index}")
    return Shard(index, count)
