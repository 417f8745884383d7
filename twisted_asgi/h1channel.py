"""The Twisted shell of HTTP/1.1: the connection's first handler.

A connection (:class:`~twisted_asgi.channel.HTTPChannel`) starts with an
:class:`HTTP11Handler`, which looks at the first bytes: when ALPN chose
``h2`` or they are the HTTP/2 preface it lets HTTP/2 take the connection over
(the factory's ``http2.sniff``) without ever making an HTTP/1.1 parser;
otherwise it parses them with the sans-IO
:class:`~twisted_asgi.http11.HTTP11Connection` and serves the requests as the
core says (which request is answered, which wait, keep-alive, the discard of a
body the app did not read are the core's): app calls, 100-continue, read
pausing, the request head, keep-alive and request body timers (on the
connection's one scheduler), error responses, and the hand-over to the
protocol an accepted ``Upgrade`` asks for (WebSocket, h2c).

It implements the connection's :class:`~twisted_asgi.channel.Handler`
interface and the runner's ``HTTPCarrier``; it writes, holds body bytes for
one gathering write, stops reading and closes through the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from ._upstream.twisted import FileSink, file_sink
from .events import (
    AppError,
    Body,
    ClientDisconnected,
    Data,
    EarlyHint,
    EndOfMessage,
    ErrorResponse,
    ProtocolError,
    Request,
    Response,
    Trailers,
)
from .http11 import (
    FINISH_CLOSE,
    FINISH_DISCARD,
    ROUTE_BODY,
    ROUTE_CLOSE,
    ROUTE_ERROR,
    ROUTE_NEXT,
    ROUTE_QUEUE_FULL,
    ROUTE_SKIP,
    ROUTE_START,
    HTTP11Connection,
    body_size,
    error_response,
)
from .runner import HTTPTask
from .scope import http_scope

if TYPE_CHECKING:
    from .channel import HTTPChannel

__all__ = ["HTTP11Handler"]

log = Logger(namespace="twisted_asgi.http")

# Reasons to stop reading from the socket (a bit mask).
_PAUSE_BODY = 1  # the app has a full body queue
_PAUSE_PIPELINE = 2  # pipelined requests wait behind the current one
_PAUSE_ERROR = 8  # the client sent bytes we refuse: nothing more to read

# What the handler's single timer is for.
_T_HEAD = "request head"
_T_IDLE = "keep-alive"
_T_BODY = "request body"
_T_NONE = "none"
#: The setting each timer stands for (the metrics count them by it).
_TIMEOUT_NAMES = {_T_HEAD: "timeout_request_head", _T_IDLE: "timeout_keep_alive", _T_BODY: "timeout_request_body"}

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

#: Seconds a connection that has sent nothing yet may still send its first
#: request once a graceful shutdown began (see :meth:`HTTP11Handler.drain`).
_FRESH_GRACE = 1.0


class HTTP11Handler:
    """HTTP/1.1 on one connection (one request at a time, pipelining queued):
    the connection's first handler, and the app calls' carrier."""

    protocol_name = "http/1.1"

    # Slots: past about thirty instance attributes CPython (3.11) stops sharing
    # the keys of instance dictionaries and every ``self.x`` becomes a generic
    # dictionary lookup (3% more instructions per request); slots are also
    # smaller per connection.
    __slots__ = (
        "channel",
        "factory",
        "config",
        "clock",
        "info",
        "write",
        "conn",
        "request",
        "task",
        "paused",
        "write_paused",
        "closed",
        "_timer",
        "_timer_at",
        "_deadline",
        "_timer_kind",
        "_started_at",
        "_dispatching",
        "_continue_later",
    )

    def __init__(self, channel: HTTPChannel) -> None:
        self.channel = channel
        factory = self.factory = channel.factory
        self.config = factory.config
        self.clock = channel.clock
        self.info = channel.info
        #: The connection's write (see :func:`~twisted_asgi.channel.direct_writer`).
        self.write = channel.write
        #: The parser, made once the first bytes are not HTTP/2's.
        self.conn: HTTP11Connection | None = None
        #: The request being answered (the core's ``current``, kept here for
        #: the app call's messages), and its app task.
        self.request: Request | None = None
        self.task: HTTPTask | None = None
        #: Why reading is stopped (``_PAUSE_*`` bits), 0 while reading.
        self.paused = 0
        #: The connection's ``write_paused``, told to this handler (the app's
        #: ``send()`` reads it at every call).
        self.write_paused = False
        #: Closing or closed, or handed over: this handler serves no more.
        self.closed = False
        self._timer: Any = None
        self._timer_at = 0.0
        self._deadline: float | None = None
        self._timer_kind = _T_HEAD
        self._started_at = 0.0
        #: Whether _dispatch is running (it never runs inside itself: _next
        #: leaves what follows a response to it), and whether a response
        #: completed in there (an app started eagerly may answer before
        #: _start returns).
        self._dispatching = False
        self._continue_later = False
        # Until the first bytes tell, the head timeout bounds the TLS
        # handshake and the wait for them.
        self._arm(self.config.timeout_request_head, _T_HEAD)

    # -- the connection's handler side ----------------------------------------------

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            if self.closed:
                return
            # The first bytes: HTTP/2 by ALPN or by its preface, else HTTP/1.1.
            http2 = self.factory.http2
            if http2 is not None:
                sniffed = http2.sniff(self.channel, data)
                if sniffed is None:
                    if self.channel.handler is not self:
                        self._handed_over()
                    return  # HTTP/2 took the connection, or more bytes must tell
                data = sniffed
            conn = self.conn = HTTP11Connection(self.config, self.factory.upgrades)
            if self.channel.draining:
                conn.drain()  # a first request within the grace is the last
        elif self.closed:
            return
        try:
            events = conn.receive_data(data)
        except ProtocolError as exc:
            events = self._refused(exc)
        if events:
            self._dispatch(events)
            if self._continue_later:
                self._continue()
            if self.closed:
                return
        if conn.unparsed:
            # The core stopped at the pipelining bound and keeps the rest:
            # read no more until responses make room (see _next).
            if self.factory.metrics is not None and not self.paused & _PAUSE_PIPELINE:
                self.factory.metrics.limit("limit_pipelined_requests")
            self._pause(_PAUSE_PIPELINE)
        if self.task is None and self.request is not None:
            self._switch_protocol()
        elif self.request is None and self._timer_kind is _T_IDLE and conn.in_request_head:
            # A new request began on an idle connection: it now has the head timeout.
            self._arm(self.config.timeout_request_head, _T_HEAD)

    def connection_lost(self, reason: Failure) -> None:
        self.closed = True
        # A pending timer holds this handler and its connection until it fires.
        self._deadline = None
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()
        task = self.task
        if task is not None:
            task.feed_disconnect()
            # The task points back here (its carrier); with the links cut, the
            # connection is freed by reference counting, not left to the
            # cyclic garbage collector.
            self.task = None
        if self.conn is not None:
            self.conn.release()

    def pause_producing(self) -> None:
        self.write_paused = True

    def resume_producing(self) -> None:
        self.write_paused = False
        if self.task is not None:
            self.task.writable()

    def send_timed_out(self) -> bool:
        if self.task is not None:
            self.task.feed_disconnect()
        self.closed = True
        self.channel.drop()
        return True

    def drain(self) -> None:
        """Graceful shutdown: finish the current response, then close.

        An idle keep-alive connection closes now (a client retries a request
        that meets a closed idle connection). A request whose head has begun
        arriving is answered. A connection accepted just before the listener
        closed, with nothing received yet, gets a short grace for its first
        request, which may still be on its way; one that stays silent (a
        browser's speculative connection) is closed when the grace ends.
        """
        conn = self.conn
        if conn is not None:
            conn.drain()
        if self.request is not None:
            return
        if conn is not None and conn.in_request_head:
            return  # answered, then closed (keep-alive is off)
        if conn is None or (conn.fresh and conn.requests_served == 0):
            self._arm(_FRESH_GRACE, _T_IDLE)
            return
        self._close()

    def abort(self) -> None:
        """Drop the connection now (the graceful shutdown ran out of time):
        the app call still answering is told and cancelled."""
        self.closed = True
        self._cancel_timer()
        self.channel.drop()
        task = self.task
        if task is not None:
            task.feed_disconnect()
            task.cancel(f"the graceful shutdown timeout ({self.config.timeout_graceful_shutdown}s) ran out")

    def _handed_over(self) -> None:
        """Another protocol took the connection (HTTP/2, an ``Upgrade``): let go."""
        self.closed = True
        self._cancel_timer()
        if self.conn is not None:
            self.conn.release()  # its parser holds its callbacks (a cycle)

    def _refused(self, exc: ProtocolError) -> list[Any]:
        """The events to dispatch when the parser refused bytes: those of the
        requests before them, then the error."""
        # Requests parsed before the bad bytes are answered first, in order;
        # the error is answered when its turn comes (or now, if it concerns
        # the body of the request being served).
        self._pause(_PAUSE_ERROR)
        events = exc.events
        # The message the bad bytes belong to never completed: drop what was
        # parsed of it, so a malformed request never reaches the app.
        end = len(events)
        while end and type(events[end - 1]) is not EndOfMessage:
            end -= 1
        events = events[:end]
        events.append(exc)
        return events

    # -- requests ----------------------------------------------------------

    def _dispatch(self, events: list[Any]) -> None:
        """Route parsed events: body events to the request being answered,
        a new request to the app when the connection is free, and everything
        else to the pipeline queue, in order."""
        # The core says where each event goes (which request is current, which
        # wait, what is discarded); a response completed while routing (an
        # eager app call) changes its answer for the events after it.
        route = self.conn.route  # type: ignore[union-attr]
        self._dispatching = True
        try:
            each = iter(events)
            for event in each:
                if self.closed:
                    return
                action = route(event)
                if action == ROUTE_START:
                    if not event.has_body:
                        # Its EndOfMessage is the next event, and routing it
                        # would say ROUTE_SKIP (the core's contract): one call
                        # to route() per plain GET, not two.
                        next(each, None)
                    self._start(event)
                elif action == ROUTE_SKIP:
                    continue
                elif action == ROUTE_BODY:
                    self._body_event(type(event), event)
                elif action == ROUTE_QUEUE_FULL:
                    self._pause(_PAUSE_PIPELINE)
                elif action == ROUTE_ERROR:
                    self._protocol_error(event)
                    return
                elif action == ROUTE_CLOSE:
                    self._close()  # an unread body ran past its bound
                elif action == ROUTE_NEXT:
                    self._next()  # the unread body is over
                # else ROUTE_QUEUED: it waits in the core
        finally:
            self._dispatching = False

    def _body_event(self, kind: type, event: Data | EndOfMessage) -> None:
        """Body bytes or body end of the request being answered."""
        task = self.task
        if task is None:
            return  # an upgrade request: its new protocol owns what follows
        if kind is Data:
            if task.feed_data(event.data):  # type: ignore[union-attr]
                self._pause(_PAUSE_BODY)
            elif self._timer_kind is _T_BODY:
                self._arm(self.config.timeout_request_body, _T_BODY)
        else:
            task.feed_end()
            if self._timer_kind is _T_BODY:
                self._deadline = None
                self._timer_kind = _T_NONE

    def _start(self, request: Request) -> None:
        """Begin answering ``request``: cancel the head timer, build the scope, run the app."""
        self._deadline = None
        self.request = request  # the core made it current (and decided keep-alive)
        if self.channel.logging:
            self._started_at = self.clock.seconds()
        if request.upgrade is not None:
            return  # handled by _switch_protocol once the head is parsed
        if request.has_body and not request.expect_continue:
            self._arm(self.config.timeout_request_body, _T_BODY)
        else:
            self._timer_kind = _T_NONE
        scope = http_scope(request, self.info)  # type: ignore[arg-type]
        self.factory.runner.start_http(scope, request, self, self.config.limit_receive_buffer_bytes)

    def _next(self, now: float | None = None) -> None:
        """The exchange is over (the core began the next cycle): go on with
        pipelined requests, or idle (``now``: the clock's time, when the
        access-log hook read it)."""
        finished = self.task
        self.request = None
        self.task = None
        if finished is not None and self.write_paused:
            # Its last send() waits for the transport to take more. The response
            # is whole: let that call return, and the next request's send()
            # wait in its place, so that one app call per connection waits and
            # a client that leaves (connectionLost) reaches it.
            finished.writable()
        if self.paused:
            self._resume(_PAUSE_BODY)
        if self._dispatching:
            # The app answered inside _start (an eager task start, Python
            # 3.12+) while _dispatch still routes the events that came before
            # anything parsed or queued since: that loop goes on in order, and
            # whoever called it continues from here once it is done.
            self._continue_later = True
            return
        conn = self.conn
        if conn.pending or conn.unparsed or self.paused:  # type: ignore[union-attr]
            self._continue(now)
        # Nothing waits (the keep-alive case, once per request): _continue's
        # end, inlined.
        elif conn.in_request_head:  # type: ignore[union-attr]
            self._arm(self.config.timeout_request_head, _T_HEAD, now)
        else:
            self._arm(self.config.timeout_keep_alive, _T_IDLE, now)

    def _continue(self, now: float | None = None) -> None:
        """After a response: the queued pipelined requests, then the bytes kept
        at the pipelining bound, then the timers (from ``now``, when given)."""
        conn = self.conn
        while True:
            self._continue_later = False
            if conn.pending:  # type: ignore[union-attr]
                self._dispatch(conn.take_pending())  # type: ignore[union-attr]
                if self.closed:
                    return
            if conn.unparsed:  # type: ignore[union-attr]
                # Bytes kept at the pipelining bound: this response made room.
                try:
                    events = conn.receive_data(b"")  # type: ignore[union-attr]
                except ProtocolError as exc:
                    events = self._refused(exc)
                if events:
                    self._dispatch(events)
                if self.closed:
                    return
            if not self._continue_later:
                break
            # A response completed inside that dispatch: go on from there.
        if self.paused & _PAUSE_PIPELINE and not conn.pending and not conn.unparsed:  # type: ignore[union-attr]
            self._resume(_PAUSE_PIPELINE)
        if self.task is None and self.request is not None:
            self._switch_protocol()
        elif self.request is None:
            if conn.in_request_head:  # type: ignore[union-attr]
                self._arm(self.config.timeout_request_head, _T_HEAD, now)
            else:
                self._arm(self.config.timeout_keep_alive, _T_IDLE, now)

    def _response_complete(self) -> None:
        conn = self.conn
        task = self.task
        now = None
        if self.channel.logging:
            # _log_access inlined: once per response with metrics on (a response
            # completes for the current task, so self.request is set). The
            # hook's clock read serves the keep-alive timer too.
            now = self.channel.log_http(self.request, conn.status, conn.bytes_sent, self._started_at)  # type: ignore[union-attr]
        # The core counts the response and says what follows (it has begun
        # the next cycle when it says go on).
        finish = conn.finish_response()  # type: ignore[union-attr]
        if finish == FINISH_CLOSE:
            self._close()
            return
        if finish == FINISH_DISCARD and task is not None:
            # The app answered without reading the whole body: the core reads
            # and drops the rest, up to a bound, to keep the connection (RFC
            # 9112 §9.3), or says close (the bound, or a body never asked for).
            if not conn.discard_body(task.drop_body()):  # type: ignore[union-attr]
                self._close()
                return
            self._resume(_PAUSE_BODY)
            return
        self._next(now)

    def _switch_protocol(self) -> None:
        """The current request asked for an accepted ``Upgrade``: hand the
        connection over to that protocol with the bytes that followed the head.
        Whether the protocol took it or refused (and closed), this handler
        serves no more."""
        self.factory.switch_protocol(self.channel, self.request, self.conn.trailing_data)  # type: ignore[union-attr]
        self._handed_over()

    # -- HTTPCarrier, called by the app's task ------------------------------------

    def send_response(self, task: HTTPTask, event: Response) -> None:
        if task is not self.task or self.closed:
            return
        self.conn.start_response(self.request, event.status, event.headers)  # type: ignore[union-attr, arg-type]

    def send_body(self, task: HTTPTask, event: Body) -> None:
        if task is not self.task or self.closed:
            return
        conn = self.conn
        channel = self.channel
        pieces: list[bytes] | None = None
        try:
            if not channel.can_gather or (not channel.held and not event.more):
                # Nothing to gather with (a TLS transport buffers itself), or a
                # last body with nothing held before it: one plain write.
                data = conn.send_body(event.data, event.more, task.cycle.trailers_wanted)  # type: ignore[union-attr]
            else:
                pieces = conn.send_body_pieces(event.data, event.more, task.cycle.trailers_wanted)  # type: ignore[union-attr]
        except AppError:
            self._close()
            raise
        if pieces is None:
            if data:
                self.write(data)
        else:
            channel.hold(pieces)
            if conn.response_complete:  # type: ignore[union-attr]
                channel.flush()
        if conn.response_complete:  # type: ignore[union-attr]
            self._response_complete()

    def send_trailers(self, task: HTTPTask, event: Trailers) -> None:
        if task is not self.task or self.closed:
            return
        data = self.conn.send_trailers(event.headers)  # type: ignore[union-attr]
        self.channel.flush()
        if data:
            self.write(data)
        self._response_complete()

    def send_early_hint(self, task: HTTPTask, event: EarlyHint) -> None:
        """A ``103 Early Hints``, written now (after what is held): never to an
        HTTP/1.0 client, nor once the final head is prepared, nor with early
        hints off (the app was not offered them). A pipelined request's app
        call starts only once the response before it is complete, so its 103
        cannot overtake that response."""
        if task is not self.task or self.closed or not self.config.early_hints:
            return
        data = self.conn.early_hint(self.request, event.headers)  # type: ignore[union-attr, arg-type]
        if data:
            self.channel.write_now(data)

    def send_continue(self, task: HTTPTask) -> None:
        if task is self.task and not self.closed and not self.conn.head_on_wire:  # type: ignore[union-attr]
            self.write(_CONTINUE)
            self._arm(self.config.timeout_request_body, _T_BODY)

    def resume_reading(self, task: HTTPTask) -> None:
        if task is self.task:
            self._resume(_PAUSE_BODY)

    def app_finished(self, task: HTTPTask) -> None:
        if task is not self.task:
            return
        if self.closed:
            # The connection is closing (after the last response): the app that
            # returned has nothing left to hear, so its connection_lost tells
            # it nothing (and the task lets go of this handler now).
            self.task = None
            return
        if task.cycle.response_complete:
            return
        # The app returned (or failed) before completing its response.
        if self.conn.head_on_wire:  # type: ignore[union-attr]
            self._close()
        else:
            self._error_response(task.error_status(), "the application failed to answer")

    def app_timed_out(self, task: HTTPTask) -> None:
        if task is not self.task or self.closed or task.cycle.response_complete:
            return
        if self.conn.head_on_wire:  # type: ignore[union-attr]
            self._close()
        else:
            self._error_response(task.error_status(), "the application did not answer in time")

    # -- a body from a file (twisted_asgi.filesend) ------------------------------

    def file_sink(self, task: HTTPTask) -> FileSink | None:
        """The sink that sends a file straight to the socket (plain TCP or
        unix HTTP/1.1), or None: the file is read into body chunks."""
        if task is not self.task or self.closed:
            raise ClientDisconnected("client disconnected")
        return file_sink(self.channel.transport)

    def send_file_frame(self, task: HTTPTask, n: int, more: bool) -> tuple[int, bytes]:
        if task is not self.task or self.closed:
            raise ClientDisconnected("client disconnected")
        try:
            before, n, after = self.conn.send_file_frame(n, more, task.cycle.trailers_wanted)  # type: ignore[union-attr]
        except AppError:
            self._close()
            raise
        if before:
            self.channel.write_now(before)  # what write_soon holds, then this
        else:
            self.channel.flush()
        return n, after

    def wait_writable(self, task: HTTPTask, sink: FileSink) -> None:
        """The socket took nothing, or Twisted still holds bytes: pause the
        app's ``send()`` (and run the send timeout) until the transport says
        it can take more, as when its buffer fills."""
        if task is not self.task or self.closed or not sink.open():
            raise ClientDisconnected("client disconnected")
        if not self.write_paused:
            self.channel.pauseProducing()
        sink.wake_when_writable()

    def send_file_sent(self, task: HTTPTask, sent: int) -> None:
        if self.factory.metrics is not None:
            self.channel.bytes_sent += sent

    def send_file_end(self, task: HTTPTask, after: bytes) -> None:
        if task is not self.task or self.closed:
            raise ClientDisconnected("client disconnected")
        if after:
            self.write(after)
        if self.conn.response_complete:  # type: ignore[union-attr]
            self._response_complete()

    def file_failed(self, task: HTTPTask, dropped: bool) -> None:
        if task is not self.task or self.closed:
            return
        if not dropped and not self.conn.head_on_wire:  # type: ignore[union-attr]
            self._error_response(500, "the response's file could not be sent")
        else:
            # Bytes of the body are out: only a short body tells the client.
            self.closed = True
            self.channel.drop()

    # -- errors, closing -----------------------------------------------------

    def _protocol_error(self, exc: ProtocolError) -> None:
        log.info(
            "Bad request from {client}: {reason} ({status})",
            client=self.channel.client_text(),
            reason=exc.reason,
            status=exc.status,
        )
        if exc.limit is not None and self.factory.metrics is not None:
            self.factory.metrics.limit(exc.limit)
        if self.task is not None:
            self.task.feed_disconnect()
        if self.conn is not None and self.conn.head_on_wire:
            self._close()
        else:
            self._error_response(exc.status, exc.reason, exc.request)

    def _error_response(self, status: int, reason: str, refused: Request | None = None) -> None:
        if self.closed:
            return
        conn = self.conn
        if conn is not None:
            data = conn.send(ErrorResponse(0, status, reason))
        else:  # (no parser yet: nothing was read)
            data = error_response(status, reason, self.config.server_name)
        self.channel.write_now(data)
        if self.channel.logging:
            # Body bytes only, as for every response; the request refused before
            # it became the current one is named all the same.
            self._log_access(status, body_size(data), refused)
        self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._deadline = None  # (its timer is cancelled when the connection is lost)
            self.channel.close_transport()

    def _log_access(self, status: int, size: int, refused: Request | None = None) -> None:
        request = self.request
        if request is None:
            self.channel.log_http(refused, status, size, None)
        else:
            self.channel.log_http(request, status, size, self._started_at)

    # -- the timer -----------------------------------------------------------

    def _cancel_timer(self) -> None:
        # None unless pending: the callback clears it first.
        self._deadline = None
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    def _arm(self, seconds: float, kind: str, now: float | None = None) -> None:
        """Set the one deadline (on the connection's scheduler), ``seconds``
        from ``now`` (a clock reading of this loop pass) or the clock's time.
        Cheap: the timer is only rescheduled when it would fire too late or is
        missing."""
        self._timer_kind = kind
        if not seconds:
            self._deadline = None
            return
        deadline = self._deadline = (self.clock.seconds() if now is None else now) + seconds
        # _timer is None whenever it is not pending (fired or cancelled), and
        # _timer_at is when it fires: no need to ask the DelayedCall either.
        if self._timer is None:
            self._timer = self.clock.callLater(seconds, self._on_timer)
            self._timer_at = deadline
        elif self._timer_at > deadline:
            self._timer.cancel()
            self._timer = self.clock.callLater(seconds, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.closed:
            return
        now = self.clock.seconds()
        if now < deadline:
            self._timer = self.clock.callLater(deadline - now, self._on_timer)
            self._timer_at = deadline
            return
        self._deadline = None
        kind = self._timer_kind
        metrics = self.factory.metrics
        if metrics is not None and kind in _TIMEOUT_NAMES:
            metrics.timeout(_TIMEOUT_NAMES[kind])
        if kind is _T_HEAD and self.conn is not None and self.conn.in_request_head:
            log.info("Request head timed out from {client}", client=self.channel.client_text())
            self._error_response(408, "request head not received in time")
        elif kind is _T_BODY:
            log.info("Request body timed out from {client}", client=self.channel.client_text())
            if self.task is not None:
                self.task.feed_disconnect()
            if self.conn is not None and not self.conn.head_on_wire:
                self._error_response(408, "request body not received in time")
            else:
                self._close()
        elif kind is not _T_NONE:
            self._close()

    # -- read back-pressure ----------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self.paused:
            self.channel.stop_reading()
            if self._timer_kind is _T_BODY:
                self._deadline = None  # our pause, not the client's slowness
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed:
                self.channel.start_reading()
                if self._timer_kind is _T_BODY:
                    self._arm(self.config.timeout_request_body, _T_BODY)
