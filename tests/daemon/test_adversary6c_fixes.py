"""Read-side defects found by the sixth adversary (``/work/wt/hadv6/repros/``), each pinned.

04: ``status --json``, ``search --json`` and ``export`` wrote DEL, C1 controls (U+009B is CSI)
and bidi overrides from the server raw; one rule (``flux0lite.cli.printable_json``) now
escapes them for both CLIs. 07: ``export`` passed through the ``NaN``/``Infinity`` the daemon's
decoder accepts (not JSON); it writes them as null, the archive keeps the raw as sent. 10:
``search --limit 99999999999999999999`` ended in the "unexpected OverflowError" catch-all; every
numeric option of both CLIs refuses what it cannot use as a one-line usage error, exit 2.
"""

from __future__ import annotations

import io
import json
import math
import re
import sqlite3
from pathlib import Path
from typing import Any, List, Tuple, cast

import pytest
from flux0sync.cli import _exportable, _run_parser, main
from flux0sync.jsonread import Decoder
from flux0sync.rows import RawEvent
from flux0sync.store import Store
from hypothesis import given, settings
from hypothesis import strategies as st

from flux0lite.cli import main as flux0lite_main
from flux0lite.cli import printable_json
from tests.fakeserver import FakeServer, json_response

# What no output may carry raw: C0 controls but newline and tab, DEL, C1, bidi controls; and
# lone surrogates (UTF-8 cannot carry them).
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
HOSTILE = list('\x00\x1b\x7f\x85\x9b\x9d\u061c\u200e\u202e\u2066\u2069\ud800\udcff"\\/NaI\U0001f600')
WORDS = ["NaN", "Infinity", "-Infinity", '\\"NaN', '"-Infinity"']
TEXT = st.lists(
    st.text(st.characters() | st.sampled_from(HOSTILE), max_size=8) | st.sampled_from(WORDS), max_size=5
).map("".join)
NUMBER = st.integers() | st.floats(allow_nan=True, allow_infinity=True)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBER | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _strict(text: str) -> Any:
    """RFC 8259's reader: no NaN, no Infinity (as jq, JSON.parse, PostgreSQL's json)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _finite(value: Any) -> Any:
    """``value`` with each number JSON has no words for as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN-free: compares floats by text


def run(args: List[str]) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _event(offset: int, content: Any) -> str:
    doc = {
        "id": f"e{offset}",
        "source": "user",
        "type": "message",
        "offset": offset,
        "correlation_id": "c",
        "deleted": False,
        "created_at": "2024-01-01T00:00:00Z",
        "data": {"type": "message", "parts": [{"type": "content", "content": content}], "score": content},
    }
    return json.dumps(doc, ensure_ascii=False)  # strings unescaped, NaN as NaN: what a server may send


def _archive(tmp_path: Path, session_id: str, raws: List[str]) -> str:
    path = str(tmp_path / "archive.db")
    store = Store(path)
    try:
        store.write_batch(session_id, [RawEvent(Decoder().decode(raw), raw) for raw in raws])
    finally:
        store.close()
    return path


# -- 04: one rule for JSON a terminal reads ------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES.map(_finite))
def test_printable_json_keeps_the_value_and_nothing_a_terminal_obeys(value: Any) -> None:
    text = printable_json(json.dumps(value, ensure_ascii=False))
    assert not UNSAFE.search(text)
    text.encode("utf-8")  # lone surrogates escaped too
    assert _same(json.loads(text), value)


def test_status_search_and_export_write_no_terminal_controls(tmp_path: Path) -> None:
    evil = "zebra \x9b31mRED \x7f \u202eevil \x85 \u2066"
    sid = "s\x9b1\u202e"
    path = _archive(tmp_path, sid, [_event(0, evil)])
    for args in (
        ["status"],
        ["status", "--json"],
        ["search", "zebra"],
        ["search", "zebra", "--json"],
        ["export", sid],
        ["export", sid, "--json"],
        ["export", sid + "x"],  # not found: the message quotes the argument
    ):
        code, out, err = run([*args, "--db", path])
        assert code == (1 if args[-1].endswith("x") else 0), err
        assert not UNSAFE.search(out + err.replace("\n", " ")), args
    code, out, _ = run(["search", "zebra", "--json", "--db", path])
    assert json.loads(out)[0]["text"] == evil and json.loads(out)[0]["session_id"] == sid
    code, out, _ = run(["export", sid, "--json", "--db", path])
    assert json.loads(out)[0]["data"]["parts"][0]["content"] == evil
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT raw FROM events").fetchone()[0] == _event(0, evil)  # kept as sent
    db.close()


# -- 07: export writes RFC 8259 JSON ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_export_is_strict_json_of_the_same_value_non_finite_numbers_null(value: Any) -> None:
    raw = json.dumps({"id": "e0", "data": value}, ensure_ascii=False)
    (written,) = _exportable(iter([raw]))
    assert not UNSAFE.search(written)
    assert _same(_strict(written), {"id": "e0", "data": _finite(value)})
    if not any(word in raw for word in ("NaN", "Infinity")):
        assert json.loads(written) == json.loads(raw) and (written == raw or not raw.isascii())


@pytest.mark.parametrize("flags", [[], ["--json"]], ids=["jsonl", "json"])
def test_export_writes_nan_and_infinity_as_null_and_keeps_the_raw(tmp_path: Path, flags: List[str]) -> None:
    raws = [_event(0, math.nan), _event(1, math.inf), _event(2, -math.inf), _event(3, 'NaN -Infinity \\" NaN')]
    path = _archive(tmp_path, "s1", raws)
    code, out, err = run(["export", "s1", "--db", path, *flags])
    assert code == 0, err
    events = _strict(out) if flags else [_strict(line) for line in out.splitlines()]
    assert [event["data"]["score"] for event in events] == [None, None, None, 'NaN -Infinity \\" NaN']
    with sqlite3.connect(path) as db:
        assert [row[0] for row in db.execute('SELECT raw FROM events ORDER BY "offset"')] == raws  # the audit record
    db.close()


# -- 10: numbers out of range are usage errors -----------------------------------------------------

OUT_OF_RANGE = ["99999999999999999999", "9223372036854775808", "1e999", "-1e999", "nan", "-1", "9" * 5000, "x"]


@pytest.mark.parametrize("value", [*OUT_OF_RANGE, "0"])
def test_an_out_of_range_search_limit_is_a_one_line_usage_error(tmp_path: Path, value: str) -> None:
    path = _archive(tmp_path, "s1", [_event(0, "zebra")])
    code, out, err = run(["search", "zebra", "--db", path, "--limit", value])
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("flux0-sync search: error: argument --limit:"), err


def test_the_largest_search_limit_either_backend_binds_is_taken(tmp_path: Path) -> None:
    path = _archive(tmp_path, "s1", [_event(0, "zebra")])
    code, out, err = run(["search", "zebra", "--db", path, "--limit", str(2**63 - 1)])
    assert code == 0 and "zebra" in out, err


RUN_NUMERIC = [
    "--interval",
    "--jitter",
    "--timeout",
    "--batch-size",
    "--max-db-pages",
    "--gap-patience",
    "--session-deadline",
    "--workers",
    "--max-rps",
    "--idle-max",
    "--discover-interval",
]


def test_every_numeric_option_of_the_daemon_is_checked_here() -> None:
    numeric = {action.option_strings[0] for action in _run_parser()._actions if action.type in (int, float)}
    assert numeric == set(RUN_NUMERIC)


@pytest.mark.parametrize("option", RUN_NUMERIC)
def test_an_out_of_range_daemon_option_is_a_one_line_usage_error(tmp_path: Path, option: str) -> None:
    for value in OUT_OF_RANGE:
        args = [
            "--once",
            "--server-url",
            "http://127.0.0.1:9",
            "--db",
            str(tmp_path / "a.sqlite3"),
            f"{option}={value}",
        ]
        code, out, err = run(args)
        assert (code, out) == (2, ""), (value, err)
        assert err.count("\n") == 1 and "Traceback" not in err and "unexpected" not in err, (value, err)


@pytest.mark.parametrize(
    "before, option, after",
    [
        ([], "--timeout", ["events", "list", "s1"]),
        ([], "--connect-timeout", ["events", "list", "s1"]),
        ([], "--retries", ["events", "list", "s1"]),
        (["events", "list", "s1"], "--min-offset", []),
    ],
    ids=["timeout", "connect-timeout", "retries", "min-offset"],
)
def test_an_out_of_range_flux0lite_option_is_a_one_line_usage_error(
    before: List[str], option: str, after: List[str]
) -> None:
    for value in OUT_OF_RANGE:
        out, err = io.StringIO(), io.StringIO()
        code = flux0lite_main(
            ["--server-url", "http://127.0.0.1:9", *before, f"{option}={value}", *after], stdout=out, stderr=err
        )
        assert (code, out.getvalue()) == (2, ""), (value, err.getvalue())
        assert err.getvalue().count("\n") == 1, (value, err.getvalue())


@pytest.mark.parametrize(
    "args", [["search"], ["status", "--bogus"], ["export"], ["--workers", "x"], ["status", "--db"]], ids=str
)
def test_a_usage_error_is_one_line(args: List[str]) -> None:
    code, out, err = run(args)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and " error: " in err and err.endswith(" -h)\n"), err


# -- the same rule in flux0lite's --json/--jsonl -------------------------------------------------


@pytest.mark.parametrize("flags", [["--json"], ["--jsonl"]], ids=["json", "jsonl"])
@pytest.mark.parametrize("command", [["agents", "list"], ["events", "list", "s1"]], ids=["passthrough", "typed"])
def test_flux0lite_json_output_is_strict_json_a_terminal_cannot_obey(
    fake: FakeServer, command: List[str], flags: List[str]
) -> None:
    evil = "zebra \x9b31m \x7f \u202e \x85"
    agent = {"id": "a1", "name": evil, "type": "echo", "score": math.nan, "rank": [math.inf, -math.inf]}
    event = json.loads(_event(0, evil))
    event["data"]["score"] = math.nan
    fake.on("GET", "/api/agents", json_response(200, {"data": [agent]}))
    fake.on("GET", "/api/sessions/s1/events", json_response(200, {"data": [event]}))
    out, err = io.StringIO(), io.StringIO()
    code = flux0lite_main(["--server-url", fake.url, "--retries", "0", *command, *flags], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert not UNSAFE.search(out.getvalue().replace("\n", " "))
    docs = _strict(out.getvalue()) if flags == ["--json"] else [_strict(line) for line in out.getvalue().splitlines()]
    (doc,) = docs
    if command[0] == "agents":
        assert (doc["name"], doc["score"], doc["rank"]) == (evil, None, [None, None])
    else:
        assert (doc["data"]["parts"][0]["content"], doc["data"]["score"]) == (evil, None)


# -- a stdout that cannot encode the text: escaped, not "the archive cannot be read" ---------------


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_readers_escape_what_stdout_cannot_encode(tmp_path: Path, encoding: str) -> None:
    text = "zebra h\xe9llo \u7528\u6237 \U0001f600 \x9b"
    sid = "s\xe9\u7528"
    path = _archive(tmp_path, sid, [_event(0, text)])
    for args in (["status"], ["status", "--json"], ["search", "zebra"], ["search", "zebra", "--json"]) + tuple(
        ["export", sid, *flags] for flags in ([], ["--json"])
    ):
        stream = io.TextIOWrapper(io.BytesIO(), encoding=encoding, newline="\n")
        err = io.TextIOWrapper(io.BytesIO(), encoding=encoding)
        code = main([*args, "--db", path], stdout=stream, stderr=err)
        stream.flush()
        err.flush()
        assert code == 0, (args, cast(io.BytesIO, err.buffer).getvalue())
        written = cast(io.BytesIO, stream.buffer).getvalue().decode(encoding)
        _, utf8, _ = run([*args, "--db", path])
        if "--json" in args or args[0] == "export":
            as_json = [_strict(written)] if "--json" in args else [_strict(line) for line in written.splitlines()]
            assert as_json == ([_strict(utf8)] if "--json" in args else [_strict(line) for line in utf8.splitlines()])
        else:
            assert "\\u7528" in written and ("\\xe9" in written) == (encoding == "ascii"), written
    stream = io.TextIOWrapper(io.BytesIO(), encoding=encoding)
    assert main(["export", sid + "x", "--db", path], stdout=io.StringIO(), stderr=stream) == 1
    stream.flush()
    assert "is not in" in cast(io.BytesIO, stream.buffer).getvalue().decode(encoding)
