"""TLS options against a loopback HTTPS server whose certificates are made for this run.

Verification is on by default and cannot be switched off; ``cacert`` replaces the trusted
store; ``cert``/``key`` present a client certificate to a server that demands one (mTLS).
"""

from __future__ import annotations

import io
import json
import os
import ssl
from pathlib import Path
from typing import Iterator, List

import pytest

from flux0lite import ConfigError, Flux0, Retry
from flux0lite.errors import APIConnectionError, TLSError
from tests.certs import Certs, make_certs
from tests.fakeserver import Conn, FakeServer, Request, json_response
from tests.netfixtures import no_outside_settings

AGENTS = {
    "data": [{"id": "a1", "name": "Echo", "type": "echo", "description": None, "created_at": "2026-11-25T00:00:00Z"}]
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(autouse=True)
def _no_ambient_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    no_outside_settings(monkeypatch)


def _serve(certs: Certs, *, mtls: bool = False, tls12: bool = False) -> FakeServer:
    context = certs.server_context(require_client_cert=mtls, tls12=tls12)
    return FakeServer(routes=[("GET", "/api/agents", json_response(200, AGENTS))], ssl_context=context)


@pytest.fixture
def https(certs: Certs) -> Iterator[FakeServer]:
    server = _serve(certs)
    yield server
    server.close()


@pytest.fixture
def mtls(certs: Certs) -> Iterator[FakeServer]:
    server = _serve(certs, mtls=True)
    yield server
    server.close()


@pytest.fixture
def mtls12(certs: Certs) -> Iterator[FakeServer]:
    """TLS 1.2 judges the client certificate inside the handshake, so refusals are deterministic."""
    server = _serve(certs, mtls=True, tls12=True)
    yield server
    server.close()


def test_verification_is_on_by_default_and_a_tls_failure_is_never_retried(https: FakeServer) -> None:
    with Flux0(https.url, retry=Retry(total=3, backoff_factor=0)) as client:
        with pytest.raises(TLSError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            client.agents.list()
    assert https.requests == []
    assert https.connections == 1


def test_cacert_makes_the_server_trusted(https: FakeServer, certs: Certs) -> None:
    with Flux0(https.url, cacert=certs.ca) as client:
        assert [a.id for a in client.agents.list()] == ["a1"]
        client.agents.list()
    assert https.connections == 1  # kept alive over TLS


def test_cacert_also_verifies_ip_addresses_and_accepts_str_paths(https: FakeServer, certs: Certs) -> None:
    with Flux0(f"https://127.0.0.1:{https.port}", cacert=str(certs.ca)) as client:
        assert client.agents.list()[0].name == "Echo"


def test_cacert_replaces_the_trusted_store(https: FakeServer, certs: Certs) -> None:
    with Flux0(https.url, cacert=certs.other_ca, retry=Retry(total=0)) as client:
        with pytest.raises(TLSError):
            client.agents.list()


def test_a_folder_of_hashed_certificates_works_as_cacert(https: FakeServer, certs: Certs, tmp_path: Path) -> None:
    folder = tmp_path / "capath"
    folder.mkdir()
    # the name OpenSSL looks up: <subject hash>.0
    subject_hash = _subject_hash(certs.ca)
    (folder / f"{subject_hash}.0").write_bytes(certs.ca.read_bytes())
    with Flux0(https.url, cacert=folder) as client:
        assert client.agents.list()[0].id == "a1"


def _subject_hash(pem: Path) -> str:
    import subprocess

    out = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(pem)], capture_output=True, text=True)
    return out.stdout.strip()


def test_ssl_cert_file_still_applies_without_cacert(
    https: FakeServer, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    with Flux0(https.url) as client:
        assert client.agents.list()[0].id == "a1"


def test_mtls_with_a_client_certificate(mtls: FakeServer, certs: Certs) -> None:
    with Flux0(mtls.url, cacert=certs.ca, cert=certs.client_cert, key=certs.client_key) as client:
        assert client.agents.list()[0].id == "a1"
    assert len(mtls.requests) == 1


def test_mtls_with_certificate_and_key_in_one_file(mtls: FakeServer, certs: Certs, tmp_path: Path) -> None:
    both = tmp_path / "client-with-key.pem"
    both.write_bytes(certs.client_cert.read_bytes() + certs.client_key.read_bytes())
    with Flux0(mtls.url, cacert=certs.ca, cert=both) as client:
        assert client.agents.list()[0].id == "a1"


def test_mtls_over_tls12_with_and_without_a_client_certificate(mtls12: FakeServer, certs: Certs) -> None:
    with Flux0(mtls12.url, cacert=certs.ca, retry=Retry(total=2, backoff_factor=0)) as client:
        with pytest.raises(TLSError, match="handshake"):
            client.agents.list()
    assert mtls12.requests == []
    assert mtls12.connections == 1  # a refused handshake is not retried
    with Flux0(mtls12.url, cacert=certs.ca, cert=certs.client_cert, key=certs.client_key) as client:
        assert client.agents.list()[0].id == "a1"


def test_mtls_over_tls13_without_a_client_certificate_is_a_connection_error(mtls: FakeServer, certs: Certs) -> None:
    # TLS 1.3 servers judge the client certificate after the handshake: the refusal arrives as
    # an alert (TLSError) or, when the server's close overtakes the alert, as a reset or an EOF
    # in the middle of the TLS session. Which one is a race; never an answer.
    with Flux0(mtls.url, cacert=certs.ca, retry=Retry(total=0)) as client:
        with pytest.raises(APIConnectionError):
            client.agents.list()
    assert mtls.requests == []


def test_a_certificate_the_server_does_not_trust_is_refused(mtls12: FakeServer, certs: Certs) -> None:
    # signed by another CA: the server cannot verify it
    with Flux0(
        mtls12.url, cacert=certs.ca, cert=certs.other_client_cert, key=certs.other_client_key, retry=Retry(total=0)
    ) as client:
        with pytest.raises(TLSError):
            client.agents.list()
    assert mtls12.requests == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cacert": "/nonexistent/ca.pem"}, "cannot read /nonexistent/ca.pem"),
        ({"key": "client.key"}, "needs its certificate"),
        ({"cert": "/nonexistent/c.pem"}, "cannot read"),
        ({"cacert": "\x00"}, "not a usable file name"),
        ({"cacert": 42}, "expected a file name"),
    ],
)
def test_bad_tls_files_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Flux0("https://localhost:1", **kwargs)


def test_files_that_are_not_pem_are_config_errors(certs: Certs, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\xff\xfe not a certificate \x00")
    with pytest.raises(ConfigError, match="no usable PEM certificate"):
        Flux0("https://localhost:1", cacert=junk)
    with pytest.raises(ConfigError, match="cannot use client certificate"):
        Flux0("https://localhost:1", cert=junk)
    with pytest.raises(ConfigError, match="does not match"):
        Flux0("https://localhost:1", cert=certs.client_cert, key=certs.server_key)
    with pytest.raises(ConfigError, match="is a folder"):
        Flux0("https://localhost:1", cert=tmp_path)


def test_an_encrypted_key_is_refused_instead_of_prompting(certs: Certs, tmp_path: Path) -> None:
    import subprocess

    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(certs.client_key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(ConfigError, match="is encrypted"):
        Flux0("https://localhost:1", cert=certs.client_cert, key=encrypted)


def test_ssl_context_and_tls_files_are_exclusive(certs: Certs) -> None:
    with pytest.raises(ConfigError, match="not both"):
        Flux0("https://localhost:1", ssl_context=ssl.create_default_context(), cacert=certs.ca)


def test_unreadable_cacert_is_a_config_error(certs: Certs, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    locked = tmp_path / "locked.pem"
    locked.write_bytes(certs.ca.read_bytes())
    locked.chmod(0)
    with pytest.raises(ConfigError, match="cannot read"):
        Flux0("https://localhost:1", cacert=locked)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("role", ["cacert", "cert", "key"])
def test_a_fifo_is_refused_without_blocking(role: str, certs: Certs, tmp_path: Path) -> None:
    # opening a FIFO for reading blocks until a writer comes: it must not even be opened that way
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    kwargs = {"cert": certs.client_cert, "key": fifo} if role == "key" else {role: fifo}
    with pytest.raises(ConfigError, match=f"{fifo} is not a regular file"):
        Flux0("https://localhost:1", **kwargs)


@pytest.mark.timeout(20)
def test_ssl_cert_file_naming_a_fifo_or_device_is_refused_without_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without cacert the system store loads, and OpenSSL opens what SSL_CERT_FILE names: a
    FIFO hung every https call for ever, whatever the timeouts (hadv21 03). It is checked as
    cacert is: when an https client is made, and when a context of the system store is made
    (a connection through a proxy to a plain-http server needs none at first)."""
    from flux0lite.tls import system_context

    fifo = tmp_path / "bundle.pem"
    os.mkfifo(fifo)
    for named in (str(fifo), "/dev/zero"):
        monkeypatch.setenv("SSL_CERT_FILE", named)
        with pytest.raises(ConfigError, match=f"the CA bundle that SSL_CERT_FILE names: {named} is not a regular file"):
            Flux0("https://localhost:1")
        with pytest.raises(ConfigError, match="SSL_CERT_FILE"):
            system_context()
        Flux0("http://localhost:1").close()  # no TLS, no store: nothing to refuse
    for skipped in (tmp_path / "missing.pem", tmp_path):  # a missing file or a folder: OpenSSL skips them
        monkeypatch.setenv("SSL_CERT_FILE", str(skipped))
        assert system_context().verify_mode == ssl.CERT_REQUIRED
        Flux0("https://localhost:1").close()


def test_the_cli_refuses_an_ssl_cert_file_fifo_as_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from flux0lite.cli import main

    fifo = tmp_path / "bundle.pem"
    os.mkfifo(fifo)
    monkeypatch.setenv("SSL_CERT_FILE", str(fifo))
    err = io.StringIO()
    code = main(
        ["--timeout", "1", "--server-url", "https://127.0.0.1:1", "agents", "list"], stdout=io.StringIO(), stderr=err
    )
    assert code == 2 and "SSL_CERT_FILE names" in err.getvalue() and "not a regular file" in err.getvalue()


@pytest.mark.parametrize("role", ["cacert", "cert"])
def test_a_device_is_refused(role: str) -> None:
    with pytest.raises(ConfigError, match="/dev/zero is not a regular file"):
        Flux0("https://localhost:1", **{role: "/dev/zero"})


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
@pytest.mark.parametrize("role", ["cacert", "cert"])
def test_a_file_whose_read_fails_is_a_config_error_naming_it(role: str) -> None:
    # /proc/self/mem opens, but reading at offset 0 (unmapped) fails with EIO
    with pytest.raises(ConfigError, match=rf"\({role}\): cannot read /proc/self/mem"):
        Flux0("https://localhost:1", **{role: "/proc/self/mem"})


def test_bytes_left_in_a_tls_record_after_an_answer_close_the_connection(certs: Certs) -> None:
    """hadv42 01: the rest of the TLS record an answer ended in sits decrypted in the SSL
    socket, where no poll of its descriptor shows it: the next call on the kept-alive
    connection read an answer nobody sent to it (a forged agent list) as its own."""
    calls: List[int] = []

    def answer(agent_id: str) -> bytes:
        body = json.dumps({"data": [{**AGENTS["data"][0], "id": agent_id}]}).encode()
        return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)

    def respond(req: Request, conn: Conn) -> None:
        calls.append(1)
        if len(calls) == 1:  # an answer, filler up to the reader's buffer, an answer never asked for
            real = answer("a1")
            conn.send(real + b"\0" * (io.DEFAULT_BUFFER_SIZE - len(real)) + answer("FORGED"))
        else:
            conn.send(answer(f"a{len(calls)}"))

    server = FakeServer(routes=[("GET", "/api/agents", respond)], ssl_context=certs.server_context())
    try:
        with Flux0(server.url, cacert=certs.ca, timeout=3, proxy=False) as client:
            assert client.agents.list()[0].id == "a1"
            assert client.agents.list()[0].id == "a2"  # on a new connection, not the leftover
    finally:
        server.close()
