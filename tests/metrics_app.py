"""The app tests/test_metrics_e2e.py serves: ``/boom`` raises, ``/ws`` echoes
WebSocket messages, anything else answers 200 with its path."""

from __future__ import annotations

from typing import Any

from tests.apps import hello


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await hello(scope, receive, send)
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    if scope["path"] == "/boom":
        raise RuntimeError("boom (a test of the metrics)")
    while (await receive()).get("more_body"):
        pass
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
