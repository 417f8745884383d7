"""Hypothesis over the HTTP/2 input path: any sequence of frames (valid ones,
broken ones and raw bytes), cut at any points, gives events or a connection
error, never an exception escaping the sans-IO connection; and the response
side keeps working on whatever streams survive."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.h2frames import Frames, request_headers
from twisted_asgi.config import Config
from twisted_asgi.events import Request
from twisted_asgi.http2 import HTTP2Connection

CONFIG = Config(
    limit_h2_resets=20, limit_h2_control_frames=50, limit_h2_header_list_bytes=2048, limit_concurrent_streams=5
)

stream_ids = st.sampled_from([0, 1, 2, 3, 5, 7, 2**31 - 1])


def raw(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


@st.composite
def frame(draw: st.DrawFn) -> tuple:
    """A description of one frame, built later with the connection's encoder."""
    kind = draw(
        st.sampled_from(["request", "headers", "data", "rst", "window", "settings", "ping", "priority", "cont", "raw"])
    )
    sid = draw(stream_ids)
    if kind == "request":
        return (kind, sid, draw(st.booleans()), draw(st.sampled_from(["", "5", "x", "0"])))
    if kind == "headers":
        name = draw(st.sampled_from([b"x-a", b"X-B", b":path", b"connection", b"te", b"cookie"]))
        return (kind, sid, name, draw(st.binary(max_size=8)), draw(st.booleans()), draw(st.booleans()))
    if kind == "data":
        return (kind, sid, draw(st.binary(max_size=40)), draw(st.booleans()), draw(st.integers(0, 3)))
    if kind == "rst":
        return (kind, sid, draw(st.integers(0, 15)))
    if kind == "window":
        return (kind, sid, draw(st.sampled_from([1, 1000, 2**30, 2**31 - 1])))
    if kind == "settings":
        return (kind, draw(st.sampled_from([0, 2**31 - 1, 65535, 16384, 2**24])), draw(st.booleans()))
    if kind == "ping":
        return (kind, draw(st.booleans()))
    if kind == "priority":
        return (kind, sid, draw(stream_ids))
    if kind == "cont":
        return (kind, sid, draw(st.binary(max_size=10)), draw(st.booleans()))
    return (kind, draw(st.integers(0, 0x20)), draw(st.integers(0, 255)), sid, draw(st.binary(max_size=20)))


def build(f: Frames, spec: tuple) -> bytes:
    kind = spec[0]
    if kind == "request":
        _, sid, end, length = spec
        extra = {"content_length": length} if length else {}
        return f.headers(sid or 1, request_headers(**extra), end_stream=end)
    if kind == "headers":
        _, sid, name, value, end, end_headers = spec
        return f.headers(sid or 1, [(name, value)], end_stream=end, end_headers=end_headers)
    if kind == "data":
        _, sid, data, end, pad = spec
        return f.data(sid or 1, data, end_stream=end, pad=pad)
    if kind == "rst":
        return f.rst(spec[1] or 1, spec[2])
    if kind == "window":
        return f.window_update(spec[1], spec[2])
    if kind == "settings":
        _, value, window = spec
        return f.settings(initial_window_size=value) if window else f.settings(max_frame_size=max(value, 16384))
    if kind == "ping":
        return f.ping(ack=spec[1])
    if kind == "priority":
        return f.priority(spec[1] or 1, depends_on=spec[2])
    if kind == "cont":
        return f.continuation(spec[1] or 1, spec[2], spec[3])
    _, ftype, flags, sid, payload = spec
    return raw(ftype, flags, sid, payload)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame(), max_size=25), st.lists(st.integers(1, 64), max_size=8), st.data())
def test_any_frames_any_cuts_no_exception(specs, cuts, data):
    """Frames in any order, any validity, fed in any pieces: receive_data
    returns events (or ends the connection) and never raises; answering every
    Request that came out never raises either."""
    conn = HTTP2Connection(CONFIG)
    conn.initiate()
    f = Frames()
    stream = f.preface() + b"".join(build(f, spec) for spec in specs)
    pieces, i = [], 0
    for cut in cuts:
        pieces.append(stream[i : i + cut])
        i += cut
    pieces.append(stream[i:])
    requests = []
    for piece in pieces:
        events = conn.receive_data(piece)
        requests += [e.stream_id for e in events if isinstance(e, Request)]
        conn.data_to_send()
    for stream_id in requests:
        conn.consumed(stream_id, data.draw(st.integers(0, 100)))
        conn.send_response(stream_id, 200, [(b"content-type", b"text/plain")])
        conn.send_body(stream_id, b"x" * data.draw(st.integers(0, 70000)), more=False)
        conn.data_to_send()
    conn.go_away()
    conn.data_to_send()
