"""Spoofing attempts against a running server, over loopback: proxy headers
and PROXY protocol headers from peers that are not trusted change nothing,
while the same bytes from a trusted peer do (so the tests can fail).

The server trusts 127.0.0.1 only; the attacker connects from 127.0.0.7.
"""

from __future__ import annotations

import json
import socket
import time

from tests.deploy import get_json, http_get, serving, wait_for
from tests.serving import recv_response, recv_until_closed
from tests.test_proxy import v2, v2_tcp4

APP = "tests.deploy:app"
TRUSTED = "127.0.0.1"
ATTACKER = "127.0.0.7"
ALL_BELIEVED = "for,proto,host,port,prefix"

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
    with serving(
        APP, "--proxy-headers", "--forwarded-allow-ips", TRUSTED, "--proxy-headers-trust", ALL_BELIEVED
    ) as server:
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


# -- issue 15, items 5, 8 and 9 -------------------------------------------------------------


def _control_bytes(text: str) -> list[str]:
    """Control characters other than the line ends between log lines."""
    return [c for c in text if (ord(c) < 0x20 and c not in "\n\r") or 0x7F <= ord(c) < 0xA0]


def test_default_trust_ignores_forwarded_host_port_and_prefix():
    """From a trusted peer, by default only X-Forwarded-For and -Proto count; -Host, -Port and -Prefix
    (which a pass-through proxy forwards from the client) leave server, Host and root_path alone.

    Source: issue 15, item 5 (outside attack)."""
    forged = dict(FORGED, **{"X-Forwarded-Host": "evil.example:8443", "X-Forwarded-Prefix": "/evil"})
    with serving(APP, "--proxy-headers", "--forwarded-allow-ips", TRUSTED) as server:
        scope = get_json(server.host, server.port, "/scope", headers=forged, source=TRUSTED)
        assert scope["client"][0] == "203.0.113.9" and scope["scheme"] == "https"
        assert scope["server"] == [server.host, server.port]
        assert dict(scope["headers"])["host"] == f"{server.host}:{server.port}"
        assert scope["root_path"] == "" and scope["path"] == "/scope"


PREFIX_ATTACKS = ["//evil.example", "/\\evil.com", "/%2F%2Fevil.example", "/%5Cevil.com", "/a/%2e%2e", "/x%1b[2J"]


def test_bad_prefixes_are_ignored_and_logged_once():
    """With prefix trusted, a prefix that is no normalised absolute path (protocol-relative, backslash,
    encoded dot segments or escapes) leaves root_path empty, with one escaped log line per request.

    Source: issue 15, item 5 (outside attack)."""
    with serving(
        APP, "--proxy-headers", "--forwarded-allow-ips", TRUSTED, "--proxy-headers-trust", "for,prefix"
    ) as server:
        for value in PREFIX_ATTACKS:
            scope = get_json(server.host, server.port, "/scope", headers={"X-Forwarded-Prefix": value}, source=TRUSTED)
            assert scope["root_path"] == "" and scope["path"] == "/scope", value
        good = get_json(server.host, server.port, "/scope", headers={"X-Forwarded-Prefix": "/app/"}, source=TRUSTED)
        assert good["root_path"] == "/app" and good["path"] == "/app/scope"
        output = wait_for(
            lambda: (text := server.read_output(0.05)).count("not valid: URL prefix") >= len(PREFIX_ATTACKS) and text,
            what="one log line per bad prefix",
        )
        assert output.count("not valid: URL prefix") == len(PREFIX_ATTACKS)
        assert "Traceback" not in output and not _control_bytes(output)


def test_proxy_v1_scope_id_with_control_bytes_is_refused():
    """A PROXY v1 TCP6 line from an allowed sender whose address carries a scope id with ESC, a quote and
    LF closes the connection unanswered, with one log line and no raw control byte in any log.

    Source: issue 15, item 8 (outside attack)."""
    request = b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    endpoint = "haproxy:tcp:port=0:interface=127.0.0.1"
    with serving(APP, "--access-log", "-", "--proxy-protocol-allow-ips", TRUSTED, endpoint=endpoint) as server:
        for line in (
            b'PROXY TCP6 fe80::1%\x1b[2J"\nx ::1 1234 80\r\n',
            b'PROXY TCP6 fe80::1%\x1b]0;pwned\x07" ::1 1234 80\r\n',
            b"PROXY TCP6 fe80::1%eth0 ::1 1234 80\r\n",
        ):
            with socket.create_connection((server.host, server.port), timeout=10) as sock:
                try:
                    sock.sendall(line + request)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                assert recv_until_closed(sock, 10) == b"", line
        # The server still serves, and a TCP6 line without a scope id names the client.
        scope = get_json(server.host, server.port, prefix=b"PROXY TCP6 2001:db8::7 ::1 1234 80\r\n")
        assert scope["client"] == ["2001:db8::7", 1234]
        output = server.wait_for_output('"GET /scope HTTP/1.1" 200')
        assert output.count("Bad PROXY protocol header") == 3
        assert "fe80" not in output.split("Bad PROXY")[0]  # nothing of it reached the access log
        assert "Traceback" not in output and not _control_bytes(output)


def test_x_forwarded_for_with_a_scope_id_is_ignored():
    """X-Forwarded-For naming an IPv6 address with a scope id (quote and ESC in it), from a trusted peer,
    is ignored: the peer stays the client, and no log holds a raw control byte.

    Source: issue 15, item 8 (outside attack)."""
    with serving(APP, "--proxy-headers", "--forwarded-allow-ips", TRUSTED, "--access-log", "-") as server:
        for value in ('fe80::1%evil"x', "[fe80::1%25eth0]:80", 'fe80::1%\x1b[2J"'):
            status, _headers, body = http_get(
                server.host, server.port, headers={"X-Forwarded-For": value}, source=TRUSTED
            )
            if status == 200:  # a raw ESC in a field value may be refused (400) by the parser first
                assert json.loads(body)["client"][0] == TRUSTED, value
            else:
                assert status == 400, (value, status)
        forwarded = {"Forwarded": 'for="[fe80::1%25eth0]"'}
        with serving(
            APP, "--proxy-headers", "--proxy-headers-style", "forwarded", "--forwarded-allow-ips", TRUSTED
        ) as other:
            assert get_json(other.host, other.port, headers=forwarded, source=TRUSTED)["client"][0] == TRUSTED
        output = server.wait_for_output("not valid: X-Forwarded-For")
        assert "Traceback" not in output and not _control_bytes(output)


def test_proxy_v2_unix_claim_does_not_make_x_forwarded_for_believed():
    """A PROXY v2 header with the unix address family, from a TCP peer, does not make the connection the
    trusted 'unix' peer: its X-Forwarded-For is not believed (a TCP4 header naming a trusted address is).

    Source: issue 15, item 9 (outside attack)."""
    unix = v2(family=0x31, addresses=b"/run/haproxy.sock".ljust(108, b"\x00") + b"/run/b.sock".ljust(108, b"\x00"))
    request = b"GET /scope HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n"
    endpoint = "proxy:tcp:port=0:interface=127.0.0.1"
    args = ("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1,unix", "--proxy-protocol-allow-ips", TRUSTED)
    with serving(APP, *args, endpoint=endpoint) as server:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(unix + request)
            status, _headers, body = recv_response(sock)
        assert b" 200 " in status
        scope = json.loads(body)
        assert scope["client"] is None
        assert scope["server"] == [server.host, server.port]  # our socket, not the balancer's path
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(v2_tcp4(src="127.0.0.1", dst="127.0.0.1") + request)
            status, _headers, body = recv_response(sock)
        assert json.loads(body)["client"] == ["203.0.113.9", 0]
