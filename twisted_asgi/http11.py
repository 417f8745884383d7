"""Sans-IO HTTP/1.1 server connection over httptools (llhttp).

Bytes in (:meth:`HTTP11Connection.receive_data`) give :mod:`~twisted_asgi.events`;
response events in (:meth:`HTTP11Connection.send`, the same entry as
:class:`~twisted_asgi.http2.HTTP2Connection`'s) give bytes out. Nothing here
reads a socket, starts a timer or knows about ASGI; the shell
(:mod:`twisted_asgi.h1channel`) does that, and does what the core says.

The exchange is h11's model, one request/response cycle at a time, kept here:
:meth:`~HTTP11Connection.route` says where each parsed event goes (``ROUTE_*``:
the request to answer now, body for its app call, queued behind it, an error
to answer, a discarded body's bytes); :meth:`~HTTP11Connection.finish_response`
counts a complete response and decides keep-alive (``FINISH_*``), starting the
next cycle itself; :meth:`~HTTP11Connection.discard_body` drops a body the app
left unread, within ``limit_receive_buffer_bytes``; :meth:`~HTTP11Connection.drain`
makes the current response the last. Pipelined requests wait in
:attr:`~HTTP11Connection.pending` (64 events, ``limit_receive_buffer_bytes`` of
body: then the shell stops reading), and parsing stops at
``limit_pipelined_requests`` requests not yet answered.

llhttp runs in its strict mode (no leniency flags), which already refuses bare CR
or LF line endings, obs-fold, conflicting Content-Length and Transfer-Encoding,
duplicate Content-Length, malformed chunk sizes and invalid tokens. On top of it
this module enforces what llhttp leaves to the server:

* a single, present ``Host`` on HTTP/1.1 (RFC 9112 §3.2),
* only ``chunked`` as a transfer coding, never on HTTP/1.0 (RFC 9112 §6.1),
  however many ``Transfer-Encoding`` lines carry it: repeated fields are one
  list (RFC 9110 §5.3), and so are repeated ``Expect`` and ``Upgrade`` lines,
* the byte rules of :mod:`~twisted_asgi.fieldrules` that llhttp does not apply
  itself: no NEL (0x85) in field values (Python's ``str.splitlines`` breaks
  lines on it, which is how header injection reached apps before) and no ``#``
  in the request target; llhttp refuses every ASCII byte those rules forbid,
* HTTP/1.0 and HTTP/1.1 only (505 otherwise),
* the head, header count and body limits of :class:`~twisted_asgi.config.Config`.

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

import base64
import binascii
import time
from http import HTTPStatus

import httptools

from .config import Config
from .events import (
    AppError,
    Body,
    Data,
    EarlyHint,
    EndOfMessage,
    ErrorResponse,
    Headers,
    ProtocolError,
    Request,
    Response,
    Trailers,
)
from .fieldrules import REQUEST_VALUE_FORBIDDEN

__all__ = [
    "HTTP11Connection",
    "http_date",
    "imf_fixdate",
    "status_line",
    "ROUTE_BODY",
    "ROUTE_START",
    "ROUTE_SKIP",
    "ROUTE_QUEUED",
    "ROUTE_QUEUE_FULL",
    "ROUTE_ERROR",
    "ROUTE_CLOSE",
    "ROUTE_NEXT",
    "FINISH_CLOSE",
    "FINISH_NEXT",
    "FINISH_DISCARD",
]

# What the shell does with one parsed event (see HTTP11Connection.route).
#: Body bytes or body end of the request being answered: give them to its app call.
ROUTE_BODY = 0
#: A request to answer now: it is the current one (start its app call). When
#: it has no body, its EndOfMessage is the next event of the same list and
#: routing that says ROUTE_SKIP: the shell may pass over it unrouted.
ROUTE_START = 1
#: Nothing to do (the end of a bodiless request, bytes of a body being discarded).
ROUTE_SKIP = 2
#: The event waits behind the current response, in the core's queue.
ROUTE_QUEUED = 3
#: As ROUTE_QUEUED, and the queue is at its bound: stop reading.
ROUTE_QUEUE_FULL = 4
#: A ProtocolError about the request being received now: answer it, close.
ROUTE_ERROR = 5
#: The body being discarded ran past its bound: close the connection.
ROUTE_CLOSE = 6
#: The body being discarded is over: the core began the next cycle (take_pending).
ROUTE_NEXT = 7

# What follows a complete response (see HTTP11Connection.finish_response).
#: The connection closes (no keep-alive, the request limit, a drain).
FINISH_CLOSE = 0
#: The exchange is over: the core began the next cycle (take_pending).
FINISH_NEXT = 1
#: The app left the request body unread: drop what it queued, then discard_body().
FINISH_DISCARD = 2

#: Pipelined events held behind the current response before reading stops.
_QUEUE_BOUND = 64

# Statuses whose responses never carry a body (RFC 9110 §6.4.1).
_NO_BODY_STATUSES = frozenset({204, 304})

# The response fields the server itself acts on, by lower-case name.
_F_CONTENT_LENGTH, _F_TRANSFER_ENCODING, _F_CONNECTION, _F_SERVER, _F_DATE = range(1, 6)
_RESPONSE_FIELDS = {
    b"content-length": _F_CONTENT_LENGTH,
    b"transfer-encoding": _F_TRANSFER_ENCODING,
    b"connection": _F_CONNECTION,
    b"server": _F_SERVER,
    b"date": _F_DATE,
}

_STATUS_LINES: dict[int, bytes] = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("ascii")) for s in HTTPStatus
}


_EARLY_HINTS = _STATUS_LINES[103]


def status_line(status: int) -> bytes:
    """The HTTP/1.1 status line for ``status``, reason phrase included when known."""
    line = _STATUS_LINES.get(status)
    if line is None:
        # The reason phrase is optional but the space before it is not (RFC 9112 §4).
        line = b"HTTP/1.1 %d \r\n" % status
    return line


_date_cache: list = [0, b""]


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def imf_fixdate(seconds: float) -> str:
    """RFC 9110 §5.6.7's IMF-fixdate of a POSIX time (``Sun, 06 Nov 1994
    08:49:37 GMT``); English names whatever the locale, as the RFC wants.
    Written here rather than taken from ``email.utils``, whose import is 2% of
    the plain start-up's instructions."""
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


_time = time.time


def http_date() -> bytes:
    """The current IMF-fixdate for the ``Date`` header, computed once per second
    (:meth:`HTTP11Connection.start_response` has a copy of this, inlined)."""
    now = int(_time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = imf_fixdate(now).encode("ascii")
    return _date_cache[1]


# The head limit is checked on what httptools reports (target, complete fields)
# and, as a guard against a field httptools is still buffering, on the raw bytes
# of reads that fell wholly inside the head. The reported count leaves out the
# request line around the target (method, version, CRLF: under 32 bytes), so the
# raw guard allows that much more and an over-long target is a 414 in any split.
_REQUEST_LINE_SLACK = 32

_OWS = (b" ", b"\t")

# Single bytes are looked for as ints (``13 in value``): CPython's ``b"\r" in value``
# first tries the needle as an integer, and builds and drops a formatted
# TypeError on every call, about ten times the cost.
_HASH = 0x23  # "#"

# The request field value rule of fieldrules, as llhttp leaves it to us: llhttp
# refuses every ASCII byte the rule forbids (tests/test_byte_rules.py checks each
# byte), so only the rule's non-ASCII bytes are looked for here. There is one,
# NEL (a line break to str.splitlines()): a single `in` test per value, the
# cheapest scan there is on the hottest path. Unpacking fails at import if the
# rule ever gains another non-ASCII byte, so this check cannot fall behind it.
(_NEL,) = REQUEST_VALUE_FORBIDDEN.translate(None, bytes(range(0x80)))

# The request fields the parser itself acts on (one set lookup for all others).
_FRAMING_FIELDS = frozenset({b"host", b"content-length", b"transfer-encoding", b"expect", b"upgrade"})

# Body chunks at least this long are framed as separate pieces (see
# send_body_pieces) rather than copied into one bytes object.
_FRAME_WITHOUT_COPY = 4096

#: Reads longer than this are parsed only as far as the pipelining bound allows
#: (see HTTP11Connection._receive_bounded). A shorter read holds too few requests
#: to matter (at most 57 of the smallest, 18 bytes each), and skips the scan.
_BOUNDED_FROM = 1024

# Response framing modes.
_LENGTH = 0  # Content-Length given by the app
_CHUNKED = 1  # we chunk (HTTP/1.1, no Content-Length)
_CLOSE = 2  # HTTP/1.0 without length: body ends when the connection closes
_NONE = 3  # HEAD, 204, 304: no body bytes at all


#: server_name -> its ``server`` field line (few names in one process).
_SERVER_LINES: dict[str | None, bytes] = {}


def _server_line(name: str | None) -> bytes:
    """The ``server`` field line for ``name`` (b"" for none), made once per
    name rather than once per connection."""
    line = _SERVER_LINES.get(name)
    if line is None:
        line = b"server: %s\r\n" % name.encode("latin-1") if name else b""
        if len(_SERVER_LINES) < 16:
            _SERVER_LINES[name] = line
    return line


class HTTP11Connection:
    """One HTTP/1.1 server connection, without I/O.

    :param config: the limits to enforce.
    :param upgrades: the ``Upgrade`` tokens the server can switch to (e.g.
        ``{b"websocket"}``). A request for one of them ends HTTP/1.1 parsing;
        the bytes after its head are in :attr:`trailing_data`. Others are ignored
        and the request is served as plain HTTP (RFC 9110 §7.8).
    """

    __slots__ = (
        "_config",
        "_parser",
        "_events",
        "_url",
        "_headers",
        "_head_bytes",
        "_head_raw",
        "_head_section",
        "_limit_head",
        "_limit_headers",
        "_idle",
        "in_request_head",
        "_in_trailers",
        "_maybe_trailers",
        "_body_bytes",
        "_chunks",
        "_chunk_overhead",
        "_error",
        "_current",
        "_host_count",
        "_content_length",
        "_transfer_encoding",
        "_expect",
        "_upgrade",
        "_framing",
        "_upgrades",
        "_stream_id",
        "_manual_body",
        "upgraded",
        "trailing_data",
        "unparsed",
        "_unparsed_at",
        "_answered",
        # response side
        "_mode",
        "_remaining",
        "_pending_head",
        "_server_line",
        "_send_date",
        "keep_alive",
        "response_started",
        "response_complete",
        "bytes_sent",
        "status",
        # the exchange (one request/response cycle at a time)
        "current",
        "_current_ended",
        "pending",
        "pending_bytes",
        "requests_served",
        "draining",
        "_last_at",
        "_finished_stream",
        "_discard_left",
        "_trailers",
    )

    def __init__(self, config: Config, upgrades: frozenset[bytes] = frozenset()) -> None:
        self._config = config
        self._upgrades = upgrades
        # Read once per header: kept here rather than looked up on the config.
        self._limit_head = config.limit_request_head_bytes
        self._limit_headers = config.limit_request_headers
        self._parser = httptools.HttpRequestParser(self)
        self._events: list = []
        self._url: list[bytes] = []
        self._headers: Headers = []
        self._head_bytes = 0
        self._head_raw = 0
        self._head_section = 0
        self._idle = True  # between requests: the next byte begins a head
        #: True while a request head has started but is not complete.
        self.in_request_head = False
        self._in_trailers = False
        self._maybe_trailers = False
        self._body_bytes = 0
        #: Chunks of the current chunked body, and its bytes that were not data
        #: (sizes, CRLFs and chunk extensions, which no callback reports).
        self._chunks = 0
        self._chunk_overhead = 0
        self._error: ProtocolError | None = None
        #: The request whose head was read last (its body may be on its way).
        self._current: Request | None = None
        self._host_count = 0
        self._content_length: bytes | None = None
        self._transfer_encoding: bytes | None = None
        self._expect: bytes | None = None
        self._upgrade: bytes | None = None
        #: A framing field other than Host was in this head.
        self._framing = False
        self._stream_id = 0
        self._manual_body = 0
        #: True once a request switched protocols; no more HTTP/1.1 parsing.
        self.upgraded = False
        #: Bytes received after the head of an accepted upgrade request.
        self.trailing_data = b""
        #: Bytes received but not parsed yet, from ``_unparsed_at`` on: the
        #: pipelining bound was reached (see :meth:`_receive_bounded`);
        #: ``receive_data(b"")`` goes on. Empty when nothing is kept.
        self.unparsed = b""
        self._unparsed_at = 0
        #: Requests whose exchange is over (:meth:`response_done` calls).
        self._answered = 0
        self._mode = _NONE
        self._remaining = 0
        self._pending_head = b""
        #: The ``server`` field line sent unless the app gives its own (b"": none).
        self._server_line = _server_line(config.server_name)
        self._send_date = config.send_date
        self.keep_alive = True
        self.response_started = False
        self.response_complete = False
        self.bytes_sent = 0
        self.status = 0
        #: The request being answered (see :meth:`route`), None between exchanges.
        self.current: Request | None = None
        self._current_ended = True
        #: Events of pipelined requests that wait for the current response (a
        #: list, taken whole by :meth:`take_pending`: an empty deque costs 760
        #: bytes per connection), and the body bytes among them.
        self.pending: list = []
        self.pending_bytes = 0
        #: Responses completed on this connection.
        self.requests_served = 0
        #: Set by :meth:`drain`: the current response (if any) is the last.
        self.draining = False
        #: From this many responses served, the next is the last (the
        #: request limit; keep-alive off: at once; see drain()).
        limit = config.limit_requests_per_connection
        self._last_at = -1 if not config.timeout_keep_alive else (limit - 1 if limit else 1 << 62)
        #: Stream id of the last request whose exchange is over.
        self._finished_stream = 0
        #: Bytes of an unread request body still to drop after its response, or None.
        self._discard_left: int | None = None
        #: The current response's ``Response.trailers`` (for :meth:`send`).
        self._trailers = False

    def release(self) -> None:
        """The connection is over: drop the parser, which holds this object's
        callbacks (a reference cycle), so both are freed at once. Nothing may
        be received after this."""
        self._parser = None  # type: ignore[assignment]
        self._events = []
        self.unparsed = b""
        self.pending = []

    # -- receiving -----------------------------------------------------------

    @property
    def fresh(self) -> bool:
        """True until the first request head has begun."""
        return self._stream_id == 0 and not self.in_request_head

    def receive_data(self, data: bytes, _whole: bool = False) -> list:
        """Parse ``data``; return the events it completes.

        Parsing stops once ``limit_pipelined_requests`` requests are parsed
        and not yet answered; what is left waits in :attr:`unparsed` until
        :meth:`response_done` made room and ``receive_data(b"")`` is called.
        (``_whole`` is for :meth:`_receive_bounded` only: parse all of it.)

        :raises ProtocolError: the request is malformed or over a limit; the error
            carries the status to answer with, and in ``events`` the events of
            the requests parsed before the bad bytes (pipelined requests ahead of
            it still deserve their responses). The connection must then close.
        """
        if (len(data) > _BOUNDED_FROM or self.unparsed) and not _whole:
            return self._receive_bounded(data)
        events = self._events = []
        if self.upgraded:
            self.trailing_data += data
            return events
        if self._error is not None:
            raise self._error
        try:
            if self._manual_body:
                data = self._take_manual_body(data)
                if not data:
                    return events
            # A read that began between requests and began exactly one head
            # belongs wholly to that head.
            section = self._head_section + 1 if self._idle else self._head_section
            current = self._current
            chunked = self._in_trailers and current is not None and current.has_body and current.content_length is None
            if chunked:
                body_before = self._body_bytes
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                self._on_upgrade(data, exc.args[0])
            except httptools.HttpParserCallbackError:
                raise self._error or ProtocolError("invalid request") from None
            except httptools.HttpParserInvalidMethodError:
                raise ProtocolError("invalid request method") from None
            except httptools.HttpParserInvalidURLError:
                raise ProtocolError("invalid request target") from None
            except httptools.HttpParserError as exc:
                if self._error is not None:
                    raise self._error from None
                if "PRI/Upgrade" in str(exc):
                    # llhttp's words for a request line of "PRI * HTTP/2.0".
                    raise ProtocolError("HTTP/2 connection preface on a connection that speaks HTTP/1.1") from None
                error = ProtocolError(f"malformed request: {exc}")
                error.request = self._refused_request()
                raise error from None
            if chunked and self._in_trailers and self._current is current:
                # The whole read stayed inside one chunked body: what was not data
                # is framing, and chunk extensions, which llhttp skips without a
                # callback. Beyond the framing of its chunks (32 bytes each is
                # more than a size and two CRLFs) a body may carry at most
                # limit_request_head_bytes of extensions (Node's CVE-2024-22019).
                self._chunk_overhead += len(data) - (self._body_bytes - body_before)
                if self._chunk_overhead > self._config.limit_request_head_bytes + 32 * self._chunks:
                    self._fail("chunk extensions too long", 400, "limit_request_head_bytes")
            if (self.in_request_head or self._maybe_trailers) and section == self._head_section:
                # httptools buffers a header until it ends, so count raw bytes too:
                # an endless header is refused after at most one read past the limit.
                # Only a read that began inside this head counts: one that also
                # carried a body or an earlier request is bounded by its own size.
                self._head_raw += len(data)
                if self._head_raw > self._config.limit_request_head_bytes + _REQUEST_LINE_SLACK:
                    self._fail("request head too large", 431, "limit_request_head_bytes")
        except ProtocolError as exc:
            self._error = exc
            exc.events = events
            raise
        return events

    def _receive_bounded(self, data: bytes) -> list:
        """Parse ``data`` (after what was kept unparsed) only as far as the
        pipelining bound allows, keeping the rest in :attr:`unparsed`.

        llhttp parses all it is fed, and one 64 KiB read of tiny pipelined
        requests is thousands of them (each a Request and its head in memory,
        18 times the bytes read). So the data is fed in pieces cut just after
        as many head ends (CRLF CRLF: llhttp's strict mode allows no other)
        as there is room for requests; a head end inside a body only cuts
        sooner. A head that may announce a body ends its piece, and a
        Content-Length body is then fed by its length, never searched (a
        64 KiB body would cost more to search than to parse). The rest is at
        most one read (the shell stops reading while bytes are kept).
        """
        start = 0
        unparsed = self.unparsed
        if unparsed:
            # Parsed on from where it stopped, without copying what is left
            # (one request at a time as responses go out would copy the whole
            # rest once per request).
            start = self._unparsed_at
            data = unparsed[start:] + data if data else unparsed
            if data is not unparsed:
                start = 0
            self.unparsed = b""
            self._unparsed_at = 0
        events: list = []
        size = len(data)
        limit = self._config.limit_pipelined_requests
        while start < size:
            piece: bytes | memoryview
            if self.upgraded or self._error is not None:
                piece = data[start:]
            else:
                left = self._body_left()
                if left > 0:
                    # No request can end inside a body: take it by its length.
                    cut = start + left
                    piece = memoryview(data)[start:cut] if not self._manual_body else data[start:cut]
                else:
                    room = limit - (self._stream_id - self._answered)
                    if room <= 0:
                        self.unparsed = data
                        self._unparsed_at = start
                        break
                    cut = start
                    counted = False
                    while room:
                        found = data.find(b"\r\n\r\n", cut)
                        if found < 0:
                            cut = size
                            break
                        head = data[cut:found].lower()
                        cut = found + 4
                        room -= 1
                        if b"content-length" in head or b"transfer-encoding" in head:
                            break  # its body (if it is one) is fed by length next
                        if not counted:
                            counted = True
                            if data.count(b"\r\n\r\n", cut) <= room:
                                cut = size  # room for all the rest may hold: one feed
                                break
                    piece = data[start:cut]
            start += len(piece)
            try:
                events += self.receive_data(piece, True)  # type: ignore[arg-type]
            except ProtocolError as exc:
                exc.events = events + exc.events
                raise
            if self.unparsed:
                # The piece ended in a refused upgrade whose own rest hit the bound.
                self.unparsed = self.unparsed[self._unparsed_at :] + data[start:]
                self._unparsed_at = 0
                break
        return events

    def _body_left(self) -> int:
        """Bytes of the Content-Length body being received still to come (0
        outside a body, and for a chunked one)."""
        if self._manual_body:
            return self._manual_body
        if self._idle or self.in_request_head or self._content_length is None or self._transfer_encoding is not None:
            return 0
        return int(self._content_length) - self._body_bytes

    def _fail(self, reason: str, status: int = 400, limit: str | None = None) -> None:
        error = self._error = ProtocolError(reason, status, limit)
        error.request = self._refused_request()
        raise error

    def _refused_request(self) -> Request | None:
        """The request a refusal concerns, for the access log: the one whose body
        was being read (413 on a chunked body), or what was read of a head
        (413/417/501/505 on its fields, 431 or a malformed field midway: the
        request line and the fields read so far); None before a request line."""
        if self._in_trailers and self._current is not None:
            return self._current
        if not self._url:
            return None
        parser = self._parser
        try:
            method, version = parser.get_method(), parser.get_http_version()
        except httptools.HttpParserError:
            method, version = b"-", "1.1"
        target = b"".join(self._url)
        path, _sep, query = target.partition(b"?")
        return Request(self._stream_id + 1, method or b"-", path, query, version or "1.1", list(self._headers))

    def on_message_begin(self) -> None:
        self.in_request_head = True
        self._idle = False
        self._url = []
        self._headers = []
        self._head_bytes = 0
        self._head_raw = 0
        self._head_section += 1
        self._body_bytes = 0
        self._chunks = 0
        self._chunk_overhead = 0
        self._host_count = 0
        if self._framing:
            self._framing = False
            self._content_length = None
            self._transfer_encoding = None
            self._expect = None
            self._upgrade = None

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_bytes += len(url)
        if self._head_bytes > self._config.limit_request_head_bytes:
            self._fail("request target too long", 414, "limit_request_head_bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._limit_head:
            self._fail("request head too large", 431, "limit_request_head_bytes")
        if _NEL in value:
            self._fail("invalid character in header value")
        if value[-1:] in _OWS:
            # llhttp drops the whitespace before a field value but keeps what
            # follows it; neither is part of the value (RFC 9110 §5.5).
            value = value.rstrip(b" \t")
        if self._in_trailers:
            # Request trailers have no place in ASGI; they are checked and dropped.
            return
        headers = self._headers
        if len(headers) >= self._limit_headers:
            self._fail("too many request headers", 431, "limit_request_headers")
        name = name.lower()
        headers.append((name, value))
        if name in _FRAMING_FIELDS:
            if name == b"host":
                self._host_count += 1
                return
            self._framing = True
            # RFC 9110 §5.3: a field on several lines is one comma-separated
            # list, so "gzip" then "chunked" is judged as "gzip, chunked".
            # (llhttp refuses a second Content-Length itself.)
            if name == b"content-length":
                self._content_length = value
            elif name == b"transfer-encoding":
                te = self._transfer_encoding
                self._transfer_encoding = value if te is None else te + b", " + value
            elif name == b"expect":
                expect = self._expect
                self._expect = value if expect is None else expect + b", " + value
            else:
                upgrade = self._upgrade
                self._upgrade = value if upgrade is None else upgrade + b", " + value

    def on_headers_complete(self) -> None:
        self.in_request_head = False
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._fail(f"HTTP version {version} not supported", 505)
        if version == "1.1" and self._host_count != 1:
            # RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400.
            self._fail("missing Host header" if not self._host_count else "duplicate Host header")
        method = parser.get_method()
        if method == b"CONNECT":
            self._fail("CONNECT is not supported", 501)
        content_length: int | None = None
        has_body = expect_continue = False
        upgrade = None
        if self._framing:  # any of Content-Length, Transfer-Encoding, Expect, Upgrade
            if self._transfer_encoding is not None:
                if version == "1.0":
                    # RFC 9112 §6.1: Transfer-Encoding in 1.0 means the framing is faulty.
                    self._fail("Transfer-Encoding in an HTTP/1.0 request")
                if self._transfer_encoding.strip().lower() != b"chunked":
                    self._fail("only the chunked transfer coding is supported", 501)
                has_body = True
            elif self._content_length is not None:
                content_length = int(self._content_length)  # llhttp checked the digits
                has_body = content_length > 0
                limit = self._config.limit_request_body_bytes
                if limit and content_length > limit:
                    self._fail("request body too large", 413, "limit_request_body_bytes")
            if self._expect is not None:
                if self._expect.strip().lower() != b"100-continue":
                    self._fail("unsupported expectation", 417)
                expect_continue = version == "1.1" and has_body
            if self._upgrade is not None and parser.should_upgrade():
                upgrade = self._upgrade.strip().lower()
        url = self._url
        target = url[0] if len(url) == 1 else b"".join(url)
        if target[:1] == b"/" and _HASH not in target:
            path, _sep, query = target.partition(b"?")  # origin-form, the usual one
        else:
            try:
                path, query = _split_target(target, method)
            except ProtocolError as exc:
                # Raised inside an httptools callback: keep the reason, not httptools' own.
                self._fail(exc.reason, exc.status)
        self._stream_id += 1
        request = self._current = Request(
            self._stream_id,
            method,
            path,
            query,
            version,
            self._headers,
            parser.should_keep_alive(),
            expect_continue,
            upgrade,
            content_length,
            has_body,
        )
        self._events.append(request)
        self._in_trailers = True  # any later on_header is a chunked trailer

    def on_chunk_header(self) -> None:
        # Until data follows, this chunk header may be the last one: the
        # trailer section can begin, and its raw bytes count as head bytes.
        self._chunks += 1
        self._maybe_trailers = True
        self._head_bytes = 0
        self._head_raw = 0
        self._head_section += 1

    def on_body(self, body: bytes) -> None:
        self._maybe_trailers = False
        self._body_bytes += len(body)
        limit = self._config.limit_request_body_bytes
        if limit and self._body_bytes > limit:
            self._fail("request body too large", 413, "limit_request_body_bytes")
        self._events.append(Data(self._stream_id, body))

    def on_message_complete(self) -> None:
        self._idle = True
        self._in_trailers = False
        self._maybe_trailers = False
        self._events.append(EndOfMessage(self._stream_id))

    def _on_upgrade(self, data: bytes, offset: int) -> None:
        """llhttp stopped after the head of an ``Upgrade`` request."""
        request = self._events[-2]  # [..., Request, EndOfMessage]
        rest = data[offset:]
        token = request.upgrade
        # An h2c offer that is not exactly RFC 7540 §3.2's is served as HTTP/1.1
        # (the server may ignore an Upgrade, RFC 9110 §7.8): curl --http2 offers
        # it on every request, bodies included.
        if token in self._upgrades and (token != b"h2c" or _h2c_offer(request)):
            if request.has_body:
                # The refused request must not reach the shell with the error's
                # events, which are only those of the requests before it.
                del self._events[-2:]
                self._fail(f"{token.decode('latin-1')} upgrade request with a body")
            self.upgraded = True
            self.trailing_data = rest
            return
        # Not an upgrade we do: serve it as plain HTTP. llhttp skipped the body
        # of an upgrade request, so a Content-Length body is taken here by hand.
        request.upgrade = None
        del self._events[-1]
        if request.has_body:
            if request.content_length is None:
                self._fail("upgrade request with a chunked body")
            self._manual_body = request.content_length
            rest = self._take_manual_body(rest)
        else:
            self._events.append(EndOfMessage(self._stream_id))
        if rest:
            events = self._events
            events.extend(self.receive_data(rest))
            self._events = events

    def _take_manual_body(self, data: bytes) -> bytes:
        n = min(self._manual_body, len(data))
        if n:
            self._events.append(Data(self._stream_id, data[:n]))
            self._manual_body -= n
        if not self._manual_body:
            self._events.append(EndOfMessage(self._stream_id))
        return data[n:]

    # -- the exchange: which request is answered, which wait -----------------

    def route(self, event: object) -> int:
        """Where one event of :meth:`receive_data` goes, as a ``ROUTE_*`` code.

        One request is answered at a time (h11's model): a :class:`Request`
        becomes :attr:`current` when none is (``ROUTE_START``); its body events
        are the app's (``ROUTE_BODY``; a request without a body is complete
        as it starts: its EndOfMessage, always the next event of the same
        list, is ``ROUTE_SKIP``, and a shell may skip it without asking);
        everything after them waits in
        :attr:`pending` until the response is done (``ROUTE_QUEUED``, or
        ``ROUTE_QUEUE_FULL`` past 64 events or ``limit_receive_buffer_bytes``
        of body: the shell stops reading). While an unread body is discarded
        (:meth:`discard_body`) its bytes are counted and dropped here. A
        :class:`ProtocolError` is answered now (``ROUTE_ERROR``) when it
        concerns the request being received, else queued in order.
        """
        kind = type(event)
        current = self.current
        if kind is Request:
            if current is None and not self.pending:
                # Answered now: is its response the connection's last (the
                # request limit, a drain, keep-alive off)? The head says so.
                self.current = event  # type: ignore[assignment]
                self._current_ended = not event.has_body  # type: ignore[attr-defined]
                if self.requests_served >= self._last_at:
                    self.keep_alive = False
                return ROUTE_START
        elif kind is EndOfMessage or kind is Data:
            if current is not None and event.stream_id == current.stream_id:  # type: ignore[attr-defined]
                if self._discard_left is None:
                    if kind is Data:
                        return ROUTE_BODY
                    if not current.has_body:
                        return ROUTE_SKIP  # a request without a body began complete
                    self._current_ended = True
                    return ROUTE_BODY
                # The rest of a body the app did not read, after its response.
                if kind is Data:
                    self._discard_left -= len(event.data)  # type: ignore[attr-defined]
                    return ROUTE_CLOSE if self._discard_left < 0 else ROUTE_SKIP
                self.response_done()  # the next cycle begins
                return ROUTE_NEXT
            if event.stream_id <= self._finished_stream:  # type: ignore[attr-defined]
                return ROUTE_SKIP  # end of a bodiless request already answered
        elif not self.pending and (current is None or current.upgrade is not None or not self._current_ended):
            return ROUTE_ERROR
        pending = self.pending
        pending.append(event)
        if kind is Data:
            self.pending_bytes += len(event.data)  # type: ignore[attr-defined]
        if self.pending_bytes > self._config.limit_receive_buffer_bytes or len(pending) > _QUEUE_BOUND:
            return ROUTE_QUEUE_FULL
        return ROUTE_QUEUED

    def take_pending(self) -> list:
        """The queued events, in order, for :meth:`route` again (the queue empties)."""
        pending = self.pending
        if pending:
            self.pending = []
            self.pending_bytes = 0
        return pending

    def drain(self) -> None:
        """Graceful shutdown: the current response, if any, is the connection's
        last (its head says ``connection: close``)."""
        self.draining = True
        self.keep_alive = False
        self._last_at = -1

    @property
    def close_after_response(self) -> bool:
        """True when the connection closes once the current response is done."""
        return not self.keep_alive or self.draining

    def finish_response(self) -> int:
        """The current response is complete: count it and say what follows.

        ``FINISH_CLOSE``: the connection closes. ``FINISH_DISCARD``: the app
        left the request body unread, and the connection may be kept by
        :meth:`discard_body`. ``FINISH_NEXT``: the exchange is over and the
        core has started the next cycle itself (as :meth:`response_done`):
        :meth:`take_pending` gives the events that waited.
        """
        self.requests_served += 1
        if not self.keep_alive:
            # Also after the request limit and a drain: both turned keep-alive
            # off for this response, which never turns it on again.
            return FINISH_CLOSE
        current = self.current
        if current is not None:
            if current.upgrade is None and not self._current_ended:
                return FINISH_DISCARD
            self._finished_stream = current.stream_id
            self.current = None
        # response_done, inlined (once per request on a kept connection).
        self._answered += 1
        self._trailers = False
        self.response_started = False
        self.response_complete = False
        self.bytes_sent = 0
        self.status = 0
        self._mode = _NONE
        self._pending_head = b""
        return FINISH_NEXT

    def discard_body(self, dropped: int | None) -> bool:
        """After ``FINISH_DISCARD``: read and drop the rest of the body, up to
        ``limit_receive_buffer_bytes`` with the ``dropped`` bytes the app had
        queued (RFC 9112 §9.3), so the connection is kept. False when it must
        close instead: past the bound, or ``dropped`` None (the client waits
        for ``100 Continue`` and may never send the body, RFC 9110 §10.1.1)."""
        if dropped is None:
            return False
        left = self._config.limit_receive_buffer_bytes - dropped
        if left < 0:
            return False
        self._discard_left = left
        return True

    # -- sending ------------------------------------------------------------

    def send(self, event: object) -> bytes:
        """The bytes of one outgoing event of :mod:`~twisted_asgi.events` for
        the current request (``stream_id`` 0, or the current one's):
        :class:`Response` (held back until the first body bytes, returns
        ``b""``), :class:`Body`, :class:`Trailers`, :class:`EarlyHint`, and
        :class:`ErrorResponse` (a whole response that closes the connection).
        The shell uses the specialised methods below (:meth:`send_body_pieces`
        frames without copying); this is the same code, by one entry.

        :raises AppError: as :meth:`send_body`.
        """
        kind = type(event)
        if kind is ErrorResponse:
            self.keep_alive = False
            self.response_started = self.response_complete = True
            self._pending_head = b""
            self.status = event.status  # type: ignore[attr-defined]
            return error_response(event.status, event.reason, self._config.server_name)  # type: ignore[attr-defined]
        request = self.current
        stream_id = event.stream_id  # type: ignore[attr-defined]
        if request is None or (stream_id and stream_id != request.stream_id):
            raise ValueError(f"no request {stream_id or ''} is being answered")
        if kind is Body:
            return self.send_body(event.data, event.more, self._trailers)  # type: ignore[attr-defined]
        if kind is Response:
            self.start_response(request, event.status, event.headers)  # type: ignore[attr-defined]
            self._trailers = event.trailers  # type: ignore[attr-defined]
            return b""
        if kind is Trailers:
            return self.send_trailers(event.headers)  # type: ignore[attr-defined]
        if kind is EarlyHint:
            return self.early_hint(request, event.headers)  # type: ignore[attr-defined]
        raise TypeError(f"HTTP11Connection.send() cannot send {event!r}")

    def start_response(self, request: Request, status: int, headers: Headers) -> None:
        """Prepare the head of the response to ``request``.

        ``headers`` were validated by the cycle. The head is held back and sent
        with the first body bytes, so an app that fails before its first body
        message can still get a clean 500 instead.
        """
        keep_alive = self.keep_alive and request.keep_alive
        content_length: bytes | None = None
        out: list[bytes] = [_STATUS_LINES.get(status) or status_line(status)]
        have_server = have_date = False
        for name, value in headers:
            # One dict lookup tells an ordinary field from the five the server looks at.
            special = _RESPONSE_FIELDS.get(name.lower())
            if special is None:
                out += (name, b": ", value, b"\r\n")
            elif special == _F_CONTENT_LENGTH:
                content_length = value.strip()
            elif special == _F_CONNECTION:
                if value.lower().find(b"close") >= 0:  # not `in`: see _HASH
                    keep_alive = False
            elif special == _F_SERVER:
                have_server = True
                out += (name, b": ", value, b"\r\n")
            elif special == _F_DATE:
                have_date = True
                out += (name, b": ", value, b"\r\n")
            # else Transfer-Encoding: ASGI says the server owns it and ignores the app's.
        if not have_server and self._server_line:
            out.append(self._server_line)
        if not have_date and self._send_date:
            # http_date(), inlined (once per response: a call less).
            now = int(_time())
            if now != _date_cache[0]:
                _date_cache[0] = now
                _date_cache[1] = imf_fixdate(now).encode("ascii")
            out += (b"date: ", _date_cache[1], b"\r\n")
        if status in _NO_BODY_STATUSES or request.method == b"HEAD":
            mode = _NONE
            if content_length is not None and status != 204:
                out += (b"content-length: ", content_length, b"\r\n")
        elif content_length is not None:
            if not content_length.isdigit():
                raise AppError(f"invalid Content-Length header {content_length!r}")
            mode = _LENGTH
            self._remaining = int(content_length)
            out += (b"content-length: ", content_length, b"\r\n")
        elif request.http_version == "1.1":
            mode = _CHUNKED
            out.append(b"transfer-encoding: chunked\r\n")
        else:
            mode = _CLOSE
            keep_alive = False
        if not keep_alive:
            out.append(b"connection: close\r\n")
        elif request.http_version == "1.0":
            out.append(b"connection: keep-alive\r\n")
        out.append(b"\r\n")
        self._mode = mode
        self.keep_alive = keep_alive
        self._pending_head = b"".join(out)
        self.response_started = True
        self.status = status

    def early_hint(self, request: Request, headers: Headers) -> bytes:
        """The bytes of a ``103 Early Hints`` response to ``request`` (RFC 8297),
        or ``b""`` when none may be sent: the final head is prepared already, or
        the request is HTTP/1.0, whose clients predate 1xx responses (RFC 9110
        §15.2: a server must not send them one). ``headers`` were validated by
        the cycle."""
        if self.response_started or request.http_version != "1.1":
            return b""
        out = [_EARLY_HINTS]
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        out.append(b"\r\n")
        return b"".join(out)

    @property
    def head_on_wire(self) -> bool:
        """True once the response head has been handed out as bytes."""
        return self.response_started and not self._pending_head

    def send_body(self, data: bytes, more: bool, trailers: bool = False) -> bytes:
        """Bytes for a body chunk (with the held-back head before the first one).

        :raises AppError: the body overruns or falls short of the app's own
            Content-Length; the connection must then be closed.
        """
        mode = self._mode
        head = self._pending_head
        if head:
            self._pending_head = b""
        n = len(data)
        if mode == _CHUNKED:
            if n:
                out = b"%s%x\r\n%s\r\n" % (head, n, data)
            else:
                out = head
            if not more and not trailers:
                out += b"0\r\n\r\n"
        elif mode == _LENGTH:
            if n > self._remaining:
                self._remaining = 0
                self.keep_alive = False
                raise AppError("Response content longer than Content-Length")
            self._remaining -= n
            if not more and self._remaining:
                self.keep_alive = False
                raise AppError("Response content shorter than Content-Length")
            out = head + data if head else data
        elif mode == _CLOSE:
            out = head + data if head else data
        else:
            n = 0
            out = head
        self.bytes_sent += n
        if not more and not trailers:
            self.response_complete = True
        return out

    def send_body_pieces(self, data: bytes, more: bool, trailers: bool = False) -> list[bytes]:
        """:meth:`send_body`'s bytes as pieces for one gathering write: a large
        chunk is framed without being copied."""
        n = len(data)
        if self._mode == _CHUNKED and n >= _FRAME_WITHOUT_COPY:
            head = self._pending_head
            self._pending_head = b""
            self.bytes_sent += n
            if more or trailers:
                return [b"%s%x\r\n" % (head, n), data, b"\r\n"]
            self.response_complete = True
            return [b"%s%x\r\n" % (head, n), data, b"\r\n0\r\n\r\n"]
        out = self.send_body(data, more, trailers)
        return [out] if out else []

    def send_file_frame(self, n: int, more: bool, trailers: bool = False) -> tuple[bytes, int, bytes]:
        """The framing of ``n`` body bytes the caller sends itself (from a
        file): the bytes before them (the held-back head, a chunk size line),
        how many of them go out (0 for a response without a body, e.g. HEAD),
        and the bytes after them (CRLF, the last chunk). Checked and counted
        as :meth:`send_body` checks and counts a chunk.

        :raises AppError: as :meth:`send_body`.
        """
        if self._mode == _CHUNKED and n:
            head = self._pending_head
            self._pending_head = b""
            self.bytes_sent += n
            if not more and not trailers:
                self.response_complete = True
                return b"%s%x\r\n" % (head, n), n, b"\r\n0\r\n\r\n"
            return b"%s%x\r\n" % (head, n), n, b"\r\n"
        sent = self.bytes_sent
        before = self.send_body(b"", True)  # the head (and the length check's state)
        if self._mode == _NONE:
            n = 0
        elif self._mode == _LENGTH:
            if n > self._remaining:
                self._remaining = 0
                self.keep_alive = False
                raise AppError("Response content longer than Content-Length")
            self._remaining -= n
        self.bytes_sent = sent + n
        after = b"" if more else self.send_body(b"", False, trailers)
        return before, n, after

    def send_trailers(self, headers: Headers) -> bytes:
        """Bytes that end a chunked body with ``headers`` as trailer fields.

        Trailers need chunked framing; with any other framing they are dropped.
        """
        self.response_complete = True
        if self._mode != _CHUNKED:
            return self._pending_head
        head = self._pending_head
        self._pending_head = b""
        parts = [head, b"0\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def response_done(self) -> None:
        """The exchange is over: reset the response side for the next
        pipelined request, which :meth:`take_pending` and :meth:`route` start.
        (:meth:`finish_response` and :meth:`route` do this themselves when
        they answer ``FINISH_NEXT`` or ``ROUTE_NEXT``.)"""
        self._answered += 1
        current = self.current
        if current is not None:
            self._finished_stream = current.stream_id
            self.current = None
        self._discard_left = None
        self._trailers = False
        self.response_started = False
        self.response_complete = False
        self.bytes_sent = 0
        self.status = 0
        self._mode = _NONE
        self._pending_head = b""


_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _h2c_offer(request: Request) -> bool:
    """Whether ``request`` offers h2c exactly as RFC 7540 §3.2 and §3.2.1 say:
    no body, exactly one ``HTTP2-Settings`` header, and ``Connection`` listing
    both ``Upgrade`` and ``HTTP2-Settings`` (a proxy that forwards the offer
    without naming HTTP2-Settings as hop-by-hop, as nginx set up for WebSocket
    does, is not switched)."""
    if request.has_body or request.http_version != "1.1":
        return False
    settings: list[bytes] = []
    tokens: set[bytes] = set()
    for name, value in request.headers:
        if name == b"http2-settings":
            settings.append(value)
        elif name == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    if len(settings) != 1 or b"upgrade" not in tokens or b"http2-settings" not in tokens:
        return False
    # The value is a SETTINGS payload in base64url without padding (RFC 7540
    # §3.2.1): whole 6-byte settings, nothing else.
    value = settings[0].strip()
    if value.strip(_BASE64URL):
        return False
    try:
        payload = base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        return False
    return len(payload) % 6 == 0


def _split_target(target: bytes, method: bytes) -> tuple[bytes, bytes]:
    """Split a request target into raw path and query (RFC 9112 §3.2)."""
    if _HASH in target:
        # No form of request-target has a fragment (RFC 9112 §3.2); an invalid
        # request line gets a 400 (RFC 9112 §3), wherever the '#' is.
        raise ProtocolError("fragment in request target")
    if target[:1] == b"/":
        path, _sep, query = target.partition(b"?")
    elif target == b"*" and method == b"OPTIONS":
        return b"*", b""
    else:
        # absolute-form: take path and query, the authority is in Host anyway
        try:
            url = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            raise ProtocolError("invalid request target") from None
        if url.schema not in (b"http", b"https"):
            raise ProtocolError("invalid request target")
        path = url.path or b"/"
        query = url.query or b""
    return path, query


def body_size(response: bytes) -> int:
    """The body bytes of a whole response (what the access log counts)."""
    return len(response) - response.index(b"\r\n\r\n") - 4


def error_response(status: int, reason: str, server_name: str | None) -> bytes:
    """A complete plain-text error response that closes the connection."""
    body = f"{status} {HTTPStatus(status).phrase}: {reason}\n".encode()
    parts = [status_line(status)]
    if server_name:
        parts += (b"server: ", server_name.encode("latin-1"), b"\r\n")
    parts += (
        b"date: ",
        http_date(),
        b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body),
        body,
    )
    return b"".join(parts)
