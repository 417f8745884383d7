"""The byte rules of :mod:`twisted_asgi.fieldrules`, the same on every protocol
(issue 15, items 7, 10 and 12).

Sans-IO: every byte 0-255 in a field name, a field value, ``Host`` /
``:authority`` and a request target goes to the HTTP/1.1 parser and to the
HTTP/2 connection, and both give the verdict of the shared tables; Hypothesis
adds whole random values. From outside, over loopback against a real server: a
raw-socket HTTP/1.1 client (plain requests and WebSocket handshakes) and a raw
HTTP/2 client (h2c by prior knowledge, and TLS with ALPN ``h2``) send each
forbidden byte and are refused (400, or RST_STREAM PROTOCOL_ERROR) with the app
never called; two ``Transfer-Encoding`` lines are refused as the one-line list
is; an app that puts a forbidden byte in a response field value gets the client
a 500 and one log event, on both protocols.
"""

from __future__ import annotations

from typing import Any

import pytest
from hyperframe.frame import HeadersFrame
from hypothesis import given
from hypothesis import strategies as st

from tests.deploy import closing, make_certs
from tests.h2frames import PROTOCOL_ERROR, RawClient, request_headers
from tests.serving import recv_response, recv_until_closed, start_server
from tests.test_http2_attacks import count_output
from tests.test_http2_driver import Peer
from tests.test_http2_e2e import ssl_endpoint, tls_context
from twisted_asgi.config import Config
from twisted_asgi.cycle import check_headers
from twisted_asgi.events import AppError, ProtocolError, Request
from twisted_asgi.fieldrules import (
    REQUEST_VALUE_FORBIDDEN,
    VALUE_FORBIDDEN,
    is_lower_token,
    is_token,
    request_value_ok,
    target_ok,
    value_ok,
)
from twisted_asgi.http11 import HTTP11Connection

APP = "tests.test_byte_rules:app"
BYTES = [bytes([b]) for b in range(256)]
OWS = (b" ", b"\t")


async def app(scope: dict, receive: Any, send: Any) -> None:
    """Prints ``SAW <x-probe>`` for every request and WebSocket handshake it is
    given; reads the whole body, then answers "ok", or with ``/respond?XX`` with
    the byte 0xXX inside a response field value."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    probe = dict(scope["headers"]).get(b"x-probe", b"-").decode("latin-1")
    print(f"SAW {probe}", flush=True)
    if scope["type"] == "websocket":
        await send({"type": "websocket.close"})  # denied: 403
        return
    message = await receive()  # the whole body first: a bad trailer must come before any answer
    while message.get("more_body"):
        message = await receive()
    if message["type"] == "http.disconnect":
        return
    headers = [(b"content-type", b"text/plain")]
    if scope["path"] == "/respond":
        headers.append((b"x-made", b"a" + bytes.fromhex(scope["query_string"].decode()) + b"b"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


# -- sans-IO: what each protocol's parser lets through ------------------------------------


def h1_request(head: bytes) -> Request | None:
    """The request HTTP/1.1 parsing reports for ``head``, or None if refused."""
    try:
        events = HTTP11Connection(Config(), frozenset({b"websocket"})).receive_data(head)
    except ProtocolError:
        return None
    requests = [e for e in events if isinstance(e, Request)]
    return requests[0] if requests else None


def h2_request(headers: list) -> Request | None:
    """The request an HTTP/2 connection reports for one HEADERS block, or None
    if it reset the stream."""
    peer = Peer()
    events = peer.feed(peer.f.headers(1, headers))
    requests = [e for e in events if isinstance(e, Request)]
    return requests[0] if requests else None


def h1_value(value: bytes, name: bytes = b"x-probe") -> bool:
    """True if HTTP/1.1 gives the app ``name: value`` exactly."""
    host = value if name == b"host" else b"a"
    extra = b"" if name == b"host" else name + b": " + value + b"\r\n"
    request = h1_request(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"\r\n")
    return request is not None and (name, value) in request.headers


def h2_value(value: bytes, name: bytes = b"x-probe") -> bool:
    """True if HTTP/2 gives the app ``name: value`` exactly (``host`` is sent as ``:authority``)."""
    if name == b"host":
        headers = [*request_headers(authority=""), (b":authority", value)]
    else:
        headers = [*request_headers(), (name, value)]
    request = h2_request(headers)
    return request is not None and (name, value) in request.headers


def h1_name(name: bytes) -> bool:
    request = h1_request(b"GET / HTTP/1.1\r\nHost: a\r\n" + name + b": v\r\n\r\n")
    return request is not None and (name.lower(), b"v") in request.headers


def h2_name(name: bytes) -> bool:
    request = h2_request([*request_headers(), (name, b"v")])
    return request is not None and (name, b"v") in request.headers


def full_target(request: Request | None) -> bytes | None:
    if request is None:
        return None
    return request.path + (b"?" + request.query if request.query else b"")


def h1_target(target: bytes) -> bool:
    return full_target(h1_request(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")) == target


def h2_target(target: bytes) -> bool:
    return full_target(h2_request([(b":method", b"GET"), (b":scheme", b"http"), (b":path", target)])) == target


@pytest.mark.parametrize("name", [b"x-probe", b"host"])
def test_every_byte_in_a_field_value_gets_one_verdict(name):
    """Every byte 0-255 inside a field value (and in ``Host`` / ``:authority``),
    at its start and at its end: HTTP/1.1 and HTTP/2 both let it through exactly
    when fieldrules.request_value_ok says so. Whitespace at an end is OWS to
    HTTP/1.1 (dropped) and malformed to HTTP/2 (RFC 9113 §8.2.1).
    Source: issue 15, item 7 (outside attack)."""
    for byte in BYTES:
        for value in (b"a" + byte + b"b", byte + b"ab", b"ab" + byte):
            expected = request_value_ok(value)
            if byte in OWS and byte in (value[:1], value[-1:]):
                assert not h2_value(value, name), value
                continue
            assert (h1_value(value, name), h2_value(value, name)) == (expected, expected), value
    refused = {b for b in range(256) if not request_value_ok(b"a%cb" % b)}
    assert refused == set(range(0x09)) | set(range(0x0A, 0x20)) | {0x7F, 0x85}


def test_every_byte_in_a_field_name_gets_one_verdict():
    """Every byte 0-255 inside a field name: a token to HTTP/1.1, a lower-case
    token to HTTP/2 (RFC 9113 §8.2.1), from the same fieldrules tables.
    Source: issue 15, item 7 (outside attack)."""
    for byte in BYTES:
        name = b"x" + byte + b"y"
        assert h1_name(name) == is_token(name), name
        assert h2_name(name) == is_lower_token(name), name
        if not byte.isupper():
            assert is_token(name) == is_lower_token(name)


def test_every_byte_in_a_request_target_gets_one_verdict():
    """Every byte 0-255 inside a request target / ``:path``: HTTP/1.1 and HTTP/2
    refuse the same ones (controls, SP, DEL, ``#``, 0x80 and up), those of
    fieldrules.target_ok. Source: issue 15, item 7 (outside attack)."""
    for byte in BYTES:
        target = b"/a" + byte + b"b"
        expected = target_ok(target)
        assert (h1_target(target), h2_target(target)) == (expected, expected), target
    allowed = {b for b in range(256) if target_ok(b"/a%cb" % b)}
    assert allowed == set(range(0x21, 0x7F)) - {0x23}


_MIXED = st.lists(
    st.sampled_from([b"a", b"Z", b" ", b"\t", b"\x0b", b"\x0c", b"\x1c", b"\x85", b"\xa0", b"\xff", b"\x7f", b"\x00"]),
    max_size=8,
).map(b"".join)


@given(st.one_of(st.binary(max_size=12), _MIXED))
def test_random_values_get_one_verdict(value):
    """Any value without whitespace at its ends: HTTP/1.1 and HTTP/2 agree with
    fieldrules.request_value_ok. Source: issue 15, item 7 (outside attack)."""
    if value[:1] in OWS or value[-1:] in OWS:
        value = b"v" + value + b"v"
    expected = request_value_ok(value)
    assert h1_value(value) == expected
    assert h2_value(value) == expected


def test_app_field_values_refuse_every_control_byte_but_htab():
    """An app's response field (and trailer) value with any byte RFC 9110 §5.5
    forbids is refused with AppError; HTAB, obs-text and NEL pass.
    Source: issue 15, item 12 (outside attack)."""
    for byte in BYTES:
        value = b"a" + byte + b"b"
        for what in ("http.response.start", "http.response.trailers"):
            if byte[0] in VALUE_FORBIDDEN:
                with pytest.raises(AppError, match="Invalid HTTP header value"):
                    check_headers([(b"x-made", value)], what)
            else:
                assert check_headers([(b"x-made", value)], what) == [(b"x-made", value)]
    assert [b for b in range(256) if not value_ok(bytes([b]))] == list(VALUE_FORBIDDEN)


# -- from outside, over loopback ---------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module, on cleartext TCP and on TLS (ALPN h2, http/1.1)."""
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    srv = start_server(APP, "-e", ssl_endpoint(certs))
    srv.tls_port = next(port for desc, _host, port in srv.addresses if port != srv.port)  # type: ignore[attr-defined]
    srv.tls = tls_context(certs)  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        closing(srv)


def h1_exchange(srv, raw: bytes) -> bytes:
    """Send ``raw`` on a new connection; all the server sent before it closed."""
    with srv.connect() as sock:
        sock.sendall(raw)
        return recv_until_closed(sock)


def barrier(srv, probe: str) -> str:
    """A good request with ``probe``; once the app has printed it, every request
    sent before it has been through the app or never will: the output so far."""
    with srv.connect() as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: a\r\nX-Probe: {probe}\r\n\r\n".encode())
        status, _headers, body = recv_response(sock)
    assert status == b"HTTP/1.1 200 OK" and body == b"ok"
    return srv.wait_for_output(f"SAW {probe}\n")


WEBSOCKET = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


@pytest.mark.parametrize("kind", ["request", "websocket"])
def test_http11_refuses_each_forbidden_value_byte(server, kind):
    """HTTP/1.1 (a plain request, and a WebSocket handshake, which goes through
    the same parse): each byte fieldrules forbids in a request field value gets
    400 and one log line, and the app never sees the request.
    Source: issue 15, item 7 (outside attack)."""
    extra = WEBSOCKET if kind == "websocket" else b""
    before = server.read_output().count("Bad request from")
    for byte in REQUEST_VALUE_FORBIDDEN:
        raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Probe: bad-%s-%02x\r\n%sX-Evil: innocent%cx-secret-auth: admin\r\n\r\n"
        data = h1_exchange(server, raw % (kind.encode(), byte, extra, byte))
        assert data.startswith(b"HTTP/1.1 400 "), (byte, data[:100])
    output = barrier(server, f"good-h1-{kind}")
    assert f"SAW bad-{kind}" not in output
    assert output.count("Bad request from") - before == len(REQUEST_VALUE_FORBIDDEN)


TARGET_BYTES = [b" ", b"\t", b"\x1b", b"\x00", b"\x0b", b"\x7f", b"#", b"\x80", b"\x85", b"\xa0", b"\xff"]


def test_http11_refuses_each_forbidden_target_byte(server):
    """HTTP/1.1: raw space, tab, ESC, DEL, ``#`` and bytes from 0x80 up in the
    request target get 400, the app never called.
    Source: issue 15, item 7 (outside attack)."""
    for byte in TARGET_BYTES:
        data = h1_exchange(server, b"GET /a%sb HTTP/1.1\r\nHost: a\r\nX-Probe: bad-target\r\n\r\n" % byte)
        assert data.startswith(b"HTTP/1.1 400 "), (byte, data[:100])
    assert "SAW bad-target" not in barrier(server, "good-target")


def h2_client(srv, tls: bool) -> RawClient:
    if tls:
        client = RawClient(srv.host, srv.tls_port, tls=srv.tls)
        assert client.sock.selected_alpn_protocol() == "h2"  # type: ignore[attr-defined]
        return client
    return RawClient(srv.host, srv.port)


def h2_ok(client: RawClient, stream_id: int, probe: str) -> None:
    client.send(client.f.headers(stream_id, request_headers(x_probe=probe)))
    headers, body, _ = client.response(stream_id)
    assert headers[b":status"] == b"200" and body == b"ok"


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_http2_refuses_each_forbidden_byte(server, tls):
    """HTTP/2 (h2c by prior knowledge, and TLS with ALPN): each byte HTTP/1.1
    refuses in a field value, in ``:authority`` and in ``:path`` makes the
    request malformed (RFC 9113 §8.2.1, §8.3.1): RST_STREAM PROTOCOL_ERROR, one
    log line for the connection, the app never called, the connection still
    serves. Source: issue 15, item 7 (outside attack)."""
    tag = "tls" if tls else "h2c"
    needle = "sent a malformed request on stream"
    before = server.read_output().count(needle)
    attacks = [
        [*request_headers(x_probe=f"bad-{tag}"), (b"x-evil", b"innocent%cx-secret-auth: admin" % byte)]
        for byte in REQUEST_VALUE_FORBIDDEN
    ]
    attacks += [
        [*request_headers(authority=""), (b":authority", b"a%cb" % byte), (b"x-probe", f"bad-{tag}".encode())]
        for byte in (0x0B, 0x1B, 0x7F, 0x85)
    ]
    attacks += [
        [*request_headers(f"/a{byte.decode('latin-1')}b"), (b"x-probe", f"bad-{tag}".encode())] for byte in TARGET_BYTES
    ]
    assert len(attacks) < Config().limit_h2_resets
    client = h2_client(server, tls)
    try:
        ids = range(1, 2 * len(attacks), 2)
        client.send(b"".join(client.f.headers(i, headers) for i, headers in zip(ids, attacks, strict=True)))
        for i, headers in zip(ids, attacks, strict=True):
            assert client.rst(i).error_code == PROTOCOL_ERROR, headers
        h2_ok(client, 2 * len(attacks) + 1, f"good-{tag}")
    finally:
        client.close()
    output = server.wait_for_output(f"SAW good-{tag}\n")
    assert f"SAW bad-{tag}" not in output
    assert output.count(needle) - before == 1


@pytest.mark.parametrize(
    "trailer",
    [(b"x-trailer", b"a\x0bb"), (b"connection", b"close"), (b"transfer-encoding", b"chunked"), (b"te", b"gzip")],
    ids=["vt-in-value", "connection", "transfer-encoding", "te"],
)
def test_http2_refuses_a_forbidden_byte_in_request_trailers(server, trailer):
    """HTTP/2 request trailers obey the same byte rules as HTTP/1.1's chunked
    trailers: a VT in one resets the stream (PROTOCOL_ERROR); so does a
    connection-specific field there (RFC 9113 §8.2.2).
    Source: issue 15, item 7 (outside attack; connection-specific fields in
    trailers found by the second attack)."""
    client = h2_client(server, tls=False)
    try:
        client.send(client.f.headers(1, request_headers("/", method="POST", x_probe="trailers"), end_stream=False))
        client.send(client.f.data(1, b"body"))
        client.send(client.f.headers(1, [trailer], end_stream=True))
        assert client.rst(1).error_code == PROTOCOL_ERROR
        assert not [f for f in client.frames if isinstance(f, HeadersFrame) and f.stream_id == 1]
        h2_ok(client, 3, "good-after-trailers")
    finally:
        client.close()


STACKED_TE = [
    (b"gzip", b"chunked"),
    (b"chunked", b"chunked"),
    (b"chunked", b"identity"),
    (b"identity", b"chunked"),
]


@pytest.mark.parametrize("codings", STACKED_TE, ids=[b"+".join(c).decode() for c in STACKED_TE])
def test_transfer_codings_on_two_lines_are_refused_as_on_one(server, codings):
    """``Transfer-Encoding`` on two lines is one list (RFC 9110 §5.3): it gets
    what the same list on one line gets (501 for a coding we do not do, 400
    for a list llhttp refuses), never 200, and the app is not called.
    Source: issue 15, item 10 (outside attack)."""
    probe = b"bad-te-" + b"-".join(codings)
    head = b"POST / HTTP/1.1\r\nHost: a\r\nX-Probe: " + probe + b"\r\n"
    body = b"\r\n4\r\nbody\r\n0\r\n\r\n"
    one_line = h1_exchange(server, head + b"Transfer-Encoding: %s, %s\r\n" % codings + body)
    two_lines = h1_exchange(server, head + b"Transfer-Encoding: %s\r\nTransfer-Encoding: %s\r\n" % codings + body)
    assert one_line[:13] == two_lines[:13], (one_line[:60], two_lines[:60])
    assert two_lines[:13] in (b"HTTP/1.1 400 ", b"HTTP/1.1 501 "), two_lines[:60]
    assert f"SAW {probe.decode()}\n" not in barrier(server, "good-te")


@pytest.mark.parametrize("lines", [(b"", b"chunked"), (b"chunked", b"")], ids=["empty-first", "empty-last"])
def test_an_empty_transfer_encoding_line_is_refused(server, lines):
    """An empty ``Transfer-Encoding`` line beside ``chunked`` gets 400, the app
    not called. Source: issue 15, item 10 (outside attack)."""
    probe = "bad-te-empty-first" if lines[0] == b"" else "bad-te-empty-last"
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nX-Probe: %s\r\nTransfer-Encoding: %s\r\nTransfer-Encoding: %s\r\n"
    data = h1_exchange(server, raw % (probe.encode(), *lines) + b"\r\n4\r\nbody\r\n0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 "), data[:60]
    assert f"SAW {probe}\n" not in barrier(server, "good-te-empty")


def test_expectations_on_two_lines_are_one_list(server):
    """``Expect: foo`` then ``Expect: 100-continue`` is the list "foo,
    100-continue", an expectation we cannot meet: 417 (RFC 9110 §10.1.1), as on
    one line. Source: issue 15, item 10 (outside attack)."""
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nX-Probe: bad-expect\r\nContent-Length: 4\r\n%s\r\nbody"
    for lines in (b"Expect: foo, 100-continue\r\n", b"Expect: foo\r\nExpect: 100-continue\r\n"):
        data = h1_exchange(server, raw % lines)
        assert data.startswith(b"HTTP/1.1 417 "), data[:60]
    assert "SAW bad-expect" not in barrier(server, "good-expect")


# One per log event of the app runner, and the message of each of ours.
APP_EVENT = "[twisted_asgi.app#"
APP_ERROR = "AppError: Invalid HTTP header value"


def test_app_response_field_with_a_control_byte_is_a_500_on_http11(server):
    """An app that sends a response field value holding any byte RFC 9110 §5.5
    forbids (``a\\x0bb`` and the rest) gets its HTTP/1.1 client a 500 without
    the field, and one log event per response. Source: issue 15, item 12
    (outside attack)."""
    before = server.read_output()
    for byte in VALUE_FORBIDDEN:
        with server.connect() as sock:
            sock.sendall(b"GET /respond?%02x HTTP/1.1\r\nHost: a\r\n\r\n" % byte)
            status, headers, _body = recv_response(sock)
        assert status.startswith(b"HTTP/1.1 500 "), (byte, status)
        assert b"x-made" not in headers
    barrier(server, "good-respond-h1")
    new = count_output(server, APP_EVENT, before.count(APP_EVENT) + len(VALUE_FORBIDDEN))[len(before) :]
    assert new.count(APP_ERROR) == len(VALUE_FORBIDDEN)
    assert "Invalid HTTP header value b'a\\x0bb' for b'x-made'" in new


def test_app_response_field_with_a_control_byte_is_a_500_on_http2(server):
    """The same app mistake over HTTP/2: each stream gets :status 500 without the
    field, one log event each, and the connection goes on.
    Source: issue 15, item 12 (outside attack)."""
    before = server.read_output()
    client = h2_client(server, tls=False)
    try:
        ids = range(1, 2 * len(VALUE_FORBIDDEN), 2)
        client.send(
            b"".join(
                client.f.headers(i, request_headers(f"/respond?{byte:02x}"))
                for i, byte in zip(ids, VALUE_FORBIDDEN, strict=True)
            )
        )
        for i, byte in zip(ids, VALUE_FORBIDDEN, strict=True):
            headers, _body, _ = client.response(i)
            assert headers[b":status"] == b"500", (byte, headers)
            assert b"x-made" not in headers
        h2_ok(client, 2 * len(VALUE_FORBIDDEN) + 1, "good-respond-h2")
    finally:
        client.close()
    new = count_output(server, APP_EVENT, before.count(APP_EVENT) + len(VALUE_FORBIDDEN))[len(before) :]
    assert new.count(APP_ERROR) == len(VALUE_FORBIDDEN)


def test_rules_tables_are_what_the_rfcs_say():
    """The tables themselves: tchar (RFC 9110 §5.6.2), the control bytes but HTAB
    and DEL (§5.5), NEL for requests. Source: issue 15, item 7 (outside attack)."""
    assert set(VALUE_FORBIDDEN) == set(range(0x20)) - {0x09} | {0x7F}
    assert set(REQUEST_VALUE_FORBIDDEN) == set(VALUE_FORBIDDEN) | {0x85}
    assert {b for b in range(256) if is_token(bytes([b]))} == {
        b for b in range(0x21, 0x7F) if chr(b) not in '"(),/:;<=>?@[\\]{}'
    }
    assert not is_token(b"") and not is_lower_token(b"") and not is_lower_token(b"X")
