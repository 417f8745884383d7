from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from .consumers import ChatConsumer

websocket_application = AllowedHostsOriginValidator(
    URLRouter([path("ws/chat/", ChatConsumer.as_asgi())]),
)
