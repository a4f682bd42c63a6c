"""flux0-sync through a proxy and with TLS files, from flags, the environment and the INI file."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
from flux0sync.cli import main
from flux0sync.config import load_config

from tests.certs import Certs, make_certs
from tests.daemon.helpers import assert_archive_equals_server, populate
from tests.fakeserver import FakeFlux0, FakeServer
from tests.netfixtures import HIDDEN, hidden_host, hidden_proxy
from tests.proxyserver import ForwardProxy


def run(args: List[str]) -> Tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdout=out, stderr=err)
    return code, err.getvalue()


@pytest.fixture(autouse=True)
def lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[str]]:
    """No proxy, TLS or config-file settings from outside; this process cannot resolve ``flux0.internal``."""
    yield from hidden_host(monkeypatch, clear=["FLUX0_SYNC_CONFIG"])


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with hidden_proxy(credentials=("sync", "s3cret")) as server:
        yield server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_once_through_the_proxy_flag(
    fake: FakeServer, fake_flux0: FakeFlux0, proxy: ForwardProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    populate(fake_flux0, 2, 6)
    db = str(tmp_path / "a.sqlite3")
    url = f"http://{HIDDEN}:{fake.port}"
    code, err = run(["--once", "--db", db, "--server-url", url, "--proxy", proxy.url_with("sync", "s3cret")])
    assert code == 0, err
    assert_archive_equals_server(db, fake_flux0)
    assert proxy.seen and all(s.target.startswith(url + "/api/") for s in proxy.seen)
    assert "s3cret" not in err + caplog.text


def test_once_through_the_proxy_environment_and_no_proxy(
    fake: FakeServer, fake_flux0: FakeFlux0, proxy: ForwardProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(fake_flux0, 2, 6)
    monkeypatch.setenv("HTTP_PROXY", proxy.url_with("sync", "s3cret"))
    db = str(tmp_path / "a.sqlite3")
    code, err = run(["--once", "--db", db, "--server-url", f"http://{HIDDEN}:{fake.port}"])
    assert code == 0, err
    assert_archive_equals_server(db, fake_flux0)
    seen = len(proxy.seen)
    assert seen > 0
    code, err = run(["--once", "--db", db, "--server-url", fake.url, "--no-proxy"])
    assert code == 0, err
    assert len(proxy.seen) == seen


def test_a_407_fails_the_pass(
    fake: FakeServer, fake_flux0: FakeFlux0, proxy: ForwardProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    populate(fake_flux0, 2, 6)
    code, _ = run(
        [
            "--once",
            "--db",
            str(tmp_path / "a.sqlite3"),
            "--server-url",
            f"http://{HIDDEN}:{fake.port}",
            "--proxy",
            proxy.url,
        ]
    )
    assert code == 1
    assert "wants credentials (407)" in caplog.text


@pytest.fixture
def mtls(certs: Certs) -> Iterator[FakeFlux0]:
    server = FakeServer(ssl_context=certs.server_context(require_client_cert=True, tls12=True))
    flux0 = FakeFlux0(server)
    populate(flux0, 2, 6)
    yield flux0
    server.close()


def test_tls_files_from_the_ini_file(mtls: FakeFlux0, certs: Certs, tmp_path: Path) -> None:
    db = str(tmp_path / "a.sqlite3")
    ini = tmp_path / "flux0-sync.ini"
    ini.write_text(
        f"[flux0-sync]\nserver_url = {mtls.server.url}\ndb = {db}\ncacert = {certs.ca}\n"
        f"cert = {certs.client_cert}\nkey = {certs.client_key}\nproxy = none\n"
    )
    code, err = run(["--once", "--config", str(ini)])
    assert code == 0, err
    assert_archive_equals_server(db, mtls)


def test_tls_files_from_flags_and_environment(
    mtls: FakeFlux0, certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "a.sqlite3")
    base = ["--once", "--db", db, "--server-url", mtls.server.url]
    code, err = run([*base, "--cacert", str(certs.ca)])
    assert code == 1, err  # no client certificate: the handshake is refused
    monkeypatch.setenv("FLUX0_CACERT", str(certs.ca))
    monkeypatch.setenv("FLUX0_CERT", str(certs.client_cert))
    code, err = run([*base, "--key", str(certs.client_key)])
    assert code == 0, err
    assert_archive_equals_server(db, mtls)


def test_bad_tls_settings_are_configuration_errors(tmp_path: Path) -> None:
    db = str(tmp_path / "a.sqlite3")
    code, err = run(
        ["--once", "--db", db, "--server-url", "https://localhost:1", "--cacert", str(tmp_path / "none.pem")]
    )
    assert code == 2 and "cannot read" in err
    code, err = run(["--once", "--db", db, "--server-url", "https://localhost:1", "--proxy", "socks5://127.0.0.1:1"])
    assert code == 2 and "not supported" in err


def test_settings_are_merged_like_the_others(tmp_path: Path) -> None:
    ini = tmp_path / "f.ini"
    ini.write_text("[flux0-sync]\ncacert = /etc/ini-ca.pem\nproxy = http://ini-proxy:3128\n")
    config = load_config({"config_file": str(ini), "proxy": "none"}, {"FLUX0_CACERT": "/etc/env-ca.pem"})
    assert (config.cacert, config.proxy) == ("/etc/env-ca.pem", "none")
    assert (
        load_config({"server_url": "http+unix://%2Frun%2Fflux0.sock"}, {}).server_url
        == "http+unix://%2Frun%2Fflux0.sock"
    )
