"""The test project with WebSocket and lifespan enabled from settings alone
(no change to asgi.py): what ``--django testsite.settings_ws`` serves."""

from .settings import *

TWISTED_ASGI_APPLICATIONS = {
    "websocket": "testsite.routing.application",
    "lifespan": "twisted_asgi.django.lifespan_handler",
}
