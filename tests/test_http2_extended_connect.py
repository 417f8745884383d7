"""Sans-IO tests of the HTTP/2 core's side of RFC 8441 (WebSocket over
HTTP/2): SETTINGS_ENABLE_CONNECT_PROTOCOL, the extended CONNECT and its
checks, and a stream whose DATA is a byte stream rather than a request body.
The end-to-end half is ``tests/test_websocket_h2.py``."""

from __future__ import annotations

import pytest
from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame

from tests.h2frames import PROTOCOL_ERROR
from tests.test_http2_driver import Peer, kinds, resets
from twisted_asgi.config import Config
from twisted_asgi.events import Data, Request
from twisted_asgi.http2 import HTTP2Connection, StreamComplete

ENABLE_CONNECT_PROTOCOL = 0x8


def extended(path: str = "/chat", protocol: bytes = b"websocket", drop: bytes = b"") -> list:
    headers = [
        (b":method", b"CONNECT"),
        (b":protocol", protocol),
        (b":scheme", b"https"),
        (b":path", path.encode()),
        (b":authority", b"example.com"),
        (b"sec-websocket-version", b"13"),
    ]
    return [h for h in headers if h[0] != drop]


@pytest.mark.parametrize(("config", "value"), [({}, 1), ({"ws_over_h2": False}, 0), ({"websocket": False}, 0)])
def test_setting_is_sent_when_on(config, value):
    """RFC 8441 §3: the server sends SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (off: 0)."""
    conn = HTTP2Connection(Config(**config))  # type: ignore[arg-type]
    conn.initiate()
    frame = SettingsFrame(0)
    data = conn.data_to_send()
    frame.parse_body(memoryview(data[9 : 9 + int.from_bytes(data[:3], "big")]))
    assert frame.settings.get(ENABLE_CONNECT_PROTOCOL) == value


def test_extended_connect_is_a_request_with_an_upgrade():
    peer = Peer()
    events = peer.feed(peer.f.headers(1, extended("/chat?room=1"), end_stream=False))
    assert kinds(events) == ["Request"]
    request = events[0]
    assert isinstance(request, Request)
    assert (request.method, request.path, request.query, request.upgrade) == (
        b"CONNECT",
        b"/chat",
        b"room=1",
        b"websocket",
    )
    assert request.http_version == "2" and request.has_body
    assert request.headers[0] == (b"host", b"example.com")


def test_tunnel_data_has_no_body_limit_and_flows_both_ways():
    """The stream's DATA is the WebSocket's bytes: past limit_request_body_bytes
    it is not cut, and the server's DATA goes out without END_STREAM."""
    peer = Peer(limit_request_body_bytes=10)
    peer.feed(peer.f.headers(1, extended(), end_stream=False))
    events = peer.feed(peer.f.data(1, b"x" * 100))
    assert kinds(events) == ["Data"] and isinstance(events[0], Data)
    peer.conn.consumed(1, 100)
    peer.conn.send_response(1, 200, [])
    events = peer.conn.send_body(1, b"frame", True)
    assert "StreamComplete" not in kinds(events)
    frames = peer.out()
    heads = [f for f in frames if isinstance(f, HeadersFrame)]
    assert dict(heads[0].fields)[b":status"] == b"200" and "END_STREAM" not in heads[0].flags  # type: ignore[attr-defined]
    data = [f for f in frames if isinstance(f, DataFrame)]
    assert data[0].data == b"frame" and "END_STREAM" not in data[0].flags
    events = peer.conn.send_body(1, b"", False)
    assert any(isinstance(e, StreamComplete) for e in events)


@pytest.mark.parametrize("drop", [b":scheme", b":path", b":authority"])
def test_extended_connect_needs_every_pseudo_header(drop):
    peer = Peer()
    events = peer.feed(peer.f.headers(1, extended(drop=drop), end_stream=False))
    assert kinds(events) == ["MalformedStream"]
    assert resets(peer.out()) == {1: PROTOCOL_ERROR}


def test_protocol_without_the_setting_is_malformed():
    """RFC 8441 §3: a :protocol the server did not allow is a malformed request."""
    peer = Peer(ws_over_h2=False)
    events = peer.feed(peer.f.headers(1, extended(), end_stream=False))
    assert kinds(events) == ["MalformedStream"]
    assert resets(peer.out()) == {1: PROTOCOL_ERROR}


def test_protocol_on_a_get_is_malformed():
    peer = Peer()
    headers = [(b":method", b"GET") if h[0] == b":method" else h for h in extended()]
    assert kinds(peer.feed(peer.f.headers(1, headers))) == ["MalformedStream"]


@pytest.mark.parametrize(
    ("protocol", "end_stream", "status"), [(b"connect-udp", False, b"501"), (b"websocket", True, b"400")]
)
def test_other_protocols_and_empty_tunnels_are_answered(protocol, end_stream, status):
    peer = Peer()
    assert "Request" not in kinds(peer.feed(peer.f.headers(1, extended(protocol=protocol), end_stream=end_stream)))
    heads = [f for f in peer.out() if isinstance(f, HeadersFrame)]
    assert dict(heads[0].fields)[b":status"] == status  # type: ignore[attr-defined]


def test_plain_connect_keeps_its_501():
    peer = Peer()
    headers = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
    assert "Request" not in kinds(peer.feed(peer.f.headers(1, headers)))
    heads = [f for f in peer.out() if isinstance(f, HeadersFrame)]
    assert dict(heads[0].fields)[b":status"] == b"501"  # type: ignore[attr-defined]
