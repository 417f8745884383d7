"""WebSocket over HTTP/1.1 (RFC 6455): our handshake, Autobahn's framing.

The HTTP/1.1 parser stops at an ``Upgrade: websocket`` request and the channel
hands the connection to a :class:`WebSocketConnection`. The handshake is
checked and completed here from the parsed :class:`~twisted_asgi.events.Request`
(:func:`~twisted_asgi.wscycle.parse_handshake`,
:func:`~twisted_asgi.wscycle.handshake_response`): the request is never
re-serialised for another parser (DESIGN, "Parse once"; Daphne's
CVE-2026-44546 came from doing that).

Autobahn does only what follows the 101: framing, unmasking, UTF-8 validation,
permessage-deflate (RFC 7692), size limits, pings and the closing handshake;
the data of a fragmented message is gathered here, with its frames counted
(:meth:`_Framing.on_message_begin`). (Except the common case: a whole small
message in one masked, uncompressed frame is taken from the read by
:meth:`_FastFraming.feed`, or from Autobahn's buffer by
:meth:`_FastFraming.processData`, and an app's message on a connection without
compression is framed by :meth:`WebSocketConnection.send_ws`, each in a few
lines where Autobahn spends about a hundred.) The seam is one class,
:class:`_Framing`, on one of two bases from
:mod:`twisted_asgi._upstream.autobahn` (which holds every private name of
Autobahn this needs): :class:`_FastFraming`, Autobahn's framework-neutral
``WebSocketServerProtocol`` acting as its own network adapter, or, where
Autobahn lacks one of those names, :func:`public_framing`'s, its Twisted
protocol through its public API. Either way the framing

* enters the OPEN state after our 101 (the fast path as Autobahn's own
  ``succeedHandshake`` does after writing its response; the public path
  through Autobahn's handshake, its response dropped);
* carries its options as class attributes made once per server from
  :class:`~twisted_asgi.config.Config`, so no connection copies them;
* runs its timers (ping, pong timeout, close handshake) on the server's
  injected clock;
* writes through the channel and reports messages, failures and the close to
  its :class:`WebSocketConnection`.

The ASGI side is a :class:`~twisted_asgi.wscycle.WebSocketCycle` run by a
:class:`~twisted_asgi.runner.WebSocketTask`.

Close codes the server sends (the docs' WebSocket page lists them too):
1000 when the app returns without closing, the app's own code on
``websocket.close``, 1001 on graceful shutdown and at the end of
``timeout_ws_lifetime``, 1002 on a protocol violation, 1007 on invalid UTF-8
or undecompressable data, 1009 beyond ``limit_ws_message_bytes`` /
``limit_ws_frame_bytes`` / ``limit_ws_fragments``, 1011 when the app raised
after accept.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from autobahn.websocket.compress import (
    PerMessageDeflate,
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from autobahn.websocket.protocol import WebSocketProtocol, WebSocketServerProtocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ._upstream import autobahn as upstream_autobahn
from ._upstream.fastpaths import report as report_fast_paths
from .events import AppError, ClientDisconnected, Request
from .http11 import HTTP11Connection, body_size, error_response
from .scope import websocket_scope
from .wscycle import (
    Accept,
    Close,
    DenialBody,
    DenialStart,
    Deny,
    HandshakeError,
    Message,
    WebSocketCycle,
    handshake_response,
    origin_matcher,
    parse_handshake,
)
from .wsmask import SMALL_FRAME as _SMALL_FRAME
from .wsmask import SmallFrameMasking
from .wsmask import unmask as _unmask

if TYPE_CHECKING:
    from .channel import HTTPChannel
    from .runner import WebSocketTask
    from .server import ASGIFactory

__all__ = ["WebSocketConnection", "WebSocketServer"]

log = Logger(namespace="twisted_asgi.websocket")

_OPEN = WebSocketProtocol.STATE_OPEN
_CLOSED = WebSocketProtocol.STATE_CLOSED

# Where a connection is, seen from this module.
_HANDSHAKE = "handshake"  # the app is deciding on websocket.connect
_DENIAL = "denial"  # the app's own HTTP response is being sent
_OPEN_WS = "open"  # 101 sent; Autobahn frames
_DONE = "done"  # answered without a WebSocket, or the connection is gone

_GOING_AWAY = 1001
_INTERNAL_ERROR = 1011
_ABNORMAL = 1006  # RFC 6455 §7.1.5: closed without a Close frame (never sent)

#: Queued frame bytes that are sent at once rather than at the end of the loop pass.
_FLUSH_AT = 65536

# Why the server stops reading from the client (a bit mask).
_PAUSE_QUEUE = 1  # the app has limit_ws_queue messages waiting
_PAUSE_WRITE = 2  # the client does not read what we send

_DEFLATE_WINDOW_BITS = 12
_DEFLATE_MEM_LEVEL = 5

#: A piece of a message at least this long is kept as it arrived; shorter
#: ones are joined into one bytearray (see :meth:`_Framing._onMessageBegin`):
#: a kept piece costs its 33-byte header and an 8-byte list slot, under 1%.
_PIECE = 4096

_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


def _valid_utf8(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 as RFC 3629 defines it (what RFC 6455 §8.1 asks of text)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def frame_head(opcode: int, length: int) -> bytes:
    """The header of an unmasked, unfragmented, uncompressed server frame
    (RFC 6455 §5.2): FIN, ``opcode``, and the payload ``length`` in its
    shortest encoding."""
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 65536:
        return _HEAD16.pack(0x80 | opcode, 126, length)
    return _HEAD64.pack(0x80 | opcode, 127, length)


#: frame_head of each length under 126, for binary and for text messages.
_BINARY_HEADS = [frame_head(2, n) for n in range(126)]
_TEXT_HEADS = [frame_head(1, n) for n in range(126)]


class _AutobahnLog:
    """Autobahn's ``self.log``. Its debug lines (dozens per message) are for
    Autobahn's own developers; its warnings are about clients (a protocol
    error, a missed pong), which :class:`WebSocketConnection` logs itself at
    info with the client's address, like a 400 on HTTP/1.1. Both cost nothing
    here. A plain object, not a :class:`Logger`, which as a class attribute
    would build a new logger on every access."""

    __slots__ = ()

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    warn = debug

    def info(self, format: str, **kwargs: Any) -> None:
        _autobahn_log.info(format, **kwargs)

    def error(self, format: str, **kwargs: Any) -> None:
        _autobahn_log.error(format, **kwargs)


_autobahn_log = Logger(namespace="twisted_asgi.websocket.autobahn")


class _Framing(SmallFrameMasking):  # wsmask: our masker, on our classes only
    """Autobahn's server protocol reduced to framing for one connection: what
    both ways of running it share (:class:`_FastFraming` on Autobahn's
    adapter hooks, :func:`public_framing`'s on its public API; see
    :mod:`twisted_asgi._upstream.autobahn`), talking to
    :class:`WebSocketConnection` instead of to a Twisted transport.
    """

    log = _AutobahnLog()
    peer: str | None = "websocket client"
    # Autobahn copies these options from its factory to each connection (and
    # pretty-prints them, 90% of its set-up time); ours are class attributes
    # of the subclass :func:`_framing_class` makes, so there is nothing to copy.
    CONFIG_ATTRS: list[str] = []

    #: Whether whole small data frames skip Autobahn's frame machinery (see
    #: :meth:`_FastFraming.processData`) and an app's message on a connection
    #: without compression is framed here (:meth:`WebSocketConnection.send_ws`);
    #: off only to test that both ways agree, and on the public path.
    fast_frames = True

    def __init__(self, handler: WebSocketConnection) -> None:
        super().__init__()
        self.handler = handler

    # What the bases of _upstream.autobahn give (declared for the type checker).
    if TYPE_CHECKING:
        deflate: PerMessageDeflate | None

        def open_ws(self, accept: PerMessageDeflateOfferAccept | None, subprotocol: str | None) -> None: ...
        def feed(self, data: bytes) -> None: ...
        def consume(self) -> None: ...
        def lost(self, reason: Any) -> None: ...
        def send_close(self, code: int | None, reason: bytes | None) -> None: ...
        def too_big(self, size: int, limit: int, reason: str) -> None: ...
        def traffic_seen(self) -> None: ...
        def suspend_pings(self) -> None: ...
        def resume_pings(self) -> None: ...

    def read_paused(self) -> bool:
        """Stop between frames: the app's queue is full."""
        return self.handler.read_paused

    def write_out(self, data: bytes) -> None:
        self.handler.queue(data)

    def close_connection(self, abort: bool = False) -> None:
        if abort and self.wasClean:
            # Autobahn drops a server's connection with an abort once the
            # client answered our Close: a TCP reset, which browsers report as
            # an unclean close (wasClean false) and proxies log as an error.
            # The closing handshake is complete: close with a FIN (RFC 6455 §7.1.1).
            abort = False
        self.handler.close_transport(abort)

    # A message's data is gathered here rather than by Autobahn's
    # onMessage* methods, which keep one bytes object per frame (and a list per
    # frame) until the message ends, without counting frames: an endless run of
    # empty continuation frames grew a list of references and never reached
    # the size limit, and each 1-byte fragment cost about 56 bytes. Here a
    # piece of at least _PIECE bytes (an unmasked or inflated part of a frame)
    # is kept as it is, and shorter ones are appended to one bytearray, so the
    # memory of a message is its size plus at most a few percent, however it is
    # fragmented; and the frames of a message are counted (empty ones too)
    # against maxMessageFrames. RFC 6455 §10.4 names both attacks: "a single
    # big frame" and "a long stream of small frames that are a part of a
    # fragmented message".

    #: Most data frames in one message (``limit_ws_fragments``; 0: no limit).
    maxMessageFrames = 0
    #: The frames of the message being received so far.
    message_frames = 0
    #: Its pieces of at least _PIECE bytes, and runs of shorter ones, in order;
    #: None outside a message and once the connection failed.
    message_parts: list[bytes | bytearray] | None = None
    #: Shorter pieces that came after the last of message_parts.
    message_tail: bytearray | None = None

    def on_message_begin(self, isBinary: bool) -> None:
        self.message_is_binary = isBinary
        self.message_data_total_length = 0  # Autobahn's onFrameData reads and adds to it
        self.message_frames = 0
        self.message_parts = []
        self.message_tail = None

    def on_message_frame_begin(self, length: int) -> None:
        # Autobahn's onMessageFrameBegin (the same size checks, in the same
        # order) without its per-frame list, and with the frame count.
        frames = self.message_frames = self.message_frames + 1
        total = self.message_data_total_length = self.message_data_total_length + length
        if self.failedByMe:
            return
        if 0 < self.maxMessagePayloadSize < total:
            self.wasMaxMessagePayloadSizeExceeded = True
            self.too_big(
                total,
                self.maxMessagePayloadSize,
                f"received WebSocket message size {total} exceeds payload limit of {self.maxMessagePayloadSize} octets",
            )
        elif 0 < self.maxFramePayloadSize < length:
            self.wasMaxFramePayloadSizeExceeded = True
            self.too_big(
                length,
                self.maxFramePayloadSize,
                f"received WebSocket frame size {length} exceeds payload limit of {self.maxFramePayloadSize} octets",
            )
        elif 0 < self.maxMessageFrames < frames:
            # 1009 like the two size limits: RFC 6455 §7.4.1 keeps 1008 for
            # when "there is no other more suitable status code (e.g., 1003 or
            # 1009)", and §10.4 puts this limit beside theirs.
            self.too_big(
                frames,
                self.maxMessageFrames,
                f"received WebSocket message in more than {self.maxMessageFrames} frames",
            )

    def on_message_frame_data(self, payload: bytes) -> None:
        parts = self.message_parts
        if parts is None or self.failedByMe:
            return
        if len(payload) >= _PIECE:
            tail = self.message_tail
            if tail is not None:
                parts.append(tail)
                self.message_tail = None
            parts.append(payload)
        elif payload:
            tail = self.message_tail
            if tail is None:
                self.message_tail = bytearray(payload)
            else:
                tail += payload

    def on_message_frame_end(self) -> None:
        pass  # the frame's data is already in the message

    def on_message_end(self) -> None:
        parts, tail = self.message_parts, self.message_tail
        self.message_parts = self.message_tail = None
        if self.failedByMe or parts is None:
            return
        if tail is not None:
            parts.append(tail)
        if not parts:
            payload = b""
        elif len(parts) == 1:
            payload = bytes(parts[0])  # the same object when it is bytes
        else:
            payload = b"".join(parts)
        self.handler.message_received(payload, self.message_is_binary)

    def on_close(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not wasClean:
            reason = self.wasNotCleanReason  # without Autobahn's wrapping text
        self.handler.framing_closed(code, reason)

    def on_failing(self) -> None:
        # What the unfinished message gathered goes now, not when TCP closes.
        self.message_parts = self.message_tail = None

    def on_failed(self, code: int, reason: str) -> None:
        self.handler.failed(code, reason)

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        stop = WebSocketProtocol.onCloseFrame(self, code, reasonRaw)  # type: ignore[arg-type]
        if not self.failedByMe:
            # The client closed: the app hears it now, not when TCP closes.
            self.handler.peer_closed(self.remoteCloseCode, self.remoteCloseReason)
        return stop

    def onAutoPingTimeout(self) -> None:
        if self.handler.metrics is not None:
            self.handler.metrics.timeout("timeout_ws_ping")
        log.info("WebSocket client {client} did not answer a ping in time", client=self.handler.channel.client_text())
        WebSocketProtocol.onAutoPingTimeout(self)

    def onCloseHandshakeTimeout(self) -> None:
        if self.state != _CLOSED:
            if self.handler.metrics is not None:
                self.handler.metrics.timeout("timeout_ws_close")
            log.info(
                "WebSocket client {client} did not answer our Close in time", client=self.handler.channel.client_text()
            )
        WebSocketProtocol.onCloseHandshakeTimeout(self)


#: Autobahn's entry point for received bytes (see :mod:`twisted_asgi._upstream.autobahn`).
_autobahn_feed = upstream_autobahn.HookedProtocol.feed


class _FastFraming(_Framing, upstream_autobahn.HookedProtocol):
    """The fast path: Autobahn's framework-neutral protocol, this class its
    network adapter (:class:`~twisted_asgi._upstream.autobahn.HookedProtocol`
    binds Autobahn's hooks to the ``on_*`` methods above)."""

    def feed(self, data: bytes) -> None:
        """Bytes from the client. When nothing is left over from the last read
        (the common case: each read ends on a frame boundary), the whole small
        data frames at the start of ``data`` are taken here in one loop, with an
        offset rather than a copy of the rest per frame, each in the steps of
        :meth:`processData`'s fast path; the first frame that is anything else
        (or the app's queue filling up) hands the rest to Autobahn, as
        :meth:`processData` does. Otherwise Autobahn's own entry point."""
        if (
            self.data
            or type(data) is not bytes
            or not self.fast_frames
            or self.state != _OPEN
            or self.inside_message
            or self.current_frame is not None
            or self.logOctets
        ):
            _autobahn_feed(self, data)
            return
        size = len(data)
        self.trafficStats.incomingOctetsWireLevel += size  # what Autobahn's _dataReceived counts
        handler = self.handler
        max_frame = self.maxFramePayloadSize
        max_message = self.maxMessagePayloadSize
        at = 0
        while size - at >= 6 and not handler.paused & _PAUSE_QUEUE:
            b0 = data[at]
            b1 = data[at + 1]
            if not ((b0 == 0x82 or b0 == 0x81) and b1 >= 0x80):
                break
            n = b1 - 0x80
            start = at + 6
            if n >= 126:
                if n != 126 or size - at < 8:
                    break  # a 64-bit length, or its 16 bits not here yet
                n = (data[at + 2] << 8) | data[at + 3]
                start = at + 8
                if n < 126:
                    break  # not minimally encoded: Autobahn fails it
            end = start + n
            if n >= _SMALL_FRAME or end > size or 0 < max_frame < n or 0 < max_message < n:
                break
            # wsmask.unmask, inline: the payload XOR its 4-byte key repeated.
            key = data[start - 4 : start] * ((n + 3) >> 2)
            payload = (
                int.from_bytes(data[start:end], "little") ^ int.from_bytes(key[:n] if len(key) != n else key, "little")
            ).to_bytes(n, "little")
            binary = b0 == 0x82
            if not (binary or payload.isascii() or _valid_utf8(payload)):
                break
            at = end
            if self.autoPingTimeoutCall is not None:
                self.traffic_seen()  # any traffic will do
            handler.message_received(payload, binary)
            if self.state != _OPEN:
                break
        if at < size:
            self.data = data[at:] if at else data
            if self.state != _CLOSED:
                self.consumeData()

    def processData(self) -> bool:
        if self.current_frame is None:
            # Stop between frames while the app's queue is full: the rest stays in
            # Autobahn's buffer, so at most one message goes over the bound.
            if self.handler.paused & _PAUSE_QUEUE:
                return False
            # The common frame, handled here in one step: a whole message in one
            # frame (FIN, no RSV bits: not compressed), binary or text, masked,
            # shorter than SMALL_FRAME, already all in the buffer, arriving
            # between messages on an open connection, within the size limits, and
            # for text valid UTF-8. Autobahn would parse its header into a
            # FrameHeader, make a masker and pass the payload through six hooks;
            # what it would conclude is the same (tests/test_websocket_shell.py
            # feeds random frames both ways and compares). Anything else, including
            # every frame it would fail, is left to Autobahn. (:meth:`feed` does the
            # same for the frames at the start of a read.)
            data = self.data
            size = len(data)
            if size >= 6 and self.fast_frames and self.state == _OPEN and not self.inside_message:
                b0 = data[0]
                b1 = data[1]
                if (b0 == 0x82 or b0 == 0x81) and b1 >= 0x80:
                    n = b1 - 0x80
                    start = 6
                    if n >= 126:
                        if n == 126 and size >= 8:
                            n = (data[2] << 8) | data[3]
                            start = 8
                            if n < 126:
                                n = _SMALL_FRAME  # not minimally encoded: Autobahn fails it
                        else:
                            n = _SMALL_FRAME  # a 64-bit length, or its 16 bits not here yet
                    end = start + n
                    if (
                        n < _SMALL_FRAME
                        and end <= size
                        and not 0 < self.maxFramePayloadSize < n
                        and not 0 < self.maxMessagePayloadSize < n
                    ):
                        payload = _unmask(data[start:end], data[start - 4 : start])
                        binary = b0 == 0x82
                        if binary or payload.isascii() or _valid_utf8(payload):
                            self.data = data[end:]
                            if self.autoPingTimeoutCall is not None:
                                self.traffic_seen()  # any traffic will do
                            self.handler.message_received(payload, binary)
                            return end < size
        return WebSocketServerProtocol.processData(self)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        self.handler.queue(data)  # write_out's work, a call less


_public_framing: list[type[_Framing]] = []


def public_framing() -> type[_Framing]:
    """``_PublicFraming``, the fallback: :class:`_Framing` on Autobahn's Twisted
    protocol through its public API
    (:class:`~twisted_asgi._upstream.autobahn_public.PublicProtocol`), used
    where Autobahn lacks a private name the fast path needs. Made on first
    use: its base imports Autobahn's Twisted adapter."""
    if not _public_framing:
        from ._upstream.autobahn_public import PublicProtocol

        made: type[_Framing] = type("_PublicFraming", (_Framing, PublicProtocol), {"fast_frames": False})
        _public_framing.append(made)
    return _public_framing[0]


def _framing_class(config: Any, clock: Any) -> type[_Framing]:
    """A subclass of :class:`_FastFraming` (or, where Autobahn lacks what it
    needs, :func:`public_framing`'s class) whose class attributes are Autobahn's
    options for this server, made once per server; connections share them."""
    options: dict[str, Any] = {
        **upstream_autobahn.SERVER_OPTIONS,
        # "applyMask": SmallFrameMasking's (it unmasks client frames itself).
        "maxFramePayloadSize": config.limit_ws_frame_bytes,
        "maxMessagePayloadSize": config.limit_ws_message_bytes,
        "maxMessageFrames": config.limit_ws_fragments,
        "closeHandshakeTimeout": config.timeout_ws_close,
        "autoPingInterval": config.timeout_ws_ping_interval,
        "autoPingTimeout": config.timeout_ws_ping,
    }
    # Where Autobahn lacks a private name the fast path needs (checked once, at
    # the first WebSocket), Autobahn's Twisted adapter is imported (about 40 ms) and used.
    framing: Any = _FastFraming if upstream_autobahn.problem() is None else public_framing()
    made: type[_Framing] = framing.make_class(options, clock)
    return made


class WebSocketServer:
    """The ``Upgrade: websocket`` handler registered with the factory:
    ``server(channel, request, trailing_bytes)`` takes a connection over."""

    def __init__(self, factory: ASGIFactory) -> None:
        import txaio

        # Autobahn makes a Deferred or two per connection through txaio.
        txaio.use_twisted()
        self.factory = factory
        self.config = factory.config
        self.framing = _framing_class(factory.config, factory.clock)
        self.origin_allowed = origin_matcher(factory.config.ws_allowed_origins)
        # Which WebSocket fast paths are off, once per process (for HTTP/1.1's
        # upgrade and HTTP/2's extended CONNECT alike, whichever comes first).
        report_fast_paths(log, websocket=True)

    def __call__(self, channel: HTTPChannel, request: Request, trailing: bytes) -> None:
        connection = WebSocketConnection(self, channel, request)
        channel.hand_over(connection)
        connection.start(trailing)

    def open_stream(self, stream: Any, request: Request) -> StreamWebSocketConnection:
        """Serve a WebSocket on an HTTP/2 stream (RFC 8441): ``stream`` is
        :class:`~twisted_asgi.h2channel.WebSocketStream`, which stands in for
        the channel."""
        connection = stream.ws = StreamWebSocketConnection(self, stream, request)
        connection.start(b"")
        return connection


class WebSocketConnection:
    """One WebSocket connection after its upgrade request: the handshake, then
    Autobahn's framing, between the channel and the app's task.

    It is the channel's handler (``data_received``, ``connection_lost``,
    ``pause_producing``, ``resume_producing``, ``drain``, ``abort``) and the
    task's stream (``send_ws``, ``resume_reading``, ``app_finished``,
    ``write_paused``).
    """

    protocol_name = "websocket"
    #: The status of an accepted handshake, for the access log.
    accept_status = 101

    __slots__ = (
        "buffer",
        "channel",
        "closing",
        "denial",
        "discarding",
        "draining",
        "framing",
        "handshake",
        "lost",
        "metrics",
        "counted",
        "opened_at",
        "paused",
        "request",
        "server",
        "state",
        "task",
        "timer",
        "write",
        "write_soon",
    )

    def __init__(self, server: WebSocketServer, channel: HTTPChannel, request: Request) -> None:
        self.server = server
        self.channel = channel
        self.request = request
        self.state = _HANDSHAKE
        self.task: WebSocketTask | None = None
        self.framing: _Framing | None = None
        self.handshake: Any = None
        #: The channel reported the connection lost.
        self.lost = False
        #: Bytes the client sent before our 101 (RFC 6455 §4.1 says it should wait).
        self.buffer = b""
        #: Why reading is paused (``_PAUSE_*`` bits), 0 while reading.
        self.paused = 0
        #: The server is closing: later client messages are dropped.
        self.discarding = False
        self.draining = channel.draining
        self.denial: Any = None
        #: The handshake timer, then the lifetime timer.
        self.timer: Any = None
        self.opened_at = server.factory.clock.seconds()
        self.metrics = server.factory.metrics
        #: The connection that counts this WebSocket's messages (metrics on),
        #: an attribute increment per message rather than a call.
        self.counted = channel.counted if self.metrics is not None else None
        #: Write at once (after the frames the channel holds).
        self.write: Callable[[bytes], None] = channel.write_now
        #: Write with the others of this loop pass (the channel's coalescer).
        self.write_soon: Callable[[bytes, int], None] = channel.write_soon
        #: The transport's close has begun (it is asked once).
        self.closing = False

    # -- start -------------------------------------------------------------------

    def start(self, trailing: bytes) -> None:
        """Check the handshake and give ``websocket.connect`` to the app."""
        server = self.server
        config = server.config
        request = self.request
        self.buffer = trailing
        try:
            self.handshake = parse_handshake(request, server.origin_allowed)
        except HandshakeError as exc:
            log.info(
                "Refused WebSocket handshake from {client}: {reason} ({status})",
                client=self.channel.client_text(),
                reason=exc.reason,
                status=exc.status,
            )
            self._http_error(exc.status, exc.reason, exc.headers)
            return
        scope = websocket_scope(request, self.channel.info, self.handshake.subprotocols)  # type: ignore[arg-type]
        cycle = WebSocketCycle(self.handshake.subprotocols, config.limit_ws_queue, config.limit_receive_buffer_bytes)
        server.factory.runner.start_websocket(scope, cycle, self)
        if config.timeout_ws_handshake:
            self.timer = server.factory.clock.callLater(config.timeout_ws_handshake, self._handshake_timed_out)

    # -- the channel's handler side ------------------------------------------------

    def data_received(self, data: bytes) -> None:
        framing = self.framing
        if framing is not None:
            framing.feed(data)
        elif self.state is _HANDSHAKE:
            self.buffer += data
            if len(self.buffer) > self.server.config.limit_receive_buffer_bytes:
                if self.metrics is not None:
                    self.metrics.limit("limit_receive_buffer_bytes")
                self._fail_handshake(400, "data sent before the handshake completed")

    def connection_lost(self, reason: Failure) -> None:
        self.lost = True
        self._cancel_timer()
        was_open = self.state is _OPEN_WS
        self.state = _DONE
        framing = self.framing
        if framing is not None:
            framing.lost(reason)  # reports the close through framing_closed
        if self.task is not None:
            self.task.feed_disconnect(_ABNORMAL)  # no-op when the close was reported
        if was_open and self.channel.logging:
            code = self.task.cycle.close_code if self.task is not None else _ABNORMAL
            self._log_access("WSDISCONNECT", code)
        self._release()

    def _release(self) -> None:
        """Once the connection is lost and the app has returned, let go of the
        task and the framing, which both refer back to this object: a closed
        WebSocket is freed by reference counting, as every connection is."""
        task = self.task
        if self.state is _DONE and self.lost and (task is None or task.returned):
            self.task = None
            framing, self.framing = self.framing, None
            if framing is not None:
                # Autobahn resolves its is_closed Deferred with the protocol
                # itself (a cycle); nothing waits on it once we are done.
                framing.is_closed = framing.is_open = None

    def pause_producing(self) -> None:
        """The client does not read what we send (the transport's buffer is
        full): ``send()`` waits (the channel set ``write_paused``), and we stop
        reading too, or a client that sends pings and reads no pongs would
        fill our buffer without bound. The channel's ``timeout_send`` bounds
        the wait (:meth:`send_timed_out`)."""
        self._pause(_PAUSE_WRITE)

    def resume_producing(self) -> None:
        self._resume(_PAUSE_WRITE)
        if self.task is not None:
            self.task.writable()

    def drain(self) -> None:
        """Graceful shutdown: tell the app and close an open WebSocket with 1001;
        a handshake or denial in progress may finish first."""
        self.draining = True
        if self.state is _OPEN_WS:
            try:
                self._go_away(_GOING_AWAY, "server shutting down")
            except Exception:  # noqa: BLE001 (one broken socket must not stop the drain of the others)
                log.failure(
                    "Could not send the shutdown Close to WebSocket client {client}; dropping it",
                    level=LogLevel.error,
                    client=self.channel.client_text(),
                )
                # The app was told (1001) before the write failed; it may finish.
                self.state = _DONE
                self.close_transport(abort=True)

    def abort(self) -> None:
        """Drop the connection now (graceful shutdown ran out of time)."""
        self.state = _DONE
        self.channel.drop()
        task = self.task
        if task is not None:
            task.feed_disconnect(_GOING_AWAY, "server shutting down")
            task.stop()

    # -- the task's stream side --------------------------------------------------

    #: The channel's ``write_paused`` (read after every ``send()``): a C getter,
    #: no Python frame.
    write_paused = property(attrgetter("channel.write_paused"))

    def send_ws(self, task: WebSocketTask, event: Any) -> None:
        kind = type(event)
        if kind is Message:
            counted = self.counted
            if counted is not None:
                counted.ws_messages_sent += 1
            framing = self.framing
            if framing is None or framing.state != _OPEN:
                # Dropped (ping timeout) a moment before the transport says so.
                task.feed_disconnect(_ABNORMAL)
                raise ClientDisconnected("WebSocket connection is closed")
            data = event.data
            if framing.deflate is None and framing.fast_frames:
                # What Autobahn's sendMessage would send (our options: no
                # fragmenting, no masking): one frame, written here.
                n = len(data)
                if n < 126:
                    self.write_soon((_BINARY_HEADS if event.binary else _TEXT_HEADS)[n] + data, _FLUSH_AT)
                    return
                head = frame_head(2 if event.binary else 1, n)
                write_soon = self.write_soon
                if n < _SMALL_FRAME:
                    write_soon(head + data, _FLUSH_AT)
                else:
                    write_soon(head, _FLUSH_AT)
                    write_soon(data, _FLUSH_AT)
                return
            # The message limits bound what clients send, not what the app sends.
            framing.maxMessagePayloadSize = 0
            try:
                framing.sendMessage(data, event.binary)
            finally:
                del framing.maxMessagePayloadSize
        elif kind is Close:
            framing = self.framing
            if framing is not None and framing.state == _OPEN:
                framing.send_close(event.code, event.reason or None)
        elif kind is DenialBody:
            self._denial_body(event)
        elif self.state is not _HANDSHAKE:
            # The handshake timed out, or the client left, while the app decided.
            raise ClientDisconnected("WebSocket connection is closed")
        elif kind is Accept:
            self._accept(event)
        elif kind is Deny:
            self._http_error(403, "the application refused the WebSocket")
        elif kind is DenialStart:
            self._denial_start(event)

    def resume_reading(self, task: WebSocketTask) -> None:
        self._resume(_PAUSE_QUEUE)

    def app_finished(self, task: WebSocketTask) -> None:
        state = self.state
        if state is _HANDSHAKE:
            self._fail_handshake(task.error_status(), "the application did not accept the WebSocket")
        elif state is _DENIAL:
            denial = self.denial
            if denial is not None and denial.head_on_wire:
                self.state = _DONE
                self.close_transport()
            else:
                self._fail_handshake(500, "the application did not complete its denial response")
        elif state is _OPEN_WS:
            # Messages that still arrive have no one to go to.
            self.discarding = True
            self._resume(_PAUSE_QUEUE)
            framing = self.framing
            if framing is not None and framing.state == _OPEN:
                # ASGI www spec: the socket lives as long as the app.
                code = task.close_code()
                framing.send_close(code, b"internal server error" if code == _INTERNAL_ERROR else None)
        self._release()

    # -- from the framing ---------------------------------------------------------

    def message_received(self, payload: bytes, binary: bool) -> None:
        counted = self.counted
        if counted is not None:
            counted.ws_messages_received += 1
        task = self.task
        if self.discarding or task is None or task.outcome is not None:
            return
        if task.feed_message(payload, binary):
            self._pause(_PAUSE_QUEUE)

    def peer_closed(self, code: int | None, reason: str | None) -> None:
        if self.task is not None:
            self.task.feed_disconnect(1005 if code is None else code, reason or "")

    def failed(self, code: int, reason: str) -> None:
        """Autobahn failed the connection (protocol error, size, UTF-8)."""
        if code == 1009 and self.metrics is not None:
            self.metrics.websocket_too_big(self.framing)
        log.info(
            "WebSocket from {client} failed with {code}: {reason}",
            client=self.channel.client_text(),
            code=code,
            reason=reason,
        )
        self.discarding = True
        if self.task is not None:
            self.task.feed_disconnect(code, reason)
        # Our Close frame is written: close TCP once it is sent rather than wait
        # for a reply from a client that just broke the protocol (RFC 6455
        # §7.1.7 "Fail the WebSocket Connection"; the server closes first, §7.1.1).
        # Its reply may sit behind bytes we now discard, so it may never be seen.
        self.close_transport()

    def framing_closed(self, code: int | None, reason: str | None) -> None:
        if self.task is not None:
            self.task.feed_disconnect(1005 if code is None else code, reason or "")

    def queue(self, data: bytes) -> None:
        """Write frame bytes, together with the others written in this
        event-loop pass (the channel's one coalescer, ``write_soon``): an app
        that echoes the several messages one read brought answers them with
        one ``send`` instead of one each. From 64 KiB on, the batch goes out
        at once, so the transport still sees (and pushes back on) a large
        burst."""
        self.channel.write_soon(data, _FLUSH_AT)

    def close_transport(self, abort: bool = False) -> None:
        """Close the connection once what was written is sent (or at once with ``abort``)."""
        if abort:
            self.channel.drop()
            return
        if self.closing:
            return
        self.closing = True
        self.channel.close_transport()

    # -- handshake ------------------------------------------------------------------

    def _accept(self, event: Accept) -> None:
        self._cancel_timer()
        server = self.server
        config = server.config
        framing = server.framing(self)
        compression: PerMessageDeflateOfferAccept | None = None
        offer_text: str | None = None
        if config.ws_compression and self.handshake.extensions:
            compression, offer_text = _negotiate_deflate(
                framing, self.handshake.extensions, config.limit_ws_message_bytes
            )
        self._write_accept(event, offer_text)
        self.state = _OPEN_WS
        self.framing = framing
        framing.open_ws(compression, event.subprotocol)
        if self.paused:
            framing.suspend_pings()
        clock = server.factory.clock
        if self.channel.logging:
            # The handshake's duration; then the WebSocket's from the same clock read.
            self.opened_at = self.channel.log_websocket(self.request, "WSCONNECT", self.accept_status, self.opened_at)
        if config.timeout_ws_lifetime:
            self.timer = clock.callLater(config.timeout_ws_lifetime, self._lifetime_over)
        buffered, self.buffer = self.buffer, b""
        if self.draining:
            self._go_away(_GOING_AWAY, "server shutting down")
        elif buffered:
            framing.feed(buffered)

    def _write_accept(self, event: Accept, extensions: str | None) -> None:
        """Complete the handshake on the wire: the 101 (RFC 6455 §4.2.2)."""
        self.write(
            handshake_response(
                self.handshake.key, event.subprotocol, extensions, event.headers, self.server.config.server_name
            )
        )

    def _denial_start(self, event: DenialStart) -> None:
        self._cancel_timer()
        self.state = _DENIAL
        self.denial = self._start_denial(event)

    def _start_denial(self, event: DenialStart) -> Any:
        """The serialiser of the app's denial response: ``send_body(data, more)``
        returns the bytes to write; ``response_complete``, ``status``,
        ``bytes_sent`` and ``head_on_wire`` tell how far it is."""
        denial = HTTP11Connection(self.server.config)
        denial.keep_alive = False
        denial.start_response(self.request, event.status, event.headers)
        return denial

    def _denial_body(self, event: DenialBody) -> None:
        denial = self.denial
        if denial is None or self.state is not _DENIAL:
            return
        try:
            data = denial.send_body(event.data, event.more)
        except AppError:
            self.state = _DONE
            self.close_transport()
            raise
        if data:
            self.write(data)
        if denial.response_complete:
            self.state = _DONE
            if self.channel.logging:
                self._log_http(denial.status, denial.bytes_sent)
            self.close_transport()

    def _fail_handshake(self, status: int, reason: str) -> None:
        """Answer an HTTP error instead of a 101 and tell the app the client is gone."""
        if self.task is not None:
            self.task.feed_disconnect(_ABNORMAL)
        self._http_error(status, reason)

    def _http_error(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self._cancel_timer()
        if self.state is _DONE:
            return
        self.state = _DONE
        size = self._write_error(status, reason, headers)
        if self.channel.logging:
            self._log_http(status, size)
        self.close_transport()

    def _write_error(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None) -> int:
        """Write an error response with the extra ``headers``; return its body size."""
        data = error_response(status, reason, self.server.config.server_name)
        if headers:
            # After the status line; error_response ends every line with CRLF.
            extra = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            line, _, rest = data.partition(b"\r\n")
            data = line + b"\r\n" + extra + rest
        self.write(data)
        return body_size(data)

    def _handshake_timed_out(self) -> None:
        self.timer = None
        if self.state is _HANDSHAKE:
            # The app's fault, not the client's: a warning, as for HTTP's response timeout.
            if self.metrics is not None:
                self.metrics.timeout("timeout_ws_handshake")
            log.warn(
                "WebSocket app did not answer websocket.connect from {client} within {timeout}s",
                client=self.channel.client_text(),
                timeout=self.server.config.timeout_ws_handshake,
            )
            self._fail_handshake(503, "the application did not answer the WebSocket handshake in time")

    # -- closing --------------------------------------------------------------------

    def _go_away(self, code: int, reason: str) -> None:
        """The server closes an open WebSocket (graceful shutdown, end of its
        lifetime): the app is told first, then the client gets a Close frame.
        What the client sends meanwhile is dropped, and its Close is waited for
        (RFC 6455 §7.1.1: then the server closes TCP), for ``timeout_ws_close``
        seconds at most (Autobahn's close handshake timer) and never past the
        graceful shutdown timeout (which aborts what is left). A client that
        broke the protocol is not waited for: see ``_Framing._fail_connection``."""
        self.discarding = True
        if self.task is not None:
            self.task.feed_disconnect(code, reason)
        framing = self.framing
        if framing is not None and framing.state == _OPEN:
            framing.send_close(code, reason.encode("utf-8"))
        else:
            self.close_transport()
        self._resume(_PAUSE_QUEUE)

    def _lifetime_over(self) -> None:
        self.timer = None
        if self.state is _OPEN_WS:
            if self.metrics is not None:
                self.metrics.timeout("timeout_ws_lifetime")
            self._go_away(_GOING_AWAY, "connection lifetime reached")

    @property
    def read_paused(self) -> bool:
        """True while the app's queue is full (Autobahn then stops between frames)."""
        return bool(self.paused & _PAUSE_QUEUE)

    def _pause(self, reason: int) -> None:
        if not self.paused:
            self.channel.stop_reading()
            if self.framing is not None:
                # No pong can be seen while we do not read: no ping is timed.
                self.framing.suspend_pings()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        framing = self.framing
        if reason == _PAUSE_QUEUE and framing is not None:
            # Frames already received come first; they may fill the queue again.
            framing.consume()
        if self.paused:
            return
        if framing is not None:
            framing.resume_pings()
        transport = self.channel.transport
        if self.state is not _DONE and not getattr(transport, "disconnecting", False):
            self.channel.start_reading()

    def send_timed_out(self) -> bool:
        """The channel's send timeout: the app hears 1006, the connection is dropped."""
        if self.state is _DONE:
            return False
        if self.task is not None:
            self.task.feed_disconnect(_ABNORMAL, "the client stopped reading")
        self.close_transport(abort=True)
        return True

    def _cancel_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()

    # -- logging ---------------------------------------------------------------------

    def _log_access(self, kind: str, code: int) -> None:
        self.channel.log_websocket(self.request, kind, code, self.opened_at)

    def _log_http(self, status: int, size: int) -> None:
        self.channel.log_http(self.request, status, size, self.opened_at)


class StreamWebSocketConnection(WebSocketConnection):
    """A WebSocket on an HTTP/2 stream (RFC 8441): the same handshake checks,
    ASGI conversation and Autobahn framing as over HTTP/1.1; its ``channel``
    is an :class:`~twisted_asgi.h2channel.WebSocketStream`, which writes the
    frames as the stream's DATA (its flow control is the backpressure) and
    feeds it the client's. Only the HTTP parts differ: the handshake is
    answered with HEADERS ``:status 200`` (no ``Sec-WebSocket-Accept``, RFC
    8441 §5), and refusals and denial responses are HTTP/2 responses."""

    __slots__ = ()

    accept_status = 200
    channel: Any

    def _write_accept(self, event: Accept, extensions: str | None) -> None:
        headers = list(event.headers)
        if event.subprotocol is not None:
            headers.append((b"sec-websocket-protocol", event.subprotocol.encode("ascii")))
        if extensions:
            headers.append((b"sec-websocket-extensions", extensions.encode("ascii")))
        self.channel.accept(headers)

    def _write_error(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None) -> int:
        size: int = self.channel.error_response(status, reason, headers or ())
        return size

    def _start_denial(self, event: DenialStart) -> Any:
        return self.channel.start_denial(event.status, event.headers)

    def app_finished(self, task: WebSocketTask) -> None:
        channel = self.channel
        WebSocketConnection.app_finished(self, task)
        channel.app_finished()


def _negotiate_deflate(
    framing: _Framing, offers: str, limit: int
) -> tuple[PerMessageDeflateOfferAccept | None, str | None]:
    """Accept the client's first valid permessage-deflate offer (RFC 7692 §5:
    an offer with unknown or invalid parameters is declined, not fatal)."""
    for name, params in upstream_autobahn.parse_extensions(framing, offers):
        if name != "permessage-deflate":
            continue
        try:
            offer = PerMessageDeflateOffer.parse(params)
            # Our compressor uses a 4 KiB window and memLevel 5 (about 32 KiB
            # per connection instead of zlib's 256 KiB default): a smaller
            # window than agreed is always valid for the peer's inflater
            # (RFC 7692 §7.1.2.1), and a client's own limit is kept.
            accept = PerMessageDeflateOfferAccept(
                offer,
                window_bits=min(_DEFLATE_WINDOW_BITS, offer.request_max_window_bits or _DEFLATE_WINDOW_BITS),
                mem_level=_DEFLATE_MEM_LEVEL,
                max_message_size=limit or None,
            )
        except Exception:  # noqa: BLE001, S112 (Autobahn raises bare Exception for a bad offer)
            continue
        return accept, accept.get_extension_string()
    return None, None
