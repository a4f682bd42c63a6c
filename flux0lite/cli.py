"""``python -m flux0lite``: the flux0 API from a shell, a script or a cron job.

Exit codes: 0 ok, 1 API or protocol error (the server said no, or said nonsense),
2 usage error, 3 connection error or timeout, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

from ._version import __version__
from .client import DEFAULT_SERVER_URL, Flux0, enable_debug_logging
from .errors import APIConnectionError, APIError, ConfigError, Flux0Error
from .models import (
    Agent,
    ChunkEvent,
    Event,
    MessageEventData,
    RawStreamEvent,
    Session,
    StatusEvent,
    StatusEventData,
    StreamEvent,
    ToolCallPart,
    ToolEventData,
)
from .retry import Retry
from .transport import Timeout

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_API", "EXIT_USAGE", "EXIT_CONNECTION", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_API = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_INTERRUPTED = 130

_MAIN_EXAMPLES = (
    """\
examples:
  flux0lite agents create --name Echo --type echo
  flux0lite sessions create --agent AGENT_ID --title "support #42"
  flux0lite chat SESSION_ID "hello there"
  echo "hello from a pipe" | flux0lite chat --new --agent AGENT_ID -
  flux0lite events list SESSION_ID --type message --jsonl | jq -r .data.parts[0].content

environment: FLUX0_SERVER_URL (default %s), FLUX0_TOKEN, FLUX0_DEBUG=1
exit codes: 0 ok, 1 API error, 2 usage error, 3 connection error or timeout, 130 interrupted
"""
    % DEFAULT_SERVER_URL
)


class _UsageError(Exception):
    pass


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _common_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Top-level defaults are real; repeated at subcommand level they are SUPPRESS so that
    # "flux0lite --json agents list" and "flux0lite agents list --json" both work.
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output")
    group.add_argument("--server-url", default=default(None), help="flux0 server URL (env FLUX0_SERVER_URL)")
    group.add_argument(
        "--timeout", type=_positive_float, default=default(None), help="connect and read timeout, seconds"
    )
    group.add_argument(
        "--retries", type=_non_negative_int, default=default(None), help="retries for safe requests (default 2)"
    )
    group.add_argument("--token", default=default(None), help="bearer token (env FLUX0_TOKEN)")
    group.add_argument("--user", default=default(None), help="flux0 user (sent as the flux0_user_sub cookie)")
    group.add_argument(
        "--debug", action="store_true", default=default(False), help="log HTTP traffic to stderr (secrets redacted)"
    )
    fmt = group.add_mutually_exclusive_group()
    fmt.add_argument(
        "--json", dest="output", action="store_const", const="json", default=default("table"), help="one JSON document"
    )
    fmt.add_argument(
        "--jsonl",
        dest="output",
        action="store_const",
        const="jsonl",
        default=default("table"),
        help="one JSON object per line",
    )


def _subparser(
    subs: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, help_text: str, examples: str
) -> argparse.ArgumentParser:
    parser = subs.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_options(parser, top=False)
    return parser


def _group(
    groups: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, help_text: str, examples: str
) -> "argparse._SubParsersAction[argparse.ArgumentParser]":
    parser = groups.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.add_subparsers(dest="action", metavar="ACTION")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flux0lite",
        description="Talk to a flux0 agent server: agents, sessions, events and live chat.",
        epilog=_MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"flux0lite {__version__}")
    _common_options(parser, top=True)
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")

    agent_cmds = _group(
        groups,
        "agents",
        "list, create and show agents",
        "  flux0lite agents list\n  flux0lite agents create --name Echo --type echo\n"
        "  flux0lite agents get AGENT_ID --json\n",
    )
    _subparser(agent_cmds, "list", "list agents", "  flux0lite agents list --json\n")
    create = _subparser(agent_cmds, "create", "create an agent", "  flux0lite agents create --name Echo --type echo\n")
    create.add_argument("--name", required=True)
    create.add_argument("--type", required=True, help="agent runner type, e.g. echo")
    create.add_argument("--description")
    get = _subparser(agent_cmds, "get", "show one agent", "  flux0lite agents get AGENT_ID\n")
    get.add_argument("agent_id", metavar="AGENT_ID")

    session_cmds = _group(
        groups,
        "sessions",
        "list, create and show sessions",
        "  flux0lite sessions list --agent AGENT_ID\n  flux0lite sessions create --agent AGENT_ID --title demo\n"
        "  flux0lite sessions get SESSION_ID\n",
    )
    listing = _subparser(session_cmds, "list", "list your sessions", "  flux0lite sessions list --agent AGENT_ID\n")
    listing.add_argument("--agent", dest="agent_id", help="only sessions of this agent")
    create = _subparser(
        session_cmds, "create", "create a session", "  flux0lite sessions create --agent AGENT_ID --title demo\n"
    )
    create.add_argument("--agent", dest="agent_id", required=True)
    create.add_argument("--title")
    create.add_argument("--id", dest="session_id", help="choose the session id yourself")
    create.add_argument("--greeting", action="store_true", help="let the agent greet first")
    get = _subparser(session_cmds, "get", "show one session", "  flux0lite sessions get SESSION_ID\n")
    get.add_argument("session_id", metavar="SESSION_ID")

    event_cmds = _group(
        groups,
        "events",
        "list a session's stored events",
        "  flux0lite events list SESSION_ID --jsonl\n"
        "  flux0lite events list SESSION_ID --min-offset 10 --type message\n",
    )
    listing = _subparser(
        event_cmds,
        "list",
        "list a session's events in offset order",
        "  flux0lite events list SESSION_ID --min-offset 10 --jsonl\n"
        "  flux0lite events list SESSION_ID --type message --source ai_agent\n",
    )
    listing.add_argument("session_id", metavar="SESSION_ID")
    listing.add_argument("--min-offset", type=_non_negative_int)
    listing.add_argument("--source", help="user, ai_agent or system")
    listing.add_argument("--type", dest="types", action="append", help="message, tool, status or custom (repeatable)")
    listing.add_argument("--correlation-id")

    chat = _subparser(
        groups,
        "chat",
        "send a message and stream the reply as it arrives",
        '  flux0lite chat SESSION_ID "what is the weather?"\n'
        "  flux0lite chat --new --agent AGENT_ID hello\n"
        "  cat question.txt | flux0lite chat SESSION_ID -\n"
        "  flux0lite chat SESSION_ID hi --jsonl     # raw stream events\n",
    )
    chat.add_argument(
        "target", nargs="+", metavar="ARG", help="SESSION_ID MESSAGE, or just MESSAGE with --new; '-' reads stdin"
    )
    chat.add_argument("--new", action="store_true", help="create a new session first (needs --agent)")
    chat.add_argument("--agent", dest="agent_id", help="agent for --new")
    chat.add_argument("--title", help="title for --new")
    return parser


# -- output ------------------------------------------------------------------------------------


def _print_json(doc: Any, out: TextIO) -> None:
    out.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")


def _print_jsonl(docs: Sequence[Any], out: TextIO) -> None:
    for doc in docs:
        out.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")


def _cell(value: Any, width: int = 60) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


def _event_summary(event: Event) -> str:
    if event.text:
        return event.text
    data = event.data
    if isinstance(data, StatusEventData):
        return data.status
    if isinstance(data, MessageEventData):
        calls = [p for p in data.parts if isinstance(p, ToolCallPart)]
        if calls:
            return "; ".join(f"calls {c.tool_name}({_compact(c.args)})" for c in calls)
    if isinstance(data, ToolEventData) and data.tool_calls:
        return "; ".join(f"{c.tool_name} returned {_compact(c.result)}" for c in data.tool_calls)
    return json.dumps(event.data if isinstance(event.data, dict) else event.data.to_dict(), ensure_ascii=False)


def _compact(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)  # arguments streamed as string pieces
    return json.dumps(value, ensure_ascii=False)


def _emit(args: argparse.Namespace, out: TextIO, items: List[Any], single: bool, table: Callable[[], None]) -> None:
    docs = [item.to_dict() for item in items]
    if args.output == "json":
        _print_json(docs[0] if single else docs, out)
    elif args.output == "jsonl":
        _print_jsonl(docs, out)
    else:
        table()


def _agents_table(agents: List[Agent], out: TextIO) -> Callable[[], None]:
    return lambda: _print_table(
        ["id", "name", "type", "created_at", "description"],
        [[a.id, a.name, a.type, a.created_at, a.description] for a in agents],
        out,
    )


def _sessions_table(sessions: List[Session], out: TextIO) -> Callable[[], None]:
    return lambda: _print_table(
        ["id", "agent_id", "title", "created_at"], [[s.id, s.agent_id, s.title, s.created_at] for s in sessions], out
    )


def _stream_event_doc(event: StreamEvent) -> Dict[str, Any]:
    if isinstance(event, StatusEvent):
        return {"event": "status", "id": event.id, "data": event.to_dict()}
    if isinstance(event, ChunkEvent):
        return {"event": "chunk", "data": event.to_dict()}
    assert isinstance(event, RawStreamEvent)
    return event.to_dict()


# -- commands ----------------------------------------------------------------------------------


def _read_message(parts: List[str], stdin: TextIO) -> str:
    message = " ".join(parts)
    if message == "-":
        message = stdin.read()
        if message.endswith("\n"):
            message = message[:-1]
    if not message.strip():
        raise _UsageError("the message is empty")
    return message


def _chat(client: Flux0, args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    if args.new:
        if not args.agent_id:
            raise _UsageError("chat --new needs --agent AGENT_ID")
        message = _read_message(args.target, stdin)
        session = client.sessions.create(agent_id=args.agent_id, title=args.title)
        session_id = session.id
        if args.output == "table":
            err.write(f"session {session_id}\n")
    else:
        if len(args.target) < 2:
            raise _UsageError("chat needs SESSION_ID and MESSAGE (or --new --agent AGENT_ID MESSAGE)")
        session_id = args.target[0]
        message = _read_message(args.target[1:], stdin)
    with client.sessions.create_event(session_id, message) as stream:
        wrote_text = False
        for event in stream:
            if args.output == "jsonl":
                _print_jsonl([_stream_event_doc(event)], out)
                out.flush()
            elif args.output == "table" and isinstance(event, ChunkEvent):
                text = event.text
                if text:
                    out.write(text)
                    out.flush()
                    wrote_text = True
        reply = stream.assembler.reply()
    if args.output == "table":
        if wrote_text:
            out.write("\n")
        for doc in reply.messages.values():
            if not isinstance(doc, list):
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    elif args.output == "json":
        _print_json(
            {
                "session_id": session_id,
                "text": reply.text,
                "messages": reply.messages,
                "statuses": list(reply.statuses),
                "error": reply.error,
            },
            out,
        )
    if reply.error is not None:
        err.write(f"flux0lite: the agent reported an error: {json.dumps(reply.error, ensure_ascii=False)}\n")
        return EXIT_API
    return EXIT_OK


def _run(client: Flux0, args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    group, action = args.group, getattr(args, "action", None)
    if group == "chat":
        return _chat(client, args, out, err, stdin)
    if group == "agents" and action == "list":
        agents = client.agents.list()
        _emit(args, out, agents, False, _agents_table(agents, out))
    elif group == "agents" and action == "create":
        agent = client.agents.create(name=args.name, type=args.type, description=args.description)
        _emit(args, out, [agent], True, _agents_table([agent], out))
    elif group == "agents" and action == "get":
        agent = client.agents.retrieve(args.agent_id)
        _emit(args, out, [agent], True, _agents_table([agent], out))
    elif group == "sessions" and action == "list":
        sessions = client.sessions.list(agent_id=args.agent_id)
        _emit(args, out, sessions, False, _sessions_table(sessions, out))
    elif group == "sessions" and action == "create":
        session = client.sessions.create(
            agent_id=args.agent_id, id=args.session_id, title=args.title, allow_greeting=args.greeting
        )
        _emit(args, out, [session], True, _sessions_table([session], out))
    elif group == "sessions" and action == "get":
        session = client.sessions.retrieve(args.session_id)
        _emit(args, out, [session], True, _sessions_table([session], out))
    elif group == "events" and action == "list":
        events = client.sessions.list_events(
            args.session_id,
            min_offset=args.min_offset,
            source=args.source,
            correlation_id=args.correlation_id,
            types=args.types,
        )
        _emit(
            args,
            out,
            events,
            False,
            lambda: _print_table(
                ["offset", "type", "source", "created_at", "summary"],
                [[e.offset, e.type, e.source, e.created_at, _event_summary(e)] for e in events],
                out,
            ),
        )
    else:
        raise _UsageError(f"missing or unknown action for {group!r}; see flux0lite {group} -h")
    return EXIT_OK


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, (_UsageError, ConfigError)):
        return EXIT_USAGE
    if isinstance(exc, APIConnectionError):
        return EXIT_CONNECTION
    return EXIT_API  # the server said no (APIError), or said nonsense (ProtocolError)


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    stdout: Optional[TextIO] = None,
    stderr: Optional[TextIO] = None,
    stdin: Optional[TextIO] = None,
) -> int:
    out, err, inp = stdout or sys.stdout, stderr or sys.stderr, stdin or sys.stdin
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 on -h/--version
        return int(exc.code or 0)
    if not args.group:
        parser.print_help(err)
        return EXIT_USAGE
    if args.debug:
        enable_debug_logging()
    client: Optional[Flux0] = None
    try:
        retry = Retry(total=args.retries) if args.retries is not None else None
        client = Flux0(
            args.server_url,
            timeout=Timeout(args.timeout, args.timeout) if args.timeout else Timeout(),
            retry=retry,
            token=args.token or os.environ.get("FLUX0_TOKEN") or None,
            user_sub=args.user,
        )
        return _run(client, args, out, err, inp)
    except (_UsageError, Flux0Error) as exc:
        code = _exit_code(exc)
        label = "" if code != EXIT_API or isinstance(exc, APIError) else f"{type(exc).__name__}: "
        err.write(f"flux0lite: error: {label}{exc}\n")
        return code
    except KeyboardInterrupt:
        err.write("\nflux0lite: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. "| head"): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    finally:
        if client is not None:
            client.close()
