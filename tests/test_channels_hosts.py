"""Django Channels across hosts, as docs/channels.rst deploys it: the example
project of ``docs/examples/channels/`` (a Channels consumer that joins a group,
a health-check view, the ``channels_redis`` layer), served by TWO twisted-asgi
instances (``--workers 2`` each, separate process trees, as on two hosts)
started with the command the page shows, behind a real nginx running the
page's ``docs/examples/nginx-channels.conf``, with a real ``redis-server`` on
loopback; and behind HAProxy with the page's ``haproxy-channels.cfg``, whose
health checks probe the project's health view.

Every client's first message names the pid of the worker serving it; the test
maps pids to instances from each instance's log, so the spread over every
instance and worker is checked, not assumed.

Source: issue 19, item 8.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from tests.deploy import DOCS, Daemon, free_port, require, wait_for
from tests.deploy import start_nginx as start_guide_nginx
from tests.serving import _LISTEN, ROOT, TWISTD, Server, recv_response

EXAMPLE = DOCS / "channels"
PAGE = ROOT / "docs" / "channels.rst"
NGINX_CONF = DOCS / "nginx-channels.conf"
HAPROXY_CONF = DOCS / "haproxy-channels.cfg"
#: The addresses of the two hosts in the page's command and nginx configuration.
HOSTS = ("10.0.0.1", "10.0.0.2")
ORIGIN = "http://example.com"
SERVING = re.compile(r"Worker (\d+) is serving")


# -- Redis ----------------------------------------------------------------------------------


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    server = Redis(tmp_path / "redis", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Redis:
    """``redis-server`` on loopback, on a free port, in its own directory, no
    persistence; stopped by PID."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.daemon: Daemon | None = None
        directory.mkdir(exist_ok=True)

    def start(self) -> None:
        argv = [require("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.daemon = Daemon(argv, [self.port], self.directory / "redis.log")
        self.daemon.wait_listening()
        wait_for(self.ping, 10, "redis-server to answer PING")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64) == b"+PONG\r\n"
        except OSError:
            return False

    def command(self, *words: str) -> bytes:
        """One command's reply line (RESP), e.g. ``b":3"`` for an integer."""
        request = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(request.encode())
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                assert chunk, reply
                reply += chunk
        return reply[:-2]

    def group_size(self, group: str = "lobby") -> int:
        """How many channels the Redis layer has in ``group`` (channels_redis's key)."""
        reply = self.command("ZCARD", f"asgi:group:{group}")
        assert reply.startswith(b":"), reply
        return int(reply[1:])

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None


# -- the hosts --------------------------------------------------------------------------------


def page_host_command() -> tuple[dict[str, str], list[str]]:
    """The environment and the command docs/channels.rst runs on the first host
    (its ``$ export`` line and its ``$ twistd`` line)."""
    lines = [line.strip()[2:] for line in PAGE.read_text(encoding="utf-8").splitlines() if line.strip()[:2] == "$ "]
    commands = [line for line in lines if line.startswith("twistd ") and "--workers" in line]
    exports = [line for line in lines if line.startswith("export DJANGO_SECRET_KEY=")]
    assert len(commands) == 1 and len(exports) == 1, (commands, exports)
    argv = shlex.split(commands[0])
    assert HOSTS[0] in argv and "8000" in argv, argv
    env = dict(word.split("=", 1) for word in shlex.split(exports[0])[1:])
    assert set(env) == {"DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "REDIS_URL"}, env
    return env, argv


@dataclass
class Instance:
    """One twisted-asgi instance (a supervisor and its workers), as on one host."""

    name: str
    server: Server
    workers: list[int] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def wait_serving(self, count: int = 2) -> list[int]:
        def enough() -> list[int] | None:
            if self.server.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.server.read_output()}")
            pids = [int(p) for p in SERVING.findall(self.server.read_output(0.05))]
            return pids if len(pids) >= count else None

        self.workers = wait_for(enough, 60, f"{self.name}'s workers to serve")
        return self.workers

    def kill(self) -> None:
        """The host dies: the supervisor stopped (it cannot restart anyone),
        every worker and then the supervisor SIGKILLed, by PID."""
        self.server.proc.send_signal(signal.SIGSTOP)
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.server.proc.send_signal(signal.SIGKILL)
        self.server.proc.wait(30)
        wait_for(lambda: not any(alive(pid) for pid in self.workers), 30, f"{self.name}'s workers to die")

    def close(self) -> None:
        if self.server.proc.poll() is None:
            self.server.stop(signal.SIGTERM)
        for pid in self.workers:  # a worker outliving its supervisor would be a bug; never leave one
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.server.proc.stdout is not None and not self.server.proc.stdout.closed:
            self.server.proc.stdout.close()


def alive(pid: int) -> bool:
    """Whether ``pid`` is running (a zombie of another parent counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start_instance(name: str, workdir: Path, redis: Redis) -> Instance:
    """The page's command, run as on a host of its own: in its own directory
    (twistd writes its pid file there), with the project importable, on
    loopback (10.0.0.1 becomes 127.0.0.1, port 8000 a free one)."""
    page_env, argv = page_host_command()
    argv = [TWISTD if a == "twistd" else "127.0.0.1" if a == HOSTS[0] else "0" if a == "8000" else a for a in argv]
    workdir.mkdir()
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    # The page's environment, with a secret of the test's and its own Redis.
    env.update(page_env, DJANGO_SECRET_KEY="test-only-insecure-key", REDIS_URL=redis.url)
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(EXAMPLE)]), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=workdir
    )
    server = Server(proc, None, "127.0.0.1")
    instance = Instance(name, server)
    try:
        found = wait_for(lambda: _LISTEN.findall(server.read_output(0.05)) or proc.poll() is not None, 60, "listening")
        assert isinstance(found, list), server.read_output()
        server.port = int(found[0][2])
        instance.wait_serving()
    except BaseException:
        instance.close()
        raise
    return instance


def start_nginx(tmp: Path, ports: list[int]) -> tuple[Daemon, int]:
    """nginx with the page's configuration, its two hosts the two instances'
    loopback ports; returns it and the port it listens on."""
    port = free_port()
    substitutions = [
        (r"listen 80;", f"listen 127.0.0.1:{port};"),
        (rf"server {re.escape(HOSTS[0])}:8000 ", f"server 127.0.0.1:{ports[0]} "),
        (rf"server {re.escape(HOSTS[1])}:8000 ", f"server 127.0.0.1:{ports[1]} "),
    ]
    daemon = start_guide_nginx(tmp, substitutions, [port], config=NGINX_CONF, once=True)
    return daemon, port


@dataclass
class Stack:
    redis: Redis
    instances: list[Instance]
    port: int  # nginx's

    def owner(self, pid: int) -> Instance:
        matches = [i for i in self.instances if pid in i.workers]
        assert len(matches) == 1, (pid, [(i.name, i.workers) for i in self.instances])
        return matches[0]


@pytest.fixture
def stack(tmp_path: Path, redis: Redis) -> Iterator[Stack]:
    """Two instances, as on hosts 10.0.0.1 and 10.0.0.2, behind nginx."""
    instances: list[Instance] = []
    nginx = None
    try:
        for name in ("A", "B"):
            instances.append(start_instance(name, tmp_path / name, redis))
        nginx, port = start_nginx(tmp_path, [i.port for i in instances])
        yield Stack(redis, instances, port)
    finally:
        if nginx is not None:
            nginx.stop()
        for instance in instances:
            instance.close()


# -- clients ---------------------------------------------------------------------------------------


@dataclass
class Client:
    ws: ClientConnection
    pid: int

    def recv_json(self, timeout: float = 10.0) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout))

    def closed(self, timeout: float) -> ConnectionClosed | None:
        """The close this connection ends with within ``timeout``, None if it is still open then."""
        try:
            message = self.ws.recv(timeout)
        except ConnectionClosed as exc:
            return exc
        except TimeoutError:
            return None
        raise AssertionError(f"unexpected message {message!r}")


def open_client(port: int, stack: contextlib.ExitStack) -> Client:
    """A WebSocket client through nginx; returns once the consumer said hello."""
    ws = stack.enter_context(ws_connect(f"ws://127.0.0.1:{port}/ws/chat/", origin=ORIGIN, open_timeout=10))
    hello = json.loads(ws.recv(10))
    assert hello["type"] == "hello", hello
    return Client(ws, hello["pid"])


def spread_clients(stack: Stack, exits: contextlib.ExitStack, limit: int = 60) -> list[Client]:
    """Clients through nginx until every worker of every instance has two; fails past ``limit`` clients.

    The workers of an instance share one listening socket, and which of them
    accepts is the kernel's choice (one may take nearly all): while a worker is
    given its clients, the other workers of its instance are stopped
    (SIGSTOP), so that it is the one that accepts there. nginx still sends
    every other client to the other instance."""
    clients: list[Client] = []
    want = {pid: 2 for instance in stack.instances for pid in instance.workers}
    for instance in stack.instances:
        for pid in instance.workers:
            others = [other for other in instance.workers if other != pid]
            for other in others:
                os.kill(other, signal.SIGSTOP)
            try:
                while clients_of(clients, pid) < 2:
                    assert len(clients) < limit, (
                        f"{limit} clients did not reach every worker twice: {[c.pid for c in clients]}, wanted {want}"
                    )
                    client = open_client(stack.port, exits)
                    stack.owner(client.pid)  # a pid no instance logged fails here
                    clients.append(client)
            finally:
                for other in others:
                    os.kill(other, signal.SIGCONT)
    return clients


def clients_of(clients: list[Client], pid: int) -> int:
    return sum(1 for c in clients if c.pid == pid)


def broadcast(sender: Client, text: str, receivers: list[Client]) -> None:
    """``sender`` sends ``text``; each of ``receivers`` gets it from the consumer serving it."""
    sender.ws.send(json.dumps({"text": text}))
    for client in receivers:
        message = client.recv_json()
        assert message == {"type": "message", "text": text, "pid": client.pid}, message


def get(port: int, target: str, host: str = "example.com") -> tuple[int, bytes]:
    """One GET with ``host`` as its Host header (as a balancer's health probe sends it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status, _headers, body = recv_response(sock)
    return int(status.split()[1]), body


# -- the tests ----------------------------------------------------------------------------------------


def test_group_message_reaches_every_host_and_worker_and_a_dead_host_loses_only_its_clients(stack: Stack) -> None:
    """A message one client sends goes, through the Redis layer, to every client on
    both instances and all four workers; after one instance is SIGKILLed (supervisor
    and workers), only its clients are gone: the others get the next message, and
    new clients through nginx all reach the living instance."""
    a, b = stack.instances
    with contextlib.ExitStack() as exits:
        clients = spread_clients(stack, exits)
        on_a = [c for c in clients if stack.owner(c.pid) is a]
        on_b = [c for c in clients if stack.owner(c.pid) is b]
        # Idle for longer than the layer's blocking read of Redis: no consumer is
        # ended (redis-py 8 times that read out at 5 s unless the settings say otherwise).
        assert clients[0].closed(RedisChannelLayer.brpop_timeout + 1.5) is None
        for client in clients:
            assert client.closed(0.05) is None, f"pid {client.pid}: {client.closed(0)!r}"
        # What is not a message (no "text" string) is ignored: nobody gets anything from it.
        on_a[0].ws.send("[1]")
        on_a[0].ws.send(json.dumps({"text": 5}))
        # Sent from a client of A, the first message reaches B's workers too; and the other way round.
        broadcast(on_a[0], "from A", clients)
        broadcast(on_b[0], "from B", clients)

        a.kill()
        for client in on_a:
            assert client.closed(10) is not None, f"a client of the killed instance (pid {client.pid}) is still open"
        for client in on_b:
            assert client.closed(0.05) is None, f"a client of the living instance (pid {client.pid}) was closed"
        broadcast(on_b[-1], "after A died", on_b)

        for _ in range(8):
            newcomer = open_client(stack.port, exits)
            assert stack.owner(newcomer.pid) is b
            on_b.append(newcomer)
        broadcast(on_b[-1], "newcomers too", on_b)
        assert get(stack.port, "/healthz/") == (200, b"ok\n")
        # The dead instance's consumers never left the group (group_expiry cleans that up).
        assert stack.redis.group_size() == len(clients) + 8


def test_draining_one_host_closes_its_websockets_with_1001_and_moves_new_clients(stack: Stack) -> None:
    """SIGTERM to one instance's supervisor: its WebSockets get Close 1001 at once,
    the other instance's clients stay and still get group messages, a client loop
    through nginx meanwhile never has a failed handshake, every client that
    connects after the instance stopped listening is served by the other one,
    and the drained instance exits 0."""
    a, b = stack.instances
    stop = threading.Event()
    newcomers: list[tuple[float, int]] = []  # (when the handshake started, pid)
    failures: list[str] = []
    went_away: list[int] = []

    def newcomer_loop() -> None:
        # A new client every 20 ms at most, 1500 in all at most.
        for _ in range(1500):
            if stop.wait(0.02):
                return
            started = time.monotonic()
            try:
                with contextlib.ExitStack() as exits:
                    client = open_client(stack.port, exits)
                    newcomers.append((started, client.pid))
            except ConnectionClosed as exc:
                # Accepted by A just before it began draining: then closed like A's other clients.
                if exc.rcvd is None or exc.rcvd.code != 1001:
                    failures.append(repr(exc))
                went_away.append(1)
            except Exception as exc:  # noqa: BLE001 (recorded and asserted on)
                failures.append(repr(exc))

    with contextlib.ExitStack() as exits:
        clients = spread_clients(stack, exits)
        on_a = [c for c in clients if stack.owner(c.pid) is a]
        on_b = [c for c in clients if stack.owner(c.pid) is b]
        thread = threading.Thread(target=newcomer_loop)
        thread.start()
        try:
            wait_for(lambda: len(newcomers) >= 5, 20, "the newcomer loop to get going")
            a.server.proc.send_signal(signal.SIGTERM)
            for client in on_a:
                closed = client.closed(10)
                assert closed is not None and closed.rcvd is not None, f"pid {client.pid}: {closed!r}"
                assert (closed.rcvd.code, closed.rcvd.reason) == (1001, "server shutting down")
            assert a.server.wait(30) == 0, a.server.read_output()
            gone = time.monotonic()
            wait_for(lambda: sum(1 for t, _ in newcomers if t > gone) >= 10, 30, "newcomers after the drain")
        finally:
            stop.set()
            thread.join(30)
        assert failures == [], f"{len(newcomers)} handshakes succeeded, {len(went_away)} then got 1001"
        late = [pid for t, pid in newcomers if t > gone]
        assert {stack.owner(pid).name for pid in late} == {"B"}
        assert len({pid for _, pid in newcomers}) >= 2, "the loop reached one worker only"
        for client in on_b:
            assert client.closed(0.05) is None, b.server.read_output()[-6000:]
        broadcast(on_b[0], "B stays", on_b)
        # B's clients are still in the group. (That it holds only them is not
        # asserted: a channels_redis consumer now and then never returns from
        # its receive after websocket.disconnect, so it never leaves the group;
        # the newest env met one. See the drain note on docs/channels.rst.)
        assert stack.redis.group_size() >= len(on_b)
    output = a.server.read_output()
    assert "Traceback" not in output, output


def test_health_check_answers_503_while_redis_is_down(tmp_path: Path, redis: Redis) -> None:
    """The page's health view: 200 through every worker while the channel layer
    answers, 503 within its timeout once Redis is stopped, 200 again once Redis
    is back; a probe whose Host is not in ALLOWED_HOSTS gets 400."""
    instance = start_instance("A", tmp_path / "A", redis)
    try:
        assert get(instance.port, "/healthz/") == (200, b"ok\n")
        assert get(instance.port, "/healthz/", host="10.0.0.1")[0] == 400
        redis.stop()
        started = time.monotonic()
        status, body = get(instance.port, "/healthz/")
        assert status == 503 and body.startswith(b"channel layer unavailable"), (status, body)
        assert time.monotonic() - started < 5
        for _ in range(6):  # whichever worker answers
            assert get(instance.port, "/healthz/")[0] == 503
        redis.start()
        wait_for(lambda: get(instance.port, "/healthz/")[0] == 200, 20, "the health check to recover")
    finally:
        instance.close()


def start_haproxy(tmp: Path, ports: list[int]) -> tuple[Daemon, int, Path]:
    """HAProxy with the page's configuration, its two hosts the instances'
    loopback ports, and a stats socket; returns it, its port and the socket."""
    port = free_port()
    sock = tmp / "haproxy.sock"
    config = HAPROXY_CONF.read_text()
    for pattern, replacement in [
        (r"bind :80\n", f"bind 127.0.0.1:{port}\n"),
        (rf"server host1 {re.escape(HOSTS[0])}:8000\n", f"server host1 127.0.0.1:{ports[0]}\n"),
        (rf"server host2 {re.escape(HOSTS[1])}:8000\n", f"server host2 127.0.0.1:{ports[1]}\n"),
        (r"(?m)^global\n", f"global\n    stats socket {sock} level admin\n"),
    ]:
        config, n = re.subn(pattern, replacement, config)
        assert n == 1, f"{pattern!r} not found once in {HAPROXY_CONF}"
    path = tmp / "haproxy.cfg"
    path.write_text(config)
    check = subprocess.run([require("haproxy"), "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    daemon = Daemon([require("haproxy"), "-db", "-f", str(path)], [port], tmp / "haproxy.out")
    daemon.wait_listening()
    return daemon, port, sock


def haproxy_status(sock_path: Path) -> dict[str, str]:
    """``{server: status}`` (UP, DOWN, ...) of the backend's servers, from HAProxy's ``show stat``."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(sock_path))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    names = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(names, line.split(","), strict=False)) for line in lines[1:] if line]
    return {r["svname"]: r["status"] for r in rows if r.get("pxname") == "mysite" and r["svname"].startswith("host")}


def test_haproxy_takes_out_the_host_whose_health_check_fails(tmp_path: Path) -> None:
    """The page's HAProxy configuration probes /healthz/ on both instances: when
    the Redis of one instance stops, HAProxy marks it DOWN and every new
    WebSocket lands on the other, with no failed handshake; when Redis is back,
    the instance is UP again. (Each instance has a Redis of its own here, so
    that one of them can lose it: on loopback there is no network to cut.)"""
    redises = [Redis(tmp_path / f"redis-{name}", free_port()) for name in ("A", "B")]
    instances: list[Instance] = []
    haproxy = None
    try:
        for name, redis in zip(("A", "B"), redises, strict=True):
            redis.start()
            instances.append(start_instance(name, tmp_path / name, redis))
        a, b = instances
        haproxy, port, sock = start_haproxy(tmp_path, [a.port, b.port])
        stack = Stack(redises[0], instances, port)
        wait_for(lambda: haproxy_status(sock) == {"host1": "UP", "host2": "UP"}, 20, "both hosts UP")
        redises[0].stop()
        wait_for(lambda: haproxy_status(sock) == {"host1": "DOWN", "host2": "UP"}, 20, "host1 DOWN")
        with contextlib.ExitStack() as exits:
            for _ in range(8):
                assert stack.owner(open_client(port, exits).pid) is b
        redises[0].start()
        wait_for(lambda: haproxy_status(sock) == {"host1": "UP", "host2": "UP"}, 20, "host1 UP again")
        with contextlib.ExitStack() as exits:
            owners = {stack.owner(open_client(port, exits).pid).name for _ in range(4)}
        assert owners == {"A", "B"}, owners
    finally:
        if haproxy is not None:
            haproxy.stop()
        for instance in instances:
            instance.close()
        for redis in redises:
            redis.stop()
