"""Apps for tests/test_pathsend.py: bodies sent by ``http.response.pathsend``
and ``http.response.zerocopysend``, from files under ``$PATHSEND_DIR``."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs

ROOT = os.environ.get("PATHSEND_DIR", "/nonexistent")


def _query(scope: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    query = _query(scope)
    name = os.path.join(ROOT, query.get("f", "missing"))
    headers = [(b"content-type", b"application/octet-stream")]
    if path == "/extensions":
        body = json.dumps(sorted(scope["extensions"])).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/path":
        if "chunked" not in query and os.path.exists(name):
            headers.append((b"content-length", b"%d" % os.path.getsize(name)))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": name})
    elif path == "/zero":
        offset = int(query["offset"]) if "offset" in query else None
        count = int(query["count"]) if "count" in query else None
        with open(name, "rb") as file:
            if "seek" in query:
                file.seek(int(query["seek"]))
            start = file.tell() if offset is None else offset
            length = count if count is not None else os.path.getsize(name) - start
            prefix, suffix = query.get("prefix", "").encode(), query.get("suffix", "").encode()
            if "chunked" not in query:
                headers.append((b"content-length", b"%d" % (len(prefix) + length + len(suffix))))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if prefix:
                await send({"type": "http.response.body", "body": prefix, "more_body": True})
            message: dict[str, Any] = {"type": "http.response.zerocopysend", "file": file, "more_body": True}
            if offset is not None:
                message["offset"] = offset
            if count is not None:
                message["count"] = count
            await send(message)
            position = file.tell()
            await send({"type": "http.response.body", "body": suffix})
        if "position" in query:
            print(f"file position after zerocopysend: {position}", flush=True)
    elif path == "/starlette":
        from starlette.responses import FileResponse

        sent: list[str] = []

        async def recording(message: dict[str, Any]) -> None:
            sent.append(message["type"])
            await send(message)

        await FileResponse(name)(scope, receive, recording)
        print(f"starlette sent {' '.join(sent)}", flush=True)
    else:
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
