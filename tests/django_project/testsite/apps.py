"""The test project's own app: views, and receivers for the lifespan signals."""

import os

from django.apps import AppConfig


def record(event: str) -> None:
    """Append ``event`` to the file named by $TESTSITE_EVENTS, if set."""
    path = os.environ.get("TESTSITE_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(event + "\n")


class TestsiteConfig(AppConfig):
    """Connects the lifespan signal receivers."""

    name = "testsite"

    def ready(self) -> None:
        from twisted_asgi.contrib.django import signals

        signals.startup.connect(on_startup, dispatch_uid="testsite-startup")
        signals.shutdown.connect(on_shutdown, dispatch_uid="testsite-shutdown")


def on_startup(sender, **kwargs) -> None:
    """Records startup, and fails it when asked to (for the failure test)."""
    record("startup")
    if os.environ.get("TESTSITE_FAIL_STARTUP"):
        raise RuntimeError("startup refused by TESTSITE_FAIL_STARTUP")


def on_shutdown(sender, **kwargs) -> None:
    """Records shutdown."""
    record("shutdown")
