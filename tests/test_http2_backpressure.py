"""HTTP/2 output backpressure and freeing a closed HTTP/2 connection, from outside.

A client that opens its windows wide (SETTINGS_INITIAL_WINDOW_SIZE and the
connection window), asks for large responses on many streams and reads
nothing must not make the server hold every response: each app's ``send()``
waits while the connection's output is not written, as on HTTP/1.1, and
once the client leaves every stream, task and connection object is freed by
reference counting. The served app (``app`` below) runs with the cyclic
garbage collector off, counts the bytes its ``send()`` calls got out, and
reports the HTTP/2 objects still alive. Source: issue 15, item 2 (outside
attack).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import ssl
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
from hyperframe.frame import DataFrame
from twisted.internet import ssl as twisted_ssl
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient

from tests import test_channel as shell
from tests.conftest import settle
from tests.deploy import get_json, make_certs, serving
from tests.h2frames import Frames, RawClient, parse_frames
from tests.test_http2_driver import Peer
from tests.test_http2_e2e import ssl_endpoint, tls_context
from tests.test_http2_flow import vm
from twisted_asgi.config import Config
from twisted_asgi.http2 import OUTPUT_AHEAD
from twisted_asgi.server import ASGIFactory
from twisted_asgi.tls import ReloadableTLS, ServerTLSFactory, TLSOptions

APP = "tests.test_http2_backpressure:app"
MIB = 1 << 20
#: The client's windows: as wide as HTTP/2 allows (RFC 9113 §6.9.1).
WIDE = 2**31 - 1
#: Streams per connection: the server's default limit_concurrent_streams.
STREAMS = 100
#: Connections of the chunked attack.
CHUNKED = 10
#: Body bytes: a 1 MiB body every response shares (so the app's own memory
#: stays flat), and 251 bytes more so that a stream can start at its own offset.
BLOCK = bytes(range(251)) * (MIB // 251 + 2)


@functools.lru_cache(maxsize=4096)
def piece(start: int, end: int) -> bytes:
    """``BLOCK[start:end]``, one copy shared by every stream that sends it."""
    return BLOCK[start:end]


# -- the served app (runs in the server process) ----------------------------------

#: Apps started and finished (sent all), send() calls waiting now, body bytes
#: whose send() returned, apps that met a disconnect.
_stats = {"started": 0, "finished": 0, "waiting": 0, "out": 0, "disconnected": 0}
_HTTP2_TYPES = ("HTTP2Handler", "HTTP2StreamHandler", "HTTP2Connection")


def _alive() -> dict[str, int]:
    """HTTP/2 objects still tracked (gc is off: cycles would stay here), and
    app tasks of HTTP/2 streams."""
    counts = dict.fromkeys((*_HTTP2_TYPES, "HTTPTask"), 0)
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in _HTTP2_TYPES or (name == "HTTPTask" and type(obj.carrier).__name__ == "HTTP2StreamHandler"):
            counts[name] += 1
    return counts


async def app(scope: dict, receive: Any, send: Any) -> None:
    """``/body?kib=N&chunk=C&shift=S``: N KiB of BLOCK from offset S (the shared
    block itself when S is 0 and C is N), in ``send()`` calls of C KiB;
    ``/stats``: the counters, the objects alive, whether gc is on.
    Lifespan startup turns the cyclic garbage collector off for good."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                gc.disable()
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/stats":
        body = json.dumps({**_stats, "alive": _alive(), "gc": gc.isenabled()}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    query = {k: int(v[0]) for k, v in parse_qs(scope["query_string"].decode()).items()}
    size = query.get("kib", 1024) * 1024
    chunk = query.get("chunk", size // 1024) * 1024
    shift = query.get("shift", 0)
    length = (b"content-length", b"%d" % size)
    _stats["started"] += 1
    await send({"type": "http.response.start", "status": 200, "headers": [length]})
    try:
        for start in range(0, size, chunk):
            end = min(start + chunk, size)
            _stats["waiting"] += 1
            try:
                await send(
                    {"type": "http.response.body", "body": piece(shift + start, shift + end), "more_body": end < size}
                )
            finally:
                _stats["waiting"] -= 1
            _stats["out"] += end - start
    except OSError:  # ClientDisconnected: the client left (ASGI www spec 2.4)
        _stats["disconnected"] += 1
    else:
        _stats["finished"] += 1


# -- helpers ------------------------------------------------------------------------


@pytest.fixture
def certs(tmp_path):
    return make_certs(tmp_path)


def start(certs: dict | None, *args: str) -> Any:
    """The app's server, cleartext or TLS; its ``stats_port`` serves /stats in
    cleartext HTTP/1.1 either way."""
    extra = ("-e", "tcp:port=0:interface=127.0.0.1") if certs else ()
    endpoint = ssl_endpoint(certs) if certs else "tcp:port=0:interface=127.0.0.1"
    return serving(APP, *extra, *args, endpoint=endpoint)


def stats(server: Any) -> dict:
    port = server.addresses[-1][2]
    return get_json(server.host, port, "/stats", headers={"Connection": "close"})


def greedy_client(server: Any, tls: ssl.SSLContext | None) -> RawClient:
    """A client that opens every window as wide as it may and reads nothing
    (its socket's receive buffer small, so the server's buffers fill)."""
    client = RawClient(server.host, server.port, tls=tls, settings={"initial_window_size": WIDE})
    client.send(client.f.window_update(0, WIDE - 65535))
    return client


def poll(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def rss(server: Any) -> int:
    return vm(server.proc.pid, "VmRSS")


def warm_up(server: Any, tls: ssl.SSLContext | None) -> None:
    """One read response of each kind, so the baseline has every module and
    buffer a first response brings."""
    client = RawClient(server.host, server.port, tls=tls, settings={"initial_window_size": WIDE})
    try:
        client.send(client.f.window_update(0, WIDE - 65535))
        client.send(client.f.request(1, "/body?kib=1024") + client.f.request(3, "/body?kib=256&chunk=64"))
        assert len(client.response(1)[1]) == MIB and len(client.response(3)[1]) == 256 * 1024
    finally:
        client.close()


def wait_stalled(server: Any, before: dict, total: int) -> dict:
    """Wait until ``total`` more apps have started and each waits in send()
    or has sent all, the same in two polls in a row; return the counters
    since ``before``."""
    last: list[dict] = [{}]

    def stalled() -> dict | None:
        now = stats(server)
        started = now["started"] - before["started"]
        finished = now["finished"] - before["finished"]
        steady = started == total and now["waiting"] + finished == total and now == last[0]
        last[0] = now
        return now if steady else None

    now = poll(stalled, 30, "every app to wait in send() or finish")
    return {k: now[k] - before[k] for k in ("started", "finished", "out")} | {"waiting": now["waiting"]}


def attack(server: Any, tls: ssl.SSLContext | None, target: str, connections: int = 3) -> tuple[list, dict]:
    """``connections`` greedy clients, each opening STREAMS streams on
    ``target``; returns them and the app's counters once all is stalled."""
    before = stats(server)
    clients = []
    for _ in range(connections):
        client = greedy_client(server, tls)
        client.send(b"".join(client.f.request(i, target) for i in range(1, 2 * STREAMS, 2)))
        clients.append(client)
    return clients, wait_stalled(server, before, connections * STREAMS)


def close_all(clients: list) -> None:
    for client in clients:
        client.close()


def assert_freed(server: Any, baseline: int) -> None:
    """No HTTP/2 object of the closed connections is left (gc is off in the
    server), and RSS is back within 16 MiB of ``baseline`` within 10 s."""
    last: list[dict] = [{}]

    def freed() -> bool:
        last[0] = stats(server)
        return not any(last[0]["alive"].values())

    try:
        poll(freed, 10, "every HTTP/2 object to be freed")
    finally:
        print("after close:", last[0])
    assert last[0]["gc"] is False
    poll(lambda: rss(server) - baseline < 16 * 1024, 10, "RSS back within 16 MiB of its baseline")


# -- the attacks --------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "TLS"])
def test_unread_large_responses_keep_rss_bounded_and_are_freed(certs, tls):
    """Three clients open their windows wide, each asks for a 1 MiB response
    on 100 streams and reads nothing: every app's send() waits, the server's
    RSS grows by less than 64 MiB (before the fix it held every response:
    about 300 MiB), and once the clients close, every HTTP2Handler, HTTP2StreamHandler
    and HTTPTask is freed without the cycle collector (it is off) and RSS is
    back within 16 MiB of its baseline within 10 s. Source: issue 15, item 2
    (outside attack). Measured: 2 MiB; before the fix 290 MiB (h2c) and
    410 MiB (TLS)."""
    context = tls_context(certs) if tls else None
    with start(certs if tls else None) as server:
        warm_up(server, context)
        baseline = rss(server)
        clients, counts = attack(server, context, "/body?kib=1024")
        try:
            grown = rss(server) - baseline
            assert grown < 64 * 1024, f"RSS grew by {grown} KiB ({counts})"
            assert counts["waiting"] > 3 * STREAMS * 0.8, counts
        finally:
            close_all(clients)
        assert_freed(server, baseline)


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "TLS"])
def test_unread_streamed_chunks_wait_in_send(certs, tls):
    """Ten such clients on streams that send 1 MiB in 64 KiB chunks: each
    app's send() waits once the connection's output is not written, so RSS
    grows by less than 32 MiB (measured: 8 MiB; before the fix every stream
    had its chunk copied into the server's buffers: 67 to 76 MiB), and
    everything is freed after the close. Source: issue 15, item 2 (outside
    attack)."""
    context = tls_context(certs) if tls else None
    with start(certs if tls else None) as server:
        warm_up(server, context)
        baseline = rss(server)
        clients, counts = attack(server, context, "/body?kib=1024&chunk=64", connections=CHUNKED)
        try:
            grown = rss(server) - baseline
            assert grown < 32 * 1024, f"RSS grew by {grown} KiB ({counts})"
            # Each stream has entered a send() that waits, or sent it all.
            assert counts["waiting"] + counts["finished"] == CHUNKED * STREAMS, counts
        finally:
            close_all(clients)
        assert_freed(server, baseline)


def test_a_client_that_never_reads_is_dropped_after_timeout_send():
    """The greedy client of the attacks above on one connection, with
    ``--timeout-send 1``: once its buffers are full the connection is dropped
    after the send timeout (logged once), every app waiting in send() is told
    the client left, and the connection is freed. Source: issue 15, item 2
    (outside attack)."""
    with start(None, "--timeout-send", "1") as server:
        warm_up(server, None)
        baseline = rss(server)
        clients, counts = attack(server, None, "/body?kib=1024", connections=1)
        try:
            waiting = counts["waiting"]
            assert waiting > STREAMS // 2, counts
            server.wait_for_output("read nothing for 1.0s; dropping the connection", timeout=10)
            poll(lambda: stats(server)["disconnected"] == waiting, 10, "every waiting app to be told")
        finally:
            close_all(clients)
        assert "".join(server.output).count("read nothing for") == 1
        assert_freed(server, baseline)


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "TLS"])
def test_a_client_that_starts_reading_gets_every_byte(certs, tls):
    """A greedy client stalls 40 streams (half answered in one 1 MiB send(),
    half in 64 KiB chunks, each body starting at its own offset of a
    pattern) until every app waits in send() or is done, then reads: every
    response arrives whole, with its own bytes in order, so backpressure and
    the streams' turns drop, repeat and mix nothing. Source: issue 15, item 2
    (outside attack)."""
    context = tls_context(certs) if tls else None
    with start(certs if tls else None) as server:
        before = stats(server)
        client = greedy_client(server, context)
        try:
            shifts = {stream_id: n for n, stream_id in enumerate(range(1, 81, 2))}
            for stream_id, n in shifts.items():
                chunk = "&chunk=64" if n % 2 else ""
                client.send(client.f.request(stream_id, f"/body?kib=1024&shift={n}{chunk}"))
            counts = wait_stalled(server, before, len(shifts))
            assert counts["waiting"] >= len(shifts) // 2, counts
            for stream_id, n in shifts.items():
                headers, body, _ = client.response(stream_id, timeout=30)
                assert headers[b":status"] == b"200"
                assert len(body) == MIB and body == BLOCK[n : n + MIB], f"stream {stream_id} corrupted"
        finally:
            client.close()
        after = stats(server)
        assert after["finished"] - before["finished"] == len(shifts) and after["disconnected"] == 0


# -- in process: the output bound, turns, waking, the send timeout, freeing ------------

_NAMES = ("HTTPChannel", "HTTP11Handler", "HTTP2Handler", "HTTP2StreamHandler", "HTTP2Connection", "HTTPTask")


def _twisted_version() -> tuple[int, ...]:
    import twisted

    return tuple(int(part) for part in twisted.__version__.split(".")[:2])


def alive() -> dict[str, int]:
    """How many connection objects the interpreter tracks (with the cycle
    collector off, those left in a reference cycle stay counted)."""
    counts = dict.fromkeys(_NAMES, 0)
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in counts:
            counts[name] += 1
    return counts


def test_core_frames_at_most_output_ahead_and_streams_take_turns():
    """Sans-IO: with the client's windows wide open, three 1 MiB responses are
    framed at most OUTPUT_AHEAD (plus a frame) ahead of what the shell took;
    each stream keeps its bytes queued (write_blocked: its send() waits);
    every later flush gives every unfinished stream a turn; nothing is framed
    while the output is paused; every byte goes out once, in order. Source:
    issue 15, item 2."""
    peer = Peer()
    ids = (1, 3, 5)
    peer.feed(
        peer.f.settings(initial_window_size=WIDE)
        + peer.f.window_update(0, WIDE - 65535)
        + b"".join(peer.f.request(i) for i in ids)
    )
    peer.out()
    conn = peer.conn
    for i in ids:
        conn.send_response(i, 200, [])
        conn.send_body(i, BLOCK[i : i + MIB], more=False)
        assert conn.write_blocked(i)
    bodies = {i: bytearray() for i in ids}

    def take() -> set[int]:
        raw = conn.data_to_send()
        assert len(raw) < OUTPUT_AHEAD + 2 * 16384
        served = set()
        for frame in parse_frames(bytearray(raw)):
            if isinstance(frame, DataFrame):
                bodies[frame.stream_id] += frame.data
                served.add(frame.stream_id)
        return served

    assert take() == {1}  # the first response filled the output bound alone
    conn.output_paused = True
    conn.flush()
    assert not conn.data_to_send()
    conn.output_paused = False
    while any(conn.write_blocked(i) for i in ids):
        unfinished = {i for i in ids if len(bodies[i]) < MIB}
        conn.flush()
        served = take()
        assert unfinished <= served, f"streams {unfinished - served} had no turn"
    assert {i: bytes(b) for i, b in bodies.items()} == {i: BLOCK[i : i + MIB] for i in ids}


#: How each in-process app's send() ended, by path.
ends: dict[str, str] = {}


async def _waiting_app(scope: dict, receive: Any, send: Any) -> None:
    """Sends 1 MiB in one send(); records in ``ends`` how its send() ended."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    name = scope["path"]
    try:
        await send({"type": "http.response.body", "body": BLOCK[:MIB]})
    except OSError as exc:
        ends[name] = type(exc).__name__
        ends[name + " then"] = (await receive())["type"]
    except asyncio.CancelledError:
        ends[name] = "cancelled"
        raise
    else:
        ends[name] = "sent"


def h2_connect(loop: asyncio.AbstractEventLoop, app: Any, *paths: str, **config: Any) -> tuple:
    """An in-process HTTP/2 connection over StringTransport whose transport
    has paused the server (it buffers what the client does not read), with
    a stream per path from a client whose windows are wide open."""
    ends.clear()
    proto, transport, clock, factory = shell.connect(app, loop, **config)
    f = Frames()
    proto.dataReceived(f.preface(initial_window_size=WIDE) + f.window_update(0, WIDE - 65535))
    proto.pauseProducing()
    proto.dataReceived(b"".join(f.request(2 * n + 1, path) for n, path in enumerate(paths)))
    settle(loop)
    return proto, transport, clock, factory, f


def test_a_reset_stream_wakes_its_waiting_send_and_the_transport_resumes_the_rest(loop):
    """While the transport has paused the server, both streams' send() wait
    and no body bytes are written; the client resets one: its send() raises
    ClientDisconnected and its app then gets http.disconnect; when the
    transport resumes, the other stream's 1 MiB goes out whole and its
    send() returns. Source: issue 15, item 2."""
    proto, transport, _clock, _factory, f = h2_connect(loop, _waiting_app, "/a", "/b")
    assert ends == {}
    written = len(transport.value())
    assert written < 1024  # SETTINGS, WINDOW_UPDATE: no body while paused
    proto.dataReceived(f.rst(1))
    settle(loop)
    assert ends == {"/a": "ClientDisconnected", "/a then": "http.disconnect"}
    proto.resumeProducing()
    settle(loop)
    assert ends["/b"] == "sent"
    frames = parse_frames(bytearray(transport.value()))
    assert b"".join(fr.data for fr in frames if isinstance(fr, DataFrame) and fr.stream_id == 3) == BLOCK[:MIB]


def test_send_timeout_drops_a_connection_that_never_drains(loop):
    """A transport that stays paused (the client reads nothing) for
    timeout_send: the connection is aborted, and each app waiting in send()
    gets ClientDisconnected, then http.disconnect, as on HTTP/1.1 (the
    app-close timeout bounds the rest). Source: issue 15, item 2."""
    proto, transport, clock, _factory, _f = h2_connect(loop, _waiting_app, "/a", "/b", timeout_send=5)
    clock.advance(4.9)
    assert not transport.disconnected
    clock.advance(0.2)
    assert transport.disconnected  # StringTransport: abortConnection
    settle(loop)
    assert ends == {p: "ClientDisconnected" for p in ("/a", "/b")} | {
        p + " then": "http.disconnect" for p in ("/a", "/b")
    }
    proto.connectionLost()


@pytest.mark.parametrize("ending", ["client-left", "send-timeout"])
def test_closed_connection_is_freed_by_reference_counting(loop, ending):
    """With the cycle collector off, an HTTP/2 connection with streams that
    completed, one the client reset and ones waiting in send() is closed
    (the client leaves, or timeout_send drops it): no HTTPChannel,
    HTTP2Handler, HTTP2StreamHandler, HTTP2Connection or HTTPTask of it survives, and
    a collection finds nothing. Source: issue 15, item 2."""
    gc.collect()
    gc.disable()
    try:
        before = alive()  # (what a failed test's traceback may still hold)
        proto, transport, clock, _factory, f = h2_connect(loop, _waiting_app, "/a", "/b", "/c", timeout_send=5)
        proto.dataReceived(f.rst(3))
        proto.resumeProducing()  # /a and /c complete
        proto.dataReceived(f.request(7, "/d") + f.request(9, "/e"))
        proto.pauseProducing()
        settle(loop)
        assert alive()["HTTP2StreamHandler"] >= 2
        if ending == "send-timeout":
            clock.advance(5)
            assert transport.disconnected
        # What Twisted's TCP transport does when the connection is gone.
        proto.connectionLost()
        transport.protocol = transport.producer = None
        settle(loop)
        assert ends["/d"] == ends["/e"] == "ClientDisconnected"
        del proto, transport
        settle(loop)
        assert alive() == before
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize("ending", ["close_notify", "tcp-close"])
def test_closed_tls_connection_is_freed_by_reference_counting(loop, certs, ending):
    """The same over TLS (the server's TLS protocol over an in-memory
    transport, ALPN h2, the server's own TLS context; Twisted's TLS protocol
    as the client): with the cycle collector off, a stream that completed, one
    reset and one waiting in send() while the transport is paused; the client
    leaves (with close_notify, or by closing TCP only); no connection object
    survives, and a collection finds none of them (nor, after close_notify,
    either side's TLS protocol). Source: issue 15, item 2."""
    gc.collect()
    gc.disable()
    try:
        before = alive()
        ends.clear()
        clock = shell.FakeReactor()
        factory = ASGIFactory(_waiting_app, Config(), clock)
        factory.runner._loop = loop
        factory.lifespan_state = {}
        context = ReloadableTLS(TLSOptions(str(certs["key"]), str(certs["cert"])))
        trust = twisted_ssl.Certificate.loadPEM(certs["ca"].read_bytes())
        options = twisted_ssl.optionsForClientTLS("localhost", trustRoot=trust, acceptableProtocols=[b"h2"])
        address = IPv4Address("TCP", "127.0.0.1", 1234)
        client, server, pump = connectedServerAndClient(
            lambda: ServerTLSFactory(context, factory).buildProtocol(address),
            lambda: TLSMemoryBIOFactory(options, True, Factory.forProtocol(Protocol), clock=clock).buildProtocol(
                address
            ),
            clock=clock,
        )
        pumps = [pump]

        def run() -> None:
            for _ in range(3):
                pumps[0].flush()
                settle(loop)

        f = Frames()
        client.write(f.preface(initial_window_size=WIDE) + f.window_update(0, WIDE - 65535) + f.request(1, "/a"))
        run()
        assert client.negotiatedProtocol == b"h2" and ends == {"/a": "sent"}
        server.wrappedProtocol.pauseProducing()  # the client stopped reading
        client.write(f.request(3, "/b") + f.request(5, "/c"))
        run()
        assert ends == {"/a": "sent"} and alive()["HTTP2StreamHandler"] - before["HTTP2StreamHandler"] == 2
        client.write(f.rst(3))
        run()
        assert ends["/b"] == "ClientDisconnected" and "/c" not in ends
        if ending == "close_notify":
            client.loseConnection()
        else:
            client.transport.loseConnection()
        run()
        assert ends["/c"] == "ClientDisconnected"
        # What Twisted's TCP transport does when the connection is gone.
        for io in (pump.serverIO, pump.clientIO):
            io.protocol = io.producer = None
        pumps.clear()
        del client, server, pump
        settle(loop)
        assert alive() == before
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            left = {type(obj).__name__ for obj in gc.garbage}
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        # (The client's certificate check leaves cycles of pyOpenSSL's own; a
        # TLS error on a bare TCP close leaves Twisted's Failure, whose frames
        # hold both TLS protocols, to the collector.)
        assert not left & set(_NAMES)
        if ending == "close_notify":
            # The server's TLS protocol (ours) is freed on every Twisted
            # release; the client's (Twisted's) from Twisted 26.10 on.
            assert "ServerTLS" not in left
            if _twisted_version() >= (26, 10):
                assert not left & {"BufferingTLSTransport", "TLSMemoryBIOProtocol"}
    finally:
        gc.enable()
