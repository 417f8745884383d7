"""The built-in demo app: ``twistd -n asgi twisted_asgi.demo:app``.

``/`` is a page that shows the request's ASGI scope and talks to the WebSocket
echo at ``/ws``; ``/echo`` returns the request body; anything else is 404.
"""

from __future__ import annotations

import html
import json
from typing import Any

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>twisted-asgi demo</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}}
pre{{background:#eee;padding:1em;overflow:auto}}</style>
</head><body>
<h1>twisted-asgi is serving</h1>
<h2>Your request's ASGI scope</h2>
<pre id="scope">{scope}</pre>
<h2>WebSocket echo</h2>
<form id="f"><input id="msg" value="hello" autocomplete="off"> <button>send</button></form>
<pre id="log">connecting...</pre>
<script>
const log = document.getElementById("log");
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
ws.onopen = () => {{ log.textContent = "connected\\n"; }};
ws.onmessage = (e) => {{ log.textContent += "echo: " + e.data + "\\n"; }};
ws.onclose = (e) => {{ log.textContent += "closed (" + e.code + ")\\n"; }};
document.getElementById("f").onsubmit = (e) => {{
  e.preventDefault(); ws.send(document.getElementById("msg").value);
}};
</script>
</body></html>
"""


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


async def app(scope: dict, receive: Any, send: Any) -> None:
    """The demo ASGI application."""
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif kind == "websocket":
        await _websocket_echo(receive, send)
    elif kind == "http":
        await _http(scope, receive, send)


async def _http(scope: dict, receive: Any, send: Any) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"]
    if path == "/":
        shown = json.dumps(_jsonable({k: v for k, v in scope.items()}), indent=2)
        content = _PAGE.format(scope=html.escape(shown)).encode()
        ctype = b"text/html; charset=utf-8"
        status = 200
    elif path == "/echo":
        content, ctype, status = body, b"application/octet-stream", 200
    else:
        content, ctype, status = b"not found\n", b"text/plain; charset=utf-8", 404
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(content)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": content})


async def _websocket_echo(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
        elif message["type"] == "websocket.disconnect":
            return
