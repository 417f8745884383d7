"""The TLS record layer of ``tls.ServerTLS`` (twisted_asgi/_upstream/openssl.py):
the fast path (OpenSSL's SSL_read/SSL_write/BIO_read/BIO_write through
cryptography's bindings, one reused buffer, no exception for "nothing more")
and pyOpenSSL's public methods give the same bytes and the same exceptions;
ServerTLS behaves the same on either (partial records, many records in one
read, a close mid-record, close_notify, a corrupted record, a large write, a
renegotiation refused); and with a private name of pyOpenSSL gone, the server
says so once at start-up and serves HTTP/1.1 and HTTP/2 over TLS through the
public methods.

Source: issue 20 target 1 (HTTP/2 CPU per request, over TLS too); issue 18
(private names fenced, with a public fallback, a drift test and a test of both).
"""

from __future__ import annotations

import os
import random
import socket
import ssl
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tests.deploy import make_certs
from tests.test_tls_server import AppFactory, connect
from tests.test_upstream_fallback import said_once, start_listeners, stopping  # noqa: F401  (a fixture)
from twisted_asgi._upstream import openssl as records

PATHS = {"fast": None, "public": records.public}


@pytest.fixture
def certs(tmp_path):
    return make_certs(tmp_path)


@pytest.fixture(params=list(PATHS))
def path(request, monkeypatch) -> str:
    """ServerTLS on the fast path (on for the pyOpenSSL this runs with: the
    drift test pins the versions read), or on the public one."""
    assert records.PROBLEM is None, records.PROBLEM
    chosen = PATHS[request.param]
    if chosen is not None:
        for name, function in chosen.items():
            monkeypatch.setattr(records, name, function)
    return str(request.param)


# -- the functions themselves, both ways --------------------------------------------------


def _pair(certs: dict, client_max: int | None = None) -> tuple[SSL.Connection, SSL.Connection]:
    """(server, client) pyOpenSSL connections over memory BIOs, handshake not started."""
    server_context = SSL.Context(SSL.TLS_SERVER_METHOD)
    server_context.use_certificate_chain_file(str(certs["cert"]))
    server_context.use_privatekey_file(str(certs["key"]))
    server_context.set_options(SSL.OP_NO_RENEGOTIATION)
    client_context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if client_max is not None:
        client_context.set_max_proto_version(client_max)
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    return server, client


def until_wants_more(read: Callable[[int], bytes]) -> bytes:
    """What ``read(2**16)`` (a pyOpenSSL connection's ``bio_read`` or
    ``recv``) gives, call after call, until it raises ``WantReadError``."""
    got = b""
    while True:
        try:
            got += read(2**16)
        except SSL.WantReadError:
            return got


def _shuttle(source: SSL.Connection, target: SSL.Connection) -> bytes:
    out = until_wants_more(source.bio_read)
    if out:
        target.bio_write(out)
    return out


def _handshake(server: SSL.Connection, client: SSL.Connection) -> None:
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except SSL.WantReadError:
                pass
        moved = _shuttle(client, server) + _shuttle(server, client)
        if not moved:
            break


def _read_all(functions: dict[str, Any], tls: SSL.Connection) -> bytes:
    got = b""
    while (data := functions["recv"](tls)) is not None:
        got += data
    return got


def _functions(name: str) -> dict[str, Any]:
    return records.public if name == "public" else {n: getattr(records, n) for n in records.public}


@pytest.mark.parametrize("name", list(PATHS))
def test_the_functions_agree_with_pyopenssl(certs, name):
    functions = _functions(name)
    assert functions["recv"] is not records.public["recv"] or name == "public"
    server, client = _pair(certs)
    assert functions["recv"](server) is None  # nothing yet: wants to read
    assert functions["drain"](server) == b""
    with pytest.raises(SSL.WantReadError):
        functions["send"](server, b"before the handshake")
    with pytest.raises(SSL.WantReadError):
        functions["encrypt"](server, b"before the handshake")
    _handshake(server, client)
    assert server.get_finished() is not None
    # Several records, fed in pieces split anywhere, each read to "wants more".
    plain = os.urandom(3 * 2**14 + 1234)
    client.sendall(plain)
    wire = until_wants_more(client.bio_read)
    got = b""
    rng = random.Random(20)
    cuts = sorted(rng.sample(range(1, len(wire)), 12)) if wire else []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        functions["feed"](server, wire[a:b])
        got += _read_all(functions, server)
    assert got == plain
    # A large write: pyOpenSSL's contexts allow partial writes, so one record
    # (2**14 bytes) is taken per call; the send BIO read in full buffers.
    big = os.urandom(100_000)
    done = 0
    while done < len(big):
        taken = functions["send"](server, big[done:])
        assert taken == min(2**14, len(big) - done)
        done += taken
    out = b""
    while chunk := functions["drain"](server):
        assert len(chunk) <= records.BUFFER
        out += chunk
    assert functions["drain"](server) == b""
    client.bio_write(out)
    received = until_wants_more(client.recv)
    assert received == big
    # One record's worth: encrypted and its ciphertext returned in one call.
    small = os.urandom(2**14)
    sealed = functions["encrypt"](server, small)
    assert functions["drain"](server) == b""
    client.bio_write(sealed)
    assert client.recv(2**16) == small
    # close_notify: pyOpenSSL's ZeroReturnError either way.
    client.shutdown()
    _shuttle(client, server)
    with pytest.raises(SSL.ZeroReturnError):
        functions["recv"](server)


@pytest.mark.parametrize("name", list(PATHS))
def test_a_corrupted_record_raises_pyopenssls_error(certs, name):
    functions = _functions(name)
    server, client = _pair(certs)
    _handshake(server, client)
    client.sendall(b"a record to spoil")
    wire = bytearray(client.bio_read(2**16))
    wire[-1] ^= 1  # the authentication tag
    functions["feed"](server, bytes(wire))
    with pytest.raises(SSL.Error) as raised:
        functions["recv"](server)
    assert type(raised.value) is SSL.Error  # not WantRead, not ZeroReturn, not SysCall
    assert functions["drain"](server)  # the alert OpenSSL sends


@pytest.mark.parametrize("name", list(PATHS))
def test_a_client_renegotiation_is_refused(certs, name):
    """TLS 1.2: a client's renegotiation ClientHello is refused (OP_NO_RENEGOTIATION):
    no new handshake, an alert, and the connection goes on or ends, never renegotiates."""
    functions = _functions(name)
    server, client = _pair(certs, SSL.TLS1_2_VERSION)
    _handshake(server, client)
    assert client.get_protocol_version_name() == "TLSv1.2"
    assert client.renegotiate()
    try:
        client.do_handshake()
    except SSL.WantReadError:
        pass
    _shuttle(client, server)
    try:
        assert functions["recv"](server) is None
    except SSL.Error:
        pass  # a fatal refusal is a refusal too
    assert server.total_renegotiations() == 0
    assert functions["drain"](server)  # the no_renegotiation alert


def test_the_fast_path_is_on_and_shares_one_buffer():
    assert records.PROBLEM is None
    assert records.recv is not records.public["recv"]
    assert records.BUFFER >= 2**14 + 256  # a record of ServerTLS's writes, whole in one read


def served(certs):
    """A ServerTLS with the recording app behind it, connected over an in-memory
    pump to a TLS client: (clock, app, client, server, pump)."""
    clock = Clock()
    factory = AppFactory(clock)
    client, server, pump = connect(certs, factory, clock)
    (app,) = factory.built
    return clock, app, client, server, pump


def take_client_bytes(client, clock, pump, data: bytes) -> bytes:
    """The records the client sends for ``data``, taken off the pump to be
    handed to the server by hand."""
    client.write(data)
    clock.advance(0)
    wire = pump.clientIO.getOutBuffer()
    pump.clientIO.outBuffer = b""
    return wire


# -- ServerTLS on either path ---------------------------------------------------------------


def test_partial_records_byte_by_byte(certs, path):
    clock, app, client, server, pump = served(certs)
    wire = take_client_bytes(client, clock, pump, b"z" * 20000)  # two records
    for i in range(len(wire)):
        server.dataReceived(wire[i : i + 1])
        if i < 100:
            assert app.received == b""
    assert app.received == b"z" * 20000
    assert app.lost is None


def test_many_records_in_one_read_and_a_large_write(certs, path):
    _clock, app, client, server, pump = served(certs)
    sent = os.urandom(300_000)
    client.write(sent)
    pump.flush()
    assert app.received == sent
    back = os.urandom(1_000_003)
    server.write(back)
    pump.flush()
    assert client.wrappedProtocol.received == back


def test_close_notify_from_the_client(certs, path):
    _clock, app, client, _server, pump = served(certs)
    client.write(b"last words")
    client.loseConnection()
    pump.flush()
    assert app.received == b"last words"
    assert app.lost is not None and app.lost.check(ConnectionDone), app.lost
    assert pump.serverIO.disconnected


def test_a_corrupted_record_fails_the_connection_once(certs, path):
    clock, app, client, server, pump = served(certs)
    client.write(b"first")
    pump.flush()
    wire = bytearray(take_client_bytes(client, clock, pump, b"second, spoiled"))
    wire[-1] ^= 1
    server.dataReceived(bytes(wire))
    assert app.received == b"first"
    assert app.lost is None  # not yet: the TCP connection closes first
    assert pump.serverIO.disconnecting
    server.connectionLost(Failure(ConnectionDone()))
    assert app.lost is not None and app.lost.check(SSL.Error), app.lost
    assert app.lost.tb is None


def test_tcp_closed_mid_record(certs, path):
    clock, app, client, server, pump = served(certs)
    client.write(b"whole")
    pump.flush()
    wire = take_client_bytes(client, clock, pump, b"cut short")
    server.dataReceived(wire[:-4])
    for io in (pump.serverIO, pump.clientIO):
        io.protocol = io.producer = None
    server.connectionLost(Failure(ConnectionDone()))
    assert app.received == b"whole"
    assert app.lost is not None and app.lost.check(ConnectionLost), app.lost


# -- fast path off: said once at start-up, served through pyOpenSSL's public methods --------


@pytest.mark.parametrize("name", ["_lib", "_raise_ssl_error", "_from_ssl"])
def test_fast_path_off_serves_http1_and_http2_over_tls(stopping, tmp_path, name):  # noqa: F811
    """pyOpenSSL as a release that renamed one of the private names read
    (consistent with itself): the start-up line names it, and HTTP/1.1 and
    HTTP/2 bodies of many records each way come back whole."""
    certs = make_certs(tmp_path)
    endpoint = f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    strip = ["--rename", f"OpenSSL:{name}:{name}_gone_in_a_future_pyopenssl"]
    server = start_listeners(strip, "-e", endpoint, app="tests.apps:echo", env={}, listeners=1)
    stopping(server)
    said_once(server, "TLS record layer", name)
    body = os.urandom(300_000)  # many records each way
    (tmp_path / "body").write_bytes(body)
    for version in ("--http1.1", "--http2"):
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "--cacert",
                str(certs["ca"]),
                version,
                "--data-binary",
                f"@{tmp_path / 'body'}",
                "-o",
                str(tmp_path / "got"),
                "-w",
                "%{http_code} %{http_version}",
                f"https://localhost:{server.port}/",
            ],
            capture_output=True,
            timeout=30,
            check=True,
            text=True,
        ).stdout
        assert out == ("200 1.1" if version == "--http1.1" else "200 2"), out
        assert (tmp_path / "got").read_bytes() == body
    # A raw client that closes TCP mid-record: the server goes on serving.
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    tls.recv(65536)
    os.write(tls.fileno(), b"\x17\x03\x03\x00\x40" + b"\x00" * 10)  # part of an application record
    tls.close()
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", server.port), timeout=10), server_hostname="localhost"
    ) as again:
        again.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert again.recv(65536).startswith(b"HTTP/1.1 200")
    text = server.read_output(0.2)
    assert "Traceback" not in text and "Unhandled" not in text
