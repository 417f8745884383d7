"""Installing and checking Twisted's asyncio reactor (never on import)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from twisted.logger import Logger

from ._upstream.fastpaths import report as report_fast_paths
from ._upstream.twisted import event_loop, fast_reactor_class

__all__ = ["LoopClock", "ReactorError", "Scheduler", "Timer", "install_asyncio_reactor"]

log = Logger(namespace="twisted_asgi.reactor")


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
        if loop == "uvloop" and "uvloop" not in type(event_loop(reactor)).__module__:
            raise ReactorError("--loop uvloop needs the reactor installed by twisted-asgi itself; drop --reactor")
        report_fast_paths(log, reactor)
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
        new_loop = uvloop.new_event_loop()
    else:
        new_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(new_loop)
    from twisted.internet.main import installReactor

    made: Any = _reactor_class(uvloop is not None)(new_loop)
    if uvloop is not None and not made.asgi_seam:
        # Without the seam nothing checks uvloop's dead poll handles (see
        # _reactor_class): asyncio's own loop instead, which has none.
        why = made.asgi_seam_problem
        _discard(made, new_loop)
        new_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(new_loop)
        made = _reactor_class(False)(new_loop)
        made.asgi_seam_problem = f"{why}; so asyncio's event loop runs instead of uvloop (uvloop issue 552)"
    installReactor(made)
    report_fast_paths(log, made)
    return made


def _discard(reactor: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Close a reactor that was made but never installed, and its loop."""
    waker = getattr(reactor, "waker", None)
    if waker is not None:
        waker.connectionLost(None)  # closes its two descriptors
    loop.close()


def _reactor_class(uv: bool = False) -> type:
    """Twisted's asyncio reactor, with a leaner path from the event loop to a
    ready socket.

    Twisted registers every socket with the loop through ``callWithLogger``,
    which sets up a legacy-log context around each read or write (four Python
    calls per event) so that old-style ``log.msg`` calls made inside know
    their "system". Nothing in this server logs that way on the hot path, so
    the socket's ``doRead``/``doWrite`` is called directly, with Twisted's own
    error handling; registration, removal, and everything else stay Twisted's.
    The seam reads Twisted's private bookkeeping, so it lives behind the fence
    (:func:`twisted_asgi._upstream.twisted.fast_reactor_class`); where that
    bookkeeping is missing or changed, the reactor registers sockets Twisted's
    own way and says so at start-up.

    ``uv``: on uvloop, a socket error the peer caused (a reset) makes libuv
    report the poll handle as failed; uvloop then runs the read callback once
    and closes the handle without telling anyone (uvloop issue 552). When that
    read still found data, Twisted would keep a connection that is never read
    again, and the descriptor's dead handle would break the next connection
    given the same number. So after each read the socket is asked for a
    pending error, and a connection that has one is disconnected at once,
    while its handle is still alive.
    """
    return fast_reactor_class(check_reset=uv)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``: which event loop runs under the reactor."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def reactor_loop(reactor: Any) -> asyncio.AbstractEventLoop:
    """The asyncio event loop under Twisted's asyncio ``reactor``.

    Read from the reactor itself, never from ``asyncio.get_event_loop()``: after
    twistd daemonises (a fork), Python 3.12+ forgets the current event loop in
    the child, and ``get_event_loop()`` would hand out a new loop that never runs.
    """
    loop = event_loop(reactor)
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

    __slots__ = ("loop", "seconds", "_call_later", "_call_soon")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: Seconds on the loop's clock (``time.monotonic`` itself for asyncio's
        #: own loops, one call less than ``loop.time`` on the hot path).
        self.seconds: Callable[[], float] = (
            time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        )
        self._call_later = loop.call_later
        self._call_soon = loop.call_soon

    @classmethod
    def of(cls, reactor: Any) -> LoopClock:
        """The clock of Twisted's asyncio ``reactor`` (see :func:`reactor_loop`)."""
        return cls(reactor_loop(reactor))

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any) -> Timer:  # noqa: N802 (IReactorTime's name)
        if delay <= 0:
            return self._call_soon(f, *args)
        return self._call_later(delay, f, *args)
