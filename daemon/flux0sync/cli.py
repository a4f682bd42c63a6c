"""``flux0-sync``: run the daemon, or read the archive (status, export, search).

Exit codes: 0 ok, 1 a sync failed (``--once``) or a lookup found nothing, 2 bad configuration
or usage (also: a PostgreSQL archive without the psycopg driver), 3 the archive cannot be used
(foreign, corrupt, newer, locked by another daemon); a PostgreSQL server that cannot be reached
is 1, like an unreachable flux0 server.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import re
import signal
import sqlite3
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, NoReturn, Optional, Sequence, TextIO, cast

from flux0lite import ConfigError as Flux0ConfigError
from flux0lite import Flux0Error, __version__
from flux0lite.cli import drop_unwritten, printable_json, visible_text
from flux0lite.cli_args import BadValue, argument_text, bounded_int, one_line, read_text_arguments
from flux0lite.redaction import command_line_secrets, environment_secrets, redact

from .backend import Archive, open_store
from .config import FILE_SETTINGS, ConfigError, default_db_path, load_config
from .jobs import count_events
from .jsonread import Decoder
from .service import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, StopFlag, make_client, run_daemon, store_exit_code
from .store import StoreError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    from flux0lite import Flux0

__all__ = ["main"]

_EPILOG = """\
examples:
  flux0-sync --server-url http://127.0.0.1:8080 --db archive.sqlite3      # run until stopped
  flux0-sync --once --agent AGENT_ID                                     # one pass, for cron
  flux0-sync status --db archive.sqlite3 --server                         # per-session lag
  flux0-sync export SESSION_ID --db archive.sqlite3 > session.jsonl
  flux0-sync search "refund" --db archive.sqlite3
  flux0-sync --db postgresql://flux0sync@db.example/flux0 --shard 0/4    # 1 of 4 daemons, one archive

environment: FLUX0_SERVER_URL, FLUX0_SYNC_DB, FLUX0_SYNC_INTERVAL, FLUX0_SYNC_AGENTS,
  FLUX0_SYNC_SESSIONS, FLUX0_TOKEN, FLUX0_SYNC_USERS, FLUX0_SYNC_TIMEOUT, FLUX0_SYNC_SHARD,
  FLUX0_SYNC_WORKERS, FLUX0_SYNC_MAX_RPS, FLUX0_SYNC_IDLE_MAX, FLUX0_SYNC_DISCOVER_INTERVAL,
  FLUX0_SYNC_CONFIG, ...
exit codes: 0 ok, 1 sync failed, 2 configuration error, 3 archive unusable
"""

_READ_COMMANDS = ("status", "export", "search")
# Options whose values no message may show: the whole value, or a URL's user:password.
_SECRET_OPTIONS = ("--token",)
_URL_OPTIONS = ("--server-url", "--proxy", "--db")
# SQLite's and PostgreSQL's LIMIT are 64-bit integers.
_MAX_SEARCH_LIMIT = 2**63 - 1


class _Redacting:
    """A text stream that writes ``text`` without the secrets the command line gave (argparse's
    usage errors echo what was typed), without URL credentials, and with control characters
    shown, not obeyed (a message may quote a session id or an argument): each message is one
    line, a line break or tab inside it shown as ``\\n``/``\\t``."""

    def __init__(self, stream: TextIO, secrets: Sequence[str]) -> None:
        self._stream = stream
        self._secrets = secrets

    def write(self, text: str) -> int:
        safe = redact(text, self._secrets)
        body = safe[:-1] if safe.endswith("\n") else safe
        try:
            _write_encodable(self._stream, visible_text(one_line(body) + safe[len(body) :]), json=False)
        except (OSError, ValueError):  # stderr full or closed: the exit code still tells
            pass
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as flux0lite's usage errors (argparse would print the whole usage block
        # first). A closed stderr does not turn the usage error into main's broken-pipe exit 0.
        with contextlib.suppress(OSError):
            sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} -h)\n")
        sys.exit(EXIT_CONFIG)

    def _print_message(self, message: str, file: Optional["SupportsWrite[str]"] = None) -> None:
        # -h and --version: argparse drops a write that fails (a full disk) and exits 0, and
        # writes nothing to a closed stdout (None)
        if message:
            try:
                if file is None:
                    raise OSError(errno.EBADF, "the output stream is closed")
                file.write(message)
            except OSError as exc:
                raise _OutputError(exc) from exc


class _OutputError(Exception):
    """stdout cannot take what a command writes (a full disk, a closed stream)."""


def _search_text(text: str) -> str:
    """What search looks for: words (full-text on SQLite and PostgreSQL alike); blank finds
    nothing on one and everything on the other, so it is refused on both."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the text to search for is empty")
    return text


def _search_limit(text: str) -> int:
    try:
        return bounded_int(1, _MAX_SEARCH_LIMIT)(text)
    except BadValue as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Output:
    """stdout as the readers write to it: what its encoding lacks (``PYTHONIOENCODING=ascii``,
    a Latin-1 terminal) is escaped, not a UnicodeEncodeError (which would read as a broken
    archive): JSON as JSON's ``\\uXXXX`` escapes (the same value), text as backslash escapes."""

    def __init__(self, stream: TextIO, *, json: bool) -> None:
        self._stream = stream
        self._json = json

    def write(self, text: str) -> int:
        _write_encodable(self._stream, text, json=self._json)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def _write_encodable(stream: TextIO, text: str, *, json: bool) -> None:
    try:
        stream.write(text)  # a text stream encodes the whole text before writing any of it
    except UnicodeEncodeError:
        if json:
            stream.write(_NON_ASCII.sub(_json_ascii_escape, text))
        else:
            encoding = getattr(stream, "encoding", None) or "ascii"
            stream.write(text.encode(encoding, "backslashreplace").decode(encoding, "replace"))


_NON_ASCII = re.compile("[^\x00-\x7f]")


def _json_ascii_escape(match: "re.Match[str]") -> str:
    """A character of a JSON string as JSON's ASCII escape (a surrogate pair past U+FFFF)."""
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _run_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flux0-sync",
        description="Mirror flux0 sessions into SQLite or PostgreSQL. status/export/search read the archive.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"flux0-sync {__version__}")
    parser.add_argument("--config", dest="config_file", help="INI file with a [flux0-sync] section")
    parser.add_argument("--server-url", help="flux0 server (env FLUX0_SERVER_URL)")
    parser.add_argument(
        "--db",
        dest="db_path",
        help="archive: a file (default $STATE_DIRECTORY/flux0.sqlite3) or a postgresql:// URL",
    )
    parser.add_argument("--interval", type=float, help="seconds between polls of an active session (default 10)")
    parser.add_argument("--jitter", type=float, help="random +/- fraction of the interval (default 0.1)")
    parser.add_argument("--agent", dest="agent_ids", action="append", help="only sessions of this agent (repeatable)")
    parser.add_argument("--session", dest="session_ids", action="append", help="only this session (repeatable)")
    parser.add_argument("--token", help="bearer token (env FLUX0_TOKEN)")
    parser.add_argument(
        "--user",
        dest="users",
        metavar="USER",
        action="append",
        help="flux0 user (flux0_user_sub) whose sessions to mirror (repeatable; default: no cookie)",
    )
    parser.add_argument("--timeout", type=float, help="HTTP connect/read timeout in seconds (default 30)")
    parser.add_argument("--batch-size", type=int, help="events per transaction (default 500)")
    parser.add_argument("--synchronous", help="SQLite synchronous mode: NORMAL (default), FULL or EXTRA")
    parser.add_argument("--max-db-pages", type=int, help="cap the archive size, in SQLite pages")
    parser.add_argument(
        "--gap-patience", type=float, help="seconds a hole in a session's offsets is waited for before it is passed"
    )
    parser.add_argument("--session-deadline", type=float, help="seconds one session's fetch may take (default 120)")
    parser.add_argument("--shard", help="i/N: sync only the sessions shard i of N owns (N daemons, one archive)")
    proxy = parser.add_mutually_exclusive_group()
    proxy.add_argument("--proxy", metavar="URL", help="http://[user:password@]host:port (default: http(s)_proxy)")
    proxy.add_argument(
        "--no-proxy", dest="proxy", action="store_const", const="none", help="connect directly, ignoring http(s)_proxy"
    )
    parser.add_argument("--cacert", metavar="FILE", help="PEM CA bundle to trust, not the system's (env FLUX0_CACERT)")
    parser.add_argument("--cert", metavar="FILE", help="client certificate, PEM (env FLUX0_CERT)")
    parser.add_argument("--key", metavar="FILE", help="the client certificate's key, PEM (env FLUX0_KEY)")
    parser.add_argument("--workers", type=int, help="sessions fetched at once, one connection each (default 4)")
    parser.add_argument("--max-rps", type=float, help="requests per second at most, listings too (default 20)")
    parser.add_argument("--idle-max", type=float, help="longest delay between polls of an idle session (default 3600)")
    parser.add_argument(
        "--discover-interval",
        type=float,
        help="seconds between session listings (default 60; more beyond 6,000 sessions)",
    )
    parser.add_argument("--once", action="store_true", help="one pass, then exit (0 if every session synced)")
    parser.add_argument("--no-check", action="store_true", help="skip the integrity check at start")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="DEBUG, INFO, WARNING or ERROR",
    )
    return parser


def _read_parser(command: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"flux0-sync {command}")
    parser.add_argument("--db", dest="db_path", help="archive file or postgresql:// URL (env FLUX0_SYNC_DB)")
    parser.add_argument("--json", action="store_true", help="JSON output")
    if command == "status":
        parser.add_argument("--server", action="store_true", help="also ask the server how far behind each session is")
        parser.add_argument("--server-url", help="with --server (env FLUX0_SERVER_URL)")
        parser.add_argument(
            "--session-deadline",
            help="with --server: seconds each session's count may take, else '?'"
            " (env FLUX0_SYNC_SESSION_DEADLINE, default 120)",
        )
    elif command == "export":
        parser.add_argument("session_id", metavar="SESSION_ID")
        parser.add_argument("--jsonl", action="store_true", help="one event per line (the default)")
    else:
        parser.add_argument("text", metavar="TEXT", type=_search_text)
        parser.add_argument("--limit", type=_search_limit, default=50, help="hits at most (default 50)")
    return parser


def _ago(stamp: Optional[float]) -> str:
    if stamp is None:
        return "never"
    seconds = max(0.0, time.time() - stamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _until(stamp: Optional[float]) -> str:
    if stamp is None:
        return "-"
    if not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        return "due"  # what the daemon makes of a stored time that is not a number (flux0sync.schedule)
    seconds = stamp - time.time()
    if seconds <= 0:
        return "due"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"in {seconds / size:.0f}{unit}"
    return f"in {seconds:.0f}s"


def _field(value: str) -> str:
    """A value from the server or the archive (a session id, an error) on one line of output:
    no raw controls, and no line break or tab to forge a line or a row with."""
    return visible_text(one_line(value))


def _status(store: Archive, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    rows, (agents, sessions, events), gaps = store.status_snapshot()  # one instant of the archive
    remote: Dict[str, Optional[int]] = {}
    if args.server:
        config = load_config({"server_url": args.server_url, "session_deadline": args.session_deadline}, os.environ)
        # Each session is counted as the daemon polls it: with the cookie of the user it was
        # found under ('' for none), one client per user.
        clients: Dict[Optional[str], "Flux0"] = {}
        try:
            for row in rows:
                user = row.found_under_user or None
                client = clients.get(user)
                if client is None:
                    # each count as long as a poll may take at most: an answer that never ends gives "?"
                    client = clients[user] = make_client(config, user, total=config.session_deadline)
                try:
                    remote[row.session_id] = count_events(client, row.session_id, max(0, row.last_offset + 1))
                except Flux0Error as exc:
                    err.write(f"flux0-sync: {_field(row.session_id)}: {_field(str(exc))}\n")
                    remote[row.session_id] = None
        finally:
            for client in clients.values():
                client.close()
    if args.json:
        doc = {
            "agents": agents,
            "sessions": sessions,
            "events": events,
            "per_session": [
                {**row.__dict__, **({"behind": remote.get(row.session_id)} if args.server else {})} for row in rows
            ],
            "gaps": [gap.__dict__ for gap in gaps],
        }
        out.write(_json_text(doc, indent=2) + "\n")
        return EXIT_OK
    out.write(visible_text(f"{events} events, {sessions} sessions, {agents} agents in {store.path}\n"))
    header = ["SESSION", "EVENTS", "LAST_OFFSET", "LAST_SYNC", "NEXT_POLL", "USER", "ERRORS", "GAPS"]
    header += ["BEHIND"] if args.server else []
    table: List[List[str]] = [header]
    for row in rows:
        held = f"{row.gaps_open} open, {row.gaps_skipped} passed" if row.gaps_open or row.gaps_skipped else "-"
        line = [
            row.session_id,
            str(row.events),
            str(row.last_offset),
            _ago(row.last_success_at),
            _until(row.next_poll_at),
            row.found_under_user or "-",
            str(row.errors),
            held,
        ]
        if args.server:
            behind = remote.get(row.session_id)
            line.append("?" if behind is None else str(behind))
        table.append(line)
    # ids come from the server: no raw controls, and no line break or tab to forge a row with
    table = [[_field(cell) for cell in line] for line in table]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for line in table:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() + "\n")
    for row in rows:
        if row.last_error:
            out.write(f"{_field(row.session_id)}: last error: {_field(row.last_error)}\n")
        if row.conflicts:
            out.write(
                f"{_field(row.session_id)}: {row.conflicts} events clash with stored ones"
                " (kept in the conflicts table)\n"
            )
    for gap in gaps:
        state = f"passed {_ago(gap.skipped_at)}" if gap.skipped_at is not None else "open, waiting for the server"
        out.write(f"{_field(gap.session_id)}: gap at offsets {gap.first_offset}..{gap.last_offset}: {state}\n")
    return EXIT_OK


def _read_command(command: str, argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    with contextlib.redirect_stderr(err):  # argparse writes its usage errors to sys.stderr
        args = _read_parser(command).parse_args(argv)
    read_text_arguments(args, FILE_SETTINGS)  # each is UTF-8: _undecodable_argument said so
    for value in (getattr(args, "text", None), getattr(args, "session_id", None)):
        if value is not None and "\x00" in value:
            err.write(f"flux0-sync {command}: the argument must not contain a NUL character\n")
            return EXIT_CONFIG
    db_path = args.db_path or os.environ.get("FLUX0_SYNC_DB") or default_db_path(os.environ)
    out = cast(TextIO, _Output(out, json=args.json or command == "export"))
    store = open_store(db_path, readonly=True)
    try:
        if command == "status":
            return _status(store, args, out, err)
        if command == "export":
            if not store.session_exists(args.session_id):
                err.write(f"flux0-sync: session {_field(args.session_id)} is not in {_field(db_path)}\n")
                return EXIT_FAILED
            # closed here, before the store: its read transaction ends on an open archive however
            # the export ends (a full disk, a raw that is not JSON)
            with contextlib.closing(store.iter_raw_events(args.session_id)) as stored:
                raws = _exportable(stored)
                if args.json:  # written event by event: a session is never held whole
                    separator = "[\n  "
                    for raw in raws:
                        out.write(separator + raw)
                        separator = ",\n  "
                    out.write("[]\n" if separator.startswith("[") else "\n]\n")
                else:
                    for raw in raws:  # a CR or LF in JSON text is whitespace: one line per event
                        out.write(raw.replace("\r", " ").replace("\n", " ") + "\n")
            return EXIT_OK
        found = 0  # hits are read and written one at a time: a hit's text may be 16 MiB
        with contextlib.closing(store.search(args.text, limit=args.limit)) as hits:
            for hit in hits:
                if args.json:  # what json.dumps(hits, indent=2) writes, a hit at a time
                    lines = _json_text(hit.__dict__, indent=2).replace("\n", "\n  ")
                    out.write(("[\n  " if not found else ",\n  ") + lines)
                else:
                    text = visible_text(_snippet(hit.text, 100))  # its whitespace is single spaces already
                    offset = "?" if hit.offset is None else str(hit.offset)
                    out.write(f"{_field(hit.session_id)}  {offset:>6}  {_field(hit.source[:40]):<8}  {text[:100]}\n")
                found += 1
        if args.json:
            out.write("\n]\n" if found else "[]\n")
        return EXIT_OK if found else EXIT_FAILED
    except sqlite3.Error as exc:
        raise StoreError(f"{db_path}: cannot be read: {exc}") from exc
    except (TypeError, ValueError, RecursionError) as exc:
        if isinstance(exc, Flux0Error):
            raise
        # an archive edited by hand (or by an attacker): a column of the wrong type, a raw not JSON
        message = " ".join(str(exc).split())[:200]
        raise StoreError(
            f"{db_path}: cannot be read: a value of the wrong type, or an event that is not JSON ({message})"
        ) from exc
    finally:
        store.close()


def _exportable(raws: Iterator[str]) -> Iterator[str]:
    """The stored raws, each checked to be JSON, written as RFC 8259 JSON a terminal cannot obey.

    Checked with the daemon's own decoder (what it archived, export reads): a raw that is not
    JSON is a ValueError (RecursionError), an archive edited by hand. Otherwise the raw is
    passed through as stored, never re-serialised (an integer of 5000 digits, ``1e999`` or
    ``0.1000000000000000000001`` stay as written; a value nested 100,000 deep is exported),
    printed by flux0lite's rule (:func:`flux0lite.cli.printable_json`): DEL, C1 and bidi
    controls as ``\\uXXXX``, and ``NaN``, ``Infinity``, ``-Infinity`` (which json's decoder, and
    so the daemon, accepts; the archive's ``raw`` keeps them as the server sent them) as
    ``null``, as ``status --json`` writes them.
    """
    decoder = Decoder(shallow_events=True)  # an event too costly to build is checked, not built
    for raw in raws:
        decoder.decode(raw)
        yield printable_json(raw)


def _snippet(text: str, width: int) -> str:
    """``" ".join(text.split())[:width]``, read from as little of ``text`` as that needs (a hit's
    text may be an event of 16 MiB: split whole it took over 300 MB)."""
    size = 4 * width
    while True:
        words = text[:size].split()
        if size >= len(text):
            return " ".join(words)[:width]
        if len(" ".join(words[:-1])) >= width:  # the last word may be cut: the rest are whole
            return " ".join(words[:-1])[:width]
        size *= 2


def _json_text(doc: Any, indent: int) -> str:
    """JSON for humans, written by flux0lite's rule (:func:`flux0lite.cli.printable_json`): lone
    surrogates, which UTF-8 cannot carry, escaped, and a number that is not finite (an archive
    edited by hand; PostgreSQL's double precision holds NaN) written as null: RFC 8259 has no
    NaN or Infinity."""
    return printable_json(json.dumps(doc, ensure_ascii=False, indent=indent))


def _undecodable_argument(args: Sequence[str]) -> Optional[int]:
    """The position of an argument that was not valid UTF-8 (Python keeps such bytes as surrogates)."""
    for index, arg in enumerate(args, 1):
        if argument_text(arg) is None:
            return index
    return None


def _flushed(out: TextIO, err: TextIO, code: int, failed: Optional[BaseException] = None) -> int:
    """``code`` once what was written is out (``failed``: a write that failed already): a full
    disk is one line and exit 1 here, not an error lost at the interpreter's exit."""
    try:
        if failed is not None:
            raise failed
        if out is not None:  # None: stdout was closed when Python started (a command that wrote nothing)
            out.flush()
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        drop_unwritten(out)
    except (OSError, ValueError) as exc:  # ValueError: a closed stream
        drop_unwritten(out)
        err.write(f"flux0-sync: cannot write the output: {exc}\n")
        return EXIT_FAILED
    return code


def main(
    argv: Optional[Sequence[str]] = None, *, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None
) -> int:
    """Run a command; returns the exit code. Nothing but one line of error ever reaches stderr.

    When ``argv`` is None this owns the process: the stop handlers go in first, and stop signals
    are ignored from the end until the exit, so no SIGTERM/SIGINT storm can kill it mid-way.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    secrets = command_line_secrets(args_list, _SECRET_OPTIONS, _URL_OPTIONS)
    # a configuration error quotes a bad URL as given
    secrets += environment_secrets(os.environ, ("FLUX0_SERVER_URL", "FLUX0_SYNC_DB"))
    out, err = stdout or sys.stdout, cast(TextIO, _Redacting(stderr or sys.stderr, secrets))
    stop = StopFlag.current()
    reading = bool(args_list) and args_list[0] in _READ_COMMANDS
    if reading and argv is None:
        # A reader holds nothing that needs a clean stop: Ctrl-C ends it at once (exit 130).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    previous = {} if reading else stop.install()
    try:
        bad = _undecodable_argument(args_list)
        if bad is not None:
            err.write(f"flux0-sync: argument {bad} is not valid UTF-8\n")
            return EXIT_CONFIG
        if reading:
            try:
                if out is None:  # stdout was closed when Python started
                    raise OSError(errno.EBADF, "the output stream is closed")
                return _flushed(out, err, _read_command(args_list[0], args_list[1:], out, err))
            except OSError as exc:  # a reader's only file is its output (the archive's errors are StoreError)
                return _flushed(out, err, EXIT_OK, exc)
        if args_list and args_list[0] == "run":
            args_list = args_list[1:]
        with contextlib.redirect_stderr(err):  # argparse writes its usage errors to sys.stderr
            args = _run_parser().parse_args(args_list)
        read_text_arguments(args, FILE_SETTINGS)  # each is UTF-8: _undecodable_argument said so
        flags = {
            key: getattr(args, key)
            for key in (
                "config_file",
                "server_url",
                "db_path",
                "interval",
                "jitter",
                "agent_ids",
                "session_ids",
                "token",
                "users",
                "timeout",
                "batch_size",
                "synchronous",
                "max_db_pages",
                "proxy",
                "cacert",
                "cert",
                "key",
                "gap_patience",
                "session_deadline",
                "shard",
                "workers",
                "max_rps",
                "idle_max",
                "discover_interval",
            )
        }
        config = load_config(flags, os.environ)
        return run_daemon(
            config,
            once=args.once,
            check=not args.no_check,
            flags=flags,
            env=os.environ,
            log_level=args.log_level,
            stop=stop,
        )
    except SystemExit as exc:  # argparse: -h and --version (0), a usage error (2)
        return _flushed(out, err, int(exc.code or 0))
    except (ConfigError, Flux0ConfigError) as exc:
        err.write(f"flux0-sync: configuration error: {exc}\n")
        return EXIT_CONFIG
    except StoreError as exc:
        err.write(f"flux0-sync: {exc}\n")
        return store_exit_code(exc)
    except BrokenPipeError:
        drop_unwritten(out)
        return EXIT_OK
    except _OutputError as exc:
        return _flushed(out, err, EXIT_OK, exc.__cause__)
    except Flux0Error as exc:
        err.write(f"flux0-sync: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # no traceback ever reaches a user; the type says where to look
        err.write(f"flux0-sync: unexpected {type(exc).__name__}: {' '.join(str(exc).split())}\n")
        return EXIT_FAILED
    finally:
        for sig, handler in previous.items():
            # Owning the process, we are done: ignore late signals, since interpreter shutdown
            # would otherwise put the default (killing) handlers back before the exit.
            signal.signal(sig, handler if argv is not None else signal.SIG_IGN)
