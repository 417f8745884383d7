"""WebSocket under load: an echo soak where nothing may be lost or reordered, and the memory cost
of idle connections measured on the server process (VmRSS from /proc)."""

from __future__ import annotations

import asyncio
import random
import resource
import socket

from websockets.asyncio.client import connect

from tests.serving import start_server
from tests.ws_apps import handshake_request

SOAK_MESSAGES = 20_000
IDLE_CONNECTIONS = 2_000
#: Documented in docs/websocket.rst ("Memory"): measured about 14.4 KiB per idle
#: WebSocket (Python 3.11, Linux x86-64); the bound leaves room for other builds.
MAX_RSS_PER_CONNECTION = 48 * 1024


def test_echo_soak_nothing_lost_or_reordered():
    """20,000 text and binary messages of random sizes, sent without waiting, come back complete and in order."""
    server = start_server("tests.ws_apps:app")
    rng = random.Random(1234)
    sizes = [rng.choice((0, 1, 10, 100, 1000, 5000)) for _ in range(SOAK_MESSAGES)]

    def message(i: int) -> str | bytes:
        body = i.to_bytes(4, "big") + rng.randbytes(sizes[i])
        return body.hex() if i % 2 else body

    messages = [message(i) for i in range(SOAK_MESSAGES)]

    async def soak() -> list:
        async with connect(f"ws://127.0.0.1:{server.port}/echo", proxy=None, max_size=None) as ws:

            async def sender() -> None:
                for m in messages:
                    await ws.send(m)

            task = asyncio.create_task(sender())
            received = [await asyncio.wait_for(ws.recv(), 30) for _ in range(SOAK_MESSAGES)]
            await task
            return received

    try:
        received = asyncio.run(soak())
        assert len(received) == SOAK_MESSAGES
        mismatched = [i for i, (a, b) in enumerate(zip(received, messages, strict=True)) if a != b]
        assert mismatched == [], f"{len(mismatched)} messages lost, changed or reordered, first at {mismatched[:5]}"
    finally:
        assert server.stop() == 0


def rss(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_idle(host: str, port: int, n: int, batch: int = 40) -> list[socket.socket]:
    """``n`` accepted WebSockets to /echo, opened ``batch`` at a time (the listen backlog is 50)."""
    sockets: list[socket.socket] = []
    request = handshake_request("/echo")
    while len(sockets) < n:
        group = [socket.create_connection((host, port), timeout=10) for _ in range(min(batch, n - len(sockets)))]
        for sock in group:
            sock.sendall(request)
        for sock in group:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                assert chunk, head
                head += chunk
            assert head.startswith(b"HTTP/1.1 101 "), head
        sockets += group
    return sockets


def test_idle_connections_cost_bounded_memory():
    """2,000 idle WebSockets (app awaiting receive) cost the server a bounded amount of RSS each."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * IDLE_CONNECTIONS + 500  # the server inherits the limit; the test holds the other ends
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted, hard)
        )
    server = start_server("tests.ws_apps:app")
    warm: list[socket.socket] = []
    idle: list[socket.socket] = []
    try:
        warm = open_idle(server.host, server.port, 200)  # allocator pools and code paths warmed up
        before = rss(server.proc.pid)
        idle = open_idle(server.host, server.port, IDLE_CONNECTIONS)
        after = rss(server.proc.pid)
        per_connection = (after - before) / IDLE_CONNECTIONS
        print(f"RSS per idle WebSocket: {per_connection / 1024:.1f} KiB ({before >> 20} -> {after >> 20} MiB)")
        assert per_connection < MAX_RSS_PER_CONNECTION
        # All of them still work.
        for sock in (idle[0], idle[-1]):
            sock.sendall(bytes([0x81, 0x82, 0, 0, 0, 0]) + b"hi")
            assert sock.recv(16) == b"\x81\x02hi"
    finally:
        for sock in warm + idle:
            sock.close()
        assert server.stop() == 0
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
