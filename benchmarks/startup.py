"""Start-up to the first 200: twisted-asgi checkouts side by side with uvicorn.

Each round starts every server once, in an order that rotates from round to
round (interleaved, so a busy moment of the machine lands on each in turn),
polls ``GET /`` until it answers 200, then stops it with SIGTERM. Prints the
median and the range per server. With ``--callgrind`` each start runs under
valgrind's callgrind instead, and the figure is the instructions the server
executed from ``exec`` to its exit after the first 200 (a count that does not
depend on the machine's load; one round is enough)::

    python benchmarks/startup.py --checkout base=/work/wt/base --checkout this=. --rounds 10
    python benchmarks/startup.py --checkout base=/work/wt/base --checkout this=. --rounds 1 --callgrind

The app is ``apps:hello`` (this directory), served on 127.0.0.1 with the
command lines of run.py's ``startup`` scenario (twisted-asgi with its
defaults: uvloop, no other option; uvicorn with httptools and uvloop). A
checkout is served by ``--python`` with ``PYTHONPATH`` set to it.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from run import free_port, probe  # noqa: E402 (the suite's own readiness probe)


def server_argv(kind: str, python: str, port: int) -> list[str]:
    if kind == "uvicorn":
        return [
            python,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "apps:hello",
        ]
    return [python, "-m", "twisted_asgi", "--bind", "127.0.0.1", "--port", str(port), "apps:hello"]


def start_once(argv: list[str], env: dict[str, str], port: int, timeout: float, callgrind: bool) -> float:
    """Seconds to the first 200, or (``callgrind``) instructions to the exit after it."""
    out = None
    if callgrind:
        handle, out = tempfile.mkstemp(prefix="startup-", suffix=".callgrind")
        os.close(handle)
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv]
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=BENCH_DIR, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = started + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv}: exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            if probe(port, False):
                elapsed = time.perf_counter() - started
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{argv}: no 200 within {timeout} s")
            time.sleep(0.005)  # polling for readiness with a deadline, as run.py does
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    if out is None:
        return elapsed
    try:
        for line in Path(out).read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return float(line.split()[1])
        raise RuntimeError(f"{out}: no summary line")
    finally:
        os.unlink(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", action="append", default=[], help="NAME=PATH of a twisted-asgi checkout")
    parser.add_argument("--python", default=str(BENCH_DIR / ".venv-self" / "bin" / "python"), help="for twisted-asgi")
    parser.add_argument("--peers-python", default=str(BENCH_DIR / ".venv-peers" / "bin" / "python"), help="uvicorn's")
    parser.add_argument("--no-uvicorn", action="store_true")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument(
        "--pycache",
        default=str(Path(tempfile.gettempdir()) / "startup-pycache"),
        help="PYTHONPYCACHEPREFIX for every server: a checkout's modules are compiled once, "
        "by the unmeasured first start, as an installed package's are at install time",
    )
    args = parser.parse_args()
    timeout = args.timeout or (300.0 if args.callgrind else 30.0)
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    base_env["PYTHONPYCACHEPREFIX"] = args.pycache
    servers: list[tuple[str, list[str], dict[str, str]]] = []
    for item in args.checkout:
        name, _, path = item.partition("=")
        servers.append((name, ["twisted-asgi", args.python], dict(base_env, PYTHONPATH=str(Path(path).resolve()))))
    if not args.no_uvicorn:
        servers.append(("uvicorn", ["uvicorn", args.peers_python], base_env))
    for _name, (kind, python), env in servers:  # compiles what is not yet, unmeasured
        port = free_port()
        start_once(server_argv(kind, python, port), env, port, 60.0, False)
    results: dict[str, list[float]] = {name: [] for name, _, _ in servers}
    for round_ in range(args.rounds):
        shift = round_ % len(servers)
        for name, (kind, python), env in servers[shift:] + servers[:shift]:
            port = free_port()
            results[name].append(start_once(server_argv(kind, python, port), env, port, timeout, args.callgrind))
    unit = "M instructions" if args.callgrind else "ms"
    scale = 1e-6 if args.callgrind else 1e3
    reference = statistics.median(results["uvicorn"]) if "uvicorn" in results else None
    for name, values in results.items():
        median = statistics.median(values)
        ratio = f"  {median / reference:.2f}x uvicorn" if reference else ""
        print(
            f"{name:>16}: median {median * scale:8.1f} {unit} (range {min(values) * scale:.1f}-"
            f"{max(values) * scale:.1f}, {len(values)} runs){ratio}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
