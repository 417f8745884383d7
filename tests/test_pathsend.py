"""Path send and zero-copy send (ASGI extensions ``http.response.pathsend`` and
``http.response.zerocopysend``; twisted_asgi/filesend.py), end to end with
real clients: raw sockets and curl over plain HTTP/1.1 (``os.sendfile``), curl
over TLS (HTTP/1.1 and HTTP/2: the file read in chunks), an h2 client over
h2c, Starlette's ``FileResponse``; a slow reader, a stalled one, a file that
shrinks while it is sent, a missing one; and no descriptor left behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import make_certs, serving, wait_for
from tests.serving import Server, recv_response, recv_until_closed

APP = "tests.pathsend_app:app"
MIB = 1024 * 1024
BIG = 21 * MIB + 12345  # over 20 MiB, not a multiple of any buffer size
SPARSE = 200 * MIB


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pathsend")
    with open(root / "big", "wb") as out:
        out.write(os.urandom(BIG))
    (root / "small").write_bytes(b"hello, file\n")
    (root / "empty").write_bytes(b"")
    with open(root / "sparse", "wb") as out:
        out.truncate(SPARSE)  # 200 MiB of zeros, no disk blocks
    (root / "dir").mkdir()
    return root


def digest(path: Path, start: int = 0, count: int | None = None) -> str:
    data = path.read_bytes()[start:]
    return hashlib.sha256(data if count is None else data[:count]).hexdigest()


def serve(files: Path, *args: str, endpoint: str = "tcp:port=0:interface=127.0.0.1") -> Any:
    return serving(APP, *args, endpoint=endpoint, env={"PATHSEND_DIR": str(files)})


def get(server: Server, target: str, sock: socket.socket | None = None, method: str = "GET") -> tuple:
    own = sock is None
    sock = sock or socket.create_connection((server.host, server.port), timeout=10)
    try:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        return recv_response(sock, timeout=30)
    finally:
        if own:
            sock.close()


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The response head and the body bytes read with it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def said(server: Server, needle: str, count: int = 1, timeout: float = 10.0) -> None:
    wait_for(lambda: needle in server.read_output(0.05), timeout, needle)
    server.read_output(0.3)
    text = "".join(server.output)
    assert text.count(needle) == count, text


def stalled_reader(server: Server, target: str, tls: ssl.SSLContext | None = None) -> socket.socket:
    """A client that asked for ``target`` and reads nothing: returned once
    the bytes waiting for it stop growing (the server met a full socket)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect((server.host, server.port))
    if tls is not None:
        sock = tls.wrap_socket(sock)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    import fcntl
    import termios

    def queued() -> int:
        return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"), "little")

    last = [-1]

    def settled() -> bool:
        now = queued()
        same = now == last[0] and now > 0
        last[0] = now
        if not same:
            server.read_output(0.2)  # the interval between two looks
        return same

    wait_for(settled, 20, "the client's receive queue to stop growing")
    return sock


# -- sans-IO: the cycle's checks ----------------------------------------------------------


def test_cycle_checks_the_file_messages():
    from twisted_asgi.cycle import HTTPCycle
    from twisted_asgi.events import AppError, FileBody

    def started() -> HTTPCycle:
        cycle = HTTPCycle(1024, has_body=False)
        cycle.app_send({"type": "http.response.start", "status": 200})
        return cycle

    cycle = started()
    event = cycle.app_send({"type": "http.response.pathsend", "path": "/srv/a"})
    assert event == FileBody("/srv/a", None, None, None, False) and cycle.response_complete
    with pytest.raises(AppError, match="after response already completed"):
        cycle.app_send({"type": "http.response.pathsend", "path": "/srv/a"})
    for bad in ("relative/path", b"/bytes", None):
        with pytest.raises(AppError, match="absolute path"):
            started().app_send({"type": "http.response.pathsend", "path": bad})
    cycle = started()
    message = {"type": "http.response.zerocopysend", "file": 5, "offset": 3, "count": 4, "more_body": True}
    event = cycle.app_send(message)
    assert event == FileBody(None, 5, 3, 4, True) and not cycle.response_complete
    cycle.app_send({"type": "http.response.zerocopysend", "file": 5})
    assert cycle.response_complete
    for bad in ({"file": "name"}, {"file": -1}, {"file": 5, "offset": -1}, {"file": 5, "count": 1.5}):
        with pytest.raises(AppError, match="zerocopysend"):
            started().app_send({"type": "http.response.zerocopysend", **bad})
    with pytest.raises(AppError, match=r"Expected ASGI message 'http\.response\.start'"):
        HTTPCycle(1024).app_send({"type": "http.response.pathsend", "path": "/srv/a"})
    cycle = HTTPCycle(1024, has_body=False)
    cycle.app_send({"type": "http.response.start", "status": 200, "trailers": True})
    cycle.app_send({"type": "http.response.pathsend", "path": "/srv/a"})
    assert not cycle.response_complete  # the trailers come next
    cycle.app_send({"type": "http.response.trailers", "headers": []})
    assert cycle.response_complete


# -- plain HTTP/1.1: os.sendfile ---------------------------------------------------------


def test_extensions_advertised_on_http11_and_http2(files):
    with serve(files) as server:
        _status, _headers, body = get(server, "/extensions")
        out = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", f"http://127.0.0.1:{server.port}/extensions"],
            capture_output=True,
            timeout=20,
            check=True,
        ).stdout
    for names in (body, out):
        assert b'"http.response.pathsend"' in names and b'"http.response.zerocopysend"' in names, names


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_raw_socket_large_file_then_keep_alive(files, chunked):
    """21 MiB by path send, byte for byte, on one connection that then serves the next request."""
    query = "&chunked=1" if chunked else ""
    with serve(files) as server, socket.create_connection((server.host, server.port), timeout=30) as sock:
        status, headers, body = get(server, f"/path?f=big{query}", sock)
        assert status.startswith(b"HTTP/1.1 200")
        if chunked:
            assert headers[b"transfer-encoding"] == b"chunked" and b"content-length" not in headers
        else:
            assert headers[b"content-length"] == str(BIG).encode()
        assert len(body) == BIG and hashlib.sha256(body).hexdigest() == digest(files / "big")
        status, _headers, body = get(server, f"/path?f=small{query}", sock)
        assert status.startswith(b"HTTP/1.1 200") and body == b"hello, file\n"
        status, _headers, body = get(server, f"/path?f=empty{query}", sock)
        assert status.startswith(b"HTTP/1.1 200") and body == b""
        sock.sendall(b"HEAD /path?f=big HTTP/1.1\r\nHost: t\r\n\r\n")
        head, rest = read_head(sock)  # and no body
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: %d" % BIG in head and rest == b""
        status, _headers, body = get(server, "/extensions", sock)
        assert status.startswith(b"HTTP/1.1 200")
        text = server.read_output(0.2)
    assert "Traceback" not in text and "Could not send" not in text


def test_curl_plain_http11(files):
    with serve(files) as server:
        out = subprocess.run(
            ["curl", "-sS", "--http1.1", f"http://127.0.0.1:{server.port}/path?f=big"],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
    assert hashlib.sha256(out).hexdigest() == digest(files / "big")


def test_curl_over_a_unix_socket(files, tmp_path):
    """A unix socket is sent to with os.sendfile as well."""
    path = tmp_path / "s.sock"
    with serve(files, endpoint=f"unix:{path}") as server:
        out = subprocess.run(
            ["curl", "-sS", "--unix-socket", str(path), "http://t/path?f=big&chunked=1", "http://t/path?f=small"],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        text = server.read_output(0.2)
    assert out.endswith(b"hello, file\n") and hashlib.sha256(out[:-12]).hexdigest() == digest(files / "big")
    assert "Traceback" not in text


def test_zerocopysend_offset_count_and_file_position(files):
    big = (files / "big").read_bytes()
    with serve(files) as server, socket.create_connection((server.host, server.port), timeout=30) as sock:
        for query in ("", "&chunked=1"):
            status, _h, body = get(server, f"/zero?f=big&offset=1000&count=5000000&prefix=A&suffix=B{query}", sock)
            assert status.startswith(b"HTTP/1.1 200")
            assert body == b"A" + big[1000:5001000] + b"B"
        # Without offset: from the file's position, which is then past what was sent.
        status, _h, body = get(server, "/zero?f=big&seek=77&count=100&position=1", sock)
        assert body == big[77:177]
        said(server, "file position after zerocopysend: 177")
        status, _h, body = get(server, f"/zero?f=big&seek={BIG - 10}", sock)
        assert body == big[-10:]
        status, _h, body = get(server, "/zero?f=small&offset=7&count=0", sock)
        assert status.startswith(b"HTTP/1.1 200") and body == b""
        # More bytes than the file has: nothing of it was sent, so 500.
        status, _h, body = get(server, "/zero?f=small&offset=5&count=100", sock)
        assert status.startswith(b"HTTP/1.1 500"), status
    said(server, "has 7 bytes from offset 5, not the 100 to send")


def test_missing_file_and_directory(files):
    with serve(files) as server:
        status, _headers, _body = get(server, "/path?f=gone")
        assert status.startswith(b"HTTP/1.1 500")
        said(server, "cannot open")
        status, _headers, _body = get(server, "/path?f=dir&chunked=1")
        assert status.startswith(b"HTTP/1.1 500")
        said(server, "AppError: path")  # the message, in the one traceback below
        said(server, "Exception in ASGI application")  # the app's error: once, with its traceback
        status, _headers, body = get(server, "/path?f=small")
        assert body == b"hello, file\n"


def test_slow_reader_sparse_file_is_not_read_into_memory(files):
    """200 MiB to a client that reads nothing until the server met a full
    socket: the server's memory does not grow with the file (the bytes do not
    pass through Python), it serves others meanwhile, then all 200 MiB arrive."""
    with serve(files) as server:
        pid = server.proc.pid
        get(server, "/path?f=small")
        before = rss(pid)
        sock = stalled_reader(server, "/path?f=sparse")
        try:
            blocked = rss(pid)
            _status, _h, body = get(server, "/path?f=small")  # the event loop is free
            assert body == b"hello, file\n"
            head, body = read_head(sock)
            assert head.startswith(b"HTTP/1.1 200") and b"content-length: %d" % SPARSE in head
            size, peak, zeros = len(body), blocked, hashlib.sha256(body)
            while size < SPARSE:
                chunk = sock.recv(1 << 20)
                assert chunk, size
                size += len(chunk)
                zeros.update(chunk)
                if size % (16 * MIB) < len(chunk):
                    peak = max(peak, rss(pid))
        finally:
            sock.close()
        expected = hashlib.sha256()
        for _ in range(SPARSE // MIB):
            expected.update(bytes(MIB))
        assert zeros.hexdigest() == expected.hexdigest()
        assert blocked - before < 20 * MIB and peak - before < 20 * MIB, (before, blocked, peak)


def read_calls(pid: int) -> int:
    """The read system calls the process made so far (``syscr``: read,
    pread, recv and each sendfile count one)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    raise AssertionError("no syscr")


def test_sendfile_moves_the_bytes(files):
    """200 MiB served with far fewer read calls than the 3200 that reading it
    in 64 KiB body chunks takes: os.sendfile moved them (the kernel counts
    one read call per sendfile), not Python."""
    from twisted_asgi.filesend import CHUNK

    with serve(files) as server, socket.create_connection((server.host, server.port), timeout=30) as sock:
        pid = server.proc.pid
        assert get(server, "/path?f=small", sock)[2] == b"hello, file\n"
        before = read_calls(pid)
        sock.sendall(b"GET /path?f=sparse HTTP/1.1\r\nHost: t\r\n\r\n")
        _head, body = read_head(sock)
        size = len(body)
        buffer = bytearray(1 << 20)
        while size < SPARSE:
            n = sock.recv_into(buffer)
            assert n, size
            size += n
        calls = read_calls(pid) - before
    assert size == SPARSE and calls < SPARSE // CHUNK // 2, calls


def test_send_timeout_drops_a_stalled_client(files):
    with serve(files, "--timeout-send", "1") as server:
        pid = server.proc.pid
        baseline = fds(pid)  # before any connection
        sock = stalled_reader(server, "/path?f=sparse")
        try:
            said(server, "read nothing for 1")
            received = len(recv_until_closed(sock, timeout=20))
        finally:
            sock.close()
        assert 0 < received < SPARSE
        wait_for(lambda: fds(pid) <= baseline, 10, "the server's descriptors back to their number before")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_file_that_shrinks_while_sent_ends_the_connection(files, tmp_path, chunked):
    shrinking = files / f"shrinking-{chunked}"
    shutil.copyfile(files / "big", shrinking)
    query = "&chunked=1" if chunked else ""
    with serve(files) as server:
        sock = stalled_reader(server, f"/path?f={shrinking.name}{query}")
        try:
            os.truncate(shrinking, MIB)
            received = recv_until_closed(sock, timeout=20)
        finally:
            sock.close()
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert len(body) < BIG  # short: the client can tell
        if chunked:
            assert not body.endswith(b"\r\n0\r\n\r\n")
        said(server, "bytes early while it was sent")
        _status, _h, body = get(server, "/path?f=small")  # the server goes on
        assert body == b"hello, file\n"


def test_no_descriptor_left_behind(files):
    """Many sends (finished, missing, aborted by the client, zero-copy) leave
    the server with the descriptors it had."""
    with serve(files) as server:
        pid = server.proc.pid
        baseline = fds(pid)  # before any connection
        for _ in range(10):
            with socket.create_connection((server.host, server.port), timeout=10) as sock:
                assert get(server, "/path?f=small", sock)[2] == b"hello, file\n"
                assert get(server, "/zero?f=small&offset=1&count=3", sock)[2] == b"ell"
            assert get(server, "/path?f=gone")[0].startswith(b"HTTP/1.1 500")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.connect((server.host, server.port))
            sock.sendall(b"GET /path?f=big HTTP/1.1\r\nHost: t\r\n\r\n")
            read_head(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sock.close()  # a reset in the middle of the body
        wait_for(lambda: fds(pid) <= baseline, 10, "the server's descriptors back to their number before")
        text = server.read_output(0.2)
    assert "Traceback" not in text


def test_starlette_file_response_uses_path_send(files):
    with serve(files) as server:
        out = subprocess.run(
            ["curl", "-sS", "-D", "-", f"http://127.0.0.1:{server.port}/starlette?f=big"],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        said(server, "starlette sent http.response.start http.response.pathsend")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"etag" in head.lower()
    assert hashlib.sha256(body).hexdigest() == digest(files / "big")


# -- TLS and HTTP/2: read in chunks ------------------------------------------------------


@pytest.fixture
def tls_endpoint(tmp_path: Path) -> Iterator[str]:
    certs = make_certs(tmp_path)
    yield f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_curl_over_tls(files, tls_endpoint, version):
    with serve(files, endpoint=tls_endpoint) as server:
        base = f"https://127.0.0.1:{server.port}"
        run = ["curl", "-sS", "-k", version, "-w", "\n%{http_version} %{http_code}"]
        for query in ("f=big", "f=big&chunked=1"):
            out = subprocess.run([*run, f"{base}/path?{query}"], capture_output=True, timeout=60, check=True).stdout
            body, _, tail = out.rpartition(b"\n")
            assert tail == (b"1.1 200" if version == "--http1.1" else b"2 200"), tail
            assert hashlib.sha256(body).hexdigest() == digest(files / "big")
        out = subprocess.run([*run, f"{base}/zero?f=big&offset=5&count=70000"], capture_output=True, timeout=60).stdout
        assert out.rpartition(b"\n")[0] == (files / "big").read_bytes()[5:70005]
        out = subprocess.run([*run, f"{base}/path?f=gone"], capture_output=True, timeout=60).stdout
        assert out.endswith(b" 500"), out[-100:]
        said(server, "cannot open")


def test_tls_slow_reader_memory_is_bounded(files, tls_endpoint):
    with serve(files, endpoint=tls_endpoint) as server:
        pid = server.proc.pid
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection((server.host, server.port), timeout=30) as raw, context.wrap_socket(raw) as sock:
            sock.sendall(b"GET /path?f=small HTTP/1.1\r\nHost: t\r\n\r\n")
            assert recv_response(sock)[2] == b"hello, file\n"
            before = rss(pid)
            sock.sendall(b"GET /path?f=sparse HTTP/1.1\r\nHost: t\r\n\r\n")
            _head, body = read_head(sock)
            size, peak = len(body), 0
            while size < 100 * MIB:
                chunk = sock.recv(1 << 20)
                assert chunk
                size += len(chunk)
                if size % (8 * MIB) < len(chunk):
                    peak = max(peak, rss(pid))
        assert peak - before < 20 * MIB, (before, peak)


def test_tls_file_that_shrinks_while_sent_ends_the_connection(files, tls_endpoint):
    shrinking = files / "shrinking-tls"
    shutil.copyfile(files / "big", shrinking)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with serve(files, endpoint=tls_endpoint) as server:
        sock = stalled_reader(server, f"/path?f={shrinking.name}", context)
        try:
            os.truncate(shrinking, MIB)
            received = bytearray()
            sock.settimeout(20)
            while True:
                try:
                    chunk = sock.recv(1 << 20)
                except (ssl.SSLError, OSError):
                    break  # the server dropped the connection: no close_notify
                if not chunk:
                    break
                received += chunk
        finally:
            sock.close()
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: %d" % BIG in head
        assert len(body) < BIG  # short (the reset may cost the client what it had not read yet)
        said(server, "bytes early while it was sent")


def test_h2_client_over_h2c(files):
    import h2.config
    import h2.connection
    import h2.events

    big = (files / "big").read_bytes()
    with serve(files) as server, socket.create_connection((server.host, server.port), timeout=30) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        targets = {1: "/path?f=big", 3: "/zero?f=big&offset=100&count=300000", 5: "/path?f=gone"}
        for stream_id, target in targets.items():
            headers = [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", target)]
            conn.send_headers(stream_id, headers, end_stream=True)
        sock.sendall(conn.data_to_send())
        bodies = {s: bytearray() for s in targets}
        status: dict[int, bytes] = {}
        ended: set[int] = set()
        while len(ended) < len(targets):
            data = sock.recv(1 << 20)
            assert data, (status, {s: len(b) for s, b in bodies.items()})
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status[event.stream_id] = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    ended.add(event.stream_id)
            sock.sendall(conn.data_to_send())
        said(server, "cannot open")
    assert status == {1: b"200", 3: b"200", 5: b"500"}
    assert hashlib.sha256(bodies[1]).hexdigest() == digest(files / "big")
    assert bytes(bodies[3]) == big[100:300100]


def test_access_log_and_metrics_count_the_file_bytes(files):
    from tests.test_metrics_e2e import METRICS, metrics_url, scrape, value

    with serve(files, "--access-log", "-", "--metrics-endpoint", METRICS) as server:
        url = metrics_url(server)
        with socket.create_connection((server.host, server.port), timeout=30) as sock:
            assert len(get(server, "/path?f=big", sock)[2]) == BIG
            assert len(get(server, "/path?f=big&chunked=1", sock)[2]) == BIG
            assert get(server, "/zero?f=big&offset=3&count=1000&prefix=AB", sock)[2][:2] == b"AB"
        said(server, f'"GET /path?f=big HTTP/1.1" 200 {BIG} ')
        said(server, f'"GET /path?f=big&chunked=1 HTTP/1.1" 200 {BIG} ')
        said(server, '"GET /zero?f=big&offset=3&count=1000&prefix=AB HTTP/1.1" 200 1002 ')
        wait_for(
            lambda: value(scrape(url), "twisted_asgi_sent_bytes_total", protocol="http/1.1") > 2 * BIG + 1002,
            10,
            "the file bytes in twisted_asgi_sent_bytes_total",
        )
        sent = value(scrape(url), "twisted_asgi_sent_bytes_total", protocol="http/1.1")
    assert sent < 2 * BIG + 1002 + 2000  # the bytes, plus three heads and the chunk framing
