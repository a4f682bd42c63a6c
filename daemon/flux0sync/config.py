"""Configuration: command-line flags over environment variables over an INI file over defaults."""

from __future__ import annotations

import configparser
import io
import math
import os
import stat
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Tuple

from flux0lite.cli_args import FILE_OPTIONS, argument_text
from flux0lite.timeout import MAX_SECONDS

from .schedule import IDLE_MAX
from .shard import Shard, parse_shard

__all__ = ["Config", "ConfigError", "load_config", "default_db_path", "ENV_VARS"]


class ConfigError(Exception):
    """A setting is invalid; the message names it."""


def default_db_path(env: Mapping[str, str]) -> str:
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return os.path.join(state, "flux0.sqlite3")
    try:
        return os.path.abspath("flux0-archive.sqlite3")
    except OSError:  # the working directory was deleted: the archive open reports it
        return "flux0-archive.sqlite3"


@dataclass(frozen=True)
class Config:
    server_url: Optional[str] = None
    db_path: str = "flux0-archive.sqlite3"
    interval: float = 10.0
    jitter: float = 0.1
    agent_ids: Tuple[str, ...] = ()
    session_ids: Tuple[str, ...] = ()
    token: Optional[str] = field(default=None, repr=False)
    users: Tuple[str, ...] = ()
    timeout: float = 30.0
    batch_size: int = 500
    max_backoff: float = 300.0
    synchronous: str = "NORMAL"
    max_db_pages: Optional[int] = None
    gap_patience: float = 300.0
    session_deadline: float = 120.0
    shard: Optional[Shard] = None  # None: every session; i/N: only those shard i of N owns
    workers: int = 4
    max_rps: float = 20.0
    idle_max: float = IDLE_MAX  # one hour: see flux0sync.schedule
    discover_interval: float = 60.0
    config_file: Optional[str] = None
    # how to reach the server: a proxy URL or "none" (default: the http(s)_proxy variables),
    # and PEM files for TLS (a CA bundle, a client certificate and its key)
    proxy: Optional[str] = None
    cacert: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None


# setting name -> environment variable
ENV_VARS: Dict[str, str] = {
    "server_url": "FLUX0_SERVER_URL",
    "db_path": "FLUX0_SYNC_DB",
    "interval": "FLUX0_SYNC_INTERVAL",
    "jitter": "FLUX0_SYNC_JITTER",
    "agent_ids": "FLUX0_SYNC_AGENTS",
    "session_ids": "FLUX0_SYNC_SESSIONS",
    "token": "FLUX0_TOKEN",
    "users": "FLUX0_SYNC_USERS",
    "timeout": "FLUX0_SYNC_TIMEOUT",
    "batch_size": "FLUX0_SYNC_BATCH_SIZE",
    "max_backoff": "FLUX0_SYNC_MAX_BACKOFF",
    "synchronous": "FLUX0_SYNC_SYNCHRONOUS",
    "max_db_pages": "FLUX0_SYNC_MAX_DB_PAGES",
    "cacert": "FLUX0_CACERT",
    "cert": "FLUX0_CERT",
    "key": "FLUX0_KEY",
    "gap_patience": "FLUX0_SYNC_GAP_PATIENCE",
    "session_deadline": "FLUX0_SYNC_SESSION_DEADLINE",
    "shard": "FLUX0_SYNC_SHARD",
    "workers": "FLUX0_SYNC_WORKERS",
    "max_rps": "FLUX0_SYNC_MAX_RPS",
    "idle_max": "FLUX0_SYNC_IDLE_MAX",
    "discover_interval": "FLUX0_SYNC_DISCOVER_INTERVAL",
}
# Older names, still read: one user (now a list) under its singular name.
_ENV_ALIASES = {"FLUX0_SYNC_USER": "users"}
# INI keys (section [flux0-sync]) are the setting names with "db" for db_path.
_INI_ALIASES = {"db": "db_path", "agents": "agent_ids", "sessions": "session_ids", "user": "users"}


_FLOATS = (
    "interval",
    "jitter",
    "timeout",
    "max_backoff",
    "gap_patience",
    "session_deadline",
    "max_rps",
    "idle_max",
    "discover_interval",
)
# zero would spin or give up at once
_POSITIVE = ("interval", "timeout", "max_backoff", "session_deadline", "max_rps", "idle_max", "discover_interval")
_COOKIE_UNSAFE = ';,"\\ \t\r\n\x00'
_LARGEST = 1e9  # for any number of seconds (31 years) or requests: beyond, a jittered delay can overflow
# The seconds that become a flux0lite Timeout (the requests' read timeout; status --server's bound
# on each count): at most its MAX_SECONDS (3 years), or the client would refuse them later.
_CLIENT_TIMEOUTS = ("timeout", "session_deadline")


def _setting(name: str) -> str:
    """How a user names a setting: the option and the variable."""
    option = {"db_path": "db", "users": "user", "agent_ids": "agent", "session_ids": "session"}.get(name, name)
    return f"{option.replace('_', '-')} ({ENV_VARS[name]})" if name in ENV_VARS else option


def _convert(name: str, raw: Any) -> Any:
    if raw is None:
        return None
    if isinstance(raw, str):
        # text an ASCII locale kept as bytes (a flag, a variable) is read as UTF-8; a file name
        # is used as the system gave it (see argument_text)
        text = argument_text(raw)
        if text is None or any(ch in raw for ch in "\r\n\x00"):
            hint = "; was the file saved with Windows (CRLF) line ends?" if raw.rstrip("\r") != raw else ""
            raise ConfigError(
                f"invalid value for {_setting(name)}: it contains CR, LF, NUL or bytes that are not UTF-8{hint}"
            )
        if name not in FILE_SETTINGS:
            raw = text
    try:
        if name in _FLOATS:
            value = float(raw)
            if not math.isfinite(value) or value < 0 or value > _LARGEST or (name in _POSITIVE and value <= 0):
                raise ValueError
            if name == "jitter" and value >= 1:
                raise ValueError
            if name == "max_rps" and value < 1 / _LARGEST:  # a wait between requests over 31 years
                raise ValueError
            if name in _CLIENT_TIMEOUTS and value > MAX_SECONDS:  # past what a flux0lite Timeout takes
                raise ValueError
            return value
        if name == "workers":
            number = int(raw)
            if not 1 <= number <= 16:  # the systemd unit's TasksMax holds 16 workers and the rest
                raise ValueError
            return number
        if name in ("batch_size", "max_db_pages"):
            number = int(raw)
            if number < 1 or number > 2**31:
                raise ValueError
            return number
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"invalid value for {_setting(name)}: {raw!r}") from None
    if name in ("agent_ids", "session_ids", "users"):
        if isinstance(raw, (list, tuple)):
            items = tuple(str(x) for x in raw if str(x))
        else:
            items = tuple(part.strip() for part in str(raw).replace(",", " ").split() if part.strip())
        if name == "users":
            for user in items:  # sent as a cookie value: only what a cookie can carry
                if any(ch in user for ch in _COOKIE_UNSAFE) or not user.isprintable() or not _encodable(user):
                    raise ConfigError(
                        f"invalid value for {_setting(name)}: {user!r} has a space, ';', ',', '\"', '\\'"
                        " or a control character"
                    )
            return tuple(dict.fromkeys(items))
        for item in items:  # an id goes into URLs and log lines: no control characters
            if not item.isprintable() or not _encodable(item):
                raise ConfigError(f"invalid value for {_setting(name)}: {item!r} has a control character")
        return tuple(dict.fromkeys(items))  # one listing or poll per id, however often it is given
    if name == "shard":
        try:
            return parse_shard(str(raw))
        except ValueError as exc:
            raise ConfigError(f"invalid value for {_setting(name)}: {exc}") from None
    if name == "synchronous":
        mode = str(raw).upper()
        if mode not in ("NORMAL", "FULL", "EXTRA"):
            raise ConfigError(f"invalid value for {_setting(name)}: {raw!r} (NORMAL, FULL or EXTRA)")
        return mode
    text = str(raw)
    if name == "server_url" and text:
        problem = _url_problem(text)
        if problem:
            raise ConfigError(f"invalid value for {_setting(name)}: {text!r}: {problem}")
    return text if text != "" else None


def _url_problem(url: str) -> Optional[str]:
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        return str(exc)
    if parts.scheme.lower() == "http+unix":
        return None if parts.netloc else "no socket path (http+unix://%2Frun%2Fflux0.sock)"
    if parts.scheme.lower() not in ("http", "https"):
        return "use http://, https:// or http+unix://"
    if not parts.hostname:
        return "no host"
    if parts.port == 0:
        return "port 0 cannot be connected to"
    if parts.username or parts.password:
        return "put credentials in the token, not in the URL"
    return None


# The settings naming a file or an archive: kept as the system gave them (see argument_text)
FILE_SETTINGS = frozenset({"db_path", "config_file", *FILE_OPTIONS})


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# A configuration is a few lines: a larger file (a log named by mistake, one grown full of NUL
# bytes) is refused before it is read, not parsed whole past the unit's MemoryMax at every start.
MAX_CONFIG_BYTES = 1024 * 1024


def _read_ini(path: str) -> Dict[str, Any]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        # opened without blocking and checked first: a FIFO or a device (/dev/zero) would block or
        # grow without end while the daemon's SIGTERM handler only sets a flag
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError(f"config file {path} is not a regular file")
        with open(fd, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)  # a file grown by accident is not read whole
        if len(data) > MAX_CONFIG_BYTES:
            size = f"{MAX_CONFIG_BYTES // 2**20} MiB"
            raise ConfigError(f"config file {path} is over {size}: not a flux0-sync configuration")
        # newline=None: CR, LF and CRLF line ends alike, as a file opened in text mode reads them
        parser.read_file(io.StringIO(data.decode("utf-8"), newline=None), source=path)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 (byte {exc.start})") from exc
    except configparser.ParsingError as exc:
        # the line number only: the line may be a secret (the systemd env file's FLUX0_TOKEN=...)
        line = getattr(exc, "lineno", None) or exc.errors[0][0]
        raise ConfigError(f"config file {path}: line {line} is not '[section]' or 'name = value'") from None
    except configparser.Error as exc:
        raise ConfigError(f"config file {path} is not valid INI: {' '.join(str(exc).split())}") from exc
    if not parser.has_section("flux0-sync"):
        raise ConfigError(f"config file {path} has no [flux0-sync] section")
    known = set(Config.__dataclass_fields__) - {"config_file"}
    values: Dict[str, Any] = {}
    given_as: Dict[str, str] = {}  # each setting's key in the file: its name or its alias
    for key, raw in parser.items("flux0-sync"):
        name = _INI_ALIASES.get(key, key)
        if name not in known:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        if name in given_as:  # configparser refuses a key given twice, not a setting under two keys
            raise ConfigError(f"config file {path}: {given_as[name]!r} and {key!r} both set {name}: give one")
        given_as[name] = key
        # a file name as the system names it: the file's UTF-8 bytes, as a flag would give them
        # (under an ASCII locale open() cannot take the decoded text)
        values[name] = os.fsdecode(raw.encode("utf-8")) if name in FILE_SETTINGS else raw
    return values


def load_config(flags: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    """Merge the sources; ``flags`` holds only the options given on the command line."""
    config_file = flags.get("config_file") or env.get("FLUX0_SYNC_CONFIG") or None
    merged: Dict[str, Any] = {"db_path": default_db_path(env)}
    if config_file:
        merged.update(_read_ini(config_file))
    for var, name in _ENV_ALIASES.items():
        if env.get(var):
            if env.get(ENV_VARS[name]):
                raise ConfigError(f"{var} and {ENV_VARS[name]} both set {name}: give one")
            merged[name] = env[var]
    for name, var in ENV_VARS.items():
        if env.get(var):
            merged[name] = env[var]
    merged.update({k: v for k, v in flags.items() if v is not None and k != "config_file"})
    converted = {name: _convert(name, value) for name, value in merged.items()}
    config = replace(Config(), **converted, config_file=config_file)
    if not config.db_path:
        raise ConfigError("db_path must not be empty")
    return config
