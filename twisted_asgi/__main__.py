"""``python -m twisted_asgi [options] module:app``: serve in the foreground."""

from __future__ import annotations

import gc
import os
import sys

#: Whether main_entry paused the cyclic garbage collector for the server's own
#: imports (main resumes it before the application is loaded).
_gc_paused = False


def _resume_gc() -> None:
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        # What the imports made lives as long as the process: out of every
        # later collection now (the server freezes the rest once listening).
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    """Parse options, serve until SIGINT/SIGTERM, return the exit code."""
    # Imported here, not at the top: main_entry first defers what Twisted
    # imports that a server does not use (see _upstream.twisted_imports).
    from twisted.logger import (
        FilteringLogObserver,
        Logger,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )
    from twisted.python import usage

    from .tap import Options, build_service

    options = Options()
    options.synopsis = "Usage: python -m twisted_asgi [options] module:application"
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as exc:
        print(f"python -m twisted_asgi: {exc}", file=sys.stderr)
        print("Try 'python -m twisted_asgi --help'.", file=sys.stderr)
        return 2
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code.replace("twistd asgi:", "python -m twisted_asgi:", 1), file=sys.stderr)
            return 1
        raise
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])], redirectStandardIO=False
    )
    from .tap import install_reactor

    try:
        install_reactor(options)
    except SystemExit as exc:
        print(str(exc.code).replace("twistd asgi:", "python -m twisted_asgi:", 1), file=sys.stderr)
        return 1
    from twisted.internet import reactor

    # The application is loaded (and its lifespan run) with the collector on.
    _resume_gc()
    try:
        service = build_service(options, reactor)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code.replace("twistd asgi:", "python -m twisted_asgi:", 1), file=sys.stderr)
            return 1
        raise
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    if service.exit_code == 0:
        Logger(namespace="twisted_asgi.server").info("Server stopped.")
    return service.exit_code


def main_entry() -> None:
    """Console script ``twisted-asgi`` (and ``python -m twisted_asgi``)."""
    global _gc_paused
    # The server's own imports (Twisted, ours: about 300 modules, long-lived
    # objects, next to no cyclic garbage) run without the cyclic garbage
    # collector, which would otherwise walk the growing heap several times
    # over: about 3% of the instructions to the first response.
    if gc.isenabled():
        gc.disable()
        _gc_paused = True
    from ._upstream.twisted_imports import defer_cookiejar

    # This process is the server's: Twisted's compat module imports
    # http.cookiejar (and urllib.request, http.client, email) for a deprecated
    # alias; it is loaded if and when something reads it.
    defer_cookiejar()
    try:
        try:
            try:
                code = main()
            finally:
                _resume_gc()
        finally:
            # Here, not at the interpreter's exit: a reader that stopped
            # (`| head`) makes this raise, inside the try (Twisted 24.7's
            # --help leaves its text in the buffer, 26.10's flushes it).
            sys.stdout.flush()
    except BrokenPipeError:
        # --help or --version into a pager or `head` that stopped reading: no
        # traceback, and none from the interpreter flushing stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    main_entry()
