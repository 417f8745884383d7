"""The Twisted shell without sockets: StringTransport, a fake clock, an asyncio loop driven by hand."""

from __future__ import annotations

import asyncio

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests.conftest import settle
from twisted_asgi.config import Config
from twisted_asgi.server import ASGIFactory


class FakeReactor(Clock):
    """A clock that is also enough of a reactor for the factory."""


async def hello(scope, receive, send):
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"hi"})


class _NullReactor:
    """Enough of a reactor for a tcp.Server driven by hand (no event loop)."""

    def addReader(self, reader):
        pass

    def addWriter(self, writer):
        pass

    def removeReader(self, reader):
        pass

    def removeWriter(self, writer):
        pass


class _Port:
    """Enough of a listening port for a tcp.Server."""

    _realPortNumber = 80
    _type = "TCP"


def connect(app, loop, **config):
    clock = FakeReactor()
    factory = ASGIFactory(app, Config(**config), clock)
    factory.runner._loop = loop
    factory.lifespan_state = {}
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 80), peerAddress=IPv4Address("TCP", "127.0.0.1", 1234)
    )
    proto.makeConnection(transport)
    return proto, transport, clock, factory


def _holds_the_connection(call) -> bool:
    """Whether a pending timer calls the connection or its HTTP/1.1 handler
    (which holds the connection)."""
    return "HTTPChannel" in repr(call.func) or "HTTP11Handler" in repr(call.func)


def test_request_response_over_string_transport(loop):
    """A request fed to the protocol produces the app's response on the transport."""
    proto, transport, _clock, _factory = connect(hello, loop)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.value().endswith(b"\r\n\r\nhi")
    assert not transport.disconnecting


def test_keep_alive_timeout_with_clock(loop):
    """After a response, the idle connection closes exactly when the keep-alive timeout passes."""
    proto, transport, clock, _factory = connect(hello, loop, timeout_keep_alive=5)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting


def test_head_timeout_with_clock(loop):
    """A partial head gets 408 when the request-head timeout passes."""
    proto, transport, clock, _factory = connect(hello, loop, timeout_request_head=10)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHo")
    clock.advance(9.9)
    assert transport.value() == b""
    clock.advance(0.2)
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert transport.disconnecting


def test_new_request_after_idle_gets_head_timeout(loop):
    """A head that starts on an idle keep-alive connection is bounded by the head timeout, not keep-alive."""
    proto, transport, clock, _factory = connect(hello, loop, timeout_keep_alive=5, timeout_request_head=20)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    clock.advance(3)
    proto.dataReceived(b"GET / HTTP/1.1\r\n")
    clock.advance(10)
    assert not transport.disconnecting
    clock.advance(11)
    assert transport.disconnecting
    assert b"408" in transport.value()


def test_no_timer_while_app_works(loop):
    """While the app is computing a response, neither timeout closes the connection."""
    gate = asyncio.Event()

    async def slow(scope, receive, send):
        await gate.wait()
        await hello(scope, receive, send)

    proto, transport, clock, _factory = connect(slow, loop, timeout_keep_alive=1, timeout_request_head=1)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    clock.advance(100)
    assert not transport.disconnecting
    loop.call_soon(gate.set)
    settle(loop)
    assert transport.value().endswith(b"hi")


def test_write_backpressure_pauses_send(loop):
    """While the transport has paused us, the app's send() waits; resumeProducing releases it."""
    sent = []

    async def streamer(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            sent.append(i)
        await send({"type": "http.response.body", "body": b""})

    proto, _transport, _clock, _factory = connect(streamer, loop)
    proto.pauseProducing()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    assert sent == []
    proto.resumeProducing()
    settle(loop)
    assert sent == [0, 1, 2]


def test_read_backpressure_pauses_transport(loop):
    """A full body queue pauses the transport; the app reading it resumes the transport."""
    gate = asyncio.Event()

    async def reader(scope, receive, send):
        await gate.wait()
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    proto, transport, _clock, _factory = connect(reader, loop, limit_receive_buffer_bytes=1000)
    proto.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + b"b" * 2000)
    settle(loop)
    assert transport.producerState == "paused"
    loop.call_soon(gate.set)
    settle(loop)
    assert transport.producerState == "producing"
    proto.dataReceived(b"b" * 3000)
    settle(loop)
    assert transport.value().startswith(b"HTTP/1.1 204 ")


def test_disconnect_reaches_app_and_send_raises(loop):
    """A lost connection gives the app http.disconnect, and send() then raises OSError."""
    outcome = {}

    async def waiter(scope, receive, send):
        await receive()
        outcome["message"] = await receive()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except OSError as exc:
            outcome["error"] = exc

    proto, _transport, _clock, _factory = connect(waiter, loop)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    proto.connectionLost()
    settle(loop)
    assert outcome["message"] == {"type": "http.disconnect"}
    assert isinstance(outcome["error"], OSError)


def test_app_close_timeout_cancels_with_clock(loop):
    """An app still running timeout_app_close seconds after its client left is cancelled."""
    cancelled = []

    async def stubborn(scope, receive, send):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    proto, _transport, clock, _factory = connect(stubborn, loop, timeout_app_close=3)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    proto.connectionLost()
    clock.advance(2.9)
    settle(loop)
    assert cancelled == []
    clock.advance(0.2)
    settle(loop)
    assert cancelled == [True]


def test_direct_writer_keeps_order_on_partial_sends():
    """Direct socket writes fall back to Twisted's buffer on a partial send, and later writes queue behind it."""
    import socket

    from twisted.internet import tcp
    from twisted.internet.protocol import Protocol
    from twisted.internet.testing import MemoryReactor

    from twisted_asgi.channel import direct_writer

    ours, peer = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport = tcp.Connection(ours, Protocol(), reactor=MemoryReactor())
    transport.connected = True
    write = direct_writer(transport)
    assert write is not transport.write
    first = bytes(range(256)) * 8192  # 2 MiB: more than the socket buffer takes at once
    write(first)
    assert transport._tempDataLen > 0  # the rest went to Twisted's buffer
    write(b"SECOND")
    received = bytearray()
    peer.settimeout(5)
    while len(received) < len(first) + 6:
        transport.doWrite()
        received += peer.recv(1 << 20)
    assert bytes(received) == first + b"SECOND"
    ours.close()
    peer.close()


def test_direct_writer_falls_back_for_other_transports():
    """A transport that is not a plain TCP connection (TLS, StringTransport) keeps its own write."""
    from twisted_asgi.channel import direct_writer

    transport = StringTransport()
    assert direct_writer(transport) == transport.write


def test_keep_alive_zero_closes_after_each_response(loop):
    """timeout_keep_alive=0 means no keep-alive: the response says close and the connection closes."""
    proto, transport, _clock, _factory = connect(hello, loop, timeout_keep_alive=0)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    assert b"connection: close\r\n" in transport.value()
    assert transport.disconnecting


def test_app_close_timeout_zero_never_cancels(loop):
    """timeout_app_close=0 lets an app run on after its client left."""
    cancelled = []

    async def stubborn(scope, receive, send):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    proto, _transport, clock, _factory = connect(stubborn, loop, timeout_app_close=0)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    proto.connectionLost()
    clock.advance(10000)
    settle(loop)
    assert cancelled == []
    assert not clock.getDelayedCalls()


def test_request_body_timeout_with_clock(loop):
    """A body that stops arriving while the app waits for it gets 408 after timeout_request_body."""

    async def read_all(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await hello(scope, receive, send)

    proto, transport, clock, _factory = connect(read_all, loop, timeout_request_body=30)
    proto.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    settle(loop)
    clock.advance(20)
    proto.dataReceived(b"def")  # progress restarts the clock
    settle(loop)
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert transport.disconnecting


def test_request_body_timeout_not_counted_while_server_paused(loop):
    """While the server paused reading for a slow app, the body timeout does not run."""
    gate = asyncio.Event()

    async def slow(scope, receive, send):
        await gate.wait()
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    proto, transport, clock, _factory = connect(slow, loop, timeout_request_body=5, limit_receive_buffer_bytes=100)
    proto.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 500)
    settle(loop)
    assert transport.producerState == "paused"
    clock.advance(60)
    assert not transport.disconnecting
    loop.call_soon(gate.set)
    settle(loop)
    proto.dataReceived(b"x" * 500)
    settle(loop)
    assert transport.value().startswith(b"HTTP/1.1 204 ")


def test_send_timeout_drops_client_that_does_not_read(loop):
    """A response blocked on a client that reads nothing is dropped after timeout_send; send() raises."""
    errors = []

    async def streamer(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
        except OSError as exc:
            errors.append(exc)

    proto, transport, clock, _factory = connect(streamer, loop, timeout_send=30)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    proto.pauseProducing()  # what the transport does when its buffer is full
    settle(loop)
    clock.advance(29)
    assert not transport.disconnected
    clock.advance(2)
    settle(loop)
    assert transport.disconnected  # aborted
    proto.connectionLost()
    settle(loop)
    assert errors and isinstance(errors[0], OSError)


def test_upgrade_hands_over_with_trailing_bytes(loop):
    """An accepted Upgrade request goes to its handler with the bytes after the head,
    after earlier pipelined responses."""
    handed = []
    proto, transport, _clock, factory = connect(hello, loop)
    factory.register_upgrade(b"websocket", lambda channel, request, rest: handed.append((request.path, rest)))
    proto.dataReceived(
        b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00"
    )
    assert handed == []  # the first request is still being answered
    settle(loop)
    assert transport.value().endswith(b"hi")
    assert handed == [(b"/ws", b"\x81\x00")]


def test_unaccepted_upgrade_is_plain_http(loop):
    """An Upgrade token the server does not speak is ignored and served as HTTP (RFC 9110 §7.8)."""
    proto, transport, _clock, _factory = connect(hello, loop)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
    settle(loop)
    assert transport.value().startswith(b"HTTP/1.1 200 OK")


class _Handler:
    """A protocol that takes a connection over and records what it is told."""

    protocol_name = "test"

    def __init__(self) -> None:
        self.lost = []

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, reason) -> None:
        self.lost.append(reason)

    def pause_producing(self) -> None:
        pass

    def resume_producing(self) -> None:
        pass

    def send_timed_out(self) -> bool:
        self.timed_out = True
        return True


def test_hand_over_and_close_leave_no_timer_holding_the_channel(loop):
    """After a hand-over the channel's own timers are cancelled, and after the
    connection is lost no timer refers to it (a pending timer kept every closed
    WebSocket and HTTP/2 connection alive until its head timeout fired)."""
    handler = _Handler()
    proto, _transport, clock, factory = connect(hello, loop, timeout_keep_alive=5, timeout_request_head=20)
    factory.register_upgrade(b"websocket", lambda channel, request, rest: channel.hand_over(handler))
    proto.dataReceived(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    settle(loop)
    assert proto.handler is handler
    assert [c for c in clock.getDelayedCalls() if c.active()] == []
    proto.connectionLost()
    assert len(handler.lost) == 1
    assert clock.getDelayedCalls() == []


def test_the_connection_delegates_to_one_handler_at_a_time(loop):
    """The connection serves no protocol itself: HTTP/1.1 is its first
    handler, ``hand_over`` makes another the one every transport callback
    reaches (the bytes straight to its ``data_received``, bound on the
    instance: no forwarding call in between), the HTTP/1.1 handler lets go
    of its parser and timer, and a lost connection lets go of its handler
    (which points back at it)."""
    from twisted_asgi.h1channel import HTTP11Handler

    handler = _Handler()
    proto, _transport, clock, factory = connect(hello, loop, timeout_request_head=20)
    first = proto.handler
    assert isinstance(first, HTTP11Handler) and proto.protocol_name == "http/1.1"
    assert proto.dataReceived == first.data_received
    factory.register_upgrade(b"websocket", lambda channel, request, rest: channel.hand_over(handler))
    proto.dataReceived(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert proto.handler is handler and proto.protocol_name == "test"
    assert proto.dataReceived == handler.data_received
    assert first.closed and clock.getDelayedCalls() == []
    proto.connectionLost()
    assert len(handler.lost) == 1
    assert proto.handler is not handler and proto.dataReceived != handler.data_received
    proto.drain()  # late callbacks reach nothing
    proto.resumeProducing()


def test_lost_connection_cancels_its_timers(loop):
    """A connection lost while idle or mid-head leaves no timer behind."""
    for data in (b"", b"GET / HTTP/1.1\r\nHo"):
        proto, _transport, clock, _factory = connect(hello, loop, timeout_keep_alive=5, timeout_request_head=20)
        if data:
            proto.dataReceived(data)
        assert clock.getDelayedCalls()
        proto.connectionLost()
        assert clock.getDelayedCalls() == []


def test_drain_gives_a_fresh_connection_its_first_request(loop):
    """A connection accepted just before shutdown, with nothing received yet, may
    still send one request within the grace; it is answered with connection: close."""
    proto, transport, clock, _factory = connect(hello, loop)
    proto.drain()
    clock.advance(0.5)
    assert not transport.disconnecting
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in transport.value()
    assert transport.disconnecting


def test_drain_closes_a_silent_fresh_connection_after_the_grace(loop):
    """A fresh connection that sends nothing is closed when the one-second grace ends."""
    proto, transport, clock, _factory = connect(hello, loop)
    proto.drain()
    clock.advance(0.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting
    assert transport.value() == b""


def test_drain_closes_an_idle_keep_alive_connection_at_once(loop):
    """A connection idle after a response closes as soon as shutdown begins."""
    proto, transport, _clock, _factory = connect(hello, loop)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    assert not transport.disconnecting
    proto.drain()
    assert transport.disconnecting


def test_drain_answers_a_request_whose_head_has_begun(loop):
    """A request half-received when shutdown begins is still answered, then the connection closes."""
    proto, transport, _clock, _factory = connect(hello, loop)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHo")
    proto.drain()
    assert not transport.disconnecting
    proto.dataReceived(b"st: a\r\n\r\n")
    settle(loop)
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.disconnecting


def test_closing_connection_whose_client_reads_nothing_is_aborted(loop):
    """A connection closing after its last response, whose client never takes the
    rest of it, is aborted once timeout_send passes (the close alone waits for ever)."""
    proto, transport, clock, _factory = connect(hello, loop, timeout_send=2)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    settle(loop)
    assert transport.disconnecting and not transport.disconnected  # closing, not aborted
    clock.advance(1.9)
    assert not transport.disconnected
    clock.advance(0.2)
    assert transport.disconnected  # StringTransport.abortConnection


def test_closed_connection_leaves_no_send_timer(loop):
    """When the close completes in time, nothing is left scheduled."""
    proto, transport, clock, _factory = connect(hello, loop, timeout_send=2)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    settle(loop)
    proto.connectionLost()
    assert clock.getDelayedCalls() == []
    clock.advance(5)
    assert not transport.disconnected


def test_output_pending_reads_twisteds_tcp_buffer():
    """output_pending is False for a TCP transport whose bytes all went to the
    kernel, True while some wait in Twisted's buffer, and True for transports it
    cannot look into (so the close of those is always bounded by a timer)."""
    import socket

    from twisted.internet import tcp
    from twisted.internet.protocol import Protocol

    from twisted_asgi.channel import output_pending

    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        transport = tcp.Server(a, Protocol(), ("127.0.0.1", 1234), _Port(), 1, _NullReactor())
        assert not output_pending(transport)
        transport.write(b"x")
        assert output_pending(transport)
        transport.doWrite()
        assert not output_pending(transport)
        assert b.recv(10) == b"x"
    finally:
        a.close()
        b.close()
    assert output_pending(StringTransport())


def test_connection_timers_run_on_the_event_loop_and_are_cancelled(loop):
    """In production the factory's clock is a LoopClock (what ASGIService
    gives it): the channel's timers are the event loop's own: the head timer
    is pending from the start, a sooner keep-alive deadline replaces it
    (cancelled, not left in the loop's heap), the keep-alive timeout closes
    the idle connection, and a lost connection leaves no live timer behind."""
    from twisted_asgi.reactor import LoopClock, _reactor_class

    reactor = _reactor_class(False)(loop)
    clock = LoopClock.of(reactor)
    assert clock.loop is loop
    factory = ASGIFactory(hello, Config(timeout_request_head=20, timeout_keep_alive=0.2), clock)
    assert factory.runner.loop is loop
    factory.lifespan_state = {}

    def live() -> list:
        return [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]

    def open_connection():
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 80), peerAddress=IPv4Address("TCP", "127.0.0.1", 1234)
        )
        proto.makeConnection(transport)
        return proto, transport

    before = len(live())
    proto, transport = open_connection()
    (head_timer,) = live()[before:]
    assert 19 < head_timer.when() - loop.time() <= 20
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    assert transport.value().endswith(b"hi")
    assert head_timer.cancelled()  # the keep-alive deadline is sooner: a new timer
    assert not transport.disconnecting
    loop.run_until_complete(asyncio.sleep(0.3))
    assert transport.disconnecting  # closed by the keep-alive timer, on the loop
    proto.connectionLost()  # what the transport reports once it has closed
    assert len(live()) == before  # the close's send bound went with it

    proto, transport = open_connection()
    assert len(live()) == before + 1
    proto.connectionLost()
    assert len(live()) == before


def test_closed_connection_is_freed_without_the_cycle_collector(loop):
    """A connection that served a request and closed leaves no reference cycle
    (the parser holds its HTTP11Connection's callbacks; the app's task holds its
    channel): reference counting frees it at once, so a stream of short
    connections does not feed the cyclic garbage collector."""
    import gc
    import weakref

    gc.collect()
    gc.disable()
    try:
        proto, transport, _clock, _factory = connect(hello, loop)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        settle(loop)
        assert transport.disconnecting
        ref = weakref.ref(proto)
        proto.connectionLost()
        transport.protocol = None  # as tcp.Connection.connectionLost does
        del proto, transport
        settle(loop)
        assert ref() is None
        # Nothing of it was left in a cycle. (What the collector finds is kept
        # and looked at: the first test of a run also leaves one-time objects
        # of imports and of the harness, which are not the connection's.)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        ours = [o for o in gc.garbage if type(o).__module__.startswith("twisted_asgi")]
        assert ours == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_streamed_chunks_leave_in_few_gathering_writes(loop):
    """Body chunks an app sends without waiting are held and sent together in
    gathering writes (sendmsg), not one system call per chunk; the client gets
    every byte, in order, correctly framed."""
    import socket

    from twisted.internet import tcp

    chunk = bytes(range(256)) * 256  # 64 KiB
    count = 20

    async def stream(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(count):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    class CountingSocket:
        def __init__(self, sock):
            self.sock = sock
            self.calls: list[str] = []

        def send(self, data):
            self.calls.append("send")
            return self.sock.send(data)

        def sendmsg(self, pieces):
            self.calls.append("sendmsg")
            return self.sock.sendmsg(pieces)

        def __getattr__(self, name):
            return getattr(self.sock, name)

    clock = FakeReactor()
    factory = ASGIFactory(stream, Config(), clock)
    factory.runner._loop = loop
    factory.lifespan_state = {}
    # Buffers large enough for the whole response: every byte leaves in our
    # own writes (none in Twisted's doWrite of a remainder).
    listener = socket.create_server(("127.0.0.1", 0))
    b = socket.socket()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    b.connect(listener.getsockname())
    a, _ = listener.accept()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    listener.close()
    received = bytearray()
    try:
        a.setblocking(False)
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        transport = tcp.Server(a, proto, ("127.0.0.1", 1234), _Port(), 1, _NullReactor())
        counting = transport.socket = CountingSocket(a)
        proto.makeConnection(transport)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        b.settimeout(5)
        expected_len = None
        for _ in range(1000):
            settle(loop)
            clock.advance(0)  # the end of the loop pass: held bytes go out
            transport.doWrite()  # what Twisted's buffer took, if the kernel's was full
            try:
                received += b.recv(1 << 22)
            except BlockingIOError:
                pass
            if received.endswith(b"\r\n0\r\n\r\n"):
                expected_len = len(received)
                break
        assert expected_len is not None, bytes(received[:200])
    finally:
        a.close()
        b.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"transfer-encoding: chunked" in head
    assert body == (b"10000\r\n" + chunk + b"\r\n") * count + b"0\r\n\r\n"
    # 1.25 MiB in 20 chunks: two gathering writes (at 1 MiB held, and the rest),
    # plus what Twisted's buffer sends of a remainder the kernel did not take
    # at once; one send per chunk would be 21 calls.
    assert counting.calls.count("sendmsg") == 2, counting.calls
    assert len(counting.calls) <= 5, counting.calls


def test_direct_sequence_writer_keeps_order_on_partial_sends():
    """A gathering write the kernel takes only part of leaves the rest, from the
    right piece and offset, to Twisted's buffer; later writes queue behind it."""
    import socket

    from twisted.internet import tcp
    from twisted.internet.protocol import Protocol
    from twisted.internet.testing import MemoryReactor

    from twisted_asgi.channel import direct_sequence_writer, direct_writer

    ours, peer = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport = tcp.Connection(ours, Protocol(), reactor=MemoryReactor())
    transport.connected = True
    write_sequence = direct_sequence_writer(transport)
    write = direct_writer(transport)
    assert write_sequence is not None
    pieces = [bytes([i]) * (1000 + 7919 * i) for i in range(1, 60)]  # ~14 MiB in pieces of odd sizes
    write_sequence(pieces)
    assert transport._tempDataLen > 0  # the rest went to Twisted's buffer
    write(b"AFTER")
    expected = b"".join(pieces) + b"AFTER"
    received = bytearray()
    peer.settimeout(5)
    while len(received) < len(expected):
        transport.doWrite()
        received += peer.recv(1 << 20)
    assert bytes(received) == expected
    assert direct_sequence_writer(StringTransport()) is None
    ours.close()
    peer.close()


def test_paused_connection_is_checked_for_a_gone_client_with_clock(loop):
    """While (and only while) reading is paused, the socket is checked every
    timeout_paused_peer_check seconds; a client found gone is dropped as if
    lost. Source: issue 15, item 4 (outside attack)."""
    import socket

    from twisted_asgi.channel import peer_gone

    gate = asyncio.Event()

    async def never_reads(scope, receive, send):
        await gate.wait()

    check = 3.0
    for client_leaves in (False, True):
        proto, transport, clock, _factory = connect(
            never_reads,
            loop,
            limit_receive_buffer_bytes=1000,
            timeout_paused_peer_check=check,
            timeout_request_body=0,
            timeout_request_head=0,
        )
        ours, theirs = socket.socketpair()
        transport.socket = ours  # the socket peer_gone() looks at
        try:
            assert clock.getDelayedCalls() == []  # no check while reading
            proto.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + b"b" * 2000)
            settle(loop)
            assert transport.producerState == "paused"
            assert [c.getTime() for c in clock.getDelayedCalls()] == [check]
            theirs.sendall(b"more body, then the client goes")
            clock.advance(check)
            assert not transport.disconnected  # still there: checked again later
            assert [c.getTime() for c in clock.getDelayedCalls()] == [2 * check]
            if not client_leaves:
                proto.handler._resume(1)  # the app read its queue: reading again, no check
                assert clock.getDelayedCalls() == []
                continue
            theirs.close()
            assert peer_gone(transport)  # its FIN, behind unread bytes
            clock.advance(check)
            assert transport.disconnected
            proto.connectionLost()
            # Only the app's close timeout is left (the app heard of the loss).
            assert [repr(c.func) for c in clock.getDelayedCalls() if _holds_the_connection(c)] == []
        finally:
            ours.close()
            theirs.close()
            loop.call_soon(gate.set)
            settle(loop)
            gate.clear()


def test_http2_connection_builds_no_http11_parser(loop):
    """A cleartext connection that opens with the HTTP/2 preface (even split
    across reads) goes to HTTP/2 without an HTTP/1.1 parser ever being made,
    and with the connection's head timer cancelled; one whose first bytes
    only looked like the preface's start is HTTP/1.1 with all its bytes."""
    from twisted_asgi.h1channel import HTTP11Handler
    from twisted_asgi.h2channel import HTTP2Handler
    from twisted_asgi.http2 import PREFACE

    proto, transport, clock, _factory = connect(hello, loop, timeout_request_head=10)
    first = proto.handler
    assert isinstance(first, HTTP11Handler)
    proto.dataReceived(PREFACE[:5])
    assert proto.handler is first and first.conn is None
    proto.dataReceived(PREFACE[5:])
    assert isinstance(proto.handler, HTTP2Handler) and first.conn is None
    assert proto.protocol_name == "http/2"
    assert transport.value()  # the server's SETTINGS
    assert not [c for c in clock.getDelayedCalls() if _holds_the_connection(c)]

    proto, transport, _clock, _factory = connect(hello, loop)
    proto.dataReceived(b"P")
    assert proto.handler.conn is None
    proto.dataReceived(b"OST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    settle(loop)
    assert isinstance(proto.handler, HTTP11Handler) and proto.handler.conn is not None
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")


def test_one_send_timeout_goes_on_across_a_hand_over(loop):
    """The send timeout is the connection's, whatever the protocol: armed when
    the transport pauses us, it goes on across a hand-over, asks the handler
    to drop the connection when it runs out, and is logged once, by the
    connection; a resume before it runs out cancels it."""
    from twisted.logger import globalLogPublisher

    handler = _Handler()
    proto, _transport, clock, factory = connect(hello, loop, timeout_send=10)
    factory.register_upgrade(b"websocket", lambda channel, request, rest: channel.hand_over(handler))
    proto.pauseProducing()
    proto.dataReceived(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    settle(loop)
    assert proto.handler is handler
    logged: list = []
    globalLogPublisher.addObserver(logged.append)
    try:
        clock.advance(9.9)
        assert not hasattr(handler, "timed_out")
        clock.advance(0.2)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert handler.timed_out
    assert [e["log_format"] for e in logged if "read nothing" in e.get("log_format", "")] == [
        "Client {client} read nothing for {timeout}s; dropping the connection"
    ]

    handler = _Handler()
    proto, _transport, clock, factory = connect(hello, loop, timeout_send=10)
    factory.register_upgrade(b"websocket", lambda channel, request, rest: channel.hand_over(handler))
    proto.dataReceived(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    settle(loop)
    proto.pauseProducing()
    clock.advance(5)
    proto.resumeProducing()
    clock.advance(10)
    assert not hasattr(handler, "timed_out")
