"""A client that leaves while the server has stopped reading from it is noticed.

The server stops reading while an app's queue is full or pipelined requests
wait; the client's FIN or reset then sits unread. The connection shell checks
paused sockets every ``timeout_paused_peer_check`` seconds, and WebSocket pings
go on (untimed) while paused, so that a client whose FIN could not even reach
us (our receive window shut) answers a ping with a reset. Each test starts a
real server, attacks it over loopback with raw sockets, and asserts that the
server closed its socket (no descriptor of the process is that connection
any more) and that the app heard of it.

This module is also the app those servers run (``tests.test_dead_peer:app``).

Source: issue 15, item 4 (outside attack).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.apps import hello
from tests.deploy import serving, wait_for
from tests.serving import recv_response
from tests.ws_apps import client_frame, handshake_request

#: What the servers here are given (seconds); the tests' bounds follow from them.
CHECK = 0.5
PING = 1.0
SLACK = 3.0

# -- the app (runs in the server process) ---------------------------------------------

#: id -> what the app saw.
EVENTS: dict[str, list[Any]] = {}
_RELEASE: dict[str, asyncio.Event] = {}


def _release(ident: str) -> asyncio.Event:
    return _RELEASE.setdefault(ident, asyncio.Event())


async def app(scope: dict, receive: Any, send: Any) -> None:
    """``/events?id=``: what was recorded; ``/release?id=``: let ``/stall``
    read; ``/hang?id=``: wait for http.disconnect and record it; ``/stall?id=``
    (HTTP or WebSocket): read nothing until released, then drain ``receive()``
    and record how it ended; anything else: 200 with the path."""
    if scope["type"] == "lifespan":
        return await hello(scope, receive, send)
    ident = parse_qs(scope["query_string"].decode()).get("id", ["-"])[0]
    path = scope["path"]
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await _release(ident).wait()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                EVENTS.setdefault(ident, []).append({"disconnect": message["code"]})
                return
    if path == "/hang":
        await receive()  # the (empty) request body
        message = await receive()  # only http.disconnect can come now
        EVENTS.setdefault(ident, []).append({"got": message["type"]})
        return
    if path == "/stall":
        await _release(ident).wait()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                EVENTS.setdefault(ident, []).append({"got": message["type"]})
                return
    if path == "/events":
        body = json.dumps(EVENTS.get(ident, [])).encode()
    elif path == "/release":
        _release(ident).set()
        body = b"released"
    else:
        body = path.encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


# -- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with serving(
        "tests.test_dead_peer:app",
        "--timeout-paused-peer-check",
        str(CHECK),
        "--timeout-ws-ping-interval",
        str(PING),
        "--timeout-app-close",
        "30",
    ) as running:
        yield running


def _get(server: Any, target: str) -> bytes:
    server.read_output(0)  # keep the server's output pipe drained
    with server.connect() as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return recv_response(sock)[2]


def _recorded(server: Any, ident: str, timeout: float) -> list:
    return wait_for(lambda: json.loads(_get(server, f"/events?id={ident}")), timeout, f"the app's record of {ident}")


def _held_ports(server: Any) -> set[int]:
    """Client ports of the TCP connections the server process holds open
    (its sockets' inodes matched against the kernel's connection tables)."""
    pid = server.proc.pid
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                if inode in inodes and int(local.rsplit(":", 1)[1], 16) == server.port:
                    ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


def _wait_held(server: Any, socks: list[socket.socket]) -> None:
    ports = {s.getsockname()[1] for s in socks}
    wait_for(lambda: ports <= _held_ports(server), 5, "the server to hold every connection")


def _wait_freed(server: Any, ports: set[int], timeout: float) -> None:
    wait_for(lambda: not ports & _held_ports(server), timeout, "the server to free every connection")


def _ident() -> str:
    return os.urandom(5).hex()


def test_websocket_client_leaves_while_queue_is_full(server):
    """A WebSocket app that is not calling receive(): the client fills the
    queue (more than limit_ws_queue messages) and closes. The server frees the
    connection within the check interval, and the app, once it reads, gets
    websocket.disconnect (1006). Source: issue 15, item 4 (outside attack)."""
    ident = _ident()
    sock = server.connect()
    sock.sendall(handshake_request(f"/stall?id={ident}"))
    assert b" 101 " in sock.recv(65536)
    sock.sendall(b"".join(client_frame(2, b"m" * 100) for _ in range(40)))
    _wait_held(server, [sock])
    port = sock.getsockname()[1]
    started = time.monotonic()
    sock.close()
    _wait_freed(server, {port}, CHECK + SLACK)
    assert time.monotonic() - started <= CHECK + SLACK
    _get(server, f"/release?id={ident}")
    assert _recorded(server, ident, 5) == [{"disconnect": 1006}]


def test_twenty_websocket_clients_fill_the_window_and_leave(server):
    """Twenty clients each send until the server's receive window is shut and
    close: their FINs cannot reach the server, but the pings the server keeps
    sending while paused draw resets, so every connection is freed within the
    ping interval plus the check interval. Source: issue 15, item 4 (outside attack)."""
    idents = [_ident() for _ in range(20)]
    socks = []
    frame = client_frame(2, b"w" * 16000)
    try:
        for ident in idents:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            sock.settimeout(10)
            sock.connect((server.host, server.port))
            sock.sendall(handshake_request(f"/stall?id={ident}"))
            assert b" 101 " in sock.recv(65536)
            socks.append(sock)
        for sock in socks:
            sock.setblocking(False)
            try:
                while True:
                    sock.send(frame)
            except BlockingIOError:
                pass  # the server's window is shut: it stopped reading
        _wait_held(server, socks)
    finally:
        ports = {sock.getsockname()[1] for sock in socks}
        started = time.monotonic()
        for sock in socks:
            sock.close()
    _wait_freed(server, ports, PING + CHECK + SLACK)
    assert time.monotonic() - started <= PING + CHECK + SLACK
    for ident in idents:
        _get(server, f"/release?id={ident}")
    for ident in idents:
        assert _recorded(server, ident, 5) == [{"disconnect": 1006}]


def test_http_client_leaves_behind_a_pipeline_pause(server):
    """A hanging request with 100 pipelined requests behind it (reading paused
    by the pipeline bound); the client closes. The app's receive() gets
    http.disconnect and the server closes the socket within the check interval.
    Source: issue 15, item 4 (outside attack)."""
    ident = _ident()
    sock = server.connect()
    sock.sendall(
        f"GET /hang?id={ident} HTTP/1.1\r\nHost: t\r\n\r\n".encode() + b"GET /quick HTTP/1.1\r\nHost: t\r\n\r\n" * 100
    )
    _wait_held(server, [sock])
    port = sock.getsockname()[1]
    started = time.monotonic()
    sock.close()
    assert _recorded(server, ident, CHECK + SLACK) == [{"got": "http.disconnect"}]
    _wait_freed(server, {port}, CHECK + SLACK)
    assert time.monotonic() - started <= CHECK + SLACK


def test_http_client_leaves_while_its_body_is_unread(server):
    """A POST whose app reads nothing: the server pauses once the body queue is
    full; the client sends some more and closes. The connection is freed within
    the check interval, and the app, once it reads, gets http.disconnect.
    Source: issue 15, item 4 (outside attack)."""
    ident = _ident()
    sock = server.connect()
    sock.sendall(f"POST /stall?id={ident} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n".encode())
    sock.sendall(b"b" * (96 * 1024))
    _wait_held(server, [sock])
    port = sock.getsockname()[1]
    started = time.monotonic()
    sock.close()
    _wait_freed(server, {port}, CHECK + SLACK)
    assert time.monotonic() - started <= CHECK + SLACK
    _get(server, f"/release?id={ident}")
    assert _recorded(server, ident, 5) == [{"got": "http.disconnect"}]


def test_paused_healthy_websocket_client_is_kept():
    """A healthy client of an app that does not read is not dropped: while
    paused, pings are not timed (their pongs cannot be read) and the socket
    check finds the client there. Source: issue 15, item 4 (outside attack)."""
    with serving(
        "tests.test_dead_peer:app",
        "--timeout-paused-peer-check",
        "0.2",
        "--timeout-ws-ping-interval",
        "0.2",
        "--timeout-ws-ping",
        "0.3",
    ) as server:
        ident = _ident()
        sock = server.connect()
        try:
            sock.sendall(handshake_request(f"/stall?id={ident}"))
            assert b" 101 " in sock.recv(65536)
            sock.sendall(b"".join(client_frame(2, b"m" * 100) for _ in range(40)))
            # Pings keep coming while paused (each a 2-byte head and "paused");
            # the client answers none of them (its pongs would not be read anyway).
            sock.settimeout(5)
            seen = b""
            while seen.count(b"paused") < 5:  # five ping intervals, well past the ping timeout
                chunk = sock.recv(65536)
                assert chunk, "the server closed a healthy paused connection"
                seen += chunk
            _get(server, f"/release?id={ident}")
            sock.sendall(client_frame(8, b"\x03\xe8"))
            assert _recorded(server, ident, 5) == [{"disconnect": 1000}]
        finally:
            sock.close()


def test_tls_client_leaves_behind_a_pipeline_pause(tmp_path):
    """The same over TLS: the check reaches the TCP socket under Twisted's TLS
    protocol. Source: issue 15, item 4 (outside attack)."""
    import ssl

    from tests.deploy import make_certs

    certs = make_certs(tmp_path)
    endpoint = f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    with serving(
        "tests.test_dead_peer:app", "--timeout-paused-peer-check", str(CHECK), endpoint=endpoint
    ) as tls_server:
        context = ssl.create_default_context(cafile=str(certs["ca"]))
        ident = _ident()
        sock = context.wrap_socket(tls_server.connect(), server_hostname="localhost")
        sock.sendall(
            f"GET /hang?id={ident} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
            + b"GET /quick HTTP/1.1\r\nHost: t\r\n\r\n" * 100
        )
        _wait_held(tls_server, [sock])
        port = sock.getsockname()[1]
        started = time.monotonic()
        sock.close()
        _wait_freed(tls_server, {port}, CHECK + SLACK)
        assert time.monotonic() - started <= CHECK + SLACK
