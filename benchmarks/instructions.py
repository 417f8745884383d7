"""Instructions per request: the server's cost, counted, not timed.

The other scenarios of this suite time a loaded server; on a shared or noisy
machine their ratios move by several percent from run to run. This one runs the
server under Valgrind's callgrind, serves a fixed number of requests (or
WebSocket messages, or new connections), and counts the user-space instructions
the server process executed. Served twice, with a small and a large count, the
difference divided by the difference in count is the cost of one request, with
start-up and shut-down cancelled out. It varies by about 1% between runs, so a
change of 3% is visible where the timed scenarios cannot see it.

What it does not count: the kernel's work (system calls are one instruction
each here), time spent waiting, and cache effects. A change that trades
instructions for system calls (joining buffers versus a gathering write) needs
the timed scenarios too.

    python benchmarks/instructions.py                       # this checkout, every scenario
    python benchmarks/instructions.py --against HEAD~3       # and an older commit, side by side
    python benchmarks/instructions.py --scenarios h1,ws-echo --against ed23272 --against /path/to/checkout
    python benchmarks/instructions.py --scenarios h1,h2c --args "--metrics-endpoint tcp:port=0:interface=127.0.0.1"

A variant is this checkout (the first column, run from the source tree with
``benchmarks/.venv-self``'s dependencies), a git commit (installed once into
``benchmarks/.venv-ref-<commit>``, as ``run.py --baseline`` does), or another
checkout's directory; ``--args`` adds this checkout again with other server
options (the cost of a feature: metrics on against off). Needs ``valgrind`` (Debian package) and ``h2load``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from run import build_ref_venv, free_port, make_certificate, resolve_commit  # noqa: E402
from wsload import client_frame, handshake_request  # noqa: E402

SELF_PYTHON = BENCH_DIR / ".venv-self" / "bin" / "python"


@dataclass(frozen=True)
class Load:
    name: str
    unit: str
    app: str
    small: int
    large: int
    tls: bool = False


LOADS = {
    load.name: load
    for load in [
        Load("h1", "request", "apps:hello", 400, 4400),
        Load("h1-close", "connection", "apps:hello", 100, 900),
        Load("h2c", "request", "apps:hello", 400, 4400),
        Load("ws-echo", "message", "apps:ws_echo", 800, 8800),
        Load("tls13-new", "connection", "apps:hello", 40, 340, tls=True),
        Load("h2-tls", "request", "apps:hello", 400, 4400, tls=True),
        Load("h1-tls", "request", "apps:hello", 400, 4400, tls=True),
    ]
}


@dataclass(frozen=True)
class Variant:
    label: str
    python: str
    cwd: str
    pythonpath: str
    #: Extra server options (``--args``): the same tree, differently configured.
    args: tuple[str, ...] = ()


def _h2load(port: int, count: int, h1: bool, tls: bool = False) -> None:
    """``count`` requests on 8 kept connections (8 streams each for HTTP/2);
    with ``tls``, over ``https://`` (ALPN h2, or http/1.1 for ``--h1``)."""
    argv = ["h2load", "-n", str(count), "-c", "8", "-m", "1" if h1 else "8"]
    if h1:
        argv.append("--h1")
    scheme = "https" if tls else "http"
    done = subprocess.run([*argv, f"{scheme}://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=900)
    if f"{count} succeeded" not in done.stdout:
        raise RuntimeError(f"h2load did not complete {count} requests:\n{done.stdout[-800:]}")


def _close_requests(port: int, count: int, context: ssl.SSLContext | None = None) -> None:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
        with sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected response {data[:80]!r}")


def _tls_requests(port: int, count: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    _close_requests(port, count, context)


def _ws_echo(port: int, count: int) -> None:
    window, connections = 4, 8

    async def one(messages: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake_request("127.0.0.1", port, "/"))
        await reader.readuntil(b"\r\n\r\n")
        burst = client_frame(b"x" * 32) * window
        for _ in range(messages // window):
            writer.write(burst)
            await reader.readexactly(window * 34)
        writer.write(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # Close 1000, masked with zeros
        await reader.read()
        writer.close()

    async def main() -> None:
        await asyncio.gather(*(one(count // connections) for _ in range(connections)))

    asyncio.run(main())


DRIVERS: dict[str, Callable[[int, int], None]] = {
    "h1": lambda port, n: _h2load(port, n, h1=True),
    "h1-close": _close_requests,
    "h2c": lambda port, n: _h2load(port, n, h1=False),
    "ws-echo": _ws_echo,
    "tls13-new": _tls_requests,
    "h2-tls": lambda port, n: _h2load(port, n, h1=False, tls=True),
    "h1-tls": lambda port, n: _h2load(port, n, h1=True, tls=True),
}


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not listen on {port} within {timeout} s")


def count_instructions(variant: Variant, load: Load, count: int, scratch: Path, cert: tuple[Path, Path]) -> int:
    """The instructions a server process executed, from start to exit, having served ``count``."""
    port = free_port()
    out = scratch / f"callgrind.{os.getpid()}.{port}"
    if load.tls:
        listen = ["--endpoint", f"ssl:port={port}:interface=127.0.0.1:privateKey={cert[1]}:certKey={cert[0]}"]
    else:
        listen = ["--bind", "127.0.0.1", "--port", str(port)]
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        variant.python,
        "-m",
        "twisted_asgi",
        *listen,
        *variant.args,
        load.app,
    ]
    env = dict(os.environ, PYTHONPATH=variant.pythonpath, PYTHONHASHSEED="0")
    log = (scratch / f"server.{port}.log").open("wb")
    proc = subprocess.Popen(argv, cwd=variant.cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            _wait_listening(port, proc, 120)
        except RuntimeError as exc:
            log.flush()
            said = (scratch / f"server.{port}.log").read_text(errors="replace")
            raise RuntimeError(f"{exc}; the server said:\n{said[-2000:]}") from None
        DRIVERS[load.name](port, count)
    finally:
        proc.send_signal(signal.SIGTERM)  # not SIGINT: a shell starting us in the background ignores it for us
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            out.unlink()
            return int(line.split()[1])
    text = (scratch / f"server.{port}.log").read_text(errors="replace")
    raise RuntimeError(f"no instruction total in {out}; the server said:\n{text[-2000:]}")


def per_unit(variant: Variant, load: Load, scratch: Path, cert: tuple[Path, Path]) -> float:
    small = count_instructions(variant, load, load.small, scratch, cert)
    large = count_instructions(variant, load, load.large, scratch, cert)
    return (large - small) / (load.large - load.small)


def variants(against: list[str], extra: list[str] | None = None) -> list[Variant]:
    python = str(SELF_PYTHON if SELF_PYTHON.exists() else Path(sys.executable))
    found = [Variant("this checkout", python, str(ROOT), f"{ROOT}:{BENCH_DIR}")]
    for args in extra or ():
        found.append(Variant(f"+ {args}", python, str(ROOT), f"{ROOT}:{BENCH_DIR}", tuple(shlex.split(args))))
    for item in against:
        path = Path(item)
        if path.is_dir() and (path / "twisted_asgi").is_dir():
            found.append(Variant(str(path), python, str(path.resolve()), f"{path.resolve()}:{BENCH_DIR}"))
            continue
        commit = resolve_commit(item)
        ref_python = build_ref_venv(commit, python, BENCH_DIR / f".venv-ref-{commit[:12]}")
        # From "/": the checkout must not shadow the install.
        found.append(Variant(f"{item} ({commit[:7]})", ref_python, "/", str(BENCH_DIR)))
    return found


def _args_joined(argv: list[str]) -> list[str]:
    """``--args VALUE`` as ``--args=VALUE``: the value is server options, which start with
    ``--`` themselves, and argparse would take them for options of this script."""
    joined: list[str] = []
    items = iter(argv)
    for item in items:
        joined.append(f"--args={next(items, '')}" if item == "--args" else item)
    return joined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(LOADS), help=f"comma-separated, of: {', '.join(LOADS)}")
    parser.add_argument("--against", action="append", default=[], help="a git commit or a checkout's directory")
    parser.add_argument(
        "--args",
        action="append",
        default=[],
        help="this checkout again with these server options (e.g. '--metrics-endpoint tcp:port=0'), repeatable",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count (0.1 for a quick look)")
    args = parser.parse_args(_args_joined(sys.argv[1:] if argv is None else argv))
    names = [name for name in args.scenarios.split(",") if name]
    unknown = [name for name in names if name not in LOADS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}")
    found = variants(args.against, args.args)
    with tempfile.TemporaryDirectory(prefix="instructions-") as tmp:
        scratch = Path(tmp)
        cert = make_certificate(scratch)
        header = f"{'scenario':<11} {'unit':<11}" + "".join(f" {v.label[:24]:>26}" for v in found)
        print(header)
        for name in names:
            base = LOADS[name]
            load = Load(
                base.name,
                base.unit,
                base.app,
                max(8, int(base.small * args.scale)),
                max(16, int(base.large * args.scale)),
                base.tls,
            )
            costs = [per_unit(variant, load, scratch, cert) for variant in found]
            cells = [f"{costs[0]:>26,.0f}"] + [f"{c:>17,.0f} ({c / costs[0]:.3f}x)" for c in costs[1:]]
            print(f"{name:<11} {load.unit:<11}" + "".join(f" {cell}" for cell in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
