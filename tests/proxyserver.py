"""A stdlib forward proxy for tests, on loopback: absolute-form requests and CONNECT tunnels.

It resolves only the names in its ``hosts`` map (e.g. ``flux0.internal`` -> ``127.0.0.1``) and
IP literals, so a client that reaches ``flux0.internal`` at all must have gone through it.
Forwarded responses keep their framing (chunked stays chunked, piece by piece), so streams
stream and the client's connection to the proxy stays alive between requests. Everything the
proxy sees is recorded for the tests to inspect.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import select
import socket
import socketserver
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

from tests.fakeserver import read_request

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer", "upgrade"}


@dataclass
class Seen:
    """One request as the proxy received it (a CONNECT, or a forwarded request)."""

    method: str
    target: str
    headers: Dict[str, str]
    client_port: int


class ForwardProxy:
    """Start on construction; ``close()`` stops it and every connection it holds open."""

    def __init__(
        self,
        hosts: Optional[Dict[str, str]] = None,
        *,
        credentials: Optional[Tuple[str, str]] = None,
        connect_status: Optional[int] = None,
    ) -> None:
        self.hosts = {k.lower(): v for k, v in (hosts or {}).items()}
        self.credentials = credentials
        self.connect_status = connect_status  # answer every CONNECT with this status instead
        self.seen: List[Seen] = []
        self.connections = 0
        self.tunnels = 0
        self.lock = threading.Lock()
        self._sockets: List[socket.socket] = []
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def url_with(self, user: str, password: str) -> str:
        quote = urllib.parse.quote
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def resolve(self, host: str) -> Optional[str]:
        host = host.lower().strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return self.hosts.get(host)
        return host

    def authorized(self, headers: Dict[str, str]) -> bool:
        if self.credentials is None:
            return True
        token = base64.b64encode(":".join(self.credentials).encode()).decode()
        return headers.get("proxy-authorization") == f"Basic {token}"

    def track(self, sock: socket.socket) -> None:
        with self.lock:
            self._sockets.append(sock)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> "ForwardProxy":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: ForwardProxy


def _answer(status: int, reason: str, headers: Optional[Dict[str, str]] = None, body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        proxy = self.server.proxy
        client: socket.socket = self.request
        client.settimeout(30)
        proxy.track(client)
        with proxy.lock:
            proxy.connections += 1
        # unbuffered: after a CONNECT, no byte of the tunnel may be stuck in a reader's buffer
        reader: BinaryIO = client.makefile("rb", buffering=0)  # type: ignore[assignment]
        try:
            while self._one_request(proxy, client, reader):
                pass
        except (OSError, ValueError, http.client.HTTPException):
            pass
        finally:
            reader.close()
            client.close()

    def _one_request(self, proxy: ForwardProxy, client: socket.socket, reader: BinaryIO) -> bool:
        request = read_request(reader)
        if request is None:
            return False
        method, target, headers, body = request.method, request.target, request.headers, request.body
        with proxy.lock:
            proxy.seen.append(Seen(method, target, headers, client.getpeername()[1]))
        if not proxy.authorized(headers):
            client.sendall(_answer(407, "Proxy Authentication Required", {"Proxy-Authenticate": 'Basic realm="test"'}))
            return True
        if method == "CONNECT":
            self._tunnel(proxy, client, target)
            return False
        return self._forward(proxy, client, method, target, headers, body)

    def _tunnel(self, proxy: ForwardProxy, client: socket.socket, target: str) -> None:
        if proxy.connect_status is not None:
            client.sendall(_answer(proxy.connect_status, "Refused By Test"))
            return
        host, _, port = target.rpartition(":")
        address = proxy.resolve(host)
        if address is None:
            client.sendall(_answer(502, "Unknown Host"))
            return
        try:
            upstream = socket.create_connection((address, int(port)), timeout=5)
        except OSError:
            client.sendall(_answer(502, "Connect Failed"))
            return
        proxy.track(upstream)
        with proxy.lock:
            proxy.tunnels += 1
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        _pipe(client, upstream)

    def _forward(
        self, proxy: ForwardProxy, client: socket.socket, method: str, target: str, headers: Dict[str, str], body: bytes
    ) -> bool:
        parts = urllib.parse.urlsplit(target)
        address = proxy.resolve(parts.hostname or "") if parts.scheme == "http" else None
        if address is None:
            client.sendall(_answer(502, "Unknown Host", body=b"proxy: cannot resolve"))
            return True
        upstream = http.client.HTTPConnection(address, parts.port or 80, timeout=30)
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            upstream.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                if name not in _HOP_BY_HOP:
                    upstream.putheader(name, value)
            upstream.endheaders(body or None)
            response = upstream.getresponse()
            out = [f"HTTP/1.1 {response.status} {response.reason}"]
            out += [
                f"{k}: {v}" for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | {"transfer-encoding"}
            ]
            if response.chunked:
                out.append("Transfer-Encoding: chunked")
            keep_alive = response.chunked or response.length is not None
            if not keep_alive:
                out.append("Connection: close")
            client.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            while True:
                piece = response.read1(65536)
                if not piece:
                    break
                client.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if response.chunked else piece)
            if response.chunked:
                client.sendall(b"0\r\n\r\n")
            return keep_alive and headers.get("connection", "").lower() != "close"
        finally:
            upstream.close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    a.settimeout(None)
    b.settimeout(None)
    try:
        while True:
            readable, _, _ = select.select([a, b], [], [], 30)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()
