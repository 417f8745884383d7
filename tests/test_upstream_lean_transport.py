"""The lean transport of an accepted TCP connection (``_upstream.twisted.LeanServer``,
issue 20 target 2) against Twisted's own ``tcp.Server``, which is the reference
path: the same attributes after construction, the same log strings (made when
first read), the same registration with the reactor; and ``tcp_setup``, the
one-call set-up of a new TCP connection, against the three calls it stands for.
The served paths are the whole suite's (every TCP connection takes them)."""

from __future__ import annotations

import socket
import types
from typing import Any

import pytest
from twisted.internet import tcp
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor

from twisted_asgi._upstream import twisted as upstream
from twisted_asgi._upstream.twisted import (
    LeanServer,
    accept_ready,
    direct_writer,
    lean_server_problem,
    tcp_addresses,
    tcp_setup,
)


class FakePort:
    """What a transport reads on its tcp.Port (``_realPortNumber``, ``getHost``)."""

    transport = tcp.Server

    def __init__(self, listener: socket.socket, protocol_class: type = Protocol) -> None:
        self.socket = listener
        self.protocols: list[Protocol] = []
        self.protocol_class = protocol_class
        self.factory = self
        self.numberAccepts = 100
        self.sessionno = 0
        self.reactor = MemoryReactor()
        self._realPortNumber = listener.getsockname()[1]

    def buildProtocol(self, addr: Any) -> Protocol:  # noqa: N802 (Twisted's name)
        protocol = self.protocol_class()
        self.protocols.append(protocol)
        return protocol

    def _buildAddr(self, address: tuple[str, int]) -> IPv4Address:  # noqa: N802 (Twisted's name)
        return IPv4Address("TCP", *address)

    def getHost(self) -> IPv4Address:  # noqa: N802 (Twisted's name)
        return IPv4Address("TCP", *self.socket.getsockname())


@pytest.fixture(autouse=True)
def fresh_class_paths(monkeypatch):
    """Each transport class's fast paths checked afresh: a MemoryReactor (no
    prompt close) must not decide them for the rest of the test process."""
    monkeypatch.setattr(upstream, "_class_paths", {})


class Named(Protocol):
    def logPrefix(self) -> str:  # noqa: N802 (Twisted's name)
        return "named-prefix"


@pytest.fixture
def pair():
    """A listening socket and two accepted connections (client sockets kept open)."""
    listener = socket.create_server(("127.0.0.1", 0))
    clients = [socket.create_connection(listener.getsockname(), timeout=5) for _ in range(2)]
    accepted = [listener.accept() for _ in range(2)]
    yield listener, accepted
    for client in clients:
        client.close()
    for sock, _addr in accepted:
        sock.close()
    listener.close()


@pytest.mark.parametrize("protocol_class", [Protocol, Named])
def test_lean_server_is_twisteds_server(pair, protocol_class):
    listener, [(sock_a, addr_a), (sock_b, addr_b)] = pair
    port = FakePort(listener)
    reactor = MemoryReactor()
    reference = tcp.Server(sock_a, protocol_class(), addr_a, port, 7, reactor)
    lean = LeanServer(sock_b, protocol_class(), addr_b, port, 7, reactor)
    assert isinstance(lean, tcp.Server)
    want = dict(vars(reference))
    got = dict(vars(lean))
    assert got.pop("asgi_protocol_class") is protocol_class
    # Made when first read, equal to Twisted's (the hostname and port differ
    # only by the client's port, which neither string has).
    assert "logstr" not in got and "repstr" not in got
    assert lean.logstr == want.pop("logstr")
    assert repr(lean) == want.pop("repstr")
    assert lean.logPrefix() == reference.logPrefix()
    for name in ("socket", "fileno", "protocol", "client", "_tempDataBuffer"):
        assert type(got.pop(name)) is type(want.pop(name)), name
    assert got == want
    assert lean.socket.gettimeout() == 0.0  # non-blocking, as Twisted makes it
    assert set(reactor.readers) == {reference, lean}  # both started reading
    assert lean.getPeer() == IPv4Address("TCP", *addr_b) and lean.getHost() == reference.getHost()


def test_log_strings_after_the_protocol_is_gone(pair):
    listener, [(sock, addr), _other] = pair
    lean = LeanServer(sock, Named(), addr, FakePort(listener), 3, MemoryReactor())
    del lean.protocol  # as tcp.Connection.connectionLost does
    assert lean.logstr == f"Named,3,{addr[0]}"
    assert repr(lean) == f"<Named #3 on {listener.getsockname()[1]}>"
    # Twisted's own assignment still wins (a non-data descriptor).
    lean.logstr = "set"
    assert lean.logPrefix() == "set"


def test_no_port_no_repstr(pair):
    _listener, [(sock, addr), _other] = pair
    lean = LeanServer(sock, Protocol(), addr, None, 1, MemoryReactor())
    with pytest.raises(AttributeError):
        lean.repstr  # noqa: B018 (as tcp.Server, which sets none without a port)


def test_accept_ready_makes_lean_servers_only_for_twisteds_class(pair):
    listener, _accepted = pair
    listener.setblocking(False)
    clients = [socket.create_connection(listener.getsockname(), timeout=5)]
    try:
        port = FakePort(listener)
        accept_ready(port)
        assert [type(p.transport) for p in port.protocols] == [LeanServer]
        clients.append(socket.create_connection(listener.getsockname(), timeout=5))

        class Own(tcp.Server):
            pass

        port.transport = Own  # a port with its own transport class keeps it
        accept_ready(port)
        assert [type(p.transport) for p in port.protocols] == [LeanServer, Own]
    finally:
        for client in clients:
            client.close()
        for protocol in port.protocols:
            protocol.transport.socket.close()


def test_a_new_name_in_twisteds_init_turns_it_off(monkeypatch):
    assert lean_server_problem() is None

    def newer_init(self: Any, sock: Any, protocol: Any, reactor: Any = None) -> None:
        self.socket = sock
        self.brand_new_attribute = 1

    monkeypatch.setattr(tcp.Connection, "__init__", newer_init)
    problem = lean_server_problem()
    assert problem is not None and "brand_new_attribute" in problem
    monkeypatch.setattr(upstream, "_lean_server", [])
    monkeypatch.setattr(upstream, "say_off", lambda log, off: None)
    assert not upstream._lean_server_ok()


def test_tcp_setup_is_the_three_calls(pair):
    listener, [(sock_a, addr_a), (_sock_b, addr_b)] = pair
    port = FakePort(listener)
    reactor = MemoryReactor()
    lean = LeanServer(sock_a, Protocol(), addr_a, port, 1, reactor)
    assert not lean.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    servers: dict[Any, Any] = {}
    made = tcp_setup(lean, IPv4Address("TCP", *addr_a), servers)
    assert made is not None
    writer, addresses = made
    assert lean.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert addresses == tcp_addresses(lean, addr_a, {}) == (addr_a, listener.getsockname())
    assert type(writer) is type(direct_writer(lean))  # the direct path's writer, not transport.write
    assert writer is not lean.write
    # No address from buildProtocol (or a unix one): the writer, no addresses.
    assert tcp_setup(lean, None, servers)[1] is None  # type: ignore[index]
    assert tcp_setup(lean, UNIXAddress(b"/x"), servers)[1] is None  # type: ignore[index]
    # Not a Twisted TCP connection: nothing done.
    other = types.SimpleNamespace(write=lambda data: None)
    assert tcp_setup(other, IPv4Address("TCP", *addr_b), servers) is None


class Recorder(Protocol):
    def __init__(self) -> None:
        self.lost: list[Any] = []

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 (Twisted's name)
        self.lost.append(reason)


class Producer:
    def __init__(self) -> None:
        self.stopped = 0

    def stopProducing(self) -> None:  # noqa: N802 (Twisted's name)
        self.stopped += 1


@pytest.fixture(params=["asyncio", "uvloop"])
def seam_reactor(request):
    """Our reactor over a new loop (built, not installed)."""
    import asyncio

    from twisted_asgi.reactor import _reactor_class

    if request.param == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    reactor = _reactor_class(request.param == "uvloop")(loop)
    assert reactor.asgi_seam
    yield reactor, loop
    loop.close()


def _closed_state(transport: Any) -> dict[str, Any]:
    state = {k: v for k, v in vars(transport).items() if k not in ("asgi_protocol_class", "logstr", "repstr")}
    state["_tempDataBuffer"] = list(state["_tempDataBuffer"])
    state.pop("client")
    return state


def _prompt_close(transport: Any, loop: Any) -> None:
    import asyncio

    from twisted_asgi._upstream.twisted import close_soon

    assert close_soon(transport, lambda delay, f, *args: loop.call_soon(f, *args))
    loop.run_until_complete(asyncio.sleep(0))


def test_prompt_close_of_a_lean_server_is_twisteds_connection_lost(pair, seam_reactor):
    """The lean close (_lean_close) against Twisted's connectionLost on a
    tcp.Server: the same state after, the same reason, the socket closed, the
    client told (EOF), nothing left registered."""
    reactor, loop = seam_reactor
    listener, [(sock_a, addr_a), (sock_b, addr_b)] = pair
    port = FakePort(listener)
    made = []
    removed: list[str] = []
    for name in ("removeReader", "removeWriter"):
        method = getattr(reactor, name)
        setattr(reactor, name, lambda fd, method=method, name=name: (removed.append(name), method(fd))[1])
    for cls, sock, addr in ((tcp.Server, sock_a, addr_a), (LeanServer, sock_b, addr_b)):
        protocol = Recorder()
        transport = cls(sock, protocol, addr, port, 1, reactor)
        protocol.makeConnection(transport)
        del removed[:]
        _prompt_close(transport, loop)
        # close_soon stops reading; Twisted's connectionLost asks again, for
        # both, and finds nothing to remove; the lean close does not ask.
        want = ["removeReader"] if cls is LeanServer else ["removeReader", "removeReader", "removeWriter"]
        assert removed == want
        assert len(protocol.lost) == 1 and protocol.lost[0].check(ConnectionDone)
        assert sock.fileno() == -1  # closed
        made.append(transport)
    reference, lean = made
    assert _closed_state(lean) == _closed_state(reference)
    assert not set(made) & set(reactor.getReaders() + reactor.getWriters())


@pytest.mark.parametrize("cls", [tcp.Server, LeanServer])
def test_prompt_close_sends_the_fin_at_once(cls, seam_reactor):
    """close_soon sends the FIN behind what was written before it returns, not
    at the deferred close: the client reads the response and its end with the
    close not yet run (issue 20 target 2: a FIN left to the end of the loop
    pass let Connection: close clients close first and left the server idle).
    Writes after it are dropped, as after Twisted's loseWriteConnection; the
    deferred close then closes as before."""
    from twisted_asgi._upstream.twisted import close_soon

    reactor, _loop = seam_reactor
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=5)
    sock, addr = listener.accept()
    try:
        protocol = Recorder()
        transport = cls(sock, protocol, addr, FakePort(listener), 1, reactor)
        protocol.makeConnection(transport)
        sock.sendall(b"response")  # what the direct write sent
        deferred: list[Any] = []
        assert close_soon(transport, lambda delay, f, *args: deferred.append((delay, f, args)))
        transport.write(b"late")
        assert not transport.dataBuffer and not transport._tempDataLen
        got = b""
        while True:
            chunk = client.recv(100)  # 5 s timeout: without the FIN, socket.timeout
            if not chunk:
                break
            got += chunk
        assert got == b"response"
        assert protocol.lost == [] and transport.connected  # the close itself is still deferred
        [(delay, f, args)] = deferred
        assert delay == 0
        f(*args)
        assert len(protocol.lost) == 1 and protocol.lost[0].check(ConnectionDone)
        assert sock.fileno() == -1
    finally:
        client.close()
        sock.close()
        listener.close()


def test_lean_close_leaves_a_registered_producer_to_twisted(pair, seam_reactor):
    reactor, _loop = seam_reactor
    listener, [(sock, addr), _other] = pair
    protocol = Recorder()
    lean = LeanServer(sock, protocol, addr, FakePort(listener), 1, reactor)
    protocol.makeConnection(lean)
    from twisted_asgi._upstream.twisted import _lean_close

    producer = Producer()
    lean.registerProducer(producer, True)
    assert not _lean_close(lean)  # nothing done: Twisted's connectionLost stops the producer
    assert lean.connected and protocol.lost == []
    lean.unregisterProducer()
    assert not _lean_close(lean)  # still registered for reading
    lean.stopReading()
    assert _lean_close(lean)
    assert protocol.lost[0].check(ConnectionDone) and sock.fileno() == -1
    assert not hasattr(lean, "socket") and not hasattr(lean, "protocol")


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


def test_the_servers_factory_is_given_the_accepted_address_as_it_came(pair):
    """ASGIFactory's asgi_build_accepted takes the (host, port) accept()
    gave, in place of buildProtocol with an address object: the connection
    has the same client and server as through buildProtocol."""
    from twisted.internet.task import Clock

    from twisted_asgi.config import Config
    from twisted_asgi.server import ASGIFactory

    listener, _accepted = pair
    built: list[Any] = []

    class Spied(ASGIFactory):
        def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 (Twisted's name)
            built.append(addr)
            return super().buildProtocol(addr)

    factories = [ASGIFactory(hello, Config(), Clock()), Spied(hello, Config(), Clock())]
    assert factories[0].asgi_build_accepted == factories[0]._build_accepted
    assert not hasattr(factories[1], "asgi_build_accepted")  # its own buildProtocol is called
    plain = factories[0].buildProtocol
    factories[0].buildProtocol = lambda addr: (built.append(("plain", addr)), plain(addr))[1]  # type: ignore[method-assign]
    infos = []
    clients = []
    for factory in factories:
        factory.lifespan_state = {}
        listener.setblocking(False)
        clients.append(socket.create_connection(listener.getsockname(), timeout=5))
        port = FakePort(listener)
        port.factory = factory
        accept_ready(port)
        (channel,) = factory.connections
        infos.append((channel.info.client, channel.info.server))
        assert channel.info.client == clients[-1].getsockname()
        assert channel.info.server == listener.getsockname()
        channel.transport.socket.close()
    assert [type(a) for a in built] == [IPv4Address]
    assert infos[0][1] == infos[1][1]
    for client in clients:
        client.close()


def test_accepted_address_path_keeps_the_connection_limit():
    from twisted.internet.task import Clock

    from twisted_asgi.config import Config
    from twisted_asgi.server import ASGIFactory, _Refused

    factory = ASGIFactory(hello, Config(limit_concurrent_connections=1), Clock())
    factory.lifespan_state = {}
    made = [factory.asgi_build_accepted(("127.0.0.1", 1000 + i)) for i in range(2)]
    assert type(made[0]).__name__ == "HTTPChannel"
    # (Counted once connected: the limit is on connections made, as buildProtocol's.)
    factory.connections.add(made[0])
    refused = factory.asgi_build_accepted(("127.0.0.1", 1002))
    assert isinstance(refused, _Refused) and factory._refused == 1
