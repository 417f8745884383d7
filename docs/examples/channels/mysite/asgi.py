"""ASGI entry point: Django for HTTP, the Channels routes for WebSocket."""

import os

from twisted_asgi.django import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_asgi_application(websocket="chat.routing.websocket_application")
