"""The lean accept loop (``_upstream.twisted.accept_ready``, issue 20 item 2):
what Twisted's ``tcp.Port.doRead`` does for a listening port, less its log
buffering, on a real listening socket over loopback; the rare cases (an
accept error, a refused protocol, a factory that raises) as Twisted has them.
The served paths (IPv4, IPv6, addresses) are in tests/test_channel_addresses.py
and the fallback in tests/test_upstream_fallback.py."""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest
from twisted.internet import tcp
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor
from twisted.logger import globalLogPublisher

from twisted_asgi._upstream.twisted import accept_ready, accept_ready_problem


class Factory:
    def __init__(self, refuse: int = 0, fail: bool = False) -> None:
        self.addresses: list[Any] = []
        self.protocols: list[Protocol] = []
        self.refuse = refuse
        self.fail = fail

    def buildProtocol(self, addr: Any) -> Protocol | None:  # noqa: N802 (Twisted's name)
        self.addresses.append(addr)
        if self.fail:
            raise RuntimeError("factory failed")
        if self.refuse:
            self.refuse -= 1
            return None
        protocol = Protocol()
        self.protocols.append(protocol)
        return protocol


class FakePort:
    """What accept_ready reads on a tcp.Port, with Twisted's own transport class."""

    transport = tcp.Server

    def __init__(self, listener: socket.socket, factory: Factory) -> None:
        self.socket = listener
        self.factory = factory
        self.numberAccepts = 100
        self.sessionno = 0
        self.reactor = MemoryReactor()
        self.do_read_calls = 0
        self._realPortNumber = listener.getsockname()[1]

    def _buildAddr(self, address: tuple[str, int]) -> IPv4Address:  # noqa: N802 (Twisted's name)
        return IPv4Address("TCP", *address)

    def doRead(self) -> None:  # noqa: N802 (Twisted's name)
        self.do_read_calls += 1


@pytest.fixture
def listener():
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    clients: list[socket.socket] = []
    yield sock, clients
    for client in clients:
        client.close()
    sock.close()


def _connect(listener: socket.socket, clients: list[socket.socket], count: int) -> None:
    for _ in range(count):
        clients.append(socket.create_connection(listener.getsockname(), timeout=5))


def test_accepts_every_waiting_connection(listener):
    sock, clients = listener
    _connect(sock, clients, 3)
    factory = Factory()
    port = FakePort(sock, factory)
    assert accept_ready_problem(port) is None
    accept_ready(port)
    assert [a.port for a in factory.addresses] == sorted(c.getsockname()[1] for c in clients)
    assert all(a.host == "127.0.0.1" for a in factory.addresses)
    assert port.sessionno == 3
    assert port.numberAccepts == 3  # Twisted's scaling: what was accepted, at least 1
    for protocol in factory.protocols:
        transport = protocol.transport
        assert isinstance(transport, tcp.Server) and protocol.connected
        assert transport.getPeer() in factory.addresses
        assert transport.socket.family == socket.AF_INET and transport.socket.type == socket.SOCK_STREAM
        assert transport.socket.gettimeout() == 0.0  # non-blocking, as Twisted makes it
        assert not transport.socket.get_inheritable()  # close-on-exec, as Twisted 24.7 made sure
        transport.socket.close()
    accept_ready(port)  # nothing waiting: EAGAIN, nothing done
    assert port.sessionno == 3 and port.numberAccepts == 1 and port.do_read_calls == 0


def test_limit_reached_scales_up(listener):
    sock, clients = listener
    _connect(sock, clients, 3)
    port = FakePort(sock, Factory())
    port.numberAccepts = 2
    accept_ready(port)
    assert port.sessionno == 2 and port.numberAccepts == 22
    for protocol in port.factory.protocols:
        protocol.transport.socket.close()


def test_refused_protocol_closes_the_socket(listener):
    sock, clients = listener
    _connect(sock, clients, 2)
    port = FakePort(sock, Factory(refuse=1))
    accept_ready(port)
    assert len(port.factory.addresses) == 2 and len(port.factory.protocols) == 1
    assert port.sessionno == 1
    refused = [c for c in clients if c.getsockname()[1] == port.factory.addresses[0].port]
    assert len(refused) == 1 and refused[0].recv(1) == b""  # the refused one sees its close
    port.factory.protocols[0].transport.socket.close()


def test_accept_error_goes_to_twisteds_do_read(listener):
    sock, _clients = listener

    class Failing(socket.socket):
        def _accept(self) -> Any:
            raise OSError(errno.EMFILE, "Too many open files")

    failing = Failing(socket.AF_INET, socket.SOCK_STREAM)
    try:
        port = FakePort(sock, Factory())
        port.socket = failing
        accept_ready(port)
        assert port.do_read_calls == 1 and port.sessionno == 0
    finally:
        failing.close()


def test_factory_error_is_logged_and_the_port_goes_on(listener):
    sock, clients = listener
    _connect(sock, clients, 1)
    port = FakePort(sock, Factory(fail=True))
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        accept_ready(port)
    finally:
        globalLogPublisher.removeObserver(events.append)
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1 and failures[0]["log_failure"].check(RuntimeError)
    _connect(sock, clients, 1)
    port.factory.fail = False
    accept_ready(port)
    assert len(port.factory.protocols) == 1
    port.factory.protocols[0].transport.socket.close()


def test_problem_names_what_is_missing(listener):
    sock, _clients = listener
    port = FakePort(sock, Factory())
    del port.numberAccepts
    assert "numberAccepts" in (accept_ready_problem(port) or "")
