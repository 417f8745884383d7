"""Settings for the whole test session, and the harness the shell tests share:
an asyncio loop driven by hand (``loop``) and :func:`settle`, which runs it
until nothing is ready (app tasks have gone as far as they can)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest
from twisted.internet.task import Clock

# A shell without job control starts a background job with SIGINT ignored, and
# an ignored signal stays ignored across exec: servers started by the tests
# would then never see the SIGINT (Ctrl-C) the shutdown tests send them. A
# handler, unlike SIG_IGN, is reset to the default in the child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def settle(loop: asyncio.AbstractEventLoop, clock: Clock | None = None) -> None:
    """Run the loop until no callback is ready (app tasks have run as far as they can).

    With ``clock`` (the test's stand-in for the server's one scheduler, see
    ``ASGIFactory.clock``), each pass also runs the calls due on it now: the
    "at the end of this loop pass" flushes (``callLater(0, ...)``), which in
    production the event loop runs after its current pass."""
    for _ in range(50):
        loop.run_until_complete(asyncio.sleep(0))
        if clock is not None:
            clock.advance(0)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh asyncio loop the test drives with :func:`settle`; apps still
    waiting at the end are cancelled while it still runs, not destroyed with it."""
    loop = asyncio.new_event_loop()
    yield loop
    for task in asyncio.all_tasks(loop):
        task.cancel()
    settle(loop)
    loop.close()
