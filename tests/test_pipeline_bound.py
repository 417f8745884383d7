"""Pipelined requests are parsed only as far as ``limit_pipelined_requests``:
one read of thousands of tiny requests no longer becomes thousands of
Request objects; the rest of the read waits unparsed (reading is paused) and
is parsed as responses make room, in order.

This module is also the app its server runs (``tests.test_pipeline_bound:app``).

Source: issue 15, item 6 (outside attack).
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from tests.apps import hello
from tests.deploy import serving, wait_for
from tests.serving import recv_response
from tests.test_backpressure import rss_kib
from twisted_asgi.config import Config
from twisted_asgi.events import Data, EndOfMessage, ProtocolError, Request
from twisted_asgi.http11 import HTTP11Connection

# -- the app (runs in the server process) ---------------------------------------------

_STARTED = [0]
_RELEASE: list[asyncio.Event] = []


async def app(scope: dict, receive: Any, send: Any) -> None:
    """``/wait``: answered once ``/release`` was asked; ``/started``: how many
    ``/wait`` began; anything else: 200 with the path as body."""
    if scope["type"] == "lifespan":
        return await hello(scope, receive, send)
    if not _RELEASE:
        _RELEASE.append(asyncio.Event())
    path = scope["path"]
    if path == "/wait":
        _STARTED[0] += 1
        await _RELEASE[0].wait()
    elif path == "/release":
        _RELEASE[0].set()
    body = json.dumps(_STARTED[0]).encode() if path == "/started" else path.encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


# -- sans-IO -------------------------------------------------------------------------------


def _tiny(n: int, start: int = 0) -> bytes:
    return b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(start, start + n))


def _drain(conn: HTTP11Connection, events: list) -> list:
    """Answer requests one by one, parsing what was kept each time, as the shell does."""
    out = list(events)
    while conn.unparsed:
        conn.response_done()
        out += conn.receive_data(b"")
    return out


def test_one_read_of_tiny_requests_parses_at_most_the_limit():
    """A 64 KiB read of ~2,300 tiny pipelined requests gives the limit's worth
    of Request events; the rest stays unparsed (less than the read) and comes
    out, in order and complete, as responses make room.
    Source: issue 15, item 6 (outside attack)."""
    data = _tiny(3000)[: 64 * 1024]
    conn = HTTP11Connection(Config())
    events = conn.receive_data(data)
    requests = [e for e in events if type(e) is Request]
    assert len(requests) == 64
    assert conn.unparsed and len(conn.unparsed) <= len(data)  # the read itself, kept (not copied)
    everything = _drain(conn, events)
    whole = HTTP11Connection(Config(limit_pipelined_requests=10**6)).receive_data(data)
    assert [(type(e), e.stream_id) for e in everything] == [(type(e), e.stream_id) for e in whole]
    assert [e.path for e in everything if type(e) is Request] == [b"/%d" % i for i in range(len(whole) // 2)]


def test_bound_keeps_bodies_and_head_ends_inside_them():
    """Pipelined POSTs whose bodies hold CRLF CRLF, and a large body, parse
    to the same events through the bound as without it, and a large body in
    one read is not cut into many pieces.
    Source: issue 15, item 6 (outside attack)."""
    body = b"x\r\n\r\ny" * 50
    one = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    big = b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 60000\r\n\r\n" + b"z" * 60000
    chunked = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nx\r\n\r\n\r\n0\r\n\r\n"
    data = one * 100 + big + chunked * 20 + _tiny(10) + one * 5
    whole = HTTP11Connection(Config(limit_pipelined_requests=10**6)).receive_data(data)
    bounded = HTTP11Connection(Config(limit_pipelined_requests=4))
    events = _drain(bounded, bounded.receive_data(data))
    # The same in reads split anywhere (each drained as the shell would).
    rng = random.Random(15)
    split = HTTP11Connection(Config(limit_pipelined_requests=4))
    split_events: list = []
    at = 0
    while at < len(data):
        step = rng.choice((1, 7, 900, 1500, 5000, 70000))
        split_events += _drain(split, split.receive_data(data[at : at + step]))
        at += step

    def shape(evs: list) -> list:
        joined: list = []
        for e in evs:
            if type(e) is Data and joined and joined[-1][0] == "data" and joined[-1][1] == e.stream_id:
                joined[-1] = ("data", e.stream_id, joined[-1][2] + e.data)
            elif type(e) is Data:
                joined.append(("data", e.stream_id, e.data))
            else:
                joined.append((type(e).__name__, e.stream_id))
        return joined

    assert shape(events) == shape(whole)
    assert shape(split_events) == shape(whole)
    big_id = next(e.stream_id for e in events if type(e) is Request and e.path == b"/big")
    assert len([e for e in events if type(e) is Data and e.stream_id == big_id]) <= 2


def test_bad_request_after_the_bound_is_refused_in_its_turn():
    """A malformed request behind 100 good ones is refused when parsing
    reaches it, after the requests before it.
    Source: issue 15, item 6 (outside attack)."""
    conn = HTTP11Connection(Config(limit_pipelined_requests=8))
    data = _tiny(100) + b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n" + b"\0" * 2000
    got = conn.receive_data(data)
    with pytest.raises(ProtocolError) as refused:
        while True:
            conn.response_done()
            got += conn.receive_data(b"")
    got += refused.value.events
    assert len([e for e in got if type(e) is Request]) == 100
    assert type(got[-1]) is EndOfMessage


# -- end to end -------------------------------------------------------------------------------


def test_pipelined_flood_behind_a_hanging_request_keeps_memory_bounded():
    """Fifty connections each write 64 KiB of tiny pipelined requests behind a
    request the app does not answer: the server's RSS grows by a small
    multiple of the read size per connection (it grew 1.2 MB per connection
    when every request of the read was parsed), and once the hanging request
    is answered, every pipelined request of a connection is answered in order.
    Source: issue 15, item 6 (outside attack)."""
    flood = b"GET /wait HTTP/1.1\r\nHost: a\r\n\r\n" + _tiny(3000)
    flood = flood[: flood.rfind(b"GET ", 0, 64 * 1024)]
    sent = flood.count(b"GET ") - 1
    with serving("tests.test_pipeline_bound:app") as server:

        def get(target: str) -> bytes:
            server.read_output(0)
            with server.connect() as sock:
                sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
                return recv_response(sock)[2]

        get("/warm-up")
        before = rss_kib(server.proc.pid)
        socks = []
        try:
            for _ in range(50):
                sock = server.connect()
                sock.sendall(flood)
                socks.append(sock)
            wait_for(lambda: json.loads(get("/started")) == 50, 10, "every hanging request to start")
            grown = rss_kib(server.proc.pid) - before
            assert grown < 50 * 300, f"RSS grew {grown} KiB for 50 connections"
            for sock in socks[1:]:
                sock.close()  # (no need to answer 100,000 requests to check the order of one connection's)
            get("/release")
            first = socks[0]
            assert recv_response(first)[2] == b"/wait"
            for i in range(sent):
                status, _headers, body = recv_response(first)
                assert b" 200 " in status and body == b"/%d" % i, (i, status, body)
            # Every app call returned, on the closed connections too: none is
            # left waiting in send() for a connection that went on without it
            # (the apps answer inside their eager start on Python 3.12+).
            for sock in socks:
                sock.close()
            assert server.stop() == 0
            assert "application call(s)" not in server.read_output(), server.read_output()
        finally:
            for sock in socks:
                sock.close()
