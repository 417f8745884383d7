"""``--metrics-endpoint`` as deployed: the endpoint on an ``ssl:`` listener,
scraped over HTTPS with the test CA; and traffic through the guide's nginx
(docs/examples/nginx.conf: HTTP/1.1, HTTP/2 over TLS at the edge, WebSocket)
counted by the protocol the server itself speaks (nginx talks HTTP/1.1 to it).
Source: issue 19, item 4."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect as ws_connect

from tests.deploy import free_port, make_certs, serving, start_nginx, wait_for
from tests.test_metrics_e2e import APP, METRICS, get, metrics_url, scrape, value

_AT = re.compile(r"Metrics at (https?)://([\d.]+):(\d+)/metrics")


def test_metrics_over_tls_with_the_test_ca(tmp_path):
    certs = make_certs(tmp_path)
    endpoint = f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    with serving(APP, "--metrics-endpoint", endpoint) as server:
        scheme, host, port = _AT.search(server.wait_for_output("Metrics at", 20)).groups()
        assert scheme == "https"
        for _ in range(3):
            assert b" 200 " in get(server, "/")
        context = ssl.create_default_context(cafile=str(certs["ca"]))
        url = f"https://localhost:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode("utf-8")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert value(samples, "twisted_asgi_responses_total", protocol="http/1.1", status_class="2xx") == 3
        # The listener speaks TLS only: a plain-text scrape gets no metrics.
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            try:
                answer = sock.recv(65536)
            except ConnectionResetError:
                answer = b""
        assert b"twisted_asgi_" not in answer
        # A client that does not trust the CA is refused the handshake.
        with pytest.raises(urllib.error.URLError) as refused:
            urllib.request.urlopen(url, timeout=10, context=ssl.create_default_context())
        assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_traffic_through_nginx_is_counted_by_the_protocol_the_server_speaks(tmp_path):
    h2load = shutil.which("h2load")
    assert h2load, "h2load is needed (apt-get install nghttp2-client)"
    certs = make_certs(tmp_path)
    trust = ("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1")
    with serving(APP, "--metrics-endpoint", METRICS, *trust) as server:
        url = metrics_url(server)
        http_port, https_port = free_port(), free_port()
        nginx = start_nginx(
            tmp_path,
            [
                (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
                (r"listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
                (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{server.port};"),
                (r"/etc/ssl/example\.com/fullchain\.pem", str(certs["cert"])),
                (r"/etc/ssl/example\.com/privkey\.pem", str(certs["key"])),
            ],
            [http_port, https_port],
        )
        try:
            # HTTP/1.1 to nginx, then HTTP/2 over TLS to nginx (h2load checks ALPN h2).
            for _ in range(3):
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/", timeout=10) as response:
                    assert response.status == 200
            done = subprocess.run(
                [h2load, "-n", "8", "-c", "1", f"https://127.0.0.1:{https_port}/h2"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert "8 succeeded" in done.stdout and "Application protocol: h2" in done.stdout, done.stdout
            with ws_connect(f"ws://127.0.0.1:{http_port}/ws", proxy=None, open_timeout=10) as ws:
                ws.send("through nginx")
                assert ws.recv(timeout=10) == "through nginx"
                live = scrape(url)
                assert value(live, "twisted_asgi_connections_open", protocol="websocket") == 1
                assert value(live, "twisted_asgi_websockets_open") == 1

            def counted() -> dict:
                samples = scrape(url)
                done = value(samples, "twisted_asgi_websockets_open") == 0
                return samples if done else {}

            after = wait_for(counted, 10, "the WebSocket's end to be counted")
            # nginx speaks HTTP/1.1 to the server, whatever the client spoke to nginx.
            assert value(after, "twisted_asgi_responses_total", protocol="http/1.1", status_class="2xx") == 11
            assert not any(
                name == "twisted_asgi_responses_total" and dict(labels)["protocol"] == "http/2"
                for (name, labels) in after
            )
            assert value(after, "twisted_asgi_responses_total", protocol="websocket", status_class="1xx") == 1
            assert value(after, "twisted_asgi_websocket_messages_total", direction="received") == 1
            assert value(after, "twisted_asgi_http2_streams_total") == 0
            # nginx keeps its upstream connections alive: fewer than the requests.
            assert 1 <= value(after, "twisted_asgi_connections_total") < 12
        finally:
            nginx.stop()
