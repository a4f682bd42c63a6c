"""hadv39: shell one-liners on locked-down machines (a legacy locale, a full stderr, proxy
variables, words that hold line breaks)."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from flux0sync import cli as daemon_cli

from flux0lite.cli import main
from flux0lite.cli_args import argument_text, one_line
from tests.conftest import ROOT, subprocess_env
from tests.fakeserver import FakeFlux0

# Python under a locale that is not UTF-8: argument bytes it cannot decode become lone surrogates
LEGACY_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


def run(module: str, args: List[str], env: Dict[str, str], **options: object) -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=subprocess_env(**env),
        cwd=str(ROOT),
        stdin=subprocess.DEVNULL,
        capture_output="stderr" not in options,
        timeout=60,
        **options,  # type: ignore[arg-type]
    )


def test_argument_text_reads_back_utf8_kept_as_surrogates() -> None:
    assert argument_text("plain é") == "plain é"
    assert argument_text("t\udcc3\udcaftle") == "tïtle"  # "tïtle" as a C locale gives it
    assert argument_text("\udcff") is None  # not UTF-8: refused by both CLIs
    assert argument_text("\ud800") is None  # no byte at all
    assert one_line("a\nb\tc") == "a\\nb\\tc"


def test_text_arguments_typed_in_utf8_reach_the_server_under_a_legacy_locale(fake_flux0: FakeFlux0) -> None:
    """03: a title (or a chat message, a search word) was refused as "not valid UTF-8"."""
    agent = fake_flux0.add_agent()
    proc = run(
        "flux0lite",
        ["--server-url", fake_flux0.server.url, "sessions", "create", "--agent", agent, "--title", "tïtle", "--json"],
        LEGACY_LOCALE,
    )
    assert proc.returncode == 0, proc.stderr
    assert [s["title"] for s in fake_flux0.sessions.values()] == ["tïtle"]


def test_the_daemon_takes_a_utf8_archive_name_and_search_words_under_a_legacy_locale(
    tmp_path: Path, fake_flux0: FakeFlux0
) -> None:
    """03: --db ärchiv.sqlite3 and search héllo were refused; the archive keeps the name's bytes."""
    session = fake_flux0.add_session(fake_flux0.add_agent())
    fake_flux0.add_events(session, 2, text="héllo wörld")
    db = str(tmp_path / "ärchiv.sqlite3")
    proc = run("flux0sync", ["--once", "--db", db, "--server-url", fake_flux0.server.url], LEGACY_LOCALE)
    assert proc.returncode == 0, proc.stderr
    assert "ärchiv.sqlite3".encode() in os.listdir(bytes(tmp_path))  # the name's own bytes
    assert sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0] == 2
    found = run("flux0sync", ["search", "--db", db, "--json", "héllo"], LEGACY_LOCALE)
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)) == 2
    bad = run("flux0sync", ["search", "--db", db, os.fsdecode(b"h\xffllo")], LEGACY_LOCALE)
    assert bad.returncode == 2 and b"not valid UTF-8" in bad.stderr


@pytest.mark.parametrize(
    "module, argv",
    [
        ("flux0lite", ["agents", "list", "x\nFORGED: fine\tok"]),
        ("flux0lite", ["agents", "list", "--bogus", "x\nFORGED: fine"]),
        ("flux0sync", ["--once", "x\nFORGED: fine"]),
        ("flux0sync", ["status", "--db", "d", "x\nFORGED: fine"]),
        ("flux0sync", ["export", "--db", "ARCHIVE", "s1\nflux0-sync: FORGED\tok"]),
    ],
)
def test_no_word_typed_forges_a_line_of_stderr(module: str, argv: List[str], tmp_path: Path) -> None:
    """04, 05: an unrecognized argument, or a session id that is not in the archive, holding a
    line break printed a second stderr line of the caller's choosing."""
    db = tmp_path / "a.sqlite3"
    if "ARCHIVE" in argv:
        run("flux0sync", ["--once", "--db", str(db), "--session", "s0", "--server-url", "http://127.0.0.1:1"], {})
        assert db.exists()
    out, err = io.StringIO(), io.StringIO()
    argv = [str(db) if word == "ARCHIVE" else word for word in argv]
    if module == "flux0lite":
        code = main(argv, stdout=out, stderr=err, stdin=io.StringIO(""))
    else:
        code = daemon_cli.main(argv, stdout=out, stderr=err)
    lines = err.getvalue().splitlines()
    assert code in (1, 2) and len(lines) == 1, lines
    assert "FORGED" in lines[0] and "\t" not in lines[0]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    "module, argv, code",
    [
        ("flux0lite", ["--server-url", "http://127.0.0.1:1", "--retries", "0", "agents", "list"], 3),
        ("flux0lite", ["--server-url", "http://127.0.0.1:1", "chat", "S", ""], 2),
        ("flux0sync", ["--once", "--server-url", "ftp://x", "--db", "DB"], 2),
        ("flux0sync", ["status", "--db", "DB"], 3),
    ],
)
def test_a_full_stderr_keeps_the_documented_exit_code(module: str, argv: List[str], code: int, tmp_path: Path) -> None:
    """06: writing the message raised ENOSPC, which escaped main(): exit 1 and a traceback."""
    argv = [str(tmp_path / "a.sqlite3") if word == "DB" else word for word in argv]
    with open("/dev/full", "w") as full:
        proc = run(module, argv, {}, stderr=full, stdout=subprocess.PIPE)
    assert proc.returncode == code


def test_an_ini_file_naming_a_non_ascii_archive_works_under_a_legacy_locale(
    tmp_path: Path, fake_flux0: FakeFlux0
) -> None:
    """hadv41 04: the INI file's decoded text was handed to sqlite3 as the file name, which an
    ASCII locale cannot encode: "unexpected UnicodeEncodeError", exit 1 at every start."""
    fake_flux0.add_events(fake_flux0.add_session(fake_flux0.add_agent()), 2)
    db = tmp_path / "café.sqlite3"
    ini = tmp_path / "sync.ini"
    ini.write_text(f"[flux0-sync]\ndb = {db}\n", encoding="utf-8")
    proc = run("flux0sync", ["--once", "--config", str(ini), "--server-url", fake_flux0.server.url], LEGACY_LOCALE)
    assert proc.returncode == 0, proc.stderr
    assert sqlite3.connect(str(db)).execute("SELECT count(*) FROM events").fetchone()[0] == 2
