"""The top-level help printed without argparse is the full argparse parser's help, exactly."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import List

import pytest

from flux0lite.cli import main
from flux0lite.cli_args import COMMANDS, COMMON_OPTIONS, build_parser
from flux0lite.cli_help import top_help, wrap
from tests.conftest import ROOT, subprocess_env

WIDTHS = [10, 24, 40, 45, 60, 79, 80, 100, 133, 200, 400]


@pytest.mark.parametrize("columns", WIDTHS)
def test_dash_h_is_the_full_parsers_help(monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    out, err = io.StringIO(), io.StringIO()
    assert main(["-h"], stdout=out, stderr=err) == 0
    full = build_parser().format_help()
    assert out.getvalue() == full and err.getvalue() == ""
    assert main(["--help"], stdout=(long := io.StringIO())) == 0 and long.getvalue() == full
    # argparse itself prints the same text when -h comes with other top-level arguments
    out = io.StringIO()
    assert main(["--json", "-h"], stdout=out) == 0 and out.getvalue() == full


def test_the_help_names_every_command_and_common_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = top_help(78)
    for command in COMMANDS:
        assert f"\n    {command.name} " in text and command.help in text
    for group in COMMON_OPTIONS:
        for arg in group.args + group.exclusive:
            assert arg.flags[-1] in text
    assert text.startswith("usage: flux0lite [-h] [--version]") and "[--json | --jsonl]" in text


def test_no_arguments_print_the_help_on_stderr_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out, err = io.StringIO(), io.StringIO()
    assert main([], stdout=out, stderr=err) == 2
    assert out.getvalue() == "" and err.getvalue().startswith("usage: flux0lite") and "examples:" in err.getvalue()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "one",
        "seconds for the whole command, each read and (unless --connect-timeout) each connect",
        "http://[user:password@]host:port for every request (else http_proxy/https_proxy/all_proxy/no_proxy)",
        "  spaced\tout \n words  ",
    ],
)
@pytest.mark.parametrize("width", [1, 5, 11, 20, 56])
def test_wrap_breaks_at_whitespace_only(text: str, width: int) -> None:
    lines: List[str] = wrap(text, width)
    assert " ".join(lines).split() == text.split()  # nothing lost, no word split
    for line in lines:
        assert line == line.strip() and (len(line) <= width or " " not in line)
    for first, second in zip(lines, lines[1:]):
        assert len(first) + 1 + len(second.split()[0]) > width  # filled greedily


def test_dash_h_imports_neither_argparse_nor_re() -> None:
    probe = (
        "import io, sys\n"
        "before = set(sys.modules)\n"
        "from flux0lite.cli import main\n"
        "main(['-h'], stdout=io.StringIO())\n"
        "print(sorted(m for m in set(sys.modules) - before if m in ('argparse', 're', 'gettext', 'textwrap', 'typing')))\n"
    )
    env = subprocess_env()
    env.pop("COVERAGE_PROCESS_START", None)  # coverage itself imports much of the standard library
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env, cwd=str(ROOT)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
