"""WebSocket routes of the test project, built with Channels: a Channels
consumer and a plain ASGI app behind one URLRouter."""

from channels.generic.websocket import WebsocketConsumer
from channels.routing import URLRouter
from django.urls import path


class EchoConsumer(WebsocketConsumer):
    """A sync Channels consumer that sends every message back."""

    def connect(self) -> None:
        self.accept()

    def receive(self, text_data=None, bytes_data=None) -> None:
        if text_data is not None:
            self.send(text_data="echo: " + text_data)
        else:
            self.send(bytes_data=bytes_data)


async def plain_echo(scope, receive, send) -> None:
    """A plain ASGI WebSocket app that sends every message back."""
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": "plain: " + message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
        else:
            return


application = URLRouter(
    [
        path("ws/echo/", EchoConsumer.as_asgi()),
        path("ws/plain/", plain_echo),
    ]
)
