"""The built-in demo app: ``twistd -n asgi twisted_asgi.demo:app``.

``/`` is a page that talks to the WebSocket echo at ``/ws`` and shows the
request's ASGI scope (its headers folded away); ``/echo`` returns the request
body; ``/favicon.ico`` is the page's icon (also inlined in the page); anything
else is 404.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote

_ICON = (
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>"
    "<rect width='16' height='16' rx='3' fill='#3b6ea5'/>"
    "<path d='M4 4h8v2H9v6H7V6H4z' fill='#fff'/></svg>"
)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>twisted-asgi demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:image/svg+xml,{icon}">
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;padding:0 1em}}
pre{{background:#eee;padding:1em;overflow:auto}} summary{{cursor:pointer}}</style>
</head><body>
<h1>twisted-asgi is serving</h1>
<p>You reached it over <b id="proto">{proto}</b>.</p>
<h2>WebSocket echo</h2>
<form id="f"><input id="msg" value="hello" autocomplete="off"> <button>send</button></form>
<pre id="log">connecting...</pre>
<h2>Your request's ASGI scope</h2>
<pre id="scope">{scope}</pre>
<details id="headers"><summary>Request headers ({count})</summary><pre>{headers}</pre></details>
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
        headers = _jsonable(scope.get("headers", []))
        shown = json.dumps(_jsonable({k: v for k, v in scope.items() if k != "headers"}), indent=2)
        content = _PAGE.format(
            icon=quote(_ICON),
            proto=html.escape(f"{scope.get('scheme', 'http')}, HTTP/{scope.get('http_version', '1.1')}"),
            scope=html.escape(shown),
            count=len(headers),
            headers=html.escape("\n".join(f"{name}: {value}" for name, value in headers)),
        ).encode()
        ctype = b"text/html; charset=utf-8"
        status = 200
    elif path == "/favicon.ico":
        content, ctype, status = _ICON.encode(), b"image/svg+xml", 200
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
