"""The response-sending seam of :class:`twisted_asgi._upstream.h2.FastConnection`.

``send_response_headers`` and ``send_response_data`` stand in for h2's public
``send_headers`` and ``send_data`` on the response path, writing frame bytes
and updating h2's state themselves. Each test drives two server connections
with the same client bytes, sends the same response through h2's public calls
on one and through the seam on the other, and requires the same bytes out, the
same stream and connection state, the same windows and the same exceptions.
This is what keeps the seam honest on the newest h2 release.
"""

from __future__ import annotations

import h2.exceptions
import pytest
from h2.stream import StreamState
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.h2frames import Frames, parse_frames
from twisted_asgi.config import Config
from twisted_asgi.http2 import HTTP2Connection


def _pair(*requests: tuple[int, bool], **client_settings: int) -> tuple[HTTP2Connection, HTTP2Connection]:
    """Two server connections that received the same preface and requests
    (stream id, whether the request ended its stream)."""
    conns = []
    for _ in range(2):
        conn = HTTP2Connection(Config())
        conn.initiate()
        frames = Frames()
        data = frames.preface(**client_settings)
        for stream_id, ended in requests:
            data += frames.request(stream_id, end_stream=ended)
        conn.receive_data(data)
        conn.h2.data_to_send()  # SETTINGS, WINDOW_UPDATE, SETTINGS ACK
        conns.append(conn)
    return conns[0], conns[1]


def _state(conn: HTTP2Connection) -> tuple:
    h2conn = conn.h2
    streams = {
        sid: (
            s.state_machine.state,
            s.state_machine.headers_sent,
            s.state_machine.trailers_sent,
            s.state_machine.stream_closed_by,
            s.outbound_flow_control_window,
            s.request_method,
        )
        for sid, s in h2conn.streams.items()
    }
    return (h2conn.state_machine.state, h2conn.outbound_flow_control_window, streams)


def _both(public: HTTP2Connection, seam: HTTP2Connection, call: str, *args: object) -> None:
    """Make the same call on both; the same exception type (or none) from each."""
    errors = []
    for conn, name in ((public, "send_" + call), (seam, "send_response_" + call)):
        method = getattr(conn.h2, name)
        try:
            if call == "headers":
                stream_id, headers, end = args
                if conn is public:
                    method(stream_id, headers, end_stream=end)
                else:
                    method(stream_id, headers, end)
            else:
                stream_id, data, end = args
                if conn is public:
                    method(stream_id, data, end_stream=end)
                else:
                    method(stream_id, data, end)
        except h2.exceptions.H2Error as exc:
            errors.append(type(exc))
        else:
            errors.append(None)
    assert errors[0] == errors[1], errors


def _same(public: HTTP2Connection, seam: HTTP2Connection) -> bytes:
    out = public.h2.data_to_send()
    assert seam.h2.data_to_send() == out
    assert _state(seam) == _state(public)
    return out


HEAD = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"5")]


def test_head_then_body_ending_the_stream() -> None:
    public, seam = _pair((1, True))
    _both(public, seam, "headers", 1, HEAD, False)
    _same(public, seam)
    _both(public, seam, "data", 1, b"hello", True)
    assert _same(public, seam)
    assert seam.h2.streams[1].state_machine.state is StreamState.CLOSED


def test_head_alone_ends_the_stream() -> None:
    public, seam = _pair((1, True), (3, True))
    _both(public, seam, "headers", 3, [(b":status", b"204")], True)
    _same(public, seam)
    assert seam.h2.streams[3].closed


def test_body_in_pieces_then_an_empty_end() -> None:
    public, seam = _pair((1, True))
    _both(public, seam, "headers", 1, [(b":status", b"200")], False)
    for piece in (b"a" * 100, memoryview(b"b" * 1000), b""):
        _both(public, seam, "data", 1, piece, False)
        _same(public, seam)
    _both(public, seam, "data", 1, b"", True)
    _same(public, seam)


def test_trailers_end_the_stream() -> None:
    public, seam = _pair((1, True))
    _both(public, seam, "headers", 1, [(b":status", b"200"), (b"trailer", b"x-sum")], False)
    _both(public, seam, "data", 1, b"body", False)
    _both(public, seam, "headers", 1, [(b"x-sum", b"42")], True)
    _same(public, seam)


def test_trailers_without_end_stream_are_refused_alike() -> None:
    public, seam = _pair((1, True))
    _both(public, seam, "headers", 1, [(b":status", b"200")], False)
    _both(public, seam, "headers", 1, [(b"x-sum", b"42")], False)


def test_a_head_longer_than_a_frame_goes_on_in_continuation_frames() -> None:
    # 16 384 bytes is the smallest maximum frame size a peer may set: a head of
    # about 40 KiB takes a HEADERS frame and two CONTINUATION frames.
    public, seam = _pair((1, True))
    big = [(b":status", b"200")] + [(b"x-long-%d" % i, bytes(range(33, 127)) * 106) for i in range(4)]
    _both(public, seam, "headers", 1, big, True)
    frames = parse_frames(bytearray(_same(public, seam)))
    assert [type(f).__name__ for f in frames] == ["HeadersFrame", "ContinuationFrame", "ContinuationFrame"]
    assert frames[0].flags == {"END_STREAM"} and frames[-1].flags == {"END_HEADERS"}


def test_body_over_the_window_is_refused_alike() -> None:
    public, seam = _pair((1, True), initial_window_size=10)
    _both(public, seam, "headers", 1, [(b":status", b"200")], False)
    _both(public, seam, "data", 1, b"x" * 11, False)
    _same(public, seam)
    _both(public, seam, "data", 1, b"x" * 10, False)
    _same(public, seam)
    assert seam.h2.send_window(1) == 0


def test_body_over_the_frame_size_is_refused_alike() -> None:
    public, seam = _pair((1, True))
    _both(public, seam, "headers", 1, [(b":status", b"200")], False)
    _both(public, seam, "data", 1, b"x" * 16_385, False)
    _same(public, seam)


def test_sending_on_an_unknown_or_closed_stream_is_refused_alike() -> None:
    public, seam = _pair((1, True))
    _both(public, seam, "headers", 1, [(b":status", b"200")], True)
    _both(public, seam, "data", 1, b"more", True)  # stream closed
    _both(public, seam, "headers", 1, [(b":status", b"200")], True)
    _both(public, seam, "data", 9, b"x", True)  # never opened
    _same(public, seam)


def test_stream_still_receiving_its_body() -> None:
    # The request has not ended: the stream stays open on the client's side.
    public, seam = _pair((1, False))
    _both(public, seam, "headers", 1, [(b":status", b"200")], False)
    _both(public, seam, "data", 1, b"early answer", True)
    _same(public, seam)
    assert seam.h2.streams[1].state_machine.state is StreamState.HALF_CLOSED_LOCAL


_names = st.sampled_from([b"content-type", b"set-cookie", b"x-a", b"cache-control", b"authorization", b"etag"])
_values = st.binary(max_size=300).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b""))
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("data"), st.integers(0, 20_000)),
        # (HTTP2Connection sends no HEADERS for empty trailers; h2 fails on them.)
        st.tuples(st.just("trailers"), st.lists(st.tuples(_names, _values), min_size=1, max_size=3)),
    ),
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(
    head=st.lists(st.tuples(_names, _values), max_size=8),
    steps=_steps,
    end_with_head=st.booleans(),
    window=st.integers(0, 70_000),
)
def test_any_response_matches_h2(head: list, steps: list, end_with_head: bool, window: int) -> None:
    """Any sequence of head, bodies and trailers: same bytes, state and errors."""
    public, seam = _pair((1, True), (3, False), initial_window_size=window)
    for stream_id in (1, 3):
        _both(public, seam, "headers", stream_id, [(b":status", b"200"), *head], end_with_head)
        _same(public, seam)
        for kind, arg in steps:
            if kind == "data":
                _both(public, seam, "data", stream_id, b"d" * arg, False)
            else:
                _both(public, seam, "headers", stream_id, arg, True)
            _same(public, seam)
        _both(public, seam, "data", stream_id, b"", True)
        _same(public, seam)


@pytest.mark.parametrize("stream_id", [1])
def test_the_server_sends_through_the_seam(stream_id: int) -> None:
    """HTTP2Connection's own response path uses the seam (not h2's public calls)."""
    conn, _ = _pair((stream_id, True))
    calls: list[str] = []
    for name in ("send_headers", "send_data"):
        setattr(conn.h2, name, lambda *a, _n=name, **k: calls.append(_n))  # type: ignore[misc]
    conn.send_response(stream_id, 200, [(b"content-length", b"2")])
    conn.send_body(stream_id, b"ok", False)
    out = conn.data_to_send()
    assert calls == []
    assert out.endswith(b"ok") and out[3] == 0x1


# -- receiving: _receive_frame is h2's without its per-frame repr() --------------------


def _h2_own(conn: HTTP2Connection) -> HTTP2Connection:
    """The same connection class, receiving frames through h2's own _receive_frame
    and h2's own dispatch table (bound methods, where ours holds functions)."""
    conn.h2._receive_frame = h2.connection.H2Connection._receive_frame.__get__(conn.h2)  # type: ignore[method-assign]
    conn.h2._frame_dispatch_table = {kind: f.__get__(conn.h2) for kind, f in conn.h2._frame_dispatch_table.items()}
    return conn


def _after(tail: bytes, own: bool = False) -> tuple[list, bytes]:
    """Events and output of a connection that took two requests, answered the
    second (stream 3, which the client had ended: now closed both ways), then
    received ``tail``. (No ``date`` field: the two runs compared may fall in
    different seconds.)"""
    conn = HTTP2Connection(Config(send_date=False))
    if own:
        _h2_own(conn)
    conn.initiate()
    events = conn.receive_data(_START)
    conn.send_response(3, 200, [])
    events += conn.send_body(3, b"", False)
    events += conn.receive_data(tail)
    return [(type(e).__name__, getattr(e, "stream_id", None)) for e in events], conn.data_to_send()


_F = Frames()
_START = _F.preface() + _F.request(1, end_stream=False) + _F.request(3, end_stream=True)
# Enough new streams that h2 forgets the closed ones (HTTP2Connection has it
# sweep its stream table every 32 streams): a frame on a forgotten stream is
# judged by how that stream closed.
_MANY = b"".join(_F.request(i) for i in range(5, 5 + 2 * 40, 2))


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(_F.rst(1) + _F.data(1, b"late"), id="data-after-client-reset"),
        pytest.param(_F.data(3, b"late"), id="data-after-end-stream"),
        pytest.param(_F.request(5) + _F.data(5, b"x") + _F.data(1, b"ok"), id="streams-in-use"),
        pytest.param(_F.rst(1) + _F.request(1), id="headers-on-reset-stream: stream error"),
        pytest.param(_F.rst(1) + _MANY + _F.data(1, b"x"), id="data-on-forgotten-reset-stream"),
        pytest.param(_MANY + _F.data(3, b"x"), id="data-on-forgotten-ended-stream"),
        pytest.param(_F.rst(1) + _MANY + _F.request(1), id="headers-on-forgotten-reset-stream: stream error"),
        pytest.param(_MANY + _F.request(3), id="headers-on-forgotten-ended-stream: connection error"),
        pytest.param(_F.request(7) + _F.request(5), id="lower-id-than-a-new-stream: connection error"),
        pytest.param(_F.window_update(1, 10) + _F.priority(3), id="frames-on-open-and-closed"),
    ],
)
def test_receive_frame_matches_h2(tail: bytes) -> None:
    assert _after(tail) == _after(tail, own=True)


def test_receive_frame_builds_no_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperframe.frame import Frame

    def refuse(self: object) -> str:
        raise AssertionError("repr(frame) on the receive path")

    monkeypatch.setattr(Frame, "__repr__", refuse)
    events, _ = _after(_F.data(1, b"body", end_stream=True))
    assert ("Request", 1) in events and ("Data", 1) in events


def test_dispatch_table_is_h2s_own_as_functions() -> None:
    """Our connection's frame dispatch table is h2's own, each bound method
    replaced by its function: the same handler per frame type, and no
    reference cycle from the connection to itself. Source: issue 15, item 2."""
    import gc

    from twisted_asgi._upstream.h2 import FastConnection

    plain = object.__new__(FastConnection)
    h2.connection.H2Connection.__init__(plain, h2.config.H2Configuration(client_side=False))
    ours = HTTP2Connection(Config()).h2._frame_dispatch_table
    assert {kind: method.__func__ for kind, method in plain._frame_dispatch_table.items()} == ours
    gc.collect()
    gc.disable()
    try:
        conn = HTTP2Connection(Config())
        conn.initiate()
        conn.receive_data(_START)
        del conn
        assert gc.collect() == 0
    finally:
        gc.enable()
