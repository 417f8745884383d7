"""``--reload``: serve from one worker and replace it when a watched file changes.

The parent is the worker :class:`~twisted_asgi.workers.Supervisor` with one
worker: it binds the listeners once and every worker it starts inherits them,
so a restart refuses no connection (they queue in the kernel, or the old
worker takes them, until the new one serves). A change replaces the worker as
a rolling restart does: the new one starts first and, once it serves, the old
one drains. When the new code does not start (a syntax error, an import that
fails, a lifespan startup that fails), its error is in the log, the previous
worker keeps serving the code it loaded, and the next change tries again;
with no worker at all (the first start failed), requests wait in the kernel's
queue until a change brings one up.

Files are watched with watchfiles (the ``reload`` extra) in a thread of the
parent, which only tells the reactor what changed.
"""

from __future__ import annotations

import os
import threading
from pathlib import PurePath
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

__all__ = ["MISSING", "Reloader", "describe_changes", "watch_filter"]

log = Logger(namespace="twisted_asgi.reload")

#: Changed files named in the one line a restart prints (then "and N more").
_SHOWN = 5
#: The one line printed when watchfiles is not installed.
MISSING = "--reload needs the watchfiles package: pip install 'twisted-asgi[reload]'"


def watch_filter(include: tuple[str, ...], exclude: tuple[str, ...]) -> Any:
    """A watchfiles filter: watchfiles' default one (editor and bytecode files,
    ``.git``, ``__pycache__``, ``.venv`` ...), then ``exclude`` (any match drops
    the file) and ``include`` (some match is needed), glob patterns matched
    against the end of the path as :meth:`pathlib.PurePath.match` does."""
    from watchfiles import DefaultFilter

    class Filter(DefaultFilter):
        def __call__(self, change: Any, path: str) -> bool:
            if not super().__call__(change, path):
                return False
            pure = PurePath(path)
            if any(pure.match(pattern) for pattern in exclude):
                return False
            return any(pure.match(pattern) for pattern in include)

    return Filter()


class Reloader:
    """Watches ``directories`` for the supervisor and replaces its worker on change."""

    def __init__(self, supervisor: Any, directories: list[str], include: tuple[str, ...], exclude: tuple[str, ...]):
        self.supervisor = supervisor
        self.reactor = supervisor.reactor
        self.directories = [os.path.abspath(d) for d in directories]
        self.include = include
        self.exclude = exclude
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._again: set[str] = set()

    def start(self) -> None:
        log.info(
            "Watching {dirs} for changes to {patterns} (--reload)",
            dirs=", ".join(self.directories),
            patterns=", ".join(self.include),
        )
        self._thread = threading.Thread(target=self._watch, name="twisted-asgi reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        from watchfiles import watch

        try:
            for changes in watch(
                *self.directories,
                watch_filter=watch_filter(self.include, self.exclude),
                stop_event=self._stop,
                debounce=400,
                step=50,
                rust_timeout=500,
                raise_interrupt=False,
            ):
                files = sorted({_shown(path) for _change, path in changes})
                self.reactor.callFromThread(self.changed, files)
        except Exception as exc:  # noqa: BLE001 (the watcher must not fail silently)
            self.reactor.callFromThread(log.error, "--reload stopped watching: {error}", error=str(exc))

    def changed(self, files: list[str]) -> None:
        """Files changed (in the reactor): replace the worker, one restart at a time."""
        if self.supervisor.stopping:
            return
        if self._busy:
            self._again.update(files)  # once the restart under way is done
            return
        defer.ensureDeferred(self._restart(files))

    async def _restart(self, files: list[str]) -> None:
        self._busy = True
        try:
            while files and not self.supervisor.stopping:
                log.info("Reloading: {files} changed", files=describe_changes(files))
                await self._replace()
                files, self._again = sorted(self._again), set()
        finally:
            self._busy = False

    async def _replace(self) -> None:
        from .workers import _settled

        supervisor = self.supervisor
        current = [w for w in supervisor.workers if not w.retiring and not w.replacing]
        if current and current[0].replacement and not current[0].ready:
            # Starting in a recycled worker's place: let that replacement finish first.
            await _settled(current[0])
            current = [w for w in supervisor.workers if not w.retiring and not w.replacing]
        if supervisor.metrics is not None:
            supervisor.metrics.metrics.worker_restart("reload")
        try:
            if current:
                await supervisor._replace(current[0])
            else:
                # The last start failed: nothing serves, requests wait in the kernel's queue.
                await supervisor._spawn(0, replacement=True).became_ready
        except RuntimeError:
            pass  # the supervisor logged it; the next change tries again


def describe_changes(files: list[str]) -> str:
    """The changed files as the restart's line names them: the first few, then how many more."""
    shown = ", ".join(files[:_SHOWN])
    return shown + (f" and {len(files) - _SHOWN} more" if len(files) > _SHOWN else "")


def _shown(path: str) -> str:
    """``path`` relative to the current directory when under it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
