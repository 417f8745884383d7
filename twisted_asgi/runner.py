"""The one place where ``await app(scope, receive, send)`` runs.

Each HTTP request (HTTP/1.1 request or HTTP/2 stream) gets an :class:`HTTPTask`:
one asyncio task running the app, the ``receive``/``send`` callables given to it,
and the exception policy. The task talks to its connection through a small
*carrier* interface (:class:`HTTPCarrier`) that the HTTP/1.1 connection and each
HTTP/2 stream handler implement; the sans-IO :class:`~twisted_asgi.cycle.HTTPCycle` checks
every message.

Policy (the "server behaviour" page states it for users):

* an exception before ``http.response.start`` is logged once with its traceback
  and the client gets 500; after it, the connection is closed;
* an app that returns without starting a response gives 500, one that returns
  with its body unfinished gets its connection closed; each logged once with an
  exact message;
* ``send()`` after the client left raises :class:`~twisted_asgi.events.ClientDisconnected`
  (an ``OSError``, ASGI www spec 2.4), which the server does not log as an error;
* after the client left, the app has ``timeout_app_close`` seconds to return
  before its task is cancelled; ``timeout_response`` bounds a whole response.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any, Protocol

from twisted.logger import Logger
from twisted.python.failure import Failure

from .clock import Scheduler, Timer
from .config import Config
from .cycle import HTTPCycle, SendState
from .events import AppError, Body, ClientDisconnected, EarlyHint, FileBody, Request, Response
from .filesend import send_file
from .scope import client_text

__all__ = ["HTTPCarrier", "HTTPTask", "Runner"]

log = Logger(namespace="twisted_asgi.app")

# asyncio.Task(eager_start=True) exists from Python 3.12 on.
_EAGER = sys.version_info >= (3, 12)

#: An HTTP cycle's state once its response is complete (see _AppCall.run).
_SENT = SendState.DONE


#: Functions that turn an app's exception into one log line that says what to
#: do, instead of a traceback (``hint(exc, scope_type)``, None for "not mine").
#: The Django adapter registers its refusal hint; the runner knows no framework.
_EXCEPTION_HINTS: list[Callable[[BaseException, str], str | None]] = []


def register_exception_hint(hint: Callable[[BaseException, str], str | None]) -> None:
    """Let ``hint`` explain an app's exception in one line (see ``_EXCEPTION_HINTS``)."""
    if hint not in _EXCEPTION_HINTS:
        _EXCEPTION_HINTS.append(hint)


def exception_hint(exc: BaseException, scope_type: str) -> str | None:
    """The first registered hint's line for ``exc``, or None."""
    for hint in _EXCEPTION_HINTS:
        line = hint(exc, scope_type)
        if line is not None:
            return line
    return None


class HTTPCarrier(Protocol):
    """What an :class:`HTTPTask` needs from what carries its request: the
    HTTP/1.1 connection, or one HTTP/2 stream."""

    #: The app call it carries (set by :meth:`Runner.start_http`).
    task: HTTPTask | None

    @property
    def write_paused(self) -> bool:
        """True while the app's ``send()`` must wait (transport paused, window shut)."""

    def send_response(self, task: HTTPTask, event: Response) -> None: ...
    def send_body(self, task: HTTPTask, event: Body) -> None: ...
    def send_trailers(self, task: HTTPTask, event: Any) -> None: ...
    def send_early_hint(self, task: HTTPTask, event: EarlyHint) -> None: ...
    def send_continue(self, task: HTTPTask) -> None: ...
    def resume_reading(self, task: HTTPTask) -> None: ...
    def app_finished(self, task: HTTPTask) -> None: ...
    def app_timed_out(self, task: HTTPTask) -> None: ...


class Runner:
    """Runs ASGI apps as asyncio tasks on the reactor's event loop."""

    def __init__(
        self, app: Any, config: Config, clock: Scheduler, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.clock = clock
        self._loop = loop
        #: The Prometheus counters (``--metrics-endpoint``), None when off.
        self.metrics: Any = None
        #: App calls not yet returned: work after a response (background tasks)
        #: still runs in them, and a graceful shutdown waits for it.
        self.running: set[asyncio.Task[None]] = set()

    async def finish(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the app calls still running to
        return, then cancel the rest (and give them a moment to unwind)."""
        tasks = [task for task in self.running if not task.done()]
        if not tasks:
            return
        if timeout > 0:
            log.info(
                "Waiting up to {timeout:.3g}s for {n} application call(s) to return", timeout=timeout, n=len(tasks)
            )
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
        else:
            pending = set(tasks)
        if pending:
            log.warn("Cancelling {n} application call(s) still running at shutdown", n=len(pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_event_loop()
        return self._loop

    def start_http(
        self, scope: dict[str, Any], request: Request, carrier: HTTPCarrier, body_limit: int, eager: bool = True
    ) -> HTTPTask:
        """Start the app on one HTTP request; return its app call, which is
        ``carrier.task`` before the app's first step.

        ``body_limit``: bytes of unread body queued before the carrier is told
        to stop reading (:data:`~twisted_asgi.cycle.REPORT_EVERY_READ`: told of
        every read). With ``eager`` (Python 3.12+) the app's first step runs
        now, inside this call: an app that answers without waiting costs no
        extra event-loop pass; the carrier must then be ready to be called.
        """
        call = HTTPTask(self, scope, HTTPCycle(body_limit, request.has_body, request.expect_continue), carrier)
        carrier.task = call
        # _AppCall.start, inlined (once per request: a call less).
        loop = self._loop or self.loop
        if eager and _EAGER:
            task = asyncio.Task(call.run(), loop=loop, eager_start=True)  # type: ignore[call-arg]
            call.task = task
            if not task.done():
                self.running.add(task)
        else:
            task = call.task = loop.create_task(call.run())
            self.running.add(task)  # (not done: its first step is to come)
        timeout = self.config.timeout_response
        if timeout and call.outcome is None:
            call.response_timer = self.clock.callLater(timeout, call.on_response_timeout)
        return call

    def start_websocket(self, scope: dict[str, Any], cycle: Any, carrier: WebSocketCarrier) -> WebSocketTask:
        """Start the app on one WebSocket; return its app call, which is
        ``carrier.task`` before the app's first step (on a later loop pass)."""
        task = WebSocketTask(self, scope, cycle, carrier)
        carrier.task = task
        task.start(False)
        return task


class _AppCall:
    """What an app call for an HTTP request and for a WebSocket share: the
    wait for a message in ``receive()``, the wait for the transport in
    ``send()``, waking the app when the connection is gone, and the timeout
    for an app that goes on after that."""

    __slots__ = (
        "runner",
        "scope",
        "cycle",
        "carrier",
        "task",
        "recv_waiter",
        "drain_waiter",
        "close_timer",
        "response_timer",
        "reading_paused",
        "outcome",
    )

    #: ``timeout_response`` bounds the call (HTTP).
    _timed = False

    #: Completes "ASGI app still running {timeout}s after ..." when the app is cancelled.
    _gone = "its client left"

    def __init__(self, runner: Runner, scope: dict[str, Any], cycle: Any, carrier: Any) -> None:
        self.runner = runner
        self.scope = scope
        self.cycle = cycle
        #: What carries the call (see :class:`HTTPCarrier`, :class:`WebSocketCarrier`).
        self.carrier = carrier
        self.task: asyncio.Task | None = None
        self.recv_waiter: asyncio.Future | None = None
        self.drain_waiter: asyncio.Future | None = None
        self.close_timer: Timer | None = None
        #: HTTP only: the timer of ``timeout_response``.
        self.response_timer: Timer | None = None
        self.reading_paused = False
        #: How the app ended: None while running, then "ok", "error", "cancelled".
        self.outcome: str | None = None

    # -- the app's side ----------------------------------------------------

    async def run(self) -> None:
        cycle = self.cycle
        try:
            await self.runner.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self.outcome = "cancelled"
        except Exception as exc:
            if cycle.disconnected and isinstance(exc, OSError):
                # ASGI www 2.4: the app let our ClientDisconnected (or its own
                # socket error) out after the client left; not a server error.
                self.outcome = "ok"
            else:
                self.outcome = "error"
                self._log_exception(exc)
                if self.runner.metrics is not None:
                    scope = self.scope
                    if scope["type"] == "websocket":
                        self.runner.metrics.app_exception("websocket")
                    else:
                        self.runner.metrics.app_exception("http/2" if scope["http_version"] == "2" else "http/1.1")
        else:
            self.outcome = "ok"
            # An HTTP response completed leaves nothing to report: no call
            # (once per request). A WebSocket's cycle is never in that state.
            if not cycle.disconnected and cycle.state is not _SENT:
                self._check_returned()
        finally:
            self.runner.running.discard(self.task)
            if self.close_timer is not None or self.response_timer is not None:
                self._cancel_timers()
            self.carrier.app_finished(self)

    def _log_exception(self, exc: Exception) -> None:
        """Log the app's exception (called while it is being handled): once, with its traceback."""
        log.failure("Exception in ASGI application", Failure())

    def _check_returned(self) -> None:
        """The app returned with the client still there: log what it left undone."""

    def _cancel_timers(self) -> None:
        for timer in (self.close_timer, self.response_timer):
            if timer is not None:
                timer.cancel()
        self.close_timer = self.response_timer = None

    async def receive(self) -> dict:
        cycle = self.cycle
        message = cycle.next_message()
        while message is None:
            self._before_wait()
            if self.reading_paused:
                self.reading_paused = False
                self.carrier.resume_reading(self)
            waiter = self.recv_waiter = self.runner.loop.create_future()
            try:
                await waiter
            finally:
                self.recv_waiter = None
            message = cycle.next_message()
        if self.reading_paused and not cycle.over_limit:
            self.reading_paused = False
            self.carrier.resume_reading(self)
        return message

    async def send(self, message: Any) -> None:
        """The app's ``send()``: each kind of call has its own."""
        raise NotImplementedError

    def _before_wait(self) -> None:
        """Called each time ``receive()`` is about to wait for the client."""

    async def _drain(self) -> None:
        """Wait while the connection cannot take more bytes (``send()``'s back-pressure).

        Not once the connection has gone on to its next request (HTTP/1.1
        pipelining: the whole response was handed over, and the next request's
        app call waits in its place): only the carrier's current app call is
        woken when the connection can take more, or is lost."""
        carrier = self.carrier
        if carrier.write_paused and not self.cycle.disconnected and carrier.task is self:
            waiter = self.drain_waiter = self.runner.loop.create_future()
            try:
                await waiter
            finally:
                self.drain_waiter = None
                # A waiter failed by _gone_now holds its exception, whose
                # traceback holds this frame, which holds the waiter: without
                # this, the app call and its connection were left in a cycle.
                del waiter

    # -- the connection's side ---------------------------------------------

    def _wake(self) -> None:
        waiter = self.recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _gone_now(self, error: str) -> None:
        """The cycle was told the connection is gone: wake the app, make a
        waiting ``send()`` raise, and bound how long the app may go on."""
        self._wake()
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ClientDisconnected(error))
        timeout = self.runner.config.timeout_app_close
        if timeout and self.outcome is None and self.task is not None and self.close_timer is None:
            self.close_timer = self.runner.clock.callLater(timeout, self.cancel)

    def writable(self) -> None:
        """The connection can take more bytes: release a waiting ``send()``."""
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def start(self, eager: bool) -> None:
        """Run the app: the one way an app call starts (see
        :meth:`Runner.start_http`, :meth:`Runner.start_websocket`). With
        ``eager`` on Python 3.12+, its first step runs now, inside the caller
        (asyncio's eager task start)."""
        runner = self.runner
        loop = runner._loop or runner.loop
        if eager and _EAGER:
            task = asyncio.Task(self.run(), loop=loop, eager_start=True)  # type: ignore[call-arg]
        else:
            task = loop.create_task(self.run())
        self.task = task
        if not task.done():
            runner.running.add(task)
        if self._timed:
            timeout = runner.config.timeout_response
            if timeout and self.outcome is None:
                self.response_timer = runner.clock.callLater(timeout, self.on_response_timeout)

    def on_response_timeout(self) -> None:
        """``timeout_response`` passed (HTTP only)."""

    @property
    def returned(self) -> bool:
        """The app call is over (returned, failed or cancelled)."""
        return self.outcome is not None

    def error_status(self) -> int:
        """The status of the response the server sends in place of the app's,
        when the app did not complete one: 503 for an app cancelled or out of
        time, 500 for one that failed or returned without answering. The one
        place this is chosen, for HTTP/1.1, HTTP/2 and a WebSocket handshake."""
        return 503 if self.outcome is None or self.outcome == "cancelled" else 500

    def stop(self) -> None:
        """Cancel the app's task now, without a log line of its own (the
        connection's end was logged: a budget ran out, the shutdown gave up)."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()

    def cancel(self, why: str | None = None) -> None:
        """Cancel the app's task: on the app-close timeout (``why`` None), or for
        the reason ``why`` names (the graceful shutdown ran out)."""
        timer, self.close_timer = self.close_timer, None
        if why is not None and timer is not None:
            timer.cancel()  # still pending: the shutdown came first
        if self.task is not None and not self.task.done():
            if why is None:
                if self.runner.metrics is not None:
                    self.runner.metrics.timeout("timeout_app_close")
                log.warn(
                    "ASGI app still running {timeout}s after " + self._gone + "; cancelling it",
                    timeout=self.runner.config.timeout_app_close,
                )
            else:
                log.warn("ASGI app still running when {why}; cancelling it", why=why)
            self.task.cancel()


class HTTPTask(_AppCall):
    """One running app call for one HTTP request."""

    __slots__ = ()

    #: ``timeout_response`` bounds the call.
    _timed = True

    # -- the app's side ----------------------------------------------------

    def _check_returned(self) -> None:
        state = self.cycle.state
        if state is SendState.DONE:
            return
        if state is SendState.START:
            log.error("ASGI callable returned without starting response. ({request})", request=self.where())
        else:
            log.error("ASGI callable returned without completing response. ({request})", request=self.where())

    def where(self) -> str:
        """Which request, for a log line: method, path (escaped) and client."""
        scope = self.scope
        return f"{scope.get('method', '-')} {scope.get('path', '')[:200]!a} from {client_text(scope.get('client'))}"

    def _before_wait(self) -> None:
        if self.cycle.take_continue():
            # RFC 9110 §10.1.1: ask for the body only once the app wants it.
            self.carrier.send_continue(self)

    async def send(self, message: Any) -> None:
        cycle = self.cycle
        if cycle.disconnected:
            raise ClientDisconnected("client disconnected")
        event = cycle.app_send(message)
        carrier = self.carrier
        kind = type(event)
        if kind is Body:
            carrier.send_body(self, event)
        elif kind is Response:
            carrier.send_response(self, event)
            return
        elif kind is EarlyHint:
            # Written now, through the connection's one write path: the
            # back-pressure below holds an app that hints faster than its
            # client reads.
            carrier.send_early_hint(self, event)
        elif event is None:
            # An early hint after http.response.start (or without links):
            # the spec lets a server drop it, and too late is all it is.
            log.debug("Early hint dropped: after the response's start, or without links ({r})", r=self.where())
            return
        elif kind is FileBody:
            await send_file(self, event)
            return
        else:
            carrier.send_trailers(self, event)
        if carrier.write_paused:
            await self._drain()

    # -- the connection's side ---------------------------------------------

    def feed_data(self, data: bytes) -> bool:
        """Body bytes arrived; return True if the connection should stop reading."""
        over = self.cycle.feed_data(data)
        self._wake()
        if over:
            self.reading_paused = True
        return over

    def feed_end(self) -> None:
        self.cycle.feed_end()
        self._wake()

    def drop_body(self) -> int | None:
        """The response is complete and the body unread: drop what is queued
        (see :meth:`HTTPCycle.drop_body <twisted_asgi.cycle.HTTPCycle.drop_body>`)."""
        return self.cycle.drop_body()

    def feed_disconnect(self) -> None:
        """The client went away: wake the app, and bound how long it may go on."""
        if self.cycle.disconnected:
            return
        self.cycle.feed_disconnect()
        self._gone_now("client disconnected")

    def on_response_timeout(self) -> None:
        self.response_timer = None
        if self.outcome is None:
            if self.runner.metrics is not None:
                self.runner.metrics.timeout("timeout_response")
            log.warn(
                "ASGI app did not finish its response within {timeout}s", timeout=self.runner.config.timeout_response
            )
            self.carrier.app_timed_out(self)
            if self.task is not None:
                self.task.cancel()


__all__ += ["AppError"]


# -- WebSocket (appended for the WebSocket issue; see twisted_asgi/websocket.py) --


class WebSocketCarrier(Protocol):
    """What a :class:`WebSocketTask` needs from the connection carrying its WebSocket."""

    #: The app call it carries (set by :meth:`Runner.start_websocket`).
    task: WebSocketTask | None

    @property
    def write_paused(self) -> bool:
        """True while the app's ``send()`` must wait (transport paused)."""

    def send_ws(self, task: WebSocketTask, event: Any) -> None: ...
    def resume_reading(self, task: WebSocketTask) -> None: ...
    def app_finished(self, task: WebSocketTask) -> None: ...


class WebSocketTask(_AppCall):
    """One running app call for one WebSocket, checked by a
    :class:`~twisted_asgi.wscycle.WebSocketCycle`.

    The policy is :class:`HTTPTask`'s: an exception is logged once with its
    traceback (the connection then answers 500 before accept, or closes with
    1011 after it); ``send()`` once the connection is gone raises
    :class:`~twisted_asgi.events.ClientDisconnected` (ASGI www spec 2.4), which
    is not logged; then the app has ``timeout_app_close`` seconds to return.
    """

    __slots__ = ()

    _gone = "its WebSocket closed"

    def _log_exception(self, exc: Exception) -> None:
        hint = None
        if not self.cycle.handshake_answered:
            hint = exception_hint(exc, "websocket")
        if hint is not None:
            # Django's own refusal of WebSocket is a setting, not a crash:
            # one line that says how to serve WebSocket, no traceback.
            log.error("{hint}", hint=hint)
        else:
            super()._log_exception(exc)

    def close_code(self) -> int:
        """The code of the Close the server sends when the app returned with
        its WebSocket open: 1011 after an exception, else 1000 (the socket
        lives as long as the app)."""
        return 1011 if self.outcome == "error" else 1000

    def _check_returned(self) -> None:
        cycle = self.cycle
        if not cycle.handshake_answered:
            log.error("ASGI callable returned without sending handshake.")
        elif cycle.denial_unfinished:
            log.error("ASGI callable returned without completing its denial response.")

    async def send(self, message: Any) -> None:
        cycle = self.cycle
        if cycle.disconnected:
            raise ClientDisconnected("WebSocket connection is closed")
        event = cycle.app_send(message)
        carrier = self.carrier
        carrier.send_ws(self, event)
        if carrier.write_paused:
            await self._drain()

    # -- the connection's side ---------------------------------------------

    def feed_message(self, payload: bytes, binary: bool) -> bool:
        """A client message arrived; return True if the connection should stop reading."""
        over = self.cycle.feed_message(payload, binary)
        self._wake()
        if over:
            self.reading_paused = True
        return over

    def feed_disconnect(self, code: int, reason: str = "") -> None:
        """The connection is over (or the server is closing it): wake the app
        with ``websocket.disconnect`` and bound how long it may go on."""
        if self.cycle.disconnected:
            return
        self.cycle.feed_disconnect(code, reason)
        self._gone_now("WebSocket connection is closed")


__all__ += ["WebSocketCarrier", "WebSocketTask"]
