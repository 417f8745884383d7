"""The one Twisted protocol per connection (:class:`HTTPChannel`): it owns the
transport and delegates to one protocol :class:`Handler` at a time, HTTP/1.1
first (:mod:`twisted_asgi.h1channel`), then HTTP/2 (:mod:`twisted_asgi.h2channel`)
or a WebSocket (:mod:`twisted_asgi.websocket`) after :meth:`HTTPChannel.hand_over`.

What every protocol shares is here, written once: the write path (straight to
the socket while Twisted's buffer is empty, and one coalescer per loop pass),
write back-pressure (the connection is the transport's push producer; while
paused, the apps' ``send()`` waits, for ``timeout_send`` at most), read
back-pressure (every protocol pauses through :meth:`HTTPChannel.stop_reading`,
which also watches a paused socket for a client that left), the close and the
drop, the client's address text, and the access-log hook
(:meth:`HTTPChannel.log_http`, :meth:`HTTPChannel.log_websocket`).
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

from ._upstream.twisted import (
    can_write_direct,
    close_soon,
    direct_sequence_writer,
    direct_writer,
    output_pending,
    tcp_addresses,
    tcp_setup,
)
from .h1channel import HTTP11Handler
from .proxy import proxy_headers_for
from .scope import EARLY_HINT, ConnectionInfo, client_text, unknown_tls_extension

if TYPE_CHECKING:
    from .events import Request
    from .server import ASGIFactory

__all__ = ["Handler", "HTTPChannel", "connection_info", "direct_sequence_writer", "direct_writer", "output_pending"]

log = Logger(namespace="twisted_asgi.http")


def _address(addr: Any) -> tuple[str, int] | None:
    if isinstance(addr, (IPv4Address, IPv6Address)):
        return (addr.host, addr.port)
    return None


def connection_info(
    transport: Any,
    root_path: str,
    config: Any = None,
    addresses: tuple[tuple[str, int] | None, tuple[str, int] | None] | None = None,
    extensions: dict[str, Any] | None = None,
) -> ConnectionInfo:
    """Client, server and TLS facts about a connection, for its scopes.

    Behind a PROXY-protocol listener the transport's peer and host are already
    the ones the header named. With ``config.proxy_headers`` on, the info
    carries the proxy-header resolver and whether this peer is trusted by it;
    on TLS connections it carries the ASGI ``tls`` extension. ``addresses``:
    the client and server already known (see :meth:`HTTPChannel._addresses`),
    for a TCP connection that is neither TLS nor a unix socket's; else the
    transport is asked. ``extensions``: the info's extensions dictionary
    (taken, not copied), or a new one.
    """
    server: tuple[str, int | None] | None
    if addresses is not None:
        client, server = addresses
        host = None
    else:
        host = transport.getHost()
        if isinstance(host, UNIXAddress):
            name = host.name
            server = (name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or ""), None)
        else:
            server = _address(host)
        client = _address(transport.getPeer())
    # (Positional: client, server, tls, root_path, extensions.)
    info = ConnectionInfo(
        client, server, addresses is None and ISSLTransport.providedBy(transport), root_path, extensions
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
    """What serves a connection (:class:`HTTPChannel`), one at a time: HTTP/1.1
    (``h1channel.HTTP11Handler``, every connection's first handler), then,
    after :meth:`HTTPChannel.hand_over`, HTTP/2 (``h2channel.HTTP2Handler``)
    or a WebSocket (``websocket.WebSocketConnection``). It gets the
    transport's callbacks and the graceful shutdown; it writes, stops reading
    and closes through the connection (``write``, ``write_soon``,
    ``write_now``, ``stop_reading``, ``start_reading``, ``close_transport``,
    ``drop``)."""

    #: What the connection speaks with this handler (``"http/1.1"``, ``"http/2"``, ``"websocket"``).
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


class _Gone:
    """The handler of a connection once it is lost: the handler it had is let
    go of (it points back at the connection), and late callbacks do nothing."""

    __slots__ = ()

    protocol_name = "gone"

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, reason: Failure) -> None:
        pass

    def pause_producing(self) -> None:
        pass

    def resume_producing(self) -> None:
        pass

    def send_timed_out(self) -> bool:
        return False

    def drain(self) -> None:
        pass

    def abort(self) -> None:
        pass


_GONE = _Gone()
_GONE_DATA_RECEIVED = _GONE.data_received


@implementer(IPushProducer)
class HTTPChannel(Protocol):
    """One connection: the Twisted protocol and push producer that owns the
    transport, and delegates to one :class:`Handler` at a time.

    It owns what every protocol shares: the one write path (:meth:`write`,
    straight to the socket while Twisted's buffer is empty; :meth:`write_soon`
    and :meth:`hold`, the one coalescer), write back-pressure (it is the
    transport's producer: ``write_paused``, and the one send timeout), read
    back-pressure (:meth:`stop_reading`, which also watches a paused socket
    for a client that left), the close (:meth:`close_transport`,
    :meth:`drop`), the client's address text and the scopes' connection
    facts (``info``), and the access-log hook (:meth:`log_http`,
    :meth:`log_websocket`: the only path to the access log and the
    metrics). Its first handler is HTTP/1.1
    (:class:`~twisted_asgi.h1channel.HTTP11Handler`), which hands the
    connection over (:meth:`hand_over`) to HTTP/2 or a WebSocket.
    """

    # Slots: past about thirty instance attributes CPython (3.11) stops sharing
    # the keys of instance dictionaries and every ``self.x`` becomes a generic
    # dictionary lookup; slots are also smaller per connection. Twisted's own
    # attributes (transport, connected) stay in the instance dictionary, and
    # so does ``dataReceived`` once bound to the handler's (see _bind).
    __slots__ = (
        "factory",
        "config",
        "clock",
        "info",
        "handler",
        "protocol_name",
        "write",
        "write_paused",
        "draining",
        "closed",
        "can_gather",
        "held",
        "bytes_received",
        "ws_messages_received",
        "ws_messages_sent",
        "bytes_sent",
        "_held_bytes",
        "_flush_scheduled",
        "_write_sequence",
        "_send_timer",
        "_peer_timer",
        "_reading_stopped",
        "_closing",
        "_lost",
        "_accepted_from",
        "logging",
    )

    def __init__(self, factory: ASGIFactory, addr: Any = None) -> None:
        self.factory = factory
        #: The address ``buildProtocol`` was given (the client's), its
        #: (host, port) as ``accept()`` gave it (the lean accept loop:
        #: ``ASGIFactory._build_accepted``), or None.
        self._accepted_from = addr
        self.config = factory.config
        self.clock = factory.clock
        self.info: ConnectionInfo | None = None
        #: What serves the connection now (see :meth:`hand_over`).
        self.handler: Handler = _GONE
        #: What the connection speaks now, and its bytes so far (read by the
        #: metrics; both are counted only when they are on).
        self.protocol_name = "http/1.1"
        self.bytes_received = 0
        self.bytes_sent = 0
        #: WebSocket messages on this connection, counted by its WebSocket
        #: handlers with the metrics on (read as bytes are: at each scrape
        #: while open, added to the totals when it closes).
        self.ws_messages_received = 0
        self.ws_messages_sent = 0
        #: The transport paused us: the apps' ``send()`` waits.
        self.write_paused = False
        self.draining = False
        #: The close has begun (or the connection is lost or dropped).
        self.closed = False
        #: Whether body bytes may be held for one gathering write (not when the
        #: transport buffers itself, e.g. TLS; nor once HTTP/1.1 handed over).
        self.can_gather = False
        #: Bytes held for one gathering write (:meth:`hold`, :meth:`write_soon`), or None.
        self.held: list[bytes] | None = None
        self._held_bytes = 0
        self._flush_scheduled = False
        #: Made when first needed (most connections never hold bytes).
        self._write_sequence: Callable[[list[bytes]], None] | None = None
        self._send_timer: Any = None
        #: The dead-peer check, armed only while reading is paused.
        self._peer_timer: Any = None
        self._reading_stopped = False
        #: The transport's close has begun (:meth:`close_transport`).
        self._closing = False
        #: The transport reported the connection lost.
        self._lost = False
        #: Responses are logged (an access log or the metrics are on: the
        #: factory has an access-log sink); the handlers take start times
        #: and call :meth:`log_http` / :meth:`log_websocket` only then.
        self.logging = factory.access_log is not None
        hook = factory.http_log_hook
        if hook is not None:
            # The sink's own hook in place of log_http (in the instance's
            # dictionary, as dataReceived: no call in between).
            self.log_http = hook  # type: ignore[method-assign, assignment]

    @property
    def streams_open(self) -> int:
        """HTTP/2 streams open on this connection (for the metrics)."""
        return len(getattr(self.handler, "streams", ()))

    # -- Twisted protocol ----------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        transport.registerProducer(self, True)
        factory = self.factory
        counted = self if factory.metrics is not None else None
        # A plain TCP connection: Nagle off, its writer and its addresses in one call.
        tcp = tcp_setup(transport, self._accepted_from, factory.port_addresses, counted)
        if tcp is not None:
            #: Write bytes to the client (see :func:`direct_writer`).
            self.write, addresses = tcp
            self.can_gather = True
        else:
            no_delay(transport)
            direct_tcp = getattr(transport, "asgi_direct_tcp", None)
            if direct_tcp is not None:
                # The server's TLS layer (tls.ServerTLS) sends its records with the
                # direct writer too.
                direct_tcp(direct_writer)
            self.write = direct_writer(transport, counted)
            self.can_gather = can_write_direct(transport)
            addresses = self._addresses()
        if counted is not None:
            self._write_sequence = direct_sequence_writer(transport, counted)
        config = self.config
        extensions: dict[str, Any] = {
            "http.response.trailers": {},
            # A body from a file (twisted_asgi.filesend), on HTTP/1.1 and HTTP/2.
            "http.response.pathsend": {},
            "http.response.zerocopysend": {},
        }
        if config.early_hints:
            # Not in the scope of an HTTP/1.0 request (scope.http_scope).
            extensions[EARLY_HINT] = {}
        info = self.info = connection_info(transport, config.root_path, config, addresses, extensions)
        self._accepted_from = None
        info.state = factory.lifespan_state
        # HTTP/1.1 first: it makes its parser once the first bytes are not
        # HTTP/2's, and bounds the wait for them with its head timeout.
        handler = self.handler = HTTP11Handler(self)
        if self.factory.metrics is None:  # _bind, inlined: once per connection
            self.dataReceived = handler.data_received  # type: ignore[method-assign]
        self.factory.connection_opened(self)

    def _addresses(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        """The client and server addresses of a plain TCP connection, known
        without asking its socket (see :func:`tcp_addresses`); None for any
        other transport, which :func:`connection_info` asks."""
        addr = self._accepted_from
        if type(addr) is tuple:
            return tcp_addresses(self.transport, addr, self.factory.port_addresses)
        if type(addr) is not IPv4Address and type(addr) is not IPv6Address:
            return None  # a unix socket's, or not accepted by a listening port
        return tcp_addresses(self.transport, (addr.host, addr.port), self.factory.port_addresses)

    @property
    def counted(self) -> HTTPChannel:
        """The connection the metrics read (this one; an HTTP/2 stream's
        WebSocket counts on its connection through the same name)."""
        return self

    def dataReceived(self, data: bytes) -> None:
        """Bytes from the transport, counted (metrics on), to the handler. With
        the metrics off the handler's ``data_received`` takes this method's
        place on the instance (see :meth:`_bind`)."""
        self.bytes_received += len(data)
        self.handler.data_received(data)

    def _bind(self, handler: Handler) -> None:
        """Send the transport's bytes straight to ``handler``: its bound
        ``data_received`` is the instance's ``dataReceived``, which Twisted
        looks up at every read, so a read costs one call, not two. Bytes are
        counted only with the metrics on (they are their only reader)."""
        if self.factory.metrics is None:
            self.dataReceived = handler.data_received  # type: ignore[method-assign]

    def connectionLost(self, reason: Failure = Failure(ConnectionError("lost"))) -> None:
        self.closed = True
        self._lost = True
        # A pending timer holds this connection (and all it refers to) until it fires.
        timer = self._send_timer
        if timer is not None:
            self._send_timer = None
            timer.cancel()
        timer = self._peer_timer
        if timer is not None:
            self._peer_timer = None
            timer.cancel()
        info = self.info
        if info.tls if info is not None else ISSLTransport.providedBy(self.transport):
            # Twisted's TLS protocol keeps its producer (this connection) after
            # the connection is lost: a reference cycle with our transport.
            self.transport.unregisterProducer()
        self.held = None  # nowhere to send them
        handler = self.handler
        handler.connection_lost(reason)
        # The handler points back here: cut the cycle, so that the connection
        # is freed by reference counting, not left to the cycle collector.
        self.handler = _GONE
        if self.factory.metrics is None:
            # (Replaced, not deleted: deleting an instance attribute costs more.)
            self.dataReceived = _GONE_DATA_RECEIVED  # type: ignore[method-assign]
        self.factory.connection_closed(self)

    # -- IPushProducer: the transport tells us when to stop writing ---------------

    def pauseProducing(self) -> None:
        self.write_paused = True
        # The one send timeout, for every protocol: a client that reads nothing
        # for timeout_send is dropped (see _on_send_timeout).
        if self.config.timeout_send and self._send_timer is None and not self._lost:
            self._send_timer = self.clock.callLater(self.config.timeout_send, self._on_send_timeout)
        self.handler.pause_producing()

    def resumeProducing(self) -> None:
        self.write_paused = False
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        self.handler.resume_producing()

    def stopProducing(self) -> None:
        self.write_paused = True

    def hand_over(self, handler: Handler) -> None:
        """Give the connection to another protocol's ``handler`` (HTTP/2, a
        WebSocket): the one way the protocol changes.

        From now on the transport's callbacks (``data_received``,
        ``connection_lost``, ``pause_producing``, ``resume_producing``), the
        send timeout and the graceful shutdown (``drain``, ``abort``) go to it.
        What is held is written first; the send timeout goes on; reading goes
        on if the handler before had stopped it. The handler before lets go of
        its own state (its timers, its parser).
        """
        self.flush()
        # HTTP/1.1's own gathering of body chunks ends; write_soon stays.
        self.can_gather = False
        self.handler = handler
        self.protocol_name = handler.protocol_name
        self._bind(handler)
        if self._reading_stopped:
            self.start_reading()

    def drain(self) -> None:
        """Graceful shutdown: the handler finishes what is in flight, then closes."""
        self.draining = True
        self.handler.drain()

    def abort(self) -> None:
        """Drop the connection now (graceful shutdown ran out of time)."""
        self.handler.abort()

    # -- writing -----------------------------------------------------------------

    def write_soon(self, data: bytes, limit: int = _HOLD_BYTES) -> None:
        """Write ``data`` together with what else is written this way in the
        event loop's current pass: the connection's one coalescer, for
        HTTP/1.1 body chunks and WebSocket frames alike (see :meth:`hold`).
        From ``limit`` held bytes on, everything held goes out at once, so the
        transport sees a large burst (and pushes back on it). Once the close
        has begun nothing waits for a later loop pass (which can come after
        the transport is gone: on uvloop, I/O callbacks run before those of
        ``call_soon``): ``data`` goes out at once."""
        if self._closing:
            self.write_now(data)
            return
        held = self.held
        if held is None:
            self.held = [data]
            self._held_bytes = size = len(data)
            if size >= limit:
                self.flush()
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                self.clock.callLater(0, self._scheduled_flush)
            return
        held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= limit or len(held) >= _HOLD_PIECES:
            self.flush()

    def write_now(self, data: bytes) -> None:
        """Write ``data`` at once, after whatever :meth:`write_soon` holds."""
        if self.held:
            self.flush()
        self.write(data)

    def hold(self, pieces: list[bytes], limit: int = _HOLD_BYTES) -> None:
        """Bytes with more to come: held until the event loop's current pass
        ends (or enough are held), then sent with what followed them in one
        gathering write. An app that sends its chunks without waiting makes
        one system call, not one per chunk: the kernel's cost per send is far
        above its cost per byte, the more so when a send ends just past a
        segment boundary (on loopback, a 64 KiB chunk plus its chunk header
        costs as much as a 256 KiB send)."""
        held = self.held
        if held is None:
            held = self.held = []
        held.extend(pieces)
        for piece in pieces:
            self._held_bytes += len(piece)
        if self._held_bytes >= limit or len(held) >= _HOLD_PIECES:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.clock.callLater(0, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        held = self.held
        if not held:
            return
        size = self._held_bytes
        self.held = None
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

    def flush(self) -> None:
        """Send the held bytes now (before any other write, and before closing)."""
        held = self.held
        if held:
            self.held = None
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

    # -- closing -----------------------------------------------------------------

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
        self.closed = True
        if self.held:
            self.flush()
        transport = self.transport
        transport.unregisterProducer()
        if close_soon(transport, self.clock.callLater):
            # A TCP connection with nothing left to send: it closes once this
            # loop pass is over (no TLS to end, no output to bound).
            return
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
        self.closed = True
        self.held = None
        self._held_bytes = 0
        self.transport.abortConnection()

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
        if not self.handler.send_timed_out():
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
        self._reading_stopped = True
        self.transport.pauseProducing()
        interval = self.config.timeout_paused_peer_check
        if interval and self._peer_timer is None:
            self._peer_timer = self.clock.callLater(interval, self._check_peer)

    def start_reading(self) -> None:
        """Read from the socket again (see :meth:`stop_reading`)."""
        self._reading_stopped = False
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

    # -- logging ---------------------------------------------------------------

    def client_text(self) -> str:
        """The client's address, for log lines (every protocol's)."""
        return client_text(self.info.client if self.info is not None else None)

    # The access-log hook: every response and every WebSocket of every protocol
    # (HTTP/1.1, HTTP/2, WebSocket, and the errors the server answers itself)
    # is logged through these two methods, the only ones that talk to the
    # factory's access-log sink (an AccessLog file, which feeds the metrics too
    # when both are on, or the Metrics alone). Call them only while
    # ``logging`` is true. With the metrics alone, the factory's
    # ``http_log_hook`` (Metrics.http_hook: the clock read and the counting in
    # one call) takes log_http's place in each connection's dictionary.

    def log_http(self, request: Request | None, status: int, size: int, started: float | None) -> float:
        """One response written: ``request`` (None when refused before its
        request line was known), its ``status``, the body bytes ``size``,
        and the clock's time it began (None: not known, a duration of 0).
        Returns the clock's time now (the one read of it), for the caller's
        timers."""
        now: float = self.clock.seconds()
        self.factory.access_log.log_http(  # type: ignore[union-attr]
            self.info, request, status, size, now - started if started is not None else 0.0
        )
        return now

    def log_websocket(self, request: Request, kind: str, code: int, started: float) -> float:
        """A WebSocket accepted (``kind`` ``WSCONNECT``, ``code`` 101 or 200)
        or ended (``WSDISCONNECT``, the close code), ``started`` being when
        its handshake began or it opened. Returns the clock's time now."""
        now: float = self.clock.seconds()
        self.factory.access_log.log_websocket(self.info, request, kind, code, now - started)  # type: ignore[union-attr]
        return now
