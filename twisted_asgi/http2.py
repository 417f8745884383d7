"""Sans-IO HTTP/2 server connection over the h2 library (RFC 9113).

Bytes in (:meth:`HTTP2Connection.receive_data`) give the neutral events of
:mod:`~twisted_asgi.events` (:class:`Request` with ``http_version="2"``,
:class:`Data`, :class:`EndOfMessage`, :class:`StreamReset`) plus four of this
module (:class:`WriteReady`, :class:`StreamComplete`, :class:`MalformedStream`,
:class:`ConnectionClosed`); response events in give bytes out
(:meth:`HTTP2Connection.send`, the same entry as
:class:`~twisted_asgi.http11.HTTP11Connection`'s, over the specialised
``send_*`` methods, and :meth:`data_to_send`). Nothing here reads a
socket, starts a timer or runs an app; :mod:`twisted_asgi.h2channel` does that.

What this module adds to h2:

* request validation of its own (h2's ``validate_inbound_headers`` is off), so a
  malformed request is a *stream* error (RST_STREAM PROTOCOL_ERROR, RFC 9113
  §8.1.1) and not the end of every other stream on the connection; the same for
  a body that does not match its ``content-length``;
* per-stream flow control both ways: received DATA is acknowledged only when the
  shell says the app took it (:meth:`consumed`); response bytes wait in a
  per-stream queue for the stream's window, and streams take turns;
* abuse budgets from :class:`~twisted_asgi.config.Config`, each ending in GOAWAY
  ENHANCE_YOUR_CALM: stream resets the client causes, its own or ours
  (CVE-2023-44487 rapid reset, CVE-2025-8671 MadeYouReset); frames that do no
  work (PING, SETTINGS, PRIORITY, WINDOW_UPDATE, empty DATA and CONTINUATION,
  unknown types; CVE-2019-9512/9515/9518); header blocks larger than the header-list limit,
  counted frame by frame before h2 buffers them (CVE-2024-27316), and HPACK
  bombs (the decoder's own limit);
* a graceful GOAWAY that lets open streams finish (h2 itself can send nothing
  after its GOAWAY).

h2's connection comes from :mod:`twisted_asgi._upstream.h2`, which holds every
private name of h2 this relies on (the stream-error overrides, the send seam);
where an h2 release lacks one, its public-API connection runs instead and the
checks above that h2 would otherwise pre-empt are made here before h2 reads
each frame (:meth:`HTTP2Connection._feed_checked`).

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h2.events
import h2.exceptions
import hpack
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame, SettingsFrame

from ._upstream import h2 as upstream_h2
from .config import Config
from .events import (
    AppError,
    Body,
    Data,
    EarlyHint,
    EndOfMessage,
    ErrorResponse,
    Headers,
    Request,
    Response,
    StreamReset,
    Trailers,
)
from .fieldrules import REQUEST_VALUE_MARKS, is_lower_token, is_token, target_ok
from .hpack_codec import FieldDecoder, StaticEncoder
from .http11 import http_date

__all__ = [
    "ENHANCE_YOUR_CALM",
    "PREFACE",
    "ConnectionClosed",
    "HTTP2Connection",
    "LimitHit",
    "MalformedStream",
    "StreamComplete",
    "WriteReady",
    "decode_settings",
]

#: The client connection preface (RFC 9113 §3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: The GOAWAY code of a budget that ran out (RFC 9113 §7).
ENHANCE_YOUR_CALM = int(ErrorCodes.ENHANCE_YOUR_CALM)

_MAX_WINDOW = 2**31 - 1  # RFC 9113 §6.9.1
#: Response bytes framed ahead of the transport at most: past this, body bytes
#: wait in their stream's queue (the app's own buffers, not copies) and the
#: app's send() waits. 64 KiB is Twisted's write buffer high-water mark, the
#: bound HTTP/1.1 output has (limit_receive_buffer_bytes says the same of input).
OUTPUT_AHEAD = 65536

# RFC 9113 §8.2.1: field names are lowercase tokens; values hold no byte the
# shared rules forbid (twisted_asgi.fieldrules: the control bytes but HTAB, DEL,
# and NEL, exactly what HTTP/1.1 refuses) and no whitespace at either end.
_SP_HT = (0x20, 0x09)
# Field names already found valid: clients send the same few on every request.
# Bounded in count and name length, so names a client makes up cannot grow it
# without end.
_GOOD_NAMES: set[bytes] = set()
_GOOD_NAMES_MAX = 512
_GOOD_NAME_BYTES = 64
_COMMON_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE"})
# RFC 9113 §8.2.2: connection-specific fields make a request malformed.
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority"})
# RFC 8441 §4: ":protocol", in an extended CONNECT, once we sent SETTINGS_ENABLE_CONNECT_PROTOCOL.
_EXTENDED_PSEUDO = _REQUEST_PSEUDO | {b":protocol"}
_NO_BODY_STATUSES = frozenset({204, 304})
#: Request heads already parsed (a client repeats its head from request to
#: request), kept per connection as HPACK keeps its dynamic table (RFC 7541
#: §7.1): a head carries the client's Cookie and Authorization, and a memo
#: shared by every connection would tell one client, by its timing, whether
#: another sent the same head, and keep those credentials after their
#: connection closed. Bounded in count and in the header-list size of a head
#: (the fields are the client's): at most 16 heads of 2 KiB a connection,
#: less than one stream may hold (limit_h2_header_list_bytes).
_PARSED_MAX = 16
_PARSED_BYTES = 2048
#: Response heads already prepared by :meth:`HTTP2Connection._head` (an app
#: answers with the same few heads), kept per connection: the fields to send,
#: less the date. Keyed by the status, whether the request was HEAD and the
#: app's fields (the rest that decides the result, the server name and the
#: date, is the connection's Config). Per connection, not per process: a head
#: may carry a Set-Cookie, and one shared by every connection would let one
#: client's timing tell what another was answered, and keep it after that
#: connection closed. Bounded in count, in fields a head and in its bytes (an
#: app may echo what a client sent): at most 16 heads of 2 KiB a connection.
_Head = tuple[tuple[tuple[bytes, bytes], ...], bool, bool, int | None]
_HEADS_MAX = 16
_HEADS_FIELDS = 16
_HEADS_BYTES = 2048

# Frame types (RFC 9113 §6) and flags, for the frame-header scan.
_DATA, _HEADERS, _PRIORITY, _SETTINGS, _PING, _WINDOW_UPDATE, _CONTINUATION = 0x0, 0x1, 0x2, 0x4, 0x6, 0x8, 0x9
_KNOWN_TYPES = frozenset(range(0x0, 0xA))
_GOAWAY = 0x7

_REQUEST_RECEIVED = h2.events.RequestReceived
_STREAM_ENDED = h2.events.StreamEnded

_H2_INPUT = re.compile(r"Invalid input (?:ConnectionInputs|StreamInputs)\.(?:RECV|SEND)_(\w+) in state (\S+)")


def describe_protocol_error(exc: Exception) -> str:
    """What the client did, for the log, from an h2 ``ProtocolError``: in the
    terms of RFC 9113, not h2's state machine (``RECV_PING in state CLOSED``)."""
    text = str(exc)
    match = _H2_INPUT.search(text)
    if match is not None:
        frame = match.group(1).replace("_", " ")
        if frame in ("HEADERS", "PUSH PROMISE", "CONTINUATION", "DATA", "WINDOW UPDATE", "RST STREAM", "PRIORITY"):
            frame = frame.replace(" ", "_")
        closed = match.group(2).endswith("CLOSED")
        return f"the client sent a {frame} frame where RFC 9113 allows none" + (" (after the end)" if closed else "")
    stream_id = getattr(exc, "stream_id", None)
    if isinstance(exc, h2.exceptions.StreamClosedError):
        return f"the client sent a frame on stream {stream_id} after that stream was closed"
    if isinstance(exc, h2.exceptions.NoSuchStreamError):
        return f"the client sent a frame on stream {stream_id}, which it never opened"
    kinds = (
        (h2.exceptions.FrameTooLargeError, "the client sent a frame larger than SETTINGS_MAX_FRAME_SIZE"),
        (h2.exceptions.FlowControlError, "the client sent more data than its flow-control window allowed"),
        (h2.exceptions.FrameDataMissingError, "the client sent a frame too short for its type"),
        (h2.exceptions.TooManyStreamsError, "the client opened more streams than SETTINGS_MAX_CONCURRENT_STREAMS"),
        (h2.exceptions.StreamIDTooLowError, "the client reused a stream id lower than one it had used"),
        (h2.exceptions.InvalidSettingsValueError, "the client sent a SETTINGS value outside its range"),
        (h2.exceptions.DenialOfServiceError, "the client sent too many frames of one kind"),
    )
    for kind, description in kinds:
        if isinstance(exc, kind):
            return description
    if isinstance(exc.__cause__, hpack.HPACKError):
        return "the client sent a header block that does not decode (HPACK)"
    if not text or text.isdigit():
        return "the client broke the HTTP/2 framing rules"
    if text.startswith("Received frame with invalid header: "):
        detail = text.split(": ", 1)[1]
        return f"the client sent a frame header RFC 9113 forbids ({detail[:1].lower()}{detail[1:]})"
    if text == "Received frame with non-compliant data":
        return "the client sent a frame whose payload does not fit its type (RFC 9113 §6)"
    return f"the client broke the HTTP/2 rules: {text}"


def error_code_name(code: int) -> str:
    """``PROTOCOL_ERROR`` for 1 (RFC 9113 §7), the number for codes it does not name."""
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20


# -- events of this module -------------------------------------------------------------


@dataclass(slots=True)
class WriteReady:
    """Everything the app sent on the stream has gone to the wire: its
    ``send()`` may go on."""

    stream_id: int


@dataclass(slots=True)
class StreamComplete:
    """The response on the stream is complete (END_STREAM sent), for the access log."""

    stream_id: int
    status: int
    bytes_sent: int
    request: Request | None


@dataclass(slots=True)
class MalformedStream:
    """The client sent a malformed request; the stream has been reset (for the log)."""

    stream_id: int
    reason: str


@dataclass(slots=True)
class ConnectionClosed:
    """The connection is over (GOAWAY sent or received): write what is left, close."""

    error_code: int
    reason: str


@dataclass(slots=True)
class LimitHit:
    """A limit or budget refused something of the client's (for the metrics):
    ``name`` is the :class:`~twisted_asgi.config.Config` field."""

    name: str


#: h2's own errors that are a limit running out: two of our settings, and
#: h2's fixed cap of 64 CONTINUATION frames a header block (no setting).
_H2_LIMITS = {
    h2.exceptions.FrameTooLargeError: "limit_h2_frame_bytes",
    h2.exceptions.DenialOfServiceError: "limit_h2_header_list_bytes",
    "Too many continuation frames received.": "h2_continuation_frames",
}


def decode_settings(value: bytes) -> bytes:
    """The SETTINGS payload in an ``HTTP2-Settings`` header (RFC 7540 §3.2.1:
    base64url, padding optional).

    :raises ValueError: it is not base64url or not whole settings.
    """
    value = value.strip()
    try:
        payload = base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("HTTP2-Settings is not base64url") from None
    if len(payload) % 6:
        raise ValueError("HTTP2-Settings is not a list of settings")
    frame = SettingsFrame(0)
    frame.parse_body(memoryview(payload))
    for code, setting in frame.settings.items():
        if (
            (code == SettingCodes.ENABLE_PUSH and setting > 1)
            or (code == SettingCodes.INITIAL_WINDOW_SIZE and setting > _MAX_WINDOW)
            or (code == SettingCodes.MAX_FRAME_SIZE and not 16384 <= setting <= 2**24 - 1)
        ):
            raise ValueError("HTTP2-Settings holds a value out of range")  # RFC 9113 §6.5.2
    return payload


class _Stream:
    """One stream's state on our side."""

    __slots__ = (
        "request",
        "received",
        "expected",
        "unacked",
        "head",
        "no_body",
        "remaining",
        "outbound",
        "queued",
        "end",
        "trailers",
        "done",
        "status",
        "bytes_sent",
        "request_complete",
        "answered",
        "tunnel",
        "fed",
    )

    def __init__(self) -> None:
        self.request: Request | None = None
        self.received = 0
        self.expected: int | None = None
        #: Flow-controlled bytes received and not yet acknowledged.
        self.unacked = 0
        self.head: Headers | None = None
        self.no_body = False
        self.remaining: int | None = None
        self.outbound: deque[memoryview] = deque()
        self.queued = 0
        self.end = False
        self.trailers: Headers | None = None
        self.done = False
        self.status = 0
        self.bytes_sent = 0
        self.request_complete = False
        #: We answered the stream ourselves; the app has no (more) part in it.
        self.answered = False
        #: An extended CONNECT (RFC 8441): its DATA is a byte stream both
        #: ways, not a request body (no body limit, no content-length).
        self.tunnel = False
        #: Body bytes of DATA frames checked and handed to h2 (the public path).
        self.fed = 0


class HTTP2Connection:
    """One HTTP/2 server connection, without I/O.

    :param config: the SETTINGS, limits and budgets.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        window = config.limit_h2_stream_window_bytes
        settings = {
            SettingCodes.MAX_CONCURRENT_STREAMS: config.limit_concurrent_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: window,
            SettingCodes.MAX_FRAME_SIZE: config.limit_h2_frame_bytes,
            SettingCodes.MAX_HEADER_LIST_SIZE: config.limit_h2_header_list_bytes,
        }
        #: RFC 8441: WebSocket over HTTP/2 streams (extended CONNECT) is offered.
        self.extended_connect = config.ws_over_h2 and config.websocket
        if self.extended_connect:
            settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        # h2's connection (twisted_asgi._upstream.h2): the fast one, with our
        # HPACK coder (see hpack_codec) and these SETTINGS from the start, or
        # where it cannot run the public one. The decoder stops at twice the
        # advertised list size: between the two the stream gets 431, beyond it
        # the block is a bomb and the connection ends.
        self.h2 = upstream_h2.new_connection(
            settings, 2 * config.limit_h2_header_list_bytes, StaticEncoder(), FieldDecoder()
        )
        #: h2 checks a body against its content-length itself (the public
        #: path): each DATA frame is checked here first, so that a mismatch
        #: stays a stream error (see _feed_checked).
        self._check_bodies = not self.h2.fast
        self._chk_held: bytes | bytearray = b""
        self._chk_skip = len(PREFACE)
        self.streams: dict[int, _Stream] = {}
        #: Streams with response bytes waiting for flow-control window, in turn order.
        self._sending: dict[int, _Stream] = {}
        self._extra = b""
        #: The shell's transport is full (it paused us): frame no body bytes.
        self.output_paused = False
        #: The last flush stopped at OUTPUT_AHEAD (or a pause) with body bytes
        #: still queued: flush again once the output has been written.
        self.output_held = False
        self._events: list[Any] = []
        #: Streams whose Response (given to send()) announced trailers.
        self._trailers_wanted: set[int] = set()
        #: Stream ids above this are refused (after our graceful GOAWAY).
        self.last_stream_id: int | None = None
        self.closed = False
        # Budgets (see the module docstring); None: no limit.
        self._resets = config.limit_h2_resets or None
        self._overhead = config.limit_h2_control_frames or None
        # Frame-header scan state.
        self._preface_left = len(PREFACE)
        self._header = b""
        self._skip = 0
        #: The client's GOAWAY was seen: nothing after it is read.
        self._goaway_seen = False
        self._block: int | None = None  # compressed bytes of the header block being received
        self._highest_seen = 0
        self._block_cap = 2 * config.limit_h2_header_list_bytes
        #: Request heads parsed and response heads prepared on this connection
        #: (see _PARSED_MAX, _HEADS_MAX), each made when first needed.
        self._parsed: dict[tuple[Any, ...], _Parsed] | None = None
        self._heads: dict[tuple[Any, ...], _Head] | None = None

    # -- starting ------------------------------------------------------------------------

    def initiate(self) -> None:
        """Queue the server connection preface (our SETTINGS) and open the
        connection window to one stream window per allowed stream, so that no
        stream waits for another's unread body (RFC 9113 §6.9)."""
        self.h2.start()
        self._open_connection_window()

    def initiate_upgrade(self, settings: bytes, request: Request) -> list[Any]:
        """Start HTTP/2 after ``101 Switching Protocols`` (RFC 7540 §3.2): the
        client's ``HTTP2-Settings`` apply, and ``request`` is stream 1,
        complete. Returns its events."""
        self.h2.start_upgrade(base64.urlsafe_b64encode(settings))
        self._open_connection_window()
        stream = self.streams[1] = _Stream()
        stream.request = request
        stream.request_complete = True
        self._highest_seen = 1
        request.stream_id = 1
        # Its response goes out over HTTP/2, and the app answers it as such;
        # its "Upgrade: h2c" is done (an upgrade on a stream is RFC 8441's).
        request.http_version = "2"
        request.upgrade = None
        return [request, EndOfMessage(1)]

    def _open_connection_window(self) -> None:
        target = min(_MAX_WINDOW, self.config.limit_h2_stream_window_bytes * self.config.limit_concurrent_streams)
        increment = target - self.h2.inbound_flow_control_window
        if increment > 0:
            self.h2.increment_flow_control_window(increment)

    # -- receiving -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Any]:
        """Process bytes from the client; return the events they make."""
        if self.closed:
            return []
        events = self._events = []
        cut, stop = self._scan(data)
        if cut is not None:
            data = data[:cut]
        if self._check_bodies:
            self._feed_checked(data)
        elif data:
            self._feed(data)
        if stop is not None and not self.closed:
            self._end(*stop)
        if not self.closed:
            self._flush()
        return events

    def _feed(self, data: bytes | bytearray) -> None:
        """Hand ``data`` to h2 and turn its events into ours."""
        events = self._events
        try:
            h2_events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued its GOAWAY; what came before the error still counts.
            self.closed = True
            code = int(getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR) or ErrorCodes.PROTOCOL_ERROR)
            if (
                self._check_bodies
                and type(exc) is h2.exceptions.ProtocolError
                and isinstance(exc.__cause__, hpack.HPACKError)
                and self.h2.recode_goaway(ErrorCodes.COMPRESSION_ERROR)
            ):
                # RFC 9113 §4.3, as the fast connection reports it (h2 says PROTOCOL_ERROR).
                code = int(ErrorCodes.COMPRESSION_ERROR)
            limit = _H2_LIMITS.get(type(exc)) or _H2_LIMITS.get(str(exc))
            if limit is not None:
                events.append(LimitHit(limit))
            events.append(ConnectionClosed(code, describe_protocol_error(exc)))
            return
        resets = {e.stream_id for e in h2_events if type(e) is h2.events.StreamReset}
        self_dependent = self.h2.self_dependent
        if self_dependent:
            resets.update(self_dependent)
        on_event = self._on_h2_event
        streams = self.streams
        try:
            for event in h2_events:
                if self.closed:
                    break
                kind = type(event)
                if kind is _REQUEST_RECEIVED:  # (_on_h2_event's own cases, the two of every request)
                    self._on_request(event, event.stream_id in resets)
                    continue
                if kind is _STREAM_ENDED:
                    stream = streams.get(event.stream_id)
                    if stream is None or stream.request_complete:
                        continue  # (nothing to do: a request without a body was complete at once)
                on_event(event, resets)
        except h2.exceptions.ProtocolError:
            # The client's GOAWAY came in this read after a stream we answer
            # ourselves (a malformed request's RST_STREAM, REFUSED_STREAM, an
            # error response): h2 closed the connection on reading the GOAWAY
            # and sends nothing more. The GOAWAY ends the connection anyway.
            terminated = [e for e in h2_events if type(e) is h2.events.ConnectionTerminated]
            if not terminated:
                raise
            self.closed = True
            events.append(ConnectionClosed(int(terminated[0].error_code or 0), "client sent GOAWAY"))
            return
        if self_dependent:
            # h2 has sent RST_STREAM PROTOCOL_ERROR (on the public path, we
            # send it once h2 has opened the stream); the client caused it.
            later = []
            for stream_id in self_dependent:
                if self._check_bodies:
                    if stream_id > self.h2.highest_inbound_stream_id:
                        later.append(stream_id)  # its header block is not whole yet
                        continue
                    self._reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
                self._stream_gone(stream_id)
                self._charge_reset()
            self_dependent[:] = later

    def _feed_checked(self, data: bytes) -> None:
        """:meth:`_feed` on the public path, where h2 makes a body that does
        not match its content-length a connection error: each DATA frame of a
        request with a content-length is checked before h2 reads it (h2 reads
        a frame once it is whole), the stream reset if it does not add up
        (RFC 9113 §8.1.1: a stream error), and only then the frame handed on
        (h2 answers DATA on a reset stream itself). The frames before it go to
        h2 first, so that their events (the request's content-length) count.
        A frame header, and a padded DATA frame's pad length, split across
        reads are held back until whole (at most 9 bytes)."""
        buf: bytes | bytearray = self._chk_held + data if self._chk_held else data
        self._chk_held = b""
        n = len(buf)
        i = start = 0
        while i < n and not self.closed:
            if self._chk_skip:
                step = min(self._chk_skip, n - i)
                self._chk_skip -= step
                i += step
                continue
            if n - i < 9:
                self._chk_held = buf[i:]
                n = i
                break
            length = int.from_bytes(buf[i : i + 3], "big")
            kind, flags = buf[i + 3], buf[i + 4]
            if kind == _DATA:
                padded = flags & _PADDED and length
                if padded and n - i < 10:
                    self._chk_held = buf[i:]
                    n = i
                    break
                if i > start:
                    self._feed(buf[start:i])
                    start = i
                    if self.closed:
                        return
                stream_id = int.from_bytes(buf[i + 5 : i + 9], "big") & _MAX_WINDOW
                self._check_body(stream_id, length - (buf[i + 9] + 1 if padded else 0), flags & _END_STREAM)
            elif kind == _PRIORITY or (kind == _HEADERS and flags & _PRIORITY_FLAG):
                # The stream dependency (RFC 9113 §6.3, §6.2), after a HEADERS
                # frame's pad length.
                at = i + 9 + (1 if kind == _HEADERS and flags & _PADDED else 0)
                if length >= at - i - 4:  # (shorter: h2 refuses the frame's size)
                    if n < at + 4:
                        self._chk_held = buf[i:]
                        n = i
                        break
                    stream_id = int.from_bytes(buf[i + 5 : i + 9], "big") & _MAX_WINDOW
                    if int.from_bytes(buf[at : at + 4], "big") & _MAX_WINDOW == stream_id:
                        if i > start:
                            self._feed(buf[start:i])
                            start = i
                            if self.closed:
                                return
                        if not isinstance(buf, bytearray):
                            buf = bytearray(buf)
                        self._self_dependent(kind, stream_id, buf, at)
            self._chk_skip = length
            i += 9
        if n > start and not self.closed:
            self._feed(buf[start:n])

    def _self_dependent(self, kind: int, stream_id: int, buf: bytearray, at: int) -> None:
        """A PRIORITY or HEADERS frame (at ``at`` in ``buf``, its dependency)
        makes ``stream_id`` depend on itself, about to reach h2 (the public
        path), which would end the connection: a stream error PROTOCOL_ERROR
        (RFC 9113 §5.3.1) for an open or new stream, as on the fast path; the
        dependency is made 0 so that h2 takes the rest of the frame. On an
        idle or closed stream h2's connection error stands (RFC 9113 §6.4
        forbids RST_STREAM on an idle one)."""
        if kind == _PRIORITY:
            if stream_id not in self.streams:
                return
            self._reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
            self._stream_gone(stream_id)
            self._charge_reset()
        elif stream_id in self.streams or stream_id > self.h2.highest_inbound_stream_id:
            self.h2.self_dependent.append(stream_id)  # reset by _feed once h2 has opened it
        else:
            return
        buf[at] &= 0x80
        buf[at + 1 : at + 4] = bytes(3)

    def _check_body(self, stream_id: int, size: int, end: int) -> None:
        """A DATA frame of ``size`` body bytes (``end``: with END_STREAM) is
        about to reach h2 (the public path): reset the stream if its request
        declared a content-length the body no longer matches."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.request is None or stream.request_complete or size < 0:
            return  # (a negative size: padding h2 refuses, a connection error, RFC 9113 §6.1)
        expected = stream.request.content_length
        if expected is None:
            return
        stream.fed += size
        if stream.fed > expected:
            self._malformed(stream_id, "body longer than content-length")
        elif end and stream.fed != expected:
            self._malformed(stream_id, "body shorter than content-length")

    def _scan(self, data: bytes) -> tuple[int | None, tuple[int, str] | None]:
        """Walk the frame headers in ``data`` before h2 sees the frames, and
        charge the budgets. Returns where to cut ``data`` (the start of the
        frame that ran a budget out) and the GOAWAY code and reason, or
        ``(None, None)``."""
        i, n = 0, len(data)
        if self._goaway_seen and not self._skip:
            return 0, None
        while i < n:
            if self._preface_left:
                step = min(self._preface_left, n - i)
                self._preface_left -= step
                i += step
                continue
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                if self._goaway_seen and not self._skip:
                    return i, None  # what follows the client's GOAWAY is not read
                continue
            need = 9 - len(self._header)
            start = i - len(self._header)
            self._header += data[i : i + need]
            i += min(need, n - i)
            if len(self._header) < 9:
                break
            header, self._header = self._header, b""
            length = int.from_bytes(header[:3], "big")
            kind, flags = header[3], header[4]
            stream_id = int.from_bytes(header[5:9], "big") & _MAX_WINDOW
            if kind == _HEADERS and flags & _END_HEADERS and length and stream_id > self._highest_seen:
                # _charge for a new stream's whole HEADERS frame (once per request): work, refunded.
                self._highest_seen = stream_id
                if self._overhead is not None:
                    self._overhead = min(self._overhead + 1, self.config.limit_h2_control_frames)
            else:
                stop = self._charge(length, kind, flags, stream_id)
                if stop is not None:
                    return max(start, 0), stop
            if kind == _GOAWAY and stream_id == 0:
                # The client ends the connection (RFC 9113 §6.8): frames after
                # its GOAWAY in the same read are not blamed on it (h2 would call
                # a PING there a protocol error); the connection closes anyway.
                self._goaway_seen = True
                if not length:
                    return i, None
            self._skip = length
        return None, None

    def _charge(self, length: int, kind: int, flags: int, stream_id: int) -> tuple[int, str] | None:
        """Budget accounting for one frame header; the GOAWAY code and reason
        to stop with, or None."""
        overhead = False
        if kind == _DATA:
            if flags & _END_STREAM == 0 and (length == 0 or (flags & _PADDED and length <= 256)):
                overhead = True  # no data, or only padding (CVE-2019-9518)
            else:
                self._refund()
        elif kind == _HEADERS:
            if stream_id > self._highest_seen:
                self._highest_seen = stream_id
                if self._overhead is not None:  # (_refund(), once per request)
                    self._overhead = min(self._overhead + 1, self.config.limit_h2_control_frames)
            if flags & _END_HEADERS == 0:
                self._block = length
            elif length == 0:
                overhead = True
        elif kind == _CONTINUATION:
            if self._block is not None:
                self._block += length
                if self._block > self._block_cap:
                    self._events.append(LimitHit("limit_h2_header_list_bytes"))
                    return ENHANCE_YOUR_CALM, "header block too large"
                if flags & _END_HEADERS:
                    self._block = None
            overhead = length == 0
        elif kind in (_PING, _SETTINGS):
            overhead = flags & _ACK == 0
            if kind == _SETTINGS and not overhead and length:
                # RFC 9113 §6.5 (hyperframe calls it a PROTOCOL_ERROR).
                return int(ErrorCodes.FRAME_SIZE_ERROR), "SETTINGS ACK with a payload"
        elif kind in (_PRIORITY, _WINDOW_UPDATE) or kind not in _KNOWN_TYPES:
            # A WINDOW_UPDATE is work only when it lets response bytes out:
            # each DATA frame we send earns two back (a stream's and the
            # connection's update), so a reading client never runs short.
            overhead = True
        if overhead and self._overhead is not None:
            self._overhead -= 1
            if self._overhead < 0:
                self._events.append(LimitHit("limit_h2_control_frames"))
                return ENHANCE_YOUR_CALM, "too many frames that do no work"
        return None

    def _refund(self, count: int = 1) -> None:
        if self._overhead is not None:
            self._overhead = min(self._overhead + count, self.config.limit_h2_control_frames)

    def _on_h2_event(self, event: Any, resets: set[int]) -> None:
        kind = type(event)
        events = self._events
        if kind is h2.events.DataReceived:
            self._on_data(event)
        elif kind is h2.events.RequestReceived:
            self._on_request(event, event.stream_id in resets)
        elif kind is h2.events.StreamEnded:
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.request is not None and not stream.request_complete:
                if stream.expected is not None and stream.expected != stream.received and not stream.answered:
                    self._malformed(event.stream_id, "body shorter than content-length")
                    return
                stream.request_complete = True
                if not stream.answered:
                    events.append(EndOfMessage(event.stream_id))
                self._maybe_finish(event.stream_id, stream)
        elif kind is h2.events.StreamReset:
            # The client's RST_STREAM, or h2's own answer to a frame that broke
            # the stream: either way the client caused it (RFC 9113 §5.4.2).
            self._stream_gone(event.stream_id)
            self._charge_reset()
        elif kind is h2.events.TrailersReceived:
            # Request trailers have no place in ASGI, but they are checked as
            # HTTP/1.1 checks them: by the byte rules, and no pseudo-header (RFC 9113 §8.1).
            reason = _trailers_error(event.headers)
            if reason is not None:
                self._malformed(event.stream_id, reason)
        elif kind is h2.events.ConnectionTerminated:
            self.closed = True
            events.append(ConnectionClosed(int(event.error_code or 0), "client sent GOAWAY"))

    def _on_request(self, event: Any, reset_later: bool) -> None:
        stream_id = event.stream_id
        stream = self.streams[stream_id] = _Stream()
        if self.last_stream_id is not None and stream_id > self.last_stream_id:
            # After our GOAWAY (RFC 9113 §6.8): decoded for HPACK's sake, refused.
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM)
            del self.streams[stream_id]
            return
        if len(self.streams) > self.config.limit_concurrent_streams:
            # RFC 9113 §5.1.2: over our SETTINGS_MAX_CONCURRENT_STREAMS. REFUSED_STREAM
            # tells the client no work was done and it may retry (§8.7).
            self._events.append(LimitHit("limit_concurrent_streams"))
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM)
            self.streams.pop(stream_id, None)
            self._charge_reset()
            return
        headers = event.headers
        ended = event.stream_ended is not None
        parsed = self._parsed
        found = parsed.get((*headers, ended)) if parsed is not None else None
        if found is not None:
            # A head seen before on this connection (_parse_request's memo, looked up here: once per request).
            method, path, query, fields, expect, length, upgrade, size = found
            request = Request(stream_id, method, path, query, "2", list(fields), True, expect, None, length, not ended)
            if upgrade is not None:
                request.upgrade = upgrade
        else:
            try:
                request, size = self._parse_request(stream_id, headers, ended)
            except ValueError as exc:
                self._malformed(stream_id, str(exc))
                return
        stream.request = request
        stream.expected = request.content_length
        stream.request_complete = not request.has_body
        if request.upgrade is not None:
            stream.tunnel = True
            stream.expected = None
        if reset_later:
            return  # the client resets it in the same read: no app for it
        config = self.config
        if size > config.limit_h2_header_list_bytes or len(request.headers) > config.limit_request_headers:
            too_big = size > config.limit_h2_header_list_bytes
            self._events.append(LimitHit("limit_h2_header_list_bytes" if too_big else "limit_request_headers"))
            self._answer(stream_id, 431, "request header list too large")
        elif request.upgrade is not None:
            if request.upgrade != b"websocket":
                self._answer(stream_id, 501, "only the websocket protocol is supported by extended CONNECT")
            elif not request.has_body:
                # RFC 8441 §4: the stream carries the protocol's bytes; one
                # the client ended at once has none.
                self._answer(stream_id, 400, "extended CONNECT with END_STREAM")
            else:
                self._events.append(request)
        elif request.method == b"CONNECT":
            self._answer(stream_id, 501, "CONNECT is not supported")
        elif config.limit_request_body_bytes and (request.content_length or 0) > config.limit_request_body_bytes:
            self._events.append(LimitHit("limit_request_body_bytes"))
            self._answer(stream_id, 413, "request body too large")
        else:
            self._events.append(request)
            if not request.has_body:
                self._events.append(EndOfMessage(stream_id))

    def _parse_request(self, stream_id: int, headers: list[tuple[bytes, bytes]], ended: bool) -> tuple[Request, int]:
        """:func:`_parse_head`, remembered on this connection: a head seen
        before on it (the same fields and END_STREAM) gives a new
        :class:`Request` with what its first parse found, without checking
        its fields again. Only a head that parsed is kept (a malformed one is
        parsed again, and refused again)."""
        key = (*headers, ended)
        parsed = self._parsed
        found = parsed.get(key) if parsed is not None else None
        if found is None:
            request, size = _parse_head(stream_id, headers, ended, self.extended_connect)
            if size <= _PARSED_BYTES:
                if parsed is None:
                    parsed = self._parsed = {}  # made at the first request: an idle connection has none
                elif len(parsed) >= _PARSED_MAX:
                    parsed.clear()
                parsed[key] = (
                    request.method,
                    request.path,
                    request.query,
                    tuple(request.headers),
                    request.expect_continue,
                    request.content_length,
                    request.upgrade,
                    size,
                )
            return request, size
        method, path, query, fields, expect, length, upgrade, size = found
        request = Request(stream_id, method, path, query, "2", list(fields), True, expect, None, length, not ended)
        if upgrade is not None:
            request.upgrade = upgrade
        return request, size

    def _on_data(self, event: Any) -> None:
        stream_id = event.stream_id
        stream = self.streams.get(stream_id)
        data = event.data
        padding = event.flow_controlled_length - len(data)
        if stream is None or stream.request is None or stream.answered:
            self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
            return
        if padding:
            self.h2.acknowledge_received_data(padding, stream_id)  # the app never sees padding
        stream.received += len(data)
        stream.unacked += len(data)
        if stream.expected is not None and stream.received > stream.expected:
            self._malformed(stream_id, "body longer than content-length")
            return
        limit = self.config.limit_request_body_bytes
        if limit and stream.received > limit and not stream.tunnel:
            self._events.append(LimitHit("limit_request_body_bytes"))
            self._events.append(StreamReset(stream_id))
            if not stream.status:
                self._answer(stream_id, 413, "request body too large")
            else:
                self._reset(stream_id, ErrorCodes.CANCEL)
                self._stream_gone(stream_id)
            return
        if data:
            self._events.append(Data(stream_id, data))

    # -- the app's side --------------------------------------------------------------------

    def consumed(self, stream_id: int, size: int) -> None:
        """The app took ``size`` body bytes of the stream: open the windows again
        (h2 sends WINDOW_UPDATE once enough has been taken, RFC 9113 §6.9)."""
        stream = self.streams.get(stream_id)
        if stream is None or size <= 0 or self.closed:
            return
        size = min(size, stream.unacked)
        stream.unacked -= size
        if size:
            self.h2.acknowledge_received_data(size, stream_id)

    def send(self, event: object) -> bytes:
        """The one entry for outgoing events of :mod:`~twisted_asgi.events`,
        as on :class:`~twisted_asgi.http11.HTTP11Connection`: the event's
        ``stream_id`` names the stream; :class:`Response` (its head goes out
        with the first body bytes), :class:`Body`, :class:`Trailers`,
        :class:`EarlyHint` and :class:`ErrorResponse`. Returns the bytes to
        write now (:meth:`data_to_send`); the events it caused (e.g.
        :class:`StreamComplete`) are taken with :meth:`take_events`. The shell
        calls the specialised methods below, which this dispatches to.

        :raises AppError: as :meth:`send_body`.
        """
        kind = type(event)
        stream_id = event.stream_id  # type: ignore[attr-defined]
        if not stream_id:
            raise ValueError(f"an HTTP/2 event needs its stream_id: {event!r}")
        self._events = []
        if kind is Body:
            self.send_body(stream_id, event.data, event.more, stream_id in self._trailers_wanted)  # type: ignore[attr-defined]
        elif kind is Response:
            self.send_response(stream_id, event.status, event.headers)  # type: ignore[attr-defined]
            if event.trailers:  # type: ignore[attr-defined]
                self._trailers_wanted.add(stream_id)
        elif kind is Trailers:
            self._trailers_wanted.discard(stream_id)
            self.send_trailers(stream_id, event.headers)  # type: ignore[attr-defined]
        elif kind is EarlyHint:
            self.send_early_hint(stream_id, event.headers)  # type: ignore[attr-defined]
        elif kind is ErrorResponse:
            self._trailers_wanted.discard(stream_id)
            self.error_response(stream_id, event.status, event.reason, event.headers)  # type: ignore[attr-defined]
        else:
            raise TypeError(f"HTTP2Connection.send() cannot send {event!r}")
        return self.data_to_send()

    def take_events(self) -> list[Any]:
        """The events the last :meth:`send` caused (then none)."""
        events, self._events = self._events, []
        return events

    def send_continue(self, stream_id: int) -> None:
        """``100 Continue`` (RFC 9110 §10.1.1), when the app first waits for the body."""
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.done and not self.closed and stream.status == 0:
            self.h2.send_headers(stream_id, [(b":status", b"100")])

    def send_early_hint(self, stream_id: int, headers: Headers) -> None:
        """A ``103 Early Hints`` (RFC 8297): an informational HEADERS frame, no
        END_STREAM, framed now; none once the final head is prepared (it would
        follow it) or the stream is over. ``headers`` (``link`` fields) were
        checked by the cycle."""
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.done and not stream.answered and not self.closed and stream.status == 0:
            # RFC 9113 §8.2.1: no whitespace around a value (as _head strips).
            self.h2.send_headers(stream_id, [(b":status", b"103"), *((n, v.strip(b" \t")) for n, v in headers)])

    def send_response(self, stream_id: int, status: int, headers: Headers) -> None:
        """Prepare the response head; it goes out with the first body bytes, so an
        app that fails before them can still get a clean 500."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.done or stream.answered or self.closed:
            return
        self._head(stream, status, headers)

    def _head(self, stream: _Stream, status: int, headers: Headers) -> None:
        request = stream.request
        head_request = request is not None and request.method == b"HEAD"
        heads = self._heads
        key = (status, head_request, *headers)
        try:
            found = heads.get(key) if heads is not None else None
        except TypeError:  # a field given as a list, not a tuple
            found = None
        if found is None:
            found = self._new_head(status, headers, head_request)
            if len(headers) <= _HEADS_FIELDS and sum(len(n) + len(v) for n, v in found[0]) <= _HEADS_BYTES:
                try:
                    hash(key)
                except TypeError:
                    pass  # (a field given as a list): prepared, not remembered
                else:
                    if heads is None:
                        heads = self._heads = {}  # made at the first response: an idle connection has none
                    elif len(heads) >= _HEADS_MAX:
                        heads.clear()
                    heads[key] = found
        fields, dated, no_body, remaining = found
        out = list(fields)
        if dated:
            out.append((b"date", http_date()))
        stream.head = out
        stream.status = status
        stream.no_body = no_body
        stream.remaining = remaining

    def _new_head(
        self, status: int, headers: Headers, head_request: bool
    ) -> tuple[tuple[tuple[bytes, bytes], ...], bool, bool, int | None]:
        """What :meth:`_head` makes of a response head: its fields (less a
        ``date`` to add), whether to add one, whether the response has no
        body, and its content-length.

        :raises AppError: the app's ``content-length`` is not a number.
        """
        out: Headers = [(b":status", b"%d" % status)]
        have_server = have_date = False
        remaining = None
        for name, value in headers:
            name = name.lower()
            if name in _CONNECTION_SPECIFIC or name == b"te":
                continue  # RFC 9113 §8.2.2: not in HTTP/2
            value = value.strip(b" \t")
            if name == b"content-length":
                if not value.isdigit():
                    raise AppError(f"invalid Content-Length header {value!r}")
                if status == 204:
                    continue
                remaining = int(value)
            elif name == b"server":
                have_server = True
            elif name == b"date":
                have_date = True
            out.append((name, value))
        if not have_server and self.config.server_name:
            out.append((b"server", self.config.server_name.encode("latin-1")))
        no_body = status in _NO_BODY_STATUSES or head_request
        return tuple(out), not have_date and self.config.send_date, no_body, None if no_body else remaining

    def send_body(self, stream_id: int, data: bytes, more: bool, trailers: bool = False) -> list[Any]:
        """Queue body bytes (``more`` False: the last, and the stream ends unless
        ``trailers`` follow); send what the windows allow. Returns events.

        :raises AppError: the body overruns or falls short of the app's own
            ``content-length``; the stream has been reset.
        """
        stream = self.streams.get(stream_id)
        if stream is None or stream.done or stream.answered or self.closed:
            return []
        self._events = []
        self._queue_body(stream_id, stream, data, more, trailers)
        self._flush()
        return self._events

    def _queue_body(self, stream_id: int, stream: _Stream, data: bytes, more: bool, trailers: bool = False) -> None:
        if stream.no_body:
            data = b""
        if stream.remaining is not None:
            stream.remaining -= len(data)
            if stream.remaining < 0 or (not more and stream.remaining > 0):
                self._reset(stream_id, ErrorCodes.INTERNAL_ERROR)
                self._stream_gone(stream_id)
                longer = "longer" if stream.remaining < 0 else "shorter"
                raise AppError(f"Response content {longer} than Content-Length")
        if data:
            stream.outbound.append(memoryview(data))
            stream.queued += len(data)
        if not more:
            stream.end = not trailers
        self._sending[stream_id] = stream

    def send_trailers(self, stream_id: int, headers: Headers) -> list[Any]:
        """Queue the trailer fields that end the response (RFC 9113 §8.1)."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.done or stream.answered or self.closed:
            return []
        self._events = []
        stream.trailers = [(n.lower(), v.strip(b" \t")) for n, v in headers if n.lower() not in _CONNECTION_SPECIFIC]
        stream.end = True
        self._sending[stream_id] = stream
        self._flush()
        return self._events

    def write_blocked(self, stream_id: int) -> bool:
        """True while the stream has response bytes waiting (for window, or
        for the output before them to be written)."""
        return stream_id in self._sending

    def window_shut(self, stream_id: int) -> bool:
        """True while the stream's response waits for flow-control window
        (the stream's or the connection's), not only for the transport."""
        if stream_id not in self._sending:
            return False
        try:
            return self.h2.send_window(stream_id) <= 0
        except h2.exceptions.NoSuchStreamError:
            return False

    def waiting_for_body(self, stream_id: int) -> bool | None:
        """Whether the stream's request body is still to come and all that came
        was taken by the app (the client is the one who is slow); None when the
        stream is gone or its body complete, False while bytes wait to be taken
        (the client may have no window left to send more)."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.request_complete:
            return None
        return not stream.unacked

    def head_unsent(self, stream_id: int) -> bool:
        """True while the stream's response head is queued and no byte of it
        has been framed (an error response may still take its place)."""
        stream = self.streams.get(stream_id)
        return stream is not None and stream.head is not None and not stream.bytes_sent

    def error_response(self, stream_id: int, status: int, reason: str, extra: Headers | None = None) -> list[Any]:
        """Answer the stream ourselves (the app never saw it, or failed before
        its first body bytes), with the ``extra`` fields."""
        self._events = []
        if not self.closed:
            self._answer(stream_id, status, reason, extra)
            self._flush()
        return self._events

    def _answer(self, stream_id: int, status: int, reason: str, extra: Headers | None = None) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.done or stream.answered:
            return
        body = f"{status} {HTTPStatus(status).phrase}: {reason}\n".encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            *(extra or ()),
        ]
        stream.outbound.clear()
        stream.queued = 0
        stream.trailers = None
        self._head(stream, status, headers)
        self._queue_body(stream_id, stream, body, False)
        stream.answered = True

    def reset(self, stream_id: int) -> list[Any]:
        """Reset a stream for the app's sake (it failed mid-response, or the
        client left its window shut too long); returns events."""
        self._events = []
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.done and not self.closed:
            self._reset(stream_id, ErrorCodes.INTERNAL_ERROR)
            self._stream_gone(stream_id)
        return self._events

    def refuse(self, stream_id: int) -> list[Any]:
        """Refuse a new stream (REFUSED_STREAM: the client may retry it, RFC 9113
        §8.7); it counts against the reset budget. Returns events."""
        self._events = []
        if stream_id in self.streams and not self.closed:
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM)
            self.streams[stream_id].answered = True  # no app saw it
            self._stream_gone(stream_id)
            self._charge_reset()
        return self._events

    # -- flow control out ------------------------------------------------------------------

    def flush(self) -> list[Any]:
        """Send what the windows allow (after the window opened); return events."""
        self._events = []
        if not self.closed:
            self._flush()
        return self._events

    def _flush(self) -> None:
        """Streams take turns, one frame each per round, so a big response does
        not hold the connection window away from small ones.

        Frames are made only while less than :data:`OUTPUT_AHEAD` bytes wait
        to be written and the transport has not paused us: a client that opens
        its windows wide and reads nothing holds the server to that bound per
        connection, not to every stream's whole response. The streams that
        were served go to the back of the turn order, so the ones cut off by
        the bound go first next time (none starves)."""
        h2conn = self.h2
        pending = h2conn.output_pending
        sending = self._sending
        self.output_held = False
        while sending:
            progress = False
            for stream_id, stream in list(sending.items()):
                if self.output_paused or pending() >= OUTPUT_AHEAD:
                    self.output_held = True
                    return
                if stream.head is not None:
                    head, stream.head = stream.head, None
                    end = stream.end and not stream.queued and not stream.trailers
                    h2conn.send_response_headers(stream_id, head, end)
                    progress = True
                    if end:
                        self._sent_all(stream_id, stream)
                        continue
                if stream.outbound:
                    window = h2conn.send_window(stream_id)
                    if window <= 0:
                        continue  # may be negative after a SETTINGS change (RFC 9113 §6.9.2)
                    chunk = stream.outbound[0]
                    if len(chunk) > window:
                        stream.outbound[0] = chunk[window:]
                        chunk = chunk[:window]
                    else:
                        stream.outbound.popleft()
                    stream.queued -= len(chunk)
                    last = not stream.outbound and stream.end and not stream.trailers
                    h2conn.send_response_data(stream_id, chunk, last)
                    stream.bytes_sent += len(chunk)
                    overhead = self._overhead  # (_refund(2), once per DATA frame)
                    if overhead is not None:
                        self._overhead = min(overhead + 2, self.config.limit_h2_control_frames)
                    progress = True
                    if stream.outbound:
                        # To the back of the turn order.
                        del sending[stream_id]
                        sending[stream_id] = stream
                        continue
                    if last:
                        self._sent_all(stream_id, stream)
                        continue
                if stream.trailers:
                    h2conn.send_response_headers(stream_id, stream.trailers, True)
                    progress = True
                    self._sent_all(stream_id, stream)
                elif stream.end:
                    h2conn.send_response_data(stream_id, b"", True)
                    progress = True
                    self._sent_all(stream_id, stream)
                else:
                    del sending[stream_id]
                    self._events.append(WriteReady(stream_id))
            if not progress:
                break

    def _sent_all(self, stream_id: int, stream: _Stream) -> None:
        self._sending.pop(stream_id, None)
        stream.done = True
        events = self._events
        events.append(WriteReady(stream_id))
        events.append(StreamComplete(stream_id, stream.status, stream.bytes_sent, stream.request))
        resets = self._resets  # (_refund_reset, once per request)
        if resets is not None and resets < self.config.limit_h2_resets:
            self._resets = resets + 1
        if stream.request_complete:  # (_maybe_finish, once per request)
            self.streams.pop(stream_id, None)
        else:
            self._maybe_finish(stream_id, stream)

    def _maybe_finish(self, stream_id: int, stream: _Stream) -> None:
        if not stream.done:
            return
        if not stream.request_complete:
            # Answered before the body ended: tell the client to stop sending
            # (RFC 9113 §8.1, RST_STREAM NO_ERROR); its unread bytes free the
            # connection window, and an app still reading is told.
            self._reset(stream_id, ErrorCodes.NO_ERROR)
            if not stream.answered:
                self._events.append(StreamReset(stream_id))
        self.streams.pop(stream_id, None)

    # -- resets and errors ---------------------------------------------------------------------

    def _reset(self, stream_id: int, code: int) -> None:
        stream = self.streams.get(stream_id)
        try:
            self.h2.reset_stream(stream_id, code)
        except h2.exceptions.NoSuchStreamError:
            pass  # already closed on h2's side (a reset crossed ours)
        if stream is not None and stream.unacked:
            # Credits the connection window only: the stream is closed.
            self.h2.acknowledge_received_data(stream.unacked, stream_id)
            stream.unacked = 0

    def _malformed(self, stream_id: int, reason: str) -> None:
        """A malformed request: stream error PROTOCOL_ERROR (RFC 9113 §8.1.1),
        caused by the client, so it counts against the reset budget."""
        self._reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
        self._stream_gone(stream_id)
        self._events.append(MalformedStream(stream_id, reason))
        self._charge_reset()

    def _stream_gone(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        self._sending.pop(stream_id, None)
        if self._trailers_wanted:
            self._trailers_wanted.discard(stream_id)
        if stream is not None:
            if stream.unacked:
                self.h2.acknowledge_received_data(stream.unacked, stream_id)
            if not stream.done:
                stream.done = True
                if stream.request is not None and not stream.answered:
                    self._events.append(StreamReset(stream_id))

    def _charge_reset(self) -> None:
        if self._resets is not None:
            self._resets -= 1
            if self._resets < 0:
                if not self.closed:  # counted once: later resets only confirm it
                    self._events.append(LimitHit("limit_h2_resets"))
                self._end(ENHANCE_YOUR_CALM, "too many stream resets")

    def _refund_reset(self) -> None:
        if self._resets is not None and self._resets < self.config.limit_h2_resets:
            self._resets += 1

    def _end(self, code: int, reason: str) -> None:
        """A budget ran out (ENHANCE_YOUR_CALM) or the scan found a connection
        error: GOAWAY (RFC 9113 §5.4.1), the end."""
        if self.closed:
            return
        self.closed = True
        self.h2.close_connection(code, reason.encode("ascii"))
        self._events.append(ConnectionClosed(code, reason))

    # -- closing ---------------------------------------------------------------------------

    def go_away(self) -> None:
        """Graceful shutdown: GOAWAY NO_ERROR naming the last stream we take;
        streams up to it may finish, later ones are refused (RFC 9113 §6.8).

        h2 sends nothing after a GOAWAY of its own, so this frame is ours.
        """
        if self.closed or self.last_stream_id is not None:
            return
        self.last_stream_id = self.h2.highest_inbound_stream_id
        frame = GoAwayFrame(0, last_stream_id=self.last_stream_id, error_code=ErrorCodes.NO_ERROR)
        self._extra += frame.serialize()

    def close(self, code: int = ErrorCodes.NO_ERROR, reason: str = "") -> None:
        """End the connection now with a final GOAWAY."""
        if not self.closed:
            self.closed = True
            self.h2.close_connection(code, reason.encode("ascii") or None)

    @property
    def open_streams(self) -> int:
        """Streams whose request or response is still in progress."""
        return len(self.streams)

    def output_size(self) -> int:
        """How many bytes :meth:`data_to_send` would return now (counted
        where h2 holds them: nothing is copied)."""
        return self.h2.output_pending() + len(self._extra)

    def data_to_send(self) -> bytes:
        """The bytes to write to the client now."""
        data = self.h2.take_output()
        if self._extra:
            data, self._extra = data + self._extra, b""
        return data


def _trailers_error(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why a request's trailer section is malformed, or None if it is not
    (RFC 9113 §8.1, §8.2.1, and the byte rules of fieldrules)."""
    for name, value in headers:
        if name[:1] == b":":
            return "pseudo-header in trailers"
        if not is_lower_token(name):
            return f"invalid field name {name!r} in trailers"
        if name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
            return f"connection-specific field {name!r} in trailers"  # RFC 9113 §8.2.2
        if 0 in value.translate(REQUEST_VALUE_MARKS) or (value and (value[0] in _SP_HT or value[-1] in _SP_HT)):
            return f"invalid value for {name!r} in trailers"
    return None


#: What :func:`_parse_head` found in a request head, to build a fresh
#: :class:`Request` from when the client sends the same head again (see
#: :meth:`HTTP2Connection._parse_request`).
_Parsed = tuple[bytes, bytes, bytes, tuple[tuple[bytes, bytes], ...], bool, int | None, bytes | None, int]


def _parse_head(
    stream_id: int, headers: list[tuple[bytes, bytes]], ended: bool, extended_connect: bool = False
) -> tuple[Request, int]:
    """The :class:`Request` a HEADERS block stands for, and its header-list size
    (RFC 9113 §6.5.2: names, values and 32 bytes a field). With
    ``extended_connect`` (we sent SETTINGS_ENABLE_CONNECT_PROTOCOL), a CONNECT
    may carry ``:protocol`` (RFC 8441 §4): the request's ``upgrade`` is then
    its lower-cased value, and it has ``:scheme`` and ``:path`` as any request.

    :raises ValueError: the request is malformed (RFC 9113 §8.1.1, §8.2, §8.3).
    """
    pseudo: dict[bytes, bytes] = {}
    fields: Headers = []
    cookies: list[bytes] = []
    cookie_at = -1
    content_length: int | None = None
    size = 0
    has_host = expect_continue = False
    good_names = _GOOD_NAMES
    allowed_pseudo = _EXTENDED_PSEUDO if extended_connect else _REQUEST_PSEUDO
    for name, value in headers:
        size += len(name) + len(value) + 32
        # RFC 9113 §8.2.1 with the shared byte rules (fieldrules: forbidden
        # bytes become NUL), no whitespace at either end. Reported after the
        # checks of the name, as those come first below.
        bad_value = 0 in value.translate(REQUEST_VALUE_MARKS) or (value and (value[0] in _SP_HT or value[-1] in _SP_HT))
        if name[:1] == b":":
            if fields or cookies:
                raise ValueError("pseudo-header after a regular field")
            if name not in allowed_pseudo:
                raise ValueError(f"pseudo-header {name!r} not allowed in a request")
            if name in pseudo:
                raise ValueError(f"duplicate {name!r}")
            if bad_value:
                raise ValueError(f"invalid value for {name!r}")
            pseudo[name] = value
            continue
        if name not in good_names:
            if not is_lower_token(name):
                raise ValueError(f"invalid field name {name!r}")
            if len(good_names) < _GOOD_NAMES_MAX and len(name) <= _GOOD_NAME_BYTES:
                good_names.add(name)
        if bad_value:
            raise ValueError(f"invalid value for {name!r}")
        if name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
            raise ValueError(f"connection-specific field {name!r}")
        if name == b"host":
            has_host = True
        elif name == b"expect" and value.lower() == b"100-continue":
            expect_continue = True
        elif name == b"cookie":
            # RFC 9113 §8.2.3: crumbs are joined with "; " for a generic
            # application, which an ASGI app is.
            if cookie_at < 0:
                cookie_at = len(fields)
            cookies.append(value)
            continue
        if name == b"content-length":
            if not value.isdigit() or (content_length is not None and int(value) != content_length):
                raise ValueError("invalid content-length")
            content_length = int(value)
        fields.append((name, value))
    if cookies:
        fields.insert(cookie_at, (b"cookie", b"; ".join(cookies)))
    method = pseudo.get(b":method")
    if not method or (method not in _COMMON_METHODS and not is_token(method)):
        raise ValueError("missing or invalid :method")
    authority = pseudo.get(b":authority")
    protocol = pseudo.get(b":protocol")
    if protocol is not None and method != b"CONNECT":
        raise ValueError(":protocol in a request that is not CONNECT")  # RFC 8441 §4
    if method == b"CONNECT" and protocol is None:
        if b":scheme" in pseudo or b":path" in pseudo or not authority:
            raise ValueError("malformed CONNECT")  # RFC 9113 §8.5
        path, query = b"", b""
    else:
        if protocol is not None and (not authority or not protocol):
            raise ValueError("malformed extended CONNECT")  # RFC 8441 §4
        target = pseudo.get(b":path")
        if not pseudo.get(b":scheme") or not target:
            raise ValueError("missing :scheme or :path")  # RFC 9113 §8.3.1
        if target == b"*" and method == b"OPTIONS":
            path, query = b"*", b""
        elif target[:1] != b"/" or not target_ok(target):
            # The request-target rules of HTTP/1.1 (fieldrules): no SP, HTAB,
            # control byte, DEL, byte from 0x80 up or "#" (RFC 9113 §8.3.1).
            raise ValueError("invalid :path")
        else:
            path, _, query = target.partition(b"?")
    if authority is not None:
        # ASGI www spec: ":authority" becomes "host", first, replacing any host.
        if has_host:
            fields = [f for f in fields if f[0] != b"host"]
        fields.insert(0, (b"host", authority))
    if ended and content_length:
        raise ValueError("content-length without a body")
    request = Request(
        stream_id,
        method,
        path,
        query,
        "2",
        fields,
        True,
        not ended and expect_continue,
        None,
        content_length,
        not ended,
    )
    if protocol is not None:
        request.upgrade = protocol.lower()
    return request, size
