"""A plain TCP connection's scope addresses come without asking its socket
(issue 20, item 2: the per-connection cost of ``Connection: close``): the
client is the address the listening port gave ``buildProtocol``, the server
the port's own address when it is bound to one. These tests check that the
addresses are still exactly the connection's own, over loopback, for a
port bound to one address, a wildcard port reached at two different local
addresses, and IPv6; and the decision itself, unit by unit."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from tests.serving import recv_response, start_server
from twisted_asgi._upstream.twisted import fixed_address
from twisted_asgi.channel import HTTPChannel


def _scope_over(family: int, connect_to: str, port: int) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The scope of one request on a new connection to ``connect_to``, and the
    client socket's own address."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect((connect_to, port))
        mine = sock.getsockname()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status, _headers, body = recv_response(sock)
    assert status.startswith(b"HTTP/1.1 200"), status
    return json.loads(body), mine


def test_bound_port_scope_addresses_are_the_connections():
    server = start_server("tests.apps:scope_echo", endpoint="tcp:port=0:interface=127.0.0.1")
    try:
        for _ in range(3):  # the port's address is found once, then reused
            scope, mine = _scope_over(socket.AF_INET, "127.0.0.1", server.port)
            assert scope["server"] == ["127.0.0.1", server.port]
            assert scope["client"] == [mine[0], mine[1]]
    finally:
        server.stop()


def test_wildcard_port_scope_server_is_the_address_reached():
    """On a port bound to 0.0.0.0 each connection's server address is the one
    its client reached (127.0.0.1 or 127.0.0.2 here), never one kept from an
    earlier connection."""
    server = start_server("tests.apps:scope_echo", endpoint="tcp:port=0:interface=0.0.0.0")
    try:
        for reached in ("127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"):
            scope, mine = _scope_over(socket.AF_INET, reached, server.port)
            assert scope["server"] == [reached, server.port]
            assert scope["client"] == [mine[0], mine[1]]
    finally:
        server.stop()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_ipv6_port_scope_addresses_are_the_connections():
    server = start_server("tests.apps:scope_echo", endpoint=r"tcp6:port=0:interface=\:\:1")
    try:
        for _ in range(2):
            scope, mine = _scope_over(socket.AF_INET6, "::1", server.port)
            assert scope["server"] == ["::1", server.port]
            assert scope["client"] == [mine[0], mine[1]]
    finally:
        server.stop()


class _Port:
    def __init__(self, host: Any) -> None:
        self.host = host

    def getHost(self) -> Any:  # noqa: N802 (Twisted's name)
        return self.host


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (IPv4Address("TCP", "127.0.0.1", 8000), ("127.0.0.1", 8000)),
        (IPv4Address("TCP", "10.1.2.3", 80), ("10.1.2.3", 80)),
        (IPv6Address("TCP", "::1", 8000), ("::1", 8000)),
        # Wildcards: each connection's own address is asked.
        (IPv4Address("TCP", "0.0.0.0", 8000), None),
        (IPv4Address("TCP", "", 8000), None),
        (IPv6Address("TCP", "::", 8000), None),
        # A scoped IPv6 address, a port not yet bound, a unix socket: asked too.
        (IPv6Address("TCP", "fe80::1%eth0", 8000), None),
        (IPv4Address("TCP", "127.0.0.1", 0), None),
        (UNIXAddress(b"/tmp/app.sock"), None),
    ],
)
def test_fixed_address(host, expected):
    assert fixed_address(_Port(host)) == expected


def test_fixed_address_of_no_port():
    assert fixed_address(None) is None


def test_addresses_only_for_a_twisted_tcp_connection():
    """Any other transport (TLS, the PROXY wrapper, a test's) is asked for its
    own getPeer/getHost: the address buildProtocol was given is not used."""

    class Factory:
        config = clock = access_log = http_log_hook = None
        port_addresses: dict[Any, Any] = {}

    class Transport:
        server = _Port(IPv4Address("TCP", "127.0.0.1", 8000))

    channel = HTTPChannel(Factory(), IPv4Address("TCP", "127.0.0.9", 5555))  # type: ignore[arg-type]
    channel.transport = Transport()
    assert channel._addresses() is None
    assert Factory.port_addresses == {}
    unix = HTTPChannel(Factory(), UNIXAddress(None))  # type: ignore[arg-type]
    unix.transport = Transport()
    assert unix._addresses() is None


def test_tcp_addresses_without_a_listening_port():
    """A Twisted TCP connection whose accepting port is unknown (a Twisted
    without ``Server.server``, or None there): the server address is the
    socket's own (getHost), the client the one given."""
    from twisted.internet import tcp
    from twisted.internet.protocol import Protocol
    from twisted.internet.testing import MemoryReactor

    from twisted_asgi._upstream.twisted import tcp_addresses

    with socket.create_server(("127.0.0.1", 0)) as listener, socket.create_connection(listener.getsockname()) as peer:
        accepted, addr = listener.accept()
        with accepted:
            transport = tcp.Server(accepted, Protocol(), addr, None, 0, MemoryReactor())
            servers: dict[Any, Any] = {}
            assert tcp_addresses(transport, addr, servers) == (addr, listener.getsockname())
            assert servers == {None: None}
            del transport.server
            assert tcp_addresses(transport, addr, servers) == (addr, listener.getsockname())
            assert addr == peer.getsockname()
