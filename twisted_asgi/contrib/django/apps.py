"""The app config: a system check that ``runserver`` will be ours."""

from __future__ import annotations

import os
from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.core.management import find_commands

APP_NAME = "twisted_asgi.contrib.django"


class TwistedASGIConfig(AppConfig):
    """twisted-asgi's Django app: it provides the ``runserver`` command."""

    name = APP_NAME
    # The package's last name, "django", says nothing in a list of app labels.
    label = "twisted_asgi"
    verbose_name = "twisted-asgi"

    def ready(self) -> None:
        checks.register(check_app_order, checks.Tags.compatibility)


def check_app_order(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when an app listed before ours provides ``runserver`` too.

    Django takes each management command from the first app in
    ``INSTALLED_APPS`` that provides it, so ``django.contrib.staticfiles`` (or
    Daphne) above us would keep ``runserver`` for itself.
    """
    configs = list(apps.get_app_configs())
    names = [config.name for config in configs]
    if APP_NAME not in names:
        return []
    rivals = [
        config.name
        for config in configs[: names.index(APP_NAME)]
        if "runserver" in find_commands(os.path.join(config.path, "management"))
    ]
    if not rivals:
        return []
    return [
        checks.Warning(
            f"{rivals[0]!r} comes before {APP_NAME!r} in INSTALLED_APPS, so its runserver command is used.",
            hint=f"Move {APP_NAME!r} above {rivals[0]!r} in INSTALLED_APPS.",
            id="twisted_asgi.W001",
        )
    ]
