"""``--workers N`` end to end: N processes share one listening socket, a
worker killed with SIGKILL is replaced and loses only the requests it held,
SIGHUP replaces the workers one at a time without refusing anyone, and SIGTERM
(with or without workers) refuses new connections while in-flight requests
finish, then exits 0. Workers share TLS and PROXY-protocol listeners too, and
the deployment guide's Dockerfile ``CMD`` is run as written (port aside).

Responses carry the worker's pid (``tests.deploy:app``). N is 2: this runs on
two cores shared with other tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.deploy import DOCS, closing, get_json, http_get, make_certs, serving, start_command, wait_for
from tests.serving import recv_response, start_server

APP = "tests.deploy:app"
SERVING = re.compile(r"Worker (\d+) is serving")


def serving_pids(server) -> list[int]:
    """Pids of the workers that said they serve, in order."""
    return [int(pid) for pid in SERVING.findall(server.read_output(0.05))]


def wait_serving(server, count: int, after: int = 0) -> list[int]:
    """Wait until ``count`` more workers than ``after`` serve; return all serving pids."""

    def enough() -> list[int] | None:
        pids = serving_pids(server)
        return pids if len(pids) >= after + count else None

    return wait_for(enough, 30, f"{count} workers")


def hold_requests(server, directory: Path, count: int, pool: ThreadPoolExecutor) -> list:
    """Start ``count`` requests that the app holds until ``directory/release``
    exists; return their futures once the app has started every one."""
    futures = [
        pool.submit(http_get, server.host, server.port, f"/hold?dir={directory}", timeout=30) for _ in range(count)
    ]
    wait_for(lambda: len(list(directory.glob("started-*"))) >= count, 20, "held requests to start")
    return futures


def held_by(directory: Path) -> dict[int, int]:
    """How many held requests each worker pid started."""
    counts: dict[int, int] = {}
    for path in directory.glob("started-*"):
        pid = int(path.name.split("-")[1])
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def test_workers_share_the_load():
    """Two workers (not the supervisor) both answer requests that arrive while the other is busy."""
    with serving(APP, "--workers", "2") as server:
        pids = wait_serving(server, 2)
        assert server.proc.pid not in pids
        seen: set[int] = set()
        with ThreadPoolExecutor(6) as pool:
            for _ in range(5):
                seen |= {
                    r["pid"] for r in pool.map(lambda _: get_json(server.host, server.port, "/busy?ms=200"), range(6))
                }
                if len(seen) == 2:
                    break
        assert seen == set(pids)


# uvloop takes the signal wakeup descriptor from Twisted, which then misses
# some SIGCHLDs: the supervisor must notice its workers' deaths all the same.
LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


@LOOPS
def test_killed_worker_is_replaced_and_loses_only_what_it_held(tmp_path, loop):
    """SIGKILL one worker holding requests: only its requests fail, the other's finish,
    every new request is answered, and a new worker starts."""
    with serving(APP, "--workers", "2", "--timeout-worker-restart", "0.2", "--loop", loop) as server:
        pids = wait_serving(server, 2)
        with ThreadPoolExecutor(6) as pool:
            futures = hold_requests(server, tmp_path, 6, pool)
            held = held_by(tmp_path)
            victim = max(held, key=lambda pid: held[pid])
            os.kill(victim, signal.SIGKILL)
            # Queued connections go to the survivor at once, while the victim is not yet replaced.
            for _ in range(20):
                assert get_json(server.host, server.port)["pid"] != victim
            (tmp_path / "release").write_text("")
            results = []
            for future in futures:
                try:
                    results.append(future.result(timeout=30)[0])
                except (OSError, AssertionError):
                    results.append("lost")
        assert results.count("lost") == held[victim]
        assert results.count(200) == 6 - held[victim]
        replaced = wait_serving(server, 1, after=2)
        new = replaced[2]
        assert new not in pids
        output = server.read_output()
        assert f"Worker {victim} died" in output, output
        assert closing(server) == 0


@LOOPS
def test_killing_workers_repeatedly_leaves_a_clean_log(loop):
    """Workers killed again and again (SIGKILL, then SIGTERM) are each reaped once and
    replaced, and the log says so in one line each, without a traceback.

    Source: issue 16, item 2 (operator test: "Failed to reap None ... TypeError"
    when the pidfd watcher and Twisted's SIGCHLD handler both reaped a worker)."""
    with serving(APP, "--workers", "2", "--timeout-worker-restart", "0.05", "--loop", loop) as server:
        pids = wait_serving(server, 2)
        alive = set(pids)
        killed = []
        for round_ in range(6):
            victim = min(alive)
            os.kill(victim, signal.SIGKILL if round_ % 2 == 0 else signal.SIGTERM)
            killed.append(victim)
            pids = wait_serving(server, 1, after=len(pids))
            alive = (alive - {victim}) | {pids[-1]}
            assert get_json(server.host, server.port)["pid"] in alive
        assert closing(server) == 0
        output = server.read_output()
    for victim in killed:
        assert output.count(f"Worker {victim} ") >= 2, output  # serving, then its end
    for bad in ("Traceback", "Unhandled Error", "Failed to reap", "TypeError"):
        assert bad not in output, output


def test_sighup_rolling_restart_refuses_nobody():
    """SIGHUP replaces both workers one at a time while a client keeps sending requests:
    no connection is refused, no request fails, new pids answer. (A connection an old
    worker accepted just before it was told to stop still gets its request answered.)"""
    with serving(APP, "--workers", "2") as server:
        old = set(wait_serving(server, 2))
        stop = threading.Event()
        answers: list[int] = []
        failures: list[str] = []

        def client() -> None:
            while not stop.is_set():
                try:
                    answers.append(get_json(server.host, server.port)["pid"])
                except Exception as exc:  # noqa: BLE001 (recorded and asserted on)
                    failures.append(repr(exc))

        thread = threading.Thread(target=client)
        thread.start()
        try:
            wait_for(lambda: len(answers) >= 5, 10, "the client to get answers")
            server.proc.send_signal(signal.SIGHUP)
            server.wait_for_output("Rolling restart done", 60)
            count = len(answers)
            wait_for(lambda: len(answers) >= count + 5, 10, "answers after the restart")
        finally:
            stop.set()
            thread.join(30)
        assert failures == []
        new = set(serving_pids(server)[2:])
        assert len(new) == 2 and not new & old
        tail = answers[-3:]
        assert set(tail) <= new, (tail, new)
        assert closing(server) == 0


@pytest.mark.parametrize(("workers", "loop"), [("0", "asyncio"), ("2", "asyncio"), ("2", "uvloop")])
def test_sigterm_refuses_new_connections_while_in_flight_requests_finish(tmp_path, workers, loop):
    """After SIGTERM new connections are refused at once, held requests still get their 200, and the exit code is 0."""
    server = start_server(APP, "--workers", workers, "--loop", loop)
    try:
        if workers != "0":
            wait_serving(server, int(workers))
        with ThreadPoolExecutor(2) as pool:
            futures = hold_requests(server, tmp_path, 2, pool)
            server.proc.send_signal(signal.SIGTERM)

            def refused() -> bool:
                try:
                    socket.create_connection((server.host, server.port), timeout=2).close()
                except ConnectionRefusedError:
                    return True
                return False

            wait_for(refused, 10, "new connections to be refused")
            assert server.proc.poll() is None  # still finishing the held requests
            (tmp_path / "release").write_text("")
            statuses = [future.result(timeout=30)[0] for future in futures]
        assert statuses == [200, 200]
        assert server.wait(30) == 0
    finally:
        closing(server)


def container_command() -> list[str]:
    """The guide's Dockerfile CMD, with this Python, the test app and a loopback port 0."""
    line = next(line for line in (DOCS / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    argv = json.loads(line[4:])
    assert argv[:3] == ["python", "-m", "twisted_asgi"]
    argv[0] = sys.executable
    argv[argv.index("tcp:port=8000:interface=0.0.0.0")] = "tcp:port=0:interface=127.0.0.1"
    argv[argv.index("myproject.asgi:application")] = APP
    return argv


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_to_the_process_group_lets_requests_finish(tmp_path, sig):
    """A terminal's Ctrl-C (or systemd's control-group SIGTERM) reaches the
    supervisor and every worker at once, and the supervisor then forwards its own
    SIGTERM: a worker drains once, so a request in flight still finishes; only a
    second signal to the supervisor forces an exit.

    Source: issue 16, item 4 (newcomer test: with --workers one Ctrl-C cut off a
    running request with "Second SIGTERM during graceful shutdown")."""
    server = start_server(APP, "--workers", "2", "--graceful-timeout", "20", new_session=True)
    try:
        wait_serving(server, 2)
        with ThreadPoolExecutor(1) as pool:
            (future,) = hold_requests(server, tmp_path, 1, pool)
            os.killpg(server.proc.pid, sig)
            server.wait_for_output("Stopping 2 worker(s)")
            (tmp_path / "release").write_text("")
            status, _headers, _body = future.result(timeout=30)
        assert status == 200
        assert server.proc.wait(30) == 0
        output = server.read_output(0.5)
    finally:
        server.stop()
    assert "Second" not in output and "Traceback" not in output, output
    # A worker's stop is told apart from the supervisor's (fresh-clone check).
    assert re.search(r"Worker \d+: Received SIG(INT|TERM), shutting down\.", output), output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_second_signal_to_the_supervisor_forces_an_exit(tmp_path, sig):
    """A second signal to the supervisor while its workers drain kills them and
    exits at once, with one line.

    Source: issue 16, item 4."""
    server = start_server(APP, "--workers", "2", "--graceful-timeout", "60")
    try:
        pids = wait_serving(server, 2)
        with ThreadPoolExecutor(1) as pool:
            hold_requests(server, tmp_path, 1, pool)
            server.proc.send_signal(sig)
            server.wait_for_output("Stopping 2 worker(s)")
            server.proc.send_signal(sig)
            assert server.proc.wait(10) == 1
            (tmp_path / "release").write_text("")
        output = server.read_output(0.5)
    finally:
        server.stop()
    name = signal.Signals(sig).name
    forced = rf"Second {name} during graceful shutdown: killing [12] worker\(s\) and exiting now"
    assert re.search(forced, output), output
    for pid in pids:
        wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 10, f"worker {pid} to end")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


def test_container_command():
    """The Dockerfile's CMD starts two workers, believes no proxy header from outside its
    private ranges, and exits 0 on SIGTERM."""
    server = start_command(container_command())
    try:
        pids = wait_serving(server, 2)
        forged = {"X-Forwarded-For": "10.1.2.3", "X-Forwarded-Proto": "https"}
        scope = get_json(server.host, server.port, headers=forged)
        assert scope["pid"] in pids
        assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"
    finally:
        code = closing(server)
    assert code == 0


def test_workers_share_tls_and_proxy_protocol_listeners(tmp_path):
    """Workers serve an ssl: listener (TLS in each worker) and a haproxy: one (PROXY header read in each worker)."""
    certs = make_certs(tmp_path)
    tls = f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    proxied = "haproxy:tcp:port=0:interface=127.0.0.1"
    with serving(APP, "--workers", "2", "-e", proxied, endpoint=tls) as server:
        pids = wait_serving(server, 2)
        output = server.read_output()
        tls_port = int(re.search(r"Listening on ssl:\S+ \(https://127\.0\.0\.1:(\d+)\)", output).group(1))
        proxy_port = int(re.search(r"Listening on haproxy:\S+ \(http://127\.0\.0\.1:(\d+)\)", output).group(1))
        context = ssl.create_default_context(cafile=str(certs["ca"]))
        with context.wrap_socket(
            socket.create_connection(("127.0.0.1", tls_port), timeout=10), server_hostname="localhost"
        ) as sock:
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, _headers, body = recv_response(sock)
        scope = json.loads(body)
        assert b" 200 " in status and scope["scheme"] == "https" and scope["pid"] in pids
        scope = get_json("127.0.0.1", proxy_port, prefix=b"PROXY TCP4 192.0.2.8 127.0.0.1 5555 80\r\n")
        assert scope["client"] == ["192.0.2.8", 5555] and scope["pid"] in pids
