"""Sans-IO ASGI state machine for one HTTP request/response (``HTTPCycle``).

The cycle owns two things, and no I/O:

* the *receive* side: request body chunks queued for the app, turned into
  ``http.request`` / ``http.disconnect`` messages (ASGI www spec, "Request" and
  "Disconnect" events);
* the *send* side: every message the app sends is checked against the transition
  table below and turned into a wire event (:class:`~twisted_asgi.events.Response`,
  :class:`~twisted_asgi.events.Body`, :class:`~twisted_asgi.events.Trailers`,
  :class:`~twisted_asgi.events.EarlyHint`).
  A message that breaks the spec raises :class:`~twisted_asgi.events.AppError`
  with an exact message, before anything of it reaches the wire.

The same class serves an HTTP/1.1 request and an HTTP/2 stream.
Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from .events import AppError, Body, EarlyHint, FileBody, Headers, Response, Trailers
from .fieldrules import VALUE_MARKS, is_token

__all__ = ["REPORT_EVERY_READ", "HTTPCycle", "SendState", "check_headers"]


class SendState:
    """Where the app is in producing its response.

    Plain constants, not an :class:`enum.Enum`: the state is read several times
    per request, and an enum member lookup costs ten times a global's.
    """

    START = "start"  # nothing sent yet
    BODY = "body"  # http.response.start sent
    TRAILERS = "trailers"  # last body sent, trailers promised
    DONE = "done"  # response complete


_START = SendState.START
_BODY = SendState.BODY
_TRAILERS = SendState.TRAILERS
_DONE = SendState.DONE


# The transition table: for each state, the message type it accepts.
_EXPECTED = {
    _START: "http.response.start",
    _BODY: "http.response.body",
    _TRAILERS: "http.response.trailers",
}

# Names must be tokens (RFC 9110 §5.1) and values may hold no control byte but
# HTAB, nor DEL (§5.5): the rules of twisted_asgi.fieldrules, the same on HTTP/1.1
# and HTTP/2. (NEL, obs-text, is allowed: only request values refuse it.)

# Header names already found valid: apps send the same few names on every
# response, and a set lookup is cheaper than the token check. Bounded in
# count and name length, so names an app makes up cannot grow it without end.
_GOOD_NAMES: set[bytes] = set()
_GOOD_NAMES_MAX = 512
_GOOD_NAME_BYTES = 64

_DISCONNECT = {"type": "http.disconnect"}

#: The body messages of the ASGI extensions that send a file (see :meth:`HTTPCycle._file_send`).
_FILE_SENDS = frozenset({"http.response.pathsend", "http.response.zerocopysend"})


def check_headers(headers: Any, what: str) -> Headers:
    """Validate app-given header pairs; return them as a list of byte tuples."""
    if headers is None:
        return []
    out: Headers = []
    try:
        for name, value in headers:
            if type(name) is not bytes or type(value) is not bytes:
                if not isinstance(name, bytes) or not isinstance(value, bytes):
                    raise AppError(f"{what} header names and values must be bytes, got {name!r}: {value!r}")
                name, value = bytes(name), bytes(value)
            if name not in _GOOD_NAMES:
                if not is_token(name):
                    raise AppError(f"Invalid HTTP header name {name!r} in {what}")
                if len(_GOOD_NAMES) < _GOOD_NAMES_MAX and len(name) <= _GOOD_NAME_BYTES:
                    _GOOD_NAMES.add(name)
            if 0 in value.translate(VALUE_MARKS):  # forbidden bytes become NUL
                raise AppError(f"Invalid HTTP header value {value!r} for {name!r} in {what}")
            out.append((name, value))
    except (TypeError, ValueError):
        raise AppError(f"{what} headers must be an iterable of [name, value] pairs") from None
    return out


#: The ``body_limit`` of a cycle whose shell wants to hear of every body byte
#: the app takes (``over_limit`` as soon as anything is queued): an HTTP/2
#: stream, which acknowledges received DATA only as the app takes it (the
#: client's flow-control window is the bound on what is queued).
REPORT_EVERY_READ = 0


class HTTPCycle:
    """One request's ASGI conversation, without I/O.

    :param body_limit: bytes of unread body to queue before :attr:`over_limit`
        says the shell should stop reading.
    """

    __slots__ = (
        "state",
        "body",
        "queued",
        "body_limit",
        "request_complete",
        "body_delivered",
        "disconnected",
        "expect_continue",
        "trailers_wanted",
        "status",
    )

    def __init__(self, body_limit: int, has_body: bool = True, expect_continue: bool = False) -> None:
        self.state = _START
        self.body: deque[bytes] = deque()
        self.queued = 0
        self.body_limit = body_limit
        self.request_complete = not has_body
        self.body_delivered = False
        self.disconnected = False
        #: The client waits for "100 Continue" before sending its body.
        self.expect_continue = expect_continue
        self.trailers_wanted = False
        self.status = 0

    # -- receive side ------------------------------------------------------

    def feed_data(self, data: bytes) -> bool:
        """Queue body bytes; return True when the queue is over its limit."""
        self.body.append(data)
        self.queued += len(data)
        self.expect_continue = False
        return self.queued > self.body_limit

    def feed_end(self) -> None:
        """The request body is complete."""
        self.request_complete = True
        self.expect_continue = False

    def feed_disconnect(self) -> None:
        """The client is gone: every later receive() says so."""
        self.disconnected = True

    def take_continue(self) -> bool:
        """Whether the client waits for "100 Continue" before sending its body
        (RFC 9110 §10.1.1): True once, when the app first waits for the body."""
        wanted = self.expect_continue
        self.expect_continue = False
        return wanted

    def drop_body(self) -> int | None:
        """The response is complete and the app left the body unread: drop what
        is queued. Returns how many bytes were queued, or None when the client
        was never asked for the body (it waits for "100 Continue" and may never
        send it)."""
        if self.expect_continue:
            return None
        queued = self.queued
        self.body.clear()
        self.queued = 0
        return queued

    @property
    def over_limit(self) -> bool:
        """True while more body is queued than the app should be given ahead."""
        return self.queued > self.body_limit

    def next_message(self) -> dict | None:
        """The next message for ``receive()``, or None if the app must wait."""
        if self.disconnected:
            return dict(_DISCONNECT)
        if self.body:
            body = self.body
            data = body.popleft() if len(body) == 1 else b"".join(body)
            body.clear()
            self.queued = 0
            if self.request_complete:
                self.body_delivered = True
            return {"type": "http.request", "body": data, "more_body": not self.request_complete}
        if self.request_complete and not self.body_delivered:
            self.body_delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if self.state is _DONE:
            # ASGI: receive() after the response is sent says disconnect.
            return dict(_DISCONNECT)
        return None

    # -- send side ---------------------------------------------------------

    def app_send(self, message: Any) -> Response | Body | FileBody | Trailers | EarlyHint | None:
        """Check one message from the app; return the wire event it means, or
        None for a message that means nothing on the wire (an early hint after
        the response started, or one without links).

        :raises AppError: the message is not valid in the current state.
        """
        try:
            mtype = message["type"]
        except (TypeError, KeyError):
            raise AppError(f"ASGI message must be a dict with a 'type' key, got {message!r}") from None
        state = self.state
        expected = _EXPECTED.get(state)
        if mtype != expected:
            if mtype == "http.response.early_hint":
                return self._early_hint(message)
            if state is _BODY and mtype in _FILE_SENDS:
                return self._file_send(mtype, message)
            if state is _DONE:
                raise AppError(f"Unexpected ASGI message {mtype!r} sent, after response already completed.")
            raise AppError(f"Expected ASGI message {expected!r}, but got {mtype!r}.")
        if state is _BODY:
            body = message.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    raise AppError(f"'body' of http.response.body must be bytes, got {type(body).__name__}")
                body = bytes(body)
            if message.get("more_body", False):
                return Body(body, True)
            self.state = _TRAILERS if self.trailers_wanted else _DONE
            return Body(body, False)
        if state is _START:
            status = message.get("status")
            if type(status) is not int and isinstance(status, int) and not isinstance(status, bool):
                status = int(status)  # an int subclass such as http.HTTPStatus is an int
            if type(status) is not int or not 200 <= status <= 599:
                raise AppError(f"'status' of http.response.start must be an int from 200 to 599, got {status!r}")
            headers = check_headers(message.get("headers"), "http.response.start")
            trailers = self.trailers_wanted = bool(message.get("trailers", False))
            self.state = _BODY
            self.status = status
            return Response(status, headers, trailers)
        # TRAILERS
        headers = check_headers(message.get("headers"), "http.response.trailers")
        if not message.get("more_trailers", False):
            self.state = _DONE
            return Trailers(headers)
        raise AppError("'more_trailers' is not supported; send all trailers in one message")

    def _early_hint(self, message: dict) -> EarlyHint | None:
        """``http.response.early_hint`` (ASGI extensions spec, "Early Hints"):
        checked in any state, as every message is; a hint once the response
        has started is too late to mean anything (its 103 would follow the
        final head) and is dropped, as the spec lets a server drop any hint."""
        links = message.get("links")
        if links is None or isinstance(links, (str, bytes, bytearray, memoryview, dict)):
            raise AppError(
                f"'links' of http.response.early_hint must be an iterable of byte strings, got {type(links).__name__}"
            )
        fields: Headers = []
        try:
            for link in links:
                if type(link) is not bytes:
                    if not isinstance(link, (bytes, bytearray)):
                        raise AppError(f"'links' of http.response.early_hint must hold byte strings, got {link!r}")
                    link = bytes(link)
                fields.append((b"link", link))
        except TypeError:
            raise AppError(
                f"'links' of http.response.early_hint must be an iterable of byte strings, got {type(links).__name__}"
            ) from None
        fields = check_headers(fields, "http.response.early_hint")
        if self.state is not _START or not fields:
            return None
        return EarlyHint(fields)

    def _file_send(self, mtype: str, message: Any) -> FileBody:
        """``http.response.pathsend`` (ends the body) or
        ``http.response.zerocopysend`` (ASGI extensions spec), checked."""
        if mtype == "http.response.pathsend":
            path = message.get("path")
            if type(path) is not str or not os.path.isabs(path):
                raise AppError(f"'path' of http.response.pathsend must be an absolute path (str), got {path!r}")
            self.state = _TRAILERS if self.trailers_wanted else _DONE
            return FileBody(path, None, None, None, False)
        file = message.get("file")
        if not (type(file) is int and file >= 0) and not callable(getattr(file, "fileno", None)):
            raise AppError(f"'file' of http.response.zerocopysend must be a file object or descriptor, got {file!r}")
        offset = message.get("offset")
        count = message.get("count")
        for name, value in (("offset", offset), ("count", count)):
            if value is not None and (type(value) is not int or value < 0):
                raise AppError(f"'{name}' of http.response.zerocopysend must be an int >= 0, got {value!r}")
        more = bool(message.get("more_body", False))
        if not more:
            self.state = _TRAILERS if self.trailers_wanted else _DONE
        return FileBody(None, file, offset, count, more)

    @property
    def response_started(self) -> bool:
        return self.state is not _START

    @property
    def response_complete(self) -> bool:
        return self.state is _DONE
