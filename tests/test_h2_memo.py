"""The remembered request and response heads of :mod:`twisted_asgi.http2`:
a head seen before gives exactly what parsing it afresh gives (a new
:class:`Request`, new lists), a malformed one is refused every time, the
memo is bounded, whatever decides the result is part of its key, and each
connection keeps its own (a head seen on one is no memo hit on another, and
a closed connection's heads are freed with it)."""

from __future__ import annotations

import gc
import os
from typing import Any

import pytest
from hyperframe.frame import DataFrame
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tests.conftest import settle
from tests.h2frames import Frames, parse_frames
from twisted_asgi import http2
from twisted_asgi.config import Config
from twisted_asgi.events import AppError, Request
from twisted_asgi.http2 import HTTP2Connection, _parse_head

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/a?b=1"), (b":authority", b"example.com")]

HEADS: list[tuple[list[tuple[bytes, bytes]], bool, bool]] = [
    (GET, True, False),
    (GET, False, False),
    ([*GET, (b"accept", b"*/*"), (b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2")], True, False),
    ([*GET[:3], (b"host", b"h"), (b"user-agent", b"t")], True, False),
    ([(b":method", b"POST"), *GET[1:], (b"content-length", b"5"), (b"expect", b"100-continue")], False, False),
    ([(b":method", b"OPTIONS"), (b":scheme", b"http"), (b":path", b"*"), (b":authority", b"a")], True, False),
    ([(b":method", b"CONNECT"), (b":authority", b"a:443")], False, False),
    ([(b":method", b"CONNECT"), (b":protocol", b"WebSocket"), *GET[1:]], False, True),
]

MALFORMED: list[tuple[list[tuple[bytes, bytes]], bool, bool]] = [
    ([*GET, (b"connection", b"close")], True, False),
    ([(b"x", b"y"), *GET], True, False),
    ([(b":method", b"POST"), *GET[1:], (b"content-length", b"5")], True, False),  # no body
    ([(b":method", b"CONNECT"), (b":protocol", b"websocket"), *GET[1:]], False, False),  # not offered
    (GET[1:], True, False),
]


def fields(request: Request) -> tuple[Any, ...]:
    return tuple(getattr(request, name) for name in Request.__match_args__)


def connection(extended: bool = False) -> HTTP2Connection:
    """A connection that offers extended CONNECT (RFC 8441) or not."""
    return HTTP2Connection(Config(ws_over_h2=extended))


@pytest.mark.parametrize(("headers", "ended", "extended"), HEADS)
def test_remembered_request_is_a_fresh_parse(headers: list, ended: bool, extended: bool) -> None:
    conn = connection(extended)
    assert conn._parsed is None  # none before the first request
    first, size = conn._parse_request(1, list(headers), ended)
    assert conn._parsed is not None and len(conn._parsed) == 1
    for stream_id in (3, 5):
        again, again_size = conn._parse_request(stream_id, list(headers), ended)
        fresh, fresh_size = _parse_head(stream_id, list(headers), ended, extended)
        assert fields(again) == fields(fresh)
        assert again_size == fresh_size == size
        assert again.headers is not first.headers  # the app may change its own
    again.headers.append((b"z", b"z"))
    assert conn._parse_request(7, list(headers), ended)[0].headers == first.headers


@pytest.mark.parametrize(("headers", "ended", "extended"), MALFORMED)
def test_malformed_head_is_refused_every_time(headers: list, ended: bool, extended: bool) -> None:
    conn = connection(extended)
    for stream_id in (1, 3):
        with pytest.raises(ValueError):
            conn._parse_request(stream_id, list(headers), ended)
    assert not conn._parsed


def test_end_stream_is_part_of_the_key_and_extended_connect_the_connections() -> None:
    post = [(b":method", b"POST"), *GET[1:], (b"content-length", b"5")]
    conn = connection()
    assert conn._parse_request(1, post, False)[0].has_body
    with pytest.raises(ValueError, match="content-length without a body"):
        conn._parse_request(3, post, True)
    tunnel = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), *GET[1:]]
    assert connection(True)._parse_request(5, tunnel, False)[0].upgrade == b"websocket"
    with pytest.raises(ValueError):
        conn._parse_request(7, tunnel, False)


def test_request_memo_is_bounded() -> None:
    conn = connection()
    for i in range(http2._PARSED_MAX + 10):
        conn._parse_request(1, [*GET, (b"x-n", b"%d" % i)], True)
        assert conn._parsed is not None and len(conn._parsed) <= http2._PARSED_MAX
    big = [*GET, (b"x-big", b"v" * http2._PARSED_BYTES)]
    conn._parsed.clear()
    conn._parse_request(1, big, True)
    assert conn._parsed == {}


def head_of(conn: HTTP2Connection, method: bytes, status: int, headers: Any) -> tuple[Any, ...]:
    stream = http2._Stream()
    stream.request = _parse_head(1, [(b":method", method), *GET[1:]], True)[0]
    conn._head(stream, status, headers)
    return stream.head, stream.no_body, stream.remaining


def test_remembered_response_head_is_a_fresh_one(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = HTTP2Connection(Config())
    dates = iter([b"d1", b"d2", b"d3", b"d4"])
    monkeypatch.setattr(http2, "http_date", lambda: next(dates))
    app = [(b"Content-Type", b" text/plain "), (b"content-length", b"13"), (b"connection", b"close")]
    first = head_of(conn, b"GET", 200, app)
    sent = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"13")]
    assert first == ([*sent, *server(), (b"date", b"d1")], False, 13)
    second = head_of(conn, b"GET", 200, app)
    assert second[0][-1] == (b"date", b"d2") and second[0][:-1] == first[0][:-1] and second[1:] == first[1:]
    assert second[0] is not first[0]
    # A HEAD request and a 204 have no body (and a 204 no content-length).
    assert head_of(conn, b"HEAD", 200, app)[1:] == (True, None)
    no_content = head_of(conn, b"GET", 204, app)
    assert no_content[1:] == (True, None) and (b"content-length", b"13") not in no_content[0]
    # The app's own date is kept, none added.
    dated = head_of(conn, b"GET", 200, [(b"date", b"mine")])
    assert [f for f in dated[0] if f[0] == b"date"] == [(b"date", b"mine")]


def server() -> list[tuple[bytes, bytes]]:
    name = Config().server_name
    return [(b"server", name.encode("latin-1"))] if name else []


def test_response_head_key_holds_the_config() -> None:
    plain = HTTP2Connection(Config(server_name="", send_date=False))
    named = HTTP2Connection(Config(server_name="x", send_date=True))
    assert head_of(plain, b"GET", 200, [])[0] == [(b":status", b"200")]
    head = head_of(named, b"GET", 200, [])[0]
    assert head[:2] == [(b":status", b"200"), (b"server", b"x")] and head[2][0] == b"date"
    assert head_of(plain, b"GET", 200, [])[0] == [(b":status", b"200")]


def test_response_head_errors_and_lists() -> None:
    conn = HTTP2Connection(Config())
    for _ in range(2):
        with pytest.raises(AppError):
            head_of(conn, b"GET", 200, [(b"content-length", b"x")])
    # Fields given as lists (not hashable): prepared, not remembered.
    assert head_of(conn, b"GET", 200, [[b"a", b"b"]])[0][1] == (b"a", b"b")
    assert conn._heads is None  # none yet: nothing was kept
    for i in range(http2._HEADS_MAX + 10):
        head_of(conn, b"GET", 200, [(b"x-n", b"%d" % i)])
        assert conn._heads is not None and len(conn._heads) <= http2._HEADS_MAX
    conn._heads.clear()
    head_of(conn, b"GET", 200, [(b"x-echo", b"v" * http2._HEADS_BYTES)])
    head_of(conn, b"GET", 200, [(b"x-%d" % i, b"v") for i in range(http2._HEADS_FIELDS + 1)])
    assert conn._heads == {}
    head_of(conn, b"GET", 200, [(b"x-echo", b"v")])
    assert len(conn._heads) == 1


# -- each connection its own memo, from outside ------------------------------------------


async def _cookie_app(scope: dict, receive: Any, send: Any) -> None:
    """Answers with a Set-Cookie made from the request's Cookie."""
    cookie = dict(scope["headers"]).get(b"cookie", b"")
    headers = [(b"content-type", b"text/plain"), (b"set-cookie", b"seen=" + cookie)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def _serve_two(loop: Any) -> tuple[Any, Any, Any, Any, Any]:
    """Two HTTP/2 connections (prior knowledge) from one factory, over StringTransport."""
    from tests import test_channel as shell

    a, a_transport, clock, factory = shell.connect(_cookie_app, loop)
    b = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1235))
    b_transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 80), peerAddress=IPv4Address("TCP", "127.0.0.1", 1235)
    )
    b.makeConnection(b_transport)
    return a, a_transport, b, b_transport, clock


def _ask(proto: Any, transport: Any, clock: Any, loop: Any, f: Frames, stream_id: int, cookie: str) -> None:
    proto.dataReceived(f.request(stream_id, "/private", cookie=cookie))
    settle(loop, clock)
    assert any(
        isinstance(frame, DataFrame) and frame.stream_id == stream_id and frame.data == b"ok"
        for frame in parse_frames(bytearray(transport.value()))
    )


def test_a_head_seen_on_one_connection_is_no_memo_hit_on_another(loop, monkeypatch):
    """A request head (with its Cookie) and the response head (with its
    Set-Cookie) parsed and prepared on connection A are remembered for A's
    next request, and parsed and prepared afresh on connection B: what one
    client sent or was answered decides nothing of another's timing."""
    parsed: list[int] = []
    prepared: list[int] = []
    parse_head = http2._parse_head
    new_head = HTTP2Connection._new_head

    def counted_parse(*args: Any) -> Any:
        parsed.append(1)
        return parse_head(*args)

    def counted_head(self: HTTP2Connection, *args: Any) -> Any:
        prepared.append(1)
        return new_head(self, *args)

    monkeypatch.setattr(http2, "_parse_head", counted_parse)
    monkeypatch.setattr(HTTP2Connection, "_new_head", counted_head)
    a, a_transport, b, b_transport, clock = _serve_two(loop)
    fa, fb = Frames(), Frames()
    a.dataReceived(fa.preface())
    b.dataReceived(fb.preface())
    _ask(a, a_transport, clock, loop, fa, 1, "sid=a-secret")
    _ask(a, a_transport, clock, loop, fa, 3, "sid=a-secret")
    assert (len(parsed), len(prepared)) == (1, 1)  # A's second request: both remembered
    _ask(b, b_transport, clock, loop, fb, 1, "sid=a-secret")
    assert (len(parsed), len(prepared)) == (2, 2)  # the same head on B: parsed and prepared again
    _ask(b, b_transport, clock, loop, fb, 3, "sid=a-secret")
    assert (len(parsed), len(prepared)) == (2, 2)
    for proto in (a, b):
        proto.connectionLost()


def _holding(secret: bytes) -> list[str]:
    """The containers the cyclic collector tracks that hold ``secret``, by type."""

    def holds(items: Any) -> bool:
        # Compared as bytes only: other objects' __eq__ may do anything
        # (a lazy Django object's sets Django up).
        return any(type(x) is bytes and x == secret for x in items)

    found = []
    for obj in gc.get_objects():
        if type(obj) is tuple and holds(obj):
            found.append("tuple")
        elif type(obj) is dict and any(type(k) is tuple and any(type(x) is tuple and holds(x) for x in k) for k in obj):
            found.append("dict")
    return found


def test_a_closed_connections_heads_are_freed(loop):
    """With the cycle collector off (so every new tuple stays visible to
    gc.get_objects), a connection serves a request whose Cookie, and a
    response whose Set-Cookie, carry a secret; while it is open its memos
    hold them; once it is closed and dropped, nothing does."""
    secret = "sid=" + os.urandom(12).hex()
    gc.collect()
    gc.disable()
    try:
        a, a_transport, b, b_transport, clock = _serve_two(loop)
        f = Frames()
        a.dataReceived(f.preface())
        _ask(a, a_transport, clock, loop, f, 1, secret)
        _ask(a, a_transport, clock, loop, f, 3, secret)
        assert _holding(secret.encode()) and _holding(b"seen=" + secret.encode())
        a.connectionLost()
        a_transport.protocol = a_transport.producer = None
        b.connectionLost()
        b_transport.protocol = b_transport.producer = None
        settle(loop, clock)
        del a, a_transport, b, b_transport, f  # (f: the client's own HPACK table)
        settle(loop, clock)
        assert _holding(secret.encode()) == []
        assert _holding(b"seen=" + secret.encode()) == []
    finally:
        gc.enable()
