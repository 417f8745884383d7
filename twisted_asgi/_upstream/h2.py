"""h2's internals, fenced (see the package docstring).

:class:`FastConnection` is h2's server connection with the overrides and the
send seam :mod:`twisted_asgi.http2` runs on; :class:`PublicConnection` offers
the same public-named methods over h2's public API alone. :func:`new_connection`
makes one of the two: the fast one unless :data:`PROBLEM` says why not (checked
once, when this module is first imported, which is when HTTP/2 is first used).

Read from h2 4.2.0 and 4.4.1, the oldest and the newest releases setup.cfg
allows (``h2>=4.2.0,<4.5``); where the two differ it is said below.

* h2/stream.py ``H2Stream._initialize_content_length`` and
  ``_track_content_length`` (overridden in :class:`LenientStream`): h2 makes a
  body that does not match its content-length a *connection* error, RFC 9113
  §8.1.1 a stream error; http2.py checks it instead.
* h2/connection.py ``H2Connection._begin_new_stream`` (overridden: each new
  stream's class becomes :class:`LenientStream`, same state);
  ``open_inbound_streams`` (overridden: h2 reads it only to refuse a stream
  over the limit, as a connection error; http2.py refuses with REFUSED_STREAM;
  its sweep of closed streams is ``_open_streams``' own, recorded in the
  instance's ``_closed_streams``);
  ``_receive_headers_frame`` (an undecodable block is COMPRESSION_ERROR, RFC
  9113 §4.3); ``_receive_priority_frame`` (a self-dependent stream is a stream
  error, RFC 9113 §5.3.1); ``_receive_frame`` (a copy, less its per-frame
  ``repr()``), with ``_frame_dispatch_table``, ``_prepare_for_sending``,
  ``_stream_is_closed_by_reset``, ``_stream_is_closed_by_end`` and the
  ``StreamClosedError._events`` it reads.
* the send seam, :meth:`FastConnection.send_response_headers` and
  :meth:`~FastConnection.send_response_data`: what h2's ``send_headers`` and
  ``send_data`` do to h2's state (``state_machine.process_input`` of the
  connection and the stream, ``_get_stream_by_id``, the window counters, the
  frame bytes appended to ``_data_to_send``), less the frame objects, header
  re-checks and debug logging (``tests/test_http2_send.py`` compares them byte
  for byte and state for state). h2 4.2's ``send_data`` refuses an empty DATA
  frame on a negative window, 4.4's sends it; the seam does as 4.4.
* the receive fast path, :meth:`FastConnection.receive_data` (a request's
  HEADERS frame read from the bytes): what h2's ``receive_data``, its
  ``FrameBuffer`` (``incoming_buffer``: the bytes it holds, ``data`` in 4.2.0,
  ``_data`` in 4.4.1; ``_preamble_len``; ``_headers_buffer``),
  ``_receive_headers_frame``, ``_begin_new_stream`` and
  ``H2Stream.receive_headers`` do for it, with h2's module function
  ``h2.connection._decode_headers`` and ``_terminate_connection``;
  and :func:`_advance`, h2's stream transitions (h2/stream.py's module
  ``_transitions``) applied without ``process_input``'s look-up, there and in
  the send seam, whose connection transitions in SERVER_OPEN are skipped
  (``H2ConnectionStateMachine._transitions`` says they change nothing).
  ``tests/test_h2_fastpath.py`` compares it with h2's own path.
* ``encoder``, ``decoder``, ``local_settings`` and ``max_inbound_frame_size``
  replaced after ``H2Connection.__init__`` (:meth:`FastConnection.configure`):
  twisted-asgi's HPACK codec in place of hpack's, and initial SETTINGS that
  apply at once.

``tests/test_upstream_drift.py`` pins the source of each per h2 version;
``tests/test_upstream_fallback.py`` serves with each name renamed.

The public path (:class:`PublicConnection`) keeps every protection of
:mod:`twisted_asgi.http2`, with these differences, which RFC 9113 allows (§5.4.1:
an endpoint MAY treat a stream error as a connection error) and
docs/upstream.rst lists: a content-length that is not a number, a stream over
SETTINGS_MAX_CONCURRENT_STREAMS and a header list over the limit end the
connection (GOAWAY) instead of the one stream. A body that does not match its
content-length and a stream that depends on itself stay stream errors:
http2.py checks each DATA frame's length, and each PRIORITY and HEADERS
frame's dependency, before h2 reads the frame; and an undecodable header block
is still COMPRESSION_ERROR (:meth:`PublicConnection.recode_goaway` rewrites the
code of h2's GOAWAY, PROTOCOL_ERROR).

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

import struct
from importlib.metadata import version
from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import h2.settings
import hpack
from h2.connection import ConnectionInputs, ConnectionState
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from h2.utilities import is_informational_response
from hyperframe.frame import RstStreamFrame

# h2/connection.py's module function (4.2.0-4.4.1): HPACK errors as h2's.
_decode_headers: Any = getattr(h2.connection, "_decode_headers", None)
#: The FrameBuffer attribute holding its bytes (BUFFER_BYTES; set by _problem()).
_buffer_bytes = "_data"

__all__ = [
    "CONNECTION_NAMES",
    "PROBLEM",
    "FastConnection",
    "LenientStream",
    "PublicConnection",
    "new_connection",
]

#: What the fast connection reads, calls or overrides on h2's H2Connection.
CONNECTION_NAMES = (
    "_begin_new_stream",
    "_receive_frame",
    "_receive_headers_frame",
    "_receive_priority_frame",
    "_prepare_for_sending",
    "_get_stream_by_id",
    "_stream_is_closed_by_reset",
    "_stream_is_closed_by_end",
    "_terminate_connection",
)
#: ... and on its FrameBuffer (``incoming_buffer``): the bytes it holds (h2
#: 4.4.1's ``_data``, a bytearray; 4.2.0's ``data``, bytes), the preface still
#: expected, the header block being gathered.
BUFFER_NAMES = ("_preamble_len", "_headers_buffer")
BUFFER_BYTES = ("_data", "data")
#: ... and on its H2Stream (h2/stream.py, an internal module).
STREAM_NAMES = ("_initialize_content_length", "_track_content_length")
#: ... and on an H2Connection instance.
INSTANCE_NAMES = ("_frame_dispatch_table", "_data_to_send", "_closed_streams")

_MAX_WINDOW = 2**31 - 1
_SWEEP_EVERY = 32
_HEADERS, _DATA, _CONTINUATION = 0x1, 0x0, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4
_MAX_STREAM_ID = 0x7FFFFFFF
_SERVER_OPEN = ConnectionState.SERVER_OPEN
#: The connection states the receive fast path starts in: before the first
#: stream, and open (anything else, closing or closed, is h2's alone).
_FAST_STATES = (ConnectionState.IDLE, _SERVER_OPEN)
#: The connection inputs the fast paths skip, and h2's transition for each in
#: SERVER_OPEN (h2/connection.py ``H2ConnectionStateMachine._transitions``,
#: 4.2.0-4.4.1): no callback, the state unchanged. Checked by _problem().
_NO_OP_INPUTS = (ConnectionInputs.RECV_HEADERS, ConnectionInputs.SEND_HEADERS, ConnectionInputs.SEND_DATA)
# The inputs the fast paths give, read once: on Python 3.11 an enum class has a
# __getattr__ (EnumType's), which makes every attribute read on the class, a
# member's included, a slow lookup through that hook (about 900 instructions,
# several a request). Python 3.12 dropped it.
_CONN_RECV_HEADERS, _CONN_SEND_HEADERS, _CONN_SEND_DATA = _NO_OP_INPUTS
# A frame header (RFC 9113 §4.1): 24-bit length (as 16 + 8 bits), type, flags, stream id.
_FRAME_HEADER = struct.Struct(">HBBBL")

_stream_problem: str | None = None
try:
    import h2.stream
    from h2.stream import H2Stream, StreamInputs, StreamState  # h2/stream.py: not h2's public API
except ImportError as exc:  # a changed h2: the public path
    _stream_problem = f"h2.stream ({exc})"
    H2Stream = object  # type: ignore[misc,assignment]
    StreamInputs = StreamState = None  # type: ignore[misc,assignment]


def _steps(input_: Any, *states: Any) -> tuple[tuple[Any, Any, Any], ...]:
    """h2's stream transitions (h2/stream.py's module ``_transitions``,
    4.2.0-4.4.1) for ``input_`` in each of ``states``: (state, callback, target)."""
    table = getattr(h2.stream, "_transitions", None) if _stream_problem is None else None
    if not isinstance(table, dict):
        return ()
    return tuple((state, *table[state, input_]) for state in states if (state, input_) in table)


def _advance(machine: Any, input_: Any, steps: tuple[tuple[Any, Any, Any], ...]) -> list[Any]:
    """``machine.process_input(input_)`` (h2/stream.py ``H2StreamStateMachine``,
    4.2.0-4.4.1) for a state of ``steps``, without its generic look-up (a
    dictionary keyed by a pair of enum members, each hashed by a Python
    ``__hash__``): the same transition and callback from h2's own table, the
    same errors. In any other state, h2's ``process_input`` itself."""
    state = machine.state
    for from_, callback, target in steps:
        if state is from_:
            machine.state = target
            if callback is None:
                return []
            try:
                return callback(machine, state)  # type: ignore[no-any-return]
            except h2.exceptions.ProtocolError:
                machine.state = _CLOSED
                raise
            except AssertionError as err:  # pragma: no cover (h2's own invariants)
                machine.state = _CLOSED
                raise h2.exceptions.ProtocolError(err) from err
    return machine.process_input(input_)  # type: ignore[no-any-return]


if _stream_problem is None:
    _OPENING = (StreamState.IDLE,)
    _ANSWERING = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
    _CLOSED = StreamState.CLOSED
    # (Read once: see _CONN_RECV_HEADERS.)
    _IN_RECV_HEADERS = StreamInputs.RECV_HEADERS
    _IN_RECV_END_STREAM = StreamInputs.RECV_END_STREAM
    _IN_SEND_HEADERS = StreamInputs.SEND_HEADERS
    _IN_SEND_DATA = StreamInputs.SEND_DATA
    _IN_SEND_END_STREAM = StreamInputs.SEND_END_STREAM
    _RECV_HEADERS = _steps(StreamInputs.RECV_HEADERS, *_OPENING)
    _RECV_END_STREAM = _steps(StreamInputs.RECV_END_STREAM, StreamState.OPEN)
    _SEND_HEADERS = _steps(StreamInputs.SEND_HEADERS, *_ANSWERING)
    _SEND_DATA = _steps(StreamInputs.SEND_DATA, *_ANSWERING)
    _SEND_END_STREAM = _steps(StreamInputs.SEND_END_STREAM, *_ANSWERING)
    #: The states where SEND_DATA changes nothing in h2's table (no callback,
    #: the same state: OPEN and HALF_CLOSED_REMOTE in 4.2.0-4.4.1): there the
    #: send seam skips the transition (a tuple: an enum member's hash is a
    #: Python call, identity is not).
    _SEND_DATA_NO_OP = tuple(state for state, callback, target in _SEND_DATA if callback is None and target is state)
    #: What the steps above must be (a changed table: _problem() says so).
    _STEPS_EXPECTED = {
        "RECV_HEADERS": (_RECV_HEADERS, 1),
        "RECV_END_STREAM": (_RECV_END_STREAM, 1),
        "SEND_HEADERS": (_SEND_HEADERS, 2),
        "SEND_DATA": (_SEND_DATA, 2),
        "SEND_END_STREAM": (_SEND_END_STREAM, 2),
    }


class LenientStream(H2Stream):
    """h2's stream without its content-length check (h2/stream.py 4.2.0-4.4.1:
    ``receive_headers`` calls the first, ``receive_data`` the second, which
    raises InvalidBodyLengthError, a connection error)."""

    def _initialize_content_length(self, headers: Any) -> None:
        pass

    def _track_content_length(self, length: int, end_stream: bool) -> None:
        pass


class FastConnection(h2.connection.H2Connection):
    """h2's connection, where three stream errors stay stream errors, frames
    are received without a per-frame ``repr()``, and a response is written
    as frame bytes (see the module docstring).

    * a body that does not match its content-length (§8.1.1), through
      :class:`LenientStream`;
    * a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS (§5.1.2: PROTOCOL_ERROR
      or REFUSED_STREAM); the stream is decoded (HPACK state is shared) and
      refused by :class:`~twisted_asgi.http2.HTTP2Connection`;
    * a stream that depends on itself (§5.3.1), collected in
      :attr:`self_dependent` after h2 has reset it.
    """

    #: The seam runs (http2.py's checks that h2 makes for it are not needed).
    fast = True

    #: h2's frame dispatch table with functions for its bound methods, shared by
    #: every connection (filled from the first one, so it is h2's own table).
    _dispatch: dict[type, Any] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # h2's table (H2Connection.__init__, 4.2.0-4.4.1) holds bound methods of
        # the connection: a reference cycle, which left every closed connection
        # (and all it holds) to the cyclic garbage collector. The same methods
        # as plain functions instead, called with the connection by
        # _receive_frame: freed by reference counting.
        dispatch = FastConnection._dispatch
        if not dispatch:
            own: dict[type, Any] = self._frame_dispatch_table
            dispatch.update({kind: method.__func__ for kind, method in own.items()})
        self._frame_dispatch_table = dispatch
        #: Streams reset for depending on themselves during the last read.
        self.self_dependent: list[int] = []
        #: h2's stream table size at which closed streams are next swept out.
        self._sweep_at = 0

    def configure(self, settings: dict[SettingCodes, int], header_list_cap: int, encoder: Any, decoder: Any) -> None:
        """Our HPACK coder in place of the hpack package's (h2 calls only
        ``encode()``/``decode()`` and sets the size attributes on them), and
        ``settings`` as the initial local SETTINGS. Initial values take effect
        at once (h2 applies only *changes* on the client's ACK), so h2's
        decoder and frame reader get them from us; the decoder stops at
        ``header_list_cap``."""
        self.encoder = encoder
        self.decoder = decoder
        self.local_settings = h2.settings.Settings(client=False, initial_values=settings)
        self.decoder.max_header_list_size = header_list_cap
        self.max_inbound_frame_size = settings[SettingCodes.MAX_FRAME_SIZE]

    def start(self) -> None:
        """The server connection preface: our SETTINGS."""
        self.initiate_connection()

    def start_upgrade(self, settings_header: bytes) -> None:
        """The preface after ``101 Switching Protocols``, with the client's
        ``HTTP2-Settings`` (base64) applied; stream 1 is half-closed."""
        self.initiate_upgrade_connection(settings_header)

    def output_pending(self) -> int:
        """Bytes framed and not yet taken by :meth:`take_output`."""
        return len(self._data_to_send)

    take_output = h2.connection.H2Connection.data_to_send

    def recode_goaway(self, code: int) -> bool:
        """Nothing to recode: :meth:`_receive_headers_frame` gives h2 the code."""
        return False

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> Any:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = LenientStream  # same state, two methods replaced
        return stream

    @property
    def open_inbound_streams(self) -> int:
        # h2 reads this only to refuse a stream over the limit, as a connection
        # error (HTTP2Connection refuses such streams itself). Reading it also
        # makes h2 forget closed streams, a walk over its whole stream table:
        # done once that table has grown by _SWEEP_EVERY since the last walk, so
        # a closed stream lingers a bounded while and each costs O(1). The walk
        # is h2's _open_streams (h2/connection.py, 4.2.0-4.4.1) less its count:
        # each closed stream (H2Stream.closed: its machine's state is CLOSED)
        # out of the table, how it closed (H2Stream.closed_by) recorded in
        # _closed_streams, without the two properties' calls per stream.
        streams = self.streams
        if len(streams) >= self._sweep_at:
            gone = [sid for sid, stream in streams.items() if stream.state_machine.state is _CLOSED]
            record = self._closed_streams
            for sid in gone:
                record[sid] = streams.pop(sid).state_machine.stream_closed_by
            self._sweep_at = len(streams) + _SWEEP_EVERY
        return 0

    def _receive_headers_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        try:
            return super()._receive_headers_frame(frame)
        except h2.exceptions.ProtocolError as exc:
            # RFC 9113 §4.3: a field block that cannot be decoded is a
            # COMPRESSION_ERROR; h2 reports PROTOCOL_ERROR. (An HPACK bomb
            # stays ENHANCE_YOUR_CALM.)
            if type(exc) is h2.exceptions.ProtocolError and isinstance(exc.__cause__, hpack.HPACKError):
                exc.error_code = ErrorCodes.COMPRESSION_ERROR
            raise

    def _receive_frame(self, frame: Any) -> list[Any]:
        # h2's own (h2/connection.py, 4.2.0-4.4.1), less its first line: a
        # trace-level log call whose argument, repr(frame), was built for every
        # frame received (six Python calls formatting the frame, its flags and
        # its payload) and then dropped by h2's no-op logger. The rest is h2's: a
        # frame on a stream the client reset is a stream error, on one that
        # ended otherwise a connection error (tests/test_http2_send.py compares
        # the two on each case). The dispatch table holds functions, not bound
        # methods (see __init__).
        events: list[Any]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](self, frame)
        except h2.exceptions.StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except h2.exceptions.StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise h2.exceptions.StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events

    # -- receiving: the common frames without h2's frame objects --------------------
    #
    # h2 reads each frame into a hyperframe object (a flag set, a memoryview of
    # the body), dispatches it, runs the connection's state machine, and for a
    # HEADERS frame builds validation flags and a header pipeline our
    # configuration turns off. A request's HEADERS frame (END_HEADERS, no
    # padding or priority, a new client stream while the connection is idle or
    # open) is read here from the bytes instead, doing what h2's frame buffer
    # and _receive_headers_frame do to h2's state, in their order: the stream
    # limit check, the header block decoded with h2's own _decode_headers, the
    # connection's RECV_HEADERS (skipped in SERVER_OPEN, where it changes
    # nothing: _NO_OP_INPUTS), the stream created as _begin_new_stream creates
    # it (less its debug logging), and H2Stream.receive_headers' transitions
    # taken from h2's own table by _advance. Any other frame, and everything
    # after it in the same read, goes to h2's receive_data, so h2 stays the
    # reference for all but this one case (tests/test_h2_fastpath.py feeds
    # random frame sequences, split anywhere, both ways). A frame h2 holds the
    # start of is taken back from its buffer and read with the new bytes.

    #: The receive fast path runs (off: every frame goes through h2).
    fast_frames = True

    def receive_data(self, data: Any) -> list[Any]:
        buf = self.incoming_buffer
        if (
            not self.fast_frames
            or buf._preamble_len
            or buf._headers_buffer
            or self.state_machine.state not in _FAST_STATES
        ):
            return super().receive_data(data)
        held = getattr(buf, _buffer_bytes)
        if held:
            # The start of a frame h2 holds (a read ended in it): taken back,
            # it is read with the rest (h2's buffer is just these bytes).
            data = bytes(held) + data
            setattr(buf, _buffer_bytes, held[:0])
        elif type(data) is not bytes:
            data = bytes(data)
        events: list[Any] = []
        n = len(data)
        i = 0
        unpack = _FRAME_HEADER.unpack_from
        # The settings a new stream reads (h2's Settings properties), read
        # once a read: a HEADERS frame changes none of them.
        settings: tuple[int, int, int] | None = None
        try:
            while n - i >= 9:
                high, low, kind, flags, stream_id = unpack(data, i)
                length = high << 8 | low
                end = i + 9 + length
                if (
                    end > n
                    or kind != _HEADERS
                    or flags & ~_END_STREAM != _END_HEADERS
                    or not stream_id & 1
                    or stream_id > _MAX_STREAM_ID
                    or stream_id <= self.highest_inbound_stream_id
                    or length > self.max_inbound_frame_size
                ):
                    break
                if settings is None:
                    local = self.local_settings
                    settings = (
                        local.max_concurrent_streams,
                        local.initial_window_size,
                        self.remote_settings.initial_window_size,
                    )
                events += self._fast_headers(stream_id, data[i + 9 : end], flags & _END_STREAM, settings)
                i = end
        except h2.exceptions.ProtocolError as exc:
            self._terminate_connection(exc.error_code)  # as h2's receive_data does
            raise
        if i < n:
            events += super().receive_data(data[i:] if i else data)
        return events

    def _fast_headers(self, stream_id: int, block: bytes, end_stream: int, settings: tuple[int, int, int]) -> list[Any]:
        """h2's _receive_headers_frame (with ours above) for a new stream's
        HEADERS frame with END_HEADERS and neither PADDED nor PRIORITY;
        ``settings``: our SETTINGS_MAX_CONCURRENT_STREAMS and
        SETTINGS_INITIAL_WINDOW_SIZE, and the client's."""
        # (A stream id above h2's highest inbound one is never in its table.)
        limit, inbound_window, outbound_window = settings
        # open_inbound_streams (0), whose sweep is due only when the table has grown.
        value = self.open_inbound_streams if len(self.streams) >= self._sweep_at else 0
        if value + 1 > limit:
            raise h2.exceptions.TooManyStreamsError(f"Max inbound streams is {limit}, {value} open")
        try:
            headers = _decode_headers(self.decoder, block)
        except h2.exceptions.ProtocolError as exc:
            if type(exc) is h2.exceptions.ProtocolError and isinstance(exc.__cause__, hpack.HPACKError):
                exc.error_code = ErrorCodes.COMPRESSION_ERROR
            raise
        connection = self.state_machine
        if connection.state is not _SERVER_OPEN:  # (in it, a no-op: _NO_OP_INPUTS)
            connection.process_input(_CONN_RECV_HEADERS)
        # _begin_new_stream (with ours) for an id known to be a new client
        # one (receive_data checked it), less its three debug-log calls.
        stream = LenientStream(
            stream_id,
            config=self.config,
            inbound_window_size=inbound_window,
            outbound_window_size=outbound_window,
        )
        stream.max_outbound_frame_size = self.max_outbound_frame_size
        self.streams[stream_id] = stream
        self.highest_inbound_stream_id = stream_id
        if is_informational_response(headers):
            # (h2 refuses it: no such input for a stream it did not open)
            return stream.receive_headers(headers, bool(end_stream), self.config.header_encoding)[1]
        # H2Stream.receive_headers (4.2.0-4.4.1) for a request: a new stream's
        # RECV_HEADERS (RequestReceived), RECV_END_STREAM (StreamEnded), no
        # content-length check (LenientStream), and the headers as they are
        # (_configuration(): no normalising, no validation, no text encoding).
        machine = stream.state_machine
        events = _advance(machine, _IN_RECV_HEADERS, _RECV_HEADERS)
        if end_stream:
            ended = _advance(machine, _IN_RECV_END_STREAM, _RECV_END_STREAM)
            events[0].stream_ended = ended[0]
            events += ended
        events[0].headers = list(headers)
        return events

    # -- sending a response: h2's send_headers/send_data, less the general work --
    #
    # h2's public calls build frame objects, re-encode and classify the header
    # list, and log at debug level on every call; for a response on a stream the
    # client opened, whose fields are already lowercase bytes and checked
    # (HTTP2Connection._head), all that is left is what changes h2's state: the
    # connection's and the stream's state machines, the flow-control windows,
    # and the frame bytes appended to h2's output buffer. Those are the same h2
    # attributes h2 itself updates (h2/connection.py and h2/stream.py, 4.2.0
    # to 4.4.1 alike); tests/test_http2_send.py checks byte for byte and state
    # for state that these two calls match h2's.

    def send_response_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        """``send_headers`` for a final response head or trailers (never 1xx)."""
        fast = self.fast_frames
        if self.state_machine.state is not _SERVER_OPEN or not fast:  # (in it, a no-op: _NO_OP_INPUTS)
            self.state_machine.process_input(_CONN_SEND_HEADERS)
        stream = self._get_stream_by_id(stream_id)
        machine = stream.state_machine
        _advance(machine, _IN_SEND_HEADERS, _SEND_HEADERS if fast else ())
        block = self.encoder.encode(headers)
        flags = _END_STREAM if end_stream else 0
        if end_stream:
            _advance(machine, _IN_SEND_END_STREAM, _SEND_END_STREAM if fast else ())
        elif machine.trailers_sent:
            raise h2.exceptions.ProtocolError("Trailers must have END_STREAM set.")
        stream.request_method = None  # as h2 records it: a response names no method
        out = self._data_to_send
        size = self.max_outbound_frame_size
        n = len(block)
        if n <= size:
            out += _FRAME_HEADER.pack(n >> 8, n & 0xFF, _HEADERS, flags | _END_HEADERS, stream_id)
            out += block
            return
        # Too long for one frame: HEADERS, then CONTINUATION frames (RFC 9113 §6.10).
        out += _FRAME_HEADER.pack(size >> 8, size & 0xFF, _HEADERS, flags, stream_id)
        out += block[:size]
        for start in range(size, n, size):
            part = block[start : start + size]
            last = start + size >= n
            m = len(part)
            out += _FRAME_HEADER.pack(m >> 8, m & 0xFF, _CONTINUATION, _END_HEADERS if last else 0, stream_id)
            out += part

    def send_response_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> None:
        """``send_data`` without padding."""
        stream = self._get_stream_by_id(stream_id)
        n = len(data)
        if n > 0 and (n > self.outbound_flow_control_window or n > stream.outbound_flow_control_window):
            window = min(self.outbound_flow_control_window, stream.outbound_flow_control_window)
            raise h2.exceptions.FlowControlError(f"Cannot send {n} bytes, flow control window is {window}")
        if n > self.max_outbound_frame_size:
            raise h2.exceptions.FrameTooLargeError(
                f"Cannot send frame size {n}, max frame size is {self.max_outbound_frame_size}"
            )
        fast = self.fast_frames
        if self.state_machine.state is not _SERVER_OPEN or not fast:  # (in it, a no-op: _NO_OP_INPUTS)
            self.state_machine.process_input(_CONN_SEND_DATA)
        machine = stream.state_machine
        if not fast or machine.state not in _SEND_DATA_NO_OP:
            _advance(machine, _IN_SEND_DATA, _SEND_DATA if fast else ())
        if end_stream:
            _advance(machine, _IN_SEND_END_STREAM, _SEND_END_STREAM if fast else ())
        out = self._data_to_send
        out += _FRAME_HEADER.pack(n >> 8, n & 0xFF, _DATA, _END_STREAM if end_stream else 0, stream_id)
        out += data
        stream.outbound_flow_control_window -= n
        self.outbound_flow_control_window -= n

    def send_window(self, stream_id: int) -> int:
        """The bytes one DATA frame of the stream may carry now (``local_flow_control_window``
        capped by the peer's frame size); negative after a window shrank."""
        stream = self._get_stream_by_id(stream_id)
        return min(self.outbound_flow_control_window, stream.outbound_flow_control_window, self.max_outbound_frame_size)

    def _receive_priority_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        if frame.depends_on == frame.stream_id:
            stream = self.streams.get(frame.stream_id)
            if stream is not None and not stream.closed:
                self._prepare_for_sending(stream.reset_stream(ErrorCodes.PROTOCOL_ERROR))
                self.self_dependent.append(frame.stream_id)
                frame.depends_on = 0  # so h2 takes the rest of the frame as it is
            # On an idle stream h2's connection error stands: there is no
            # stream to reset (RFC 9113 §6.4 forbids RST_STREAM on idle ones).
        return super()._receive_priority_frame(frame)


class PublicConnection(h2.connection.H2Connection):
    """The same methods as :class:`FastConnection` over h2's public API only
    (``initiate_connection``, ``update_settings``, ``send_headers``,
    ``send_data``, ``end_stream``, ``local_flow_control_window``,
    ``max_outbound_frame_size``, ``data_to_send``): it overrides nothing.

    Our SETTINGS go out with ``update_settings`` after h2's own preface
    SETTINGS and apply when the client acknowledges them, as h2 applies any
    change; h2 keeps its hpack coder and its own content-length and stream
    limit checks (connection errors, see the module docstring)."""

    fast = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: New streams whose HEADERS made them depend on themselves: h2 was
        #: given the frame without the dependency, HTTP2Connection resets them.
        self.self_dependent: list[int] = []
        self._settings: dict[SettingCodes | int, int] = {}
        #: Output taken from h2 to measure it (h2 has no public size for it).
        self._taken = bytearray()

    def configure(self, settings: dict[SettingCodes, int], header_list_cap: int, encoder: Any, decoder: Any) -> None:
        """Remember ``settings`` for :meth:`start` (h2 keeps its own HPACK coder,
        whose header-list limit is the advertised one)."""
        for code, value in settings.items():
            self._settings[code] = value

    def start(self) -> None:
        self.initiate_connection()
        self.update_settings(self._settings)

    def start_upgrade(self, settings_header: bytes) -> None:
        self.initiate_upgrade_connection(settings_header)
        self.update_settings(self._settings)

    def output_pending(self) -> int:
        data = self.data_to_send()
        if data:
            self._taken += data
        return len(self._taken)

    def take_output(self) -> bytes:
        data = self.data_to_send()
        if self._taken:
            data, self._taken = bytes(self._taken) + data, bytearray()
        return data

    def send_response_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self.send_headers(stream_id, headers, end_stream=end_stream)

    def recode_goaway(self, code: int) -> bool:
        """Give the GOAWAY h2 just queued (the last frame of its output, with
        no debug data) the error ``code``: True if there was one."""
        self.output_pending()
        out = self._taken
        if len(out) < 17 or out[-14] != 0x7 or out[-17:-14] != b"\x00\x00\x08" or out[-12:-8] != bytes(4):
            return False
        out[-4:] = int(code).to_bytes(4, "big")
        return True

    def send_response_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> None:
        if not data and end_stream:
            self.end_stream(stream_id)  # h2 4.2's send_data refuses b"" on a negative window
        else:
            self.send_data(stream_id, data, end_stream=end_stream)

    def send_window(self, stream_id: int) -> int:
        return min(self.local_flow_control_window(stream_id), self.max_outbound_frame_size)


def _configuration() -> h2.config.H2Configuration:
    return h2.config.H2Configuration(
        client_side=False,
        header_encoding=None,
        # Checked by http2.py instead, as stream errors (RFC 9113 §8.1.1).
        validate_inbound_headers=False,
        # Cookie fields are joined by http2.py, where the order of fields is kept.
        normalize_inbound_headers=False,
        # Our response head is lowercase, has no connection-specific fields,
        # and its names and values were checked (cycle.check_headers).
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


def new_connection(
    settings: dict[SettingCodes, int], header_list_cap: int, encoder: Any, decoder: Any
) -> FastConnection:
    """A server connection: the fast one, or where :data:`PROBLEM` says it cannot
    run, the public one (typed as the fast one: they share their methods)."""
    cls: Any = FastConnection if PROBLEM is None else PublicConnection
    conn: FastConnection = cls(_configuration())
    conn.configure(settings, header_list_cap, encoder, decoder)
    return conn


def _version() -> str:
    try:
        return version("h2")
    except Exception:  # not installed as a distribution
        return "?"


def _self_test() -> str | None:
    """Requests from h2's own client, answered through the seam and through
    h2's public calls: the same bytes, windows and state; and on the seam, a
    body short of its content-length is taken without a connection error."""
    wires = []
    for short_body in (True, False):
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        client.initiate_connection()
        request = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]
        if short_body:
            client.send_headers(1, [*request, (b"content-length", b"5")])
            client.send_data(1, b"abc", end_stream=True)
        client.send_headers(3, request, end_stream=True)
        wires.append(client.data_to_send())
    out = []
    for fast, wire in zip((True, False), wires, strict=True):
        conn: Any = FastConnection(_configuration()) if fast else h2.connection.H2Connection(_configuration())
        conn.initiate_connection()
        conn.receive_data(wire)
        conn.data_to_send()
        head = [(b":status", b"200"), (b"content-type", b"text/plain")]
        if fast:
            conn.send_response_headers(3, head, False)
            conn.send_response_data(3, b"ok", True)
            pending = conn.output_pending()
        else:
            conn.send_headers(3, head, end_stream=False)
            conn.send_data(3, b"ok", end_stream=True)
        data = conn.data_to_send()
        if fast and pending != len(data):
            return "h2's output buffer is not the one the seam measures"
        out.append((data, conn.outbound_flow_control_window, conn.streams[3].closed))
    if out[0] != out[1]:
        return "the send seam's frames differ from h2's send_headers/send_data"
    return _self_test_receive(wires[0])


def _self_test_receive(wire: bytes) -> str | None:
    """The requests of ``wire`` after the preface, read with the receive fast
    path and without it (all through h2): the same events, bytes and streams."""
    seen = []
    for fast in (True, False):
        conn = FastConnection(_configuration())
        conn.fast_frames = fast
        conn.initiate_connection()
        # The client's preface (24 bytes) and its SETTINGS frame, then the rest.
        cut = 24 + 9 + int.from_bytes(wire[24:27], "big")
        conn.receive_data(wire[:cut])
        events = conn.receive_data(wire[cut:])
        seen.append((repr(events), conn.data_to_send(), sorted(conn.streams), conn.highest_inbound_stream_id))
    if seen[0] != seen[1]:
        return "the receive fast path's events differ from h2's"
    return None


def _problem() -> str | None:
    if _stream_problem is not None:
        return f"h2 {_version()} has no {_stream_problem}"
    missing = [
        f"H2Connection.{n}" for n in CONNECTION_NAMES if not callable(getattr(h2.connection.H2Connection, n, None))
    ]
    missing += [f"H2Stream.{n}" for n in STREAM_NAMES if not callable(getattr(H2Stream, n, None))]
    missing += [
        f"h2.stream._transitions for {name}" for name, (steps, count) in _STEPS_EXPECTED.items() if len(steps) != count
    ]
    if not callable(_decode_headers):
        missing.append("h2.connection._decode_headers")
    transitions = getattr(h2.connection.H2ConnectionStateMachine, "_transitions", {})
    missing += [
        f"H2ConnectionStateMachine._transitions[SERVER_OPEN, {i.name}] as a no-op"
        for i in _NO_OP_INPUTS
        if transitions.get((_SERVER_OPEN, i)) != (None, _SERVER_OPEN)
    ]
    if not isinstance(getattr(h2.connection.H2Connection, "open_inbound_streams", None), property):
        missing.append("H2Connection.open_inbound_streams (a property)")
    if not missing:
        try:
            plain = h2.connection.H2Connection(_configuration())
        except Exception as exc:
            return f"h2 {_version()}: H2Connection() failed ({type(exc).__name__}: {exc})"
        missing += [f"H2Connection().{n}" for n in INSTANCE_NAMES if not hasattr(plain, n)]
        frames = getattr(plain, "incoming_buffer", None)
        missing += [f"H2Connection().incoming_buffer.{n}" for n in BUFFER_NAMES if not hasattr(frames, n)]
        held = [n for n in BUFFER_BYTES if isinstance(getattr(frames, n, None), bytes | bytearray)]
        if held:
            global _buffer_bytes
            _buffer_bytes = held[0]
        else:
            missing.append(f"H2Connection().incoming_buffer.{' or '.join(BUFFER_BYTES)}")
    if missing:
        return f"h2 {_version()} has no {', '.join(missing)}"
    try:
        why = _self_test()
    except Exception as exc:  # AttributeError, TypeError, h2's errors: a changed h2
        why = f"the send seam or the receive fast path failed its check ({type(exc).__name__}: {exc})"
    return None if why is None else f"h2 {_version()}: {why}"


#: Why the fast connection is off, with what the public one changes (None: on).
PROBLEM: str | None = _problem()
if PROBLEM is not None:
    PROBLEM += (
        "; a bad content-length value, a stream over the concurrency limit and a header list over the limit "
        "now end the connection instead of one stream (RFC 9113 §5.4.1)"
    )
