"""An idle TLS connection holds no more than it needs (issue 20 target 6).

OpenSSL's memory BIOs never give back the room their largest content took
(``BUF_MEM_grow_clean`` only grows): after the handshake the receive BIO
keeps the ClientHello's room and the send BIO the server's first flight's,
for the connection's life.  ``ServerTLS`` replaces both by new empty ones
once the handshake is over and both are drained
(``_upstream.openssl.fresh_bios``); where bytes still wait in either, it
keeps them (OpenSSL itself takes a partial record off the receive BIO into
its own buffer, so that is rare).  And pyOpenSSL's copy of the ALPN
callback's answer goes then (OpenSSL has its own).

Here: the replacement happens, once; the connection goes on both ways
through the new BIOs on either record path; a partial record read with the
handshake's end completes; bytes waiting in either BIO keep both; the ALPN
answer goes and the negotiated protocol stays; the context keeps
``SSL_MODE_RELEASE_BUFFERS`` (OpenSSL's record buffers freed while idle);
the public fallback keeps the BIOs.

Measured (``benchmarks/run.py --servers twisted-asgi --scenarios tls-idle``,
2000 idle connections, P-256 certificate): 30.4 -> 28.6 KiB of server RSS
per connection (and about 0.2 KiB more for the ALPN answer).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests import test_tls_records
from tests.test_tls_records import until_wants_more
from tests.test_tls_server import AppFactory, connect
from twisted_asgi._upstream import openssl as records
from twisted_asgi.tls import ReloadableTLS, ServerTLSFactory, TLSOptions

#: The fixtures of the record-layer tests: a certificate, and ServerTLS on the
#: fast path or on the public one.
certs = test_tls_records.certs
path = test_tls_records.path


def _bios(tls: SSL.Connection) -> tuple[int, int]:
    ffi = SSL._ffi
    return int(ffi.cast("uintptr_t", tls._into_ssl)), int(ffi.cast("uintptr_t", tls._from_ssl))


def _server(certs: dict) -> tuple[Any, Any, StringTransport]:
    """(ServerTLS, its app, its TCP transport), nothing received yet."""
    clock = Clock()
    factory = AppFactory(clock)
    context = ReloadableTLS(TLSOptions(str(certs["key"]), str(certs["cert"])))
    server = ServerTLSFactory(context, factory).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport()
    server.makeConnection(transport)
    (app,) = factory.built
    return server, app, transport


def _client() -> SSL.Connection:
    client = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
    client.set_connect_state()
    return client


def _to_client(client: SSL.Connection, transport: StringTransport) -> None:
    data = transport.value()
    transport.clear()
    if data:
        client.bio_write(data)


def _client_finished(server: Any, client: SSL.Connection, transport: StringTransport) -> bytes:
    """Run the handshake up to the client's last flight, returned unsent."""
    try:
        client.do_handshake()
    except SSL.WantReadError:
        pass
    server.dataReceived(until_wants_more(client.bio_read))  # ClientHello
    assert not server.handshake_done
    _to_client(client, transport)
    client.do_handshake()  # the server's flight read: the client is done
    return until_wants_more(client.bio_read)


def test_the_context_releases_openssls_buffers_when_idle(certs):
    context = ReloadableTLS(TLSOptions(str(certs["key"]), str(certs["cert"])))
    connection = context.serverConnectionForTLS(None)
    mode = SSL._lib.SSL_CTX_set_mode(connection.get_context()._context, 0)  # sets nothing, returns the mode
    assert mode & SSL.MODE_RELEASE_BUFFERS


def test_the_bios_are_replaced_once_after_the_handshake(certs, path):
    server, app, transport = _server(certs)
    made = _bios(server.tls)
    client = _client()
    server.dataReceived(_client_finished(server, client, transport))
    assert server.handshake_done
    after = _bios(server.tls)
    if path == "fast":
        assert after[0] != made[0] and after[1] != made[1]
    else:
        assert after == made  # the public fallback keeps them
    # The connection goes on both ways, through the new BIOs.
    _to_client(client, transport)  # the session tickets (TLS 1.3)
    sent = os.urandom(40_000)  # records across several reads
    client.sendall(sent)
    wire = until_wants_more(client.bio_read)
    for start in range(0, len(wire), 5000):
        server.dataReceived(wire[start : start + 5000])
    assert app.received == sent
    back = os.urandom(70_000)
    server.write(back)
    _to_client(client, transport)
    assert until_wants_more(client.recv) == back
    assert _bios(server.tls) == after  # only once, after the handshake
    server.loseConnection()
    server.unregisterProducer()  # the app's: now close_notify, through the new send BIO
    _to_client(client, transport)
    with pytest.raises(SSL.ZeroReturnError):
        client.recv(1)


def test_the_alpn_answer_is_let_go_after_the_handshake(certs, path):
    """pyOpenSSL keeps the ALPN callback's answer (two cffi buffers) on the
    connection; OpenSSL has copied it, so it goes once the handshake is over,
    and the negotiated protocol is still the one chosen."""
    server, app, transport = _server(certs)
    client = _client()
    client.set_alpn_protos([b"http/1.1"])
    try:
        client.do_handshake()
    except SSL.WantReadError:
        pass
    server.dataReceived(until_wants_more(client.bio_read))  # ClientHello: the ALPN callback has answered
    assert server.tls._alpn_select_callback_args is not None
    _to_client(client, transport)
    client.do_handshake()
    server.dataReceived(until_wants_more(client.bio_read))
    assert server.handshake_done
    if path == "fast":
        assert server.tls._alpn_select_callback_args is None
    else:
        assert server.tls._alpn_select_callback_args is not None
    assert server.negotiatedProtocol == b"http/1.1"
    assert client.get_alpn_proto_negotiated() == b"http/1.1"
    _to_client(client, transport)
    client.sendall(b"after")
    server.dataReceived(until_wants_more(client.bio_read))
    assert app.received == b"after"


def test_part_of_a_record_in_the_same_read_as_the_handshakes_end(certs, path):
    """The client's Finished and most of a first record in one read: OpenSSL
    has taken the partial record into its own buffer (the receive BIO is
    drained), the BIOs are replaced, and the record completes whole."""
    server, app, transport = _server(certs)
    made = _bios(server.tls)
    client = _client()
    finished = _client_finished(server, client, transport)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    record = until_wants_more(client.bio_read)
    server.dataReceived(finished + record[:-5])
    assert server.handshake_done
    assert app.received == b""
    assert (_bios(server.tls) != made) is (path == "fast")
    server.dataReceived(record[-5:])
    assert app.received == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    _to_client(client, transport)
    server.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    _to_client(client, transport)
    assert until_wants_more(client.recv) == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_fresh_bios_keeps_bytes_waiting_in_either_bio(certs):
    """The function itself: False (nothing replaced) while the send BIO holds
    bytes not yet drained or the receive BIO bytes not yet read, True once
    both are empty; the connection (to Twisted's TLS client) then goes on."""
    clock = Clock()
    factory = AppFactory(clock)
    client, server, pump = connect(certs, factory, clock)
    (app,) = factory.built
    tls = server.tls
    records.send(tls, b"not drained")
    before = _bios(tls)
    assert records.fresh_bios(tls) is False
    assert _bios(tls) == before
    server._flush_tls()
    client.write(b"ping")
    clock.advance(0)
    wire = pump.clientIO.getOutBuffer()
    pump.clientIO.outBuffer = b""
    records.feed(tls, wire)  # not read yet
    assert records.fresh_bios(tls) is False
    assert _bios(tls) == before
    server._receive()
    assert app.received == b"ping"
    assert records.fresh_bios(tls) is True
    assert _bios(tls) != before
    pump.flush()
    assert client.wrappedProtocol.received == b"not drained"
    client.write(b"pong")
    pump.flush()
    assert app.received == b"pingpong"
    server.write(b"back")
    pump.flush()
    assert client.wrappedProtocol.received == b"not drainedback"
