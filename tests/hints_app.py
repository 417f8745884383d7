"""The app of ``tests/test_early_hints.py``: early hints (``http.response.early_hint``)
sent well, too late, malformed, in a flood, and before a page Chromium loads.

Requests of one test meet through ``id=`` in the query string: a request can wait
for another (``/wait`` until ``/release``; ``/page`` until its stylesheet is
asked for) and ``/status`` tells what happened, so no test sleeps.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

from tests.apps import hello

#: One event per name (``release-ID``, ``style-ID``), made by whoever comes first.
_events: dict[str, asyncio.Event] = {}
#: What each id's requests did, for ``/status``.
_status: dict[str, dict[str, Any]] = {}

STYLE = b"p { color: rgb(1, 2, 3); }\n"


def _event(name: str) -> asyncio.Event:
    event = _events.get(name)
    if event is None:
        event = _events[name] = asyncio.Event()
    return event


def _links(i: int) -> list[bytes]:
    return [b"</a%d.css>; rel=preload; as=style" % i, b"</b%d.js>; rel=preload; as=script" % i]


async def _answer(send: Any, body: bytes, content_type: bytes = b"text/plain", status: int = 200) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: Malformed hints (``/bad?what=``): each breaks the event's shape or the
#: byte rules of a field value.
BAD = {
    "crlf": {"links": [b"</a.css>; rel=preload\r\nx-injected: yes"]},
    "lf": {"links": [b"</a.css>\nx-injected: yes"]},
    "nul": {"links": [b"</a.css>\x00"]},
    "str-link": {"links": ["</a.css>; rel=preload"]},
    "bytes-links": {"links": b"</a.css>; rel=preload"},
    "missing": {},
    "int-links": {"links": 7},
}


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await hello(scope, receive, send)
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    ident = query.get("id", "")
    path = scope["path"]
    if path == "/hints":
        # n hints of two links each, then the response.
        for i in range(int(query.get("n", "1"))):
            await send({"type": "http.response.early_hint", "links": _links(i)})
        await _answer(send, b"done")
    elif path == "/late":
        # A hint after the start, and one between two body parts: both dropped.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.early_hint", "links": _links(0)})
        await send({"type": "http.response.body", "body": b"one ", "more_body": True})
        await send({"type": "http.response.early_hint", "links": _links(1)})
        await send({"type": "http.response.body", "body": b"two"})
    elif path == "/upload":
        # A hint, then the body (an Expect: 100-continue client gets its 100 now).
        await send({"type": "http.response.early_hint", "links": _links(0)})
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await _answer(send, b"%d" % size)
    elif path == "/empty":
        # No links: nothing to say, nothing sent.
        await send({"type": "http.response.early_hint", "links": []})
        await _answer(send, b"done")
    elif path == "/bad":
        # A hint the app gets wrong: its send() raises, the app lets it out.
        if "good" in query:
            await send({"type": "http.response.early_hint", "links": _links(0)})
        await send({"type": "http.response.early_hint", **BAD[query["what"]]})
        await _answer(send, b"not reached")
    elif path == "/scope":
        # What the scope offers; a hint is sent whether offered or not.
        offered = "http.response.early_hint" in scope["extensions"]
        await send({"type": "http.response.early_hint", "links": _links(0)})
        body = json.dumps({"offered": offered, "http_version": scope["http_version"]}).encode()
        await _answer(send, body, b"application/json")
    elif path == "/wait":
        # Hints, then waits for /release?id= before its response.
        _status.setdefault(ident, {})["started"] = True
        link = b"</%s.css>; rel=preload; as=style" % ident.encode()
        await send({"type": "http.response.early_hint", "links": [link]})
        await _event("release-" + ident).wait()
        await _answer(send, ident.encode())
    elif path == "/release":
        _event("release-" + ident).set()
        await _answer(send, b"released")
    elif path == "/status":
        await _answer(send, json.dumps(_status.get(ident, {})).encode(), b"application/json")
    elif path == "/flood":
        # `n` hints of 20 links of about 60 bytes (about 1.3 KB a hint, each
        # link short enough for the HPACK encoder's cache of encoded fields:
        # Huffman-coding a long value in Python costs ~0.7 us a byte), as fast
        # as send() returns: a client that reads nothing must hold this app
        # (backpressure), until the send timeout drops it.
        link = [b"</%02d%s>; rel=preload; as=image" % (i, b"x" * 32) for i in range(20)]
        sent = 0
        state = _status.setdefault(ident, {})
        try:
            for _ in range(int(query["n"])):
                await send({"type": "http.response.early_hint", "links": link})
                sent += 1
                state["sent"] = sent
        except OSError:
            state["outcome"] = "send raised"
            raise
        state["outcome"] = "all sent"
        await _answer(send, b"done")
    elif path == "/page":
        # A page whose stylesheet is hinted (with hint=1): the page's body
        # waits until the stylesheet was asked for, `wait` seconds at most,
        # and says which came first.
        style = b"/style.css?id=" + ident.encode()
        loop = asyncio.get_running_loop()
        state = _status.setdefault(ident, {})
        state["page at"] = loop.time()
        if query.get("hint") == "1":
            await send({"type": "http.response.early_hint", "links": [b"<%s>; rel=preload; as=style" % style]})
            state["hinted at"] = loop.time()
        try:
            await asyncio.wait_for(_event("style-" + ident).wait(), float(query.get("wait", "10")))
            order = b"stylesheet-first"
        except TimeoutError:
            order = b"page-first"
        _status.setdefault(ident, {})["order"] = order.decode()
        page = (
            b'<!doctype html><html><head><link rel="stylesheet" href="%s"></head>'
            b'<body><p id="order">%s</p></body></html>' % (style, order)
        )
        await _answer(send, page, b"text/html; charset=utf-8")
    elif path == "/healthz":
        await _answer(send, b"ok")  # the guide's HAProxy health check
    elif path == "/style.css":
        _status.setdefault(ident, {})["stylesheet at"] = asyncio.get_running_loop().time()
        _event("style-" + ident).set()
        await _answer(send, STYLE, b"text/css")
    else:
        await _answer(send, b"not found", status=404)


def _starlette_app() -> Any:
    """A Starlette app whose page hints with ``Request.send_early_hints`` (Starlette
    1.8+), which sends a hint only when the scope offers the extension."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def page(request: Request) -> PlainTextResponse:
        await request.send_early_hints("</style.css>; rel=preload; as=style", "</app.js>; rel=preload; as=script")
        return PlainTextResponse("starlette page")

    return Starlette(routes=[Route("/", page)])


starlette_app = _starlette_app()
