"""Server URLs: which are accepted, and how one splits into an origin and a request target.

Besides ``http://`` and ``https://``, a server listening on a unix socket is named the way
requests-unixsocket does it: ``http+unix://`` followed by the socket's path, percent-encoded
as one segment (``http+unix://%2Frun%2Fflux0.sock/api``).
"""

from __future__ import annotations

import urllib.parse
from typing import Dict, Optional, Tuple

from .errors import ConfigError
from .frozen import Frozen
from .httputil import redact_url

__all__ = ["Origin", "UNIX_SCHEME", "parse_server_url", "split_url", "join_url", "check_host"]

UNIX_SCHEME = "http+unix"
_SCHEMES = ("http", "https", UNIX_SCHEME)


class Origin(Frozen):
    """Scheme, host and port: what a pooled connection is kept for.

    For a unix socket, ``host`` is the socket's path and ``port`` is 0.
    """

    _field_names = ("scheme", "host", "port")
    __slots__ = _field_names
    scheme: str
    host: str
    port: int

    def __init__(self, scheme: str, host: str, port: int) -> None:
        self._set("scheme", scheme)
        self._set("host", host)
        self._set("port", port)

    @property
    def is_unix(self) -> bool:
        return self.scheme == UNIX_SCHEME

    @property
    def netloc(self) -> str:
        if self.is_unix:
            return urllib.parse.quote(self.host, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def url(self, target: str) -> str:
        return f"{self.scheme}://{self.netloc}{target}"


def parse_server_url(url: str) -> Tuple[Origin, str]:
    """Split a server URL into its origin and base path; http, https and http+unix are accepted."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("server URL must be a non-empty string")
    shown = redact_url(url)  # messages never show credentials
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ConfigError(f"malformed server URL {shown!r}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"unsupported URL scheme {parts.scheme or '(none)'!r} in {shown!r}: use http://, https:// or http+unix://"
        )
    if scheme == UNIX_SCHEME:
        return Origin(scheme, _socket_path(parts.netloc, shown), 0), parts.path.rstrip("/")
    if not parts.hostname:
        raise ConfigError(f"server URL has no host: {shown!r}")
    check_host(parts.hostname, f"server URL {shown!r}")
    if parts.username or parts.password:
        raise ConfigError("put credentials in token=..., not in the server URL")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid port in server URL {shown!r}") from exc
    origin = Origin(scheme, parts.hostname, port or (443 if scheme == "https" else 80))
    return origin, parts.path.rstrip("/")


def check_host(host: str, where: str) -> None:
    """A host name that can go on the wire (no spaces or controls; IDNA-encodable), else ConfigError."""
    if any(ch.isspace() or not ch.isprintable() for ch in host):
        raise ConfigError(f"{where}: the host name contains spaces or control characters")
    if host.isascii():
        # The idna codec's own rule for an ASCII name (labels of 1 to 63 characters, a final
        # dot allowed), checked here so that the common case does not import the codec and
        # unicodedata (~2 ms of a command's start-up).
        labels = host.split(".")
        if all(0 < len(label) < 64 for label in labels[:-1]) and len(labels[-1]) < 64:
            return
        raise ConfigError(f"{where}: {host!r} is not a valid host name")
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise ConfigError(f"{where}: {host!r} is not a valid host name") from exc


def _socket_path(netloc: str, url: str) -> str:
    path = urllib.parse.unquote(netloc)
    if not path:
        raise ConfigError(f"no socket path in {url!r}: write it percent-encoded, as in http+unix://%2Frun%2Fflux0.sock")
    if "\x00" in path:
        raise ConfigError(f"the socket path in {url!r} contains NUL")
    return path


# Origins already parsed, by the scheme and authority of a URL with no surrounding whitespace:
# for such a URL every check parse_server_url makes depends on those two alone, so its origin
# is the one parsed before (a client splits every request's URL; parsing took a tenth of a
# small request's own time). A few are kept: redirects could name many.
_ORIGINS: Dict[Tuple[str, str], Origin] = {}


def split_url(url: str) -> Tuple[Origin, str]:
    """An absolute URL as its origin and request target (path and query)."""
    parts: Optional[urllib.parse.SplitResult] = None
    if isinstance(url, str) and url == url.strip():
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError:
            parts = None  # parse_server_url says why
    if parts is None:
        origin, _ = parse_server_url(url)
        parts = urllib.parse.urlsplit(url)
    else:
        key = (parts.scheme, parts.netloc)
        known = _ORIGINS.get(key)
        if known is None:
            known, _ = parse_server_url(url)
            if len(_ORIGINS) < 64:
                _ORIGINS[key] = known
        origin = known
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return origin, target


def join_url(base: str, location: str) -> str:
    """Resolve a redirect's ``Location`` against the URL it answered (``urljoin``, unix sockets too)."""
    if urllib.parse.urlsplit(base).scheme.lower() != UNIX_SCHEME:
        return urllib.parse.urljoin(base, location)
    # urljoin resolves relative references only for schemes it knows: resolve as http, then
    # put the socket back if the result stayed on it.
    origin, target = split_url(base)
    joined = urllib.parse.urljoin(f"http://unix.invalid{target}", location)
    parts = urllib.parse.urlsplit(joined)
    if parts.netloc != "unix.invalid":
        return joined
    return urllib.parse.urlunsplit((UNIX_SCHEME, origin.netloc, parts.path, parts.query, ""))
