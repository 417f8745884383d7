"""ASGI apps the end-to-end tests serve."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any


async def hello(scope: dict, receive: Any, send: Any) -> None:
    """Hello world; answers lifespan too."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hello"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


def jsonable(value: Any) -> Any:
    """``value`` with bytes as latin-1 text and tuples as lists, for json.dumps."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


async def scope_echo(scope: dict, receive: Any, send: Any) -> None:
    """Answers with the scope (as JSON) and the request body length and pid."""
    if scope["type"] == "lifespan":
        return await hello(scope, receive, send)
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    shown = {k: v for k, v in scope.items() if k not in ("extensions",)}
    shown["extensions"] = sorted(scope.get("extensions") or {})
    shown["body_length"] = len(body)
    shown["pid"] = os.getpid()
    payload = json.dumps(jsonable(shown)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def echo(scope: dict, receive: Any, send: Any) -> None:
    """Streams the request body back (chunked), chunk by chunk."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": True})
        if not message.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b""})


async def misbehave(scope: dict, receive: Any, send: Any) -> None:
    """Misbehaves in the way the path names."""
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    path = scope["path"]
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
    if path == "/raise-before":
        raise ValueError("boom before start")
    if path == "/raise-after":
        await send(start)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom after start")
    if path == "/return-nothing":
        return
    if path == "/return-early":
        await send(start)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        return
    if path == "/body-first":
        await send({"type": "http.response.body", "body": b"oops"})
    if path == "/bad-header":
        await send({**start, "headers": [(b"x-evil", b"a\r\nset-cookie: x=1")]})
    if path == "/bad-header-name":
        await send({**start, "headers": [(b"x evil", b"1")]})
    if path == "/str-header":
        await send({**start, "headers": [("x-str", "1")]})
    if path == "/double-start":
        await send(start)
        await send(start)
    if path == "/long-body":
        await send({**start, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"abc"})
    if path == "/short-body":
        await send({**start, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"abc"})
    if path == "/after-complete":
        await send(start)
        await send({"type": "http.response.body", "body": b"done"})
        await send({"type": "http.response.body", "body": b"more"})
    if path == "/hang":
        await asyncio.Event().wait()
    if path == "/read-body":
        while (await receive()).get("more_body"):
            pass
    if path == "/stream-forever":
        await send(start)
        while True:
            await send({"type": "http.response.body", "body": b"s" * 65536, "more_body": True})
    if path == "/ignore-disconnect":
        # Never looks at receive(): only the app-close timeout ends it.
        await send(start)
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        while True:
            await asyncio.sleep(3600)
    await send(start)
    await send({"type": "http.response.body", "body": b"fine"})


async def lifespan_failed(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await hello(scope, receive, send)


async def lifespan_raises(scope: dict, receive: Any, send: Any) -> None:
    """Raises on the lifespan scope, as Django's handler does."""
    if scope["type"] != "http":
        raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
    await hello(scope, receive, send)


NOT_CALLABLE = 42


async def stream(scope: dict, receive: Any, send: Any) -> None:
    """Streams ``?mib=N`` MiB in 64 KiB chunks (no Content-Length)."""
    if scope["type"] != "http":
        return
    mib = int(scope["query_string"].decode().partition("=")[2] or 1)
    chunk = b"x" * 65536
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]}
    )
    for _ in range(mib * 16):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def slow_upload(scope: dict, receive: Any, send: Any) -> None:
    """Reads the body slowly (a pause per message) and answers with its length."""
    if scope["type"] != "http":
        return
    total = 0
    while True:
        message = await receive()
        total += len(message.get("body", b""))
        if not message.get("more_body"):
            break
        await asyncio.sleep(0.0005)
    payload = str(total).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(payload)).encode())]}
    )
    await send({"type": "http.response.body", "body": payload})


async def background(scope: dict, receive: Any, send: Any) -> None:
    """Answers at once, then goes on working inside the same call, as a
    framework's background task does: ``?s=N`` seconds, then prints
    ``BACKGROUND DONE`` (or ``BACKGROUND CANCELLED`` if it is cancelled)."""
    if scope["type"] != "http":
        return
    seconds = float(scope["query_string"].decode().partition("=")[2] or 0.5)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        print("BACKGROUND CANCELLED", flush=True)
        raise
    print("BACKGROUND DONE", flush=True)


async def gc_frozen(scope: dict, receive: Any, send: Any) -> None:
    """Answers with how many objects the server froze out of garbage collection."""
    if scope["type"] != "http":
        return
    import gc

    body = b"%d" % gc.get_freeze_count()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
