"""Autobahn's private names, fenced (see the package docstring).

twisted_asgi.websocket runs Autobahn's framing (unmasking, UTF-8 checks,
permessage-deflate, limits, pings, the closing handshake) under its own
handshake and its own transport. It does so in one of two ways, both offering
twisted_asgi.websocket the same methods (:data:`OURS`), chosen once, at the
first WebSocket (:func:`protocol_base`):

:class:`HookedProtocol` (the fast path) is Autobahn's framework-neutral
``WebSocketServerProtocol`` acting as its own network adapter, as Autobahn's
Twisted and asyncio adapters do. Read from autobahn 26.10.1 and 26.11.1 (the
same source in these parts), autobahn/websocket/protocol.py and
autobahn/twisted/websocket.py:

* the adapter hooks the framework-neutral code calls (twisted/websocket.py,
  ``WebSocketAdapterProtocol``): ``_onMessageBegin``,
  ``_onMessageFrameBegin``, ``_onMessageFrameData``, ``_onMessageFrameEnd``,
  ``_onMessageEnd``, ``_onPing``, ``_onPong``, ``_onClose``,
  ``_closeConnection``, bound to our methods of :data:`HOOKS`;
* the entry points an adapter calls (protocol.py): ``_connectionMade``,
  ``_dataReceived``, ``_connectionLost``;
* ``_fail_connection`` and ``_max_message_size_exceeded`` (how a connection
  is failed with a close code), ``_sendAutoPing`` and
  ``_cancelAutoPingTimeoutCall`` (its automatic pings), ``_parseExtensionsHeader``;
* ``_perMessageCompress`` (the negotiated compression, set by
  ``succeedHandshake``, read by the frame code) and ``factory._batched_timer``
  (the timer factory its pings and closing handshake use).

It spares a Twisted transport, Autobahn's HTTP handshake and its per-hook
forwarding, and lets the whole-small-frame fast path of
twisted_asgi.websocket read Autobahn's buffer (docs/upstream.rst).

:class:`PublicProtocol` (the fallback) is Autobahn's Twisted
``WebSocketServerProtocol`` used as documented: a Twisted protocol on a
transport of ours (:class:`_Transport`), opened by Autobahn's own handshake
(a request made here from constants and the values our handshake already
checked; Autobahn's 101 is dropped, ours was sent), its public hooks
(``onConnect``, ``onMessageBegin``, ``onMessageFrameBegin``,
``onMessageFrameData``, ``onMessageFrameEnd``, ``onMessageEnd``, ``onPong``,
``onClose``), ``sendMessage``, ``sendPing``, ``sendCloseFrame``,
``dropConnection``, and the state Autobahn keeps in public attributes
(``state``, ``failedByMe``, ``wasClean``, ``localCloseCode``...). Its pings
and closing-handshake timeout are run here, on the server's clock.

Where a private name :class:`HookedProtocol` needs is missing, or its probe
(:func:`_probe`) sees Autobahn behave otherwise than read, :data:`PROBLEM`
says why and the fallback is used; ``fastpaths.py`` names it in its start-up
line. ``TWISTED_ASGI_AUTOBAHN_PUBLIC=1`` in the environment forces the
fallback (to test and to measure it).

Imports Twisted only through Autobahn's Twisted adapter.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory as _TwistedFactory
from autobahn.twisted.websocket import WebSocketServerProtocol as _TwistedProtocol
from autobahn.websocket.compress import PerMessageDeflate, PerMessageDeflateOfferAccept
from autobahn.websocket.protocol import WebSocketProtocol, WebSocketServerProtocol

__all__ = [
    "HOOKS",
    "OURS",
    "HookedProtocol",
    "PublicProtocol",
    "Timers",
    "parse_extensions",
    "problem",
    "protocol_base",
]

OPEN = WebSocketProtocol.STATE_OPEN
CLOSING = WebSocketProtocol.STATE_CLOSING
CLOSED = WebSocketProtocol.STATE_CLOSED

#: Autobahn's adapter hooks (autobahn 26.10.1 twisted/websocket.py,
#: ``WebSocketAdapterProtocol``) -> the method of ours bound in their place.
HOOKS = {
    "_onMessageBegin": "on_message_begin",
    "_onMessageFrameBegin": "on_message_frame_begin",
    "_onMessageFrameData": "on_message_frame_data",
    "_onMessageFrameEnd": "on_message_frame_end",
    "_onMessageEnd": "on_message_end",
    "_onClose": "on_close",
    "_closeConnection": "close_connection",
}

#: Autobahn's public hooks (autobahn 26.10.1 websocket/protocol.py,
#: ``IWebSocketChannel``) -> the same methods of ours, on the fallback.
PUBLIC_HOOKS = {
    "onMessageBegin": "on_message_begin",
    "onMessageFrameBegin": "on_message_frame_begin",
    "onMessageFrameData": "on_message_frame_data",
    "onMessageFrameEnd": "on_message_frame_end",
    "onMessageEnd": "on_message_end",
    "onClose": "on_close",
}

#: What both bases offer twisted_asgi.websocket (its names, Autobahn's on neither).
OURS = (
    "open_ws",
    "feed",
    "consume",
    "lost",
    "send_close",
    "too_big",
    "traffic_seen",
    "suspend_pings",
    "resume_pings",
    "deflate",
)

#: The private names of Autobahn that HookedProtocol calls or overrides: on
#: this class (autobahn 26.10.1 websocket/protocol.py) ...
_PROTOCOL_NAMES = (
    "_connectionMade",
    "_connectionLost",
    "_dataReceived",
    "_fail_connection",
    "_max_message_size_exceeded",
    "_sendAutoPing",
    "_cancelAutoPingTimeoutCall",
    "_parseExtensionsHeader",
)
#: ... and on its Twisted adapter (autobahn 26.10.1 twisted/websocket.py).
_ADAPTER_NAMES = ("_onPing", "_onPong", *HOOKS)


class Call:
    """A timer Autobahn may cancel even after it fired (the clock's handles
    are cancelled only while pending)."""

    __slots__ = ("call", "func", "args")

    def __init__(self, clock: Any, delay: float, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.func = func
        self.args = args
        self.call: Any = clock.callLater(delay, self.fire)

    def fire(self) -> None:
        self.call = None
        self.func(*self.args)

    def cancel(self) -> None:
        call, self.call = self.call, None
        if call is not None:
            call.cancel()


class Timers:
    """Autobahn's ``factory._batched_timer`` (``call_later``), on the server's
    injected clock (so timeouts are tested with ``clock.advance``)."""

    __slots__ = ("clock",)

    def __init__(self, clock: Any) -> None:
        self.clock = clock

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any) -> Call:
        return Call(self.clock, delay, func, args)


class _Settings:
    """What Autobahn reads from ``self.factory`` (autobahn 26.10.1
    websocket/protocol.py: ``isServer``, ``server``, ``headers``,
    ``countConnections``, and ``_batched_timer`` for its timers): one per server."""

    isServer = True
    server = None
    headers: dict[str, str] = {}  # read-only; Autobahn's handshake is not used
    countConnections = 0

    def __init__(self, timers: Timers) -> None:
        self._batched_timer = timers  # autobahn 26.10.1 websocket/protocol.py: WebSocketServerFactory's


# -- the fast path: Autobahn's framework-neutral protocol as its own adapter ----------


class HookedProtocol(WebSocketServerProtocol):
    """Autobahn's framework-neutral server protocol, as the network adapter it
    calls: a subclass's methods named in :data:`HOOKS` are bound to Autobahn's
    private hook names when the subclass is made (no call in between)."""

    # Set from the options, and by _connectionMade (protocol.py).
    factory: Any
    autoPingInterval: float
    autoPingTimeoutCall: Any
    autoPingPendingCall: Any
    autoPingRestartOnAnyTraffic: bool

    #: The negotiated permessage-deflate (None: none).
    deflate: PerMessageDeflate | None = None
    #: The ping timer while reading is paused (see :meth:`suspend_pings`).
    paused_pings: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for private, ours in HOOKS.items():
            method = getattr(cls, ours, None)
            if method is not None:
                setattr(cls, private, method)

    # autobahn 26.10.1 twisted/websocket.py: what the Twisted adapter does with
    # these two (its _onOpen is called only by Autobahn's own handshake).

    def _onPing(self, payload: bytes) -> None:
        self.onPing(payload)  # answers with a pong while open

    def _onPong(self, payload: bytes) -> None:
        pass

    # What the framework-neutral protocol calls on its adapter under public
    # names (autobahn 26.10.1 websocket/protocol.py: sendData's transport.write,
    # dropConnection's unregisterProducer).

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        self.write_out(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass  # the channel is the transport's producer

    def unregisterProducer(self) -> None:
        pass

    @classmethod
    def make_class(cls, options: dict[str, Any], clock: Any) -> type:
        """A subclass with Autobahn's ``options`` as class attributes, its
        timers on ``clock``."""
        return type("Framing", (cls,), {**options, "factory": _Settings(Timers(clock))})

    def open_ws(self, accept: PerMessageDeflateOfferAccept | None, subprotocol: str | None) -> None:
        """Enter the OPEN state of a completed handshake: what Autobahn's
        ``succeedHandshake`` (protocol.py) does after writing its own response."""
        self._connectionMade()  # autobahn 26.10.1 websocket/protocol.py: the adapter's entry point
        deflate = PerMessageDeflate.create_from_offer_accept(True, accept) if accept is not None else None
        self.websocket_version = 13
        self.websocket_protocol_in_use = subprotocol
        self.websocket_extensions_in_use = [deflate] if deflate is not None else []
        # autobahn 26.10.1 websocket/protocol.py: succeedHandshake sets it; processData,
        # onFrameBegin/Data/End and sendMessage read it.
        self._perMessageCompress = self.deflate = deflate
        self.inside_message = False
        self.current_frame = None  # type: ignore[assignment]
        self.state = OPEN
        self.resume_pings()

    def feed(self, data: bytes) -> None:
        """Bytes from the client (autobahn 26.10.1 websocket/protocol.py
        ``_dataReceived``, put in this method's place below, a call less)."""
        self._dataReceived(data)

    def consume(self) -> None:
        """Go on with the frames already received (after a pause)."""
        self.consumeData()

    def lost(self, reason: Any) -> None:
        """The transport closed."""
        self._connectionLost(reason)  # autobahn 26.10.1 websocket/protocol.py (overridden below)

    def send_close(self, code: int | None, reason: bytes | None) -> None:
        """Start the closing handshake (protocol.py ``sendCloseFrame``)."""
        self.sendCloseFrame(code, reason, isReply=False)

    def too_big(self, size: int, limit: int, reason: str) -> None:
        """Fail the connection with 1009, as Autobahn does on its own limits."""
        self._max_message_size_exceeded(size, limit, reason)  # autobahn 26.10.1 websocket/protocol.py

    def traffic_seen(self) -> None:
        """The client sent something: the ping out need not be answered
        (``autoPingRestartOnAnyTraffic``, protocol.py ``processData``)."""
        if self.autoPingTimeoutCall is not None and self.autoPingRestartOnAnyTraffic:
            # autobahn 26.10.1 websocket/protocol.py: cancels the timeout, schedules the next ping.
            self._cancelAutoPingTimeoutCall()  # type: ignore[no-untyped-call]

    # -- pings: not timed while we are not reading (no pong could be seen) -----

    def suspend_pings(self) -> None:
        """Reading stopped: no pong can be seen, so no ping is timed out (a
        healthy client of a slow app must not be dropped). Pings still go out
        on the interval, untimed: a client that has closed its socket answers
        one with a reset, which the channel's dead-peer check then sees even
        when the client's FIN could not reach us (our receive window shut)."""
        for name in ("autoPingTimeoutCall", "autoPingPendingCall"):
            call = getattr(self, name, None)
            if call is not None:
                call.cancel()
                setattr(self, name, None)
        self.autoPingPending = None
        if self.autoPingInterval and self.state == OPEN and self.paused_pings is None:
            self.paused_pings = self.factory._batched_timer.call_later(self.autoPingInterval, self.paused_ping)

    def paused_ping(self) -> None:
        self.paused_pings = None
        if self.state == OPEN:
            # autoPingPending stays None: the pong, read after the pause, is ignored.
            self.sendPing(b"paused")
            self.paused_pings = self.factory._batched_timer.call_later(self.autoPingInterval, self.paused_ping)

    def resume_pings(self) -> None:
        call, self.paused_pings = self.paused_pings, None
        if call is not None:
            call.cancel()
        if (
            self.autoPingInterval
            and self.state == OPEN
            and self.autoPingPendingCall is None
            and self.autoPingTimeoutCall is None
        ):
            # autobahn 26.10.1 websocket/protocol.py: succeedHandshake schedules _sendAutoPing so.
            self.autoPingPendingCall = self.factory._batched_timer.call_later(self.autoPingInterval, self._sendAutoPing)

    # -- overrides ------------------------------------------------------------------

    def _connectionLost(self, reason: Any) -> None:
        # autobahn 26.10.1 websocket/protocol.py, WebSocketServerProtocol._connectionLost.
        # Autobahn leaves its close handshake timer running when TCP closes
        # before the client's Close arrives (it drops TCP itself on a second
        # violation; clients reset): the timer would keep this connection in
        # memory for timeout_ws_close and then log a client that is long gone.
        call, self.closeHandshakeTimeoutCall = self.closeHandshakeTimeoutCall, None
        if call is not None:
            call.cancel()
        call, self.paused_pings = self.paused_pings, None
        if call is not None:
            call.cancel()
        WebSocketServerProtocol._connectionLost(self, reason)

    def _fail_connection(self, code: int = 1001, reason: str = "going away") -> None:
        # autobahn 26.10.1 websocket/protocol.py: every failure (protocol error,
        # invalid payload, a limit) comes here; with failByDrop off it sends a Close.
        first = not self.failedByMe and self.state != CLOSED
        self.on_failing()
        WebSocketServerProtocol._fail_connection(self, code, reason)
        if first:
            self.on_failed(code, reason)

    # Ours, overridden by twisted_asgi.websocket.
    def write_out(self, data: bytes) -> None:
        """Frame bytes for the client."""

    def on_failing(self) -> None:
        """The connection is being failed (before its Close frame)."""

    def on_failed(self, code: int, reason: str) -> None:
        """The connection was failed with ``code`` (its Close frame is written)."""


if callable(getattr(WebSocketProtocol, "_dataReceived", None)):
    HookedProtocol.feed = WebSocketProtocol._dataReceived  # type: ignore[method-assign]


# -- the fallback: Autobahn's Twisted protocol, its public API --------------------------


class _Transport:
    """The Twisted transport Autobahn's protocol writes to: our connection."""

    __slots__ = ("protocol", "swallow")

    def __init__(self, protocol: PublicProtocol) -> None:
        #: None once the connection is lost (so that nothing keeps the other alive).
        self.protocol: PublicProtocol | None = protocol
        #: Drop what is written (Autobahn's 101: ours was sent).
        self.swallow = False

    def write(self, data: bytes) -> None:
        if not self.swallow and self.protocol is not None:
            self.protocol.write_out(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self.protocol is not None:
            self.protocol.close_connection(False)

    def abortConnection(self) -> None:
        if self.protocol is not None:
            self.protocol.close_connection(True)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass  # the channel is the transport's producer

    def unregisterProducer(self) -> None:
        pass

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass  # the channel's socket has it


def _frame_size(data: bytes, at: int) -> int | None:
    """The size of the WebSocket frame at ``data[at:]`` (RFC 6455 §5.2), or None
    while its header is incomplete."""
    left = len(data) - at
    if left < 2:
        return None
    b1 = data[at + 1]
    n = b1 & 0x7F
    head = 2
    if n == 126:
        if left < 4:
            return None
        n = (data[at + 2] << 8) | data[at + 3]
        head = 4
    elif n == 127:
        if left < 10:
            return None
        n = int.from_bytes(data[at + 2 : at + 10], "big")
        head = 10
    return head + (4 if b1 & 0x80 else 0) + n


def _request(subprotocol: str | None, offer: str | None) -> bytes:
    """The opening handshake Autobahn's server is given: constants and the
    values our handshake chose (RFC 6455 §4.1); nothing else of the client's."""
    lines = [
        "GET / HTTP/1.1",
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",  # RFC 6455 §1.3's sample; the reply is dropped
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if offer is not None:
        lines.append(f"Sec-WebSocket-Extensions: {offer}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


class PublicProtocol(_TwistedProtocol):
    """Autobahn's Twisted server protocol, used through its public API only: a
    subclass's methods named in :data:`PUBLIC_HOOKS` are bound to Autobahn's
    public hooks when the subclass is made."""

    deflate: PerMessageDeflate | None = None
    #: Our pings and closing-handshake timeout (Autobahn's are off): the
    #: server's clock, the ping interval and timeout, the close timeout.
    clock: Any = None
    ping_interval: float = 0
    ping_timeout: float = 0
    close_timeout: float = 0

    ping_call: Any = None
    ping_timeout_call: Any = None
    ping_pending: bytes | None = None
    paused_pings: Any = None
    close_call: Any = None
    #: Bytes received and not given to Autobahn yet (reading paused between frames).
    held = b""
    #: Bytes of the frame being given to Autobahn still to come.
    frame_left = 0
    failure_reported = False
    subprotocol: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for public, ours in PUBLIC_HOOKS.items():
            method = getattr(cls, ours, None)
            if method is not None:
                setattr(cls, public, method)

    @classmethod
    def make_class(cls, options: dict[str, Any], clock: Any) -> type:
        """A subclass with Autobahn's ``options`` as class attributes, less its
        timers (ours, on ``clock``), and a factory of Autobahn's."""
        public = dict(options)
        ours = {
            "clock": clock,
            "ping_interval": public.pop("autoPingInterval", 0) or 0,
            "ping_timeout": public.pop("autoPingTimeout", 0) or 0,
            "close_timeout": public.pop("closeHandshakeTimeout", 0) or 0,
        }
        public.update(autoPingInterval=0, autoPingTimeout=0, closeHandshakeTimeout=0, openHandshakeTimeout=0)
        factory = _TwistedFactory(server=None, reactor=clock)
        return type("Framing", (cls,), {**public, **ours, "factory": factory})

    def write_out(self, data: bytes) -> None:
        """Frame bytes from Autobahn, for the client (twisted_asgi.websocket's)."""

    def onConnect(self, request: Any) -> str | None:
        return self.subprotocol

    def open_ws(self, accept: PerMessageDeflateOfferAccept | None, subprotocol: str | None) -> None:
        """Open the connection through Autobahn's own handshake."""
        self.subprotocol = subprotocol
        self.perMessageCompressionAccept = lambda offers: accept  # the option, for this connection
        transport = _Transport(self)
        self.makeConnection(transport)  # type: ignore[no-untyped-call]
        transport.swallow = True
        try:
            self.dataReceived(_request(subprotocol, accept.offer.get_extension_string() if accept else None))
        finally:
            transport.swallow = False
            del self.perMessageCompressionAccept
        if self.state != OPEN:
            raise RuntimeError("Autobahn's handshake did not open the connection")
        deflates = [e for e in self.websocket_extensions_in_use if isinstance(e, PerMessageDeflate)]
        self.deflate = deflates[0] if deflates else None
        self.resume_pings()

    def feed(self, data: bytes) -> None:
        """Bytes from the client, given to Autobahn up to the end of a frame
        that may end a message at a time, so that reading can stop between
        messages (as the fast path stops in ``processData``)."""
        if data:
            self.traffic_seen()
        buffer = self.held + data if self.held else data
        self.held = b""
        at = 0
        end = len(buffer)
        while at < end and self.state != CLOSED:
            if not self.frame_left:
                if self.read_paused():
                    break
                scan = at
                while scan < end:
                    size = _frame_size(buffer, scan)
                    if size is None:
                        break  # a header not all here yet
                    head = buffer[scan]
                    scan += size
                    if head & 0x80 and (head & 0x0F) < 8:
                        break  # the last frame of a message: the app's queue may fill
                if scan == at:
                    break
                self.frame_left = scan - at
            take = min(self.frame_left, end - at)
            self.dataReceived(buffer[at : at + take])
            at += take
            self.frame_left -= take
        if self.state != CLOSED:
            self.held = buffer[at:]
        self.after_feed()

    def read_paused(self) -> bool:
        """Whether to stop between frames (twisted_asgi.websocket's)."""
        return False

    def consume(self) -> None:
        self.feed(b"")

    def after_feed(self) -> None:
        if self.failedByMe and not self.failure_reported:
            self.failure_reported = True
            self.on_failing()
            reason = self.localCloseReason
            self.on_failed(
                self.localCloseCode or 1002,
                reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason or ""),
            )
        self.closing_started()

    def closing_started(self) -> None:
        if self.close_timeout and self.state == CLOSING and self.close_call is None:
            self.close_call = Call(self.clock, self.close_timeout, self.onCloseHandshakeTimeout, ())

    def lost(self, reason: Any) -> None:
        for name in ("ping_call", "ping_timeout_call", "paused_pings", "close_call"):
            call = getattr(self, name)
            if call is not None:
                call.cancel()
                setattr(self, name, None)
        self.held = b""
        self.connectionLost(reason)
        transport = self.transport
        if isinstance(transport, _Transport):
            transport.protocol = None

    def send_close(self, code: int | None, reason: bytes | None) -> None:
        self.sendCloseFrame(code, reason, isReply=False)
        self.closing_started()

    def too_big(self, size: int, limit: int, reason: str) -> None:
        if self.state == OPEN:
            self.failedByMe = True
            self.sendCloseFrame(1009, reason.encode("utf-8")[:123], isReply=False)

    # -- pings, ours ---------------------------------------------------------------

    def traffic_seen(self) -> None:
        if self.ping_timeout_call is not None:
            self.ping_timeout_call.cancel()
            self.ping_timeout_call = None
            self.ping_pending = None
            if self.ping_call is not None:
                self.ping_call.cancel()
            self.ping_call = Call(self.clock, self.ping_interval, self.send_ping, ())

    def send_ping(self) -> None:
        self.ping_call = None
        if self.state != OPEN:
            return
        self.ping_pending = payload = struct.pack(">Q", id(self) & 0xFFFFFFFFFFFFFFFF) + os.urandom(4)
        self.sendPing(payload)
        if self.ping_timeout:
            self.ping_timeout_call = Call(self.clock, self.ping_timeout, self.ping_timed_out, ())

    def ping_timed_out(self) -> None:
        self.ping_timeout_call = None
        self.onAutoPingTimeout()

    def onPong(self, payload: bytes) -> None:
        if self.ping_pending is not None and payload == self.ping_pending:
            self.ping_pending = None
            if self.ping_timeout_call is not None:
                self.ping_timeout_call.cancel()
                self.ping_timeout_call = None
            if self.ping_interval and self.ping_call is None:
                self.ping_call = Call(self.clock, self.ping_interval, self.send_ping, ())

    def suspend_pings(self) -> None:
        for name in ("ping_call", "ping_timeout_call"):
            call = getattr(self, name)
            if call is not None:
                call.cancel()
                setattr(self, name, None)
        self.ping_pending = None
        if self.ping_interval and self.state == OPEN and self.paused_pings is None:
            self.paused_pings = Call(self.clock, self.ping_interval, self.paused_ping, ())

    def paused_ping(self) -> None:
        self.paused_pings = None
        if self.state == OPEN:
            self.sendPing(b"paused")
            self.paused_pings = Call(self.clock, self.ping_interval, self.paused_ping, ())

    def resume_pings(self) -> None:
        call, self.paused_pings = self.paused_pings, None
        if call is not None:
            call.cancel()
        if self.ping_interval and self.state == OPEN and self.ping_call is None and self.ping_timeout_call is None:
            self.ping_call = Call(self.clock, self.ping_interval, self.send_ping, ())

    # Ours, overridden by twisted_asgi.websocket.
    def on_failing(self) -> None:
        pass

    def on_failed(self, code: int, reason: str) -> None:
        pass

    def close_connection(self, abort: bool) -> None:
        pass


# -- which one ---------------------------------------------------------------------------


def parse_extensions(framing: Any, header: str) -> list[tuple[str, dict[str, list[str | bool]]]]:
    """A ``Sec-WebSocket-Extensions`` value as Autobahn parses it (protocol.py
    ``_parseExtensionsHeader``): ``[(name, {param: [value or True, ...]})]``,
    names and parameter names lowercased, one pair of quotes removed."""
    if isinstance(framing, HookedProtocol):
        # autobahn 26.10.1 websocket/protocol.py (uses nothing of the instance).
        parsed: list[tuple[str, dict[str, list[str | bool]]]] = framing._parseExtensionsHeader(header)  # type: ignore[no-untyped-call]
        return parsed
    return _parse_extensions(header)


def _parse_extensions(header: str) -> list[tuple[str, dict[str, list[str | bool]]]]:
    out: list[tuple[str, dict[str, list[str | bool]]]] = []
    for element in header.split(","):
        element = element.strip()
        if not element:
            continue
        parts = [part.strip() for part in element.split(";")]
        params: dict[str, list[str | bool]] = {}
        for param in parts[1:]:
            key, eq, value = (piece.strip() for piece in param.partition("="))
            got: str | bool = True
            if eq:
                got = "=".join(v.strip() for v in value.split("="))
                if got.startswith('"'):
                    got = got[1:]
                if got.endswith('"'):
                    got = got[:-1]
            params.setdefault(key.lower(), []).append(got)
        out.append((parts[0].lower(), params))
    return out


def _version() -> str:
    import autobahn

    return str(getattr(autobahn, "__version__", "?"))


def _missing() -> list[str]:
    missing = [name for name in _PROTOCOL_NAMES if not callable(getattr(WebSocketServerProtocol, name, None))]
    missing += [name for name in _ADAPTER_NAMES if not callable(getattr(_TwistedProtocol, name, None))]
    return missing


def _probe() -> str | None:
    """Run a HookedProtocol on a fragmented, compressed message, a ping and a
    too-big frame: what it should see and write, or what differed."""
    import txaio
    from autobahn.websocket.compress import PerMessageDeflateOffer

    from ..wsmask import unmask

    txaio.use_twisted()  # Autobahn's protocols make Deferreds (as twisted_asgi.websocket's server does)

    events: list[Any] = []
    written: list[bytes] = []

    class _Clock:
        def callLater(self, delay: float, func: Callable[..., Any], *args: Any) -> Any:
            events.append(("timer", delay))
            return _NoCall()

    class _NoCall:
        def cancel(self) -> None:
            pass

    class Probe(HookedProtocol):
        log = _QuietLog()
        CONFIG_ATTRS: list[str] = []

        def on_message_begin(self, binary: bool) -> None:
            self.message_data_total_length = 0  # Autobahn's onFrameData adds to it
            events.append(("begin", binary))

        def on_message_frame_begin(self, length: int) -> None:
            if length > 1000:
                self.too_big(length, 1000, "too big")

        def on_message_frame_data(self, payload: bytes) -> None:
            events.append(("data", bytes(payload)))

        def on_message_frame_end(self) -> None:
            pass

        def on_message_end(self) -> None:
            events.append(("end",))

        def on_close(self, clean: bool, code: int | None, reason: str | None) -> None:
            events.append(("close", code))

        def close_connection(self, abort: bool = False) -> None:
            events.append(("drop",))

        def on_failed(self, code: int, reason: str) -> None:
            events.append(("failed", code))

        def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
            written.append(data)

    options = dict(_PROBE_OPTIONS)
    cls = Probe.make_class(options, _Clock())
    proto = cls()
    accept = PerMessageDeflateOfferAccept(PerMessageDeflateOffer(), window_bits=None)
    proto.open_ws(accept, None)
    deflate = PerMessageDeflate.create_from_offer_accept(False, accept)
    deflate.start_compress_message()
    compressed = deflate.compress_message_data(b"hello hello hello") + deflate.end_compress_message()
    key = b"\x01\x02\x03\x04"

    def frame(head: int, payload: bytes) -> bytes:
        return bytes((head, 0x80 | len(payload))) + key + unmask(payload, key)

    half = len(compressed) // 2
    proto.feed(
        frame(0x41, compressed[:half]) + frame(0x80, compressed[half:]) + frame(0x89, b"hi") + frame(0x8A, b"ho")
    )
    got = [event for event in events if event[0] != "data"]
    data = b"".join(event[1] for event in events if event[0] == "data")
    if got != [("begin", False), ("end",)] or data != b"hello hello hello":
        return f"Autobahn {_version()} gave {got}, {data!r} for a compressed fragmented message"
    if written != [b"\x8a\x02hi"]:
        return f"Autobahn {_version()} answered a ping with {written!r}"
    del written[:]
    proto.sendMessage(b"x" * 100, False)
    if not written or written[0][0] != 0xC1:
        return f"Autobahn {_version()} did not compress a message with the deflate we set ({written[:1]!r})"
    del written[:]
    events.clear()
    proto.feed(bytes((0x82, 0xFE)) + struct.pack("!H", 2000) + key)
    if ("failed", 1009) not in events or not written or written[0][:4] != b"\x88\x09\x03\xf1":
        return f"Autobahn {_version()} did not fail a too-big frame with 1009 ({events}, {written[:1]!r})"
    if ("timer", 5) not in events:
        return f"Autobahn {_version()} did not time its closing handshake on our clock"
    proto.feed(bytes(2000) + frame(0x88, b"\x03\xe8"))  # the rest of that frame, the client's Close
    if ("drop",) not in events:
        return f"Autobahn {_version()} did not drop the connection after the closing handshake ({events})"
    proto.lost(_Lost())
    if ("close", 1000) not in events:
        return f"Autobahn {_version()} did not report the closed connection ({events})"
    return None


class _Lost:
    value = None


class _QuietLog:
    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    warn = info = error = debug


_PROBE_OPTIONS: dict[str, Any] = {
    "logOctets": False,
    "logFrames": False,
    "trackTimings": False,
    "utf8validateIncoming": True,
    "applyMask": True,
    "maxFramePayloadSize": 0,
    "maxMessagePayloadSize": 0,
    "autoFragmentSize": 0,
    "failByDrop": False,
    "echoCloseCodeReason": False,
    "openHandshakeTimeout": 0,
    "closeHandshakeTimeout": 5,
    "tcpNoDelay": True,
    "autoPingInterval": 0,
    "autoPingTimeout": 0,
    "autoPingSize": 12,
    "autoPingRestartOnAnyTraffic": True,
    "versions": [13],
    "webStatus": False,
    "requireMaskedClientFrames": True,
    "maskServerFrames": False,
    "perMessageCompressionAccept": None,
    "serveFlashSocketPolicy": False,
    "flashSocketPolicy": "",
    "allowedOrigins": ["*"],
    "allowedOriginsPatterns": [],
    "allowNullOrigin": True,
    "maxConnections": 0,
    "trustXForwardedFor": 0,
}


def _problem() -> str | None:
    if os.environ.get("TWISTED_ASGI_AUTOBAHN_PUBLIC"):
        return "TWISTED_ASGI_AUTOBAHN_PUBLIC is set"
    missing = _missing()
    if missing:
        return f"Autobahn {_version()} has no {', '.join(missing)}"
    try:
        return _probe()
    except Exception as exc:  # noqa: BLE001 (any change in Autobahn's behaviour: the public path)
        return f"Autobahn {_version()} behaves otherwise than read ({type(exc).__name__}: {exc})"


_PROBLEM: list[str | None] = []


def problem() -> str | None:
    """Why the fast path is off (None: it is on); checked once, at the first WebSocket."""
    if not _PROBLEM:
        _PROBLEM.append(_problem())
    return _PROBLEM[0]


def protocol_base() -> type[HookedProtocol] | type[PublicProtocol]:
    """The base the WebSocket framing runs on in this process."""
    return HookedProtocol if problem() is None else PublicProtocol
