"""``python -m flux0lite``: the flux0 API from a shell, a script or a cron job.

Exit codes: 0 ok, 1 API or protocol error (the server said no, or said nonsense),
2 usage error, 3 connection error or timeout, 130 interrupted (Ctrl-C).

Arguments are parsed before the client is imported, and without argparse wherever
:mod:`flux0lite.cli_reader` can give argparse's answer itself (argparse alone costs about a
bare Python start-up), so usage errors, ``--version`` and the top-level ``-h``
(:mod:`flux0lite.cli_help`) stay within 2x of a bare ``python -c pass``
(``bench/cli_startup.py``). The arguments are declared once, in :mod:`flux0lite.cli_args`.
Everything this module prints passes through :class:`_Sink`:
text from the server is hostile, so control characters never reach a terminal as commands,
credentials in URLs are never echoed, and text that the output cannot encode is replaced
instead of crashing.
"""

from __future__ import annotations

import errno
import os
import sys

from ._version import __version__
from .cli_args import (
    CLI_CONNECT_TIMEOUT,
    EXIT_USAGE,
    FILE_OPTIONS,
    SECRET_OPTIONS,
    URL_OPTIONS,
    build_parser,
    one_line,
    read_text_arguments,
)
from .redaction import command_line_secrets, environment_secrets, redact, url_userinfo

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    import argparse
    import re
    from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Union

    from .cli_reader import Namespace
    from .client import Flux0
    from .models import Event, StreamEvent

    Arguments = Union[argparse.Namespace, Namespace]

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_API", "EXIT_USAGE", "EXIT_CONNECTION", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_API = 1
EXIT_CONNECTION = 3
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    pass


def _check_text_arguments(args: Arguments) -> None:
    """Command-line text the API cannot carry is a usage error, named, not a crash later; text
    an ASCII locale kept as bytes is read as UTF-8 (see cli_args.read_text_arguments)."""
    bad = read_text_arguments(args, FILE_OPTIONS)
    if bad is not None:
        raise _UsageError(f"argument {bad.upper()} is not valid UTF-8 text")


def _check_token(token: str, source: str) -> str:
    # A bearer token is visible ASCII (RFC 6750 b64token); anything else cannot go in a header.
    if not token or any(not "!" <= ch <= "~" for ch in token):
        raise _UsageError(f"{source} must be printable ASCII without spaces")
    return token


def _check_user(user: str) -> str:
    # Sent as a cookie value: visible ASCII without the cookie separators (RFC 6265).
    if not user or any(not "!" <= ch <= "~" or ch in ';,"\\' for ch in user):
        raise _UsageError('--user must be printable ASCII without spaces, ";", ",", \'"\' or "\\"')
    return user


def _check_server_url(url: str, source: str) -> str:
    # An international host name must be given in its xn-- form: http.client sends the host
    # as ASCII and would fail only at the first request.
    if any(not "!" <= ch <= "~" for ch in url.strip()):
        raise _UsageError(f"{source} must be printable ASCII without spaces (use xn-- for international host names)")
    import urllib.parse

    try:
        urllib.parse.urlsplit(url.strip()).port  # noqa: B018 - only to see that it parses
    except ValueError:
        raise _UsageError(f"{source} is not a valid URL (bad brackets or port)") from None
    return url


# -- output ------------------------------------------------------------------------------------

# C0 controls but newline and tab, DEL, C1 controls (8-bit CSI/OSC), and the bidirectional
# overrides that make a terminal show text in another order than it is.
# Patterns are compiled on first use (re caches them): -h and --version need none of them.
_CONTROL = "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
_SURROGATE = "[\ud800-\udfff]"
# What JSON text may hold raw but a terminal must not get: JSON already escapes C0 controls.
_JSON_UNSAFE = "[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
# A number JSON has no words for, which json reads and writes (looked for outside strings).
_NON_FINITE = r"-?Infinity|NaN"


def _visible(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible_text(text: str) -> str:
    """``text`` safe for a terminal: control characters shown as ``\\x1b``, never obeyed.

    Newlines and tabs are kept; lone surrogates (undecodable server text) become U+FFFD.
    """
    if text.isascii() and text.replace("\n", "").replace("\t", "").isprintable():
        return text  # nothing to show differently: no regex compiled for a plain message
    import re

    return re.sub(_SURROGATE, "\ufffd", re.sub(_CONTROL, _visible, text))


def _json_text(doc: "Any", *, indent: "Optional[int]", ascii_only: bool) -> str:
    """Exact JSON: characters a terminal could obey, and lone surrogates, as ``\\uXXXX``."""
    from .errors import DecodeError

    separators = (",", ": ") if indent else (",", ":")
    try:
        text = json_dumps(doc, ensure_ascii=ascii_only, indent=indent, separators=separators)
    except RecursionError as exc:
        raise DecodeError("the server's JSON is nested too deeply to print") from exc
    return printable_json(text)


def printable_json(text: str) -> str:
    """JSON ``text`` (as :mod:`json` reads and writes it) as both CLIs print it: RFC 8259 JSON
    that cannot drive a terminal, the same value but for numbers RFC 8259 has no words for.

    DEL, C1 and bidi controls and lone surrogates become ``\\uXXXX`` escapes (the same value:
    valid JSON holds them only inside strings; C0 controls JSON escapes itself). ``NaN``,
    ``Infinity`` and ``-Infinity``, which :mod:`json` reads and writes but jq, ``JSON.parse`` and
    strict readers refuse, become ``null``, as JavaScript writes them. The one rule for
    flux0lite's ``--json``/``--jsonl`` and flux0-sync's ``status --json``, ``search --json`` and
    ``export``.
    """
    import re

    if "NaN" in text or "Infinity" in text:  # maybe inside strings only: then nothing changes
        text = _non_finite_as_null(text, re.compile(_NON_FINITE))
    if text.isascii() and "\x7f" not in text:
        return text
    unsafe = re.compile(_JSON_UNSAFE)
    if not unsafe.search(text):
        return text
    # a window at a time: re.sub keeps a piece a match until it joins them (~60 bytes each:
    # half a GB for 7 million C1 controls); the pattern is one character, so windows cut nothing
    return "".join(unsafe.sub(_json_escape, text[at : at + _WINDOW]) for at in range(0, len(text), _WINDOW))


_WINDOW = 64 * 1024


def _non_finite_as_null(text: str, non_finite: "re.Pattern[str]") -> str:
    """``text`` with each NaN, Infinity and -Infinity outside its strings written as null."""
    from .jsonstream import string_end

    done: "List[str]" = []  # the pieces joined a window at a time: two a number replaced
    pieces: "List[str]" = []
    kept = pos = 0
    while pos >= 0:
        opening = text.find('"', pos)
        outside = len(text) if opening < 0 else opening
        for found in non_finite.finditer(text, pos, outside):
            pieces += (text[kept : found.start()], "null")
            kept = found.end()
            if len(pieces) > 2048:
                done.append("".join(pieces))
                pieces = []
        pos = -1 if opening < 0 else string_end(text, opening, len(text))
    if not done and not pieces:
        return text
    done += pieces
    done.append(text[kept:])
    return "".join(done)


def _json_escape(match: "re.Match[str]") -> str:
    return f"\\u{ord(match.group()):04x}"


def json_dumps(doc: "Any", **options: "Any") -> str:
    import json

    return json.dumps(doc, **options)


def _url_userinfo(url: "Optional[str]") -> "List[str]":
    """The credentials part of a server URL as typed, also as ``repr`` shows it."""
    return url_userinfo(url) if url and "@" in url else []


class _Sink:
    """A text stream as the CLI writes to it: safe text, in an encoding the stream can take.

    ``visible`` makes control characters visible (for a terminal); a ``diagnostics`` sink
    (stderr) always does, and removes URL credentials and known secrets from all it prints,
    argparse's messages included. Lone surrogates are replaced; characters the stream's
    encoding lacks (``PYTHONIOENCODING=ascii``) are written as backslash escapes instead of
    raising ``UnicodeEncodeError``.
    """

    def __init__(self, stream: "Optional[TextIO]", *, diagnostics: bool = False) -> None:
        self._stream = stream
        self.diagnostics = diagnostics
        self.visible = diagnostics or self.isatty()
        encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("_", "-")
        self.utf = encoding.startswith(("utf-8", "utf8", "utf-16", "utf-32"))
        self.secrets: "List[str]" = []

    def isatty(self) -> bool:
        try:
            return self._stream is not None and self._stream.isatty()
        except (ValueError, OSError):  # a closed stream
            return False

    def write(self, text: str) -> int:
        self._write_shown(redact(text, self.secrets) if self.diagnostics else text)
        return len(text)

    def message(self, text: str) -> None:
        """A line about what happened: one line, whatever server text it quotes (a session id,
        an error's detail), each line break or tab in it shown as ``\\n``/``\\t``; a leading
        line break (after a ``^C``) is kept."""
        if self.diagnostics:  # first: a secret is found as typed, line breaks and all
            text = redact(text, self.secrets)
        body = text.lstrip("\n")
        self._write_shown(text[: len(text) - len(body)] + one_line(body) + "\n")

    def _write_shown(self, safe: str) -> None:
        """Write text already redacted: control characters shown (on a terminal, or stderr),
        lone surrogates replaced."""
        if self.visible:
            safe = visible_text(safe)
        elif not safe.isascii():  # ASCII holds no surrogate: no regex compiled for it
            import re

            safe = re.sub(_SURROGATE, "\ufffd", safe)
        self._write(safe)

    def write_json(self, doc: "Any", *, indent: "Optional[int]" = None) -> None:
        self._write(_json_text(doc, indent=indent, ascii_only=not self.utf) + "\n")

    def _write(self, text: str) -> None:
        if self._stream is None:  # the descriptor was closed when Python started
            if self.diagnostics:
                return  # nowhere to say anything
            raise OSError(errno.EBADF, "the output stream is closed")  # main says so, exit 1
        try:
            try:
                self._stream.write(text)
            except UnicodeEncodeError:
                encoding = getattr(self._stream, "encoding", None) or "ascii"
                self._stream.write(text.encode(encoding, "backslashreplace").decode(encoding, "replace"))
        except (OSError, ValueError):  # ValueError: a closed stream
            if not self.diagnostics:
                raise  # main says so, exit 1
            # stderr full or closed: nowhere to say anything, and the exit code still tells

    def flush(self) -> None:
        if self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                if not self.diagnostics:
                    raise


def _cell(value: "Any", width: int = 60) -> str:
    text = "" if value is None else str(value)
    text = visible_text(" ".join(text.split()))  # a table is for eyes: never raw controls
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_table(headers: "Sequence[str]", rows: "Sequence[Sequence[Any]]", out: _Sink) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


def _event_summary(event: "Event") -> str:
    from .models import MessageEventData, StatusEventData, ToolCallPart, ToolEventData

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
    return _compact(data if isinstance(data, dict) else data.to_dict())


def _compact(value: "Any") -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)  # arguments streamed as string pieces
    return _json_text(value, indent=None, ascii_only=False)


def _emit(args: Arguments, out: _Sink, items: "List[Any]", single: bool, table: "Callable[[], None]") -> None:
    if args.output in ("json", "jsonl"):
        _emit_docs(args, out, [item.to_dict() for item in items], single)
    else:
        table()


def _emit_docs(args: Arguments, out: _Sink, docs: "List[Any]", single: bool) -> None:
    if args.output == "json":
        out.write_json(docs[0] if single else docs, indent=2)
    else:
        for doc in docs:
            out.write_json(doc)


def _listed_docs(payload: "Any", group: str) -> "List[Any]":
    """The objects of a ``{"data": [...]}`` list as the server sent them.

    ``--json`` and ``--jsonl`` of ``agents list``, ``sessions list`` and ``events list`` pass the
    server's objects through (unknown fields, nulls and all) without building models, which a
    shell pipeline does not need; the shape is still checked.
    """
    items = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        from .errors import ModelError

        raise ModelError(f'{group}.list: expected {{"data": [objects]}}, got {_compact(payload)[:80]}')
    return items


def _agents_table(agents: "List[Any]", out: _Sink) -> "Callable[[], None]":
    return lambda: _print_table(
        ["id", "name", "type", "created_at", "description"],
        [[a.id, a.name, a.type, a.created_at, a.description] for a in agents],
        out,
    )


def _sessions_table(sessions: "List[Any]", out: _Sink) -> "Callable[[], None]":
    return lambda: _print_table(
        ["id", "agent_id", "title", "created_at"], [[s.id, s.agent_id, s.title, s.created_at] for s in sessions], out
    )


def _stream_event_doc(event: "StreamEvent") -> "Dict[str, Any]":
    from .models import ChunkEvent, StatusEvent

    if isinstance(event, StatusEvent):
        return {"event": "status", "id": event.id, "data": event.to_dict()}
    if isinstance(event, ChunkEvent):
        return {"event": "chunk", "data": event.to_dict()}
    return event.to_dict()


# -- commands ----------------------------------------------------------------------------------


def _read_stdin(stdin: "Optional[TextIO]") -> str:
    if stdin is None:
        raise _UsageError("'-' reads the message from standard input, but it is closed")
    try:
        raw = getattr(stdin, "buffer", None)
        # Read bytes where there are bytes: the message goes out as UTF-8 whatever the locale.
        return raw.read().decode("utf-8") if raw is not None else stdin.read()
    except UnicodeDecodeError as exc:
        raise _UsageError(f"standard input is not UTF-8 text (byte {exc.start})") from None
    except (OSError, ValueError) as exc:  # a directory, a closed file
        raise _UsageError(f"cannot read standard input: {exc.strerror if isinstance(exc, OSError) else exc}") from None


def _read_message(parts: "List[str]", stdin: "Optional[TextIO]") -> str:
    import re

    message = " ".join(parts)
    if message == "-":
        message = _read_stdin(stdin)
        if message.endswith("\n"):
            message = message[:-1]
    if re.search(_SURROGATE, message):
        raise _UsageError("the message is not valid UTF-8 text")
    if not message.strip():
        raise _UsageError("the message is empty")
    return message


def _chat(client: "Flux0", args: Arguments, out: _Sink, err: _Sink, stdin: "Optional[TextIO]") -> int:
    from .models import ChunkEvent

    timeout = client.timeout  # the whole command's: chat --new spends some of it first
    if args.new:
        if not args.agent_id:
            raise _UsageError("chat --new needs --agent AGENT_ID")
        message = _read_message(args.target, stdin)
        deadline = client.timeout.deadline()  # --timeout bounds the whole command: both calls share it
        session = client.sessions.create(agent_id=args.agent_id, title=args.title)
        session_id = session.id
        if args.output == "table":
            err.message(f"session {session_id}")
        if deadline is not None:
            import time

            from .timeout import Timeout

            left = max(deadline - time.monotonic(), 0.001)  # what is left; none left fails as TotalTimeout
            timeout = Timeout(client.timeout.connect, client.timeout.read, left)
    else:
        if len(args.target) < 2 or not args.target[0]:
            raise _UsageError("chat needs SESSION_ID and MESSAGE (or --new --agent AGENT_ID MESSAGE)")
        session_id = args.target[0]
        message = _read_message(args.target[1:], stdin)
    with client.sessions.create_event(session_id, message, timeout=timeout) as stream:
        streamed: Dict[str, List[str]] = {}  # the text printed as it streamed, by message
        for event in stream:
            if args.output == "jsonl":
                out.write_json(_stream_event_doc(event))
                out.flush()
            elif args.output == "table" and isinstance(event, ChunkEvent):
                text = event.text
                if text:
                    out.write(text)
                    out.flush()
                    streamed.setdefault(event.event_id, []).append(text)
        reply = stream.assembler.reply()
    if args.output == "table":
        if streamed:
            out.write("\n")
        for event_id, doc in reply.messages.items():
            # A message that is not the text printed (an object, a list of other values, pieces
            # a later patch changed) is written as it ended, as JSON.
            shown = "".join(streamed.get(event_id, ()))
            if not (isinstance(doc, list) and all(type(piece) is str for piece in doc) and "".join(doc) == shown):
                out.write_json(doc)
    elif args.output == "json":
        out.write_json(
            {
                "session_id": session_id,
                "text": reply.text,
                "messages": reply.messages,
                "statuses": list(reply.statuses),
                "error": reply.error,
            },
            indent=2,
        )
    if reply.error is not None:
        err.message(f"flux0lite: the agent reported an error: {_json_text(reply.error, indent=None, ascii_only=False)}")
        return EXIT_API
    return EXIT_OK


def _run(client: "Flux0", args: Arguments, out: _Sink, err: _Sink, stdin: "Optional[TextIO]") -> int:
    group, action = args.group, getattr(args, "action", None)
    if group == "chat":
        return _chat(client, args, out, err, stdin)
    if group in ("agents", "sessions") and action == "list" and args.output in ("json", "jsonl"):
        params = {"agent_id": args.agent_id} if group == "sessions" and args.agent_id else None
        _emit_docs(args, out, _listed_docs(client.request("GET", f"/api/{group}", params=params), group), False)
    elif group == "agents" and action == "list":
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
    elif group == "events" and action == "list" and args.output in ("json", "jsonl"):
        # the server's objects as sent: a model writes an event's untyped data back wrapped
        from .resources import events_query

        path, params = events_query(args.session_id, args.min_offset, args.source, args.correlation_id)
        docs = _listed_docs(client.request("GET", path, params=params), "sessions.list_events")
        wanted = None if args.types is None else set(args.types)
        _emit_docs(args, out, [doc for doc in docs if wanted is None or doc.get("type") in wanted], False)
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


def _connect(args: Arguments, err: _Sink) -> "Flux0":
    """The client for these arguments; every bad value is a usage error before anything is sent."""
    from .client import Flux0, enable_debug_logging
    from .retry import Retry
    from .transport import Timeout

    server_url = args.server_url or os.environ.get("FLUX0_SERVER_URL") or None
    err.secrets += _url_userinfo(server_url)
    if server_url is not None:
        _check_server_url(server_url, "--server-url" if args.server_url else "FLUX0_SERVER_URL")
    token = args.token or os.environ.get("FLUX0_TOKEN") or None
    if token is not None:
        err.secrets.append(token)
        _check_token(token, "--token" if args.token else "FLUX0_TOKEN")
    if args.user is not None:
        _check_user(args.user)
    if _debugging(args):  # --debug or FLUX0_DEBUG: log lines (server headers!) go through err too
        import contextlib

        with contextlib.redirect_stderr(err):
            enable_debug_logging()
    if args.proxy is not None and args.no_proxy:
        raise _UsageError("give --proxy URL or --no-proxy, not both")
    if args.proxy is not None:
        err.secrets += _url_userinfo(args.proxy)
    connect = args.connect_timeout or args.timeout or CLI_CONNECT_TIMEOUT
    verbose = args.verbose or err.isatty()
    return Flux0(
        server_url,
        # --timeout bounds the whole one-shot command too, however slowly a server trickles
        timeout=Timeout(connect, args.timeout or Timeout().read, total=args.timeout),
        retry=Retry(total=args.retries) if args.retries is not None else None,
        token=token,
        user_sub=args.user,
        proxy=False if args.no_proxy else args.proxy,
        cacert=args.cacert or os.environ.get("FLUX0_CACERT") or None,
        cert=args.cert or os.environ.get("FLUX0_CERT") or None,
        key=args.key or os.environ.get("FLUX0_KEY") or None,
        on_retry=(lambda line: err.message(f"flux0lite: {line}")) if verbose else None,
    )


def _exit_code(exc: BaseException, sent: bool) -> int:
    from .errors import APIConnectionError, ConfigError

    if isinstance(exc, _UsageError) or (isinstance(exc, ConfigError) and not sent):
        return EXIT_USAGE
    if isinstance(exc, APIConnectionError):
        return EXIT_CONNECTION
    # The server said no (APIError) or said nonsense (ProtocolError); a ConfigError once the
    # request is under way came from the server too (e.g. a redirect to a URL with credentials).
    return EXIT_API


def _debugging(args: "Optional[Arguments]") -> bool:
    if args is not None and getattr(args, "debug", False):
        return True
    return os.environ.get("FLUX0_DEBUG", "") not in ("", "0", "false", "no")


def _parse(parser: argparse.ArgumentParser, arguments: "List[str]", out: _Sink, err: _Sink) -> Arguments:
    """``parse_args`` with argparse's help and messages going to our sinks.

    (``contextlib.redirect_stdout`` does the same; importing it would cost start-up time.)
    """
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        return parser.parse_args(arguments)
    finally:
        sys.stdout, sys.stderr = saved


def _answer(text: str, stream: "Any", errors: "Any", code: int) -> int:
    """Write one whole answer (--version, -h) and flush it: ``code``; 0 if the reader went away
    (``| head``); a line on ``errors`` and 1 if it cannot be written (a full disk)."""
    try:
        if stream is None:  # the descriptor was closed when Python started
            raise OSError(errno.EBADF, "the output stream is closed")
        stream.write(text)
        stream.flush()
        return code
    except BrokenPipeError:
        drop_unwritten(stream)
        return EXIT_OK
    except (OSError, ValueError) as exc:  # ValueError: a closed stream
        drop_unwritten(stream)
        try:
            if errors is not None:
                errors.write(f"flux0lite: cannot write the output: {exc}\n")
        except (OSError, ValueError):
            pass
        return EXIT_API


def drop_unwritten(stream: "Any") -> None:
    """What could not be written is dropped: the stream's descriptor goes to /dev/null, so the
    interpreter's last flush at exit finds nothing to fail on (it would print a traceback of its
    own). Both CLIs call it."""
    target = stream._stream if isinstance(stream, _Sink) else stream
    try:
        if target is not None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), target.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor (an in-memory stream), or closed
        pass


def main(
    argv: "Optional[Sequence[str]]" = None,
    *,
    stdout: "Optional[TextIO]" = None,
    stderr: "Optional[TextIO]" = None,
    stdin: "Optional[TextIO]" = None,
) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments == ["--version"]:  # the one answer that needs no parser at all (start-up time)
        return _answer(f"flux0lite {__version__}\n", stdout or sys.stdout, stderr or sys.stderr, EXIT_OK)
    out = _Sink(stdout or sys.stdout)
    err = _Sink(stderr or sys.stderr, diagnostics=True)
    if arguments in ([], ["-h"], ["--help"]):  # the top-level help, without argparse
        from .cli_args import help_width
        from .cli_help import top_help

        if arguments:
            return _answer(top_help(help_width()), out, stderr or sys.stderr, EXIT_OK)
        return _answer(top_help(help_width()), err, None, EXIT_USAGE)
    # known before any message: a usage error echoes what was typed, secrets included
    err.secrets = environment_secrets(os.environ, ("FLUX0_SERVER_URL",))
    err.secrets += command_line_secrets(arguments, SECRET_OPTIONS, URL_OPTIONS)
    inp = stdin or sys.stdin
    args: "Optional[Arguments]" = None
    client: "Optional[Flux0]" = None
    sent = False
    try:
        from .cli_reader import ArgumentsError, read_arguments  # not before: -h needs none of it

        try:
            args = read_arguments(arguments)
        except ArgumentsError as exc:  # argparse's message, without argparse
            try:
                err.message(f"{exc} (see {exc.prog} -h)")  # one line, whatever was typed
            except (AttributeError, OSError):  # a closed stderr: argparse, too, exits 2 silently
                pass
            return EXIT_USAGE
        if args is None:  # a case the reader leaves to argparse
            parser = build_parser(arguments)
            try:
                args = _parse(parser, arguments, out, err)
            except SystemExit as exc:  # argparse exits 2 on usage errors and 0 on -h/--version
                return exc.code if isinstance(exc.code, int) else EXIT_USAGE
            if not args.group:
                err.write(parser.format_help())
                return EXIT_USAGE
        _check_text_arguments(args)
        if getattr(args, "action", "") is None:  # "agents" alone: nothing to connect for
            raise _UsageError(f"missing or unknown action for {args.group!r}; see flux0lite {args.group} -h")
        client = _connect(args, err)
        sent = True
        code = _run(client, args, out, err, inp)
        out.flush()  # a full disk is found here, not at the interpreter's exit (a traceback there)
        return code
    except KeyboardInterrupt:
        err.message("\nflux0lite: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        drop_unwritten(stdout or sys.stdout)  # the reader went away (e.g. "| head"): not an error worth a traceback
        return EXIT_OK
    except Exception as exc:  # nothing may reach the user as a traceback
        from .errors import APIError, Flux0Error

        if isinstance(exc, OSError) and not isinstance(exc, Flux0Error):  # stdout: a full disk, a closed stream
            drop_unwritten(stdout or sys.stdout)
            err.message(f"flux0lite: cannot write the output: {exc}")
            return EXIT_API
        if not isinstance(exc, (_UsageError, Flux0Error)):
            err.message(
                f"flux0lite: internal error: {type(exc).__name__}: {exc} (please report it;"
                " --debug shows the traceback)"
            )
            if _debugging(args):
                import traceback

                err.write(traceback.format_exc())
            return EXIT_API
        code = _exit_code(exc, sent)
        label = "" if code != EXIT_API or isinstance(exc, APIError) else f"{type(exc).__name__}: "
        err.message(f"flux0lite: error: {label}{exc}")
        return code
    finally:
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # closing sockets must not replace the answer given above
                err.message(f"flux0lite: while closing: {type(exc).__name__}: {exc}")
