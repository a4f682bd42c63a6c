"""An error answer whose body cannot be read keeps its status.

The status types the error (``NotFoundError``, ``ServerError``, ...) and decides the retry; the
body only words the message. A body that is corrupt gzip, gzip cut short, shorter than its
``Content-Length`` or a chunked body cut off must therefore give the same error type, status and
number of attempts as the same status with a plain body; only the message changes (a note saying
the body could not be read, chained to why). A connection whose body was not read to its framed
end is never reused.
"""

from __future__ import annotations

import gzip
import json
import time
from typing import Any, Callable, Dict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flux0lite import (
    APIError,
    BadRequestError,
    DecodeError,
    Flux0,
    NotFoundError,
    ProxyAuthenticationError,
    RateLimitedError,
    ReadTimeout,
    Retry,
    ServerError,
    StreamError,
    Timeout,
    TotalTimeout,
)
from flux0lite.errors import error_for_status
from tests.fakeserver import Conn, FakeServer, Request, chunked, raw_response, sequence

Responder = Callable[[Request, Conn], None]

DOC = json.dumps({"detail": "session not found"}).encode()
GZIP = {"content-type": "application/json", "content-encoding": "gzip"}
PLAIN = {"content-type": "application/json"}
GOOD = json.dumps({"data": [{"id": "a", "name": "a", "type": "echo"}]}).encode()
CORRUPT = b"\x1f\x8b\x08\x00" + b"not deflate data " * 20
STATUSES = [503, 429, 404, 500]
TYPES = {503: ServerError, 429: RateLimitedError, 404: NotFoundError, 500: ServerError}


def plain(status: int) -> Responder:
    return lambda req, conn: conn.send(raw_response(status, DOC, PLAIN))


def corrupt_gzip(status: int) -> Responder:
    return lambda req, conn: conn.send(raw_response(status, CORRUPT, GZIP))


def truncated_gzip(status: int) -> Responder:
    cut = gzip.compress(DOC)[:-6]  # framed by its own (short) length: only the gzip trailer is missing
    return lambda req, conn: conn.send(raw_response(status, cut, GZIP))


def short_content_length(status: int) -> Responder:
    def respond(req: Request, conn: Conn) -> None:
        conn.send(raw_response(status, DOC, {**PLAIN, "content-length": str(len(DOC) + 50)}))
        conn.close()

    return respond


def chunked_cut_short(status: int) -> Responder:
    def respond(req: Request, conn: Conn) -> None:
        head = raw_response(status, b"", {**PLAIN, "transfer-encoding": "chunked"}, length=False)
        conn.send(head + chunked(DOC)[:-8])
        conn.close()

    return respond


def gzip_chunked_cut_short(status: int) -> Responder:
    def respond(req: Request, conn: Conn) -> None:
        head = raw_response(status, b"", {**GZIP, "transfer-encoding": "chunked"}, length=False)
        conn.send(head + chunked(gzip.compress(DOC))[:-10])  # cut inside the gzip trailer
        conn.close()

    return respond


FAULTS: Dict[str, Callable[[int], Responder]] = {
    "corrupt gzip": corrupt_gzip,
    "truncated gzip": truncated_gzip,
    "short content-length": short_content_length,
    "chunked cut short": chunked_cut_short,
    "gzip chunked cut short": gzip_chunked_cut_short,
}
# faults that leave the body unread before its framed end: the connection must not serve again
UNFRAMED = {"corrupt gzip", "short content-length", "chunked cut short", "gzip chunked cut short"}


def client_for(server: FakeServer, total: int = 2, **kwargs: Any) -> Flux0:
    kwargs.setdefault("timeout", Timeout(connect=2, read=2))
    return Flux0(server.url, retry=Retry(total=total, backoff_factor=0.0), **kwargs)


def outcome(server: FakeServer, responder: Responder) -> Any:
    """(error type, status, attempts) of GET /api/agents answered by ``responder`` each time."""
    server.on("GET", "/api/agents", responder)
    before = server.count("GET", "/api/agents")
    with client_for(server) as client, pytest.raises(APIError) as caught:
        client.agents.list()
    return type(caught.value), caught.value.status_code, server.count("GET", "/api/agents") - before


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("status", STATUSES)
def test_an_unreadable_error_body_is_typed_and_retried_by_its_status(fake: FakeServer, status: int, fault: str) -> None:
    expected = outcome(fake, plain(status))
    attempts = 3 if status in (503, 429) else 1
    assert expected == (TYPES[status], status, attempts)
    assert outcome(fake, FAULTS[fault](status)) == expected


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("status", STATUSES)
def test_a_retryable_status_with_an_unreadable_body_then_success(fake: FakeServer, status: int, fault: str) -> None:
    good: Responder = lambda req, conn: conn.send(raw_response(200, GOOD, PLAIN))  # noqa: E731
    fake.on("GET", "/api/agents", sequence(FAULTS[fault](status), good))
    with client_for(fake) as client:
        if status in (503, 429):
            assert [a.id for a in client.agents.list()] == ["a"]
            assert fake.count("GET", "/api/agents") == 2
        else:
            with pytest.raises(TYPES[status]):
                client.agents.list()
            assert fake.count("GET", "/api/agents") == 1


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_error_says_the_body_could_not_be_read_and_chains_why(fake: FakeServer, fault: str) -> None:
    fake.on("GET", "/api/agents", FAULTS[fault](404))
    with client_for(fake, total=0) as client, pytest.raises(NotFoundError) as caught:
        client.agents.list()
    error = caught.value
    assert error.status_code == 404
    assert "the body could not be read" in str(error)
    assert isinstance(error.body, str) and error.body.startswith("X (the body could not be read: ")
    assert "127.0.0.1" not in error.body  # the note names the fault, not the request again
    assert isinstance(error.__cause__, DecodeError if fault == "corrupt gzip" else StreamError)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_connection_is_reused_only_after_a_body_read_to_its_framed_end(fake: FakeServer, fault: str) -> None:
    fake.on("GET", "/api/agents/a", FAULTS[fault](404))
    fake.on("GET", "/api/agents", lambda req, conn: conn.send(raw_response(200, GOOD, PLAIN)))
    with client_for(fake, total=0) as client:
        with pytest.raises(NotFoundError):
            client.agents.retrieve("a")
        assert [a.id for a in client.agents.list()] == ["a"]  # the next call reads its own answer
        assert [a.id for a in client.agents.list()] == ["a"]
    assert fake.connections == (2 if fault in UNFRAMED else 1)


def test_a_post_stream_answered_503_with_corrupt_gzip_is_a_server_error_sent_once(fake: FakeServer) -> None:
    path = "/api/sessions/sess000001/events/stream"
    fake.on("POST", path, corrupt_gzip(503))
    with client_for(fake) as client, pytest.raises(ServerError) as caught:
        client.sessions.create_event("sess000001", "hello")
    assert caught.value.status_code == 503
    assert fake.count("POST", path) == 1  # a POST is never re-sent on a status, whatever its body


def stalled_body(status: int, stall: float) -> Responder:
    def respond(req: Request, conn: Conn) -> None:
        conn.send(raw_response(status, DOC, {**PLAIN, "content-length": str(len(DOC) + 50)}))
        time.sleep(stall)
        conn.close()

    return respond


def test_a_read_timeout_inside_an_error_body_keeps_its_status(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", stalled_body(404, 1.5))
    with client_for(fake, timeout=Timeout(connect=2, read=0.3)) as client, pytest.raises(NotFoundError) as caught:
        client.agents.list()
    assert isinstance(caught.value.__cause__, ReadTimeout)
    assert fake.count("GET", "/api/agents") == 1


def test_the_total_deadline_passing_inside_an_error_body_is_still_a_total_timeout(fake: FakeServer) -> None:
    fake.on("GET", "/api/agents", stalled_body(503, 1.5))
    with client_for(fake, timeout=Timeout(connect=2, read=5, total=0.4)) as client, pytest.raises(TotalTimeout):
        client.agents.list()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    status=st.sampled_from([400, 401, 403, 404, 405, 409, 422, 429, 500, 502, 503, 504, 599]),
    body=st.one_of(
        st.binary(max_size=300),
        st.integers(0, 60).map(lambda n: gzip.compress(DOC + b" " * 40)[:n]),
        st.binary(max_size=40).map(lambda tail: gzip.compress(DOC) + tail),
    ),
    encoding=st.sampled_from(["gzip", "x-gzip", "identity", ""]),
)
def test_any_error_body_gives_the_status_error(fake: FakeServer, status: int, body: bytes, encoding: str) -> None:
    headers: Dict[str, str] = {**PLAIN, "content-encoding": encoding} if encoding else PLAIN
    fake.on("GET", "/api/agents", lambda req, conn: conn.send(raw_response(status, body, headers)))
    with client_for(fake, total=0) as client, pytest.raises(APIError) as caught:
        client.agents.list()
    assert type(caught.value) is type(error_for_status(status, None, {}))
    assert caught.value.status_code == status
    assert str(caught.value).startswith(f"HTTP {status} ")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_407_whose_body_cannot_be_read_stays_the_proxys_refusal_and_chains_why(fake: FakeServer, fault: str) -> None:
    """The forward proxy's own 407 (``fake`` acting as the proxy) is typed by its status, as any
    error is, and chains why its body could not be read."""
    fake.on("GET", "/api/agents", FAULTS[fault](407))
    proxied = Flux0("http://flux0.internal:8080", proxy=fake.url, retry=Retry(total=2, backoff_factor=0.0))
    with proxied as client, pytest.raises(ProxyAuthenticationError, match="wants credentials") as caught:
        client.agents.list()
    assert caught.value.status_code == 407
    assert fake.count("GET", "/api/agents") == 1  # a proxy's refusal is never retried
    assert isinstance(caught.value.__cause__, DecodeError if fault == "corrupt gzip" else StreamError)


@pytest.mark.parametrize("loc", [None, 5, True, "body", {"a": 1}, [], ["body", "content", 0], [[1, 2]]])
def test_an_error_detail_with_any_loc_gives_the_typed_error(loc: Any) -> None:
    """hadv18 03: a validation item whose ``loc`` was null (or any non-list) raised a bare
    TypeError in place of the status's error, in the library, the CLI and flux0-sync status."""
    error = error_for_status(404, {"detail": [{"loc": loc, "msg": "bad"}, "plain", 7]}, {}, reason="Not Found")
    assert isinstance(error, NotFoundError)
    assert "bad" in str(error) and "plain" in str(error)


def test_an_error_detail_too_deep_to_print_falls_back_to_the_reason() -> None:
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    error = error_for_status(400, {"detail": [{"msg": deep}]}, {}, reason="Bad Request")
    assert isinstance(error, BadRequestError)
