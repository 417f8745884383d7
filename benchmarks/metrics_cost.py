"""What ``--metrics-endpoint`` costs: server CPU time per request, metrics on
against metrics off, same app, same load.

Two servers run side by side (``benchmarks.apps:hello``, one with
``--metrics-endpoint``); the load goes to one at a time, in interleaved pairs
whose order alternates (on-off, off-on, ...), so drift of a noisy machine
falls on both sides alike. For each run the server's CPU time (user + system,
``/proc/PID/stat``) over the run is divided by the requests the load tool
completed. The figure is the median over the pairs of on/off, per load::

    PYTHONPATH=. python benchmarks/metrics_cost.py --pairs 7 --duration 5

Loads: ``wrk`` (HTTP/1.1 keep-alive, 1 thread, 32 connections) and
``h2load`` (h2c, 4 connections x 32 streams). On a busy machine single pairs
differ by 20%; the steadier measure counts instructions instead::

    python benchmarks/instructions.py --scenarios h1,h2c --scale 0.25 --args "--metrics-endpoint tcp:port=0"

docs/deployment.rst ("Metrics") gives the figures of one run of each.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stream:
        fields = stream.read().rpartition(")")[2].split()
    # Fields 14 and 15 of proc(5) (utime, stime); index 0 here is field 3.
    return (int(fields[11]) + int(fields[12])) / TICKS


def start(metrics: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv = [sys.executable, "-m", "twisted_asgi", "-e", f"tcp:port={port}:interface=127.0.0.1"]
    if metrics:
        argv += ["--metrics-endpoint", f"tcp:port={free_port()}:interface=127.0.0.1"]
    argv.append("benchmarks.apps:hello")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                response.read()
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("the server did not start") from None
            time.sleep(0.1)


def start_load(kind: str, port: int, duration: float) -> subprocess.Popen:
    """One run of the load tool, started."""
    if kind == "wrk":
        argv = ["wrk", "-t1", "-c32", f"-d{duration:g}s", f"http://127.0.0.1:{port}/"]
    else:
        argv = ["h2load", "-c4", "-m32", f"-D{duration:g}", f"http://127.0.0.1:{port}/"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def completed(kind: str, run: subprocess.Popen) -> int:
    """Requests the run completed."""
    out, _ = run.communicate()
    if kind == "wrk":
        match = re.search(r"(\d+) requests in", out)
    else:
        match = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if run.returncode or match is None:
        raise SystemExit(f"cannot read the {kind} output:\n{out}")
    return int(match.group(1))


def load(kind: str, port: int, duration: float) -> int:
    return completed(kind, start_load(kind, port, duration))


def measure(servers: dict, order: tuple[bool, ...], kind: str, duration: float, together: bool) -> dict[bool, float]:
    """Server CPU microseconds per request, by metrics on/off: one run after
    the other in ``order``, or both servers loaded at once (``together``)."""
    figures = {}
    if together:
        before = {m: cpu_seconds(servers[m][0].pid) for m in order}
        runs = {m: start_load(kind, servers[m][1], duration) for m in order}
        done = {m: completed(kind, runs[m]) for m in order}
        for m in order:
            figures[m] = (cpu_seconds(servers[m][0].pid) - before[m]) / done[m] * 1e6
        return figures
    for m in order:
        proc, port = servers[m]
        start = cpu_seconds(proc.pid)
        requests = load(kind, port, duration)
        figures[m] = (cpu_seconds(proc.pid) - start) / requests * 1e6
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--loads", default="wrk,h2load")
    parser.add_argument(
        "--together", action="store_true", help="load both servers at once (noise common to both) instead of in turn"
    )
    args = parser.parse_args()
    for tool in ("wrk", "h2load"):
        if tool in args.loads and shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt-get install wrk nghttp2-client)")
    servers = {False: start(False), True: start(True)}
    try:
        for kind in args.loads.split(","):
            for _proc, port in servers.values():  # warm up both
                load(kind, port, 1)
            on: list[float] = []
            off: list[float] = []
            for pair in range(args.pairs):
                order = (True, False) if pair % 2 == 0 else (False, True)
                figures = measure(servers, order, kind, args.duration, args.together)
                on.append(figures[True])
                off.append(figures[False])
                print(f"{kind} pair {pair + 1}: on {figures[True]:.1f} us, off {figures[False]:.1f} us", flush=True)
            ratios = sorted(a / b for a, b in zip(on, off, strict=True))
            quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
            print(
                f"{kind}{' together' if args.together else ''}: median CPU per request on "
                f"{statistics.median(on):.1f} us, off {statistics.median(off):.1f} us; median on/off "
                f"{statistics.median(ratios):.4f} ({(statistics.median(ratios) - 1) * 100:+.1f}%), "
                f"quartiles {quartiles[0]:.3f}..{quartiles[2]:.3f}, over {args.pairs} pairs",
                flush=True,
            )
    finally:
        for proc, _port in servers.values():
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
