"""The Twisted shell of HTTP/2: takes a connection over from its HTTP/1.1 handler
(ALPN ``h2``, the cleartext preface, or ``Upgrade: h2c``), runs one app task
per stream, and owns the connection's timers.

The sans-IO :class:`~twisted_asgi.http2.HTTP2Connection` does the protocol; this
module moves its bytes, starts each stream's :class:`~twisted_asgi.cycle.HTTPCycle`
on the runner, and implements the runner's ``HTTPCarrier`` interface per stream:
``send()`` waits while the transport is paused or the stream's window is shut,
and received body bytes are acknowledged as the app takes them.
"""

from __future__ import annotations

import weakref
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

from .cycle import REPORT_EVERY_READ
from .events import Body, Data, EarlyHint, EndOfMessage, Request, Response, StreamReset, Trailers
from .http2 import (
    ENHANCE_YOUR_CALM,
    OUTPUT_AHEAD,
    PREFACE,
    ConnectionClosed,
    HTTP2Connection,
    LimitHit,
    MalformedStream,
    StreamComplete,
    WriteReady,
    decode_settings,
    error_code_name,
)
from .http11 import error_response
from .runner import HTTPTask
from .scope import http_scope

if TYPE_CHECKING:
    from .channel import HTTPChannel
    from .server import ASGIFactory
    from .websocket import StreamWebSocketConnection, WebSocketServer

__all__ = ["HTTP2Handler", "HTTP2Server", "install_http2"]

log = Logger(namespace="twisted_asgi.http2")

#: Output held back for one event-loop pass at most this large (see flush_soon):
#: as much as the core frames ahead of the transport.
_COALESCE_BYTES = OUTPUT_AHEAD

_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
# Request fields of the HTTP/1.1 request that asked for h2c that mean nothing
# once it is stream 1 (RFC 7540 §3.2).
_UPGRADE_FIELDS = frozenset({b"connection", b"upgrade", b"http2-settings", b"keep-alive", b"transfer-encoding"})


def install_http2(factory: ASGIFactory) -> HTTP2Server:
    """Let ``factory``'s connections become HTTP/2 as its config allows."""
    server = HTTP2Server(factory)
    if factory.config.h2c_upgrade:
        factory.register_upgrade(b"h2c", server.upgrade)
    return server


class HTTP2Server:
    """Chooses HTTP/2 for a connection and hands it to an :class:`HTTP2Handler`."""

    def __init__(self, factory: ASGIFactory) -> None:
        self.factory = factory
        self.config = factory.config
        #: First bytes held back while they may still be the start of the preface.
        self._held: weakref.WeakKeyDictionary[HTTPChannel, bytes] = weakref.WeakKeyDictionary()
        self._websocket: WebSocketServer | None = None

    def websocket(self) -> WebSocketServer:
        """The WebSocket server for extended CONNECT streams (RFC 8441), made
        at the first one: Autobahn is imported only when used."""
        if self._websocket is None:
            from .websocket import WebSocketServer

            self._websocket = WebSocketServer(self.factory)
        return self._websocket

    def sniff(self, channel: HTTPChannel, data: bytes) -> bytes | None:
        """Called with a connection's first bytes, before HTTP/1.1 parses
        them: take the connection when ALPN chose ``h2``, or (cleartext) when
        it opens with the preface (RFC 9113 §3.3/3.4).

        Returns the bytes HTTP/1.1 is to parse now (these, after any first
        bytes held back), or None: HTTP/2 took the connection, or the bytes so
        far may still be the start of the preface (held back until more come).
        """
        if getattr(channel.transport, "negotiatedProtocol", None) == b"h2":
            self._take(channel, data)
            return None
        if not self.config.h2c_prior_knowledge or channel.info is None or channel.info.tls:
            return data
        held = self._held.pop(channel, None)
        buffered = held + data if held else data
        if buffered.startswith(PREFACE):
            self._take(channel, buffered)
            return None
        if PREFACE.startswith(buffered):
            self._held[channel] = buffered  # e.g. "PRI * HT": wait for the rest
            return None
        # Not HTTP/2 (or what we held was not after all: "P" then "OST /"):
        # HTTP/1.1 gets all of it, in order.
        return buffered

    def _take(self, channel: HTTPChannel, data: bytes) -> None:
        handler = HTTP2Handler(self, channel)
        channel.hand_over(handler)
        handler.core.initiate()
        handler.data_received(data)

    def upgrade(self, channel: HTTPChannel, request: Request, trailing: bytes) -> None:
        """The ``Upgrade: h2c`` handler (only with ``h2c_upgrade`` on): ``101``,
        then the request is stream 1. The HTTP/1.1 parser passes only offers
        with one ``HTTP2-Settings`` header that ``Connection`` names."""
        settings = [v for n, v in request.headers if n == b"http2-settings"]
        reason = None
        if channel.info is not None and channel.info.tls:
            reason = "h2c upgrade over TLS"  # RFC 7540 §3.3: TLS uses ALPN
        else:
            try:
                payload = decode_settings(settings[0])
            except ValueError as exc:
                reason = str(exc)
        if reason is not None:
            channel.write(error_response(400, reason, self.config.server_name))
            transport: Any = channel.transport
            transport.loseConnection()
            return
        handler = HTTP2Handler(self, channel)
        channel.hand_over(handler)
        channel.write(_SWITCHING)
        request.headers = [(n, v) for n, v in request.headers if n not in _UPGRADE_FIELDS]
        try:
            events = handler.core.initiate_upgrade(payload, request)
        except Exception as exc:  # h2 refused the settings' values
            log.info("Bad HTTP2-Settings from {client}: {error}", client=handler.channel.client_text(), error=str(exc))
            handler.core.close(1)
            handler.flush_output()
            handler.close_transport()
            return
        handler.handle(events)
        _pin_proxy_identity(channel, request)
        handler.flush_output()
        if channel.draining:
            handler.drain()
        if trailing:
            handler.data_received(trailing)


def _pin_proxy_identity(channel: HTTPChannel, request: Request) -> None:
    """After an h2c upgrade from a trusted proxy, stop believing proxy headers.

    The proxy saw the HTTP/1.1 request that became stream 1 (its proxy headers
    made that stream's scope); after the ``101`` it is a blind tunnel, so every
    later stream's ``X-Forwarded-*``/``Forwarded`` come from the client
    unchecked. Later streams get stream 1's client, scheme and server instead
    (the tunnel is that client's connection to the proxy); the configured
    ``root_path`` stays, as the proxy stripped no prefix from their paths.
    """
    info = channel.info
    if info is None or info.proxy_headers is None or not info.proxy_trusted:
        return
    first = http_scope(request, info)  # what stream 1 was given
    template = dict(info.http_template())
    template.update(client=first["client"], server=first["server"], scheme=first["scheme"])
    channel.info = info.replaced(proxy_trusted=False, _http_template=template)


class HTTP2Handler:
    """One HTTP/2 connection after the hand-over: the channel's handler
    (``data_received``, ``connection_lost``, ``pause_producing``,
    ``resume_producing``, ``drain``, ``abort``)."""

    protocol_name = "http/2"

    def __init__(self, server: HTTP2Server, channel: HTTPChannel) -> None:
        self.server = server
        self.factory = server.factory
        self.config = server.config
        self.channel = channel
        self.clock = server.factory.clock
        self.core = HTTP2Connection(self.config)
        # The transport may have paused the channel before the hand-over.
        self.core.output_paused = channel.write_paused
        self.streams: dict[int, HTTP2StreamHandler] = {}
        #: App calls still running (their streams may be gone).
        self.running = 0
        self.closed = False
        #: The transport told us the connection is gone.
        self.lost = False
        self.draining = False
        self._idle_timer: Any = None
        self._closing = False
        self._malformed_logged = False
        self._flush_call: Any = None

    # -- the channel's handler side ------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed or self._closing:
            return
        try:
            events = self.core.receive_data(data)
        except Exception:
            # A bug of ours or h2's, never a reason to stop serving others:
            # logged once with its traceback, and this connection is dropped.
            log.failure("HTTP/2 input from {client} broke the connection", client=self.channel.client_text())
            self.abort()
            return
        self.handle(events)
        self.flush_output()
        self._check_idle()

    def connection_lost(self, reason: Failure) -> None:
        self.closed = True
        self.lost = True
        self._cancel_idle()
        flush, self._flush_call = self._flush_call, None
        if flush is not None:
            flush.cancel()
        # Each stream and its app task point at each other, and the streams
        # at this handler: with the stream table cleared, and each task let go
        # of once its app returns (HTTP2StreamHandler.app_finished), the connection is
        # freed by reference counting, not left to the cycle collector.
        for stream in list(self.streams.values()):
            stream.gone()
        self.streams.clear()

    def pause_producing(self) -> None:
        """The client reads slower than we write: every stream's ``send()`` now
        waits (``write_paused`` reads the channel's flag), for the channel's
        ``timeout_send`` at most, and the core frames no more body bytes."""
        self.core.output_paused = True

    def send_timed_out(self) -> bool:
        """The channel's send timeout: as on HTTP/1.1, each waiting send()
        raises, and the app-close timeout bounds an app that goes on. A
        closing connection has its own bound (:meth:`close_transport`)."""
        if self.closed:
            return False
        self.abort(cancel=False)
        return True

    def resume_producing(self) -> None:
        """The transport wrote its buffer out: frame and write what the streams
        queued meanwhile (until the transport pauses us again), then release
        the ``send()`` of every stream with nothing left queued."""
        core = self.core
        core.output_paused = False
        if self.closed:
            return
        if core.output_held:
            self.handle(core.flush())
        self.flush_output()
        for stream in list(self.streams.values()):
            if not core.write_blocked(stream.stream_id):
                stream.writable()

    def drain(self) -> None:
        """Graceful shutdown: GOAWAY, open streams finish, then close."""
        self.draining = True
        if self.closed or self._closing:
            return
        self.core.go_away()
        for stream in list(self.streams.values()):
            if isinstance(stream, WebSocketStream):
                stream.drain()  # WebSocket: 1001, then END_STREAM
        self.flush_output()
        self._check_idle()

    def abort(self, cancel: bool = True) -> None:
        """Drop the connection now (graceful shutdown ran out of time: the
        app calls are cancelled too, unless ``cancel`` is false)."""
        self.closed = True
        self._cancel_idle()
        self.channel.drop()
        for stream in list(self.streams.values()):
            stream.gone(cancel=cancel)

    # -- core events -----------------------------------------------------------------

    def handle(self, events: list[Any]) -> None:
        """Act on the core's events, in order."""
        streams = self.streams
        for event in events:
            kind = type(event)
            if kind is Data:
                stream = streams.get(event.stream_id)
                if stream is not None and stream.task is not None:
                    stream.fed += len(event.data)
                    stream.last_data = self.clock.seconds()
                    stream.task.feed_data(event.data)
                elif isinstance(stream, WebSocketStream):
                    stream.data_received(event.data)
                else:
                    self.core.consumed(event.stream_id, len(event.data))
            elif kind is Request:
                self._start(event)
            elif kind is EndOfMessage:
                stream = streams.get(event.stream_id)
                if stream is not None and stream.task is not None:
                    if stream.body_timer is not None:
                        stream.cancel_body_timer()
                    stream.task.feed_end()
                elif isinstance(stream, WebSocketStream):
                    stream.close_transport()  # RFC 8441 §4: the client's END_STREAM is its FIN
            elif kind is WriteReady:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    if stream.send_timer is not None:
                        stream.cancel_send_timer()
                    if not self.channel.write_paused:
                        task = stream.task
                        if type(stream) is not HTTP2StreamHandler:
                            stream.writable()
                        elif task is not None and task.drain_waiter is not None:  # (else writable() does nothing)
                            task.writable()
            elif kind is StreamComplete:
                if self.channel.logging:
                    self._log(event)
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.complete = True
                    if stream.body_timer is not None:
                        stream.cancel_body_timer()
                    if isinstance(stream, WebSocketStream):
                        stream.gone()  # our END_STREAM is out: the WebSocket's transport is closed
                    if stream.finished:  # (_forget)
                        del streams[event.stream_id]
            elif kind is StreamReset:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.complete = True
                    stream.gone()
                    self._forget(stream)
            elif kind is ConnectionClosed:
                self._closed_by_core(event)
            elif kind is MalformedStream and not self._malformed_logged:
                # Logged once per connection: the reset budget bounds the rest.
                self._malformed_logged = True
                log.info(
                    "HTTP/2 client {client} sent a malformed request on stream {stream}: {reason}; stream reset",
                    client=self.channel.client_text(),
                    stream=event.stream_id,
                    reason=event.reason,
                )
            elif kind is LimitHit and self.factory.metrics is not None:
                self.factory.metrics.limit(event.name)

    def _start(self, request: Request) -> None:
        stream_id = request.stream_id
        if self.running >= self.config.limit_concurrent_streams:
            # App calls of reset streams still run: a new stream must wait for
            # them (RFC 9113 §8.7: REFUSED_STREAM, the client may retry).
            if self.factory.metrics is not None:
                self.factory.metrics.limit("limit_concurrent_streams")
            self.handle(self.core.refuse(stream_id))
            return
        if self.factory.metrics is not None:
            self.factory.metrics.http2_streams += 1  # not a call: once per stream
        if request.upgrade is not None:
            # RFC 8441: the core passes only ":protocol: websocket" on.
            tunnel = self.streams[stream_id] = WebSocketStream(self, request)
            self.running += 1
            self._cancel_idle()
            self.server.websocket().open_stream(tunnel, request)
            return
        stream = HTTP2StreamHandler(self, request)
        self.streams[stream_id] = stream
        scope = http_scope(request, self.channel.info)  # type: ignore[arg-type]
        self.running += 1
        if self._idle_timer is not None:
            self._cancel_idle()
        # Not eager: the app's first step runs after these events are handled.
        # DATA is acknowledged as the app takes it (the stream's window bounds
        # what is queued).
        self.factory.runner.start_http(scope, request, stream, REPORT_EVERY_READ, eager=False)
        if request.has_body and not request.expect_continue and stream.task is not None:
            stream.arm_body_timer()

    def _closed_by_core(self, event: ConnectionClosed) -> None:
        self._closing = True
        if event.error_code:
            log.info(
                "HTTP/2 connection from {client} closed: {reason} ({code})",
                client=self.channel.client_text(),
                reason=event.reason,
                code=error_code_name(event.error_code),
            )
        # A budget ran out: the work the client caused stops now, not after
        # the app-close timeout.
        cancel = event.error_code == ENHANCE_YOUR_CALM
        for stream in list(self.streams.values()):
            stream.gone(cancel=cancel)

    def _forget(self, stream: HTTP2StreamHandler) -> None:
        if stream.complete and stream.finished:
            self.streams.pop(stream.stream_id, None)

    def app_done(self, stream: HTTP2StreamHandler) -> None:
        self.running -= 1
        if stream.complete:  # (_forget: the app has finished)
            self.streams.pop(stream.stream_id, None)
        self._check_idle()

    # -- output, closing, timers ---------------------------------------------------------

    def flush_output(self) -> None:
        """Write what the core framed. While it held body bytes back at its
        output bound and the transport takes what it is given without pausing
        us (the kernel had room), frame and write the next part: the channel's
        one write path and its pause are the backpressure, as on HTTP/1.1."""
        core = self.core
        channel = self.channel
        data = core.data_to_send()
        while data and not self.closed:
            channel.write(data)
            if not core.output_held or channel.write_paused:
                break
            events = core.flush()
            if events:
                self.handle(events)
            data = core.data_to_send()
        if self._closing and not self.closed:
            self.close_transport()

    def flush_soon(self) -> None:
        """Write the app's output at the end of this event-loop pass, so that
        streams answering in the same pass share one write (one system call
        for many small responses); at once when much is waiting (the
        transport's backpressure must see it) or the connection is closing."""
        if self._closing or self.core.output_size() >= _COALESCE_BYTES:
            self.flush_output()
        elif self._flush_call is None and not self.closed:
            self._flush_call = self.clock.callLater(0, self._flush_later)

    def _flush_later(self) -> None:
        self._flush_call = None
        self.flush_output()

    def close_transport(self) -> None:
        """Close after what was written, promptly: over TLS, without waiting
        for the client's close_notify, which a client that broke the protocol
        may never send (the channel's one close, bounded by ``timeout_send``)."""
        self.closed = True
        self._cancel_idle()
        self.channel.close_transport(prompt_tls=True)

    def _check_idle(self) -> None:
        """No request in progress: after a drain, close; else the keep-alive
        timeout runs (0: close at once)."""
        if self.closed or self._closing or self.running or self.core.open_streams:
            return
        if self.draining:
            self._go_away_and_close()
            return
        if self._idle_timer is None:
            # Before the first request the head timeout applies, as on HTTP/1.1.
            first = not self.core.h2.highest_inbound_stream_id
            timeout = self.config.timeout_request_head if first else self.config.timeout_keep_alive
            if timeout:
                self._idle_timer = self.clock.callLater(timeout, self._on_idle)
            elif not first:
                self._go_away_and_close()

    def _on_idle(self) -> None:
        self._idle_timer = None
        if not (self.closed or self._closing or self.running or self.core.open_streams):
            if self.factory.metrics is not None:  # before the first request the head timeout ran
                self.factory.metrics.timeout(
                    "timeout_keep_alive" if self.core.h2.highest_inbound_stream_id else "timeout_request_head"
                )
            self._go_away_and_close()

    def _go_away_and_close(self) -> None:
        self.core.go_away()
        self._closing = True
        self.flush_output()

    def _cancel_idle(self) -> None:
        timer, self._idle_timer = self._idle_timer, None
        if timer is not None:
            timer.cancel()

    # -- logging ---------------------------------------------------------------------

    def _log(self, event: StreamComplete) -> None:
        channel = self.channel
        if not channel.logging or event.request is None or event.request.upgrade is not None:
            return  # a WebSocket logs itself
        stream = self.streams.get(event.stream_id)
        channel.log_http(
            event.request, event.status, event.bytes_sent, stream.started_at if stream is not None else None
        )


class HTTP2StreamHandler:
    """One HTTP/2 stream as its app task sees it: the runner's ``HTTPCarrier``."""

    __slots__ = (
        "handler",
        "stream_id",
        "request",
        "task",
        "fed",
        "complete",
        "finished",
        "started_at",
        "send_timer",
        "body_timer",
        "last_data",
    )

    def __init__(self, handler: HTTP2Handler, request: Request) -> None:
        self.handler = handler
        self.stream_id = request.stream_id
        self.request = request
        self.task: HTTPTask | None = None
        #: Body bytes given to the app's queue so far.
        self.fed = 0
        #: The stream is over on the wire (response sent, or reset).
        self.complete = False
        #: The app call has returned.
        self.finished = False
        self.started_at = handler.clock.seconds()
        self.send_timer: Any = None
        self.body_timer: Any = None
        #: When body bytes last came (for timeout_request_body).
        self.last_data = self.started_at

    @property
    def write_paused(self) -> bool:
        handler = self.handler
        return handler.channel.write_paused or handler.core.write_blocked(self.stream_id)

    def _live(self, task: HTTPTask) -> bool:
        return task is self.task and not self.complete and not self.handler.closed

    def send_response(self, task: HTTPTask, event: Response) -> None:
        handler = self.handler
        if task is self.task and not self.complete and not handler.closed:  # (_live, once per request)
            handler.core.send_response(self.stream_id, event.status, event.headers)

    def send_body(self, task: HTTPTask, event: Body) -> None:
        handler = self.handler
        if task is not self.task or self.complete or handler.closed:  # (not _live, once per request)
            return
        try:
            events = handler.core.send_body(self.stream_id, event.data, event.more, task.cycle.trailers_wanted)
        except BaseException:
            handler.flush_soon()  # the stream's reset (AppError) goes out
            raise
        # _after_send, once per request.
        handler.handle(events)
        handler.flush_soon()
        timeout = handler.config.timeout_send
        if timeout and self.send_timer is None and not self.complete and handler.core.write_blocked(self.stream_id):
            # A client that never opens the stream's window holds the app's
            # send() forever; timeout_send bounds it as for a socket.
            self.send_timer = handler.clock.callLater(timeout, self._send_timed_out)

    def file_sink(self, task: HTTPTask) -> None:
        """A file on a stream is read into DATA chunks (twisted_asgi.filesend)."""
        return None

    def file_failed(self, task: HTTPTask, dropped: bool) -> None:
        """The file of the response could not be sent (logged): 500 while
        its head is unsent, else the stream is reset."""
        if self._live(task):
            self._fail(500, "the response's file could not be sent")
            self.gone()

    def send_trailers(self, task: HTTPTask, event: Trailers) -> None:
        if self._live(task):
            events = self.handler.core.send_trailers(self.stream_id, event.headers)
            self._after_send(events)

    def _after_send(self, events: list[Any]) -> None:
        handler = self.handler
        handler.handle(events)
        handler.flush_soon()
        timeout = handler.config.timeout_send
        if timeout and self.send_timer is None and handler.core.write_blocked(self.stream_id) and not self.complete:
            # A client that never opens the stream's window holds the app's
            # send() forever; timeout_send bounds it as for a socket.
            self.send_timer = handler.clock.callLater(timeout, self._send_timed_out)

    def send_early_hint(self, task: HTTPTask, event: EarlyHint) -> None:
        """A ``103 Early Hints`` on the stream, written with the connection's
        other output (its backpressure holds the app's ``send()``)."""
        handler = self.handler
        if self._live(task) and handler.config.early_hints:
            handler.core.send_early_hint(self.stream_id, event.headers)
            handler.flush_soon()

    def send_continue(self, task: HTTPTask) -> None:
        if self._live(task):
            self.handler.core.send_continue(self.stream_id)
            self.handler.flush_output()
            self.arm_body_timer()  # the client sends its body now

    def arm_body_timer(self) -> None:
        """Bound the wait for the next body bytes by ``timeout_request_body``,
        as for HTTP/1.1; time the app itself leaves the body unread (so the
        client has no window to send) does not count."""
        timeout = self.handler.config.timeout_request_body
        if timeout and self.body_timer is None and not self.complete:
            self.last_data = self.handler.clock.seconds()
            self.body_timer = self.handler.clock.callLater(timeout, self._body_timed_out)

    def cancel_body_timer(self) -> None:
        timer, self.body_timer = self.body_timer, None
        if timer is not None:
            timer.cancel()

    def _body_timed_out(self) -> None:
        self.body_timer = None
        handler = self.handler
        waiting = handler.core.waiting_for_body(self.stream_id)
        if self.complete or handler.closed or waiting is None:
            return
        timeout = handler.config.timeout_request_body
        idle = handler.clock.seconds() - self.last_data
        if not waiting or idle < timeout:
            # The app has not taken what came (the client may have no window
            # left), or bytes came since: wait on, from the last bytes.
            self.body_timer = handler.clock.callLater(
                timeout - idle if idle < timeout else timeout, self._body_timed_out
            )
            return
        if handler.factory.metrics is not None:
            handler.factory.metrics.timeout("timeout_request_body")
        log.info(
            "HTTP/2 client {client} sent no request body on stream {stream} for {timeout}s",
            client=handler.channel.client_text(),
            stream=self.stream_id,
            timeout=timeout,
        )
        task = self.task
        if task is not None and not task.cycle.response_started:
            events = handler.core.error_response(self.stream_id, 408, "request body timed out")
        else:
            events = handler.core.reset(self.stream_id)
        handler.handle(events)
        handler.flush_output()
        self.gone()

    def resume_reading(self, task: HTTPTask) -> None:
        """The app took body bytes: acknowledge them (RFC 9113 §6.9)."""
        if task is not self.task or self.handler.closed:
            return
        taken = self.fed - task.cycle.queued
        if taken > 0:
            self.fed -= taken
            self.handler.core.consumed(self.stream_id, taken)
            self.handler.flush_output()

    def app_finished(self, task: HTTPTask) -> None:
        if task is not self.task:
            return
        self.finished = True
        handler = self.handler
        if not self.complete and not handler.closed and not task.cycle.response_complete:
            # The app returned (or failed) before completing its response.
            self._fail(task.error_status(), "the application failed to answer")
        handler.app_done(self)
        # The task refers to this stream: cut the cycle (the app is done with
        # both; body bytes that still come are acknowledged and dropped).
        self.task = None

    def app_timed_out(self, task: HTTPTask) -> None:
        if self._live(task) and not task.cycle.response_complete:
            self._fail(task.error_status(), "the application did not answer in time")

    def _fail(self, status: int, reason: str) -> None:
        handler = self.handler
        if (self.task is not None and not self.task.cycle.response_started) or handler.core.head_unsent(self.stream_id):
            events = handler.core.error_response(self.stream_id, status, reason)
        else:
            events = handler.core.reset(self.stream_id)
        handler.handle(events)
        handler.flush_output()

    def writable(self) -> None:
        if self.task is not None:
            self.task.writable()

    def gone(self, cancel: bool = False) -> None:
        """The stream is over for the app: http.disconnect, and with ``cancel``
        the task is cancelled at once."""
        self.complete = True
        self.cancel_send_timer()
        self.cancel_body_timer()
        task = self.task
        if task is not None:
            task.feed_disconnect()
            if cancel:
                task.stop()

    def cancel_send_timer(self) -> None:
        timer, self.send_timer = self.send_timer, None
        if timer is not None:
            timer.cancel()

    def _send_timed_out(self) -> None:
        self.send_timer = None
        handler = self.handler
        if self.complete or handler.closed or not handler.core.write_blocked(self.stream_id):
            return
        if not handler.core.window_shut(self.stream_id):
            # Waiting for the transport, not for the client's window: the
            # connection's own send timer bounds that (pause_producing).
            self.send_timer = handler.clock.callLater(handler.config.timeout_send, self._send_timed_out)
            return
        if handler.factory.metrics is not None:
            handler.factory.metrics.timeout("timeout_send")
        log.info(
            "HTTP/2 client {client} opened no window on stream {stream} for {timeout}s; resetting it",
            client=handler.channel.client_text(),
            stream=self.stream_id,
            timeout=handler.config.timeout_send,
        )
        self._stalled()

    def _stalled(self) -> None:
        """The client left the stream's window shut for ``timeout_send``."""
        handler = self.handler
        handler.handle(handler.core.reset(self.stream_id))
        handler.flush_output()


class WebSocketStream(HTTP2StreamHandler):
    """A WebSocket on an HTTP/2 stream (RFC 8441), seen from both sides.

    To its :class:`~twisted_asgi.websocket.StreamWebSocketConnection` it is
    the channel: ``write_soon`` frames the WebSocket's bytes as the stream's
    DATA (its send path, so the stream's window and the transport are the
    backpressure, and the stream's send timer bounds a client that opens no
    window), ``close_transport`` is END_STREAM, ``drop`` is RST_STREAM,
    ``stop_reading`` stops acknowledging the client's DATA (its window shuts),
    and the stream's end is the connection's loss. To the
    :class:`HTTP2Handler` it is one of its streams, with no ``task`` of its
    own: the WebSocket's app call is the connection's.
    """

    __slots__ = ("ws", "held", "reading", "blocked", "closing", "reported")

    def __init__(self, handler: HTTP2Handler, request: Request) -> None:
        super().__init__(handler, request)
        self.ws: StreamWebSocketConnection | None = None
        #: DATA received while reading is stopped, not yet acknowledged.
        self.held: list[bytes] = []
        self.reading = True
        #: The WebSocket was told to pause (its output waits for window).
        self.blocked = False
        #: END_STREAM is queued, or the stream was reset.
        self.closing = False
        #: The WebSocket was told the stream is over.
        self.reported = False

    # -- the WebSocket's channel -------------------------------------------------

    @property
    def factory(self) -> ASGIFactory:
        return self.handler.factory

    @property
    def info(self) -> Any:
        return self.handler.channel.info

    @property
    def counted(self) -> HTTPChannel:
        """The connection whose counters the WebSocket's messages join."""
        return self.handler.channel

    @property
    def draining(self) -> bool:
        return self.handler.draining

    @property
    def transport(self) -> WebSocketStream:
        return self

    @property
    def disconnecting(self) -> bool:
        return self.closing or self.complete

    def client_text(self) -> str:
        return self.handler.channel.client_text()

    @property
    def logging(self) -> bool:
        return self.handler.channel.logging

    def log_http(self, request: Request | None, status: int, size: int, started: float | None) -> float:
        return self.handler.channel.log_http(request, status, size, started)

    def log_websocket(self, request: Request, kind: str, code: int, started: float) -> float:
        return self.handler.channel.log_websocket(request, kind, code, started)

    def write_soon(self, data: bytes, limit: int = 0) -> None:
        """Frame ``data`` as DATA on the stream, with what else the streams
        send in this loop pass (the handler's one flush)."""
        handler = self.handler
        if self.closing or self.complete or handler.closed:
            return
        self._after_send(handler.core.send_body(self.stream_id, data, True))
        self._check_blocked()

    write_now = write_soon

    def _check_blocked(self) -> None:
        ws = self.ws
        if not self.blocked and ws is not None and self.handler.core.write_blocked(self.stream_id):
            # As a full socket buffer does over HTTP/1.1: send() waits, reading stops.
            self.blocked = True
            ws.pause_producing()

    def writable(self) -> None:
        ws = self.ws
        if ws is None or self.handler.core.write_blocked(self.stream_id):
            return
        self.blocked = False
        ws.resume_producing()

    def accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        """``:status 200`` without END_STREAM (RFC 8441 §5)."""
        core = self.handler.core
        core.send_response(self.stream_id, 200, headers)
        self._after_send(core.send_body(self.stream_id, b"", True))

    def error_response(self, status: int, reason: str, headers: Any) -> int:
        """Refuse the WebSocket with an HTTP error (END_STREAM); return the body size."""
        handler = self.handler
        handler.handle(handler.core.error_response(self.stream_id, status, reason, list(headers)))
        handler.flush_soon()
        return len(f"{status} {HTTPStatus(status).phrase}: {reason}\n".encode())

    def start_denial(self, status: int, headers: list[tuple[bytes, bytes]]) -> _StreamDenial:
        """The app's own response instead of the WebSocket (ASGI denial response extension)."""
        self.handler.core.send_response(self.stream_id, status, headers)
        return _StreamDenial(self, status)

    def close_transport(self, prompt_tls: bool = False) -> None:
        """END_STREAM after the frames already queued (RFC 8441 §4: TCP's FIN)."""
        if self.closing or self.complete:
            return
        self.closing = True
        if not self.handler.closed:
            self._after_send(self.handler.core.send_body(self.stream_id, b"", False))

    def drop(self) -> None:
        """RST_STREAM (RFC 8441 §4: TCP's RST)."""
        self.closing = True
        handler = self.handler
        if not self.complete and not handler.closed:
            handler.handle(handler.core.reset(self.stream_id))
            handler.flush_output()
        self.gone()

    def stop_reading(self) -> None:
        self.reading = False

    def start_reading(self) -> None:
        self.reading = True
        held, self.held = self.held, []
        for i, data in enumerate(held):
            if not self.reading:
                self.held[:0] = held[i:]
                break
            self._deliver(data)
        self.handler.flush_soon()  # the WINDOW_UPDATEs

    # -- the handler's stream ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.reading and not self.held:
            self._deliver(data)
        else:
            self.held.append(data)  # bounded by the stream's window: it is not acknowledged

    def _deliver(self, data: bytes) -> None:
        ws = self.ws
        self.handler.core.consumed(self.stream_id, len(data))
        if ws is not None:
            ws.data_received(data)

    def drain(self) -> None:
        if self.ws is not None:
            self.ws.drain()

    def gone(self, cancel: bool = False) -> None:
        """The stream is over (END_STREAM sent, reset, or the connection is
        gone): the WebSocket hears it as its transport's loss, on a later
        pass (as Twisted reports a closed socket), and with ``cancel`` its
        app call is stopped now."""
        self.complete = True
        self.cancel_send_timer()
        self.held = []
        ws = self.ws
        if self.reported or ws is None:
            return
        self.reported = True
        if cancel:
            ws.abort()
        reason = ConnectionDone() if self.closing else ConnectionLost("the HTTP/2 stream was reset")
        self.handler.clock.callLater(0, self._report_lost, Failure(reason))

    def _report_lost(self, reason: Failure) -> None:
        ws = self.ws
        if ws is not None:
            ws.connection_lost(reason)
            if ws.task is None:
                self.app_finished()  # the handshake was refused: no app call ran
        self._release()

    def _release(self) -> None:
        """Once the WebSocket knows the stream is over and its app returned,
        let go of it (it refers back to this stream): freed by reference
        counting, as every connection is."""
        if self.finished and self.reported and self.complete:
            self.ws = None

    def _stalled(self) -> None:
        if self.ws is not None:
            self.ws.send_timed_out()  # 1006 to the app, then drop(): RST_STREAM
        else:
            HTTP2StreamHandler._stalled(self)

    def app_finished(self, task: Any = None) -> None:
        """The WebSocket's app call returned."""
        if not self.finished:
            self.finished = True
            self.handler.app_done(self)
        if self.ws is not None and self.ws.lost:
            self._release()


class _StreamDenial:
    """A denial response on a stream, as :class:`~twisted_asgi.websocket.WebSocketConnection`
    drives one (what ``HTTP11Connection`` is to it over HTTP/1.1): the core
    frames it, so ``send_body`` returns nothing to write."""

    __slots__ = ("stream", "status", "bytes_sent", "response_complete", "head_on_wire")

    def __init__(self, stream: WebSocketStream, status: int) -> None:
        self.stream = stream
        self.status = status
        self.bytes_sent = 0
        self.response_complete = False
        self.head_on_wire = False

    def send_body(self, data: bytes, more: bool) -> bytes:
        stream = self.stream
        stream._after_send(stream.handler.core.send_body(stream.stream_id, data, more))
        self.head_on_wire = True
        self.bytes_sent += len(data)
        self.response_complete = not more
        return b""
