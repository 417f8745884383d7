"""Start-up imports only what the configured listeners and protocols need
(issue 20, item 4): a plain HTTP/1.1 server has imported none of h2, hpack,
hyperframe, Autobahn, Django, prometheus_client, watchfiles, Twisted's
endpoints module or our TLS module once it has served its first request; the
first HTTP/2 connection and the first WebSocket import theirs and are served.

The serving process is asked what it imported: the app below answers
``/modules`` with its ``sys.modules``, read after the request that asks.

pyOpenSSL itself is not on the list: Twisted's reactor imports it
(``twisted.internet.tcp`` and ``posixbase`` import Twisted's TLS support
whenever pyOpenSSL is installed), before any module of ours is asked.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.serving import ROOT, TWISTD, Server, recv_response, start_server
from tests.ws_apps import RawClient, client_frame

#: Never imported by a plain HTTP/1.1 start-up and its first request.
NOT_ON_THE_PLAIN_PATH = (
    "h2",
    "hpack",
    "hyperframe",
    "autobahn",
    "txaio",
    "django",
    "prometheus_client",
    "watchfiles",
    "twisted.internet.endpoints",
    "twisted_asgi.h2channel",
    "twisted_asgi.http2",
    "twisted_asgi.hpack_codec",
    "twisted_asgi.websocket",
    "twisted_asgi.wsmask",
    "twisted_asgi.tls",
    "twisted_asgi.workers",
    "twisted_asgi.reload",
    "twisted_asgi.metrics_http",
)

APP = """
import sys


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    if scope["type"] != "http":
        return
    body = " ".join(sorted(sys.modules)).encode() if scope["path"] == "/modules" else b"hello"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "startup_app.py").write_text(APP)
    return tmp_path


@pytest.fixture
def servers() -> Any:
    started: list[Server] = []
    yield started.append
    for server in started:
        server.stop()


def modules(server: Server, first: bytes = b"") -> set[str]:
    """What the serving process has imported, after serving a request (sent after ``first``)."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(first + b"GET /modules HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        status, _headers, body = recv_response(sock)
    assert status.startswith(b"HTTP/1.1 200"), status
    return set(body.decode().split())


def imported(names: set[str], package: str) -> bool:
    return package in names or any(name.startswith(package + ".") for name in names)


def start(app_dir: Path, command: str, *args: str) -> Server:
    return start_server(
        "startup_app:app", "--port", "0", "--app-dir", str(app_dir), *args, command=command, endpoint=None
    )


@pytest.mark.parametrize("command", ["module", "twistd"])
def test_plain_http11_start_up_imports_no_optional_protocol(app_dir, servers, command):
    server = start(app_dir, command)
    servers(server)
    names = modules(server)
    assert "twisted_asgi.server" in names and "httptools" in names  # it is the serving process
    assert [p for p in NOT_ON_THE_PLAIN_PATH if imported(names, p)] == []
    # A second look, after more requests: nothing was imported meanwhile.
    assert [p for p in NOT_ON_THE_PLAIN_PATH if imported(modules(server), p)] == []


def test_proxy_protocol_listener_imports_no_tls(app_dir, servers):
    """``proxy:tcp:`` wraps a plain listener: neither Twisted's endpoints
    module nor our TLS module is imported for it."""
    server = start_server("startup_app:app", "--app-dir", str(app_dir), endpoint="proxy:tcp:port=0:interface=127.0.0.1")
    servers(server)
    names = modules(server, b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 80\r\n")
    assert [p for p in NOT_ON_THE_PLAIN_PATH if imported(names, p)] == []


def test_first_http2_connection_imports_h2_and_is_served(app_dir, servers):
    server = start(app_dir, "module")
    servers(server)
    assert not imported(modules(server), "h2")
    out = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", f"http://127.0.0.1:{server.port}/"],
        capture_output=True,
        timeout=20,
        check=True,
    ).stdout
    assert out.startswith(b"HTTP/2 200"), out
    assert out.endswith(b"hello")
    names = modules(server)
    assert imported(names, "h2") and imported(names, "hpack") and "twisted_asgi.h2channel" in names
    assert not imported(names, "autobahn")


def test_first_h2c_upgrade_imports_h2_and_is_served(app_dir, servers):
    server = start(app_dir, "module", "--h2c-upgrade")
    servers(server)
    out = subprocess.run(
        ["curl", "-sS", "--http2", "-D", "-", f"http://127.0.0.1:{server.port}/"],
        capture_output=True,
        timeout=20,
        check=True,
    ).stdout
    assert b"HTTP/1.1 101" in out and b"HTTP/2 200" in out, out
    assert out.endswith(b"hello")
    assert imported(modules(server), "h2")


def test_first_websocket_imports_autobahn_and_is_served(app_dir, servers):
    server = start(app_dir, "module")
    servers(server)
    assert not imported(modules(server), "autobahn")
    client = RawClient(server.host, server.port, "/ws")
    try:
        assert b" 101 " in client.head
        client.send(client_frame(1, b"echo"))
        assert client.read_frame() == (1, b"echo")
    finally:
        client.close()
    names = modules(server)
    assert imported(names, "autobahn") and "twisted_asgi.websocket" in names
    assert not imported(names, "h2")


def test_http11_that_starts_like_the_preface_is_still_http11(app_dir, servers):
    """A first read of b"P" (the preface's first byte) makes HTTP/2 look; the
    rest of a POST is HTTP/1.1 all the same, in order."""
    server = start(app_dir, "module")
    servers(server)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"P")  # when read alone, held back while it may be the preface
        sock.sendall(b"OST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        status, _headers, body = recv_response(sock)
    assert status.startswith(b"HTTP/1.1 200") and body == b"hello"


def test_the_preface_copy_is_h2s():
    from twisted_asgi.http2 import PREFACE
    from twisted_asgi.server import H2_PREFACE

    assert H2_PREFACE == PREFACE


def test_the_worker_variable_copy_is_the_workers_module():
    from twisted_asgi.tap import WORKER_ENV
    from twisted_asgi.workers import ENV

    assert WORKER_ENV == ENV


def test_twistd_help_imports_no_server_module():
    """``twistd --help`` lists the plugin without importing the server (the
    plugin file names the tap module by its dotted name only)."""
    code = (
        "import sys, runpy\n"
        f"sys.argv = [{TWISTD!r}, '--help']\n"
        "try:\n"
        "    from twisted.scripts.twistd import run\n"
        "    run()\n"
        "except SystemExit:\n"
        "    pass\n"
        "import json\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert "asgi" in result.stdout
    names = set(json.loads(result.stderr.strip().splitlines()[-1]))
    assert not [n for n in names if n.startswith("twisted_asgi.") and n != "twisted_asgi"], sorted(
        n for n in names if n.startswith("twisted_asgi")
    )


@pytest.mark.parametrize(
    "description",
    [
        "tcp:8000",
        "tcp:0:interface=127.0.0.1:backlog=7",
        "tcp:port=8000:interface=127.0.0.1",
        "tcp:8000:127.0.0.1:9",
        "tcp:interface=\\:\\:1:port=8000",
        "tcp6:8000",
        "tcp6:8000:9:\\:\\:1",
        "tcp6:port=8000:interface=\\:\\:1:backlog=3",
        "unix:/run/app.sock",
        "unix:address=/run/app.sock:mode=600:backlog=5:lockfile=0",
        "unix:/run/a\\:b.sock:660:8:1",
    ],
)
def test_plain_listeners_listen_as_twisteds_endpoints_would(description):
    """``tcp:``, ``tcp6:`` and ``unix:`` strings, parsed by ``listeners``
    without Twisted's endpoints module, listen with the same arguments as the
    endpoint Twisted's parser makes from the same string."""
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.protocol import Factory
    from twisted.internet.testing import MemoryReactor

    from twisted_asgi.listeners import TCPListenerEndpoint, UNIXListenerEndpoint, endpoint_from_string

    ours, theirs = MemoryReactor(), MemoryReactor()
    endpoint = endpoint_from_string(ours, description)
    assert isinstance(endpoint, (TCPListenerEndpoint, UNIXListenerEndpoint))
    factory = Factory()
    endpoint.listen(factory)
    serverFromString(theirs, description).listen(factory)
    assert ours.tcpServers == theirs.tcpServers
    assert ours.unixServers == theirs.unixServers
    assert ours.tcpServers or ours.unixServers


@pytest.mark.parametrize(
    "description",
    ["tcp:eighty", "tcp:8000:nokey=1", "tcp:8000:backlog=x", "unix:/x:mode=9", "tcp:1:2:3:4", "tcp:8000:port=80"],
)
def test_other_strings_get_twisteds_parser_and_its_error(description):
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    from twisted_asgi.listeners import endpoint_from_string

    with pytest.raises(Exception) as theirs:
        serverFromString(MemoryReactor(), description)
    with pytest.raises(type(theirs.value)) as ours:
        endpoint_from_string(MemoryReactor(), description)
    assert str(ours.value) == str(theirs.value)


def test_adopted_socket_listens_once_and_closes_the_descriptor_given():
    from twisted.internet.error import AlreadyListened
    from twisted.internet.protocol import Factory
    from twisted.internet.testing import MemoryReactor

    from twisted_asgi.listeners import endpoint_from_string

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(1)
    fileno = os.dup(listening.fileno())
    listening.close()
    reactor = MemoryReactor()
    endpoint = endpoint_from_string(reactor, f"fd:fileno={fileno}")
    results: list[Any] = []
    endpoint.listen(Factory()).addBoth(results.append)
    assert reactor.adoptedPorts and reactor.adoptedPorts[0][:2] == (fileno, socket.AF_INET)
    with pytest.raises(OSError):
        os.fstat(fileno)  # closed: the reactor's port keeps its own copy
    endpoint.listen(Factory()).addBoth(results.append)
    assert results[1].check(AlreadyListened)
