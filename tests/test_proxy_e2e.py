"""Spoofing attempts against a running server, over loopback: proxy headers
and PROXY protocol headers from peers that are not trusted change nothing,
while the same bytes from a trusted peer do (so the tests can fail).

The server trusts 127.0.0.1 only; the attacker connects from 127.0.0.7.
"""

from __future__ import annotations

import socket
import time

from tests.deploy import get_json, http_get, serving
from tests.serving import recv_until_closed

APP = "tests.deploy:app"
TRUSTED = "127.0.0.1"
ATTACKER = "127.0.0.7"

FORGED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "bank.example",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Prefix": "/admin",
    "Forwarded": 'for="203.0.113.9";proto=https;host=bank.example',
}


def test_forged_proxy_headers_from_an_untrusted_peer_change_nothing():
    """An untrusted peer's X-Forwarded-*, Forwarded and prefix headers leave client, scheme,
    server and root_path alone."""
    with serving(APP, "--proxy-headers", "--forwarded-allow-ips", TRUSTED) as server:
        scope = get_json(server.host, server.port, "/scope", headers=FORGED, source=ATTACKER)
        assert scope["client"][0] == ATTACKER
        assert scope["scheme"] == "http"
        assert scope["server"] == [server.host, server.port]
        assert scope["root_path"] == "" and scope["path"] == "/scope"
        # The same headers from the trusted address are believed.
        trusted = get_json(server.host, server.port, "/scope", headers=FORGED, source=TRUSTED)
        assert trusted["client"][0] == "203.0.113.9"
        assert trusted["scheme"] == "https"
        assert trusted["server"] == ["bank.example", 443]
        assert trusted["root_path"] == "/admin"


def test_forwarded_style_from_an_untrusted_peer_changes_nothing():
    """With --proxy-headers-style forwarded, an untrusted peer's Forwarded header is ignored, a trusted one's used."""
    with serving(
        APP, "--proxy-headers", "--proxy-headers-style", "forwarded", "--forwarded-allow-ips", TRUSTED
    ) as server:
        scope = get_json(server.host, server.port, headers=FORGED, source=ATTACKER)
        assert scope["client"][0] == ATTACKER and scope["scheme"] == "http"
        trusted = get_json(server.host, server.port, headers=FORGED, source=TRUSTED)
        assert trusted["client"][0] == "203.0.113.9" and trusted["scheme"] == "https"


def test_underscore_lookalikes_never_count():
    """X_Forwarded_For and friends are neither believed, even from a trusted peer, nor passed to the app."""
    lookalikes = {"X_Forwarded_For": "203.0.113.9", "X_Forwarded_Proto": "https", "X_Forwarded_Prefix": "/admin"}
    with serving(APP, "--proxy-headers", "--forwarded-allow-ips", TRUSTED) as server:
        for source in (TRUSTED, ATTACKER):
            scope = get_json(server.host, server.port, headers=lookalikes, source=source)
            assert scope["client"][0] == source
            assert scope["scheme"] == "http" and scope["root_path"] == ""
            names = {name for name, _value in scope["headers"]}
            assert not any(name.startswith("x_forwarded") for name in names), names


def test_proxy_headers_are_off_by_default():
    """Without --proxy-headers even a loopback peer's X-Forwarded-For is only a header."""
    with serving(APP) as server:
        scope = get_json(server.host, server.port, headers=FORGED, source=TRUSTED)
        assert scope["client"][0] == TRUSTED and scope["scheme"] == "http"


def test_proxy_protocol_header_from_a_peer_outside_the_allow_list_is_refused():
    """A PROXY line from a peer not in --proxy-protocol-allow-ips closes the connection unanswered;
    from the balancer it names the client."""
    line = b"PROXY TCP4 203.0.113.9 127.0.0.1 1234 80\r\n"
    request = b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    endpoint = "haproxy:tcp:port=0:interface=127.0.0.1"
    with serving(APP, "--proxy-protocol-allow-ips", TRUSTED, endpoint=endpoint) as server:
        with socket.create_connection((server.host, server.port), timeout=10, source_address=(ATTACKER, 0)) as sock:
            try:
                sock.sendall(line + request)
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert recv_until_closed(sock, 10) == b""
        scope = get_json(server.host, server.port, source=TRUSTED, prefix=line)
        assert scope["client"] == ["203.0.113.9", 1234]
        # Without a header, even the balancer's connection is refused.
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(request)
            assert recv_until_closed(sock, 10) == b""
        output = server.wait_for_output("not in the allow-list")
        assert output.count("not in the allow-list") == 1


def test_proxy_protocol_header_timeout():
    """A connection that never sends its PROXY header is closed after --timeout-proxy-protocol seconds."""
    endpoint = "proxy:tcp:port=0:interface=127.0.0.1"
    with serving(APP, "--timeout-proxy-protocol", "0.5", endpoint=endpoint) as server:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(b"PROXY TCP4 203.0.113.9 ")  # an incomplete line, then silence
            started = time.monotonic()
            assert recv_until_closed(sock, 10) == b""
            waited = time.monotonic() - started
        assert 0.3 < waited < 5, waited
        status, _headers, _body = http_get(server.host, server.port, prefix=b"PROXY UNKNOWN\r\n")
        assert status == 200
