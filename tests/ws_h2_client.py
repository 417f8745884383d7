"""An RFC 8441 WebSocket client of our own: HTTP/2 (the ``h2`` library, client
side) on a real socket, an extended CONNECT per WebSocket, then masked frames
(RFC 6455 §5.3, as RFC 8441 §5 keeps them) in the stream's DATA both ways.

Its WebSocket objects answer as the ``websockets`` sync client does where the
tests use it (``send``, ``recv``, ``close``, ``subprotocol``,
``response.headers``, ``close_code``; a refused handshake raises
``InvalidStatus``, a closed socket ``ConnectionClosed*``), so the WebSocket
test matrices run over both transports. Several WebSockets (and plain requests)
share one connection. Everything runs in the calling thread: waiting for
something reads the socket.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
import zlib
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from hyperframe.frame import GoAwayFrame
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from tests.ws_apps import client_frame as frame

__all__ = ["H2Client", "H2WebSocket", "frame", "open_ws_h2"]

_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1


class H2Client:
    """One HTTP/2 connection (h2c by prior knowledge, or TLS with ALPN ``h2``)."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        window: int = 65535,
        auto_ack: bool = True,
        timeout: float = 10.0,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        self.authority = f"{host}:{port}"
        self.scheme = "https" if tls is not None else "http"
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False)
        )
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        #: Acknowledge DATA as it arrives (off: the client reads nothing, its windows shut).
        self.auto_ack = auto_ack
        self.closed = False
        self.goaway: Any = None
        self.inbound = b""
        self.streams: dict[int, dict[str, Any]] = {}
        self.conn.initiate_connection()
        self.flush()
        self.wait(lambda: self.conn.remote_settings.enable_connect_protocol is not None and self.settled, timeout)

    settled = False

    # -- I/O ---------------------------------------------------------------------------

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def pump(self, timeout: float) -> None:
        """Read what arrives within ``timeout`` seconds (at most one recv)."""
        if self.closed:
            return
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return
        except (ConnectionResetError, ssl.SSLError, OSError):
            chunk = b""
        if not chunk:
            self.closed = True
            for state in self.streams.values():
                state["ended"] = True
            return
        for event in self.conn.receive_data(self._without_goaway(chunk)):
            self._event(event)
        self.flush()

    def _without_goaway(self, chunk: bytes) -> bytes:
        """The frames of ``chunk`` less a graceful GOAWAY, which is recorded
        here: h2 neither sends nor receives anything after one, where RFC 9113
        §6.8 lets the streams it spares finish."""
        buffer = self.inbound = self.inbound + chunk
        out = bytearray()
        while len(buffer) >= 9:
            end = 9 + int.from_bytes(buffer[:3], "big")
            if len(buffer) < end:
                break
            if buffer[3] == 0x07:
                frame = GoAwayFrame(0)
                frame.parse_body(memoryview(buffer[9:end]))
                if frame.error_code:
                    out += buffer[:end]  # an error: h2 ends the connection
                self.goaway = frame
            else:
                out += buffer[:end]
            buffer = buffer[end:]
        self.inbound = buffer
        return bytes(out)

    def wait(self, condition: Any, timeout: float = 10.0, what: str = "the server") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                result = condition()
                if result:
                    return result
                raise TimeoutError(f"timed out waiting for {what}")
            self.pump(min(left, 0.2))

    def _event(self, event: Any) -> None:
        kind = type(event)
        if kind is h2.events.RemoteSettingsChanged:
            self.settled = True
        state = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if kind is h2.events.ResponseReceived and state is not None:
            state["headers"] = list(event.headers)
        elif kind is h2.events.DataReceived and state is not None:
            state["data"] += event.data
            state["received"] += event.flow_controlled_length
            if self.auto_ack:
                self.ack(event.stream_id, event.flow_controlled_length)
        elif kind is h2.events.DataReceived:
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif kind is h2.events.StreamEnded and state is not None:
            state["ended"] = True
        elif kind is h2.events.StreamReset and state is not None:
            state["ended"] = True
            state["reset"] = event.error_code
        elif kind is h2.events.ConnectionTerminated:
            self.goaway = event

    def ack(self, stream_id: int, size: int) -> None:
        with contextlib.suppress(Exception):
            self.conn.acknowledge_received_data(size, stream_id)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- requests ----------------------------------------------------------------------

    def open_stream(self, headers: list[tuple[bytes, bytes]], end_stream: bool = False) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.streams[stream_id] = {"headers": None, "data": bytearray(), "received": 0, "ended": False, "reset": None}
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        self.flush()
        return stream_id

    def answer(self, headers: list[tuple[bytes, bytes]], end_stream: bool = False, head_only: bool = False) -> dict:
        """Open a stream with ``headers`` and wait for its end (or, with
        ``head_only``, its response head); returns the stream's state."""
        state = self.streams[self.open_stream(headers, end_stream)]
        self.wait(lambda: state["ended"] or (head_only and state["headers"] is not None))
        return state

    def request(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """A plain GET on the same connection: (status, body)."""
        stream_id = self.open_stream(
            [
                (b":method", b"GET"),
                (b":scheme", self.scheme.encode()),
                (b":path", path.encode()),
                (b":authority", self.authority.encode()),
            ],
            end_stream=True,
        )
        state = self.streams[stream_id]
        self.wait(lambda: state["ended"], timeout)
        return int(dict(state["headers"] or [])[b":status"]), bytes(state["data"])

    def connect_headers(
        self,
        path: str,
        subprotocols: Any = None,
        extra: Any = (),
        compression: bool = False,
        protocol: bytes = b"websocket",
    ) -> list[tuple[bytes, bytes]]:
        """An extended CONNECT's header list (RFC 8441 §4, §5)."""
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", protocol),
            (b":scheme", self.scheme.encode()),
            (b":path", path.encode()),
            (b":authority", self.authority.encode()),
            (b"sec-websocket-version", b"13"),
        ]
        if subprotocols:
            headers.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
        if compression:
            headers.append((b"sec-websocket-extensions", b"permessage-deflate"))
        headers += [
            (k.lower().encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v) for k, v in extra
        ]
        return headers

    def websocket(
        self,
        path: str,
        subprotocols: Any = None,
        additional_headers: Any = None,
        origin: str | None = None,
        compression: str | None = None,
        open_timeout: float = 10.0,
        **_: Any,
    ) -> H2WebSocket:
        """Open a WebSocket: raises ``InvalidStatus`` when refused."""
        extra = list(additional_headers.items() if isinstance(additional_headers, dict) else additional_headers or ())
        if origin is not None:
            extra.append(("origin", origin))
        stream_id = self.open_stream(self.connect_headers(path, subprotocols, extra, compression == "deflate"))
        state = self.streams[stream_id]
        self.wait(lambda: state["headers"] is not None or state["ended"], open_timeout, "the handshake's answer")
        fields = state["headers"] or [(b":status", b"0")]
        status = int(dict(fields)[b":status"])
        headers = Headers((k.decode(), v.decode("latin-1")) for k, v in fields if not k.startswith(b":"))
        if status != 200:
            with contextlib.suppress(TimeoutError):
                self.wait(lambda: state["ended"], open_timeout)
            response = Response(status, "", headers, bytes(state["data"]))
            raise InvalidStatus(response)
        return H2WebSocket(self, stream_id, Response(status, "", headers, b""))


class H2WebSocket:
    """One WebSocket on a stream of an :class:`H2Client`."""

    def __init__(self, client: H2Client, stream_id: int, response: Response) -> None:
        self.client = client
        self.stream_id = stream_id
        self.response = response
        self.state = client.streams[stream_id]
        self.subprotocol = response.headers.get("sec-websocket-protocol")
        self.compressed = "permessage-deflate" in response.headers.get("sec-websocket-extensions", "")
        self.inflater = zlib.decompressobj(-15) if self.compressed else None
        self.deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15) if self.compressed else None
        self.close_code: int | None = None
        self.close_reason = ""
        self.sent_close: Close | None = None
        self.close_received_first = False
        self.parts: list[bytes] = []
        self.opcode = 0
        self.rsv1 = False
        self.messages: list[str | bytes] = []
        self.pongs: list[bytes] = []
        #: The connection is this WebSocket's alone (closed with it).
        self.own_client = False

    # -- writing -------------------------------------------------------------------------

    def send_raw(self, data: bytes, end_stream: bool = False) -> None:
        """``data`` as DATA on the stream (split to the frame size; waits for window)."""
        client = self.client
        view = memoryview(data)
        while True:
            if client.closed or self.state["ended"]:
                return
            try:
                window = client.conn.local_flow_control_window(self.stream_id)
            except Exception:  # noqa: BLE001 (the stream is gone)
                return
            size = min(window, client.conn.max_outbound_frame_size, len(view))
            if size or not view:
                last = size == len(view)
                client.conn.send_data(self.stream_id, bytes(view[:size]), end_stream=end_stream and last)
                client.flush()
                view = view[size:]
                if last:
                    return
            else:
                client.pump(0.1)

    def send(self, message: str | bytes, compress: bool = True) -> None:
        opcode, payload = (1, message.encode()) if isinstance(message, str) else (2, bytes(message))
        rsv = 0
        if self.deflater is not None and compress:
            payload = self.deflater.compress(payload) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
            payload = payload[:-4] if payload.endswith(_TAIL) else payload
            rsv = 4
        self.send_raw(frame(opcode, payload, rsv=rsv))

    def ping(self, payload: bytes = b"ping") -> None:
        self.send_raw(frame(9, payload))

    def close(self, code: int = 1000, reason: str = "", timeout: float = 10.0) -> None:
        """Send a Close and wait for the server's (RFC 6455 §7.1.2), then END_STREAM."""
        if self.sent_close is None and not self.state["ended"]:
            self.sent_close = Close(code, reason)
            self.send_raw(frame(8, struct.pack("!H", code) + reason.encode()))
        with contextlib.suppress(TimeoutError, ConnectionClosedOK, ConnectionClosedError):
            while self.close_code is None:
                self._next(timeout)
        self.end_stream()

    def end_stream(self) -> None:
        with contextlib.suppress(Exception):
            self.client.conn.end_stream(self.stream_id)
            self.client.flush()

    def reset(self, code: int = 8) -> None:
        """RST_STREAM (CANCEL by default): the WebSocket's TCP reset."""
        self.client.conn.reset_stream(self.stream_id, code)
        self.client.flush()

    def __enter__(self) -> H2WebSocket:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            with contextlib.suppress(Exception):
                self.close()
        finally:
            if self.own_client:
                self.client.close()

    # -- reading -------------------------------------------------------------------------

    def recv(self, timeout: float = 10.0) -> str | bytes:
        """The next message; ``ConnectionClosed*`` once the server closed."""
        while not self.messages:
            self._next(timeout)
        return self.messages.pop(0)

    def _closed(self) -> None:
        code = self.close_code
        rcvd = Close(code, self.close_reason) if code is not None else None
        sent = self.sent_close
        order = None if rcvd is None or sent is None else self.close_received_first
        if code in (1000, 1001):
            raise ConnectionClosedOK(rcvd, sent, order)
        raise ConnectionClosedError(rcvd, sent, order)

    def _next(self, timeout: float) -> None:
        """Read until one more frame is parsed."""
        if self.close_code is not None:
            self._closed()
        client = self.client
        deadline = time.monotonic() + timeout
        while not self._parse():
            if self.state["ended"] and not self.state["data"]:
                self._closed()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no WebSocket frame from the server")
            client.pump(min(left, 0.2))

    def _parse(self) -> bool:
        """Parse one server frame from the stream's data; True if one was."""
        data = self.state["data"]
        if len(data) < 2:
            return False
        b0, b1 = data[0], data[1]
        assert not b1 & 0x80, "a server frame is never masked (RFC 6455 §5.1)"
        n, start = b1 & 0x7F, 2
        if n == 126:
            if len(data) < 4:
                return False
            n, start = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            if len(data) < 10:
                return False
            n, start = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < start + n:
            return False
        payload = bytes(data[start : start + n])
        del data[: start + n]
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if opcode == 8:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.close_reason = payload[2:].decode()
            if self.sent_close is None:
                self.close_received_first = True
                self.sent_close = Close(self.close_code, "")
                self.send_raw(frame(8, payload[:2]))
        elif opcode == 9:
            self.send_raw(frame(10, payload))
        elif opcode == 10:
            self.pongs.append(payload)
        else:
            if opcode:
                self.opcode, self.rsv1, self.parts = opcode, bool(b0 & 0x40), []
            self.parts.append(payload)
            if fin:
                message = b"".join(self.parts)
                if self.rsv1:
                    assert self.inflater is not None
                    message = self.inflater.decompress(message + _TAIL)
                self.messages.append(message.decode() if self.opcode == 1 else message)
        return True


def open_ws_h2(server: Any, path: str, tls: ssl.SSLContext | None = None, **kwargs: Any) -> H2WebSocket:
    """A WebSocket over HTTP/2 to ``path`` on the test ``server``, on a
    connection of its own that closes with it."""
    client = H2Client(server.host, server.port, tls=tls)
    try:
        ws = client.websocket(path, **kwargs)
    except BaseException:
        client.close()
        raise
    ws.own_client = True
    return ws
