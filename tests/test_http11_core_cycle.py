"""The request/response cycle of the sans-IO cores, driven without a loop.

:class:`~twisted_asgi.http11.HTTP11Connection` owns which request is answered
and which wait (:meth:`route`), the pipelined queue and its bound, the request
count and the keep-alive decision (:meth:`finish_response`, :meth:`drain`), and
the discard of a body the app left unread (:meth:`discard_body`). Both cores
serialise the outgoing events of :mod:`twisted_asgi.events` through one
``send(event)``, which must give the bytes of the specialised methods.
"""

from __future__ import annotations

import re

import pytest

from tests.h2frames import Frames
from twisted_asgi.config import Config
from twisted_asgi.events import (
    Body,
    Data,
    EarlyHint,
    EndOfMessage,
    ErrorResponse,
    ProtocolError,
    Request,
    Response,
    Trailers,
)
from twisted_asgi.http2 import HTTP2Connection, StreamComplete
from twisted_asgi.http11 import (
    FINISH_CLOSE,
    FINISH_DISCARD,
    FINISH_NEXT,
    ROUTE_BODY,
    ROUTE_CLOSE,
    ROUTE_ERROR,
    ROUTE_NEXT,
    ROUTE_QUEUE_FULL,
    ROUTE_QUEUED,
    ROUTE_SKIP,
    ROUTE_START,
    HTTP11Connection,
    error_response,
)

GET = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"


def _conn(**settings: object) -> HTTP11Connection:
    return HTTP11Connection(Config(send_date=False, **settings))  # type: ignore[arg-type]


class Server:
    """The shell's part, without I/O: route events, answer each request with
    a fixed response, and go on as the core says. Records what happened."""

    def __init__(self, conn: HTTP11Connection) -> None:
        self.conn = conn
        self.started: list[Request] = []
        self.body: list[bytes] = []
        self.out = b""
        self.closed = False
        self.stop_reading = False
        self.errors: list[ProtocolError] = []

    def feed(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            events = [*exc.events, exc]
        self.route(events)

    def route(self, events: list) -> None:
        for event in events:
            if self.closed:
                return
            self.act(event, self.conn.route(event))

    def act(self, event: object, action: int) -> None:
        """Do what the core said for ``event``."""
        if action == ROUTE_START:
            self.started.append(event)  # type: ignore[arg-type]
        elif action == ROUTE_BODY:
            if type(event) is Data:
                self.body.append(event.data)
        elif action == ROUTE_QUEUE_FULL:
            self.stop_reading = True
        elif action == ROUTE_ERROR:
            self.errors.append(event)  # type: ignore[arg-type]
            self.out += self.conn.send(ErrorResponse(0, event.status, event.reason))  # type: ignore[attr-defined]
            self.closed = True
        elif action == ROUTE_CLOSE:
            self.closed = True
        elif action == ROUTE_NEXT:
            self.next()
        else:
            assert action in (ROUTE_SKIP, ROUTE_QUEUED), action

    def answer(self, body: bytes = b"ok", headers: list | None = None, dropped: int | None = 0) -> int:
        """Answer the current request; return what finish_response said."""
        conn = self.conn
        fields = [(b"content-length", b"%d" % len(body))] if headers is None else headers
        self.out += conn.send(Response(200, fields))
        self.out += conn.send(Body(body, False))
        assert conn.response_complete
        finish = conn.finish_response()
        if finish == FINISH_CLOSE:
            self.closed = True
        elif finish == FINISH_DISCARD:
            if not conn.discard_body(dropped):
                self.closed = True
        else:
            self.next()
        return finish

    def next(self) -> None:
        """The core began the next cycle (FINISH_NEXT, ROUTE_NEXT): go on."""
        self.stop_reading = False
        while True:
            pending = self.conn.take_pending()
            if pending:
                self.route(pending)
            if self.conn.current is not None or self.closed or not self.conn.unparsed:
                break
            self.feed(b"")


# -- a request without a body: its end is skipped unrouted ------------------------------


class SkippingServer(Server):
    """Routes as the HTTP/1.1 shell does: the EndOfMessage after a started
    request without a body is passed over without asking the core, which
    ROUTE_START's contract allows; this checks the contract on every one."""

    skipped = 0

    def route(self, events: list) -> None:
        each = iter(events)
        for event in each:
            if self.closed:
                return
            action = self.conn.route(event)
            if action == ROUTE_START and not event.has_body:
                end = next(each, None)
                # The contract: the next event of the same list is its end,
                # and routing it would change nothing.
                assert type(end) is EndOfMessage and end.stream_id == event.stream_id, (event, end)
                assert self.conn.route(end) == ROUTE_SKIP
                self.skipped += 1
                self.started.append(event)
                continue
            self.act(event, action)


_BODILESS = [
    GET % 1,
    b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /zero HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n",
]
_WITH_BODY = [
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
]


@pytest.mark.parametrize("limit", [1000, 2])
def test_a_bodiless_requests_end_follows_it_and_routes_to_skip(limit: int) -> None:
    """Whatever the reads and the pipelining bound, the EndOfMessage of a
    request without a body is the next event after it, in receive_data's list
    and in the pipelined queue, and route() says ROUTE_SKIP for it: what lets
    the shell skip it unrouted. Every request is answered, in order."""
    stream = b"".join(_BODILESS + _WITH_BODY + _BODILESS[::-1] + _WITH_BODY[::-1]) * 3
    count = 3 * 2 * (len(_BODILESS) + len(_WITH_BODY))
    reads = [[stream]] + [[stream[:cut], stream[cut:]] for cut in range(1, len(stream), 7)]
    for split in reads:
        conn = _conn(limit_pipelined_requests=limit)
        server = SkippingServer(conn)
        for data in split:
            server.feed(data)
        answered = 0
        while conn.current is not None:
            # At the bound a body may still be unparsed: dropped as it comes.
            if server.answer() == FINISH_DISCARD:
                server.feed(b"")
            answered += 1
        assert answered == count, split
        assert not conn.unparsed and not conn.pending
        assert server.skipped == count * len(_BODILESS) // (len(_BODILESS) + len(_WITH_BODY))
        assert [r.path for r in server.started][:3] == [b"/1", b"/h", b"/zero"]
        assert not server.errors and not server.closed


# -- pipelining ------------------------------------------------------------------------


def test_pipelined_requests_are_answered_one_at_a_time_in_order() -> None:
    conn = _conn()
    server = Server(conn)
    server.feed(b"".join(GET % i for i in range(5)))
    assert [r.path for r in server.started] == [b"/0"]
    # Request and end of each of the four others wait in the core.
    assert [type(e) for e in conn.pending] == [Request, EndOfMessage] * 4
    for i in range(5):
        assert conn.current is server.started[i]
        assert server.answer() == FINISH_NEXT
    assert [r.path for r in server.started] == [b"/%d" % i for i in range(5)]
    assert conn.current is None and not conn.pending and conn.requests_served == 5
    assert server.out.count(b"HTTP/1.1 200 OK\r\n") == 5
    assert b"connection: close" not in server.out


def test_pipelined_queue_bound_stops_reading() -> None:
    # Parsing is not bounded here (limit_pipelined_requests is high): the
    # queue's own bound, 64 events, says stop reading.
    conn = _conn(limit_pipelined_requests=1000)
    server = Server(conn)
    server.feed(b"".join(GET % i for i in range(40)))
    assert server.stop_reading
    assert len(conn.pending) == 78
    for _ in range(40):
        server.answer()
    assert len(server.started) == 40 and not conn.pending


def test_pipelined_body_bytes_bound_stops_reading() -> None:
    conn = _conn(limit_receive_buffer_bytes=100)
    server = Server(conn)
    post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n" + b"a" * 60
    server.feed(GET % 0 + post)
    assert not server.stop_reading  # 60 bytes queued
    server.feed(post)
    assert server.stop_reading and conn.pending_bytes == 120
    server.answer()
    assert server.started[-1].method == b"POST" and conn.pending_bytes == 60


def test_parsing_stops_at_limit_pipelined_requests_and_goes_on_after_responses() -> None:
    # (A read under 1 KiB is parsed whole: too few requests to matter.)
    conn = _conn(limit_pipelined_requests=3)
    server = Server(conn)
    server.feed(b"".join(GET % i for i in range(100)))
    assert conn.unparsed  # three parsed, the rest kept unparsed
    assert len(server.started) + len([e for e in conn.pending if type(e) is Request]) == 3
    for _ in range(100):
        server.answer()
    assert [r.path for r in server.started] == [b"/%d" % i for i in range(100)]
    assert not conn.unparsed


# -- keep-alive accounting --------------------------------------------------------------


def test_limit_requests_closes_after_the_last_and_says_so() -> None:
    conn = _conn(limit_requests_per_connection=2)
    server = Server(conn)
    server.feed(GET % 1 + GET % 2 + GET % 3)
    assert server.answer() == FINISH_NEXT
    assert b"connection: close" not in server.out
    assert server.answer() == FINISH_CLOSE
    assert server.out.endswith(b"connection: close\r\n\r\nok")
    assert conn.requests_served == 2 and len(server.started) == 2


def test_drain_makes_the_current_response_the_last() -> None:
    conn = _conn()
    server = Server(conn)
    server.feed(GET % 1 + GET % 2)
    conn.drain()
    assert conn.close_after_response
    assert server.answer() == FINISH_CLOSE
    assert b"connection: close\r\n" in server.out and len(server.started) == 1


def test_drain_before_a_request_closes_after_it() -> None:
    conn = _conn()
    conn.drain()
    server = Server(conn)
    server.feed(GET % 1)
    assert server.answer() == FINISH_CLOSE
    assert b"connection: close\r\n" in server.out


def test_keep_alive_off_closes_after_each_response() -> None:
    server = Server(_conn(timeout_keep_alive=0))
    server.feed(GET % 1)
    assert server.answer() == FINISH_CLOSE


def test_client_connection_close() -> None:
    server = Server(_conn())
    server.feed(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert server.answer() == FINISH_CLOSE
    assert b"connection: close\r\n" in server.out


def test_app_connection_close() -> None:
    server = Server(_conn())
    server.feed(GET % 1 + GET % 2)
    assert server.answer(headers=[(b"content-length", b"2"), (b"connection", b"close")]) == FINISH_CLOSE


def test_http10_without_keep_alive_closes() -> None:
    server = Server(_conn())
    server.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert server.answer() == FINISH_CLOSE


def test_http10_keep_alive_is_kept_with_a_length_and_not_without() -> None:
    conn = _conn()
    server = Server(conn)
    server.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
    assert server.answer() == FINISH_NEXT
    assert b"connection: keep-alive\r\n" in server.out
    # No Content-Length: the body ends when the connection closes.
    assert server.answer(headers=[]) == FINISH_CLOSE
    assert server.out.endswith(b"connection: close\r\n\r\nok")


# -- the discard of an unread body ------------------------------------------------------


POST10 = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"


def test_unread_body_is_discarded_then_the_next_request_starts() -> None:
    conn = _conn()
    server = Server(conn)
    server.feed(POST10 + b"abc")
    assert server.body == [b"abc"]
    assert server.answer(dropped=3) == FINISH_DISCARD
    assert not server.closed and conn.current is server.started[0]
    server.feed(b"defghij" + GET % 2)
    assert server.body == [b"abc"]  # the rest was dropped, not given to the app
    assert [r.path for r in server.started] == [b"/", b"/2"]
    assert conn.current is server.started[1]
    server.answer()
    assert conn.requests_served == 2


def test_unread_chunked_body_is_discarded() -> None:
    server = Server(_conn())
    server.feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert server.answer() == FINISH_DISCARD
    server.feed(b"4\r\ndefg\r\n0\r\n\r\n" + GET % 2)
    assert [r.path for r in server.started] == [b"/", b"/2"] and not server.closed


def test_unread_body_past_the_bound_closes() -> None:
    conn = _conn(limit_receive_buffer_bytes=8)
    server = Server(conn)
    server.feed(POST10 + b"ab")
    assert server.answer(dropped=2) == FINISH_DISCARD
    assert not server.closed  # 6 more may be dropped
    server.feed(b"cdefgh")
    assert not server.closed
    server.feed(b"ij")
    assert server.closed


def test_unread_body_the_app_queued_past_the_bound_closes_at_once() -> None:
    server = Server(_conn(limit_receive_buffer_bytes=8))
    server.feed(POST10 + b"abcdefghi")
    assert server.answer(dropped=9) == FINISH_DISCARD
    assert server.closed


def test_body_never_asked_for_closes() -> None:
    # dropped None: the client waits for 100 Continue and may never send the body.
    server = Server(_conn())
    server.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert server.answer(dropped=None) == FINISH_DISCARD
    assert server.closed


def test_discard_is_not_needed_once_the_body_is_whole() -> None:
    server = Server(_conn())
    server.feed(POST10 + b"0123456789")
    assert server.answer() == FINISH_NEXT


# -- protocol errors in the cycle -------------------------------------------------------


def test_bad_bytes_during_a_body_are_answered_now() -> None:
    server = Server(_conn())
    server.feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert [e.status for e in server.errors] == [400]
    assert server.out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"connection: close" in server.out


def test_bad_request_after_a_pipelined_one_waits_its_turn() -> None:
    conn = _conn()
    server = Server(conn)
    server.feed(GET % 1 + b"GET / HTTP/1.1\r\n\r\n")  # no Host
    assert not server.errors and type(conn.pending[-1]) is ProtocolError
    server.answer()
    assert [e.reason for e in server.errors] == ["missing Host header"]
    assert server.out.index(b"200 OK") < server.out.index(b"400 Bad Request")


# -- send(event): the same bytes as the specialised methods -----------------------------


def _answered(*reads: bytes) -> tuple[HTTP11Connection, Request]:
    conn = _conn()
    events = []
    for data in reads:
        events += conn.receive_data(data)
    assert conn.route(events[0]) == ROUTE_START
    return conn, events[0]


@pytest.mark.parametrize(
    "request_bytes",
    [GET % 1, b"GET / HTTP/1.0\r\n\r\n", b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"],
)
@pytest.mark.parametrize(
    "headers",
    [[], [(b"content-length", b"5")], [(b"content-type", b"text/plain"), (b"connection", b"close")]],
)
def test_http11_send_gives_the_bytes_of_the_methods(request_bytes: bytes, headers: list) -> None:
    new, request = _answered(request_bytes)
    old, old_request = _answered(request_bytes)
    hint = [(b"link", b"</a.css>; rel=preload")]
    assert new.send(EarlyHint(hint)) == old.early_hint(old_request, hint)
    assert new.send(Response(200, headers)) == b""
    old.start_response(old_request, 200, headers)
    assert new.send(Body(b"ab", True)) == old.send_body(b"ab", True)
    assert new.send(Body(b"cde", False, stream_id=request.stream_id)) == old.send_body(b"cde", False)
    assert new.response_complete and old.response_complete
    assert new.keep_alive == old.keep_alive


def test_http11_send_trailers() -> None:
    new, _request = _answered(GET % 1)
    old, old_request = _answered(GET % 1)
    new.send(Response(200, [], trailers=True))
    old.start_response(old_request, 200, [])
    assert new.send(Body(b"ab", False)) == old.send_body(b"ab", False, True)
    assert not new.response_complete
    trailers = [(b"x-checksum", b"1")]
    assert new.send(Trailers(trailers)) == old.send_trailers(trailers)
    assert new.response_complete


def test_http11_send_error_response() -> None:
    conn, _request = _answered(GET % 1)
    data = conn.send(ErrorResponse(0, 503, "busy"))
    expected = error_response(503, "busy", Config().server_name)

    def undated(b: bytes) -> bytes:
        return re.sub(rb"date: [^\r]*\r\n", b"", b)

    assert undated(data) == undated(expected)
    assert not conn.keep_alive and conn.status == 503


def test_http11_send_refuses_another_stream_and_no_request() -> None:
    conn, request = _answered(GET % 1)
    with pytest.raises(ValueError):
        conn.send(Body(b"x", False, stream_id=request.stream_id + 1))
    with pytest.raises(ValueError):
        _conn().send(Response(200, []))


def _h2(*stream_ids: int) -> HTTP2Connection:
    conn = HTTP2Connection(Config(send_date=False))
    conn.initiate()
    frames = Frames()
    data = frames.preface()
    for stream_id in stream_ids:
        data += frames.request(stream_id)
    conn.receive_data(data)
    conn.data_to_send()
    return conn


def _then_output(conn: HTTP2Connection, _events: object) -> bytes:
    """What a specialised method made the core write (its events aside)."""
    return conn.data_to_send()


def test_http2_send_gives_the_bytes_of_the_methods() -> None:
    new, old = _h2(1, 3), _h2(1, 3)
    hint = [(b"link", b"</a.css>; rel=preload")]
    assert new.send(EarlyHint(hint, stream_id=1)) == _then_output(old, old.send_early_hint(1, hint))
    fields = [(b"content-type", b"text/plain")]
    assert new.send(Response(200, fields, stream_id=1)) == _then_output(old, old.send_response(1, 200, fields)) == b""
    data = new.send(Body(b"hello", True, stream_id=1))
    assert data and data == _then_output(old, old.send_body(1, b"hello", True))
    data = new.send(Body(b"!", False, stream_id=1))
    assert data and data == _then_output(old, old.send_body(1, b"!", False))
    completed = [e for e in new.take_events() if type(e) is StreamComplete]
    assert [(e.stream_id, e.status, e.bytes_sent) for e in completed] == [(1, 200, 6)]
    assert new.take_events() == []
    # A response with trailers: its last body does not end the stream.
    new.send(Response(200, [], trailers=True, stream_id=3))
    old.send_response(3, 200, [])
    assert new.send(Body(b"ab", False, stream_id=3)) == _then_output(old, old.send_body(3, b"ab", False, True))
    assert 3 in new.streams
    trailers = [(b"x-sum", b"1")]
    assert new.send(Trailers(trailers, stream_id=3)) == _then_output(old, old.send_trailers(3, trailers))
    assert not new.streams and not old.streams


def test_http2_send_error_response_and_stream_id_required() -> None:
    new, old = _h2(1), _h2(1)
    data = new.send(ErrorResponse(1, 503, "busy", [(b"retry-after", b"1")]))
    old.error_response(1, 503, "busy", [(b"retry-after", b"1")])
    assert data == old.data_to_send() and data
    with pytest.raises(ValueError):
        new.send(Body(b"", False))
    with pytest.raises(TypeError):
        new.send(Data(1, b""))
