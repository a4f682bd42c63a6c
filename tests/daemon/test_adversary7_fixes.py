"""Regression tests for the adversary round 7 findings on the daemon's memory budget.

01: the budget charged 10 estimated bytes a character, but JSON of many small items decodes to
24-41 bytes a character, so events of tiny items (each well within the per-event cap) took the
daemon past its unit's MemoryMax, and the worker past the budget held a batch of 4 Mi such
characters (~160 MB decoded). Now each value the text starts is charged too
(flux0sync.budget.text_cost), and an events batch is cut by that estimate.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path
from typing import Any, List

import pytest
from flux0sync.budget import metered
from flux0sync.jobs import fetch_events

from tests.daemon.helpers import client_for, execute, one_session
from tests.daemon.hostile import event, serve_events
from tests.daemon.test_adversary6b_fixes import _serve_gzip_bodies, linux_only, memory_max_mb, peak_rss_mb
from tests.fakeserver import FakeFlux0, FakeServer

# Shapes of small items that decode to the most per character (measured on 3.9-3.13): a
# one-key dict of a dict, one-item lists and one-key dicts nested, empty containers, short strings.
_TINY_ITEMS = ['{"":{}}', "{}", "[]", "[[[]]]", '{"":0}', '{"":{"":{}}}', '"ab"', "0.5", "[0]", '{"":""}']


def _nested(open_: str, close: str, depth: int) -> str:
    return open_ * depth + "0" + close * depth


@pytest.mark.parametrize(
    "item", [*_TINY_ITEMS, _nested('{"":', "}", 40), _nested("[", "]", 40)], ids=lambda item: item[:12]
)
def test_what_a_chunk_is_charged_covers_what_it_decodes_to(item: str) -> None:
    text = ("[" + ",".join([item] * 4096) + "]").encode()
    charged: List[int] = []
    chunks = list(metered([text[n : n + 65536] for n in range(0, len(text), 65536)], charged.append))
    tracemalloc.start()
    try:
        value = json.loads(b"".join(chunks))
        decoded, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del value
    # the text itself, the reader's buffers and the rows written cost ~10 bytes a character more
    assert sum(charged) >= decoded + 10 * len(text), (sum(charged), decoded, len(text))


def test_an_events_batch_of_tiny_items_is_cut_by_what_it_decodes_to(fake: FakeServer, fake_flux0: FakeFlux0) -> None:
    sid = one_session(fake_flux0)
    tiny = [{"": {}}] * 32768  # ~256 KiB of text, ~8 MB decoded
    docs = [dict(event(sid, offset), extra=tiny) for offset in range(16)]
    serve_events(fake_flux0, sid, lambda: docs)
    batches: List[List[Any]] = []
    with client_for(fake, timeout=10) as client:
        fetched = fetch_events(sid, 0, 500)(client, batches.append)
    batches.append(fetched.tail)
    assert [e.doc["offset"] for batch in batches for e in batch] == list(range(16))
    # the 16 events (4 Mi characters, ~130 MB decoded) were one batch; now 40 MiB estimated each
    # (jobs._MAX_BATCH_COST), and each of these is charged ~15 MiB
    assert max(len(batch) for batch in batches) <= 3, [len(batch) for batch in batches]


@linux_only
def test_tiny_item_events_read_by_every_worker_stay_within_memorymax(tmp_path: Path, fake_flux0: FakeFlux0) -> None:
    agent = fake_flux0.add_agent()
    tiny = [{"": {}}] * 32768  # 256 KiB of text an event, 1/64 of the per-event cap
    bodies = {}
    for _ in range(6):
        sid = fake_flux0.add_session(agent)
        docs = [dict(event(sid, offset), extra=tiny) for offset in range(24)]
        bodies[sid] = gzip.compress(json.dumps({"data": docs}, separators=(",", ":")).encode(), 1)
    _serve_gzip_bodies(fake_flux0, bodies)
    db = str(tmp_path / "a.sqlite3")
    peak = peak_rss_mb(["--db", db, "--once"], fake_flux0.server.url)  # the default --workers
    assert execute(db, "SELECT count(*) FROM events")[0][0] == 6 * 24
    # was ~254 MB on 3.13 (~320 with 160 events a session); now ~140
    assert peak < memory_max_mb() * 3 // 4, peak
