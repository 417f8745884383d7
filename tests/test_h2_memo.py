"""The remembered request and response heads of :mod:`twisted_asgi.http2`:
a head seen before gives exactly what parsing it afresh gives (a new
:class:`Request`, new lists), a malformed one is refused every time, the
memo is bounded, and whatever decides the result is part of its key."""

from __future__ import annotations

from typing import Any

import pytest

from twisted_asgi import http2
from twisted_asgi.config import Config
from twisted_asgi.events import AppError, Request
from twisted_asgi.http2 import HTTP2Connection, _parse_head, _parse_request

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/a?b=1"), (b":authority", b"example.com")]

HEADS: list[tuple[list[tuple[bytes, bytes]], bool, bool]] = [
    (GET, True, False),
    (GET, False, False),
    ([*GET, (b"accept", b"*/*"), (b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2")], True, False),
    ([*GET[:3], (b"host", b"h"), (b"user-agent", b"t")], True, False),
    ([(b":method", b"POST"), *GET[1:], (b"content-length", b"5"), (b"expect", b"100-continue")], False, False),
    ([(b":method", b"OPTIONS"), (b":scheme", b"http"), (b":path", b"*"), (b":authority", b"a")], True, False),
    ([(b":method", b"CONNECT"), (b":authority", b"a:443")], False, False),
    ([(b":method", b"CONNECT"), (b":protocol", b"WebSocket"), *GET[1:]], False, True),
]

MALFORMED: list[tuple[list[tuple[bytes, bytes]], bool, bool]] = [
    ([*GET, (b"connection", b"close")], True, False),
    ([(b"x", b"y"), *GET], True, False),
    ([(b":method", b"POST"), *GET[1:], (b"content-length", b"5")], True, False),  # no body
    ([(b":method", b"CONNECT"), (b":protocol", b"websocket"), *GET[1:]], False, False),  # not offered
    (GET[1:], True, False),
]


def fields(request: Request) -> tuple[Any, ...]:
    return tuple(getattr(request, name) for name in Request.__match_args__)


@pytest.fixture(autouse=True)
def empty_memos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http2, "_PARSED", {})
    monkeypatch.setattr(http2, "_HEADS", {})


@pytest.mark.parametrize(("headers", "ended", "extended"), HEADS)
def test_remembered_request_is_a_fresh_parse(headers: list, ended: bool, extended: bool) -> None:
    first, size = _parse_request(1, list(headers), ended, extended)
    assert len(http2._PARSED) == 1
    for stream_id in (3, 5):
        again, again_size = _parse_request(stream_id, list(headers), ended, extended)
        fresh, fresh_size = _parse_head(stream_id, list(headers), ended, extended)
        assert fields(again) == fields(fresh)
        assert again_size == fresh_size == size
        assert again.headers is not first.headers  # the app may change its own
    again.headers.append((b"z", b"z"))
    assert _parse_request(7, list(headers), ended, extended)[0].headers == first.headers


@pytest.mark.parametrize(("headers", "ended", "extended"), MALFORMED)
def test_malformed_head_is_refused_every_time(headers: list, ended: bool, extended: bool) -> None:
    for stream_id in (1, 3):
        with pytest.raises(ValueError):
            _parse_request(stream_id, list(headers), ended, extended)
    assert http2._PARSED == {}


def test_end_stream_and_extended_connect_are_part_of_the_key() -> None:
    post = [(b":method", b"POST"), *GET[1:], (b"content-length", b"5")]
    assert _parse_request(1, post, False)[0].has_body
    with pytest.raises(ValueError, match="content-length without a body"):
        _parse_request(3, post, True)
    tunnel = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), *GET[1:]]
    assert _parse_request(5, tunnel, False, True)[0].upgrade == b"websocket"
    with pytest.raises(ValueError):
        _parse_request(7, tunnel, False, False)


def test_request_memo_is_bounded() -> None:
    for i in range(http2._PARSED_MAX + 10):
        _parse_request(1, [*GET, (b"x-n", b"%d" % i)], True)
        assert len(http2._PARSED) <= http2._PARSED_MAX
    big = [*GET, (b"x-big", b"v" * http2._PARSED_BYTES)]
    http2._PARSED.clear()
    _parse_request(1, big, True)
    assert http2._PARSED == {}


def head_of(conn: HTTP2Connection, method: bytes, status: int, headers: Any) -> tuple[Any, ...]:
    stream = http2._Stream()
    stream.request = _parse_head(1, [(b":method", method), *GET[1:]], True)[0]
    conn._head(stream, status, headers)
    return stream.head, stream.no_body, stream.remaining


def test_remembered_response_head_is_a_fresh_one(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = HTTP2Connection(Config())
    dates = iter([b"d1", b"d2", b"d3", b"d4"])
    monkeypatch.setattr(http2, "http_date", lambda: next(dates))
    app = [(b"Content-Type", b" text/plain "), (b"content-length", b"13"), (b"connection", b"close")]
    first = head_of(conn, b"GET", 200, app)
    sent = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"13")]
    assert first == ([*sent, *server(), (b"date", b"d1")], False, 13)
    second = head_of(conn, b"GET", 200, app)
    assert second[0][-1] == (b"date", b"d2") and second[0][:-1] == first[0][:-1] and second[1:] == first[1:]
    assert second[0] is not first[0]
    # A HEAD request and a 204 have no body (and a 204 no content-length).
    assert head_of(conn, b"HEAD", 200, app)[1:] == (True, None)
    no_content = head_of(conn, b"GET", 204, app)
    assert no_content[1:] == (True, None) and (b"content-length", b"13") not in no_content[0]
    # The app's own date is kept, none added.
    dated = head_of(conn, b"GET", 200, [(b"date", b"mine")])
    assert [f for f in dated[0] if f[0] == b"date"] == [(b"date", b"mine")]


def server() -> list[tuple[bytes, bytes]]:
    name = Config().server_name
    return [(b"server", name.encode("latin-1"))] if name else []


def test_response_head_key_holds_the_config() -> None:
    plain = HTTP2Connection(Config(server_name="", send_date=False))
    named = HTTP2Connection(Config(server_name="x", send_date=True))
    assert head_of(plain, b"GET", 200, [])[0] == [(b":status", b"200")]
    head = head_of(named, b"GET", 200, [])[0]
    assert head[:2] == [(b":status", b"200"), (b"server", b"x")] and head[2][0] == b"date"
    assert head_of(plain, b"GET", 200, [])[0] == [(b":status", b"200")]


def test_response_head_errors_and_lists() -> None:
    conn = HTTP2Connection(Config())
    for _ in range(2):
        with pytest.raises(AppError):
            head_of(conn, b"GET", 200, [(b"content-length", b"x")])
    # Fields given as lists (not hashable): prepared, not remembered.
    assert head_of(conn, b"GET", 200, [[b"a", b"b"]])[0][1] == (b"a", b"b")
    for i in range(http2._HEADS_MAX + 10):
        head_of(conn, b"GET", 200, [(b"x-n", b"%d" % i)])
        assert len(http2._HEADS) <= http2._HEADS_MAX
    http2._HEADS.clear()
    head_of(conn, b"GET", 200, [(b"x-echo", b"v" * http2._HEADS_BYTES)])
    head_of(conn, b"GET", 200, [(b"x-%d" % i, b"v") for i in range(http2._HEADS_FIELDS + 1)])
    assert http2._HEADS == {}
    head_of(conn, b"GET", 200, [(b"x-echo", b"v")])
    assert len(http2._HEADS) == 1
