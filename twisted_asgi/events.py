"""The protocol-neutral events between the wire and the ASGI cycle, and the errors.

HTTP/1.1 and HTTP/2 connections turn bytes into the *incoming* events below
(``receive_data(bytes) -> events``); the cycle turns application messages into
the *outgoing* ones, which the connections serialise (``send(event) -> bytes``).
Every event carries the ``stream_id`` it belongs to. One vocabulary lets one
:class:`~twisted_asgi.cycle.HTTPCycle` serve an HTTP/1.1 request and an HTTP/2
stream alike.

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]

__all__ = [
    "Body",
    "Data",
    "EarlyHint",
    "EndOfMessage",
    "ErrorResponse",
    "FileBody",
    "Headers",
    "ProtocolError",
    "Request",
    "Response",
    "StreamReset",
    "Trailers",
    "AppError",
    "ClientDisconnected",
]


# -- incoming ----------------------------------------------------------------


@dataclass(slots=True)
class Request:
    """A complete request head.

    ``target`` is the request target exactly as received; ``path`` and ``query``
    are its two halves (raw bytes, nothing decoded).
    """

    stream_id: int
    method: bytes
    path: bytes
    query: bytes
    http_version: str
    headers: Headers
    keep_alive: bool = True
    expect_continue: bool = False
    #: Upgrade token(s) the client asked for (lower-cased), e.g. b"websocket".
    upgrade: bytes | None = None
    #: Body length promised by Content-Length, None when chunked or absent.
    content_length: int | None = None
    #: True when a body follows (Content-Length > 0 or chunked).
    has_body: bool = False


@dataclass(slots=True)
class Data:
    """Request body bytes."""

    stream_id: int
    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    """The request body is complete."""

    stream_id: int


@dataclass(slots=True)
class StreamReset:
    """The peer abandoned the stream (HTTP/2 RST_STREAM, or a lost connection)."""

    stream_id: int


# -- outgoing ----------------------------------------------------------------
#
# Every core serialises these with ``send(event) -> bytes``. ``stream_id`` is
# their last field and defaults to 0: on HTTP/1.1, 0 means "the request being
# answered" (the core knows which); on HTTP/2 it names the stream. (Not
# keyword-only: CPython does not specialise calls to an ``__init__`` with
# keyword-only parameters, which cost 1% of an HTTP/1.1 request.)


@dataclass(slots=True)
class Response:
    """A response head (also 1xx informational responses)."""

    status: int
    headers: Headers
    trailers: bool = False
    stream_id: int = 0


@dataclass(slots=True)
class EarlyHint:
    """A ``103 Early Hints`` informational response (RFC 8297): one ``link``
    field per entry of ``headers``, checked like any response field."""

    headers: Headers
    stream_id: int = 0


@dataclass(slots=True)
class Body:
    """Response body bytes; ``more`` False ends the body."""

    data: bytes
    more: bool
    stream_id: int = 0


@dataclass(slots=True)
class FileBody:
    """Response body bytes from a file (``http.response.pathsend``,
    ``http.response.zerocopysend``): the server opens ``path``, or sends from
    the app's ``file`` (an object with ``fileno()``, or a descriptor), from
    ``offset`` (None: the file's position) for ``count`` bytes (None: to its
    end); ``more`` False ends the body."""

    path: str | None
    file: object
    offset: int | None
    count: int | None
    more: bool
    stream_id: int = 0


@dataclass(slots=True)
class Trailers:
    """Response trailer fields, which end the response."""

    headers: Headers
    stream_id: int = 0


@dataclass(slots=True)
class ErrorResponse:
    """A complete plain-text error response the server makes itself (``status``
    with ``reason`` as its body), in place of an app's: a refused request, an
    app that failed or timed out before its first body bytes. On HTTP/1.1 it
    closes the connection; on HTTP/2 it ends the stream, with the ``headers``
    given added to its head."""

    stream_id: int
    status: int
    reason: str
    headers: Headers | None = None


# -- errors ------------------------------------------------------------------


class ProtocolError(Exception):
    """The peer broke the protocol; answer ``status`` (when one can still be sent) and close."""

    def __init__(self, reason: str, status: int = 400, limit: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        #: The ``limit_*`` setting the request broke, if a limit refused it (for the metrics).
        self.limit = limit
        #: Events parsed from the same bytes before the error (HTTP/1.1 pipelining).
        self.events: list = []
        #: The request refused, when its head was read before the refusal (for the access log).
        self.request: Request | None = None


class AppError(Exception):
    """The application broke the ASGI protocol; the message says exactly how."""


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone (ASGI HTTP spec 2.4)."""
