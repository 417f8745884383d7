"""Fallback to the public path (issue 18, item 3): with a private name of a
dependency gone, the fast path that used it is off, the server says so once at
start-up, and still serves correctly over loopback (slower is fine, wrong is not).

A server is started by tests/upstream_strip.py, which makes the dependency
look like a release without the name: ``--rename`` rewrites the package's own
source as it is imported (it stays consistent with itself, only our use of the
old name is left behind), ``--delete`` removes a module attribute.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from twisted.internet.asyncioreactor import AsyncioSelectorReactor

from tests.serving import ROOT, Server, recv_response, recv_until_closed
from tests.ws_apps import RawClient, client_frame
from twisted_asgi._upstream.twisted import REACTOR_SEAM_NAMES

OFF = "Fast path(s) off"

#: The reactor seam's names.
SEAM = list(REACTOR_SEAM_NAMES)


def start(strip: list[str], *args: str, app: str = "tests.ws_apps:app") -> Server:
    """A server from ``python -m tests.upstream_strip STRIP -- ARGS APP``, listening."""
    import time

    from tests.serving import _LISTEN

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env["PYTHONUNBUFFERED"] = "1"
    argv = [sys.executable, "-m", "tests.upstream_strip", *strip, "--", "-e", "tcp:port=0:interface=127.0.0.1", *args]
    proc = subprocess.Popen(
        [*argv, app], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    server = Server(proc, None, "127.0.0.1")
    deadline = time.monotonic() + 30
    while True:
        found = _LISTEN.findall(server.read_output(0.05))
        if found:
            server.port = int(found[0][2])
            return server
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop() if proc.poll() is None else None
            raise AssertionError(f"server did not start; output:\n{''.join(server.output)}")


def http_get(server: Server, path: str = "/") -> tuple[bytes, dict[bytes, bytes], bytes]:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        return recv_response(sock)


def ws_round_trips(server: Server) -> None:
    """Whole frames (the fast path), a fragmented message and a large frame
    (Autobahn's masker path) come back as they went."""
    client = RawClient(server.host, server.port, "/echo")
    try:
        assert b" 101 " in client.head
        client.send(client_frame(2, b"small"))
        assert client.read_frame() == (2, b"small")
        client.send(client_frame(1, b"frag", fin=False) + client_frame(0, b"mented"))
        assert client.read_frame() == (1, b"fragmented")
        big = os.urandom(70000)
        client.send(client_frame(2, big))
        assert client.read_frame() == (2, big)
    finally:
        client.close()


def said_once(server: Server, *words: str) -> str:
    text = "".join(server.output)
    lines = [line for line in text.splitlines() if OFF in line]
    assert len(lines) == 1, text
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def stopping() -> Any:
    servers: list[Server] = []
    yield servers.append
    for server in servers:
        server.stop()


def test_all_fast_paths_on_says_nothing(stopping):
    server = start([])
    stopping(server)
    status, _headers, _body = http_get(server)
    assert status.startswith(b"HTTP/1.1 200")
    server.read_output(0.2)
    assert OFF not in "".join(server.output)


@pytest.mark.parametrize("name", SEAM)
@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_reactor_seam_off_serves_http_and_websocket(stopping, name, loop):
    server = start(["--rename", f"twisted:{name}:{name}_gone_in_a_future_twisted"], "--loop", loop)
    stopping(server)
    line = said_once(server, "reactor seam", name)
    if loop == "auto":
        assert "asyncio's event loop runs instead of uvloop" in line
    for _ in range(3):
        status, _headers, body = http_get(server)
        assert status.startswith(b"HTTP/1.1 200") and body
    ws_round_trips(server)
    text = server.read_output(0.2)
    assert "Traceback" not in text and "Unhandled" not in text


@pytest.mark.parametrize(
    "name",
    ["hpack.huffman:HuffmanEncoder", "hpack.huffman_table:decode_huffman", "hpack.huffman_constants:REQUEST_CODES"],
)
def test_hpack_huffman_off_serves_http2(stopping, name, tmp_path):
    server = start(["--delete", name], app="tests.apps:scope_echo")
    stopping(server)
    # curl (nghttp2) Huffman-codes the request's fields; our decoder's public
    # path decodes them, our encoder sends plain literals back.
    value = "a-long-header-value-that-huffman-shortens-" * 3
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2-prior-knowledge",
            "-D",
            "-",
            "-H",
            f"x-probe: {value}",
            f"http://127.0.0.1:{server.port}/path?q=1",
        ],
        capture_output=True,
        timeout=20,
        check=True,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200"), out
    assert b"content-type: application/json" in head.lower(), head  # our encoder's plain literals, read by curl
    scope = json.loads(body)
    assert scope["http_version"] == "2" and scope["path"] == "/path"
    assert ["x-probe", value] in scope["headers"], scope[
        "headers"
    ]  # curl's Huffman strings, decoded by hpack's Decoder
    # h2 and hpack are imported, and checked, at the first HTTP/2 connection.
    server.wait_for_output(OFF)
    said_once(server, "HPACK Huffman coding", name.split(":")[1])


@pytest.mark.parametrize("name", ["_tempDataLen", "_writeDisconnected"])
def test_sendfile_off_serves_files_in_chunks(stopping, monkeypatch, tmp_path, name):
    """Without a name of Twisted's TCP buffer, path send reads the file into
    body chunks (tests/test_pathsend.py serves it with os.sendfile)."""
    import hashlib

    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "file").write_bytes(data)
    monkeypatch.setenv("PATHSEND_DIR", str(tmp_path))
    server = start(["--rename", f"twisted:{name}:{name}_gone_in_a_future_twisted"], app="tests.pathsend_app:app")
    stopping(server)
    said_once(server, "sendfile of response files", name)
    for query in ("f=file", "f=file&chunked=1"):
        status, _headers, body = http_get(server, f"/path?{query}")
        assert status.startswith(b"HTTP/1.1 200") and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    text = server.read_output(0.2)
    assert "Traceback" not in text and "Unhandled" not in text


@pytest.mark.parametrize("name", ["_aborting", "_disconnectSelectable"])
def test_prompt_close_off_closes_twisteds_way(stopping, name):
    """Without a name close_soon uses, a connection that ends after its
    response (Connection: close, an error response) closes through Twisted's
    loseConnection: the whole response, then the end of the connection."""
    server = start(["--rename", f"twisted:{name}:{name}_gone_in_a_future_twisted"], app="tests.apps:hello")
    stopping(server)
    said_once(server, "prompt close of TCP connections", name)
    for _ in range(3):
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            data = recv_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"Hello, world!\r\n0\r\n\r\n"), data
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")  # refused: 400, then closed
            assert recv_until_closed(sock).startswith(b"HTTP/1.1 400")
    text = server.read_output(0.2)
    assert "Traceback" not in text and "Unhandled" not in text


def test_file_sink_check_names_each_missing_field():
    from twisted_asgi._upstream import twisted as upstream

    class Transport:
        pass

    assert "is not a Twisted TCP connection" in (upstream.file_sink_problem(Transport()) or "")
    assert upstream.file_sink(Transport()) is None
    assert upstream.sendfile_problem() is None  # this Twisted has them all


def test_masker_off_serves_websocket(stopping):
    server = start(["--rename", "autobahn:onFrameBegin:onFrameBegin_gone_in_a_future_autobahn"])
    stopping(server)
    ws_round_trips(server)
    # Autobahn is imported, and checked, at the first WebSocket.
    server.wait_for_output(OFF)
    said_once(server, "WebSocket small-frame masker", "onFrameBegin")


# -- in-process: the checks and the public functions themselves ----------------------


def test_seam_check_names_each_missing_field(monkeypatch):
    import asyncio

    from twisted_asgi._upstream.twisted import reactor_seam_problem
    from twisted_asgi.reactor import _reactor_class

    loop = asyncio.new_event_loop()
    try:
        reactor = _reactor_class(False)(loop)
        assert reactor.asgi_seam and reactor_seam_problem(reactor) is None
        assert reactor.asgi_loop is loop
        plain = AsyncioSelectorReactor(loop)
        for name in ("_readers", "_writers", "_continuousPolling", "_asyncioEventloop"):
            with monkeypatch.context() as patch:
                patch.delattr(plain, name)
                assert name in (reactor_seam_problem(plain) or "")
        with monkeypatch.context() as patch:
            patch.setattr(plain, "_writers", [])
            assert "no longer dicts" in (reactor_seam_problem(plain) or "")
        with monkeypatch.context() as patch:
            patch.delattr(AsyncioSelectorReactor, "_unregisterFDInAsyncio")
            assert "_unregisterFDInAsyncio" in (reactor_seam_problem(plain) or "")
    finally:
        loop.close()


def test_event_loop_without_twisteds_private_name():
    from twisted_asgi._upstream.twisted import event_loop

    class Ours:
        asgi_loop = object()

    assert event_loop(Ours()) is Ours.asgi_loop
    assert event_loop(object()) is None


def test_clear_exit_signal_and_reap_process_without_private_names(monkeypatch):
    from twisted.internet import process

    from twisted_asgi._upstream.twisted import clear_exit_signal, reap_process

    class Reactor:
        _exitSignal = 15

    reactor = Reactor()
    clear_exit_signal(reactor)
    assert reactor._exitSignal is None
    clear_exit_signal(object())  # a reactor without it: nothing to forget

    reaped: list[str] = []

    class Old:
        def reapProcess(self) -> None:
            reaped.append("own")

    reap_process(Old())
    monkeypatch.setattr(process, "reapAllProcesses", lambda: reaped.append("all"))
    reap_process(object())  # a Process without reapProcess: the module's public function
    assert reaped == ["own", "all"]


def test_hpack_public_decoding_agrees(monkeypatch):
    """The Huffman fallbacks give what hpack's tables give: RFC 7541's examples
    and every byte, both ways, and the same error for invalid code."""
    import hpack

    from twisted_asgi._upstream import hpack as upstream

    samples = [b"", b"www.example.com", b"no-cache", b"custom-value", bytes(range(256)), b"\xff" * 40]
    coded = [upstream.huffman_encode(s) for s in samples]
    assert all(c is not None for c in coded)
    monkeypatch.setattr(upstream, "_encode", None)
    monkeypatch.setattr(upstream, "_decode", None)
    assert upstream.huffman_encode(b"abc") is None
    for sample, code in zip(samples, coded, strict=True):
        assert upstream.huffman_decode(code) == sample
    with pytest.raises(hpack.HPACKDecodingError):
        upstream.huffman_decode(b"\x00\x00\x00")  # a string of EOS-less zero codes that does not end in 1-padding


def test_hpack_codec_round_trips_on_the_public_path(monkeypatch):
    import hpack

    from twisted_asgi import hpack_codec
    from twisted_asgi._upstream import hpack as upstream

    monkeypatch.setattr(upstream, "_encode", None)
    monkeypatch.setattr(upstream, "_decode", None)
    # New coders: no string of theirs was coded before (their tables are their own).
    fields = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-custom", b"v" * 50)]
    block = hpack_codec.StaticEncoder().encode(fields)
    assert hpack.Decoder().decode(block, raw=True) == fields
    coded = hpack.Encoder().encode(fields + [(b"x-again", b"www.example.com")], huffman=True)
    assert hpack_codec.FieldDecoder().decode(coded) == fields + [(b"x-again", b"www.example.com")]


def test_masker_check_reports_a_missing_hook(monkeypatch):
    from autobahn.websocket.protocol import WebSocketProtocol

    from twisted_asgi import wsmask

    monkeypatch.delattr(WebSocketProtocol, "onFrameBegin")
    assert "onFrameBegin" in (wsmask._autobahn_problem() or "")
    monkeypatch.undo()
    monkeypatch.setattr(WebSocketProtocol, "CONFIG_ATTRS_COMMON", [])
    assert "applyMask" in (wsmask._autobahn_problem() or "")
    monkeypatch.undo()
    assert wsmask._autobahn_problem() is None


# -- WebSocket: Autobahn's public API in place of its adapter hooks ---------------------

#: Each renamed in Autobahn's own source turns the WebSocket protocol hooks off:
#: an adapter hook, an entry point, how a connection fails, the field the
#: negotiated compression is read from (found by the probe: Autobahn would not
#: inflate), the timer factory (found by the probe too).
AUTOBAHN_NAMES = ["_onMessageBegin", "_dataReceived", "_fail_connection", "_perMessageCompress", "_batched_timer"]
#: What the start-up line says where the probe, not a missing name, found it.
PROBED = {"_perMessageCompress": "for a compressed fragmented message"}


def _autobahn_off(name: str, *args: str, app: str = "tests.ws_apps:app") -> Server:
    return start(
        ["--rename", f"autobahn:{name}:{name}_gone_in_a_future_autobahn"],
        "--limit-ws-message",
        "150000",
        "--limit-ws-frame",
        "100000",
        "--limit-ws-fragments",
        "100",
        *args,
        app=app,
    )


def _deflated(data: bytes) -> bytes:
    import zlib

    compressor = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def _raw_close(server: Server, *frames: bytes, extra: bytes = b"") -> int | None:
    client = RawClient(server.host, server.port, "/echo", extra=extra)
    try:
        assert b" 101 " in client.head
        for data in frames:
            client.send(data)
        code, _reason = client.read_close()
        assert client.at_eof()  # the server closes TCP after failing the connection
        return code
    finally:
        client.close()


@pytest.mark.parametrize("name", AUTOBAHN_NAMES)
def test_websocket_hooks_off_serves_websocket(stopping, name):
    """With a private name of Autobahn gone, the public path echoes (whole,
    fragmented, large, compressed), fails a too-big message and a bad frame
    with their codes, and answers the closing handshake."""
    from tests.ws_apps import events, new_id, open_ws

    server = _autobahn_off(name)
    stopping(server)
    ws_round_trips(server)
    server.wait_for_output(OFF)
    line = said_once(server, "WebSocket protocol hooks", PROBED.get(name, name))
    assert "public API" in line
    # The websockets client, with permessage-deflate (its default).
    ident = new_id()
    with open_ws(server, f"/echo?id={ident}") as ws:
        assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        for message in ("hello", b"\x00\x01" * 10, "compressible " * 4000):
            ws.send(message)
            assert ws.recv(timeout=10) == message
        ws.close(4000, "bye")
    assert events(server, ident) == [{"disconnect": 4000, "reason": "bye"}]
    # Limits: a frame, a message, a compression bomb, too many fragments: 1009.
    assert _raw_close(server, client_frame(2, b"f" * 120_000)) == 1009
    assert _raw_close(server, client_frame(2, b"m" * 80_000, fin=False), client_frame(0, b"m" * 80_000)) == 1009
    bomb = client_frame(2, _deflated(b"\x00" * 5_000_000), rsv=4)
    assert _raw_close(server, bomb, extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n") == 1009
    fragments = client_frame(2, b"x", fin=False) + client_frame(0, b"x", fin=False) * 120
    assert _raw_close(server, fragments) == 1009
    # Protocol errors: a reserved opcode, an unmasked frame, RSV bits without an extension: 1002; bad UTF-8: 1007.
    assert _raw_close(server, client_frame(3, b"x")) == 1002
    assert _raw_close(server, client_frame(2, b"x", mask=False)) == 1002
    assert _raw_close(server, client_frame(2, b"x", rsv=4)) == 1002
    assert _raw_close(server, client_frame(1, b"\xc3\x28")) == 1007
    text = server.read_output(0.2)
    assert "Traceback" not in text and "Unhandled" not in text


# -- HTTP/2: h2's connection internals (twisted_asgi/_upstream/h2.py) ------------------

#: Names of h2 the fast connection needs, renamed one at a time in h2's own source.
H2_SEAM = [
    "_data_to_send",
    "_receive_frame",
    "_frame_dispatch_table",
    "_begin_new_stream",
    "_track_content_length",
    "_get_stream_by_id",
    "_closed_streams",
]


def _curl(*args: str) -> bytes:
    return subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "--max-time", "20", *args],
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout


@pytest.mark.parametrize("name", H2_SEAM)
def test_http2_seam_off_serves_http2_with_every_protection(stopping, name, tmp_path):
    """With a name of h2's gone, HTTP/2 runs on h2's public API: curl's GET and
    POST, a big response through small windows (h2load), a content-length
    mismatch that stays a stream error, a client's RST_STREAM, and a graceful
    GOAWAY that lets the open stream finish; one log line says why."""
    import signal

    from hyperframe.frame import PingFrame

    from tests.h2frames import NO_ERROR, PROTOCOL_ERROR, RawClient

    server = start(["--rename", f"h2:{name}:{name}_gone_in_a_future_h2"], app="tests.h2frames:app")
    stopping(server)
    base = f"http://127.0.0.1:{server.port}"
    assert _curl(f"{base}/") == b"ok"
    server.wait_for_output(OFF)
    said_once(server, "HTTP/2 send seam", name)
    body = os.urandom(300_000)
    (tmp_path / "body").write_bytes(body)
    assert _curl("--data-binary", f"@{tmp_path / 'body'}", f"{base}/upload") == b"300000"
    assert len(_curl(f"{base}/download?mib=3")) == 3 * 1024 * 1024
    # Flow control: 2 KiB stream windows, 16 KiB connection window, two at a time.
    out = subprocess.run(
        ["h2load", "-n", "6", "-c", "1", "-m", "2", "-w", "11", "-W", "14", f"{base}/download?mib=1"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "6 succeeded" in out and "6 2xx" in out, out
    client = RawClient(server.host, server.port)
    try:
        # A body short of its content-length: RST_STREAM PROTOCOL_ERROR on
        # its stream only (h2 would end the connection), the next is served.
        client.send(client.f.request(1, "/upload", end_stream=False, content_length="5"))
        client.send(client.f.data(1, b"abc", end_stream=True))
        assert client.rst(1).error_code == PROTOCOL_ERROR
        client.send(client.f.request(3, "/upload", end_stream=False, content_length="2"))
        client.send(client.f.data(3, b"abc", end_stream=True))  # longer
        assert client.rst(3).error_code == PROTOCOL_ERROR
        client.send(client.f.request(5, "/upload", end_stream=False, content_length="3"))
        client.send(client.f.data(5, b"abc", end_stream=True))
        assert client.response(5)[1] == b"3"
        # The client's RST_STREAM: the app hears http.disconnect.
        client.send(client.f.request(7, "/wait-disconnect?id=7", end_stream=False))
        server.wait_for_output("STARTED /wait-disconnect id=7")
        client.send(client.f.rst(7))
        server.wait_for_output("DISCONNECTED id=7")
        # Graceful shutdown: GOAWAY NO_ERROR names the open stream, which finishes.
        # (The PING's answer says the request before it is in.)
        client.send(client.f.request(9, "/slow?ms=1500") + client.f.ping())
        client.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
        server.proc.send_signal(signal.SIGTERM)
        frame = client.goaway()
        assert (frame.error_code, frame.last_stream_id) == (NO_ERROR, 9)
        headers, body, _ = client.response(9)
        assert headers[b":status"] == b"200" and body == b"ok"
        client.wait_closed()
    finally:
        client.close()
    assert server.proc.wait(30) == 0
    text = server.read_output(0.2)
    assert "Traceback" not in text and "Unhandled" not in text


@pytest.mark.parametrize("name", ["_onMessageFrameData", "_connectionLost"])
def test_websocket_hooks_off_serves_websocket_over_http2(stopping, name):
    """The same over HTTP/2 (RFC 8441): the stream's DATA carries Autobahn's
    frames on the public path too."""
    from websockets.exceptions import ConnectionClosed

    from tests.ws_h2_client import open_ws_h2

    server = _autobahn_off(name, app="tests.ws_apps:misbehave")
    stopping(server)
    with open_ws_h2(server, "/echo", compression="deflate") as ws:
        assert ws.response.headers["sec-websocket-extensions"].startswith("permessage-deflate")
        for message in ("héllo", b"\x01" * 70_000, "abc" * 10_000):
            ws.send(message)
            assert ws.recv(timeout=10) == message
        ws.close(4321, "bye")
        assert ws.close_code == 1000  # the server's answer
    server.wait_for_output(OFF)
    said_once(server, "WebSocket protocol hooks", name)
    with open_ws_h2(server, "/echo") as ws:
        ws.send(b"m" * 160_000)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1009
    text = server.read_output(0.2)
    assert "Traceback" not in text and "Unhandled" not in text


def test_http2_seam_off_serves_websocket_over_http2(stopping):
    """RFC 8441 on the public path: extended CONNECT is offered and served."""
    from tests.ws_h2_client import open_ws_h2

    server = start(["--rename", "h2:_data_to_send:_data_to_send_gone_in_a_future_h2"])
    stopping(server)
    with open_ws_h2(server, "/echo") as ws:
        for message in ("small", "x" * 70000):
            ws.send(message)
            assert ws.recv(timeout=10) == message
    server.wait_for_output(OFF)
    said_once(server, "HTTP/2 send seam", "_data_to_send")
    text = server.read_output(0.2)
    assert "Traceback" not in text and "Unhandled" not in text


def test_websocket_hooks_check_names_what_is_missing(monkeypatch):
    from autobahn.websocket.protocol import WebSocketProtocol

    from twisted_asgi._upstream import autobahn as upstream

    assert upstream._missing() == [] and upstream._probe() is None
    monkeypatch.delattr(WebSocketProtocol, "_max_message_size_exceeded")
    assert upstream._missing() == ["_max_message_size_exceeded"]
    monkeypatch.undo()
    # (An adapter hook Autobahn calls by another name is met by the probe: the
    # servers above with _onMessageBegin and _onMessageFrameData renamed.)
    monkeypatch.delattr(WebSocketProtocol, "_sendAutoPing")
    assert "_sendAutoPing" in (upstream._problem() or "")
    monkeypatch.undo()
    # A hook Autobahn no longer calls: the probe sees the message go elsewhere.
    monkeypatch.setattr(WebSocketProtocol, "onFrameData", lambda self, payload: None)
    assert "gave" in (upstream._probe() or "")
    monkeypatch.undo()
    monkeypatch.setenv("TWISTED_ASGI_AUTOBAHN_PUBLIC", "1")
    assert "TWISTED_ASGI_AUTOBAHN_PUBLIC" in (upstream._problem() or "")


def test_extension_parsers_agree():
    """Our parser of Sec-WebSocket-Extensions (the public path's) gives what Autobahn's gives."""
    from autobahn.websocket.protocol import WebSocketServerProtocol

    from twisted_asgi._upstream import autobahn as upstream

    headers = [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        'permessage-deflate; client_max_window_bits=10; server_no_context_takeover, x-other; a="b"',
        "A; B = 1 ; b=2, , ;",
        'permessage-deflate; server_max_window_bits="12"; x="a=b"',
    ]
    for header in headers:
        assert upstream._parse_extensions(header) == WebSocketServerProtocol._parseExtensionsHeader(None, header)


def test_public_path_in_process_agrees_with_the_fast_path(monkeypatch, loop):
    """The in-process shell tests' peer, on the public path: the same events,
    bytes and close codes as the fast path for a mix of frames."""
    from tests.conftest import settle
    from tests.test_websocket_shell import Peer, recording_app
    from twisted_asgi._upstream import autobahn as upstream

    frames = [
        client_frame(2, b"a"),
        client_frame(1, "é".encode()),
        client_frame(1, b"frag", fin=False),
        client_frame(9, b"ping"),
        client_frame(0, b"mented"),
        client_frame(2, b"z" * 5000),
        client_frame(8, b"\x03\xe8bye"),
    ]

    def run() -> tuple[list, bytes]:
        received: list = []
        peer = Peer(recording_app(received), loop, timeout_ws_ping_interval=0)
        for data in frames:
            peer.proto.dataReceived(data)
        settle(loop, peer.clock)
        peer.lose()
        settle(loop, peer.clock)
        return received, peer.transport.value().split(b"\r\n\r\n", 1)[1]

    fast = run()
    monkeypatch.setattr(upstream, "_PROBLEM", ["forced"])
    public = run()
    assert fast == public
    assert fast[0][-1] == {"type": "websocket.disconnect", "code": 1000, "reason": "bye"}


def test_public_path_passes_the_websocket_shell_tests():
    """The in-process WebSocket shell tests (timeouts on a fake clock, pings
    paused and resumed, backpressure both ways, the queue bound, graceful
    shutdown, freeing by reference counting; HTTP/1.1 and HTTP/2) pass with the
    public path forced, as they do on the fast path."""
    env = dict(os.environ, TWISTED_ASGI_AUTOBAHN_PUBLIC="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x"]
    argv += ["tests/test_websocket_shell.py", "tests/test_websocket_h2_shell.py"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]


def test_http2_seam_check_names_what_is_missing(monkeypatch):
    import h2.connection
    import h2.stream

    from twisted_asgi._upstream import fastpaths
    from twisted_asgi._upstream import h2 as upstream

    assert upstream.PROBLEM is None and upstream._problem() is None
    assert "HTTP/2 send seam" not in fastpaths.fast_paths_off(http2=True, websocket=False)
    for owner, name in [(h2.connection.H2Connection, n) for n in upstream.CONNECTION_NAMES] + [
        (h2.stream.H2Stream, n) for n in upstream.STREAM_NAMES
    ]:
        with monkeypatch.context() as patch:
            patch.delattr(owner, name)
            assert name in (upstream._problem() or ""), name
    with monkeypatch.context() as patch:
        # A release whose send path frames differently than the seam does.
        patch.setattr(h2.connection.H2Connection, "send_data", lambda self, *a, **k: None)
        assert "differ" in (upstream._problem() or "")
    monkeypatch.setattr(upstream, "PROBLEM", "h2 9.9: gone")
    assert fastpaths.fast_paths_off(http2=True, websocket=False)["HTTP/2 send seam"] == "h2 9.9: gone"
    assert isinstance(upstream.new_connection(*_connection_args()), upstream.PublicConnection)
    monkeypatch.setattr(upstream, "PROBLEM", None)
    assert isinstance(upstream.new_connection(*_connection_args()), upstream.FastConnection)


def _connection_args() -> tuple[Any, ...]:
    from h2.settings import SettingCodes

    from twisted_asgi.hpack_codec import FieldDecoder, StaticEncoder

    return {SettingCodes.MAX_FRAME_SIZE: 16384}, 65536, StaticEncoder(), FieldDecoder()


def test_http2_seam_off_serves_an_h2c_upgrade(stopping):
    """``Upgrade: h2c`` on the public path: the request is stream 1, the next
    request on the connection a stream of its own."""
    server = start(
        ["--rename", "h2:_get_stream_by_id:_get_stream_by_id_gone_in_a_future_h2"],
        "--h2c-upgrade",
        app="tests.h2frames:app",
    )
    stopping(server)
    base = f"http://127.0.0.1:{server.port}"
    out = subprocess.run(
        ["curl", "-sS", "--http2", "--max-time", "20", "-w", " %{http_version}\n", f"{base}/", f"{base}/slow?ms=1"],
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    assert out == b"ok 2\nok 2\n", out
    server.wait_for_output(OFF)
    said_once(server, "HTTP/2 send seam", "_get_stream_by_id")
    text = server.read_output(0.2)
    assert "Traceback" not in text and "Unhandled" not in text


# -- the TCP fast paths: direct writes, sendfile, prompt close (one check per class) ------


def start_listeners(strip: list[str], *args: str, app: str, env: dict[str, str], listeners: int) -> Server:
    """Like :func:`start`, with ``-e`` endpoints of its own in ``args``: waits
    for ``listeners`` "Listening on" lines (their ports in ``addresses``)."""
    import time

    from tests.serving import _LISTEN

    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    full_env.update(env, PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "tests.upstream_strip", *strip, "--", *args, app]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env, cwd=ROOT
    )
    server = Server(proc, None, "127.0.0.1")
    deadline = time.monotonic() + 60
    while True:
        found = _LISTEN.findall(server.read_output(0.05))
        if len(found) >= listeners:
            server.addresses = [(desc, host, int(port)) for desc, host, port in found]
            server.port = server.addresses[0][2]
            return server
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop() if proc.poll() is None else None
            raise AssertionError(f"server did not start; output:\n{''.join(server.output)}")


def pipelined(sock: Any, targets: list[str]) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Send GETs for ``targets`` at once on one keep-alive connection; read the answers in order."""
    sock.sendall(b"".join(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for target in targets))
    return [recv_response(sock, timeout=30) for _ in targets]


@pytest.mark.parametrize("name", ["_tempDataLen", "_writeDisconnected", "dataBuffer"])
def test_tcp_fast_paths_off_serve_keep_alive_pipelining_tls_and_files(stopping, tmp_path, name):
    """With a name of Twisted's write buffer gone, every fast path of a TCP
    connection that reads it (direct writes, sendfile, prompt close) is off,
    named in one start-up line; HTTP/1.1 keep-alive with pipelining, a large
    streamed body, files by path send and zero-copy send, over plain TCP and
    TLS, come out whole and in order through Twisted's public ``write``."""
    import hashlib
    import ssl

    from tests.deploy import make_certs

    certs = make_certs(tmp_path)
    big = os.urandom(3 * 1024 * 1024 + 4099)  # more than the socket buffers take at once
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "small").write_bytes(b"hello, file\n")
    tls = f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    server = start_listeners(
        ["--rename", f"twisted:{name}:{name}_gone_in_a_future_twisted"],
        "-e",
        "tcp:port=0:interface=127.0.0.1",
        "-e",
        tls,
        app="tests.pathsend_app:app",
        env={"PATHSEND_DIR": str(tmp_path)},
        listeners=2,
    )
    stopping(server)
    said_once(server, "direct writes to TCP sockets", "sendfile of response files", "prompt close of TCP", name)
    digest = hashlib.sha256(big).digest()
    targets = [
        "/path?f=small",
        "/path?f=big&chunked=1",  # streamed: 64 KiB body chunks, chunked framing
        "/zero?f=big&prefix=head&suffix=tail",
        "/path?f=big",
        "/path?f=small",
    ]
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    for _desc, host, port in server.addresses:
        sock = socket.create_connection((host, port), timeout=10)
        if port != server.port:
            sock = context.wrap_socket(sock, server_hostname="localhost")
        with sock:
            for _ in range(2):  # keep-alive: the same connection serves the pipeline again
                small, chunked, framed, whole, again = pipelined(sock, targets)
                assert small[0].startswith(b"HTTP/1.1 200") and small[2] == b"hello, file\n"
                assert chunked[1].get(b"transfer-encoding") == b"chunked"
                assert hashlib.sha256(chunked[2]).digest() == digest
                assert framed[2][:4] == b"head" and framed[2][-4:] == b"tail"
                assert hashlib.sha256(framed[2][4:-4]).digest() == digest
                assert whole[1][b"content-length"] == str(len(big)).encode()
                assert hashlib.sha256(whole[2]).digest() == digest
                assert again[2] == b"hello, file\n"
            sock.sendall(b"GET /path?f=small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            closing = recv_until_closed(sock)
            assert closing.startswith(b"HTTP/1.1 200") and closing.endswith(b"hello, file\n"), closing
    text = server.read_output(0.2)
    assert "Traceback" not in text and "Unhandled" not in text
    said_once(server)  # still one line: nothing named again at any connection


def test_tcp_paths_checked_once_per_class_for_every_fast_path(monkeypatch):
    """The one check (tcp_paths): a TCP connection class without a name has
    every fast path that reads it off, another class all on, the reason kept and
    logged once (the start-up line, from Twisted's classes, did not see it);
    the writers, output_pending, close_soon and file_sink all follow it."""
    import socket as socket_module

    from twisted.internet import tcp
    from twisted.internet.protocol import Protocol
    from twisted.internet.testing import MemoryReactor
    from twisted.logger import globalLogPublisher

    from twisted_asgi._upstream import twisted as upstream

    class Renamed(tcp.Connection):
        """A release where ``_tempDataLen`` is gone from the instance."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            del self._tempDataLen

    class Whole(tcp.Connection):
        pass

    class Reactor(MemoryReactor):
        def _disconnectSelectable(self, selectable: Any, why: Any, read: bool) -> None:
            pass

    lines: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if "Fast path" in event.get("log_format", ""):
            from twisted.logger import formatEvent

            lines.append(formatEvent(event))

    import twisted_asgi._upstream

    monkeypatch.setattr(twisted_asgi._upstream, "_reported", set())
    globalLogPublisher.addObserver(observe)
    pairs = []
    try:
        for cls in (Renamed, Whole, Renamed):
            ours, peer = socket_module.socketpair()
            pairs.append((ours, peer))
            ours.setblocking(False)
            transport = cls(ours, Protocol(), reactor=Reactor())
            transport.connected = True
            paths = upstream.tcp_paths(transport)
            assert upstream.tcp_paths(transport) is paths  # kept for the class
            if cls is Whole:
                assert paths.direct_write and paths.sendfile and paths.prompt_close and not paths.off
                assert upstream.direct_writer(transport) != transport.write
                assert upstream.direct_sequence_writer(transport) is not None
                assert upstream.file_sink(transport) is not None
                assert not upstream.output_pending(transport)
                continue
            assert not paths.direct_write and not paths.sendfile and not paths.prompt_close
            assert all("_tempDataLen" in why for why in paths.off.values()), paths.off
            assert upstream.direct_writer(transport) == transport.write
            assert upstream.direct_sequence_writer(transport) is None
            assert upstream.file_sink(transport) is None
            assert "_tempDataLen" in (upstream.file_sink_problem(transport) or "")
            assert upstream.output_pending(transport)  # cannot tell: the close is bounded by a timer
            assert not upstream.close_soon(transport, lambda *a: pytest.fail("close_soon went on"))
    finally:
        globalLogPublisher.removeObserver(observe)
        for ours, peer in pairs:
            ours.close()
            peer.close()
    assert len(lines) == 1, lines
    for path in ("direct writes to TCP sockets", "sendfile of response files", "prompt close of TCP connections"):
        assert path in lines[0], lines[0]
    # What Twisted's own classes say at start-up: every path on (this Twisted has every name).
    assert upstream.tcp_paths_off(Reactor()) == {}
    assert "_disconnectSelectable" in upstream.tcp_paths_off(MemoryReactor()).get(upstream.PROMPT_CLOSE, "")


@pytest.mark.parametrize("name", ["_buildAddr", "numberAccepts"])
def test_lean_accept_off_accepts_twisteds_way(stopping, name):
    """Without a name the lean accept loop uses, a listening port accepts
    through Twisted's own ``Port.doRead``: connections are served (keep-alive
    and Connection: close), with their addresses, and one line says why."""
    server = start(["--rename", f"twisted:{name}:{name}_gone_in_a_future_twisted"], app="tests.apps:scope_echo")
    stopping(server)
    for _ in range(3):
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            status, _headers, body = recv_response(sock)
            mine = sock.getsockname()
            assert recv_until_closed(sock) == b""
        assert status.startswith(b"HTTP/1.1 200"), status
        scope = json.loads(body)
        assert scope["client"] == [mine[0], mine[1]]
        assert scope["server"] == [server.host, server.port]
    server.read_output(0.2)
    said_once(server, "lean accept loop of TCP listeners", name)
    text = server.read_output(0.2)
    assert "Traceback" not in text and "Unhandled" not in text
