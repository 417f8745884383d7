"""Chromium (Debian's, driven by Playwright) loads the demo over https with
HTTP/2, and its WebSocket echo travels over the same HTTP/2 connection as an
RFC 8441 extended CONNECT: the server's access log shows the WebSocket as
HTTP/2, and its metrics, read while the WebSocket is open, show one open TCP
connection, an HTTP/2 one, carrying the WebSocket. (Chromium also opens and
drops one connection it does not use, with and without RFC 8441.) Chromium
uses RFC 8441 only where the server advertises
SETTINGS_ENABLE_CONNECT_PROTOCOL, which ``--no-ws-over-h2`` turns off: then
the same page opens a second connection for its WebSocket, over HTTP/1.1."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.deploy import make_certs
from tests.serving import start_server
from tests.test_browser import _open_demo, browser  # noqa: F401 (the fixture)
from tests.test_metrics_e2e import metrics_url, scrape

_LINE = re.compile(r'"(GET|WSCONNECT|WSDISCONNECT) (/\S*) (HTTP/[\d.]+)" (\d+)')


def _access_lines(server: Any, want: int) -> list[tuple[str, str, str, str]]:
    deadline = time.monotonic() + 10
    while True:
        found = _LINE.findall(server.read_output(0.1))
        if len(found) >= want or time.monotonic() > deadline:
            return found


def _open(url: str) -> dict[str, float]:
    """The server's open connections by protocol, and its open WebSockets (its metrics)."""
    found = {}
    for (name, labels), value in scrape(url).items():
        if name == "twisted_asgi_connections_open" and value:
            found[dict(labels)["protocol"]] = value
        elif name == "twisted_asgi_websockets_open":
            found["websockets"] = value
    return found


@pytest.mark.parametrize("ws_over_h2", [True, False])
def test_demo_websocket_rides_the_pages_http2_connection(browser, tmp_path, ws_over_h2):  # noqa: F811
    certs = make_certs(tmp_path)
    endpoint = f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    args = ["--access-log", "-", "--metrics-endpoint", "tcp:port=0:interface=127.0.0.1"]
    args += [] if ws_over_h2 else ["--no-ws-over-h2"]
    server = start_server("twisted_asgi.demo:app", *args, endpoint=endpoint)
    try:
        url = metrics_url(server)
        context, page, _responses = _open_demo(browser, f"https://127.0.0.1:{server.port}/")
        try:
            assert page.text_content("#proto") == "https, HTTP/2"
            page.wait_for_function("document.getElementById('log').textContent.startsWith('connected')")
            page.fill("#msg", "over one connection")
            page.click("#f button")
            page.wait_for_function("document.getElementById('log').textContent.includes('echo: over one connection')")
            lines = _access_lines(server, 2)
            gauges = _open(url)
            # The browser closes: the closing handshake completes cleanly.
            page.evaluate("ws.close(1000)")
            page.wait_for_function("document.getElementById('log').textContent.includes('closed (1000)')")
            assert ("WSDISCONNECT", "/ws", "1000") in [(k, p, c) for k, p, _v, c in _access_lines(server, 3)]
        finally:
            context.close()
        assert ("GET", "/", "HTTP/2.0", "200") in lines, lines
        if ws_over_h2:
            assert ("WSCONNECT", "/ws", "HTTP/2.0", "200") in lines, lines
            assert gauges == {"http/2": 1, "websockets": 1}  # the page and its WebSocket: one TCP connection
        else:
            assert ("WSCONNECT", "/ws", "HTTP/1.1", "101") in lines, lines
            assert gauges == {"http/2": 1, "websocket": 1, "websockets": 1}
    finally:
        assert server.stop() == 0
    assert "Traceback" not in "".join(server.output)
