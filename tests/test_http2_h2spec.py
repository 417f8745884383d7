"""Frame-level conformance in the shape of h2spec's groups (generic, http2
§3-§8, hpack), as one table of cases run against the sans-IO connection.

Each case sends frames after a valid preface and names what RFC 9113 (or RFC
7541 for HPACK) requires of the server: a connection error (GOAWAY with the
code), a stream error (RST_STREAM with the code; like h2spec, a connection
error is accepted where the RFC allows either), or normal service (the next
request is answered and nothing was reset). Every connection-error case is
also checked to end the connection (no more events after it).

Like tests/test_http2_driver.py (whose ``h2_path`` fixture this module uses),
every case runs on h2's fast connection and on the public path."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, PingFrame, RstStreamFrame, SettingsFrame

from tests.h2frames import (
    COMPRESSION_ERROR,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    PROTOCOL_ERROR,
    STREAM_CLOSED,
    Frames,
    parse_frames,
    request_headers,
)
from tests.test_http2_driver import Peer, h2_path, kinds  # noqa: F401 - h2_path: a fixture, for every test
from twisted_asgi.config import Config
from twisted_asgi.http2 import HTTP2Connection

DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONT = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20


def raw(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame exactly as given: any type, flags, stream and payload."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


def block(f: Frames, path: str = "/") -> bytes:
    return f.block(request_headers(path))


def setting(code: int, value: int) -> bytes:
    return struct.pack(">HI", code, value)


def split_block(f: Frames, stream_id: int) -> bytes:
    """A request whose header block is split over HEADERS and two CONTINUATIONs."""
    data = block(f)
    return (
        raw(HEADERS, END_STREAM, stream_id, data[:2])
        + f.continuation(stream_id, data[2:4])
        + f.continuation(stream_id, data[4:], True)
    )


@dataclass
class Case:
    frames: Callable[[Frames], bytes]
    expect: str  # "conn", "stream", "ok"
    code: int = 0
    stream_id: int = 1


S1 = lambda f: f.request(1, end_stream=False)  # noqa: E731 - stream 1 open
S1_HALF = lambda f: f.request(1)  # noqa: E731 - stream 1 half-closed (remote)

CASES: dict[str, Case] = {
    # -- generic / http2 §4.1 frame format --------------------------------------------
    "4.1 unknown frame type is ignored": Case(lambda f: raw(0x77, 0, 0, b"x"), "ok"),
    "4.1 undefined flags are ignored": Case(lambda f: raw(PING, 0x16, 0, b"12345678"), "ok"),
    "4.1 reserved bit is ignored": Case(lambda f: raw(HEADERS, END_HEADERS | END_STREAM, 0x80000001, block(f)), "ok"),
    # -- §4.2 frame size -------------------------------------------------------------
    "4.2 DATA over SETTINGS_MAX_FRAME_SIZE": Case(
        lambda f: S1(f) + raw(DATA, 0, 1, b"x" * 16385), "conn", FRAME_SIZE_ERROR
    ),
    "4.2 HEADERS over SETTINGS_MAX_FRAME_SIZE": Case(
        lambda f: raw(HEADERS, END_HEADERS, 1, block(f) + b"\x00" * 16385), "conn", FRAME_SIZE_ERROR
    ),
    # -- §4.3 header compression ------------------------------------------------------
    "4.3 undecodable header block": Case(
        lambda f: raw(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff"), "conn", COMPRESSION_ERROR
    ),
    "4.3 PRIORITY inside a header block": Case(
        lambda f: raw(HEADERS, 0, 1, block(f)) + f.priority(1) + f.continuation(1, b"", True), "conn", PROTOCOL_ERROR
    ),
    # -- §5.1 stream states -----------------------------------------------------------
    "5.1 idle: DATA": Case(lambda f: f.data(1, b"x"), "conn", PROTOCOL_ERROR),
    "5.1 idle: RST_STREAM": Case(lambda f: f.rst(1), "conn", PROTOCOL_ERROR),
    "5.1 idle: WINDOW_UPDATE": Case(lambda f: f.window_update(1, 100), "conn", PROTOCOL_ERROR),
    "5.1 idle: CONTINUATION": Case(lambda f: f.continuation(1, block(f), True), "conn", PROTOCOL_ERROR),
    "5.1 half-closed (remote): DATA": Case(lambda f: S1_HALF(f) + f.data(1, b"x"), "stream", STREAM_CLOSED),
    "5.1 half-closed (remote): HEADERS": Case(
        lambda f: S1_HALF(f) + f.headers(1, [(b"x-a", b"1")]), "stream", STREAM_CLOSED
    ),
    "5.1 half-closed (remote): CONTINUATION": Case(
        lambda f: S1_HALF(f) + f.continuation(1, b"", True), "conn", PROTOCOL_ERROR
    ),
    "5.1 closed: DATA after RST_STREAM": Case(lambda f: S1(f) + f.rst(1) + f.data(1, b"x"), "stream", STREAM_CLOSED),
    "5.1.1 even stream id": Case(lambda f: f.request(2), "conn", PROTOCOL_ERROR),
    "5.1.1 stream id lower than a previous one": Case(lambda f: f.request(5) + f.request(3), "conn", PROTOCOL_ERROR),
    # -- §5.3 priority ------------------------------------------------------------------
    "5.3.1 HEADERS depending on itself": Case(
        lambda f: f.headers(1, request_headers(), depends_on=1), "stream", PROTOCOL_ERROR
    ),
    "5.3.1 PRIORITY depending on itself": Case(lambda f: S1(f) + f.priority(1, depends_on=1), "stream", PROTOCOL_ERROR),
    # -- §5.5 extending HTTP/2 ----------------------------------------------------------
    "5.5 unknown frame inside a header block": Case(
        lambda f: raw(HEADERS, 0, 1, block(f)) + raw(0x77, 0, 1, b"") + f.continuation(1, b"", True),
        "conn",
        PROTOCOL_ERROR,
    ),
    # -- §6.1 DATA --------------------------------------------------------------------
    "6.1 DATA on stream 0": Case(lambda f: raw(DATA, 0, 0, b"x"), "conn", PROTOCOL_ERROR),
    "6.1 DATA with padding longer than the frame": Case(
        lambda f: S1(f) + raw(DATA, PADDED, 1, b"\x05ab"), "conn", PROTOCOL_ERROR
    ),
    # -- §6.2 HEADERS -----------------------------------------------------------------
    "6.2 HEADERS on stream 0": Case(lambda f: raw(HEADERS, END_HEADERS, 0, block(f)), "conn", PROTOCOL_ERROR),
    "6.2 HEADERS with padding longer than the frame": Case(
        lambda f: raw(HEADERS, END_HEADERS | PADDED, 1, b"\xff" + block(f)), "conn", PROTOCOL_ERROR
    ),
    "6.2 HEADERS then HEADERS before END_HEADERS": Case(
        lambda f: raw(HEADERS, 0, 1, block(f)) + raw(HEADERS, END_HEADERS, 3, block(f)), "conn", PROTOCOL_ERROR
    ),
    # -- §6.3 PRIORITY ----------------------------------------------------------------
    "6.3 PRIORITY on stream 0": Case(lambda f: raw(PRIORITY, 0, 0, b"\x00\x00\x00\x01\x10"), "conn", PROTOCOL_ERROR),
    "6.3 PRIORITY of the wrong length": Case(
        lambda f: raw(PRIORITY, 0, 1, b"\x00\x00\x00"), "stream", FRAME_SIZE_ERROR
    ),
    "6.3 PRIORITY on an idle stream is fine": Case(lambda f: f.priority(9, depends_on=0), "ok"),
    # -- §6.4 RST_STREAM ----------------------------------------------------------------
    "6.4 RST_STREAM on stream 0": Case(lambda f: raw(RST, 0, 0, b"\x00\x00\x00\x08"), "conn", PROTOCOL_ERROR),
    "6.4 RST_STREAM of the wrong length": Case(
        lambda f: S1(f) + raw(RST, 0, 1, b"\x00\x00\x08"), "conn", FRAME_SIZE_ERROR
    ),
    # -- §6.5 SETTINGS ------------------------------------------------------------------
    "6.5 SETTINGS ACK with a payload": Case(lambda f: raw(SETTINGS, ACK, 0, setting(3, 10)), "conn", FRAME_SIZE_ERROR),
    "6.5 SETTINGS on a stream": Case(lambda f: raw(SETTINGS, 0, 1, setting(3, 10)), "conn", PROTOCOL_ERROR),
    "6.5 SETTINGS of the wrong length": Case(lambda f: raw(SETTINGS, 0, 0, b"\x00\x03\x00"), "conn", FRAME_SIZE_ERROR),
    "6.5.2 ENABLE_PUSH 2": Case(lambda f: raw(SETTINGS, 0, 0, setting(2, 2)), "conn", PROTOCOL_ERROR),
    "6.5.2 INITIAL_WINDOW_SIZE over 2^31-1": Case(
        lambda f: raw(SETTINGS, 0, 0, setting(4, 2**31)), "conn", FLOW_CONTROL_ERROR
    ),
    "6.5.2 MAX_FRAME_SIZE under 16384": Case(lambda f: raw(SETTINGS, 0, 0, setting(5, 16383)), "conn", PROTOCOL_ERROR),
    "6.5.2 MAX_FRAME_SIZE over 2^24-1": Case(lambda f: raw(SETTINGS, 0, 0, setting(5, 2**24)), "conn", PROTOCOL_ERROR),
    "6.5.2 unknown setting is ignored": Case(lambda f: raw(SETTINGS, 0, 0, setting(0xFF, 1)), "ok"),
    # -- §6.7 PING ------------------------------------------------------------------------
    "6.7 PING on a stream": Case(lambda f: raw(PING, 0, 1, b"12345678"), "conn", PROTOCOL_ERROR),
    "6.7 PING of the wrong length": Case(lambda f: raw(PING, 0, 0, b"1234567"), "conn", FRAME_SIZE_ERROR),
    # -- §6.8 GOAWAY ----------------------------------------------------------------------
    "6.8 GOAWAY on a stream": Case(lambda f: raw(GOAWAY, 0, 1, b"\x00" * 8), "conn", PROTOCOL_ERROR),
    # -- §6.9 WINDOW_UPDATE -----------------------------------------------------------------
    "6.9 zero increment on the connection": Case(lambda f: raw(WINDOW, 0, 0, b"\x00" * 4), "conn", PROTOCOL_ERROR),
    "6.9 zero increment on a stream": Case(lambda f: S1(f) + raw(WINDOW, 0, 1, b"\x00" * 4), "stream", PROTOCOL_ERROR),
    "6.9 WINDOW_UPDATE of the wrong length": Case(
        lambda f: raw(WINDOW, 0, 0, b"\x00\x00\x01"), "conn", FRAME_SIZE_ERROR
    ),
    "6.9.1 connection window over 2^31-1": Case(
        lambda f: f.window_update(0, 2**31 - 1) + f.window_update(0, 2**31 - 1), "conn", FLOW_CONTROL_ERROR
    ),
    "6.9.1 stream window over 2^31-1": Case(
        lambda f: S1(f) + f.window_update(1, 2**31 - 1), "stream", FLOW_CONTROL_ERROR
    ),
    "6.9.2 INITIAL_WINDOW_SIZE change overflowing a window": Case(
        lambda f: S1(f) + f.window_update(1, 2**31 - 1 - 65535) + raw(SETTINGS, 0, 0, setting(4, 65536)),
        "conn",
        FLOW_CONTROL_ERROR,
    ),
    # -- §6.10 CONTINUATION -----------------------------------------------------------------
    "6.10 several CONTINUATION frames": Case(lambda f: split_block(f, 1), "ok"),
    "6.10 CONTINUATION after END_HEADERS": Case(
        lambda f: f.request(1, end_stream=False) + f.continuation(1, b"", True), "conn", PROTOCOL_ERROR
    ),
    "6.10 CONTINUATION on another stream": Case(
        lambda f: raw(HEADERS, 0, 1, block(f)) + f.continuation(3, b"", True), "conn", PROTOCOL_ERROR
    ),
    "6.10 CONTINUATION on stream 0": Case(
        lambda f: raw(HEADERS, 0, 1, block(f)) + raw(CONT, END_HEADERS, 0), "conn", PROTOCOL_ERROR
    ),
    # -- §8 HTTP semantics ----------------------------------------------------------------
    "8.1 trailers end the request": Case(
        lambda f: S1(f) + f.data(1, b"x") + f.headers(1, [(b"x-trailer", b"1")], end_stream=True), "ok"
    ),
    "8.1 trailers without END_STREAM": Case(
        lambda f: S1(f) + f.headers(1, [(b"x-trailer", b"1")], end_stream=False), "conn", PROTOCOL_ERROR
    ),
    "8.1 pseudo-header in trailers": Case(
        lambda f: S1(f) + f.headers(1, [(b":path", b"/")], end_stream=True), "stream", PROTOCOL_ERROR
    ),
    "8.4 PUSH_PROMISE from a client": Case(
        lambda f: S1(f) + raw(PUSH, END_HEADERS, 1, b"\x00\x00\x00\x02" + block(f)), "conn", PROTOCOL_ERROR
    ),
    # -- hpack (RFC 7541) ---------------------------------------------------------------------
    "hpack 2.3.3 index beyond the table": Case(
        lambda f: raw(HEADERS, END_HEADERS, 1, b"\xff\x7f"), "conn", COMPRESSION_ERROR
    ),
    "hpack 6.1 index 0": Case(lambda f: raw(HEADERS, END_HEADERS, 1, b"\x80"), "conn", COMPRESSION_ERROR),
    "hpack 4.2 table size update over the setting": Case(
        lambda f: raw(HEADERS, END_HEADERS, 1, b"\x3f\xe2\x1f" + block(f)), "conn", COMPRESSION_ERROR
    ),
    "hpack 4.2 table size update after a field": Case(
        lambda f: raw(HEADERS, END_HEADERS, 1, block(f) + b"\x20"), "conn", COMPRESSION_ERROR
    ),
    "hpack 5.2 Huffman string with EOS": Case(
        lambda f: raw(HEADERS, END_HEADERS, 1, block(f) + b"\x40\x81\xff\x81\xff"), "conn", COMPRESSION_ERROR
    ),
    "hpack 5.2 Huffman padding over 7 bits": Case(
        lambda f: raw(HEADERS, END_HEADERS, 1, block(f) + b"\x40\x82\x1c\xff\x81\xff"), "conn", COMPRESSION_ERROR
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_h2spec_case(name):
    """One h2spec-style case: the frames give the RFC's required outcome."""
    case = CASES[name]
    peer = Peer()
    events = peer.feed(case.frames(peer.f))
    frames = peer.out()
    goaway = next((f for f in frames if isinstance(f, GoAwayFrame)), None)
    resets = {f.stream_id: f.error_code for f in frames if isinstance(f, RstStreamFrame)}
    if case.expect == "conn":
        assert goaway is not None, (name, frames, events)
        assert goaway.error_code == case.code, (name, goaway)
        assert peer.conn.closed and "ConnectionClosed" in kinds(events)
        assert peer.feed(peer.f.request(101)) == [] and peer.out() == []
        return
    if case.expect == "stream":
        if goaway is not None:  # a connection error is allowed for a stream error
            assert goaway.error_code == case.code, (name, goaway)
            return
        assert resets.get(case.stream_id) == case.code, (name, frames)
    else:
        assert goaway is None and not resets, (name, frames)
    assert "Request" in kinds(peer.feed(peer.f.request(101))), name


def test_preface_and_settings_ack():
    """generic 1: the server sends its SETTINGS first and acknowledges ours
    (RFC 9113 §3.4, §6.5.3)."""
    conn = HTTP2Connection(Config())
    conn.initiate()
    first = conn.data_to_send()
    assert first[3] == SETTINGS and first[4] == 0
    conn.receive_data(Frames().preface())
    frames = parse_frames(bytearray(conn.data_to_send()))
    assert any(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in frames)


def test_ping_is_answered_with_the_same_payload():
    """6.7: PING gets a PING ACK with the same opaque data; a PING ACK gets nothing."""
    peer = Peer()
    peer.feed(peer.f.ping(b"abcdefgh"))
    frames = peer.out()
    assert [(f.opaque_data, "ACK" in f.flags) for f in frames if isinstance(f, PingFrame)] == [(b"abcdefgh", True)]
    peer.feed(peer.f.ping(b"zzzzzzzz", ack=True))
    assert peer.out() == []


def test_invalid_preface_is_a_connection_error():
    """3.5: a connection that does not start with the preface is closed with
    a connection error."""
    conn = HTTP2Connection(Config())
    conn.initiate()
    conn.data_to_send()
    events = conn.receive_data(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + Frames().settings())
    assert "ConnectionClosed" in kinds(events) and conn.closed


def test_negative_window_sends_nothing_until_positive():
    """6.9.2: a SETTINGS_INITIAL_WINDOW_SIZE lowered below what a stream has
    used makes its window negative; the server sends no DATA on it (not even
    when a WINDOW_UPDATE leaves it at zero) until it is positive again, and
    then exactly what the window allows."""
    peer = Peer()
    peer.feed(peer.f.window_update(0, 1_000_000) + peer.f.request(1))
    peer.conn.send_response(1, 200, [])
    peer.conn.send_body(1, b"x" * 100_000, False)

    def sent() -> int:
        return sum(len(f.data) for f in peer.out() if isinstance(f, DataFrame))

    assert sent() == 65535
    peer.feed(peer.f.settings(initial_window_size=0))  # window -65535
    assert sent() == 0
    peer.feed(peer.f.window_update(1, 65535))  # window 0
    assert sent() == 0
    peer.feed(peer.f.window_update(1, 10))
    assert sent() == 10
    peer.feed(peer.f.settings(initial_window_size=100_000))  # window 100000
    frames = peer.out()
    body = [f for f in frames if isinstance(f, DataFrame)]
    assert sum(len(f.data) for f in body) == 100_000 - 65535 - 10
    assert "END_STREAM" in body[-1].flags and not any(isinstance(f, GoAwayFrame) for f in frames)
