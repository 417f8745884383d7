"""Installing and checking Twisted's asyncio reactor (never on import)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

__all__ = ["ReactorError", "install_asyncio_reactor"]


class ReactorError(Exception):
    """The installed reactor cannot run ASGI apps."""


def install_asyncio_reactor(loop: str = "asyncio") -> Any:
    """Install Twisted's asyncio reactor over a new ``loop`` event loop, or check
    that the reactor already installed is that one. Returns the reactor.

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
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise ReactorError("--loop uvloop needs the uvloop package (pip install twisted-asgi[uvloop])") from None
        event_loop = uvloop.new_event_loop()
    else:
        event_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(event_loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(event_loop)
    from twisted.internet import reactor

    return reactor


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
