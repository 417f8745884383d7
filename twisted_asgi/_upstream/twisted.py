"""Twisted's private names, fenced (see the package docstring).

Read from Twisted 26.10.0 and 24.7.0, the newest and the oldest releases
setup.cfg allows (the same names with the same meaning; between them only
annotations differ, and ``AsyncioSelectorReactor.__init__``'s choice of a loop
when given none, which the seam does not rely on):

* twisted/internet/asyncioreactor.py, ``AsyncioSelectorReactor``:
  ``_readers``, ``_writers`` (reader/writer -> fd), ``_continuousPolling``
  (descriptors epoll refuses), ``_asyncioEventloop`` (the loop under the
  reactor), ``_unregisterFDInAsyncio``; ``addReader``/``addWriter`` are copied
  into :func:`fast_reactor_class` with another callback, ``_readOrWrite``'s
  body is :meth:`_ready`'s model.
* twisted/internet/posixbase.py, ``_DisconnectSelectableMixin._disconnectSelectable``,
  and ``_ContinuousPolling._readers``/``_writers``.
* twisted/internet/base.py, ``ReactorBase._exitSignal`` (the signal that stopped
  the reactor; twistd exits with it).
* twisted/internet/process.py, ``Process.reapProcess`` (public name, not in
  any interface; ``reapAllProcesses`` is the module's function over it).
* twisted/internet/abstract.py and tcp.py, ``FileDescriptor``'s write buffer
  (``_tempDataLen``, ``dataBuffer``, ``offset``, ``_writeDisconnected``),
  ``producerPaused``, ``startWriting`` and ``doWrite``, and ``Connection.socket``:
  :class:`FileSink`, which sends a file with ``os.sendfile`` straight to the
  socket of a TCP connection whose buffer is empty.
* the same buffer, ``_aborting`` (abstract.py ``abortConnection``'s flag) and
  ``_disconnectSelectable``: :func:`close_soon`, which closes a TCP connection
  with nothing left to send without a round through the reactor's writers.
* the same buffer with ``connected``, ``disconnecting`` and ``socket``:
  :func:`direct_writer` and :func:`direct_sequence_writer`, which send
  straight to the socket (``send``, ``sendmsg``) while Twisted's buffer is
  empty, and :func:`output_pending`.

The three fast paths of a TCP connection (direct writes, sendfile, prompt
close) are checked together, once per transport class (:func:`tcp_paths`), and
once from Twisted's classes for the start-up line (:func:`tcp_paths_off`).

``tests/test_upstream_drift.py`` pins the source of each of these per Twisted
version; ``tests/test_upstream_fallback.py`` serves with each one renamed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Callable
from socket import SO_ERROR, SOL_SOCKET
from typing import Any

from twisted.internet import abstract, tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.error import ConnectionDone, ConnectionFdescWentAway, ConnectionLost
from twisted.internet.tcp import Port
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import say_off

__all__ = [
    "CLOSE_SOON_NAMES",
    "DIRECT_WRITE",
    "ACCEPT_NAMES",
    "DIRECT_WRITE_NAMES",
    "LEAN_ACCEPT",
    "LEAN_TRANSPORT",
    "LeanServer",
    "lean_server_problem",
    "FILE_SINK_NAMES",
    "PROMPT_CLOSE",
    "REACTOR_SEAM_NAMES",
    "SENDFILE",
    "TCP_PATH_NAMES",
    "FileSink",
    "TCPPaths",
    "accept_ready",
    "accept_ready_problem",
    "can_write_direct",
    "fixed_address",
    "tcp_addresses",
    "tcp_setup",
    "direct_sequence_writer",
    "direct_writer",
    "output_pending",
    "tcp_paths",
    "tcp_paths_off",
    "file_sink",
    "file_sink_problem",
    "sendfile_problem",
    "clear_exit_signal",
    "close_soon",
    "close_soon_problem",
    "event_loop",
    "fast_reactor_class",
    "reactor_seam_problem",
    "reap_process",
]

log = Logger(namespace="twisted_asgi.reactor")

#: What the reactor seam reads or calls on the reactor (asyncioreactor.py,
#: posixbase.py): all present, or the seam is off.
REACTOR_SEAM_NAMES = (
    "_readers",
    "_writers",
    "_continuousPolling",
    "_asyncioEventloop",
    "_unregisterFDInAsyncio",
    "_disconnectSelectable",
)


def reactor_seam_problem(reactor: Any) -> str | None:
    """Why the fast reactor seam cannot run on ``reactor``, or None when it can:
    a name it uses is missing, or is not what it was (a dict of descriptors,
    a poller with its own two dicts, an event loop). A reactor of ours says
    what it found when it was made (with what was done about it)."""
    if hasattr(reactor, "asgi_seam_problem"):
        problem: str | None = reactor.asgi_seam_problem
        return problem
    return _seam_problem(reactor)


def _seam_problem(reactor: Any) -> str | None:
    if not isinstance(reactor, AsyncioSelectorReactor):
        return f"{type(reactor).__name__} is not Twisted's asyncio reactor"
    missing = [name for name in REACTOR_SEAM_NAMES if not hasattr(reactor, name)]
    polling = getattr(reactor, "_continuousPolling", None)
    if polling is not None:
        missing += [f"_continuousPolling.{name}" for name in ("_readers", "_writers") if not hasattr(polling, name)]
    if missing:
        return f"Twisted {_version()} has no {', '.join(missing)} on its asyncio reactor"
    if not isinstance(reactor._readers, dict) or not isinstance(reactor._writers, dict):
        return f"Twisted {_version()}'s reactor._readers/_writers are no longer dicts"
    if not isinstance(reactor._asyncioEventloop, asyncio.AbstractEventLoop):
        return f"Twisted {_version()}'s reactor._asyncioEventloop is no event loop"
    for name in ("_unregisterFDInAsyncio", "_disconnectSelectable"):
        if not callable(getattr(reactor, name)):
            return f"Twisted {_version()}'s reactor.{name} is not callable"
    return None


def _version() -> str:
    import twisted

    return str(twisted.__version__)


def event_loop(reactor: Any) -> asyncio.AbstractEventLoop | None:
    """The asyncio event loop under Twisted's asyncio ``reactor`` (None: not one).

    Our own reactor keeps the loop it was made with (``asgi_loop``, public);
    another is asked for Twisted's ``_asyncioEventloop`` (asyncioreactor.py,
    ``AsyncioSelectorReactor.__init__``). A reactor with neither but of
    Twisted's asyncio class: ``asyncio.get_event_loop()`` (the loop Twisted
    made current), the public path.
    """
    loop = getattr(reactor, "asgi_loop", None)
    if loop is None:
        loop = getattr(reactor, "_asyncioEventloop", None)
    if loop is None and isinstance(reactor, AsyncioSelectorReactor):
        policy = asyncio.get_event_loop_policy()
        loop = policy.get_event_loop()
    return loop


def clear_exit_signal(reactor: Any) -> None:
    """Forget the signal that stopped ``reactor``, so twistd exits 0 after a
    graceful shutdown. base.py ``ReactorBase._exitSignal`` (set by its signal
    handlers, read by twistd's runner); a reactor without it has nothing to
    forget (twistd then exits as that Twisted decides)."""
    if getattr(reactor, "_exitSignal", None) is not None:
        reactor._exitSignal = None


def reap_process(process: Any) -> None:
    """Reap ``process`` (a spawned ``twisted.internet.process.Process``) if it
    has ended, without blocking: its ``reapProcess`` (process.py); where a
    Twisted has none, ``reapAllProcesses()``, the module's public function
    over every registered process."""
    reap = getattr(process, "reapProcess", None)
    if callable(reap):
        reap()
        return
    from twisted.internet.process import reapAllProcesses

    reapAllProcesses()


def fast_reactor_class(check_reset: bool) -> type[AsyncioSelectorReactor]:
    """Twisted's asyncio reactor with a leaner path from the event loop to a
    ready socket (see twisted_asgi.reactor); ``check_reset``: ask the socket
    for a pending error after each read (uvloop).

    When :func:`reactor_seam_problem` finds something wrong with the instance,
    ``asgi_seam`` is False and registration is Twisted's own (its
    ``callWithLogger`` path): slower, the same behaviour.
    """

    class ASGIReactor(AsyncioSelectorReactor):
        #: Whether the fast registration runs (decided once per reactor).
        asgi_seam = False
        #: Why not (None when it runs).
        asgi_seam_problem: str | None = "not checked"
        #: The event loop the reactor was made with (public: see event_loop()).
        asgi_loop: asyncio.AbstractEventLoop | None = None

        def __init__(self, eventloop: asyncio.AbstractEventLoop | None = None) -> None:
            super().__init__(eventloop)
            self.asgi_loop = eventloop
            self.asgi_seam_problem = _seam_problem(self)
            self.asgi_seam = self.asgi_seam_problem is None
            #: Listening port -> whether it takes the lean accept loop (see accept_ready).
            self.asgi_ports: dict[Any, bool] = {}

        def asgi_unregister(self, fd: int) -> None:
            unregister: Any = self._unregisterFDInAsyncio  # unannotated in Twisted
            unregister(fd)

        def asgi_disconnect(self, selectable: Any, why: Any, read: bool) -> None:
            disconnect: Any = self._disconnectSelectable  # unannotated in Twisted
            disconnect(selectable, why, read)

        # Twisted's addReader/addWriter (asyncioreactor.py, 24.7.0-26.10.0),
        # registering asgi_ready (asgi_read for a connection's reads) in place
        # of callWithLogger(..., _readOrWrite, ...), with Twisted's handling of
        # descriptors epoll refuses (polled continuously instead).

        def addReader(self, reader: Any) -> None:
            if not self.asgi_seam:
                AsyncioSelectorReactor.addReader(self, reader)
                return
            if reader in self._readers or reader in self._continuousPolling._readers:
                return
            fd = reader.fileno()
            try:
                if type(reader) is Port:
                    self._asyncioEventloop.add_reader(fd, self.asgi_ready, reader, True)
                else:
                    # A connection (or any other reader): the path of every read.
                    self._asyncioEventloop.add_reader(fd, self.asgi_read, reader)
                self._readers[reader] = fd
            except OSError as exc:
                self.asgi_unregister(fd)
                if exc.errno != errno.EPERM:
                    raise
                self._continuousPolling.addReader(reader)

        def addWriter(self, writer: Any) -> None:
            if not self.asgi_seam:
                AsyncioSelectorReactor.addWriter(self, writer)
                return
            if writer in self._writers or writer in self._continuousPolling._writers:
                return
            fd = writer.fileno()
            try:
                self._asyncioEventloop.add_writer(fd, self.asgi_ready, writer, False)
                self._writers[writer] = fd
            except PermissionError:
                self.asgi_unregister(fd)
                self._continuousPolling.addWriter(writer)
            except BrokenPipeError:
                self.asgi_unregister(fd)
            except BaseException:
                self.asgi_unregister(fd)
                raise

        # Twisted's removeReader (asyncioreactor.py, 24.7.0-26.10.0), with one
        # look-up of the reader where Twisted makes three (and a call to the
        # continuous poller's isReading): every connection stops reading at
        # least once (its close). The descriptor removed from the loop is the
        # one registered (Twisted's when the reader's is -1, its current one
        # otherwise: the same number while it is registered).

        def removeReader(self, reader: Any) -> None:
            if not self.asgi_seam:
                AsyncioSelectorReactor.removeReader(self, reader)
                return
            fd = self._readers.pop(reader, None)
            if fd is None:
                polling = self._continuousPolling
                if reader in polling._readers:
                    polling.removeReader(reader)
                return
            self._asyncioEventloop.remove_reader(fd)

        # Twisted's _readOrWrite (asyncioreactor.py), without the legacy-log
        # context callWithLogger wraps around it: a listening port's read and
        # every write here, a connection's read (with uvloop's reset check)
        # in asgi_read.

        def asgi_ready(self, selectable: Any, read: bool) -> None:
            if read and type(selectable) is not Port:
                # A connection's read (addReader registers asgi_read for it).
                self.asgi_read(selectable)
                return
            if selectable.fileno() == -1:
                self.asgi_disconnect(selectable, ConnectionFdescWentAway("File descriptor lost"), read)
                return
            try:
                if read:
                    # A listening port: no peer to reset it (no getsockopt).
                    lean = self.asgi_ports.get(selectable)
                    if lean is None:
                        lean = self.asgi_ports[selectable] = accept_ready_problem(selectable) is None
                    if lean:
                        accept_ready(selectable)
                        why = None
                    else:
                        why = selectable.doRead()
                else:
                    why = selectable.doWrite()
            except Exception as exc:
                why = exc
                log.failure("Error in {selectable!r}", selectable=selectable)
            if why:
                self.asgi_disconnect(selectable, why, read)

        def asgi_read(self, selectable: Any) -> None:
            """:meth:`asgi_ready` for a reader that is not a listening port
            (a connection): the same steps, without the tests that tell a
            read from a write and a port from a connection on every read."""
            if selectable.fileno() == -1:
                self.asgi_disconnect(selectable, ConnectionFdescWentAway("File descriptor lost"), True)
                return
            try:
                why = selectable.doRead()
                if check_reset and not why:
                    sock = getattr(selectable, "socket", None)
                    if sock is not None:
                        error = sock.getsockopt(SOL_SOCKET, SO_ERROR)
                        if error:
                            why = ConnectionLost(os.strerror(error))
            except Exception as exc:
                why = exc
                log.failure("Error in {selectable!r}", selectable=selectable)
            if why:
                self.asgi_disconnect(selectable, why, True)

    return ASGIReactor


# -- the accept loop of a TCP listening port -------------------------------------------

#: The fast path's name on the start-up line.
LEAN_ACCEPT = "lean accept loop of TCP listeners"

#: What :func:`accept_ready` reads or calls on a Twisted ``tcp.Port``
#: (tcp.py, 24.7.0-26.10.0): all present, or the port's own ``doRead``.
ACCEPT_NAMES = ("socket", "numberAccepts", "factory", "_buildAddr", "sessionno", "transport", "reactor")

#: The listening socket's family and type as integers: the C socket type's
#: own members (``socket.SocketType`` is ``_socket.socket``), not
#: ``socket.socket``'s properties, which convert them to enums.
_FAMILY: Callable[[Any], int] = socket.SocketType.family.__get__  # type: ignore[attr-defined,unused-ignore]
_TYPE: Callable[[Any], int] = socket.SocketType.type.__get__  # type: ignore[attr-defined,unused-ignore]


def accept_ready_problem(port: Any) -> str | None:
    """Why ``port`` takes Twisted's own ``doRead`` (None: :func:`accept_ready`),
    said once per process on the first such port."""
    problem = None
    if os.name != "posix":
        problem = "not a POSIX system"
    else:
        missing = [name for name in ACCEPT_NAMES if not hasattr(port, name)]
        if missing:
            problem = f"Twisted {_version()}'s tcp.Port has no {', '.join(missing)}"
        elif not isinstance(port.socket, socket.socket) or not hasattr(port.socket, "_accept"):
            problem = "the listening socket is not a socket.socket"
    if problem is not None:
        say_off(log, {LEAN_ACCEPT: problem})
    return problem


def accept_ready(port: Any) -> None:
    """tcp.py ``Port.doRead`` (Twisted 24.7.0-26.10.0, POSIX), lean: accept
    up to ``numberAccepts`` connections (scaled as Twisted scales it), give
    each one to the factory's ``buildProtocol`` with the same address, make
    its ``transport`` with the same arguments and connect it.

    What is left out is what every accept pass paid for its rare cases:
    Twisted's log buffering (a ``_BuffersLogs`` context and three ``Logger``
    objects per pass, for the EMFILE recovery's log lines) and the generator
    around ``accept()``, and ``socket.accept()``'s conversion of the
    listener's family and type to enums (the socket is made from the same
    integers): 37,000 instructions per ``Connection: close`` request (one
    accept per pass), 11% of it. The rare cases are Twisted's: an accept
    error other than "nothing to accept" (EMFILE, ECONNABORTED, EPERM ...)
    hands the pass to ``port.doRead()``, which meets it again and handles and
    logs it its own way. An exception from the factory or the protocol is
    logged, as ``doRead`` logs it, and the port goes on listening. (24.7.0's
    ``doRead`` also sets close-on-exec on each socket, which Python's accept
    already did: sockets are created non-inheritable, PEP 446.)
    """
    listener = port.socket
    raw_accept = listener._accept  # socket.socket.accept's first step (CPython)
    limit = port.numberAccepts
    accepted = 0
    # A factory's buildProtocol for an IPv4 client's (host, port) as accept()
    # gave it, without the address object (the server's ASGIFactory has one).
    build_accepted = getattr(port.factory, "asgi_build_accepted", None)
    try:
        family = _FAMILY(listener)
        kind = _TYPE(listener)
        proto = listener.proto
        while accepted < limit:
            try:
                fd, addr = raw_accept()
            except BlockingIOError:
                break
            except OSError:
                port.doRead()  # Twisted's handling of the error (and its log line)
                return
            skt = socket.socket(family, kind, proto, fileno=fd)
            accepted += 1
            if len(addr) == 4:
                # IPv6: the scope id in the host, as Port.doRead does.
                host = socket.getnameinfo(addr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
                addr = (host[0], *addr[1:])
            try:
                if build_accepted is not None and len(addr) == 2:
                    protocol = build_accepted(addr)
                else:
                    protocol = port.factory.buildProtocol(port._buildAddr(addr))
            except Exception:
                skt.close()  # (Twisted's leaves it to the garbage collector)
                raise
            if protocol is None:
                skt.close()
                continue
            session = port.sessionno
            port.sessionno = session + 1
            make = port.transport
            if make is _Server and _lean_server_ok():
                make = LeanServer
            transport = make(skt, protocol, addr, port, session, port.reactor)
            protocol.makeConnection(transport)
    except Exception:  # noqa: BLE001 (Port.doRead logs it with log.deferr and goes on)
        log.failure("Error while accepting a connection on {port!r}", port=port)
        return
    port.numberAccepts = limit + 20 if accepted == limit else max(1, accepted)


# -- the transport of an accepted TCP connection, made leanly ----------------------------

#: The fast path's name on the start-up line.
LEAN_TRANSPORT = "lean transports of accepted TCP connections"

_Server = tcp.Server

#: The names the three ``__init__`` of an accepted connection's transport
#: use (their code objects' ``co_names``: tcp.py ``Server``, ``Connection``;
#: abstract.py ``FileDescriptor``; the same in Twisted 24.7.0 and 26.10.0),
#: whose work :class:`LeanServer` does in one: any other name (an attribute
#: a newer Twisted sets or reads there) turns it off.
LEAN_SERVER_NAMES = (
    (
        "Connection",
        "__init__",
        "len",
        "address",
        "IPv6Address",
        "_addressType",
        "server",
        "client",
        "sessionno",
        "hostname",
        "_getLogPrefix",
        "protocol",
        "logstr",
        "format",
        "__class__",
        "__name__",
        "_realPortNumber",
        "repstr",
        "startReading",
        "connected",
    ),
    ("abstract", "FileDescriptor", "__init__", "socket", "setblocking", "fileno", "protocol"),
    ("twisted.internet", "reactor", "_tempDataBuffer", "_tempDataLen"),
)

_lean_server: list[bool] = []


def lean_server_problem() -> str | None:
    """Why accepted connections get Twisted's own ``tcp.Server.__init__``
    (None: :class:`LeanServer`'s): a name the three ``__init__`` use that
    :data:`LEAN_SERVER_NAMES` does not have (read from their code objects,
    once per process)."""
    inits = (_Server.__init__, tcp.Connection.__init__, abstract.FileDescriptor.__init__)
    for init, known in zip(inits, LEAN_SERVER_NAMES, strict=True):
        code = getattr(init, "__code__", None)
        if code is None:
            return f"Twisted {_version()}'s {init.__qualname__} is not a Python function"
        extra = [name for name in code.co_names if name not in known]
        if extra:
            return f"Twisted {_version()}'s {init.__qualname__} uses {', '.join(extra)}"
    return None


def _lean_server_ok() -> bool:
    if not _lean_server:
        problem = lean_server_problem()
        if problem is not None:
            say_off(log, {LEAN_TRANSPORT: problem})
        _lean_server.append(problem is None)
    return _lean_server[0]


class _Lazy:
    """A ``tcp.Server`` attribute made at its first read (a non-data
    descriptor: what it made is kept in the instance's dictionary)."""

    def __init__(self, name: str, make: Callable[[Any], str]) -> None:
        self.name = name
        self.make = make

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        value = self.make(instance)
        instance.__dict__[self.name] = value
        return value


def _protocol_prefix(transport: Any) -> str:
    # _LogOwner._getLogPrefix of the protocol (its class name once it is gone).
    protocol = transport.__dict__.get("protocol")
    if protocol is None:
        return str(transport.asgi_protocol_class.__name__)
    return str(transport._getLogPrefix(protocol))


def _logstr(transport: Any) -> str:
    return f"{_protocol_prefix(transport)},{transport.sessionno},{transport.hostname}"


def _repstr(transport: Any) -> str:
    if transport.server is None:
        raise AttributeError("repstr")
    return f"<{transport.asgi_protocol_class.__name__} #{transport.sessionno} on {transport.server._realPortNumber}>"


class LeanServer(_Server):
    """Twisted's ``tcp.Server`` (the transport ``tcp.Port`` makes for each
    connection it accepts), made with one ``__init__`` that sets what
    ``Server.__init__``, ``Connection.__init__`` and
    ``FileDescriptor.__init__`` set (tcp.py, abstract.py; Twisted
    24.7.0-26.10.0), and the two log strings (``logstr``, the log prefix;
    ``repstr``, its ``repr``) made when first read, not for every
    connection: about 10,000 instructions of every ``Connection: close``.
    Everything else is ``tcp.Server``'s. Used by :func:`accept_ready` for a
    port whose transport class is ``tcp.Server`` itself, unless
    :func:`lean_server_problem` finds that Twisted's ``__init__`` set more.
    """

    logstr = _Lazy("logstr", _logstr)
    repstr = _Lazy("repstr", _repstr)

    def __init__(
        self, sock: socket.socket, protocol: Any, client: tuple[Any, ...], server: Any, sessionno: int, reactor: Any
    ) -> None:
        self.reactor = reactor
        self._tempDataBuffer: list[bytes] = []
        self._tempDataLen = 0
        self.socket = sock
        sock.setblocking(False)
        self.fileno = sock.fileno
        self.protocol = protocol
        #: The protocol's class, for the log strings once it is gone.
        self.asgi_protocol_class = type(protocol)
        if len(client) != 2:
            self._addressType = IPv6Address
        self.server = server
        self.client = client
        self.sessionno = sessionno
        self.hostname = client[0]
        self.startReading()  # type: ignore[no-untyped-call]
        self.connected = 1


# -- sendfile to a TCP connection's socket ------------------------------------------

#: What :class:`FileSink` reads or calls on a Twisted TCP connection
#: (abstract.py ``FileDescriptor``, tcp.py ``Connection``): all present, or
#: files go out through the ordinary body path.
FILE_SINK_NAMES = (
    "_tempDataLen",
    "_writeDisconnected",
    "dataBuffer",
    "offset",
    "producerPaused",
    "startWriting",
    "socket",
)


def sendfile_problem() -> str | None:
    """Why no file goes straight to a socket in this process (None: it can,
    on plain TCP connections), found from Twisted's classes before any
    connection (see :func:`tcp_paths_off`)."""
    return tcp_paths_off().get(SENDFILE)


def file_sink_problem(transport: Any) -> str | None:
    """Why a file cannot go straight from the disk to ``transport``'s socket
    (None when it can): not a Twisted TCP (or unix) connection (TLS, the
    PROXY wrapper), a name :class:`FileSink` uses is missing, or no
    ``os.sendfile`` on this platform (see :func:`tcp_paths`)."""
    return tcp_paths(transport).off.get(SENDFILE)


def file_sink(transport: Any) -> FileSink | None:
    """A :class:`FileSink` for ``transport``, or None (see :func:`file_sink_problem`)."""
    if not tcp_paths(transport).sendfile:
        return None
    return FileSink(transport)


def _buffered(transport: Any) -> bool:
    """Whether Twisted's write buffer of ``transport`` holds bytes not yet
    handed to the kernel (abstract.py ``FileDescriptor``, Twisted
    24.7.0-26.10.0: ``_tempDataLen`` bytes not yet joined into ``dataBuffer``,
    which is sent up to ``offset``)."""
    return bool(transport._tempDataLen or len(transport.dataBuffer) != transport.offset)


def _open(transport: Any) -> bool:
    """Whether ``transport`` is open for writing (no close has begun;
    ``_writeDisconnected``: abstract.py, after ``loseWriteConnection``)."""
    return bool(transport.connected and not transport.disconnecting and not transport._writeDisconnected)


class FileSink:
    """``os.sendfile`` from a file to the socket of a Twisted TCP connection
    (abstract.py, tcp.py of Twisted 24.7.0-26.10.0).

    Bytes go to the socket only while Twisted's own buffer is empty
    (:meth:`ready`), so they stay in order with what the connection wrote
    before. :meth:`wake_when_writable` is Twisted's producer machinery, as
    when its buffer is full: ``producerPaused`` set and the descriptor
    registered for writing, ``doWrite`` (with an empty buffer: it sends
    nothing) unregisters it and calls the producer's ``resumeProducing``
    once the socket can take bytes, or once what was buffered is sent.
    """

    __slots__ = ("transport", "fd")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.fd = transport.socket.fileno()

    def open(self) -> bool:
        """The connection is open for writing (no close has begun)."""
        return _open(self.transport)

    def ready(self) -> bool:
        """Nothing waits in Twisted's buffer and the connection is open for writing."""
        transport = self.transport
        return not _buffered(transport) and _open(transport)

    def send(self, fd: int, offset: int, count: int) -> int | None:
        """``os.sendfile`` of up to ``count`` bytes of ``fd`` from ``offset``:
        the bytes sent (0: the file ends before ``offset``), None when the
        socket takes nothing now. Other errors (the client reset) raise."""
        try:
            return os.sendfile(self.fd, fd, offset, count)
        except (BlockingIOError, InterruptedError):
            return None

    def wake_when_writable(self) -> None:
        """Have the transport call its producer's ``resumeProducing`` once
        its buffer is empty and its socket can take more (the connection
        must be :meth:`open`)."""
        transport = self.transport
        transport.producerPaused = True
        transport.startWriting()


# -- closing a TCP connection that has nothing left to send ---------------------------

#: What :func:`close_soon` reads or calls on a Twisted TCP connection
#: (abstract.py ``FileDescriptor``) and its reactor (posixbase.py): all
#: present, or connections close Twisted's own way.
CLOSE_SOON_NAMES = ("_tempDataLen", "_writeDisconnected", "_aborting", "dataBuffer", "offset", "stopReading", "socket")


def close_soon_problem(reactor: Any) -> str | None:
    """Why TCP connections close Twisted's own way in this process (None: they
    close at once when nothing is left to send, see :func:`close_soon`), found
    from Twisted's classes and ``reactor`` before any connection (see
    :func:`tcp_paths_off`)."""
    return tcp_paths_off(reactor).get(PROMPT_CLOSE)


def close_soon(transport: Any, call_later: Any) -> bool:
    """Begin closing a Twisted TCP connection whose write buffer is empty, and
    close it once the event loop's current pass is over (``call_later(0,
    ...)``, the server's scheduler); False, having done nothing, for any other
    transport or a buffer with bytes in it (the caller then uses
    ``loseConnection``).

    Twisted's ``loseConnection`` registers the socket for writing and closes
    it from ``doWrite`` once the buffer is empty, even when it already is: an
    ``epoll_ctl`` to register, a loop pass to be told the socket is
    writable, an empty ``send``, an ``epoll_ctl`` to unregister. With nothing
    to send, this goes straight to what ``doWrite`` ends in
    (``_postLoseConnection``'s ``CONNECTION_DONE`` given to the reactor's
    ``_disconnectSelectable``: the protocol hears ``ConnectionDone``, the
    socket is shut down and closed). It is deferred to the end of the pass,
    as Twisted's is, so that the protocol never hears of the close inside
    the call that asked for it; the FIN is not: it goes at once (a
    write-half close, ``_writeDisconnected`` set as Twisted's
    ``loseWriteConnection`` sets it, so bytes written meanwhile are dropped).
    """
    # tcp_paths(transport), and below not _buffered() and _open(): inlined, as
    # once per connection each call costs about 0.2% of a Connection: close.
    paths = _class_paths.get(type(transport)) or tcp_paths(transport)
    if not paths.prompt_close:
        return False
    if (
        transport._tempDataLen
        or len(transport.dataBuffer) != transport.offset
        or not transport.connected
        or transport.disconnecting
        or transport._writeDisconnected
        or transport.producer is not None
    ):
        return False
    transport.stopReading()
    transport.disconnecting = True  # as loseConnection sets it
    # The FIN goes now, behind the last bytes written, as Twisted's
    # loseWriteConnection ends (a write-half close, then _writeDisconnected:
    # later writes are dropped, as they are after it). Left to the deferred
    # close, it went out only once the rest of the pass was served: the
    # client, having the whole response, closed first and held the TIME_WAIT,
    # and under Connection: close load the server sat idle part of the time
    # (issue 20 target 2: 0.62-0.86 of a core busy and p99 6-9 ms, against
    # 0.96-0.99 and p99 1.1-1.6 ms with the FIN sent here).
    try:
        transport.socket.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # (the peer is gone: the close below reports it as before)
    transport._writeDisconnected = True
    call_later(0, _close_now, transport)
    return True


def _close_now(transport: Any) -> None:
    if not transport.connected or transport._aborting:
        return  # lost meanwhile, or aborted (abortConnection closes it)
    if transport._tempDataLen or len(transport.dataBuffer) != transport.offset:  # _buffered(), inlined
        transport.startWriting()  # doWrite sends, then closes (disconnecting is set)
        return
    # What the reactor's _disconnectSelectable (posixbase.py) does with
    # CONNECTION_DONE after a write, less its own removeReader and
    # removeWriter: the transport's connectionLost (abstract.py
    # FileDescriptor.connectionLost) makes the same two calls first thing.
    # (tcp_paths_off still asks the reactor for _disconnectSelectable: a
    # Twisted without it closes some other way, not read here.)
    if type(transport) is LeanServer and _lean_close(transport):
        return
    transport.connectionLost(_DONE)


def _lean_close(transport: LeanServer) -> bool:
    """``transport.connectionLost(CONNECTION_DONE)`` (tcp.py
    ``Connection.connectionLost``, abstract.py ``FileDescriptor.connectionLost``,
    tcp.py ``_SocketCloser._closeSocket``; Twisted 24.7.0-26.10.0) for a
    connection that no producer, reader or writer is registered for (the
    prompt close's, once :func:`close_soon` stopped reading), on a reactor
    with our seam: the same steps less the calls that would find nothing to
    do (``stopProducing`` of no producer, ``removeReader`` and ``removeWriter``
    of a descriptor not registered, the failure's ``check`` for an abort that
    ``CONNECTION_DONE`` is not): about 6,000 instructions of every
    ``Connection: close``. False, having done nothing, otherwise (the caller
    calls ``connectionLost``)."""
    reactor: Any = transport.reactor
    if transport.producer is not None or not getattr(reactor, "asgi_seam", False):
        return False
    polling = reactor._continuousPolling
    if (
        transport in reactor._readers
        or transport in reactor._writers
        or transport in polling._readers
        or transport in polling._writers
    ):
        return False
    transport.disconnected = 1
    transport.connected = 0
    skt = transport.socket
    if transport._shouldShutdown:
        try:
            skt.shutdown(2)
        except OSError:
            pass
    try:
        skt.close()
    except OSError:
        pass
    protocol = transport.protocol
    del transport.protocol
    del transport.socket
    del transport.fileno
    protocol.connectionLost(_DONE)
    return True


#: The one failure every prompt close reports, as posixbase.py's
#: ``_disconnectSelectable`` shares one per kind.
_DONE = Failure(ConnectionDone())


# -- the addresses of an accepted TCP connection, without asking its socket ----------


def tcp_addresses(
    transport: Any, client: tuple[str, int], servers: dict[Any, tuple[str, int] | None]
) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """The client and server addresses of ``transport``, a Twisted TCP
    connection that a listening port accepted, given ``client``, the address
    the port gave ``buildProtocol``; None for any other transport (TLS, a
    PROXY-protocol listener's wrapper, a test's), whose ``getPeer`` and
    ``getHost`` are to be asked.

    tcp.py (24.7.0-26.10.0): ``Port.doRead`` builds the address it gives
    ``buildProtocol`` from the ``accept()`` result that ``Server.__init__``
    keeps as ``client``, from which ``Server.getPeer`` builds its own: the
    same host and port, without a second address object. The server
    address is the listening port's own (``Server.server``, its public
    ``getHost``) when the port is bound to one address, found once per port
    and kept in ``servers``; on a wildcard port it is the address each client
    reached, so ``getHost`` (a ``getsockname``) is asked.
    """
    if not tcp_paths(transport).direct_write:  # not a Twisted TCP connection
        return None
    server = _server_address(transport, servers)
    if server is None:
        return None
    return client, server


def _server_address(transport: Any, servers: dict[Any, tuple[str, int] | None]) -> tuple[str, int] | None:
    """The server side of :func:`tcp_addresses`: the listening port's own
    address, found once per port and kept in ``servers``, or on a wildcard
    port the one the client reached (``getHost``); None when that is not
    an IP address."""
    port = getattr(transport, "server", None)
    try:
        server = servers[port]
    except KeyError:
        server = servers[port] = fixed_address(port)
    if server is None:
        host = transport.getHost()
        if not isinstance(host, (IPv4Address, IPv6Address)):
            return None
        server = (host.host, host.port)
    return server


def tcp_setup(
    transport: Any, accepted_from: Any, servers: dict[Any, tuple[str, int] | None], counted: Any = None
) -> tuple[Callable[[bytes], None], tuple[tuple[str, int], tuple[str, int]] | None] | None:
    """What a new connection sets up on ``transport``, in one call when it is
    a Twisted TCP connection on the direct-write path (None, having done
    nothing, for any other: the caller asks :func:`direct_writer`,
    :func:`tcp_addresses` and ``setTcpNoDelay`` itself).

    Switches Nagle's algorithm off on its socket (what tcp.py
    ``Connection.setTcpNoDelay`` does, an error ignored: a unix socket), and
    returns its :func:`direct_writer` and, for an ``accepted_from`` address
    of IPv4 or IPv6 (the one ``buildProtocol`` was given), its
    :func:`tcp_addresses` (else None). One test of the transport's class
    for the three, not one each: about 3,000 instructions of every new
    connection.
    """
    paths = _class_paths.get(type(transport)) or tcp_paths(transport)
    if not paths.direct_write:
        return None
    try:
        transport.socket.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
    except OSError:
        pass  # not a TCP socket (unix)
    writer = _direct_writer(transport, counted)
    if type(accepted_from) is tuple:
        client = accepted_from  # (host, port), as accept() gave it (see accept_ready)
    elif type(accepted_from) is IPv4Address or type(accepted_from) is IPv6Address:
        client = (accepted_from.host, accepted_from.port)
    else:
        return writer, None
    server = _server_address(transport, servers)
    if server is None:
        return writer, None
    return writer, (client, server)


#: As plain integers (the socket module's are enum members, converted at each call).
_IPPROTO_TCP = int(socket.IPPROTO_TCP)
_TCP_NODELAY = int(socket.TCP_NODELAY)


def fixed_address(port: Any) -> tuple[str, int] | None:
    """The server address of every connection ``port`` accepts, when it is
    bound to one address (IPv4 or IPv6, without a scope); None when each
    connection's own is to be asked: a wildcard bind (the address the client
    reached), or no listening port (None)."""
    try:
        host = port.getHost()
    except Exception:  # noqa: BLE001 (no listening port)
        return None
    if type(host) is not IPv4Address and type(host) is not IPv6Address:
        return None
    if host.host in _WILDCARDS or "%" in host.host or not host.port:
        return None
    return (host.host, host.port)


_WILDCARDS = frozenset({"", "0.0.0.0", "::", "::0", "0:0:0:0:0:0:0:0"})


# -- the fast paths of a Twisted TCP connection: one check per transport class ----------

#: The fast paths a Twisted TCP (or unix) connection may take, as the
#: start-up line names them.
DIRECT_WRITE = "direct writes to TCP sockets"
SENDFILE = "sendfile of response files"
PROMPT_CLOSE = "prompt close of TCP connections"

#: What :func:`direct_writer`, :func:`direct_sequence_writer` and
#: :func:`output_pending` read on a Twisted TCP connection (abstract.py
#: ``FileDescriptor``'s write buffer and state, tcp.py ``Connection.socket``).
DIRECT_WRITE_NAMES = (
    "_tempDataLen",
    "_writeDisconnected",
    "dataBuffer",
    "offset",
    "connected",
    "disconnecting",
    "socket",
)

#: Each fast path with the names it reads or calls on the connection: all
#: present, or that path is off (the public ``transport.write``, the file read
#: into body chunks, ``loseConnection``).
TCP_PATH_NAMES: dict[str, tuple[str, ...]] = {
    DIRECT_WRITE: DIRECT_WRITE_NAMES,
    SENDFILE: FILE_SINK_NAMES,
    PROMPT_CLOSE: CLOSE_SOON_NAMES,
}
#: The names of :data:`TCP_PATH_NAMES` that must be callable.
_CALLED = {SENDFILE: ("startWriting",), PROMPT_CLOSE: ("stopReading", "startWriting")}


class TCPPaths:
    """The fast paths one transport class takes: checked on its first
    connection (:func:`tcp_paths`), kept for the class. ``off``: each path
    that is off, with why."""

    __slots__ = ("direct_write", "sendfile", "prompt_close", "off")

    def __init__(self, off: dict[str, str]) -> None:
        self.off = off
        self.direct_write = DIRECT_WRITE not in off
        self.sendfile = SENDFILE not in off
        self.prompt_close = PROMPT_CLOSE not in off


#: Transport class -> its fast paths (at most 64 classes are kept).
_class_paths: dict[type, TCPPaths] = {}
#: What Twisted's classes say, found once (see :func:`tcp_paths_off`).
_classes_off: dict[str, str] | None = None


def tcp_paths_off(reactor: Any = None) -> dict[str, str]:
    """The fast paths of Twisted TCP connections that are off in this process,
    each with why, found from Twisted's classes before any connection (for the
    start-up line, :mod:`.fastpaths`): the names of :data:`TCP_PATH_NAMES` that
    are neither attributes of ``tcp.Server`` nor set by ``FileDescriptor.__init__``
    or ``tcp.Connection.__init__``, ``os.sendfile``, and ``reactor``'s
    ``_disconnectSelectable`` (posixbase.py; not checked without a reactor).
    A path off here is off for every connection (:func:`tcp_paths`), so the
    line says what happens."""
    global _classes_off
    if _classes_off is None:
        from twisted.internet import abstract, tcp

        set_in_init = set(abstract.FileDescriptor.__init__.__code__.co_names)
        set_in_init |= set(tcp.Connection.__init__.__code__.co_names)
        found: dict[str, str] = {}
        for path, names in TCP_PATH_NAMES.items():
            missing = [n for n in names if not hasattr(tcp.Server, n) and n not in set_in_init]
            if missing:
                found[path] = f"Twisted {_version()}'s TCP connection has no {', '.join(missing)}"
        if not hasattr(os, "sendfile"):
            found.setdefault(SENDFILE, "os.sendfile is missing on this platform")
        lean = lean_server_problem()
        if lean is not None:
            found[LEAN_TRANSPORT] = lean
        _classes_off = found
    off = dict(_classes_off)
    if (
        reactor is not None
        and PROMPT_CLOSE not in off
        and not callable(getattr(reactor, "_disconnectSelectable", None))
    ):
        off[PROMPT_CLOSE] = f"Twisted {_version()}'s reactor has no _disconnectSelectable"
    return off


def tcp_paths(transport: Any) -> TCPPaths:
    """The fast paths ``transport``'s class takes, checked once for every one
    of them on its first connection and kept for the class. Every path is off
    for a transport that is no Twisted TCP (or unix) connection (TLS, the PROXY
    wrapper, a test's): it has its own buffer. For one, a path is off where
    :func:`tcp_paths_off` says so, or where the connection lacks a name the
    path uses (logged once, if the start-up line did not say it)."""
    paths = _class_paths.get(type(transport))
    if paths is not None:
        return paths
    from twisted.internet import tcp

    cls = type(transport)
    if not isinstance(transport, tcp.Connection):
        paths = TCPPaths(dict.fromkeys(TCP_PATH_NAMES, f"{cls.__name__} is not a Twisted TCP connection"))
    else:
        off = tcp_paths_off(getattr(transport, "reactor", None))
        said = set(off)  # what the start-up line names
        for path, names in TCP_PATH_NAMES.items():
            if path in off:
                continue
            missing = [n for n in names if not hasattr(transport, n)]
            missing += [n for n in _CALLED.get(path, ()) if n not in missing and not callable(getattr(transport, n))]
            if missing:
                off[path] = f"Twisted {_version()}'s {cls.__name__} has no usable {', '.join(missing)}"
        say_off(log, {path: why for path, why in off.items() if path not in said})
        paths = TCPPaths(off)
    if len(_class_paths) < 64:
        _class_paths[cls] = paths
    return paths


def direct_writer(transport: Any, counted: Any = None) -> Callable[[bytes], None]:
    """``transport.write``, but sending straight to the socket while Twisted's
    write buffer is empty (abstract.py ``FileDescriptor``, Twisted
    24.7.0-26.10.0: ``_tempDataLen``, ``dataBuffer``, ``offset``,
    ``_writeDisconnected``).

    Twisted's ``FileDescriptor.write`` always buffers and sends on the next
    reactor pass, which costs two ``epoll_ctl`` calls and one more event-loop
    iteration per response. Sending at once when nothing is queued keeps the
    bytes in order and leaves everything else (partial sends, buffering,
    producer pausing, errors) to Twisted. For any transport without the path
    (TLS, a Twisted without the names: :func:`tcp_paths`) it returns plain
    ``transport.write``. The test of the buffer is inlined in the writer: no
    call per write beyond the writer itself.

    With ``counted`` (metrics on), what it is given is added to
    ``counted.bytes_sent`` (what the socket took, then what is left to
    Twisted): a test of a closure variable per write, not a wrapping function
    around it.
    """
    if not tcp_paths(transport).direct_write:
        plain_write: Callable[[bytes], None] = transport.write
        if counted is None:
            return plain_write

        def counted_plain_write(data: bytes) -> None:
            counted.bytes_sent += len(data)
            plain_write(data)

        return counted_plain_write
    return _direct_writer(transport, counted)


def _direct_writer(transport: Any, counted: Any) -> Callable[[bytes], None]:
    """:func:`direct_writer` of a transport on the direct path."""
    plain_write: Callable[[bytes], None] = transport.write
    sock = transport.socket

    def write(data: bytes) -> None:
        # not _buffered() and _open(), inlined (once per write):
        if (
            not transport._tempDataLen
            and len(transport.dataBuffer) == transport.offset
            and transport.connected
            and not transport.disconnecting
            and not transport._writeDisconnected
        ):
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # let Twisted meet the error and close properly
            if counted is not None:
                counted.bytes_sent += sent  # what send() said: no len() again
            if sent == len(data):
                return
            data = data[sent:]
        if counted is not None:
            counted.bytes_sent += len(data)
        plain_write(data)

    return write


def direct_sequence_writer(transport: Any, counted: Any = None) -> Callable[[list[bytes]], None] | None:
    """Like :func:`direct_writer`, for a list of byte strings sent as one
    ``sendmsg()`` (a gathering write: the pieces are not joined first); None
    for a transport without the path. With ``counted``, what is sent
    (``sendmsg`` says how much) and what is left to Twisted is added to
    ``counted.bytes_sent``."""
    if not tcp_paths(transport).direct_write:
        return None
    sock = transport.socket
    plain_write: Callable[[bytes], None] = transport.write

    def write_sequence(pieces: list[bytes]) -> None:
        # not _buffered() and _open(), inlined (once per write):
        if (
            not transport._tempDataLen
            and len(transport.dataBuffer) == transport.offset
            and transport.connected
            and not transport.disconnecting
            and not transport._writeDisconnected
        ):
            try:
                sent = sock.sendmsg(pieces)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # let Twisted meet the error and close properly
            if counted is not None:
                counted.bytes_sent += sent
            for i, piece in enumerate(pieces):
                if sent < len(piece):
                    rest = pieces[i:]
                    if sent:
                        rest[0] = piece[sent:]
                    break
                sent -= len(piece)
            else:
                return
            pieces = rest
        data = b"".join(pieces)
        if counted is not None:
            counted.bytes_sent += len(data)
        plain_write(data)

    return write_sequence


def can_write_direct(transport: Any) -> bool:
    """Whether :func:`direct_writer` sends straight to ``transport``'s socket
    (and so body bytes are worth holding for one gathering write)."""
    return tcp_paths(transport).direct_write


def output_pending(transport: Any) -> bool:
    """Whether ``transport`` still holds bytes it has not handed to the kernel
    (True when it cannot tell: TLS, or a transport without the path)."""
    # tcp_paths() and _buffered(), inlined: once per connection (see close_soon).
    paths = _class_paths.get(type(transport)) or tcp_paths(transport)
    if paths.direct_write:
        return bool(transport._tempDataLen or len(transport.dataBuffer) != transport.offset)
    return True
