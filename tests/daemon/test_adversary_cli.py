"""Regressions for flux0-sync's command-line defects an adversary confirmed (repros in the hadv branch)."""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from flux0sync.cli import main
from flux0sync.config import ConfigError, load_config
from flux0sync.rows import RawEvent
from flux0sync.service import _JournalFormatter
from flux0sync.store import Store

SECRET = "tok-9f8e7d6c5b4a"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f"FLUX0_TOKEN={SECRET}\nFLUX0_SERVER_URL=http://127.0.0.1:8080\n", 1),  # the systemd env file
        (f"[flux0-sync]\nserver_url = http://127.0.0.1:8080\ntoken {SECRET}\n", 3),
        (f"[flux0-sync]\ntoken = {SECRET}\ntoken = {SECRET}\n", 3),
    ],
    ids=["env-file", "line-without-equals", "duplicate"],
)
def test_a_malformed_config_line_is_named_by_number_never_quoted(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "flux0-sync.ini"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config({"config_file": str(path)}, {})
    message = str(caught.value)
    assert SECRET not in message and str(path) in message and f"line {line}" in message


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_config_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    # reading a FIFO or /dev/zero would block (or eat memory) where SIGTERM cannot end it
    path = tmp_path / "flux0-sync.ini"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path(os.devnull)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config({"config_file": str(path)}, {})


EVIL = "pwn \x1b]0;owned\x07\x1b[2J\x9b31m"
EVIL_SESSION = "sess\x1b[2J01"


def run(args: List[str]) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_status_and_search_show_control_characters_from_the_server_escaped(tmp_path: Path) -> None:
    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    store.write_batch(
        EVIL_SESSION,
        [
            RawEvent.from_doc(
                {
                    "id": "e0",
                    "type": "message",
                    "source": "ai_agent\x1b[1m",
                    "offset": 0,
                    "correlation_id": "c",
                    "data": {"type": "message", "parts": [{"type": "content", "content": "refund " + EVIL}]},
                    "created_at": "2026-11-25T00:00:00Z",
                    "deleted": False,
                }
            )
        ],
    )
    store.mark_error(EVIL_SESSION, "400 Bad Request: " + EVIL)
    store.close()
    for args in (["status"], ["search", "refund"]):
        code, out, err = run([*args, "--db", db])
        assert code == 0 and "\\x1b" in out, (out, err)
        assert not any(ch in out + err for ch in "\x1b\x07\x9b"), out


def test_the_daemons_log_lines_show_control_characters_escaped() -> None:
    record = logging.LogRecord("flux0sync", logging.WARNING, __file__, 1, "%s: %s", (EVIL_SESSION, EVIL), None)
    for journal in (False, True):
        line = _JournalFormatter(journal=journal).format(record)
        assert "\\x1b" in line and not any(ch in line for ch in "\x1b\x07\x9b"), line


ODD_NUMBERS = (
    '{"id":"ev0","correlation_id":"c","type":"custom","source":"system","offset":0,'
    '"data":{"big":1e999,"precise":0.10000000000000000001,"neg":-0.0},"deleted":false,'
    '"created_at":"2024-01-01T00:00:00Z"}'
)
PRETTY = '{\n  "id": "ev1",\r\n  "type": "custom", "offset": 1, "data": {"text": "a\\nb"}\n}'


def test_export_writes_each_event_as_archived(tmp_path: Path) -> None:
    # re-serialising would turn 1e999 into Infinity (not JSON) and 0.1000...01 into 0.1
    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    store.write_batch("s", [RawEvent(json.loads(text), text) for text in (ODD_NUMBERS, PRETTY)])
    store.close()
    code, out, _ = run(["export", "s", "--db", db])
    assert code == 0
    assert out.splitlines() == [ODD_NUMBERS, PRETTY.replace("\r", " ").replace("\n", " ")]
    code, out, _ = run(["export", "s", "--db", db, "--json"])
    assert code == 0 and ODD_NUMBERS in out and PRETTY in out
    assert len(json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))) == 2


@pytest.mark.parametrize(
    ("args", "sql"),
    [
        (["status"], "UPDATE sync_state SET last_success_at = 'yesterday'"),
        (["export", "s"], "UPDATE events SET raw = 'not json'"),
        (["export", "s", "--json"], "UPDATE events SET raw = '[' || replace(hex(zeroblob(200000)), '00', '[')"),
        (["export", "s", "--json"], "UPDATE events SET raw = CAST(x'ff00fe' AS TEXT)"),
    ],
    ids=["text-timestamp", "raw-not-json", "raw-too-deep", "raw-not-utf8"],
)
def test_a_hand_edited_archive_is_one_line_and_exit_3(tmp_path: Path, args: List[str], sql: str) -> None:
    db = str(tmp_path / "a.sqlite3")
    store = Store(db)
    store.write_batch("s", [RawEvent.from_doc({"id": "e1", "offset": 0, "type": "status", "source": "system"})])
    store.mark_error("s", "boom")
    store.close()
    with sqlite3.connect(db) as con:
        con.execute(sql)
    con.close()
    code, _, err = run([*args, "--db", db])
    assert code == 3 and "unexpected" not in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize(
    ("setting", "flags"),
    [
        ("agent", {"agent_ids": ["agent\x1b[2J"]}),
        ("session", {"session_ids": ["sess\x07"]}),
        ("server-url", {"server_url": "http://127.0.0.1:0"}),
    ],
)
def test_a_setting_that_cannot_work_is_refused_naming_it(setting: str, flags: Dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=f"invalid value for {setting}") as caught:
        load_config(flags, {})
    assert "\x1b" not in str(caught.value) and "\x07" not in str(caught.value)


def test_an_unknown_log_level_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["--log-level", "BOGUS", "--once", "--db", str(tmp_path / "a.sqlite3")])
    assert code == 2 and "--log-level" in err + capsys.readouterr().err  # argparse writes to sys.stderr
    assert not (tmp_path / "a.sqlite3").exists()
