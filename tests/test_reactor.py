"""The seam over Twisted's asyncio reactor (twisted_asgi/reactor.py).

``ASGIReactor`` registers sockets with the event loop so that a ready socket's
``doRead``/``doWrite`` is called directly, without Twisted's legacy-log context.
These tests pin what that seam relies on, on both event loops, so a Twisted
release that changes the reactor's internals fails here and not in production:
the callback really is ours, data reaches ``doRead``, a reader that reports an
error or raises is disconnected (and the exception logged), and removal works.
The reactors are built, not installed: the test process keeps its own reactor.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import globalLogPublisher

from twisted_asgi.reactor import _reactor_class, loop_name


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Reader:
    """A minimal IReadDescriptor over one end of a socketpair."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, result: object = None) -> None:
        self.sock = self.socket = sock  # ``socket``: the attribute Twisted's TCP connections have
        self.result = result
        self.data = b""
        self.read = loop.create_future()
        self.lost = loop.create_future()

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "Reader"

    def doRead(self) -> object:
        self.data += self.sock.recv(100)
        if not self.read.done():
            self.read.set_result(self.data)
        if isinstance(self.result, ZeroDivisionError):
            raise self.result
        return self.result

    def connectionLost(self, reason: object) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)


@pytest.fixture(params=["asyncio", "uvloop"])
def reactor_and_pair(request):
    loop = _new_loop(request.param)
    reactor = _reactor_class(request.param == "uvloop")(loop)
    a, b = socket.socketpair()
    a.setblocking(False)
    yield reactor, loop, a, b
    a.close()
    b.close()
    loop.close()


def test_loop_name():
    """loop_name tells uvloop from asyncio's own loop."""
    for kind in ("asyncio", "uvloop"):
        loop = _new_loop(kind)
        try:
            assert loop_name(loop) == kind
        finally:
            loop.close()


def test_ready_socket_reaches_do_read_through_our_callback(reactor_and_pair):
    """A registered reader's data arrives in doRead, called by ASGIReactor.asgi_read."""
    reactor, loop, a, b = reactor_and_pair
    reader = Reader(a, loop)
    reactor.addReader(reader)
    assert reader in reactor.getReaders()
    if loop_name(loop) == "asyncio":
        # The seam itself: the loop's handle calls our method, not callWithLogger.
        handle = loop._selector.get_key(a.fileno()).data[0]
        assert handle._callback == reactor.asgi_read
    b.send(b"hello")
    assert loop.run_until_complete(asyncio.wait_for(reader.read, 5)) == b"hello"
    reactor.removeReader(reader)
    assert reader not in reactor.getReaders()
    assert not reader.lost.done()


def test_without_the_seam_registration_is_twisteds_own(reactor_and_pair):
    """With the seam off (a private name it needs is gone: see
    tests/test_upstream_fallback.py), readers and writers are registered through
    Twisted's own addReader/addWriter, and data, errors and removal behave the same."""
    from twisted.python.log import callWithLogger

    reactor, loop, a, b = reactor_and_pair
    assert reactor.asgi_seam and reactor.asgi_seam_problem is None
    reactor.asgi_seam = False
    reader = Reader(a, loop, result=ConnectionDone())
    reactor.addReader(reader)
    if loop_name(loop) == "asyncio":
        handle = loop._selector.get_key(a.fileno()).data[0]
        assert handle._callback is callWithLogger
    b.send(b"bye")
    assert loop.run_until_complete(asyncio.wait_for(reader.read, 5)) == b"bye"
    lost = loop.run_until_complete(asyncio.wait_for(reader.lost, 5))
    assert lost.check(ConnectionDone)
    assert reader not in reactor.getReaders()


def test_reader_reporting_an_error_is_disconnected(reactor_and_pair):
    """doRead returning a failure reason removes the reader and calls connectionLost with it."""
    reactor, loop, a, b = reactor_and_pair
    reason = ConnectionDone()
    reader = Reader(a, loop, result=reason)
    reactor.addReader(reader)
    b.send(b"x")
    lost = loop.run_until_complete(asyncio.wait_for(reader.lost, 5))
    assert lost.check(ConnectionDone)
    assert reader not in reactor.getReaders()


def test_reader_raising_is_logged_and_disconnected(reactor_and_pair):
    """An exception out of doRead is logged once and ends the connection, as in Twisted."""
    reactor, loop, a, b = reactor_and_pair
    reader = Reader(a, loop, result=ZeroDivisionError("boom"))
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        reactor.addReader(reader)
        b.send(b"x")
        lost = loop.run_until_complete(asyncio.wait_for(reader.lost, 5))
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert lost.check(ZeroDivisionError)
    assert reader not in reactor.getReaders()
    failures = [event for event in seen if "log_failure" in event]
    assert len(failures) == 1 and failures[0]["log_failure"].check(ZeroDivisionError)


def test_writer_gets_do_write(reactor_and_pair):
    """A registered writer is called through the same path when the socket is writable."""
    reactor, loop, a, _b = reactor_and_pair
    called = loop.create_future()

    class Writer:
        def fileno(self) -> int:
            return a.fileno()

        def logPrefix(self) -> str:
            return "Writer"

        def doWrite(self) -> None:
            reactor.removeWriter(self)
            if not called.done():
                called.set_result(True)

        def connectionLost(self, reason: object) -> None:
            raise AssertionError(reason)

    writer = Writer()
    reactor.addWriter(writer)
    assert loop.run_until_complete(asyncio.wait_for(called, 5)) is True
    assert writer not in reactor.getWriters()


@pytest.mark.parametrize("path", ["asgi_ready", "asgi_read"])
def test_reader_whose_descriptor_went_away_is_disconnected(reactor_and_pair, path):
    """A ready reader whose fileno() is now -1 is disconnected with
    ConnectionFdescWentAway, never read: by the general callback and by a
    connection's own."""
    from twisted.internet.error import ConnectionFdescWentAway

    reactor, loop, a, _b = reactor_and_pair
    reader = Reader(a, loop)
    reactor.addReader(reader)
    fd = a.fileno()
    reader.fileno = lambda: -1  # type: ignore[method-assign]
    if path == "asgi_ready":
        reactor.asgi_ready(reader, True)
    else:
        reactor.asgi_read(reader)
    lost = loop.run_until_complete(asyncio.wait_for(reader.lost, 5))
    assert lost.check(ConnectionFdescWentAway)
    assert reader.data == b""
    loop.remove_reader(fd)


def test_uvloop_reset_behind_data_still_disconnects():
    """On uvloop, a client that sends data and then resets (RST) is disconnected.

    libuv reports the socket's error as a failed poll; uvloop runs the read
    callback once and closes the poll without telling Twisted (uvloop issue 552).
    Here that one read takes only part of the data, as a read may: without the
    reactor's check for a pending socket error after a read, the connection
    would never be read or closed again (the server hung this way in the soak)."""
    import struct

    loop = _new_loop("uvloop")
    reactor = _reactor_class(True)(loop)
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()
    conn.setblocking(False)

    class PartialReader(Reader):
        def doRead(self) -> object:
            self.data += self.sock.recv(2)
            return None

    reader = PartialReader(conn, loop)
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.sendall(b"data")
        client.close()  # RST right behind the data
        lost = loop.run_until_complete(_add_and_wait(reactor, reader))
        assert reader.data == b"da"
        assert lost.check(ConnectionLost)
        assert reader not in reactor.getReaders()
    finally:
        conn.close()
        listener.close()
        loop.close()


async def _add_and_wait(reactor, reader):
    # Registered once the reset has arrived, so the first poll event carries the error.
    await asyncio.sleep(0.05)
    reactor.addReader(reader)
    return await asyncio.wait_for(reader.lost, 5)


def test_descriptor_epoll_refuses_is_polled_instead(reactor_and_pair, tmp_path):
    """A descriptor epoll cannot watch (a regular file) is polled continuously, as
    in Twisted, and is removed again cleanly."""
    reactor, _loop, _a, _b = reactor_and_pair
    path = tmp_path / "plain-file"
    path.write_bytes(b"x")
    with path.open("rb") as f:

        class FileReader:
            def fileno(self) -> int:
                return f.fileno()

            def logPrefix(self) -> str:
                return "FileReader"

            def doRead(self) -> None:
                pass

            def connectionLost(self, reason: object) -> None:
                pass

        reader = FileReader()
        reactor.addReader(reader)
        assert reader in reactor.getReaders()
        assert reactor._continuousPolling.isReading(reader)
        reactor.removeReader(reader)
        assert reader not in reactor.getReaders()
        reactor._continuousPolling._checkLoop()  # stop its polling timer


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_loop_clock_schedules_on_the_loop(kind):
    """LoopClock, the production scheduler: callLater(0, f) runs f once the
    current loop pass is done, in order with call_soon; a later call runs when
    due and can be cancelled while pending; seconds() is the loop's clock."""
    from twisted_asgi.reactor import LoopClock

    loop = _new_loop(kind)
    try:
        clock = LoopClock(loop)
        assert abs(clock.seconds() - loop.time()) < 0.05
        ran: list[str] = []

        def first_pass() -> None:
            clock.callLater(0, ran.append, "soon")
            loop.call_soon(ran.append, "call_soon")
            clock.callLater(0, ran.append, "soon 2")
            ran.append("pass")

        loop.call_soon(first_pass)
        # Due ones run in deadline order, however late the loop gets to them;
        # a cancelled one never (its deadline is far beyond the test).
        done = loop.create_future()
        clock.callLater(0.02, lambda: (ran.append("later"), done.set_result(None)))
        clock.callLater(0.01, ran.append, "sooner")
        pending = clock.callLater(3600, ran.append, "cancelled")
        clock.callLater(0.005, pending.cancel)
        clock.callLater(0.001, ran.append, "never").cancel()
        loop.run_until_complete(done)
        assert ran == ["pass", "soon", "call_soon", "soon 2", "sooner", "later"]
        assert pending.cancelled()
    finally:
        loop.close()


@pytest.mark.parametrize("seam", [True, False], ids=["seam", "twisted"])
def test_remove_reader_stops_the_loop_watching_it(reactor_and_pair, seam):
    """removeReader (the seam's own, and Twisted's with the seam off): the
    loop stops watching the descriptor for reading (data then reaches no
    doRead), a second removal and the removal of a reader never added do
    nothing, and a writer of the same descriptor stays."""
    reactor, loop, a, b = reactor_and_pair
    reactor.asgi_seam = seam
    reader = Reader(a, loop)
    reactor.addReader(reader)
    reactor.addWriter(reader)
    reactor.removeReader(reader)
    assert reader not in reactor.getReaders() and reader in reactor.getWriters()
    if loop_name(loop) == "asyncio":
        key = loop._selector.get_key(a.fileno())
        assert key.data[0] is None and key.data[1] is not None  # reading off, writing on
    reactor.removeWriter(reader)
    reactor.removeReader(reader)  # again: nothing to do
    reactor.removeReader(Reader(b, loop))  # never added: nothing to do
    b.send(b"unread")
    loop.run_until_complete(asyncio.sleep(0.05))
    assert not reader.read.done() and reader.data == b""
