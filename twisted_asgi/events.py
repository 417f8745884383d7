"""The protocol-neutral events between the wire and the ASGI cycle, and the errors.

HTTP/1.1 and HTTP/2 connections turn bytes into the *incoming* events below; the
cycle turns application messages into the *outgoing* ones, which the connections
serialise. One vocabulary lets one :class:`~twisted_asgi.cycle.HTTPCycle` serve an
HTTP/1.1 request and an HTTP/2 stream alike.

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

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


class _Event:
    """Base of the event classes: what ``@dataclass(slots=True)`` would give
    them (``__eq__``, ``__repr__``, ``__match_args__``), written once here;
    each class lists its fields in ``__slots__`` and sets them in its own
    ``__init__``. Generating those methods per class (dataclasses compiles
    their source at import) cost every server start about 2.5% of its
    instructions to the first response."""

    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value (as a dataclass)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({fields})"


# -- incoming ----------------------------------------------------------------


class Request(_Event):
    """A complete request head.

    ``target`` is the request target exactly as received; ``path`` and ``query``
    are its two halves (raw bytes, nothing decoded).
    """

    __slots__ = (
        "stream_id",
        "method",
        "path",
        "query",
        "http_version",
        "headers",
        "keep_alive",
        "expect_continue",
        "upgrade",
        "content_length",
        "has_body",
    )
    __match_args__ = (
        "stream_id",
        "method",
        "path",
        "query",
        "http_version",
        "headers",
        "keep_alive",
        "expect_continue",
        "upgrade",
        "content_length",
        "has_body",
    )

    stream_id: int
    method: bytes
    path: bytes
    query: bytes
    http_version: str
    headers: Headers
    keep_alive: bool
    expect_continue: bool
    #: Upgrade token(s) the client asked for (lower-cased), e.g. b"websocket".
    upgrade: bytes | None
    #: Body length promised by Content-Length, None when chunked or absent.
    content_length: int | None
    #: True when a body follows (Content-Length > 0 or chunked).
    has_body: bool

    def __init__(
        self,
        stream_id: int,
        method: bytes,
        path: bytes,
        query: bytes,
        http_version: str,
        headers: Headers,
        keep_alive: bool = True,
        expect_continue: bool = False,
        upgrade: bytes | None = None,
        content_length: int | None = None,
        has_body: bool = False,
    ) -> None:
        self.stream_id = stream_id
        self.method = method
        self.path = path
        self.query = query
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.content_length = content_length
        self.has_body = has_body


class Data(_Event):
    """Request body bytes."""

    __slots__ = ("stream_id", "data")
    __match_args__ = ("stream_id", "data")

    stream_id: int
    data: bytes

    def __init__(self, stream_id: int, data: bytes) -> None:
        self.stream_id = stream_id
        self.data = data


class EndOfMessage(_Event):
    """The request body is complete."""

    __slots__ = ("stream_id",)
    __match_args__ = ("stream_id",)

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamReset(_Event):
    """The peer abandoned the stream (HTTP/2 RST_STREAM, or a lost connection)."""

    __slots__ = ("stream_id",)
    __match_args__ = ("stream_id",)

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


# -- outgoing ----------------------------------------------------------------
#
# Every core serialises these with ``send(event) -> bytes``. ``stream_id`` is
# their last field and defaults to 0: on HTTP/1.1, 0 means "the request being
# answered" (the core knows which); on HTTP/2 it names the stream. (Not
# keyword-only: CPython does not specialise calls to an ``__init__`` with
# keyword-only parameters, which cost 1% of an HTTP/1.1 request.)


class Response(_Event):
    """A response head (also 1xx informational responses)."""

    __slots__ = ("status", "headers", "trailers", "stream_id")
    __match_args__ = ("status", "headers", "trailers", "stream_id")

    status: int
    headers: Headers
    trailers: bool
    stream_id: int

    def __init__(self, status: int, headers: Headers, trailers: bool = False, stream_id: int = 0) -> None:
        self.status = status
        self.headers = headers
        self.trailers = trailers
        self.stream_id = stream_id


class EarlyHint(_Event):
    """A ``103 Early Hints`` informational response (RFC 8297): one ``link``
    field per entry of ``headers``, checked like any response field."""

    __slots__ = ("headers", "stream_id")
    __match_args__ = ("headers", "stream_id")

    headers: Headers
    stream_id: int

    def __init__(self, headers: Headers, stream_id: int = 0) -> None:
        self.headers = headers
        self.stream_id = stream_id


class Body(_Event):
    """Response body bytes; ``more`` False ends the body."""

    __slots__ = ("data", "more", "stream_id")
    __match_args__ = ("data", "more", "stream_id")

    data: bytes
    more: bool
    stream_id: int

    def __init__(self, data: bytes, more: bool, stream_id: int = 0) -> None:
        self.data = data
        self.more = more
        self.stream_id = stream_id


class FileBody(_Event):
    """Response body bytes from a file (``http.response.pathsend``,
    ``http.response.zerocopysend``): the server opens ``path``, or sends from
    the app's ``file`` (an object with ``fileno()``, or a descriptor), from
    ``offset`` (None: the file's position) for ``count`` bytes (None: to its
    end); ``more`` False ends the body."""

    __slots__ = ("path", "file", "offset", "count", "more", "stream_id")
    __match_args__ = ("path", "file", "offset", "count", "more", "stream_id")

    path: str | None
    file: object
    offset: int | None
    count: int | None
    more: bool
    stream_id: int

    def __init__(
        self,
        path: str | None,
        file: object,
        offset: int | None,
        count: int | None,
        more: bool,
        stream_id: int = 0,
    ) -> None:
        self.path = path
        self.file = file
        self.offset = offset
        self.count = count
        self.more = more
        self.stream_id = stream_id


class Trailers(_Event):
    """Response trailer fields, which end the response."""

    __slots__ = ("headers", "stream_id")
    __match_args__ = ("headers", "stream_id")

    headers: Headers
    stream_id: int

    def __init__(self, headers: Headers, stream_id: int = 0) -> None:
        self.headers = headers
        self.stream_id = stream_id


class ErrorResponse(_Event):
    """A complete plain-text error response the server makes itself (``status``
    with ``reason`` as its body), in place of an app's: a refused request, an
    app that failed or timed out before its first body bytes. On HTTP/1.1 it
    closes the connection; on HTTP/2 it ends the stream, with the ``headers``
    given added to its head."""

    __slots__ = ("stream_id", "status", "reason", "headers")
    __match_args__ = ("stream_id", "status", "reason", "headers")

    stream_id: int
    status: int
    reason: str
    headers: Headers | None

    def __init__(self, stream_id: int, status: int, reason: str, headers: Headers | None = None) -> None:
        self.stream_id = stream_id
        self.status = status
        self.reason = reason
        self.headers = headers


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
