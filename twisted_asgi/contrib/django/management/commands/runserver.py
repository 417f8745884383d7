"""``manage.py runserver`` served through twisted-asgi.

Everything Django's own ``runserver`` does before serving stays: argument
parsing, the autoreloader (which runs :meth:`Command.inner_run` in a thread of a
child process and restarts that process when code changes), system checks and
the unapplied-migrations warning. Only the server differs: the project's ASGI
application (``ASGI_APPLICATION`` if set, else the twisted-asgi Django adapter),
wrapped in Django's ``ASGIStaticFilesHandler`` in ``DEBUG`` as
``django.contrib.staticfiles``'s ``runserver`` does, is served by twisted-asgi on
the asyncio reactor, with an access log on standard error.
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.commands.runserver import Command as RunserverCommand
from django.db import connections
from django.utils import autoreload


class Command(RunserverCommand):
    """Django's ``runserver``, serving ASGI through twisted-asgi."""

    help = "Starts a development server that serves the project through twisted-asgi (ASGI)."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        # The same switches as django.contrib.staticfiles' runserver, which this
        # command replaces when listed above it.
        parser.add_argument(
            "--nostatic",
            action="store_false",
            dest="use_static_handler",
            help="Do not serve static files at STATIC_URL.",
        )
        parser.add_argument(
            "--insecure",
            action="store_true",
            dest="insecure_serving",
            help="Serve static files even if DEBUG is False.",
        )

    def get_application(self, **options: Any) -> Any:
        """The ASGI app to serve: the project's, with static files in DEBUG."""
        from twisted_asgi.django import project_application

        app = project_application()
        use_static = options.get("use_static_handler", True) and (settings.DEBUG or options.get("insecure_serving"))
        if use_static and apps.is_installed("django.contrib.staticfiles"):
            from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

            app = ASGIStaticFilesHandler(app)
        return app

    def inner_run(self, *args: Any, **options: Any) -> None:
        # An import error caught by the reloader's parent shows up here, in the child.
        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        # The migrations check opened connections in this thread; requests run elsewhere.
        connections.close_all()
        app = self.get_application(**options)
        self.serve(app)

    def serve(self, app: Any) -> None:
        """Serve ``app`` on the address runserver parsed, until stopped."""
        from twisted.logger import (
            FilteringLogObserver,
            LogLevel,
            LogLevelFilterPredicate,
            globalLogBeginner,
            textFileLogObserver,
        )

        from twisted_asgi.config import Config
        from twisted_asgi.reactor import install_asyncio_reactor
        from twisted_asgi.server import AccessLog, ASGIService

        reactor = install_asyncio_reactor("asyncio")
        observer = FilteringLogObserver(
            textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)]
        )
        globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)
        # Development: Ctrl-C (or a reload) closes open connections at once, as
        # Django's own runserver does.
        config = Config(timeout_graceful_shutdown=0)
        service = ASGIService(app, config, [self.endpoint()], reactor, AccessLog(sys.stderr))
        service.ready.addCallback(self.on_listening)
        service.startService()
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        # Under the autoreloader this runs in a thread, where signal handlers
        # cannot be installed; the reloader's main thread handles Ctrl-C.
        reactor.run(installSignalHandlers=threading.current_thread() is threading.main_thread())
        if service.exit_code:
            sys.stderr.flush()
            # sys.exit() in the autoreloader's thread would not end the process.
            os._exit(service.exit_code)

    def endpoint(self) -> str:
        """The twisted endpoint string for the address and port runserver parsed."""
        addr = "0.0.0.0" if self.addr == "0" else self.addr
        if self.use_ipv6 or ":" in addr:
            return f"tcp6:port={int(self.port)}:interface={addr.replace(':', chr(92) + ':')}"
        return f"tcp:port={int(self.port)}:interface={addr}"

    def on_listening(self, ports: list[Any]) -> list[Any]:
        """Print Django's start-up banner once the port is bound (so port 0 shows the real one)."""
        port = ports[0].getHost().port
        addr = f"[{self.addr}]" if ":" in self.addr else ("0.0.0.0" if self.addr == "0" else self.addr)
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        self.stdout.write(
            f"{datetime.now().strftime('%B %d, %Y - %X')}\n"
            f"Django version {self.get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"Starting twisted-asgi development server at http://{addr}:{port}/\n"
            f"Quit the server with {quit_command}."
        )
        self.stdout.flush()
        return ports
