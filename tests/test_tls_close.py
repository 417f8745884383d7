"""Closing TLS connections promptly: after the server's close_notify, TCP is
closed within ``timeout_tls_close`` whether or not the client answers with its
own. The client here speaks TLS over a plain socket through memory BIOs, so it
never sends a close_notify and never closes, and it sees the TCP FIN itself.

Source: issue 15, item 11 (outside attack).
"""

from __future__ import annotations

import signal
import socket
import ssl
import time

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests.deploy import make_certs, serving

APP = "tests.deploy:app"
#: What the server is given in these tests, and the slack allowed on top.
TLS_CLOSE = 0.5
SLACK = 1.5


@pytest.fixture
def certs(tmp_path):
    return make_certs(tmp_path)


def tls_server(certs, *flags: str):
    endpoint = f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    return serving(APP, "--timeout-tls-close", str(TLS_CLOSE), *flags, endpoint=endpoint)


class SilentTLSClient:
    """TLS over a raw socket that never sends close_notify nor closes TCP."""

    def __init__(self, server, ca) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.plain = b""
        self.close_notify_at: float | None = None
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._pull(10.0)
        self._flush()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _pull(self, timeout: float) -> bool:
        """Read TCP once; False at EOF (or reset)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        if not data:
            return False
        self.incoming.write(data)
        return True

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def _decrypt(self) -> None:
        while self.close_notify_at is None:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:  # the server's close_notify
                self.close_notify_at = time.monotonic()
                return
            self.plain += chunk

    def read_until(self, needle: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.plain:
            assert self._pull(max(0.01, deadline - time.monotonic())), f"closed before {needle!r}: {self.plain!r}"
            self._decrypt()
        return self.plain

    def tcp_closed_at(self, timeout: float) -> float | None:
        """When the server's FIN (or reset) arrived, reading for at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not self._pull(max(0.01, deadline - time.monotonic())):
                    self._decrypt()
                    return time.monotonic()
            except TimeoutError:
                return None
            finally:
                self._decrypt()
        return None

    def close(self) -> None:
        self.sock.close()


def _assert_closed_promptly(client: SilentTLSClient, started: float, expected: float) -> None:
    closed = client.tcp_closed_at(expected + SLACK + 2)
    assert client.close_notify_at is not None, "no close_notify from the server"
    assert closed is not None, f"TCP still open {expected + SLACK + 2:.1f}s later"
    assert closed - started <= expected + SLACK, f"TCP closed after {closed - started:.2f}s, wanted <= {expected}s"
    assert closed - client.close_notify_at <= TLS_CLOSE + SLACK


def test_idle_keep_alive_tls_connection_closes_within_bound(certs):
    """An idle keep-alive TLS connection whose client ignores our close_notify
    is closed at keep-alive + timeout_tls_close, not at the send timeout.
    Source: issue 15, item 11 (outside attack)."""
    with tls_server(certs, "--timeout-keep-alive", "1") as server:
        client = SilentTLSClient(server, certs["ca"])
        try:
            client.send(b"GET /scope HTTP/1.1\r\nHost: localhost\r\n\r\n")
            client.read_until(b"}")
            started = time.monotonic()
            _assert_closed_promptly(client, started, 1 + TLS_CLOSE)
        finally:
            client.close()


def test_tls_head_timeout_closes_within_bound(certs):
    """A TLS client that sends half a head gets 408 at the head timeout and its
    TCP connection is closed timeout_tls_close later, close_notify or not.
    Source: issue 15, item 11 (outside attack)."""
    with tls_server(certs, "--timeout-request-head", "1") as server:
        client = SilentTLSClient(server, certs["ca"])
        try:
            started = time.monotonic()
            client.send(b"GET /scope HTTP/1.1\r\nHost: loc")
            client.read_until(b" 408 ")
            _assert_closed_promptly(client, started, 1 + TLS_CLOSE)
        finally:
            client.close()


def test_tls_bad_request_closes_within_bound(certs):
    """A 400 over TLS: the connection no longer waits in CLOSE-WAIT for the
    client's close_notify; TCP closes timeout_tls_close after the answer.
    Source: issue 15, item 11 (outside attack)."""
    with tls_server(certs) as server:
        client = SilentTLSClient(server, certs["ca"])
        try:
            started = time.monotonic()
            client.send(b"GET /scope HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
            client.read_until(b" 400 ")
            _assert_closed_promptly(client, started, TLS_CLOSE)
        finally:
            client.close()


def test_tls_shutdown_is_not_held_by_a_silent_client(certs):
    """Graceful shutdown closes an idle TLS keep-alive connection at once; a
    client that never answers the close_notify no longer holds the server's
    exit until the graceful timeout. Source: issue 15, item 11 (outside attack)."""
    with tls_server(certs, "--graceful-timeout", "20") as server:
        client = SilentTLSClient(server, certs["ca"])
        try:
            client.send(b"GET /scope HTTP/1.1\r\nHost: localhost\r\n\r\n")
            client.read_until(b"}")
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            _assert_closed_promptly(client, started, TLS_CLOSE)
            server.proc.wait(TLS_CLOSE + SLACK + 5)
            assert time.monotonic() - started <= TLS_CLOSE + SLACK + 2
        finally:
            client.close()


def test_tls_close_timer_closes_tcp_and_is_cancelled_by_loss():
    """Sans-IO: ServerTLS closes its TCP transport timeout_tls_close after
    loseConnection on the server's clock, and a connection lost before that
    leaves no timer behind. Source: issue 15, item 11 (outside attack)."""
    from twisted.internet.protocol import Factory, Protocol

    from twisted_asgi.config import Config
    from twisted_asgi.tls import ServerTLSFactory

    class Wrapped(Factory):
        protocol = Protocol

        def __init__(self, clock: Clock) -> None:
            self.config = Config(timeout_tls_close=2.0)
            self.call_later = clock.callLater

    class Creator:
        def serverConnectionForTLS(self, tls_protocol):
            from OpenSSL import SSL

            return SSL.Connection(SSL.Context(SSL.TLS_SERVER_METHOD), None)

    from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
    from zope.interface import directlyProvides

    creator = Creator()
    directlyProvides(creator, IOpenSSLServerConnectionCreator)
    for lost_first in (False, True):
        clock = Clock()
        factory = ServerTLSFactory(creator, Wrapped(clock))
        tls = factory.buildProtocol(None)
        transport = StringTransport()
        tls.makeConnection(transport)
        tls.handshake_done = True  # as after a handshake: loseConnection then sends close_notify
        tls.loseConnection()
        assert len(clock.getDelayedCalls()) == 1
        if lost_first:
            tls.connectionLost(ConnectionError("gone"))
            assert not clock.getDelayedCalls()
            continue
        clock.advance(1.9)
        assert not transport.disconnecting
        clock.advance(0.2)
        assert transport.disconnecting


def test_tls_clients_that_leave_abruptly_leave_nothing_for_the_cycle_collector(tmp_path):
    """TLS clients that close without close_notify (HTTP/1.1 and HTTP/2) or reset
    right after the handshake: with the server's cycle collector off, nothing of
    twisted-asgi's (the TLS protocol, the channel) outlives the connections.

    Source: issue 15 ('a closed connection leaves nothing for the cycle
    collector' on every protocol), found by the outside re-attack: Twisted's TLS
    receive path makes a Failure whose traceback frames hold it and the protocol."""
    import json
    import socket
    import ssl
    import time

    import h2.config
    import h2.connection

    from tests.deploy import make_certs, serving

    certs = make_certs(tmp_path)
    endpoint = f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    context = ssl.create_default_context(cafile=str(certs["ca"]))

    def connect(alpn: str) -> ssl.SSLSocket:
        ctx = ssl.create_default_context(cafile=str(certs["ca"]))
        ctx.set_alpn_protocols([alpn])
        return ctx.wrap_socket(
            socket.create_connection((server.host, server.port), timeout=10), server_hostname="localhost"
        )

    def leftovers() -> dict:
        with context.wrap_socket(
            socket.create_connection((server.host, server.port), timeout=10), server_hostname="localhost"
        ) as sock:
            sock.sendall(b"GET /leftovers HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return json.loads(data.split(b"\r\n\r\n", 1)[1])

    def h2_request_then_gone() -> None:
        sock = connect("h2")  # HTTP/2: a request, then gone without close_notify
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "x")], True)
        sock.sendall(conn.data_to_send())
        sock.recv(65536)
        sock.close()

    with serving("tests.soak:app", endpoint=endpoint, env={"SOAK_GC_OFF": "1"}) as server:
        # HTTP/2's one server object is made at the first HTTP/2 connection (h2 is
        # imported only then): it exists before the count, as every connection's objects must not after.
        h2_request_then_gone()
        before = leftovers()
        for _ in range(10):
            sock = connect("http/1.1")  # a request, then gone without close_notify
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            sock.recv(65536)
            sock.close()
            sock = connect("http/1.1")  # a reset right after the handshake
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
            h2_request_then_gone()
        deadline = time.monotonic() + 10
        while True:
            after = leftovers()
            grown = {name: (before.get(name, 0), n) for name, n in after.items() if n > before.get(name, 0)}
            if not grown or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert grown == {}
