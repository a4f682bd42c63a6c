"""No message of the CLI or the daemon shows a secret typed on the command line.

A usage error echoes what was typed: ``unrecognized arguments: --token=T``, ``invalid choice:
'T'`` (the word after ``--token`` when it is given below a command that lacks it), a URL whose
password holds ``@`` or a quote. The secrets are found in the command line before parsing, so
:mod:`flux0lite.cli_reader` and argparse redact the same way.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import List, Tuple

import pytest
from flux0sync import cli as daemon_cli

from flux0lite import cli, cli_reader
from flux0lite.cli import redact
from flux0lite.errors import ConfigError
from flux0lite.proxy import parse_proxy_url
from flux0lite.redaction import command_line_secrets, environment_secrets

SECRET = "S3KRIT"

CLI_CASES = [
    ["agents", f"--token={SECRET}-tok", "list"],  # unrecognized arguments: --token=...
    ["agents", "--token", f"{SECRET}-tok", "list"],  # invalid choice: '...'
    ["events", f"--token={SECRET}-tok", "list", "S"],
    ["agents", "list", f"--tok={SECRET}", "--bogus"],  # an abbreviation argparse accepts
    ["agents", f"--tok={SECRET}", "list"],
    ["agents", f"--to={SECRET}", "list"],  # ambiguous: --token or --timeout
    ["agents", "list", "--token"],  # no value: nothing to hide, still exit 2
    ["agents", "--server-url", f"http://bob:p@SS-{SECRET}@127.0.0.1:1", "list"],  # '@' in the password
    ["agents", "--server-url", f"http://bob:p'{SECRET}@127.0.0.1:1", "list"],  # a quote in it
    ["agents", "--server-url", f"http://bob:p'\"{SECRET}@127.0.0.1:1", "list"],  # both quotes: repr escapes
    ["agents", "--server-url", f"bob:{SECRET}@127.0.0.1:1", "list"],  # no scheme
    ["agents", "--proxy", f"http://bob:{SECRET}@127.0.0.1:1", "list"],
    ["agents", "list", f"--bogus=http://bob:it's-{SECRET}@127.0.0.1:1"],  # a URL anywhere
    ["bogus", f"--token={SECRET}"],
    [f"--token={SECRET}", "bogus"],
    ["sessions", "get", f"--token={SECRET}"],  # a required argument missing
]


def run_cli(argv: List[str], monkeypatch: pytest.MonkeyPatch, *, argparse_only: bool) -> Tuple[int, str]:
    if argparse_only:
        monkeypatch.setattr(cli_reader, "read_arguments", lambda argv: None)
    monkeypatch.delenv("FLUX0_SERVER_URL", raising=False)
    monkeypatch.delenv("FLUX0_TOKEN", raising=False)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, stdout=out, stderr=err, stdin=io.StringIO(""))
    return code, err.getvalue() + out.getvalue()


@pytest.mark.parametrize("argv", CLI_CASES)
@pytest.mark.parametrize("argparse_only", [False, True], ids=["reader", "argparse"])
def test_no_usage_error_shows_a_secret(argv: List[str], argparse_only: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    code, text = run_cli(argv, monkeypatch, argparse_only=argparse_only)
    assert code == cli.EXIT_USAGE, text
    assert SECRET not in text
    assert "error" in text and "Traceback" not in text


@pytest.mark.parametrize("argv", CLI_CASES)
def test_the_reader_and_argparse_redact_the_same_way(argv: List[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if _reader_defers(argv):
        pytest.skip("argparse decides this case on this Python")
    reader = run_cli(argv, monkeypatch, argparse_only=False)
    assert run_cli(argv, monkeypatch, argparse_only=True) == reader


def _reader_defers(argv: List[str]) -> bool:
    try:
        return cli_reader.read_arguments(argv) is None
    except cli_reader.ArgumentsError:
        return False


def test_the_token_is_redacted_and_the_rest_of_the_message_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    code, text = run_cli(["agents", f"--token={SECRET}", "list"], monkeypatch, argparse_only=False)
    assert code == 2
    assert text == "flux0lite: error: unrecognized arguments: --token=*** (see flux0lite -h)\n"


@pytest.mark.parametrize(
    "text",
    [
        f"invalid choice: 'http://bob:p@SS-{SECRET}@127.0.0.1:1' (choose from 'list')",
        f"invalid choice: \"http://bob:p'{SECRET}@127.0.0.1:1\" (choose from 'list')",
        f'unrecognized arguments: --bogus=HTTPS://u:{SECRET}"<x>@h/p@q',
    ],
)
def test_redact_removes_any_url_userinfo_up_to_the_authoritys_last_at(text: str) -> None:
    shown = redact(text)
    assert SECRET not in shown and "***@" in shown


def test_url_paths_and_mail_addresses_after_a_url_stay() -> None:
    assert redact("see http://h:1/a@b and bob@example.org") == "see http://h:1/a@b and bob@example.org"


def test_command_line_secrets_spellings() -> None:
    found = command_line_secrets(
        ["--tok", "A1", "--token=B2", "--server-url=http://u:C3@h", "--proxy", "u:D4@h", "x://u:E5@h", "--token"],
        ("--token",),
        ("--server-url", "--proxy"),
    )
    for part in ("A1", "B2", "u:C3", "u:D4", "u:E5"):
        assert part in found


def run_daemon(argv: List[str]) -> Tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = daemon_cli.main(argv, stdout=out, stderr=err)
    return code, err.getvalue() + out.getvalue()


@pytest.mark.parametrize(
    "argv",
    [
        ["status", f"--token={SECRET}"],
        ["search", "x", "--tok", SECRET, "--bogus"],
        [f"--to={SECRET}", "--bogus"],
        ["--db", f"postgresql://u:p'{SECRET}@h/db", "--interval", "nope"],
        ["--server-url", f"http://bob:p@{SECRET}@127.0.0.1:1", "--once"],  # the config error
    ],
)
def test_the_daemon_shows_no_secret_either(
    argv: List[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLUX0_SYNC_DB", str(tmp_path / "a.sqlite3"))
    for name in ("FLUX0_SERVER_URL", "FLUX0_TOKEN", "FLUX0_SYNC_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    code, text = run_daemon(argv)
    captured = capsys.readouterr()  # argparse writes to sys.stderr unless told otherwise
    text += captured.out + captured.err
    assert code == 2, text
    assert SECRET not in text and "Traceback" not in text


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/mem"), reason="needs Linux /proc")
@pytest.mark.parametrize("option", ["--cacert", "--cert"])
def test_an_unreadable_tls_file_is_a_usage_error_on_both_front_ends(
    option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["agents", "list", option, "/proc/self/mem", "--server-url", "https://127.0.0.1:1", "--retries", "0"]
    code, text = run_cli(argv, monkeypatch, argparse_only=False)
    assert code == cli.EXIT_USAGE, text
    assert text.startswith("flux0lite: error: ") and "/proc/self/mem" in text and option[2:] in text
    assert "internal error" not in text
    monkeypatch.setenv("FLUX0_SYNC_DB", str(tmp_path / "a.sqlite3"))
    code, text = run_daemon(["--once", "--server-url", "https://127.0.0.1:1", option, "/proc/self/mem"])
    assert code == 2, text
    assert text.startswith("flux0-sync: configuration error: ") and "/proc/self/mem" in text


def test_the_daemon_hides_credentials_of_a_url_from_its_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a space in the password: no pattern can tell where such a URL ends in a message
    monkeypatch.setenv("FLUX0_SERVER_URL", f"http://bob:p {SECRET}@127.0.0.1:1")
    monkeypatch.setenv("FLUX0_SYNC_DB", str(tmp_path / "a.sqlite3"))
    code, text = run_daemon(["--once"])
    assert code == 2 and "configuration error" in text, text
    assert SECRET not in text


def test_a_short_secret_is_redacted_where_it_stands_alone_not_inside_words() -> None:
    # a one-letter URL user ("postgresql://u@/db") once turned "flux0-sync" into "fl***x0-sync"
    message = "flux0-sync: pip install 'flux0lite[postgres]' for postgresql://u@/db"
    assert redact(message, ["u"]) == "flux0-sync: pip install 'flux0lite[postgres]' for postgresql://***@/db"
    assert redact("unrecognized arguments: --token=T", ["T"]) == "unrecognized arguments: --token=***"
    assert redact("invalid choice: 'T'", ["T"]) == "invalid choice: '***'"
    assert redact("xs3cret-token-long!", ["s3cret-token"]) == "x***-long!"  # a long one goes anywhere


@pytest.mark.parametrize("user", ["sync", "flux0", "u", "p"])
def test_a_short_user_name_without_a_password_is_no_secret(user: str, tmp_path: Path) -> None:
    """hadv18 04: peer authentication's bare user name (postgresql://sync@/flux0) was a secret,
    replaced in every word of every message: "flux0-***: ...", "***-sync: ..."."""
    url = f"postgresql://{user}@/flux0?host={tmp_path}"
    assert command_line_secrets(["--db", url], ("--token",), ("--db",)) == []
    err = io.StringIO()
    code = daemon_cli.main(["status", "--db", url], stdout=io.StringIO(), stderr=err)
    assert code != 0 and err.getvalue().startswith("flux0-sync: ") and "***-sync" not in err.getvalue()


def test_a_password_or_a_long_user_name_standing_for_a_token_stays_secret() -> None:
    assert command_line_secrets(["--db", "postgresql://sync:s3cret@h/db"], (), ("--db",)) == ["sync:s3cret"]
    token = "ghp_0123456789abcdef"
    assert token in command_line_secrets(["--server-url", f"https://{token}@h"], (), ("--server-url",))


@pytest.mark.parametrize("variable", ["https_proxy", "HTTPS_PROXY", "all_proxy"])
@pytest.mark.parametrize("password", [f"pw[{SECRET}]", f"pw [{SECRET}", f"[{SECRET}"])
def test_no_message_quotes_a_proxy_password_from_the_environment(
    variable: str, password: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hadv39 01: urlsplit's complaint about a misplaced '[' quoted the bracketed part of the
    netloc, which was the password's, and neither CLI knew the proxy variables' credentials."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, f"http://alice:{password}@proxy.corp:3128")
    try:  # Python 3.11 and later refuse a '[' there; earlier ones read the URL as it stands
        parse_proxy_url(f"http://alice:{password}@proxy.corp:3128")
    except ConfigError as exc:
        assert SECRET not in str(exc) and "not a valid proxy URL" in str(exc)
    argv = ["--server-url", "https://127.0.0.1:1", "--retries", "0", "--connect-timeout", "0.5", "agents", "list"]
    code, text = run_cli(argv, monkeypatch, argparse_only=False)
    assert code != 0 and SECRET not in text, text
    monkeypatch.setenv("FLUX0_SYNC_DB", str(tmp_path / "a.sqlite3"))
    code, text = run_daemon(["--once", "--server-url", "https://127.0.0.1:1", "--timeout", "0.5"])
    assert code != 0 and SECRET not in text, text
    # and whatever a message quotes of such a value, the credentials are known secrets
    assert f"alice:{password}" in environment_secrets({variable: f"http://alice:{password}@proxy.corp:3128"})
