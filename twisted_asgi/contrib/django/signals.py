"""Signals sent by :func:`twisted_asgi.django.lifespan_handler`.

Connect receivers in your ``AppConfig.ready()``; the sender is
:class:`twisted_asgi.django.DjangoApplication`. Receivers may be sync or (on
Django 5.0+) async functions.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["shutdown", "startup"]

#: Sent once when the server starts, before it listens. A receiver that raises
#: fails startup: the server logs the error and exits non-zero.
startup = Signal()

#: Sent once when the server stops, after in-flight requests finished and before
#: database connections are closed. Every receiver runs; failures are logged.
shutdown = Signal()
