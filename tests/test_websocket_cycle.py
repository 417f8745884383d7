"""Sans-IO tests of the WebSocket ASGI cycle and the handshake checks: no reactor, no loop."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_asgi.events import AppError, Request
from twisted_asgi.wscycle import (
    Accept,
    Close,
    DenialBody,
    DenialStart,
    Deny,
    HandshakeError,
    Message,
    WebSocketCycle,
    WSState,
    accept_key,
    close_code_sendable,
    handshake_response,
    origin_matcher,
    parse_handshake,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def upgrade(
    *extra: tuple[bytes, bytes], method: bytes = b"GET", version: str = "1.1", key: bytes | None = KEY
) -> Request:
    headers = [(b"host", b"example.com"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade")]
    if key is not None:
        headers.append((b"sec-websocket-key", key))
    headers += [(b"sec-websocket-version", b"13"), *extra]
    return Request(1, method, b"/chat", b"", version, headers, upgrade=b"websocket")


def opened(subprotocols: list[str] | None = None) -> WebSocketCycle:
    cycle = WebSocketCycle(subprotocols or [])
    assert cycle.next_message() == {"type": "websocket.connect"}
    cycle.app_send({"type": "websocket.accept"})
    return cycle


# -- handshake ------------------------------------------------------------------------


def test_accept_key_matches_rfc_example():
    """Sec-WebSocket-Accept for RFC 6455's sample key is the RFC's value."""
    assert accept_key(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parse_valid_handshake():
    """A valid request yields its key, subprotocols (split, trimmed, in order) and extension offers."""
    handshake = parse_handshake(
        upgrade(
            (b"sec-websocket-protocol", b"chat, superchat"),
            (b"sec-websocket-protocol", b" v3 "),
            (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
        )
    )
    assert handshake.key == KEY
    assert handshake.subprotocols == ["chat", "superchat", "v3"]
    assert handshake.extensions == "permessage-deflate; client_max_window_bits"


@pytest.mark.parametrize(
    ("request_", "status", "reason"),
    [
        (upgrade(key=None), 400, "missing Sec-WebSocket-Key"),
        (upgrade((b"sec-websocket-key", KEY)), 400, "more than one"),
        (upgrade(key=b"c2hvcnQ="), 400, "16-byte"),
        (upgrade(key=b"!!!!!!!!!!!!!!!!!!!!!!=="), 400, "16-byte"),
        (upgrade((b"sec-websocket-version", b"13")), 400, "Version"),
        (upgrade(method=b"POST"), 400, "GET"),
        (upgrade(version="1.0"), 400, "HTTP/1.1"),
        (upgrade((b"sec-websocket-protocol", "ä".encode())), 400, "non-ASCII"),
        (upgrade((b"sec-websocket-protocol", b"a;b")), 400, "invalid subprotocol"),
    ],
)
def test_bad_handshakes(request_, status, reason):
    """Each malformed handshake raises HandshakeError with its status and a reason that names the fault."""
    with pytest.raises(HandshakeError) as info:
        parse_handshake(request_)
    assert info.value.status == status
    assert reason in info.value.reason


def test_wrong_version_names_ours():
    """Version 8 is refused with Sec-WebSocket-Version: 13 in the response (RFC 6455 §4.4)."""
    request = upgrade()
    request.headers = [(n, b"8" if n == b"sec-websocket-version" else v) for n, v in request.headers]
    with pytest.raises(HandshakeError) as info:
        parse_handshake(request)
    assert info.value.headers == [(b"sec-websocket-version", b"13")]


def test_origin_allow_list():
    """Listed origins (with * wildcards, any case) pass, others get 403, a request without Origin passes."""
    allowed = origin_matcher(["https://app.example.com", "https://*.example.org"])
    assert allowed is not None
    parse_handshake(upgrade((b"origin", b"https://APP.example.com")), allowed)
    parse_handshake(upgrade((b"origin", b"https://a.b.example.org")), allowed)
    parse_handshake(upgrade(), allowed)
    for origin in (b"https://evil.com", b"https://example.org", b"null", b"https://app.example.com.evil.com"):
        with pytest.raises(HandshakeError) as info:
            parse_handshake(upgrade((b"origin", origin)), allowed)
        assert info.value.status == 403
    assert origin_matcher([]) is None


def test_handshake_response_bytes():
    """The 101 carries accept key, subprotocol, extensions, app headers in order, and the server name once."""
    data = handshake_response(KEY, "chat", "permessage-deflate", [(b"x-a", b"1"), (b"x-b", b"2")], "srv")
    head = data.split(b"\r\n")
    assert head[0] == b"HTTP/1.1 101 Switching Protocols"
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    assert b"sec-websocket-protocol: chat" in head
    assert b"sec-websocket-extensions: permessage-deflate" in head
    assert head.index(b"x-a: 1") < head.index(b"x-b: 2")
    assert b"server: srv" in head
    assert data.endswith(b"\r\n\r\n")
    assert b"server: srv" not in handshake_response(KEY, None, None, [(b"server", b"mine")], "srv")


# -- the cycle: send side ---------------------------------------------------------------


def test_accept_with_subprotocol_and_headers():
    """websocket.accept becomes an Accept event; the cycle is then open."""
    cycle = WebSocketCycle(["a", "b"])
    event = cycle.app_send({"type": "websocket.accept", "subprotocol": "b", "headers": [(b"x-y", b"z")]})
    assert event == Accept("b", [(b"x-y", b"z")])
    assert cycle.state is WSState.OPEN and cycle.accepted


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "websocket.accept", "subprotocol": "c"}, "did not offer"),
        ({"type": "websocket.accept", "subprotocol": 1}, "must be a str"),
        ({"type": "websocket.accept", "headers": [(b"sec-websocket-protocol", b"a")]}, "use 'subprotocol'"),
        ({"type": "websocket.accept", "headers": [(b"Upgrade", b"x")]}, "the server sets it"),
        ({"type": "websocket.accept", "headers": [("str", b"x")]}, "must be bytes"),
        ({"type": "websocket.send", "text": "x"}, "Expected ASGI message 'websocket.accept'"),
        ({"type": "websocket.http.response.start", "status": 99}, "from 200 to 599"),
        ({"nope": 1}, "'type' key"),
    ],
)
def test_bad_messages_before_accept(message, error):
    """Every invalid message before accept raises AppError with an exact reason and changes nothing."""
    cycle = WebSocketCycle(["a", "b"])
    with pytest.raises(AppError, match=error):
        cycle.app_send(message)
    assert cycle.state is WSState.CONNECTING


def test_close_before_accept_is_deny():
    """websocket.close before accept means HTTP 403; afterwards nothing may be sent."""
    cycle = WebSocketCycle([])
    assert cycle.app_send({"type": "websocket.close", "code": 4000}) == Deny()
    with pytest.raises(AppError, match=re.escape("after sending 'websocket.close'")):
        cycle.app_send({"type": "websocket.accept"})


def test_denial_response_sequence():
    """http.response.start then body messages; the last one (more_body False) closes the cycle."""
    cycle = WebSocketCycle([])
    assert not cycle.denial_unfinished
    assert cycle.app_send({"type": "websocket.http.response.start", "status": 401, "headers": []}) == DenialStart(
        401, []
    )
    assert cycle.denial_unfinished  # an app returning now has left its response unfinished
    with pytest.raises(AppError, match=re.escape("websocket.http.response.body")):
        cycle.app_send({"type": "websocket.send", "text": "x"})
    assert cycle.app_send({"type": "websocket.http.response.body", "body": b"a", "more_body": True}) == DenialBody(
        b"a", True
    )
    assert cycle.denial_unfinished
    assert cycle.app_send({"type": "websocket.http.response.body", "body": bytearray(b"b")}) == DenialBody(b"b", False)
    assert cycle.state is WSState.CLOSED
    assert not cycle.denial_unfinished


def test_send_text_and_bytes():
    """websocket.send with text gives UTF-8 bytes, with bytes gives binary; exactly one is required."""
    cycle = opened()
    assert cycle.app_send({"type": "websocket.send", "text": "☃"}) == Message("☃".encode(), False)
    assert cycle.app_send({"type": "websocket.send", "bytes": b"\x00", "text": None}) == Message(b"\x00", True)
    assert cycle.app_send({"type": "websocket.send", "bytes": memoryview(b"mv")}) == Message(b"mv", True)
    for bad, error in [
        ({"type": "websocket.send"}, "exactly one"),
        ({"type": "websocket.send", "text": "a", "bytes": b"b"}, "exactly one"),
        ({"type": "websocket.send", "text": b"a"}, "must be a str"),
        ({"type": "websocket.send", "bytes": "a"}, "must be bytes"),
        ({"type": "websocket.send", "text": "\ud800"}, "UTF-8"),
        ({"type": "websocket.accept"}, "Expected ASGI message 'websocket.send' or 'websocket.close'"),
    ]:
        with pytest.raises(AppError, match=error):
            cycle.app_send(bad)


class _Text(str):
    pass


class _Bytes(bytes):
    pass


_SEND_FIELDS = [
    None,
    b"",
    b"b",
    bytearray(b"ba"),
    memoryview(b"mv"),
    "",
    "t",
    "\u2603",
    "\ud800",
    _Text("sub"),
    _Bytes(b"sub"),
    7,
]


@given(st.sampled_from(_SEND_FIELDS), st.sampled_from(_SEND_FIELDS), st.booleans())
def test_inline_send_agrees_with_message_check(data, text, dict_subclass):
    """app_send's inline handling of websocket.send (plain bytes, a str that
    encodes) gives what the full check (WebSocketCycle._message) gives, for
    every mix of 'bytes' and 'text' values: the same event, or the same error."""

    class Sub(dict):
        pass

    message = (Sub if dict_subclass else dict)(type="websocket.send")
    if data is not None or dict_subclass:
        message["bytes"] = data
    if text is not None or not dict_subclass:
        message["text"] = text

    def outcome(check):
        try:
            event = check(message)
        except AppError as exc:
            return ("error", str(exc))
        assert type(event) is Message and type(event.data) is bytes
        return ("event", event)

    assert outcome(opened().app_send) == outcome(WebSocketCycle._message)


def test_close_codes_and_reason():
    """websocket.close defaults to 1000, checks the code, truncates the reason to 123 bytes on a character."""
    assert opened().app_send({"type": "websocket.close"}) == Close(1000, b"")
    assert opened().app_send({"type": "websocket.close", "code": None, "reason": None}) == Close(1000, b"")
    assert opened().app_send({"type": "websocket.close", "code": 4999, "reason": "bye"}) == Close(4999, b"bye")
    event = opened().app_send({"type": "websocket.close", "code": 1011, "reason": "☃" * 60})
    assert isinstance(event, Close) and len(event.reason) == 123 and event.reason.decode() == "☃" * 41
    for code in (999, 1004, 1005, 1006, 1015, 2000, 5000, True, "1000"):
        with pytest.raises(AppError, match=re.escape("'code' of websocket.close")):
            opened().app_send({"type": "websocket.close", "code": code})


def test_send_after_close_raises():
    """After the app's websocket.close, any further message is an AppError."""
    cycle = opened()
    cycle.app_send({"type": "websocket.close"})
    with pytest.raises(AppError, match=re.escape("Unexpected ASGI message 'websocket.send'")):
        cycle.app_send({"type": "websocket.send", "text": "late"})


@given(st.integers(min_value=-10, max_value=6000))
def test_sendable_close_codes(code):
    """Only 1000-1003, 1007-1014 and 3000-4999 may go in a Close frame (RFC 6455 §7.4)."""
    expected = code in {1000, 1001, 1002, 1003, *range(1007, 1015)} or 3000 <= code <= 4999
    assert close_code_sendable(code) is expected


# -- the cycle: receive side ----------------------------------------------------------------


def test_connect_first_then_messages_in_order_then_disconnect():
    """receive() gives connect, then messages in order, then disconnect with the code and reason, repeatedly."""
    cycle = WebSocketCycle([])
    assert cycle.next_message() == {"type": "websocket.connect"}
    assert cycle.next_message() is None
    cycle.feed_message(b"one", False)
    cycle.feed_message(b"\x02", True)
    cycle.feed_disconnect(4000, "gone")
    cycle.feed_disconnect(1006, "ignored: the first reason counts")
    assert cycle.next_message() == {"type": "websocket.receive", "text": "one"}
    assert cycle.next_message() == {"type": "websocket.receive", "bytes": b"\x02"}
    for _ in range(2):
        assert cycle.next_message() == {"type": "websocket.disconnect", "code": 4000, "reason": "gone"}


def test_queue_bound_by_count_and_bytes():
    """feed_message says 'stop reading' at the message count or the byte bound, and taking messages clears it."""
    cycle = WebSocketCycle([], queue_limit=3, bytes_limit=10)
    cycle.next_message()
    assert not cycle.feed_message(b"a", True)
    assert not cycle.feed_message(b"b", True)
    assert cycle.feed_message(b"c", True)  # three waiting
    cycle.next_message()
    assert not cycle.over_limit
    assert cycle.feed_message(b"x" * 11, True)  # over the byte bound
    while cycle.next_message() is not None:
        pass
    assert not cycle.over_limit and cycle.queued_bytes == 0


@given(st.lists(st.tuples(st.binary(max_size=20), st.booleans()), max_size=30))
def test_messages_come_out_as_they_went_in(messages):
    """Whatever the client sends reaches receive() unchanged and in order; the byte count returns to zero."""
    cycle = WebSocketCycle([], queue_limit=1000, bytes_limit=10**6)
    cycle.next_message()
    expected = []
    for payload, binary in messages:
        if not binary:
            payload = payload.decode("latin-1").encode("utf-8")
        cycle.feed_message(payload, binary)
        expected.append(
            {"type": "websocket.receive", "bytes": payload}
            if binary
            else {"type": "websocket.receive", "text": payload.decode()}
        )
    got = []
    while (message := cycle.next_message()) is not None:
        got.append(message)
    assert got == expected
    assert cycle.queued_bytes == 0


def test_layering_of_the_websocket_modules():
    """wscycle imports no Twisted, asyncio or Autobahn; importing websocket installs no reactor."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = (
        "import sys, twisted_asgi.wscycle; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'twisted', 'asyncio', 'autobahn'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"
    code = "import sys, twisted_asgi.websocket; print('twisted.internet.reactor' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"
