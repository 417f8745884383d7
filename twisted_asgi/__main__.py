"""``python -m twisted_asgi [options] module:app``: serve in the foreground."""

from __future__ import annotations

import os
import sys


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
    from ._upstream.twisted_imports import defer_cookiejar

    # This process is the server's: Twisted's compat module imports
    # http.cookiejar (and urllib.request, http.client, email) for a deprecated
    # alias; it is loaded if and when something reads it.
    defer_cookiejar()
    try:
        try:
            code = main()
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
