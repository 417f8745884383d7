"""Every limit and timeout that fires is counted by name (``twisted_asgi_limits_total``,
``twisted_asgi_timeouts_total``), on every protocol: each is fired from outside over
loopback (raw HTTP/1.1 sockets, a raw HTTP/2 client, raw WebSocket frames, the
attacks of tests/test_http2_attacks.py and tests/test_websocket_limits.py) and the
endpoint is scraped with ``prometheus_client``'s parser until exactly that
counter moved by exactly one, and no other counter of its family moved.
Source: issue 19, item 4."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.deploy import serving
from tests.h2frames import ENHANCE_YOUR_CALM, INTERNAL_ERROR, REFUSED_STREAM, RawClient, request_headers
from tests.serving import recv_response
from tests.test_metrics_e2e import METRICS, metrics_url, scrape
from tests.ws_apps import RawClient as WSClient
from tests.ws_apps import client_frame, open_ws

H2_APP = "tests.h2frames:app"
WS_APP = "tests.ws_apps:app"
LIMITS = ("twisted_asgi_limits_total", "limit")
TIMEOUTS = ("twisted_asgi_timeouts_total", "timeout")


def counts(samples: dict, family: tuple[str, str]) -> dict[str, float]:
    name, label = family
    return {dict(labels)[label]: v for (sample, labels), v in samples.items() if sample == name}


class Counted:
    """A server with its metrics URL; :meth:`fires` checks what one action counts."""

    def __init__(self, server) -> None:
        self.server = server
        self.url = metrics_url(server)
        self.host, self.port = server.host, server.port

    def fires(self, family: tuple[str, str], name: str, timeout: float = 15.0) -> Any:
        return _Fires(self, family, name, timeout)


class _Fires:
    def __init__(self, counted: Counted, family: tuple[str, str], name: str, timeout: float) -> None:
        self.counted, self.family, self.name, self.timeout = counted, family, name, timeout

    def __enter__(self) -> None:
        self.before = counts(scrape(self.counted.url), self.family)

    def __exit__(self, kind, *rest) -> None:
        if kind is not None:
            return
        deadline = time.monotonic() + self.timeout
        while True:
            now = counts(scrape(self.counted.url), self.family)
            moved = {k: v - self.before.get(k, 0) for k, v in now.items() if v != self.before.get(k, 0)}
            if moved == {self.name: 1}:
                return
            # A counter that moved too far, or another one, never comes back.
            assert all(v > 0 for v in moved.values()) and moved.get(self.name, 0) <= 1, moved
            assert not set(moved) - {self.name}, f"other counters moved: {moved}"
            assert time.monotonic() < deadline, f"{self.name} not counted; {self.family[0]} moved by {moved}"
            time.sleep(0.05)  # polling the endpoint, with a deadline


@pytest.fixture(scope="module")
def h2():
    """HTTP/2 budgets and limits, small enough to reach from one client."""
    with serving(
        H2_APP,
        "--metrics-endpoint",
        METRICS,
        "--limit-h2-resets",
        "20",
        "--limit-h2-control-frames",
        "50",
        "--limit-h2-header-list",
        "4096",
        "--limit-request-headers",
        "30",
        "--limit-request-body",
        "10",
        "--timeout-app-close",
        "30",
    ) as server:
        yield Counted(server)


def h2_client(counted: Counted, **settings: int) -> RawClient:
    return RawClient(counted.host, counted.port, settings=settings or None)


def test_h2_rapid_reset_counts_the_reset_budget(h2):
    client = h2_client(h2)
    try:
        with h2.fires(LIMITS, "limit_h2_resets"):
            client.send(
                b"".join(client.f.request(i, "/", end_stream=False) + client.f.rst(i) for i in range(1, 200, 2))
            )
            assert client.goaway().error_code == ENHANCE_YOUR_CALM
            client.wait_closed()
    finally:
        client.close()


def test_h2_made_you_reset_counts_the_reset_budget(h2):
    client = h2_client(h2)
    try:
        with h2.fires(LIMITS, "limit_h2_resets"):
            client.send(
                b"".join(client.f.request(i, "/slow?ms=5000") + client.f.data(i, b"x") for i in range(1, 200, 2))
            )
            assert client.goaway().error_code == ENHANCE_YOUR_CALM
            client.wait_closed()
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["PING", "SETTINGS", "PRIORITY", "empty DATA", "unknown frames", "empty CONTINUATION"])
def test_h2_floods_count_the_control_frame_budget(h2, kind):
    client = h2_client(h2)
    f = client.f
    try:
        client.send(f.request(1, "/", end_stream=False))
        if kind == "empty CONTINUATION":
            # 50 is under h2's own cap of 64 CONTINUATION frames a block.
            flood = f.headers(3, request_headers(), end_headers=False) + f.continuation(3, b"") * 60
        else:
            one = {
                "PING": f.ping(),
                "SETTINGS": f.settings(),
                "PRIORITY": f.priority(1),
                "empty DATA": f.data(1, b""),
                "unknown frames": f.unknown(),
            }[kind]
            flood = one * 200
        with h2.fires(LIMITS, "limit_h2_control_frames"):
            try:
                client.send(flood)
            except OSError:
                pass  # closed on us mid-flood
            assert client.goaway().error_code == ENHANCE_YOUR_CALM
    finally:
        client.close()


def test_h2_empty_continuation_flood_counts_h2s_own_cap():
    """With the default control-frame budget (1000), h2's cap of 64
    CONTINUATION frames a header block ends an empty-CONTINUATION flood first."""
    with serving(H2_APP, "--metrics-endpoint", METRICS) as server:
        counted = Counted(server)
        client = h2_client(counted)
        f = client.f
        try:
            with counted.fires(LIMITS, "h2_continuation_frames"):
                client.send(f.headers(1, request_headers(), end_headers=False) + f.continuation(1, b"") * 100)
                assert client.goaway().error_code == 0x1  # PROTOCOL_ERROR
        finally:
            client.close()


def test_h2_continuation_flood_counts_the_header_list_limit(h2):
    client = h2_client(h2)
    try:
        with h2.fires(LIMITS, "limit_h2_header_list_bytes"):
            client.send(client.f.headers(1, request_headers(), end_headers=False))
            try:
                for _ in range(100):
                    client.send(client.f.continuation(1, b"\x00" * 1000))
            except OSError:
                pass
            assert client.goaway().error_code == ENHANCE_YOUR_CALM
    finally:
        client.close()


def test_h2_hpack_bomb_counts_the_header_list_limit(h2):
    client = h2_client(h2)
    try:
        client.send(client.f.headers(1, request_headers() + [(b"x-bomb", b"a" * 3000)]))
        client.response(1)
        with h2.fires(LIMITS, "limit_h2_header_list_bytes"):
            client.send(client.f.headers(3, request_headers() + [(b"x-bomb", b"a" * 3000)] * 10))
            assert client.goaway().error_code in (ENHANCE_YOUR_CALM, 0x9)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("limit_h2_header_list_bytes", [(b"x-big", b"a" * 6000)]),
        ("limit_request_headers", [(b"x-n%d" % i, b"v") for i in range(40)]),
    ],
)
def test_h2_431_counts_its_limit(h2, name, extra):
    client = h2_client(h2)
    try:
        with h2.fires(LIMITS, name):
            client.send(client.f.headers(1, request_headers() + extra))
            assert client.response(1)[0][b":status"] == b"431"
    finally:
        client.close()


@pytest.mark.parametrize("declared", [True, False])
def test_h2_413_counts_the_body_limit(h2, declared):
    client = h2_client(h2)
    try:
        with h2.fires(LIMITS, "limit_request_body_bytes"):
            extra = {"content-length": "100"} if declared else {}
            client.send(client.f.headers(1, request_headers("/upload", "POST", **extra), end_stream=False))
            client.send(client.f.data(1, b"x" * 100, end_stream=True))
            assert client.response(1)[0][b":status"] == b"413"
    finally:
        client.close()


def test_h2_frame_over_the_frame_limit_is_counted(h2):
    client = h2_client(h2)
    try:
        with h2.fires(LIMITS, "limit_h2_frame_bytes"):
            client.send(client.f.request(1, "/upload", method="POST", end_stream=False))
            client.send(client.f.data(1, b"x" * 20000))  # over SETTINGS_MAX_FRAME_SIZE 16384
            assert client.goaway().error_code == 0x6  # FRAME_SIZE_ERROR
    finally:
        client.close()


def test_h2_streams_over_the_limit_are_counted():
    with serving(H2_APP, "--metrics-endpoint", METRICS, "--limit-concurrent-streams", "3") as server:
        counted = Counted(server)
        client = h2_client(counted)
        try:
            for stream_id in (1, 3, 5):
                client.send(client.f.headers(stream_id, request_headers(f"/wait-disconnect?id={stream_id}"), False))
            for stream_id in (1, 3, 5):
                server.wait_for_output(f"STARTED /wait-disconnect id={stream_id}\n")
            with counted.fires(LIMITS, "limit_concurrent_streams"):
                client.send(client.f.request(7, "/"))
                assert client.rst(7).error_code == REFUSED_STREAM
        finally:
            client.close()


# -- HTTP/2 timers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def h2_timers():
    with serving(
        H2_APP,
        "--metrics-endpoint",
        METRICS,
        "--timeout-request-head",
        "0.5",
        "--timeout-keep-alive",
        "0.5",
        "--timeout-request-body",
        "0.5",
        "--timeout-send",
        "1",
    ) as server:
        yield Counted(server)


def test_h2_idle_before_a_request_counts_the_head_timeout(h2_timers):
    with h2_timers.fires(TIMEOUTS, "timeout_request_head"):
        client = h2_client(h2_timers)
        try:
            assert client.goaway().error_code == 0
            client.wait_closed()
        finally:
            client.close()


def test_h2_idle_after_a_request_counts_the_keep_alive_timeout(h2_timers):
    client = h2_client(h2_timers)
    try:
        with h2_timers.fires(TIMEOUTS, "timeout_keep_alive"):
            client.send(client.f.request(1, "/"))
            assert client.response(1)[1] == b"ok"
            assert client.goaway().error_code == 0
            client.wait_closed()
    finally:
        client.close()


def test_h2_body_that_never_comes_counts_the_body_timeout(h2_timers):
    client = h2_client(h2_timers)
    try:
        with h2_timers.fires(TIMEOUTS, "timeout_request_body"):
            client.send(client.f.request(1, "/upload", method="POST", end_stream=False))
            assert client.response(1)[0][b":status"] == b"408"
    finally:
        client.close()


def test_h2_shut_window_counts_the_send_timeout(h2_timers):
    client = h2_client(h2_timers, initial_window_size=0)
    try:
        with h2_timers.fires(TIMEOUTS, "timeout_send"):
            client.send(client.f.request(1, "/download?mib=1"))
            assert client.rst(1).error_code == INTERNAL_ERROR
    finally:
        client.close()


# -- HTTP/1.1 ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def h1():
    with serving(
        H2_APP,
        "--metrics-endpoint",
        METRICS,
        "--limit-pipelined-requests",
        "2",
        "--limit-request-head",
        "2048",
        "--limit-request-headers",
        "20",
        "--timeout-request-body",
        "0.5",
        "--timeout-keep-alive",
        "0.5",
        "--timeout-send",
        "1",
    ) as server:
        yield Counted(server)


def test_h1_pipelining_bound_is_counted(h1):
    with h1.fires(LIMITS, "limit_pipelined_requests"), socket.create_connection((h1.host, h1.port), 10) as sock:
        # One read of over 1 KiB (a shorter one is parsed whole): 2 requests
        # parsed, the rest kept and reading paused until responses make room.
        # Each app call waits a moment: on Python 3.12+ an app task starts
        # eagerly, and one that never waits answers before the next request
        # is parsed, so the bound would never be reached.
        sock.sendall(b"GET /slow?ms=1 HTTP/1.1\r\nHost: t\r\n\r\n" * 40)
        for _ in range(40):
            assert recv_response(sock)[0].startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    ("name", "request_bytes", "status"),
    [
        ("limit_request_head_bytes", b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n", b"431"),
        ("limit_request_headers", b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-A: b\r\n" * 30 + b"\r\n", b"431"),
    ],
)
def test_h1_head_limits_are_counted(h1, name, request_bytes, status):
    with h1.fires(LIMITS, name), socket.create_connection((h1.host, h1.port), 10) as sock:
        sock.sendall(request_bytes)
        assert recv_response(sock)[0].split(b" ")[1] == status


def test_h1_body_and_keep_alive_timeouts_are_counted(h1):
    with h1.fires(TIMEOUTS, "timeout_request_body"), socket.create_connection((h1.host, h1.port), 10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        assert b" 408 " in recv_response(sock)[0]
    with h1.fires(TIMEOUTS, "timeout_keep_alive"), socket.create_connection((h1.host, h1.port), 10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert b" 200 " in recv_response(sock)[0]
        assert sock.recv(65536) == b""  # closed after the keep-alive timeout


def test_h1_client_that_reads_nothing_counts_the_send_timeout(h1):
    # The socket stays open, unread, until the count is seen (the inner block).
    with socket.create_connection((h1.host, h1.port), 10) as sock, h1.fires(TIMEOUTS, "timeout_send"):
        sock.sendall(b"GET /download?mib=64 HTTP/1.1\r\nHost: t\r\n\r\n")


def test_connection_limit_is_counted():
    with serving(H2_APP, "--metrics-endpoint", METRICS, "--limit-concurrency", "1") as server:
        counted = Counted(server)
        with socket.create_connection((server.host, server.port), 10) as first:
            first.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert b" 200 " in recv_response(first)[0]
            with (
                counted.fires(LIMITS, "limit_concurrent_connections"),
                socket.create_connection((server.host, server.port), 10) as second,
            ):
                second.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                assert b" 503 " in recv_response(second)[0]


# -- the application's timers (every protocol) -----------------------------------------------


def test_response_timeout_is_counted():
    with serving(H2_APP, "--metrics-endpoint", METRICS, "--timeout-response", "0.5") as server:
        counted = Counted(server)
        with counted.fires(TIMEOUTS, "timeout_response"), socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(b"GET /hang?id=rt HTTP/1.1\r\nHost: t\r\n\r\n")
            assert b" 503 " in recv_response(sock)[0]


def test_app_close_timeout_is_counted():
    with serving(H2_APP, "--metrics-endpoint", METRICS, "--timeout-app-close", "0.5") as server:
        counted = Counted(server)
        with counted.fires(TIMEOUTS, "timeout_app_close"):
            with socket.create_connection((server.host, server.port)) as sock:
                sock.sendall(b"GET /hang?id=ac HTTP/1.1\r\nHost: t\r\n\r\n")
                server.wait_for_output("STARTED /hang id=ac\n")
            server.wait_for_output("CANCELLED id=ac\n")


# -- WebSocket -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws():
    with serving(
        WS_APP,
        "--metrics-endpoint",
        METRICS,
        "--limit-ws-message",
        "65536",
        "--limit-ws-frame",
        "32768",
        "--limit-ws-fragments",
        "8",
        "--timeout-ws-handshake",
        "0.5",
    ) as server:
        yield Counted(server)


@pytest.mark.parametrize(
    ("name", "frames"),
    [
        ("limit_ws_frame_bytes", [client_frame(2, b"f" * 40_000)]),
        (
            "limit_ws_message_bytes",
            [client_frame(2, b"m" * 30_000, fin=False), client_frame(0, b"m" * 30_000, fin=False)]
            + [client_frame(0, b"m" * 30_000)],
        ),
        ("limit_ws_fragments", [client_frame(2, b"x", fin=False)] + [client_frame(0, b"x", fin=False)] * 9),
    ],
)
def test_ws_size_limits_close_1009_and_are_counted(ws, name, frames):
    with ws.fires(LIMITS, name):
        client = WSClient(ws.host, ws.port, "/echo")
        try:
            client.send(b"".join(frames))
            assert client.read_close()[0] == 1009
        finally:
            client.close()


def test_ws_handshake_timeout_is_counted(ws):
    from websockets.exceptions import InvalidStatus

    with ws.fires(TIMEOUTS, "timeout_ws_handshake"), pytest.raises(InvalidStatus) as info:
        open_ws(ws.server, "/slow-accept?id=hs")
    assert info.value.response.status_code == 503


def test_ws_ping_timeout_is_counted():
    with serving(
        WS_APP, "--metrics-endpoint", METRICS, "--timeout-ws-ping-interval", "0.3", "--timeout-ws-ping", "0.5"
    ) as server:
        counted = Counted(server)
        with counted.fires(TIMEOUTS, "timeout_ws_ping"):
            client = WSClient(server.host, server.port, "/echo")
            try:
                assert client.read_frame()[0] == 9  # a ping we never answer
                assert client.at_eof()
            finally:
                client.close()


def test_ws_lifetime_and_close_timeouts_are_counted():
    with serving(
        WS_APP, "--metrics-endpoint", METRICS, "--timeout-ws-lifetime", "0.5", "--timeout-ws-close", "0.5"
    ) as server:
        counted = Counted(server)
        client = WSClient(server.host, server.port, "/echo")
        try:
            with counted.fires(TIMEOUTS, "timeout_ws_lifetime"):
                assert client.read_close()[0] == 1001
            with counted.fires(TIMEOUTS, "timeout_ws_close"):
                assert client.at_eof()  # our Close is never answered
        finally:
            client.close()


def test_nothing_is_counted_for_traffic_within_the_limits(h2, ws):
    """The counters move only when a limit fires: normal HTTP/2 and WebSocket
    traffic leaves both families as they were."""
    before = scrape(h2.url), scrape(ws.url)
    client = h2_client(h2)
    try:
        for stream_id in (1, 3, 5):
            client.send(client.f.request(stream_id, "/"))
            assert client.response(stream_id)[1] == b"ok"
    finally:
        client.close()
    with open_ws(ws.server, "/echo") as conn:
        conn.send([b"a" * 1000] * 4)
        assert conn.recv(timeout=10) == b"a" * 4000
    after = scrape(h2.url), scrape(ws.url)
    for family in (LIMITS, TIMEOUTS):
        assert counts(after[0], family) == counts(before[0], family)
        assert counts(after[1], family) == counts(before[1], family)
