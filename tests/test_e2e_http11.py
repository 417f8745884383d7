"""End-to-end HTTP/1.1 tests: a real server process on loopback, raw sockets and curl."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess

import pytest

from tests.serving import recv_response, recv_until_closed, start_server


@pytest.fixture(scope="module")
def scope_server():
    server = start_server("tests.apps:scope_echo", "--root-path", "/mnt")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def echo_server():
    server = start_server("tests.apps:echo")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def misbehave_server():
    server = start_server("tests.apps:misbehave", "--timeout-app-close", "1")
    yield server
    server.stop()


def request(server, raw: bytes):
    """Send ``raw`` on a new connection and read one response."""
    with server.connect() as sock:
        sock.sendall(raw)
        return recv_response(sock)


def test_scope_is_exactly_per_spec(scope_server):
    """The http scope has every key of ASGI www 2.5 with the right values."""
    status, _headers, body = request(
        scope_server,
        b"GET /caf%C3%A9/a%2Fb?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nX-Mixed: One\r\nx-mixed: two\r\n\r\n",
    )
    assert status == b"HTTP/1.1 200 OK"
    scope = json.loads(body)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["root_path"] == "/mnt"
    assert scope["path"] == "/mnt/café/a/b"
    assert scope["raw_path"] == "/caf%C3%A9/a%2Fb"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["headers"] == [["host", "example.com"], ["x-mixed", "One"], ["x-mixed", "two"]]
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert scope["server"] == ["127.0.0.1", scope_server.port]
    assert scope["state"] == {"greeting": "hello"}
    assert "http.response.trailers" in scope["extensions"]


def test_http10_request(scope_server):
    """HTTP/1.0 without Host is served, and the connection closes after it."""
    with scope_server.connect() as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close" in data.lower()
    assert b'"http_version": "1.0"' in data


def test_keep_alive_and_pipelining_in_order(scope_server):
    """Three pipelined requests on one connection get three responses, in order."""
    with scope_server.connect() as sock:
        sock.sendall(
            b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /three HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        paths = []
        for _ in range(3):
            status, _headers, body = recv_response(sock)
            assert status == b"HTTP/1.1 200 OK"
            paths.append(json.loads(body)["path"])
        # The connection stays open for a fourth request.
        sock.sendall(b"GET /four HTTP/1.1\r\nHost: a\r\n\r\n")
        paths.append(json.loads(recv_response(sock)[2])["path"])
    assert paths == ["/mnt/one", "/mnt/two", "/mnt/three", "/mnt/four"]


def test_chunked_request_and_response(echo_server):
    """A chunked request body is de-chunked for the app; the echo goes back chunked."""
    with echo_server.connect() as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: dropped\r\n\r\n"
        )
        status, headers, body = recv_response(sock)
    assert status == b"HTTP/1.1 200 OK"
    assert headers[b"transfer-encoding"] == b"chunked"
    assert body == b"hello world"


def test_expect_100_continue(echo_server):
    """100 Continue is sent when the app first calls receive(), then the body flows."""
    with echo_server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        sock.settimeout(10)
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"ping")
        status, _headers, body = recv_response(sock)
    assert status == b"HTTP/1.1 200 OK" and body == b"ping"


def test_head_has_no_body(scope_server):
    """HEAD gets the headers, including the app's Content-Length, but no body bytes."""
    with scope_server.connect() as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.settimeout(10)
        data = b""
        while data.count(b"\r\n\r\n") < 2:
            data += sock.recv(65536)
        head1, _, rest = data.partition(b"\r\n\r\n")
        assert b"content-length: " in head1
        # The very next bytes are the second response: HEAD carried no body.
        assert rest.startswith(b"HTTP/1.1 200 OK")


def test_date_and_server_headers(scope_server):
    """Every response carries Date and the configured Server header."""
    _status, headers, _body = request(scope_server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert headers[b"server"] == b"twisted-asgi"
    assert headers[b"date"].endswith(b" GMT")


def test_no_server_name_and_custom_name():
    """--no-server-name drops the Server header; --server-name sets it."""
    server = start_server("tests.apps:hello", "--no-server-name")
    try:
        _status, headers, _ = request(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert b"server" not in headers
    finally:
        server.stop()
    server = start_server("tests.apps:hello", "--server-name", "edge")
    try:
        _status, headers, _ = request(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert headers[b"server"] == b"edge"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x85b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: a\n\n", 400),
        (b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417),
    ],
)
def test_malformed_requests_get_4xx_and_close(misbehave_server, raw, status):
    """Request-smuggling shapes are refused with the right status; the app never runs."""
    with misbehave_server.connect() as sock:
        sock.sendall(raw)
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 %d " % status), data
    assert b"connection: close" in data
    assert b"fine" not in data


def test_head_too_large_431(misbehave_server):
    """A head over the limit gets 431, even when it never ends."""
    with misbehave_server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70000)
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 431 ")


def test_body_over_limit_413():
    """A body whose Content-Length exceeds --limit-request-body gets 413 before the app runs."""
    server = start_server("tests.apps:echo", "--limit-request-body", "1000")
    try:
        with server.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n")
            data = recv_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 413 ")
        # A chunked body that grows past the limit is cut off too.
        with server.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            sock.sendall((b"200\r\n" + b"x" * 512 + b"\r\n") * 3)
            data = recv_until_closed(sock)
        assert b"hello" not in data
        assert data == b"" or data.startswith(b"HTTP/1.1 200 ") or data.startswith(b"HTTP/1.1 413 ")
        assert b"0\r\n\r\n" not in data  # the streamed echo never completed
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("path", "expected_status", "log_text"),
    [
        ("/raise-before", 500, "boom before start"),
        (
            "/return-nothing",
            500,
            "ASGI callable returned without starting response. (GET '/return-nothing' from 127.0.0.1:",
        ),
        ("/body-first", 500, "Expected ASGI message 'http.response.start', but got 'http.response.body'."),
        ("/bad-header", 500, "Invalid HTTP header value"),
        ("/bad-header-name", 500, "Invalid HTTP header name"),
        ("/str-header", 500, "header names and values must be bytes"),
        ("/double-start", 500, "Expected ASGI message 'http.response.body', but got 'http.response.start'."),
    ],
)
def test_app_mistakes_give_500_and_one_log(misbehave_server, path, expected_status, log_text):
    """An app error before the response starts is a 500, logged once with the exact message."""
    marker = "[twisted_asgi.app#"  # one per log event of the app runner
    before = misbehave_server.read_output(0.1)
    with misbehave_server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 %d " % expected_status), data
    assert b"set-cookie" not in data.lower()
    misbehave_server.wait_for_output(log_text)
    new_output = misbehave_server.read_output(0.3)[len(before) :]
    assert new_output.count(marker) == 1, new_output
    assert log_text in new_output


@pytest.mark.parametrize(
    ("path", "log_text"),
    [
        ("/raise-after", "boom after start"),
        ("/return-early", "ASGI callable returned without completing response. (GET '/return-early' from 127.0.0.1:"),
        ("/long-body", "Response content longer than Content-Length"),
        ("/short-body", "Response content shorter than Content-Length"),
    ],
)
def test_app_mistakes_after_start_close_connection(misbehave_server, path, log_text):
    """After the response has started, an app error closes the connection mid-body."""
    with misbehave_server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        data = recv_until_closed(sock)
    if path in ("/raise-after", "/return-early"):
        assert data.startswith(b"HTTP/1.1 200 OK")
        assert not data.endswith(b"0\r\n\r\n")  # chunked body never terminated
    else:
        assert b"abc" not in data.split(b"\r\n\r\n", 1)[-1] or path == "/short-body"
    misbehave_server.wait_for_output(log_text)


def test_send_after_complete_is_logged(misbehave_server):
    """A body sent after the response completed is refused and logged; the response is intact."""
    status, _headers, body = request(misbehave_server, b"GET /after-complete HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == b"HTTP/1.1 200 OK" and body == b"done"
    misbehave_server.wait_for_output("after response already completed")


def test_app_close_timeout_cancels_ignoring_app(misbehave_server):
    """An app that ignores the disconnect is cancelled after the app-close timeout."""
    sock = misbehave_server.connect()
    sock.sendall(b"GET /ignore-disconnect HTTP/1.1\r\nHost: a\r\n\r\n")
    sock.recv(100)
    sock.close()
    misbehave_server.wait_for_output("cancelling it", timeout=15)


def test_curl_client(scope_server):
    """A real HTTP client (curl) gets the scope back, with keep-alive across two URLs."""
    assert shutil.which("curl"), "curl is needed (installed by .ci/run)"
    url = f"http://127.0.0.1:{scope_server.port}"
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-d", "payload", f"{url}/a", "--next", f"{url}/b?q=1"],
        capture_output=True,
        check=True,
    ).stdout
    first, second = out.split(b"}{")
    assert json.loads(first + b"}")["body_length"] == 7
    assert json.loads(b"{" + second)["query_string"] == "q=1"


def test_unix_socket_scope(tmp_path):
    """On a unix socket the scope has server (path, None) and client None."""
    path = tmp_path / "app.sock"
    server = start_server("tests.apps:scope_echo", endpoint=f"unix:{path}:mode=660")
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            scope = json.loads(recv_response(sock)[2])
        assert f"(unix:{path})" in server.read_output()  # the listening line names the path
        assert scope["server"] == [str(path), None]
        assert scope["client"] is None
        assert oct(path.stat().st_mode & 0o777) == "0o660"
    finally:
        server.stop()


def start_tls_server(tmp_path, app: str):
    """A server for ``app`` on an ssl: endpoint with a certificate made for this test,
    and a client TLS context that trusts it and offers ALPN http/1.1."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    key_path = tmp_path / "key.pem"
    cert_path = tmp_path / "cert.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    server = start_server(app, endpoint=f"ssl:port=0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["http/1.1"])
    return server, context


def test_tls_listener_scheme_https(tmp_path):
    """An ssl: endpoint serves HTTP/1.1 over TLS with scheme https in the scope."""
    server, context = start_tls_server(tmp_path, "tests.apps:scope_echo")
    try:
        with (
            socket.create_connection((server.host, server.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            assert sock.selected_alpn_protocol() == "http/1.1"
            sock.sendall(b"GET /secure HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, _headers, body = recv_response(sock)
        assert status == b"HTTP/1.1 200 OK"
        scope = json.loads(body)
        assert scope["scheme"] == "https"
        assert scope["path"] == "/secure"
    finally:
        server.stop()


def test_tls_connection_close_closes_the_connection(tmp_path):
    """Over TLS, 'Connection: close' ends with the server closing (TLS close_notify, then EOF)."""
    server, context = start_tls_server(tmp_path, "tests.apps:hello")
    try:
        with (
            socket.create_connection((server.host, server.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                try:
                    chunk = sock.recv(65536)
                except ssl.SSLEOFError:
                    break
                if not chunk:
                    break
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert data.endswith(b"Hello, world!\r\n0\r\n\r\n")
    finally:
        server.stop()
