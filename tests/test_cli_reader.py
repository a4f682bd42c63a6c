"""The contract of :mod:`flux0lite.cli_reader`: where it decides, argparse decides the same.

For any argument vector the reader either leaves the case to argparse (``None``) or gives what
the argparse parser of :func:`flux0lite.cli_args.build_parser` gives on the running Python: the
same namespace (same names, values and order), or the same usage error (exit code 2, same
message, nothing on stdout). The vectors are drawn from the declaration's own commands, options
and values plus hostile text: control characters, lone surrogates, huge numbers, empty strings,
option look-alikes.
"""

from __future__ import annotations

import contextlib
import io
import operator
import os
import subprocess
import sys
from typing import Any, List, Optional, Tuple, Union

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flux0lite import cli, cli_reader
from flux0lite.cli_args import COMMANDS, COMMON_OPTIONS, TOP_OPTIONS, build_parser
from flux0lite.cli_reader import ArgumentsError, read_arguments
from tests.conftest import FULL_STRENGTH, ROOT, subprocess_env


def examples(full: int) -> int:
    """At full strength (the newest Python in scripts/test) all of them; a tenth elsewhere."""
    return full if FULL_STRENGTH else full // 10


# (exit code, stdout, stderr) of a usage error, or the namespace's items in order
Outcome = Union[Tuple[int, str, str], List[Tuple[str, Any]]]


def argparse_outcome(argv: List[str]) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            namespace = build_parser(argv).parse_args(argv)
        except SystemExit as exc:
            return (exc.code if isinstance(exc.code, int) else -1, out.getvalue(), err.getvalue())
    return list(vars(namespace).items())


def reader_outcome(argv: List[str]) -> Optional[Outcome]:
    try:
        namespace = read_arguments(argv)
    except ArgumentsError as exc:
        return (2, "", f"{exc} (see {exc.prog} -h)\n")
    return None if namespace is None else list(vars(namespace).items())


def _flags() -> List[str]:
    flags = [flag for arg in TOP_OPTIONS.args for flag in arg.flags]
    for group in COMMON_OPTIONS:
        flags += [flag for arg in group.args + group.exclusive for flag in arg.flags]
    for command in COMMANDS:
        for leaf in command.actions or (command,):
            flags += [flag for arg in leaf.args for flag in arg.flags if flag.startswith("-")]
    return flags


NAMES = [c.name for c in COMMANDS] + sorted({a.name for c in COMMANDS for a in c.actions})
PATHS = [[]] + [[c.name] for c in COMMANDS] + [[c.name, a.name] for c in COMMANDS for a in c.actions]
HOSTILE = [
    "", " ", "-", "--", "-1", "-0", "-1.5", "-.5", "-1e3", "-١", "0", "1", "5", "nan", "inf", "1e999", "-inf",
    "9" * 19, "9" * 20, "9" * 5000, "X", "a b", "-x y", "\x1b[31m", "\x00", "\t", "\udc80", "\ud800x",
    "--bogus", "--bogus=1", "-x", "-vv", "-vh", "-v1", "--jso", "--c", "--ti", "--h", "--help=1", "--timeout=5",
    "--timeout=", "--debug=1", "--json=1", "--name=x", "--min-offset=-1", "--type=message", "--x\udc80",
    "—json", "list-events", "AGENT_ID", "--verbose", "-v", "-h", "--help", "--version",
]  # fmt: skip
_OPTION_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789=-"
TOKENS = st.one_of(
    st.sampled_from(NAMES + _flags() + HOSTILE),
    st.text(max_size=4),
    # what st.from_regex(r"--?[a-z0-9=-]{0,8}", fullmatch=True) draws, for a third of its cost
    st.builds(operator.add, st.sampled_from(["-", "--"]), st.text(_OPTION_CHARACTERS, max_size=8)),
)


@st.composite
def argument_vectors(draw: Any) -> List[str]:
    """Tokens before, inside and after a command path, so that every parser level is reached."""
    before = draw(st.lists(TOKENS, max_size=3))
    path = draw(st.sampled_from(PATHS))
    after = draw(st.lists(TOKENS, max_size=6))
    return [*before, *path, *after]


@settings(max_examples=examples(3000), deadline=None)
@given(argument_vectors())
# hadv42 03: argparse's error now shows a typed line break as \n; the reader's did not
@example(["sessions", "list", "\n"])
@example(["agents", "list", "a\tb"])
def test_the_reader_decides_as_argparse_does(argv: List[str]) -> None:
    decided = reader_outcome(argv)
    if decided is not None:
        assert decided == argparse_outcome(argv)


COMMON_ARGS = [arg for group in COMMON_OPTIONS for arg in group.args + group.exclusive]
LEAVES = [([c.name, a.name], a) for c in COMMANDS for a in c.actions] + [
    ([c.name], c) for c in COMMANDS if not c.actions
]
VALUES = st.one_of(
    st.sampled_from(["5", "0.5", "1", "-1", "0", "x", "", "1e999", "\udc80", "a b", "-"]), st.text(max_size=3)
)


@st.composite
def mostly_valid_vectors(draw: Any) -> List[str]:
    """A command with its own options and values in any order: parsed namespaces, mostly."""
    path, leaf = draw(st.sampled_from(LEAVES))
    words: List[str] = []
    for arg in draw(st.lists(st.sampled_from(COMMON_ARGS + list(leaf.args)), max_size=6)):
        flag = draw(st.sampled_from(arg.flags))
        if not flag.startswith("-"):
            words += draw(st.lists(VALUES, min_size=1, max_size=2))
        elif arg.takes_value:
            value = draw(VALUES)
            words += draw(st.sampled_from([[flag, value], [f"{flag}={value}"]]))
        else:
            words.append(flag)
    before = [
        w for w in draw(st.lists(st.sampled_from(_flags()), max_size=2)) if w not in ("-h", "--help", "--version")
    ]
    return [*before, *path, *draw(st.permutations(words))]


@settings(max_examples=examples(1500), deadline=None)
@given(mostly_valid_vectors())
def test_the_reader_parses_as_argparse_does(argv: List[str]) -> None:
    decided = reader_outcome(argv)
    if decided is not None:
        assert decided == argparse_outcome(argv)


@settings(max_examples=examples(500), deadline=None)
@given(st.lists(TOKENS, max_size=8))
def test_the_reader_decides_as_argparse_does_on_any_tokens(argv: List[str]) -> None:
    decided = reader_outcome(argv)
    if decided is not None:
        assert decided == argparse_outcome(argv)


# The usage errors and command lines the reader must decide itself (issue 17: usage errors
# within 2x of bare Python), each compared with argparse.
DECIDED = [
    ["agents", "get"],
    ["bogus"],
    ["agents", "list", "--bogus"],
    ["sessions", "list-events", "X", "--min-offset", "-1"],
    ["events", "list", "X", "--min-offset", "-1"],
    ["events", "list", "X", "--min-offset", "99999999999999999999999"],
    ["--timeout", "nan", "agents", "list"],
    ["--retries", "101", "agents", "list"],
    ["agents", "create", "--name", "x"],
    ["agents", "get", ""],
    ["agents", "--json", "list"],
    ["agents", "list", "--json", "--jsonl"],
    ["--json", "--jsonl", "agents", "list"],
    ["agents", "list", "--timeout"],
    ["agents", "list", "--server-url", "--json"],
    ["chat", "S", "--new", "hi"],
    ["chat"],
    ["agents", "get", "A", "B"],
    ["sessions", "create", "--agent", "A", "--greeting", "--title", "t", "--id", "i", "--jsonl"],
    ["--json", "events", "list", "S", "--type", "message", "--type", "tool", "--min-offset", "3", "--source=user"],
    ["--server-url", "http://127.0.0.1:1", "--timeout", "2.5", "--retries", "0", "agents", "list", "--jsonl", "-v"],
    ["chat", "--new", "--agent", "A", "hello", "there", "--title=t"],
    ["chat", "S", "-"],
    ["agents"],
    ["https://user:secret@host/"],
    ["agents", "list", "--server-url", "http://h", "--bogus=http://u:secret@h/\x1b[2J"],
    ["chat", "S", "\x1b]0;title\x07", "--new", "\udc80"],
]


@pytest.mark.parametrize("argv", DECIDED, ids=" ".join)
def test_plain_command_lines_are_decided_without_argparse(argv: List[str]) -> None:
    decided = reader_outcome(argv)
    assert decided is not None
    assert decided == argparse_outcome(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["agents", "get", "-h"],
        ["--", "agents", "list"],
        ["agents", "list", "--jso"],
        ["--json"],
        ["agents", "list", "--server-url=--"],
    ],
)
def test_intricate_cases_are_left_to_argparse(argv: List[str]) -> None:
    assert reader_outcome(argv) is None


@pytest.mark.parametrize("argv", [argv for argv in DECIDED if isinstance(argparse_outcome(argv), tuple)], ids=" ".join)
def test_the_cli_prints_the_same_usage_error_either_way(argv: List[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> Tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return cli.main(argv, stdout=out, stderr=err, stdin=io.StringIO()), out.getvalue(), err.getvalue()

    fast = run()
    monkeypatch.setattr(cli_reader, "read_arguments", lambda argv: None)
    assert fast == run() and fast[0] == 2
    assert "secret" not in fast[2] and "\x1b" not in fast[2]  # credentials removed, controls shown


def test_a_usage_error_imports_neither_argparse_nor_the_client() -> None:
    probe = (
        "import sys\n"
        "from flux0lite.cli import main\n"
        "for argv in (['agents', 'get'], ['bogus'], ['agents', 'list', '--bogus'],"
        " ['events', 'list', 'X', '--min-offset', '-1']):\n"
        "    assert main(argv) == 2\n"
        "print(sorted(m for m in sys.modules if m in ('argparse', 'flux0lite.client', 'typing') or m.startswith('http')))\n"
    )
    # without coverage's start-up hook (scripts/test runs one Python under coverage, which
    # imports typing itself): this is about what the CLI imports
    env = subprocess_env(COVERAGE_PROCESS_START="")
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env, cwd=str(ROOT)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert proc.stderr.count("error:") == 4


@pytest.mark.parametrize("argv", [["agents", "get"], ["agents", "list", "--c"]], ids=["reader", "argparse"])
def test_a_usage_error_on_a_broken_stderr_still_exits_2(argv: List[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # writing to stderr raises BrokenPipeError
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "flux0lite", *argv],
            stdout=subprocess.DEVNULL,
            stderr=write_end,
            timeout=60,
            env=subprocess_env(),
            cwd=str(ROOT),
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 2
