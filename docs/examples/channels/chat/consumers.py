import os
import socket

from channels.generic.websocket import AsyncJsonWebsocketConsumer

ROOM = "lobby"


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """Everyone connected, on any host, is in one group: what one sends, all receive."""

    async def connect(self):
        await self.channel_layer.group_add(ROOM, self.channel_name)
        await self.accept()
        # Which host and process serves this connection (to see the spread).
        await self.send_json({"type": "hello", "host": socket.gethostname(), "pid": os.getpid()})

    async def disconnect(self, code):
        await self.channel_layer.group_discard(ROOM, self.channel_name)

    async def receive_json(self, content):
        text = content.get("text") if isinstance(content, dict) else None
        if isinstance(text, str):
            # Through Redis to every member of the group, whichever host it is on.
            await self.channel_layer.group_send(ROOM, {"type": "chat.message", "text": text})

    async def chat_message(self, event):
        await self.send_json({"type": "message", "text": event["text"], "pid": os.getpid()})
