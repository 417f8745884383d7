"""``--metrics-endpoint``: a running server scraped over loopback with
``prometheus_client``'s parser while real clients (raw sockets, h2load,
websockets) use it, in one process and under ``--workers``.
Source: issue 19, item 4."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect as ws_connect

from tests.deploy import wait_for
from tests.serving import recv_response, start_server
from tests.ws_h2_client import open_ws_h2

APP = "tests.metrics_app:app"
METRICS = "tcp:port=0:interface=127.0.0.1"
_AT = re.compile(r"Metrics at http://([\d.]+):(\d+)/metrics")


def metrics_url(server) -> str:
    text = server.wait_for_output("Metrics at", 20)
    host, port = _AT.search(text).groups()
    return f"http://{host}:{port}/metrics"


def scrape(url: str) -> dict:
    """{(name, sorted labels): value} of one scrape."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def get(server, path: str, body: bytes = b"") -> bytes:
    with server.connect() as sock:
        head = f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        if body:
            head = f"POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
        sock.sendall(head.encode() + b"\r\n" + body)
        return recv_response(sock)[0]


def test_counts_every_protocol_from_outside():
    server = start_server(APP, "--metrics-endpoint", METRICS, "--limit-request-body", "10")
    try:
        url = metrics_url(server)
        for _ in range(5):
            assert b" 200 " in get(server, "/")
        assert b" 500 " in get(server, "/boom")
        assert b" 413 " in get(server, "/", b"x" * 100)
        h2load = shutil.which("h2load")
        assert h2load, "h2load is needed (apt-get install nghttp2-client)"
        done = subprocess.run(
            [h2load, "-n", "12", "-c", "2", "-m", "4", f"http://127.0.0.1:{server.port}/h2"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "12 succeeded" in done.stdout, done.stdout
        with ws_connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            for i in range(3):
                ws.send(f"m{i}")
                assert ws.recv(timeout=10) == f"m{i}"
            # While the WebSocket is open: one connection speaks it, and its
            # messages are read from it live.
            live = scrape(url)
            assert value(live, "twisted_asgi_connections_open", protocol="websocket") == 1
            assert value(live, "twisted_asgi_websockets_open") == 1
            assert value(live, "twisted_asgi_websocket_messages_total", direction="received") == 3
            assert value(live, "twisted_asgi_websocket_messages_total", direction="sent") == 3
        # A WebSocket over HTTP/2 (RFC 8441) counts its messages on its connection.
        with open_ws_h2(server, "/ws") as ws2:
            for i in range(2):
                ws2.send(f"h{i}")
                assert ws2.recv(timeout=10) == f"h{i}"
            live = scrape(url)
            assert value(live, "twisted_asgi_websocket_messages_total", direction="received") == 5
            assert value(live, "twisted_asgi_websocket_messages_total", direction="sent") == 5
        after = {}

        def settled() -> bool:
            after.update(scrape(url))
            return value(after, "twisted_asgi_websockets_open") == 0 and not any(
                name == "twisted_asgi_connections_open" and v for (name, _labels), v in after.items()
            )

        wait_for(settled, 10, "every connection to close")
        ok = value(after, "twisted_asgi_responses_total", protocol="http/1.1", status_class="2xx")
        assert ok == 5
        assert value(after, "twisted_asgi_responses_total", protocol="http/1.1", status_class="5xx") == 1
        assert value(after, "twisted_asgi_responses_total", protocol="http/1.1", status_class="4xx") == 1
        assert value(after, "twisted_asgi_responses_total", protocol="http/2", status_class="2xx") == 12
        assert value(after, "twisted_asgi_responses_total", protocol="websocket", status_class="1xx") == 1
        assert value(after, "twisted_asgi_responses_total", protocol="websocket", status_class="2xx") == 1
        assert value(after, "twisted_asgi_request_duration_seconds_count", protocol="http/2") == 12
        assert value(after, "twisted_asgi_http2_streams_total") == 13  # h2load's 12 and the WebSocket's
        assert value(after, "twisted_asgi_websocket_messages_total", direction="received") == 5
        assert value(after, "twisted_asgi_websocket_messages_total", direction="sent") == 5
        assert value(after, "twisted_asgi_app_exceptions_total", protocol="http/1.1") == 1
        assert value(after, "twisted_asgi_limits_total", limit="limit_request_body_bytes") == 1
        # 7 HTTP/1.1 connections, 2 of h2load, 1 WebSocket, 1 HTTP/2 WebSocket.
        assert value(after, "twisted_asgi_connections_total") == 11
        assert value(after, "twisted_asgi_received_bytes_total", protocol="http/2") > 0
        assert value(after, "twisted_asgi_sent_bytes_total", protocol="http/1.1") > 5 * len(b"HTTP/1.1 200 OK\r\n")
        assert value(after, "twisted_asgi_sent_bytes_total", protocol="websocket") > 0
        wait_for(lambda: value(scrape(url), "twisted_asgi_event_loop_lag_seconds_count") > 0, 10, "a lag reading")
        # Only /metrics: anything else is 404, and a scrape is no app request.
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10)
        assert missing.value.code == 404
        missing.value.close()
        assert value(scrape(url), "twisted_asgi_responses_total", protocol="http/1.1", status_class="2xx") == 5
    finally:
        assert server.stop() == 0


def test_timeouts_are_counted_by_name():
    server = start_server(APP, "--metrics-endpoint", METRICS, "--timeout-request-head", "0.5")
    try:
        url = metrics_url(server)
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost")  # never finished
            sock.settimeout(10)
            assert b" 408 " in sock.recv(65536)
        wait_for(
            lambda: value(scrape(url), "twisted_asgi_timeouts_total", timeout="timeout_request_head") == 1,
            10,
            "the head timeout to be counted",
        )
    finally:
        assert server.stop() == 0


def test_a_metrics_port_in_use_is_said_and_the_app_still_served():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = start_server(APP, "--metrics-endpoint", f"tcp:port={port}:interface=127.0.0.1")
        try:
            text = server.wait_for_output("Cannot serve metrics", 20)
            assert f"tcp:port={port}" in text
            assert b" 200 " in get(server, "/")
        finally:
            assert server.stop() == 0


def test_workers_add_up_and_keep_counting_across_a_dead_worker():
    server = start_server(APP, "--workers", "2", "--metrics-endpoint", METRICS)
    try:
        url = metrics_url(server)
        pids: set[int] = set()

        def two_workers() -> bool:
            pids.update(int(p) for p in re.findall(r"Worker (\d+) is serving", server.read_output(0.1)))
            return len(pids) == 2

        wait_for(two_workers, 60, "two workers serving")
        # Every request on a new connection: the kernel spreads them over both.
        deadline = time.monotonic() + 30
        sent = 0
        while sent < 40 and time.monotonic() < deadline:
            try:
                if b" 200 " in get(server, "/"):
                    sent += 1
            except OSError:
                pass
        assert sent == 40

        def total() -> float:
            return value(scrape(url), "twisted_asgi_responses_total", protocol="http/1.1", status_class="2xx")

        wait_for(lambda: total() == 40, 10, "the workers' snapshots to add up to 40")
        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: value(scrape(url), "twisted_asgi_worker_restarts_total", reason="died") == 1,
            20,
            "the dead worker to be counted",
        )
        # Its counters are kept: the total never goes backwards.
        assert total() == 40
    finally:
        assert server.stop() == 0


def test_without_prometheus_client_the_option_stops_the_server_with_one_line(tmp_path):
    hidden = tmp_path / "prometheus_client"
    hidden.mkdir()
    (hidden / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    from tests.serving import ROOT

    server = start_server(
        APP,
        "--metrics-endpoint",
        METRICS,
        env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
        wait=False,
    )
    assert server.wait(30) != 0
    text = server.read_output(1)
    assert "--metrics-endpoint needs prometheus_client: pip install 'twisted-asgi[metrics]'" in text
    assert "Traceback" not in text


def test_bytes_sent_are_exact_through_partial_writes():
    """A 16 MiB response to a client that reads slowly at first goes out in
    partial sends (the kernel's buffers fill, the rest waits in Twisted's):
    the bytes counted are the bytes the client received, head and body."""
    server = start_server("tests.h2frames:app", "--metrics-endpoint", METRICS)
    try:
        url = metrics_url(server)
        received = 0
        with server.connect() as sock:
            sock.sendall(b"GET /download?mib=16 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            sock.settimeout(30)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += len(chunk)
                if received < 4 * 2**20:
                    time.sleep(0.005)  # slow at first: the server's sends come up short
        assert received > 16 * 2**20
        wait_for(
            lambda: value(scrape(url), "twisted_asgi_sent_bytes_total", protocol="http/1.1") == received,
            10,
            f"{received} bytes counted",
        )
    finally:
        assert server.stop() == 0
