"""HTTP/2 end to end over loopback: TLS with ALPN ``h2`` (certificates made per
run with trustme), cleartext h2c by prior knowledge and by ``Upgrade: h2c``;
clients are a raw frame client (``tests.h2frames``), curl and h2load."""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import ssl
import subprocess
import time

import pytest
from hyperframe.frame import DataFrame, HeadersFrame

from tests.deploy import make_certs, serving
from tests.h2frames import CANCEL, NO_ERROR, PREFACE, RawClient, parse_frames
from tests.serving import recv_response

APP = "tests.h2frames:app"


@pytest.fixture
def certs(tmp_path):
    return make_certs(tmp_path)


def ssl_endpoint(certs) -> str:
    return f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"


def tls_context(certs, protocols=("h2", "http/1.1")) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    context.set_alpn_protocols(list(protocols))
    return context


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (Debian package curl / nghttp2-client)"
    return path


def scope_of(client: RawClient, stream_id: int, path: str = "/scope", **extra: str) -> dict:
    client.send(client.f.request(stream_id, path, **extra))
    headers, body, _ = client.response(stream_id)
    assert headers[b":status"] == b"200", (headers, body)
    return json.loads(body)


def test_tls_alpn_h2_scope(certs):
    """Over TLS the server offers ALPN h2; the scope says http_version "2",
    scheme https, :authority as host, path/raw_path/query_string, the other
    headers, and advertises http.response.trailers."""
    with serving("tests.apps:scope_echo", endpoint=ssl_endpoint(certs)) as server:
        client = RawClient(server.host, server.port, tls=tls_context(certs))
        try:
            assert client.sock.selected_alpn_protocol() == "h2"
            scope = scope_of(client, 1, "/a%2Fb/c", authority="example.org:443", x_test="yes")
        finally:
            client.close()
    assert scope["http_version"] == "2" and scope["scheme"] == "https"
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/a/b/c", "/a%2Fb/c", "")
    assert scope["headers"] == [["host", "example.org:443"], ["x-test", "yes"]]
    assert "http.response.trailers" in scope["extensions"]
    assert scope["method"] == "GET" and scope["server"][1] == server.port


def test_h2c_prior_knowledge_scope_and_query():
    """Cleartext h2c by prior knowledge: scheme http, the query string split off."""
    with serving("tests.apps:scope_echo") as server:
        client = RawClient(server.host, server.port)
        try:
            scope = scope_of(client, 1, "/p?q=1&r=%20")
            scope3 = scope_of(client, 3, "/second")
        finally:
            client.close()
    assert scope["scheme"] == "http" and scope["http_version"] == "2"
    assert (scope["path"], scope["query_string"]) == ("/p", "q=1&r=%20")
    assert scope3["path"] == "/second"


def _upgrade_request(body: bytes = b"") -> bytes:
    settings = base64.urlsafe_b64encode(b"\x00\x03\x00\x00\x00\x64").rstrip(b"=")
    head = (
        b"GET /scope?up=1 HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n"
    )
    if body:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


def test_h2c_upgrade_without_body():
    """With --h2c-upgrade, ``Upgrade: h2c`` on a bodiless request: 101, then the
    request is answered as stream 1 over HTTP/2 (RFC 7540 §3.2), its scope
    http_version "2"."""
    with serving("tests.apps:scope_echo", "--h2c-upgrade") as server:
        sock = server.connect()
        try:
            sock.sendall(_upgrade_request())
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                buffer += sock.recv(65536)
            head, _, rest = buffer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ") and b"upgrade: h2c" in head.lower()
            sock.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            pending = bytearray(rest)
            frames: list = []
            sock.settimeout(10)
            while not any(isinstance(f, DataFrame) and "END_STREAM" in f.flags for f in frames):
                pending += sock.recv(65536)
                frames += parse_frames(pending)
        finally:
            sock.close()
    body = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
    scope = json.loads(body)
    assert scope["http_version"] == "2" and scope["query_string"] == "up=1"
    assert [h for h in scope["headers"] if h[0] in ("upgrade", "http2-settings", "connection")] == []


def test_h2c_upgrade_with_body_is_served_as_http11():
    """A request with a body that offers h2c is answered over HTTP/1.1 (the
    upgrade, even with --h2c-upgrade, is only taken for bodiless requests)."""
    with serving("tests.apps:scope_echo", "--h2c-upgrade") as server:
        sock = server.connect()
        try:
            sock.sendall(_upgrade_request(b"hello"))
            status, _headers, body = recv_response(sock)
        finally:
            sock.close()
    assert status.startswith(b"HTTP/1.1 200")
    scope = json.loads(body)
    assert scope["http_version"] == "1.1" and scope["body_length"] == 5


def test_concurrent_streams_each_run_their_own_task():
    """Five streams in progress at once each get an app task: the app answers
    only when all five are running together, and the task ids differ."""
    with serving(APP) as server:
        client = RawClient(server.host, server.port)
        try:
            for stream_id in range(1, 11, 2):
                client.send(client.f.request(stream_id, "/barrier?n=5"))
            bodies = [client.response(stream_id)[1] for stream_id in range(1, 11, 2)]
        finally:
            client.close()
    assert len(set(bodies)) == 5


def test_request_body_streams_both_ways():
    """Request DATA reaches the app as it arrives, and the app's body goes
    out while the request is still open: each chunk is echoed before the
    next is sent."""
    with serving(APP) as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(client.f.request(1, "/echo", end_stream=False, method="POST"))
            for i in range(3):
                chunk = b"chunk-%d" % i
                client.send(client.f.data(1, chunk))
                client.wait_for(lambda f, c=chunk: isinstance(f, DataFrame) and f.stream_id == 1 and c in f.data)
            client.send(client.f.data(1, b"", end_stream=True))
            _headers, body, _ = client.response(1)
        finally:
            client.close()
    assert body == b"chunk-0chunk-1chunk-2"


def test_expect_100_continue():
    """``expect: 100-continue``: an interim 100 HEADERS frame comes when the
    app first waits for the body (RFC 9110 §10.1.1), then the final response."""
    with serving(APP) as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(client.f.request(1, "/upload", end_stream=False, method="POST", expect="100-continue"))
            interim = client.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1)
            assert interim.fields == [(b":status", b"100")] and "END_STREAM" not in interim.flags
            client.send(client.f.data(1, b"hello", end_stream=True))
            headers, body, _ = client.response(1)
        finally:
            client.close()
    assert headers[b":status"] == b"200" and body == b"5"


def test_client_reset_gives_http_disconnect():
    """RST_STREAM from the client gives the stream's app ``http.disconnect``."""
    with serving(APP) as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(client.f.request(1, "/wait-disconnect?id=7", end_stream=False))
            server.wait_for_output("STARTED /wait-disconnect id=7")
            client.send(client.f.rst(1, CANCEL))
            server.wait_for_output("DISCONNECTED id=7")
            # The connection is still good.
            client.send(client.f.request(3, "/"))
            assert client.response(3)[1] == b"ok"
        finally:
            client.close()


def test_response_trailers(certs):
    """An app that asks for trailers sends them; they arrive as a final
    HEADERS frame with END_STREAM after the DATA."""
    with serving(APP, endpoint=ssl_endpoint(certs)) as server:
        client = RawClient(server.host, server.port, tls=tls_context(certs))
        try:
            client.send(client.f.request(1, "/trailers"))
            headers, body, trailers = client.response(1)
        finally:
            client.close()
    assert headers[b":status"] == b"200" and body == b"payload"
    assert trailers == [(b"grpc-status", b"0")]
    last = [f for f in client.frames if f.stream_id == 1][-1]
    assert isinstance(last, HeadersFrame) and "END_STREAM" in last.flags


def test_curl_http2_over_tls_and_cleartext(certs):
    """curl speaks HTTP/2 to us by ALPN, by prior knowledge and (with
    --h2c-upgrade) by h2c upgrade."""
    curl = tool("curl")
    with serving(APP, endpoint=ssl_endpoint(certs)) as tls_server, serving(APP, "--h2c-upgrade") as plain:
        base = f"http://127.0.0.1:{plain.port}"
        runs = {
            "alpn": [
                curl,
                "-sS",
                "--http2",
                "--cacert",
                str(certs["ca"]),
                f"https://localhost:{tls_server.port}/trailers",
            ],
            "prior": [curl, "-sS", "--http2-prior-knowledge", f"{base}/upload", "--data-binary", "x" * 100000],
            "upgrade": [curl, "-sS", "--http2", f"{base}/"],
        }
        results = {}
        for name, argv in runs.items():
            argv[2:2] = ["-o", "-", "-w", "\\n%{http_version} %{http_code}"]
            proc = subprocess.run(argv, capture_output=True, timeout=30)
            results[name] = proc.stdout.decode()
            assert proc.returncode == 0, (name, proc.stderr)
    assert results["alpn"] == "payload\n2 200"
    assert results["prior"] == "100000\n2 200"
    assert results["upgrade"] == "ok\n2 200"


@pytest.mark.parametrize("tls", [False, True])
def test_h2load_all_requests_succeed(certs, tls):
    """h2load, 2000 requests on 10 connections, 10 streams each: every one
    succeeds (h2c prior knowledge, and TLS with ALPN h2)."""
    h2load = tool("h2load")
    endpoint = ssl_endpoint(certs) if tls else "tcp:port=0:interface=127.0.0.1"
    with serving(APP, endpoint=endpoint) as server:
        scheme = "https" if tls else "http"
        proc = subprocess.run(
            [h2load, "-n", "2000", "-c", "10", "-m", "10", f"{scheme}://127.0.0.1:{server.port}/"],
            capture_output=True,
            timeout=120,
        )
    out = proc.stdout.decode()
    assert proc.returncode == 0, out
    assert re.search(r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored", out), out
    assert "status codes: 2000 2xx" in out and (tls is False or "Application protocol: h2" in out), out


def test_no_http2_offers_only_http11(certs):
    """With --no-http2, ALPN picks http/1.1 and a cleartext preface is not
    taken for HTTP/2 (answered 400 by the HTTP/1.1 parser, then closed)."""
    with serving(APP, "--no-http2", endpoint=ssl_endpoint(certs)) as tls_server, serving(APP, "--no-http2") as plain:
        sock = tls_context(certs).wrap_socket(tls_server.connect(), server_hostname="localhost")
        try:
            assert sock.selected_alpn_protocol() == "http/1.1"
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body = recv_response(sock)
            assert status.startswith(b"HTTP/1.1 200") and body == b"ok"
        finally:
            sock.close()
        sock = plain.connect()
        try:
            sock.sendall(PREFACE)
            sock.settimeout(10)
            reply = sock.recv(65536)
        finally:
            sock.close()
    assert reply.startswith(b"HTTP/1.1 4")


def test_cleartext_ways_can_be_switched_off():
    """By default (and with --no-h2c-upgrade, kept for old command lines) an
    ``Upgrade: h2c`` request is served as HTTP/1.1; --no-h2c-prior-knowledge
    answers the preface as a bad HTTP/1.1 request."""
    with serving("tests.apps:scope_echo", "--no-h2c-upgrade") as server:
        sock = server.connect()
        try:
            sock.sendall(_upgrade_request())
            status, _, body = recv_response(sock)
        finally:
            sock.close()
        assert status.startswith(b"HTTP/1.1 200") and json.loads(body)["http_version"] == "1.1"
        client = RawClient(server.host, server.port)  # prior knowledge still works
        try:
            client.send(client.f.request(1, "/"))
            assert client.response(1)[0][b":status"] == b"200"
        finally:
            client.close()
    with serving(APP, "--no-h2c-prior-knowledge") as server:
        sock = server.connect()
        try:
            sock.sendall(PREFACE)
            sock.settimeout(10)
            assert sock.recv(65536).startswith(b"HTTP/1.1 4")
        finally:
            sock.close()


def test_h2c_preface_on_a_tls_port_is_not_http2(certs):
    """Cleartext HTTP/2 bytes sent to a TLS port are a failed handshake, not
    a connection: the server closes it and goes on serving."""
    with serving(APP, endpoint=ssl_endpoint(certs)) as server:
        sock = server.connect()
        try:
            sock.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            sock.settimeout(10)
            data = b""
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except ConnectionResetError:
                pass
            # At most a TLS alert: no SETTINGS, no GOAWAY, nothing HTTP.
            assert len(data) < 64 and b"HTTP" not in data, data
        finally:
            sock.close()
        client = RawClient(server.host, server.port, tls=tls_context(certs))
        try:
            client.send(client.f.request(1, "/"))
            assert client.response(1)[1] == b"ok"
        finally:
            client.close()


def test_access_log_says_http_2_0():
    """The access log line of an HTTP/2 request says HTTP/2.0."""
    with serving(APP, "--access-log", "-") as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(client.f.request(1, "/logged?x=1"))
            client.response(1)
        finally:
            client.close()
        output = server.wait_for_output('"GET /logged?x=1 HTTP/2.0" 200 2')
    assert "HTTP/2.0" in output


def test_graceful_shutdown_lets_streams_finish():
    """SIGTERM: GOAWAY NO_ERROR names the open stream, which still completes
    within the drain timeout; then the server exits 0."""
    with serving(APP) as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(client.f.request(1, "/slow?ms=1500"))
            # Wait until the request is certainly in (the server ACKed our SETTINGS).
            client.wait_for(lambda f: f.stream_id == 0 and "ACK" in f.flags)
            server.proc.send_signal(signal.SIGTERM)
            frame = client.goaway()
            assert (frame.error_code, frame.last_stream_id) == (NO_ERROR, 1)
            headers, body, _ = client.response(1)
            assert headers[b":status"] == b"200" and body == b"ok"
            client.wait_closed()
        finally:
            client.close()
        assert server.proc.wait(30) == 0


def test_drain_timeout_cuts_streams_that_do_not_finish():
    """SIGTERM with a stream whose app never answers: GOAWAY at once, then
    after --graceful-timeout the connection is dropped, the app cancelled,
    and the server exits 0."""
    with serving(APP, "--graceful-timeout", "1", "--timeout-app-close", "30") as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(client.f.request(1, "/hang?id=1", end_stream=False))
            server.wait_for_output("STARTED /hang id=1")
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert client.goaway().error_code == NO_ERROR
            client.wait_closed(timeout=10)
            assert time.monotonic() - started < 8
        finally:
            client.close()
        server.wait_for_output("CANCELLED id=1")
        assert server.proc.wait(30) == 0


def test_idle_connection_gets_goaway_and_close():
    """After the keep-alive timeout with no stream open, the server sends
    GOAWAY and closes."""
    with serving(APP, "--timeout-keep-alive", "0.5") as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(client.f.request(1, "/"))
            client.response(1)
            frame = client.goaway(timeout=5)
            assert frame.error_code == NO_ERROR
            client.wait_closed()
        finally:
            client.close()


def test_tls_goaway_then_prompt_close(certs):
    """Over TLS, a protocol error gets GOAWAY and the connection closes
    promptly, without waiting for the client's close_notify."""
    with serving(APP, endpoint=ssl_endpoint(certs)) as server:
        client = RawClient(server.host, server.port, tls=tls_context(certs))
        try:
            client.send(client.f.data(1, b"x"))  # DATA on an idle stream: connection error
            frame = client.goaway()
            assert frame.error_code != NO_ERROR
            client.wait_closed(timeout=3)
        finally:
            client.close()


def test_plain_http11_still_works_next_to_h2c():
    """Prior-knowledge sniffing leaves ordinary HTTP/1.1 requests alone, even
    ones that start with "P" like the preface."""
    with serving(APP) as server:
        sock = server.connect()
        try:
            sock.sendall(b"P")
            sock.sendall(b"OST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            status, _, body = recv_response(sock)
        finally:
            sock.close()
    assert status.startswith(b"HTTP/1.1 200") and body == b"3"


def test_ping_after_the_clients_goaway_is_not_blamed_on_it():
    """A client's GOAWAY with a PING behind it in one write: the server reads no
    further, sends no GOAWAY PROTOCOL_ERROR, closes, and logs no protocol error.

    Source: issue 16, item 13 (operator test: "Invalid input
    ConnectionInputs.RECV_PING in state ConnectionState.CLOSED")."""
    from hyperframe.frame import GoAwayFrame

    with serving(APP) as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(client.f.request(1, "/"))
            assert client.response(1)[1] == b"ok"
            client.send(client.f.goaway(1) + client.f.ping())
            client.wait_closed(timeout=5)
            assert not [f for f in client.frames if isinstance(f, GoAwayFrame) and f.error_code != NO_ERROR]
        finally:
            client.close()
        output = server.read_output(0.3)
    assert "protocol error" not in output.lower() and "RECV_" not in output and "Invalid input" not in output, output


def test_protocol_error_log_says_what_the_client_did():
    """A connection error is logged in RFC 9113's words (the frame the client
    sent, the error code's name), not h2's state machine or a bare number.

    Source: issue 16, item 13 (log lines like 'protocol error: 1 (error 1)' and
    'RECV_CONTINUATION in state 4')."""
    with serving(APP) as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(client.f.continuation(1, b"\x82", end_headers=True))  # CONTINUATION, no HEADERS before
            frame = client.goaway()
            assert frame.error_code != NO_ERROR
            client.wait_closed(timeout=5)
        finally:
            client.close()
        output = server.wait_for_output("HTTP/2 connection from")
    line = next(line for line in output.splitlines() if "HTTP/2 connection from" in line)
    assert "the client sent a frame on stream 1, which it never opened" in line, line
    assert line.rstrip().endswith("(PROTOCOL_ERROR)"), line
    for internal in ("RECV_", "Inputs", "in state", "(error "):
        assert internal not in line, line


def test_http2_preface_on_an_http11_connection_is_named():
    """The HTTP/2 preface sent where HTTP/2 is off is a 400 whose log line names
    the preface, not llhttp's 'Pause on PRI/Upgrade'.

    Source: issue 16, item 13."""
    with serving(APP, "--no-h2c-prior-knowledge") as server:
        sock = server.connect()
        try:
            sock.sendall(PREFACE)
            status, _, _ = recv_response(sock)
        finally:
            sock.close()
        output = server.wait_for_output("Bad request")
    assert status.startswith(b"HTTP/1.1 400")
    assert "HTTP/2 connection preface on a connection that speaks HTTP/1.1" in output, output
    assert "Pause on" not in output


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", "the client sent a frame header RFC 9113 forbids"),
        (b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00", "whose payload does not fit its type"),
        (b"\x00\x00\x03\x08\x00\x00\x00\x00\x00\x00\x00\x01", "the client sent a frame too short for its type"),
    ],
    ids=["data-on-stream-0", "window-update-of-0", "short-window-update"],
)
def test_frame_errors_are_logged_in_rfc_words(frame, words):
    """Frames the frame layer refuses are logged as what the client sent, not as
    the libraries' wording ('Received frame with non-compliant data').

    Source: issue 16, item 13 (fresh-clone check)."""
    with serving(APP) as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(frame)
            assert client.goaway().error_code != NO_ERROR
        finally:
            client.close()
        output = server.wait_for_output("HTTP/2 connection from")
    line = next(line for line in output.splitlines() if "HTTP/2 connection from" in line)
    assert words in line and "Received frame" not in line, line
