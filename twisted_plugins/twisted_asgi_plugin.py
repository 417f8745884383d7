"""twistd plugin: ``twistd asgi module:application``."""

from twisted.application.service import ServiceMaker

twisted_asgi = ServiceMaker(
    "twisted-asgi", "twisted_asgi.tap", "Serve an ASGI application (HTTP/1.1, HTTP/2, WebSocket, TLS).", "asgi"
)
