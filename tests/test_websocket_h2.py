"""WebSocket over HTTP/2 (RFC 8441) end to end over loopback, over h2c and TLS:
our own RFC 8441 client (:mod:`tests.ws_h2_client`, on ``h2``) opens
extended CONNECT streams and sends masked frames in DATA. The WebSocket matrix
of the HTTP/1.1 tests (handshake, scope, subprotocols, compression, denial,
the app-misbehaviour rows of ``tests/test_websocket_misbehave.py``, limits,
close codes) runs here over both transports, plus what only HTTP/2 has: many
WebSockets and requests on one connection, RST_STREAM, GOAWAY, the stream
limit, and a client that opens its window to nothing."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
from typing import Any

import h2.errors
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.deploy import closing, make_certs
from tests.serving import Server, start_server
from tests.test_websocket_misbehave import _APP_ERROR, _CRASH, AFTER_ACCEPT, BEFORE_ACCEPT, events, new_output
from tests.ws_h2_client import H2Client, H2WebSocket, frame, open_ws_h2

TRANSPORTS = ["h2c", "tls"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def _endpoint(transport: str, certs: dict) -> str:
    if transport == "tls":
        return f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    return "tcp:port=0:interface=127.0.0.1"


def _tls(server: Any) -> ssl.SSLContext | None:
    certs = getattr(server, "certs", None)
    if certs is None:
        return None
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    context.set_alpn_protocols(["h2"])
    return context


def _start(transport: str, certs: dict, *args: str, app: str = "tests.ws_apps:misbehave") -> Server:
    server = start_server(app, *args, endpoint=_endpoint(transport, certs))
    server.certs = certs if transport == "tls" else None  # type: ignore[attr-defined]
    return server


@pytest.fixture(scope="module", params=TRANSPORTS)
def server(request, certs):
    s = _start(request.param, certs, "--timeout-ws-handshake", "1", "--timeout-app-close", "2")
    yield s
    assert closing(s) == 0
    output = s.read_output(0.2)
    assert "Unhandled" not in output
    assert output.count("Traceback") == output.count("RuntimeError: ") + output.count("AppError: "), output


def client_of(server: Any, **kwargs: Any) -> H2Client:
    return H2Client(server.host, server.port, tls=_tls(server), **kwargs)


def ws_of(server: Any, path: str, **kwargs: Any) -> H2WebSocket:
    """A WebSocket on a connection of its own (closed with it)."""
    return open_ws_h2(server, path, tls=_tls(server), **kwargs)


def assert_still_serving(server: Any) -> None:
    with ws_of(server, "/echo") as ws:
        ws.send("still here")
        assert ws.recv(timeout=10) == "still here"


def ws_events(server: Any, ident: str, count: int = 1) -> list:
    """What the app recorded for ``ident`` (printed as ``ws-event`` lines)."""
    needle = f"ws-event {ident} "
    deadline = time.monotonic() + 10
    while True:
        found = [
            json.loads(line.split(needle, 1)[1]) for line in server.read_output(0.05).splitlines() if needle in line
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found


# -- handshake and scope ---------------------------------------------------------------------


def test_setting_advertised_and_scope(server):
    """The server sends SETTINGS_ENABLE_CONNECT_PROTOCOL = 1; an extended
    CONNECT gets a websocket scope with http_version "2", the scheme of the
    transport, path and query from :path, the headers, the offered subprotocols."""
    client = client_of(server)
    try:
        assert client.conn.remote_settings.enable_connect_protocol == 1
        ws = client.websocket("/scope?x=1&y=%20", subprotocols=["one", "two"], additional_headers={"X-Test": "yes"})
        assert ws.response.headers.get("sec-websocket-accept") is None  # RFC 8441 §5: none over HTTP/2
        scope = json.loads(ws.recv(timeout=10))
        local_port = client.sock.getsockname()[1]
        ws.close()
    finally:
        client.close()
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == ("wss" if server.certs else "ws")
    assert scope["path"] == "/scope" and scope["raw_path"] == "/scope"
    assert scope["query_string"] == "x=1&y=%20"
    headers = dict(scope["headers"])
    assert headers["host"] == f"{server.host}:{server.port}"
    assert headers["x-test"] == "yes"
    assert headers["sec-websocket-version"] == "13"
    assert scope["subprotocols"] == ["one", "two"]
    assert scope["client"] == ["127.0.0.1", local_port]
    assert scope["server"] == ["127.0.0.1", server.port]
    expected = {"tls", "websocket.http.response"} if server.certs else {"websocket.http.response"}
    assert set(scope["extensions"]) == expected


def test_echo_text_and_binary_of_many_sizes(server):
    """Messages both ways in the stream's DATA, larger ones over many frames and
    past both windows (64 KiB): flow control lets them through in turn."""
    with ws_of(server, "/echo") as ws:
        for size in (0, 1, 125, 126, 65535, 65536, 300_000):
            ws.send(b"\x01" * size)
            assert ws.recv(timeout=10) == b"\x01" * size
        ws.send("héllo")
        assert ws.recv(timeout=10) == "héllo"


def test_subprotocol_and_accept_headers(server):
    """The subprotocol the app chose and its extra headers are in the 200 HEADERS."""
    with ws_of(server, "/subprotocol", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        ws.send("x")
        assert ws.recv(timeout=10) == "x"
    with ws_of(server, "/headers") as ws:
        assert ws.response.headers["x-extra"] == "yes"
        assert ws.response.headers["set-cookie"] == "a=b"


def test_permessage_deflate(server):
    """permessage-deflate is negotiated in the HEADERS (RFC 7692) and both
    directions are compressed."""
    with ws_of(server, "/echo", compression="deflate") as ws:
        assert ws.response.headers["sec-websocket-extensions"].startswith("permessage-deflate")
        for _ in range(3):
            ws.send("abc" * 10_000)
            assert ws.recv(timeout=10) == "abc" * 10_000
        assert ws.state["received"] < 30_000 * 3  # compressed on the wire


def test_many_websockets_and_requests_share_one_connection(server):
    """Ten WebSockets and plain requests interleave on one HTTP/2 connection."""
    client = client_of(server)
    try:
        sockets = [client.websocket("/echo") for _ in range(10)]
        for i, ws in enumerate(sockets):
            ws.send(f"m{i}")
        assert client.request("/plain")[0] == 200
        for i, ws in enumerate(reversed(sockets)):
            assert ws.recv(timeout=10) == f"m{9 - i}"
        for ws in sockets:
            ws.close()
            assert ws.close_code == 1000
        assert client.request("/plain")[0] == 200
    finally:
        client.close()


# -- refusals and denial --------------------------------------------------------------------------


def test_app_refusal_is_403(server):
    """websocket.close before accept: 403 HEADERS, END_STREAM; the connection serves on."""
    client = client_of(server)
    try:
        with pytest.raises(InvalidStatus) as info:
            client.websocket("/deny")
        assert info.value.response.status_code == 403
        assert client.request("/plain")[0] == 200
    finally:
        client.close()


def test_denial_response(server):
    """The denial response extension: the app's own status, headers and body."""
    with pytest.raises(InvalidStatus) as info:
        ws_of(server, "/denial")
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.body == b"go away"


def test_wrong_version_is_400_with_the_version_we_speak(server):
    client = client_of(server)
    try:
        headers = [h for h in client.connect_headers("/echo") if h[0] != b"sec-websocket-version"]
        state = client.answer([*headers, (b"sec-websocket-version", b"8")])
        fields = dict(state["headers"])
        assert fields[b":status"] == b"400" and fields[b"sec-websocket-version"] == b"13"
    finally:
        client.close()


@pytest.mark.parametrize(("protocol", "status"), [(b"websocket", None), (b"WebSocket", None), (b"connect-udp", 501)])
def test_protocol_names(server, protocol, status):
    """:protocol is an upgrade token (case-insensitive); one we do not speak is 501."""
    client = client_of(server)
    try:
        state = client.answer(client.connect_headers("/echo", protocol=protocol), head_only=True)
        assert dict(state["headers"])[b":status"] == (b"%d" % status if status else b"200")
    finally:
        client.close()


def test_plain_connect_is_still_501(server):
    client = client_of(server)
    try:
        state = client.answer([(b":method", b"CONNECT"), (b":authority", b"example.com:443")])
        assert dict(state["headers"])[b":status"] == b"501"
    finally:
        client.close()


@pytest.mark.parametrize(
    "drop",
    [b":scheme", b":path", b":authority"],
)
def test_extended_connect_without_a_pseudo_header_is_malformed(server, drop):
    """RFC 8441 §4: :scheme, :path and :authority are required: RST_STREAM PROTOCOL_ERROR."""
    client = client_of(server)
    try:
        state = client.answer([h for h in client.connect_headers("/echo") if h[0] != drop])
        assert state["reset"] == h2.errors.ErrorCodes.PROTOCOL_ERROR
        assert client.request("/plain")[0] == 200
    finally:
        client.close()


def test_protocol_on_a_get_is_malformed(server):
    client = client_of(server)
    try:
        headers = [(b":method", b"GET") if h[0] == b":method" else h for h in client.connect_headers("/echo")]
        state = client.answer(headers, end_stream=True)
        assert state["reset"] == h2.errors.ErrorCodes.PROTOCOL_ERROR
    finally:
        client.close()


# -- the app-misbehaviour matrix (rows of tests/test_websocket_misbehave.py) --------------------


@pytest.mark.parametrize(("name", "message"), BEFORE_ACCEPT, ids=[row[0] for row in BEFORE_ACCEPT])
def test_mistake_before_accept_is_500_and_one_log(server, name, message):
    before = len(server.read_output(0))
    with pytest.raises(InvalidStatus) as info:
        ws_of(server, f"/mis/{name}")
    assert info.value.response.status_code == 500
    assert message.encode() not in info.value.response.body
    text = new_output(server, before, _APP_ERROR + message + "\n")
    assert events(text) == [_CRASH], text
    assert text.count("Traceback") == 1
    assert_still_serving(server)


@pytest.mark.parametrize(("name", "message"), AFTER_ACCEPT, ids=[row[0] for row in AFTER_ACCEPT])
def test_mistake_after_accept_closes_1011_and_one_log(server, name, message):
    before = len(server.read_output(0))
    with ws_of(server, f"/mis/{name}") as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert (ws.close_code, ws.close_reason) == (1011, "internal server error")
    text = new_output(server, before, _APP_ERROR + message + "\n")
    assert events(text) == [_CRASH], text
    assert text.count("Traceback") == 1
    assert_still_serving(server)


@pytest.mark.parametrize("name", ["return-without-accept", "denial-unfinished", "raise-before-accept"])
def test_app_ends_before_accept_is_500(server, name):
    with pytest.raises(InvalidStatus) as info:
        ws_of(server, f"/mis/{name}")
    assert info.value.response.status_code == 500
    assert_still_serving(server)


def test_denial_body_unfinished_resets_the_stream(server):
    """Over HTTP/2 a cut denial body is a reset stream (HTTP/1.1 closes TCP)."""
    client = client_of(server)
    try:
        state = client.answer(client.connect_headers("/mis/denial-body-unfinished"))
        assert dict(state["headers"])[b":status"] == b"401"
        assert bytes(state["data"]) == b"partial"
        assert state["reset"] is not None
    finally:
        client.close()


def test_never_answering_app_gets_503(server):
    with pytest.raises(InvalidStatus) as info:
        ws_of(server, "/mis/never-answer")
    assert info.value.response.status_code == 503


def test_send_after_close_keeps_apps_close_code(server):
    with ws_of(server, "/mis/send-after-close") as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert (ws.close_code, ws.close_reason) == (4001, "bye")


# -- closing -----------------------------------------------------------------------------------


def test_app_close_then_end_stream(server):
    """The app's websocket.close: a Close frame with its code and reason, then
    (the client having answered) END_STREAM; the app hears the client's code."""
    ident = f"close{time.monotonic_ns()}"
    with ws_of(server, f"/echo?id={ident}") as ws:
        ws.send("close 4000 done")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert (ws.close_code, ws.close_reason) == (4000, "done")
        ws.client.wait(lambda: ws.state["ended"])
    assert ws_events(server, ident) == [{"disconnect": 4000, "reason": ""}]


def test_client_close_is_answered(server):
    ident = f"cclose{time.monotonic_ns()}"
    with ws_of(server, f"/echo?id={ident}") as ws:
        ws.close(4321, "bye")
        assert ws.close_code == 1000  # the server's answer
    assert ws_events(server, ident) == [{"disconnect": 4321, "reason": "bye"}]


def test_client_reset_is_1006_to_the_app(server):
    """RST_STREAM from the client is an abnormal close: websocket.disconnect 1006;
    the connection's other streams go on."""
    ident = f"rst{time.monotonic_ns()}"
    client = client_of(server)
    try:
        ws = client.websocket(f"/echo?id={ident}")
        other = client.websocket("/echo")
        ws.send("hi")
        assert ws.recv(timeout=10) == "hi"
        ws.reset()
        assert [e["disconnect"] for e in ws_events(server, ident)] == [1006]
        other.send("still")
        assert other.recv(timeout=10) == "still"
        other.close()
    finally:
        client.close()


def test_client_end_stream_is_its_fin(server):
    """END_STREAM from the client without a Close: as a TCP FIN, 1006 to the app."""
    ident = f"fin{time.monotonic_ns()}"
    client = client_of(server)
    try:
        ws = client.websocket(f"/echo?id={ident}")
        ws.end_stream()
        assert [e["disconnect"] for e in ws_events(server, ident)] == [1006]
        client.wait(lambda: ws.state["ended"])
    finally:
        client.close()


def test_connection_lost_is_1006_to_every_websocket(server):
    idents = [f"lost{i}-{time.monotonic_ns()}" for i in range(3)]
    client = client_of(server)
    try:
        for ident in idents:
            client.websocket(f"/echo?id={ident}")
    finally:
        client.close()
    for ident in idents:
        assert [e["disconnect"] for e in ws_events(server, ident)] == [1006]


def test_unmasked_client_frame_is_1002(server):
    """RFC 8441 §5 keeps RFC 6455's masking: an unmasked frame fails with 1002."""
    with ws_of(server, "/echo") as ws:
        ws.send_raw(frame(1, b"x", mask=False))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1002
        ws.client.wait(lambda: ws.state["ended"])
    assert_still_serving(server)


def test_ping_is_answered(server):
    with ws_of(server, "/echo") as ws:
        ws.ping(b"abc")
        ws.send("after")
        assert ws.recv(timeout=10) == "after"
        assert ws.pongs == [b"abc"]


# -- servers with other options ------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_limits_and_origin_as_over_http11(transport, certs):
    """Message, frame and fragment limits close with 1009; an Origin not
    allowed gets 403."""
    server = _start(
        transport,
        certs,
        "--limit-ws-message",
        "1000",
        "--limit-ws-frame",
        "600",
        "--limit-ws-fragments",
        "4",
        "--ws-allowed-origin",
        "https://good.example",
    )
    try:
        with ws_of(server, "/echo", origin="https://good.example") as ws:
            ws.send(b"x" * 500)
            assert ws.recv(timeout=10) == b"x" * 500
            ws.send(b"x" * 700)  # a frame over 600
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1009
        with ws_of(server, "/echo") as ws:  # no Origin: not a browser
            ws.send_raw(frame(2, b"x" * 500, fin=False) + frame(0, b"x" * 501))  # a message over 1000
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1009
        with ws_of(server, "/echo") as ws:
            ws.send_raw(frame(2, b"a", fin=False) + b"".join(frame(0, b"", fin=False) for _ in range(4)))
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1009  # a fifth fragment
        with pytest.raises(InvalidStatus) as info:
            ws_of(server, "/echo", origin="https://evil.example")
        assert info.value.response.status_code == 403
    finally:
        assert closing(server) == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_ws_over_h2(transport, certs):
    """--no-ws-over-h2: the setting is 0 and an extended CONNECT is a malformed
    stream, as before RFC 8441; WebSocket over HTTP/1.1 is unchanged."""
    server = _start(transport, certs, "--no-ws-over-h2")
    try:
        client = client_of(server)
        try:
            assert client.conn.remote_settings.enable_connect_protocol == 0
            state = client.answer(client.connect_headers("/echo"))
            assert state["reset"] == h2.errors.ErrorCodes.PROTOCOL_ERROR
            assert client.request("/plain")[0] == 200
        finally:
            client.close()
    finally:
        assert closing(server) == 0


def test_no_ws_over_h2_from_the_environment(certs):
    server = start_server("tests.ws_apps:app", env={"TWISTED_ASGI_NO_WS_OVER_H2": "1"})
    try:
        client = H2Client(server.host, server.port)
        try:
            assert client.conn.remote_settings.enable_connect_protocol == 0
        finally:
            client.close()
    finally:
        assert closing(server) == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_graceful_shutdown_closes_with_1001_then_end_stream(transport, certs):
    """Server shutdown: GOAWAY, then each open WebSocket gets Close 1001; once
    the client answers, END_STREAM, and the server exits cleanly."""
    server = _start(transport, certs, app="tests.ws_apps:app")
    try:
        client = client_of(server)
        sockets = [client.websocket("/echo") for _ in range(2)]
        sockets[0].send("before")
        assert sockets[0].recv(timeout=10) == "before"
        server.proc.send_signal(signal.SIGTERM)
        for ws in sockets:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1001
            ws.close()  # answers the Close
            client.wait(lambda ws=ws: ws.state["ended"])
        assert client.goaway is not None
        assert server.proc.wait(timeout=20) == 0
        client.close()
    finally:
        closing(server)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stream_limit_counts_websockets(transport, certs):
    """--limit-concurrent-streams counts WebSocket streams: one more is refused."""
    server = _start(transport, certs, "--limit-concurrent-streams", "3", app="tests.ws_apps:app")
    try:
        client = client_of(server)
        try:
            # An attacker's client ignores the server's limit (h2 would refuse to send).
            client.conn.remote_settings.max_concurrent_streams = 1000
            client.conn.remote_settings.acknowledge()
            sockets = [client.websocket("/echo") for _ in range(3)]
            state = client.answer(client.connect_headers("/echo"))
            assert state["reset"] == h2.errors.ErrorCodes.REFUSED_STREAM
            sockets[0].close()
            client.wait(lambda: sockets[0].state["ended"])
            # A stream is free again once the app has returned.
            deadline = time.monotonic() + 10
            while True:
                stream_id = client.open_stream(client.connect_headers("/echo"))
                state = client.streams[stream_id]
                client.wait(lambda state=state: state["ended"] or state["headers"] is not None)
                if state["headers"] is not None or time.monotonic() > deadline:
                    break
            assert dict(state["headers"])[b":status"] == b"200"
        finally:
            client.close()
    finally:
        assert closing(server) == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_that_never_reads_is_bounded(transport, certs):
    """A client that opens many WebSockets, sends and never opens its window:
    each echo waits for the window (backpressure to the app: it stops reading,
    so the client's own window to the server shuts after a bounded amount),
    and after --timeout-send the stream is reset and the app hears 1006."""
    server = _start(transport, certs, "--timeout-send", "2", app="tests.ws_apps:app")
    try:
        client = client_of(server, window=1024, auto_ack=False)
        try:
            idents = [f"stuck{i}-{time.monotonic_ns()}" for i in range(5)]
            sockets = [client.websocket(f"/echo?id={ident}") for ident in idents]
            message = frame(2, b"y" * 4000)
            for ws in sockets:
                sent = 0
                # The server stops acknowledging once its echo is stuck: the
                # client cannot send past the stream's window (64 KiB) and a
                # few queued messages.
                while sent < 2_000_000:
                    window = client.conn.local_flow_control_window(ws.stream_id)
                    if window < len(message):
                        client.pump(0.2)
                        if client.conn.local_flow_control_window(ws.stream_id) < len(message):
                            break
                        continue
                    ws.send_raw(message)
                    sent += len(message)
                assert sent < 400_000, sent
            for ws in sockets:
                client.wait(lambda ws=ws: ws.state["ended"], timeout=20)
                assert ws.state["reset"] is not None
                server.wait_for_output(f"opened no window on stream {ws.stream_id} for 2.0s")
            assert client.request("/plain")[0] == 200  # the connection itself still serves
        finally:
            client.close()
    finally:
        assert closing(server) == 0


def test_websocket_through_haproxys_http2_connection(tmp_path):
    """HAProxy as an RFC 8441 client: with the guide's configuration less its
    HTTP/1.1 WebSocket backend, HAProxy carries a browser's ``Upgrade:
    websocket`` to the server as an extended CONNECT on its h2c connection
    (``proto h2``), and the app sees a WebSocket over HTTP/2 from the real
    client (PROXY v2)."""
    from websockets.sync.client import connect

    from tests.test_deploy_haproxy import BALANCER, CLIENT, behind_haproxy

    no_split = ((r"(?m)^\s*use_backend twisted_asgi_websocket if websocket\n", ""),)
    endpoint = "haproxy:tcp:port=0:interface=127.0.0.1"
    with behind_haproxy(tmp_path, endpoint, substitutions=no_split) as (_server, port):
        sock = socket.create_connection((BALANCER, port), timeout=10, source_address=(CLIENT, 0))
        with connect(f"ws://{BALANCER}:{port}/ws", sock=sock, open_timeout=10) as ws:
            scope = json.loads(ws.recv(timeout=10))
            ws.send("through haproxy's h2 connection")
            assert ws.recv(timeout=10) == "through haproxy's h2 connection"
    assert scope["type"] == "websocket" and scope["http_version"] == "2"
    assert scope["client"][0] == CLIENT


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_app_that_reads_nothing_shuts_the_clients_window(transport, certs):
    """An app that takes no message: past --limit-ws-queue the server stops
    acknowledging the stream's DATA, so the client can send no more than the
    stream's window; once the app reads, every message arrives, in order."""
    server = _start(transport, certs, "--limit-ws-queue", "4", app="tests.ws_apps:app")
    try:
        client = client_of(server)
        try:
            ws = client.websocket("/slow")
            message = frame(2, b"z" * 1000)
            sent = 0
            while sent < 500:
                if client.conn.local_flow_control_window(ws.stream_id) < len(message):
                    client.pump(0.3)
                    if client.conn.local_flow_control_window(ws.stream_id) < len(message):
                        break
                    continue
                ws.send_raw(message)
                sent += 1
            assert 4 < sent < 100, sent  # 64 KiB of window and the queue, not all 500
            assert client.request("/release")[1] == b"released"
            for _ in range(sent):
                assert ws.recv(timeout=10) == b"z" * 1000
            ws.close()
        finally:
            client.close()
    finally:
        assert closing(server) == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_refused_handshakes_free_their_streams(transport, certs):
    """A handshake the server refuses itself (an Origin not allowed, a wrong
    version) runs no app call, and its stream no longer counts: with a limit
    of two streams, five refusals on one connection leave room for a WebSocket."""
    server = _start(transport, certs, "--limit-concurrent-streams", "2", "--ws-allowed-origin", "https://good.example")
    try:
        client = client_of(server)
        try:
            for _ in range(5):
                with pytest.raises(InvalidStatus) as info:
                    client.websocket("/echo", origin="https://evil.example")
                assert info.value.response.status_code == 403
            with client.websocket("/echo", origin="https://good.example") as ws:
                ws.send("room")
                assert ws.recv(timeout=10) == "room"
        finally:
            client.close()
    finally:
        assert closing(server) == 0
