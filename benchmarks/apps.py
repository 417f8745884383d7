"""The plain ASGI apps every server in the benchmark serves, identical for all of them.

Each app answers the ``lifespan`` scope too, so servers that run lifespan (uvicorn,
hypercorn, granian, twisted-asgi) start the same way and log nothing about it.
Only the standard library is imported: the same file runs in every virtualenv.
"""

from __future__ import annotations

from typing import Any

HELLO = b"Hello, world!"
#: The streamed response: 16 chunks of 64 KiB, 1 MiB in all.
STREAM_CHUNK = b"x" * 65536
STREAM_CHUNKS = 16

_HELLO_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(HELLO)).encode())],
}
_HELLO_BODY = {"type": "http.response.body", "body": HELLO}


async def _lifespan(receive: Any, send: Any) -> None:
    """Complete startup and shutdown (ASGI lifespan spec) with nothing to do."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello(scope: dict, receive: Any, send: Any) -> None:
    """13 bytes of text with a Content-Length; the request body is not read."""
    if scope["type"] == "http":
        # Fresh dicts: a server may keep or change the message it was given.
        await send(dict(_HELLO_START))
        await send(dict(_HELLO_BODY))
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def echo(scope: dict, receive: Any, send: Any) -> None:
    """Answer with the request body, read whole first (the POST scenario)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    chunks = []
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        more_body = message.get("more_body", False)
    body = b"".join(chunks)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def stream(scope: dict, receive: Any, send: Any) -> None:
    """1 MiB sent in 64 KiB ``more_body`` chunks, without a Content-Length (chunked on HTTP/1.1)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]}
    )
    for _ in range(STREAM_CHUNKS - 1):
        await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": STREAM_CHUNK})


async def ws_echo(scope: dict, receive: Any, send: Any) -> None:
    """Accept every WebSocket and send each message back as it came (text or bytes);
    plain HTTP requests get the hello answer, so a readiness probe works."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "http":
        await hello(scope, receive, send)
        return
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.receive":
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message.get("text") or ""})
        elif kind == "websocket.disconnect":
            return
