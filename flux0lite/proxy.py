"""Which proxy, if any, a request goes through: the way curl and urllib decide it.

Sources, strongest first: ``Flux0(proxy="http://host:port")`` for every request (the
environment is then ignored), ``proxy=False`` for none, else the environment:
``http_proxy`` for http:// servers, ``https_proxy`` for https://, ``all_proxy`` for both when
the specific one is unset; lower case wins over upper case (an empty one counts as unset and
hides its upper-case twin, as in urllib), and upper-case ``HTTP_PROXY`` is ignored under CGI
(``REQUEST_METHOD`` set), as urllib does. ``no_proxy`` lists servers to reach directly: ``*``,
host names (``example.com`` and ``.example.com`` both also match subdomains), IP addresses,
CIDR ranges (``10.0.0.0/8``), each optionally with ``:port``. A server on a unix socket is
never proxied.

Only ``http://`` proxies are supported (https:// servers are reached through them with
``CONNECT``); credentials in the proxy URL become ``Proxy-Authorization: Basic``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import urllib.parse
from typing import Dict, Mapping, Optional, Tuple, Union

from .errors import ConfigError
from .frozen import Frozen
from .urls import Origin, check_host

__all__ = ["Proxy", "ProxyRules", "Route", "parse_proxy_url", "no_proxy_matches", "proxy_auth_message", "DIRECT"]

ProxyOption = Union[str, bool, None]


class Proxy(Frozen):
    """An HTTP proxy; ``password`` never shows in ``repr`` or in :attr:`display`."""

    _field_names = ("host", "port", "username", "password")
    __slots__ = _field_names
    _not_shown = ("password",)
    host: str
    port: int
    username: Optional[str]
    password: Optional[str]

    def __init__(self, host: str, port: int, username: Optional[str] = None, password: Optional[str] = None) -> None:
        self._set("host", host)
        self._set("port", port)
        self._set("username", username)
        self._set("password", password)

    @property
    def display(self) -> str:
        """The proxy for messages and logs: ``http://host:port``, credentials left out."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def authorization(self) -> Optional[str]:
        """The ``Proxy-Authorization`` value, when the proxy URL carried credentials."""
        if self.username is None:
            return None
        # surrogateescape: credentials from os.environ give back the bytes they were set as
        secret = f"{self.username}:{self.password or ''}".encode("utf-8", "surrogateescape")
        return "Basic " + base64.b64encode(secret).decode("ascii")


def proxy_auth_message(proxy: Proxy) -> str:
    """What to say about a 407 from ``proxy``."""
    if proxy.username is not None:
        return f"proxy {proxy.display} refused the credentials in the proxy URL (407)"
    return f"proxy {proxy.display} wants credentials (407): give them as http://user:password@host:port"


def parse_proxy_url(url: str, *, source: str = "proxy") -> Proxy:
    """``http://[user:password@]host[:port]`` (the scheme may be left out; the port defaults to 80)."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError as exc:  # unbalanced brackets
        # not quoting urlsplit's message: it quotes the bracketed part, which may be the password's
        raise ConfigError(f"{source}: not a valid proxy URL ('[' or ']' out of place)") from exc
    scheme = parts.scheme.lower()
    if scheme != "http":
        raise ConfigError(
            f"{source}: {scheme}:// proxies are not supported, only http:// ones "
            "(which also carry https:// traffic, tunnelled with CONNECT)"
        )
    if not parts.hostname:
        raise ConfigError(f"{source}: no host in the proxy URL")
    check_host(parts.hostname, source)
    try:
        port = 80 if parts.port is None else parts.port
    except ValueError as exc:
        raise ConfigError(f"{source}: invalid port in the proxy URL") from exc
    if port == 0:
        raise ConfigError(f"{source}: invalid port in the proxy URL")
    username = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return Proxy(parts.hostname, port, username, password)


class Route(Frozen):
    """How a request reaches its origin: directly, or through ``proxy``.

    An http:// origin behind a proxy is *forwarded*: the request goes to the proxy with an
    absolute URL as its target. An https:// origin is *tunnelled*: a ``CONNECT`` opens a
    byte pipe through the proxy, and TLS runs end to end inside it.
    """

    _field_names = ("origin", "proxy")
    __slots__ = _field_names
    origin: Origin
    proxy: Optional[Proxy]

    def __init__(self, origin: Origin, proxy: Optional[Proxy] = None) -> None:
        self._set("origin", origin)
        self._set("proxy", proxy)

    @property
    def forwarded(self) -> bool:
        return self.proxy is not None and self.origin.scheme == "http"

    @property
    def tunnelled(self) -> bool:
        return self.proxy is not None and self.origin.scheme == "https"

    def request_target(self, target: str) -> str:
        return self.origin.url(target) if self.forwarded else target

    def proxy_headers(self) -> Dict[str, str]:
        """Headers for the proxy itself, sent with each forwarded request."""
        authorization = self.proxy.authorization if self.proxy is not None and self.forwarded else None
        return {"Proxy-Authorization": authorization} if authorization else {}

    @property
    def via(self) -> str:
        """`` via proxy http://host:port`` or nothing, for messages."""
        return f" via proxy {self.proxy.display}" if self.proxy is not None else ""


def _environment_value(env: Mapping[str, str], name: str) -> Tuple[str, str]:
    """The value of ``name`` (lower case first) and the variable it came from; ``""`` when unset.

    A lower-case variable that is set decides even when empty, as in urllib: ``http_proxy=``
    hides an exported ``HTTP_PROXY`` for one command."""
    lower = env.get(name)
    if lower is not None:
        return (lower.strip(), name) if lower.strip() else ("", "")
    upper_name = name.upper()
    if upper_name == "HTTP_PROXY" and "REQUEST_METHOD" in env:
        # httpoxy: under CGI, HTTP_PROXY may come from a request's "Proxy:" header.
        return "", ""
    upper = env.get(upper_name)
    if upper is not None and upper.strip():
        return upper.strip(), upper_name
    return "", ""


class ProxyRules:
    """Picks the :class:`Route` for each origin; build one with :meth:`resolve`."""

    def __init__(
        self,
        *,
        http: Tuple[str, str] = ("", ""),
        https: Tuple[str, str] = ("", ""),
        no_proxy: str = "",
        explicit: Optional[Proxy] = None,
    ) -> None:
        # Environment values are parsed when first used, so that a proxy variable this client
        # never needs (say, an https_proxy of an unsupported kind) cannot stop it.
        self._sources = {"http": http, "https": https}
        self._parsed: Dict[str, Proxy] = {}
        self._routes: Dict[Origin, Route] = {}
        self._last: Optional[Tuple[Origin, Route]] = None  # the last route given, and its origin
        self._no_proxy = no_proxy
        self._explicit = explicit

    @classmethod
    def resolve(cls, option: ProxyOption = None, env: Optional[Mapping[str, str]] = None) -> "ProxyRules":
        """Rules for ``Flux0(proxy=option)``: None reads the environment, False means direct,
        a string is the proxy for every request."""
        if option is False:
            return DIRECT
        if option is None or option is True:
            return cls.from_environment(os.environ if env is None else env)
        if not isinstance(option, str) or not option.strip():
            raise ConfigError(f"proxy must be a proxy URL, False or None, got {option!r}")
        return cls(explicit=parse_proxy_url(option))

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> "ProxyRules":
        all_proxy = _environment_value(env, "all_proxy")
        http = _environment_value(env, "http_proxy")
        https = _environment_value(env, "https_proxy")
        no_proxy, _ = _environment_value(env, "no_proxy")
        return cls(http=http if http[0] else all_proxy, https=https if https[0] else all_proxy, no_proxy=no_proxy)

    def route(self, origin: Origin) -> Route:
        last = self._last
        if last is not None and last[0] is origin:  # split_url hands out the same Origin: not hashed again
            return last[1]
        route = self._routes.get(origin)
        if route is None:
            route = Route(origin, self.proxy_for(origin))
            if len(self._routes) < 64:  # redirects could name many origins; remember a few
                self._routes[origin] = route
        self._last = (origin, route)
        return route

    def proxy_for(self, origin: Origin) -> Optional[Proxy]:
        if origin.is_unix:
            return None
        if self._explicit is not None:
            return self._explicit
        value, variable = self._sources.get(origin.scheme, ("", ""))
        if not value or no_proxy_matches(self._no_proxy, origin.host, origin.port):
            return None
        proxy = self._parsed.get(variable)
        if proxy is None:
            proxy = self._parsed[variable] = parse_proxy_url(value, source=f"${variable}")
        return proxy

    def __repr__(self) -> str:
        if self._explicit is not None:
            return f"ProxyRules(proxy={self._explicit.display!r})"
        names = [f"{scheme}={var}" for scheme, (value, var) in self._sources.items() if value]
        return f"ProxyRules({', '.join(names) or 'direct'})"


DIRECT = ProxyRules()


def no_proxy_matches(no_proxy: str, host: str, port: int) -> bool:
    """Whether ``host:port`` is listed in a ``no_proxy`` value (see the module docstring)."""
    host = host.lower().rstrip(".")
    host_ip = _ip(host)
    for raw in no_proxy.replace(",", " ").split():
        entry = raw.lower()
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if "/" in name:
            try:
                network = ipaddress.ip_network(name, strict=False)
            except ValueError:
                continue
            if host_ip is not None and host_ip in network:
                return True
            continue
        name_ip = _ip(name)
        if name_ip is not None:
            if host_ip == name_ip:
                return True
            continue
        name = name.lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_port(entry: str) -> Tuple[str, Optional[int]]:
    """``host:port``, ``[v6]:port``, ``v6`` or ``host`` as the name and the port, if one is given."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        return name, _port(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        if _port(port) is not None:
            return name, _port(port)
    return entry, None


def _port(text: str) -> Optional[int]:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 5 else None


def _ip(text: str) -> "Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]":
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
