"""Sans-IO tests of :class:`twisted_asgi.http2.HTTP2Connection`: frames built
by hand (``tests.h2frames``) go in, events and frames come out, without a
socket, a reactor or an app. RFC 9113 sections are named per test.

Each test runs twice: on h2's fast connection and on the public path
(:class:`twisted_asgi._upstream.h2.PublicConnection`, what runs where an h2
release lacks a private name the fast one needs). Every protection holds on
both; where the public path answers differently (a connection error where RFC
9113 §5.4.1 allows one in place of a stream error), the test says so."""

from __future__ import annotations

import hpack
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame

from tests.h2frames import (
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    Frames,
    parse_frames,
    request_headers,
)
from twisted_asgi.config import Config
from twisted_asgi.events import Data, EndOfMessage, Request, StreamReset
from twisted_asgi.http2 import ConnectionClosed, HTTP2Connection, StreamComplete, WriteReady


@pytest.fixture(autouse=True, params=["fast", "public"])
def h2_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which h2 connection the test's HTTP2Connection runs on."""
    from twisted_asgi._upstream import h2 as upstream_h2

    if request.param == "public":
        monkeypatch.setattr(upstream_h2, "PROBLEM", "the public path, under test")
    return str(request.param)


def public_path() -> bool:
    from twisted_asgi._upstream import h2 as upstream_h2

    return upstream_h2.PROBLEM is not None


class Peer:
    """A server connection and the client frames fed to it (the client's
    preface, and its ACK of our SETTINGS, which the public path applies then)."""

    def __init__(self, **config: object) -> None:
        self.conn = HTTP2Connection(Config(**config))  # type: ignore[arg-type]
        self.conn.initiate()
        self.f = Frames()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 2**20
        self.events = self.feed(self.f.preface() + self.f.settings(ack=True))
        self.out()  # the server's SETTINGS and WINDOW_UPDATE

    def feed(self, data: bytes, step: int = 0) -> list:
        """Feed ``data`` whole, or ``step`` bytes at a time."""
        if not step:
            return self.conn.receive_data(data)
        events: list = []
        for i in range(0, len(data), step):
            events += self.conn.receive_data(data[i : i + step])
        return events

    def out(self) -> list:
        frames = parse_frames(bytearray(self.conn.data_to_send()))
        for frame in frames:
            if isinstance(frame, HeadersFrame):
                frame.fields = self.decoder.decode(frame.data, raw=True)  # type: ignore[attr-defined]
        return frames


def kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


def resets(frames: list) -> dict[int, int]:
    return {f.stream_id: f.error_code for f in frames if isinstance(f, RstStreamFrame)}


def first_resets(frames: list) -> dict[int, int]:
    """The first RST_STREAM's code per stream (on the public path h2 answers
    the DATA frame that broke a stream we reset with its own STREAM_CLOSED)."""
    codes: dict[int, int] = {}
    for f in frames:
        if isinstance(f, RstStreamFrame):
            codes.setdefault(f.stream_id, f.error_code)
    return codes


def goaway(frames: list) -> GoAwayFrame | None:
    return next((f for f in frames if isinstance(f, GoAwayFrame)), None)


@pytest.mark.parametrize("step", [0, 1, 7])
def test_request_maps_to_one_event_whole_or_byte_by_byte(step):
    """A HEADERS frame gives one Request: pseudo-headers split into method, path
    and query, ``:authority`` becomes the first ``host`` (ASGI www spec), cookie
    crumbs are joined with "; " (RFC 9113 §8.2.3), whatever the read sizes."""
    peer = Peer()
    headers = request_headers("/a%20b/c?x=1&y", method="POST", authority="example.com:8443")
    headers += [(b"host", b"other"), (b"cookie", b"a=1"), (b"x-one", b"1"), (b"cookie", b"b=2")]
    events = peer.feed(peer.f.headers(1, headers, end_stream=True), step)
    assert kinds(events) == ["Request", "EndOfMessage"]
    request = events[0]
    assert (request.method, request.path, request.query, request.http_version) == (b"POST", b"/a%20b/c", b"x=1&y", "2")
    assert request.headers == [(b"host", b"example.com:8443"), (b"cookie", b"a=1; b=2"), (b"x-one", b"1")]
    assert request.has_body is False


def test_body_is_acknowledged_only_when_consumed():
    """Received DATA opens the windows again only when the app took it (RFC 9113
    §6.9): no WINDOW_UPDATE for unread bytes, one after consumed()."""
    peer = Peer(limit_h2_stream_window_bytes=65535)
    peer.feed(peer.f.request(1, end_stream=False))
    events = peer.feed(peer.f.data(1, b"x" * 16384) + peer.f.data(1, b"y" * 16384) + peer.f.data(1, b"z" * 16384))
    assert [len(e.data) for e in events if isinstance(e, Data)] == [16384] * 3
    assert not [f for f in peer.out() if isinstance(f, WindowUpdateFrame)]
    peer.conn.consumed(1, 3 * 16384)
    updates = {f.stream_id: f.window_increment for f in peer.out() if isinstance(f, WindowUpdateFrame)}
    assert updates.get(1) == 3 * 16384


def test_connection_window_covers_every_stream():
    """The connection window is opened to one stream window per allowed
    stream, so one unread stream never stalls another (RFC 9113 §6.9)."""
    conn = HTTP2Connection(Config(limit_concurrent_streams=10, limit_h2_stream_window_bytes=100_000))
    conn.initiate()
    frames = parse_frames(bytearray(conn.data_to_send()))
    update = next(f for f in frames if isinstance(f, WindowUpdateFrame))
    assert update.stream_id == 0 and update.window_increment + 65535 == 1_000_000


def test_send_waits_for_the_stream_window():
    """A response larger than the client's stream window sends what the window
    allows and holds the rest (no WriteReady) until WINDOW_UPDATE."""
    peer = Peer()
    peer.feed(peer.f.settings(initial_window_size=1000) + peer.f.request(1))
    peer.out()
    peer.conn.send_response(1, 200, [])
    events = peer.conn.send_body(1, b"a" * 3000, more=False)
    assert "WriteReady" not in kinds(events) and peer.conn.write_blocked(1)
    assert sum(len(f.data) for f in peer.out() if isinstance(f, DataFrame)) == 1000
    events = peer.feed(peer.f.window_update(1, 5000))
    assert kinds(events) == ["WriteReady", "StreamComplete"]
    data = [f for f in peer.out() if isinstance(f, DataFrame)]
    assert sum(len(f.data) for f in data) == 2000 and "END_STREAM" in data[-1].flags


def test_negative_window_after_settings_change():
    """A SETTINGS change can make a stream's window negative (RFC 9113
    §6.9.2): nothing is sent until WINDOW_UPDATEs make it positive again."""
    peer = Peer()
    peer.feed(peer.f.window_update(0, 1_000_000) + peer.f.request(1))
    peer.conn.send_response(1, 200, [])
    peer.conn.send_body(1, b"a" * 70000, more=False)
    sent = sum(len(f.data) for f in peer.out() if isinstance(f, DataFrame))
    assert sent == 65535
    peer.feed(peer.f.settings(initial_window_size=65535 - 1000))  # window now -1000
    peer.feed(peer.f.window_update(1, 500))  # -500: still nothing
    assert not [f for f in peer.out() if isinstance(f, DataFrame)]
    events = peer.feed(peer.f.window_update(1, 10000))
    data = [f for f in peer.out() if isinstance(f, DataFrame)]
    assert sum(len(f.data) for f in data) == 70000 - 65535 and "StreamComplete" in kinds(events)


def test_trailers_end_the_stream():
    """Response trailers go out as a final HEADERS frame with END_STREAM,
    after the body (RFC 9113 §8.1; ASGI http.response.trailers)."""
    peer = Peer()
    peer.feed(peer.f.request(1))
    peer.conn.send_response(1, 200, [(b"content-type", b"application/grpc")])
    peer.conn.send_body(1, b"payload", more=False, trailers=True)
    events = peer.conn.send_trailers(1, [(b"grpc-status", b"0")])
    assert "StreamComplete" in kinds(events)
    frames = peer.out()
    assert [type(f).__name__ for f in frames] == ["HeadersFrame", "DataFrame", "HeadersFrame"]
    assert "END_STREAM" not in frames[1].flags and "END_STREAM" in frames[2].flags
    assert frames[2].fields == [(b"grpc-status", b"0")]


def test_client_reset_gives_stream_reset():
    """RST_STREAM from the client is a StreamReset for the app (http.disconnect)."""
    peer = Peer()
    peer.feed(peer.f.request(1, end_stream=False))
    events = peer.feed(peer.f.rst(1))
    assert kinds(events) == ["StreamReset"]


MALFORMED = {
    "uppercase name": request_headers() + [(b"X-Upper", b"1")],
    "connection": request_headers() + [(b"connection", b"keep-alive")],
    "keep-alive": request_headers() + [(b"keep-alive", b"5")],
    "transfer-encoding": request_headers() + [(b"transfer-encoding", b"chunked")],
    "upgrade": request_headers() + [(b"upgrade", b"h2c")],
    "te not trailers": request_headers() + [(b"te", b"gzip")],
    "CR in value": request_headers() + [(b"x-a", b"a\rb")],
    "LF in value": request_headers() + [(b"x-a", b"a\nb")],
    "NUL in value": request_headers() + [(b"x-a", b"a\x00b")],
    "leading space": request_headers() + [(b"x-a", b" a")],
    "space in name": request_headers() + [(b"x a", b"1")],
    "missing :path": [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a")],
    "missing :method": [(b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")],
    "empty :path": [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"")],
    "relative :path": [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"a/b")],
    "unknown pseudo": request_headers() + [(b":status", b"200")],
    "pseudo after field": [(b":method", b"GET"), (b"x-a", b"1"), (b":scheme", b"http"), (b":path", b"/")],
    "duplicate pseudo": request_headers() + [(b":path", b"/again")],
    "CONNECT with path": [(b":method", b"CONNECT"), (b":authority", b"a:443"), (b":path", b"/")],
    "bad content-length": request_headers() + [(b"content-length", b"1x")],
    "two content-lengths": request_headers() + [(b"content-length", b"1"), (b"content-length", b"2")],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_resets_only_its_stream(case):
    """A malformed request (RFC 9113 §8.1.1, §8.2, §8.3) is a stream error:
    RST_STREAM PROTOCOL_ERROR, no Request event, and the next stream on the
    same connection is served."""
    peer = Peer()
    events = peer.feed(peer.f.headers(1, MALFORMED[case], end_stream=False))
    assert "Request" not in kinds(events)
    frames = peer.out()
    if public_path() and "content-length" in case and goaway(frames) is not None:
        # h2 checks content-length values itself there (h2 4.4 both of these,
        # 4.2 only the first): a connection error, as RFC 9113 §5.4.1 allows.
        assert goaway(frames).error_code == PROTOCOL_ERROR and "ConnectionClosed" in kinds(events)  # type: ignore[union-attr]
        return
    assert resets(frames) == {1: PROTOCOL_ERROR} and goaway(frames) is None
    assert kinds(peer.feed(peer.f.request(3))) == ["Request", "EndOfMessage"]


@pytest.mark.parametrize("body", [b"abc", b"abcdefg"])
def test_content_length_mismatch_resets_the_stream(body):
    """DATA that does not add up to content-length is malformed (RFC 9113
    §8.1.1): a stream error, never the end of the connection."""
    peer = Peer()
    peer.feed(peer.f.request(1, end_stream=False, content_length="5"))
    events = peer.feed(peer.f.data(1, body, end_stream=True))
    assert "EndOfMessage" not in kinds(events) and "StreamReset" in kinds(events)
    frames = peer.out()
    assert first_resets(frames) == {1: PROTOCOL_ERROR} and goaway(frames) is None
    assert kinds(peer.feed(peer.f.request(3))) == ["Request", "EndOfMessage"]


@pytest.mark.parametrize("step", [0, 1, 7])
@pytest.mark.parametrize("pad", [0, 3])
def test_content_length_is_checked_however_the_frames_are_split(step, pad):
    """A body that matches its content-length is served, one that does not is
    a stream error, whatever the reads cut (on the public path each DATA
    frame's size, padding taken off, is checked before h2 reads it)."""
    peer = Peer()
    f = peer.f
    good = f.request(1, end_stream=False, content_length="5") + f.data(1, b"abc", pad=pad)
    good += f.data(1, b"de", end_stream=True, pad=pad)
    events = peer.feed(good, step)
    assert [e.data for e in events if isinstance(e, Data)] == [b"abc", b"de"] and EndOfMessage(1) in events
    long = f.request(3, end_stream=False, content_length="4") + f.data(3, b"abc", pad=pad) + f.data(3, b"de", pad=pad)
    short = f.request(5, end_stream=False, content_length="4") + f.data(5, b"abc", end_stream=True, pad=pad)
    events = peer.feed(long + short, step)
    frames = peer.out()
    assert first_resets(frames) == {3: PROTOCOL_ERROR, 5: PROTOCOL_ERROR} and goaway(frames) is None
    assert kinds(events).count("MalformedStream") == 2
    assert kinds(peer.feed(f.request(7), step)) == ["Request", "EndOfMessage"]


@pytest.mark.parametrize("step", [0, 1, 5])
def test_self_dependency_is_a_stream_error_however_the_frames_are_split(step):
    """HEADERS (padded, with a CONTINUATION) and PRIORITY that make a stream
    depend on itself, fed in pieces: stream errors, and the connection goes on."""
    peer = Peer()
    f = peer.f
    block = f.block(request_headers())
    # HEADERS: PADDED | PRIORITY, pad length 2, dependency 1 (exclusive), weight 10.
    payload = b"\x02" + (0x80000001).to_bytes(4, "big") + b"\x0a" + block[:3] + b"\x00\x00"
    headers = len(payload).to_bytes(3, "big") + bytes([0x1, 0x8 | 0x20]) + (1).to_bytes(4, "big") + payload
    data = headers + f.continuation(1, block[3:], end_headers=True)
    data += f.request(3, end_stream=False) + f.priority(3, depends_on=3) + f.request(5)
    events = peer.feed(data, step)
    assert [e.stream_id for e in events if isinstance(e, Request)] in ([5], [3, 5])
    frames = peer.out()
    assert first_resets(frames) == {1: PROTOCOL_ERROR, 3: PROTOCOL_ERROR} and goaway(frames) is None
    assert kinds(peer.feed(f.request(7), step)) == ["Request", "EndOfMessage"]


def test_content_length_with_end_stream_headers_is_malformed():
    """content-length 5 on a HEADERS frame that ends the stream: no body can
    follow, so the request is malformed."""
    peer = Peer()
    peer.feed(peer.f.request(1, end_stream=True, content_length="5"))
    assert resets(peer.out()) == {1: PROTOCOL_ERROR}


def test_streams_beyond_the_limit_are_refused():
    """A stream over SETTINGS_MAX_CONCURRENT_STREAMS is refused with
    REFUSED_STREAM (RFC 9113 §5.1.2, §8.7), and the connection goes on."""
    peer = Peer(limit_concurrent_streams=2)
    events = peer.feed(peer.f.request(1, end_stream=False) + peer.f.request(3, end_stream=False) + peer.f.request(5))
    if public_path():
        # h2 refuses it itself there: a connection error (RFC 9113 §5.4.1).
        frame = goaway(peer.out())
        assert frame is not None and frame.error_code == PROTOCOL_ERROR and "ConnectionClosed" in kinds(events)
        return
    assert [e.stream_id for e in events if isinstance(e, Request)] == [1, 3]
    frames = peer.out()
    assert resets(frames) == {5: REFUSED_STREAM} and goaway(frames) is None
    peer.feed(peer.f.rst(1))
    assert [e.stream_id for e in peer.feed(peer.f.request(7)) if isinstance(e, Request)] == [7]


def test_self_dependent_stream_is_a_stream_error():
    """HEADERS or PRIORITY making a stream depend on itself is a stream error
    PROTOCOL_ERROR (RFC 9113 §5.3.1); other streams go on."""
    peer = Peer()
    events = peer.feed(peer.f.headers(1, request_headers(), depends_on=1, stream_weight=10))
    assert "Request" not in kinds(events)
    peer.feed(peer.f.request(3, end_stream=False))
    events = peer.feed(peer.f.priority(3, depends_on=3))
    assert kinds(events) == ["StreamReset"]
    frames = peer.out()
    assert resets(frames) == {1: PROTOCOL_ERROR, 3: PROTOCOL_ERROR} and goaway(frames) is None
    assert kinds(peer.feed(peer.f.request(5))) == ["Request", "EndOfMessage"]


def test_header_list_over_the_limit_gets_431():
    """A header list over SETTINGS_MAX_HEADER_LIST_SIZE but under twice it is
    answered 431 on its stream without the app."""
    peer = Peer(limit_h2_header_list_bytes=4096)
    events = peer.feed(peer.f.headers(1, request_headers() + [(b"x-big", b"a" * 6000)]))
    assert "Request" not in kinds(events)
    if public_path():
        # h2's decoder stops at the advertised limit there: the connection ends.
        assert kinds(events) == ["LimitHit", "ConnectionClosed"] and events[0].name == "limit_h2_header_list_bytes"
        frame = goaway(peer.out())
        assert frame is not None and frame.error_code == ENHANCE_YOUR_CALM
        return
    headers = next(f for f in peer.out() if isinstance(f, HeadersFrame))
    assert dict(headers.fields)[b":status"] == b"431"


def test_hpack_bomb_ends_the_connection():
    """An HPACK bomb (a big field inserted once, referenced many times: tiny
    on the wire, huge decoded) ends the connection at twice the header-list
    limit before the list is built."""
    peer = Peer(limit_h2_header_list_bytes=4096)
    peer.feed(peer.f.headers(1, request_headers() + [(b"x-bomb", b"a" * 3000)]))
    peer.out()
    # 30 kB decoded: under h2's own 64 KiB default, over twice our 4 KiB limit.
    block = peer.f.headers(3, request_headers() + [(b"x-bomb", b"a" * 3000)] * 10)
    assert len(block) < 100  # the bomb: small compressed
    events = peer.feed(block)
    # The limit is named for the metrics, then the connection ends.
    assert kinds(events) == ["LimitHit", "ConnectionClosed"] and events[0].name == "limit_h2_header_list_bytes"
    frame = goaway(peer.out())
    assert frame is not None and frame.error_code in (ENHANCE_YOUR_CALM, 0x9)


@pytest.mark.parametrize("step", [0, 5])
def test_continuation_flood_ends_the_connection(step):
    """HEADERS without END_HEADERS followed by endless CONTINUATION frames
    (CVE-2024-27316) ends the connection with ENHANCE_YOUR_CALM once the
    block passes twice the header-list limit, before h2 buffers more."""
    peer = Peer(limit_h2_header_list_bytes=4096)
    flood = peer.f.headers(1, request_headers(), end_headers=False)
    flood += b"".join(peer.f.continuation(1, b"\x00" * 1000) for _ in range(20))
    events = peer.feed(flood, step)
    assert kinds(events) == ["LimitHit", "ConnectionClosed"] and events[0].name == "limit_h2_header_list_bytes"
    frame = goaway(peer.out())
    assert frame is not None and frame.error_code == ENHANCE_YOUR_CALM


FLOODS = {
    "PING": lambda f: f.ping(),
    "SETTINGS": lambda f: f.settings(),
    "PRIORITY": lambda f: f.priority(1, depends_on=0),
    "empty DATA": lambda f: f.data(1, b""),
    "unknown frame": lambda f: f.unknown(),
    "WINDOW_UPDATE": lambda f: f.window_update(0, 1),
    "empty CONTINUATION": None,
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_frames_that_do_no_work_run_out_the_budget(kind):
    """PING, SETTINGS, PRIORITY, WINDOW_UPDATE, empty DATA, empty CONTINUATION
    and unknown frames (CVE-2019-9512/9515/9518) cost the client from its control-frame
    budget; when it is spent: GOAWAY ENHANCE_YOUR_CALM. One frame under the
    budget is still fine."""
    limit = 50
    for count, closed in ((limit, False), (limit + 1, True)):
        peer = Peer(limit_h2_control_frames=limit)
        peer.feed(peer.f.request(1, end_stream=False))
        if kind == "empty CONTINUATION":
            flood = peer.f.headers(3, request_headers(), end_headers=False)
            flood += peer.f.continuation(3, b"") * count
        else:
            flood = FLOODS[kind](peer.f) * count  # type: ignore[misc]
        events = peer.feed(flood)
        frame = goaway(peer.out())
        if closed:
            assert frame is not None and frame.error_code == ENHANCE_YOUR_CALM
            assert "ConnectionClosed" in kinds(events)
        else:
            assert frame is None, kind


def test_window_updates_for_response_data_are_never_a_flood():
    """A client that sends a stream and a connection WINDOW_UPDATE for every
    DATA frame it receives stays within the control-frame budget however
    long the download."""
    peer = Peer(limit_h2_control_frames=10)
    peer.feed(peer.f.request(1))
    peer.conn.send_response(1, 200, [])
    for _ in range(200):
        peer.conn.send_body(1, b"x" * 16384, more=True)
        data = [f for f in peer.out() if type(f).__name__ == "DataFrame"]
        updates = b"".join(peer.f.window_update(1, len(f.data)) + peer.f.window_update(0, len(f.data)) for f in data)
        assert "ConnectionClosed" not in kinds(peer.feed(updates))
    assert not peer.conn.closed


def test_rapid_reset_ends_in_goaway():
    """Rapid reset (CVE-2023-44487): each HEADERS + RST_STREAM costs one from
    the reset budget; the one past it gets GOAWAY ENHANCE_YOUR_CALM."""
    peer = Peer(limit_h2_resets=10)
    data = b"".join(peer.f.request(i, end_stream=False) + peer.f.rst(i) for i in range(1, 22, 2))
    events = peer.feed(data)
    assert "ConnectionClosed" in kinds(events)
    assert not [e for e in events if isinstance(e, Request)]  # reset in the same read: no app
    frame = goaway(peer.out())
    assert frame is not None and frame.error_code == ENHANCE_YOUR_CALM


def test_completed_responses_earn_resets_back():
    """A response completed earns a reset back, so a browser cancelling now
    and then over a long connection is never cut off."""
    peer = Peer(limit_h2_resets=3)
    for i in range(1, 60, 4):
        peer.feed(peer.f.request(i, end_stream=False) + peer.f.rst(i))
        peer.feed(peer.f.request(i + 2))
        peer.conn.send_response(i + 2, 204, [])
        peer.conn.send_body(i + 2, b"", more=False)
    assert goaway(peer.out()) is None and not peer.conn.closed


MADE_YOU_RESET = {
    # Each makes the server reset a stream (CVE-2025-8671).
    "DATA after END_STREAM": lambda f, i: f.request(i) + f.data(i, b"x"),
    "HEADERS after END_STREAM": lambda f, i: f.request(i) + f.headers(i, [(b"x-a", b"1")]),
    "malformed headers": lambda f, i: f.headers(i, request_headers() + [(b"X-Up", b"1")]),
    "content-length mismatch": lambda f, i: f.request(i, end_stream=False, content_length="1") + f.data(i, b"xx", True),
    "self-dependent PRIORITY": lambda f, i: f.request(i, end_stream=False) + f.priority(i, depends_on=i),
    "stream window overflow": lambda f, i: f.request(i, end_stream=False) + f.window_update(i, 2**31 - 1),
}


@pytest.mark.parametrize("kind", sorted(MADE_YOU_RESET))
def test_made_you_reset_ends_in_goaway(kind):
    """MadeYouReset (CVE-2025-8671): frames the server must answer with
    RST_STREAM count against the same reset budget as the client's own
    RST_STREAM; past it, GOAWAY ENHANCE_YOUR_CALM."""
    peer = Peer(limit_h2_resets=10)
    make = MADE_YOU_RESET[kind]
    events: list = []
    for i in range(1, 40, 2):
        events += peer.feed(make(peer.f, i))
        if peer.conn.closed:
            break
    frames = peer.out()
    frame = goaway(frames)
    assert frame is not None and frame.error_code == ENHANCE_YOUR_CALM, kind
    assert "ConnectionClosed" in kinds(events)


def test_graceful_goaway_lets_open_streams_finish():
    """go_away() sends GOAWAY NO_ERROR naming the last stream taken (RFC 9113
    §6.8); that stream still completes, a later one is refused."""
    peer = Peer()
    peer.feed(peer.f.request(1))
    peer.conn.go_away()
    frame = goaway(peer.out())
    assert frame is not None and (frame.last_stream_id, frame.error_code) == (1, NO_ERROR)
    events = peer.feed(peer.f.request(3))
    assert "Request" not in kinds(events)
    assert resets(peer.out()) == {3: REFUSED_STREAM}
    peer.conn.send_response(1, 200, [])
    events = peer.conn.send_body(1, b"done", more=False)
    assert "StreamComplete" in kinds(events) and peer.conn.open_streams == 0


def test_client_goaway_closes():
    """A client GOAWAY ends the connection (ConnectionClosed)."""
    peer = Peer()
    events = peer.feed(peer.f.goaway(0))
    assert kinds(events) == ["ConnectionClosed"]


def test_head_and_204_send_no_body():
    """HEAD responses and 204 carry no DATA payload; the stream still ends."""
    peer = Peer()
    peer.feed(peer.f.request(1, method="HEAD"))
    peer.conn.send_response(1, 200, [(b"content-length", b"5")])
    events = peer.conn.send_body(1, b"hello", more=False)
    assert isinstance(events[-1], StreamComplete) and events[-1].bytes_sent == 0
    frames = peer.out()
    assert all(not f.data for f in frames if isinstance(f, DataFrame))


def test_app_content_length_overrun_resets():
    """An app body longer than its own content-length raises AppError and
    resets the stream (never a corrupt response)."""
    from twisted_asgi.events import AppError

    peer = Peer()
    peer.feed(peer.f.request(1))
    peer.conn.send_response(1, 200, [(b"content-length", b"2")])
    with pytest.raises(AppError):
        peer.conn.send_body(1, b"abc", more=False)
    assert 1 in resets(peer.out())


def test_body_over_limit_gets_413():
    """A declared body over limit_request_body_bytes gets 413 without the app."""
    peer = Peer(limit_request_body_bytes=100)
    events = peer.feed(peer.f.request(1, end_stream=False, content_length="1000"))
    assert "Request" not in kinds(events)
    headers = next(f for f in peer.out() if isinstance(f, HeadersFrame))
    assert dict(headers.fields)[b":status"] == b"413"


def test_undeclared_body_over_limit_stops_the_app():
    """A body without content-length that grows past the limit is cut: the
    app is told (StreamReset) and the client gets 413."""
    peer = Peer(limit_request_body_bytes=20000)
    peer.feed(peer.f.request(1, end_stream=False))
    events = peer.feed(peer.f.data(1, b"a" * 16000) + peer.f.data(1, b"a" * 16000))
    assert isinstance(events[0], Data) and StreamReset(1) in events
    headers = next(f for f in peer.out() if isinstance(f, HeadersFrame))
    assert dict(headers.fields)[b":status"] == b"413"


def test_settings_advertise_the_config():
    """Our SETTINGS carry the Config's limits."""
    conn = HTTP2Connection(
        Config(
            limit_concurrent_streams=7,
            limit_h2_stream_window_bytes=70000,
            limit_h2_frame_bytes=20000,
            limit_h2_header_list_bytes=5000,
        )
    )
    conn.initiate()
    # (The last: the public path sends ours after h2's own, see _upstream/h2.py.)
    settings = [f for f in parse_frames(bytearray(conn.data_to_send())) if isinstance(f, SettingsFrame)][-1]
    assert {k: settings.settings[k] for k in (3, 4, 5, 6)} == {3: 7, 4: 70000, 5: 20000, 6: 5000}


def test_end_of_message_and_events_kinds_are_the_neutral_ones():
    """Body and end events are the shared vocabulary (one HTTPCycle for
    HTTP/1.1 and HTTP/2)."""
    peer = Peer()
    peer.feed(peer.f.request(1, end_stream=False))
    events = peer.feed(peer.f.data(1, b"ab", end_stream=True))
    assert [type(e) for e in events] == [Data, EndOfMessage]
    assert not any(isinstance(e, (WriteReady, ConnectionClosed)) for e in events)
