"""A loopback server that answers every request with whatever bytes a test sets: no HTTP rules.

For property tests that play a hostile server: the answer may be any status line, any headers,
any body, interim answers, a connection left open. One server serves many examples; a test
sets ``answer`` before each. Every connection's thread ends when the server closes.

tests/hostile_server.py looks alike but is another server on purpose: it gives each connection
one seeded answer in paced pieces and then ends it (close, reset or bounded hang), and records
the request heads; this one keeps a connection alive for many requests, answers each with the
same bytes, and reads every request to its end so that the next one parses.
"""

from __future__ import annotations

import socket
import threading
from typing import List


class RawServer:
    def __init__(self) -> None:
        self.answer = b""
        self.keep_open = False  # after the answer: hold the connection open (the client must time out)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closing = threading.Event()
        self._threads: List[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn, self.answer, self.keep_open), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, conn: socket.socket, answer: bytes, keep_open: bool) -> None:
        conn.settimeout(5)
        try:
            while not self._closing.is_set():
                if not _read_request(conn):
                    return
                conn.sendall(answer)
                if not keep_open:
                    conn.shutdown(socket.SHUT_WR)
                    _drain(conn)
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._closing.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress (Linux)
        except OSError:
            pass
        self._listener.close()
        self._accepter.join(6)
        for thread in self._threads:
            thread.join(6)

    def __enter__(self) -> "RawServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _read_request(conn: socket.socket) -> bool:
    """Read one request (head and Content-Length body); False when the client closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return False
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            return False
        body += piece
    return True


def _drain(conn: socket.socket) -> None:
    """Read until the client closes, so closing never resets a connection it still reads."""
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
