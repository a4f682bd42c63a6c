"""The top-level help and usage line, made from :mod:`flux0lite.cli_args` without argparse.

Importing argparse (and ``re``, which it needs) costs more than 1.7x a bare ``python -c pass``,
and printing any argparse help more than 2x, so ``python -m flux0lite -h`` prints this text
instead. It is laid out as argparse lays out help (the same help position, indents and
sections), and :func:`flux0lite.cli_args.build_parser` gives argparse this usage line and
this word wrapping, so the full parser's top-level help is the same text
(``tests/test_cli_help.py`` compares them at several widths on every supported Python).
"""

from __future__ import annotations

from .cli_args import COMMAND_METAVAR, COMMANDS, COMMON_OPTIONS, DESCRIPTION, EPILOG, PROG, TOP_OPTIONS, top_level_args

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Tuple

    from .cli_args import Arg

    # One entry of a section: indent, invocation, help (None: the invocation alone).
    Entry = Tuple[int, str, Optional[str]]

_USAGE_PREFIX = "usage: "
_INDENT = 2  # argparse's indent step
_MAX_HELP_POSITION = 24  # argparse's default


def wrap(text: str, width: int) -> "List[str]":
    """``text`` in lines of at most ``width`` characters, broken at whitespace only.

    Unlike ``textwrap`` (argparse's default) this never splits a word at a hyphen, so an option
    such as ``--connect-timeout`` is never cut in two, and a word longer than a line keeps a
    line of its own rather than being chopped.
    """
    lines: "List[str]" = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def _usage_part(arg: "Arg") -> str:
    return f"{arg.flags[0]} {arg.metavar}" if arg.takes_value else arg.flags[0]


def _usage_parts() -> "List[str]":
    """The top level's options as the usage line shows them: ``[-h]``, ``[--json | --jsonl]``."""
    parts = [f"[{_usage_part(arg)}]" for arg in top_level_args() if not any(arg in g.exclusive for g in COMMON_OPTIONS)]
    for group in COMMON_OPTIONS:
        if group.exclusive:
            parts.append("[" + " | ".join(_usage_part(arg) for arg in group.exclusive) + "]")
    return parts


def top_usage(width: int) -> str:
    """The usage line (without ``usage: ``), wrapped as argparse wraps its own."""
    optionals, positionals = _usage_parts(), [f"{COMMAND_METAVAR} ..."]
    usage = " ".join([PROG, *optionals, *positionals])
    if len(_USAGE_PREFIX) + len(usage) <= width:
        return usage

    def lines_of(parts: "Sequence[str]", indent: str, first_line_taken: int = 0) -> "List[str]":
        lines: "List[str]" = []
        line: "List[str]" = []
        line_len = (first_line_taken or len(indent)) - 1
        for part in parts:
            if line_len + 1 + len(part) > width and line:
                lines.append(indent + " ".join(line))
                line = []
                line_len = len(indent) - 1
            line.append(part)
            line_len += len(part) + 1
        if line:
            lines.append(indent + " ".join(line))
        if first_line_taken:
            lines[0] = lines[0][len(indent) :]
        return lines

    if len(_USAGE_PREFIX) + len(PROG) <= 0.75 * width:
        indent = " " * (len(_USAGE_PREFIX) + len(PROG) + 1)
        lines = lines_of([PROG, *optionals], indent, len(_USAGE_PREFIX))
        lines += lines_of(positionals, indent)
    else:  # a narrow terminal: the program name on a line of its own
        indent = " " * len(_USAGE_PREFIX)
        lines = lines_of([*optionals, *positionals], indent)
        if len(lines) > 1:
            lines = lines_of(optionals, indent) + lines_of(positionals, indent)
        lines = [PROG, *lines]
    return "\n".join(lines)


def _invocation(arg: "Arg") -> str:
    if not arg.flags[0].startswith("-"):
        return arg.metavar
    flags = ", ".join(arg.flags)
    return f"{flags} {arg.metavar}" if arg.takes_value else flags


def _entry_lines(entry: Entry, help_position: int, width: int) -> str:
    indent, invocation, help_text = entry
    if not help_text:
        return f"{' ' * indent}{invocation}\n"
    action_width = help_position - indent - 2
    help_lines = wrap(help_text, max(width - help_position, 11))
    if len(invocation) <= action_width:
        text = f"{' ' * indent}{invocation.ljust(action_width)}  {help_lines[0]}\n"
    else:
        text = f"{' ' * indent}{invocation}\n{' ' * help_position}{help_lines[0]}\n"
    return text + "".join(f"{' ' * help_position}{line}\n" for line in help_lines[1:])


def top_help(width: int) -> str:
    """``flux0lite -h`` for a terminal ``width + 2`` columns wide (argparse's margin)."""
    sections: "List[Tuple[str, List[Entry]]]" = [
        (
            "positional arguments",
            [(_INDENT, COMMAND_METAVAR, None)] + [(2 * _INDENT, c.name, c.help) for c in COMMANDS],
        )
    ]
    for group in (TOP_OPTIONS, *COMMON_OPTIONS):
        sections.append((group.title, [(_INDENT, _invocation(arg), arg.help) for arg in group.args + group.exclusive]))
    longest = max(indent + len(invocation) for _, entries in sections for indent, invocation, _ in entries)
    help_position = min(longest + 2, min(_MAX_HELP_POSITION, max(width - 20, 2 * _INDENT)))
    parts = [_USAGE_PREFIX + top_usage(width), DESCRIPTION]
    for title, entries in sections:
        parts.append(f"{title}:\n" + "".join(_entry_lines(entry, help_position, width) for entry in entries))
    parts.append(EPILOG)
    return "\n\n".join(part.strip("\n") for part in parts) + "\n"
