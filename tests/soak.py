"""A bounded soak: mixed HTTP/1.1, HTTP/2 (h2c) and WebSocket traffic with random
client aborts, plus the HTTP/2 unread-responses and WebSocket fragment attacks,
against one server, then a check that it is back where it started.

Run it long (the opt-in ``tox -e soak``, or ``python -m tests.soak --duration 180``);
``tests/test_soak.py`` runs a short round in the normal suite.

What "back where it started" means, measured on the server process:

* open file descriptors return to the count before the traffic (every aborted
  connection is closed, none leak);
* RSS ends within a bound of the baseline taken after a warm-up round;
* the log holds no traceback, no "Unhandled" and no critical line: aborts are
  the clients' doing and are not server errors;
* the server still answers a plain request, and every client that completed an
  exchange got exactly the bytes it expected (nothing mixed up between streams);
* with the cyclic garbage collector off in the server all along, no object of
  twisted-asgi's (nor any asyncio task) is alive after the traffic beyond those
  alive before it: a closed connection, on any protocol, is freed by reference
  counting and leaves nothing for the cycle collector.

The app, served as ``tests.soak:app``, echoes request bodies (HTTP) and messages
(WebSocket), and streams a body of a requested size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# -- the app ---------------------------------------------------------------------


async def app(scope: dict, receive: Any, send: Any) -> None:
    """Echo for HTTP and WebSocket; ``/stream?N`` streams N bytes in 16 KiB chunks;
    ``/leftovers`` counts the server's own objects alive (see :func:`leftovers`).

    With ``SOAK_GC_OFF=1`` in the environment the cyclic garbage collector is off
    in the server from start-up on: whatever a closed connection leaves in a
    reference cycle then stays, and ``/leftovers`` shows it."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get("SOAK_GC_OFF") == "1":
                    import gc

                    gc.collect()
                    gc.disable()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "bytes": message.get("bytes"), "text": message.get("text")})
    if scope["path"] == "/leftovers":
        body = json.dumps(leftovers()).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["path"] == "/stream":
        size = int(scope["query_string"] or b"0")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % size)]})
        sent = 0
        while sent < size:
            chunk = min(16384, size - sent)
            sent += chunk
            await send({"type": "http.response.body", "body": b"s" * chunk, "more_body": sent < size})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


# -- measuring the server ------------------------------------------------------------


def leftovers() -> dict[str, int]:
    """How many objects of each twisted-asgi class (and of asyncio tasks) are alive
    in this process, found through the garbage collector's list of containers
    without running a collection."""
    import asyncio
    import gc

    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        if kind.__module__.startswith("twisted_asgi") or kind is asyncio.Task:
            name = f"{kind.__module__}.{kind.__qualname__}"
            counts[name] = counts.get(name, 0) + 1
    return counts


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- clients -------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients did; ``wrong`` lists every exchange that got unexpected bytes."""

    done: dict[str, int] = field(default_factory=dict)
    aborted: dict[str, int] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str, aborted: bool = False) -> None:
        with self.lock:
            table = self.aborted if aborted else self.done
            table[kind] = table.get(kind, 0) + 1

    def fail(self, what: str) -> None:
        with self.lock:
            self.wrong.append(what)


def _recv_exact_response(sock: socket.socket) -> tuple[int, bytes]:
    """One Content-Length response off a keep-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        rest += chunk
    return status, rest[:length]


def http1_client(host: str, port: int, rng: random.Random, tally: Tally, stop: threading.Event) -> None:
    """Keep-alive POST echoes and streamed GETs; sometimes dropped mid-body or mid-response."""
    while not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=10) as sock:
                for _ in range(rng.randint(1, 20)):
                    body = rng.randbytes(rng.choice([0, 10, 1000, 70000]))
                    if rng.random() < 0.1:
                        # Abort: announce a body, send half, vanish (RST).
                        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: %d\r\n\r\n" % (len(body) + 10))
                        sock.sendall(body[: len(body) // 2])
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        tally.count("http1", aborted=True)
                        break
                    if rng.random() < 0.2:
                        size = rng.choice([100, 200000])
                        sock.sendall(b"GET /stream?%d HTTP/1.1\r\nHost: s\r\n\r\n" % size)
                        status, got = _recv_exact_response(sock)
                        if status != 200 or got != b"s" * size:
                            tally.fail(f"http1 stream {size}: {status} {len(got)}")
                    else:
                        sock.sendall(
                            b"POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                        )
                        status, got = _recv_exact_response(sock)
                        if status != 200 or got != body:
                            tally.fail(f"http1 echo {len(body)}: {status} {len(got)}")
                    tally.count("http1")
        except OSError as exc:
            tally.fail(f"http1 client error: {exc!r}")


def http2_client(host: str, port: int, rng: random.Random, tally: Tally, stop: threading.Event) -> None:
    """h2c prior-knowledge connections with several concurrent echo streams; some
    streams are reset, some connections are dropped with streams open."""
    import h2.config
    import h2.connection
    import h2.events

    while not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=10) as sock:
                conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
                conn.initiate_connection()
                conn.increment_flow_control_window(2**24)
                sock.sendall(conn.data_to_send())
                bodies: dict[int, bytes] = {}
                got: dict[int, bytes] = {}
                ended: set[int] = set()
                abort = rng.random() < 0.15
                for _ in range(rng.randint(1, 8)):
                    sid = conn.get_next_available_stream_id()
                    body = rng.randbytes(rng.choice([0, 100, 5000]))  # 8 x 5000 fits the initial windows
                    conn.send_headers(
                        sid,
                        [(":method", "POST"), (":path", "/echo"), (":scheme", "http"), (":authority", "s")],
                        end_stream=not body,
                    )
                    if body:
                        conn.send_data(sid, body, end_stream=True)
                    bodies[sid] = body
                    got[sid] = b""
                if rng.random() < 0.2:
                    victim = rng.choice(list(bodies))
                    conn.reset_stream(victim)
                    bodies.pop(victim)
                    tally.count("http2-stream", aborted=True)
                sock.sendall(conn.data_to_send())
                if abort:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    tally.count("http2", aborted=True)
                    continue
                while not set(bodies) <= ended:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("h2 connection closed early")
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.DataReceived):
                            if event.stream_id in got:
                                got[event.stream_id] += event.data
                            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                            ended.add(event.stream_id)
                    sock.sendall(conn.data_to_send())
                for sid, body in bodies.items():
                    if got[sid] != body:
                        tally.fail(f"http2 stream {sid}: sent {len(body)} got {len(got[sid])}")
                    tally.count("http2-stream")
                conn.close_connection()
                sock.sendall(conn.data_to_send())
                tally.count("http2")
        except OSError as exc:
            tally.fail(f"http2 client error: {exc!r}")


def websocket_client(host: str, port: int, rng: random.Random, tally: Tally, stop: threading.Event) -> None:
    """Echo text and binary messages; some connections are dropped without a close frame."""
    from websockets.sync.client import connect

    while not stop.is_set():
        try:
            with connect(f"ws://{host}:{port}/ws", open_timeout=10, close_timeout=5, max_size=None) as ws:
                for _ in range(rng.randint(1, 30)):
                    if rng.random() < 0.5:
                        message: str | bytes = "t" * rng.choice([1, 100, 5000])
                    else:
                        message = rng.randbytes(rng.choice([1, 100, 60000]))
                    ws.send(message)
                    if ws.recv(10) != message:
                        tally.fail("websocket echo mismatch")
                    tally.count("websocket-message")
                if rng.random() < 0.15:
                    ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    ws.socket.close()
                    tally.count("websocket", aborted=True)
                    continue
            tally.count("websocket")
        except OSError as exc:
            tally.fail(f"websocket client error: {exc!r}")
        except Exception as exc:  # websockets' own errors (ConnectionClosed on our own abort excluded above)
            tally.fail(f"websocket client error: {exc!r}")


def http2_unread_client(host: str, port: int, rng: random.Random, tally: Tally, stop: threading.Event) -> None:
    """The HTTP/2 unread-responses attack (issue 15, item 2): open wide windows,
    ask for large responses on many streams, read nothing, then vanish (RST)."""
    import h2.config
    import h2.connection
    import h2.settings

    while not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=10) as sock:
                conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
                conn.local_settings = h2.settings.Settings(
                    client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1}
                )
                conn.initiate_connection()
                conn.increment_flow_control_window(2**31 - 1 - 65535)
                for _ in range(rng.randint(10, 40)):
                    sid = conn.get_next_available_stream_id()
                    conn.send_headers(
                        sid,
                        [(":method", "GET"), (":path", "/stream?1048576"), (":scheme", "http"), (":authority", "s")],
                        end_stream=True,
                    )
                sock.sendall(conn.data_to_send())
                stop.wait(rng.uniform(0.2, 1.0))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                tally.count("http2-unread", aborted=True)
        except OSError as exc:
            tally.fail(f"http2 unread client error: {exc!r}")


def websocket_fragment_client(host: str, port: int, rng: random.Random, tally: Tally, stop: threading.Event) -> None:
    """The WebSocket fragment attacks (issue 15, item 3): an unfinished frame
    followed by empty continuations until the server closes (1009), or a message
    in 1-byte fragments that is then abandoned (RST)."""
    from tests.ws_apps import RawClient, client_frame

    empty = b"\x00\x80\x00\x00\x00\x00"  # masked, empty, non-final continuation
    while not stop.is_set():
        try:
            client = RawClient(host, port, path="/ws")
            try:
                if not client.head.startswith(b"HTTP/1.1 101"):
                    tally.fail(f"websocket fragment handshake: {client.head[:40]!r}")
                    continue
                client.send(client_frame(0x2, b"x", fin=False))
                if rng.random() < 0.5:
                    try:
                        for _ in range(200):
                            client.send(empty * 1000)
                    except OSError:
                        pass  # the server closed on us, as it should
                    code, _reason = client.read_close()
                    if code != 1009:
                        tally.fail(f"websocket empty-continuation flood closed with {code}")
                    tally.count("websocket-fragments")
                else:
                    client.send(b"".join(client_frame(0x0, b"y", fin=False) for _ in range(rng.randint(10, 500))))
                    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    tally.count("websocket-fragments", aborted=True)
            finally:
                client.close()
        except (OSError, AssertionError) as exc:
            tally.fail(f"websocket fragment client error: {exc!r}")


def traffic(host: str, port: int, seconds: float, seed: int, tally: Tally) -> None:
    """Run every kind of client for ``seconds``, two of each (one of each attack), in threads."""
    stop = threading.Event()
    threads = []
    for n, client in enumerate(
        [
            http1_client,
            http1_client,
            http2_client,
            http2_client,
            websocket_client,
            websocket_client,
            http2_unread_client,
            websocket_fragment_client,
        ]
    ):
        rng = random.Random(seed * 100 + n)
        thread = threading.Thread(target=client, args=(host, port, rng, tally, stop), daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(30)
        if thread.is_alive():
            tally.fail(f"{thread.name} did not stop")


@dataclass
class SoakResult:
    tally: Tally
    baseline_rss: int
    end_rss: int
    baseline_fds: int
    end_fds: int
    log: str
    #: ``/leftovers`` after the warm-up and after the traffic (the cycle collector off).
    baseline_objects: dict[str, int] = field(default_factory=dict)
    end_objects: dict[str, int] = field(default_factory=dict)


def soak(duration: float, seed: int = 1, warmup: float = 3.0, server_args: tuple[str, ...] = ()) -> SoakResult:
    """Start a server, warm it up, run the mixed traffic for ``duration`` s, measure."""
    from tests.serving import recv_response, start_server

    server = start_server("tests.soak:app", "--graceful-timeout", "5", *server_args, env={"SOAK_GC_OFF": "1"})
    try:
        warm = Tally()
        traffic(server.host, server.port, warmup, seed + 1000, warm)
        baseline_fds = _settled_fds(server.proc.pid, None)
        baseline_rss = rss_kib(server.proc.pid)
        baseline_objects = _leftovers(server)
        tally = Tally()
        traffic(server.host, server.port, duration, seed, tally)
        end_fds = _settled_fds(server.proc.pid, baseline_fds)
        end_rss = rss_kib(server.proc.pid)
        end_objects = _leftovers(server)
        with server.connect() as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: 2\r\n\r\nok")
            status, _headers, body = recv_response(sock)
            if (status, body) != (b"HTTP/1.1 200 OK", b"ok"):
                tally.fail(f"plain request after the soak: {status!r} {body!r}")
        tally.wrong.extend(f"warm-up: {w}" for w in warm.wrong)
    finally:
        server.stop()
    return SoakResult(
        tally, baseline_rss, end_rss, baseline_fds, end_fds, server.read_output(), baseline_objects, end_objects
    )


def _leftovers(server: Any) -> dict[str, int]:
    """The server's ``/leftovers`` counts, asked on a connection of its own."""
    from tests.serving import recv_response

    with server.connect() as sock:
        sock.sendall(b"GET /leftovers HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        _status, _headers, body = recv_response(sock)
    return json.loads(body)


def _settled_fds(pid: int, target: int | None, timeout: float = 20.0) -> int:
    """The server's fd count once its connections closed: wait until it reaches
    ``target`` (or stops changing, for the baseline), within ``timeout``."""
    deadline = time.monotonic() + timeout
    last = open_fds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = open_fds(pid)
        if (target is not None and now <= target) or (target is None and now == last):
            return now
        last = now
    return last


#: Log text that must never appear after a soak.
FORBIDDEN_LOG = ("Traceback", "Unhandled", "CRITICAL", "critical", "Exception in ASGI application")


def problems(result: SoakResult, rss_slack_kib: int) -> list[str]:
    """Everything wrong with a soak's result (empty when it passed)."""
    out = list(result.tally.wrong)
    if result.end_fds > result.baseline_fds:
        out.append(f"file descriptors: {result.baseline_fds} before, {result.end_fds} after")
    if result.end_rss > result.baseline_rss + rss_slack_kib:
        out.append(f"RSS: {result.baseline_rss} KiB before, {result.end_rss} KiB after (slack {rss_slack_kib})")
    for needle in FORBIDDEN_LOG:
        if needle in result.log:
            at = result.log.index(needle)
            out.append(f"log has {needle!r}: ...{result.log[max(0, at - 300) : at + 700]}")
    for kind in ("http1", "http2", "http2-stream", "websocket-message", "websocket-fragments"):
        if not result.tally.done.get(kind):
            out.append(f"no {kind} exchange completed")
    if not result.tally.aborted.get("http2-unread"):
        out.append("no HTTP/2 unread-responses attack ran")
    # A closed connection leaves nothing for the cycle collector, on any protocol:
    # with the collector off, nothing of ours outlives the traffic.
    grown = {
        name: (result.baseline_objects.get(name, 0), count)
        for name, count in result.end_objects.items()
        if count > result.baseline_objects.get(name, 0)
    }
    if grown:
        out.append(f"objects left alive after their connections closed (before, after): {grown}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of traffic (default 180)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rss-slack-mib", type=float, default=16.0, help="allowed RSS growth (default 16 MiB)")
    parser.add_argument("--loop", default="asyncio", help="the server's --loop (asyncio, uvloop)")
    args = parser.parse_args(argv)
    result = soak(args.duration, args.seed, server_args=("--loop", args.loop))
    print(f"done: {result.tally.done}")
    print(f"aborted: {result.tally.aborted}")
    print(f"RSS {result.baseline_rss} -> {result.end_rss} KiB; fds {result.baseline_fds} -> {result.end_fds}")
    found = problems(result, int(args.rss_slack_mib * 1024))
    for line in found:
        print("PROBLEM:", line)
    print("soak: FAILED" if found else "soak: passed")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
