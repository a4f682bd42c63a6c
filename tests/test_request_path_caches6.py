"""Contracts of the request path's shortcuts: each gives what the general path gives.

* ``urls.split_url`` keeps the origins it parsed (by scheme and authority): for any text, after
  any other URLs were split, it gives what parsing the URL afresh gives, or the same error.
* ``ProxyRules.route`` and ``ConnectionPool`` remember the last route: a request on an equal
  route that is another object gets the same route and the same idle connections.
"""

from __future__ import annotations

import http.client
import urllib.parse
from typing import Any, List, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st

from flux0lite import ConfigError
from flux0lite import urls as urls_module
from flux0lite.pool import ConnectionPool
from flux0lite.proxy import ProxyRules, Route, parse_proxy_url
from flux0lite.urls import Origin, parse_server_url, split_url


def _general(url: Any) -> Tuple[Origin, str]:
    """split_url as it was before it kept origins: every URL parsed in full."""
    origin, _ = parse_server_url(url)
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return origin, target


def _outcome(split: Any, url: Any) -> Any:
    try:
        origin, target = split(url)
    except (ConfigError, ValueError, TypeError) as exc:
        return ("error", type(exc), str(exc))
    return ("ok", origin, repr(origin), target)


_HOSTS = st.sampled_from(
    [
        "127.0.0.1",
        "127.0.0.1:8080",
        "[::1]:9",
        "[::1",
        "Example.COM",
        "user:pw@host",
        "host:99999",
        "host:x",
        "a b",
        "",
        "%2Frun%2Fflux0.sock",
        "ho\tst",
        "h\u00e9",
        "x" * 70 + ".com",
    ]
)
_SCHEMES = st.sampled_from(["http", "HTTP", "https", "http+unix", "ftp", ""])
_REST = st.sampled_from(["", "/", "/api/x?min_offset=3", "?a=b", "#f", "/p q", "/a\n"])
_PADDING = st.sampled_from(["", " ", "\n", "\t", "\x00"])
_URLS = st.one_of(
    st.builds(
        lambda pad, scheme, host, rest, tail: f"{pad}{scheme}://{host}{rest}{tail}",
        _PADDING,
        _SCHEMES,
        _HOSTS,
        _REST,
        _PADDING,
    ),
    st.text(max_size=30),
    st.sampled_from([None, 3, b"http://x"]),
)


@settings(max_examples=500, deadline=None)
@given(urls=st.lists(_URLS, min_size=1, max_size=6))
def test_split_url_gives_what_parsing_afresh_gives(urls: List[Any]) -> None:
    for url in urls + urls:  # the second time round, from what was kept
        assert _outcome(split_url, url) == _outcome(_general, url)


def test_the_kept_origins_are_bounded() -> None:
    for port in range(1, 200):
        split_url(f"http://127.0.0.1:{port}/x")
    assert len(urls_module._ORIGINS) <= 64


def test_an_equal_origin_gets_an_equal_route_and_the_last_one_is_not_rebuilt() -> None:
    rules = ProxyRules(explicit=parse_proxy_url("http://proxy.invalid:3128"))
    origin = Origin("http", "127.0.0.1", 80)
    first = rules.route(origin)
    assert rules.route(origin) is first
    other = Origin("http", "127.0.0.1", 80)
    assert rules.route(other) == first
    elsewhere = rules.route(Origin("https", "127.0.0.1", 443))
    assert elsewhere.origin.scheme == "https" and rules.route(origin) == first


def test_the_pool_finds_idle_connections_by_equal_routes() -> None:
    pool = ConnectionPool()
    route = Route(Origin("http", "127.0.0.1", 80))
    twin = Route(Origin("http", "127.0.0.1", 80))
    conn = http.client.HTTPConnection("127.0.0.1", 80)
    pool.checkin(route, conn)
    assert pool._idle_list(twin) == [conn]
    assert pool._idle_list(route) == [conn]
    pool.close()
    assert pool._idle_list(route) is None
