"""The app of the worker recycling tests (tests/test_workers_recycle.py):
:func:`tests.deploy.app` (the scope and the worker's pid as JSON, held
requests, a WebSocket that stays open until the client speaks) plus
``/grow?mib=N``, which makes its worker keep N MiB more resident memory
(written, so that the pages are really resident), for ``--limit-worker-rss``.

When the file named by ``RECYCLE_APP_BROKEN`` exists, importing this module
fails (a deployment whose new code does not start).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs

from tests.deploy import app as deploy_app

if os.path.exists(os.environ.get("RECYCLE_APP_BROKEN", "/nonexistent")):
    raise RuntimeError("RECYCLE_APP_BROKEN exists: this worker does not start")

_kept: list[bytearray] = []


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http" or scope["path"] != "/grow":
        await deploy_app(scope, receive, send)
        return
    mib = int(parse_qs(scope["query_string"].decode())["mib"][0])
    _kept.append(bytearray(b"\x01") * (mib * 1024 * 1024))
    body = json.dumps({"pid": os.getpid(), "kept_mib": sum(len(b) for b in _kept) >> 20}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})
