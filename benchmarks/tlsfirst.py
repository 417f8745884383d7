"""New TLS connections, one request each: connections per second and the time to the first byte.

Each of ``--concurrency`` workers loops until ``--duration`` is over: open a TCP
connection, do a full TLS handshake (``--tls 1.3`` or ``1.2``; no session is ever
resumed: every connection starts from a fresh context state), send one HTTP/1.1
``GET`` with ``Connection: close``, read the whole response, close.  This is a
browser's or an API client's first request on a new connection, so the server pays
for a handshake per request.

Prints one JSON line: connections completed, seconds, errors, and the p50 and p99 of
the time from the start of the connection to the first response byte (TCP connect,
TLS handshake, request, response head) and of the wait after the handshake alone,
where a server that leaves Nagle's algorithm on loses ~40 ms to a delayed ACK now
and then.  uvloop is used when importable; only the standard library is needed.

    python tlsfirst.py --port 8443 --tls 1.3 --concurrency 16 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from typing import Any


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (``None`` when empty)."""
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def client_context(version: str) -> ssl.SSLContext:
    """A client context pinned to one TLS version, no certificate check (self-signed), ALPN http/1.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    pinned = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    context.minimum_version = pinned
    context.maximum_version = pinned
    context.set_alpn_protocols(["http/1.1"])
    return context


class OneRequest(asyncio.Protocol):
    """One connection: send the request once TLS is up, time the first byte, read to the end."""

    def __init__(self, request: bytes, started: float) -> None:
        self.request = request
        self.started = started
        self.handshake_done = 0.0
        self.first_byte = 0.0
        self.buffer = bytearray()
        self.expected: int | None = None  # head + body bytes, once the head is complete
        self.done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        # For an SSL transport this runs once the handshake has completed.
        self.handshake_done = time.perf_counter()
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.first_byte:
            self.first_byte = time.perf_counter()
        self.buffer += data
        if self.expected is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            status = head.split(b"\r\n", 1)[0].split(b" ", 2)
            if len(status) < 2 or status[1] != b"200":
                self._finish(f"status {status[1:2]!r}")
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip() == b"content-length":
                    length = int(value.strip())
            self.expected = end + 4 + length
        if len(self.buffer) >= self.expected:
            self._finish(None)

    def _finish(self, error: str | None) -> None:
        if not self.done.done():
            self.done.set_result(error)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(f"connection lost before the response ended: {exc or 'closed'}")
        if not self.closed.done():
            self.closed.set_result(None)


async def worker(args: argparse.Namespace, context: ssl.SSLContext, deadline: float, out: dict[str, Any]) -> None:
    """New connections one after another until the deadline."""
    loop = asyncio.get_running_loop()
    request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\nConnection: close\r\n\r\n".encode()
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        protocol = OneRequest(request, started)
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda p=protocol: p, args.host, args.port, ssl=context, server_hostname="localhost"
                ),
                10,
            )
            error = await asyncio.wait_for(protocol.done, 10)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if protocol.transport is not None:
                protocol.transport.abort()
        if error is None:
            out["first"].append(protocol.first_byte - started)
            out["after_handshake"].append(protocol.first_byte - protocol.handshake_done)
        else:
            out["errors"].append(error)
        if protocol.transport is not None:
            # Bounded: the closing handshake (close_notify both ways) normally takes one round trip.
            try:
                await asyncio.wait_for(asyncio.shield(protocol.closed), 5)
            except TimeoutError:
                protocol.transport.abort()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    context = client_context(args.tls)
    out: dict[str, Any] = {"first": [], "after_handshake": [], "errors": []}
    started = time.perf_counter()
    deadline = started + args.duration
    await asyncio.gather(*(worker(args, context, deadline, out) for _ in range(args.concurrency)))
    seconds = time.perf_counter() - started
    first = sorted(out["first"])
    after = sorted(out["after_handshake"])

    def us(value: float | None) -> float | None:
        return None if value is None else value * 1e6

    return {
        "count": len(first),
        "seconds": seconds,
        "tls": args.tls,
        "concurrency": args.concurrency,
        "errors": len(out["errors"]),
        "error_samples": sorted(set(out["errors"]))[:5],
        "p50_us": us(percentile(first, 0.50)),
        "p99_us": us(percentile(first, 0.99)),
        "after_handshake_p50_us": us(percentile(after, 0.50)),
        "after_handshake_p99_us": us(percentile(after, 0.99)),
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--tls", choices=["1.2", "1.3"], default="1.3")
    parser.add_argument("--concurrency", type=int, default=16, help="connections in flight at once")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to keep opening connections")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if not args.no_uvloop:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
    result = asyncio.run(run(args))
    print(json.dumps(result))
    return 0 if result["count"] else 1


if __name__ == "__main__":
    sys.exit(main())
