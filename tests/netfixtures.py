"""Network scaffolding the proxy, TLS and timeout tests share, each piece said once here.

- :data:`HIDDEN` is a name only the test forward proxy resolves; :func:`hidden_host` makes this
  process unable to resolve it (and records every attempt), so a request that reached it at all
  went through the proxy, and no DNS query left the machine.
- :func:`hidden_proxy` is that forward proxy (tests/proxyserver.py).
- :func:`refused_port` and :class:`BlackHole` are loopback ports that refuse, or never complete,
  a connection: a dead server without waiting, and a connect that hangs until its timeout.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Iterable, Iterator, List, Optional, Tuple

import pytest

from tests.proxyserver import ForwardProxy

HIDDEN = "flux0.internal"

# Every variable that decides whether, and through which proxy, a request goes (each also in upper
# case); REQUEST_METHOD because in a CGI environment HTTP_PROXY is not trusted (httpoxy).
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD")
# Every variable that decides which certificates a client trusts or presents.
TLS_VARIABLES = ("FLUX0_CACERT", "FLUX0_CERT", "FLUX0_KEY", "SSL_CERT_FILE", "SSL_CERT_DIR")


def no_outside_settings(monkeypatch: pytest.MonkeyPatch, *, clear: Iterable[str] = ()) -> None:
    """No proxy or TLS setting, nor any variable in ``clear``, comes from the environment the tests run in."""
    for name in (*PROXY_VARIABLES, *TLS_VARIABLES, *clear):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def hidden_host(monkeypatch: pytest.MonkeyPatch, *, clear: Iterable[str] = ()) -> Iterator[List[str]]:
    """The body of an autouse fixture: ``yield from hidden_host(monkeypatch)``.

    :func:`no_outside_settings`, and this process cannot resolve :data:`HIDDEN`. Yields the list
    of the attempts to resolve it; after the test that list must still be empty.
    """
    no_outside_settings(monkeypatch, clear=clear)
    attempts: List[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.lower().rstrip(".").endswith(HIDDEN):
            attempts.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert attempts == [], "the client tried to resolve the hidden host itself"


def hidden_proxy(
    *, credentials: Optional[Tuple[str, str]] = None, connect_status: Optional[int] = None
) -> ForwardProxy:
    """A forward proxy that alone resolves :data:`HIDDEN` (to 127.0.0.1); use it in a ``with``."""
    return ForwardProxy({HIDDEN: "127.0.0.1"}, credentials=credentials, connect_status=connect_status)


def refused_port() -> int:
    """A loopback port nothing listens on: bound, then released, so a connection is refused at once.

    (scripts/flux0_server.py's ``free_port`` makes the same call for a port its server is about to
    take; the launcher stays importable without tests/, and the tests need no launcher for this.)
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BlackHole:
    """A loopback port that never completes a connection: its accept queue is kept full.

    The kernel then drops new SYNs, so a connect hangs until the client's connect timeout.
    Use it in a ``with``, or call :meth:`close`.
    """

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port: int = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.fillers: List[socket.socket] = []
        try:
            for _ in range(4):  # the kernel queues backlog + 1; more to be sure
                filler = socket.socket()
                self.fillers.append(filler)
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", self.port))
            time.sleep(0.2)  # the fillers' handshakes complete and take the queue
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for sock in [*self.fillers, self.listener]:
            sock.close()

    def __enter__(self) -> "BlackHole":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
