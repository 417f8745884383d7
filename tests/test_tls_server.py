"""The server's own TLS protocol (``tls.ServerTLS``), sans-IO: Twisted's TLS
client over Twisted's in-memory transports (``twisted.test.iosim``), the
server's real OpenSSL context. What it must do as Twisted's
``TLSMemoryBIOProtocol`` did, and what it does with less per connection.

Source: issue 20 item 3 (new TLS connections as cheap as uvicorn's), issue 18
(no private name of Twisted in tls.py; closed connections freed by reference
counting on every Twisted release allowed)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from twisted.internet import ssl as twisted_ssl
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import INegotiated, IProtocolNegotiationFactory, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from zope.interface import implementer, providedBy

from tests.deploy import make_certs
from twisted_asgi.tls import ReloadableTLS, ServerTLS, ServerTLSFactory, TLSOptions


@pytest.fixture
def certs(tmp_path):
    return make_certs(tmp_path)


class App(Protocol):
    """The server's protocol: records what it sees; can write at once."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.received = b""
        self.lost: Any = None
        self.paused = 0
        self.resumed = 0

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        if self.greeting:
            self.transport.write(self.greeting)  # before the client has said anything

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = reason

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        self.resumed += 1

    def stopProducing(self) -> None:
        pass


@implementer(IProtocolNegotiationFactory)
class AppFactory(Factory):
    def __init__(self, clock: Clock, greeting: bytes = b"", alpn: tuple[bytes, ...] = (b"h2", b"http/1.1")) -> None:
        self.clock = clock
        self.call_later = clock.callLater
        self.greeting = greeting
        self.alpn = list(alpn)
        self.built: list[App] = []

    def buildProtocol(self, addr: Any) -> App:
        app = App(self.greeting)
        self.built.append(app)
        return app

    def acceptableProtocols(self) -> list[bytes]:
        return self.alpn


class Client(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost: Any = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = reason


def connect(certs: dict, factory: AppFactory, clock: Clock, alpn: list[bytes] | None = None) -> tuple[Any, Any, Any]:
    """(client TLS protocol, server ServerTLS, pump), handshake done."""
    context = ReloadableTLS(TLSOptions(str(certs["key"]), str(certs["cert"])))
    trust = twisted_ssl.Certificate.loadPEM(certs["ca"].read_bytes())
    options = twisted_ssl.optionsForClientTLS("localhost", trustRoot=trust, acceptableProtocols=alpn)
    address = IPv4Address("TCP", "127.0.0.1", 1234)
    client, server, pump = connectedServerAndClient(
        lambda: ServerTLSFactory(context, factory).buildProtocol(address),
        lambda: TLSMemoryBIOFactory(options, True, Factory.forProtocol(Client), clock=clock).buildProtocol(address),
        clock=clock,
    )
    pump.flush()
    return client, server, pump


def test_interfaces_are_the_transports_declared_once_per_class(certs):
    """A ServerTLS provides what its TCP transport provides (the channel asks
    for ITCPTransport, IPushProducer, ...) and the TLS interfaces, with one
    class per transport class (no per-connection declaration)."""
    clock = Clock()
    factory = AppFactory(clock)
    _c1, one, _p1 = connect(certs, factory, clock)
    _c2, two, _p2 = connect(certs, factory, clock)
    for server in (one, two):
        assert isinstance(server, ServerTLS)
        for interface in (ISSLTransport, INegotiated, *providedBy(server.transport)):
            assert interface.providedBy(server), interface
        assert "__provides__" not in vars(server)  # nothing declared on the instance
    assert type(one) is type(two) and type(one) is not ServerTLS


def test_alpn_and_the_extension_after_the_handshake(certs):
    """ALPN picks the server factory's first protocol the client offers; the
    ASGI tls extension made before the handshake is filled when it completes."""
    clock = Clock()
    factory = AppFactory(clock)
    context = ReloadableTLS(TLSOptions(str(certs["key"]), str(certs["cert"])))
    trust = twisted_ssl.Certificate.loadPEM(certs["ca"].read_bytes())
    options = twisted_ssl.optionsForClientTLS("localhost", trustRoot=trust, acceptableProtocols=[b"http/1.1", b"h2"])
    address = IPv4Address("TCP", "127.0.0.1", 1234)
    extensions: list[dict] = []

    class Recording(App):
        def connectionMade(self) -> None:
            extensions.append(self.transport.asgi_tls_extension())
            super().connectionMade()

    factory.buildProtocol = lambda addr: Recording()  # type: ignore[method-assign]
    client, server, pump = connectedServerAndClient(
        lambda: ServerTLSFactory(context, factory).buildProtocol(address),
        lambda: TLSMemoryBIOFactory(options, True, Factory.forProtocol(Client), clock=clock).buildProtocol(address),
        clock=clock,
    )
    pump.flush()
    assert server.negotiatedProtocol == b"h2" == client.negotiatedProtocol
    (extension,) = extensions
    assert extension["tls_version"] == 0x0304
    assert extension["cipher_suite"] in (0x1301, 0x1302, 0x1303)
    assert extension["server_cert"] == certs["cert"].read_text().split("-----END CERTIFICATE-----")[0] + (
        "-----END CERTIFICATE-----\n"
    )
    assert extension["client_cert_chain"] == [] and extension["client_cert_name"] is None


def test_no_alpn_overlap_goes_on_without_a_protocol(certs):
    clock = Clock()
    _client, server, _pump = connect(certs, AppFactory(clock, alpn=(b"http/1.1",)), clock, alpn=[b"spdy/3"])
    assert server.handshake_done and server.negotiatedProtocol is None


def test_a_write_before_the_handshake_waits_for_it(certs):
    """What the server writes before the handshake completes is held, its
    producer paused meanwhile, and sent (then the producer resumed) once the
    handshake is over."""
    clock = Clock()
    factory = AppFactory(clock, greeting=b"hello before the handshake")
    client, server, _pump = connect(certs, factory, clock)
    (app,) = factory.built
    assert client.wrappedProtocol.received == b"hello before the handshake"
    assert app.paused == 1 and app.resumed == 1
    assert server.unsent == []


def test_data_both_ways_and_a_clean_close_frees_everything(certs):
    """Data both ways; the server closes: close_notify both ways, the TCP
    connection closes, the app hears a clean close, and with the cycle
    collector off nothing of the connection outlives it."""
    gc.collect()
    gc.disable()
    try:
        clock = Clock()
        factory = AppFactory(clock)
        client, server, pump = connect(certs, factory, clock)
        (app,) = factory.built
        client.write(b"x" * 40000)  # more than one record
        pump.flush()
        assert app.received == b"x" * 40000
        server.write(b"y" * 70000)
        pump.flush()
        assert client.wrappedProtocol.received == b"y" * 70000
        server.unregisterProducer()
        server.loseConnection()
        pump.flush()
        assert app.lost is not None and app.lost.check(ConnectionDone)
        assert server.tls is None and server.wrappedProtocol is None
        assert pump.serverIO.disconnected
        server.write(b"after the close")  # dropped, no error
        ref = weakref.ref(server)
        for io in (pump.serverIO, pump.clientIO):
            io.protocol = io.producer = None
        del client, server, pump, app
        factory.built.clear()
        assert ref() is None
    finally:
        gc.enable()


def test_a_client_that_leaves_without_close_notify(certs):
    """A client that closes TCP only: the app hears a plain connection loss
    (not an OpenSSL error), and the failure holds no traceback, so nothing is
    left for the cycle collector."""
    gc.collect()
    gc.disable()
    try:
        clock = Clock()
        factory = AppFactory(clock)
        client, server, pump = connect(certs, factory, clock)
        (app,) = factory.built
        # What Twisted's TCP transport does when the client closes TCP only.
        for io in (pump.serverIO, pump.clientIO):
            io.protocol = io.producer = None
        server.connectionLost(Failure(ConnectionDone()))
        assert app.lost is not None and app.lost.check(ConnectionLost)
        assert app.lost.tb is None and app.lost.value.__traceback__ is None
        ref = weakref.ref(server)
        del client, server, pump, app
        factory.built.clear()
        assert ref() is None
    finally:
        gc.enable()


def test_tcp_closed_in_the_middle_of_a_record(certs):
    """TCP ends with part of a record received: nothing of it reaches the
    app, which hears a plain connection loss, as when nothing was pending."""
    clock = Clock()
    factory = AppFactory(clock)
    client, server, pump = connect(certs, factory, clock)
    (app,) = factory.built
    client.write(b"hello, part of a record")
    clock.advance(0)  # Twisted's TLS transport encrypts a loop pass later
    record = pump.clientIO.getOutBuffer()
    assert len(record) > 5
    server.dataReceived(record[:-3])
    assert app.received == b""
    for io in (pump.serverIO, pump.clientIO):
        io.protocol = io.producer = None
    server.connectionLost(Failure(ConnectionDone()))
    assert app.received == b""
    assert app.lost is not None and app.lost.check(ConnectionLost), app.lost
    assert server.tls is None


def test_close_before_the_handshake_aborts(certs):
    """Before the handshake completes OpenSSL cannot send close_notify: the
    connection is aborted at once instead of waiting for ever."""
    clock = Clock()
    factory = AppFactory(clock)
    context = ReloadableTLS(TLSOptions(str(certs["key"]), str(certs["cert"])))
    server = ServerTLSFactory(context, factory).buildProtocol(None)
    from twisted.internet.testing import StringTransport

    transport = StringTransport()
    server.makeConnection(transport)
    server.loseConnection()
    assert server.aborted and transport.disconnecting
    server.dataReceived(b"\x16\x03\x01\x00\x05hello")  # ignored after the abort
    assert factory.built[0].received == b""


def test_a_handshake_failure_reaches_the_app_once(certs):
    """Garbage instead of a ClientHello: the TLS layer fails, TCP is closed,
    and the app hears it once, when the transport is gone."""
    clock = Clock()
    factory = AppFactory(clock)
    context = ReloadableTLS(TLSOptions(str(certs["key"]), str(certs["cert"])))
    server = ServerTLSFactory(context, factory).buildProtocol(None)
    from twisted.internet.testing import StringTransport

    transport = StringTransport()
    server.makeConnection(transport)
    server.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert server.tls_lost and transport.disconnecting
    (app,) = factory.built
    assert app.lost is None
    server.connectionLost(ConnectionDone())
    assert app.lost is not None and not app.lost.check(ConnectionDone)  # the TLS error, not a clean close
    assert app.lost.tb is None
