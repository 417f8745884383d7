"""The server's one scheduler, as the connections see it (typing only).

The factory's ``clock`` is a :class:`Scheduler`: in production a
:class:`~twisted_asgi.reactor.LoopClock` over the event loop, in the tests a
:class:`twisted.internet.task.Clock`. This module imports no framework, so the
runner and the shells name these types without importing the reactor module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Scheduler", "Timer"]


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
