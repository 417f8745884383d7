"""Sans-IO ASGI state machine for one WebSocket (``WebSocketCycle``).

Also here, as plain functions: the checks of an upgrade request
(:func:`parse_handshake`, RFC 6455 §4.2.1) and the 101 response that completes
the handshake (:func:`handshake_response`, §4.2.2), both from our own parse of
the request.

The cycle owns two things, and no I/O:

* the *receive* side: ``websocket.connect`` first, then the client's messages,
  queued for the app up to a bound, then ``websocket.disconnect`` with the
  close code and reason (ASGI www spec 2.5, "Receive" and "Disconnect");
* the *send* side: every message the app sends is checked against the
  transition table below and turned into one of the wire events defined here
  (:class:`Accept`, :class:`Deny`, :class:`DenialStart`, :class:`DenialBody`,
  :class:`Message`, :class:`Close`). A message that breaks the spec raises
  :class:`~twisted_asgi.events.AppError` with an exact message before anything
  of it reaches the wire.

Imports neither Twisted, asyncio nor Autobahn.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .cycle import check_headers
from .events import AppError, Headers, Request

__all__ = [
    "Accept",
    "Close",
    "DenialBody",
    "DenialStart",
    "Deny",
    "Handshake",
    "HandshakeError",
    "Message",
    "WSState",
    "WebSocketCycle",
    "accept_key",
    "close_code_sendable",
    "handshake_response",
    "origin_matcher",
    "parse_handshake",
]


class WSState(enum.Enum):
    """Where the app is in its side of the WebSocket."""

    CONNECTING = "connecting"  # must answer websocket.connect
    DENIAL = "denial"  # websocket.http.response.start sent, body follows
    OPEN = "open"  # accepted
    CLOSED = "closed"  # the app closed, or its denial response is complete


_OPEN = WSState.OPEN


# -- wire events (what the app's messages mean) ----------------------------------


@dataclass(slots=True)
class Accept:
    """Complete the handshake (101) with this subprotocol and extra headers."""

    subprotocol: str | None
    headers: Headers


@dataclass(slots=True)
class Deny:
    """``websocket.close`` before accept: answer 403 (ASGI www spec, "Close")."""


@dataclass(slots=True)
class DenialStart:
    """The head of the app's own denial response (denial-response extension)."""

    status: int
    headers: Headers


@dataclass(slots=True)
class DenialBody:
    """Denial response body bytes; ``more`` False ends the response."""

    data: bytes
    more: bool


@dataclass(slots=True)
class Message:
    """A data message to the client; ``data`` is UTF-8 when not ``binary``."""

    data: bytes
    binary: bool


@dataclass(slots=True)
class Close:
    """Start the closing handshake with ``code`` and a UTF-8 ``reason`` of at
    most 123 bytes (RFC 6455 §5.5: control frame payloads are <= 125 bytes)."""

    code: int
    reason: bytes


# Headers the server writes itself in a 101 response. The ASGI spec forbids
# sec-websocket-protocol ("use the subprotocol key instead"); the others would
# contradict the handshake the server completes.
_SERVER_OWNED = frozenset(
    {
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"upgrade",
        b"connection",
        b"content-length",
        b"transfer-encoding",
    }
)

_MAX_REASON = 123


def close_code_sendable(code: int) -> bool:
    """True for the close codes an endpoint may put in a Close frame:
    1000-1003 and 1007-1014 (IANA registry), 3000-4999 (RFC 6455 §7.4.2);
    1004 is reserved and 1005, 1006 and 1015 must never be sent (§7.4.1)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _truncate_utf8(text: str, limit: int) -> bytes:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return data
    # Cut on a character boundary: never leave half a code point behind.
    return data[:limit].decode("utf-8", "ignore").encode("utf-8")


# -- the opening handshake (RFC 6455 §4.2) ----------------------------------------

#: RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 9110 §5.6.2 token: what a subprotocol name must be (RFC 6455 §4.1, item 10).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


class HandshakeError(Exception):
    """An upgrade request we refuse: answer ``status`` and close.

    ``headers`` are extra response fields (``sec-websocket-version`` on a
    version we do not speak, RFC 6455 §4.4).
    """

    def __init__(self, reason: str, status: int = 400, headers: Headers | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers or []


@dataclass(slots=True)
class Handshake:
    """What a valid upgrade request asked for."""

    key: bytes
    subprotocols: list[str]
    #: The Sec-WebSocket-Extensions offers, joined; "" when none.
    extensions: str


def origin_matcher(patterns: Iterable[str]) -> Callable[[bytes], bool] | None:
    """A test for Origin header values against ``patterns`` (case-insensitive,
    ``*`` matches any run of characters); None when there are no patterns."""
    compiled = [
        re.compile(".*".join(re.escape(part) for part in pattern.lower().split("*")) + r"\Z", re.DOTALL)
        for pattern in patterns
    ]
    if not compiled:
        return None

    def allowed(origin: bytes) -> bool:
        text = origin.decode("latin-1").strip().lower()
        return any(regex.match(text) for regex in compiled)

    return allowed


def parse_handshake(request: Request, origin_allowed: Callable[[bytes], bool] | None = None) -> Handshake:
    """Check an ``Upgrade: websocket`` request (RFC 6455 §4.2.1).

    The HTTP/1.1 parser already made sure it has ``Connection: upgrade``, one
    Host and no body. Over HTTP/2 the request is an extended CONNECT with
    ``:protocol: websocket`` (RFC 8441 §5, checked by the HTTP/2 core), which
    has no ``Sec-WebSocket-Key``: the stream is already the client's.

    :raises HandshakeError: 400 for a malformed handshake, 403 for an Origin
        not in the allow-list.
    """
    over_h2 = request.http_version == "2"
    if over_h2:
        if request.method != b"CONNECT" or request.upgrade != b"websocket":
            raise HandshakeError("a WebSocket over HTTP/2 is an extended CONNECT (RFC 8441)")
    elif request.method != b"GET":
        raise HandshakeError("a WebSocket handshake must be a GET request")
    elif request.http_version != "1.1":
        raise HandshakeError("a WebSocket handshake needs HTTP/1.1")
    keys: list[bytes] = []
    versions: list[bytes] = []
    protocols: list[bytes] = []
    extensions: list[bytes] = []
    origins: list[bytes] = []
    for name, value in request.headers:
        if name == b"sec-websocket-key":
            keys.append(value)
        elif name == b"sec-websocket-version":
            versions.append(value)
        elif name == b"sec-websocket-protocol":
            protocols.append(value)
        elif name == b"sec-websocket-extensions":
            extensions.append(value)
        elif name == b"origin":
            origins.append(value)
    if [v.strip() for v in versions] != [b"13"]:
        # §4.4: answer with the version we speak.
        raise HandshakeError("Sec-WebSocket-Version must be 13", headers=[(b"sec-websocket-version", b"13")])
    key = b""
    if not over_h2:
        if len(keys) != 1:
            raise HandshakeError("missing Sec-WebSocket-Key" if not keys else "more than one Sec-WebSocket-Key")
        key = keys[0].strip()
        try:
            # §4.1: a base64-encoded 16-byte value.
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            valid_key = False
        if not valid_key:
            raise HandshakeError("Sec-WebSocket-Key is not a base64-encoded 16-byte value")
    subprotocols: list[str] = []
    for value in protocols:
        for item in value.split(b","):
            item = item.strip()
            if not item:
                continue
            try:
                text = item.decode("ascii")
            except UnicodeDecodeError:
                raise HandshakeError("non-ASCII subprotocol in Sec-WebSocket-Protocol") from None
            if _TOKEN.match(text) is None:
                raise HandshakeError(f"invalid subprotocol {text!r} in Sec-WebSocket-Protocol")
            subprotocols.append(text)
    # Browsers always send Origin (RFC 6454); a request without one is not
    # from a browser and could claim any origin anyway.
    if origin_allowed is not None and origins and (len(origins) != 1 or not origin_allowed(origins[0])):
        raise HandshakeError("Origin not allowed", 403)
    offers = b", ".join(extensions).decode("latin-1")
    return Handshake(key, subprotocols, offers)


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for ``key`` (RFC 6455 §4.2.2, item 5.4)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def handshake_response(
    key: bytes,
    subprotocol: str | None,
    extensions: str | None,
    headers: Headers,
    server_name: str | None,
) -> bytes:
    """The 101 response that completes the handshake; ``headers`` are the
    app's extra fields (already checked by the cycle)."""
    out = [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ",
        accept_key(key),
        b"\r\n",
    ]
    if subprotocol is not None:
        out += (b"sec-websocket-protocol: ", subprotocol.encode("ascii"), b"\r\n")
    if extensions:
        out += (b"sec-websocket-extensions: ", extensions.encode("ascii"), b"\r\n")
    have_server = False
    for name, value in headers:
        if name.lower() == b"server":
            have_server = True
        out += (name, b": ", value, b"\r\n")
    if server_name and not have_server:
        out += (b"server: ", server_name.encode("latin-1"), b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


# -- the ASGI conversation ----------------------------------------------------------


_CONNECT = {"type": "websocket.connect"}


class WebSocketCycle:
    """One WebSocket's ASGI conversation, without I/O.

    :param subprotocols: the subprotocols the client offered (an accepted one
        must be among them).
    :param queue_limit: received messages the app may have waiting before
        :attr:`over_limit` tells the shell to stop reading.
    :param bytes_limit: the same bound counted in payload bytes.
    """

    __slots__ = (
        "accepted",
        "bytes_limit",
        "close_code",
        "close_reason",
        "disconnected",
        "queue",
        "queue_limit",
        "queued_bytes",
        "state",
        "subprotocols",
    )

    def __init__(self, subprotocols: list[str], queue_limit: int = 32, bytes_limit: int = 64 * 1024) -> None:
        self.state = WSState.CONNECTING
        self.subprotocols = subprotocols
        #: (message, payload size) pairs waiting for ``receive()``.
        self.queue: deque[tuple[dict[str, Any], int]] = deque([(dict(_CONNECT), 0)])
        self.queued_bytes = 0
        self.queue_limit = queue_limit
        self.bytes_limit = bytes_limit
        #: True once the app accepted (the handshake completed).
        self.accepted = False
        #: True once the connection is gone (or the server is closing it).
        self.disconnected = False
        self.close_code = 1005
        self.close_reason = ""

    # -- receive side ------------------------------------------------------

    def feed_message(self, payload: bytes, binary: bool) -> bool:
        """Queue a complete client message; return True when the queue is over
        its limit (the shell should stop reading until the app catches up).

        Text payloads were validated as UTF-8 by the framing layer (RFC 6455 §8.1).
        """
        size = len(payload)
        queue = self.queue
        if binary:
            queue.append(({"type": "websocket.receive", "bytes": payload}, size))
        else:
            queue.append(({"type": "websocket.receive", "text": payload.decode("utf-8")}, size))
        queued = self.queued_bytes = self.queued_bytes + size
        # over_limit, inline (once per message).
        return len(queue) >= self.queue_limit or queued > self.bytes_limit

    def feed_disconnect(self, code: int, reason: str = "") -> None:
        """The connection is over (or being closed by the server); after the
        queued messages the app gets ``websocket.disconnect`` with ``code``.

        Only the first call counts: the first reason is the true one.
        """
        if self.disconnected:
            return
        self.disconnected = True
        self.close_code = code
        self.close_reason = reason

    @property
    def over_limit(self) -> bool:
        """True while more messages wait for the app than it should be given ahead."""
        return len(self.queue) >= self.queue_limit or self.queued_bytes > self.bytes_limit

    def next_message(self) -> dict[str, Any] | None:
        """The next message for ``receive()``, or None if the app must wait.

        Messages that arrived before the disconnect are delivered first, in
        order; then ``websocket.disconnect`` (again on every later call).
        """
        queue = self.queue
        if queue:
            message, size = queue.popleft()
            self.queued_bytes -= size
            return message
        if self.disconnected:
            return {"type": "websocket.disconnect", "code": self.close_code, "reason": self.close_reason}
        return None

    # -- send side ---------------------------------------------------------

    def app_send(self, message: Any) -> Accept | Deny | DenialStart | DenialBody | Message | Close:
        """Check one message from the app; return the wire event it means.

        :raises AppError: the message is not valid in the current state.
        """
        try:
            mtype = message["type"]
        except (TypeError, KeyError):
            raise AppError(f"ASGI message must be a dict with a 'type' key, got {message!r}") from None
        state = self.state
        if state is _OPEN:
            if mtype == "websocket.send":
                # _message's common cases, inline (once per message sent): bytes,
                # or a str that encodes; anything else, errors included, is its.
                data = message.get("bytes")
                if data is not None:
                    if type(data) is bytes and message.get("text") is None:
                        return Message(data, True)
                else:
                    text = message.get("text")
                    if type(text) is str:
                        try:
                            return Message(text.encode("utf-8"), False)
                        except UnicodeEncodeError:
                            pass
                return self._message(message)
            if mtype == "websocket.close":
                self.state = WSState.CLOSED
                return self._close(message)
            raise AppError(f"Expected ASGI message 'websocket.send' or 'websocket.close', but got {mtype!r}.")
        if state is WSState.CONNECTING:
            if mtype == "websocket.accept":
                event = self._accept(message)
                self.state = WSState.OPEN
                self.accepted = True
                return event
            if mtype == "websocket.close":
                # ASGI www spec: close before accept is an HTTP 403.
                self.state = WSState.CLOSED
                return Deny()
            if mtype == "websocket.http.response.start":
                status = message.get("status")
                if type(status) is not int or not 200 <= status <= 599:
                    raise AppError(
                        f"'status' of websocket.http.response.start must be an int from 200 to 599, got {status!r}"
                    )
                headers = check_headers(message.get("headers"), "websocket.http.response.start")
                self.state = WSState.DENIAL
                return DenialStart(status, headers)
            raise AppError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start', but got {mtype!r}."
            )
        if state is WSState.DENIAL:
            if mtype != "websocket.http.response.body":
                raise AppError(f"Expected ASGI message 'websocket.http.response.body', but got {mtype!r}.")
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise AppError(f"'body' of websocket.http.response.body must be bytes, got {type(body).__name__}")
            more = bool(message.get("more_body", False))
            if not more:
                self.state = WSState.CLOSED
            return DenialBody(bytes(body), more)
        raise AppError(
            f"Unexpected ASGI message {mtype!r} sent, after sending 'websocket.close' "
            "or completing the denial response."
        )

    def _accept(self, message: Any) -> Accept:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if not isinstance(subprotocol, str):
                raise AppError(f"'subprotocol' of websocket.accept must be a str or None, got {subprotocol!r}")
            if subprotocol not in self.subprotocols:
                # RFC 6455 §4.2.2: the server selects one of the client's values.
                raise AppError(
                    f"websocket.accept chose subprotocol {subprotocol!r}, which the client did not offer "
                    f"(it offered {self.subprotocols!r})"
                )
        headers = check_headers(message.get("headers"), "websocket.accept")
        for name, _value in headers:
            if name.lower() in _SERVER_OWNED:
                if name.lower() == b"sec-websocket-protocol":
                    raise AppError(
                        "websocket.accept headers must not include sec-websocket-protocol; use 'subprotocol'"
                    )
                raise AppError(f"websocket.accept headers must not include {name!r}: the server sets it")
        return Accept(subprotocol, headers)

    @staticmethod
    def _message(message: Any) -> Message:
        data = message.get("bytes")
        text = message.get("text")
        if (data is None) == (text is None):
            raise AppError("websocket.send needs exactly one of 'bytes' and 'text' that is not None")
        if text is not None:
            if not isinstance(text, str):
                raise AppError(f"'text' of websocket.send must be a str, got {type(text).__name__}")
            try:
                return Message(text.encode("utf-8"), False)
            except UnicodeEncodeError:
                raise AppError("'text' of websocket.send is not encodable as UTF-8 (lone surrogate?)") from None
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise AppError(f"'bytes' of websocket.send must be bytes, got {type(data).__name__}")
            data = bytes(data)
        return Message(data, True)

    @staticmethod
    def _close(message: Any) -> Close:
        code = message.get("code", 1000)
        if code is None:
            code = 1000
        if type(code) is not int or not close_code_sendable(code):
            raise AppError(
                f"'code' of websocket.close must be 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 §7.4), got {code!r}"
            )
        reason = message.get("reason") or ""
        if not isinstance(reason, str):
            raise AppError(f"'reason' of websocket.close must be a str, got {type(reason).__name__}")
        try:
            return Close(code, _truncate_utf8(reason, _MAX_REASON))
        except UnicodeEncodeError:
            raise AppError("'reason' of websocket.close is not encodable as UTF-8") from None

    @property
    def handshake_answered(self) -> bool:
        """True once the app accepted, denied, or began a denial response."""
        return self.state is not WSState.CONNECTING

    @property
    def denial_unfinished(self) -> bool:
        """True while the app's denial response has started but not ended."""
        return self.state is WSState.DENIAL
