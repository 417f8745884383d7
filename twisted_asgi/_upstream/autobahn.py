"""Autobahn's private names, fenced (see the package docstring).

twisted_asgi.websocket runs Autobahn's framing (unmasking, UTF-8 checks,
permessage-deflate, limits, pings, the closing handshake) under its own
handshake and its own transport. It does so in one of two ways, both offering
twisted_asgi.websocket the same methods (:data:`OURS`), chosen once, at the
first WebSocket (:func:`problem`):

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

:class:`~twisted_asgi._upstream.autobahn_public.PublicProtocol` (the
fallback, in :mod:`.autobahn_public`, imported only when used) is Autobahn's
Twisted ``WebSocketServerProtocol`` used as documented: a Twisted protocol on
a transport of ours, opened by Autobahn's own handshake
(a request made there from constants and the values our handshake already
checked; Autobahn's 101 is dropped, ours was sent), its public hooks
(``onConnect``, ``onMessageBegin``, ``onMessageFrameBegin``,
``onMessageFrameData``, ``onMessageFrameEnd``, ``onMessageEnd``, ``onPong``,
``onClose``), ``sendMessage``, ``sendPing``, ``sendCloseFrame``,
``dropConnection``, and the state Autobahn keeps in public attributes
(``state``, ``failedByMe``, ``wasClean``, ``localCloseCode``...). Its pings
and closing-handshake timeout are run there, on the server's clock.

Where a private name :class:`HookedProtocol` needs is missing, or its probe
(:func:`_probe`) sees Autobahn behave otherwise than read, :func:`problem`
says why and the fallback is used; ``fastpaths.py`` names it in its start-up
line. ``TWISTED_ASGI_AUTOBAHN_PUBLIC=1`` in the environment forces the
fallback (to test and to measure it).

Imports no Twisted module (Autobahn's framework-neutral protocol uses txaio).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

from autobahn.websocket.compress import PerMessageDeflate, PerMessageDeflateOfferAccept
from autobahn.websocket.protocol import WebSocketProtocol, WebSocketServerProtocol

__all__ = [
    "HOOKS",
    "OURS",
    "SERVER_OPTIONS",
    "HookedProtocol",
    "Timers",
    "parse_extensions",
    "problem",
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

#: The private names of Autobahn's protocol that HookedProtocol calls or
#: overrides (autobahn 26.10.1 websocket/protocol.py).
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
# The adapter hooks (HOOKS, _onPing, _onPong) are checked by the probe: a
# renamed one is a name Autobahn calls that HookedProtocol lacks.


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
    return [name for name in _PROTOCOL_NAMES if not callable(getattr(WebSocketServerProtocol, name, None))]


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


#: Autobahn's protocol options (``setProtocolOptions``) every server of ours
#: gives it; each server adds its limits and timeouts (websocket.py), the probe
#: its own below.
SERVER_OPTIONS: dict[str, Any] = {
    "logOctets": False,
    "logFrames": False,
    "trackTimings": False,
    "utf8validateIncoming": True,  # RFC 6455 §8.1: fail invalid UTF-8 with 1007
    "autoFragmentSize": 0,
    # Send a Close with the reason's code (1002, 1007, 1009) instead of
    # dropping TCP (RFC 6455 §7.1.7 allows either; the code helps clients).
    "failByDrop": False,
    "echoCloseCodeReason": False,
    "openHandshakeTimeout": 0,  # the handshake is ours (timeout_ws_handshake)
    "tcpNoDelay": True,
    "autoPingSize": 12,
    "autoPingRestartOnAnyTraffic": True,
    "versions": [13],
    "webStatus": False,
    "requireMaskedClientFrames": True,  # RFC 6455 §5.1
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

_PROBE_OPTIONS: dict[str, Any] = {
    **SERVER_OPTIONS,
    "applyMask": True,
    "maxFramePayloadSize": 0,
    "maxMessagePayloadSize": 0,
    "closeHandshakeTimeout": 5,
    "autoPingInterval": 0,
    "autoPingTimeout": 0,
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
