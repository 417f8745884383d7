"""Installing and checking Twisted's asyncio reactor (never on import)."""

from __future__ import annotations

import asyncio
import errno
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["LoopClock", "ReactorError", "Scheduler", "Timer", "install_asyncio_reactor"]


class ReactorError(Exception):
    """The installed reactor cannot run ASGI apps."""


def install_asyncio_reactor(loop: str = "asyncio") -> Any:
    """Install Twisted's asyncio reactor over a new ``loop`` event loop, or check
    that the reactor already installed is that one. Returns the reactor.

    ``loop`` is ``"uvloop"``, ``"asyncio"`` or ``"auto"``: uvloop when it can be
    imported, else asyncio's own loop (a reactor already installed is taken
    as it is).

    :raises ReactorError: another reactor is installed, or uvloop is asked for
        and missing.
    """
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        if not isinstance(reactor, AsyncioSelectorReactor):
            raise ReactorError(
                f"ASGI apps need Twisted's asyncio reactor, but {type(reactor).__module__}."
                f"{type(reactor).__name__} is installed; drop --reactor or use --reactor=asyncio"
            )
        if loop == "uvloop" and "uvloop" not in type(reactor._asyncioEventloop).__module__:
            raise ReactorError("--loop uvloop needs the reactor installed by twisted-asgi itself; drop --reactor")
        return reactor
    uvloop: Any = None
    if loop in ("uvloop", "auto"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise ReactorError(
                    "--loop uvloop needs the uvloop package (pip install twisted-asgi[uvloop])"
                ) from None
    if uvloop is not None:
        event_loop = uvloop.new_event_loop()
    else:
        event_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(event_loop)
    from twisted.internet.main import installReactor

    reactor = _reactor_class(uvloop is not None)(event_loop)
    installReactor(reactor)
    return reactor


def _reactor_class(uv: bool = False) -> type:
    """Twisted's asyncio reactor, with a leaner path from the event loop to a
    ready socket.

    Twisted registers every socket with the loop through ``callWithLogger``,
    which sets up a legacy-log context around each read or write (four Python
    calls per event) so that old-style ``log.msg`` calls made inside know
    their "system". Nothing in this server logs that way on the hot path, so
    the socket's ``doRead``/``doWrite`` is called directly, with Twisted's own
    error handling; registration, removal, and everything else stay Twisted's.
    """
    from socket import SO_ERROR, SOL_SOCKET

    from twisted.internet.asyncioreactor import AsyncioSelectorReactor
    from twisted.internet.error import ConnectionFdescWentAway, ConnectionLost

    class ASGIReactor(AsyncioSelectorReactor):
        #: Ask the socket for a pending error after each read (uvloop, see
        #: ASGIUVReactor).
        _check_reset = False

        # Twisted's addReader/addWriter, registering our callback in place of
        # callWithLogger(..., _readOrWrite, ...), with Twisted's handling of
        # descriptors epoll refuses (polled continuously instead).

        def addReader(self, reader: Any) -> None:
            if reader in self._readers or reader in self._continuousPolling._readers:
                return
            fd = reader.fileno()
            try:
                self._asyncioEventloop.add_reader(fd, self._ready, reader, True)
                self._readers[reader] = fd
            except OSError as exc:
                self._unregisterFDInAsyncio(fd)
                if exc.errno != errno.EPERM:
                    raise
                self._continuousPolling.addReader(reader)

        def addWriter(self, writer: Any) -> None:
            if writer in self._writers or writer in self._continuousPolling._writers:
                return
            fd = writer.fileno()
            try:
                self._asyncioEventloop.add_writer(fd, self._ready, writer, False)
                self._writers[writer] = fd
            except PermissionError:
                self._unregisterFDInAsyncio(fd)
                self._continuousPolling.addWriter(writer)
            except BrokenPipeError:
                self._unregisterFDInAsyncio(fd)
            except BaseException:
                self._unregisterFDInAsyncio(fd)
                raise

        def _ready(self, selectable: Any, read: bool) -> None:
            if selectable.fileno() == -1:
                self._disconnectSelectable(selectable, ConnectionFdescWentAway("File descriptor lost"), read)
                return
            try:
                why = selectable.doRead() if read else selectable.doWrite()
                if read and not why and self._check_reset:
                    sock = getattr(selectable, "socket", None)
                    if sock is not None:
                        error = sock.getsockopt(SOL_SOCKET, SO_ERROR)
                        if error:
                            why = ConnectionLost(os.strerror(error))
            except Exception as exc:
                why = exc
                self._log.failure("Error in {selectable!r}", selectable=selectable)
            if why:
                self._disconnectSelectable(selectable, why, read)

    if not uv:
        return ASGIReactor

    class ASGIUVReactor(ASGIReactor):
        """On uvloop, a socket error the peer caused (a reset) makes libuv
        report the poll handle as failed; uvloop then runs the read callback
        once and closes the handle without telling anyone (uvloop issue 552).
        When that read still found data, Twisted would keep a connection that
        is never read again, and the descriptor's dead handle would break the
        next connection given the same number. So after each read the socket
        is asked for a pending error, and a connection that has one is
        disconnected at once, while its handle is still alive."""

        _check_reset = True

    return ASGIUVReactor


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``: which event loop runs under the reactor."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def reactor_loop(reactor: Any) -> asyncio.AbstractEventLoop:
    """The asyncio event loop under Twisted's asyncio ``reactor``.

    Read from the reactor itself, never from ``asyncio.get_event_loop()``: after
    twistd daemonises (a fork), Python 3.12+ forgets the current event loop in
    the child, and ``get_event_loop()`` would hand out a new loop that never runs.
    """
    loop = getattr(reactor, "_asyncioEventloop", None)
    if loop is None:
        raise ReactorError("the installed reactor is not Twisted's asyncio reactor")
    return loop


class Timer(Protocol):
    """What a connection keeps of a scheduled call: ``cancel()``, called only
    while the call is pending (its holder drops the handle when it runs).
    Twisted's ``DelayedCall`` and asyncio's ``TimerHandle`` both fit."""

    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """The server's one scheduler (the factory's ``clock``): the scheduling
    half of ``IReactorTime``. A :class:`LoopClock` in production, a
    :class:`twisted.internet.task.Clock` in the tests."""

    def seconds(self) -> float: ...

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any) -> Timer: ...  # noqa: N802


class LoopClock:
    """The server's one scheduler in production: the scheduling half of
    Twisted's ``IReactorTime`` (``seconds()``, ``callLater()``) over the asyncio
    event loop under the reactor.

    Every connection timer (request head, keep-alive, send, paused-peer check,
    WebSocket handshake and pings, app-close, TLS close) and every "at the end
    of this loop pass" flush (``callLater(0, f)``) is scheduled through the
    factory's clock: this object in production, a
    :class:`twisted.internet.task.Clock` in the tests, on the same code path.

    It is the loop's own timers rather than the reactor's ``callLater``: one C
    timer on uvloop, no ``DelayedCall`` and no linear search of Twisted's heap
    when a deadline moves sooner. ``callLater(0, f)`` is ``loop.call_soon``:
    ``f`` runs once the loop's current pass is done, as on a ``Clock`` at the
    next ``advance(0)``. Times are the loop's (monotonic) seconds.
    """

    __slots__ = ("loop", "seconds", "callLater", "_call_later", "_call_soon")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: Seconds on the loop's clock (``time.monotonic`` itself for asyncio's
        #: own loops, one call less than ``loop.time`` on the hot path).
        self.seconds: Callable[[], float] = (
            time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        )
        self._call_later = loop.call_later
        self._call_soon = loop.call_soon
        #: ``callLater(delay, f, *args)``: uvloop's own ``call_later`` already
        #: runs a delay of 0 (under half a millisecond) as ``call_soon`` does,
        #: in C; asyncio's would put it in its timer heap, so 0 goes to
        #: ``call_soon`` here.
        self.callLater: Callable[..., Timer] = (
            loop.call_later if loop_name(loop) == "uvloop" else self._asyncio_call_later
        )

    @classmethod
    def of(cls, reactor: Any) -> LoopClock:
        """The clock of Twisted's asyncio ``reactor`` (see :func:`reactor_loop`)."""
        return cls(reactor_loop(reactor))

    def _asyncio_call_later(self, delay: float, f: Callable[..., Any], *args: Any) -> Timer:
        if delay <= 0:
            return self._call_soon(f, *args)
        return self._call_later(delay, f, *args)
