"""Run the benchmark suite: every scenario against twisted-asgi and its peers, interleaved.

One command (after ``benchmarks/setup.sh``)::

    python benchmarks/run.py                      # 3 rounds, 10 s per measurement
    python benchmarks/run.py --rounds 5 --duration 20
    python benchmarks/run.py --smoke --servers twisted-asgi --self-python "$(which python)"

For each round, for each scenario, each server in turn is started fresh, warmed up,
measured and stopped; the order rotates by one place per round and per scenario (A B C,
B C A, C A B), so that over as many rounds as there are servers each server is measured
once in each position, none always first after another scenario's load.  The server
is pinned to CPU 0 and the load generator to CPU 1 (``taskset``), everything on loopback,
every step bounded in time.  The ``--workers`` scaling scenario pins N worker processes to CPUs 0..N-1 and the load
generator to the last cores instead.

``--baseline REF`` adds a second install of twisted-asgi, built from the git commit REF
into ``benchmarks/.venv-ref-<commit>`` (cached), as the server ``twisted-asgi@<commit>``
in every scenario twisted-asgi takes part in, interleaved with it (the rotation makes the two
swap places from round to round); the report gives each row's ratio of the current install to the
baseline and flags a row worse by more than 3%.

Per measurement: throughput, server CPU time per request (utime+stime of the server and
its children from ``/proc/PID/stat``, before and after the load, divided by the requests
the load generator counted; per new connection, so per TLS handshake, in the new-TLS
scenarios), p50/p99 latency, and the load generator's own CPU use (a
row is flagged when it used more than 90% of its core: the client, not the server, may
have been the limit).

Writes ``benchmarks/results/<date>.json`` and regenerates ``docs/benchmarks.rst`` and
``docs/_static/benchmarks.png`` (see ``report.py``).  Only the standard library is used
here; the servers run from ``benchmarks/.venv-self`` and ``benchmarks/.venv-peers``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SCHEMA = 1
#: utime/stime in /proc/PID/stat are in clock ticks (proc(5)).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: A load generator above this share of its core may itself be the limit.
CLIENT_SATURATED = 0.9
SERVER_CPU = "0"
CLIENT_CPU = "1"
#: A row of the baseline comparison is flagged when the current install is worse by more than this.
REGRESSION_LIMIT = 0.03


# --------------------------------------------------------------------------------------
# Servers: how each is started is data.  One process each (granian always adds a
# supervisor process; CPU and RSS are summed over the process tree).


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server, and which optional protocols it serves.

    Command lines are templates, split like a shell would split them; placeholders:
    ``{python}`` and ``{bin}`` (the server's virtualenv), ``{port}``, ``{app}``,
    ``{cert}`` and ``{key}``; ``{workers}`` in the ``workers`` line.
    """

    name: str
    venv: str  # "self", "peers" or "ref" (the --baseline install)
    http: str
    tls: str | None = None  # HTTP/2 over TLS (ALPN h2); None: not supported
    tls_http1: str | None = None  # HTTPS without HTTP/2, for servers with no ``tls`` line
    h2c: bool = False  # HTTP/2 cleartext by prior knowledge on the ``http`` command line
    websocket: bool = True
    package: str = ""  # the distribution whose version is reported
    only: tuple[str, ...] = ()  # when set, the only scenarios it takes part in
    workers: str | None = None  # cleartext HTTP/1.1 with {workers} processes; None: no such option
    # Appended in the idle TLS and idle HTTP/2 scenarios: an idle keep-alive timeout long
    # enough that the server does not close connections before their memory is read.
    idle_args: str = ""


_TA = "{python} -m twisted_asgi"
_TA_TLS = "--endpoint ssl:port={port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
# -v 0: at its default verbosity Daphne writes an access log line per request.
_DAPHNE = "{bin}/daphne -v 0"
# --workers 0: serve in the hypercorn process itself rather than one spawned worker.
_HYPERCORN = "{bin}/hypercorn --workers 0 --worker-class uvloop"
_HYPERCORN_WORKERS = "{bin}/hypercorn --workers {workers} --worker-class uvloop --bind 127.0.0.1:{port} {app}"
_GRANIAN_ARGS = (
    "--interface asgi --host 127.0.0.1 --port {port} --runtime-threads 1 --loop uvloop --http auto --no-access-log"
)
_GRANIAN = f"{{bin}}/granian {_GRANIAN_ARGS} --workers 1"
_UVICORN = "{bin}/uvicorn --host 127.0.0.1 --port {port} --no-access-log --loop uvloop"
_UVICORN_HTTPTOOLS = f"{_UVICORN} --http httptools"
# zttp (a separate package) for HTTP/1.1; --http2 adds HTTP/2 by ALPN over TLS and by
# prior knowledge in cleartext on the same port.
_UVICORN_ZTTP = f"{_UVICORN} --http zttp --http2"
_UVICORN_TLS = "--ssl-certfile {cert} --ssl-keyfile {key}"
_LONG_IDLE = "300"

SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in [
        ServerSpec(
            "twisted-asgi",
            "self",
            f"{_TA} --bind 127.0.0.1 --port {{port}} {{app}}",
            tls=f"{_TA} {_TA_TLS} {{app}}",
            h2c=True,
            package="twisted-asgi",
            workers=f"{_TA} --workers {{workers}} --bind 127.0.0.1 --port {{port}} {{app}}",
            idle_args=f"--timeout-keep-alive {_LONG_IDLE} --timeout-request-head {_LONG_IDLE}",
        ),
        # The same server on asyncio's own event loop (its default, --loop auto,
        # is uvloop, the loop uvicorn[standard] runs on too).
        ServerSpec(
            "twisted-asgi-asyncio",
            "self",
            f"{_TA} --loop asyncio --bind 127.0.0.1 --port {{port}} {{app}}",
            tls=f"{_TA} --loop asyncio {_TA_TLS} {{app}}",
            h2c=True,
            package="twisted-asgi",
            idle_args=f"--timeout-keep-alive {_LONG_IDLE} --timeout-request-head {_LONG_IDLE}",
        ),
        # The floor: Twisted's reactor answering fixed bytes, no parsing, no ASGI.
        ServerSpec(
            "twisted-bare",
            "self",
            "{python} bare_twisted.py {port}",
            websocket=False,
            package="Twisted",
            only=("h1-keepalive-wrk", "h1-keepalive-h2load"),
        ),
        # HTTP/2 is Twisted's own (the http2 extra), over TLS with ALPN only: no h2c.
        ServerSpec(
            "daphne",
            "peers",
            f"{_DAPHNE} -b 127.0.0.1 -p {{port}} {{app}}",
            tls=f"{_DAPHNE} -e ssl:{{port}}:interface=127.0.0.1:privateKey={{key}}:certKey={{cert}} {{app}}",
            package="daphne",
        ),
        # uvicorn[standard]: httptools and uvloop, HTTP/1.1 only (HTTP/2 is the zttp line below).
        ServerSpec(
            "uvicorn",
            "peers",
            f"{_UVICORN_HTTPTOOLS} {{app}}",
            tls_http1=f"{_UVICORN_HTTPTOOLS} {_UVICORN_TLS} {{app}}",
            package="uvicorn",
            workers=f"{_UVICORN_HTTPTOOLS} --workers {{workers}} {{app}}",
            idle_args=f"--timeout-keep-alive {_LONG_IDLE}",
        ),
        # uvicorn with --http zttp --http2: HTTP/1.1, HTTP/2 over TLS (ALPN) and h2c.
        ServerSpec(
            "uvicorn-zttp",
            "peers",
            f"{_UVICORN_ZTTP} {{app}}",
            tls=f"{_UVICORN_ZTTP} {_UVICORN_TLS} {{app}}",
            h2c=True,
            package="zttp",
            workers=f"{_UVICORN_ZTTP} --workers {{workers}} {{app}}",
            idle_args=f"--timeout-keep-alive {_LONG_IDLE}",
        ),
        ServerSpec(
            "hypercorn",
            "peers",
            f"{_HYPERCORN} --bind 127.0.0.1:{{port}} {{app}}",
            tls=f"{_HYPERCORN} --certfile {{cert}} --keyfile {{key}} --bind 127.0.0.1:{{port}} {{app}}",
            h2c=True,
            package="hypercorn",
            workers=_HYPERCORN_WORKERS,
            idle_args=f"--keep-alive {_LONG_IDLE}",
        ),
        # uvicorn (httptools) serving Starlette's FileResponse, which streams the file in
        # 64 KiB chunks since uvicorn offers no path send; the file scenarios only.
        ServerSpec(
            "uvicorn-starlette",
            "peers",
            f"{_UVICORN_HTTPTOOLS} {{app}}_starlette",
            websocket=False,
            package="starlette",
            only=("file-1m", "file-100m"),
        ),
        # granian keeps idle connections open (no idle timeout by default), but serves at most
        # --backpressure (default: its listen backlog, 1024) connections at once.
        ServerSpec(
            "granian",
            "peers",
            f"{_GRANIAN} {{app}}",
            # TLS 1.2 too (granian's default minimum is 1.3), for the TLS 1.2 scenario.
            tls=f"{_GRANIAN} --ssl-certificate {{cert}} --ssl-keyfile {{key}} --ssl-protocol-min tls1.2 {{app}}",
            h2c=True,
            package="granian",
            workers=f"{{bin}}/granian {_GRANIAN_ARGS} --workers {{workers}} {{app}}",
            idle_args="--backpressure 100000",
        ),
    ]
}
DEFAULT_SERVERS = (
    "twisted-asgi",
    "twisted-asgi-asyncio",
    "twisted-bare",
    "daphne",
    "uvicorn",
    "uvicorn-zttp",
    "hypercorn",
    "granian",
    "uvicorn-starlette",
)


# --------------------------------------------------------------------------------------
# Scenarios.


@dataclass(frozen=True)
class Scenario:
    """One workload: which app, which load generator, what is reported."""

    name: str
    title: str
    kind: str  # wrk | h2load | ws-echo | idle | startup | tls-new | workers
    app: str = "apps:hello"
    unit: str = "req/s"
    higher_is_better: bool = True
    connections: int = 64
    streams: int = 1  # h2load -m: concurrent streams per connection
    h1: bool = False  # h2load --h1
    tls: bool = False
    env: dict[str, str] = field(default_factory=dict)  # wrk_bench.lua settings
    min_response_bytes: int = 0  # a response shorter than this means the server answered wrong
    needs: str = ""  # "h2-tls" | "h2c" | "websocket" | "tls" | "workers"
    protocol: str = ""  # idle: "ws" | "tls" | "h2c"
    tls_version: str = ""  # tls-new: "1.3" | "1.2"


SCENARIOS: list[Scenario] = [
    Scenario("h1-keepalive-wrk", "HTTP/1.1 keep-alive hello (wrk)", "wrk", min_response_bytes=13),
    Scenario("h1-keepalive-h2load", "HTTP/1.1 keep-alive hello (h2load --h1)", "h2load", h1=True),
    Scenario(
        "h1-close",
        "HTTP/1.1 Connection: close",
        "wrk",
        connections=16,
        env={"BENCH_CONNECTION_CLOSE": "1"},
        min_response_bytes=13,
    ),
    Scenario(
        "h1-post-64k",
        "POST 64 KiB, echoed",
        "wrk",
        app="apps:echo",
        connections=16,
        env={"BENCH_METHOD": "POST", "BENCH_BODY_BYTES": "65536"},
        min_response_bytes=65536,
    ),
    Scenario(
        "h1-stream-1m",
        "1 MiB streamed response",
        "wrk",
        app="apps:stream",
        unit="MiB/s",
        connections=8,
        min_response_bytes=1 << 20,
    ),
    # A static file by path send (http.response.pathsend) where the server offers it
    # (twisted-asgi: os.sendfile; granian), else read into 64 KiB body chunks.
    Scenario(
        "file-1m",
        "1 MiB static file, path send",
        "wrk",
        app="apps:file_1m",
        unit="MiB/s",
        connections=8,
        min_response_bytes=1 << 20,
    ),
    Scenario(
        "file-100m",
        "100 MiB static file, path send",
        "wrk",
        app="apps:file_100m",
        unit="MiB/s",
        connections=4,
        min_response_bytes=100 << 20,
    ),
    Scenario("h2-tls", "HTTP/2 over TLS (h2load)", "h2load", connections=8, streams=32, tls=True, needs="h2-tls"),
    Scenario("h2c", "HTTP/2 cleartext, prior knowledge (h2load)", "h2load", connections=8, streams=32, needs="h2c"),
    # The same HTTP/2 loads at 16 connections: the server CPU per request is the figure here.
    Scenario(
        "h2-tls-cpu",
        "HTTP/2 over TLS, server CPU (h2load -c16 -m32)",
        "h2load",
        connections=16,
        streams=32,
        tls=True,
        needs="h2-tls",
    ),
    Scenario("h2c-cpu", "HTTP/2 h2c, server CPU (h2load -c16 -m32)", "h2load", connections=16, streams=32, needs="h2c"),
    Scenario(
        "ws-echo",
        "WebSocket echo, 32-byte binary messages",
        "ws-echo",
        app="apps:ws_echo",
        unit="msg/s",
        connections=32,
        streams=4,  # messages in flight per connection
        needs="websocket",
    ),
    Scenario(
        "ws-idle",
        "Idle WebSocket connections (server RSS each)",
        "idle",
        app="apps:ws_echo",
        unit="KiB/conn",
        higher_is_better=False,
        connections=2000,
        needs="websocket",
        protocol="ws",
    ),
    Scenario(
        "tls-idle",
        "Idle TLS connections, handshake done, no request (server RSS each)",
        "idle",
        unit="KiB/conn",
        higher_is_better=False,
        connections=2000,
        tls=True,
        needs="tls",
        protocol="tls",
    ),
    Scenario(
        "h2c-idle",
        "Idle HTTP/2 connections, h2c, SETTINGS exchanged (server RSS each)",
        "idle",
        unit="KiB/conn",
        higher_is_better=False,
        connections=2000,
        needs="h2c",
        protocol="h2c",
    ),
    # A new connection per request, 16 at a time: a full handshake (never resumed), one
    # request, close.  The server CPU per request is its CPU per handshake (and request).
    Scenario(
        "tls13-new-conn",
        "New TLS 1.3 connection per request",
        "tls-new",
        connections=16,
        tls=True,
        needs="tls",
        tls_version="1.3",
    ),
    Scenario(
        "tls12-new-conn",
        "New TLS 1.2 connection per request",
        "tls-new",
        connections=16,
        tls=True,
        needs="tls",
        tls_version="1.2",
    ),
    # The same work with a load generator that is not the limit: tlsfirst.py, a Python
    # client, spends about as much CPU per handshake as the server and saturates its core
    # first.  wrk (C) over https with Connection: close does a full handshake per request
    # (it never resumes a session; TLS 1.3 as negotiated) and leaves the server the limit;
    # its latency starts after the handshake.
    Scenario(
        "tls-new-conn-wrk",
        "New TLS connection per request (wrk, server-bound)",
        "wrk",
        connections=16,
        env={"BENCH_CONNECTION_CLOSE": "1"},
        min_response_bytes=13,
        tls=True,
        needs="tls",
    ),
    # One fresh TLS 1.3 connection at a time: the time to first byte of a lone client,
    # which no queue on either side distorts.
    Scenario(
        "tls13-first-byte",
        "Fresh TLS 1.3 connections one at a time (time to first byte)",
        "tls-new",
        connections=1,
        tls=True,
        needs="tls",
        tls_version="1.3",
    ),
    Scenario("startup", "Startup time, until the port answers 200", "startup", unit="ms", higher_is_better=False),
    Scenario("django", "Django view (async view, 2 middleware)", "wrk", app="benchsite.asgi:application"),
    # N worker processes on CPUs 0..N-1 (64 wrk connections each), the load generator on
    # the last cores; the row's figure is the throughput at the largest N (--workers-max).
    Scenario("workers", "--workers scaling, keep-alive hello (wrk)", "workers", needs="workers", min_response_bytes=13),
]
SCENARIO_NAMES = [s.name for s in SCENARIOS]


def supports(spec: ServerSpec, scenario: Scenario) -> bool:
    """Whether ``spec`` serves what ``scenario`` needs (else the cell is "n/a")."""
    if spec.only and scenario.name not in spec.only:
        return False
    if scenario.needs == "h2-tls":
        return spec.tls is not None
    if scenario.needs == "h2c":
        return spec.h2c
    if scenario.needs == "websocket":
        return spec.websocket
    if scenario.needs == "tls":
        return spec.tls is not None or spec.tls_http1 is not None
    if scenario.needs == "workers":
        return spec.workers is not None
    return True


# --------------------------------------------------------------------------------------
# Processes: /proc readings, bounded subprocesses, starting and stopping servers.


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return text[text.rfind(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """utime+stime (fields 14 and 15 of /proc/PID/stat) of each live process, in ticks."""
    ticks = {}
    for pid in pids:
        fields = _proc_stat(pid)
        if fields is not None:
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def cpu_seconds_between(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds the tree used between two :func:`cpu_ticks` readings (new processes count whole)."""
    return sum(value - before.get(pid, 0) for pid, value in after.items()) / CLOCK_TICKS


def rss_bytes(pids: list[int]) -> int:
    """Resident set size summed over ``pids`` (VmRSS in /proc/PID/status)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def listen_overflows() -> int | None:
    """The kernel's count of connections dropped because a listen queue was full
    (TcpExtListenOverflows in /proc/net/netstat; system-wide)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return None


@dataclass
class ClientRun:
    """What a finished load-generator process did."""

    returncode: int
    stdout: str
    stderr: str
    wall: float
    cpu: float  # user+system seconds of the client process (from wait4)
    timed_out: bool


def run_client(
    argv: list[str], timeout: float, env: dict[str, str] | None = None, log: Path | None = None
) -> ClientRun:
    """Run a load generator to completion (killed past ``timeout``) and measure its CPU with wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
        deadline = start + timeout
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline and not timed_out:
                timed_out = True
                proc.kill()
                deadline += 10
            time.sleep(0.02)  # polling our own child's exit; not a race wait
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if log is not None:
        with log.open("a") as handle:
            handle.write(f"$ {shlex.join(argv)}\n{stdout}{stderr}\n")
    return ClientRun(proc.returncode, stdout, stderr, wall, usage.ru_utime + usage.ru_stime, timed_out)


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def probe(port: int, tls: bool, timeout: float = 2.0) -> bool:
    """Whether ``GET /`` on the port answers with status 200 (HTTP/1.1, over TLS if ``tls``)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return False
    try:
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["http/1.1"])
            sock = context.wrap_socket(sock, server_hostname="localhost")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        head = b""
        while b"\r\n" not in head and len(head) < 1024:
            chunk = sock.recv(1024)
            if not chunk:
                break
            head += chunk
        return head.split(b" ", 2)[1:2] == [b"200"]
    except OSError:
        return False
    finally:
        sock.close()


class ServerProcess:
    """A server started for one measurement, stopped by its PID (and its children's)."""

    def __init__(self, argv: list[str], port: int, tls: bool, env: dict[str, str], log: Path) -> None:
        self.argv = argv
        self.port = port
        self.tls = tls
        self.log = log
        self.log_handle = log.open("ab")
        self.log_handle.write(f"$ {shlex.join(argv)}\n".encode())
        self.log_handle.flush()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdout=self.log_handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=BENCH_DIR, env=env
        )
        self.startup: float | None = None

    def wait_ready(self, timeout: float) -> float:
        """Seconds from spawn until the port answered 200; raises with the log tail if it never does."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
            if probe(self.port, self.tls):
                self.startup = time.perf_counter() - self.started
                return self.startup
            time.sleep(0.005)  # polling for readiness with a deadline
        raise RuntimeError(f"server did not answer within {timeout:.0f} s: {self.log_tail()}")

    def tree(self) -> list[int]:
        return process_tree(self.proc.pid)

    def log_tail(self, lines: int = 6) -> str:
        self.log_handle.flush()
        text = self.log.read_text("utf-8", "replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL past ``timeout``; leftover children are killed by PID."""
        family = self.tree() if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in family[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log_handle.close()


# --------------------------------------------------------------------------------------
# Measurements.


@dataclass
class Context:
    """Everything a measurement needs besides the scenario and the server."""

    args: argparse.Namespace
    pythons: dict[str, str]  # venv -> interpreter
    client_python: str
    cert: Path
    key: Path
    raw_dir: Path
    env: dict[str, str]
    pin: bool
    ref_env: dict[str, str] | None = None  # the --baseline server's environment
    workers: int = 0  # the workers scenario: worker processes of this measurement
    server_cpus: str = SERVER_CPU
    client_cpus: str = CLIENT_CPU
    client_threads: int = 1  # wrk -t

    def server_prefix(self) -> list[str]:
        return ["taskset", "-c", self.server_cpus] if self.pin else []

    def client_prefix(self) -> list[str]:
        return ["taskset", "-c", self.client_cpus] if self.pin else []

    def env_for(self, spec: ServerSpec) -> dict[str, str]:
        """The server's environment: the baseline's imports its own twisted-asgi, not the checkout's."""
        return self.ref_env if spec.venv == "ref" and self.ref_env is not None else self.env


def server_argv(spec: ServerSpec, scenario: Scenario, values: dict[str, str]) -> list[str]:
    """The server's command line for ``scenario`` with the placeholders filled in."""
    if scenario.kind == "workers":
        template = spec.workers
    else:
        template = (spec.tls or spec.tls_http1) if scenario.tls else spec.http
    assert template is not None
    argv = [part.format(**values) for part in shlex.split(template)]
    if scenario.protocol in ("tls", "h2c") and spec.idle_args:
        argv[-1:-1] = shlex.split(spec.idle_args)  # before the app, the last argument
    return argv


def _values(ctx: Context, spec: ServerSpec, scenario: Scenario, port: int) -> dict[str, str]:
    python = ctx.pythons[spec.venv]
    return {
        "python": python,
        "bin": str(Path(python).parent),
        "port": str(port),
        "app": scenario.app,
        "cert": str(ctx.cert),
        "key": str(ctx.key),
        "workers": str(ctx.workers or 1),
    }


def _display_values(ctx: Context, spec: ServerSpec, scenario: Scenario) -> dict[str, str]:
    """Placeholder values as the docs show them: paths relative to the repository."""
    python = _relative(ctx.pythons[spec.venv])
    return {
        "python": python,
        "bin": str(Path(python).parent),
        "port": "PORT",
        "app": scenario.app,
        "cert": "cert.pem",
        "key": "key.pem",
        "workers": str(ctx.workers or 1),
    }


def _relative(path: str) -> str:
    """``path`` relative to the repository when inside it.  No symlink resolution: a
    virtualenv's ``bin/python`` is a symlink to the base interpreter, and only the link
    selects the virtualenv."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(ROOT))
    except ValueError:
        return path


def client_argv(
    ctx: Context, scenario: Scenario, port: int | str, duration: int, log_file: str = "", requests: int | str = "N"
) -> list[str]:
    """The load generator's command line (without the CPU pinning prefix).

    h2load runs a fixed number of ``requests`` (sized from a calibration run to last about
    ``duration``): its timing mode (``-D``) can hang when many clients are still being
    started as the time runs out (nghttp2 1.52).
    """
    args = ctx.args
    if scenario.kind in ("wrk", "workers"):
        return [
            "wrk",
            f"-t{ctx.client_threads}",
            f"-c{scenario.connections * max(1, ctx.workers)}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            _relative(str(BENCH_DIR / "wrk_bench.lua")),
            f"{'https' if scenario.tls else 'http'}://127.0.0.1:{port}/",
        ]
    if scenario.kind == "h2load":
        argv = ["h2load", "-t1", f"-c{scenario.connections}", f"-m{scenario.streams}", f"-n{requests}"]
        if scenario.h1:
            argv.append("--h1")
        elif scenario.tls:
            argv += ["--npn-list", "h2"]  # only h2: a server that falls back to HTTP/1.1 fails the row
        if log_file:
            argv += ["--log-file", log_file]
        scheme = "https" if scenario.tls else "http"
        return argv + [f"{scheme}://127.0.0.1:{port}/"]
    if scenario.kind == "ws-echo":
        return [
            _relative(ctx.client_python),
            _relative(str(BENCH_DIR / "wsload.py")),
            "echo",
            "--port",
            str(port),
            "--connections",
            str(scenario.connections),
            "--window",
            str(scenario.streams),
            "--duration",
            str(duration),
        ]
    if scenario.kind == "tls-new":
        return [
            _relative(ctx.client_python),
            _relative(str(BENCH_DIR / "tlsfirst.py")),
            "--port",
            str(port),
            "--tls",
            scenario.tls_version,
            "--concurrency",
            str(scenario.connections),
            "--duration",
            str(duration),
        ]
    if scenario.kind == "idle":
        return [
            _relative(ctx.client_python),
            _relative(str(BENCH_DIR / "wsload.py")),
            "idle",
            "--protocol",
            scenario.protocol,
            "--port",
            str(port),
            "--connections",
            str(args.idle_connections),
        ]
    return []


def _client_env(ctx: Context, scenario: Scenario) -> dict[str, str]:
    env = dict(ctx.env)
    env.update(scenario.env)
    return env


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON result line in the output")


def _measure_load(ctx: Context, scenario: Scenario, server: ServerProcess, duration: int, log: Path) -> dict[str, Any]:
    """Run the load generator against a ready server; the measured figures."""
    result: dict[str, Any] = {}
    log_file = ""
    if scenario.kind == "h2load":
        log_file = str(ctx.raw_dir / f"h2load-{os.getpid()}.log")
    env = _client_env(ctx, scenario)
    requests = 0
    if scenario.kind == "h2load":
        # Calibrate: a fixed batch gives the rate that sizes the warm-up and the measurement.
        batch = max(2000, scenario.connections * scenario.streams * 20)
        calibration: dict[str, Any] = {}
        calib = run_client(ctx.client_prefix() + client_argv(ctx, scenario, server.port, 0, "", batch), 60, env, log)
        _read_h2load(scenario, server.port, calib, "", calibration)
        rate = calibration["throughput"]
        minimum = scenario.connections * scenario.streams * 4
        requests = max(minimum, int(rate * duration))
        if ctx.args.warmup > 0:
            warm_count = max(minimum, int(rate * ctx.args.warmup))
            warm = run_client(
                ctx.client_prefix() + client_argv(ctx, scenario, server.port, 0, "", warm_count),
                60 + ctx.args.warmup * 5,
                env,
                log,
            )
            warmed: dict[str, Any] = {}
            _read_h2load(scenario, server.port, warm, "", warmed)
            rate = warmed["throughput"] or rate  # warm figures size the measurement better
            requests = max(minimum, int(rate * duration))
    elif ctx.args.warmup > 0:
        warm_argv = ctx.client_prefix() + client_argv(ctx, scenario, server.port, ctx.args.warmup)
        warm = run_client(warm_argv, ctx.args.warmup + 30, env, log)
        if warm.returncode != 0 or warm.timed_out:
            raise RuntimeError(f"warm-up failed ({warm.returncode}): {(warm.stdout + warm.stderr)[-300:]}")
    argv = ctx.client_prefix() + client_argv(ctx, scenario, server.port, duration, log_file, requests)
    tree = server.tree()
    overflows = listen_overflows()
    before = cpu_ticks(tree)
    # h2load's count is sized for ``duration``; a server slower than at calibration gets 5x.
    run = run_client(argv, duration * 5 + 30, env, log)
    after = cpu_ticks(server.tree())
    server_cpu = cpu_seconds_between(before, after)
    result["server_cpu_s"] = server_cpu
    result["client_cpu_s"] = run.cpu
    result["client_wall_s"] = run.wall
    result["client_cpu_share"] = run.cpu / run.wall if run.wall else None
    result["client_saturated"] = bool(result["client_cpu_share"] and result["client_cpu_share"] > CLIENT_SATURATED)
    result["server_cpu_share"] = server_cpu / run.wall if run.wall else None
    if run.timed_out:
        raise RuntimeError(f"load generator ran past its time limit: {(run.stdout + run.stderr)[-300:]}")
    if scenario.kind in ("wrk", "workers"):
        _read_wrk(scenario, run, result)
    elif scenario.kind == "h2load":
        _read_h2load(scenario, server.port, run, log_file, result)
    elif scenario.kind == "tls-new":
        _read_tls_new(run, result)
    else:
        _read_ws_echo(run, result)
    _note_overflows(overflows, result)
    count = result["count"]
    result["cpu_us_per_request"] = server_cpu / count * 1e6 if count else None
    return result


def _note_overflows(before: int | None, result: dict[str, Any]) -> None:
    """Record listen-queue overflows since ``before``: each one is a SYN the kernel dropped,
    which the client retransmits only after a second (RFC 6298 section 2), so a few of
    them stall whole connections for a second of the measurement."""
    after = listen_overflows()
    if before is not None and after is not None:
        result["listen_overflows"] = after - before
        if after > before:
            result.setdefault("errors", {})["listen_overflows"] = after - before


def _read_wrk(scenario: Scenario, run: ClientRun, result: dict[str, Any]) -> None:
    try:
        data = _last_json(run.stdout)
    except ValueError:
        raise RuntimeError(f"wrk failed ({run.returncode}): {(run.stdout + run.stderr)[-300:]}") from None
    seconds = data["duration_us"] / 1e6
    result["count"] = data["requests"]
    result["seconds"] = seconds
    result["bytes"] = data["bytes"]
    if scenario.unit == "MiB/s":
        result["throughput"] = data["bytes"] / seconds / (1 << 20)
    else:
        result["throughput"] = data["requests"] / seconds
    result["p50_us"] = data["p50_us"]
    result["p99_us"] = data["p99_us"]
    result["errors"] = {k: v for k, v in data["errors"].items() if v}
    if not data["requests"]:
        raise RuntimeError(f"no request completed: {run.stdout[-300:]}")
    result["bytes_per_response"] = data["bytes"] / data["requests"]
    if result["bytes_per_response"] < scenario.min_response_bytes:
        result["errors"]["short_responses"] = result["bytes_per_response"]


_H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
_H2LOAD_FINISHED = re.compile(r"finished in ([\d.]+)(m?s)")
_H2LOAD_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_H2LOAD_PROTOCOL = re.compile(r"Application protocol: (\S+)")


def _read_h2load(scenario: Scenario, port: int, run: ClientRun, log_file: str, result: dict[str, Any]) -> None:
    requests = _H2LOAD_REQUESTS.search(run.stdout)
    finished = _H2LOAD_FINISHED.search(run.stdout)
    latencies: list[int] = []
    if log_file and os.path.exists(log_file):
        with open(log_file) as handle:
            for line in handle:
                parts = line.split("\t")
                if len(parts) >= 3 and (parts[1] == "200" or scenario.h1):
                    latencies.append(int(parts[2]))
        os.unlink(log_file)
    if not requests or not finished:
        raise RuntimeError(f"h2load failed ({run.returncode}): {(run.stdout + run.stderr)[-300:]}")
    total, _started, done, succeeded, failed, errored, timeouts = map(int, requests.groups())
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    protocol = _H2LOAD_PROTOCOL.search(run.stdout)
    result["protocol"] = protocol.group(1) if protocol else None
    status = _H2LOAD_STATUS.search(run.stdout)
    unparsed = 0
    if scenario.h1 and not succeeded and done and not errored and status and not sum(map(int, status.groups())):
        # h2load's HTTP/1.1 parser rejects a status line with an empty reason phrase
        # ("HTTP/1.1 200 ", hypercorn's), which RFC 9112 section 4 allows: every response
        # arrived, none was counted.  Count the completed ones and flag the row.
        unparsed = succeeded = done
    result["count"] = succeeded
    result["seconds"] = seconds
    result["throughput"] = succeeded / seconds if seconds else 0.0
    result["errors"] = {k: v for k, v in {"failed": failed, "errored": errored, "timeout": timeouts}.items() if v}
    if unparsed:
        result["errors"].pop("failed", None)
        result["errors"]["status_line_unparsed_by_h2load"] = unparsed
    elif status and int(status.group(1)) != succeeded:
        result["errors"]["non_2xx"] = succeeded - int(status.group(1))
    latencies.sort()
    result["p50_us"] = _percentile(latencies, 0.50)
    result["p99_us"] = _percentile(latencies, 0.99)
    if not succeeded:
        lines = [line.strip() for line in (run.stdout + run.stderr).splitlines() if line.strip()]
        # The lines that say why (ALPN, connection or protocol errors), not the empty statistics.
        telling = [
            line
            for line in lines
            if re.search(r"protocol|negotiat|error|fail|refused|reset|GOAWAY", line, re.IGNORECASE)
        ]
        hint = " | ".join((telling or lines)[-4:])
        if scenario.tls:
            selected = alpn_selected(port, ["h2", "http/1.1"])
            hint = f"offered ALPN h2 and http/1.1, the server chose {selected}; {hint}"
        raise RuntimeError(f"no request succeeded ({total} tried; protocol {result['protocol']}): {hint[-300:]}")


def alpn_selected(port: int, offers: list[str]) -> str | None:
    """The protocol the server picks by ALPN from ``offers`` (None: none), for error messages."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(offers)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname="localhost") as tls,
        ):
            return tls.selected_alpn_protocol()
    except OSError as exc:
        return f"(handshake failed: {exc})"


def _read_ws_echo(run: ClientRun, result: dict[str, Any]) -> None:
    try:
        data = _last_json(run.stdout)
    except ValueError:
        raise RuntimeError(f"wsload failed ({run.returncode}): {(run.stdout + run.stderr)[-300:]}") from None
    result["count"] = data["messages"]
    result["seconds"] = data["seconds"]
    result["throughput"] = data["messages"] / data["seconds"] if data["seconds"] else 0.0
    result["p50_us"] = data["rtt_p50_us"]
    result["p99_us"] = data["rtt_p99_us"]
    result["errors"] = {"connections": data["error_count"]} if data["error_count"] else {}
    result["event_loop"] = data.get("event_loop")
    if data["error_count"]:
        raise RuntimeError(f"WebSocket client errors: {data['errors']}")


def _read_tls_new(run: ClientRun, result: dict[str, Any]) -> None:
    """tlsfirst.py's JSON line: new connections (one request each) per second, time to first byte."""
    try:
        data = _last_json(run.stdout)
    except ValueError:
        raise RuntimeError(f"tlsfirst.py failed ({run.returncode}): {(run.stdout + run.stderr)[-300:]}") from None
    if not data["count"]:
        raise RuntimeError(f"no TLS connection completed a request: {data['error_samples']}")
    result.update(
        {
            "count": data["count"],
            "seconds": data["seconds"],
            "throughput": data["count"] / data["seconds"],
            "p50_us": data["p50_us"],
            "p99_us": data["p99_us"],
            "after_handshake_p50_us": data["after_handshake_p50_us"],
            "after_handshake_p99_us": data["after_handshake_p99_us"],
            "tls_version": data["tls"],
            "errors": {"failed_connections": data["errors"]} if data["errors"] else {},
        }
    )


def _percentile(ordered: list[int], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return float(ordered[index])


def _measure_idle(ctx: Context, scenario: Scenario, server: ServerProcess, log: Path) -> dict[str, Any]:
    """RSS growth of the server per idle connection (WebSocket, TLS or HTTP/2, as the scenario says)."""
    count = ctx.args.idle_connections
    # A few connections first, so lazily imported modules and first-use allocations
    # land in the baseline rather than in the per-connection figure.
    warm = _hold_idle(ctx, scenario.protocol, server.port, 10, log, lambda: None)
    if warm.get("error"):
        raise RuntimeError(f"warm-up connections failed: {warm['error']}")
    baseline = rss_bytes(server.tree())
    readings: dict[str, int] = {}

    def measure() -> None:
        time.sleep(ctx.args.idle_settle)  # let the server finish its per-connection work before reading RSS
        readings["rss"] = rss_bytes(server.tree())

    overflows = listen_overflows()
    held = _hold_idle(ctx, scenario.protocol, server.port, count, log, measure)
    if held.get("error"):
        raise RuntimeError(held["error"])
    growth = readings["rss"] - baseline
    result = {
        "count": held["open"],
        "throughput": growth / held["open"] / 1024 if held["open"] else None,
        "rss_baseline_bytes": baseline,
        "rss_loaded_bytes": readings["rss"],
        "client_saturated": False,
        "errors": {},
    }
    _note_overflows(overflows, result)
    return result


def _hold_idle(ctx: Context, protocol: str, port: int, count: int, log: Path, while_open: Any) -> dict[str, Any]:
    """Open ``count`` idle connections with wsload.py, call ``while_open()``, close them."""
    argv = ctx.client_prefix() + [
        ctx.client_python,
        str(BENCH_DIR / "wsload.py"),
        "idle",
        "--protocol",
        protocol,
        "--port",
        str(port),
        "--connections",
        str(count),
    ]
    with log.open("a") as handle:
        handle.write(f"$ {shlex.join(argv)}\n")
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ctx.env
    )
    try:
        line = _readline(proc, 60 + count / 50)
        if not line.startswith("READY "):
            why = proc.stderr.read()[-300:] if proc.poll() is not None else ""
            return {"error": f"idle client did not get ready: {line!r} {why}"}
        opened = int(line.split()[1])
        if opened < count:
            return {"error": f"only {opened} of {count} idle {protocol} connections opened"}
        while_open()
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
        with log.open("a") as handle:
            handle.write(out + err + "\n")
        data = _last_json(out)
        if data["open_at_end"] < count:
            return {"error": f"the server closed {count - data['open_at_end']} idle {protocol} connections"}
        return {"open": opened}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    """One line of the child's stdout, or '' if none comes within ``timeout`` s."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return proc.stdout.readline()


def measure(ctx: Context, spec: ServerSpec, scenario: Scenario, round_index: int) -> dict[str, Any]:
    """One measurement of ``scenario`` on a fresh ``spec`` server; figures or an error."""
    log = ctx.raw_dir / f"{scenario.name}.{_file_name(spec.name)}.r{round_index}.log"
    if scenario.kind == "workers":
        return _measure_workers(ctx, spec, scenario, round_index, log)
    port = free_port()
    argv = ctx.server_prefix() + server_argv(spec, scenario, _values(ctx, spec, scenario, port))
    server = ServerProcess(argv, port, scenario.tls, ctx.env_for(spec), log)
    measurement: dict[str, Any] = {"round": round_index}
    try:
        measurement["startup_s"] = server.wait_ready(ctx.args.start_timeout)
        if scenario.kind == "startup":
            measurement.update({"count": 1, "throughput": server.startup * 1000, "errors": {}})
        elif scenario.kind == "idle":
            measurement.update(_measure_idle(ctx, scenario, server, log))
        else:
            measurement.update(_measure_load(ctx, scenario, server, ctx.args.duration, log))
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode} during the load: {server.log_tail()}")
        measurement["rss_bytes"] = measurement.get("rss_loaded_bytes") or rss_bytes(server.tree())
    except Exception as exc:  # noqa: BLE001 -- one failed cell must not end the run: it is reported
        measurement["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        server.stop()
    return measurement


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def worker_counts(maximum: int) -> list[int]:
    """The worker counts the scaling scenario measures: 1, 2, 4, ... and ``maximum``."""
    counts, n = [], 1
    while n < maximum:
        counts.append(n)
        n *= 2
    return [*counts, maximum]


def workers_layout(ctx: Context, workers: int) -> Context:
    """``ctx`` for ``workers`` server processes on CPUs 0..N-1, the load generator on the last cores."""
    cpus = os.cpu_count() or 1
    clients = ctx.args.workers_client_cpus
    return dataclasses.replace(
        ctx,
        workers=workers,
        server_cpus=f"0-{workers - 1}" if workers > 1 else "0",
        client_cpus=",".join(str(cpu) for cpu in range(cpus - clients, cpus)),
        client_threads=clients,
    )


def _measure_workers(ctx: Context, spec: ServerSpec, scenario: Scenario, round_index: int, log: Path) -> dict[str, Any]:
    """Keep-alive throughput with 1, 2, 4 ... ``--workers-max`` workers, each on a fresh server;
    the figures of the largest count, each count's, and the scaling: throughput(N) / (N x throughput(1))."""
    measurement: dict[str, Any] = {"round": round_index}
    per: dict[int, dict[str, Any]] = {}
    try:
        for workers in worker_counts(ctx.args.workers_max):
            sub = workers_layout(ctx, workers)
            port = free_port()
            argv = sub.server_prefix() + server_argv(spec, scenario, _values(sub, spec, scenario, port))
            server = ServerProcess(argv, port, False, ctx.env_for(spec), log)
            try:
                server.wait_ready(ctx.args.start_timeout)
                per[workers] = _measure_load(sub, scenario, server, ctx.args.duration, log)
                if server.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {server.proc.returncode}: {server.log_tail()}")
                per[workers]["rss_bytes"] = rss_bytes(server.tree())
            finally:
                server.stop()
    except Exception as exc:  # noqa: BLE001 -- reported in the cell, the run goes on
        measurement["error"] = f"{type(exc).__name__}: {exc}"
        return measurement
    top = max(per)
    measurement.update(per[top])
    measurement["workers_max"] = top
    measurement["per_workers"] = {
        str(n): {k: m.get(k) for k in ("throughput", "cpu_us_per_request", "client_cpu_share", "server_cpu_share")}
        for n, m in per.items()
    }
    one = per[1]["throughput"]
    measurement["scaling"] = per[top]["throughput"] / (top * one) if one else None
    return measurement


# --------------------------------------------------------------------------------------
# The baseline: a second install of twisted-asgi from a git commit (--baseline REF).


def resolve_commit(ref: str) -> str:
    """The full hash of the commit ``ref`` names in this repository."""
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise SystemExit(f"run.py: --baseline {ref!r} names no commit of {ROOT}")
    return done.stdout.strip()


def ref_source(commit: str, directory: Path) -> Path:
    """The tree of ``commit`` (``git archive``), extracted once into ``directory/src``."""
    src = directory / "src"
    marker = directory / "src-commit"
    if marker.exists() and marker.read_text().strip() == commit and src.is_dir():
        return src
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True, timeout=120)
    marker.write_text(commit + "\n")
    return src


def _pip(python: str, *args: str) -> None:
    done = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"run.py: pip install {' '.join(args)} failed: {(done.stdout + done.stderr)[-1500:]}")


def build_ref_venv(commit: str, self_python: str, directory: Path) -> str:
    """A virtualenv in ``directory`` with twisted-asgi installed (``pip install``, not editable)
    from ``commit``, next to the dependencies of ``benchmarks/requirements-self.txt`` at the
    versions the current install's interpreter has (``pip freeze`` of ``self_python`` as
    constraints; pip takes them from its cache when it has them).  Built once per commit:
    a finished one has the file ``installed-commit``."""
    python = directory / "bin" / "python"
    marker = directory / "installed-commit"
    if marker.exists() and marker.read_text().strip() == commit and python.exists():
        return str(python)
    print(f"run.py: building the baseline's virtualenv {_relative(str(directory))} ...", flush=True)
    if directory.exists():
        shutil.rmtree(directory)  # a half-built one
    subprocess.run([self_python, "-m", "venv", str(directory)], check=True, timeout=300)
    frozen = subprocess.run(
        [self_python, "-m", "pip", "freeze", "--exclude", "twisted-asgi"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    pins = [line for line in frozen.stdout.splitlines() if "==" in line and " @ " not in line]
    constraints = directory / "constraints.txt"
    constraints.write_text("".join(f"{line}\n" for line in pins))
    src = ref_source(commit, directory)
    _pip(str(python), "-r", str(BENCH_DIR / "requirements-self.txt"), "-c", str(constraints))
    _pip(str(python), "-c", str(constraints), str(src))
    marker.write_text(commit + "\n")
    return str(python)


def twisted_asgi_location(python: str, env: dict[str, str]) -> str:
    """Where ``python`` imports twisted_asgi from in ``env`` (which install a server runs)."""
    done = subprocess.run(
        [python, "-c", "import twisted_asgi; print(twisted_asgi.__file__)"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.stdout.strip() or f"(not importable: {done.stderr.strip()[-200:]})"


# --------------------------------------------------------------------------------------
# Summaries, environment, the run.


def summarize(measurements: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and min–max across rounds of each figure; errors and flags of any round."""
    good = [m for m in measurements if "error" not in m and m.get("throughput") is not None]
    summary: dict[str, Any] = {"rounds_ok": len(good), "rounds": len(measurements)}
    for key in (
        "throughput",
        "cpu_us_per_request",
        "p50_us",
        "p99_us",
        "client_cpu_share",
        "server_cpu_share",
        "after_handshake_p99_us",
        "scaling",
    ):
        values = [m[key] for m in good if m.get(key) is not None]
        if values:
            summary[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    per_workers = [m["per_workers"] for m in good if m.get("per_workers")]
    if per_workers:
        counts = sorted({int(n) for per in per_workers for n in per})
        summary["per_workers"] = {
            str(n): statistics.median(
                per[str(n)]["throughput"] for per in per_workers if per.get(str(n), {}).get("throughput") is not None
            )
            for n in counts
        }
    summary["client_saturated"] = any(m.get("client_saturated") for m in good)
    summary["listen_overflows"] = sum(m.get("listen_overflows") or 0 for m in good)
    summary["errors"] = sorted({m["error"] for m in measurements if "error" in m})
    summary["load_errors"] = [m["errors"] for m in good if m.get("errors")]
    return summary


def _package_versions(python: str, packages: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "out['python'] = sys.version.split()[0]\n"
        "print(json.dumps(out))\n"
    )
    try:
        done = subprocess.run(
            [python, "-c", code, *packages], check=False, capture_output=True, text=True, timeout=60, cwd="/"
        )
        return json.loads(done.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def _tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else ""


def machine_info() -> dict[str, Any]:
    """CPU model, core count, kernel, load average at the start."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "system": platform.platform(),
        "loadavg": os.getloadavg(),
    }


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1/localhost, made for this run (PKCS#8 key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _result_path(directory: Path, date: str) -> Path:
    path = directory / f"{date}.json"
    number = 2
    while path.exists():
        path = directory / f"{date}-{number}.json"
        number += 1
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (``--help`` lists them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds, each server once per scenario (default 3)")
    parser.add_argument("--duration", type=int, default=None, help="seconds of load per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=None, help="seconds of load before measuring (default 2)")
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help=f"comma list of: {', '.join(SERVERS)}")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIO_NAMES), help="comma list of: " + ", ".join(SCENARIO_NAMES)
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a quick check of the code paths: 1 s, 1 round, 50 idle sockets"
    )
    parser.add_argument(
        "--self-python", default=str(BENCH_DIR / ".venv-self" / "bin" / "python"), help="Python with twisted-asgi"
    )
    parser.add_argument(
        "--peers-python", default=str(BENCH_DIR / ".venv-peers" / "bin" / "python"), help="Python with the peers"
    )
    parser.add_argument(
        "--idle-connections",
        "--ws-idle-connections",
        dest="idle_connections",
        type=int,
        default=None,
        help="connections held open in the idle WebSocket, TLS and HTTP/2 scenarios (default 2000)",
    )
    cpus = os.cpu_count() or 1
    parser.add_argument(
        "--workers-client-cpus",
        type=int,
        default=1 if cpus <= 4 else cpus // 4,
        help="workers scenario: the last K CPUs run the load generator (wrk -tK) (default: 1, a quarter above 4 CPUs)",
    )
    parser.add_argument(
        "--workers-max",
        type=int,
        default=None,
        help="workers scenario: measure 1, 2, 4 ... up to this many workers (default: the CPUs left to the servers)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        default=None,
        help="also run twisted-asgi as installed from git commit REF (benchmarks/.venv-ref-<commit>, built once)"
        " and compare every row with it",
    )
    parser.add_argument(
        "--baseline-python",
        default=None,
        help="serve the baseline with this interpreter (its dependencies) and REF's tree first on PYTHONPATH,"
        " instead of building a virtualenv",
    )
    parser.add_argument(
        "--baseline-dir", default=str(BENCH_DIR), help="where .venv-ref-<commit> goes (default benchmarks/)"
    )
    parser.add_argument(
        "--idle-settle", type=float, default=1.0, help="seconds between opening the idle sockets and reading RSS"
    )
    parser.add_argument("--start-timeout", type=float, default=30.0, help="seconds a server gets to answer")
    parser.add_argument("--results-dir", default=None, help="where <date>.json goes (default benchmarks/results)")
    parser.add_argument("--docs", default=None, help="reStructuredText page to write (default docs/benchmarks.rst)")
    parser.add_argument("--chart", default=None, help="PNG chart to write (default docs/_static/benchmarks.png)")
    parser.add_argument("--no-report", action="store_true", help="write the JSON only")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to separate CPUs")
    parser.add_argument(
        "--list", action="store_true", help="print the servers, scenarios and command lines, run nothing"
    )
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.rounds = args.rounds if args.rounds is not None else (1 if smoke else 3)
    args.duration = args.duration if args.duration is not None else (1 if smoke else 10)
    args.warmup = args.warmup if args.warmup is not None else (0 if smoke else 2)
    args.idle_connections = args.idle_connections or (50 if smoke else 2000)
    if args.workers_client_cpus < 1:
        parser.error("--workers-client-cpus must be at least 1")
    if args.workers_max is None:
        args.workers_max = max(1, cpus - args.workers_client_cpus)
    if args.workers_max < 1:
        parser.error("--workers-max must be at least 1")
    if not args.no_pin and cpus >= 2 and args.workers_max + args.workers_client_cpus > cpus:
        parser.error(
            f"--workers-max {args.workers_max} and --workers-client-cpus {args.workers_client_cpus} need"
            f" {args.workers_max + args.workers_client_cpus} CPUs, this machine has {cpus} (or use --no-pin)"
        )
    args.baseline_dir = Path(args.baseline_dir)
    if smoke:
        args.idle_settle = min(args.idle_settle, 0.2)
    # A smoke run's files go to the ignored raw/ folder unless told otherwise: they are no
    # measurement and must not replace the committed page.
    default_results = BENCH_DIR / "results" / ("raw/smoke" if smoke else "")
    args.results_dir = Path(args.results_dir) if args.results_dir else default_results
    # Nor does a comparison with a baseline (--baseline) replace it, unless asked to.
    publish = not smoke and not args.baseline
    args.docs = Path(args.docs) if args.docs else (ROOT / "docs" / "benchmarks.rst" if publish else None)
    args.chart = Path(args.chart) if args.chart else (ROOT / "docs" / "_static" / "benchmarks.png" if publish else None)
    args.servers = [s for s in args.servers.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
    for name in args.scenarios:
        if name not in SCENARIO_NAMES:
            parser.error(f"unknown scenario {name!r}; known: {', '.join(SCENARIO_NAMES)}")
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    return args


def command_lines(
    ctx: Context, specs: list[ServerSpec], scenarios: list[Scenario]
) -> dict[str, dict[str, dict[str, str]]]:
    """The exact command lines of every cell, with PORT and the certificate paths as placeholders."""
    commands: dict[str, dict[str, dict[str, str]]] = {}
    for scenario in scenarios:
        commands[scenario.name] = {}
        # The workers scenario's lines are those of its largest worker count.
        shown = workers_layout(ctx, ctx.args.workers_max) if scenario.kind == "workers" else ctx
        for spec in specs:
            if not supports(spec, scenario):
                continue
            server = shown.server_prefix() + server_argv(spec, scenario, _display_values(shown, spec, scenario))
            client = client_argv(shown, scenario, "PORT", ctx.args.duration)
            env = " ".join(f"{k}={v}" for k, v in scenario.env.items())
            client_line = (
                shlex.join(shown.client_prefix() + client) if client else "(run.py: spawn, poll GET / until 200)"
            )
            commands[scenario.name][spec.name] = {
                "server": shlex.join(server),
                "client": f"{env} {client_line}".strip(),
            }
    return commands


SELF_PACKAGES = ["twisted-asgi", "Twisted", "httptools", "uvloop", "autobahn", "h2", "Django"]
PEER_PACKAGES = [
    "daphne",
    "uvicorn",
    "zttp",
    "hypercorn",
    "granian",
    "Twisted",
    "httptools",
    "uvloop",
    "websockets",
    "h2",
    "Django",
]


def server_order(specs: list[ServerSpec], round_index: int, scenario_index: int) -> list[ServerSpec]:
    """The order the servers run in, for one scenario of one round: rotated by one place per
    round and per scenario (a cyclic Latin square), so that over as many rounds as there are
    servers each server runs once in every position, and the one measured first (right after
    another scenario's load) is a different server in each scenario. With two installs
    (``--baseline``) this alternates them (A B, B A) from round to round and scenario to scenario.
    """
    shift = (round_index - 1 + scenario_index) % len(specs) if specs else 0
    return specs[shift:] + specs[:shift]


def run_rounds(ctx: Context, specs: list[ServerSpec], scenarios: list[Scenario]) -> dict[str, dict[str, dict]]:
    """Every round, every scenario, every server in turn (rotated, see :func:`server_order`); summaries at the end."""
    results: dict[str, dict[str, dict[str, Any]]] = {
        s.name: {spec.name: {"measurements": []} for spec in specs} for s in scenarios
    }
    for round_index in range(1, ctx.args.rounds + 1):
        for scenario_index, scenario in enumerate(scenarios):
            for spec in server_order(specs, round_index, scenario_index):
                cell = results[scenario.name][spec.name]
                if not supports(spec, scenario):
                    cell["status"] = "n/a"
                    continue
                m = measure(ctx, spec, scenario, round_index)
                cell["measurements"].append(m)
                shown = m.get("error") or f"{m['throughput']:.1f} {scenario.unit}"
                if m.get("cpu_us_per_request"):
                    shown += f", {m['cpu_us_per_request']:.1f} us CPU each"
                print(f"  round {round_index} {scenario.name:20} {spec.name:20} {shown}", flush=True)
    for per_server in results.values():
        for cell in per_server.values():
            if cell.get("status") != "n/a":
                cell["summary"] = summarize(cell["measurements"])
                cell["status"] = "ok" if cell["summary"]["rounds_ok"] else "error"
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the suite; write the JSON results and (unless told not to) the docs page and chart."""
    args = parse_args(argv)
    specs = [SERVERS[name] for name in args.servers]
    scenarios = [s for s in SCENARIOS if s.name in args.scenarios]
    pythons = {"self": args.self_python, "peers": args.peers_python}
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    client_python = args.peers_python if os.path.exists(args.peers_python) else sys.executable
    env = dict(os.environ)
    # The apps and the Django project are imported from benchmarks/ by every server.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH", "")]))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    baseline: dict[str, Any] | None = None
    ref_env: dict[str, str] | None = None
    if args.baseline:
        if "twisted-asgi" not in args.servers:
            print("run.py: --baseline compares with twisted-asgi: add it to --servers", file=sys.stderr)
            return 2
        commit = resolve_commit(args.baseline)
        directory = args.baseline_dir / f".venv-ref-{commit[:12]}"
        # Only benchmarks/ is inherited: a PYTHONPATH naming a checkout would shadow the install.
        ref_env = {**env, "PYTHONPATH": str(BENCH_DIR)}
        if args.baseline_python:
            src = ref_source(commit, directory)
            ref_env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), str(src)])
            pythons["ref"] = args.baseline_python
        elif args.list:
            pythons["ref"] = str(directory / "bin" / "python")
        else:
            pythons["ref"] = build_ref_venv(commit, args.self_python, directory)
        ref_spec = dataclasses.replace(SERVERS["twisted-asgi"], name=f"twisted-asgi@{commit[:10]}", venv="ref")
        specs.insert(args.servers.index("twisted-asgi") + 1, ref_spec)
        baseline = {
            "ref": args.baseline,
            "commit": commit,
            "server": ref_spec.name,
            "current": "twisted-asgi",
            "regression_limit": REGRESSION_LIMIT,
        }
    started = datetime.datetime.now(datetime.UTC)
    run_id = started.strftime("%Y-%m-%dT%H%M%S")
    raw_dir = BENCH_DIR / "results" / "raw" / run_id
    with tempfile.TemporaryDirectory(prefix="twisted-asgi-bench-") as tmp:
        cert, key = make_certificate(Path(tmp))
        ctx = Context(args, pythons, client_python, cert, key, raw_dir, env, pin, ref_env=ref_env)
        commands = command_lines(ctx, specs, scenarios)
        if args.list:
            print(json.dumps(commands, indent=2))
            return 0
        missing = sorted({pythons[spec.venv] for spec in specs if not os.path.exists(pythons[spec.venv])})
        if missing:
            print(f"run.py: {', '.join(missing)} not found; run benchmarks/setup.sh first", file=sys.stderr)
            return 2
        if pin:
            # The orchestrator stays off the servers' cores: on the last CPU, a load generator's.
            os.sched_setaffinity(0, {(os.cpu_count() or 2) - 1})
        raw_dir.mkdir(parents=True, exist_ok=True)
        minutes = args.rounds * len(scenarios) * len(specs) * (args.warmup + args.duration + 2) / 60
        print(
            f"run.py: {args.rounds} round(s) x {len(scenarios)} scenario(s) x {len(specs)} server(s), "
            f"about {minutes:.0f} min; logs in {_relative(str(raw_dir))}",
            flush=True,
        )
        results = run_rounds(ctx, specs, scenarios)
    versions = {"self": _package_versions(pythons["self"], SELF_PACKAGES)}
    versions["self"]["twisted_asgi_file"] = twisted_asgi_location(pythons["self"], env)
    installed_from = Path(pythons["self"]).parent.parent / "installed-from"
    if installed_from.exists():  # written by setup.sh: the commit .venv-self was installed from
        versions["self"]["installed_from"] = installed_from.read_text().strip()
    if baseline is not None and ref_env is not None:
        versions["ref"] = _package_versions(pythons["ref"], SELF_PACKAGES)
        versions["ref"]["twisted_asgi_file"] = twisted_asgi_location(pythons["ref"], ref_env)
        versions["ref"]["installed_from"] = baseline["commit"]
    if os.path.exists(args.peers_python):
        versions["peers"] = _package_versions(args.peers_python, PEER_PACKAGES)
    document = {
        "schema": SCHEMA,
        "date": started.isoformat(timespec="seconds"),
        "run_id": run_id,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "pinned": {"server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU} if pin else None,
        "tools": {"wrk": _tool_version(["wrk", "-v"]), "h2load": _tool_version(["h2load", "--version"])},
        "versions": versions,
        "parameters": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "ws_idle_connections": args.idle_connections,
            "idle_connections": args.idle_connections,
            "workers_max": args.workers_max,
            "workers_client_cpus": args.workers_client_cpus,
            "smoke": args.smoke,
            "order": "rotated",
            "command": shlex.join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
        },
        "servers": [spec.name for spec in specs],
        "scenarios": [
            {"name": s.name, "title": s.title, "unit": s.unit, "higher_is_better": s.higher_is_better, "kind": s.kind}
            for s in scenarios
        ],
        "commands": commands,
        "results": results,
        "baseline": baseline,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = _result_path(args.results_dir, started.strftime("%Y-%m-%d"))
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"run.py: results in {_relative(str(path))}")
    sys.path.insert(0, str(BENCH_DIR))
    import report

    if baseline is not None:
        print(report.baseline_text(document))
    if not args.no_report and (args.docs or args.chart):
        if args.docs:
            known = [(s.name, s.title) for s in SCENARIOS]
            report.write_rst(document, args.docs, chart=args.chart, results_path=path, known=known)
            print(f"run.py: wrote {_relative(str(args.docs))}")
        if args.chart:
            print(report.write_chart_with(path, args.chart, [args.peers_python, sys.executable]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
