"""The plain ASGI apps every server in the benchmark serves, identical for all of them.

Each app answers the ``lifespan`` scope too, so servers that run lifespan (uvicorn,
hypercorn, granian, twisted-asgi) start the same way and log nothing about it.
Only the standard library is imported: the same file runs in every virtualenv.
"""

from __future__ import annotations

import os
import tempfile
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


# -- a static file: path send where the server offers it ------------------------------

#: Where the files served by the file scenarios are written (once, then reused).
FILE_DIR = os.environ.get("BENCH_FILE_DIR") or os.path.join(tempfile.gettempdir(), "twisted-asgi-bench-files")
#: Read size of the app's own loop where the server offers no path send (Starlette's too).
FILE_CHUNK = 65536


def bench_file(size: int) -> str:
    """The path of a ``size``-byte file of non-zero bytes, written if missing
    (atomically: servers started side by side may race to write it)."""
    path = os.path.join(FILE_DIR, f"file-{size}")
    try:
        if os.path.getsize(path) == size:
            return path
    except OSError:
        pass
    os.makedirs(FILE_DIR, exist_ok=True)
    block = bytes(range(256)) * 4096  # 1 MiB
    partial = f"{path}.{os.getpid()}"
    with open(partial, "wb") as out:
        left = size
        while left:
            n = min(left, len(block))
            out.write(block[:n])
            left -= n
    os.replace(partial, path)
    return path


def _file_app(size: int) -> Any:
    """The file of ``size`` bytes with its Content-Length: by ``http.response.pathsend``
    when the scope offers it (twisted-asgi, granian), else read and sent in 64 KiB
    body chunks (what a server without it gets)."""
    path = bench_file(size)
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())],
    }

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        await send(dict(start))
        if "http.response.pathsend" in scope.get("extensions", {}):
            await send({"type": "http.response.pathsend", "path": path})
            return
        with open(path, "rb") as file:
            while True:
                chunk = file.read(FILE_CHUNK)
                more = len(chunk) == FILE_CHUNK
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                if not more:
                    return

    return app


def _starlette_file_app(size: int) -> Any:
    """The same file through Starlette's ``FileResponse`` (which uses path send when
    the server offers it; uvicorn does not). Starlette is imported on the first
    request: the module itself imports only the standard library."""
    path = bench_file(size)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        from starlette.responses import FileResponse

        await FileResponse(path, media_type="application/octet-stream")(scope, receive, send)

    return app


file_1m = _file_app(1 << 20)
file_100m = _file_app(100 << 20)
file_1m_starlette = _starlette_file_app(1 << 20)
file_100m_starlette = _starlette_file_app(100 << 20)
