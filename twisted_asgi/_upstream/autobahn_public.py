"""The fallback of :mod:`.autobahn`: Autobahn's Twisted server protocol,
through its public API only (see that module's docstring).

Imported only where the fast path is off: Autobahn's Twisted adapter brings
its WAMP modules with it (about 40 ms at the first WebSocket).
"""

from __future__ import annotations

import os
import struct
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory as _TwistedFactory
from autobahn.twisted.websocket import WebSocketServerProtocol as _TwistedProtocol
from autobahn.websocket.compress import PerMessageDeflate, PerMessageDeflateOfferAccept

from .autobahn import CLOSED, CLOSING, OPEN, PUBLIC_HOOKS, Call

__all__ = ["PublicProtocol"]


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
