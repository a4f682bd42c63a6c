"""A throwaway CA, a server certificate and a client certificate, made with the ``openssl`` binary.

The extensions are the ones Python 3.13's strict verification (VERIFY_X509_STRICT) insists on:
a critical CA basicConstraints with keyCertSign, key identifiers, and extended key usages.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pytest

from tests.netfixtures import HIDDEN

SERVER_NAMES = f"DNS:localhost,DNS:{HIDDEN},IP:127.0.0.1"

_EXTENSIONS = f"""
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {SERVER_NAMES}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Certs:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.folder / "client.key"

    @property
    def other_client_cert(self) -> Path:
        """A client certificate signed by :attr:`other_ca`."""
        return self.folder / "other-client.pem"

    @property
    def other_client_key(self) -> Path:
        return self.folder / "other-client.key"

    @property
    def other_ca(self) -> Path:
        """A second CA that signed nothing here: trusting only it must fail verification."""
        return self.folder / "other-ca.pem"

    def server_context(self, *, require_client_cert: bool = False, tls12: bool = False) -> ssl.SSLContext:
        """``tls12``: at most TLS 1.2, which judges a client certificate inside the handshake (TLS 1.3
        refuses it after, at the first read), so a refusal is the same on every run."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.server_cert), str(self.server_key))
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(str(self.ca))
        if tls12:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context


def _openssl(folder: Path, *args: str) -> None:
    result = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr[-500:]}")


def _key(folder: Path, name: str) -> None:
    _openssl(folder, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name)


def make_certs(folder: Path) -> Certs:
    """Create the files in ``folder``; skip the calling test when there is no ``openssl``."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl binary is not installed: no throwaway certificates")
    (folder / "ext.cnf").write_text(_EXTENSIONS)
    for ca in ("ca", "other-ca"):
        _key(folder, f"{ca}.key")
        _openssl(
            folder,
            *("req", "-x509", "-new", "-key", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2"),
            *("-subj", f"/CN=flux0lite test {ca}", "-config", "ext.cnf", "-extensions", "ca"),
        )
    for leaf, ca, kind in (
        ("server", "ca", "server"),
        ("client", "ca", "client"),
        ("other-client", "other-ca", "client"),
    ):
        _key(folder, f"{leaf}.key")
        _openssl(folder, "req", "-new", "-key", f"{leaf}.key", "-out", f"{leaf}.csr", "-subj", f"/CN={leaf}")
        signing: List[str] = ["-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial"]
        _openssl(
            folder,
            *("x509", "-req", "-in", f"{leaf}.csr", *signing, "-out", f"{leaf}.pem", "-days", "2"),
            *("-extfile", "ext.cnf", "-extensions", kind),
        )
    return Certs(folder)
