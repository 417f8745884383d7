"""Worker recycling (``--limit-worker-requests``, ``--limit-worker-rss``,
``--timeout-worker-lifetime``) end to end: a worker past its limit is replaced
by a fresh one first and drains only once the new one serves, so clients under
continuous load through nginx see no failed request across many recycles; the
workers that answer change over time; a worker that grows past the memory
limit is recycled; a recycled worker's WebSocket clients get 1001 only after
its replacement serves; each recycling is logged once, with its reason.

Source: issue 19, item 6.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from twisted.python import usage
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.deploy import free_port, get_json, make_certs, serving, start_nginx, wait_for
from tests.serving import ROOT
from twisted_asgi.tap import Options
from twisted_asgi.workers import count_requests

APP = "tests.recycle_app:app"
RECYCLED = re.compile(r"Recycling worker (\d+): it (.*); starting its replacement")
RETIRED = re.compile(r"Worker (\d+) retired \(exit code 0\)")
SERVING = re.compile(r"Worker (\d+) is serving")


class Load:
    """Clients looping on ``host:port`` until stopped: ``keep_alive`` threads
    reuse one connection each (reconnecting only when the server closed it
    between responses, as HTTP clients do), ``fresh`` threads open a new
    connection per request. Every request is counted; each failure is kept."""

    def __init__(self, host: str, port: int, keep_alive: int = 2, fresh: int = 1, limit: int = 40000) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.pids: Counter[int] = Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._keep_alive) for _ in range(keep_alive)]
        self.threads += [threading.Thread(target=self._fresh) for _ in range(fresh)]

    @property
    def done(self) -> int:
        return sum(self.pids.values())

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _record(self, status: int, body: bytes) -> None:
        with self.lock:
            if status == 200:
                self.pids[json.loads(body)["pid"]] += 1
            else:
                self.failures.append(f"status {status}: {body[:200]!r}")
            if self.done >= self.limit:
                self.stop.set()

    def _fail(self, exc: BaseException) -> None:
        with self.lock:
            self.failures.append(repr(exc))

    def _keep_alive(self) -> None:
        # Through nginx no client connection is closed while idle (its
        # keepalive_timeout is 75 s; after keepalive_requests it says
        # "Connection: close"), so any error on a reused connection counts too.
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
            try:
                conn.request("GET", "/scope")
                response = conn.getresponse()
                body = response.read()
            except Exception as exc:  # noqa: BLE001 (recorded and asserted on)
                self._fail(exc)
                conn.close()
                conn = None
                continue
            self._record(response.status, body)
            if response.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _fresh(self) -> None:
        from tests.deploy import http_get

        while not self.stop.is_set():
            try:
                status, _headers, body = http_get(self.host, self.port, "/scope", timeout=15)
            except Exception as exc:  # noqa: BLE001 (recorded and asserted on)
                self._fail(exc)
                continue
            self._record(status, body)


def recycled(server) -> list[tuple[int, str]]:
    """``(pid, reason)`` of every recycling the supervisor logged so far."""
    return [(int(pid), why) for pid, why in RECYCLED.findall(server.read_output(0.05))]


def retired(server) -> list[int]:
    return [int(pid) for pid in RETIRED.findall(server.read_output(0.05))]


def run_load_until(server, host: str, port: int, recycles: int, least: int, deadline: float = 150) -> Load:
    """Load ``host:port`` until ``least`` requests were answered and ``recycles``
    workers were retired (or the deadline, which fails)."""
    with Load(host, port) as load:
        wait_for(
            lambda: load.stop.is_set() or (load.done >= least and len(retired(server)) >= recycles),
            deadline,
            f"{recycles} recycled workers and {least} requests",
        )
    assert not (load.stop.is_set() and load.done >= load.limit and len(retired(server)) < recycles), (
        f"only {len(retired(server))} recycles in {load.done} requests"
    )
    print(f"{load.done} requests from {len(load.pids)} workers, {len(retired(server))} recycled")
    return load


@pytest.fixture
def behind_nginx(tmp_path):
    """Start the server with the given options behind the guide's nginx.conf; yields (server, nginx port)."""
    started = []

    def start(*options: str):
        certs = make_certs(tmp_path)
        server_cm = serving(APP, *options)
        server = server_cm.__enter__()
        started.append(server_cm)
        http_port, https_port = free_port(), free_port()
        nginx = start_nginx(
            tmp_path,
            [
                (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
                (r"listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
                (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{server.port};"),
                (r"/etc/ssl/example\.com/fullchain\.pem", str(certs["cert"])),
                (r"/etc/ssl/example\.com/privkey\.pem", str(certs["key"])),
            ],
            [http_port, https_port],
        )
        started.append(nginx)
        return server, http_port

    yield start
    for thing in reversed(started):
        if hasattr(thing, "__exit__"):
            thing.__exit__(None, None, None)
        else:
            thing.stop()


def check_recycling_log(server, reason: str) -> None:
    """Every recycled worker was logged once, with ``reason``, and retired after its replacement served."""
    output = server.read_output(0.2)
    logged = recycled(server)
    pids = [pid for pid, _why in logged]
    assert len(pids) == len(set(pids)), logged  # once each
    for _pid, why in logged:
        assert re.search(reason, why), (why, reason)
    for pid in retired(server):
        assert pid in pids, (pid, logged)
    for bad in ("Traceback", "Unhandled Error", "died"):
        assert bad not in output, output


def test_request_limit_through_nginx_under_load_fails_no_request(behind_nginx):
    """--limit-worker-requests 50 with 2 workers behind nginx, clients on keep-alive and new
    connections: at least 1000 requests and 6 recycles, not one failed request."""
    server, port = behind_nginx("--workers", "2", "--limit-worker-requests", "50")
    load = run_load_until(server, "127.0.0.1", port, recycles=6, least=1000)
    assert load.failures == [], load.failures[:10]
    assert len(load.pids) >= 6, load.pids
    check_recycling_log(server, r"served (\d+) requests \(--limit-worker-requests 50( plus jitter)?\)")
    for _pid, why in recycled(server):
        served = int(re.search(r"served (\d+)", why).group(1))
        assert 50 <= served <= 55, why  # the default jitter: up to a tenth more


def test_lifetime_through_nginx_under_load_fails_no_request(behind_nginx):
    """--timeout-worker-lifetime 1.5: workers are replaced every 1.5-1.65 s after they serve,
    under load through nginx, without a failed request."""
    server, port = behind_nginx("--workers", "2", "--timeout-worker-lifetime", "1.5")
    load = run_load_until(server, "127.0.0.1", port, recycles=4, least=300)
    assert load.failures == [], load.failures[:10]
    check_recycling_log(server, r"served for 1\.[56]s \(--timeout-worker-lifetime 1\.5, plus jitter\)")


def test_request_limit_changes_the_serving_workers_directly():
    """Without a proxy, on a new connection per request: the pids that answer change as workers
    pass 20 requests (+ at most 2: the default jitter), and each old worker's replacement serves
    before it is told to stop (it goes on serving past its limit until then)."""
    with serving(APP, "--workers", "2", "--limit-worker-requests", "20") as server:
        server.wait_for_output("is serving", 30)
        seen: Counter[int] = Counter()

        def distinct() -> bool:
            seen[get_json(server.host, server.port)["pid"]] += 1
            return len(seen) >= 5 and len(retired(server)) >= 3

        wait_for(distinct, 120, "5 distinct workers answering")
        output = server.read_output(0.2)
    check_recycling_log(server, r"served 2[0-2] requests")
    for pid in retired(server):
        assert seen[pid] >= 20, (pid, seen)
        # Its replacement said it serves before this worker was told to stop.
        told = output.index(f"Worker {pid}: Received SIGTERM")
        replacement = output.rindex("is serving", 0, told)
        assert output.index(f"Recycling worker {pid}:") < replacement < told, output


@pytest.mark.parametrize("protocol", ["h2c", "websocket"])
def test_http2_streams_and_websocket_handshakes_count(protocol):
    """HTTP/2 streams (12 on one connection, by h2load) and WebSocket handshakes count as
    requests: a limit of 10 (jitter 1) is reached by them alone and logged."""
    with serving(
        APP, "--workers", "1", "--limit-worker-requests", "10", "--limit-worker-requests-jitter", "1"
    ) as server:
        (pid,) = (int(p) for p in SERVING.findall(server.wait_for_output("is serving", 30)))
        url = f"http://{server.host}:{server.port}/scope"
        if protocol == "h2c":
            result = subprocess.run(
                ["h2load", "-n", "12", "-c", "1", "-m", "1", url], capture_output=True, text=True, timeout=60
            )
            assert "12 succeeded" in result.stdout and "h2c" in result.stdout, result
        else:
            for _ in range(12):
                with ws_connect(f"ws://{server.host}:{server.port}/ws", open_timeout=10) as ws:
                    assert json.loads(ws.recv(timeout=10))["pid"] == pid
                    ws.send("bye")
                    ws.recv(timeout=10)
        server.wait_for_output(f"Recycling worker {pid}:", 30)
        (logged,) = recycled(server)
    assert re.fullmatch(r"served 1[01] requests \(--limit-worker-requests 10( plus jitter)?\)", logged[1]), logged


def test_memory_limit_recycles_a_growing_worker():
    """--limit-worker-rss 150: a worker that grows by 200 MiB is replaced within a few checks,
    the new one (small again) answers, and the log names the memory it used."""
    with serving(APP, "--workers", "1", "--limit-worker-rss", "150") as server:
        (pid,) = (int(p) for p in SERVING.findall(server.wait_for_output("is serving", 30)))
        assert get_json(server.host, server.port)["pid"] == pid
        assert recycled(server) == []  # a fresh worker is well below 150 MiB
        assert get_json(server.host, server.port, "/grow?mib=200")["kept_mib"] == 200
        wait_for(lambda: retired(server) == [pid], 30, "the grown worker to be retired")
        (logged,) = recycled(server)
        assert logged[0] == pid
        used = int(re.search(r"uses (\d+) MiB of memory \(--limit-worker-rss 150\)", logged[1]).group(1))
        assert used > 200, logged
        assert get_json(server.host, server.port)["pid"] != pid


def test_websocket_clients_get_1001_only_after_the_replacement_serves():
    """A worker at the end of its lifetime: its open WebSockets are closed with 1001 (going
    away) only after its replacement said it serves, and a new connection is answered."""
    with serving(APP, "--workers", "1", "--timeout-worker-lifetime", "3", "--graceful-timeout", "10") as server:
        (pid,) = (int(p) for p in SERVING.findall(server.wait_for_output("is serving", 30)))
        url = f"ws://{server.host}:{server.port}/ws"
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(ws_connect(url, open_timeout=10)) for _ in range(3)]
            assert {json.loads(c.recv(timeout=10))["pid"] for c in clients} == {pid}
            codes = []
            for client in clients:
                with pytest.raises(ConnectionClosed) as closed:
                    client.recv(timeout=30)
                codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
            answered_by = get_json(server.host, server.port)["pid"]
        assert codes == [1001, 1001, 1001]
        assert answered_by != pid
        output = server.wait_for_output(f"Worker {pid} retired", 30)
    told = output.index(f"Worker {pid}: Received SIGTERM")
    assert output.index(f"Worker {answered_by} is serving") < told, output


def children(pid: int) -> set[int]:
    """The live (not zombie) child processes of ``pid``, from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.add(int(entry))
    return found


def test_recycling_during_a_rolling_restart_keeps_the_worker_count():
    """Workers recycled every 20 requests while SIGHUP replaces them all: no request fails,
    and once the load stops there are 2 workers again, not more."""
    with serving(APP, "--workers", "2", "--limit-worker-requests", "20") as server:
        server.wait_for_output("is serving", 30)
        with Load(server.host, server.port, keep_alive=0, fresh=2) as load:
            wait_for(lambda: len(retired(server)) >= 2, 60, "recycling to begin")
            server.proc.send_signal(signal.SIGHUP)
            server.wait_for_output("Rolling restart done", 90)
            count = load.done
            wait_for(lambda: load.done >= count + 50, 30, "answers after the rolling restart")
        assert load.failures == [], load.failures[:10]
        try:
            wait_for(lambda: len(children(server.proc.pid)) == 2, 60, "two workers again")
        except AssertionError:
            raise AssertionError(f"{children(server.proc.pid)}\n{server.read_output(0.2)}") from None
        assert "died" not in server.read_output(0.2)


def test_a_replacement_that_cannot_start_leaves_the_old_worker_serving(tmp_path):
    """Recycling replaces first: when the new worker cannot start (its code fails to import),
    the old one is not stopped, keeps answering, and the failure is logged with the next try."""
    broken = tmp_path / "broken"
    env = {"RECYCLE_APP_BROKEN": str(broken)}
    with serving(APP, "--workers", "1", "--timeout-worker-lifetime", "1", env=env) as server:
        (pid,) = (int(p) for p in SERVING.findall(server.wait_for_output("is serving", 30)))
        broken.write_text("")
        output = server.wait_for_output(f"Recycling worker {pid} failed", 60)
        assert "this worker does not start" in output, output
        assert re.search(rf"Recycling worker {pid} failed \(.*\); it keeps serving, next try in 30s", output), output
        for _ in range(5):
            assert get_json(server.host, server.port)["pid"] == pid
        assert f"Worker {pid}: Received SIGTERM" not in server.read_output(0.1)


@pytest.mark.parametrize(
    "option", [["--limit-worker-requests", "10"], ["--limit-worker-rss", "300"], ["--timeout-worker-lifetime", "60"]]
)
def test_recycling_needs_workers(option):
    """Without --workers a recycling option is a one-line usage error (exit 2)."""
    result = subprocess.run(
        [sys.executable, "-m", "twisted_asgi", *option, APP],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first == f"python -m twisted_asgi: {option[0]} recycles worker processes: it needs --workers N", first
    with pytest.raises(usage.UsageError, match="needs --workers N"):
        Options().parseOptions([*option, APP])


def test_recycling_options_from_the_environment(monkeypatch):
    """TWISTED_ASGI_LIMIT_WORKER_REQUESTS and the others set the Config fields; the command line wins."""
    monkeypatch.setenv("TWISTED_ASGI_WORKERS", "2")
    monkeypatch.setenv("TWISTED_ASGI_LIMIT_WORKER_REQUESTS", "500")
    monkeypatch.setenv("TWISTED_ASGI_LIMIT_WORKER_REQUESTS_JITTER", "20")
    monkeypatch.setenv("TWISTED_ASGI_LIMIT_WORKER_RSS", "512")
    monkeypatch.setenv("TWISTED_ASGI_TIMEOUT_WORKER_LIFETIME", "3600")
    options = Options()
    options.parseOptions(["--limit-worker-rss", "256", APP])
    config = options.config
    assert (config.workers, config.limit_worker_requests, config.limit_worker_requests_jitter) == (2, 500, 20)
    assert (config.limit_worker_rss_mib, config.timeout_worker_lifetime) == (256, 3600.0)


def test_request_counting_takes_itself_out_at_the_limit():
    """The counter wraps the runner's app until the limit, says so once with the count, then is gone."""

    class Runner:
        def app(self, scope, receive, send):  # stands for an ASGI app: returns what it was called with
            return scope

    runner = Runner()
    original = runner.app
    said = []
    count_requests(runner, 3, said.append)
    assert [runner.app(n, None, None) for n in range(3)] == [0, 1, 2]
    assert said == [3]
    assert runner.app == original
    assert runner.app(9, None, None) == 9 and said == [3]


def test_request_counting_costs_next_to_nothing():
    """The wrapper adds one plain call per request: well under a microsecond, where a
    request costs tens of microseconds of the server's CPU (the benchmark's 3% rule)."""

    class Runner:
        @staticmethod
        def app(scope, receive, send):
            return None

    plain, counted = Runner(), Runner()
    count_requests(counted, 10**9, lambda _n: None)
    rounds = 200_000

    def timed(runner) -> float:
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(rounds):
                runner.app(None, None, None)
            best = min(best, time.perf_counter() - began)
        return best / rounds

    extra = timed(counted) - timed(plain)
    assert extra < 1e-6, f"{extra * 1e9:.0f} ns per request"
