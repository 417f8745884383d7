"""The Django adapter in-process: Django's exact refusals by default, overrides
per scope type (keyword, mapping, settings), the lifespan handler, and the
runserver app-order check. The servers are in test_django_e2e.py."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parent / "django_project"


@pytest.fixture(scope="module", autouse=True)
def django_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The test project's settings, configured in this process without touching
    ``DJANGO_SETTINGS_MODULE`` (servers started later must not inherit it).

    The database is a file: Django's SQLite backend never closes an in-memory one.
    """
    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))
    import django
    from django.conf import settings

    if not settings.configured:
        from testsite import settings as project

        values = {name: getattr(project, name) for name in dir(project) if name.isupper()}
        database = tmp_path_factory.mktemp("django") / "db.sqlite3"
        values["DATABASES"] = {"default": {**project.DATABASES["default"], "NAME": str(database)}}
        settings.configure(**values)
    django.setup()


def http_scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.5"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


def websocket_scope(path: str) -> dict[str, Any]:
    return {**http_scope(path), "type": "websocket", "scheme": "ws", "subprotocols": []}


async def converse(app: Any, scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``app`` on ``scope``, feeding ``incoming`` then waiting forever; return what it sent."""
    queue = list(incoming)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.Event().wait()  # Django's disconnect listener; cancelled by Django
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def get(app: Any, path: str) -> tuple[int, bytes]:
    sent = asyncio.run(converse(app, http_scope(path), [{"type": "http.request", "body": b""}]))
    assert sent[0]["type"] == "http.response.start"
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def django_refusal(scope_type: str) -> ValueError:
    """The ValueError Django's own ASGI handler raises for ``scope_type``."""
    from django.core.asgi import get_asgi_application as django_asgi

    with pytest.raises(ValueError) as info:
        asyncio.run(converse(django_asgi(), {**http_scope("/"), "type": scope_type}, []))
    return info.value


@pytest.mark.parametrize("scope_type", ["websocket", "lifespan", "webtransport"])
def test_default_raises_djangos_exact_error(scope_type):
    """By default every non-HTTP scope raises Django's own ValueError, word for word."""
    from twisted_asgi.django import get_asgi_application

    with pytest.raises(ValueError) as info:
        asyncio.run(converse(get_asgi_application(), {**http_scope("/"), "type": scope_type}, []))
    assert str(info.value) == str(django_refusal(scope_type))
    assert str(info.value) == f"Django can only handle ASGI/HTTP connections, not {scope_type}."


def test_default_serves_http_through_django():
    """HTTP scopes reach Django's views: a sync and an async view answer."""
    from twisted_asgi.django import get_asgi_application

    app = get_asgi_application()
    assert get(app, "/sync/") == (200, b"sync GET main_thread=False")
    status, body = get(app, "/async/")
    assert status == 200 and body.startswith(b"async GET")
    assert get(app, "/nowhere/")[0] == 404


def test_refusal_scope_type_recognises_only_djangos_message():
    """refusal_scope_type names the type for Django's exact refusal and None for anything else."""
    from twisted_asgi.django import refusal_scope_type

    assert refusal_scope_type(django_refusal("websocket")) == "websocket"
    assert refusal_scope_type(django_refusal("lifespan")) == "lifespan"
    assert refusal_scope_type(ValueError("Django can only handle ASGI/HTTP connections, not websocket")) is None
    assert refusal_scope_type(ValueError("something else")) is None
    assert refusal_scope_type(RuntimeError("Django can only handle ASGI/HTTP connections, not websocket.")) is None
    assert refusal_scope_type(ValueError("Django can only handle ASGI/HTTP connections, not websocket.", 1)) is None

    class Sub(ValueError):
        pass

    assert refusal_scope_type(Sub("Django can only handle ASGI/HTTP connections, not websocket.")) is None


def test_refusal_message_says_how_to_enable_websocket():
    """The WebSocket log line quotes Django and names both ways to enable WebSocket, on one line."""
    from twisted_asgi.django import refusal_message

    line = refusal_message(django_refusal("websocket"), "websocket")
    assert line is not None and "\n" not in line
    assert line.startswith("Django can only handle ASGI/HTTP connections, not websocket.")
    assert "500" in line
    assert "get_asgi_application(websocket=" in line and "TWISTED_ASGI_APPLICATIONS" in line
    assert refusal_message(django_refusal("lifespan"), "websocket") is None
    assert refusal_message(ValueError("other"), "websocket") is None
    assert "lifespan_handler" in (refusal_message(django_refusal("lifespan")) or "")


async def plain_echo(scope: dict, receive: Any, send: Any) -> None:
    """A WebSocket echo app used as an override."""
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            return


def ws_echo(app: Any) -> list[dict[str, Any]]:
    incoming = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hi"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    return asyncio.run(converse(app, websocket_scope("/ws/plain/"), incoming))


def test_websocket_keyword_override_serves_websocket_and_leaves_http_to_django():
    """websocket=app sends WebSocket scopes to that app while HTTP still reaches Django."""
    from twisted_asgi.django import get_asgi_application

    app = get_asgi_application(websocket=plain_echo)
    assert ws_echo(app) == [{"type": "websocket.accept"}, {"type": "websocket.send", "text": "hi"}]
    assert get(app, "/sync/")[0] == 200
    with pytest.raises(ValueError, match="not lifespan"):
        asyncio.run(converse(app, {"type": "lifespan"}, []))


def test_channels_router_from_settings_dotted_path():
    """A dotted path in TWISTED_ASGI_APPLICATIONS loads a Channels URLRouter that then serves WebSocket."""
    from django.test import override_settings

    from twisted_asgi.django import get_asgi_application

    with override_settings(TWISTED_ASGI_APPLICATIONS={"websocket": "testsite.routing.application"}):
        app = get_asgi_application()
    from testsite import routing

    assert app.applications == {"websocket": routing.application}
    assert ws_echo(app) == [{"type": "websocket.accept"}, {"type": "websocket.send", "text": "plain: hi"}]


def test_overrides_precedence_keyword_then_mapping_then_settings():
    """Keyword arguments beat the mapping, which beats settings; False gives a type back to Django."""
    from django.test import override_settings

    from twisted_asgi.django import get_asgi_application, lifespan_handler

    async def from_mapping(scope: dict, receive: Any, send: Any) -> None:
        pass

    async def from_keyword(scope: dict, receive: Any, send: Any) -> None:
        pass

    setting = {"websocket": "testsite.routing.plain_echo", "lifespan": "twisted_asgi.django.lifespan_handler"}
    with override_settings(TWISTED_ASGI_APPLICATIONS=setting):
        from testsite import routing

        assert get_asgi_application().applications == {"websocket": routing.plain_echo, "lifespan": lifespan_handler}
        app = get_asgi_application(applications={"websocket": from_mapping, "custom": from_mapping})
        assert app.applications == {"websocket": from_mapping, "lifespan": lifespan_handler, "custom": from_mapping}
        app = get_asgi_application(websocket=from_keyword, applications={"websocket": from_mapping})
        assert app.applications["websocket"] is from_keyword
        app = get_asgi_application(lifespan=False, websocket=False)
        assert app.applications == {}


def test_lifespan_true_means_the_builtin_handler():
    """lifespan=True installs lifespan_handler."""
    from twisted_asgi.django import get_asgi_application, lifespan_handler

    assert get_asgi_application(lifespan=True).applications == {"lifespan": lifespan_handler}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"websocket": "testsite.routing.no_such_app"}, "cannot import the 'websocket' application"),
        ({"websocket": "no_such_module.app"}, "cannot import the 'websocket' application"),
        ({"applications": {"websocket": 42}}, "'websocket' application is not callable"),
        ({"websocket": True}, "True is only meaningful for 'lifespan'"),
    ],
)
def test_bad_override_is_improperly_configured(kwargs, message):
    """An override that does not import or is not callable is an ImproperlyConfigured naming the scope type."""
    from django.core.exceptions import ImproperlyConfigured

    from twisted_asgi.django import get_asgi_application

    with pytest.raises(ImproperlyConfigured, match=message):
        get_asgi_application(**kwargs)


def test_setting_must_be_a_mapping():
    """TWISTED_ASGI_APPLICATIONS set to a string is an ImproperlyConfigured."""
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from twisted_asgi.django import get_asgi_application

    with (
        override_settings(TWISTED_ASGI_APPLICATIONS="testsite.routing.application"),
        pytest.raises(ImproperlyConfigured, match="must be a dict"),
    ):
        get_asgi_application()


async def run_lifespan(app: Any) -> list[dict[str, Any]]:
    """Drive ``app`` through lifespan startup then shutdown; return what it sent."""
    queue: asyncio.Queue = asyncio.Queue()
    sent: list[dict[str, Any]] = []
    state: dict[str, Any] = {}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"].startswith("lifespan.startup"):
            await queue.put({"type": "lifespan.shutdown"})

    await queue.put({"type": "lifespan.startup"})
    await asyncio.wait_for(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}, queue.get, send), 10)
    return sent


def test_lifespan_handler_sends_signals_and_closes_database_connections():
    """lifespan_handler sends startup and shutdown signals and closes the connection of Django's sync thread."""
    from asgiref.sync import sync_to_async
    from django.db import connection

    from twisted_asgi.contrib.django import signals
    from twisted_asgi.django import get_asgi_application

    calls: list[str] = []

    def on_startup(sender: Any, **kwargs: Any) -> None:
        calls.append("startup")

    def on_shutdown(sender: Any, **kwargs: Any) -> None:
        # Still open while receivers run: they may use the database.
        calls.append(f"shutdown open={connection.connection is not None}")

    def open_connection() -> bool:
        connection.ensure_connection()
        return connection.connection is not None

    def is_open() -> bool:
        return connection.connection is not None

    async def main() -> tuple[bool, list[dict[str, Any]], bool]:
        opened = await sync_to_async(open_connection, thread_sensitive=True)()
        sent = await run_lifespan(get_asgi_application(lifespan=True))
        still_open = await sync_to_async(is_open, thread_sensitive=True)()
        return opened, sent, still_open

    signals.startup.connect(on_startup)
    signals.shutdown.connect(on_shutdown)
    try:
        opened, sent, still_open = asyncio.run(main())
    finally:
        signals.startup.disconnect(on_startup)
        signals.shutdown.disconnect(on_shutdown)
    assert opened and not still_open
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert calls[0] == "startup"
    assert calls[1] == "shutdown open=True"


def test_lifespan_handler_startup_receiver_failure_fails_startup():
    """A startup receiver that raises makes lifespan_handler send startup.failed with the error."""
    from twisted_asgi.contrib.django import signals
    from twisted_asgi.django import lifespan_handler

    def refuse(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("no database")

    signals.startup.connect(refuse)
    try:
        sent = asyncio.run(run_lifespan(lifespan_handler))
    finally:
        signals.startup.disconnect(refuse)
    assert sent == [{"type": "lifespan.startup.failed", "message": "RuntimeError: no database"}]


def test_lifespan_handler_shutdown_receiver_failure_is_reported_after_all_ran():
    """Every shutdown receiver runs; the failures come back as shutdown.failed."""
    from twisted_asgi.contrib.django import signals
    from twisted_asgi.django import lifespan_handler

    ran: list[str] = []

    def broken(sender: Any, **kwargs: Any) -> None:
        ran.append("broken")
        raise OSError("disk gone")

    def fine(sender: Any, **kwargs: Any) -> None:
        ran.append("fine")

    signals.shutdown.connect(broken)
    signals.shutdown.connect(fine)
    try:
        sent = asyncio.run(run_lifespan(lifespan_handler))
    finally:
        signals.shutdown.disconnect(broken)
        signals.shutdown.disconnect(fine)
    assert ran == ["broken", "fine"]
    assert sent[0] == {"type": "lifespan.startup.complete"}
    assert sent[1]["type"] == "lifespan.shutdown.failed"
    assert "OSError: disk gone" in sent[1]["message"]


def test_project_application_prefers_asgi_application_setting():
    """project_application serves ASGI_APPLICATION when set, else the adapter."""
    from django.test import override_settings

    from twisted_asgi.django import DjangoApplication, project_application

    assert isinstance(project_application(), DjangoApplication)
    with override_settings(ASGI_APPLICATION="testsite.routing.application"):
        from testsite import routing

        assert project_application() is routing.application


def test_runserver_app_order_check():
    """The system check warns when staticfiles' runserver comes before ours, and is quiet otherwise."""
    from django.test import override_settings

    from twisted_asgi.contrib.django.apps import check_app_order

    assert check_app_order() == []
    wrong = ["django.contrib.staticfiles", "twisted_asgi.contrib.django", "django.contrib.contenttypes"]
    with override_settings(INSTALLED_APPS=wrong):
        (warning,) = check_app_order()
    assert warning.id == "twisted_asgi.W001"
    assert "django.contrib.staticfiles" in warning.msg


def test_adapter_rejects_non_callable_directly():
    """DjangoApplication itself refuses a non-callable override and a non-string scope type."""
    from twisted_asgi.django import DjangoApplication

    with pytest.raises(TypeError, match="not callable"):
        DjangoApplication(plain_echo, {"websocket": "not.resolved.here"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="non-empty strings"):
        DjangoApplication(plain_echo, {"": plain_echo})
