"""Serving :mod:`twisted_asgi.metrics` (``--metrics-endpoint``).

* :class:`MetricsService` listens on an endpoint string of its own (never one
  of the application's listeners) and answers ``GET /metrics`` in the
  Prometheus text format; anything else gets 404, methods other than GET and
  HEAD get 405. It is served by ``twisted.web``, not by the ASGI stack, so a
  scrape never counts as an application request and works while the
  application is overloaded.
* :class:`LagSampler` measures how late the event loop runs a timer.
* :class:`SnapshotWriter` (in each worker) and :class:`Aggregator` (in the
  supervisor) carry the workers' counters to the one endpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from .metrics import Metrics, fold, merge, read_snapshots, render, write_snapshot

__all__ = ["METRICS_DIR", "Aggregator", "LagSampler", "MetricsService", "SnapshotWriter", "metrics_resource"]

#: The environment variable that tells a worker where to write its snapshot
#: (set by the supervisor; a directory only it and its workers use).
METRICS_DIR = "TWISTED_ASGI_METRICS_DIR"

log = Logger(namespace="twisted_asgi.metrics")

#: The content type of the Prometheus text format, version 0.0.4.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class _MetricsPage(Resource):
    isLeaf = True

    def __init__(self, source: Callable[[], dict[str, Any]]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.source = source

    def render(self, request: Any) -> bytes:
        if request.path != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Not found: the metrics are at /metrics\n"
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return b""
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        return render(self.source())


def metrics_resource(source: Callable[[], dict[str, Any]]) -> Resource:
    """The ``/metrics`` resource over ``source`` (a function returning a snapshot)."""
    return _MetricsPage(source)


class _QuietSite(Site):
    # twisted.web logs every request (and its factory's start and stop) to the
    # server log: a scrape every few seconds would bury the log.
    noisy = False

    def log(self, request: Any) -> None:
        pass

    # With no request log there is nothing to set up: HTTPFactory's
    # startFactory would open one and refresh its cached date every second
    # (a reactor timer for as long as the server runs, for nothing).

    def startFactory(self) -> None:  # noqa: N802 (Twisted's name)
        pass

    def stopFactory(self) -> None:  # noqa: N802 (Twisted's name)
        pass


class MetricsService:
    """Listen on ``description`` and serve ``source()`` at ``/metrics``.

    A listener that cannot be made is logged (critical) and the server goes
    on serving its application: metrics are not worth an outage."""

    def __init__(self, reactor: Any, description: str, source: Callable[[], dict[str, Any]]) -> None:
        self.reactor = reactor
        self.description = description
        self.source = source
        self.port: Any = None

    def start(self) -> defer.Deferred[Any]:
        from .listeners import endpoint_from_string

        site = _QuietSite(metrics_resource(self.source))  # type: ignore[no-untyped-call]
        site.displayTracebacks = False
        try:
            endpoint = endpoint_from_string(self.reactor, self.description)
            d: defer.Deferred[Any] = endpoint.listen(site)
        except Exception as exc:  # noqa: BLE001 (a bad string or a bind error: said in one line)
            d = defer.fail(exc)

        def listening(port: Any) -> Any:
            self.port = port
            log.info("Metrics at {address}/metrics", address=_address(port, self.description))
            return port

        def failed(failure: Any) -> None:
            log.critical(
                "Cannot serve metrics on {description}: {error}",
                description=self.description,
                error=failure.getErrorMessage(),
            )

        return d.addCallbacks(listening, failed)

    def stop(self) -> defer.Deferred[Any] | None:
        port, self.port = self.port, None
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return None


def _address(port: Any, description: str) -> str:
    host = port.getHost()
    if hasattr(host, "port"):
        scheme = "https" if description.partition(":")[0].strip().lower() == "ssl" else "http"
        return f"{scheme}://{host.host}:{host.port}"
    return f"unix:{getattr(host, 'name', host)}"


class LagSampler:
    """Every ``interval`` seconds, record how late the timer ran.

    ``clock``: the server's scheduler (``reactor.LoopClock``: the event loop's
    own timer, not a Twisted ``DelayedCall``; a tick costs a few thousand
    instructions, which matters to a benchmark that counts them under
    Valgrind, where a second of the server's life is a thousand requests)."""

    def __init__(self, metrics: Metrics, clock: Any, interval: float = 0.5) -> None:
        self.metrics = metrics
        self.clock = clock
        self.interval = interval
        self._call: Any = None
        self._due = 0.0

    def start(self) -> None:
        self._due = self.clock.seconds() + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        now = self.clock.seconds()
        self.metrics.loop_lagged(max(0.0, now - self._due))
        self._due = now + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)

    def stop(self) -> None:
        # The pending call is always the next tick (each tick schedules the
        # next before it returns), so it can be cancelled.
        call, self._call = self._call, None
        if call is not None:
            call.cancel()


class SnapshotWriter:
    """A worker's side: write the counters to ``directory/name.json`` every
    ``interval`` seconds, and once more when it stops."""

    def __init__(self, metrics: Metrics, clock: Any, directory: str, name: str, interval: float = 1.0) -> None:
        self.metrics = metrics
        self.clock = clock
        self.directory = directory
        self.name = name
        self.interval = interval
        self._call: Any = None

    def start(self) -> None:
        self.write()

    def write(self) -> None:
        try:
            write_snapshot(self.directory, self.name, self.metrics)
        except OSError as exc:
            log.warn("Cannot write the metrics snapshot: {error}", error=exc)
        self._call = self.clock.callLater(self.interval, self.write)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        try:
            write_snapshot(self.directory, self.name, self.metrics)
        except OSError:
            pass


class Aggregator:
    """The supervisor's side: its own counters, the files of live workers and
    the folded counters of workers that ended."""

    def __init__(self, metrics: Metrics, directory: str | None = None) -> None:
        self.metrics = metrics
        self.directory = directory or tempfile.mkdtemp(prefix="twisted-asgi-metrics-")
        self.retired: dict[str, Any] = merge([])

    def snapshot(self) -> dict[str, Any]:
        live = [snap for _name, snap in read_snapshots(self.directory)]
        return merge([self.metrics.snapshot(), self.retired, *live])

    def ended(self, name: str) -> None:
        """A worker ended: keep its counters, drop its gauges and its file."""
        path = os.path.join(self.directory, name + ".json")
        try:
            with open(path, encoding="utf-8") as stream:
                self.retired = fold(self.retired, json.load(stream))
            os.remove(path)
        except (OSError, ValueError):
            # It never wrote one (died at start-up), or the file is damaged.
            pass

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
