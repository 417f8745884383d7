"""WebSocket apps the tests serve, and a raw-frame client for the violations.

:func:`app` routes on the path; what an app observes (disconnect codes,
exceptions from ``send``) is recorded per ``?id=`` and read back over plain
HTTP at ``/events?id=...``, since the app runs in the server process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any
from urllib.parse import parse_qs

from tests.apps import jsonable

#: id -> what the app saw, in order.
EVENTS: dict[str, list[Any]] = {}
#: Set by GET /release: lets /slow start reading.
_RELEASE: asyncio.Event | None = None


def _record(scope: dict, event: Any) -> None:
    ident = parse_qs(scope["query_string"].decode()).get("id", [None])[0]
    if ident is None:
        return  # not asked to (the soak and memory tests open thousands)
    EVENTS.setdefault(ident, []).append(event)
    # Also on stdout, for tests that read it after the server stopped.
    print(f"ws-event {ident} {json.dumps(event)}", flush=True)


def _release() -> asyncio.Event:
    global _RELEASE
    if _RELEASE is None:
        _RELEASE = asyncio.Event()
    return _RELEASE


async def _http(scope: dict, receive: Any, send: Any) -> None:
    query = parse_qs(scope["query_string"].decode())
    if scope["path"] == "/events":
        body = json.dumps(EVENTS.get(query.get("id", ["-"])[0], [])).encode()
    elif scope["path"] == "/release":
        _release().set()
        body = b"released"
    else:
        body = json.dumps(
            {"type": scope["type"], "upgrade": dict(scope["headers"]).get(b"upgrade", b"").decode()}
        ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def _echo(scope: dict, receive: Any, send: Any, **accept: Any) -> None:
    """Echo every message; the text ``close CODE REASON`` makes the app close."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept", **accept})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            _record(scope, {"disconnect": message["code"], "reason": message.get("reason", "")})
            return
        text = message.get("text")
        if text is not None and text.startswith("close "):
            _, code, reason = text.split(" ", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            continue
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def app(scope: dict, receive: Any, send: Any) -> None:
    """Routes on the path; see each branch."""
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hello"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind == "http":
        return await _http(scope, receive, send)
    path = scope["path"]
    if path == "/scope":
        # The scope as JSON, then echo.
        await receive()
        await send({"type": "websocket.accept"})
        shown = jsonable({k: v for k, v in scope.items() if k != "extensions"})
        shown["extensions"] = sorted(scope["extensions"])
        await send({"type": "websocket.send", "text": json.dumps(shown)})
        return await _echo_loop(scope, receive, send)
    if path == "/subprotocol":
        # Accept the client's last offer.
        return await _echo(scope, receive, send, subprotocol=scope["subprotocols"][-1])
    if path == "/headers":
        return await _echo(scope, receive, send, headers=[(b"x-extra", b"yes"), (b"set-cookie", b"a=b")])
    if path == "/bad-subprotocol":
        await receive()
        try:
            await send({"type": "websocket.accept", "subprotocol": "never-offered"})
        except Exception as exc:  # noqa: BLE001 (records whatever send() raised)
            _record(scope, {"accept_error": type(exc).__name__})
            await send({"type": "websocket.close"})
        return None
    if path == "/deny":
        await receive()
        await send({"type": "websocket.close"})
        return None
    if path == "/denial":
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"www-authenticate", b"Bearer"), (b"content-type", b"text/plain")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"go ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"away"})
        return None
    if path == "/raise-before":
        await receive()
        raise RuntimeError("boom before accept " + scope["query_string"].decode())
    if path == "/raise-after":
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise RuntimeError("boom after accept " + scope["query_string"].decode())
    if path == "/return-early":
        await receive()
        return None
    if path == "/return-after-accept":
        await receive()
        await send({"type": "websocket.accept"})
        return None
    if path == "/send-after-close":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except Exception as exc:  # noqa: BLE001 (records whatever send() raised)
            _record(scope, {"send_error": type(exc).__name__, "oserror": isinstance(exc, OSError)})
        message = await receive()
        _record(scope, {"disconnect": message["code"], "reason": message.get("reason", "")})
        return None
    if path == "/send-after-disconnect":
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        while message["type"] != "websocket.disconnect":
            message = await receive()
        _record(scope, {"disconnect": message["code"], "reason": message.get("reason", "")})
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except Exception as exc:  # noqa: BLE001 (records whatever send() raised)
            _record(scope, {"send_error": type(exc).__name__, "oserror": isinstance(exc, OSError)})
        return None
    if path == "/slow":
        # Accept, then read nothing until GET /release; then echo a count.
        await receive()
        await send({"type": "websocket.accept"})
        await _release().wait()
        return await _echo_loop(scope, receive, send)
    if path == "/slow-accept":
        # Never answers websocket.connect: the handshake timeout does.
        message = await receive()
        _record(scope, {"got": message["type"]})
        message = await receive()
        _record(scope, {"got": message["type"], "code": message.get("code")})
        return None
    return await _echo(scope, receive, send)


async def _echo_loop(scope: dict, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            _record(scope, {"disconnect": message["code"], "reason": message.get("reason", "")})
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


# -- a raw-frame client (RFC 6455 §5.2) -----------------------------------------------


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, mask: bool = True) -> bytes:
    """One client frame, masked as clients must (RFC 6455 §5.3) unless ``mask`` is False."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask_fast(payload, key)
    return head + key + masked


def _mask_fast(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def handshake_request(path: str = "/echo", extra: bytes = b"", key: bytes | None = None) -> bytes:
    """A valid upgrade request (``extra`` header lines end with CRLF)."""
    key = key if key is not None else base64.b64encode(os.urandom(16))
    return (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


class RawClient:
    """A WebSocket client over a plain socket that sends whatever it is told."""

    def __init__(self, host: str, port: int, path: str = "/echo", extra: bytes = b"", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.sock.sendall(handshake_request(path, extra))
        self.head = self._read_head()

    def _read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed during handshake: {self.buf!r}")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed with {len(self.buf)} of {n} bytes")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame (servers never mask, §5.1)."""
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._need(8))
        return b0 & 0x0F, self._need(n)

    def read_close(self) -> tuple[int | None, bytes]:
        """Skip data and ping frames until the server's Close; return its code and reason."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == 8:
                if len(payload) >= 2:
                    return struct.unpack("!H", payload[:2])[0], payload[2:]
                return None, b""

    def ending(self) -> str:
        """Read until the server ends TCP: ``"fin"`` (a close), ``"reset"``, or
        ``"open"`` when the socket's timeout passes first."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return "fin"
                self.buf += chunk
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "open"

    def at_eof(self) -> bool:
        """True when the server has closed the TCP connection, by FIN or reset."""
        return self.ending() != "open"

    def closed_cleanly(self) -> bool:
        """True when the server closes TCP with a FIN; False on a reset, which
        browsers report as an unclean close (``wasClean`` false)."""
        return self.ending() == "fin"

    def close(self) -> None:
        self.sock.close()


# -- a Django Channels application (serve with --factory) ---------------------------------


def channels_app() -> Any:
    """A Channels project in one function: a chat consumer that broadcasts to a
    group through the in-memory channel layer, refuses ``?deny``, and accepts
    the client's first subprotocol."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="websocket-tests",
            ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=["channels"],
            CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        )
        django.setup()
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    class Chat(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            if self.scope["query_string"] == b"deny":
                await self.close()
                return
            await self.channel_layer.group_add("room", self.channel_name)
            await self.accept(self.scope["subprotocols"][0] if self.scope["subprotocols"] else None)

        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            if text_data == "leave":
                await self.close(code=4100)
                return
            await self.channel_layer.group_send("room", {"type": "chat.message", "text": text_data})

        async def chat_message(self, event: dict) -> None:
            await self.send(text_data=event["text"])

        async def disconnect(self, code: int) -> None:
            print(f"channels-disconnect {code}", flush=True)
            await self.channel_layer.group_discard("room", self.channel_name)

    return ProtocolTypeRouter({"websocket": URLRouter([path("chat/", Chat.as_asgi())])})


# -- an app that gets the ASGI WebSocket conversation wrong (issue 8) ------------------


async def _connected(receive: Any) -> None:
    message = await receive()
    assert message["type"] == "websocket.connect", message


async def _accepted(receive: Any, send: Any) -> None:
    await _connected(receive)
    await send({"type": "websocket.accept"})


async def _until_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "websocket.disconnect":
        pass


def _mistake_before_accept(message: Any) -> Any:
    async def run(scope: dict, receive: Any, send: Any) -> None:
        await _connected(receive)
        await send(message)

    return run


def _mistake_after_accept(message: Any) -> Any:
    async def run(scope: dict, receive: Any, send: Any) -> None:
        await _accepted(receive, send)
        await send(message)

    return run


async def _accept_unreceived(scope: dict, receive: Any, send: Any) -> None:
    # Accept before taking websocket.connect: allowed (the spec asks for an
    # answer to the connect, not for a receive() first); the connect is then
    # still the first message, and the client's message follows it.
    await send({"type": "websocket.accept"})
    first = await receive()
    second = await receive()
    await send({"type": "websocket.send", "text": f"{first['type']} then {second.get('text')}"})
    await _until_disconnect(receive)


async def _send_after_close(scope: dict, receive: Any, send: Any) -> None:
    await _accepted(receive, send)
    await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
    await send({"type": "websocket.send", "text": "too late"})


async def _long_reason(scope: dict, receive: Any, send: Any) -> None:
    # Not a mistake: RFC 6455 §5.5 caps the reason at 123 bytes and the server
    # cuts it there, on a character boundary ("é" is two bytes: 61 fit + 1 byte).
    await _accepted(receive, send)
    await send({"type": "websocket.close", "code": 4002, "reason": "é" * 200})
    await _until_disconnect(receive)


_DENIAL_START = {"type": "websocket.http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]}
_DENIAL_BODY = {"type": "websocket.http.response.body", "body": b"no"}


async def _denial_start_twice(scope: dict, receive: Any, send: Any) -> None:
    await _connected(receive)
    await send(_DENIAL_START)
    await send(_DENIAL_START)


async def _denial_body_after_complete(scope: dict, receive: Any, send: Any) -> None:
    await _connected(receive)
    await send(_DENIAL_START)
    await send(_DENIAL_BODY)
    await send(_DENIAL_BODY)


async def _denial_unfinished(scope: dict, receive: Any, send: Any) -> None:
    await _connected(receive)
    await send(_DENIAL_START)


async def _denial_body_unfinished(scope: dict, receive: Any, send: Any) -> None:
    await _connected(receive)
    await send(_DENIAL_START)
    await send({"type": "websocket.http.response.body", "body": b"partial", "more_body": True})


async def _return_without_accept(scope: dict, receive: Any, send: Any) -> None:
    await _connected(receive)


async def _raise_before_accept(scope: dict, receive: Any, send: Any) -> None:
    await _connected(receive)
    raise RuntimeError("misbehave: raised before accept")


async def _raise_after_accept(scope: dict, receive: Any, send: Any) -> None:
    await _accepted(receive, send)
    raise RuntimeError("misbehave: raised after accept")


async def _never_answer(scope: dict, receive: Any, send: Any) -> None:
    # Takes websocket.connect and then waits: only the handshake timeout ends
    # the handshake; the app then hears websocket.disconnect and returns.
    await _connected(receive)
    await _until_disconnect(receive)


_ACCEPT = {"type": "websocket.accept"}

#: path (after ``/mis/``) -> what the app does wrong.
MISTAKES: dict[str, Any] = {
    # -- before accept
    "send-before-accept": _mistake_before_accept({"type": "websocket.send", "text": "hi"}),
    "unknown-type-before-accept": _mistake_before_accept({"type": "websocket.hello"}),
    "not-a-dict": _mistake_before_accept("websocket.accept"),
    "no-type": _mistake_before_accept({"subprotocol": None}),
    "unoffered-subprotocol": _mistake_before_accept({"type": "websocket.accept", "subprotocol": "never-offered"}),
    "subprotocol-not-str": _mistake_before_accept({"type": "websocket.accept", "subprotocol": b"chat"}),
    "str-header": _mistake_before_accept({"type": "websocket.accept", "headers": [("x-a", "b")]}),
    "crlf-header": _mistake_before_accept({"type": "websocket.accept", "headers": [(b"x-a", b"b\r\nx-b: c")]}),
    "bad-header-name": _mistake_before_accept({"type": "websocket.accept", "headers": [(b"x a", b"b")]}),
    "headers-not-pairs": _mistake_before_accept({"type": "websocket.accept", "headers": [b"x-a"]}),
    "protocol-header": _mistake_before_accept(
        {"type": "websocket.accept", "headers": [(b"sec-websocket-protocol", b"chat")]}
    ),
    "server-owned-header": _mistake_before_accept({"type": "websocket.accept", "headers": [(b"upgrade", b"h2c")]}),
    "denial-body-before-start": _mistake_before_accept(_DENIAL_BODY),
    "denial-bad-status": _mistake_before_accept({"type": "websocket.http.response.start", "status": 101}),
    "denial-start-twice": _denial_start_twice,
    "denial-unfinished": _denial_unfinished,
    "denial-body-unfinished": _denial_body_unfinished,
    "return-without-accept": _return_without_accept,
    "raise-before-accept": _raise_before_accept,
    "never-answer": _never_answer,
    # -- after accept
    "accept-twice": _mistake_after_accept(_ACCEPT),
    "unknown-type-after-accept": _mistake_after_accept({"type": "websocket.hello"}),
    "not-a-dict-after-accept": _mistake_after_accept(None),
    "send-both": _mistake_after_accept({"type": "websocket.send", "text": "a", "bytes": b"a"}),
    "send-neither": _mistake_after_accept({"type": "websocket.send"}),
    "text-not-str": _mistake_after_accept({"type": "websocket.send", "text": b"a"}),
    "text-surrogate": _mistake_after_accept({"type": "websocket.send", "text": "\ud800"}),
    "bytes-not-bytes": _mistake_after_accept({"type": "websocket.send", "bytes": "a"}),
    "close-code-not-int": _mistake_after_accept({"type": "websocket.close", "code": "1000"}),
    "close-code-reserved": _mistake_after_accept({"type": "websocket.close", "code": 1005}),
    "close-code-out-of-range": _mistake_after_accept({"type": "websocket.close", "code": 5000}),
    "close-reason-not-str": _mistake_after_accept({"type": "websocket.close", "reason": b"bye"}),
    "denial-after-accept": _mistake_after_accept(_DENIAL_START),
    "raise-after-accept": _raise_after_accept,
    # -- after close
    "send-after-close": _send_after_close,
    "denial-body-after-complete": _denial_body_after_complete,
    # -- allowed, for contrast
    "accept-before-receive": _accept_unreceived,
    "long-close-reason": _long_reason,
}


async def misbehave(scope: dict, receive: Any, send: Any) -> None:
    """WebSocket ``/mis/NAME`` runs ``MISTAKES[NAME]``; everything else is :func:`app`."""
    if scope["type"] == "websocket" and scope["path"].startswith("/mis/"):
        return await MISTAKES[scope["path"][len("/mis/") :]](scope, receive, send)
    return await app(scope, receive, send)


# -- client helpers for the end-to-end tests (imports kept local: this module is
#    also the app the test servers import) ----------------------------------------


def open_ws(server: Any, path: str, **kwargs: Any) -> Any:
    """A ``websockets`` client connection to ``path`` on the test ``server``."""
    from websockets.sync.client import connect

    return connect(f"ws://127.0.0.1:{server.port}{path}", proxy=None, open_timeout=10, close_timeout=5, **kwargs)


def new_id() -> str:
    import uuid

    return uuid.uuid4().hex[:10]


def events(server: Any, ident: str, n: int = 1, timeout: float = 10.0) -> list:
    """What the app recorded for ``ident``, once it recorded at least ``n`` things."""
    import time

    from tests.serving import recv_response

    deadline = time.monotonic() + timeout
    while True:
        server.read_output(0)  # keep the server's stdout pipe drained
        with server.connect() as sock:
            sock.sendall(f"GET /events?id={ident} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            found = json.loads(recv_response(sock)[2])
        if len(found) >= n:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"app recorded {found} for {ident}, wanted {n} events")
        time.sleep(0.02)  # polling the server's record, with a deadline
