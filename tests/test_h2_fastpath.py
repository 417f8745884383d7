"""The HTTP/2 receive fast path (:meth:`twisted_asgi._upstream.h2.FastConnection.receive_data`)
against h2 itself: random client frame sequences, valid and invalid, split at
random points, are fed to a connection with the fast path on and to one with it
off (every frame through h2's own ``receive_data``). Both must give the same
events, the same bytes out, the same errors and the same h2 state, at every
read. Seeded and bounded, so a failure names its seed and replays.

Two levels are compared: h2's connection alone (its events, ``data_to_send``,
exceptions and stream table), and :class:`~twisted_asgi.http2.HTTP2Connection`
over it (our events and the bytes to the client), answering each request so the
send seam runs on the streams the fast path opened."""

from __future__ import annotations

import random
import struct
from typing import Any

import hpack
import pytest
from hyperframe.frame import HeadersFrame

from tests.h2frames import PREFACE, Frames, request_headers
from twisted_asgi._upstream import h2 as upstream_h2
from twisted_asgi.config import Config
from twisted_asgi.events import Request
from twisted_asgi.hpack_codec import FieldDecoder, StaticEncoder
from twisted_asgi.http2 import HTTP2Connection

pytestmark = pytest.mark.skipif(upstream_h2.PROBLEM is not None, reason="h2's fast connection is off here")

SEEDS = range(300)


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    n = len(payload)
    return struct.pack(">HBBBL", n >> 8, n & 0xFF, kind, flags, stream_id) + payload


class Client:
    """A client that writes a random mix of frames: mostly the common ones
    (requests, bodies, window updates), and every kind of mistake."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.f = Frames()
        self.next_id = 1
        self.open: list[int] = []

    def request_block(self) -> bytes:
        rng = self.rng
        method = rng.choice(["GET", "GET", "POST", "HEAD", "CONNECT", "PUT"])
        extra: dict[str, str] = {}
        if rng.random() < 0.3:
            extra["content_length"] = rng.choice(["0", "3", "10", "x", "-1"])
        if rng.random() < 0.2:
            extra["x_pad"] = "v" * rng.randrange(1, 300)
        headers = request_headers(f"/{rng.randrange(5)}", method=method, **extra)
        if rng.random() < 0.05:
            headers.append((b":status", b"100"))  # a pseudo-header no request has
        if rng.random() < 0.05:
            headers.insert(0, (b"x-early", b"1"))  # a field before the pseudo-headers
        if rng.random() < 0.05:
            headers.append((b"connection", b"close"))
        return self.f.block(headers)

    def new_id(self) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.04 and self.next_id > 1:
            return rng.randrange(1, self.next_id, 2)  # reused or too low
        if roll < 0.07:
            return self.next_id + 1  # even: a server's id
        if roll < 0.09:
            return self.next_id | 0x80000000  # the reserved bit set
        stream_id = self.next_id
        self.next_id += 2 * rng.choice([1, 1, 1, 2])
        return stream_id

    def frame(self) -> bytes:
        rng = self.rng
        f = self.f
        roll = rng.random()
        if roll >= 0.5:
            roll = 0.4 + (roll - 0.5) * 1.2  # the rest spread over the other kinds
        some = rng.choice(self.open) if self.open else 1
        if roll < 0.40:  # (half of all frames) a request
            stream_id = self.new_id()
            end = rng.random() < 0.7
            flags = 0x4 | (0x1 if end else 0)
            if stream_id & 1 and stream_id < 0x80000000:
                self.open.append(stream_id)
            return raw_frame(0x1, flags, stream_id, self.request_block())
        if roll < 0.48:  # a header block in HEADERS and CONTINUATION frames
            stream_id = self.new_id()
            block = self.request_block()
            cut = rng.randrange(len(block) + 1)
            out = raw_frame(0x1, rng.choice([0, 1]), stream_id, block[:cut])
            if rng.random() < 0.1:
                out += f.ping()  # not allowed inside a header block
            return out + raw_frame(0x9, 0x4, stream_id, block[cut:])
        if roll < 0.52:  # HEADERS with PADDED or PRIORITY
            stream_id = self.new_id()
            frame = HeadersFrame(stream_id & 0x7FFFFFFF)
            frame.data = self.request_block()
            frame.flags.add("END_HEADERS")
            frame.flags.add("END_STREAM")
            if rng.random() < 0.5:
                frame.flags.add("PADDED")
                frame.pad_length = rng.randrange(0, 20)
            else:
                frame.flags.add("PRIORITY")
                frame.depends_on = rng.choice([0, 1, stream_id & 0x7FFFFFFF])
                frame.stream_weight = 15
            return frame.serialize()
        if roll < 0.55:  # an undecodable or oversized header block
            stream_id = self.new_id()
            payload = rng.choice([b"\xff\xff\xff\xff\xff", bytes([0x80 | 0x7F]) + b"\xff" * 4, b"\x3f\xe1\x1f"])
            return raw_frame(0x1, 0x5, stream_id, payload)
        if roll < 0.66:
            pad = rng.choice([0, 0, 0, 4])
            body = b"x" * rng.choice([0, 1, 3, 10, 100])
            return f.data(some, body, end_stream=rng.random() < 0.5, pad=pad)
        if roll < 0.68:  # DATA whose padding is longer than the frame
            return raw_frame(0x0, 0x8, some, b"\x09abc")
        if roll < 0.76:
            return f.window_update(rng.choice([0, some]), rng.choice([1, 100, 65535, 2**31 - 1]))
        if roll < 0.78:
            return raw_frame(0x8, 0, rng.choice([0, some]), struct.pack(">L", 0))  # a zero increment
        if roll < 0.82:
            return f.rst(some, rng.choice([0, 8]))
        if roll < 0.85:
            return f.priority(some, depends_on=rng.choice([0, some]))
        if roll < 0.89:
            setting = rng.choice(
                [
                    {"initial_window_size": rng.choice([0, 10, 65535, 2**31])},
                    {"max_frame_size": rng.choice([16384, 20000, 100])},
                    {"header_table_size": rng.choice([0, 100, 4096])},
                ]
            )
            return f.settings(**setting)
        if roll < 0.91:
            return f.settings(ack=True)
        if roll < 0.94:
            return f.ping()
        if roll < 0.95:
            return raw_frame(0x0, 0, some, b"y" * (2**14 + 1))  # over the frame size limit
        if roll < 0.96:
            return raw_frame(0x9, 0x4, some, b"\x82")  # CONTINUATION with no HEADERS before it
        if roll < 0.97:
            return f.unknown()
        if roll < 0.98:
            return f.goaway()
        # trailers (with END_STREAM or, wrongly, without), or HEADERS on a used id
        return raw_frame(0x1, rng.choice([0x5, 0x4]), some, self.request_block())

    def wire(self, count: int) -> bytes:
        return PREFACE + self.f.settings() + b"".join(self.frame() for _ in range(count))


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    """``data`` split at random points: sometimes whole, sometimes byte by byte."""
    roll = rng.random()
    if roll < 0.2:
        return [data]
    out = []
    i = 0
    biggest = 1 if roll < 0.25 else rng.choice([3, 9, 20, 200, 2000])
    while i < len(data):
        step = rng.randrange(1, biggest + 1)
        out.append(data[i : i + step])
        i += step
    return out


def h2_state(conn: Any) -> tuple:
    return (
        conn.state_machine.state,
        conn.highest_inbound_stream_id,
        conn.inbound_flow_control_window,
        conn.outbound_flow_control_window,
        sorted(
            (sid, s.state_machine.state, s.inbound_flow_control_window, s.outbound_flow_control_window)
            for sid, s in conn.streams.items()
        ),
    )


def new_h2(fast: bool) -> Any:
    settings = {
        upstream_h2.SettingCodes.MAX_CONCURRENT_STREAMS: 5,
        upstream_h2.SettingCodes.INITIAL_WINDOW_SIZE: 65535,
        upstream_h2.SettingCodes.MAX_FRAME_SIZE: 16384,
        upstream_h2.SettingCodes.MAX_HEADER_LIST_SIZE: 8192,
    }
    conn = upstream_h2.new_connection(settings, 4096, StaticEncoder(), FieldDecoder())
    conn.fast_frames = fast
    conn.start()
    return conn


def run_h2(fast: bool, pieces: list[bytes]) -> list:
    """What h2's connection does with each read: events, bytes, state, or the error."""
    conn = new_h2(fast)
    trace: list = [conn.data_to_send()]
    for piece in pieces:
        try:
            events = conn.receive_data(piece)
        except Exception as exc:
            trace.append(("error", type(exc), str(exc), getattr(exc, "error_code", None), conn.data_to_send()))
            break
        trace.append((repr(events), conn.data_to_send(), h2_state(conn)))
    return trace


@pytest.mark.parametrize("seed", SEEDS)
def test_h2_connection_same_both_ways(seed: int) -> None:
    rng = random.Random(seed)
    wire = Client(rng).wire(rng.randrange(1, 40))
    pieces = chunks(rng, wire)
    fast, slow = run_h2(True, pieces), run_h2(False, pieces)
    assert fast == slow


def run_core(fast: bool, pieces: list[bytes], answer: random.Random) -> list:
    """What HTTP2Connection does with each read, answering each request with a
    head and a body (in one or two parts) as it arrives."""
    conn = HTTP2Connection(Config(limit_concurrent_streams=5, send_date=False))  # type: ignore[arg-type]
    conn.h2.fast_frames = fast
    conn.initiate()
    trace: list = [conn.data_to_send()]
    for piece in pieces:
        try:
            events = conn.receive_data(piece)
        except Exception as exc:  # (a defect either way; here only the sameness is tested)
            trace.append(("error", type(exc), str(exc)))
            break
        trace.append((repr(events), conn.data_to_send()))
        for event in events:
            if type(event) is Request and not conn.closed:
                sid = event.stream_id
                conn.send_response(sid, 200, [(b"content-type", b"text/plain")])
                if answer.random() < 0.5:
                    trace.append(repr(conn.send_body(sid, b"hello", more=True)))
                trace.append(repr(conn.send_body(sid, b"world", more=False)))
                trace.append(conn.data_to_send())
        if conn.closed:
            break
    return trace


@pytest.mark.parametrize("seed", SEEDS)
def test_core_same_both_ways(seed: int) -> None:
    rng = random.Random(seed)
    wire = Client(rng).wire(rng.randrange(1, 40))
    pieces = chunks(rng, wire)
    fast = run_core(True, pieces, random.Random(seed))
    slow = run_core(False, pieces, random.Random(seed))
    assert fast == slow


def test_the_fast_path_takes_the_common_frames() -> None:
    """Not a vacuous comparison: plain requests do go the fast way (h2's frame
    reader never sees them), and a frame it does not take still works."""
    conn = new_h2(True)
    f = Frames()
    conn.receive_data(PREFACE + f.settings() + f.request(1))  # h2's state is IDLE until the first stream
    seen = []
    original = conn.incoming_buffer.add_data
    conn.incoming_buffer.add_data = lambda data: (seen.append(bytes(data)), original(data))
    events = conn.receive_data(f.request(3) + f.request(5, method="POST", end_stream=False))
    assert [type(e).__name__ for e in events] == ["RequestReceived", "StreamEnded", "RequestReceived"]
    assert seen == []
    rest = f.data(5, b"abc", end_stream=True) + f.request(7)
    events = conn.receive_data(rest)
    assert seen == [rest]  # DATA, and what follows it, to h2
    assert [type(e).__name__ for e in events] == ["DataReceived", "StreamEnded", "RequestReceived", "StreamEnded"]
    del seen[:]
    conn.receive_data(f.request(9))
    assert seen == []


def test_header_block_errors_match_h2() -> None:
    """An undecodable block is COMPRESSION_ERROR, a bomb ENHANCE_YOUR_CALM, on the fast path as on h2's."""
    bomb = hpack.Encoder().encode([(b"x-%d" % i, b"y" * 2000) for i in range(3)], huffman=False)
    for block in (b"\xff\xff\xff\xff\xff", bomb):
        results = []
        for fast in (True, False):
            conn = new_h2(fast)
            conn.receive_data(PREFACE + Frames().settings())
            conn.data_to_send()
            with pytest.raises(upstream_h2.h2.exceptions.ProtocolError) as caught:
                conn.receive_data(raw_frame(0x1, 0x5, 1, block))
            results.append((type(caught.value), caught.value.error_code, conn.data_to_send()))
        assert results[0] == results[1]
        assert results[0][1] in (0x9, 0xB)


def test_random_sequences_reach_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparisons above are not vacuous: across the seeds, many HEADERS
    frames are taken by the fast path, in both levels' runs."""
    taken = []
    original = upstream_h2.FastConnection._fast_headers

    def counting(self: Any, *args: Any) -> list:
        taken.append(args[0])
        return original(self, *args)

    monkeypatch.setattr(upstream_h2.FastConnection, "_fast_headers", counting)
    for seed in range(100):
        rng = random.Random(seed)
        pieces = chunks(rng, Client(rng).wire(rng.randrange(1, 40)))
        run_h2(True, pieces)
    assert len(taken) > 80


def _swept(own: bool) -> tuple[list[int], dict[int, Any]]:
    """Streams closed each way (our END_STREAM, our RST_STREAM, the client's),
    one half-closed and one open, then swept: by FastConnection's own walk
    (``own``) or by h2's ``_open_streams``."""
    import h2.config
    import h2.connection

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    for stream_id in (1, 3, 5, 7, 9):
        client.send_headers(stream_id, request_headers("/"), end_stream=stream_id != 9)
    conn = upstream_h2.FastConnection(upstream_h2._configuration())
    conn.initiate_connection()
    conn.receive_data(client.data_to_send())
    head = [(b":status", b"200")]
    conn.send_response_headers(1, head, True)
    conn.reset_stream(3)
    conn.send_response_headers(5, head, False)
    client.reset_stream(7)
    conn.receive_data(client.data_to_send())
    if own:
        conn._sweep_at = 0
        assert conn.open_inbound_streams == 0
    else:
        h2.connection.H2Connection._open_streams(conn, 1)
    return sorted(conn.streams), dict(conn._closed_streams)


def test_the_sweep_of_closed_streams_is_h2s():
    ours, h2s = _swept(True), _swept(False)
    assert ours == h2s
    assert ours[0] == [5, 9] and sorted(ours[1]) == [1, 3, 7]
