"""The command line's arguments, declared once, and the ``argparse`` parser made from them.

Three readers use the declaration: :mod:`flux0lite.cli_reader`, which parses the plain
command lines (and reports their usage errors) without importing argparse,
:func:`build_parser` (argparse, for the rest and for every help but the top level's), and
:mod:`flux0lite.cli_help`, which prints the top-level help without importing argparse (``-h``
and usage errors are then within 2x of a bare ``python -c pass``).
Nothing here imports argparse until a parser is built.
"""

from __future__ import annotations

import errno
import math
import os
import sys

from ._version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    import argparse
    from typing import Any, Callable, Collection, List, NoReturn, Optional, Sequence

    SubParsers = argparse._SubParsersAction[Any]

EXIT_USAGE = 2

PROG = "flux0lite"
# The client's DEFAULT_SERVER_URL, written out so that -h need not import the client
# (a test keeps the two equal).
DEFAULT_SERVER_URL_HINT = "http://127.0.0.1:8080"
MAX_TIMEOUT = 1_000_000.0
MAX_RETRIES = 100
# A dead or black-holed server costs at most 3 attempts x 3 s plus 1.5 s of backoff (10.5 s),
# not the library's 3 x 10 s: a person at a prompt is waiting. --connect-timeout changes it.
CLI_CONNECT_TIMEOUT = 3.0
MAX_OFFSET = 2**63 - 1


def one_line(text: str) -> str:
    """``text`` on one line of a message: each line break or tab in it (a word typed, a server's
    text quoted) shown as ``\\n``/``\\t``, so no caller can forge a line of its own."""
    return text.replace("\n", "\\n").replace("\t", "\\t")


# The options naming a file: kept as the system gave them (see argument_text)
FILE_OPTIONS = ("cacert", "cert", "key")


def argument_text(value: str) -> "Optional[str]":
    """A command-line argument (or environment value) as text, or None if its bytes are not UTF-8.

    Python keeps the bytes its locale cannot decode as lone surrogates (PEP 383): under an ASCII
    locale (``C`` or ``POSIX`` with UTF-8 mode turned off, ``PYTHONUTF8=0``) every non-ASCII
    letter typed in UTF-8. Those bytes are read back as UTF-8 here. (Under an 8-bit locale such
    as ISO-8859-1 every byte decodes, in that encoding: nothing is left to read back.)"""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(value).decode("utf-8")
    except (UnicodeError, ValueError):
        return None


def read_text_arguments(args: object, file_options: "Collection[str]") -> "Optional[str]":
    """Each text argument of ``args`` (a parsed namespace) read as :func:`argument_text` gives
    it, in place; the arguments in ``file_options`` are file names, left as the system gave them
    (``open()`` gives back the same bytes). Returns the name of an argument whose bytes are not
    UTF-8, or None."""
    for name, value in list(vars(args).items()):
        values = value if isinstance(value, list) else [value]
        read = []
        for item in values:
            if isinstance(item, str):
                text = argument_text(item)
                if text is None:
                    return name
                if name not in file_options:
                    item = text
            read.append(item)
        setattr(args, name, read if isinstance(value, list) else read[0])
    return None


# -- argument checks (the ``type=`` of an argument) ---------------------------------------------


class BadValue(Exception):
    """A command-line value an argument check refuses; the message says why.

    Not argparse's ``ArgumentTypeError``: :mod:`flux0lite.cli_reader` runs the same checks
    without importing argparse, and :func:`build_parser` gives argparse the message.
    """


def timeout_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadValue(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0 or value > MAX_TIMEOUT:
        raise BadValue(f"must be a number of seconds > 0 and <= {MAX_TIMEOUT:.0f}")
    return value


def bounded_int(low: int, high: int) -> "Callable[[str], int]":
    def parse(text: str) -> int:
        # No int() of thousands of digits: it is slow before 3.11 and a ValueError after.
        digits = text.strip()
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
            raise BadValue(f"not an integer between {low} and {high}: {text!r}")
        value = int(digits)
        if not low <= value <= high:
            raise BadValue(f"must be between {low} and {high}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def non_empty(text: str) -> str:
    if not text:
        raise BadValue("must not be empty")
    return text


# -- the declaration ---------------------------------------------------------------------------


class Arg:
    """One argument: what ``add_argument(*flags, **settings)`` is given."""

    __slots__ = ("flags", "settings")

    def __init__(self, *flags: str, **settings: "Any") -> None:
        self.flags = flags
        self.settings = settings

    @property
    def help(self) -> "Optional[str]":
        text: "Optional[str]" = self.settings.get("help")
        return text

    @property
    def takes_value(self) -> bool:
        return self.settings.get("action", "store") in ("store", "append")

    @property
    def metavar(self) -> str:
        """The value's name in help and usage, as argparse derives it."""
        name: "Optional[str]" = self.settings.get("metavar")
        if name is not None:
            return name
        if not self.flags[0].startswith("-"):
            return self.flags[0]
        dest = self.settings.get("dest") or next((f for f in self.flags if f.startswith("--")), self.flags[0])
        return str(dest).lstrip("-").replace("-", "_").upper()


class Group:
    """Options shown under one heading; ``exclusive`` ones are also mutually exclusive.

    argparse lists a group's exclusive options after its others, and the usage line shows
    every group's plain options before any group's exclusive ones (the order they are added).
    """

    __slots__ = ("args", "exclusive", "title")

    def __init__(self, title: str, args: "Sequence[Arg]", exclusive: "Sequence[Arg]" = ()) -> None:
        self.title = title
        self.args = tuple(args)
        self.exclusive = tuple(exclusive)


class Command:
    """A command (``chat``) or a command group (``agents``, whose ``actions`` are commands)."""

    __slots__ = ("actions", "args", "examples", "help", "name")

    def __init__(
        self,
        name: str,
        help: str,
        examples: "Sequence[str]",
        args: "Sequence[Arg]" = (),
        actions: "Sequence[Command]" = (),
    ) -> None:
        self.name = name
        self.help = help
        self.examples = tuple(examples)
        self.args = tuple(args)
        self.actions = tuple(actions)

    @property
    def epilog(self) -> str:
        return "examples:\n" + "".join(f"  {example}\n" for example in self.examples)


DESCRIPTION = "Talk to a flux0 agent server: agents, sessions, events and live chat."
COMMAND_METAVAR = "COMMAND"
EPILOG = (
    """\
examples:
  flux0lite agents create --name Echo --type echo
  flux0lite sessions create --agent AGENT_ID --title "support #42"
  flux0lite chat SESSION_ID "hello there"
  echo "hello from a pipe" | flux0lite chat --new --agent AGENT_ID -
  flux0lite events list SESSION_ID --type message --jsonl | jq -r .data.parts[0].content

environment: FLUX0_SERVER_URL (default %s), FLUX0_TOKEN, FLUX0_DEBUG=1,
  FLUX0_CACERT, FLUX0_CERT, FLUX0_KEY, http_proxy, https_proxy, all_proxy, no_proxy
exit codes: 0 ok, 1 API error, 2 usage error, 3 connection error or timeout, 130 interrupted
"""
    % DEFAULT_SERVER_URL_HINT
)

# The top level's own options, under the heading argparse gives its optional arguments.
TOP_OPTIONS = Group(
    "options" if sys.version_info >= (3, 10) else "optional arguments",
    [
        Arg("-h", "--help", action="help", help="show this help message and exit"),
        Arg(
            "--version",
            action="version",
            version=f"flux0lite {__version__}",
            help="show program's version number and exit",
        ),
    ],
)

# Options every command takes, before or after its name ("--json agents list" or "agents list
# --json"): real defaults at the top level, none (SUPPRESS) repeated below it.
COMMON_OPTIONS = (
    Group(
        "connection and output",
        [
            Arg("--server-url", default=None, help="flux0 server URL (env FLUX0_SERVER_URL)"),
            Arg(
                "--timeout",
                type=timeout_seconds,
                default=None,
                help="seconds for the whole command, each read and (unless --connect-timeout) each connect",
            ),
            Arg(
                "--retries",
                type=bounded_int(0, MAX_RETRIES),
                default=None,
                help=f"retries for safe requests (default 2, at most {MAX_RETRIES})",
            ),
            Arg("--token", default=None, help="bearer token (env FLUX0_TOKEN)"),
            Arg("--user", default=None, help="flux0 user (sent as the flux0_user_sub cookie)"),
            Arg("--debug", action="store_true", default=False, help="log HTTP traffic to stderr (secrets redacted)"),
            Arg(
                "--connect-timeout",
                type=timeout_seconds,
                default=None,
                help=f"seconds per connection attempt (default {CLI_CONNECT_TIMEOUT:g}, or --timeout when given)",
            ),
            Arg(
                "-v",
                "--verbose",
                action="store_true",
                default=False,
                help="say on stderr when a request is retried (always done when stderr is a terminal)",
            ),
        ],
        exclusive=[
            Arg("--json", dest="output", action="store_const", const="json", default="table", help="one JSON document"),
            Arg(
                "--jsonl",
                dest="output",
                action="store_const",
                const="jsonl",
                default="table",
                help="one JSON object per line",
            ),
        ],
    ),
    Group(
        "proxy and TLS",
        [
            Arg(
                "--proxy",
                metavar="URL",
                default=None,
                help="http://[user:password@]host:port for every request"
                " (else http_proxy/https_proxy/all_proxy/no_proxy)",
            ),
            Arg(
                "--no-proxy",
                action="store_true",
                default=False,
                help="connect directly, whatever the environment says",
            ),
            Arg(
                "--cacert",
                metavar="FILE",
                default=None,
                help="PEM CA bundle to trust instead of the system's (env FLUX0_CACERT)",
            ),
            Arg("--cert", metavar="FILE", default=None, help="client certificate, PEM (env FLUX0_CERT)"),
            Arg("--key", metavar="FILE", default=None, help="the client certificate's key, PEM (env FLUX0_KEY)"),
        ],
    ),
)

# Options whose values a message must never show (cli.py removes them from usage errors):
# the whole value, or a URL's user:password.
SECRET_OPTIONS = ("--token",)
URL_OPTIONS = ("--server-url", "--proxy")

COMMANDS = (
    Command(
        "agents",
        "list, create and show agents",
        [
            "flux0lite agents list",
            "flux0lite agents create --name Echo --type echo",
            "flux0lite agents get AGENT_ID --json",
        ],
        actions=[
            Command("list", "list agents", ["flux0lite agents list --json"]),
            Command(
                "create",
                "create an agent",
                ["flux0lite agents create --name Echo --type echo"],
                [
                    Arg("--name", required=True),
                    Arg("--type", required=True, help="agent runner type, e.g. echo"),
                    Arg("--description"),
                ],
            ),
            Command(
                "get",
                "show one agent",
                ["flux0lite agents get AGENT_ID"],
                [Arg("agent_id", metavar="AGENT_ID", type=non_empty)],
            ),
        ],
    ),
    Command(
        "sessions",
        "list, create and show sessions",
        [
            "flux0lite sessions list --agent AGENT_ID",
            "flux0lite sessions create --agent AGENT_ID --title demo",
            "flux0lite sessions get SESSION_ID",
        ],
        actions=[
            Command(
                "list",
                "list your sessions",
                ["flux0lite sessions list --agent AGENT_ID"],
                [Arg("--agent", dest="agent_id", type=non_empty, help="only sessions of this agent")],
            ),
            Command(
                "create",
                "create a session",
                ["flux0lite sessions create --agent AGENT_ID --title demo"],
                [
                    Arg("--agent", dest="agent_id", required=True, type=non_empty),
                    Arg("--title"),
                    Arg("--id", dest="session_id", help="choose the session id yourself"),
                    Arg("--greeting", action="store_true", help="let the agent greet first"),
                ],
            ),
            Command(
                "get",
                "show one session",
                ["flux0lite sessions get SESSION_ID"],
                [Arg("session_id", metavar="SESSION_ID", type=non_empty)],
            ),
        ],
    ),
    Command(
        "events",
        "list a session's stored events",
        [
            "flux0lite events list SESSION_ID --jsonl",
            "flux0lite events list SESSION_ID --min-offset 10 --type message",
        ],
        actions=[
            Command(
                "list",
                "list a session's events in offset order",
                [
                    "flux0lite events list SESSION_ID --min-offset 10 --jsonl",
                    "flux0lite events list SESSION_ID --type message --source ai_agent",
                ],
                [
                    Arg("session_id", metavar="SESSION_ID", type=non_empty),
                    Arg("--min-offset", type=bounded_int(0, MAX_OFFSET)),
                    Arg("--source", help="user, ai_agent or system"),
                    Arg("--type", dest="types", action="append", help="message, tool, status or custom (repeatable)"),
                    Arg("--correlation-id"),
                ],
            ),
        ],
    ),
    Command(
        "chat",
        "send a message and stream the reply as it arrives",
        [
            'flux0lite chat SESSION_ID "what is the weather?"',
            "flux0lite chat --new --agent AGENT_ID hello",
            "cat question.txt | flux0lite chat SESSION_ID -",
            "flux0lite chat SESSION_ID hi --jsonl     # raw stream events",
        ],
        [
            Arg(
                "target",
                nargs="+",
                metavar="ARG",
                help="SESSION_ID MESSAGE, or just MESSAGE with --new; '-' reads stdin",
            ),
            Arg("--new", action="store_true", help="create a new session first (needs --agent)"),
            Arg("--agent", dest="agent_id", type=non_empty, help="agent for --new"),
            Arg("--title", help="title for --new"),
        ],
    ),
)


def top_level_args() -> "List[Arg]":
    """The top level's options in the order argparse adds them (and the usage line shows them)."""
    ordered = list(TOP_OPTIONS.args)
    for group in COMMON_OPTIONS:
        ordered += group.args
    for group in COMMON_OPTIONS:
        ordered += group.exclusive
    return ordered


# -- the argparse parser -----------------------------------------------------------------------


def terminal_columns() -> int:
    """``shutil.get_terminal_size().columns`` without importing shutil (and bz2, lzma) for it."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0 and sys.__stdout__ is not None:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def help_width() -> int:
    """The width help is formatted to: argparse's (the terminal's, less 2)."""
    return terminal_columns() - 2


def _for_argparse(check: "Callable[[str], object]") -> "Callable[[str], object]":
    """``check`` raising what argparse reports as the argument's own message."""
    import argparse

    def convert(text: str) -> object:
        try:
            return check(text)
        except BadValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__  # argparse names the type in its messages
    return convert


def _add_args(container: "Any", args: "Sequence[Arg]", *, top: bool = True) -> None:
    import argparse

    for arg in args:
        settings = dict(arg.settings)
        if not top and "default" in settings:
            settings["default"] = argparse.SUPPRESS
        if "type" in settings:
            settings["type"] = _for_argparse(settings["type"])
        container.add_argument(*arg.flags, **settings)


def _add_common_options(parser: "argparse.ArgumentParser", *, top: bool) -> None:
    # Top-level defaults are real; repeated at subcommand level they are SUPPRESS so that
    # "flux0lite --json agents list" and "flux0lite agents list --json" both work.
    containers = []
    for group in COMMON_OPTIONS:
        container = parser.add_argument_group(group.title)
        _add_args(container, group.args, top=top)
        containers.append((container, group))
    for container, group in containers:
        if group.exclusive:
            _add_args(container.add_mutually_exclusive_group(), group.exclusive, top=top)


def build_parser(argv: "Optional[Sequence[str]]" = None) -> "argparse.ArgumentParser":
    """The parser; given ``argv``, only the commands and actions named in it are built in full.

    The others are bare help lines (all ``-h`` needs of them). A name counts wherever it appears
    in ``argv``, so a value that equals a command name costs time, not correctness. This keeps
    usage errors fast: argparse makes a formatter for every option it adds and looks up message
    translations for every parser. The top-level help and usage line are the ones
    :mod:`flux0lite.cli_help` prints, so that argparse's top-level ``-h`` is the same text.
    """
    import argparse

    from .cli_help import top_usage, wrap

    width = help_width()  # argparse makes a formatter per option: ask once

    class Formatter(argparse.RawDescriptionHelpFormatter):
        def __init__(self, prog: str) -> None:
            super().__init__(prog, width=width)

        def _split_lines(self, text: str, width: int) -> "List[str]":
            return wrap(text, width)

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> "NoReturn":
            # argparse would print the whole usage block first; and before 3.11 a broken stderr
            # would turn the usage error into a BrokenPipeError (the CLI's exit 0 for "| head")
            try:
                sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} -h)\n")
            except (AttributeError, OSError):
                pass
            sys.exit(EXIT_USAGE)

        def _print_message(self, message: str, file: "Any" = None) -> None:
            # -h: argparse drops a write that fails (a full disk) and exits 0, and writes nothing
            # to a closed stdout (None); main reports either
            if message:
                if file is None:
                    raise OSError(errno.EBADF, "the output stream is closed")
                file.write(message)

    def wanted(name: str) -> bool:
        return argv is None or name in argv

    def add_command(subs: "SubParsers", command: Command, description: str) -> "Optional[argparse.ArgumentParser]":
        if not wanted(command.name):
            subs.add_parser(command.name, help=command.help, formatter_class=Formatter, add_help=False)
            return None
        built: argparse.ArgumentParser = subs.add_parser(
            command.name,
            help=command.help,
            description=description,
            epilog=command.epilog,
            formatter_class=Formatter,
        )
        return built

    parser = Parser(
        prog=PROG,
        usage=top_usage(width),
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=Formatter,
        add_help=False,
    )
    _add_args(parser.add_argument_group(TOP_OPTIONS.title), TOP_OPTIONS.args)
    _add_common_options(parser, top=True)
    groups = parser.add_subparsers(dest="group", metavar=COMMAND_METAVAR, prog=PROG)
    for command in COMMANDS:
        if command.actions:
            sub = add_command(groups, command, command.help[0].upper() + command.help[1:] + ".")
            if sub is None:
                continue
            actions = sub.add_subparsers(dest="action", metavar="ACTION")
            for action in command.actions:
                leaf = add_command(actions, action, action.help)
                if leaf is not None:
                    _add_common_options(leaf, top=False)
                    _add_args(leaf, action.args)
        else:
            leaf = add_command(groups, command, command.help)
            if leaf is not None:
                _add_common_options(leaf, top=False)
                _add_args(leaf, command.args)
    return parser
