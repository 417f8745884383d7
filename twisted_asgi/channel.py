"""The one Twisted protocol per connection: bytes from the reactor to the sans-IO
core, events from the core to the ASGI runner, bytes back to the transport.

The channel owns the connection's timers (request head, keep-alive), read
back-pressure (it pauses the transport while an app has a full body queue or
pipelined requests pile up; every protocol pauses through
:meth:`HTTPChannel.stop_reading`, which also watches a paused socket for a
client that left) and write back-pressure (it is the transport's push
producer; while paused, the app's ``send()`` waits).
"""

from __future__ import annotations

import select
import socket
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._upstream.twisted import FileSink, close_soon, direct_sequence_writer, direct_writer, file_sink, output_pending
from ._upstream.twisted import can_write_direct as _has_tcp_buffer
from .events import (
    AppError,
    Body,
    ClientDisconnected,
    Data,
    EarlyHint,
    EndOfMessage,
    ProtocolError,
    Request,
    Response,
    Trailers,
)
from .http11 import HTTP11Connection, body_size, error_response
from .proxy import proxy_headers_for
from .runner import HTTPTask
from .scope import EARLY_HINT, ConnectionInfo, client_text, http_scope, unknown_tls_extension

if TYPE_CHECKING:
    from .server import ASGIFactory

__all__ = ["Handler", "HTTPChannel", "connection_info", "direct_sequence_writer", "direct_writer", "output_pending"]

log = Logger(namespace="twisted_asgi.http")

# Reasons to stop reading from the socket (a bit mask).
_PAUSE_BODY = 1  # the app has a full body queue
_PAUSE_PIPELINE = 2  # pipelined requests wait behind the current one
_PAUSE_WRITE = 4  # the client does not read our responses
_PAUSE_ERROR = 8  # the client sent bytes we refuse: nothing more to read

# What the connection's single timer is for.
_T_HEAD = "request head"
_T_IDLE = "keep-alive"
_T_BODY = "request body"
_T_NONE = "none"
#: The setting each connection timer stands for (the metrics count them by it).
_TIMEOUT_NAMES = {_T_HEAD: "timeout_request_head", _T_IDLE: "timeout_keep_alive", _T_BODY: "timeout_request_body"}

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _address(addr: Any) -> tuple[str, int] | None:
    if isinstance(addr, (IPv4Address, IPv6Address)):
        return (addr.host, addr.port)
    return None


def connection_info(transport: Any, root_path: str, config: Any = None) -> ConnectionInfo:
    """Client, server and TLS facts about a connection, for its scopes.

    Behind a PROXY-protocol listener the transport's peer and host are already
    the ones the header named. With ``config.proxy_headers`` on, the info
    carries the proxy-header resolver and whether this peer is trusted by it;
    on TLS connections it carries the ASGI ``tls`` extension.
    """
    host = transport.getHost()
    peer = transport.getPeer()
    server: tuple[str, int | None] | None
    if isinstance(host, UNIXAddress):
        name = host.name
        server = (name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or ""), None)
    else:
        server = _address(host)
    info = ConnectionInfo(
        client=_address(peer),
        server=server,
        tls=ISSLTransport.providedBy(transport),
        root_path=root_path,
    )
    if info.tls:
        # The server's own TLS transport (tls.ServerTLS) makes the extension,
        # filled once its handshake completes; another TLS transport's stays
        # unknown (the values the spec allows to be None).
        make = getattr(transport, "asgi_tls_extension", None)
        info.extensions["tls"] = make() if make is not None else unknown_tls_extension()
    if config is not None and config.proxy_headers:
        resolver = proxy_headers_for(config, _proxy_report)
        info.proxy_headers = resolver
        # "unix" trusts a unix-socket listener, not a PROXY header claiming a unix client.
        info.proxy_trusted = resolver.trust.trusts_peer(info.client, isinstance(host, UNIXAddress))
    return info


def _proxy_report(message: str) -> None:
    log.info("{message}", message=message)


def no_delay(transport: Any) -> None:
    """Switch Nagle's algorithm off on the connection's TCP socket, as asyncio and
    uvicorn do for every connection: a small write (a TLS 1.3 session ticket
    before the first response, a WebSocket message, an HTTP/2 frame) must not
    wait for the ACK of the one before, which a delayed ACK holds back ~40 ms.
    Under TLS (or the PROXY wrapper) the TCP transport is one level down; unix
    sockets have no Nagle at all."""
    for candidate in (transport, getattr(transport, "transport", None)):
        set_no_delay = getattr(candidate, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass  # not a TCP socket after all
            return


#: Body bytes with more to come are held, at most this many bytes or pieces,
#: until the event loop's current pass ends, then sent in one gathering write
#: (see HTTPChannel._hold). The piece bound stays under the kernel's IOV_MAX.
_HOLD_BYTES = 1024 * 1024
_HOLD_PIECES = 256
#: Held pieces of at most this many bytes in all are joined and sent with one
#: ``send``: for small frames the copy costs less than building the gathering
#: write's vector (WebSocket echo: about 1,000 fewer instructions per message).
_JOIN_BYTES = 16384

#: Seconds a connection that has sent nothing yet may still send its first
#: request once a graceful shutdown began (see :meth:`HTTPChannel.drain`).
_FRESH_GRACE = 1.0


#: The poll() flag for the peer's FIN (Linux; seen even when unread data is
#: queued before it, unlike a peeking recv()). poll() adds POLLERR and
#: POLLHUP (a reset) and POLLNVAL whatever is asked for.
_POLLRDHUP: int | None = getattr(select, "POLLRDHUP", None)


def _socket_of(transport: Any) -> socket.socket | None:
    """The socket under ``transport`` (TCP or unix; under TLS, or a PROXY
    protocol wrapper, the one below them), or None."""
    for _ in range(4):
        sock = getattr(transport, "socket", None)
        if isinstance(sock, socket.socket):
            return sock
        transport = getattr(transport, "transport", None)
        if transport is None:
            return None
    return None


def peer_gone(transport: Any) -> bool:
    """Whether the client of ``transport`` has closed or reset its side, read
    from the socket without taking any bytes from it (for a connection whose
    reading is paused, which would otherwise never see the FIN or reset).

    On Linux one ``poll()`` for POLLRDHUP: it sees a FIN even behind unread
    data, on TCP and unix sockets alike. Elsewhere a peeking ``recv()``,
    which sees a reset, and a FIN only once no unread data is left before it.
    A FIN that the client could not send because our receive window is shut
    (we stopped reading, the kernel's buffer filled) is seen by neither: only
    when the client's kernel resets the connection, which it does at once
    when we send it anything (a WebSocket ping) after it closed.
    """
    sock = _socket_of(transport)
    if sock is None:
        return False
    fd = sock.fileno()
    if fd < 0:
        return False  # already closed here: connectionLost is on its way
    if _POLLRDHUP is not None:
        poller = select.poll()
        poller.register(fd, _POLLRDHUP)
        return bool(poller.poll(0))
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class Handler(typing.Protocol):
    """What a connection hands itself over to (:meth:`HTTPChannel.hand_over`):
    the HTTP/2 connection (``h2channel.HTTP2Handler``) or a WebSocket
    (``websocket.WebSocketConnection``). It gets the transport's callbacks
    and the graceful shutdown; it writes through the channel's ``write`` and
    closes the transport itself."""

    #: What the connection speaks once handed over (``"http/2"``, ``"websocket"``).
    protocol_name: str

    def data_received(self, data: bytes) -> None: ...
    def connection_lost(self, reason: Failure) -> None: ...
    def pause_producing(self) -> None: ...
    def resume_producing(self) -> None: ...
    def send_timed_out(self) -> bool:
        """The client read nothing for ``timeout_send``: tell the apps and drop
        the connection (True), or nothing when the handler is already closing
        it under its own bound (False). The connection logs it."""

    def drain(self) -> None:
        """Graceful shutdown: finish what is in flight, then close."""

    def abort(self) -> None:
        """Drop the connection now (the graceful shutdown ran out of time)."""


@implementer(IPushProducer)
class HTTPChannel(Protocol):
    """An HTTP/1.1 connection serving ASGI apps (one request at a time, pipelining queued)."""

    # Slots: past about thirty instance attributes CPython (3.11) stops sharing
    # the keys of instance dictionaries and every ``self.x`` becomes a generic
    # dictionary lookup (3% more instructions per request); slots are also
    # smaller per connection. Twisted's own attributes (transport, connected)
    # stay in the instance dictionary.
    __slots__ = (
        "factory",
        "config",
        "clock",
        "conn",
        "info",
        "request",
        "task",
        "pending",
        "pending_bytes",
        "paused",
        "write_paused",
        "requests_served",
        "draining",
        "closed",
        "write",
        "_timer",
        "_timer_at",
        "_deadline",
        "_timer_kind",
        "_started_at",
        "_send_timer",
        "_closing",
        "_lost",
        "_peer_timer",
        "_can_gather",
        "_write_sequence",
        "_held",
        "_held_bytes",
        "_flush_scheduled",
        "_discard_left",
        "_finished_stream",
        "handler",
        "protocol_name",
        "bytes_received",
        "bytes_sent",
        "_dispatching",
        "_continue_later",
    )

    def __init__(self, factory: ASGIFactory) -> None:
        self.factory = factory
        self.config = factory.config
        self.clock = factory.clock
        self.conn: HTTP11Connection | None = None
        self.info: ConnectionInfo | None = None
        #: The request being answered, and its app task.
        self.request: Request | None = None
        self.task: HTTPTask | None = None
        #: Events of pipelined requests that wait for the current response (a
        #: list, taken whole: an empty deque costs 760 bytes per connection).
        self.pending: list = []
        self.pending_bytes = 0
        self.paused = 0
        self.write_paused = False
        self.requests_served = 0
        self.draining = False
        self.closed = False
        self._timer: Any = None
        self._timer_at = 0.0
        self._deadline: float | None = None
        self._timer_kind = _T_HEAD
        self._started_at = 0.0
        self._send_timer: Any = None
        #: The transport's close has begun (:meth:`close_transport`).
        self._closing = False
        #: The transport reported the connection lost.
        self._lost = False
        #: The dead-peer check, armed only while reading is paused.
        self._peer_timer: Any = None
        self._can_gather = False
        #: Made when first needed (most connections never hold bytes).
        self._write_sequence: Callable[[list[bytes]], None] | None = None
        #: Body bytes held for one gathering write, or None.
        self._held: list[bytes] | None = None
        self._held_bytes = 0
        self._flush_scheduled = False
        #: Bytes of an unread request body still to drop after its response, or None.
        self._discard_left: int | None = None
        #: Stream id of the last request whose exchange is over.
        self._finished_stream = 0
        #: Once another protocol (WebSocket, HTTP/2) took the connection over,
        #: every transport callback goes to it.
        self.handler: Handler | None = None
        #: What the connection speaks now, and its bytes so far (read by the
        #: metrics; bytes_sent is counted only when they are on).
        self.protocol_name = "http/1.1"
        self.bytes_received = 0
        self.bytes_sent = 0
        #: How deep in _dispatch we are, and whether a response completed in
        #: there (an app started eagerly may answer before _start returns).
        self._dispatching = 0
        self._continue_later = False

    @property
    def streams_open(self) -> int:
        """HTTP/2 streams open on this connection (for the metrics)."""
        return len(getattr(self.handler, "streams", ()))

    # -- Twisted protocol ----------------------------------------------------

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        no_delay(self.transport)
        direct_tcp = getattr(self.transport, "asgi_direct_tcp", None)
        if direct_tcp is not None:
            # The server's TLS layer (tls.ServerTLS) sends its records with the
            # direct writer too.
            direct_tcp(direct_writer)
        #: Write bytes to the client (see :func:`direct_writer`).
        counted = self if self.factory.metrics is not None else None
        self.write = direct_writer(self.transport, counted)
        if counted is not None:
            self._write_sequence = direct_sequence_writer(self.transport, counted)
        #: Whether body bytes may be held for one gathering write (not when the
        #: transport buffers itself, e.g. TLS).
        self._can_gather = _has_tcp_buffer(self.transport)
        self.info = connection_info(self.transport, self.config.root_path, self.config)
        self.info.extensions["http.response.trailers"] = {}
        # A body from a file (twisted_asgi.filesend), on HTTP/1.1 and HTTP/2.
        self.info.extensions["http.response.pathsend"] = {}
        self.info.extensions["http.response.zerocopysend"] = {}
        if self.config.early_hints:
            # Not in the scope of an HTTP/1.0 request (scope.http_scope).
            self.info.extensions[EARLY_HINT] = {}
        self.info.state = self.factory.lifespan_state
        # The HTTP/1.1 parser is made once the first bytes are not HTTP/2's;
        # until then the head timeout bounds the TLS handshake and the wait.
        self._arm(self.config.timeout_request_head, _T_HEAD)
        self.factory.connection_opened(self)

    def dataReceived(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if self.handler is not None:
            self.handler.data_received(data)
            return
        conn = self.conn
        if conn is None:
            if self.closed:
                return
            # The first bytes: HTTP/2 by ALPN or by its preface, else HTTP/1.1.
            http2 = self.factory.http2
            if http2 is not None:
                sniffed = http2.sniff(self, data)
                if sniffed is None:
                    return  # HTTP/2 took the connection, or more bytes must tell
                data = sniffed
            conn = self.conn = HTTP11Connection(self.config, self.factory.upgrades)
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
                if self.closed or self.handler is not None:
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

    def _refused(self, exc: ProtocolError) -> list:
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

    def connectionLost(self, reason: Failure = Failure(ConnectionError("lost"))) -> None:
        self.closed = True
        self._lost = True
        # A pending timer holds this channel (and all it refers to) until it fires.
        self._cancel_timers()
        tls = ISSLTransport.providedBy(self.transport)
        if tls:
            # Twisted's TLS protocol keeps its producer (this channel) after
            # the connection is lost: a reference cycle with our transport.
            self.transport.unregisterProducer()
        if self.handler is not None:
            self.handler.connection_lost(reason)
            # The handler points back here: cut the cycle (as for self.task below).
            self.handler = None
            self.factory.connection_closed(self)
            return
        task = self.task
        if task is not None:
            task.feed_disconnect()
            # The task points back here (its stream); with the links cut, the
            # connection is freed by reference counting, not left to the
            # cyclic garbage collector.
            self.task = None
        self.pending.clear()
        self._held = None  # nowhere to send them
        if self.conn is not None:
            self.conn.release()
        self.factory.connection_closed(self)

    # -- IPushProducer: the transport tells us when to stop writing ---------------

    def pauseProducing(self) -> None:
        self.write_paused = True
        # The one send timeout, for every protocol: a client that reads nothing
        # for timeout_send is dropped (see _on_send_timeout).
        if self.config.timeout_send and self._send_timer is None and not self.closed:
            self._send_timer = self.clock.callLater(self.config.timeout_send, self._on_send_timeout)
        if self.handler is not None:
            self.handler.pause_producing()

    def resumeProducing(self) -> None:
        self.write_paused = False
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        if self.handler is not None:
            self.handler.resume_producing()
        elif self.task is not None:
            self.task.writable()

    def stopProducing(self) -> None:
        self.write_paused = True

    def hand_over(self, handler: Handler) -> None:
        """Give the connection to another protocol ``handler`` (WebSocket, HTTP/2).

        From now on the channel forwards ``data_received(bytes)``,
        ``connection_lost(reason)``, ``pause_producing()`` and
        ``resume_producing()`` to it; its own timers and HTTP/1.1 parser stop.
        The handler writes to ``channel.transport`` and closes it itself; for
        graceful shutdown it must provide ``drain()`` and ``abort()``.
        """
        if self._held:
            self._flush()
        # HTTP/1.1's own gathering of body chunks ends; write_soon stays.
        self._can_gather = False
        self.handler = handler
        self.protocol_name = handler.protocol_name
        self._cancel_timers(keep_send_timer=True)  # the send timeout goes on for the handler
        if self.conn is not None:
            self.conn.release()  # its parser holds its callbacks (a cycle)
        self.conn = None
        self._resume(_PAUSE_BODY | _PAUSE_PIPELINE)

    # -- requests ----------------------------------------------------------

    def _dispatch(self, events: list) -> None:
        """Route parsed events: body events to the request being answered,
        a new request to the app when the connection is free, and everything
        else to the pipeline queue, in order."""
        self._dispatching += 1
        try:
            self._route(events)
        finally:
            self._dispatching -= 1

    def _route(self, events: list) -> None:
        for event in events:
            if self.closed:
                return
            kind = type(event)
            request = self.request
            if kind is Data or kind is EndOfMessage:
                if request is not None and event.stream_id == request.stream_id:
                    # A request without a body began complete: its end changes nothing.
                    if request.has_body or kind is Data:
                        self._body_event(kind, event)
                    continue
                if event.stream_id <= self._finished_stream:
                    continue  # end of a bodiless request already answered
            elif kind is Request:
                if request is None and not self.pending:
                    self._start(event)
                    continue
            elif not self.pending and (request is None or not self.task or not self.task.cycle.request_complete):
                # A ProtocolError about the request being received now.
                self._protocol_error(event)
                return
            self.pending.append(event)
            if kind is Data:
                self.pending_bytes += len(event.data)
            if self.pending_bytes > self.config.limit_receive_buffer_bytes or len(self.pending) > 64:
                self._pause(_PAUSE_PIPELINE)

    def _body_event(self, kind: type, event: Data | EndOfMessage) -> None:
        """Body bytes or body end of the request being answered."""
        if self._discard_left is not None:
            # The rest of a body the app did not read, after its response.
            if kind is Data:
                self._discard_left -= len(event.data)  # type: ignore[union-attr]
                if self._discard_left < 0:
                    self._close()
            else:
                self._discard_left = None
                self._next()
            return
        task = self.task
        if task is None:
            return  # an upgrade request: its new protocol owns what follows
        if kind is Data:
            if task.feed_data(event.data):  # type: ignore[union-attr]
                self._pause(_PAUSE_BODY)
            elif self._timer_kind is _T_BODY:
                self._arm(self.config.timeout_request_body, _T_BODY)
        else:
            task.feed_end()  # type: ignore[union-attr]
            if self._timer_kind is _T_BODY:
                self._deadline = None
                self._timer_kind = _T_NONE

    def _start(self, request: Request) -> None:
        """Begin answering ``request``: cancel the head timer, build the scope, run the app."""
        self._deadline = None
        self.request = request
        limit = self.config.limit_requests_per_connection
        if self.draining or (limit and self.requests_served + 1 >= limit) or not self.config.timeout_keep_alive:
            # This response is the connection's last: say so in its head.
            self.conn.keep_alive = False  # type: ignore[union-attr]
        if self.factory.access_log is not None:
            self._started_at = self.clock.seconds()
        if request.upgrade is not None:
            return  # handled by _switch_protocol once the head is parsed
        if request.has_body and not request.expect_continue:
            self._arm(self.config.timeout_request_body, _T_BODY)
        else:
            self._timer_kind = _T_NONE
        scope = http_scope(request, self.info)  # type: ignore[arg-type]
        self.factory.runner.start_http(scope, request, self, self.config.limit_receive_buffer_bytes)

    def _next(self) -> None:
        """The current response is complete: go on with pipelined requests, or idle."""
        conn = self.conn
        conn.response_done()  # type: ignore[union-attr]
        self._finished_stream = self.request.stream_id  # type: ignore[union-attr]
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
        self._continue()

    def _continue(self) -> None:
        """After a response: the queued pipelined requests, then the bytes kept
        at the pipelining bound, then the timers."""
        conn = self.conn
        while True:
            self._continue_later = False
            pending = self.pending
            if pending:
                self.pending = []
                self.pending_bytes = 0
                self._dispatch(pending)
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
        if self.paused & _PAUSE_PIPELINE and not self.pending and not conn.unparsed:  # type: ignore[union-attr]
            self._resume(_PAUSE_PIPELINE)
        if self.task is None and self.request is not None:
            self._switch_protocol()
        elif self.request is None:
            if conn.in_request_head:  # type: ignore[union-attr]
                self._arm(self.config.timeout_request_head, _T_HEAD)
            else:
                self._arm(self.config.timeout_keep_alive, _T_IDLE)

    def _response_complete(self) -> None:
        conn = self.conn
        self.requests_served += 1
        task = self.task
        access_log = self.factory.access_log
        if access_log is not None:
            # _log_access inlined: once per response with metrics on (a response
            # completes for the current task, so self.request is set).
            duration = self.clock.seconds() - self._started_at
            access_log.log_http(self.info, self.request, conn.status, conn.bytes_sent, duration)  # type: ignore[union-attr]
        limit = self.config.limit_requests_per_connection
        if not conn.keep_alive or self.draining or (limit and self.requests_served >= limit):  # type: ignore[union-attr]
            self._close()
            return
        if task is not None and not task.cycle.request_complete:
            dropped = task.drop_body()
            if dropped is None:
                # RFC 9110 §10.1.1: we answered without asking for the body, so
                # the client may never send it; closing is the safe way out.
                self._close()
                return
            # The app answered without reading the whole body: read and drop the
            # rest, up to a bound, to keep the connection (RFC 9112 §9.3).
            self._discard_left = self.config.limit_receive_buffer_bytes - dropped
            if self._discard_left < 0:
                self._close()
                return
            self._resume(_PAUSE_BODY)
            return
        self._next()

    def _switch_protocol(self) -> None:
        """The current request asked for an accepted ``Upgrade``: hand the
        connection over to that protocol with the bytes that followed the head."""
        self.factory.switch_protocol(self, self.request, self.conn.trailing_data)  # type: ignore[union-attr]

    # -- HTTPCarrier, called by the app's task ------------------------------------

    def send_response(self, task: HTTPTask, event: Response) -> None:
        if task is not self.task or self.closed:
            return
        self.conn.start_response(self.request, event.status, event.headers)  # type: ignore[union-attr, arg-type]

    def send_body(self, task: HTTPTask, event: Body) -> None:
        if task is not self.task or self.closed:
            return
        conn = self.conn
        pieces: list[bytes] | None = None
        try:
            if not self._can_gather or (not self._held and not event.more):
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
            self._hold(pieces)
            if conn.response_complete:  # type: ignore[union-attr]
                self._flush()
        if conn.response_complete:  # type: ignore[union-attr]
            self._response_complete()

    # -- a body from a file (twisted_asgi.filesend) ------------------------------

    def file_sink(self, task: HTTPTask) -> FileSink | None:
        """The sink that sends a file straight to the socket (plain TCP or
        unix HTTP/1.1), or None: the file is read into body chunks."""
        if task is not self.task or self.closed:
            raise ClientDisconnected("client disconnected")
        return file_sink(self.transport)

    def send_file_frame(self, task: HTTPTask, n: int, more: bool) -> tuple[int, bytes]:
        if task is not self.task or self.closed:
            raise ClientDisconnected("client disconnected")
        try:
            before, n, after = self.conn.send_file_frame(n, more, task.cycle.trailers_wanted)  # type: ignore[union-attr]
        except AppError:
            self._close()
            raise
        if before:
            self.write_now(before)  # what write_soon holds, then this
        elif self._held:
            self._flush()
        return n, after

    def wait_writable(self, task: HTTPTask, sink: FileSink) -> None:
        """The socket took nothing, or Twisted still holds bytes: pause the
        app's ``send()`` (and run the send timeout) until the transport says
        it can take more, as when its buffer fills."""
        if task is not self.task or self.closed or not sink.open():
            raise ClientDisconnected("client disconnected")
        if not self.write_paused:
            self.pauseProducing()
        sink.wake_when_writable()

    def send_file_sent(self, task: HTTPTask, sent: int) -> None:
        if self.factory.metrics is not None:
            self.bytes_sent += sent

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
            self.drop()

    def write_soon(self, data: bytes, limit: int = _HOLD_BYTES) -> None:
        """Write ``data`` together with what else is written this way in the
        event loop's current pass: the connection's one coalescer, for
        HTTP/1.1 body chunks and WebSocket frames alike (see :meth:`_hold`).
        From ``limit`` held bytes on, everything held goes out at once, so the
        transport sees a large burst (and pushes back on it). Once the close
        has begun nothing waits for a later loop pass (which can come after
        the transport is gone: on uvloop, I/O callbacks run before those of
        ``call_soon``): ``data`` goes out at once."""
        if self._closing:
            self.write_now(data)
            return
        held = self._held
        if held is None:
            self._held = [data]
            self._held_bytes = size = len(data)
            if size >= limit:
                self._flush()
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                self.clock.callLater(0, self._scheduled_flush)
            return
        held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= limit or len(held) >= _HOLD_PIECES:
            self._flush()

    def write_now(self, data: bytes) -> None:
        """Write ``data`` at once, after whatever :meth:`write_soon` holds."""
        if self._held:
            self._flush()
        self.write(data)

    def _hold(self, pieces: list[bytes], limit: int = _HOLD_BYTES) -> None:
        """Bytes with more to come: held until the event loop's current pass
        ends (or enough are held), then sent with what followed them in one
        gathering write. An app that sends its chunks without waiting makes
        one system call, not one per chunk: the kernel's cost per send is far
        above its cost per byte, the more so when a send ends just past a
        segment boundary (on loopback, a 64 KiB chunk plus its chunk header
        costs as much as a 256 KiB send)."""
        held = self._held
        if held is None:
            held = self._held = []
        held.extend(pieces)
        for piece in pieces:
            self._held_bytes += len(piece)
        if self._held_bytes >= limit or len(held) >= _HOLD_PIECES:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.clock.callLater(0, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        held = self._held
        if not held:
            return
        size = self._held_bytes
        self._held = None
        self._held_bytes = 0
        try:
            if len(held) == 1:
                self.write(held[0])
            elif size <= _JOIN_BYTES:
                self.write(b"".join(held))
            else:
                self._write_pieces(held)
        except Exception:  # noqa: BLE001 (runs from the event loop: nothing above it would log it well)
            # A transport that cannot take bytes (uvloop's lost poll handle, see
            # --loop) is dropped; the app hears of it through connectionLost.
            log.failure("Could not write to client {client}; dropping it", client=self.client_text())
            self.drop()

    def _flush(self) -> None:
        """Send the held bytes now (before any other write, and before closing)."""
        held = self._held
        if held:
            self._held = None
            self._held_bytes = 0
            if len(held) == 1:
                self.write(held[0])
            else:
                self._write_pieces(held)

    def _write_pieces(self, pieces: list[bytes]) -> None:
        write_sequence = self._write_sequence
        if write_sequence is None:
            write_sequence = self._write_sequence = direct_sequence_writer(self.transport) or self._write_joined
        write_sequence(pieces)

    def _write_joined(self, pieces: list[bytes]) -> None:
        """The gathering write of a transport without Twisted's TCP buffer
        (TLS): one ``write`` of the pieces joined."""
        self.write(pieces[0] if len(pieces) == 1 else b"".join(pieces))

    def send_trailers(self, task: HTTPTask, event: Trailers) -> None:
        if task is not self.task or self.closed:
            return
        data = self.conn.send_trailers(event.headers)  # type: ignore[union-attr]
        if self._held:
            self._flush()
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
            self.write_now(data)

    def send_continue(self, task: HTTPTask) -> None:
        if task is self.task and not self.closed and not self.conn.head_on_wire:  # type: ignore[union-attr]
            self.write(_CONTINUE)
            self._arm(self.config.timeout_request_body, _T_BODY)

    def resume_reading(self, task: HTTPTask) -> None:
        if task is self.task:
            self._resume(_PAUSE_BODY)

    def app_finished(self, task: HTTPTask) -> None:
        if task is not self.task or self.closed or task.cycle.response_complete:
            return
        # The app returned (or failed) before completing its response.
        conn = self.conn
        if conn.head_on_wire:  # type: ignore[union-attr]
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

    # -- errors, closing -----------------------------------------------------

    def _protocol_error(self, exc: ProtocolError) -> None:
        log.info(
            "Bad request from {client}: {reason} ({status})",
            client=self.client_text(),
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
        data = error_response(status, reason, self.config.server_name)
        if self._held:
            self._flush()
        self.write(data)
        if self.factory.access_log is not None:
            # Body bytes only, as for every response; the request refused before
            # it became the current one is named all the same.
            self._log_access(status, body_size(data), refused)
        self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._deadline = None
            self.close_transport()

    def close_transport(self, prompt_tls: bool = False) -> None:
        """Close the connection once what was written is sent: the one close
        of every protocol (HTTP/1.1, the HTTP/2 and WebSocket handlers).

        What :meth:`write_soon` holds goes first. A TLS transport waits for
        its producer to unregister before it sends close_notify and closes; a
        TCP one flushes and closes. With ``prompt_tls`` the TCP connection
        under TLS closes right after our close_notify, without waiting for the
        client's, which a client that broke the protocol may never send (the
        TLS layer's ``timeout_tls_close`` bounds the wait otherwise). The close
        waits for the output to be taken, ``timeout_send`` at most: a client
        that stops reading would hold the connection for ever without this
        bound (bytes already in the kernel are its business: the socket closes).
        """
        if self._closing:
            return
        self._closing = True
        if self._held:
            self._flush()
        transport = self.transport
        transport.unregisterProducer()
        if not close_soon(transport, self.clock.callLater):
            transport.loseConnection()
        if prompt_tls:
            lower = getattr(transport, "transport", None)
            if ISSLTransport.providedBy(transport) and lower is not None:
                lower.loseConnection()
        timeout = self.config.timeout_send
        if timeout and self._send_timer is None and not self._lost and output_pending(transport):
            self._send_timer = self.clock.callLater(timeout, self._on_send_timeout)

    def drop(self) -> None:
        """Abort the connection now: nothing held or buffered is sent (every
        protocol's way to drop a connection)."""
        self._held = None
        self._held_bytes = 0
        self.transport.abortConnection()

    def abort(self) -> None:
        """Drop the connection now (graceful shutdown ran out of time)."""
        if self.handler is not None:
            self.handler.abort()
            return
        self.closed = True
        self.drop()

    def drain(self) -> None:
        """Graceful shutdown: finish the current response, then close.

        An idle keep-alive connection closes now (a client retries a request
        that meets a closed idle connection). A request whose head has begun
        arriving is answered. A connection accepted just before the listener
        closed, with nothing received yet, gets a short grace for its first
        request, which may still be on its way; one that stays silent (a
        browser's speculative connection) is closed when the grace ends.
        """
        self.draining = True
        if self.handler is not None:
            self.handler.drain()
            return
        conn = self.conn
        if conn is not None:
            conn.keep_alive = False
        if self.request is not None:
            return
        if conn is not None and conn.in_request_head:
            return  # answered, then closed (keep-alive is off)
        if (conn is None or conn.fresh) and self.requests_served == 0:
            self._arm(_FRESH_GRACE, _T_IDLE)
            return
        self._close()

    # -- timers --------------------------------------------------------------

    def _cancel_timers(self, keep_send_timer: bool = False) -> None:
        # Each timer is None unless pending: each callback clears its own first.
        self._deadline = None
        timers = (
            (self._timer, self._peer_timer) if keep_send_timer else (self._timer, self._send_timer, self._peer_timer)
        )
        for timer in timers:
            if timer is not None:
                timer.cancel()
        self._timer = self._peer_timer = None
        if not keep_send_timer:
            self._send_timer = None

    def _arm(self, seconds: float, kind: str) -> None:
        """Set the connection's one deadline. Cheap: the reactor timer is only
        rescheduled when it would fire too late or is missing."""
        self._timer_kind = kind
        if not seconds:
            self._deadline = None
            return
        deadline = self._deadline = self.clock.seconds() + seconds
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
            log.info("Request head timed out from {client}", client=self.client_text())
            self._error_response(408, "request head not received in time")
        elif kind is _T_BODY:
            log.info("Request body timed out from {client}", client=self.client_text())
            if self.task is not None:
                self.task.feed_disconnect()
            if self.conn is not None and not self.conn.head_on_wire:
                self._error_response(408, "request body not received in time")
            else:
                self._close()
        elif kind is not _T_NONE:
            self._close()

    def _on_send_timeout(self) -> None:
        self._send_timer = None
        if self.factory.metrics is not None:
            self.factory.metrics.timeout("timeout_send")
        if self._closing:
            # Still here (connectionLost cancels this timer): the client has not
            # taken the rest of its output since the close began.
            log.info(
                "Client {client} read nothing for {timeout}s while its connection was closing; dropping it",
                client=self.client_text(),
                timeout=self.config.timeout_send,
            )
            self.drop()
            return
        if not self.write_paused:
            return
        handler = self.handler
        if handler is None:
            if self.task is not None:
                self.task.feed_disconnect()
            self.abort()
        elif not handler.send_timed_out():
            return  # the handler is closing the connection on its own bound
        log.info(
            "Client {client} read nothing for {timeout}s; dropping the connection",
            client=self.client_text(),
            timeout=self.config.timeout_send,
        )

    # -- read back-pressure ----------------------------------------------------

    def stop_reading(self) -> None:
        """Stop reading from the socket (every protocol's read back-pressure
        goes through here and :meth:`start_reading`).

        While nothing is read, a client that closes or resets is not noticed
        (its FIN or reset waits behind the unread bytes): so, while paused,
        and only then, the socket is checked every
        ``timeout_paused_peer_check`` seconds (see :func:`peer_gone`)."""
        self.transport.pauseProducing()
        interval = self.config.timeout_paused_peer_check
        if interval and self._peer_timer is None:
            self._peer_timer = self.clock.callLater(interval, self._check_peer)

    def start_reading(self) -> None:
        """Read from the socket again (see :meth:`stop_reading`)."""
        timer = self._peer_timer
        if timer is not None:
            self._peer_timer = None
            timer.cancel()
        self.transport.resumeProducing()

    def _check_peer(self) -> None:
        self._peer_timer = None
        if peer_gone(self.transport):
            log.info(
                "Client {client} went away while the server was not reading from it; closing its connection",
                client=self.client_text(),
            )
            # Exactly a lost connection: connectionLost tells the app
            # (http.disconnect, websocket.disconnect) and frees everything.
            self.transport.abortConnection()
            return
        self._peer_timer = self.clock.callLater(self.config.timeout_paused_peer_check, self._check_peer)

    def _pause(self, reason: int) -> None:
        if not self.paused:
            self.stop_reading()
            if self._timer_kind is _T_BODY:
                self._deadline = None  # our pause, not the client's slowness
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed:
                self.start_reading()
                if self._timer_kind is _T_BODY:
                    self._arm(self.config.timeout_request_body, _T_BODY)

    # -- logging ---------------------------------------------------------------

    def client_text(self) -> str:
        """The client's address, for log lines (every protocol's)."""
        return client_text(self.info.client if self.info is not None else None)

    def _log_access(self, status: int, size: int, refused: Request | None = None) -> None:
        request = self.request
        duration = self.clock.seconds() - self._started_at if request is not None else 0.0
        if request is None:
            request = refused
        self.factory.access_log.log_http(self.info, request, status, size, duration)  # type: ignore[union-attr]
