"""ASGI entry point, as a user writes it for twisted-asgi: Django's template
with the twisted-asgi adapter in place of ``django.core.asgi``."""

import os

from twisted_asgi.django import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testsite.settings")

application = get_asgi_application()
