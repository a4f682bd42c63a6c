"""Server URLs: which are accepted, and how one splits into an origin and a request target."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Tuple

from .errors import ConfigError
from .httputil import redact_url

__all__ = ["Origin", "parse_server_url", "split_url"]


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port: what a pooled connection is kept for."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def url(self, target: str) -> str:
        return f"{self.scheme}://{self.netloc}{target}"


def parse_server_url(url: str) -> Tuple[Origin, str]:
    """Split a server URL into its origin and base path; only http and https are accepted."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("server URL must be a non-empty string")
    shown = redact_url(url)  # messages never show credentials
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ConfigError(f"malformed server URL {shown!r}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"unsupported URL scheme {parts.scheme or '(none)'!r} in {shown!r}: use http:// or https://")
    if not parts.hostname:
        raise ConfigError(f"server URL has no host: {shown!r}")
    if parts.username or parts.password:
        raise ConfigError("put credentials in token=..., not in the server URL")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid port in server URL {shown!r}") from exc
    origin = Origin(scheme, parts.hostname, port or (443 if scheme == "https" else 80))
    return origin, parts.path.rstrip("/")


def split_url(url: str) -> Tuple[Origin, str]:
    """An absolute URL as its origin and request target (path and query)."""
    origin, _ = parse_server_url(url)
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return origin, target
