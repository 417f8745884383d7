"""Hypothesis over the whole HTTP/1.1 input path (parser, channel, cycle, runner).

Invariant: whatever bytes arrive, split however, the channel answers with
well-formed responses or an error status and a close; no exception escapes
into the reactor and the app's tasks all finish.
"""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import settle
from tests.test_channel import connect


async def echo_app(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


TOKENS = [
    b"GET / HTTP/1.1\r\n",
    b"POST /p?q=1 HTTP/1.1\r\n",
    b"HEAD / HTTP/1.0\r\n",
    b"PUT /x HTTP/1.1\r\n",
    b"Host: a\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"Expect: 100-continue\r\n",
    b"Upgrade: websocket\r\nConnection: upgrade\r\n",
    b"\r\n",
    b"hello",
    b"5\r\nhello\r\n",
    b"0\r\n\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\x85",
    b" ",
    b":",
    b"%",
    b"X-A: b\r\n",
    b"GET",
    b"HTTP/1.1",
    b"\xff\xfe",
    b"ffffffff\r\n",
    b"Trailer: x\r\n",
]

streams = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=20)), max_size=30).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_bytes_any_split(data, cuts):
    """Random request bytes, split at random points, never raise out of the protocol or hang the app."""
    loop = asyncio.new_event_loop()
    try:
        proto, transport, clock, _factory = connect(echo_app, loop)
        points = sorted({c for c in cuts if c < len(data)} | {0, len(data)})
        for start, end in itertools.pairwise(points):
            proto.dataReceived(data[start:end])
            settle(loop)
        clock.advance(3600)  # every timeout fires
        settle(loop)
        out = transport.value()
        assert out == b"" or out.startswith(b"HTTP/1.1 ")
        proto.connectionLost()
        settle(loop)
        clock.advance(3600)
        settle(loop)
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        assert pending == []
    finally:
        loop.close()
