"""The command line read from :mod:`flux0lite.cli_args` without argparse, for the plain cases.

Importing argparse alone costs about as much as a bare ``python -c pass``, so a usage error
(``agents get`` without its id, ``bogus``, ``agents list --bogus``) that goes through it cannot
stay within 2x of bare Python. :func:`read_arguments` follows argparse's own algorithm for the
parsers :func:`flux0lite.cli_args.build_parser` builds (options and positionals consumed left
to right, unknown tokens collected and reported last, the first error wins) and gives the same
namespace or the same usage error. Where argparse's behaviour is intricate or differs between
Python versions it decides nothing and returns ``None``, and argparse parses as before: help
and ``--version`` anywhere but alone, ``--``, abbreviated options (``--jso``), combined short
flags, ``--flag=value`` of a flag, option-like tokens that are neither a known option nor a
plain ``--name`` nor a negative integer, and no command at all.

``tests/test_cli_reader.py`` states the contract over generated argument vectors: whenever this
reader decides, argparse (on the running Python) decides the same, namespace or message.
"""

from __future__ import annotations

import sys

from .cli_args import (
    COMMAND_METAVAR,
    COMMANDS,
    COMMON_OPTIONS,
    PROG,
    Arg,
    BadValue,
    Command,
    one_line,
    top_level_args,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

    # A token as one parser sees it: an option (and a value given with "="), an unknown
    # option ("O"), or an argument ("A").
    Token = Union[Tuple["Arg", "Optional[str]"], str]

# argparse's "invalid choice" message quotes the choices (repr) up to these versions; later
# patch releases changed the format (python/cpython#86357), so elsewhere argparse says it.
_KNOWN_CHOICE_FORMAT = sys.version_info < (3, 12) or sys.version_info[:3] in (
    (3, 12, 0), (3, 12, 1), (3, 12, 2), (3, 12, 3), (3, 12, 4), (3, 12, 5), (3, 12, 6), (3, 13, 0),
)  # fmt: skip
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_HELP = Arg("-h", "--help", action="help", help="show this help message and exit")
_SUPPRESS = object()  # argparse.SUPPRESS: the option is in the namespace only when given


class Namespace:
    """What argparse's ``Namespace`` is to the CLI: the parsed values as attributes."""

    def __init__(self, values: "Dict[str, Any]") -> None:
        self.__dict__.update(values)

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> "Any": ...

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"


class ArgumentsError(Exception):
    """A usage error, as argparse reports it: the parser's ``prog`` and the message."""

    def __init__(self, prog: str, message: str) -> None:
        message = one_line(message)  # as argparse's errors say it (cli_args.build_parser)
        super().__init__(f"{prog}: error: {message}")
        self.prog = prog
        self.message = message


class _Defer(Exception):
    """The case is argparse's to decide."""


class _Parser:
    """One of argparse's parsers, as far as reading needs it."""

    def __init__(
        self,
        prog: str,
        args: "Sequence[Arg]",
        *,
        defaults: bool = True,
        exclusive: "Sequence[Sequence[Arg]]" = (),
        commands: "Sequence[Command]" = (),
        command_dest: str = "",
        command_metavar: str = "",
    ) -> None:
        self.prog = prog
        self.args = tuple(args)  # in argparse's _actions order
        self.defaults = defaults  # False: the common options repeated below the top level
        self.exclusive = tuple(tuple(group) for group in exclusive)
        self.commands = {command.name: command for command in commands}
        self.command_dest = command_dest
        self.command_metavar = command_metavar
        self.options = {flag: arg for arg in self.args if arg.flags[0].startswith("-") for flag in arg.flags}
        self.positionals = [arg for arg in self.args if not arg.flags[0].startswith("-")]

    def default(self, arg: Arg, common: bool) -> object:
        if common and not self.defaults:
            return _SUPPRESS
        action = arg.settings.get("action", "store")
        if action in ("help", "version"):
            return _SUPPRESS
        return arg.settings.get("default", False if action == "store_true" else None)


def _dest(arg: Arg) -> str:
    dest: "Optional[str]" = arg.settings.get("dest")
    if dest is not None:
        return dest
    if not arg.flags[0].startswith("-"):
        return arg.flags[0]
    flag = next((f for f in arg.flags if f.startswith("--")), arg.flags[0])
    return flag.lstrip("-").replace("-", "_")


def _name(arg: Arg) -> str:
    """The argument as argparse names it in a message: ``--timeout``, ``-v/--verbose``, ``AGENT_ID``."""
    return "/".join(arg.flags) if arg.flags[0].startswith("-") else arg.metavar


def _common_args() -> "List[Arg]":
    ordered: "List[Arg]" = []
    for group in COMMON_OPTIONS:
        ordered += group.args
    for group in COMMON_OPTIONS:
        ordered += group.exclusive
    return ordered


def _exclusive() -> "List[Sequence[Arg]]":
    return [group.exclusive for group in COMMON_OPTIONS if group.exclusive]


def _top() -> _Parser:
    return _Parser(
        PROG,
        top_level_args(),
        exclusive=_exclusive(),
        commands=COMMANDS,
        command_dest="group",
        command_metavar=COMMAND_METAVAR,
    )


def _below(prog: str, command: Command) -> _Parser:
    if command.actions:
        return _Parser(prog, [_HELP], commands=command.actions, command_dest="action", command_metavar="ACTION")
    return _Parser(prog, [_HELP, *_common_args(), *command.args], defaults=False, exclusive=_exclusive())


def _classify(parser: _Parser, token: str) -> "Token":
    """The token as argparse's ``_parse_optional`` sees it in ``parser``, or :class:`_Defer`."""
    if not token.startswith("-") or token == "-":
        return "A"
    arg = parser.options.get(token)
    if arg is not None:
        return (arg, None)
    if token.startswith("--"):
        name, equals, value = token.partition("=")
        arg = parser.options.get(name) if equals else None
        if arg is not None:
            if arg.takes_value and value and value != "--":  # argparse before 3.11 drops a "--" value
                return (arg, value)
            raise _Defer  # a flag given a value, an empty value, or "--"
        if len(name) > 2 and set(name[2:]) <= _NAME_CHARS:
            if any(flag.startswith(name) for flag in parser.options):
                raise _Defer  # an abbreviation, or an ambiguous one
            return "A" if " " in token else "O"  # argparse's rule for an unknown option
    elif token[1:].isascii() and token[1:].isdecimal():
        return "A"  # a negative number: none of the parsers has an option that looks like one
    elif len(token) == 2 and token[1].isascii() and token[1].isalpha():
        if any(flag.startswith(token) for flag in parser.options):
            raise _Defer
        return "O"  # e.g. -v where only -h is known
    raise _Defer


def _convert(parser: _Parser, arg: Arg, text: str) -> object:
    convert = arg.settings.get("type")
    if convert is None:
        return text
    try:
        return convert(text)
    except BadValue as exc:
        raise ArgumentsError(parser.prog, f"argument {_name(arg)}: {exc}") from None


def _parse(parser: _Parser, tokens: "Sequence[str]") -> "Tuple[Dict[str, Any], List[str]]":
    """argparse's ``parse_known_args`` for ``parser``: the values and the unrecognized tokens."""
    common = set(_common_args())
    values: "Dict[str, Any]" = {}
    for arg in parser.args:
        default = parser.default(arg, arg in common)
        if default is not _SUPPRESS:
            values.setdefault(_dest(arg), default)
    if parser.commands:
        values[parser.command_dest] = None
    kinds = [_classify(parser, token) for token in tokens]  # argparse classifies all first
    seen: "Set[Arg]" = set()  # argparse's seen_actions
    extras: "List[str]" = []
    positionals = list(parser.positionals)
    index = 0
    while index < len(tokens):
        kind = kinds[index]
        if isinstance(kind, tuple):
            index = _take_option(parser, kind[0], kind[1], tokens, kinds, index, values, seen)
        elif kind == "O":
            extras.append(tokens[index])
            index += 1
        elif kind == "A" and parser.commands:
            # The sub-command takes every token after it, options included.
            name = tokens[index]
            command = parser.commands.get(name)
            if command is None:
                if not _KNOWN_CHOICE_FORMAT:
                    raise _Defer
                choices = ", ".join(repr(choice) for choice in parser.commands)
                raise ArgumentsError(
                    parser.prog,
                    f"argument {parser.command_metavar}: invalid choice: {name!r} (choose from {choices})",
                )
            values[parser.command_dest] = name
            below, unknown = _parse(_below(f"{parser.prog} {name}", command), tokens[index + 1 :])
            values.update(below)
            return values, extras + unknown
        elif kind == "A":
            if not positionals:
                extras.append(tokens[index])
                index += 1
                continue
            arg = positionals.pop(0)
            end = index + 1
            if arg.settings.get("nargs") == "+":
                while end < len(tokens) and kinds[end] == "A":
                    end += 1
                value: object = [_convert(parser, arg, token) for token in tokens[index:end]]
            else:
                value = _convert(parser, arg, tokens[index])
            values[_dest(arg)] = value
            seen.add(arg)
            index = end
    missing = [_name(arg) for arg in parser.args if arg not in seen and _required(arg)]
    if missing:
        raise ArgumentsError(parser.prog, "the following arguments are required: " + ", ".join(missing))
    return values, extras


def _required(arg: Arg) -> bool:
    return not arg.flags[0].startswith("-") or bool(arg.settings.get("required"))


def _take_option(
    parser: _Parser,
    arg: Arg,
    explicit: "Optional[str]",
    tokens: "Sequence[str]",
    kinds: "Sequence[Token]",
    index: int,
    values: "Dict[str, Any]",
    seen: "Set[Arg]",
) -> int:
    """Consume the option at ``tokens[index]`` (and its value); the index after them."""
    action = arg.settings.get("action", "store")
    if action in ("help", "version"):
        raise _Defer  # argparse prints the help or the version
    value: object
    if not arg.takes_value:
        value = True if action == "store_true" else arg.settings.get("const")
        index += 1
    elif explicit is not None:
        value = _convert(parser, arg, explicit)
        index += 1
    elif index + 1 < len(tokens) and kinds[index + 1] == "A":
        value = _convert(parser, arg, tokens[index + 1])
        index += 2
    else:
        raise ArgumentsError(parser.prog, f"argument {_name(arg)}: expected one argument")
    for group in parser.exclusive:
        if arg in group:
            for other in group:
                if other is not arg and other in seen:
                    raise ArgumentsError(
                        parser.prog, f"argument {_name(arg)}: not allowed with argument {_name(other)}"
                    )
    seen.add(arg)
    dest = _dest(arg)
    if action == "append":
        items = values.get(dest)
        if items is None or items is arg.settings.get("default"):  # never the declaration's own list
            items = values[dest] = list(items or ())
        items.append(value)
    else:
        values[dest] = value
    return index


def read_arguments(argv: "Sequence[str]") -> "Optional[Namespace]":
    """The namespace argparse would give for ``argv``, or ``None`` when argparse must decide.

    Raises :class:`ArgumentsError` for the usage error argparse would report.
    """
    try:
        values, unknown = _parse(_top(), argv)
    except _Defer:
        return None
    if values["group"] is None:
        return None  # no command: the CLI prints argparse's whole help
    if unknown:
        raise ArgumentsError(PROG, "unrecognized arguments: " + " ".join(unknown))
    return Namespace(values)
