"""The PostgreSQL archive against a real, throwaway PostgreSQL server (see tests/pgcluster.py)."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, List

import pytest
from flux0sync.backend import DriverMissingError, open_store, redact_db_url, sqlite_path
from flux0sync.rows import RawEvent
from flux0sync.store import PollRecord, Store, StoreError

from tests.archive_events import make_events, raw_event
from tests.daemon.helpers import execute

pytestmark = pytest.mark.usefixtures("pg_driver")


def test_schema_is_versioned_and_every_unique_key_starts_with_the_session(pg_url: str) -> None:
    from flux0sync.pgstore import PG_SCHEMA_VERSION, PgStore

    store = open_store(pg_url)
    assert isinstance(store, PgStore) and store.has_fts
    meta = dict(execute(pg_url, "SELECT key, value FROM flux0sync_meta"))
    assert meta == {"application": "flux0-sync", "schema_version": str(PG_SCHEMA_VERSION), "search": "tsvector"}
    keys = execute(
        pg_url,
        "SELECT c.conrelid::regclass::text, c.contype, array_agg(a.attname ORDER BY k.ord)"
        " FROM pg_constraint c CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
        " WHERE c.contype IN ('p', 'u') AND c.conrelid::regclass::text IN ('events', 'sync_state')"
        " GROUP BY 1, 2, c.conname",
    )
    assert len(keys) == 3
    for table, _, columns in keys:
        assert columns[0] == "session_id", (table, columns)
    store.close()
    again = open_store(pg_url)  # reopening migrates nothing and keeps the data
    assert again.counts() == (0, 0, 0)
    again.close()


def test_failed_batch_rolls_back_events_and_checkpoint_together(pg_url: str) -> None:
    store = open_store(pg_url)
    store.write_batch("s1", make_events("s1", 0, 5))
    execute(
        pg_url,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.id = 's1-8' THEN RAISE EXCEPTION 'refused by test'; END IF; RETURN NEW; END $$",
    )
    execute(pg_url, "CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()")
    with pytest.raises(StoreError, match="refused by test"):
        store.write_batch("s1", make_events("s1", 5, 10))
    assert store.checkpoint("s1") == 4 and store.counts()[2] == 5
    execute(pg_url, "DROP TRIGGER refuse ON events")
    assert store.write_batch("s1", make_events("s1", 5, 10)).inserted == 10
    assert store.checkpoint("s1") == 14
    store.close()


def test_serialization_failure_re_runs_the_whole_transaction(pg_url: str) -> None:
    store = open_store(pg_url)
    # fails the first two attempts the way CockroachDB/YugabyteDB do under contention; the
    # sequence is not transactional, so it counts attempts across the rollbacks
    execute(pg_url, "CREATE SEQUENCE attempts")
    execute(
        pg_url,
        "CREATE FUNCTION contend() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF nextval('attempts') <= 2 THEN RAISE EXCEPTION 'restart transaction' USING ERRCODE = '40001'; END IF;"
        " RETURN NEW; END $$",
    )
    execute(pg_url, "CREATE TRIGGER contend AFTER INSERT ON sync_state FOR EACH ROW EXECUTE FUNCTION contend()")
    assert store.write_batch("s1", make_events("s1", 0, 20)).inserted == 20
    assert execute(pg_url, "SELECT last_value FROM attempts") == [(3,)]
    assert store.checkpoint("s1") == 19 and store.counts()[2] == 20
    execute(pg_url, "ALTER SEQUENCE attempts RESTART WITH -100 MINVALUE -1000")  # fail every attempt from now on
    with pytest.raises(StoreError, match="restart transaction"):
        store.write_batch("s2", make_events("s2", 0, 3))
    assert store.checkpoint("s2") == -1 and store.counts()[2] == 20
    store.close()


def test_a_dropped_connection_is_reopened_and_the_batch_re_run(pg_url: str) -> None:
    store = open_store(pg_url)
    store.write_batch("s1", make_events("s1", 0, 5))
    killed = execute(
        pg_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'flux0-sync'"
        " AND datname = current_database()",
    )
    assert killed == [(True,)]
    assert store.write_batch("s1", make_events("s1", 5, 5)).inserted == 5
    assert store.checkpoint("s1") == 9
    store.close()


def test_daemons_starting_together_migrate_once(pg_url: str) -> None:
    stores: List[Any] = []
    errors: List[BaseException] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        try:
            stores.append(open_store(pg_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(stores) == 6
    assert execute(pg_url, "SELECT count(*) FROM pg_indexes WHERE indexname = 'events_text_search'") == [(1,)]
    for store in stores:
        store.close()


def test_concurrent_writers_of_one_session_store_each_event_once(pg_url: str) -> None:
    events = make_events("s1", 0, 400)
    stores = [open_store(pg_url) for _ in range(4)]
    errors: List[BaseException] = []

    def write(store: Any, step: int) -> None:
        try:
            for start in range(0, 400, step):
                store.write_batch("s1", events[start : start + step])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, 7 + i * 6)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert execute(pg_url, 'SELECT count(*), count(DISTINCT "offset"), max("offset") FROM events') == [(400, 400, 399)]
    assert stores[0].checkpoint("s1") == 399 and stores[0].integrity_ok()
    for store in stores:
        store.close()


def test_foreign_and_newer_databases_are_refused_and_left_untouched(pg_url: str, pg_cluster: Any) -> None:
    execute(pg_url, "CREATE TABLE events (id int)")
    with pytest.raises(StoreError, match="other application"):
        open_store(pg_url)
    assert execute(pg_url, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == [(1,)]
    other = pg_cluster.new_database()
    execute(other, "CREATE TABLE flux0sync_meta (key text PRIMARY KEY, value text NOT NULL)")
    execute(other, "INSERT INTO flux0sync_meta VALUES ('application', 'someone-else')")
    with pytest.raises(StoreError, match="someone-else"):
        open_store(other)
    newer = pg_cluster.new_database()
    open_store(newer).close()
    execute(newer, "UPDATE flux0sync_meta SET value = '99' WHERE key = 'schema_version'")
    for readonly in (False, True):
        with pytest.raises(StoreError, match="newer"):
            open_store(newer, readonly=readonly)
    empty = pg_cluster.new_database()
    with pytest.raises(StoreError, match="no flux0-sync archive"):
        open_store(empty, readonly=True)
    assert execute(empty, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == [(0,)]


def test_migration_from_v1_adds_search(pg_url: str) -> None:
    store = open_store(pg_url)
    store.write_batch("s1", make_events("s1", 0, 3, text="refund please"))
    store.close()
    execute(pg_url, "DROP INDEX events_text_search")
    execute(pg_url, "DELETE FROM flux0sync_meta WHERE key = 'search'")
    execute(pg_url, "DROP TABLE poll_schedule")  # and v3's schedule
    execute(pg_url, "ALTER TABLE sessions DROP COLUMN found_under_user")
    execute(pg_url, "ALTER TABLE sync_state DROP COLUMN generation")  # and v4's generation
    execute(pg_url, "UPDATE flux0sync_meta SET value = '1' WHERE key = 'schema_version'")
    reader = open_store(pg_url, readonly=True)
    assert not reader.has_fts and [h.offset for h in reader.search("refund")] == [0, 1, 2]  # ILIKE meanwhile
    (status,) = reader.session_statuses()  # an old archive reads without the schedule's columns
    assert status.events == 3 and (status.next_poll_at, status.idle_level, status.found_under_user) == (None,) * 3
    reader.close()
    store = open_store(pg_url)
    assert store.has_fts and [h.offset for h in store.search("refund")] == [0, 1, 2]
    store.save_polls([PollRecord("s1", 1e9, 2, None)])
    (status,) = store.session_statuses()
    assert (status.next_poll_at, status.idle_level) == (1e9, 2)
    store.close()
    from flux0sync.pgstore import PG_SCHEMA_VERSION

    assert execute(pg_url, "SELECT value FROM flux0sync_meta WHERE key = 'schema_version'") == [
        (str(PG_SCHEMA_VERSION),)
    ]


def test_search_full_text_web_syntax_and_ilike_fallback(pg_url: str) -> None:
    store = open_store(pg_url)
    store.write_batch("s1", make_events("s1", 0, 2, text="Refund policy"))
    store.write_batch("s2", make_events("s2", 0, 1, text="refund denied"))
    store.write_batch("s3", make_events("s3", 0, 1, text="100% sure_thing"))
    assert [(h.session_id, h.offset) for h in store.search("refund")] == [("s1", 0), ("s1", 1), ("s2", 0)]
    assert [h.session_id for h in store.search('"refund policy"')] == ["s1", "s1"]
    assert [h.session_id for h in store.search("refund -denied")] == ["s1", "s1"]
    assert next(store.search("refund", limit=1)).text == "Refund policy 0"
    assert [h.session_id for h in store.search("100%")] == ["s3"]  # punctuation only: ILIKE, escaped
    assert [h.session_id for h in store.search("%")] == ["s3"]
    assert list(store.search("_")) and list(store.search("e_t")) == []
    assert list(store.search("nothing like it")) == []
    assert list(store.search("nul\x00 and \udcff surrogate")) == []  # no error for bytes PostgreSQL cannot take
    store.close()


def test_values_postgresql_cannot_hold_are_kept_in_raw(pg_url: str) -> None:
    store = open_store(pg_url)
    doc = dict(make_events("s\x00x", 0, 1)[0].doc)
    doc["data"] = {"type": "message", "parts": [{"type": "content", "content": "nul \x00 and lone \ud83d"}]}
    doc["correlation_id"] = "c\x00"
    doc["id"] = "id\x00"
    assert store.write_batch("s\x00x", [RawEvent.from_doc(doc)]).inserted == 1
    assert store.checkpoint("s\x00x") == 0
    (back,) = list(store.iter_raw_events("s\x00x"))
    assert json.loads(back) == doc
    row = execute(pg_url, "SELECT session_id, id, correlation_id, text FROM events")
    # the text column stays searchable: U+FFFD for the NUL and the lone surrogate
    assert row == [(json.dumps("s\x00x"), json.dumps("id\x00"), None, "nul \ufffd and lone \ufffd")]
    assert store.mark_error("s2", "boom\x00") == 1
    assert {r.session_id: r for r in store.session_statuses()}["s2"].last_error == json.dumps("boom\x00")
    huge = make_events("big", 0, 1, text="word " * 400_000)  # 2 MB: over a tsvector's 1 MB limit
    assert store.write_batch("big", huge).inserted == 1
    assert [h.session_id for h in store.search("word")] == ["big"]
    store.close()


def test_readers_open_read_only(pg_url: str) -> None:
    writer = open_store(pg_url)
    writer.write_batch("s1", make_events("s1", 0, 3))
    reader = open_store(pg_url, readonly=True)
    assert reader.counts() == (0, 0, 3) and reader.session_exists("s1") and not reader.session_exists("s9")
    assert [s.session_id for s in reader.session_statuses()] == ["s1"]
    with pytest.raises(StoreError, match="read-only"):
        reader.write_batch("s1", make_events("s1", 3, 1))
    reader.close()
    writer.close()


def test_unreachable_server_is_one_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot connect to postgresql://me:\\*\\*\\*@/nodb"):
        open_store("postgresql://me:secret@/nodb?host=/nonexistent-socket-dir")


def test_urls_dispatch_and_passwords_never_show(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact_db_url("postgresql://u:pw@db.example:5432/a?sslmode=require&password=x") == (
        "postgresql://u:***@db.example:5432/a?sslmode=require&password=***"
    )
    assert redact_db_url("postgres://u@h/a") == "postgres://u@h/a"
    assert redact_db_url("postgresql://[::1/a") == "postgresql://(unparseable URL)"
    assert redact_db_url("/var/lib/x.sqlite3") == "/var/lib/x.sqlite3"
    assert sqlite_path("sqlite:///abs/a.db") == "/abs/a.db" and sqlite_path("sqlite:rel.db") == "rel.db"
    store = open_store(f"sqlite:{tmp_path}/a.sqlite3")
    assert isinstance(store, Store)
    store.close()
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    with pytest.raises(DriverMissingError, match=r"pip install 'flux0lite\[postgres\]'"):
        open_store("postgresql://u@/db")


def test_two_daemons_filling_one_session_out_of_order_agree_on_the_checkpoint(pg_url: str) -> None:
    events = [raw_event("s", o) for o in range(300)]
    first, second = open_store(pg_url), open_store(pg_url)
    errors: List[BaseException] = []

    def write(store: Any, offsets: List[int]) -> None:
        try:
            for start in range(0, len(offsets), 10):
                store.write_batch("s", [events[o] for o in offsets[start : start + 10]])
        except BaseException as exc:
            errors.append(exc)

    evens, odds = list(range(0, 300, 2)), list(range(1, 300, 2))
    threads = [threading.Thread(target=write, args=(first, evens)), threading.Thread(target=write, args=(second, odds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    # whoever committed last saw the other's rows under the session's row lock: no hole is left
    assert first.checkpoint("s") == 299 and first.reconcile_gaps("s", patience=3600) == ([], [])
    first.close()
    second.close()


def test_a_reader_with_select_rights_only_can_read(pg_url: str) -> None:
    writer = open_store(pg_url)
    writer.write_batch("s1", make_events("s1", 0, 3, text="refund"))
    writer.close()
    execute(pg_url, "DROP ROLE IF EXISTS analyst")
    execute(pg_url, "CREATE ROLE analyst LOGIN")
    execute(pg_url, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst")
    as_analyst = pg_url.replace("postgresql://flux0@", "postgresql://analyst@")
    reader = open_store(as_analyst, readonly=True)
    assert reader.counts() == (0, 0, 3) and len(list(reader.search("refund"))) == 3
    assert [json.loads(r)["offset"] for r in reader.iter_raw_events("s1")] == [0, 1, 2]
    reader.close()
    with pytest.raises(StoreError):
        open_store(as_analyst)  # the daemon needs write rights: one clear error, nothing changed


def test_an_archive_in_its_own_schema_shares_a_database(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE events (x int)")  # someone else's table in public
    execute(pg_url, "CREATE SCHEMA flux0")
    store = open_store(pg_url + "&options=-csearch_path%3Dflux0")
    store.write_batch("s1", make_events("s1", 0, 2))
    assert store.counts() == (0, 0, 2)
    store.close()
    tables = execute(pg_url, "SELECT table_schema, count(*) FROM information_schema.tables GROUP BY 1 ORDER BY 1")
    assert ("flux0", 8) in tables and ("public", 1) in tables
