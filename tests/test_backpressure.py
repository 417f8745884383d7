"""Flow control both ways keeps the server's memory bounded (real sockets, real sizes)."""

from __future__ import annotations

import socket
import time

from tests.serving import recv_response, start_server

MIB = 1024 * 1024


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of process ``pid`` from /proc, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_large_upload_to_slow_app_keeps_rss_bounded():
    """A 100 MiB upload to an app that reads slowly is paced by the app, not buffered."""
    server = start_server("tests.apps:slow_upload", "--limit-request-body", "0")
    try:
        pid = server.proc.pid
        before = rss_kib(pid)
        size = 100 * MIB
        block = b"u" * (256 * 1024)
        with server.connect(timeout=60) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
            for _ in range(size // len(block)):
                sock.sendall(block)
            _status, _headers, body = recv_response(sock, timeout=60)
        assert int(body) == size
        peak = rss_kib(pid, "VmHWM")
        assert peak - before < 32 * 1024, f"RSS grew {peak - before} KiB"
    finally:
        server.stop()


def test_large_response_to_slow_reader_keeps_rss_bounded():
    """A 200 MiB streamed response to a slow reader makes send() wait, not buffer."""
    server = start_server("tests.apps:stream")
    try:
        pid = server.proc.pid
        before = rss_kib(pid)
        with server.connect(timeout=60) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(b"GET /?mib=200 HTTP/1.1\r\nHost: a\r\n\r\n")
            received = 0
            # Read slowly for the first 8 MiB: a server without back-pressure
            # would have buffered the whole 200 MiB by then.
            while received < 8 * MIB:
                chunk = sock.recv(65536)
                assert chunk
                received += len(chunk)
                time.sleep(0.002)
            mid = rss_kib(pid)
            while True:
                chunk = sock.recv(1024 * 1024)
                if not chunk:
                    raise AssertionError("connection closed early")
                received += len(chunk)
                if chunk.endswith(b"0\r\n\r\n"):
                    break
        assert received > 200 * MIB
        assert mid - before < 32 * 1024, f"RSS grew {mid - before} KiB while the client read slowly"
        assert rss_kib(pid, "VmHWM") - before < 48 * 1024
    finally:
        server.stop()
