"""ASGI entry point as Django's project template writes it: Django's own handler,
which knows nothing of twisted-asgi's TWISTED_ASGI_APPLICATIONS setting."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testsite.settings")

application = get_asgi_application()
