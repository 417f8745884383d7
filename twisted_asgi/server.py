"""The connection factory, the listening service (lifespan, endpoints, graceful
drain) and the access log."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger, LogPublisher
from zope.interface import implementer

from .channel import HTTPChannel

if TYPE_CHECKING:
    from .h2channel import HTTP2Server
    from .websocket import WebSocketServer
from .config import Config
from .events import Request
from .http11 import error_response
from .lifespan import Lifespan, LifespanFailure
from .listeners import bind_listeners, endpoint_from_string, is_tls
from .metrics import Metrics
from .reactor import LoopClock, loop_name, reactor_loop
from .runner import Runner, register_exception_hint
from .scope import ConnectionInfo

__all__ = ["ASGIFactory", "ASGIService", "AccessLog", "twistd_service_class"]

log = Logger(namespace="twisted_asgi.server")


def _django_refusal_hint(exc: BaseException, scope_type: str) -> str | None:
    """The Django adapter's line for Django's refusal of a scope type
    (:func:`twisted_asgi.django.refusal_message`, always a ``ValueError``),
    with that module imported at the first such exception, not at start-up."""
    if type(exc) is not ValueError:
        return None
    from .django import refusal_message

    return refusal_message(exc, scope_type)


register_exception_hint(_django_refusal_hint)


class _Refused(Protocol):
    """A connection over the connection limit: one 503 response, then close
    (whatever the client sends is not read)."""

    def __init__(self, response: bytes) -> None:
        self.response = response

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None  # set by makeConnection before this call
        transport.write(self.response)
        transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        pass


@implementer(IProtocolNegotiationFactory)
class ASGIFactory(Factory):
    """Builds one :class:`~twisted_asgi.channel.HTTPChannel` per connection.

    Provides ALPN/NPN protocol names, so ``ssl:`` endpoints negotiate them without
    anything extra in the endpoint string.
    """

    noisy = False

    def __init__(self, app: Any, config: Config, clock: Any, access_log: AccessLog | None = None) -> None:
        self.app = app
        self.config = config
        #: The one scheduler of every connection timer and every "at the end of
        #: this loop pass" flush: ``seconds()`` and ``callLater(delay, f,
        #: *args)`` (whose handle has ``cancel()``; ``delay`` 0 runs ``f`` after
        #: the current loop pass). In production a
        #: :class:`~twisted_asgi.reactor.LoopClock` over the reactor's event
        #: loop (see :class:`ASGIService`); in tests a Twisted ``Clock``, on the
        #: same code path.
        self.clock = clock
        self.runner = Runner(app, config, clock, getattr(clock, "loop", None))
        #: The clock's ``callLater``, for the TLS wrapper's close timer.
        self.call_later: Callable[..., Any] = clock.callLater
        #: Listening port -> the server address of its connections, or None
        #: where each connection's own is asked (see HTTPChannel._addresses).
        self.port_addresses: dict[Any, tuple[str, int] | None] = {}
        #: Where the connections log each response (their one hook,
        #: :meth:`HTTPChannel.log_http <twisted_asgi.channel.HTTPChannel.log_http>`):
        #: an :class:`AccessLog` (which feeds the metrics too when both are on),
        #: the :class:`Metrics` alone, or None.
        self.access_log: AccessLog | Metrics | None = access_log
        #: The sink's own access-log hook, shared by every connection in place
        #: of :meth:`HTTPChannel.log_http <twisted_asgi.channel.HTTPChannel.log_http>`
        #: (the metrics', when they are the only sink), or None.
        self.http_log_hook: Callable[[Request | None, int, int, float | None], float] | None = None
        self.connections: set[HTTPChannel] = set()
        #: The Prometheus counters (``--metrics-endpoint``), None when off.
        self.metrics: Metrics | None = None
        #: ``Upgrade`` tokens the channel switches protocol for.
        self.upgrades: frozenset[bytes] = frozenset()
        #: Lifespan state shared (shallow-copied) into every scope; None when off.
        self.lifespan_state: dict[str, Any] | None = None
        #: Chooses HTTP/2 for a connection (ALPN, the preface), None when off;
        #: a :class:`LazyHTTP2` until a connection may be HTTP/2.
        self.http2: HTTP2Server | LazyHTTP2 | None = None
        self._upgrade_handlers: dict[bytes, Callable[[HTTPChannel, Request, bytes], None]] = {}
        self._drained: defer.Deferred | None = None
        #: Connections refused since the connection limit was last reached.
        self._refused = 0
        if type(self).buildProtocol is ASGIFactory.buildProtocol:
            #: What the lean accept loop calls in place of buildProtocol with
            #: an IPv4 client's (host, port) (see _build_accepted).
            self.asgi_build_accepted = self._build_accepted
        # h2 and Autobahn are imported at the first connection that needs them,
        # not at start-up (see LazyHTTP2 and LazyWebSocket).
        if config.websocket:
            self.register_upgrade(b"websocket", LazyWebSocket(self))
        if config.http2:
            lazy = self.http2 = LazyHTTP2(self)
            if config.h2c_upgrade:
                self.register_upgrade(b"h2c", lazy.upgrade)

    # -- Factory -----------------------------------------------------------

    def buildProtocol(self, addr: Any) -> Protocol:
        return self._build_accepted(addr)

    def _build_accepted(self, client: Any) -> Protocol:
        """:meth:`buildProtocol`'s work for ``client``, an address object or
        (the lean accept loop, ``_upstream.twisted.accept_ready``, calls it
        in buildProtocol's place) an IPv4 client's (host, port) as
        ``accept()`` gave it: no address object, which the connection would
        only read the host and port of (about 3,800 instructions of every
        new connection)."""
        limit = self.config.limit_concurrent_connections
        if limit and len(self.connections) >= limit:
            # Logged once per episode at the limit, not once per refusal: a
            # flood of connections must not become a flood of log lines.
            if not self._refused:
                log.warn("Connection limit ({limit}) reached: new connections get 503 until one closes", limit=limit)
            self._refused += 1
            if self.metrics is not None:
                self.metrics.limit("limit_concurrent_connections")
            return _Refused(error_response(503, "too many connections; try again later", self.config.server_name))
        return HTTPChannel(self, client)

    def acceptableProtocols(self) -> list[bytes]:
        # ALPN (RFC 7301) for ssl: listeners, in our order of preference.
        return [b"h2", b"http/1.1"] if self.config.http2 else [b"http/1.1"]

    # -- connection registry ------------------------------------------------------

    def connection_opened(self, channel: HTTPChannel) -> None:
        self.connections.add(channel)
        if self.metrics is not None:
            self.metrics.connection_opened(channel)

    def connection_closed(self, channel: HTTPChannel) -> None:
        connections = self.connections
        count = len(connections)
        connections.discard(channel)
        if self.metrics is not None and len(connections) != count:
            self.metrics.connection_closed(channel)
        if self._refused and len(self.connections) < self.config.limit_concurrent_connections:
            log.info("Below the connection limit again; {count} connections were refused", count=self._refused)
            self._refused = 0
        if not self.connections and self._drained is not None:
            drained, self._drained = self._drained, None
            drained.callback(None)

    # -- protocol switching ----------------------------------------------------

    def register_upgrade(self, token: bytes, handler: Callable[[HTTPChannel, Request, bytes], None]) -> None:
        """Let ``handler(channel, request, trailing_bytes)`` take over connections
        whose request asks for ``Upgrade: token``."""
        self._upgrade_handlers[token] = handler
        self.upgrades = frozenset(self._upgrade_handlers)

    def switch_protocol(self, channel: HTTPChannel, request: Request, trailing: bytes) -> None:
        handler = self._upgrade_handlers[request.upgrade]  # type: ignore[index]
        handler(channel, request, trailing)

    # -- graceful shutdown ---------------------------------------------------------

    def drain(self, timeout: float) -> defer.Deferred:
        """Close idle connections now, let busy ones finish their response, and
        abort whatever is left after ``timeout`` seconds."""
        for channel in list(self.connections):
            channel.drain()
        if not self.connections:
            return defer.succeed(None)
        # Idle connections were closed just now (they leave the set when the
        # close completes): only those with work in flight are waited for.
        busy = [c for c in self.connections if not c.closed and not getattr(c.transport, "disconnecting", False)]
        if busy and timeout:
            log.info(
                "Waiting up to {timeout}s for {n} connection(s) with work in flight to finish",
                timeout=timeout,
                n=len(busy),
            )
        self._drained = defer.Deferred()
        drained = self._drained

        def give_up() -> None:
            if self.connections:
                log.warn(
                    "Graceful shutdown timed out after {timeout}s; closing {n} connection(s)",
                    timeout=timeout,
                    n=len(self.connections),
                )
            for channel in list(self.connections):
                channel.abort()  # its handler tells and cancels the app calls still running

        timer: Any = None

        def time_up() -> None:
            nonlocal timer
            timer = None
            give_up()

        if timeout:
            timer = self.clock.callLater(timeout, time_up)
        else:
            give_up()

        def done(result: Any) -> Any:
            if timer is not None:  # still pending
                timer.cancel()
            return result

        return drained.addBoth(done)


#: RFC 9113 §3.4: the client connection preface (``http2.PREFACE``, which
#: imports h2; a test checks that the two agree).
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class LazyHTTP2:
    """Stands in for :class:`~twisted_asgi.h2channel.HTTP2Server` until a
    connection may be HTTP/2: ALPN chose ``h2``, its first bytes are (the
    start of) the preface, or it asks for ``Upgrade: h2c``. Only then are h2,
    hpack and hyperframe imported (about 15 ms on the benchmark machine, paid once, by that first
    connection), the real server replaces this one on the factory, and the
    connection is its. Every other connection goes to HTTP/1.1 unchanged, as
    the real server would send it."""

    def __init__(self, factory: ASGIFactory) -> None:
        self.factory = factory
        self._server: HTTP2Server | None = None

    def load(self) -> HTTP2Server:
        """The real server (imported, made and installed on first use)."""
        server = self._server
        if server is None:
            from ._upstream.fastpaths import report as report_fast_paths
            from .h2channel import install_http2

            server = self._server = install_http2(self.factory)
            self.factory.http2 = server
            report_fast_paths(log, http2=True)
        return server

    def sniff(self, channel: HTTPChannel, data: bytes) -> bytes | None:
        alpn_h2 = getattr(channel.transport, "negotiatedProtocol", None) == b"h2"
        if alpn_h2 or H2_PREFACE.startswith(data[: len(H2_PREFACE)]):
            return self.load().sniff(channel, data)
        return data  # cannot be HTTP/2: the real server would hand all of it to HTTP/1.1 too

    def upgrade(self, channel: HTTPChannel, request: Request, trailing: bytes) -> None:
        self.load().upgrade(channel, request, trailing)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not made yet (copy, pickle): nothing to load
            raise AttributeError(name)
        return getattr(self.load(), name)


class LazyWebSocket:
    """The ``Upgrade: websocket`` handler until the first WebSocket: then
    Autobahn is imported (about 45 ms on the benchmark machine, paid once, by that first connection)
    and the real :class:`~twisted_asgi.websocket.WebSocketServer` takes its
    place on the factory and the connection."""

    def __init__(self, factory: ASGIFactory) -> None:
        self.factory = factory
        self._server: WebSocketServer | None = None

    def load(self) -> WebSocketServer:
        """The real handler (imported, made and registered on first use)."""
        server = self._server
        if server is None:
            from ._upstream.fastpaths import report as report_fast_paths
            from .websocket import WebSocketServer

            server = self._server = WebSocketServer(self.factory)
            self.factory.register_upgrade(b"websocket", server)
            report_fast_paths(log, websocket=True)
        return server

    def __call__(self, channel: HTTPChannel, request: Request, trailing: bytes) -> None:
        self.load()(channel, request, trailing)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not made yet (copy, pickle): nothing to load
            raise AttributeError(name)
        return getattr(self.load(), name)


class AccessLog:
    """One line per response, in the combined log format plus the request time.

    ``client - - [time] "METHOD target HTTP/version" status bytes "referer" "user-agent" seconds``

    Lines go through a :class:`twisted.logger.Logger` with its own publisher, so
    they never mix with the server log and cost nothing when disabled.
    Control characters, non-ASCII bytes, quotes and backslashes in the request
    line, referer and user agent are escaped as ``\\xHH``.

    With ``--metrics-endpoint`` as well the same calls feed the
    :class:`Metrics` (``metrics``). The factory's access-log sink is this
    object, or the :class:`Metrics` alone when there is no access log file
    (no forwarding call per response); the connections call it through their
    one hook (:meth:`HTTPChannel.log_http <twisted_asgi.channel.HTTPChannel.log_http>`).
    """

    def __init__(self, stream: IO[str] | None, path: str | None = None, metrics: Metrics | None = None) -> None:
        self.stream = stream
        #: The file's path, for :meth:`reopen` (None: standard output, or no file).
        self.path = path
        self.metrics = metrics
        publisher = LogPublisher(self._write)
        self.logger = Logger(namespace="twisted_asgi.access", observer=publisher)

    @classmethod
    def open(cls, target: str) -> AccessLog:
        if target == "-":
            return cls(sys.stdout)
        return cls(open(target, "a", buffering=1, encoding="utf-8"), target)

    def reopen(self) -> bool:
        """Open the file again by its path (after logrotate moved it away, on
        SIGHUP); keep writing to the old one if that fails. True when reopened."""
        if self.path is None:
            return False
        try:
            stream = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (kept open: it is the log)
        except OSError as exc:
            log.error("Cannot reopen the access log {path}: {error}", path=self.path, error=str(exc))
            return False
        old, self.stream = self.stream, stream
        if old is not None:
            old.close()
        return True

    def _write(self, event: dict[str, Any]) -> None:
        if self.stream is not None:
            self.stream.write(event["access_line"] + "\n")

    def log_http(
        self, info: ConnectionInfo | None, request: Request | None, status: int, size: int, duration: float
    ) -> None:
        if self.metrics is not None:
            self.metrics.log_http(info, request, status, size, duration)
        if self.stream is not None:
            self._line(info, request, status, size, duration)

    def _line(
        self, info: ConnectionInfo | None, request: Request | None, status: int, size: int, duration: float
    ) -> None:
        import time

        client = info.client[0] if info is not None and info.client else "-"
        if request is not None:
            target = request.path + (b"?" + request.query if request.query else b"")
            version = "2.0" if request.http_version == "2" else request.http_version
            line = f"{request.method.decode('ascii')} {_escape(target)} HTTP/{version}"
            referer = user_agent = b"-"
            for name, value in request.headers:
                if name == b"referer":
                    referer = value
                elif name == b"user-agent":
                    user_agent = value
        else:
            line, referer, user_agent = "-", b"-", b"-"
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        text = (
            f'{client} - - [{stamp}] "{line}" {status} {size} '
            f'"{_escape(referer)}" "{_escape(user_agent)}" {duration:.6f}'
        )
        self.logger.info("{access_line}", access_line=text)

    def log_websocket(
        self, info: ConnectionInfo | None, request: Request, kind: str, code: int, duration: float
    ) -> None:
        """A WebSocket line in the same format: ``kind`` is ``WSCONNECT`` (code 101,
        when the handshake completes) or ``WSDISCONNECT`` (the close code, and
        the seconds the WebSocket was open) in place of the method and status."""
        if self.metrics is not None:
            self.metrics.log_websocket(info, request, kind, code, duration)
        if self.stream is None:
            return
        shown = Request(
            request.stream_id, kind.encode("ascii"), request.path, request.query, request.http_version, request.headers
        )
        self._line(info, shown, code, 0, duration)


# Control characters (C0, DEL, C1), non-ASCII bytes, quote and backslash: a log
# line must not let a client forge lines or send terminal escapes.
_ESCAPES = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x22, 0x5C, *range(0x7F, 0x100)]}


def _escape(raw: bytes) -> str:
    return raw.decode("latin-1").translate(_ESCAPES)


class ASGIService:
    """Runs lifespan startup, listens on every endpoint, and on stop drains
    connections and runs lifespan shutdown.

    ``exit_code`` is non-zero after a fatal start-up error (lifespan failure,
    a port that cannot be bound); the command-line front ends exit with it.

    The command line (``python -m twisted_asgi``) and Django's ``runserver``
    start and stop it themselves; under twistd it is made from
    :func:`twistd_service_class`, which adds Twisted's ``Service`` (the
    ``IService`` its service parent needs). The plain start-up never imports
    ``twisted.application``: 2% of its instructions.
    """

    #: ``IService``'s attributes (twisted.application.service).
    name: str | None = None
    parent: Any = None
    running = 0

    def __init__(
        self, app: Any, config: Config, endpoints: list[str], reactor: Any, access_log: AccessLog | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.endpoint_descriptions = list(endpoints)
        self.reactor = reactor
        self.factory = ASGIFactory(app, config, LoopClock.of(reactor), access_log)
        #: The access log file (reopened on SIGHUP), or None.
        self.access_log = access_log
        self.lifespan = Lifespan(app, config) if config.lifespan != "off" else None
        self.ports: list[IListeningPort] = []
        self.exit_code = 0
        self.ready: defer.Deferred = defer.Deferred()
        self._starting: defer.Deferred | None = None
        self._stopping = False
        #: This process is a worker of ``--workers`` (set by ``attach_worker``).
        self.worker = False
        #: The app completed lifespan startup: it gets lifespan shutdown, even
        #: when the server stops on a fatal error (a port that cannot be bound).
        self._app_started = False
        #: Listeners whose TLS certificates SIGHUP reloads.
        self.tls_listeners: list[Any] = []
        #: Sockets bound ahead of start-up by :meth:`bind_now`, by endpoint string.
        self.bound: dict[str, Any] = {}
        #: What serves or hands on the metrics (``--metrics-endpoint``), started
        #: and stopped with the service.
        self._metrics_parts: list[Any] = []
        if config.metrics_endpoint:
            metrics = self.factory.metrics = self.factory.runner.metrics = Metrics()
            metrics.live = self.factory.connections
            if access_log is None:
                # The metrics are the connections' access-log sink themselves,
                # with their own hook: one call per response.
                self.factory.access_log = metrics
                self.factory.http_log_hook = metrics.http_hook(self.factory.clock.seconds)
            else:
                access_log.metrics = metrics

    def _start_metrics(self) -> None:
        """The loop-lag sampler, and the /metrics listener (a single process)
        or the snapshot file the supervisor reads (a worker)."""
        from .metrics_http import METRICS_DIR, LagSampler, MetricsService, SnapshotWriter

        metrics = self.factory.metrics
        assert metrics is not None and self.config.metrics_endpoint
        self._metrics_parts.append(LagSampler(metrics, self.factory.clock))
        directory = os.environ.get(METRICS_DIR)
        if self.worker and directory:
            self._metrics_parts.append(SnapshotWriter(metrics, self.reactor, directory, f"worker-{os.getpid()}"))
        else:
            self._metrics_parts.append(MetricsService(self.reactor, self.config.metrics_endpoint, metrics.snapshot))
        for part in self._metrics_parts:
            part.start()

    def privilegedStartService(self) -> None:
        pass

    def startService(self) -> None:
        self.running = 1
        # After twistd's daemonising fork, Python 3.12+ forgets the current loop:
        # make the reactor's loop current again for apps that ask for it.
        self.loop = reactor_loop(self.reactor)
        asyncio.set_event_loop(self.loop)
        log.info("Twisted's asyncio reactor over the {loop} event loop", loop=loop_name(self.loop))
        self.factory.runner._loop = self.loop
        # SIGHUP is the reload signal (systemd's ExecReload, nginx): it must never
        # stop a server, whether or not it has certificates to reload.
        _on_sighup(self.reactor, self.reload)
        if self.factory.metrics is not None:
            self._start_metrics()
        self.reactor.callWhenRunning(self._begin)

    def _begin(self) -> None:
        # A worker of --workers drains once: a Ctrl-C reaches it from the
        # terminal and again as its supervisor's SIGTERM (systemd's control-group
        # kill does the same); the supervisor alone forces an exit.
        if self.worker:
            install_stop_signals(self.reactor, None, f"Worker {os.getpid()}: ")
        else:
            install_stop_signals(self.reactor, lambda name: _force_exit(self.factory, name))
        self._starting = defer.ensureDeferred(self._start())

    async def _start(self) -> None:
        if self.lifespan is not None:
            try:
                await defer.Deferred.fromFuture(self.loop.create_task(self.lifespan.startup()))
            except LifespanFailure as exc:
                self._fatal(f"Application startup failed: {exc}")
                return
            if self.lifespan.supported:
                self.factory.lifespan_state = self.lifespan.state
                self._app_started = True
        if self.lifespan is None or not self.lifespan.supported:
            self.factory.lifespan_state = {}
        if self._stopping:
            return
        for description in self.endpoint_descriptions:
            early = self.bound.pop(description, None)
            try:
                target = early.worker_description if early is not None else description
                endpoint = endpoint_from_string(self.reactor, target, self.config)
                port = await endpoint.listen(self.factory)
            except Exception as exc:
                self._fatal(f"Cannot listen on {description}: {_listen_error(exc)}")
                return
            finally:
                if early is not None:
                    # Twisted's adopting endpoint closes the descriptor it was given
                    # (the port keeps a copy): the socket object must not close it again.
                    early.sock.detach()
            self.ports.append(port)
            if hasattr(endpoint, "reload"):
                self.tls_listeners.append(endpoint)
            log.info(
                "Listening on {endpoint} ({address})",
                endpoint=description,
                address=_describe(port, "https" if is_tls(description) else "http"),
            )
        # What exists now (modules, the app, its startup state) lives as long as
        # the process: leave it out of every later garbage collection, which
        # would otherwise walk it again and again while serving (HTTP/2 makes
        # many short-lived objects: about 6% of its CPU per request).
        gc.freeze()
        self.ready.callback(self.ports)

    def bind_now(self) -> None:
        """Bind and listen on every listener now, before twistd detaches, so that a
        port in use fails the command itself; connections queue in the kernel until
        start-up (lifespan) is done. Kinds that are not bound here (``fd:``,
        ``systemd:``, already listening) are listened on at start-up as before.

        :raises ListenError: an address cannot be bound (nothing stays bound then).
        """
        listeners = bind_listeners(self.endpoint_descriptions, self.config.limit_listen_backlog, only_shareable=True)
        self.bound = {listener.description: listener for listener in listeners if listener.sock is not None}

    def reload(self) -> None:
        """SIGHUP in a single process (or a worker): reopen the access log file
        (logrotate's postrotate), reload the TLS listeners' certificates, and
        say what was done; the server goes on serving either way."""
        access_log = self.access_log
        if access_log is not None and access_log.reopen():
            log.info("SIGHUP: reopened the access log {path}", path=access_log.path)
        if not self.tls_listeners:
            if access_log is None or access_log.path is None:
                log.info("SIGHUP: nothing to reload (no ssl: listener); still serving")
            return
        reloaded = self.reload_tls()
        log.info(
            "SIGHUP: reloaded the certificates of {reloaded} of {total} TLS listener(s); still serving",
            reloaded=reloaded,
            total=len(self.tls_listeners),
        )

    def reload_tls(self) -> int:
        """Reload every TLS listener's certificates (SIGHUP); open connections
        keep theirs. Returns how many reloaded."""
        return sum(1 for endpoint in self.tls_listeners if endpoint.reload())

    def _fatal(self, message: str) -> None:
        log.critical("{message}", message=message)
        self.exit_code = 1
        if not self.ready.called:
            self.ready.errback(RuntimeError(message))
            self.ready.addErrback(lambda _: None)
        if self.reactor.running:
            self.reactor.stop()

    def stopService(self) -> defer.Deferred:
        self.running = 0
        self._stopping = True
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        ports, self.ports = self.ports, []
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports], consumeErrors=True)
        timeout = self.config.timeout_graceful_shutdown
        began = self.reactor.seconds()
        await self.factory.drain(timeout)
        # App calls may go on after their response (background tasks): they
        # get what is left of the graceful timeout before lifespan shutdown.
        left = max(0.0, timeout - (self.reactor.seconds() - began)) if timeout else 0.0
        runner = self.factory.runner
        await defer.Deferred.fromFuture(self.loop.create_task(runner.finish(left)))
        if self.lifespan is not None and self.lifespan.supported and self._app_started:
            await defer.Deferred.fromFuture(self.loop.create_task(self.lifespan.shutdown()))
        # Scrapes are answered until the drain is over.
        parts, self._metrics_parts = self._metrics_parts, []
        for part in parts:
            await defer.maybeDeferred(part.stop)
        if self.exit_code == 0:
            # A graceful stop on SIGTERM/SIGINT is a success: twistd would otherwise
            # re-raise the signal on itself and exit with it (see Twisted's app.py).
            clear_exit_signal(self.reactor)


def _on_sighup(reactor: Any, action: Callable[[], Any]) -> None:
    """Run ``action`` in the reactor on SIGHUP (the usual "reload" signal, as
    for nginx); nothing when not in the main thread or without SIGHUP."""
    import signal
    import threading

    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGHUP, lambda _sig, _frame: reactor.callFromThread(action))


def install_stop_signals(reactor: Any, on_second: Callable[[str], None] | None, who: str = "") -> None:
    """SIGINT and SIGTERM: the first stops the reactor (the graceful shutdown);
    each later one calls ``on_second(signal name)``, or is ignored when
    ``on_second`` is None. In place of Twisted's handlers, which stop the
    reactor again on a second signal (a ReactorNotRunning traceback) and cannot
    tell a worker's drain from a forced exit. A SIGINT ignored since start-up
    (a background job, nohup) stays ignored. Nothing outside the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    first: list[str] = []

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if not first:
            first.append(name)
            log.info("{who}Received {signal}, shutting down.", who=who, signal=name)
            reactor.callFromThread(_stop_reactor, reactor)
        elif on_second is not None:
            on_second(name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        if not (sig == signal.SIGINT and signal.getsignal(sig) is signal.SIG_IGN):
            signal.signal(sig, handler)


def _listen_error(exc: Exception) -> str:
    """Why listening failed, once: Twisted's CannotListenError repeats the address."""
    from twisted.internet.error import CannotListenError

    if isinstance(exc, CannotListenError) and isinstance(exc.socketError, OSError):
        return exc.socketError.strerror or str(exc.socketError)
    return str(exc)


def _stop_reactor(reactor: Any) -> None:
    if reactor.running:
        reactor.stop()


def _force_exit(factory: ASGIFactory, name: str) -> None:
    """A second SIGINT or SIGTERM during the graceful shutdown (an impatient
    Ctrl-C): exit at once, with one line, as uvicorn and hypercorn do."""
    log.warn(
        "Second {signal} during graceful shutdown: exiting now, {n} connection(s) cut off",
        signal=name,
        n=len(factory.connections),
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def clear_exit_signal(reactor: Any) -> None:
    """Forget the signal that stopped ``reactor`` so twistd exits 0 after a
    graceful shutdown (the narrow seam over Twisted's ``_exitSignal``)."""
    from ._upstream.twisted import clear_exit_signal as clear

    clear(reactor)


def _describe(port: IListeningPort, scheme: str) -> str:
    host = port.getHost()
    if hasattr(host, "port"):
        h = host.host
        return f"{scheme}://[{h}]:{host.port}" if ":" in h else f"{scheme}://{h}:{host.port}"
    name = getattr(host, "name", host)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")  # a unix socket path
    return f"unix:{name}"


_twistd_class: type | None = None


def twistd_service_class() -> type:
    """:class:`ASGIService` with Twisted's ``Service`` for what twistd's
    service parent calls (``setServiceParent``, ``setName``, ...); made at the
    first call, under twistd, which has imported ``twisted.application``."""
    global _twistd_class
    if _twistd_class is None:
        from twisted.application.service import Service

        _twistd_class = type("ASGIService", (ASGIService, Service), {"__module__": __name__})
    return _twistd_class
