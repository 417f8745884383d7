"""A real HAProxy in front of the server, with the configuration the
deployment guide shows (``docs/examples/haproxy.cfg``, ports replaced, the
``server`` line's options varied): PROXY protocol v1 and v2, HTTP/2 in clear
(h2c) to the server, TLS to the server with the PROXY header before the
handshake, and HAProxy's health checks (v2 ``LOCAL`` commands).

The server listens on a ``haproxy:`` endpoint and takes PROXY headers from
127.0.0.1 (HAProxy) only; clients connect from 127.0.0.7.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.deploy import (
    FORGED_PROXY_HEADERS,
    free_port,
    get_json,
    http_get,
    make_certs,
    serving,
    start_haproxy,
    wait_for,
)
from tests.serving import recv_response

APP = "tests.deploy:app"
CLIENT = "127.0.0.7"
BALANCER = "127.0.0.1"
SERVER_LINE = "send-proxy-v2 proto h2 check inter 2s"


@contextlib.contextmanager
def behind_haproxy(
    tmp: Path,
    endpoint: str,
    server_options: str | None = None,
    args: tuple[str, ...] = (),
    substitutions: tuple[tuple[str, str], ...] = (),
) -> Iterator[tuple[object, int]]:
    """The server on ``endpoint`` (with ``args``) behind HAProxy; ``server_options``
    replaces the guide's options on the ``server`` line, ``substitutions`` (regex,
    replacement) change the rest. Yields (server, haproxy port)."""
    with serving(APP, "--proxy-protocol-allow-ips", BALANCER, *args, endpoint=endpoint) as server:
        port = free_port()
        substitutions = (
            (r"bind :80", f"bind {BALANCER}:{port}"),
            (r"server app1 127\.0\.0\.1:8000", f"server app1 127.0.0.1:{server.port}"),
            (r"(?m)^global\n", f"global\n    stats socket {tmp}/haproxy.sock level admin\n"),
            *substitutions,
        )
        if server_options is not None:
            substitutions += ((SERVER_LINE.replace(" ", r"\s+"), server_options),)
        haproxy = start_haproxy(tmp, list(substitutions), [port])
        try:
            yield server, port
        finally:
            haproxy.stop()


def test_proxy_v2_and_h2c_as_in_the_guide(tmp_path):
    """With the guide's send-proxy-v2 and proto h2, the app sees the real client over HTTP/2 in clear."""
    with behind_haproxy(tmp_path, "haproxy:tcp:port=0:interface=127.0.0.1") as (server, port):
        scope = get_json(BALANCER, port, "/scope?v=2", source=CLIENT)
        assert scope["client"][0] == CLIENT
        assert scope["http_version"] == "2"
        assert scope["scheme"] == "http"
        # The PROXY header's destination: the address the client connected to.
        assert scope["server"] == [BALANCER, port]
        assert scope["query_string"] == "v=2"
    assert "Bad PROXY" not in server.read_output()


def test_proxy_v1(tmp_path):
    """With send-proxy (version 1) and HTTP/1.1 to the server, the app sees the real client and port."""
    with behind_haproxy(tmp_path, "haproxy:tcp:port=0:interface=127.0.0.1", "send-proxy") as (_server, port):
        with socket.create_connection((BALANCER, port), timeout=10, source_address=(CLIENT, 0)) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
            status, _headers, body = recv_response(sock)
        assert b" 200 " in status
        scope = json.loads(body)
        assert scope["client"] == [CLIENT, client_port]
        assert scope["http_version"] == "1.1"
        assert scope["server"] == [BALANCER, port]


def test_proxy_v2_over_http11(tmp_path):
    """send-proxy-v2 without h2: HTTP/1.1 to the server, the client from the binary header."""
    with behind_haproxy(tmp_path, "proxy:tcp:port=0:interface=127.0.0.1", "send-proxy-v2") as (_server, port):
        scope = get_json(BALANCER, port, source=CLIENT)
        assert scope["client"][0] == CLIENT
        assert scope["http_version"] == "1.1"


def test_websocket_through_haproxy(tmp_path):
    """A WebSocket through HAProxy (PROXY v1, HTTP/1.1 to the server) is accepted; its scope names the client."""
    with behind_haproxy(tmp_path, "haproxy:tcp:port=0:interface=127.0.0.1", "send-proxy") as (_server, port):
        sock = socket.create_connection((BALANCER, port), timeout=10, source_address=(CLIENT, 0))
        with connect(f"ws://{BALANCER}:{port}/ws", sock=sock, open_timeout=10) as ws:
            scope = json.loads(ws.recv(timeout=10))
            ws.send("through haproxy")
            assert ws.recv(timeout=10) == "through haproxy"
    assert scope["type"] == "websocket"
    assert scope["client"][0] == CLIENT
    assert scope["scheme"] == "ws"


def test_websocket_through_the_guides_haproxy(tmp_path):
    """With the guide's configuration as it is (PROXY v2, HTTP/2 in clear to the
    server), a WebSocket goes through over HTTP/1.1 and names the real client.

    Source: issue 16 (fresh-clone check: WebSocket through the documented
    HAProxy configuration got 502, HAProxy speaking RFC 8441 on its h2 connection)."""
    with behind_haproxy(tmp_path, "haproxy:tcp:port=0:interface=127.0.0.1") as (_server, port):
        sock = socket.create_connection((BALANCER, port), timeout=10, source_address=(CLIENT, 0))
        with connect(f"ws://{BALANCER}:{port}/ws", sock=sock, open_timeout=10) as ws:
            scope = json.loads(ws.recv(timeout=10))
            ws.send("through the guide's haproxy")
            assert ws.recv(timeout=10) == "through the guide's haproxy"
        assert get_json(BALANCER, port, source=CLIENT)["http_version"] == "2"
    assert scope["type"] == "websocket" and scope["http_version"] == "1.1"
    assert scope["client"][0] == CLIENT


def test_proxy_header_before_tls(tmp_path):
    """HAProxy sends the PROXY v2 header in clear, then TLS with ALPN h2: the server reads both on one port."""
    certs = make_certs(tmp_path)
    endpoint = f"haproxy:ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    options = "send-proxy-v2 ssl verify none alpn h2"
    with behind_haproxy(tmp_path, endpoint, options) as (_server, port):
        scope = get_json(BALANCER, port, source=CLIENT)
        assert scope["client"][0] == CLIENT
        assert scope["scheme"] == "https"
        assert scope["http_version"] == "2"
        assert scope["tls"]["tls_version"] in (0x0303, 0x0304)


def _server_state(sock_path: Path) -> dict[str, str]:
    """HAProxy's ``show stat`` row for the app1 server, by column name ({} while
    its stats socket is not there yet)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(sock_path))
        except (FileNotFoundError, ConnectionRefusedError):
            return {}
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    names = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(names, line.split(","), strict=False))
        if row.get("svname") == "app1":
            return row
    raise AssertionError(f"no app1 row in {data[:500]!r}")


def test_health_checks_with_local_command(tmp_path):
    """HAProxy's health checks (a PROXY v2 LOCAL header, then a request over h2c) pass
    (L7OK): the server is UP, and nothing is logged as bad."""
    with behind_haproxy(tmp_path, "haproxy:tcp:port=0:interface=127.0.0.1") as (server, port):

        def checked() -> dict[str, str] | None:
            row = _server_state(tmp_path / "haproxy.sock")
            return row if row.get("check_status") == "L7OK" else None

        row = wait_for(checked, 10, "a passing HAProxy health check")
        assert row["status"] == "UP"
        status, _headers, _body = http_get(BALANCER, port, source=CLIENT)
        assert status == 200
    output = server.read_output()
    assert "Bad PROXY" not in output and "Traceback" not in output


def test_client_sending_a_proxy_header_to_haproxy_is_refused(tmp_path):
    """A client that sends its own PROXY line to HAProxy gets a 400 from HAProxy; the app never runs with it."""
    with behind_haproxy(tmp_path, "haproxy:tcp:port=0:interface=127.0.0.1") as (server, port):
        status, _headers, _body = http_get(
            BALANCER, port, source=CLIENT, prefix=b"PROXY TCP4 203.0.113.9 127.0.0.1 1234 80\r\n"
        )
        assert status == 400
        assert get_json(BALANCER, port, source=CLIENT)["client"][0] == CLIENT
    assert "203.0.113.9" not in server.read_output()


@pytest.mark.parametrize("spelling", ["haproxy:", "proxy:"])
def test_both_prefix_spellings_are_ours(spelling):
    """haproxy: and proxy: build the same PROXY-protocol endpoint (not Twisted's own haproxy: parser)."""
    from twisted.internet.testing import MemoryReactor

    from twisted_asgi.listeners import ProxyProtocolEndpoint, endpoint_from_string

    endpoint = endpoint_from_string(MemoryReactor(), spelling + "tcp:8000:interface=127.0.0.1")
    assert isinstance(endpoint, ProxyProtocolEndpoint)
    with pytest.raises(ValueError, match="twice"):
        endpoint_from_string(MemoryReactor(), spelling + "haproxy:tcp:8000")


def test_draining_server_fails_health_checks_while_finishing_requests(tmp_path):
    """After SIGTERM HAProxy's checks fail (the server refuses connections) and mark it DOWN,
    while the request in flight through HAProxy still gets its 200; the server exits 0."""
    from concurrent.futures import ThreadPoolExecutor

    hold = tmp_path / "hold"
    hold.mkdir()
    options = "send-proxy-v2 proto h2 check inter 200 fall 1 rise 1"
    with behind_haproxy(tmp_path, "haproxy:tcp:port=0:interface=127.0.0.1", options) as (server, port):
        sock_path = tmp_path / "haproxy.sock"
        wait_for(lambda: _server_state(sock_path).get("check_status") == "L7OK", 10, "the server UP")
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(http_get, BALANCER, port, f"/hold?dir={hold}", source=CLIENT, timeout=30)
            try:
                wait_for(lambda: list(hold.glob("started-*")), 10, "the held request")
                server.proc.send_signal(signal.SIGTERM)
                wait_for(lambda: _server_state(sock_path).get("status", "").startswith("DOWN"), 10, "it marked DOWN")
                assert server.proc.poll() is None
            finally:
                (hold / "release").write_text("")
            assert held.result(timeout=30)[0] == 200
        assert server.wait(30) == 0


# -- a client's own proxy headers (issue 15, item 5) ------------------------------------------

FORGED = FORGED_PROXY_HEADERS
ALL_BELIEVED = (
    "--proxy-headers",
    "--forwarded-allow-ips",
    BALANCER,
    "--proxy-headers-trust",
    "for,proto,host,port,prefix",
)


def _untouched(scope: dict, port: int, server: list) -> None:
    """The scope of a request sent by :func:`http_get` from CLIENT to HAProxy on ``port`` with FORGED,
    as it must be when no forged value had any effect."""
    assert scope["client"][0] == CLIENT
    assert scope["server"] == server
    assert scope["root_path"] == "" and scope["path"] == "/scope"
    headers = dict(scope["headers"])
    assert headers["host"] == f"{BALANCER}:{port}"


def test_client_proxy_headers_through_the_guides_haproxy_change_nothing(tmp_path):
    """Through the guide's HAProxy (PROXY v2, h2c), a client's own X-Forwarded-*/Forwarded headers are
    dropped by HAProxy and change nothing, even with every proxy header trusted.

    Source: issue 15, item 5 (outside attack)."""
    endpoint = "haproxy:tcp:port=0:interface=127.0.0.1"
    with behind_haproxy(tmp_path, endpoint, args=ALL_BELIEVED) as (_server, port):
        scope = get_json(BALANCER, port, "/scope", headers=FORGED, source=CLIENT)
        _untouched(scope, port, [BALANCER, port])
        assert scope["scheme"] == "http" and scope["http_version"] == "2"
        assert not [n for n, _ in scope["headers"] if "forwarded" in n]
        assert "evil.example" not in json.dumps(scope)


# The attack's configuration: HTTP/1.1 to the server, no PROXY header, only
# "option forwardfor" (HAProxy appends the client to X-Forwarded-For and
# passes every other header of the client's on).
FORWARDFOR_ONLY = (
    (r"(?m)^    http-request del-header .*\n", ""),
    (r"(?m)^backend twisted_asgi\n", "backend twisted_asgi\n    option forwardfor\n"),
)


@pytest.mark.parametrize("trust", [(), ("--proxy-headers-trust", "for")])
def test_client_proxy_headers_through_haproxy_with_only_forwardfor(tmp_path, trust):
    """Behind HAProxy with only "option forwardfor", a client's own X-Forwarded-Host, -Port, -Prefix and -For
    change nothing with the default trust set; with "for" alone, -Proto does not set the scheme either.

    Source: issue 15, item 5 (outside attack: the attack's HAProxy configuration)."""
    endpoint = "tcp:port=0:interface=127.0.0.1"
    args = ("--proxy-headers", "--forwarded-allow-ips", BALANCER, *trust)
    with behind_haproxy(tmp_path, endpoint, "", args, FORWARDFOR_ONLY) as (server, port):
        scope = get_json(BALANCER, port, "/scope", headers=FORGED, source=CLIENT)
        _untouched(scope, port, [BALANCER, server.port])
        # HAProxy appended the client it saw; the forged hop to its left is not believed.
        assert [v for n, v in scope["headers"] if n == "x-forwarded-for"] == ["203.0.113.9", CLIENT]
        if trust:
            assert scope["scheme"] == "http"
        # With the default set (for, proto) the client's X-Forwarded-Proto gets through this
        # HAProxy: the deployment guide says to overwrite it or to trust "for" alone.
