"""A real nginx in front of the server, with the site configuration the
deployment guide shows (``docs/examples/nginx.conf``, ports and certificate
paths replaced): HTTP/1.1 and WebSocket proxying with ``X-Forwarded-*``, TLS
and HTTP/2 at nginx, a stripped URL prefix as ``root_path``.

The server trusts only nginx's own address (127.0.0.1); clients connect from
127.0.0.7, another loopback address, so that what nginx reports and what a
client claims can be told apart.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess

import pytest
from websockets.sync.client import connect as ws_connect

from tests.deploy import FORGED_PROXY_HEADERS, free_port, get_json, make_certs, require, serving, start_nginx

APP = "tests.deploy:app"
CLIENT = "127.0.0.7"
NGINX = "127.0.0.1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The server behind nginx: yields (server, nginx http port, nginx https port, certs)."""
    tmp = tmp_path_factory.mktemp("nginx")
    certs = make_certs(tmp)
    # As the deployment guide runs it behind this nginx.conf: every header nginx sets is believed.
    trust = ("--proxy-headers-trust", "for,proto,host,port,prefix")
    with serving(APP, "--proxy-headers", "--forwarded-allow-ips", NGINX, *trust) as server:
        http_port, https_port = free_port(), free_port()
        nginx = start_nginx(
            tmp,
            [
                (r"listen 80;", f"listen {NGINX}:{http_port};"),
                (r"listen 443 ssl http2;", f"listen {NGINX}:{https_port} ssl http2;"),
                (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{server.port};"),
                (r"/etc/ssl/example\.com/fullchain\.pem", str(certs["cert"])),
                (r"/etc/ssl/example\.com/privkey\.pem", str(certs["key"])),
            ],
            [http_port, https_port],
        )
        try:
            yield server, http_port, https_port, certs
        finally:
            nginx.stop()


def test_http11_with_x_forwarded_headers(stack):
    """Through nginx the scope names the real client, nginx's scheme, host and port, not nginx's connection."""
    _server, http_port, _https, _certs = stack
    scope = get_json(NGINX, http_port, "/scope?x=1", source=CLIENT)
    assert scope["client"][0] == CLIENT
    assert scope["scheme"] == "http"
    assert scope["server"] == [NGINX, http_port]
    assert dict(scope["headers"])["host"] == f"{NGINX}:{http_port}"
    assert scope["path"] == "/scope" and scope["query_string"] == "x=1"
    assert scope["root_path"] == ""


def test_client_claims_through_nginx_change_nothing(stack):
    """A client's own X-Forwarded-*/Forwarded headers cannot name another client, scheme or host through nginx."""
    _server, http_port, _https, _certs = stack
    forged = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Port": "443",
        "Forwarded": "for=203.0.113.9;proto=https",
    }
    scope = get_json(NGINX, http_port, "/scope", headers=forged, source=CLIENT)
    assert scope["client"][0] == CLIENT
    assert scope["scheme"] == "http"
    assert scope["server"] == [NGINX, http_port]
    # nginx appended the client it saw; the forged hop to its left is not believed.
    assert dict(scope["headers"])["x-forwarded-for"] == f"203.0.113.9, {CLIENT}"


@pytest.mark.parametrize("location", ["/scope", "/app/scope"])
def test_client_proxy_headers_through_the_guides_nginx_change_nothing(stack, location):
    """With every proxy header trusted, a client's own X-Forwarded-Host, -Port, -Prefix, -Proto, -For and
    Forwarded reach the app without effect through the guide's nginx.conf, in both of its locations:
    nginx overwrites or drops each one.

    Source: issue 15, item 5 (outside attack)."""
    _server, http_port, _https, _certs = stack
    forged = FORGED_PROXY_HEADERS
    scope = get_json(NGINX, http_port, location, headers=forged, source=CLIENT)
    assert scope["client"][0] == CLIENT
    assert scope["scheme"] == "http"
    assert scope["server"] == [NGINX, http_port]
    headers = dict(scope["headers"])
    assert headers["host"] == f"{NGINX}:{http_port}"
    assert headers["x-forwarded-host"] == NGINX and headers["x-forwarded-port"] == str(http_port)
    assert "forwarded" not in headers
    expected_root = "/app" if location.startswith("/app/") else ""
    assert scope["root_path"] == expected_root and scope["path"] == expected_root + "/scope"
    assert headers.get("x-forwarded-prefix", "") == expected_root
    assert "evil.example" not in json.dumps(scope)


def test_stripped_prefix_becomes_root_path(stack):
    """nginx's X-Forwarded-Prefix for location /app/ becomes root_path, and path keeps it in front."""
    _server, http_port, _https, _certs = stack
    scope = get_json(NGINX, http_port, "/app/scope", source=CLIENT)
    assert scope["root_path"] == "/app"
    assert scope["path"] == "/app/scope"
    assert scope["client"][0] == CLIENT


def _ws_socket(port: int) -> socket.socket:
    return socket.create_connection((NGINX, port), timeout=10, source_address=(CLIENT, 0))


@pytest.mark.parametrize("prefix", ["", "/app"])
def test_websocket_through_nginx(stack, prefix):
    """A WebSocket through nginx is accepted, echoes, and its scope has the real
    client and scheme ws; under the guide's /app/ location too, with root_path
    /app (that location forwarded no Upgrade: a fresh-clone check found the
    WebSocket reaching the app as plain HTTP)."""
    _server, http_port, _https, _certs = stack
    with ws_connect(f"ws://{NGINX}:{http_port}{prefix}/ws", sock=_ws_socket(http_port), open_timeout=10) as ws:
        scope = json.loads(ws.recv(timeout=10))
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["client"][0] == CLIENT
    assert scope["path"] == f"{prefix}/ws"
    assert scope["root_path"] == prefix


def test_tls_and_http2_at_nginx(stack):
    """curl speaks HTTP/2 over TLS to nginx; the app sees scheme https, the client and nginx's host and port."""
    _server, _http, https_port, certs = stack
    curl = require("curl")
    result = subprocess.run(
        [
            curl,
            "--silent",
            "--show-error",
            "--http2",
            "--max-time",
            "10",
            "--cacert",
            str(certs["ca"]),
            "--resolve",
            f"localhost:{https_port}:{NGINX}",
            "--interface",
            CLIENT,
            "--write-out",
            "\n%{http_version}",
            f"https://localhost:{https_port}/scope",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    body, _, version = result.stdout.rpartition("\n")
    assert version == "2"
    scope = json.loads(body)
    assert scope["scheme"] == "https"
    assert scope["client"][0] == CLIENT
    assert scope["server"] == ["localhost", https_port]
    assert dict(scope["headers"])["host"] == f"localhost:{https_port}"


def test_secure_websocket_through_nginx(stack):
    """A WebSocket over TLS at nginx reaches the app with scheme wss."""
    _server, _http, https_port, certs = stack
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    url = f"wss://localhost:{https_port}/ws"
    with ws_connect(url, sock=_ws_socket(https_port), ssl=context, open_timeout=10) as ws:
        scope = json.loads(ws.recv(timeout=10))
        ws.send("over tls")
        assert ws.recv(timeout=10) == "over tls"
    assert scope["scheme"] == "wss"
    assert scope["client"][0] == CLIENT
    assert scope["server"] == ["localhost", https_port]
