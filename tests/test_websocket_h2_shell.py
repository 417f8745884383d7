"""WebSocket over HTTP/2 in-process: the channel over an in-memory transport
with Twisted's Clock as the factory's clock (``tests/test_channel.py``), so the
end of a WebSocket stream, however it comes, is checked object by object:
with the cycle collector off, nothing of a closed WebSocket stream or its
connection survives (freed by reference counting, as every connection is)."""

from __future__ import annotations

import gc
import struct
import warnings
from typing import Any

import pytest
from hyperframe.frame import DataFrame, HeadersFrame

from tests import test_channel as shell
from tests.conftest import settle
from tests.h2frames import Frames, parse_frames
from tests.ws_h2_client import frame

_TYPES = ("HTTP2Handler", "WebSocketStream", "StreamWebSocketConnection", "WebSocketTask", "Framing")
ends: list[Any] = []


def _alive() -> dict[str, int]:
    counts = dict.fromkeys(_TYPES, 0)
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in counts:
            counts[name] += 1
    return counts


async def echo(scope: dict, receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket" and scope["http_version"] == "2"
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            ends.append(message["code"])
            return
        await send({"type": "websocket.send", "text": message["text"]})


def _connect(f: Frames, stream_id: int) -> bytes:
    headers = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", b"/ws"),
        (b":authority", b"example.com"),
        (b"sec-websocket-version", b"13"),
    ]
    return f.headers(stream_id, headers, end_stream=False)


def _data(transport: Any, stream_id: int) -> bytes:
    return b"".join(
        fr.data
        for fr in parse_frames(bytearray(transport.value()))
        if isinstance(fr, DataFrame) and fr.stream_id == stream_id
    )


def _two_websockets(loop: Any, ending: str) -> Any:
    """Open two WebSockets on one HTTP/2 connection, echo on both, end them by
    ``ending``; return the factory (which lives as long as its server)."""
    proto, transport, clock, factory = shell.connect(echo, loop, timeout_send=5)
    if True:
        f = Frames()
        proto.dataReceived(f.preface() + _connect(f, 1) + _connect(f, 3))
        settle(loop, clock)
        heads = [fr for fr in parse_frames(bytearray(transport.value())) if isinstance(fr, HeadersFrame)]
        assert len(heads) == 2 and not any("END_STREAM" in fr.flags for fr in heads)
        proto.dataReceived(f.data(1, frame(1, b"hello")) + f.data(3, frame(1, b"there")))
        settle(loop, clock)
        assert _data(transport, 1) == b"\x81\x05hello" and _data(transport, 3) == b"\x81\x05there"
        assert _alive()["WebSocketStream"] == 2
        if ending == "close-handshake":
            proto.dataReceived(
                f.data(1, frame(8, struct.pack("!H", 1000))) + f.data(3, frame(8, struct.pack("!H", 1000)))
            )
            settle(loop, clock)
            assert ends == [1000, 1000]
            out = parse_frames(bytearray(transport.value()))
            assert {fr.stream_id for fr in out if "END_STREAM" in fr.flags} == {1, 3}
        elif ending == "client-reset":
            proto.dataReceived(f.rst(1) + f.rst(3))
            settle(loop, clock)
            assert ends == [1006, 1006]
        elif ending == "send-timeout":
            # The client opens no window: the echoes wait, then the streams are reset.
            proto.dataReceived(b"".join(f.data(s, frame(2, b"x" * 20000)) for _ in range(4) for s in (1, 3)))
            settle(loop, clock)
            clock.advance(5)
            settle(loop, clock)
            assert ends == [1006, 1006]
        proto.connectionLost()
        transport.protocol = transport.producer = None
        settle(loop, clock)
        if ending == "connection-lost":
            assert ends == [1006, 1006]
        del proto, transport
        settle(loop, clock)
    return factory


@pytest.mark.parametrize("ending", ["close-handshake", "client-reset", "connection-lost", "send-timeout"])
def test_closed_websocket_stream_is_freed_by_reference_counting(loop, ending):
    # What the first HTTP/2 connection and the first WebSocket leave to the
    # collector (h2 and Autobahn imported then, classes made on the way) is not
    # a connection's: one is served before counting.
    ends.clear()
    _two_websockets(loop, ending)
    with warnings.catch_warnings():
        # Sockets or pipes an earlier failed test left open are not ours either.
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    gc.disable()
    try:
        ends.clear()
        before = _alive()
        factory = _two_websockets(loop, ending)
        assert _alive() == before
        assert gc.collect() == 0
        del factory
    finally:
        gc.enable()
