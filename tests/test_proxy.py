"""Requests through a forward proxy (tests/proxyserver.py) to a host only the proxy can resolve.

``flux0.internal`` is known to the proxy alone; this process's resolver is patched to refuse it
(and to record any attempt), so a passing call proves the client never tried to resolve it and
no DNS query left the machine.
"""

from __future__ import annotations

import json
import logging
import pickle
import ssl
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest

from flux0lite import ConfigError, Flux0, Retry, Timeout
from flux0lite.errors import (
    ConnectError,
    ConnectTimeout,
    ProxyAuthenticationError,
    ProxyError,
    RedirectError,
    ServerError,
    TLSError,
    TotalTimeout,
)
from flux0lite.proxy import ProxyRules, no_proxy_matches, parse_proxy_url
from flux0lite.urls import Origin
from tests.certs import Certs, make_certs
from tests.fakeserver import FakeServer, json_response, raw_response, sequence, sse_stream, sse_text
from tests.netfixtures import HIDDEN, hidden_host, hidden_proxy, refused_port
from tests.proxyserver import ForwardProxy

AGENT = {"id": "a1", "name": "Echo", "type": "echo", "description": None, "created_at": "2026-11-25T00:00:00Z"}


def _chunk(text: str, seq: int) -> Dict[str, Any]:
    return {"event_id": "e1", "seq": seq, "patches": [{"op": "add", "path": "/-", "value": text}]}


STREAM = sse_text(
    [
        (
            "status",
            {"id": "s", "source": "ai_agent", "type": "status", "data": {"type": "status", "status": "processing"}},
        )
    ]
    + [("chunk", _chunk(piece, i)) for i, piece in enumerate(["Echo", ": ", "hi"])]
)


@pytest.fixture(autouse=True)
def lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[str]]:
    """No proxy or TLS settings from the outside; this process cannot resolve ``flux0.internal``."""
    yield from hidden_host(monkeypatch)


def _flux0_upstream(ssl_context: Optional[ssl.SSLContext] = None) -> FakeServer:
    """The upstream the proxy reaches: agents, and a reply streamed in 40-byte pieces."""
    return FakeServer(
        routes=[
            ("GET", "/api/agents", json_response(200, {"data": [AGENT]})),
            ("POST", "/api/agents", json_response(201, AGENT)),
            ("POST", "/api/sessions/*", sse_stream([STREAM[i : i + 40] for i in range(0, len(STREAM), 40)])),
        ],
        ssl_context=ssl_context,
    )


@pytest.fixture
def upstream() -> Iterator[FakeServer]:
    server = _flux0_upstream()
    yield server
    server.close()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with hidden_proxy() as server:
        yield server


@pytest.fixture
def auth_proxy() -> Iterator[ForwardProxy]:
    with hidden_proxy(credentials=("alice", "s3cr:t@pass")) as server:
        yield server


def hidden_url(server: FakeServer, scheme: str = "http") -> str:
    return f"{scheme}://{HIDDEN}:{server.port}"


def quick(total: int = 0) -> Retry:
    return Retry(total=total, backoff_factor=0)


# -- http:// through the proxy: absolute-form requests ------------------------------------------


def test_plain_calls_go_through_an_explicit_proxy_in_absolute_form(upstream: FakeServer, proxy: ForwardProxy) -> None:
    with Flux0(hidden_url(upstream), proxy=proxy.url) as client:
        assert [a.id for a in client.agents.list()] == ["a1"]
        assert client.agents.create(name="Echo", type="echo").id == "a1"
    assert [(s.method, s.target) for s in proxy.seen] == [
        ("GET", f"{hidden_url(upstream)}/api/agents"),
        ("POST", f"{hidden_url(upstream)}/api/agents"),
    ]
    assert upstream.requests[0].headers["host"] == f"{HIDDEN}:{upstream.port}"
    assert upstream.requests[0].target == "/api/agents"


@pytest.mark.parametrize("variable", ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"])
def test_the_environment_names_the_proxy(
    variable: str, upstream: FakeServer, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, proxy.url)
    with Flux0(hidden_url(upstream)) as client:
        assert client.agents.list()[0].id == "a1"
    assert len(proxy.seen) == 1


def test_keep_alive_to_the_proxy(upstream: FakeServer, proxy: ForwardProxy) -> None:
    with Flux0(hidden_url(upstream), proxy=proxy.url) as client:
        for _ in range(5):
            client.agents.list()
    assert proxy.connections == 1
    assert len({s.client_port for s in proxy.seen}) == 1


def test_a_stream_streams_through_the_proxy(upstream: FakeServer, proxy: ForwardProxy) -> None:
    with Flux0(hidden_url(upstream), proxy=proxy.url) as client:
        with client.sessions.create_event("sess1", "hi") as stream:
            reply = stream.reply()
    assert reply.text == "Echo: hi"
    assert proxy.seen[0].target == f"{hidden_url(upstream)}/api/sessions/sess1/events/stream"
    assert proxy.seen[0].headers["accept"] == "text/event-stream"


def test_stream_events_arrive_before_the_stream_ends(upstream: FakeServer, proxy: ForwardProxy) -> None:
    # the server never ends this stream: events can only be read if the proxy passes them on as they come
    upstream.on("POST", "/api/sessions/*", sse_stream([STREAM], end=False))
    with Flux0(hidden_url(upstream), proxy=proxy.url, timeout=Timeout(connect=5, read=5)) as client:
        with client.sessions.create_event("sess1", "hi") as stream:
            texts = [piece for _, piece in zip(range(3), stream.text_deltas())]
    assert texts == ["Echo", ": ", "hi"]


def test_retries_go_through_the_proxy(upstream: FakeServer, proxy: ForwardProxy) -> None:
    upstream.on(
        "GET", "/api/agents", sequence(json_response(503, {"detail": "busy"}), json_response(200, {"data": []}))
    )
    notices: List[str] = []
    with Flux0(hidden_url(upstream), proxy=proxy.url, retry=quick(2), on_retry=notices.append) as client:
        assert client.agents.list() == []
    assert len(proxy.seen) == 2
    assert len(notices) == 1 and "HTTP 503; retry 1/2" in notices[0]


def test_redirects_are_followed_through_the_proxy(upstream: FakeServer, proxy: ForwardProxy) -> None:
    upstream.on("GET", "/old/agents", json_response(302, {}, {"location": "/api/agents"}))
    with Flux0(hidden_url(upstream), proxy=proxy.url) as client:
        assert client.request_json("GET", "/old/agents") == {"data": [AGENT]}
    assert [s.target for s in proxy.seen] == [
        f"{hidden_url(upstream)}/old/agents",
        f"{hidden_url(upstream)}/api/agents",
    ]


def test_a_redirect_to_another_scheme_is_still_refused(upstream: FakeServer, proxy: ForwardProxy) -> None:
    upstream.on("GET", "/old/agents", json_response(302, {}, {"location": "file:///etc/passwd"}))
    with Flux0(hidden_url(upstream), proxy=proxy.url) as client, pytest.raises(RedirectError):
        client.request_json("GET", "/old/agents")


def test_a_502_from_the_proxy_is_an_ordinary_server_error(proxy: ForwardProxy) -> None:
    # the proxy cannot resolve this name: it answers 502 itself, which is retried like any 502
    with Flux0("http://unknown.example:8080", proxy=proxy.url, retry=quick(1)) as client:
        with pytest.raises(ServerError) as caught:
            client.agents.list()
    assert caught.value.status_code == 502
    assert len(proxy.seen) == 2


# -- credentials and 407 --------------------------------------------------------------------------


def test_credentials_in_the_proxy_url_become_proxy_authorization(
    upstream: FakeServer, auth_proxy: ForwardProxy
) -> None:
    with Flux0(hidden_url(upstream), proxy=auth_proxy.url_with("alice", "s3cr:t@pass")) as client:
        assert client.agents.list()[0].id == "a1"
    assert auth_proxy.seen[0].headers["proxy-authorization"].startswith("Basic ")
    assert "proxy-authorization" not in upstream.requests[0].headers  # meant for the proxy only


def test_a_407_is_a_typed_error_and_never_retried(upstream: FakeServer, auth_proxy: ForwardProxy) -> None:
    with Flux0(hidden_url(upstream), proxy=auth_proxy.url, retry=quick(3)) as client:
        with pytest.raises(ProxyAuthenticationError, match="wants credentials") as caught:
            client.agents.create(name="x", type="echo")
    assert caught.value.status_code == 407
    assert caught.value.proxy_authenticate == 'Basic realm="test"'
    assert isinstance(caught.value, ConnectError)  # the server never saw the request
    assert len(auth_proxy.seen) == 1
    assert upstream.requests == []
    again = pickle.loads(pickle.dumps(caught.value))
    assert type(again) is ProxyAuthenticationError and again.status_code == 407


def test_wrong_credentials_are_refused_and_never_shown(upstream: FakeServer, auth_proxy: ForwardProxy) -> None:
    records: List[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    log = logging.getLogger("flux0lite.test_proxy")
    log.setLevel(logging.DEBUG)
    log.addHandler(Capture())
    url = auth_proxy.url_with("alice", "wrong-secret")
    with Flux0(hidden_url(upstream), proxy=url, retry=quick(2), debug_logger=log) as client:
        with pytest.raises(ProxyAuthenticationError, match="refused the credentials") as caught:
            client.agents.list()
        shown = [str(caught.value), repr(caught.value), repr(client), repr(client._transport._proxies), *records]
    assert records and any("via proxy http://127.0.0.1" in line for line in records)
    assert any("'Proxy-Authorization': '<redacted>'" in line for line in records)
    for text in shown:
        assert "wrong-secret" not in text, text
        assert "YWxpY2U6d3Jvbmct" not in text, text  # the base64 of the credentials


# -- https:// through the proxy: CONNECT and TLS inside the tunnel ------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_upstream(certs: Certs) -> Iterator[FakeServer]:
    server = _flux0_upstream(certs.server_context())
    yield server
    server.close()


def test_https_goes_through_a_connect_tunnel(tls_upstream: FakeServer, proxy: ForwardProxy, certs: Certs) -> None:
    with Flux0(hidden_url(tls_upstream, "https"), proxy=proxy.url, cacert=certs.ca) as client:
        assert client.agents.list()[0].id == "a1"
        assert client.agents.list()[0].id == "a1"  # over the same tunnel
        with client.sessions.create_event("sess1", "hi") as stream:
            assert stream.reply().text == "Echo: hi"
    assert [(s.method, s.target) for s in proxy.seen] == [
        ("CONNECT", f"{HIDDEN}:{tls_upstream.port}"),
        ("CONNECT", f"{HIDDEN}:{tls_upstream.port}"),  # a POST always gets a fresh connection
    ]
    assert proxy.tunnels == 2
    assert tls_upstream.requests[0].headers["host"] == f"{HIDDEN}:{tls_upstream.port}"


def test_https_proxy_variable_and_certificate_checked_against_the_origin(
    tls_upstream: FakeServer, proxy: ForwardProxy, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with Flux0(hidden_url(tls_upstream, "https"), retry=quick(2)) as client:
        with pytest.raises(TLSError, match=f"{HIDDEN}:{tls_upstream.port} via proxy"):
            client.agents.list()  # not trusted: no cacert
    assert len(proxy.seen) == 1  # a TLS failure is not retried
    with Flux0(hidden_url(tls_upstream, "https"), cacert=certs.ca) as client:
        assert client.agents.list()[0].id == "a1"


def test_connect_with_credentials_and_407(tls_upstream: FakeServer, auth_proxy: ForwardProxy, certs: Certs) -> None:
    url = hidden_url(tls_upstream, "https")
    with Flux0(url, proxy=auth_proxy.url, cacert=certs.ca, retry=quick(3)) as client:
        with pytest.raises(ProxyAuthenticationError) as caught:
            client.agents.create(name="x", type="echo")
    assert caught.value.status_code == 407
    assert len(auth_proxy.seen) == 1
    with Flux0(url, proxy=auth_proxy.url_with("alice", "s3cr:t@pass"), cacert=certs.ca) as client:
        assert client.agents.list()[0].id == "a1"
    assert auth_proxy.seen[-1].method == "CONNECT"
    assert "proxy-authorization" not in tls_upstream.requests[0].headers


def test_a_refused_connect_is_a_connect_error_and_a_post_is_retried(tls_upstream: FakeServer, certs: Certs) -> None:
    with hidden_proxy(connect_status=403) as refusing:
        url = hidden_url(tls_upstream, "https")
        with Flux0(url, proxy=refusing.url, cacert=certs.ca, retry=quick(2)) as client:
            with pytest.raises(ProxyError, match="refused CONNECT") as caught:
                client.agents.create(name="x", type="echo")
        assert caught.value.status_code == 403
        assert isinstance(caught.value, ConnectError)
        assert [s.method for s in refusing.seen] == ["CONNECT"] * 3  # never sent, so retried
    assert tls_upstream.requests == []


def test_a_dead_proxy_is_a_connect_error_naming_it(upstream: FakeServer) -> None:
    port = refused_port()
    with Flux0(hidden_url(upstream), proxy=f"http://127.0.0.1:{port}", retry=quick(0)) as client:
        with pytest.raises(ConnectError, match=f"via proxy http://127.0.0.1:{port}"):
            client.agents.list()


def test_a_proxy_that_hangs_up_on_connect_is_a_proxy_error(tls_upstream: FakeServer, certs: Certs) -> None:
    hangup = FakeServer()
    hangup.on("CONNECT", "*", lambda req, conn: conn.close())
    try:
        with Flux0(hidden_url(tls_upstream, "https"), proxy=hangup.url, cacert=certs.ca, retry=quick(1)) as client:
            with pytest.raises(ProxyError, match="closed the connection"):
                client.agents.list()
        assert hangup.connections == 2
    finally:
        hangup.close()


def test_a_malformed_connect_answer_is_a_proxy_error(tls_upstream: FakeServer, certs: Certs) -> None:
    garbage = FakeServer()
    garbage.on("CONNECT", "*", lambda req, conn: conn.send(b"NONSENSE\r\n\r\n"))
    try:
        with Flux0(hidden_url(tls_upstream, "https"), proxy=garbage.url, cacert=certs.ca, retry=quick(0)) as client:
            with pytest.raises(ProxyError, match="malformed answer"):
                client.agents.list()
    finally:
        garbage.close()


# -- which requests use a proxy -------------------------------------------------------------------


def test_no_proxy_sends_listed_hosts_direct(
    upstream: FakeServer, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", f"example.com, 127.0.0.0/8:{upstream.port}")
    with Flux0(upstream.url) as client:
        assert client.agents.list()[0].id == "a1"
    assert proxy.seen == []
    assert len(upstream.requests) == 1


def test_proxy_false_ignores_the_environment_and_an_explicit_proxy_ignores_no_proxy(
    upstream: FakeServer, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    with Flux0(upstream.url, proxy=False) as client:
        assert client.agents.list()[0].id == "a1"
    monkeypatch.setenv("no_proxy", "*")
    with Flux0(upstream.url, proxy=proxy.url) as client:
        assert client.agents.list()[0].id == "a1"
    assert len(proxy.seen) == 1


def test_an_unsupported_proxy_variable_stops_only_the_requests_that_need_it(
    upstream: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", "socks5://127.0.0.1:1080")
    with Flux0(upstream.url) as client:  # http:// does not use https_proxy
        assert client.agents.list()[0].id == "a1"
    with pytest.raises(ConfigError, match=r"\$https_proxy: socks5:// proxies are not supported"):
        Flux0("https://localhost:1")  # refused when the client is made, not at its first request


@pytest.mark.parametrize(
    "env, scheme, expected",
    [
        ({"http_proxy": "http://lower:1", "HTTP_PROXY": "http://upper:2"}, "http", "lower:1"),
        ({"HTTP_PROXY": "http://upper:2"}, "http", "upper:2"),
        ({"HTTP_PROXY": "http://upper:2", "REQUEST_METHOD": "GET"}, "http", None),  # httpoxy
        ({"http_proxy": "http://lower:1", "REQUEST_METHOD": "GET"}, "http", "lower:1"),
        ({"https_proxy": "http://s:3", "all_proxy": "http://all:4"}, "https", "s:3"),
        ({"https_proxy": "http://s:3", "all_proxy": "http://all:4"}, "http", "all:4"),
        ({"ALL_PROXY": "all:4"}, "https", "all:4"),
        ({"http_proxy": "  "}, "http", None),
        # an empty lower-case variable hides its upper-case twin, as in urllib (hadv39 02)
        ({"http_proxy": "", "HTTP_PROXY": "http://upper:2"}, "http", None),
        ({"https_proxy": " ", "HTTPS_PROXY": "http://upper:2"}, "https", None),
        ({"all_proxy": "", "ALL_PROXY": "http://all:4"}, "https", None),
        ({"http_proxy": "", "HTTP_PROXY": "http://upper:2", "all_proxy": "http://all:4"}, "http", "all:4"),
        ({"http_proxy": "http://p:5", "no_proxy": "", "NO_PROXY": "*"}, "http", "p:5"),
        ({"http_proxy": "proxy.corp"}, "http", "proxy.corp:80"),
        ({"http_proxy": "http://p:5", "no_proxy": "*"}, "http", None),
    ],
)
def test_environment_rules(env: Dict[str, str], scheme: str, expected: Any) -> None:
    proxy = ProxyRules.from_environment(env).proxy_for(Origin(scheme, "flux0.example", 443))
    assert (f"{proxy.host}:{proxy.port}" if proxy else None) == expected


def test_a_unix_socket_is_never_proxied() -> None:
    rules = ProxyRules.resolve("http://127.0.0.1:3128")
    assert rules.proxy_for(Origin("http+unix", "/run/flux0.sock", 0)) is None


@pytest.mark.parametrize(
    "no_proxy, host, port, matches",
    [
        ("*", "anything", 80, True),
        ("example.com", "example.com", 80, True),
        ("example.com", "api.example.com", 80, True),
        ("example.com", "badexample.com", 80, False),
        (".example.com", "example.com", 80, True),
        (".example.com", "a.b.example.com", 80, True),
        ("*.example.com", "a.example.com", 80, True),
        ("EXAMPLE.COM.", "Api.Example.Com", 80, True),
        ("example.com:8080", "example.com", 8080, True),
        ("example.com:8080", "example.com", 80, False),
        ("10.1.2.3", "10.1.2.3", 80, True),
        ("10.1.2.3", "10.1.2.4", 80, False),
        ("10.0.0.0/8", "10.200.0.1", 80, True),
        ("10.0.0.0/8", "11.0.0.1", 80, False),
        ("10.0.0.0/8", "ten.example", 80, False),
        ("192.168.0.0/16:443", "192.168.1.1", 443, True),
        ("192.168.0.0/16:443", "192.168.1.1", 80, False),
        ("::1", "::1", 80, True),
        ("[::1]:8080", "::1", 8080, True),
        ("[::1]:8080", "::1", 80, False),
        ("fd00::/8", "fd12::1", 80, True),
        ("localhost,127.0.0.1", "127.0.0.1", 80, True),
        ("a.com b.com\tc.com", "c.com", 80, True),
        ("", "example.com", 80, False),
        ("10.0.0.0/99, , ,:80", "example.com", 80, False),
        ("example.com:٨٠", "example.com", 80, False),
    ],
)
def test_no_proxy_matching(no_proxy: str, host: str, port: int, matches: bool) -> None:
    assert no_proxy_matches(no_proxy, host, port) is matches


@pytest.mark.parametrize(
    "url, message",
    [
        ("socks5://127.0.0.1:1080", "socks5:// proxies are not supported"),
        ("https://proxy:443", "https:// proxies are not supported"),
        ("http://:3128", "no host"),
        ("http://proxy:99999", "invalid port"),
        ("http://proxy:port", "invalid port"),
        ("http://proxy:0", "invalid port"),
    ],
)
def test_bad_proxy_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_proxy_url(url)


@pytest.mark.parametrize("option", ["", "   ", 3128, object()])
def test_bad_proxy_options(option: Any) -> None:
    with pytest.raises(ConfigError):
        Flux0("http://127.0.0.1:1", proxy=option)


def test_proxy_url_credentials_are_decoded_and_kept_out_of_repr() -> None:
    proxy = parse_proxy_url("http://al%40ice:p%3Ass@proxy.corp:3128")
    assert (proxy.username, proxy.password, proxy.port) == ("al@ice", "p:ss", 3128)
    assert "p:ss" not in repr(proxy) and proxy.display == "http://proxy.corp:3128"
    import base64

    assert base64.b64decode(proxy.authorization.split()[1]) == b"al@ice:p:ss"  # type: ignore[union-attr]


def test_environment_credentials_keep_their_bytes() -> None:
    # os.environ decodes undecodable bytes with surrogateescape; they go out as the same bytes
    proxy = parse_proxy_url("http://user:pa\udcffss@proxy:3128")
    import base64

    assert base64.b64decode(proxy.authorization.split()[1]) == b"user:pa\xffss"  # type: ignore[union-attr]


def test_a_forwarded_407_without_a_body_still_raises(upstream: FakeServer) -> None:
    picky = FakeServer()
    picky.on("GET", "*", lambda req, conn: conn.send(raw_response(407, b"", {"proxy-authenticate": "Negotiate"})))
    try:
        with Flux0(hidden_url(upstream), proxy=picky.url, retry=quick(2)) as client:
            with pytest.raises(ProxyAuthenticationError) as caught:
                client.agents.list()
        assert caught.value.proxy_authenticate == "Negotiate"
        assert len(picky.requests) == 1
        assert json.dumps(caught.value.headers)
    finally:
        picky.close()


def test_a_proxy_that_never_answers_connect_is_a_connect_timeout(tls_upstream: FakeServer, certs: Certs) -> None:
    silent = FakeServer()
    silent.on("CONNECT", "*", lambda req, conn: time.sleep(3))
    try:
        url = hidden_url(tls_upstream, "https")
        with Flux0(url, proxy=silent.url, cacert=certs.ca, retry=quick(0), timeout=Timeout(0.3, 5)) as client:
            with pytest.raises(ConnectTimeout, match="via proxy"):
                client.agents.list()
    finally:
        silent.close()


def _trickle(head: bytes, seconds: float) -> Any:
    """A CONNECT handler sending ``head`` and then one byte of a header line every 50 ms."""

    def handler(req: Any, conn: Any) -> None:
        conn.send(head)
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            conn.send(b"a")
            time.sleep(0.05)

    return handler


@pytest.mark.parametrize(
    "timeout, error",
    [(Timeout(connect=0.4, read=5), ConnectTimeout), (Timeout(connect=5, read=5, total=0.6), TotalTimeout)],
)
def test_a_proxy_trickling_its_connect_answer_is_cut_off_by_the_connect_and_total_timeouts(
    tls_upstream: FakeServer, certs: Certs, timeout: Timeout, error: type
) -> None:
    # each byte within the read timeout: only one deadline over the whole answer ends it (hadv29 03)
    slow = FakeServer()
    slow.on("CONNECT", "*", _trickle(b"HTTP/1.1 200 Connection established\r\nX-Slow: ", 4))
    try:
        url = hidden_url(tls_upstream, "https")
        with Flux0(url, proxy=slow.url, cacert=certs.ca, retry=quick(0), timeout=timeout) as client:
            started = time.monotonic()
            with pytest.raises(error):
                client.agents.list()
            assert time.monotonic() - started < 2
    finally:
        slow.close()


@pytest.mark.parametrize(
    "answer",
    [
        # the cut-off header block reads as a whole one to http.client: no tunnel was set up
        b"HTTP/1.1 200 Connection established\r\nX-Cut: hal",
        # bytes in the answer's own write: a buffered read took them off the socket and TLS began
        # on a garbled tunnel, a TLSError that is never retried (hadv30 04)
        b"HTTP/1.1 200 Connection established\r\n\r\nGARBAGE",
    ],
    ids=["hangs up inside its 200", "sends bytes right after its 200"],
)
def test_a_proxy_that_cuts_or_garbles_its_200_is_a_proxy_error_and_retried(
    tls_upstream: FakeServer, certs: Certs, answer: bytes
) -> None:
    def respond(req: Any, conn: Any) -> None:
        conn.send(answer)
        if answer.endswith(b"GARBAGE"):
            time.sleep(1)  # and keeps the connection open
        conn.close()

    proxy = FakeServer()
    proxy.on("CONNECT", "*", respond)
    try:
        url = hidden_url(tls_upstream, "https")
        with Flux0(url, proxy=proxy.url, cacert=certs.ca, retry=quick(1)) as client:
            with pytest.raises(ProxyError, match="closed or garbled the tunnel"):
                client.agents.list()
        assert proxy.connections == 2
    finally:
        proxy.close()


# -- hostile settings ---------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SETTING_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from(list(":/.@[]*%,\udcff")))


@given(no_proxy=_SETTING_TEXT, host=_SETTING_TEXT, port=st.integers(min_value=0, max_value=70000))
def test_no_proxy_matching_never_raises(no_proxy: str, host: str, port: int) -> None:
    assert no_proxy_matches(no_proxy, host, port) in (True, False)


@given(url=_SETTING_TEXT)
def test_any_proxy_setting_is_a_proxy_or_a_config_error(url: str) -> None:
    try:
        proxy = parse_proxy_url(url)
    except ConfigError:
        return
    assert proxy.host and 0 < proxy.port < 65536
    assert proxy.authorization is None or proxy.authorization.startswith("Basic ")


@given(url=_SETTING_TEXT, scheme=st.sampled_from(["", "http://", "https://", "http+unix://", "HTTP+UNIX://"]))
def test_any_server_url_is_an_origin_or_a_config_error(url: str, scheme: str) -> None:
    from flux0lite.urls import parse_server_url

    try:
        origin, _ = parse_server_url(scheme + url)
    except ConfigError:
        return
    assert origin.host and "\x00" not in origin.host
