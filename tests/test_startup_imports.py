"""Start-up imports only what the configured listeners and protocols need
(issue 20, item 4): a plain HTTP/1.1 server has imported none of h2, hpack,
hyperframe, Autobahn, Django, prometheus_client, watchfiles, Twisted's
endpoints module or our TLS module once it has served its first request; the
first HTTP/2 connection and the first WebSocket import theirs and are served.

The serving process is asked what it imported: the app below answers
``/modules`` with the modules in its ``sys.modules`` whose code has run (a
module deferred by ``_upstream.twisted_imports`` is there but has not run),
read after the request that asks.

Twisted's TLS support, pyOpenSSL and ``cryptography`` are not imported either
(Twisted's ``tcp`` and ``posixbase`` import them whenever pyOpenSSL is
installed; the server imports its reactor with stand-ins for them), nor, under
``python -m twisted_asgi``, ``http.cookiejar`` (imported by Twisted's
``compat``, which twistd imports before any plugin runs). An app that uses
Twisted's TLS in the same process (``startTLS``, ``connectSSL``) gets it.
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

from tests.serving import _LISTEN, ROOT, TWISTD, Server, recv_response, start_server
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
    "twisted_asgi.django",
    # Config's dataclass view, a real dataclass made at its first read (see
    # config._frozen_record): the start-up reads Config's own field table.
    "twisted_asgi.config:dataclass",
    "twisted.internet._newtls",
    "twisted.internet.ssl",
    "twisted.protocols.tls",
    "twisted.internet.unix",
    "OpenSSL",
    "cryptography",
)
#: Under ``python -m twisted_asgi`` only (twistd imports Twisted's compat, and
#: with it these, before the plugin is asked for anything; and its services).
NOT_ON_THE_MODULE_PATH = ("http.cookiejar", "urllib.request", "twisted.application", "email.utils")

APP = """
import asyncio
import gc
import os
import sys

GC_ON_AT_IMPORT = gc.isenabled()


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
    if scope["path"] == "/modules":
        # The modules whose code has run (a deferred one's type says it has not).
        ran = [n for n, m in list(sys.modules.items()) if type(m).__name__ != "_DeferredModule"]
        if type(vars(sys.modules["twisted_asgi.config"].Config)["__dataclass_fields__"]) is dict:
            ran.append("twisted_asgi.config:dataclass")
        # Any other dataclass of the server made so far (each is code
        # generated and compiled at import: about 2 M instructions).
        for name, module in list(sys.modules.items()):
            if name.startswith("twisted_asgi") and type(module).__name__ != "_DeferredModule":
                for value in list(vars(module).values()):
                    if isinstance(value, type) and value.__module__ == name and value.__name__ != "Config":
                        if type(vars(value).get("__dataclass_fields__")) is dict:
                            ran.append(f"{name}.{value.__qualname__}:dataclass")
        body = " ".join(sorted(ran)).encode()
    elif scope["path"] == "/gc":
        body = f"{GC_ON_AT_IMPORT} {gc.isenabled()}".encode()
    elif scope["path"] in ("/starttls", "/connectssl"):
        body = await tls_client(scope["path"] == "/starttls")
    else:
        body = b"hello"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def tls_client(starttls):
    # Talk TLS to the test's server with Twisted's own TLS, in this process:
    # startTLS on a TCP connection after a STARTTLS line, or connectSSL.
    # Returns what the server answered to b"ping" inside TLS.
    from twisted.internet import defer, protocol, reactor, ssl

    with open(os.environ["TLS_CA"]) as pem:
        options = ssl.optionsForClientTLS("localhost", trustRoot=ssl.Certificate.loadPEM(pem.read()))
    done = defer.Deferred()

    class Client(protocol.Protocol):
        received = b""
        started = not starttls

        def connectionMade(self):
            self.transport.write(b"STARTTLS\\n" if starttls else b"ping")

        def dataReceived(self, data):
            self.received += data
            if not self.started and self.received == b"GO\\n":
                self.started, self.received = True, b""
                self.transport.startTLS(options)
                self.transport.write(b"ping")
            elif self.received.endswith(b"pong") and not done.called:
                done.callback(self.received)
                self.transport.loseConnection()

        def connectionLost(self, reason):
            if not done.called:
                done.errback(reason)

    factory = protocol.ClientFactory.forProtocol(Client)
    port = int(os.environ["TLS_PORT"])
    if starttls:
        reactor.connectTCP("127.0.0.1", port, factory, timeout=10)
    else:
        reactor.connectSSL("127.0.0.1", port, factory, options, timeout=10)
    return await done.asFuture(asyncio.get_running_loop())
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
    unwanted = NOT_ON_THE_PLAIN_PATH + (NOT_ON_THE_MODULE_PATH if command == "module" else ())
    assert [p for p in unwanted if imported(names, p)] == []
    # No dataclass of ours is made by the start-up (they are written out).
    assert [n for n in names if n.endswith(":dataclass")] == []
    # A second look, after more requests: nothing was imported meanwhile.
    assert [p for p in unwanted if imported(modules(server), p)] == []
    assert "Twisted's TLS support is imported at start-up" not in server.read_output()


@pytest.mark.parametrize("command", ["module", "twistd"])
def test_the_app_is_imported_and_served_with_the_garbage_collector_on(app_dir, servers, command):
    """``python -m twisted_asgi`` pauses the cyclic collector for its own
    imports only: the application is imported, and served, with it on."""
    server = start(app_dir, command)
    servers(server)
    assert get(server, "/gc") == b"True True"


def test_proxy_protocol_listener_imports_no_tls(app_dir, servers):
    """``proxy:tcp:`` wraps a plain listener: neither Twisted's endpoints
    module nor our TLS module is imported for it."""
    server = start_server("startup_app:app", "--app-dir", str(app_dir), endpoint="proxy:tcp:port=0:interface=127.0.0.1")
    servers(server)
    names = modules(server, b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 80\r\n")
    assert [p for p in NOT_ON_THE_PLAIN_PATH if imported(names, p)] == []


def test_unix_listener_serves_with_the_deferred_unix_module(app_dir, servers, tmp_path):
    """``unix:`` listens through Twisted's ``unix`` module, deferred by the
    reactor import (a plain TCP server never runs it): run at listening."""
    path = tmp_path / "app.sock"
    server = start_server("startup_app:app", "--app-dir", str(app_dir), endpoint=f"unix:{path}")
    servers(server)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"GET /modules HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        status, _headers, body = recv_response(sock)
    assert status.startswith(b"HTTP/1.1 200"), status
    names = set(body.decode().split())
    assert "twisted.internet.unix" in names
    assert not imported(names, "OpenSSL")


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


# -- Twisted's TLS, imported at first use -----------------------------------------------


class TLSPeer:
    """A TLS server in the test process (the standard library's ssl, one thread
    per connection) for the app's Twisted TLS client: it answers ``ping``
    with ``pingpong`` inside TLS, after a ``STARTTLS`` line answered ``GO``
    when the client starts in cleartext."""

    def __init__(self, certs: dict[str, Any]) -> None:
        import ssl
        import threading

        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(certs["cert"]), str(certs["key"]))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(20)
            first = conn.recv(9, socket.MSG_PEEK)
            if first.startswith(b"STARTTLS"):
                line = b""
                while not line.endswith(b"\n"):
                    line += conn.recv(1)
                conn.sendall(b"GO\n")
            with self.context.wrap_socket(conn, server_side=True) as tls:
                got = b""
                while len(got) < 4:
                    chunk = tls.recv(4 - len(got))
                    assert chunk, "closed before ping"
                    got += chunk
                tls.sendall(got + b"pong")
                while tls.recv(1024):  # until the client's close_notify
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()
        for thread in self.threads:
            thread.join(20)
        assert not self.errors, self.errors


def get(server: Server, path: str) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        status, _headers, body = recv_response(sock, timeout=30)
    assert status.startswith(b"HTTP/1.1 200"), (status, body, server.read_output())
    return body


@pytest.mark.parametrize("first", ["/starttls", "/connectssl"])
def test_twisted_tls_in_the_apps_process_works_after_a_plain_start_up(app_dir, servers, tmp_path, first):
    """An app that uses Twisted's own TLS in the server's process (a TLS client
    through ``transport.startTLS`` on a TCP connection, or ``connectSSL``)
    gets it at first use, over loopback, either first; plain HTTP/1.1 goes on
    being served on the connections built on the stand-in."""
    from tests.deploy import make_certs

    certs = make_certs(tmp_path)
    peer = TLSPeer(certs)
    try:
        server = start_server(
            "startup_app:app",
            "--port",
            "0",
            "--app-dir",
            str(app_dir),
            endpoint=None,
            env={"TLS_CA": str(certs["ca"]), "TLS_PORT": str(peer.port)},
        )
        servers(server)
        names = modules(server)
        assert not imported(names, "OpenSSL") and not imported(names, "twisted.internet._newtls")
        second = "/connectssl" if first == "/starttls" else "/starttls"
        assert get(server, first) == b"pingpong"
        assert get(server, second) == b"pingpong"
        assert get(server, first) == b"pingpong"
        names = modules(server)
        assert imported(names, "OpenSSL") and "twisted.internet._newtls" in names
        assert "twisted.protocols.tls" in names and "twisted.internet.ssl" in names
        assert get(server, "/") == b"hello"
    finally:
        peer.close()


def test_reactor_imported_before_the_server_says_so_once_and_serves(app_dir, servers):
    """``twistd --reactor=asyncio`` installs the reactor (and imports Twisted's
    TLS support) before the plugin: nothing is deferred, one line says why."""
    argv = [TWISTD, "--reactor=asyncio", "-n", "asgi", "--port", "0", "--app-dir", str(app_dir), "startup_app:app"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = Server(proc, None, "127.0.0.1")
    servers(server)
    server.wait_for_output("Listening on", timeout=60)
    _desc, _host, port = _LISTEN.findall(server.read_output())[0]
    server.port = int(port)
    assert imported(modules(server), "OpenSSL")
    output = server.read_output(0.2)
    line = "Twisted's TLS support is imported at start-up (a slower start, the same server): "
    assert output.count(line) == 1, output
    assert f"{line}twisted.internet." in output, output


_SUBPROCESS_PREAMBLE = """
import importlib, json, sys
from twisted_asgi._upstream import twisted_imports
"""


def _in_a_fresh_interpreter(code: str) -> Any:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_PREAMBLE + code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_reactor_defers_twisteds_tls_and_keeps_its_classes():
    result = _in_a_fresh_interpreter(
        """
why = twisted_imports.import_reactor()
from twisted.internet import posixbase, tcp, unix
before = sorted(m for m in ("OpenSSL", "cryptography") if m in sys.modules)
stand_in_write = tcp.Connection.write
import twisted.internet._newtls as newtls  # Twisted's own module, imported on demand
after_import = "OpenSSL" in sys.modules
twisted_imports._adopt_twisted_tls()
print(json.dumps({
    "why": why,
    "before": before,
    "after_import": after_import,
    "stand_in": [issubclass(c, b) for c, b in ((tcp.Connection, twisted_imports.ConnectionMixin),
        (tcp.Server, twisted_imports.ServerMixin), (tcp.Client, twisted_imports.ClientMixin),
        (unix.Server, twisted_imports.ServerMixin))],
    "newtls_is_twisteds": newtls.__file__.endswith("_newtls.py"),
    "tls_default": [tcp.Server._tlsClientDefault, tcp.Client._tlsClientDefault],
    "write_before": stand_in_write.__qualname__,
    "write_after": tcp.Connection.write.__qualname__,
    "write_after_is_twisteds": tcp.Connection.write is newtls.ConnectionMixin.write,
    "start_tls_is_twisteds": tcp.Connection.startTLS is newtls.ConnectionMixin.startTLS,
    "posixbase_tls": posixbase.tls is sys.modules["twisted.protocols.tls"],
    "listen_ssl_factory": posixbase.tls.TLSMemoryBIOFactory.__module__,
}))
"""
    )
    assert result["why"] is None
    assert result["before"] == []
    assert result["after_import"] is True
    assert result["stand_in"] == [True, True, True, True]
    assert result["newtls_is_twisteds"] is True
    assert result["tls_default"] == [False, True]
    assert result["write_before"] == "FileDescriptor.write"
    assert result["write_after"] == "ConnectionMixin.write"
    assert result["write_after_is_twisteds"] is True and result["start_tls_is_twisteds"] is True
    assert result["posixbase_tls"] is True
    assert result["listen_ssl_factory"] == "twisted.protocols.tls"


def test_import_reactor_gives_twisteds_own_names_to_a_tcp_that_imports_more():
    """A Twisted whose tcp.py takes a name the stand-in lacks (here: the
    stand-in without ServerMixin) gets Twisted's own for it (and with it
    pyOpenSSL): its classes are built as they would be, and one line says so."""
    result = _in_a_fresh_interpreter(
        """
made = twisted_imports._newtls_stand_in
def lacking():
    module = made()
    del module.ServerMixin
    return module
twisted_imports._newtls_stand_in = lacking
why = twisted_imports.import_reactor()
from twisted.internet import tcp
import twisted.internet._newtls as newtls
print(json.dumps({
    "why": why,
    "openssl": "OpenSSL" in sys.modules,
    "server": [issubclass(tcp.Server, newtls.ServerMixin), tcp.Server._tlsClientDefault],
    "connection": [issubclass(tcp.Connection, twisted_imports.ConnectionMixin), hasattr(tcp.Connection, "startTLS")],
    "newtls_is_twisteds": newtls.__file__.endswith("_newtls.py"),
}))
"""
    )
    assert result == {
        "why": "Twisted's tcp.Server is not built on the stand-in for _newtls.ServerMixin",
        "openssl": True,
        "server": [True, False],
        "connection": [True, True],
        "newtls_is_twisteds": True,
    }


def test_import_reactor_after_twisteds_tls_is_imported_changes_nothing():
    result = _in_a_fresh_interpreter(
        """
import twisted.internet.tcp
why = twisted_imports.import_reactor()
from twisted.internet import tcp
import twisted.internet._newtls as newtls
print(json.dumps({"why": why, "twisteds": issubclass(tcp.Connection, newtls.ConnectionMixin)}))
"""
    )
    assert result == {"why": "twisted.internet.tcp was imported before the server started", "twisteds": True}


def test_importing_the_fence_module_defers_nothing():
    result = _in_a_fresh_interpreter(
        """
import twisted_asgi.__main__, twisted_asgi.tap
print(json.dumps(sorted(n for n, m in sys.modules.items() if twisted_imports.is_deferred(m))))
"""
    )
    assert result == []


# -- deferred modules ---------------------------------------------------------------------


@pytest.fixture
def package(tmp_path: Path) -> Any:
    """A package of throwaway modules on sys.path, forgotten afterwards."""
    root = tmp_path / "deferpkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    yield root
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n == "deferpkg" or n.startswith("deferpkg.")]:
        del sys.modules[name]


def test_a_deferred_module_runs_at_first_use_once(package):
    from twisted_asgi._upstream.twisted_imports import deferred, is_deferred

    (package / "counted.py").write_text(
        "import builtins\nbuiltins.deferpkg_runs = getattr(builtins, 'deferpkg_runs', 0) + 1\nVALUE = 42\n"
    )
    import builtins

    module = deferred("deferpkg.counted")
    assert module is not None and is_deferred(module)
    import deferpkg

    assert deferpkg.counted is module and sys.modules["deferpkg.counted"] is module
    assert not hasattr(builtins, "deferpkg_runs")
    from deferpkg import counted  # binds, does not run

    assert counted is module and not hasattr(builtins, "deferpkg_runs")
    assert module.VALUE == 42
    assert not is_deferred(module) and type(module) is type(sys)
    import deferpkg.counted as again

    assert again is module and module.VALUE == 42
    assert builtins.deferpkg_runs == 1  # type: ignore[attr-defined]
    del builtins.deferpkg_runs  # type: ignore[attr-defined]
    assert deferred("deferpkg.counted") is None  # imported already: nothing done


def test_an_import_statement_runs_a_deferred_module(package):
    from twisted_asgi._upstream.twisted_imports import deferred, is_deferred

    (package / "imported.py").write_text("VALUE = 'x'\n")
    module = deferred("deferpkg.imported")
    code = "import deferpkg.imported\n"
    exec(code, {})
    assert not is_deferred(module) and module.VALUE == "x"


def test_a_deferred_module_that_fails_fails_at_first_use_and_is_not_left_half_run(package):
    from twisted_asgi._upstream.twisted_imports import deferred

    (package / "broken.py").write_text("FIRST = 1\nraise ImportError('no such dependency')\n")
    module = deferred("deferpkg.broken")
    with pytest.raises(ImportError, match="no such dependency"):
        module.FIRST  # noqa: B018
    assert "deferpkg.broken" not in sys.modules
    with pytest.raises(ImportError, match="no such dependency"):
        import deferpkg.broken  # noqa: F401


def test_a_deferred_module_is_run_by_one_thread_while_others_wait(package):
    """A second thread reading the module while the first runs its code waits
    for the whole module (it would otherwise see it half run)."""
    import threading

    from twisted_asgi._upstream.twisted_imports import _run_deferred, deferred

    (package / "slow.py").write_text(
        "import deferpkg\nBEGIN = 1\ndeferpkg.started.set()\nassert deferpkg.go.wait(30)\nEND = 2\n"
    )
    import deferpkg

    deferpkg.started = threading.Event()  # type: ignore[attr-defined]
    deferpkg.go = threading.Event()  # type: ignore[attr-defined]
    module = deferred("deferpkg.slow")
    results: dict[str, Any] = {}

    def read(key: str) -> None:
        try:
            results[key] = module.END
        except BaseException as exc:  # noqa: BLE001 - compared below
            results[key] = exc

    first = threading.Thread(target=read, args=("first",))
    first.start()
    assert deferpkg.started.wait(30)  # type: ignore[attr-defined]
    second = threading.Thread(target=read, args=("second",))
    second.start()
    # Proceed once the second thread waits in the lock (its frame says where it is).
    deadline = 30.0
    import time

    start = time.monotonic()
    while True:
        frame = sys._current_frames().get(second.ident or 0)
        names = []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        if _run_deferred.__name__ in names:
            break
        assert time.monotonic() - start < deadline, "the second thread never reached the lock"
        second.join(0.01)
    deferpkg.go.set()  # type: ignore[attr-defined]
    first.join(30)
    second.join(30)
    assert results == {"first": 2, "second": 2}


def test_the_start_up_benchmark_measures_a_checkout(tmp_path):
    """``benchmarks/startup.py`` (the figures in docs/benchmarks.rst) serves a
    checkout until its first 200 and reports it."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "startup.py"),
            "--checkout",
            f"this={ROOT}",
            "--no-uvicorn",
            "--rounds",
            "2",
            "--python",
            sys.executable,
            "--pycache",
            str(tmp_path / "pycache"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "this: median" in out.stdout and "2 runs" in out.stdout, out.stdout
