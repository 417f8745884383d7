"""ASGI lifespan: run the app's ``lifespan`` scope for startup and shutdown.

Modes (``Config.lifespan``):

* ``on``: the app must support lifespan; an exception or ``startup.failed`` is
  fatal and the server exits non-zero with the message.
* ``auto``: an app that raises on the lifespan scope before sending anything is
  served without lifespan (logged once at info level, as Django's handler needs);
  an explicit ``lifespan.startup.failed`` is still fatal.
* ``off``: never called.
"""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from .config import Config

__all__ = ["Lifespan", "LifespanFailure"]

log = Logger(namespace="twisted_asgi.lifespan")


class LifespanFailure(Exception):
    """Startup or shutdown failed; the message says why."""


class Lifespan:
    """One lifespan conversation with the app."""

    def __init__(self, app: Any, config: Config) -> None:
        self.app = app
        self.config = config
        #: Shared into every request scope as ``scope["state"]`` (shallow copies).
        self.state: dict[str, Any] = {}
        #: False once the app showed it does not speak lifespan (auto mode).
        self.supported = True
        self._receive: asyncio.Queue | None = None
        self._startup: asyncio.Future | None = None
        self._shutdown: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._sent_anything = False

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the app's answer.

        :raises LifespanFailure: the app failed startup (fatal in every mode).
        """
        loop = asyncio.get_running_loop()
        self._receive = asyncio.Queue()
        self._startup = loop.create_future()
        self._shutdown = loop.create_future()
        self._task = loop.create_task(self._main())
        await self._receive.put({"type": "lifespan.startup"})
        try:
            await asyncio.wait_for(asyncio.shield(self._startup), self.config.timeout_lifespan or None)
        except TimeoutError:
            raise LifespanFailure(f"lifespan startup did not complete within {self.config.timeout_lifespan}s") from None

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app's answer (errors are logged)."""
        if not self.supported or self._task is None or self._receive is None:
            return
        await self._receive.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self._shutdown), self.config.timeout_lifespan or None)  # type: ignore[arg-type]
        except TimeoutError:
            log.error("Lifespan shutdown did not complete within {timeout}s", timeout=self.config.timeout_lifespan)
            self._task.cancel()
        except LifespanFailure as exc:
            log.error("Lifespan shutdown failed: {message}", message=str(exc))

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive_message, self._send_message)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self.config.lifespan == "auto" and not self._sent_anything:
                self.supported = False
                log.info(
                    "ASGI 'lifespan' protocol appears unsupported by the app ({error}); serving without it.",
                    error=f"{type(exc).__name__}: {exc}",
                )
                self._resolve(self._startup, None)
                self._resolve(self._shutdown, None)
                return
            log.failure("Exception in ASGI lifespan", Failure())
            failure = LifespanFailure(f"the app raised {type(exc).__name__}: {exc}")
            self._resolve(self._startup, failure)
            self._resolve(self._shutdown, failure)
        else:
            if self._startup is not None and not self._startup.done():
                if self.config.lifespan == "auto" and not self._sent_anything:
                    self.supported = False
                    log.info("ASGI app returned from the lifespan scope at once; serving without lifespan.")
                    self._resolve(self._startup, None)
                else:
                    self._resolve(self._startup, LifespanFailure("the app returned before completing lifespan startup"))
            self._resolve(self._shutdown, None)

    @staticmethod
    def _resolve(future: asyncio.Future | None, outcome: BaseException | None) -> None:
        if future is None or future.done():
            return
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
            future.exception()  # retrieved here: a shutdown nobody awaits must not warn

    async def _receive_message(self) -> dict:
        assert self._receive is not None
        return await self._receive.get()

    async def _send_message(self, message: Any) -> None:
        self._sent_anything = True
        mtype = message.get("type") if isinstance(message, dict) else None
        if mtype == "lifespan.startup.complete":
            self._resolve(self._startup, None)
        elif mtype == "lifespan.startup.failed":
            self._resolve(self._startup, LifespanFailure(message.get("message") or "lifespan startup failed"))
        elif mtype == "lifespan.shutdown.complete":
            self._resolve(self._shutdown, None)
        elif mtype == "lifespan.shutdown.failed":
            self._resolve(self._shutdown, LifespanFailure(message.get("message") or "lifespan shutdown failed"))
        else:
            raise RuntimeError(f"Unexpected ASGI lifespan message {mtype!r}")
