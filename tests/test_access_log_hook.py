"""The connection's access-log hook is the one path to the access log and the
metrics: a recording sink put on the factory (where the server puts its
:class:`~twisted_asgi.server.AccessLog` or its :class:`~twisted_asgi.metrics.Metrics`)
sees every response of HTTP/1.1, HTTP/2 and WebSocket (over HTTP/1.1 and over
an HTTP/2 stream), the error responses the server writes itself and requests
it refuses, each exactly once, with the client's address and a duration read
from the connection's clock.

The shells run without sockets (StringTransport, Twisted's ``Clock`` as the
factory's scheduler, an asyncio loop driven by hand), so the durations are
exact: the clock only moves when the test advances it.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests.conftest import settle
from tests.h2frames import Frames, parse_frames
from tests.ws_apps import app, client_frame, close_payload, handshake_request
from twisted_asgi.config import Config
from twisted_asgi.server import ASGIFactory

PACKAGE = Path(__file__).resolve().parent.parent / "twisted_asgi"


class Sink:
    """Records what the connections log (the access-log sink's two methods)."""

    def __init__(self) -> None:
        self.lines: list[tuple[Any, ...]] = []

    def log_http(self, info: Any, request: Any, status: int, size: int, duration: float) -> None:
        self.lines.append(("http", info.client, _version(request), _method(request), status, size, duration))

    def log_websocket(self, info: Any, request: Any, kind: str, code: int, duration: float) -> None:
        self.lines.append(("ws", info.client, request.http_version, kind, code, duration))


def _method(request: Any) -> str | None:
    return None if request is None else request.method.decode()


def _version(request: Any) -> str | None:
    return None if request is None else request.http_version


class Conn:
    """One server connection over a StringTransport, with ``sink`` on its factory."""

    def __init__(self, loop: asyncio.AbstractEventLoop, **config: Any) -> None:
        self.loop = loop
        self.clock = Clock()
        self.factory = ASGIFactory(app, Config(**config), self.clock)
        self.sink = Sink()
        self.factory.access_log = self.sink  # type: ignore[assignment]
        self.factory.runner._loop = loop
        self.factory.lifespan_state = {}
        self.proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 80), peerAddress=IPv4Address("TCP", "127.0.0.1", 4321)
        )
        self.proto.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)
        settle(self.loop, self.clock)

    def later(self, seconds: float) -> None:
        self.clock.advance(seconds)
        settle(self.loop, self.clock)

    def lose(self) -> None:
        self.proto.connectionLost(Failure(ConnectionError("lost")))
        settle(self.loop, self.clock)


CLIENT = ("127.0.0.1", 4321)


def test_http11_responses_and_refusals(loop):
    """A response, a request refused with its request line known (413, named
    in the line), and one refused before it (400, no request): one line each."""
    c = Conn(loop, limit_request_body_bytes=10)
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.transport.value().startswith(b"HTTP/1.1 200 ")
    c.send(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    assert b"HTTP/1.1 413 " in c.transport.value()
    assert [line[:5] for line in c.sink.lines] == [
        ("http", CLIENT, "1.1", "GET", 200),
        ("http", CLIENT, "1.1", "POST", 413),
    ]
    assert c.sink.lines[1][5] > 0  # the error page's body bytes
    bad = Conn(loop)
    bad.send(b"\x00\x01 nonsense\r\n\r\n")
    assert bad.transport.value().startswith(b"HTTP/1.1 400 ")
    assert bad.sink.lines == [("http", CLIENT, None, None, 400, bad.sink.lines[0][5], 0.0)]


def test_http11_duration_is_the_clock_from_request_to_response(loop):
    """The duration is the connection's clock from the request to the end of
    its response (the app waits for the clock here)."""

    async def slow(scope, receive, send):
        await receive()
        sleep = asyncio.get_running_loop().create_future()
        clock.callLater(2.5, sleep.set_result, None)
        await sleep
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    c = Conn(loop)
    clock = c.clock
    c.factory.app = c.factory.runner.app = slow
    c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.sink.lines == []
    c.later(2.5)
    assert c.sink.lines == [("http", CLIENT, "1.1", "GET", 204, 0, 2.5)]


def test_http11_head_timeout_is_logged(loop):
    """The 408 of a request head that never completes is a response too."""
    c = Conn(loop, timeout_request_head=5)
    c.send(b"GET / HTTP/1.1\r\nHost:")
    c.later(5)
    assert b"HTTP/1.1 408 " in c.transport.value()
    assert [line[:5] for line in c.sink.lines] == [("http", CLIENT, None, None, 408)]


def test_http2_streams(loop):
    """Each HTTP/2 stream's response (prior-knowledge h2c) is one line with version 2."""
    c = Conn(loop)
    f = Frames()
    c.send(f.preface() + f.settings(ack=True) + f.request(1, "/one") + f.request(3, "/two"))
    assert sorted(line[:5] for line in c.sink.lines) == [("http", CLIENT, "2", "GET", 200)] * 2


def test_websocket_over_http11(loop):
    """WSCONNECT (101, the handshake's duration), WSDISCONNECT (the close code,
    the seconds the WebSocket was open), a refused handshake (the app closed
    before accepting: 403) and the app's denial response (its own status)."""
    c = Conn(loop)
    c.send(handshake_request("/echo"))
    assert c.transport.value().startswith(b"HTTP/1.1 101 ")
    c.later(3)
    c.send(client_frame(0x8, close_payload(1000)))
    c.lose()
    assert c.sink.lines == [
        ("ws", CLIENT, "1.1", "WSCONNECT", 101, 0.0),
        ("ws", CLIENT, "1.1", "WSDISCONNECT", 1000, 3.0),
    ]
    deny = Conn(loop)
    deny.send(handshake_request("/deny"))
    assert deny.transport.value().startswith(b"HTTP/1.1 403 ")
    assert [line[:5] for line in deny.sink.lines] == [("http", CLIENT, "1.1", "GET", 403)]
    denial = Conn(loop)
    denial.send(handshake_request("/denial"))
    assert denial.transport.value().startswith(b"HTTP/1.1 401 ")
    assert [line[:6] for line in denial.sink.lines] == [("http", CLIENT, "1.1", "GET", 401, len(b"go away"))]
    bad = Conn(loop)
    bad.send(handshake_request("/echo").replace(b"Version: 13", b"Version: 7"))
    assert bad.transport.value().startswith(b"HTTP/1.1 400 ")
    assert [line[:5] for line in bad.sink.lines] == [("http", CLIENT, "1.1", "GET", 400)]


def test_websocket_over_an_http2_stream(loop):
    """RFC 8441: the WebSocket on an HTTP/2 stream logs through the same hook
    (the stream forwards it to the connection's)."""
    c = Conn(loop)
    f = Frames()
    c.send(f.preface() + f.settings(ack=True))
    connect = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", b"/echo"),
        (b":authority", b"x"),
        (b"sec-websocket-version", b"13"),
    ]
    c.send(f.headers(1, connect, end_stream=False))
    headers = [frame for frame in parse_frames(bytearray(c.transport.value())) if frame.stream_id == 1]
    assert headers and "END_STREAM" not in headers[0].flags  # the 200, the stream stays open
    c.later(2)
    c.lose()
    assert c.sink.lines == [
        ("ws", CLIENT, "2", "WSCONNECT", 200, 0.0),
        ("ws", CLIENT, "2", "WSDISCONNECT", 1006, 2.0),
    ]


def test_only_the_connection_talks_to_the_access_log():
    """No protocol handler reaches for the factory's access-log sink: only
    the connection (channel.py) calls it, and the server sets it up."""
    readers = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "access_log":
                readers.add(path.relative_to(PACKAGE).as_posix())
    assert readers == {"channel.py", "server.py"}, readers
