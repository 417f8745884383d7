"""Listener endpoint strings beyond Twisted's own: the ``proxy:`` prefix (PROXY
protocol v1/v2 read before anything else, TLS included) and ``ssl:`` with
reloadable certificates and client-certificate options (see :mod:`.tls`).

``proxy:`` wraps any listener: ``proxy:tcp:8000``, ``proxy:unix:/run/app.sock``,
``proxy:ssl:port=443:privateKey=k.pem``, ``proxy:systemd:domain=INET:index=0``.
``haproxy:`` is the same prefix under Twisted's (and Daphne's) name, so
``haproxy:tcp:8000`` gets this implementation, not Twisted's.
``Config.proxy_protocol`` puts it in front of every listener.

The common strings (``tcp:``, ``tcp6:``, ``unix:``, ``fd:``) are parsed here
and listened on with the reactor's own ``listenTCP``/``listenUNIX``/
``adoptStreamPort``, exactly as Twisted's endpoints would: importing
:mod:`twisted.internet.endpoints` costs about a third of the start-up (it
imports Twisted's TLS support, pyOpenSSL and ``cryptography`` with it), so it
is imported only for the other kinds, and for strings whose keys are not the
plain ones (its parser then says what is wrong, in its words).

Why not Twisted's ``haproxy:`` endpoint: it hands the connection to the
application before the header has arrived (so the first scope would see the
balancer's address), gives up when the first read is shorter than 8 or 16
bytes, believes any peer, waits forever for the header, and ``haproxy:ssl:``
would expect the header *inside* TLS, where no balancer sends it.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import sys
from typing import Any, NamedTuple

from twisted.internet import defer, fdesc
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer, providedBy
from zope.interface.declarations import directlyProvides

from .proxy import ProxyHeader, ProxyProtocolError, ProxyProtocolParser, TrustList

__all__ = [
    "PROXY_PREFIXES",
    "ProxyProtocolFactory",
    "join_description",
    "listener_endpoint",
    "split_description",
    "split_proxy_prefix",
    "systemd_endpoint",
]

log = Logger(namespace="twisted_asgi.proxy")

PROXY_PREFIX = "proxy:"
#: Every spelling of the PROXY protocol prefix; ``haproxy:`` is Twisted's name for it.
PROXY_PREFIXES = ("proxy:", "haproxy:")


def split_proxy_prefix(description: str) -> tuple[bool, str]:
    """``"haproxy:tcp:8000"`` -> ``(True, "tcp:8000")``; ``"tcp:8000"`` -> ``(False, "tcp:8000")``.

    :raises ValueError: the prefix is given twice.
    """
    for prefix in PROXY_PREFIXES:
        if description.startswith(prefix):
            rest = description[len(prefix) :]
            if rest.startswith(PROXY_PREFIXES):
                raise ValueError("proxy: given twice")
            return True, rest
    return False, description


# -- endpoint string grammar (Twisted's: ':' separates, '\\' escapes) ----------------------


def split_description(description: str) -> tuple[str, list[str], dict[str, str]]:
    """``"tcp:8000:interface=\\:\\:1"`` -> ``("tcp", ["8000"], {"interface": "::1"})``."""
    raw = _raw_fields(description)
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for field in raw[1:]:
        key, sep, value = _split_unescaped_eq(field)
        if sep:
            kwargs[_unescape(key)] = _unescape(value)
        else:
            args.append(_unescape(field))
    return _unescape(raw[0]), args, kwargs


def _raw_fields(description: str) -> list[str]:
    fields, current, escaped = [], [], False
    for c in description:
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\":
            current.append(c)
            escaped = True
        elif c == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(c)
    fields.append("".join(current))
    return fields


def _split_unescaped_eq(raw: str) -> tuple[str, str, str]:
    escaped = False
    for i, c in enumerate(raw):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == "=":
            return raw[:i], "=", raw[i + 1 :]
    return raw, "", ""


def _unescape(raw: str) -> str:
    out, escaped = [], False
    for c in raw:
        if escaped:
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        else:
            out.append(c)
    return "".join(out)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def join_description(kind: str, args: list[str], kwargs: dict[str, str]) -> str:
    """The inverse of :func:`split_description`."""
    parts = [kind, *(_escape(a) for a in args), *(f"{_escape(k)}={_escape(v)}" for k, v in kwargs.items())]
    return ":".join(parts)


# -- sockets bound ahead of listening (daemon mode, the supervisor of --workers) ----------


class Listener(NamedTuple):
    """One socket the parent bound, and how a worker names it. (A NamedTuple:
    a dataclass cost every start-up about 2 M instructions to make.)"""

    description: str
    sock: socket.socket | None
    fileno: int
    worker_description: str

    def address(self) -> str:
        """``http://host:port`` (or the unix path), as the service logs it."""
        scheme = "https" if split_proxy_prefix(self.description)[1].startswith("ssl:") else "http"
        probe = self.sock if self.sock is not None else socket.socket(fileno=self.fileno)
        try:
            name = probe.getsockname()
        finally:
            if self.sock is None:
                probe.detach()
        if isinstance(name, tuple):
            host, port = name[0], name[1]
            return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
        return name if isinstance(name, str) else name.decode("utf-8", "replace")


class ListenError(Exception):
    """A listener could not be bound: which one, and why (said once)."""

    def __init__(self, description: str, reason: str) -> None:
        super().__init__(f"cannot listen on {description}: {reason}")
        self.description = description
        self.reason = reason


def bind_listeners(descriptions: list[str], backlog: int, only_shareable: bool = False) -> list[Listener]:
    """Bind every listener in ``descriptions`` (see :func:`bind_listener`), or
    none: on a failure the sockets bound so far are closed. With
    ``only_shareable``, kinds :func:`bind_listener` does not bind are left out
    (they are listened on at start-up).

    :raises ListenError: naming the listener that failed and why.
    """
    bound: list[Listener] = []
    for description in descriptions:
        try:
            bound.append(bind_listener(description, backlog))
            continue
        except ValueError as exc:
            if only_shareable:
                continue
            reason = str(exc)
        except OSError as exc:
            reason = exc.strerror or str(exc)
        for listener in bound:
            if listener.sock is not None:
                listener.sock.close()
        raise ListenError(description, reason)
    return bound


def bind_listener(description: str, backlog: int = 2048) -> Listener:
    """Bind and listen on ``description`` in this process, with a listen queue
    of ``backlog`` unless the string sets ``backlog=``; return the socket and
    the endpoint string a worker uses for it.

    :raises ValueError: a kind of listener that cannot be shared, or a bad string.
    :raises OSError: the address cannot be bound.
    """
    proxied, rest = split_proxy_prefix(description)
    prefix = PROXY_PREFIX if proxied else ""
    kind, args, kwargs = split_description(rest)
    if kind in ("tcp", "tcp6", "ssl"):
        kwargs = dict(kwargs)
        if args:
            kwargs["port"] = args[0]
        if "fileno" in kwargs:  # ssl:fileno=N: already a socket
            fileno = int(kwargs["fileno"])
            return Listener(description, None, fileno, description)
        port = int(kwargs.pop("port"))
        interface = kwargs.pop("interface", "")
        backlog = int(kwargs.pop("backlog", backlog))
        family = socket.AF_INET6 if kind == "tcp6" or ":" in interface else socket.AF_INET
        if kind == "tcp6" and not interface:
            interface = "::"
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((interface, port))
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        if kind == "ssl":
            worker = join_description("ssl", [], {"fileno": str(sock.fileno()), **kwargs})
        else:
            if kwargs:
                sock.close()
                raise ValueError(f"unknown {kind}: keys {sorted(kwargs)}")
            worker = f"fd:fileno={sock.fileno()}"
        return Listener(description, sock, sock.fileno(), prefix + worker)
    if kind == "unix":
        kwargs = dict(kwargs)
        path = args[0] if args else kwargs.pop("address")
        mode = int(kwargs.pop("mode", "666"), 8)
        backlog = int(kwargs.pop("backlog", backlog))
        kwargs.pop("lockfile", None)
        kwargs.pop("wantPID", None)
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # a socket file left by an earlier run
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, mode)
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        return Listener(description, sock, sock.fileno(), f"{prefix}fd:fileno={sock.fileno()}:domain=UNIX")
    if kind == "systemd":
        # Twisted reads (and removes) LISTEN_FDS when its endpoints module is
        # imported, so the descriptor is asked of Twisted's own parser.
        fileno = systemd_endpoint(None, rest).fileno
        return Listener(description, None, fileno, f"{prefix}fd:fileno={fileno}")
    if kind == "fd":
        fileno = int(kwargs["fileno"])
        return Listener(description, None, fileno, description)
    raise ValueError(f"{kind}: listeners cannot be shared between workers (use tcp:, ssl:, unix:, fd: or systemd:)")


# -- building endpoints ------------------------------------------------------------------


_BACKLOG_KINDS = ("tcp:", "tcp6:", "unix:", "ssl:")


def with_backlog(description: str, backlog: int) -> str:
    """``description`` with ``backlog=`` added for the endpoint kinds that take
    one, unless it sets its own (adopted sockets, ``fd:`` and ``systemd:``,
    keep the backlog they were created with)."""
    inner = description
    for prefix in ("proxy:", "haproxy:"):
        if inner.startswith(prefix):
            inner = inner[len(prefix) :]
    if not inner.startswith(_BACKLOG_KINDS) or re.search(r"(?<!\\):backlog=", inner):
        return description
    return f"{description}:backlog={backlog}"


def endpoint_from_string(reactor: Any, description: str, config: Any = None) -> Any:
    """A server endpoint from a Twisted endpoint string, plus ``fd:fileno=N``
    (an inherited, already listening socket; ``domain=INET|INET6|UNIX`` is read
    from the socket when not given), the ``proxy:`` prefix and our ``ssl:``
    (reloadable certificates, client certificates). ``config`` supplies the
    listen backlog and the PROXY protocol settings. Every endpoint string the
    server listens on goes through here.

    :raises ValueError: the string is malformed or names an unknown endpoint type.
    """
    if config is not None:
        description = with_backlog(description, config.limit_listen_backlog)
    ours = ("proxy:", "haproxy:", "ssl:", "systemd:")
    if description.startswith(ours) or (config is not None and config.proxy_protocol):
        return listener_endpoint(reactor, description, config)
    if description.startswith("fd:"):
        return _adopted_endpoint(reactor, description)
    plain = _plain_endpoint(reactor, description)
    if plain is not None:
        return plain
    from twisted.internet.endpoints import serverFromString  # heavy: see the module's documentation

    return serverFromString(reactor, description)


#: Twisted's keys for each plain kind, in the order its parser takes them
#: positionally (``tcp:8000:127.0.0.1``; ``tcp6:`` puts the backlog second).
_PLAIN_KEYS = {
    "tcp": ("port", "interface", "backlog"),
    "tcp6": ("port", "backlog", "interface"),
    "unix": ("address", "mode", "backlog", "lockfile"),
}


def _plain_endpoint(reactor: Any, description: str) -> Any:
    """The endpoint Twisted's parser would build for a ``tcp:``, ``tcp6:`` or
    ``unix:`` string with its own keys and well-formed values (same defaults:
    backlog 50, every interface, mode 666, a lock file), without importing
    :mod:`twisted.internet.endpoints`; None for anything else, which Twisted's
    parser then takes (and reports on, when it is wrong)."""
    try:
        kind, args, kwargs = split_description(description)
    except ValueError:
        return None
    keys = _PLAIN_KEYS.get(kind)
    if keys is None or len(args) > len(keys):
        return None
    values = dict(zip(keys, args, strict=False))
    if set(values) & set(kwargs) or not set(kwargs) <= set(keys):
        return None
    values.update(kwargs)
    try:
        backlog = int(values.get("backlog", "50"))
        if kind == "unix":
            address = values["address"]
            mode = int(values.get("mode", "666"), 8)
            want_pid = bool(int(values.get("lockfile", "1")))
            return UNIXListenerEndpoint(reactor, address, backlog, mode, want_pid)
        port = int(values["port"])
    except (KeyError, ValueError):
        return None
    interface = values.get("interface", "::" if kind == "tcp6" else "")
    return TCPListenerEndpoint(reactor, port, backlog, interface)


@implementer(IStreamServerEndpoint)
class TCPListenerEndpoint:
    """``tcp:``/``tcp6:``: what Twisted's ``TCP4ServerEndpoint`` and
    ``TCP6ServerEndpoint`` do (``listenTCP`` tells the families apart by the
    interface's address)."""

    def __init__(self, reactor: Any, port: int, backlog: int, interface: str) -> None:
        self.reactor = reactor
        self.port = port
        self.backlog = backlog
        self.interface = interface

    def listen(self, factory: Any) -> defer.Deferred[Any]:
        return defer.execute(self.reactor.listenTCP, self.port, factory, backlog=self.backlog, interface=self.interface)


@implementer(IStreamServerEndpoint)
class UNIXListenerEndpoint:
    """``unix:``: what Twisted's ``UNIXServerEndpoint`` does."""

    def __init__(self, reactor: Any, address: str, backlog: int, mode: int, want_pid: bool) -> None:
        self.reactor = reactor
        self.address = address
        self.backlog = backlog
        self.mode = mode
        self.want_pid = want_pid

    def listen(self, factory: Any) -> defer.Deferred[Any]:
        return defer.execute(
            self.reactor.listenUNIX, self.address, factory, backlog=self.backlog, mode=self.mode, wantPID=self.want_pid
        )


@implementer(IStreamServerEndpoint)
class AdoptedListenerEndpoint:
    """``fd:``: an inherited listening socket, as Twisted's
    ``AdoptedStreamServerEndpoint`` adopts one (the reactor's port keeps a
    copy of the descriptor; the one given is closed), once."""

    def __init__(self, reactor: Any, fileno: int, family: int) -> None:
        self.reactor = reactor
        self.fileno = fileno
        self.family = family
        self._used = False

    def listen(self, factory: Any) -> defer.Deferred[Any]:
        if self._used:
            from twisted.internet.error import AlreadyListened

            return defer.fail(AlreadyListened())
        self._used = True
        try:
            fdesc.setNonBlocking(self.fileno)
            port = self.reactor.adoptStreamPort(self.fileno, self.family, factory)
            os.close(self.fileno)
        except BaseException:
            return defer.fail()
        return defer.succeed(port)


def _adopted_endpoint(reactor: Any, description: str) -> Any:
    """``fd:fileno=N[:domain=INET|INET6|UNIX]``: an inherited listening socket."""
    args = dict(part.partition("=")[::2] for part in description[3:].split(":") if part)
    try:
        fileno = int(args.pop("fileno"))
    except (KeyError, ValueError):
        raise ValueError("fd: needs fileno=N") from None
    domain = args.pop("domain", None)
    if args:
        raise ValueError(f"unknown fd: arguments {sorted(args)}")
    if domain is None:
        probe = socket.socket(fileno=fileno)
        try:
            family = probe.family
        finally:
            probe.detach()
    else:
        families = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}
        if domain not in families:
            raise ValueError(f"fd: domain must be INET, INET6 or UNIX, not {domain!r}")
        family = families[domain]
    return AdoptedListenerEndpoint(reactor, fileno, family)


def is_tls(description: str) -> bool:
    """Whether an endpoint string listens with TLS."""
    return description.startswith(("ssl:", "proxy:ssl:", "haproxy:ssl:"))


def listener_endpoint(reactor: Any, description: str, config: Any = None) -> Any:
    """The endpoint for ``description``, understanding ``proxy:`` and our ``ssl:``.

    Other kinds (``tcp:``, ``unix:``, ``fd:``, ``systemd:``, ...) come from
    :func:`endpoint_from_string`.
    """
    prefixed, description = split_proxy_prefix(description)
    proxied = prefixed or bool(config is not None and config.proxy_protocol)
    if description.startswith("ssl:"):
        from .tls import ssl_endpoint

        _kind, args, kwargs = split_description(description)
        inner: Any = ssl_endpoint(reactor, args, kwargs)
    elif description.startswith("systemd:"):
        inner = systemd_endpoint(reactor, description)
    else:
        inner = endpoint_from_string(reactor, description)
    if not proxied:
        return inner
    from .config import Config

    return ProxyProtocolEndpoint(inner, config if config is not None else Config(), reactor)


def systemd_endpoint(reactor: Any, description: str) -> Any:
    """Twisted's ``systemd:`` endpoint (an adopted socket, its ``fileno``
    the descriptor systemd passed), with a clear error when systemd passed
    no such socket.

    Twisted reads ``LISTEN_PID``/``LISTEN_FDS``/``LISTEN_FDNAMES`` once, when
    :mod:`twisted.internet.endpoints` is imported, and removes the first two
    from the environment (sd_listen_fds(3) with ``unset_environment``).

    :raises ValueError: no socket with that index or name was passed to this process.
    """
    from twisted.internet.endpoints import serverFromString

    try:
        return serverFromString(reactor, description)
    except (IndexError, KeyError):
        raise ValueError(
            f"{description}: systemd passed no such socket to this process "
            "(LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES name the sockets of a socket-activated service)"
        ) from None


@implementer(IStreamServerEndpoint)
class ProxyProtocolEndpoint:
    """Wraps a listener so every connection starts with a PROXY header.

    When the inner listener does TLS, the PROXY wrapper goes between the
    socket and TLS: balancers send the header in clear, before the
    ClientHello.
    """

    def __init__(self, inner: Any, config: Any, clock: Any) -> None:
        self.inner = inner
        self.trust = TrustList(config.proxy_protocol_allow_ips)
        self.timeout = config.timeout_proxy_protocol
        self.limit = config.limit_proxy_protocol_bytes
        self.clock = clock

    def _wrap(self, factory: Any) -> ProxyProtocolFactory:
        return ProxyProtocolFactory(factory, self.trust, self.timeout, self.limit, self.clock)

    def listen(self, factory: Any) -> Any:
        # Our TLS module is imported by ssl: listeners only: without it, the inner one is no TLS listener.
        tls = sys.modules.get(f"{__package__}.tls")
        if tls is not None and isinstance(self.inner, tls.TLSServerEndpoint):
            return self.inner.listen(factory, wrap=self._wrap)
        return self.inner.listen(self._wrap(factory))

    def reload(self) -> bool:
        """Reload the inner listener's TLS certificates, if it has any."""
        reload = getattr(self.inner, "reload", None)
        return reload() if reload is not None else False


# -- the PROXY protocol wrapper ------------------------------------------------------------


class ProxyProtocolFactory(Factory):
    """Builds a :class:`ProxiedConnection` per connection; the wrapped factory's
    protocol is built only once the header has named the client."""

    noisy = False

    def __init__(self, wrapped: Any, trust: TrustList, timeout: float, limit: int, clock: Any) -> None:
        self.wrapped = wrapped
        self.trust = trust
        self.timeout = timeout
        self.limit = limit
        self.clock = clock

    def doStart(self) -> None:
        self.wrapped.doStart()
        super().doStart()

    def doStop(self) -> None:
        self.wrapped.doStop()
        super().doStop()

    def buildProtocol(self, addr: Any) -> ProxiedConnection:
        return ProxiedConnection(self)


class ProxiedConnection(Protocol):
    """Reads the PROXY header, then becomes the transport of the wrapped
    protocol, with ``getPeer()``/``getHost()`` answering what the header said.

    A peer outside the allow-list is dropped before a byte is read; a header
    that is malformed, too long, or not complete within the timeout drops the
    connection (proxy-protocol.txt §2: a receiver must not guess).
    """

    def __init__(self, factory: ProxyProtocolFactory) -> None:
        self.factory = factory
        self.parser: ProxyProtocolParser | None = ProxyProtocolParser(factory.limit)
        self.wrapped: Any = None
        self.header: ProxyHeader | None = None
        self._peer: Any = None
        self._host: Any = None
        self._timer: Any = None
        self._closed = False

    # -- as the protocol of the real transport -----------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        host = peer.host if isinstance(peer, (IPv4Address, IPv6Address)) else None
        if not isinstance(peer, UNIXAddress) and host is None:
            host = "?"  # an address kind we cannot judge: not trusted
        if not self.factory.trust.trusts(host):
            log.info("PROXY protocol header refused from {peer}: not in the allow-list", peer=_show(peer))
            self._drop()
            return
        if self.factory.timeout:
            self._timer = self.factory.clock.callLater(self.factory.timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        wrapped = self.wrapped
        if wrapped is not None:
            wrapped.dataReceived(data)
            return
        parser = self.parser
        if parser is None or self._closed:
            return
        try:
            header = parser.feed(data)
        except ProxyProtocolError as exc:
            log.info(
                "Bad PROXY protocol header from {peer}: {reason}", peer=_show(self.transport.getPeer()), reason=str(exc)
            )
            self._drop()
            return
        if header is None:
            return
        self._cancel_timer()
        self.header = header
        rest = parser.rest
        self.parser = None
        real_peer, real_host = self.transport.getPeer(), self.transport.getHost()
        if header.use_socket_addresses:
            self._peer, self._host = real_peer, real_host
        elif header.family == "UNIX":
            # A client on one of the balancer's unix sockets: no address, and
            # the header's paths are the balancer's. Our own socket stays the
            # host, so "unix" in a trust list keeps meaning a unix listener of ours.
            self._peer, self._host = UNIXAddress(None), real_host
        else:
            self._peer = _twisted_address(header.source, real_peer)
            self._host = _twisted_address(header.destination, real_host)
        wrapped = self.factory.wrapped.buildProtocol(self._peer)
        if wrapped is None:
            self._drop()
            return
        self.wrapped = wrapped
        # Look like the real transport (ITCPTransport, ...) to the wrapped protocol.
        directlyProvides(self, *providedBy(self.transport))
        wrapped.makeConnection(self)
        if rest and not self._closed:
            wrapped.dataReceived(rest)

    def connectionLost(self, reason: Failure = Failure(ConnectionError("lost"))) -> None:
        self._closed = True
        self._cancel_timer()
        wrapped, self.wrapped = self.wrapped, None
        if wrapped is not None:
            wrapped.connectionLost(reason)

    def _timed_out(self) -> None:
        self._timer = None
        if self.wrapped is None and not self._closed:
            log.info("No PROXY protocol header from {peer} in time", peer=_show(self.transport.getPeer()))
            self._drop()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _drop(self) -> None:
        self._closed = True
        self._cancel_timer()
        self.transport.abortConnection()

    # -- as the transport of the wrapped protocol ---------------------------------------------

    def getPeer(self) -> Any:
        return self._peer if self._peer is not None else self.transport.getPeer()

    def getHost(self) -> Any:
        return self._host if self._host is not None else self.transport.getHost()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        self.transport.writeSequence(data)

    def loseConnection(self) -> None:
        self.transport.loseConnection()

    def abortConnection(self) -> None:
        self.transport.abortConnection()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.stopProducing()

    def __getattr__(self, name: str) -> Any:
        # Anything else a transport has (disconnecting, getHandle, setTcpNoDelay...).
        transport = self.__dict__.get("transport")
        if transport is None:
            raise AttributeError(name)
        return getattr(transport, name)


def _twisted_address(address: Any, fallback: Any) -> Any:
    if isinstance(address, tuple):
        host, port = address
        cls = IPv6Address if ":" in host else IPv4Address
        return cls("TCP", host, port)
    if isinstance(address, str):
        return UNIXAddress(address.encode("utf-8", "replace") if address else None)
    return fallback


def _show(address: Any) -> str:
    if isinstance(address, (IPv4Address, IPv6Address)):
        return f"{address.host}:{address.port}"
    return "unix socket" if isinstance(address, UNIXAddress) else str(address)
