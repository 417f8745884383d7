"""WebSocket end to end over loopback: the websockets library as the client, raw frames for violations."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.serving import Server, recv_response, recv_until_closed, start_server
from tests.ws_apps import RawClient, client_frame, close_payload, events, handshake_request, new_id, open_ws


@pytest.fixture(scope="module")
def server():
    s = start_server("tests.ws_apps:app", "--access-log", "-", "--lifespan", "on")
    yield s
    assert s.stop() == 0
    output = s.read_output(0.2)
    # Only the apps made to raise left tracebacks; nothing unhandled anywhere.
    assert output.count("Traceback") == output.count("RuntimeError: boom"), output
    assert "Unhandled" not in output


def raw_status(server: Server, request: bytes) -> tuple[bytes, dict, bytes]:
    with server.connect() as sock:
        sock.sendall(request)
        return recv_response(sock)


def assert_still_serving(server: Server) -> None:
    with open_ws(server, "/echo") as ws:
        ws.send("still here")
        assert ws.recv(timeout=10) == "still here"


# -- handshake and scope --------------------------------------------------------------


def test_scope_from_our_own_parse(server):
    """The websocket scope carries path, raw_path, query, headers, scheme ws, client, server, subprotocols, state."""
    with open_ws(server, "/scope?x=1&y=%20", subprotocols=["one", "two"], additional_headers={"X-Test": "yes"}) as ws:
        scope = json.loads(ws.recv(timeout=10))
        assert ws.subprotocol is None  # the app chose none
        local_port = ws.socket.getsockname()[1]
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == ""
    headers = dict(scope["headers"])
    assert headers["upgrade"] == "websocket"
    assert headers["x-test"] == "yes"
    assert headers["sec-websocket-protocol"] == "one, two"
    assert scope["client"] == ["127.0.0.1", local_port]
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["subprotocols"] == ["one", "two"]
    assert scope["state"] == {"greeting": "hello"}
    assert scope["extensions"] == ["websocket.http.response"]


def test_subprotocol_chosen_by_app(server):
    """websocket.accept's subprotocol is sent in Sec-WebSocket-Protocol."""
    with open_ws(server, "/subprotocol", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.response.headers["Sec-WebSocket-Protocol"] == "chat.v2"
        ws.send("x")
        assert ws.recv(timeout=10) == "x"


def test_accepting_an_unoffered_subprotocol_raises_in_app(server):
    """An accept naming a subprotocol the client did not offer raises in send() and sends nothing."""
    ident = new_id()
    with pytest.raises(InvalidStatus) as info:
        open_ws(server, f"/bad-subprotocol?id={ident}", subprotocols=["a"])
    assert info.value.response.status_code == 403  # the app then closed
    assert events(server, ident) == [{"accept_error": "AppError"}]


def test_extra_accept_headers(server):
    """Headers given with websocket.accept appear in the 101 response, in order."""
    with open_ws(server, "/headers") as ws:
        assert ws.response.headers["x-extra"] == "yes"
        assert ws.response.headers["set-cookie"] == "a=b"
        assert ws.response.headers["server"] == "twisted-asgi"


def test_close_before_accept_is_403(server):
    """websocket.close before accept answers HTTP 403 and no handshake."""
    with pytest.raises(InvalidStatus) as info:
        open_ws(server, "/deny")
    assert info.value.response.status_code == 403


def test_denial_response_extension(server):
    """websocket.http.response.start/body send the app's own HTTP response instead of a 101."""
    with pytest.raises(InvalidStatus) as info:
        open_ws(server, "/denial")
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.body == b"go away"


def test_exception_before_accept_is_500_logged_once(server):
    """An app exception before accept answers 500 and is logged once with its traceback."""
    ident = new_id()
    with pytest.raises(InvalidStatus) as info:
        open_ws(server, f"/raise-before?{ident}")
    assert info.value.response.status_code == 500
    output = server.wait_for_output(f"RuntimeError: boom before accept {ident}")
    assert output.count(f"boom before accept {ident}") == 1


def test_exception_after_accept_closes_1011(server):
    """An app exception after accept closes the socket with 1011, logged once."""
    ident = new_id()
    with open_ws(server, f"/raise-after?{ident}") as ws:
        ws.send("go")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd.code == 1011
    output = server.wait_for_output(f"RuntimeError: boom after accept {ident}")
    assert output.count(f"boom after accept {ident}") == 1


def test_return_without_handshake_is_500(server):
    """An app that returns without answering websocket.connect gets 500 and a clear log line."""
    with pytest.raises(InvalidStatus) as info:
        open_ws(server, "/return-early")
    assert info.value.response.status_code == 500
    server.wait_for_output("ASGI callable returned without sending handshake.")


def test_return_after_accept_closes_1000(server):
    """An app that returns after accept closes the socket normally (1000)."""
    with open_ws(server, "/return-after-accept") as ws, pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=10)
    assert info.value.rcvd.code == 1000


@pytest.mark.parametrize("compression", ["deflate", None])
def test_text_and_binary_echo(server, compression):
    """Text and binary messages go both ways unchanged, with and without permessage-deflate."""
    with open_ws(server, "/echo", compression=compression) as ws:
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert negotiated == ("permessage-deflate" if compression else None)
        for message in ["héllo ☃", b"\x00\xff" * 1000, "", b"", "x" * 200_000]:
            ws.send(message)
            assert ws.recv(timeout=10) == message


def test_fragmented_message_delivered_whole(server):
    """A message the client sends in fragments reaches the app as one message."""
    with open_ws(server, "/echo") as ws:
        ws.send(["frag", "ment", "ed ☃"])
        assert ws.recv(timeout=10) == "fragmented ☃"
        ws.send([b"a", b"b", b"c"])
        assert ws.recv(timeout=10) == b"abc"


def test_raw_fragments_with_interleaved_ping(server):
    """Raw continuation frames with a ping between them: pong first, then the whole message."""
    client = RawClient(server.host, server.port, "/echo")
    try:
        assert client.head.startswith(b"HTTP/1.1 101 ")
        client.send(client_frame(1, b"hel", fin=False) + client_frame(9, b"are you there") + client_frame(0, b"lo"))
        assert client.read_frame() == (10, b"are you there")
        assert client.read_frame() == (1, b"hello")
    finally:
        client.close()


def test_app_close_code_and_reason(server):
    """websocket.close with a code and reason reaches the client as sent."""
    ident = new_id()
    with open_ws(server, f"/echo?id={ident}") as ws:
        ws.send("close 4001 see you")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd.code == 4001
    assert info.value.rcvd.reason == "see you"
    assert events(server, ident)[0]["disconnect"] == 4001  # the client echoed our code


def test_client_close_code_and_reason_reach_app(server):
    """The client's close code and reason arrive in websocket.disconnect (spec 2.5)."""
    ident = new_id()
    with open_ws(server, f"/echo?id={ident}") as ws:
        ws.close(4002, "client says bye")
    assert events(server, ident) == [{"disconnect": 4002, "reason": "client says bye"}]


def test_close_without_code_is_1005_and_drop_is_1006(server):
    """A Close frame without a code gives the app 1005; a dropped TCP connection gives 1006."""
    first, second = new_id(), new_id()
    client = RawClient(server.host, server.port, f"/echo?id={first}")
    client.send(client_frame(8, b""))
    assert client.read_close()[0] == 1000  # the server answers with a normal closure
    assert client.at_eof()
    client.close()
    client = RawClient(server.host, server.port, f"/echo?id={second}")
    client.close()
    assert events(server, first)[0]["disconnect"] == 1005
    assert events(server, second)[0]["disconnect"] == 1006


def test_send_after_app_close_raises(server):
    """send() after the app's own websocket.close raises (an app error, not an OSError)."""
    ident = new_id()
    with open_ws(server, f"/send-after-close?id={ident}") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd.code == 4001
    found = events(server, ident, 2)
    assert found[0] == {"send_error": "AppError", "oserror": False}
    assert found[1]["disconnect"] == 4001


def test_send_after_client_left_raises_oserror(server):
    """send() after the client closed raises an OSError subclass (ASGI spec 2.4), not logged."""
    ident = new_id()
    with open_ws(server, f"/send-after-disconnect?id={ident}") as ws:
        ws.close(1000)
    found = events(server, ident, 2)
    assert found[0]["disconnect"] == 1000
    assert found[1] == {"send_error": "ClientDisconnected", "oserror": True}
    assert "WebSocket connection is closed" not in server.read_output(0.1)  # no traceback of it


def test_ping_answered_with_pong(server):
    """A client ping gets a pong with the same payload."""
    client = RawClient(server.host, server.port, "/echo")
    try:
        client.send(client_frame(9, b"ping-data"))
        assert client.read_frame() == (10, b"ping-data")
    finally:
        client.close()


# -- protocol violations -------------------------------------------------------------------


def raw_header(opcode: int, length_code: int, extended: bytes) -> bytes:
    """A masked, final frame header with the given 7-bit length code and extended length bytes,
    whatever payload follows (the mask is all zeros, so a payload after it is sent as is)."""
    return bytes([0x80 | opcode, 0x80 | length_code]) + extended + b"\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (client_frame(1, b"no mask", mask=False), 1002),
        (client_frame(3, b"reserved opcode"), 1002),
        (client_frame(1, b"rsv without extension", rsv=2), 1002),
        (client_frame(9, b"fragmented ping", fin=False), 1002),
        (client_frame(0, b"continuation out of nowhere"), 1002),
        (client_frame(1, b"a", fin=False) + client_frame(1, b"new message inside"), 1002),
        (client_frame(8, close_payload(999)), 1002),
        (client_frame(1, b"bad utf-8 \xff\xfe"), 1007),
        (client_frame(1, b"cut \xe2\x98", fin=False) + client_frame(0, b""), 1007),
        (client_frame(8, close_payload(1000, b"\xff")), 1007),
        (client_frame(2, b"x" * (1024 * 1024 + 1)), 1009),
        (raw_header(2, 127, struct.pack("!Q", 1 << 40)), 1009),
        (raw_header(2, 127, struct.pack("!Q", (1 << 63) + 5)), 1002),
        (raw_header(1, 126, struct.pack("!H", 5)) + b"hello", 1002),
        (raw_header(2, 127, struct.pack("!Q", 5)) + b"hello", 1002),
        (client_frame(9, b"p" * 126), 1002),
        (client_frame(8, b"\x03"), 1002),
        (client_frame(8, close_payload(1005)), 1002),
        (client_frame(8, close_payload(5000)), 1002),
    ],
    ids=[
        "unmasked",
        "reserved-opcode",
        "rsv-bits",
        "fragmented-control",
        "stray-continuation",
        "interleaved-message",
        "bad-close-code",
        "bad-utf8",
        "truncated-utf8",
        "bad-close-reason",
        "too-big",
        "64-bit-length-over-limit",
        "64-bit-length-msb-set",
        "16-bit-length-not-minimal",
        "64-bit-length-not-minimal",
        "long-ping",
        "close-payload-1-byte",
        "close-code-1005",
        "close-code-5000",
    ],
)
def test_violations_close_with_right_code(server, frames, code):
    """Each protocol violation closes with its RFC 6455 code; the app is told; the server keeps serving."""
    ident = new_id()
    client = RawClient(server.host, server.port, f"/echo?id={ident}")
    try:
        client.send(frames)
        assert client.read_close()[0] == code
        # The client's (bad) Close frame was its half of the closing handshake,
        # and a violation fails the connection: either way the server may close
        # TCP at once (RFC 6455 §7.1.1, §7.1.7). When bytes of the client's were
        # still unread (the rest of a frame over the size limit), that close is
        # a reset, so the client's reply may meet it.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            client.send(client_frame(8, close_payload(1000)))
        assert client.at_eof()
    finally:
        client.close()
    assert events(server, ident)[0]["disconnect"] == code
    assert_still_serving(server)


def test_bytes_after_close_frame_are_ignored(server):
    """Bytes after the client's Close frame (frames, garbage) never reach the app or crash the server."""
    ident = new_id()
    client = RawClient(server.host, server.port, f"/echo?id={ident}")
    try:
        client.send(client_frame(8, close_payload(1000)) + client_frame(1, b"after close") + b"\xff" * 100)
        assert client.read_close()[0] == 1000
        assert client.at_eof()
    finally:
        client.close()
    assert events(server, ident) == [{"disconnect": 1000, "reason": ""}]
    assert_still_serving(server)


def test_reset_mid_frame(server):
    """A client that resets the connection in the middle of a frame gives the app 1006; nothing breaks."""
    ident = new_id()
    client = RawClient(server.host, server.port, f"/echo?id={ident}")
    frame = client_frame(2, b"y" * 5000)
    client.send(frame[:100])
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    client.close()
    assert events(server, ident)[0]["disconnect"] == 1006
    assert_still_serving(server)


@pytest.mark.parametrize("partial", [b"", client_frame(2, b"z" * 5000)[:100]], ids=["idle", "mid-frame"])
def test_reset_noticed_at_once(partial):
    """A reset (RST) from a client, idle or right behind part of a frame, reaches the app as 1006 at
    once, and the server then stops without a traceback. (On the default asyncio loop: Twisted's
    asyncio reactor over uvloop loses such a reset, twisted/twisted#11904, uvloop#552.)"""
    server = start_server("tests.ws_apps:app")
    try:
        ident = new_id()
        client = RawClient(server.host, server.port, f"/echo?id={ident}")
        client.send(client_frame(1, b"first"))
        assert client.read_frame() == (1, b"first")
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        if partial:
            client.send(partial)  # the reset follows these bytes at once
        client.close()
        assert events(server, ident, timeout=5)[0]["disconnect"] == 1006
        assert_still_serving(server)
    finally:
        assert server.stop() == 0
    output = server.read_output(0.2)
    assert "Traceback" not in output, output


# -- refused handshakes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
        handshake_request(key=b"dG9vIHNob3J0"),
        handshake_request(key=b"not base64 at all!!!!!=="),
        handshake_request(extra=b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
        handshake_request().replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
        handshake_request().replace(b"Sec-WebSocket-Version: 13\r\n", b""),
        handshake_request(extra="Sec-WebSocket-Protocol: chät\r\n".encode()),
        handshake_request(extra=b"Sec-WebSocket-Protocol: a b\r\n"),
        handshake_request(extra=b"Content-Length: 5\r\n") + b"hello",
        handshake_request(extra=b"Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
        handshake_request().replace(b"GET ", b"POST ", 1),
        handshake_request().replace(b"HTTP/1.1", b"HTTP/1.0", 1),
    ],
    ids=[
        "no-key",
        "short-key",
        "key-not-base64",
        "two-keys",
        "version-8",
        "no-version",
        "non-ascii-subprotocol",
        "bad-subprotocol-token",
        "body",
        "chunked-body",
        "post",
        "http-1.0",
    ],
)
def test_bad_handshake_is_400(server, request_bytes):
    """Malformed upgrade requests get 400 and close, and never reach the app."""
    status, headers, _body = raw_status(server, request_bytes)
    assert status.startswith(b"HTTP/1.1 400 "), status
    assert headers[b"connection"] == b"close"
    if b"Sec-WebSocket-Version: 13" not in request_bytes:
        assert headers.get(b"sec-websocket-version") in (b"13", None)
    assert_still_serving(server)


def test_version_mismatch_names_our_version(server):
    """A version we do not speak gets 400 with Sec-WebSocket-Version: 13 (RFC 6455 §4.4)."""
    status, headers, _ = raw_status(
        server, handshake_request().replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8")
    )
    assert status.startswith(b"HTTP/1.1 400 ")
    assert headers[b"sec-websocket-version"] == b"13"


def test_upgrade_without_connection_upgrade_is_plain_http(server):
    """'Upgrade: websocket' without 'Connection: upgrade' is an ordinary HTTP request for the app."""
    status, _headers, body = raw_status(
        server, b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n"
    )
    assert status.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body) == {"type": "http", "upgrade": "websocket"}


def test_data_before_handshake_completes_is_buffered(server):
    """Frames sent right behind the upgrade request are processed once the app accepts."""
    with server.connect() as sock:
        sock.sendall(handshake_request("/echo") + client_frame(1, b"eager"))
        data = b""
        while b"eager" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 101 ")


# -- logs ------------------------------------------------------------------------------------------


def test_access_log_connect_and_disconnect(server):
    """The access log has a WSCONNECT line (101) and a WSDISCONNECT line with the close code and duration."""
    ident = new_id()
    with open_ws(server, f"/echo?id={ident}") as ws:
        ws.send("hi")
        ws.recv(timeout=10)
        ws.close(4005, "done")
    events(server, ident)
    output = server.wait_for_output(f'"WSDISCONNECT /echo?id={ident} HTTP/1.1" 4005 ')
    assert f'"WSCONNECT /echo?id={ident} HTTP/1.1" 101 0 ' in output
    line = next(line for line in output.splitlines() if f"WSDISCONNECT /echo?id={ident}" in line)
    assert float(line.rsplit(" ", 1)[1]) >= 0.0
    assert "websockets/" in line  # the user agent


def test_denied_handshake_logged_as_http(server):
    """A denied handshake is logged as an ordinary HTTP line with its status."""
    ident = new_id()
    with pytest.raises(InvalidStatus) as info:
        open_ws(server, f"/deny?id={ident}")
    output = server.wait_for_output(f'"GET /deny?id={ident} HTTP/1.1" 403 ')
    # Body bytes only (issue 16, item 10: head and body were counted).
    size = len(info.value.response.body or b"")
    assert f'"GET /deny?id={ident} HTTP/1.1" 403 {size} ' in output, (size, output[-500:])


def test_demo_app_websocket_echo():
    """The demo app's page links a WebSocket echo that works with a real client."""
    demo = start_server("twisted_asgi.demo:app")
    try:
        with demo.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            page = recv_until_closed(sock)
        assert b"WebSocket echo" in page and b'"/ws"' in page
        with connect(f"ws://127.0.0.1:{demo.port}/ws", proxy=None) as ws:
            ws.send("from the demo")
            assert ws.recv(timeout=10) == "from the demo"
            ws.send(b"\x01\x02")
            assert ws.recv(timeout=10) == b"\x01\x02"
    finally:
        assert demo.stop() == 0


def test_ping_flood_from_client_that_does_not_read(server):
    """A client that floods pings and reads no pongs is simply not read any more: server memory stays flat."""
    client = RawClient(server.host, server.port, "/echo")
    pid = server.proc.pid
    before = _rss(pid)
    flood = client_frame(9, b"x" * 125) * 200_000  # 26 MB of pings, each owed a pong
    client.sock.setblocking(False)
    sent = 0
    try:
        while sent < len(flood):
            _r, writable, _x = select.select([], [client.sock], [], 1.0)
            if not writable:
                break  # the server stopped reading
            with contextlib.suppress(BlockingIOError):
                sent += client.sock.send(flood[sent : sent + 65536])
        assert sent < len(flood)
        assert _rss(pid) - before < 8 * 1024 * 1024
    finally:
        client.close()
    assert_still_serving(server)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.parametrize("connection", [b"keep-alive, Upgrade", b"upgrade", b"Upgrade,keep-alive"])
def test_connection_header_variants(server, connection):
    """Browsers' Connection values (Firefox sends 'keep-alive, Upgrade') all complete the handshake."""
    request = handshake_request("/echo").replace(b"Connection: Upgrade", b"Connection: " + connection)
    request = request.replace(b"Upgrade: websocket", b"Upgrade: WebSocket")
    with server.connect() as sock:
        sock.sendall(request + client_frame(1, b"hi"))
        data = b""
        while not data.endswith(b"\x81\x02hi"):
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 101 ")


def test_upgrade_after_keep_alive_request(server):
    """An upgrade pipelined behind a plain request on the same connection is handled after its response."""
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" + handshake_request("/echo") + client_frame(1, b"after"))
        data = b""
        while not data.endswith(b"\x81\x05after"):
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"\r\n0\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n" in data  # the whole response, then the 101
