"""Apps and helpers for the deployment tests (proxies, TLS, workers, systemd).

The app :func:`app` runs inside the server under test and routes on the path:

* ``/scope`` (any other path too): the scope as JSON, with the ``tls``
  extension in full and the worker's pid;
* ``/hold?dir=D``: writes ``D/started-<pid>-<n>``, then answers only once the
  file ``D/release`` exists (an in-flight request the test controls);
* ``/busy?ms=N``: keeps its worker's event loop busy for N ms before
  answering (stands for CPU-bound work, so that other workers accept);
* a WebSocket: accepts, sends the scope as JSON text, echoes one message, closes.

The helpers start nginx and HAProxy from the configuration files in
``docs/examples/`` (the ones the deployment guide shows), adapted to loopback
ports and a temporary directory, and stop them by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.apps import jsonable

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "examples"

_held = 0


#: A client's own proxy headers, as an attacker behind a proxy sends them: none
#: may change the scope through a proxy configured as the guide says.
FORGED_PROXY_HEADERS = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example:8443",
    "X-Forwarded-Port": "8443",
    "X-Forwarded-Prefix": "//evil.example",
    "Forwarded": "for=203.0.113.9;proto=https;host=evil.example",
}


def _shown(scope: dict) -> dict:
    shown = {k: v for k, v in scope.items() if k not in ("extensions", "state")}
    extensions = scope.get("extensions") or {}
    shown["extension_names"] = sorted(extensions)
    if "tls" in extensions:
        shown["tls"] = dict(extensions["tls"])
        shown["tls"]["client_cert_chain"] = list(shown["tls"]["client_cert_chain"])
    shown["pid"] = os.getpid()
    return jsonable(shown)


async def app(scope: dict, receive: Any, send: Any) -> None:
    """The deployment tests' app (see the module docstring)."""
    global _held
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(_shown(scope))})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
            await send({"type": "websocket.close", "code": 1000})
        return
    query = parse_qs(scope["query_string"].decode())
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    if scope["path"] == "/hold":
        directory = Path(query["dir"][0])
        _held += 1
        (directory / f"started-{os.getpid()}-{_held}").write_text("")
        while not (directory / "release").exists():
            await asyncio.sleep(0.02)
        body = json.dumps({"pid": os.getpid(), "held": True}).encode()
    elif scope["path"] == "/busy":
        end = time.monotonic() + int(query.get("ms", ["100"])[0]) / 1000
        while time.monotonic() < end:  # busy on purpose: the loop cannot accept meanwhile
            pass
        body = json.dumps({"pid": os.getpid()}).encode()
    else:
        body = json.dumps(_shown(scope)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- helpers for the tests -------------------------------------------------------------


@contextlib.contextmanager
def serving(*args: Any, **kwargs: Any) -> Iterator[Any]:
    """:func:`tests.serving.start_server` as a context manager that stops the
    server by PID and closes its output pipe."""
    from tests.serving import start_server

    server = start_server(*args, **kwargs)
    try:
        yield server
    finally:
        closing(server)


def closing(server: Any, sig: int = signal.SIGTERM) -> int:
    """Stop ``server`` (if still running) and close its output pipe; return its exit code."""
    try:
        return server.stop(sig)
    finally:
        if server.proc.stdout is not None:
            server.proc.stdout.close()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for daemons that cannot report theirs)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_get(
    host: str,
    port: int,
    target: str = "/scope",
    headers: dict[str, str] | None = None,
    source: str | None = None,
    timeout: float = 10.0,
    prefix: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 GET on a new connection (optionally from ``source`` and
    after raw ``prefix`` bytes); returns status, headers, body."""
    from tests.serving import recv_response

    sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0) if source else None)
    try:
        lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        sock.sendall(prefix + ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        status, head, body = recv_response(sock, timeout)
    finally:
        sock.close()
    return int(status.split()[1]), {k.decode(): v.decode("latin-1") for k, v in head.items()}, body


def get_json(*args: Any, **kwargs: Any) -> dict:
    """:func:`http_get`, expecting 200 and a JSON body."""
    status, _headers, body = http_get(*args, **kwargs)
    assert status == 200, (status, body[:300])
    return json.loads(body)


class Daemon:
    """nginx or HAProxy started for one test, on loopback, stopped by PID."""

    def __init__(self, argv: list[str], ports: list[int], log: Path) -> None:
        self.argv = argv
        self.ports = ports
        self.log = log
        self.output = open(log, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(argv, stdout=self.output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_listening(self, timeout: float = 10.0) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv[0]} exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            for port in self.ports:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    return False
            return True

        wait_for(up, timeout, f"{self.argv[0]} to listen")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output.close()


def require(binary: str) -> str:
    """The path of ``binary``; the deployment tests need it installed (``.ci/run`` does)."""
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.path.exists(p)), None
    )
    assert path, f"{binary} is not installed (apt-get install {binary})"
    return path


def start_nginx(
    tmp: Path,
    substitutions: list[tuple[str, str]],
    ports: list[int],
    config: Path | None = None,
    once: bool = False,
) -> Daemon:
    """nginx with ``config`` (by default ``docs/examples/nginx.conf``, the
    guide's site configuration) adapted by ``substitutions`` (regex,
    replacement; each found exactly once with ``once``), inside a main
    configuration that keeps everything in ``tmp`` and runs in the
    foreground; ``nginx -t`` must accept it first."""
    binary = require("nginx")
    config = config or DOCS / "nginx.conf"
    site = config.read_text()
    for pattern, replacement in substitutions:
        site, n = re.subn(pattern, replacement, site)
        assert n == 1 if once else n, f"{pattern!r} not found{' once' if once else ''} in {config}"
    (tmp / "site.conf").write_text(site)
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / name).mkdir(exist_ok=True)
    main = f"""
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
"""
    (tmp / "nginx-main.conf").write_text(main)
    check = subprocess.run(
        [binary, "-t", "-p", str(tmp), "-c", str(tmp / "nginx-main.conf")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    daemon = Daemon([binary, "-p", str(tmp), "-c", str(tmp / "nginx-main.conf")], ports, tmp / "nginx.out")
    daemon.wait_listening()
    return daemon


def start_haproxy(tmp: Path, substitutions: list[tuple[str, str]], ports: list[int]) -> Daemon:
    """HAProxy with ``docs/examples/haproxy.cfg`` adapted by ``substitutions``, in the foreground."""
    binary = require("haproxy")
    config = (DOCS / "haproxy.cfg").read_text()
    for pattern, replacement in substitutions:
        config, n = re.subn(pattern, replacement, config)
        assert n, f"{pattern!r} not found in docs/examples/haproxy.cfg"
    path = tmp / "haproxy.cfg"
    path.write_text(config)
    check = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    daemon = Daemon([binary, "-db", "-f", str(path)], ports, tmp / "haproxy.out")
    daemon.wait_listening()
    return daemon


def make_certs(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client
    certificate, as PEM files in ``tmp`` (made per run with trustme)."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("alice@example.com", common_name="alice")
    paths = {
        "ca": tmp / "ca.pem",
        "key": tmp / "server.key",
        "cert": tmp / "server.pem",
        "client": tmp / "client.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    paths["server_cert_pem"] = server.cert_chain_pems[0].bytes()  # type: ignore[assignment]
    return paths


def start_command(argv: list[str], pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None) -> Any:
    """Run ``argv`` (a whole server command line) like :func:`tests.serving.start_server`
    does, with ``pass_fds`` inherited; return the :class:`tests.serving.Server`
    once it logged where it listens."""
    from tests.serving import _LISTEN, Server
    from tests.serving import ROOT as SERVING_ROOT

    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SERVING_ROOT), full_env.get("PYTHONPATH")]))
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=full_env,
        cwd=SERVING_ROOT,
        pass_fds=pass_fds,
    )
    server = Server(proc, None, "127.0.0.1")
    deadline = time.monotonic() + 20
    while True:
        found = _LISTEN.findall(server.read_output(0.05))
        if found:
            _desc, host, port = found[0]
            server.host, server.port = host or "127.0.0.1", int(port) if port else None
            return server
        if proc.poll() is not None or time.monotonic() > deadline:
            closing(server, signal.SIGKILL)
            raise AssertionError(f"server did not start; output:\n{''.join(server.output)}")


def systemd_argv(argv: list[str], fd: int, names: str = "twisted-asgi.socket") -> list[str]:
    """``argv`` run as systemd runs a socket-activated service: the listening
    socket ``fd`` moved to descriptor 3, ``LISTEN_FDS=1``, ``LISTEN_FDNAMES``
    (the socket unit's name unless it sets FileDescriptorName=) and
    ``LISTEN_PID`` the pid of the process that execs ``argv`` (sd_listen_fds(3))."""
    script = f'export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES="{names}"; exec "$@" 3<&{fd} {fd}<&-'
    return [require("bash"), "-c", script, "bash", *argv]
