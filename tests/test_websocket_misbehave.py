"""The WebSocket app-misbehaviour matrix end to end (issue 8).

Every wrong message order, type and value a WebSocket app can send, through a
real server and a raw-socket client (:class:`tests.ws_apps.RawClient`): what the
client sees (before accept an HTTP error and never a 101; after accept a Close
frame), exactly one log event with the exact message, no traceback where the
app did nothing that raised, nothing of the error in the response, and a server
that still serves a WebSocket and an HTTP request afterwards. The app is
:func:`tests.ws_apps.misbehave`; the sans-IO half of these checks is in
``tests/test_websocket_cycle.py``.

Sending ``websocket.accept`` before ``receive()`` has returned
``websocket.connect`` is *not* a mistake: the ASGI www spec (WebSocket
"Connect") asks that the connect be answered with an accept or a close before
data flows, not that the app read it first; the connect is then still the
first message the app receives.
"""

from __future__ import annotations

import re
import struct
import time

import pytest
from websockets.sync.client import connect

from tests.serving import Server, recv_response, start_server
from tests.ws_apps import RawClient, client_frame, close_payload

#: One log event: "<time> [namespace#level] text" at the start of a line.
_EVENT = re.compile(r"^\S+ \[(twisted_asgi[\w.]*)#(\w+)\] (.*)$", re.M)
_APP_ERROR = "twisted_asgi.events.AppError: "
_CRASH = ("twisted_asgi.app", "critical", "Exception in ASGI application")


@pytest.fixture(scope="module")
def server():
    s = start_server(
        "tests.ws_apps:misbehave",
        "--timeout-ws-handshake",
        "1",
        "--timeout-app-close",
        "2",
    )
    yield s
    assert s.stop() == 0
    output = s.read_output(0.2)
    assert "Unhandled" not in output
    assert "ClientDisconnected" not in output


def new_output(server: Server, before: int, needle: str, timeout: float = 10.0) -> str:
    """What the server printed since ``before``, once it holds ``needle``, plus
    anything printed in a short grace period after (so a second event shows)."""
    deadline = time.monotonic() + timeout
    while needle not in server.read_output(0.05)[before:]:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not printed; output:\n{server.read_output()[before:]}")
    return server.read_output(0.3)[before:]


def events(text: str) -> list[tuple[str, str, str]]:
    return _EVENT.findall(text)


def assert_still_serving(server: Server) -> None:
    """A normal WebSocket echo and a plain HTTP request both work."""
    with connect(f"ws://127.0.0.1:{server.port}/echo", proxy=None, open_timeout=10, close_timeout=5) as ws:
        ws.send("still here")
        assert ws.recv(timeout=10) == "still here"
    with server.connect() as sock:
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, _headers, body = recv_response(sock)
    assert status == b"HTTP/1.1 200 OK"
    assert b'"type": "http"' in body


def finish_close(client: RawClient) -> None:
    """Answer the server's Close and see it close the TCP connection (RFC 6455 §7.1.1)."""
    client.send(client_frame(8, close_payload(1000)))
    assert client.at_eof()


# -- before accept: an HTTP error, never a 101 ------------------------------------------

BEFORE_ACCEPT = [
    (
        "send-before-accept",
        "Expected ASGI message 'websocket.accept', 'websocket.close' or "
        "'websocket.http.response.start', but got 'websocket.send'.",
    ),
    (
        "unknown-type-before-accept",
        "Expected ASGI message 'websocket.accept', 'websocket.close' or "
        "'websocket.http.response.start', but got 'websocket.hello'.",
    ),
    ("not-a-dict", "ASGI message must be a dict with a 'type' key, got 'websocket.accept'"),
    ("no-type", "ASGI message must be a dict with a 'type' key, got {'subprotocol': None}"),
    (
        "unoffered-subprotocol",
        "websocket.accept chose subprotocol 'never-offered', which the client did not offer (it offered [])",
    ),
    ("subprotocol-not-str", "'subprotocol' of websocket.accept must be a str or None, got b'chat'"),
    ("str-header", "websocket.accept header names and values must be bytes, got 'x-a': 'b'"),
    ("crlf-header", "Invalid HTTP header value b'b\\r\\nx-b: c' for b'x-a' in websocket.accept"),
    ("bad-header-name", "Invalid HTTP header name b'x a' in websocket.accept"),
    ("headers-not-pairs", "websocket.accept headers must be an iterable of [name, value] pairs"),
    ("protocol-header", "websocket.accept headers must not include sec-websocket-protocol; use 'subprotocol'"),
    ("server-owned-header", "websocket.accept headers must not include b'upgrade': the server sets it"),
    (
        "denial-body-before-start",
        "Expected ASGI message 'websocket.accept', 'websocket.close' or "
        "'websocket.http.response.start', but got 'websocket.http.response.body'.",
    ),
    ("denial-bad-status", "'status' of websocket.http.response.start must be an int from 200 to 599, got 101"),
    (
        "denial-start-twice",
        "Expected ASGI message 'websocket.http.response.body', but got 'websocket.http.response.start'.",
    ),
]


@pytest.mark.parametrize(("name", "message"), BEFORE_ACCEPT, ids=[row[0] for row in BEFORE_ACCEPT])
def test_mistake_before_accept_is_500_and_one_log(server, name, message):
    """A wrong message before the handshake is answered: the client gets 500 and
    no 101, the AppError is logged once with its exact text, and only there."""
    before = len(server.read_output(0))
    client = RawClient(server.host, server.port, f"/mis/{name}")
    try:
        assert client.head.startswith(b"HTTP/1.1 500 "), client.head
        assert client.at_eof()
        assert b"AppError" not in client.head + client.buf and message.encode() not in client.buf
    finally:
        client.close()
    text = new_output(server, before, _APP_ERROR + message + "\n")
    assert events(text) == [_CRASH], text
    assert text.count("Traceback") == 1
    assert_still_serving(server)


@pytest.mark.parametrize(
    ("name", "status", "event"),
    [
        (
            "return-without-accept",
            500,
            ("twisted_asgi.app", "error", "ASGI callable returned without sending handshake."),
        ),
        (
            "denial-unfinished",
            500,
            ("twisted_asgi.app", "error", "ASGI callable returned without completing its denial response."),
        ),
        ("raise-before-accept", 500, _CRASH),
    ],
)
def test_app_ends_before_accept(server, name, status, event):
    """An app that returns (or raises) without answering the handshake, or with
    its denial response unfinished: 500, one log event with the exact text; a
    traceback only where the app raised."""
    before = len(server.read_output(0))
    client = RawClient(server.host, server.port, f"/mis/{name}")
    try:
        assert client.head.startswith(b"HTTP/1.1 %d " % status), client.head
        assert client.at_eof()
        assert b"misbehave" not in client.buf
    finally:
        client.close()
    needle = "RuntimeError: misbehave: raised before accept\n" if event is _CRASH else event[2]
    text = new_output(server, before, needle)
    assert events(text) == [event], text
    assert text.count("Traceback") == (1 if event is _CRASH else 0)
    assert_still_serving(server)


def test_denial_body_unfinished_cuts_connection(server):
    """An app that returns in the middle of its denial body: the client has the
    head and the bytes sent, then the connection closes before the chunked body
    ends; one log line, no traceback."""
    before = len(server.read_output(0))
    client = RawClient(server.host, server.port, "/mis/denial-body-unfinished")
    try:
        assert client.head.startswith(b"HTTP/1.1 401 "), client.head
        assert client.at_eof()
        assert client.buf == b"7\r\npartial\r\n"  # no last chunk: the client sees a cut response
    finally:
        client.close()
    line = "ASGI callable returned without completing its denial response."
    text = new_output(server, before, line)
    assert events(text) == [("twisted_asgi.app", "error", line)], text
    assert "Traceback" not in text
    assert_still_serving(server)


def test_never_answering_app_gets_503(server):
    """An app that never answers websocket.connect: after --timeout-ws-handshake
    the client gets 503 and the one log line names the client and the timeout."""
    before = len(server.read_output(0))
    client = RawClient(server.host, server.port, "/mis/never-answer")
    try:
        port = client.sock.getsockname()[1]
        assert client.head.startswith(b"HTTP/1.1 503 "), client.head
        assert client.at_eof()
    finally:
        client.close()
    line = f"WebSocket app did not answer websocket.connect from 127.0.0.1:{port} within 1.0s"
    text = new_output(server, before, line)
    assert events(text) == [("twisted_asgi.websocket", "warn", line)], text
    assert "Traceback" not in text
    assert_still_serving(server)


# -- after accept: Close 1011 --------------------------------------------------------------

AFTER_ACCEPT = [
    ("accept-twice", "Expected ASGI message 'websocket.send' or 'websocket.close', but got 'websocket.accept'."),
    (
        "unknown-type-after-accept",
        "Expected ASGI message 'websocket.send' or 'websocket.close', but got 'websocket.hello'.",
    ),
    (
        "denial-after-accept",
        "Expected ASGI message 'websocket.send' or 'websocket.close', but got 'websocket.http.response.start'.",
    ),
    ("not-a-dict-after-accept", "ASGI message must be a dict with a 'type' key, got None"),
    ("send-both", "websocket.send needs exactly one of 'bytes' and 'text' that is not None"),
    ("send-neither", "websocket.send needs exactly one of 'bytes' and 'text' that is not None"),
    ("text-not-str", "'text' of websocket.send must be a str, got bytes"),
    ("text-surrogate", "'text' of websocket.send is not encodable as UTF-8 (lone surrogate?)"),
    ("bytes-not-bytes", "'bytes' of websocket.send must be bytes, got str"),
    (
        "close-code-not-int",
        "'code' of websocket.close must be 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 §7.4), got '1000'",
    ),
    (
        "close-code-reserved",
        "'code' of websocket.close must be 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 §7.4), got 1005",
    ),
    (
        "close-code-out-of-range",
        "'code' of websocket.close must be 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 §7.4), got 5000",
    ),
    ("close-reason-not-str", "'reason' of websocket.close must be a str, got bytes"),
]


@pytest.mark.parametrize(("name", "message"), AFTER_ACCEPT, ids=[row[0] for row in AFTER_ACCEPT])
def test_mistake_after_accept_closes_1011_and_one_log(server, name, message):
    """A wrong message after accept: nothing of it reaches the wire, the client's
    next frame is Close 1011, and the AppError is logged once with its exact text."""
    before = len(server.read_output(0))
    client = RawClient(server.host, server.port, f"/mis/{name}")
    try:
        assert client.head.startswith(b"HTTP/1.1 101 "), client.head
        opcode, payload = client.read_frame()
        assert opcode == 8, (opcode, payload)
        assert struct.unpack("!H", payload[:2])[0] == 1011
        assert payload[2:] == b"internal server error"
        finish_close(client)
    finally:
        client.close()
    text = new_output(server, before, _APP_ERROR + message + "\n")
    assert events(text) == [_CRASH], text
    assert text.count("Traceback") == 1
    assert_still_serving(server)


def test_raise_after_accept_closes_1011(server):
    """An exception after accept: Close 1011, one log event with the traceback."""
    before = len(server.read_output(0))
    client = RawClient(server.host, server.port, "/mis/raise-after-accept")
    try:
        assert client.head.startswith(b"HTTP/1.1 101 ")
        assert client.read_frame() == (8, close_payload(1011, b"internal server error"))
        finish_close(client)
    finally:
        client.close()
    text = new_output(server, before, "RuntimeError: misbehave: raised after accept\n")
    assert events(text) == [_CRASH], text
    assert text.count("Traceback") == 1
    assert_still_serving(server)


# -- after the app's close or its completed denial response ------------------------------------


def test_send_after_close_keeps_apps_close_code(server):
    """websocket.send after websocket.close: the client gets the app's own Close
    (4001 "bye") and nothing else; the AppError is logged once."""
    before = len(server.read_output(0))
    client = RawClient(server.host, server.port, "/mis/send-after-close")
    try:
        assert client.head.startswith(b"HTTP/1.1 101 ")
        assert client.read_frame() == (8, close_payload(4001, b"bye"))
        finish_close(client)
        assert b"too late" not in client.buf
    finally:
        client.close()
    message = (
        "Unexpected ASGI message 'websocket.send' sent, after sending 'websocket.close' "
        "or completing the denial response."
    )
    text = new_output(server, before, _APP_ERROR + message + "\n")
    assert events(text) == [_CRASH], text
    assert_still_serving(server)


def test_denial_body_after_complete_keeps_response(server):
    """A denial body after the denial response completed: the client has the
    whole 401 response and nothing more; the AppError is logged once."""
    before = len(server.read_output(0))
    with server.connect() as sock:
        sock.sendall(
            b"GET /mis/denial-body-after-complete HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        status, headers, body = recv_response(sock)
        assert sock.recv(100) == b""  # closed, nothing after the response
    assert status == b"HTTP/1.1 401 Unauthorized"
    assert headers[b"content-type"] == b"text/plain"
    assert body == b"no"
    message = (
        "Unexpected ASGI message 'websocket.http.response.body' sent, after sending 'websocket.close' "
        "or completing the denial response."
    )
    text = new_output(server, before, _APP_ERROR + message + "\n")
    assert events(text) == [_CRASH], text
    assert_still_serving(server)


# -- not mistakes, for contrast: no log at all ----------------------------------------------------


def test_accept_before_receiving_connect_is_allowed(server):
    """Accepting before receive() returned websocket.connect works: the app then
    receives the connect first and the client's message next; nothing is logged."""
    before = len(server.read_output(0))
    client = RawClient(server.host, server.port, "/mis/accept-before-receive")
    try:
        assert client.head.startswith(b"HTTP/1.1 101 ")
        client.send(client_frame(1, b"hello"))
        assert client.read_frame() == (1, b"websocket.connect then hello")
        client.send(client_frame(8, close_payload(1000)))
        assert client.read_frame() == (8, close_payload(1000))
        assert client.at_eof()
    finally:
        client.close()
    assert_still_serving(server)
    assert events(server.read_output(0.3)[before:]) == []


def test_long_close_reason_is_cut_to_123_bytes(server):
    """A close reason over the 123 bytes a Close frame holds (RFC 6455 §5.5) is
    cut there on a character boundary, not refused; nothing is logged."""
    before = len(server.read_output(0))
    client = RawClient(server.host, server.port, "/mis/long-close-reason")
    try:
        assert client.head.startswith(b"HTTP/1.1 101 ")
        assert client.read_frame() == (8, close_payload(4002, "é".encode() * 61))
        finish_close(client)
    finally:
        client.close()
    assert_still_serving(server)
    assert events(server.read_output(0.3)[before:]) == []


# -- the client's own misbehaviour: no traceback ---------------------------------------------------


def test_client_leaving_during_handshake_logs_nothing(server):
    """A client that leaves while the app has not answered yet: the app hears
    websocket.disconnect (1006) and returns; no log event, no traceback."""
    before = len(server.read_output(0))
    ident = f"leave{before}"
    with server.connect() as sock:
        sock.sendall(
            f"GET /slow-accept?id={ident} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        server.wait_for_output(f'ws-event {ident} {{"got": "websocket.connect"}}')
    server.wait_for_output(f'ws-event {ident} {{"got": "websocket.disconnect", "code": 1006}}')
    assert_still_serving(server)
    assert events(server.read_output(0.3)[before:]) == []


def test_client_protocol_violation_is_one_line_without_traceback(server):
    """A client that sends an unmasked frame (RFC 6455 §5.1) to an accepted app
    gets Close 1002; the server logs one info line and no traceback."""
    before = len(server.read_output(0))
    client = RawClient(server.host, server.port, "/echo")
    try:
        port = client.sock.getsockname()[1]
        client.send(client_frame(1, b"x", mask=False))
        code, _reason = client.read_close()
        assert code == 1002
        assert client.at_eof()
    finally:
        client.close()
    text = new_output(server, before, f"WebSocket from 127.0.0.1:{port} failed with 1002")
    found = events(text)
    assert len(found) == 1 and found[0][:2] == ("twisted_asgi.websocket", "info"), text
    assert "Traceback" not in text
    assert_still_serving(server)
