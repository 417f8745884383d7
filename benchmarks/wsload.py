"""WebSocket load client for the benchmark: echo throughput, or many idle connections.

Idle connections may also be plain TLS (handshake done, no request: ``--protocol tls``)
or HTTP/2 cleartext (preface and SETTINGS exchanged, no stream: ``--protocol h2c``).

Built to cost the client as little as possible per message, so the server is what is
measured: frames are masked once up front (RFC 6455 section 5.3 only requires a mask
per frame, not a fresh one), each connection keeps ``--window`` messages in flight and
writes them in one call, and the echoes are counted by a minimal frame parser.  uvloop
is used when importable.  Only the standard library (plus optional uvloop) is needed.

``echo`` mode prints one JSON object: messages echoed, seconds, p50/p99 of the
round-trip time of a window (send ``--window`` messages, get them all back).
``idle`` mode opens ``--connections`` WebSockets (or TLS or h2c connections, see
``--protocol``), prints ``READY <n>``, holds them open until a line arrives on standard
input, then closes them and prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import struct
import sys
import time
from typing import Any

_MASK = b"\x37\xfa\x21\x3d"


def client_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One masked client frame with FIN set (RFC 6455 section 5.2)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return head + _MASK + masked


def handshake_request(host: str, port: int, path: str) -> bytes:
    """The opening handshake (RFC 6455 section 4.1), without extensions."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n\r\n"
    ).encode()


class WSClient(asyncio.Protocol):
    """One client connection; counts the data messages the server sends back."""

    def __init__(self, request: bytes, blob: bytes | None, window: int, deadline: float, rtts: list[float]) -> None:
        self.request = request
        self.blob = blob
        self.window = window
        self.deadline = deadline
        self.rtts = rtts
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None
        self.buffer = bytearray()
        self.upgraded = False
        self.pending = 0
        self.received = 0
        self.sent_at = 0.0
        self.error: str | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def send_window(self) -> None:
        """Write ``window`` messages in one call and start the round-trip clock."""
        self.pending = self.window
        self.sent_at = time.perf_counter()
        self.transport.write(self.blob)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            del self.buffer[: end + 4]
            if b" 101 " not in status + b" ":
                self.fail(f"handshake refused: {status.decode('latin-1')}")
                return
            self.upgraded = True
            if not self.opened.done():
                self.opened.set_result(None)
            if self.blob is not None:
                self.send_window()
        self.parse_frames()

    def parse_frames(self) -> None:
        buffer = self.buffer
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if size - offset < 4:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                head = 4
            elif length == 127:
                if size - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                head = 10
            if second & 0x80:
                head += 4  # a masked server frame is a protocol error, but skip it whole
            if size - offset < head + length:
                break
            opcode = first & 0x0F
            if opcode == 0x9:  # ping: answer with a pong carrying the same data (section 5.5.3)
                self.transport.write(client_frame(bytes(buffer[offset + head : offset + head + length]), 0xA))
            elif opcode == 0x8:
                self.fail("server closed the WebSocket")
                return
            elif first & 0x80 and opcode in (0x0, 0x1, 0x2):
                self.on_message()
            offset += head + length
        if offset:
            del buffer[:offset]

    def on_message(self) -> None:
        self.received += 1
        self.pending -= 1
        if self.pending == 0 and self.blob is not None:
            now = time.perf_counter()
            self.rtts.append(now - self.sent_at)
            if now < self.deadline:
                self.send_window()
            elif not self.finished.done():
                self.finished.set_result(None)

    def fail(self, reason: str) -> None:
        self.error = reason
        for future in (self.opened, self.finished):
            if not future.done():
                future.set_result(None)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done() or not self.opened.done():
            self.fail(f"connection lost: {exc or 'closed by the server'}")

    def close(self) -> None:
        """Send a close frame (status 1000) and close the socket."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(struct.pack("!H", 1000), 0x8))
            self.transport.close()


async def _connect(
    host: str, port: int, path: str, blob: bytes | None, window: int, deadline: float, rtts: list
) -> WSClient:
    loop = asyncio.get_running_loop()
    client = WSClient(handshake_request(host, port, path), blob, window, deadline, rtts)
    await loop.create_connection(lambda: client, host, port)
    return client


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of ``values`` (``None`` when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


async def run_echo(args: argparse.Namespace) -> dict:
    """Echo load for ``args.duration`` seconds; the result as a dict."""
    blob = client_frame(b"m" * args.size) * args.window
    rtts: list[float] = []
    start = time.perf_counter()
    deadline = start + args.duration
    clients = await asyncio.gather(
        *(_connect(args.host, args.port, args.path, blob, args.window, deadline, rtts) for _ in range(args.connections))
    )
    await asyncio.wait_for(asyncio.gather(*(c.finished for c in clients)), args.duration + 30)
    elapsed = time.perf_counter() - start
    for client in clients:
        client.close()
    errors = [c.error for c in clients if c.error]
    return {
        "messages": sum(c.received for c in clients),
        "seconds": elapsed,
        "connections": args.connections,
        "window": args.window,
        "size": args.size,
        "rtt_p50_us": None if not rtts else percentile(rtts, 0.5) * 1e6,
        "rtt_p99_us": None if not rtts else percentile(rtts, 0.99) * 1e6,
        "errors": errors[:5],
        "error_count": len(errors),
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }


#: The HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113 section 3.4).
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


class IdleClient(asyncio.Protocol):
    """An idle connection that is not a WebSocket: TLS with nothing sent after the handshake,
    or HTTP/2 cleartext with the preface and SETTINGS exchanged and no stream opened."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None
        self.buffer = bytearray()
        self.error: str | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.protocol == "tls":  # an SSL transport is made once the handshake is done
            self.opened.set_result(None)
        else:
            transport.write(H2_PREFACE)

    def data_received(self, data: bytes) -> None:
        if self.protocol == "tls":
            self.fail(f"the server sent {len(data)} bytes to an idle TLS connection")
            return
        self.buffer += data
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            kind, flags = self.buffer[3], self.buffer[4]
            if len(self.buffer) < 9 + length:
                return
            payload = bytes(self.buffer[9 : 9 + length])
            del self.buffer[: 9 + length]
            if kind == 0x4 and not flags & 0x1:  # the server's SETTINGS: acknowledge them
                self.transport.write(H2_SETTINGS_ACK)
                if not self.opened.done():
                    self.opened.set_result(None)
            elif kind == 0x6 and not flags & 0x1:  # PING: answer it (section 6.7)
                self.transport.write(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)
            elif kind == 0x7:  # GOAWAY
                self.fail("the server sent GOAWAY")
                return

    def fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        if not self.opened.done():
            self.opened.set_result(None)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            self.fail(f"connection lost: {exc or 'closed by the server'}")

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def _connect_idle(args: argparse.Namespace) -> WSClient | IdleClient:
    """One idle connection of the kind ``args.protocol`` names."""
    if args.protocol == "ws":
        return await _connect(args.host, args.port, args.path, None, 0, 0.0, [])
    loop = asyncio.get_running_loop()
    client = IdleClient(args.protocol)
    context = None
    if args.protocol == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])
    await loop.create_connection(
        lambda: client, args.host, args.port, ssl=context, server_hostname="localhost" if context else None
    )
    return client


async def _open_idle(args: argparse.Namespace) -> WSClient | IdleClient:
    """One idle connection, once it is open (or has failed: then its ``error`` says why)."""
    client = await _connect_idle(args)
    await client.opened
    return client


async def run_idle(args: argparse.Namespace) -> dict:
    """Open ``args.connections`` idle connections, report, hold them until stdin says go."""
    loop = asyncio.get_running_loop()
    clients: list[WSClient | IdleClient] = []
    batch = 100  # handshakes in flight at once: below the servers' listen backlogs
    stalled = 0
    for first in range(0, args.connections, batch):
        count = min(batch, args.connections - first)
        tasks = [asyncio.ensure_future(_open_idle(args)) for _ in range(count)]
        done, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:  # a server that stops accepting or handshaking: say how far it got
            task.cancel()
        stalled += len(pending)
        clients.extend(task.result() for task in done if task.exception() is None)
        if pending or any(task.exception() is not None for task in done):
            break
    failed = [c.error for c in clients if c.error]
    if stalled:
        print(f"{stalled} connection(s) not open after 30 s", file=sys.stderr)
    sys.stdout.write(f"READY {len(clients) - len(failed)}\n")
    sys.stdout.flush()
    await loop.run_in_executor(None, sys.stdin.readline)
    still_open = sum(1 for c in clients if c.error is None)
    for client in clients:
        client.close()
    return {"connections": len(clients), "open_at_end": still_open, "errors": failed[:5], "error_count": len(failed)}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the chosen mode, print its JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["echo", "idle"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--window", type=int, default=4, help="messages in flight per connection")
    parser.add_argument("--size", type=int, default=32, help="payload bytes per binary message")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument(
        "--protocol", choices=["ws", "tls", "h2c"], default="ws", help="idle mode: what each connection is"
    )
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if not args.no_uvloop:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
    runner = run_echo if args.mode == "echo" else run_idle
    result = asyncio.run(runner(args))
    print(json.dumps(result))
    return 0 if not result["error_count"] else 1


if __name__ == "__main__":
    sys.exit(main())
