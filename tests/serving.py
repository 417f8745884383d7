"""Start real servers (``python -m twisted_asgi`` or ``twistd``) on loopback for tests.

Servers listen on port 0; the port is read from the "Listening on" log line, so
tests never race over ports. Every server is stopped by its PID.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The twistd script of the Python running the tests (the plugin must be installed
#: there: ``pip install .`` puts it into twisted/plugins/).
TWISTD = str(Path(sys.executable).parent / "twistd")
_LISTEN = re.compile(r"Listening on (\S+) \((?:https?://)?\[?([^\]\s]*?)\]?(?::(\d+))?\)")


@dataclass
class Server:
    """A running server process and what it printed."""

    proc: subprocess.Popen
    port: int | None
    host: str
    output: list[str] = field(default_factory=list)
    addresses: list[tuple[str, str, int | None]] = field(default_factory=list)

    def read_output(self, timeout: float = 0.0) -> str:
        """Collect what the server printed so far (waiting up to ``timeout`` s for more)."""
        deadline = time.monotonic() + timeout
        if self.proc.stdout is None or self.proc.stdout.closed:
            return "".join(self.output)
        fd = self.proc.stdout.fileno()
        while True:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.output.append(chunk.decode("utf-8", "replace"))
            if time.monotonic() >= deadline:
                break
        return "".join(self.output)

    def wait_for_output(self, needle: str, timeout: float = 10.0) -> str:
        """Wait until ``needle`` appears in the output; fail with the output if not."""
        deadline = time.monotonic() + timeout
        while needle not in "".join(self.output):
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not printed; output:\n{''.join(self.output)}")
            self.read_output(0.05)
        return "".join(self.output)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the server to exit by itself; read the rest of its output; return its exit code."""
        try:
            self.proc.wait(timeout)
        finally:
            self.stop()
        return self.proc.returncode

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the server and wait for it; return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            # The process is gone: read what it left in the pipe, then close it.
            self.read_output(0.5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        return self.proc.returncode


def start_server(
    app: str = "tests.apps:hello",
    *args: str,
    command: str = "module",
    endpoint: str | None = "tcp:port=0:interface=127.0.0.1",
    env: dict[str, str] | None = None,
    wait: bool = True,
    cwd: str | os.PathLike | None = None,
    app_first: bool = False,
    new_session: bool = False,
    listeners: int | None = None,
) -> Server:
    """Start a server for ``app``; return once it listens (unless ``wait`` is False).

    ``command`` is ``"module"`` (python -m twisted_asgi) or ``"twistd"``;
    ``app_first`` puts the application before the options, as uvicorn users type it;
    ``new_session`` gives the server a process group of its own (a terminal's
    Ctrl-C reaches every process of a group: ``os.killpg`` stands for it).
    ``listeners``: how many "Listening on" lines to wait for; by default one
    per ``endpoint`` and ``-e``/``--endpoint``/``--listen`` option.
    """
    if listeners is None:
        listeners = (endpoint is not None) + sum(arg in ("-e", "--endpoint", "--listen") for arg in args)
        listeners = max(listeners, 1)
    if command == "twistd":
        argv = [TWISTD, "-n", "asgi"]
    else:
        argv = [sys.executable, "-m", "twisted_asgi"]
    if app_first:
        argv.append(app)
    if endpoint is not None:
        argv += ["-e", endpoint]
    argv += [*args] if app_first else [*args, app]
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=full_env,
        cwd=cwd or ROOT,
        start_new_session=new_session,
    )
    server = Server(proc, None, "127.0.0.1")
    if not wait:
        return server
    # A bound for a server that will never listen, not a measure: a loaded
    # 2-core machine has taken over 20 s to start one.
    deadline = time.monotonic() + 60
    while True:
        text = server.read_output(0.05)
        found = _LISTEN.findall(text)
        if len(found) >= listeners:
            for desc, host, port in found:
                server.addresses.append((desc, host, int(port) if port else None))
            _desc, host, port = found[0]
            server.host = host or "127.0.0.1"
            server.port = int(port) if port else None
            return server
        if proc.poll() is not None or time.monotonic() > deadline:
            server.read_output(0.2)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise AssertionError(f"server did not start; output:\n{''.join(server.output)}")


def recv_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read until the peer closes (or ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def recv_response(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Read one HTTP/1.1 response (Content-Length, chunked or close-delimited).

    Returns (status line, headers with lower-cased names, body). Bytes read past
    the response (pipelining) are kept for the next call on the same socket.
    """
    sock.settimeout(timeout)
    buf = _leftover.pop(id(sock), b"")

    def more() -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed in the middle of a response: {buf[:300]!r}")
        return chunk

    while b"\r\n\r\n" not in buf:
        buf += more()
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    status = lines[0]
    code = int(status.split()[1])
    if code in (204, 304) or 100 <= code < 200:
        body = b""
    elif b"content-length" in headers:
        n = int(headers[b"content-length"])
        while len(rest) < n:
            rest += more()
        body, rest = rest[:n], rest[n:]
    elif headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += more()
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while not (rest.startswith(b"\r\n") or b"\r\n\r\n" in rest):
                    rest += more()
                if rest.startswith(b"\r\n"):
                    rest = rest[2:]
                else:
                    trailer, _, rest = rest.partition(b"\r\n\r\n")
                    headers[b"__trailers__"] = trailer
                break
            while len(rest) < size + 2:
                rest += more()
            body += rest[:size]
            rest = rest[size + 2 :]
    else:
        body = rest + recv_until_closed(sock, timeout)
        rest = b""
    if rest:
        _leftover[id(sock)] = rest
    return status, headers, body


_leftover: dict[int, bytes] = {}
