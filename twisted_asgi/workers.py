"""Several worker processes on one host sharing the listeners (``--workers N``).

The parent (the supervisor) binds every listener itself, then starts N
workers with ``python -m twisted_asgi`` and the same options; each worker
inherits the listening sockets and serves them through ``fd:fileno=N``
endpoints (``ssl:fileno=N`` for TLS, ``proxy:`` kept in front). All workers
accept from one kernel queue per listener, so a worker that dies loses only
the connections it had accepted: those still queued are taken by the others.

The supervisor:

* restarts a worker that dies, after ``timeout_worker_restart`` seconds
  (doubled while workers keep dying young);
* on SIGHUP replaces the workers one at a time (rolling restart): a new one
  is started and, once it listens, the old one is told to stop (SIGTERM) and
  finishes its requests; if the new one fails to start, the old one stays;
* recycles a worker past ``limit_worker_requests`` (the worker counts and
  says so), ``limit_worker_rss_mib`` (read from ``/proc`` every second) or
  ``timeout_worker_lifetime``: the same replacement as a rolling restart's, for
  that one worker (a new one first; once it serves, the old one drains);
* on SIGTERM/SIGINT closes its own copy of the listeners and sends SIGTERM
  to every worker, which stops listening (new connections are refused),
  finishes its requests within ``timeout_graceful_shutdown`` and exits.

Under ``--reload`` (:mod:`.reload`) it supervises one worker and replaces it
the same way when a watched file changes; a worker that cannot start then
waits for the next change instead of stopping the server.

Workers learn they are workers from the ``TWISTED_ASGI_WORKER`` environment
variable (which they remove), tell the parent they listen by writing to a
pipe (one line: ``ready``, or ``requests N`` once past their request limit),
and get SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .listeners import Listener, ListenError, bind_listener, bind_listeners

__all__ = ["ENV", "Supervisor", "attach_worker", "bind_listener", "worker_settings"]

log = Logger(namespace="twisted_asgi.workers")

#: The environment variable that makes a process a worker (JSON settings).
ENV = "TWISTED_ASGI_WORKER"
#: Restart delays stop doubling here (seconds).
_MAX_RESTART_DELAY = 30.0
#: A worker that dies sooner than this after starting counts as dying young.
_YOUNG = 60.0
#: Seconds past the graceful timeout before a stopping worker is killed.
_KILL_MARGIN = 5.0
#: Seconds between two reads of the workers' resident memory (limit_worker_rss_mib).
RSS_INTERVAL = 1.0
#: A worker's lifetime (timeout_worker_lifetime) is lengthened by up to this fraction, at random.
LIFETIME_JITTER = 0.1
#: Seconds before a recycling whose replacement failed to start is tried again.
_RECYCLE_RETRY = 30.0


# -- listeners -------------------------------------------------------------------------


# -- the supervisor -------------------------------------------------------------------------


@dataclass(eq=False)
class Worker:
    """One worker process as the supervisor sees it."""

    slot: int
    started_at: float
    process: Any = None
    ready: bool = False
    retiring: bool = False
    exited: defer.Deferred = field(default_factory=defer.Deferred)
    became_ready: defer.Deferred = field(default_factory=defer.Deferred)
    start_timer: Any = None
    #: A replacement for it is starting (recycling, rolling restart, reload).
    replacing: bool = False
    #: It replaces another worker: if it fails to start, nothing restarts it
    #: (the one it was to replace keeps serving).
    replacement: bool = False
    #: timeout_worker_lifetime's timer, and the retry of a failed recycling.
    lifetime_timer: Any = None
    retry_timer: Any = None
    #: Why it was to be recycled while another replacement of it was under
    #: way (tried again if that one fails).
    recycle_later: str | None = None
    #: Kept here: Twisted forgets ``process.pid`` once the process has ended,
    #: and the death is still to be logged with it.
    pid: int | None = None


class _WorkerProcess(ProcessProtocol):
    def __init__(self, supervisor: Supervisor, worker: Worker, notify_fd: int) -> None:
        self.supervisor = supervisor
        self.worker = worker
        self.notify_fd = notify_fd
        self.buffer = b""

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd != self.notify_fd:
            return
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.supervisor._worker_said(self.worker, line.decode("ascii", "replace"))

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        code = getattr(value, "exitCode", None)
        sig = getattr(value, "signal", None)
        self.supervisor._worker_exited(self.worker, code, sig)


class Supervisor(Service):
    """Binds the listeners and keeps ``config.workers`` workers serving them.

    ``argv`` are the options the workers get (those of this command, which a
    worker reads as a worker). ``exit_code`` is non-zero when the workers
    could not start.
    """

    def __init__(self, argv: list[str], config: Any, endpoints: list[str], reactor: Any) -> None:
        self.argv = list(argv)
        self.config = config
        self.endpoint_descriptions = list(endpoints)
        self.reactor = reactor
        self.count = config.workers
        self.listeners: list[Listener] = []
        self.workers: list[Worker] = []
        self.exit_code = 0
        self.ever_ready = False
        self.stopping = False
        self.rolling = False
        self.restart_delay = config.timeout_worker_restart
        self.ready: defer.Deferred = defer.Deferred()
        self._restart_timers: list[Any] = []
        self._rss_check: LoopingCall | None = None
        #: Set by :mod:`.reload` under ``--reload``: a worker that cannot start
        #: waits for the next change instead of stopping the server.
        self.reloader: Any = None
        #: ``--metrics-endpoint``: the workers' counters added up
        #: (:class:`~twisted_asgi.metrics_http.Aggregator`), and their listener.
        self.metrics: Any = None
        self._metrics_service: Any = None
        if config.metrics_endpoint:
            from .metrics import Metrics
            from .metrics_http import Aggregator, MetricsService

            self.metrics = Aggregator(Metrics())
            self._metrics_service = MetricsService(reactor, config.metrics_endpoint, self.metrics.snapshot)

    # -- start ---------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self._begin)

    def bind_now(self) -> None:
        """Bind every listener now (before twistd detaches), so that a listener
        that cannot be bound fails the command itself.

        :raises ListenError: which listener, and why (nothing stays bound then).
        """
        self.listeners = bind_listeners(self.endpoint_descriptions, self.config.limit_listen_backlog)

    def _begin(self) -> None:
        from .server import install_stop_signals

        install_stop_signals(self.reactor, self._force_stop)
        if not self.listeners:
            try:
                self.listeners = bind_listeners(self.endpoint_descriptions, self.config.limit_listen_backlog)
            except ListenError as exc:
                self._fatal(f"Cannot listen on {exc.description}: {exc.reason}")
                return
        for listener in self.listeners:
            log.info("Listening on {endpoint} ({address})", endpoint=listener.description, address=listener.address())
        _on_signal(signal.SIGHUP, lambda: self.reactor.callFromThread(self.rolling_restart))
        if self._metrics_service is not None:
            self._metrics_service.start()
        log.info("Starting {n} worker(s)", n=self.count)
        for slot in range(self.count):
            self._spawn(slot)
        if self.config.limit_worker_rss_mib:
            if _rss_mib(os.getpid()) is None:
                log.warn("--limit-worker-rss needs /proc (Linux): worker memory is not checked here")
            else:
                self._rss_check = LoopingCall(self._check_rss)
                self._rss_check.clock = self.reactor
                self._rss_check.start(RSS_INTERVAL, now=False)
        if self.reloader is not None:
            self.reloader.start()

    def _spawn(self, slot: int, replacement: bool = False) -> Worker:
        fds = [listener.fileno for listener in self.listeners]
        notify_fd = max([2, *fds]) + 1
        settings = {
            "endpoints": [listener.worker_description for listener in self.listeners],
            "notify_fd": notify_fd,
            "parent": os.getpid(),
        }
        env = dict(os.environ)
        env[ENV] = json.dumps(settings)
        if self.metrics is not None:
            from .metrics_http import METRICS_DIR

            env[METRICS_DIR] = self.metrics.directory
        # The systemd variables describe this process's sockets, not the worker's.
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(name, None)
        child_fds: dict[int, Any] = {0: 0, 1: 1, 2: 2, notify_fd: "r"}
        for fd in fds:
            child_fds[fd] = fd
        worker = Worker(slot, self.reactor.seconds(), replacement=replacement)
        protocol = _WorkerProcess(self, worker, notify_fd)
        worker.process = self.reactor.spawnProcess(
            protocol,
            sys.executable,
            [sys.executable, "-m", "twisted_asgi", *self.argv],
            env=env,
            childFDs=child_fds,
        )
        worker.pid = worker.process.pid
        _watch_exit(self.reactor, worker.process)
        self.workers.append(worker)
        if self.config.timeout_worker_start:
            worker.start_timer = self.reactor.callLater(self.config.timeout_worker_start, self._start_timed_out, worker)
        log.info("Worker {pid} started (slot {slot})", pid=worker.pid, slot=slot)
        return worker

    def _worker_said(self, worker: Worker, line: str) -> None:
        """A line from a worker's notification pipe."""
        if line == "ready":
            if not worker.ready:
                self._worker_ready(worker)
        elif line.startswith("requests "):
            limit = self.config.limit_worker_requests
            jitter = "" if line[9:] == str(limit) else " plus jitter"
            self.recycle(worker, f"served {line[9:]} requests (--limit-worker-requests {limit}{jitter})")

    def _worker_ready(self, worker: Worker) -> None:
        worker.ready = True
        _cancel(worker.start_timer)
        log.info("Worker {pid} is serving", pid=worker.pid)
        lifetime = self.config.timeout_worker_lifetime
        if lifetime and not self.stopping:
            delay = lifetime * (1 + LIFETIME_JITTER * random.random())
            why = f"served for {delay:.1f}s (--timeout-worker-lifetime {lifetime:g}, plus jitter)"
            worker.lifetime_timer = self.reactor.callLater(delay, self.recycle, worker, why)
        if not self.ever_ready and all(w.ready for w in self.workers if not w.retiring):
            self.ever_ready = True
            if not self.ready.called:
                self.ready.callback(self.workers)
        worker.became_ready.callback(worker)

    def _start_timed_out(self, worker: Worker) -> None:
        worker.start_timer = None
        if not worker.ready:
            log.error(
                "Worker {pid} did not start listening within {timeout}s; killing it",
                pid=worker.pid,
                timeout=self.config.timeout_worker_start,
            )
            _signal(worker, signal.SIGKILL)

    # -- deaths ----------------------------------------------------------------------------

    def _worker_exited(self, worker: Worker, code: int | None, sig: int | None) -> None:
        for timer in (worker.start_timer, worker.lifetime_timer, worker.retry_timer):
            _cancel(timer)
        if worker in self.workers:
            self.workers.remove(worker)
        if self.metrics is not None and worker.pid is not None:
            self.metrics.ended(f"worker-{worker.pid}")
        how = f"signal {sig}" if sig else f"exit code {code}"
        if not worker.became_ready.called:
            worker.became_ready.errback(RuntimeError(f"worker {worker.pid} ended ({how}) before it was serving"))
            worker.became_ready.addErrback(lambda _: None)
        worker.exited.callback((code, sig))
        if self.stopping:
            log.info("Worker {pid} stopped ({how})", pid=worker.pid, how=how)
            return
        if worker.retiring:
            log.info("Worker {pid} retired ({how})", pid=worker.pid, how=how)
            return
        if worker.replacing:
            # Its replacement is starting and takes its slot (or, if it fails,
            # _replace starts another).
            log.warn("Worker {pid} died ({how}) while its replacement was starting", pid=worker.pid, how=how)
            return
        if not worker.ready and self.reloader is not None:
            serving = any(w.ready and not w.retiring for w in self.workers)
            log.error(
                "Worker {pid} failed to start ({how}); {what} until a watched file changes",
                pid=worker.pid,
                how=how,
                what="the previous worker keeps serving" if serving else "requests wait",
            )
            return
        if worker.replacement and not worker.ready:
            log.error("Worker {pid} failed to start ({how})", pid=worker.pid, how=how)
            return  # _replace sees it through became_ready: the old one keeps serving
        if not worker.ready and not self.ever_ready:
            # The first workers cannot start (import error, lifespan failure,
            # unusable certificate): restarting them would only repeat it.
            self._fatal(f"Worker {worker.pid} failed to start ({how}); stopping")
            return
        lived = self.reactor.seconds() - worker.started_at
        if lived < _YOUNG:
            delay = self.restart_delay
            self.restart_delay = min(max(self.restart_delay * 2, 0.1), _MAX_RESTART_DELAY)
        else:
            delay = self.restart_delay = self.config.timeout_worker_restart
        log.warn(
            "Worker {pid} died ({how}); starting a new one in {delay}s",
            pid=worker.pid,
            how=how,
            delay=round(delay, 2),
        )
        timer = self.reactor.callLater(delay, self._respawn, worker.slot)
        self._restart_timers.append(timer)
        if self.metrics is not None:
            self.metrics.metrics.worker_restart("died")

    def _respawn(self, slot: int) -> None:
        self._restart_timers = [t for t in self._restart_timers if t.active()]
        if not self.stopping:
            self._spawn(slot)

    # -- rolling restart -----------------------------------------------------------------------

    def rolling_restart(self) -> defer.Deferred:
        """Replace every worker, one at a time, without refusing a connection."""
        if self.stopping or self.rolling:
            log.info("Rolling restart not started: {why}", why="stopping" if self.stopping else "already running")
            return defer.succeed(False)
        return defer.ensureDeferred(self._roll())

    async def _roll(self) -> bool:
        self.rolling = True
        log.info("Rolling restart of {n} worker(s)", n=len(self.workers))
        try:
            for old in [w for w in self.workers if not w.retiring and not w.replacing]:
                if self.stopping:
                    return False
                if old not in self.workers or old.retiring or old.replacing:
                    continue  # it died (and was replaced) or is being recycled meanwhile
                if old.replacement and not old.ready:
                    # Still starting in another worker's place (recycling): once it
                    # serves, that one is retired, and then it is replaced in turn.
                    # (Retiring it now would fail that recycling and leave its old
                    # worker serving beside this restart's new one.)
                    await _settled(old)
                    if not old.ready or old not in self.workers or old.retiring or old.replacing:
                        continue
                    if self.stopping:
                        return False
                if self.metrics is not None:
                    self.metrics.metrics.worker_restart("sighup")
                try:
                    await self._replace(old)
                except RuntimeError as exc:
                    log.error("Rolling restart stopped, old workers keep serving: {error}", error=str(exc))
                    return False
            log.info("Rolling restart done")
            return True
        finally:
            self.rolling = False

    async def _replace(self, old: Worker) -> Worker:
        """Start a worker in ``old``'s slot and, once it serves, retire ``old``
        (which drains gracefully). Returns the new worker.

        :raises RuntimeError: the new worker ended before it was serving; ``old``
            keeps serving (or, if it died meanwhile, its slot is restarted).
        """
        old.replacing = True
        new = self._spawn(old.slot, replacement=True)
        try:
            await new.became_ready
        except RuntimeError:
            old.replacing = False
            if self.stopping:
                raise
            if old not in self.workers:
                if self.reloader is None:
                    timer = self.reactor.callLater(self.restart_delay, self._respawn, old.slot)
                    self._restart_timers.append(timer)
            elif old.recycle_later is not None:
                # A limit it passed meanwhile: recycled later, as a failed recycling is.
                why, old.recycle_later = old.recycle_later, None
                _cancel(old.retry_timer)
                old.retry_timer = self.reactor.callLater(_RECYCLE_RETRY, self.recycle, old, why)
            raise
        if old in self.workers and not old.retiring:
            self._retire(old)
        return new

    # -- recycling -----------------------------------------------------------------------------

    def recycle(self, worker: Worker, why: str) -> defer.Deferred:
        """Replace ``worker`` (past one of its limits, said by ``why``): a new
        worker first, then ``worker`` drains. Fires True when replaced."""
        if self.stopping or worker.retiring or worker not in self.workers:
            return defer.succeed(False)
        if worker.replacing:
            worker.recycle_later = why  # a rolling restart or reload is replacing it already
            return defer.succeed(False)
        _cancel(worker.retry_timer)
        log.info("Recycling worker {pid}: it {why}; starting its replacement", pid=worker.pid, why=why)
        return defer.ensureDeferred(self._recycle(worker, why))

    async def _recycle(self, worker: Worker, why: str) -> bool:
        if self.metrics is not None:
            self.metrics.metrics.worker_restart("recycled")
        try:
            await self._replace(worker)
        except RuntimeError as exc:
            if worker in self.workers and not self.stopping:
                log.error(
                    "Recycling worker {pid} failed ({error}); it keeps serving, next try in {delay:g}s",
                    pid=worker.pid,
                    error=str(exc),
                    delay=_RECYCLE_RETRY,
                )
                _cancel(worker.retry_timer)
                worker.retry_timer = self.reactor.callLater(_RECYCLE_RETRY, self.recycle, worker, why)
            return False
        return True

    def _check_rss(self) -> None:
        limit = self.config.limit_worker_rss_mib
        for worker in list(self.workers):
            if not worker.ready or worker.retiring or worker.replacing or worker.pid is None:
                continue
            if worker.retry_timer is not None and worker.retry_timer.active():
                continue
            rss = _rss_mib(worker.pid)
            if rss is not None and rss > limit:
                self.recycle(worker, f"uses {rss:.0f} MiB of memory (--limit-worker-rss {limit})")

    def _retire(self, worker: Worker) -> None:
        worker.retiring = True
        for pending in (worker.lifetime_timer, worker.retry_timer):
            _cancel(pending)
        _signal(worker, signal.SIGTERM)
        timer = self.reactor.callLater(
            self.config.timeout_graceful_shutdown + _KILL_MARGIN, _signal, worker, signal.SIGKILL
        )
        worker.exited.addBoth(lambda result: (_cancel(timer), result)[1])

    # -- stop --------------------------------------------------------------------------------------

    def stopService(self) -> defer.Deferred:
        super().stopService()
        return defer.ensureDeferred(self._stop())

    def _force_stop(self, signal_name: str) -> None:
        """A second SIGINT/SIGTERM while the workers drain: kill them and exit now."""
        workers = list(self.workers)
        log.warn(
            "Second {signal} during graceful shutdown: killing {n} worker(s) and exiting now",
            signal=signal_name,
            n=len(workers),
        )
        for worker in workers:
            _signal(worker, signal.SIGKILL)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    async def _stop(self) -> None:
        self.stopping = True
        for timer in self._restart_timers:
            _cancel(timer)
        if self._rss_check is not None and self._rss_check.running:
            self._rss_check.stop()
        if self.reloader is not None:
            self.reloader.stop()
        # Our copies first: once the workers close theirs, the kernel refuses
        # new connections instead of queueing them for nobody.
        for listener in self.listeners:
            if listener.sock is not None:
                listener.sock.close()
        workers = list(self.workers)
        if workers:
            log.info("Stopping {n} worker(s)", n=len(workers))
        for worker in workers:
            _cancel(worker.start_timer)
            self._retire(worker)
        if workers:
            await defer.DeferredList([w.exited for w in workers], consumeErrors=True)
        if self._metrics_service is not None:
            await defer.maybeDeferred(self._metrics_service.stop)
            self.metrics.close()
        if self.exit_code == 0:
            from .server import clear_exit_signal

            clear_exit_signal(self.reactor)

    def _fatal(self, message: str) -> None:
        log.critical("{message}", message=message)
        self.exit_code = 1
        if not self.ready.called:
            self.ready.errback(RuntimeError(message))
            self.ready.addErrback(lambda _: None)
        if self.reactor.running:
            self.reactor.stop()


async def _settled(worker: Worker) -> None:
    """Wait until ``worker`` serves or has ended (its ``ready`` says which).

    Not by awaiting ``became_ready`` again: its first waiter (the replacement
    under way) takes the result, and a second waiter would see None."""
    done: defer.Deferred = defer.Deferred()
    worker.became_ready.addBoth(lambda result: (done.called or done.callback(None), result)[1])
    await done


def _rss_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB, from ``/proc`` (None: not readable)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def _signal(worker: Worker, sig: int) -> None:
    process = worker.process
    if process is not None and process.pid is not None:
        try:
            process.signalProcess(sig)
        except Exception:  # ProcessExitedAlready: it is gone anyway
            pass


def _cancel(timer: Any) -> None:
    if timer is not None and timer.active():
        timer.cancel()


def _watch_exit(reactor: Any, worker_process: Any) -> None:
    """Reap ``worker_process`` as soon as it ends, through a pidfd (Linux 5.3+).

    Twisted learns of child deaths from SIGCHLD written to
    ``signal.set_wakeup_fd``; an event loop that takes the wakeup descriptor
    for itself (uvloop does, when it starts running) leaves Twisted deaf to
    some of them: a dead worker then stays a zombie, is never replaced, and
    a stopping supervisor waits for it forever. A pidfd becomes readable when
    its process ends, whatever happens to signals.
    """
    from ._upstream.twisted import event_loop, reap_process

    loop = event_loop(reactor)
    pidfd_open = getattr(os, "pidfd_open", None)
    pid = worker_process.pid
    if loop is None or pidfd_open is None or pid is None:
        return
    try:
        fd = pidfd_open(pid)
    except OSError:
        return  # an old kernel: SIGCHLD alone

    def ended() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        # Twisted's own SIGCHLD handler may have reaped it first (its pid is
        # then None): one reaper, no second waitpid.
        if worker_process.pid is not None:
            reap_process(worker_process)

    loop.add_reader(fd, ended)


def _on_signal(sig: int, action: Any) -> None:
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(sig, lambda _sig, _frame: action())


# -- the worker side ---------------------------------------------------------------------------------

_settings: dict[str, Any] | None = None
_read = False


def worker_settings() -> dict[str, Any] | None:
    """This process's worker settings (from :data:`ENV`, which is then removed
    so the app's own subprocesses are no workers), or None for a normal server."""
    global _settings, _read
    if not _read:
        _read = True
        raw = os.environ.pop(ENV, None)
        if raw:
            _settings = json.loads(raw)
    return _settings


def attach_worker(service: Any) -> None:
    """Make ``service`` a worker: die with the parent, and tell it once listening."""
    settings = worker_settings()
    if settings is None:
        return
    _die_with_parent(int(settings["parent"]))
    service.worker = True
    fd = int(settings["notify_fd"])

    def say(line: str) -> None:
        try:
            os.write(fd, line.encode("ascii") + b"\n")
        except OSError:
            pass

    def ready(result: Any) -> Any:
        say("ready")
        return result

    service.ready.addCallback(ready)
    config = service.config
    if config.limit_worker_requests:
        jitter = config.limit_worker_requests_jitter or config.limit_worker_requests // 10
        limit = config.limit_worker_requests + random.randint(0, jitter)
        count_requests(service.factory.runner, limit, lambda served: say(f"requests {served}"))


def count_requests(runner: Any, limit: int, reached: Any) -> None:
    """Call ``reached(count)`` once ``runner`` has started ``limit`` app calls
    (HTTP requests, HTTP/2 streams, WebSocket handshakes; lifespan is not one).

    Every app call, whatever its protocol, looks ``runner.app`` up once: it is
    wrapped here by a plain function (an add and a compare, no extra coroutine),
    and the wrapper takes itself out once the limit is reached.
    """
    app = runner.app
    served = 0

    def counted(scope: Any, receive: Any, send: Any) -> Any:
        nonlocal served
        served += 1
        if served >= limit:
            runner.app = app
            reached(served)
        return app(scope, receive, send)

    runner.app = counted


def _die_with_parent(parent: int) -> None:
    """SIGTERM this worker when the supervisor dies, so no orphan keeps serving."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)  # the parent is gone already
