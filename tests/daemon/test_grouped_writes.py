"""The fast first sync: small answers read whole and parsed by the writer, several sessions'
batches in one transaction, with every exactly-once rule of a batch written alone kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Set, Tuple

import pytest
from flux0sync import engine
from flux0sync.jobs import Fetched, SessionWriter, _small_body_length, read_batches, read_events
from flux0sync.rows import RawEvent, UnidentifiableEventError, event_rows
from flux0sync.store import Store, StoreFullError, WriteResult
from flux0sync.sync import Syncer

from flux0lite import Flux0, Retry, Timeout
from tests.daemon.helpers import archive_rows, assert_archive_equals_server
from tests.daemon.hostile import event, serve_bytes, serve_events, serve_trickle
from tests.fakeserver import Conn, FakeFlux0, FakeServer, Request, chunked, raw_response


def raw(session_id: str, offsets: Sequence[int], text: str = "hello") -> List[RawEvent]:
    return [RawEvent.from_doc(event(session_id, o, text=f"{text} {o}")) for o in offsets]


def client_for(fake: FakeServer) -> Flux0:
    return Flux0(fake.url, timeout=Timeout(5, 5), retry=Retry(total=0))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "a.sqlite3"))


def test_several_sessions_share_a_transaction_each_with_its_own_checkpoint(store: Store) -> None:
    results = store.write_rows(
        [
            ("s1", event_rows("s1", raw("s1", [0, 1, 2]))),
            ("s2", event_rows("s2", raw("s2", [1, 0]))),
            ("s3", []),  # nothing to write: no result
            ("s1", event_rows("s1", raw("s1", [3, 5]))),  # the same session again, in order
        ]
    )
    assert [(r.inserted, r.checkpoint) for r in results] == [(3, 2), (2, 1), (2, 3)]
    assert (store.checkpoint("s1"), store.checkpoint("s2"), store.checkpoint("s3")) == (3, 1, -1)
    assert store.counts()[2] == 7
    assert {hit.session_id for hit in store.search("hello", limit=100)} == {"s1", "s2"}
    assert len(list(store.search("hello", limit=100))) == 7  # every event is in the full-text index


def test_a_shared_transaction_is_all_or_nothing(store: Store) -> None:
    store.write_batch("s0", raw("s0", range(10)))
    store.set_max_page_count(int(store.db.execute("PRAGMA page_count").fetchone()[0]))
    with pytest.raises(StoreFullError):
        store.write_rows(
            [("s1", event_rows("s1", raw("s1", range(3)))), ("s2", event_rows("s2", raw("s2", range(2000), "x" * 300)))]
        )
    assert (store.checkpoint("s1"), store.checkpoint("s2"), store.counts()[2]) == (-1, -1, 10)
    assert store.integrity_ok() and not store.db.in_transaction


def test_a_batch_without_ids_is_left_out_with_its_sessions_later_batches(store: Store) -> None:
    nameless = RawEvent.from_doc({"offset": 0, "type": "message"})
    outcome = SessionWriter(store, 300).write_many(
        [("s1", raw("s1", [0, 1])), ("s2", [nameless]), ("s1", raw("s1", [2])), ("s2", raw("s2", [1]))]
    )
    assert isinstance(outcome[0], WriteResult) and isinstance(outcome[2], WriteResult)
    assert (outcome[0].inserted, outcome[2].inserted) == (2, 1)
    assert isinstance(outcome[1], UnidentifiableEventError) and outcome[3] is outcome[1]
    assert store.checkpoint("s1") == 2 and archive_rows(store.path).get("s2") is None


def test_a_full_disk_tries_each_batch_alone_so_an_oversized_one_costs_only_its_session(store: Store) -> None:
    store.write_batch("s0", raw("s0", range(10)))
    pages = int(store.db.execute("PRAGMA page_count").fetchone()[0])
    store.set_max_page_count(pages + 8)  # room for a few small events, not for 2000 large ones
    outcome = SessionWriter(store, 300).write_many(
        [("s1", raw("s1", [0, 1])), ("s2", raw("s2", range(2000), "x" * 300))]
    )
    assert isinstance(outcome[0], WriteResult) and outcome[0].inserted == 2
    assert isinstance(outcome[1], StoreFullError)
    assert (store.checkpoint("s1"), store.checkpoint("s2")) == (1, -1) and store.integrity_ok()


def test_a_small_answer_is_read_by_the_writer_exactly_as_a_streamed_one() -> None:
    docs = [event("s", o) for o in range(3)]
    body = json.dumps({"data": docs}, indent=1).encode()
    fetched, error = read_events("s", Fetched(-1, [], body))
    assert error is None and fetched.body is None and fetched.highest == 2
    assert [e.doc for e in fetched.tail] == docs
    assert [json.loads(e.text) for e in fetched.tail] == docs and "\n" in fetched.tail[0].text  # as sent
    cut, error = read_events("s", Fetched(-1, [], body[:-40]))
    assert [e.doc["offset"] for e in cut.tail] == [0, 1] and cut.highest == 1
    assert error is not None and "truncated" in str(error)


class _Answer:
    def __init__(self, headers: Dict[str, str]) -> None:
        self.headers = headers


@pytest.mark.parametrize(
    "headers, whole",
    [
        ({"content-length": "45000"}, True),
        ({"content-length": str(1024 * 1024)}, True),
        ({"content-length": str(1024 * 1024 + 1)}, False),
        ({"content-length": "45000", "content-encoding": "gzip"}, False),  # may inflate far beyond
        ({"transfer-encoding": "chunked"}, False),
        ({"content-length": "-1"}, False),
        ({"content-length": "1e3"}, False),
        ({"content-length": "９９"}, False),  # digits, but not ASCII ones
        ({"content-length": "9" * 400}, False),
    ],
)
def test_only_a_declared_small_uncompressed_answer_is_read_whole(headers: Dict[str, str], whole: bool) -> None:
    assert (_small_body_length(_Answer(headers)) is not None) is whole


@pytest.fixture
def read_whole(monkeypatch: pytest.MonkeyPatch) -> Set[str]:
    """The sessions whose answers the writer read whole (the others were streamed)."""
    seen: Set[str] = set()

    def spy(session_id: str, body: bytes, size: int) -> Iterator[List[RawEvent]]:
        seen.add(session_id)
        return read_batches(session_id, body, size)

    monkeypatch.setattr(engine, "read_batches", spy)
    return seen


def test_small_answers_whole_and_large_or_chunked_ones_streamed_mirror_alike(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, read_whole: Set[str]
) -> None:
    agent = fake_flux0.add_agent()
    small = [fake_flux0.add_session(agent) for _ in range(12)]
    for n, sid in enumerate(small):
        fake_flux0.add_events(sid, n * 7)
    large = fake_flux0.add_session(agent)
    fake_flux0.add_events(large, 2500, text="y" * 500)  # an answer of about 1.8 MB
    chunked = fake_flux0.add_session(agent)
    fake_flux0.add_events(chunked, 30)
    docs = list(fake_flux0.events[chunked])
    serve_trickle(fake_flux0, chunked, lambda: docs, every=0, piece=4096)
    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    syncer = Syncer(client_for(fake), store, batch_size=40, workers=4, make_client=lambda user: client_for(fake))
    result = syncer.run_pass()
    assert result.ok and result.events_inserted == sum(n * 7 for n in range(12)) + 2500 + 30
    assert_archive_equals_server(db, fake_flux0)
    assert read_whole == set(small)
    assert len(list(store.search(large, limit=5000))) == 2500  # each event's text names its session
    fake_flux0.add_events(small[3], 5)
    assert syncer.run_pass().events_inserted == 5  # incremental, nothing twice
    assert_archive_equals_server(db, fake_flux0)


@pytest.mark.parametrize("delivery", ["whole", "chunked"])
def test_a_cut_answer_keeps_what_came_before_the_cut_either_way(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, delivery: str
) -> None:
    agent = fake_flux0.add_agent()
    sid, other = fake_flux0.add_session(agent), fake_flux0.add_session(agent)
    fake_flux0.add_events(other, 3)
    docs = [event(sid, o) for o in range(4)]
    body = json.dumps({"data": docs}).encode()
    cut = body[: body.index(b'"id": "%s-e2"' % sid.encode())]  # e0 and e1 whole, then the cut
    if delivery == "whole":
        serve_bytes(fake_flux0, sid, cut)
    else:

        def respond(req: Request, conn: Conn) -> None:
            chunked_header = {"content-type": "application/json", "transfer-encoding": "chunked"}
            conn.send(raw_response(200, b"", chunked_header, length=False) + chunked(cut) + b"0\r\n\r\n")

        fake.on("GET", f"/api/sessions/{sid}/events", respond)
    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    result = Syncer(client_for(fake), store, batch_size=10).run_pass()
    assert result.sessions_failed == 1 and "truncated" in result.errors[0], result.errors
    assert [o for o, _ in archive_rows(db)[sid]] == [0, 1] and store.checkpoint(sid) == 1
    assert len(archive_rows(db)[other]) == 3
    serve_events(fake_flux0, sid, lambda: docs)
    assert Syncer(client_for(fake), store, batch_size=10).run_pass().ok  # a new pass, without the backoff
    assert [o for o, _ in archive_rows(db)[sid]] == [0, 1, 2, 3] and store.checkpoint(sid) == 3


def test_a_shared_transaction_is_bounded_by_size_as_well_as_by_count(
    tmp_path: Path, fake: FakeServer, fake_flux0: FakeFlux0, monkeypatch: pytest.MonkeyPatch
) -> None:
    # big events from many sessions at once: grouping by count alone held megabytes per event
    # times batch_size in one transaction (and in memory) before the size bound
    limit = 20_000
    monkeypatch.setattr(engine, "MAX_BATCH_CHARS", limit)
    written: List[int] = []
    write_many = SessionWriter.write_many

    def spy(self: SessionWriter, batches: Sequence[Tuple[str, Sequence[RawEvent]]], *generations: Any) -> List[Any]:
        written.append(sum(len(e.text) for _, batch in batches for e in batch))
        return write_many(self, batches, *generations)

    monkeypatch.setattr(SessionWriter, "write_many", spy)
    agent = fake_flux0.add_agent()
    sessions = [fake_flux0.add_session(agent) for _ in range(8)]
    for sid in sessions:
        fake_flux0.add_events(sid, 12, text="z" * 2000)
    db = str(tmp_path / "a.sqlite3")
    syncer = Syncer(client_for(fake), Store(db), batch_size=500, workers=4, make_client=lambda user: client_for(fake))
    result = syncer.run_pass()
    assert result.ok and result.events_inserted == 8 * 12
    assert_archive_equals_server(db, fake_flux0)
    largest = max(len(json.dumps(e)) for sid in sessions for e in fake_flux0.events[sid])
    assert written and max(written) <= limit + 12 * largest, written  # at most one batch past the bound
