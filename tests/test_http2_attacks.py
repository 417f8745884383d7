"""Known attacks on HTTP/2 servers, each over loopback against a real server,
with the safe result expected (RFC 9113 sections and CVEs named per test).
After each attack the server still answers a normal request and its RSS
stays bounded; most attacks hit one server for the whole module, whose RSS
must be back near its baseline at the end. Connection errors, the idle
timeout and graceful drain are also checked over TLS, where the connection
must be closed down to TCP."""

from __future__ import annotations

import signal
import ssl
import time

import pytest
from hyperframe.frame import HeadersFrame, RstStreamFrame, WindowUpdateFrame

from tests.deploy import closing, make_certs, serving
from tests.h2frames import (
    ENHANCE_YOUR_CALM,
    INTERNAL_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    RawClient,
    request_headers,
)
from tests.serving import start_server
from tests.test_http2_e2e import ssl_endpoint, tls_context
from tests.test_http2_flow import ping_barrier, vm

APP = "tests.h2frames:app"


def healthy(server, baseline_kib: int, tls: ssl.SSLContext | None = None) -> None:
    """The server answers a new connection, and its RSS grew by < 50 MiB."""
    client = RawClient(server.host, server.port, tls=tls)
    try:
        client.send(client.f.request(1, "/"))
        headers, body, _ = client.response(1)
    finally:
        client.close()
    assert headers[b":status"] == b"200" and body == b"ok"
    assert vm(server.proc.pid, "VmRSS") - baseline_kib < 50 * 1024


@pytest.fixture(scope="module")
def shared():
    """One server for the attacks of this module that need no options of
    their own; its baseline RSS is taken after a first normal request."""
    server = start_server(APP, "--limit-h2-resets", "20", "--timeout-app-close", "30")
    try:
        server.baseline = 0  # type: ignore[attr-defined]
        healthy(server, 2**40)
        server.baseline = vm(server.proc.pid, "VmRSS")  # type: ignore[attr-defined]
        yield server
    finally:
        closing(server)


@pytest.fixture
def server(shared):
    assert shared.proc.poll() is None, "the shared server died"
    return shared


@pytest.fixture
def certs(tmp_path):
    return make_certs(tmp_path)


def count_output(server, needle: str, count: int, timeout: float = 10.0) -> str:
    """Wait until ``needle`` was printed ``count`` times in all; fail if more."""
    deadline = time.monotonic() + timeout
    while True:
        output = "".join(server.output)
        seen = output.count(needle)
        assert seen <= count, f"{needle!r} printed {seen} times, not {count}"
        if seen == count:
            return output
        assert time.monotonic() < deadline, f"{needle!r} printed {seen} times, not {count}; output:\n{output}"
        server.read_output(0.05)


def hang_streams(client: RawClient, server, ids: list[int], path: str = "/hang", tag: str = "") -> None:
    """Open streams whose apps do not answer (``/hang``: ever, ``/wait-disconnect``:
    until the client leaves); return once every app runs. ``tag`` makes the
    markers unique on a server that serves many tests."""
    for stream_id in ids:
        client.send(client.f.headers(stream_id, request_headers(f"{path}?id={tag}{stream_id}"), end_stream=False))
    for stream_id in ids:
        server.wait_for_output(f"STARTED {path} id={tag}{stream_id}\n")


def assert_cancelled(server, ids: list[int], tag: str = "") -> None:
    """Every hanging app was cancelled at once (the app-close timeout is 30 s)."""
    for stream_id in ids:
        server.wait_for_output(f"CANCELLED id={tag}{stream_id}\n", timeout=5)


def test_rapid_reset_ends_in_goaway_and_cancelled_apps(server):
    """Rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, over and over.
    Past the reset budget: GOAWAY ENHANCE_YOUR_CALM, the connection closes,
    and the app calls it started are cancelled, not left running."""
    client = RawClient(server.host, server.port)
    try:
        hanging = [1, 3, 5]
        hang_streams(client, server, hanging, tag="rapid")
        attack = b"".join(client.f.request(i, "/", end_stream=False) + client.f.rst(i) for i in range(7, 200, 2))
        client.send(attack)
        frame = client.goaway()
        assert frame.error_code == ENHANCE_YOUR_CALM
        client.wait_closed()
    finally:
        client.close()
    assert_cancelled(server, hanging, tag="rapid")
    healthy(server, server.baseline)


def test_made_you_reset_ends_in_goaway(server):
    """MadeYouReset (CVE-2025-8671): frames the server must answer with
    RST_STREAM (here DATA after END_STREAM, a stream error STREAM_CLOSED,
    RFC 9113 §5.1) count against the reset budget; past it GOAWAY
    ENHANCE_YOUR_CALM and the connection's app calls are cancelled."""
    client = RawClient(server.host, server.port)
    try:
        hanging = [1, 3]
        hang_streams(client, server, hanging, tag="myr")
        attack = b"".join(client.f.request(i, "/slow?ms=5000") + client.f.data(i, b"x") for i in range(5, 200, 2))
        client.send(attack)
        frame = client.goaway()
        assert frame.error_code == ENHANCE_YOUR_CALM
        client.wait_closed()
    finally:
        client.close()
    assert_cancelled(server, hanging, tag="myr")
    healthy(server, server.baseline)


def test_continuation_flood(server):
    """CONTINUATION flood (CVE-2024-27316): a header block that never ends
    is cut at twice the header-list limit with GOAWAY ENHANCE_YOUR_CALM,
    without buffering the flood."""
    client = RawClient(server.host, server.port)
    try:
        client.send(client.f.headers(1, request_headers(), end_headers=False))
        try:
            for _ in range(2000):
                client.send(client.f.continuation(1, b"\x00" * 16000))
        except OSError:
            pass  # the server closed on us mid-flood
        frame = client.goaway()
        assert frame.error_code == ENHANCE_YOUR_CALM
        client.wait_closed()
    finally:
        client.close()
    healthy(server, server.baseline)


def test_hpack_bomb(server):
    """HPACK bomb: one 4 KiB field in the dynamic table referenced hundreds
    of times decodes to megabytes; the decoder stops at twice the
    header-list limit and the connection ends."""
    client = RawClient(server.host, server.port)
    try:
        client.send(client.f.headers(1, request_headers() + [(b"x-bomb", b"a" * 4000)]))
        bomb = client.f.headers(3, request_headers() + [(b"x-bomb", b"a" * 4000)] * 1000)
        assert len(bomb) < 2000
        client.send(bomb)
        frame = client.goaway()
        assert frame.error_code in (ENHANCE_YOUR_CALM, 0x9)
        client.wait_closed()
    finally:
        client.close()
    healthy(server, server.baseline)


@pytest.mark.parametrize(
    "kind", ["PING", "SETTINGS", "PRIORITY", "empty DATA", "unknown frames", "empty CONTINUATION", "WINDOW_UPDATE"]
)
def test_floods_of_frames_that_do_no_work(kind):
    """PING, SETTINGS, PRIORITY, empty DATA, empty CONTINUATION and unknown
    frame floods (CVE-2019-9512/9515/9518) end in GOAWAY ENHANCE_YOUR_CALM
    once the control-frame budget is spent. (WINDOW_UPDATE that opens an
    unlimited window is no flood: h2 answers FLOW_CONTROL_ERROR at 2^31-1.)"""
    with serving(APP, "--limit-h2-control-frames", "200") as server:
        baseline = vm(server.proc.pid, "VmRSS")
        client = RawClient(server.host, server.port)
        f = client.f
        try:
            client.send(f.request(1, "/", end_stream=False))
            if kind == "empty CONTINUATION":
                flood = f.headers(3, request_headers(), end_headers=False) + f.continuation(3, b"") * 1000
            elif kind == "WINDOW_UPDATE":
                flood = f.window_update(0, 2**30) * 4
            else:
                one = {
                    "PING": f.ping(),
                    "SETTINGS": f.settings(),
                    "PRIORITY": f.priority(1),
                    "empty DATA": f.data(1, b""),
                    "unknown frames": f.unknown(),
                }[kind]
                flood = one * 1000
            try:
                client.send(flood)
            except OSError:
                pass
            frame = client.goaway()
            if kind == "WINDOW_UPDATE":
                assert frame.error_code == 0x3  # FLOW_CONTROL_ERROR
            elif kind == "empty CONTINUATION":
                # h2 itself stops a header block at 64 CONTINUATION frames
                # (PROTOCOL_ERROR), before this budget of 200 runs out.
                assert frame.error_code in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM)
            else:
                assert frame.error_code == ENHANCE_YOUR_CALM
            client.wait_closed()
        finally:
            client.close()
        healthy(server, baseline)


def test_streams_beyond_the_limit_are_refused():
    """Streams past SETTINGS_MAX_CONCURRENT_STREAMS get REFUSED_STREAM (RFC
    9113 §5.1.2, §8.7); the connection and its other streams go on."""
    with serving(APP, "--limit-concurrent-streams", "3", "--timeout-app-close", "30") as server:
        baseline = vm(server.proc.pid, "VmRSS")
        client = RawClient(server.host, server.port)
        try:
            hang_streams(client, server, [1, 3, 5], "/wait-disconnect")
            client.send(client.f.request(7, "/"))
            assert client.rst(7).error_code == REFUSED_STREAM
            client.send(client.f.rst(1))
            server.wait_for_output("DISCONNECTED id=1")
            deadline = time.monotonic() + 10
            while True:  # the app of stream 1 has returned: room for one more
                client.send(client.f.request(9, "/"))
                frame = client.wait_for(
                    lambda f: f.stream_id == 9 and isinstance(f, (HeadersFrame, RstStreamFrame)), timeout=5
                )
                if isinstance(frame, HeadersFrame):
                    break
                assert time.monotonic() < deadline
            assert client.response(9)[1] == b"ok"
        finally:
            client.close()
        healthy(server, baseline)


def test_zero_window_client_times_out():
    """A client that never opens its window holds a response forever; after
    timeout_send the stream is reset and the app told, the connection lives."""
    with serving(APP, "--timeout-send", "1") as server:
        baseline = vm(server.proc.pid, "VmRSS")
        client = RawClient(server.host, server.port, settings={"initial_window_size": 0})
        try:
            started = time.monotonic()
            client.send(client.f.request(1, "/download?mib=1"))
            assert client.rst(1, timeout=10).error_code == INTERNAL_ERROR
            assert 0.9 < time.monotonic() - started < 8
            server.wait_for_output("opened no window on stream 1")
            client.send(client.f.window_update(0, 2**20))
            client.send(client.f.request(3, "/"))
            client.send(client.f.window_update(3, 100))
            assert client.response(3)[1] == b"ok"
        finally:
            client.close()
        healthy(server, baseline)


MALFORMED = {
    "uppercase": [(b"X-Upper", b"1")],
    "connection-specific": [(b"connection", b"close")],
    "CR/LF": [(b"x-a", b"a\r\nb")],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_headers_reset_the_stream(server, case):
    """Uppercase names, connection-specific fields and CR/LF in values make a
    request malformed (RFC 9113 §8.2): RST_STREAM PROTOCOL_ERROR, logged once
    per connection, the app never called, the connection still serves."""
    needle = "sent a malformed request on stream 1:"
    before = server.read_output().count(needle)
    client = RawClient(server.host, server.port)
    try:
        for stream_id in (1, 3):
            client.send(client.f.headers(stream_id, request_headers() + MALFORMED[case]))
            assert client.rst(stream_id).error_code == PROTOCOL_ERROR
        client.send(client.f.request(5, "/"))
        assert client.response(5)[1] == b"ok"
    finally:
        client.close()
    output = count_output(server, needle, before + 1)
    assert "malformed request on stream 3" not in output
    healthy(server, server.baseline)


def test_content_length_mismatch_resets_the_stream(server):
    """DATA longer than content-length is malformed (RFC 9113 §8.1.1): the
    stream is reset, the connection goes on."""
    client = RawClient(server.host, server.port)
    try:
        client.send(client.f.request(1, "/upload", end_stream=False, method="POST", content_length="3"))
        client.send(client.f.data(1, b"abcdef", end_stream=True))
        assert client.rst(1).error_code == PROTOCOL_ERROR
        client.send(client.f.request(3, "/"))
        assert client.response(3)[1] == b"ok"
    finally:
        client.close()
    healthy(server, server.baseline)


def test_protocol_error_gets_goaway_then_prompt_close(server):
    """A connection error (a frame on stream 0 that needs a stream, RFC 9113
    §6.1) gets GOAWAY PROTOCOL_ERROR and the connection is closed promptly."""
    client = RawClient(server.host, server.port)
    try:
        client.send(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")  # DATA, stream 0
        assert client.goaway().error_code == PROTOCOL_ERROR
        client.wait_closed(timeout=3)
    finally:
        client.close()
    healthy(server, server.baseline)


def test_slow_body_gets_408_and_a_slow_app_does_not():
    """A client that stops sending its body (slowloris on the body) gets 408
    after timeout_request_body and its app http.disconnect; an app that is
    itself slow to read (the client has no window left) is not counted
    against the client."""
    with serving(APP, "--timeout-request-body", "1") as server:
        baseline = vm(server.proc.pid, "VmRSS")
        client = RawClient(server.host, server.port)
        try:
            started = time.monotonic()
            client.send(client.f.request(1, "/wait-disconnect?id=slow", end_stream=False, content_length="10"))
            client.send(client.f.data(1, b"abc"))
            headers, _body, _ = client.response(1)
            assert headers[b":status"] == b"408" and 0.9 < time.monotonic() - started < 8
            server.wait_for_output("DISCONNECTED id=slow")
            server.wait_for_output("sent no request body on stream 1")
            # The app is gated: the client fills the window and waits for it.
            client.send(client.f.request(3, "/gate", end_stream=False, method="POST"))
            server.wait_for_output("GATED")
            for size in (16384, 16384, 16384, 65535 - 3 * 16384):
                client.send(client.f.data(3, b"u" * size))
            client.read(2.5)  # well past the body timeout
            assert not [f for f in client.frames if f.stream_id == 3]
            client.send(client.f.request(5, "/open"))
            client.wait_for(lambda f: isinstance(f, WindowUpdateFrame) and f.stream_id == 3)
            client.send(client.f.data(3, b"", end_stream=True))
            headers, body, _ = client.response(3)
            assert headers[b":status"] == b"200" and body == b"65535"
        finally:
            client.close()
        healthy(server, baseline)


# -- closing over TLS (ALPN h2) ---------------------------------------------------------
# A TLS transport does not close while a producer is registered: every close
# path of the HTTP/2 handler must unregister it and close the socket itself.


@pytest.mark.parametrize("attack", ["protocol error", "rapid reset"])
def test_tls_connection_error_gets_goaway_then_tcp_close(certs, attack):
    """A connection error over TLS (RFC 9113 §5.4.1: GOAWAY, then close the
    TCP connection): DATA on stream 0 (§6.1, PROTOCOL_ERROR), or a rapid
    reset flood (CVE-2023-44487, ENHANCE_YOUR_CALM) while apps hang. The
    socket is closed within seconds, the hanging apps are cancelled, and the
    server serves on."""
    context = tls_context(certs)
    with serving(APP, "--limit-h2-resets", "20", "--timeout-app-close", "30", endpoint=ssl_endpoint(certs)) as server:
        baseline = vm(server.proc.pid, "VmRSS")
        client = RawClient(server.host, server.port, tls=context)
        try:
            if attack == "protocol error":
                client.send(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")  # DATA, stream 0
                expected = PROTOCOL_ERROR
            else:
                hang_streams(client, server, [1, 3], tag="tls")
                flood = b"".join(client.f.request(i, "/", end_stream=False) + client.f.rst(i) for i in range(5, 200, 2))
                client.send(flood)
                expected = ENHANCE_YOUR_CALM
            assert client.goaway().error_code == expected
            client.wait_tcp_closed(timeout=5)
        finally:
            client.close()
        if attack == "rapid reset":
            assert_cancelled(server, [1, 3], tag="tls")
        healthy(server, baseline, tls=context)


@pytest.mark.parametrize("first", [False, True], ids=["keep-alive", "before the first request"])
def test_tls_idle_timeout_gets_goaway_then_tcp_close(certs, first):
    """An idle TLS connection (after a response: the keep-alive timeout;
    before any request: the head timeout) gets GOAWAY NO_ERROR and is closed
    down to TCP (RFC 9113 §6.8, §9.1: a server closes idle connections)."""
    context = tls_context(certs)
    options = ("--timeout-keep-alive", "0.5", "--timeout-request-head", "0.5")
    with serving(APP, *options, endpoint=ssl_endpoint(certs)) as server:
        client = RawClient(server.host, server.port, tls=context)
        try:
            if not first:
                client.send(client.f.request(1, "/"))
                assert client.response(1)[1] == b"ok"
            started = time.monotonic()
            assert client.goaway(timeout=5).error_code == NO_ERROR
            client.wait_tcp_closed(timeout=5)
            assert time.monotonic() - started < 5
        finally:
            client.close()
        healthy(server, vm(server.proc.pid, "VmRSS"), tls=context)


def test_tls_graceful_drain_closes_each_connection_when_done(certs):
    """SIGTERM over TLS (RFC 9113 §6.8): both connections get GOAWAY NO_ERROR;
    the one whose stream finishes is closed down to TCP while the server is
    still running (the other connection's app still waits), and once that
    client leaves too, the server exits 0."""
    context = tls_context(certs)
    options = ("--graceful-timeout", "20", "--timeout-app-close", "30")
    with serving(APP, *options, endpoint=ssl_endpoint(certs)) as server:
        held = RawClient(server.host, server.port, tls=context)
        done = RawClient(server.host, server.port, tls=context)
        try:
            hang_streams(held, server, [1], "/wait-disconnect", tag="drain")
            done.send(done.f.request(1, "/slow?ms=1000"))
            ping_barrier(done, b"in-flght")  # the request is in
            server.proc.send_signal(signal.SIGTERM)
            frame = done.goaway()
            assert (frame.error_code, frame.last_stream_id) == (NO_ERROR, 1)
            headers, body, _ = done.response(1)
            assert headers[b":status"] == b"200" and body == b"ok"
            done.wait_tcp_closed(timeout=5)
            assert server.proc.poll() is None, "the server exited before its last stream ended"
            assert held.goaway().error_code == NO_ERROR
        finally:
            done.close()
            held.close()
        assert server.wait(15) == 0


def server_socket(server, client: RawClient) -> tuple[int, int] | None:
    """(state, bytes in the send queue) of the server's end of the client's
    TCP connection, from /proc/net/tcp; None once it is gone."""
    local = f"0100007F:{server.port:04X}"
    remote = f"0100007F:{client.sock.getsockname()[1]:04X}"
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[3], 16), int(fields[4].split(":")[0], 16)
    return None


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "TLS"])
def test_connection_error_from_a_client_that_reads_nothing_is_dropped(certs, tls):
    """A client fills the server's send buffers (a download it does not
    read), then breaks the protocol (RFC 9113 §5.4.1: GOAWAY, then close).
    Closing waits for the buffers to drain, which they never do: after
    timeout_send the connection is dropped anyway, so a client cannot hold a
    closing connection and its buffers forever."""
    endpoint = ssl_endpoint(certs) if tls else "tcp:port=0:interface=127.0.0.1"
    context = tls_context(certs) if tls else None
    with serving(APP, "--timeout-send", "2", endpoint=endpoint) as server:
        client = RawClient(server.host, server.port, tls=context)
        try:
            client.send(client.f.window_update(0, 2**30) + client.f.settings(initial_window_size=2**30))
            client.send(client.f.request(1, "/download?mib=64"))
            # Wait until the server's send queue is full (the same for 200 ms):
            # what the app writes from then on stays in the server's buffers.
            deadline = time.monotonic() + 10
            queued = [-1, 0]
            while queued[-1] != queued[-2] or not queued[-1]:
                assert time.monotonic() < deadline, "the server never filled its send queue"
                time.sleep(0.2)
                queued.append((server_socket(server, client) or (0, 0))[1])
            client.send(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")  # DATA, stream 0
            server.wait_for_output("while its connection was closing; dropping it", timeout=10)
            deadline = time.monotonic() + 5
            while (server_socket(server, client) or (0x7, 0))[0] == 0x1:  # ESTABLISHED
                assert time.monotonic() < deadline, "the connection was not dropped"
                time.sleep(0.02)
        finally:
            client.close()
        healthy(server, vm(server.proc.pid, "VmRSS"), tls=context)


def test_memory_back_near_baseline(server):
    """After every attack on the shared server above, RSS is within 16 MiB of
    its baseline (taken after its first request) once it served 20 more."""
    for _ in range(20):
        healthy(server, server.baseline)
    grown = vm(server.proc.pid, "VmRSS") - server.baseline
    assert grown < 16 * 1024, f"RSS grew by {grown} KiB"


@pytest.mark.parametrize("case", ["malformed", "refused"])
def test_goaway_in_the_read_of_a_stream_we_answer_ourselves(case):
    """The client's GOAWAY in the same read as a request the server answers
    itself (a malformed one: RST_STREAM; one over the stream limit:
    REFUSED_STREAM): h2 closes the connection on reading the GOAWAY and can
    send nothing more, so the server closes the TCP connection, logs no
    traceback, and goes on serving."""
    server = start_server(APP, "--limit-concurrent-streams", "1")
    try:
        client = RawClient(server.host, server.port)
        try:
            if case == "malformed":
                client.send(client.f.headers(1, request_headers() + MALFORMED["CR/LF"]) + client.f.goaway())
            else:
                hang_streams(client, server, [1])
                client.send(client.f.headers(3, request_headers("/")) + client.f.goaway())
            client.wait_tcp_closed(timeout=5)
        finally:
            client.close()
        healthy(server, 2**40)
        output = server.read_output()
        assert "Traceback" not in output and "Unhandled" not in output, output
    finally:
        closing(server)
