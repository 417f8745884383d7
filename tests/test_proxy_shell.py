"""The Twisted side of the PROXY protocol and of proxy headers, without sockets:
StringTransport, a fake clock, an asyncio loop driven by hand."""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests.conftest import settle
from twisted_asgi.config import Config
from twisted_asgi.listeners import ProxyProtocolFactory, endpoint_from_string, listener_endpoint, split_description
from twisted_asgi.proxy import TrustList
from twisted_asgi.server import ASGIFactory
from twisted_asgi.tls import TLSServerEndpoint


async def echo_scope(scope, receive, send):
    await receive()
    body = json.dumps({"client": scope["client"], "server": scope["server"], "scheme": scope["scheme"]}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


def proxied(loop, peer=("127.0.0.1", 40000), allow="127.0.0.1", timeout=10.0, **config):
    clock = Clock()
    factory = ASGIFactory(echo_scope, Config(websocket=False, **config), clock)
    factory.runner._loop = loop
    factory.lifespan_state = {}
    wrapper = ProxyProtocolFactory(factory, TrustList(allow), timeout, 4096, clock)
    if peer is None:
        address = UNIXAddress(b"/run/app.sock")
        transport = StringTransport(hostAddress=address, peerAddress=UNIXAddress(None))
    else:
        address = IPv4Address("TCP", *peer)
        transport = StringTransport(hostAddress=IPv4Address("TCP", "10.0.0.9", 8000), peerAddress=address)
    proto = wrapper.buildProtocol(address)
    proto.makeConnection(transport)
    return proto, transport, clock, factory


def body(transport) -> dict:
    return json.loads(transport.value().split(b"\r\n\r\n", 1)[1])


def test_header_names_the_client_even_split_byte_by_byte(loop):
    """A v1 header fed one byte at a time sets the scope's client and server; the request follows."""
    proto, transport, _clock, factory = proxied(loop)
    data = b"PROXY TCP4 192.0.2.1 192.0.2.2 5678 443\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
    for i in range(len(data)):
        proto.dataReceived(data[i : i + 1])
    settle(loop)
    assert body(transport) == {"client": ["192.0.2.1", 5678], "server": ["192.0.2.2", 443], "scheme": "http"}
    assert len(factory.connections) == 1


def test_header_and_request_in_one_read(loop):
    """A header and the request in one segment both take effect."""
    proto, transport, _clock, _factory = proxied(loop)
    proto.dataReceived(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    assert body(transport)["client"] == ["2001:db8::1", 1]


def test_local_command_keeps_the_socket_addresses(loop):
    """A v2 LOCAL header (a health check) leaves the connection's own addresses."""
    proto, transport, _clock, _factory = proxied(loop)
    proto.dataReceived(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    assert body(transport) == {"client": ["127.0.0.1", 40000], "server": ["10.0.0.9", 8000], "scheme": "http"}


def test_peer_outside_the_allow_list_is_dropped_at_once(loop):
    """A connection from a peer not allowed to send PROXY headers is aborted before reading."""
    _proto, transport, clock, factory = proxied(loop, peer=("192.0.2.50", 1234))
    assert transport.disconnecting or transport.disconnected
    assert not clock.getDelayedCalls()
    assert not factory.connections


def test_unix_peer_needs_unix_in_the_allow_list(loop):
    """A unix-socket peer is allowed only when 'unix' is listed."""
    _proto, transport, _clock, _factory = proxied(loop, peer=None, allow="127.0.0.1")
    assert transport.disconnecting or transport.disconnected
    proto, transport, _clock, _factory = proxied(loop, peer=None, allow="unix")
    proto.dataReceived(b"PROXY TCP4 192.0.2.1 192.0.2.2 5678 443\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    assert body(transport)["client"] == ["192.0.2.1", 5678]


def test_header_timeout(loop):
    """A connection that does not complete its header within the timeout is dropped."""
    proto, transport, clock, factory = proxied(loop, timeout=10.0)
    proto.dataReceived(b"PROXY TCP4 192.0.2.1")
    clock.advance(9.9)
    assert not transport.disconnecting and not transport.disconnected
    clock.advance(0.2)
    assert transport.disconnecting or transport.disconnected
    assert not factory.connections


def test_header_timeout_stops_once_complete(loop):
    """After a complete header the PROXY timer is gone (the channel's own timers take over)."""
    proto, transport, clock, _factory = proxied(loop, timeout=10.0, timeout_request_head=100)
    proto.dataReceived(b"PROXY UNKNOWN\r\n")
    clock.advance(50)
    assert not transport.disconnecting and not transport.disconnected


def test_malformed_header_drops_the_connection(loop):
    """Bytes that are not a PROXY header close the connection; the app never runs."""
    proto, transport, _clock, factory = proxied(loop)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    settle(loop)
    assert transport.value() == b""
    assert transport.disconnecting or transport.disconnected
    assert not factory.connections


def test_connection_lost_reaches_the_channel(loop):
    """Losing the connection after the header tells the wrapped channel."""
    proto, _transport, _clock, factory = proxied(loop)
    proto.dataReceived(b"PROXY UNKNOWN\r\n")
    assert len(factory.connections) == 1
    proto.connectionLost()
    assert not factory.connections


def test_proxy_headers_trust_the_proxied_peer(loop):
    """Behind PROXY, proxy headers are believed according to the address the header named."""
    proto, transport, _clock, _factory = proxied(loop, proxy_headers=True, forwarded_allow_ips=("192.0.2.0/24",))
    proto.dataReceived(
        b"PROXY TCP4 192.0.2.1 192.0.2.2 5678 443\r\n"
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n\r\n"
    )
    settle(loop)
    assert body(transport)["client"] == ["203.0.113.7", 0]
    assert body(transport)["scheme"] == "https"
    proto, transport, _clock, _factory = proxied(loop, proxy_headers=True, forwarded_allow_ips=("127.0.0.1",))
    proto.dataReceived(
        b"PROXY TCP4 192.0.2.1 192.0.2.2 5678 443\r\nGET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
    )
    settle(loop)
    assert body(transport)["client"] == ["192.0.2.1", 5678]


def test_endpoint_strings(tmp_path):
    """proxy: wraps any listener, ssl: becomes our reloadable TLS endpoint, config.proxy_protocol wraps all."""
    from twisted.internet.testing import MemoryReactor

    from tests.deploy import make_certs

    reactor = MemoryReactor()

    endpoint = endpoint_from_string(reactor, "proxy:tcp:0:interface=127.0.0.1")
    assert type(endpoint).__name__ == "ProxyProtocolEndpoint"
    endpoint = endpoint_from_string(reactor, "tcp:0", Config(proxy_protocol=True))
    assert type(endpoint).__name__ == "ProxyProtocolEndpoint"
    assert type(endpoint_from_string(reactor, "tcp:0")).__name__ == "TCPListenerEndpoint"
    with pytest.raises(ValueError, match="twice"):
        listener_endpoint(reactor, "proxy:proxy:tcp:0")
    with pytest.raises(ValueError, match="unknown ssl: keys"):
        endpoint_from_string(reactor, "ssl:0:privateKey=x:sslmethod=TLSv1_METHOD")
    with pytest.raises(ValueError, match="cannot read"):
        endpoint_from_string(reactor, "ssl:0:privateKey=/nonexistent.pem")
    certs = make_certs(tmp_path)
    endpoint = endpoint_from_string(reactor, f"ssl:0:privateKey={certs['key']}:certKey={certs['cert']}")
    assert isinstance(endpoint, TLSServerEndpoint)
    endpoint = endpoint_from_string(reactor, f"proxy:ssl:port=0:privateKey={certs['key']}:certKey={certs['cert']}")
    assert isinstance(endpoint.inner, TLSServerEndpoint)
    with pytest.raises(ValueError, match="caCerts"):
        endpoint_from_string(reactor, f"ssl:0:privateKey={certs['key']}:certKey={certs['cert']}:clientCert=required")
    with pytest.raises(ValueError, match="clientCert must be"):
        endpoint_from_string(reactor, f"ssl:0:privateKey={certs['key']}:caCerts={certs['ca']}:clientCert=maybe")
    assert split_description(r"unix:/a\:b:mode=600") == ("unix", ["/a:b"], {"mode": "600"})


def test_unix_claim_is_trusted_only_on_a_unix_listener(loop):
    """A PROXY v2 unix-family header makes a client without address; X-Forwarded-For is then believed
    on a unix-socket listener with 'unix' trusted, never on a TCP one.

    Source: issue 15, item 9 (outside attack)."""
    from tests.test_proxy import v2

    header = v2(family=0x31, addresses=b"/run/haproxy.sock".ljust(108, b"\x00") + b"\x00" * 108)
    request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
    trust = {"proxy_headers": True, "forwarded_allow_ips": ("127.0.0.1", "unix")}
    proto, transport, _clock, _factory = proxied(loop, **trust)
    proto.dataReceived(header + request)
    settle(loop)
    assert body(transport) == {"client": None, "server": ["10.0.0.9", 8000], "scheme": "http"}
    proto, transport, _clock, _factory = proxied(loop, peer=None, allow="unix", **trust)
    proto.dataReceived(header + request)
    settle(loop)
    assert body(transport)["client"] == ["203.0.113.7", 0]
