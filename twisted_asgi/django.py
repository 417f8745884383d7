"""The Django adapter: Django's own ASGI handler for ``http``, and the ASGI apps
you choose for the scope types Django refuses.

Django's ``ASGIHandler`` serves only ``http`` scopes. For any other type it
raises ``ValueError("Django can only handle ASGI/HTTP connections, not <type>.")``,
and its source says ``FIXME: Allow to override this.``. This module is that
override:

* by default nothing changes: ``http`` goes to Django, and every other scope type
  is passed to Django too, so it raises exactly Django's ``ValueError``; the
  server answers a WebSocket handshake with 500 and logs :func:`refusal_message`,
  and ``--lifespan auto`` serves on without lifespan;
* per scope type you may name another ASGI app: a WebSocket app (a Channels
  ``URLRouter`` or a consumer's ``as_asgi()`` included), a lifespan handler
  (:func:`lifespan_handler` closes database connections on shutdown), or any
  mapping of scope type to app, in ``asgi.py`` or in the setting
  ``TWISTED_ASGI_APPLICATIONS``.

This is the only module of the server that imports Django, and it does so inside
functions: importing it (for :func:`refusal_scope_type` in the WebSocket
shell) works where Django is not installed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .runner import register_exception_hint

__all__ = [
    "SETTING",
    "DjangoApplication",
    "get_asgi_application",
    "lifespan_handler",
    "load_project",
    "project_application",
    "refusal_message",
    "refusal_scope_type",
]

#: The Django setting that maps scope types to ASGI apps (dotted paths or objects).
SETTING = "TWISTED_ASGI_APPLICATIONS"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Django's ASGIHandler.__call__ builds its refusal as
# "Django can only handle ASGI/HTTP connections, not %s." % scope["type"]
# (django/core/handlers/asgi.py; the same text in Django 4.2 and 5.2).
_REFUSAL = re.compile(r"Django can only handle ASGI/HTTP connections, not (?P<type>[^\s]+)\.")


def refusal_scope_type(exc: BaseException) -> str | None:
    """The scope type named by ``exc`` if it is Django's refusal of a non-HTTP
    scope (the exact ``ValueError`` of Django's ``ASGIHandler``), else None."""
    if type(exc) is not ValueError or len(exc.args) != 1 or not isinstance(exc.args[0], str):
        return None
    match = _REFUSAL.fullmatch(exc.args[0])
    return match.group("type") if match else None


def refusal_message(exc: BaseException, scope_type: str | None = None) -> str | None:
    """One log line for a Django refusal of a ``scope_type`` scope, or None if
    ``exc`` is anything else (log it as an ordinary app failure then).

    The WebSocket shell logs this line, without a traceback, when the app raises
    before accepting and the client gets 500: the refusal is a configuration
    choice, not a crash, and the line says how to change it.
    """
    refused = refusal_scope_type(exc)
    if refused is None or (scope_type is not None and refused != scope_type):
        return None
    text = str(exc)
    if _configured_override(refused):
        # The setting names an app for this type, yet Django itself was asked:
        # the application served is Django's own handler, which never reads it.
        return (
            f"{text} {SETTING} names an app for {refused!r} scopes, but the application served is Django's "
            "own handler (django.core.asgi), which does not read that setting. Serve the twisted-asgi adapter "
            "instead: application = twisted_asgi.django.get_asgi_application() in asgi.py, or "
            "'twistd asgi --django SETTINGS' with no application argument."
        )
    if refused == "websocket":
        return (
            f"{text} The WebSocket handshake was answered with 500. To serve WebSocket, give the Django adapter "
            "an ASGI app for it: application = twisted_asgi.django.get_asgi_application(websocket=...) in "
            f"asgi.py, or {SETTING} = {{'websocket': 'dotted.path.to.app'}} in settings."
        )
    if refused == "lifespan":
        return (
            f"{text} Serving without lifespan. To run startup and shutdown code (and close database "
            f"connections on shutdown), set {SETTING} = {{'lifespan': 'twisted_asgi.django.lifespan_handler'}}."
        )
    return f"{text} To serve {refused!r} scopes, give the Django adapter an ASGI app for them in {SETTING}."


register_exception_hint(refusal_message)


def _configured_override(scope_type: str) -> bool:
    """Whether Django's settings are configured with a ``TWISTED_ASGI_APPLICATIONS``
    entry for ``scope_type`` (never raises: this only chooses a log line)."""
    try:
        from django.conf import settings

        if not settings.configured:
            return False
        value = getattr(settings, SETTING, None)
    except Exception:  # noqa: BLE001 - Django missing or settings broken: no override to speak of
        return False
    return isinstance(value, Mapping) and bool(value.get(scope_type))


class DjangoApplication:
    """An ASGI app: Django for ``http`` (and any type not overridden), and an
    ASGI app of your choice for each scope type in ``applications``.

    :param django: Django's ASGI application, from ``django.core.asgi.get_asgi_application()``.
    :param applications: ``{scope type: ASGI app}``; a type not listed goes to Django.
    """

    __slots__ = ("applications", "django")

    def __init__(self, django: ASGIApp, applications: Mapping[str, ASGIApp] | None = None) -> None:
        self.django = django
        self.applications: dict[str, ASGIApp] = {}
        for scope_type, app in (applications or {}).items():
            if not isinstance(scope_type, str) or not scope_type:
                raise TypeError(f"scope types must be non-empty strings, not {scope_type!r}")
            if not callable(app):
                raise TypeError(f"the application for {scope_type!r} scopes is not callable: {app!r}")
            self.applications[scope_type] = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.applications.get(scope["type"], self.django)(scope, receive, send)

    def __repr__(self) -> str:
        overrides = ", ".join(f"{k}={v!r}" for k, v in self.applications.items())
        return f"<DjangoApplication {self.django!r}{'; ' + overrides if overrides else ''}>"


def get_asgi_application(
    *,
    websocket: ASGIApp | str | bool | None = None,
    lifespan: ASGIApp | str | bool | None = None,
    applications: Mapping[str, ASGIApp | str | bool | None] | None = None,
) -> DjangoApplication:
    """Set Django up and return its ASGI application with overrides.

    Use it in ``asgi.py`` where Django's template calls
    ``django.core.asgi.get_asgi_application()`` (it calls that itself). Each
    override is an ASGI app or the dotted path of one; ``lifespan=True`` means
    :func:`lifespan_handler`. Keyword arguments win over ``applications``, which
    wins over the ``TWISTED_ASGI_APPLICATIONS`` setting; ``None`` leaves a scope
    type to the source below, ``False`` gives it back to Django whatever the
    sources below say.

    :raises django.core.exceptions.ImproperlyConfigured: an override that does
        not import or is not callable.
    """
    from django.core.asgi import get_asgi_application as django_asgi_application

    django_app = django_asgi_application()
    chosen: dict[str, Any] = {}
    for source in (_setting(), applications or {}, {"websocket": websocket, "lifespan": lifespan}):
        for scope_type, value in source.items():
            if value is False:
                chosen.pop(scope_type, None)
            elif value is not None:
                chosen[scope_type] = value
    return DjangoApplication(django_app, {t: _resolve(t, v) for t, v in chosen.items()})


def _setting() -> Mapping[str, Any]:
    """``settings.TWISTED_ASGI_APPLICATIONS``, checked to be a mapping."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    value = getattr(settings, SETTING, None) or {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"{SETTING} must be a dict of scope type to ASGI app, not {type(value).__name__}")
    return value


def _resolve(scope_type: str, value: Any) -> ASGIApp:
    """An override as an ASGI app: import a dotted path, map True to the lifespan handler."""
    from django.core.exceptions import ImproperlyConfigured
    from django.utils.module_loading import import_string

    if value is True:
        if scope_type != "lifespan":
            raise ImproperlyConfigured(f"True is only meaningful for 'lifespan', not for {scope_type!r}")
        return lifespan_handler
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(f"cannot import the {scope_type!r} application {value!r}: {exc}") from exc
    if not callable(value):
        raise ImproperlyConfigured(f"the {scope_type!r} application is not callable: {value!r}")
    return value  # type: ignore[no-any-return]


# -- the lifespan handler ---------------------------------------------------------


async def lifespan_handler(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI lifespan app for a Django project (ASGI lifespan spec).

    On startup it sends the :data:`twisted_asgi.contrib.django.signals.startup`
    signal; a receiver that raises fails startup (the server does not serve).
    On shutdown it sends :data:`~twisted_asgi.contrib.django.signals.shutdown`
    (every receiver runs; failures are reported), then closes the database
    connections Django keeps outside requests, and connection pools (Django 5.1+).
    """
    from .contrib.django import signals

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await _send_signal(signals.startup, robust=False)
            except Exception as exc:  # noqa: BLE001 - any receiver failure fails startup (ASGI lifespan spec)
                await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            errors = [
                f"{getattr(receiver, '__qualname__', receiver)}: {type(result).__name__}: {result}"
                for receiver, result in await _send_signal(signals.shutdown, robust=True)
                if isinstance(result, BaseException)
            ]
            try:
                await _close_database_connections()
            except Exception as exc:  # noqa: BLE001 - reported as lifespan.shutdown.failed
                errors.append(f"closing database connections: {type(exc).__name__}: {exc}")
            if errors:
                await send({"type": "lifespan.shutdown.failed", "message": "; ".join(errors)})
            else:
                await send({"type": "lifespan.shutdown.complete"})
            return


async def _send_signal(signal: Any, robust: bool) -> list[tuple[Any, Any]]:
    """Send a Django signal from async code: ``asend`` on Django 5.0+, else
    ``send`` in Django's thread for sync code."""
    from asgiref.sync import sync_to_async

    sender = DjangoApplication
    if hasattr(signal, "asend"):  # Django 5.0+
        result = await (signal.asend_robust if robust else signal.asend)(sender=sender)
    else:
        result = await sync_to_async(signal.send_robust if robust else signal.send)(sender=sender)
    return list(result)


async def _close_database_connections() -> None:
    """Close the database connections of Django's sync thread, and every
    connection pool.

    Django's connections are thread-local: those opened inside a request live
    in that request's thread and are closed by Django at request end (when
    ``CONN_MAX_AGE`` says so). What outlives requests is the connection of the
    thread-sensitive thread that runs sync code outside requests (startup code,
    ``sync_to_async`` calls) and the process-wide pools.
    """
    from asgiref.sync import sync_to_async

    def close() -> None:
        from django.db import connections

        connections.close_all()
        for connection in connections.all():
            close_pool = getattr(connection, "close_pool", None)
            if close_pool is not None and (connection.settings_dict.get("OPTIONS") or {}).get("pool"):
                close_pool()

    await sync_to_async(close, thread_sensitive=True)()


# -- serving a project by its settings (twistd asgi --django, runserver) ------------


def project_application() -> ASGIApp:
    """The ASGI app for the configured Django project: the app named by the
    ``ASGI_APPLICATION`` setting when there is one (Channels' convention), else
    :func:`get_asgi_application` with the ``TWISTED_ASGI_APPLICATIONS`` overrides."""
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.utils.module_loading import import_string

    django.setup(set_prefix=False)
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        return get_asgi_application()
    try:
        app = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"ASGI_APPLICATION {path!r} cannot be imported: {exc}") from exc
    if not callable(app):
        raise ImproperlyConfigured(f"ASGI_APPLICATION {path!r} is not callable")
    return app  # type: ignore[no-any-return]


def load_project(
    settings_module: str, application: str | None = None, factory: bool = False, app_dir: str | None = "."
) -> Any:
    """What ``--django SETTINGS`` serves.

    Sets ``DJANGO_SETTINGS_MODULE`` to ``settings_module`` unless it is already
    set (as Django's own ``asgi.py`` does), puts ``app_dir`` first on
    ``sys.path``, and returns ``application`` when one is named, else
    :func:`project_application`.

    :raises twisted_asgi.appload.AppLoadError: Django is missing, or the settings
        or the application do not load; the message is one line.
    """
    from .appload import AppLoadError, load_app

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    if application is not None:
        return load_app(application, factory, app_dir)
    if app_dir is not None:
        import sys

        directory = os.path.abspath(app_dir)
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        import django  # noqa: F401
    except ImportError:
        raise AppLoadError("--django needs Django installed (pip install twisted-asgi[django])") from None
    try:
        return project_application()
    except Exception as exc:  # noqa: BLE001 - settings, apps and urls can fail in any way; one line says which
        settings = os.environ["DJANGO_SETTINGS_MODULE"]
        raise AppLoadError(f"loading the Django project {settings!r} failed: {type(exc).__name__}: {exc}") from None
