"""Hostile-server cases that need their own process or a lot of bytes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from flux0lite import ChunkEvent, Flux0, Retry, StreamError, Timeout
from tests.conftest import ROOT, subprocess_env
from tests.fakeserver import Conn, FakeServer, Request, chunked, raw_response

PATH = "/api/sessions/sess000001/events/stream"

_HUGE_LINE_CLIENT = """
import resource, sys
from flux0lite import Flux0, ResponseTooLargeError, Timeout, Retry
client = Flux0(sys.argv[1], timeout=Timeout(5, 20), retry=Retry(total=0))
try:
    for _ in client.sessions.create_event("sess000001", "x"):
        pass
    print("NO ERROR")
except ResponseTooLargeError as exc:
    print("ResponseTooLargeError", exc)
# VmHWM is this program's own peak; ru_maxrss would include the forking parent's size on Linux
try:
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("peak_rss_kb", peak)
"""


def test_100_mb_line_is_rejected_with_bounded_memory(fake: FakeServer) -> None:
    block = b"x" * (1024 * 1024)

    def respond(req: Request, conn: Conn) -> None:
        conn.send(
            raw_response(200, b"", {"content-type": "text/event-stream", "transfer-encoding": "chunked"}, length=False)
        )
        try:
            conn.send(chunked(b"data: "))
            for _ in range(100):
                conn.send(chunked(block))
            conn.send(chunked(b"\n\n") + b"0\r\n\r\n")
        except OSError:
            pass  # the client hung up once the line went over its limit

    fake.on("POST", PATH, respond)
    proc = subprocess.run(
        [sys.executable, "-c", _HUGE_LINE_CLIENT, fake.url],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        cwd=str(ROOT),
    )
    assert "ResponseTooLargeError" in proc.stdout, proc.stdout + proc.stderr
    peak_kb = int(proc.stdout.split("peak_rss_kb")[1])
    # the default limit is 16 MiB; the 100 MB line must never be held whole
    print("peak RSS KiB", peak_kb)
    assert peak_kb < 80 * 1024, f"peak RSS {peak_kb} KiB"


def test_stream_closed_without_final_chunk_is_an_error(fake: FakeServer) -> None:
    complete = (
        b'event: chunk\ndata: {"event_id": "e", "seq": 0, "patches": [{"op": "add", "path": "/-", "value": "Hi"}]}\n\n'
    )

    def respond(req: Request, conn: Conn) -> None:
        conn.send(
            raw_response(200, b"", {"content-type": "text/event-stream", "transfer-encoding": "chunked"}, length=False)
        )
        conn.send(chunked(complete))
        time.sleep(0.05)
        conn.close()  # no terminating zero-length chunk: the reply was cut short

    fake.on("POST", PATH, respond)
    with Flux0(fake.url, timeout=Timeout(2, 2), retry=Retry(total=0)) as client:
        stream = client.sessions.create_event("sess000001", "x")
        assert isinstance(next(stream), ChunkEvent)
        with pytest.raises(StreamError):
            next(stream)
        assert not stream.finished
        assert stream.assembler.text == "Hi"  # what did arrive is kept


def test_stall_mid_stream_hits_read_timeout_not_a_hang(fake: FakeServer) -> None:
    def respond(req: Request, conn: Conn) -> None:
        conn.send(
            raw_response(200, b"", {"content-type": "text/event-stream", "transfer-encoding": "chunked"}, length=False)
        )
        conn.send(chunked(b'event: chunk\ndata: {"event_id": "e", "patches": []}\n\nevent: chu'))
        time.sleep(5)

    fake.on("POST", PATH, respond)
    from flux0lite import ReadTimeout

    with Flux0(fake.url, timeout=Timeout(2, 0.4), retry=Retry(total=0)) as client:
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            list(client.sessions.create_event("sess000001", "x"))
        assert time.monotonic() - started < 3
