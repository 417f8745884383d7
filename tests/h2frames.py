"""HTTP/2 test helpers: a frame factory (hyperframe + hpack, so tests can send
frames no well-behaved client would) and a raw-socket client that reads frames
back with a deadline."""

from __future__ import annotations

import os
import socket
import ssl
import time
from typing import Any

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x5, 0x6, 0x7
CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x8, 0x9, 0xB


def request_headers(path: str = "/", method: str = "GET", authority: str = "example.com", **extra: str) -> list:
    """Pseudo-headers of a request plus ``extra`` fields (underscores become dashes)."""
    headers = [(b":method", method.encode()), (b":scheme", b"http"), (b":path", path.encode())]
    if authority:
        headers.append((b":authority", authority.encode()))
    headers += [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
    return headers


class Frames:
    """Builds serialised frames; one HPACK encoder per connection."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()

    def preface(self, **settings: int) -> bytes:
        return PREFACE + self.settings(**settings)

    def settings(self, ack: bool = False, **settings: int) -> bytes:
        frame = SettingsFrame(0)
        if ack:
            frame.flags.add("ACK")
        codes = {"initial_window_size": 0x4, "max_frame_size": 0x5, "header_table_size": 0x1, "enable_push": 0x2}
        for name, value in settings.items():
            frame.settings[codes[name]] = value
        return frame.serialize()

    def block(self, headers: list) -> bytes:
        return self.encoder.encode(headers)

    def headers(
        self, stream_id: int, headers: list | bytes, end_stream: bool = True, end_headers: bool = True, **kw: Any
    ) -> bytes:
        frame = HeadersFrame(stream_id, **kw)
        frame.data = headers if isinstance(headers, bytes) else self.block(headers)
        if "depends_on" in kw or "stream_weight" in kw:
            frame.flags.add("PRIORITY")
        if end_stream:
            frame.flags.add("END_STREAM")
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame.serialize()

    def request(self, stream_id: int, path: str = "/", end_stream: bool = True, **extra: str) -> bytes:
        return self.headers(stream_id, request_headers(path, **extra), end_stream=end_stream)

    def continuation(self, stream_id: int, data: bytes, end_headers: bool = False) -> bytes:
        frame = ContinuationFrame(stream_id)
        frame.data = data
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame.serialize()

    def data(self, stream_id: int, data: bytes, end_stream: bool = False, pad: int = 0) -> bytes:
        frame = DataFrame(stream_id)
        frame.data = data
        if end_stream:
            frame.flags.add("END_STREAM")
        if pad:
            frame.flags.add("PADDED")
            frame.pad_length = pad
        return frame.serialize()

    def rst(self, stream_id: int, code: int = CANCEL) -> bytes:
        return RstStreamFrame(stream_id, error_code=code).serialize()

    def window_update(self, stream_id: int, increment: int) -> bytes:
        return WindowUpdateFrame(stream_id, window_increment=increment).serialize()

    def ping(self, payload: bytes = b"12345678", ack: bool = False) -> bytes:
        frame = PingFrame(0, opaque_data=payload)
        if ack:
            frame.flags.add("ACK")
        return frame.serialize()

    def priority(self, stream_id: int, depends_on: int = 0, weight: int = 15) -> bytes:
        return PriorityFrame(stream_id, depends_on=depends_on, stream_weight=weight).serialize()

    def goaway(self, last_stream_id: int = 0, code: int = NO_ERROR) -> bytes:
        return GoAwayFrame(0, last_stream_id=last_stream_id, error_code=code).serialize()

    def unknown(self, kind: int = 0x20, payload: bytes = b"") -> bytes:
        return ExtensionFrame(kind, 0, 0, payload).serialize()


def parse_frames(buffer: bytearray) -> list[Frame]:
    """Take every complete frame off the front of ``buffer``."""
    frames = []
    while len(buffer) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(bytes(buffer[:9])))
        if len(buffer) < 9 + length:
            break
        frame.parse_body(memoryview(bytes(buffer[9 : 9 + length])))
        del buffer[: 9 + length]
        frames.append(frame)
    return frames


class RawClient:
    """An HTTP/2 client on a real socket that sends whatever frames a test
    builds and collects what the server sends, with a deadline."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None = None, settings: dict | None = None) -> None:
        sock = socket.create_connection((host, port), timeout=10)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.f = Frames()
        self.buffer = bytearray()
        self.frames: list[Frame] = []
        self.closed = False
        self.decoder = hpack.Decoder()
        self.send(self.f.preface(**(settings or {})))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float = 0.2) -> list[Frame]:
        """Frames that arrive within ``timeout`` seconds (fewer if the server closes)."""
        deadline = time.monotonic() + timeout
        new: list[Frame] = []
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            except (ConnectionResetError, ssl.SSLError, OSError):
                chunk = b""
            if not chunk:
                self.closed = True
                break
            self.buffer += chunk
            parsed = parse_frames(self.buffer)
            for frame in parsed:
                if isinstance(frame, HeadersFrame):
                    # HPACK state is per connection: decode every block once, in order.
                    frame.fields = self.decoder.decode(frame.data, raw=True)  # type: ignore[attr-defined]
            self._ack_settings(parsed)
            new += parsed
        self.frames += new
        return new

    def _ack_settings(self, frames: list[Frame]) -> None:
        for frame in frames:
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                try:
                    self.send(self.f.settings(ack=True))
                except OSError:
                    pass

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> Frame:
        """The first frame (seen or arriving) for which ``predicate`` is true."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for frame in self.frames[seen:]:
                if predicate(frame):
                    return frame
            seen = len(self.frames)
            if self.closed or time.monotonic() > deadline:
                raise AssertionError(f"no such frame; got {[repr(f) for f in self.frames[-20:]]}")
            self.read(0.1)

    def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError("the server did not close the connection")
            self.read(0.1)

    def wait_tcp_closed(self, timeout: float = 5.0) -> None:
        """Wait until the server has closed the connection down to TCP: the
        end of its stream (over TLS: close_notify, or EOF) and then EOF (or a
        reset) on the socket itself, so that a TLS layer that said goodbye but
        left the socket open fails."""
        deadline = time.monotonic() + timeout
        self.wait_closed(timeout)
        # The TLS object has seen its end; read the socket underneath it.
        raw = socket.socket(fileno=os.dup(self.sock.fileno()))
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the server left the TCP connection open")
                raw.settimeout(left)
                try:
                    if not raw.recv(65536):
                        return
                except TimeoutError:
                    raise AssertionError("the server left the TCP connection open") from None
                except OSError:
                    return  # reset: closed as well
        finally:
            raw.close()

    def goaway(self, timeout: float = 10.0) -> GoAwayFrame:
        return self.wait_for(lambda f: isinstance(f, GoAwayFrame), timeout)  # type: ignore[return-value]

    def rst(self, stream_id: int, timeout: float = 10.0) -> RstStreamFrame:
        return self.wait_for(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == stream_id, timeout)  # type: ignore[return-value]

    def response(self, stream_id: int, timeout: float = 10.0) -> tuple[dict[bytes, bytes], bytes, list]:
        """(headers, body, trailers) of the response on ``stream_id``."""
        self.wait_for(lambda f: f.stream_id == stream_id and "END_STREAM" in f.flags, timeout)
        headers: dict[bytes, bytes] = {}
        trailers: list = []
        body = b""
        for frame in self.frames:
            if frame.stream_id != stream_id:
                continue
            if isinstance(frame, HeadersFrame):
                fields = frame.fields  # type: ignore[attr-defined]
                if headers and fields[0][0] != b":status":
                    trailers = fields
                elif fields[0] == (b":status", b"100"):
                    continue
                else:
                    headers = dict(fields)
            elif isinstance(frame, DataFrame):
                body += frame.data
        return headers, body, trailers

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- the app the HTTP/2 end-to-end tests serve ("tests.h2frames:app") ----------------

_arrived = 0
_barrier: Any = None
_gate_event: Any = None


def _gate() -> Any:
    import asyncio

    global _gate_event
    if _gate_event is None:
        _gate_event = asyncio.Event()
    return _gate_event


async def app(scope: dict, receive: Any, send: Any) -> None:
    """Does what the path names; prints markers the tests wait for.

    ``/trailers`` answers with trailers when the scope offers them; ``/barrier?n=N``
    answers only once N requests are in progress at once (each its own task);
    ``/wait-disconnect`` waits for ``http.disconnect`` and prints it;
    ``/hang`` never answers and prints when it is cancelled; ``/echo`` streams
    the body back; ``/upload`` answers with the body length;
    ``/download?mib=N`` sends N MiB; ``/slow?ms=N`` answers after N ms;
    ``/gate`` reads nothing until a ``/open`` request comes, then is ``/upload``.
    """
    import asyncio

    global _arrived, _barrier
    if scope["type"] != "http":
        return
    path = scope["path"]
    query = scope["query_string"].decode()
    value = query.partition("=")[2]
    number = int(value) if value.isdigit() else 0
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
    if path == "/trailers":
        trailers = "http.response.trailers" in scope.get("extensions", {})
        await send({**start, "trailers": trailers})
        await send({"type": "http.response.body", "body": b"payload"})
        if trailers:
            await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")]})
        return
    if path == "/barrier":
        if _barrier is None:
            _barrier = asyncio.Event()
        _arrived += 1
        if _arrived >= number:
            _barrier.set()
        await _barrier.wait()
        task = asyncio.current_task()
        await send(start)
        await send({"type": "http.response.body", "body": b"%d" % id(task)})
        return
    if path in ("/wait-disconnect", "/hang"):
        print(f"STARTED {path} {query}", flush=True)
        try:
            if path == "/hang":
                await asyncio.Event().wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            print(f"DISCONNECTED {query}", flush=True)
        except asyncio.CancelledError:
            print(f"CANCELLED {query}", flush=True)
            raise
        return
    if path == "/echo":
        await send(start)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/open":
        _gate().set()
    if path == "/gate":
        print("GATED", flush=True)
        await _gate().wait()
        path = "/upload"
    if path == "/upload":
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send(start)
        await send({"type": "http.response.body", "body": b"%d" % total})
        return
    if path == "/download":
        chunk = b"x" * 65536
        await send(start)
        for _ in range(number * 16):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/slow":
        await asyncio.sleep(number / 1000)
    await send(start)
    await send({"type": "http.response.body", "body": b"ok"})
