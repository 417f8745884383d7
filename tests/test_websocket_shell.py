"""The WebSocket shell without sockets: StringTransport, a fake clock, an asyncio loop driven by hand.

Timeouts (handshake, ping, close, lifetime), back-pressure both ways and
graceful shutdown, each decided by ``clock.advance`` rather than by waiting.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from tests.conftest import settle
from tests.ws_apps import client_frame, close_payload, handshake_request
from twisted_asgi.config import Config
from twisted_asgi.server import ASGIFactory


class Peer:
    """One server connection over a StringTransport, read as a WebSocket client would."""

    def __init__(
        self, app: Any, loop: asyncio.AbstractEventLoop, path: str = "/", extra: bytes = b"", **config: Any
    ) -> None:
        self.loop = loop
        self.clock = Clock()
        self.factory = ASGIFactory(app, Config(**config), self.clock)
        self.factory.runner._loop = loop
        self.factory.lifespan_state = {}
        self.proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 80), peerAddress=IPv4Address("TCP", "127.0.0.1", 1234)
        )
        self.proto.makeConnection(self.transport)
        self.read = 0
        self.proto.dataReceived(handshake_request(path, extra))
        settle(loop, self.clock)

    def head(self) -> bytes:
        data = self.transport.value()
        end = data.index(b"\r\n\r\n") + 4
        self.read = max(self.read, end)
        return data[:end]

    def frames(self) -> list[tuple[int, bytes]]:
        """The server frames written since the last call (frames are sent at the
        end of the event-loop pass that wrote them, so the loop runs first)."""
        settle(self.loop, self.clock)
        self.head()
        data = self.transport.value()
        out = []
        while self.read + 2 <= len(data):
            b0, b1 = data[self.read], data[self.read + 1]
            n, at = b1 & 0x7F, self.read + 2
            if n == 126:
                (n,) = struct.unpack("!H", data[at : at + 2])
                at += 2
            elif n == 127:
                (n,) = struct.unpack("!Q", data[at : at + 8])
                at += 8
            out.append((b0 & 0x0F, data[at : at + n]))
            self.read = at + n
        return out

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)
        settle(self.loop, self.clock)

    def lose(self) -> None:
        self.proto.connectionLost(Failure(ConnectionError("lost")))
        settle(self.loop, self.clock)


def recording_app(received: list, *, accept: bool = True, read: asyncio.Event | None = None) -> Any:
    """Accepts (unless told not to), then records every message it receives, once ``read`` is set."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        received.append(await receive())
        if accept:
            await send({"type": "websocket.accept"})
        if read is not None:
            await read.wait()
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.disconnect":
                return

    return app


def test_handshake_timeout_answers_503(loop):
    """An app that never answers websocket.connect: 503 exactly at timeout_ws_handshake, and the app is told."""
    received: list = []
    peer = Peer(recording_app(received, accept=False), loop, timeout_ws_handshake=5)
    peer.clock.advance(4.9)
    assert peer.transport.value() == b""
    peer.clock.advance(0.2)
    settle(loop, peer.clock)
    assert peer.transport.value().startswith(b"HTTP/1.1 503 ")
    assert peer.transport.disconnecting
    assert received[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


def test_ping_then_drop_without_pong(loop):
    """After the ping interval the server pings; with no answer within the ping timeout it drops the client."""
    received: list = []
    peer = Peer(recording_app(received), loop, timeout_ws_ping_interval=20, timeout_ws_ping=30)
    assert peer.head().startswith(b"HTTP/1.1 101 ")
    peer.clock.advance(19.9)
    assert peer.frames() == []
    peer.clock.advance(0.2)
    [(opcode, _payload)] = peer.frames()
    assert opcode == 9
    peer.clock.advance(29.9)
    assert not peer.transport.disconnecting
    peer.clock.advance(0.2)
    assert peer.transport.disconnected  # aborted
    peer.lose()
    assert received[-1]["type"] == "websocket.disconnect" and received[-1]["code"] == 1006


def test_pong_keeps_connection(loop):
    """A pong with the ping's payload keeps the connection; the next ping follows one interval later."""
    peer = Peer(recording_app([]), loop, timeout_ws_ping_interval=20, timeout_ws_ping=30)
    peer.clock.advance(20)
    for _ in range(3):
        [(opcode, payload)] = peer.frames()
        assert opcode == 9
        peer.send(client_frame(10, payload))
        peer.clock.advance(19.9)
        assert peer.frames() == []
        peer.clock.advance(0.1)
    assert not peer.transport.disconnecting


def test_no_pings_when_disabled(loop):
    """timeout_ws_ping_interval 0 sends no pings at all."""
    peer = Peer(recording_app([]), loop, timeout_ws_ping_interval=0)
    peer.clock.advance(10_000)
    assert peer.frames() == []
    assert not peer.transport.disconnecting


def test_lifetime_closes_with_1001_after_telling_app(loop):
    """timeout_ws_lifetime: the app gets disconnect 1001 and the client a Close 1001."""
    received: list = []
    peer = Peer(recording_app(received), loop, timeout_ws_lifetime=60, timeout_ws_ping_interval=0)
    peer.clock.advance(59.9)
    assert peer.frames() == []
    peer.clock.advance(0.2)
    settle(loop, peer.clock)
    [(opcode, payload)] = peer.frames()
    assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1001
    assert received[-1] == {"type": "websocket.disconnect", "code": 1001, "reason": "connection lifetime reached"}


def test_close_handshake_timeout(loop):
    """After the app closes, a client that never answers the Close is dropped after timeout_ws_close."""

    async def closer(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000})
        await receive()

    peer = Peer(closer, loop, timeout_ws_close=10, timeout_ws_ping_interval=0)
    assert peer.frames() == [(8, close_payload(4000))]
    peer.clock.advance(9.9)
    assert not peer.transport.disconnecting
    peer.clock.advance(0.2)
    assert peer.transport.disconnected


def test_send_waits_while_transport_paused(loop):
    """While the transport has paused us, the app's send() waits; resumeProducing releases it."""
    sent: list = []
    gate = asyncio.Event()

    async def talker(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        for i in range(3):
            await send({"type": "websocket.send", "text": str(i)})
            sent.append(i)

    peer = Peer(talker, loop, timeout_ws_ping_interval=0, ws_compression=False)
    peer.proto.pauseProducing()  # the client stopped reading
    loop.call_soon(gate.set)
    settle(loop, peer.clock)
    assert sent == []  # the first message was written, its send() waits
    assert peer.frames() == [(1, b"0")]
    peer.proto.resumeProducing()
    settle(loop, peer.clock)
    assert sent == [0, 1, 2]
    assert peer.frames() == [(1, b"1"), (1, b"2"), (8, close_payload(1000))]  # the app returned


def test_reading_paused_while_app_is_slow(loop):
    """Past limit_ws_queue messages the socket is paused and frames stay unparsed; receive() resumes, in order."""
    received: list = []
    gate = asyncio.Event()
    peer = Peer(recording_app(received, read=gate), loop, limit_ws_queue=3, timeout_ws_ping_interval=20)
    peer.send(b"".join(client_frame(1, str(i).encode()) for i in range(10)))
    assert peer.transport.producerState == "paused"
    peer.clock.advance(100)  # pings go on while we are not reading, but none is timed out
    assert {opcode for opcode, _payload in peer.frames()} == {9}
    assert not peer.transport.disconnecting
    loop.call_soon(gate.set)
    settle(loop, peer.clock)
    assert peer.transport.producerState == "producing"
    texts = [m["text"] for m in received if m["type"] == "websocket.receive"]
    assert texts == [str(i) for i in range(10)]
    peer.clock.advance(20)
    assert [f[0] for f in peer.frames()] == [9]  # pings are back


def test_graceful_drain_tells_app_then_closes_1001(loop):
    """factory.drain: the app is told (1001) and the client gets Close 1001; the client's answer ends it."""
    received: list = []
    peer = Peer(recording_app(received), loop, timeout_ws_ping_interval=0)
    drained = peer.factory.drain(25)
    assert peer.proto.handler.task.cycle.close_code == 1001  # told before the Close frame went out
    [(opcode, payload)] = peer.frames()
    assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1001
    settle(loop, peer.clock)
    assert received[-1] == {"type": "websocket.disconnect", "code": 1001, "reason": "server shutting down"}
    peer.send(client_frame(8, close_payload(1001)))
    assert peer.transport.disconnecting
    assert not drained.called
    peer.lose()
    assert drained.called


def test_drain_aborts_stragglers_after_timeout(loop):
    """A client that never answers the 1001 Close is aborted when the drain timeout ends."""
    peer = Peer(recording_app([]), loop, timeout_ws_ping_interval=0, timeout_ws_close=0)
    drained = peer.factory.drain(5)
    peer.clock.advance(5)
    assert peer.transport.disconnected
    peer.lose()
    assert drained.called


def test_drain_during_handshake_closes_right_after_accept(loop):
    """A handshake in progress at shutdown may complete; the socket is then closed with 1001 at once."""
    gate = asyncio.Event()

    async def late(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await gate.wait()
        await send({"type": "websocket.accept"})
        await receive()

    peer = Peer(late, loop, timeout_ws_ping_interval=0)
    peer.factory.drain(25)
    loop.call_soon(gate.set)
    settle(loop, peer.clock)
    assert peer.head().startswith(b"HTTP/1.1 101 ")
    [(opcode, payload)] = peer.frames()
    assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1001


def test_invalid_message_after_accept_closes_1011(loop):
    """An app that lets an AppError (bad websocket.send) escape after accept gets its socket closed with 1011."""

    async def bad(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "a", "bytes": b"b"})

    peer = Peer(bad, loop, timeout_ws_ping_interval=0)
    [(opcode, payload)] = peer.frames()
    assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1011


def test_app_close_timeout_after_disconnect(loop):
    """An app that ignores websocket.disconnect is cancelled after timeout_app_close."""
    cancelled: list = []

    async def stubborn(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    peer = Peer(stubborn, loop, timeout_ws_ping_interval=0, timeout_app_close=10)
    peer.lose()
    peer.clock.advance(9.9)
    settle(loop, peer.clock)
    assert cancelled == []
    peer.clock.advance(0.2)
    settle(loop, peer.clock)
    assert cancelled == [True]


_frames = st.builds(
    client_frame,
    opcode=st.integers(0, 15),
    payload=st.binary(max_size=300),
    fin=st.booleans(),
    rsv=st.integers(0, 7),
    mask=st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunks=st.lists(st.one_of(_frames, st.binary(max_size=64)), max_size=12),
    split=st.integers(1, 50),
    compression=st.booleans(),
)
def test_any_frames_any_split_never_crash(loop, chunks, split, compression):
    """Any mix of valid, invalid and garbage frames, split anywhere, raises nothing and ends in a disconnect."""
    received: list = []
    offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if compression else b""
    peer = Peer(recording_app(received), loop, extra=offer, timeout_ws_ping_interval=0)
    assert (b"permessage-deflate" in peer.head()) is compression
    data = b"".join(chunks)
    for at in range(0, len(data), split):
        peer.proto.dataReceived(data[at : at + split])  # must not raise
    settle(loop, peer.clock)
    peer.lose()
    assert received[0] == {"type": "websocket.connect"}
    assert received[-1]["type"] == "websocket.disconnect"
    assert all(m["type"] == "websocket.receive" for m in received[1:-1])


def test_client_that_does_not_read_is_not_read_and_dropped(loop):
    """While our write buffer is full we stop reading the client too; after timeout_send it is dropped."""
    received: list = []
    peer = Peer(recording_app(received), loop, timeout_send=60, timeout_ws_ping_interval=0)
    peer.proto.pauseProducing()  # the transport's buffer is full: the client reads nothing
    assert peer.transport.producerState == "paused"
    peer.proto.resumeProducing()
    assert peer.transport.producerState == "producing"
    peer.proto.pauseProducing()
    peer.clock.advance(59.9)
    assert not peer.transport.disconnecting
    peer.clock.advance(0.2)
    settle(loop, peer.clock)
    assert peer.transport.disconnected
    assert received[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": "the client stopped reading"}


def test_queue_pause_and_write_pause_combine(loop):
    """Reading resumes only when neither the app's queue nor the client's reading holds it back."""
    received: list = []
    gate = asyncio.Event()
    peer = Peer(recording_app(received, read=gate), loop, limit_ws_queue=2, timeout_ws_ping_interval=0)
    peer.send(b"".join(client_frame(1, b"m") for _ in range(4)))
    assert peer.transport.producerState == "paused"
    peer.proto.pauseProducing()
    loop.call_soon(gate.set)
    settle(loop, peer.clock)
    assert len([m for m in received if m["type"] == "websocket.receive"]) == 4
    assert peer.transport.producerState == "paused"  # the client still reads nothing
    peer.proto.resumeProducing()
    assert peer.transport.producerState == "producing"


@pytest.mark.parametrize("reply", [True, False], ids=["client-replies", "client-silent"])
def test_no_timer_outlives_a_failed_connection(loop, reply):
    """After a violation (1007) the server closes TCP; once it is gone no WebSocket timer is left
    (Autobahn's close handshake timer would hold the connection for timeout_ws_close and then log
    a client 'did not answer' that had long gone)."""
    received: list = []
    peer = Peer(recording_app(received), loop, timeout_ws_close=10, timeout_ws_ping_interval=5)
    framing = peer.proto.handler.framing
    peer.send(client_frame(1, b"bad \xff"))
    assert peer.frames()[0][0] == 8
    assert peer.transport.disconnecting
    if reply:
        peer.send(client_frame(8, close_payload(1000)))
    peer.lose()
    assert received[-1]["code"] == 1007
    # Every timer of the connection (the channel's and the framing's, however
    # each wraps its callable) is on this test's clock: none may be left.
    left = [(call.func, call.getTime()) for call in peer.clock.getDelayedCalls()]
    assert left == [], (framing, left)


def test_drain_survives_a_socket_that_cannot_be_written(loop):
    """At shutdown, a WebSocket whose socket raises on write (uvloop's closed poll handle does) is
    dropped and logged once; every other WebSocket still gets its 1001 Close, and both apps are told."""
    received: list = []
    peer = Peer(recording_app(received), loop, timeout_ws_ping_interval=0)
    other = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 80), peerAddress=IPv4Address("TCP", "127.0.0.1", 1235)
    )
    proto = peer.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1235))
    proto.makeConnection(other)
    proto.dataReceived(handshake_request("/"))
    settle(loop, peer.clock)
    channels = list(peer.factory.connections)
    assert len(channels) == 2
    broken, healthy = channels  # the broken one is drained first

    def fail(data: bytes) -> None:
        raise RuntimeError("unable to perform operation on <UVPoll closed=True>; the handler is closed")

    broken.write = fail  # the connection's one write path
    logged: list = []
    observer = logged.append
    globalLogPublisher.addObserver(observer)
    try:
        peer.factory.drain(25)
        settle(loop, peer.clock)  # the Close frames go out at the end of the loop pass
    finally:
        globalLogPublisher.removeObserver(observer)
    assert broken.transport.disconnecting
    healthy_transport = other if healthy is proto else peer.transport
    assert struct.pack("!H", 1001) in healthy_transport.value().split(b"\r\n\r\n", 1)[1]
    failures = [event for event in logged if "log_failure" in event]
    assert len(failures) == 1 and "Could not write to client" in failures[0]["log_format"]
    settle(loop, peer.clock)
    assert [m["code"] for m in received if m["type"] == "websocket.disconnect"] == [1001, 1001]


def _mirror_app(received: list) -> Any:
    """Records every event and echoes each message as it came (text as text, bytes as bytes)."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.receive":
                if message.get("bytes") is not None:
                    await send({"type": "websocket.send", "bytes": message["bytes"]})
                else:
                    await send({"type": "websocket.send", "text": message["text"]})
            else:
                return

    return app


def test_echoes_of_one_read_leave_in_one_write(loop):
    """Four messages in one read, echoed by the app, go back to the client in one
    transport write (one send), not four; the frames are intact and in order."""
    peer = Peer(_mirror_app([]), loop, timeout_ws_ping_interval=0)
    channel = next(iter(peer.factory.connections))
    writes: list[bytes] = []
    original = channel.write

    def counting(data: bytes) -> None:
        writes.append(data)
        original(data)

    channel.write = counting  # the connection's one write path
    peer.send(b"".join(client_frame(2, b"m%d" % i) for i in range(4)))
    assert peer.frames() == [(2, b"m0"), (2, b"m1"), (2, b"m2"), (2, b"m3")]
    assert len(writes) == 1


def test_large_burst_is_not_held_back(loop):
    """An app sending more than 64 KiB in one loop pass has it written as soon as
    the batch passes 64 KiB, so the transport sees the burst (and can push back)."""
    go = asyncio.Event()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await go.wait()
        for _ in range(3):
            await send({"type": "websocket.send", "bytes": b"x" * 40000})
        await receive()

    peer = Peer(app, loop, timeout_ws_ping_interval=0)
    channel = next(iter(peer.factory.connections))
    writes: list[int] = []
    original = channel.write

    def counting(data: bytes) -> None:
        writes.append(len(data))
        original(data)

    channel.write = counting  # the connection's one write path
    go.set()
    settle(loop, peer.clock)
    assert len(writes) == 2 and writes[0] > 65536  # two frames at once, then the third
    assert [len(payload) for _opcode, payload in peer.frames()] == [40000, 40000, 40000]


_payloads = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=60).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([125, 126, 127, 4095, 4096, 4097]).map(lambda n: b"p" * n),
)
# Mostly what the fast path takes (whole masked data frames), with everything it must not.
_whole_frames = st.builds(client_frame, opcode=st.sampled_from([1, 2]), payload=_payloads)
_other_frames = st.one_of(
    st.builds(
        client_frame,
        opcode=st.sampled_from([0, 1, 2, 3, 8, 9, 10]),
        payload=_payloads,
        fin=st.booleans(),
        rsv=st.sampled_from([0, 0, 4, 1]),
        mask=st.booleans(),
    ),
    st.sampled_from(
        [
            bytes([0x82, 0xFE, 0, 5]) + b"\0\0\0\0hello",  # 16-bit length, not minimal
            bytes([0x82, 0xFF]) + struct.pack("!Q", 5) + b"\0\0\0\0hello",  # 64-bit length, not minimal
            client_frame(1, b"\xc3\x28"),  # invalid UTF-8
            client_frame(1, b"ok\xe2\x82"),  # UTF-8 cut in a code point
        ]
    ),
)
_mixed_frames = st.one_of(_whole_frames, _whole_frames, _whole_frames, _other_frames)


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frames=st.lists(_mixed_frames, max_size=10),
    split=st.sampled_from([1, 2, 3, 7, 64, 1000, 100000]),
    message_limit=st.sampled_from([1024 * 1024, 3000, 100]),
    frame_limit=st.sampled_from([1024 * 1024, 3000, 100]),
    compression=st.booleans(),
)
@example(frames=[client_frame(2, b"x" * 120)], split=1000, message_limit=3000, frame_limit=100, compression=False)
@example(frames=[client_frame(1, b"x" * 120)], split=1000, message_limit=100, frame_limit=3000, compression=False)
@example(
    frames=[client_frame(1, "é".encode()), client_frame(1, b"\xc3\x28")],
    split=1000,
    message_limit=3000,
    frame_limit=3000,
    compression=False,
)
def test_fast_frames_agree_with_autobahn(loop, frames, split, message_limit, frame_limit, compression):
    """Whole small data frames are handled by our fast path, everything else by
    Autobahn; with the fast path off (Autobahn for every frame) any mix of frames,
    split anywhere, gives the app the same events and the client the same bytes,
    including the close code of every frame that breaks the protocol or a limit."""
    data = b"".join(frames)
    offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if compression else b""

    def run() -> tuple[list, bytes, bool]:
        received: list = []
        peer = Peer(
            _mirror_app(received),
            loop,
            extra=offer,
            timeout_ws_ping_interval=0,
            limit_ws_message_bytes=message_limit,
            limit_ws_frame_bytes=frame_limit,
        )
        for at in range(0, len(data), split):
            peer.proto.dataReceived(data[at : at + split])
        settle(loop, peer.clock)
        closing = peer.transport.disconnecting
        peer.lose()
        # What followed the 101 (whose accept key differs: the request's key is random).
        return received, peer.transport.value().split(b"\r\n\r\n", 1)[1], closing

    from twisted_asgi.websocket import _Framing

    fast = run()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_Framing, "fast_frames", False)
        slow = run()
    assert fast == slow


@pytest.mark.parametrize("fast", [True, False])
def test_data_frame_stands_in_for_pong(loop, fast, monkeypatch):
    """A client that sends data while a ping is out is alive (Autobahn's
    autoPingRestartOnAnyTraffic), on the fast path as on Autobahn's."""
    from twisted_asgi.websocket import _Framing

    monkeypatch.setattr(_Framing, "fast_frames", fast)
    received: list = []
    peer = Peer(recording_app(received), loop, timeout_ws_ping_interval=5, timeout_ws_ping=2)
    peer.clock.advance(5)
    assert [opcode for opcode, _ in peer.frames()] == [9]  # the ping
    peer.send(client_frame(2, b"busy"))
    peer.clock.advance(3)  # past the ping's timeout
    settle(loop, peer.clock)
    assert not peer.transport.disconnecting
    assert received[-1] == {"type": "websocket.receive", "bytes": b"busy"}
    peer.clock.advance(2.5)  # a new ping was scheduled from the data
    assert [opcode for opcode, _ in peer.frames()] == [9]


@pytest.mark.parametrize("end", ["client-close", "lost", "app-returns-first"])
def test_closed_websocket_is_freed_by_reference_counting(loop, end):
    """With the cycle collector off, nothing of a closed WebSocket connection (its
    handler, framing, cycle, task) stays alive: each is freed by reference counting,
    as HTTP/1.1 and HTTP/2 connections are.

    Source: issue 15 ("a closed connection leaves nothing for the cycle collector
    on every protocol"); found by the soak's leftover check: every WebSocket
    connection was kept by task <-> connection and Autobahn's is_closed cycles."""
    import gc

    # (The channel is left out: the test's StringTransport keeps its producer
    # after connectionLost, where Twisted's TCP transport lets go of it; the
    # soak's leftover check counts channels over real sockets.)
    names = {"WebSocketConnection", "Framing", "WebSocketTask", "WebSocketCycle"}

    def alive() -> int:
        return sum(1 for o in gc.get_objects() if type(o).__name__ in names)

    gc.collect()
    before = alive()
    gc.disable()
    try:
        received: list = []
        if end == "app-returns-first":

            async def app(scope: dict, receive: Any, send: Any) -> None:
                await receive()
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": 1000})

        else:
            app = recording_app(received)
        peer = Peer(app, loop)
        peer.send(client_frame(0x1, b"hi"))
        if end == "client-close":
            peer.send(client_frame(0x8, close_payload(1000)))
        peer.lose()
        settle(loop, peer.clock)
        del peer, app
        left = [type(o).__name__ for o in gc.get_objects() if type(o).__name__ in names]
        assert alive() == before, left
    finally:
        gc.enable()


@pytest.mark.parametrize("fast", [True, False])
def test_one_read_of_many_frames_queues_no_more_than_the_bound(loop, fast, monkeypatch):
    """Ten whole frames in one read with limit_ws_queue=3: three messages are
    queued for the app and the other frames stay unparsed in the framing's
    buffer, on the fast path (frames taken from the read in one loop) as on
    Autobahn's; then the app gets all ten, in order."""
    from twisted_asgi.websocket import _FastFraming, _Framing

    monkeypatch.setattr(_Framing, "fast_frames", fast)
    received: list = []
    gate = asyncio.Event()
    peer = Peer(recording_app(received, read=gate), loop, limit_ws_queue=3, timeout_ws_ping_interval=0)
    frames = [client_frame(2 if i % 2 else 1, str(i).encode() * (i + 1)) for i in range(10)]
    peer.send(b"".join(frames))
    handler = next(iter(peer.factory.connections)).handler
    assert len(handler.task.cycle.queue) == 3
    if isinstance(handler.framing, _FastFraming):  # not on the public path (TWISTED_ASGI_AUTOBAHN_PUBLIC)
        assert handler.framing.data == b"".join(frames[3:])
        # Autobahn's count of bytes received, kept on both ways of reading.
        assert handler.framing.trafficStats.incomingOctetsWireLevel == sum(map(len, frames))
    assert peer.transport.producerState == "paused"
    loop.call_soon(gate.set)
    settle(loop, peer.clock)
    assert peer.transport.producerState == "producing"
    assert [m.get("text", m.get("bytes")) for m in received[1:]] == [
        str(i) * (i + 1) if i % 2 == 0 else (str(i) * (i + 1)).encode() for i in range(10)
    ]


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frames=st.lists(_mixed_frames, max_size=12),
    split=st.sampled_from([5, 64, 1000, 100000]),
    queue_limit=st.sampled_from([1, 2, 5]),
)
def test_fast_reads_agree_with_autobahn_when_the_queue_fills(loop, frames, split, queue_limit):
    """Reads of several frames against a small limit_ws_queue, with the app
    behind: the fast path (whole frames taken from each read in one loop, up to
    the bound) and Autobahn's, for every frame, give the app the same events,
    the client the same bytes and leave the same bytes unparsed."""
    data = b"".join(frames)

    def run() -> tuple[list, bytes, bool, bytes]:
        received: list = []
        peer = Peer(_mirror_app(received), loop, timeout_ws_ping_interval=0, limit_ws_queue=queue_limit)
        handler = next(iter(peer.factory.connections)).handler
        for at in range(0, len(data), split):
            peer.proto.dataReceived(data[at : at + split])
        left = bytes(handler.framing.data) if handler.framing is not None else b""
        settle(loop, peer.clock)
        closing = peer.transport.disconnecting
        peer.lose()
        return received, peer.transport.value().split(b"\r\n\r\n", 1)[1], closing, left

    from twisted_asgi.websocket import _Framing

    fast = run()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_Framing, "fast_frames", False)
        slow = run()
    assert fast == slow
