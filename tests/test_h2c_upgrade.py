"""h2c upgrade smuggling (issue 15, item 1).

Behind a proxy that forwards ``Upgrade`` (nginx set up for WebSocket as in
``docs/examples/nginx.conf``, HAProxy in its defaults), a ``101`` to ``Upgrade:
h2c`` turns the proxy into a blind tunnel: the HTTP/2 streams that follow are
never seen by it, so its rules (a 403 for ``/admin`` here) do not apply to
them, and their own ``X-Forwarded-*`` headers would be believed because the
peer is the trusted proxy. The upgrade is now off unless ``--h2c-upgrade``
asks for it; when on, only an offer that names ``HTTP2-Settings`` in
``Connection`` switches, and after the switch proxy headers are no longer
believed (later streams keep stream 1's client, scheme and server).

The proxy tests start real nginx and HAProxy from the guide's configuration
files, with a deny rule for ``/admin`` added in the test's copy; the server
trusts only the proxy (127.0.0.1); clients connect from 127.0.0.7.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import hpack
import pytest
from hyperframe.frame import HeadersFrame

from tests.deploy import free_port, http_get, serving, start_haproxy, start_nginx
from tests.h2frames import Frames, RawClient, parse_frames
from tests.serving import recv_response, recv_until_closed
from tests.test_http11 import feed
from twisted_asgi.events import Request

APP = "tests.deploy:app"
CLIENT = "127.0.0.7"
PROXY = "127.0.0.1"
SETTINGS = base64.urlsafe_b64encode(b"\x00\x03\x00\x00\x00\x64").rstrip(b"=")
#: What a client of the tunnel claims on the streams the proxy never sees.
FORGED = {
    "x_forwarded_for": "203.0.113.9",
    "x_forwarded_proto": "https",
    "x_forwarded_host": "evil.example",
    "forwarded": "for=203.0.113.9;proto=https",
}


def offer(
    path: str = "/scope",
    connection: str = "Upgrade, HTTP2-Settings",
    settings: int = 1,
    host: str = "example.com",
) -> bytes:
    """A bodiless HTTP/1.1 GET offering ``Upgrade: h2c`` with ``settings``
    HTTP2-Settings headers and the given ``Connection`` header."""
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\nUpgrade: h2c\r\n".encode()
    head += (b"HTTP2-Settings: " + SETTINGS + b"\r\n") * settings
    return head + b"\r\n"


class UpgradedClient(RawClient):
    """:class:`tests.h2frames.RawClient` on a socket that a ``101`` has just
    switched to HTTP/2 (``rest``: the bytes read after the 101's head). It
    sends the client preface, unless ``sent`` is the :class:`Frames` that
    already sent it with the offer."""

    def __init__(self, sock: socket.socket, rest: bytes, sent: Frames | None = None) -> None:
        self.sock = sock
        self.f = sent or Frames()
        self.buffer = bytearray(rest)
        self.closed = False
        self.decoder = hpack.Decoder()
        if sent is None:
            self.send(self.f.preface())  # the client's preface comes first (RFC 7540 §3.5)
        self.frames = parse_frames(self.buffer)
        for frame in self.frames:
            if isinstance(frame, HeadersFrame):
                frame.fields = self.decoder.decode(frame.data, raw=True)  # type: ignore[attr-defined]
        self._ack_settings(self.frames)


def read_head(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, bytes]:
    """The head of the first response on ``sock`` (up to the blank line) and the bytes after it."""
    sock.settimeout(timeout)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response head: {buffer!r}"
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def stream_scope(client: RawClient, stream_id: int, path: str = "/scope", **extra: str) -> dict:
    """Send a GET on ``stream_id`` and return the scope the app answered with."""
    client.send(client.f.request(stream_id, path, **extra))
    headers, body, _ = client.response(stream_id)
    assert headers[b":status"] == b"200", (headers, body)
    return json.loads(body)


# -- without a proxy ---------------------------------------------------------------------


def test_h2c_upgrade_is_off_by_default():
    """A well-formed ``Upgrade: h2c`` offer to a server started without
    --h2c-upgrade is answered as plain HTTP/1.1 (no 101), and the app sees it.
    Source: issue 15, item 1 (outside attack)."""
    with serving(APP) as server, server.connect() as sock:
        sock.sendall(offer())
        status, _headers, body = recv_response(sock)
    assert status.startswith(b"HTTP/1.1 200 ")
    scope = json.loads(body)
    assert scope["http_version"] == "1.1" and scope["path"] == "/scope"
    assert ["upgrade", "h2c"] in scope["headers"]


def test_connection_must_name_http2_settings():
    """With --h2c-upgrade, only an offer whose Connection lists both Upgrade and
    HTTP2-Settings, with exactly one HTTP2-Settings header, gets a 101; any
    other is served as plain HTTP/1.1 to the app (RFC 7540 §3.2, §3.2.1).
    Source: issue 15, item 1 (outside attack: a Connection header without the
    HTTP2-Settings token was accepted)."""
    refused = {
        "no settings token": offer(connection="Upgrade"),
        "keep-alive token": offer(connection="upgrade, keep-alive"),
        "two settings headers": offer(settings=2),
        "no settings header": offer(settings=0),
    }
    with serving(APP, "--h2c-upgrade") as server:
        for name, request_bytes in refused.items():
            with server.connect() as sock:
                sock.sendall(request_bytes)
                status, _headers, body = recv_response(sock)
            assert status.startswith(b"HTTP/1.1 200 "), (name, status)
            assert json.loads(body)["http_version"] == "1.1", name
        with server.connect() as sock:  # the same offer, well formed, switches
            sock.sendall(offer(connection="HTTP2-Settings,Upgrade"))
            head, _rest = read_head(sock)
    assert head.startswith(b"HTTP/1.1 101 "), head


def test_streams_sent_with_the_offer_do_not_believe_proxy_headers():
    """With --h2c-upgrade and the peer a trusted proxy, HTTP/2 frames sent in
    the same write as the offer (read before the 101 is even sent) are not
    believed either: stream 3's forged X-Forwarded-* give way to what stream
    1's said. Source: issue 15, item 1 (outside attack)."""
    args = ("--h2c-upgrade", "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1")
    frames = Frames()
    first_request = offer().replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n")
    with serving(APP, *args) as server, server.connect() as sock:
        sock.sendall(first_request + frames.preface() + frames.request(3, "/scope", **FORGED))
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 "), head
        client = UpgradedClient(sock, rest, sent=frames)
        first = json.loads(client.response(1)[1])
        later = json.loads(client.response(3)[1])
    assert first["client"][0] == later["client"][0] == "198.51.100.1"
    assert later["scheme"] == "http" and later["server"] == first["server"]


@pytest.mark.parametrize(
    ("request_bytes", "upgraded"),
    [
        (offer(), True),
        (offer(connection="HTTP2-Settings, Upgrade"), True),
        (offer(connection="Upgrade"), False),
        (offer(settings=2), False),
        (offer(settings=0), False),
        (offer().replace(b"\r\n\r\n", b"\r\nContent-Length: 2\r\n\r\nhi"), False),
        (offer().replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1), False),
        (re.sub(rb"(?i)HTTP2-Settings: [^\r]*", b"HTTP2-Settings: !!!!", offer()), False),
        (re.sub(rb"(?i)HTTP2-Settings: [^\r]*", b"HTTP2-Settings: AAMAAABk_", offer()), False),
    ],
    ids=[
        "valid",
        "valid-reordered",
        "no-settings-token",
        "two-settings",
        "no-settings-header",
        "body",
        "http-1.0",
        "settings-not-base64url",
        "settings-not-whole",
    ],
)
def test_parser_switches_only_a_complete_h2c_offer(request_bytes, upgraded):
    """Sans-IO: the HTTP/1.1 parser hands over only an offer with no body, one
    HTTP2-Settings header and both tokens in Connection; every other h2c offer
    is a plain request. Source: issue 15, item 1."""
    fed = feed([request_bytes], upgrades=frozenset({b"h2c"}))
    assert fed.error is None and fed.upgraded is upgraded
    request = next(e for e in fed.events if type(e) is Request)
    assert request.upgrade == (b"h2c" if upgraded else None)


# -- through real proxies ------------------------------------------------------------------


@contextlib.contextmanager
def behind_nginx(tmp: Path, *server_args: str) -> Iterator[tuple[object, int]]:
    """The server (trusting nginx's proxy headers) behind nginx as the guide
    configures it, plus ``location /admin { return 403; }``. Yields (server, nginx port)."""
    with serving(APP, "--proxy-headers", "--forwarded-allow-ips", PROXY, "--access-log", "-", *server_args) as server:
        port = free_port()
        nginx = start_nginx(
            tmp,
            [
                (r"listen 80;", f"listen {PROXY}:{port};"),
                (r"\n\s*listen 443 ssl http2;", ""),
                (r"\n\s*ssl_\w+ .*;", ""),
                (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{server.port};"),
                (r"location / \{", "location /admin { return 403; }\n\n    location / {"),
            ],
            [port],
        )
        try:
            yield server, port
        finally:
            nginx.stop()


@contextlib.contextmanager
def behind_haproxy(tmp: Path, *server_args: str) -> Iterator[tuple[object, int]]:
    """The server (trusting HAProxy's X-Forwarded-For) behind HAProxy with the
    guide's configuration in HTTP/1.1 to the server, ``option forwardfor`` in
    its defaults and ``http-request deny if { path_beg /admin }``. Yields
    (server, HAProxy port)."""
    with serving(APP, "--proxy-headers", "--forwarded-allow-ips", PROXY, "--access-log", "-", *server_args) as server:
        port = free_port()
        haproxy = start_haproxy(
            tmp,
            [
                (r"bind :80", f"bind {PROXY}:{port}"),
                (r"(?m)^(\s*)timeout tunnel\s+1h\n", r"\g<0>\1option forwardfor\n"),
                (r"(?m)^(\s*)default_backend", r"\1http-request deny if { path_beg /admin }\n\g<0>"),
                (r"server app1 127\.0\.0\.1:8000 .*", f"server app1 127.0.0.1:{server.port}"),
            ],
            [port],
        )
        try:
            yield server, port
        finally:
            haproxy.stop()


PROXIES = {"nginx": behind_nginx, "haproxy": behind_haproxy}


def smuggle(port: int, server_args: tuple[str, ...]) -> bytes:
    """The attack: an h2c offer through the proxy, then (whatever the answer)
    the HTTP/2 preface and a request for /admin with forged proxy headers on
    the same connection. Returns everything the proxy sent back after the
    offer's response; asserts that response was the app's, over HTTP/1.1."""
    with socket.create_connection((PROXY, port), timeout=10, source_address=(CLIENT, 0)) as sock:
        sock.sendall(offer(host=f"{PROXY}:{port}"))
        status, _headers, body = recv_response(sock)
        assert status.startswith(b"HTTP/1.1 200 "), (server_args, status, body[:200])
        scope = json.loads(body)
        assert scope["http_version"] == "1.1" and scope["client"][0] == CLIENT
        frames = Frames()
        sock.sendall(frames.preface() + frames.request(3, "/admin", **FORGED))
        return recv_until_closed(sock)


@pytest.mark.parametrize(
    ("proxy", "server_args"),
    [("nginx", ()), ("nginx", ("--h2c-upgrade",)), ("haproxy", ())],
    ids=["nginx", "nginx-h2c-upgrade-on", "haproxy"],
)
def test_smuggling_through_proxy_never_reaches_admin(tmp_path, proxy, server_args):
    """Through nginx configured for WebSocket (``Connection: upgrade``) and
    through HAProxy with ``option forwardfor``, an h2c offer gets the app's
    HTTP/1.1 answer, never a 101 (by default; through nginx also with
    --h2c-upgrade, since nginx's Connection does not name HTTP2-Settings), and
    HTTP/2 frames for /admin sent next are the proxy's to refuse: the app
    never sees /admin, which the proxy denies with 403.
    Source: issue 15, item 1 (outside attack)."""
    with PROXIES[proxy](tmp_path, *server_args) as (server, port):
        status, _headers, _body = http_get(PROXY, port, "/admin", source=CLIENT)
        assert status == 403  # the rule the smuggling would get around
        after = smuggle(port, server_args)
        # The proxy, still speaking HTTP/1.1, refuses the HTTP/2 bytes itself.
        assert after.startswith(b"HTTP/1.1 400 "), after[:300]
        # A request after the attack: once it is in the access log, everything
        # the attack made the server do is too.
        assert http_get(PROXY, port, "/scope?after-attack", source=CLIENT)[0] == 200
        server.wait_for_output("/scope?after-attack")
    log = server.read_output()
    assert "/admin" not in log


def test_upgraded_streams_do_not_believe_proxy_headers(tmp_path):
    """With --h2c-upgrade behind HAProxy (which forwards a valid offer), the
    upgrade happens; stream 1, the request HAProxy saw, gets the client from
    HAProxy's X-Forwarded-For; later streams, which HAProxy never saw, claim
    another client, scheme and host in their own X-Forwarded-*/Forwarded and
    are not believed: they keep stream 1's client, scheme and server.
    Source: issue 15, item 1 (outside attack)."""
    with (
        behind_haproxy(tmp_path, "--h2c-upgrade") as (_server, port),
        socket.create_connection((PROXY, port), timeout=10, source_address=(CLIENT, 0)) as sock,
    ):
        sock.sendall(offer(host=f"{PROXY}:{port}"))
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 "), head
        client = UpgradedClient(sock, rest)
        headers, body, _ = client.response(1)
        assert headers[b":status"] == b"200", (headers, body)
        first = json.loads(body)
        later = stream_scope(client, 3, "/scope", authority="evil.example", **FORGED)
    assert first["http_version"] == "2" and first["client"][0] == CLIENT
    assert later["http_version"] == "2" and later["path"] == "/scope"
    assert later["client"] == first["client"]
    assert later["scheme"] == first["scheme"] == "http"
    assert later["server"] == first["server"]
    # The forged fields reach the app as plain headers, believed by nothing.
    assert ["x-forwarded-for", "203.0.113.9"] in later["headers"]
