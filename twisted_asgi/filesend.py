"""A response body from a file: the ASGI extensions ``http.response.pathsend``
and ``http.response.zerocopysend``.

The app's ``send()`` runs :func:`send_file` for a
:class:`~twisted_asgi.events.FileBody`. On a plain TCP (or unix) HTTP/1.1
connection the bytes go from the file to the socket with ``os.sendfile``,
from the event loop, never through Python: the connection frames them
(:meth:`HTTP11Handler.send_file_frame <twisted_asgi.h1channel.HTTP11Handler.send_file_frame>`),
and while the socket takes nothing the app call waits as for any body
(the connection is paused: back-pressure, ``timeout_send``). Over TLS, on
HTTP/2, or where the sendfile path is off, the file is read in
:data:`CHUNK` pieces, each sent as an ``http.response.body`` chunk and waited
for in the same way: never the whole file in memory.

A file the server opens (pathsend) is closed in every outcome. A file that
cannot be opened, or is shorter than what was to be sent, is logged once:
before the response head went out the client gets 500, after it the
connection (HTTP/2: the stream) is dropped, so that the client sees a short
body rather than a corrupt one; ``send()`` then raises
:class:`~twisted_asgi.events.ClientDisconnected`. A path that is no regular
file, a descriptor that is not open, are the app's errors
(:class:`~twisted_asgi.events.AppError`).
"""

from __future__ import annotations

import asyncio
import os
import stat
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from twisted.logger import Logger

from .events import AppError, Body, ClientDisconnected, FileBody

if TYPE_CHECKING:
    from ._upstream.twisted import FileSink
    from .runner import HTTPTask

__all__ = ["CHUNK", "FileCarrier", "send_file"]

log = Logger(namespace="twisted_asgi.http")

#: Bytes read and sent at a time where the file cannot go straight to the socket.
CHUNK = 64 * 1024

#: The most bytes one ``os.sendfile`` call is asked for.
_SENDFILE_MAX = 16 * 1024 * 1024
#: Bytes sent to a socket that keeps taking them before the event loop gets a
#: pass (other connections' turn), as when the socket is full.
_SENDFILE_TURN = 8 * 1024 * 1024


class FileCarrier(Protocol):
    """What :func:`send_file` needs from an HTTP carrier, beside ``send_body``."""

    @property
    def write_paused(self) -> bool: ...

    def send_body(self, task: HTTPTask, event: Body) -> None: ...

    def file_sink(self, task: HTTPTask) -> FileSink | None:
        """The sink that sends straight to the socket, or None (read in chunks)."""

    def send_file_frame(self, task: HTTPTask, n: int, more: bool) -> tuple[int, bytes]:
        """Write the framing before ``n`` file bytes; return how many of them
        go out and the framing to write after them (sendfile path only)."""

    def send_file_sent(self, task: HTTPTask, sent: int) -> None:
        """``sent`` bytes went to the socket (sendfile path only)."""

    def wait_writable(self, task: HTTPTask, sink: FileSink) -> None:
        """Pause the app's ``send()`` until the socket takes more (sendfile path only)."""

    def send_file_end(self, task: HTTPTask, after: bytes) -> None:
        """Write ``after``; the file's bytes are sent (sendfile path only)."""

    def file_failed(self, task: HTTPTask, dropped: bool) -> None:
        """The file could not be sent (logged): answer 500 while the head is
        unsent, else drop the connection or stream. ``dropped``: the client
        is gone already (a reset met by ``os.sendfile``)."""


def _open(task: HTTPTask, event: FileBody) -> tuple[int, int, int, bool]:
    """The descriptor, first offset and byte count to send, and whether the
    server opened the descriptor (and must close it)."""
    owned = False
    if event.path is not None:
        try:
            fd = os.open(event.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            _failed(task, f"cannot open {event.path!a}: {exc.strerror or exc}")
        owned = True
        what = f"path {event.path!a}"
    else:
        file: Any = event.file
        try:
            fd = file if type(file) is int else file.fileno()
        except (OSError, ValueError) as exc:
            raise AppError(f"'file' of http.response.zerocopysend has no descriptor: {exc}") from None
        if type(fd) is not int:
            raise AppError(f"'file' of http.response.zerocopysend has no descriptor, fileno() gave {fd!r}")
        what = f"descriptor {fd}"
    try:
        try:
            info = os.fstat(fd)
            offset = event.offset
            if offset is None:
                offset = 0 if owned else os.lseek(fd, 0, os.SEEK_CUR)
        except OSError as exc:
            raise AppError(f"http.response.zerocopysend: {what} cannot be read: {exc.strerror or exc}") from None
        if not stat.S_ISREG(info.st_mode):
            raise AppError(f"{what} is not a regular file; only a regular file can be sent")
        size = info.st_size
        count = event.count
        if count is None:
            count = max(size - offset, 0)
        elif offset + count > size:
            _failed(task, f"{what} has {max(size - offset, 0)} bytes from offset {offset}, not the {count} to send")
    except BaseException:
        if owned:
            os.close(fd)
        raise
    return fd, offset, count, owned


def _failed(task: HTTPTask, why: str, dropped: bool = False) -> NoReturn:
    """Log ``why`` once (not a client that left: ``dropped``), end the
    response as :meth:`FileCarrier.file_failed` says, and raise."""
    carrier: FileCarrier = task.carrier
    if not task.cycle.disconnected:
        if not dropped:
            log.warn("Could not send a file for {request}: {why}", request=task.where(), why=why)
        carrier.file_failed(task, dropped)
        task.feed_disconnect()
    raise ClientDisconnected(why)


async def send_file(task: HTTPTask, event: FileBody) -> None:
    """Send the file ``event`` names as (part of) the response body of ``task``."""
    carrier: FileCarrier = task.carrier
    try:
        fd, offset, count, owned = _open(task, event)
    except AppError:
        # The cycle took the message as the end of the body, so the app's
        # exception ends nothing: answer 500 here (nothing of it was sent).
        if not task.cycle.disconnected:
            carrier.file_failed(task, False)
        raise
    try:
        if task.scope.get("method") == "HEAD":
            count = 0  # no body goes out: nothing to read
        try:
            sink = carrier.file_sink(task)
            if sink is not None:
                await _send_direct(task, carrier, sink, fd, offset, count, event.more)
            else:
                await _send_chunks(task, carrier, fd, offset, count, event.more)
        except ClientDisconnected:
            # Whoever closed the connection under the send: the app's send()
            # raises as after any client that left (not logged as its error).
            task.feed_disconnect()
            raise
        if not owned and event.offset is None:
            os.lseek(fd, offset + count, os.SEEK_SET)  # as os.sendfile without an offset would leave it
    finally:
        if owned:
            os.close(fd)


async def _wait(task: HTTPTask, last: bool = False) -> None:
    """The app's ``send()`` back-pressure; raise once the client is gone
    (after the ``last`` bytes, as ``send()`` of a body does: only if it left
    while the call waited)."""
    if task.carrier.write_paused:
        await task._drain()
    if not last and task.cycle.disconnected:
        raise ClientDisconnected("client disconnected")


async def _send_chunks(task: HTTPTask, carrier: FileCarrier, fd: int, offset: int, count: int, more: bool) -> None:
    """Read ``count`` bytes from ``offset`` in :data:`CHUNK` pieces, each an
    ``http.response.body`` chunk."""
    end = offset + count
    while True:
        n = min(CHUNK, end - offset)
        data = os.pread(fd, n, offset) if n else b""
        if len(data) < n:
            _failed(task, f"the file ended {end - offset - len(data)} bytes early while it was sent")
        offset += n
        last = offset >= end
        carrier.send_body(task, Body(data, more or not last))
        await _wait(task, last)
        if last:
            return


async def _send_direct(
    task: HTTPTask, carrier: FileCarrier, sink: FileSink, fd: int, offset: int, count: int, more: bool
) -> None:
    """``os.sendfile`` the bytes straight to the socket, after the framing
    before them, waiting for the socket whenever it is full."""
    n, after = carrier.send_file_frame(task, count, more)
    end = offset + n
    turn = offset + _SENDFILE_TURN
    while offset < end:
        if offset >= turn:
            await asyncio.sleep(0)
            if task.cycle.disconnected:
                raise ClientDisconnected("client disconnected")
            turn = offset + _SENDFILE_TURN
        if not sink.ready():
            carrier.wait_writable(task, sink)
            await _wait(task)
            continue
        try:
            sent = sink.send(fd, offset, min(end - offset, _SENDFILE_MAX))
        except OSError as exc:
            _failed(task, f"the client's socket failed: {exc.strerror or exc}", dropped=True)
        if sent is None:
            carrier.wait_writable(task, sink)
            await _wait(task)
            turn = offset + _SENDFILE_TURN
            continue
        if not sent:
            _failed(task, f"the file ended {end - offset} bytes early while it was sent")
        offset += sent
        carrier.send_file_sent(task, sent)
    carrier.send_file_end(task, after)
    await _wait(task, True)
