"""Sans-IO tests of :class:`twisted_asgi.cycle.HTTPCycle`: the send transition table with
its exact error messages, and the receive side. No reactor, no loop."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from twisted_asgi.cycle import HTTPCycle, SendState, check_headers
from twisted_asgi.events import AppError, Body, Response, Trailers

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
BODY = {"type": "http.response.body", "body": b"hi"}
TRAILERS = {"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]}


def cycle_after(*messages, body_limit: int = 100, has_body: bool = True, expect_continue: bool = False) -> HTTPCycle:
    """A cycle that has accepted ``messages`` from the app."""
    cycle = HTTPCycle(body_limit, has_body, expect_continue)
    for message in messages:
        cycle.app_send(message)
    return cycle


def send_error(cycle: HTTPCycle, message) -> str:
    """The AppError message ``cycle`` raises for ``message`` (the state must not change)."""
    state = cycle.state
    with pytest.raises(AppError) as info:
        cycle.app_send(message)
    assert cycle.state is state
    return str(info.value)


# -- send: the good paths --------------------------------------------------------------


def test_start_then_body_completes():
    """start gives a Response, a final body a Body; the cycle is then DONE."""
    cycle = HTTPCycle(100)
    assert cycle.state is SendState.START and not cycle.response_started
    assert cycle.app_send(START) == Response(200, [(b"content-type", b"text/plain")], False)
    assert cycle.state is SendState.BODY and cycle.response_started and cycle.status == 200
    assert cycle.app_send(BODY) == Body(b"hi", False)
    assert cycle.state is SendState.DONE and cycle.response_complete


def test_streamed_body():
    """more_body True keeps the cycle in BODY until a message without it."""
    cycle = cycle_after(START)
    assert cycle.app_send({"type": "http.response.body", "body": b"a", "more_body": True}) == Body(b"a", True)
    assert cycle.state is SendState.BODY
    assert cycle.app_send({"type": "http.response.body"}) == Body(b"", False)
    assert cycle.response_complete


def test_optional_keys_default():
    """headers default to [], body to b'', more_body and trailers to False (ASGI www spec)."""
    cycle = HTTPCycle(100)
    assert cycle.app_send({"type": "http.response.start", "status": 204}) == Response(204, [], False)
    assert cycle.app_send({"type": "http.response.body"}) == Body(b"", False)


def test_body_bytes_like_are_accepted_as_bytes():
    """bytearray and memoryview bodies are turned into bytes."""
    cycle = cycle_after(START)
    assert cycle.app_send({"type": "http.response.body", "body": bytearray(b"ab"), "more_body": True}) == Body(
        b"ab", True
    )
    event = cycle.app_send({"type": "http.response.body", "body": memoryview(b"cd")})
    assert event == Body(b"cd", False) and type(event.data) is bytes


class Tagged(bytes):
    """A bytes subclass, as some frameworks use for header values."""


def test_headers_as_lists_and_bytes_subclasses():
    """Headers may be lists of two-item lists; bytes subclasses become plain bytes."""
    event = HTTPCycle(100).app_send(
        {"type": "http.response.start", "status": 200, "headers": [[Tagged(b"x-a"), Tagged(b"1")], (b"x-b", b"")]}
    )
    assert event.headers == [(b"x-a", b"1"), (b"x-b", b"")]
    assert all(type(n) is bytes and type(v) is bytes for n, v in event.headers)


def test_status_may_be_an_int_enum():
    """An int subclass such as HTTPStatus is an int status, passed on as a plain int."""
    event = HTTPCycle(100).app_send({"type": "http.response.start", "status": HTTPStatus.CREATED})
    assert event.status == 201 and type(event.status) is int


@pytest.mark.parametrize("status", [200, 299, 404, 599])
def test_status_range_accepted(status):
    """Every final status from 200 to 599 is accepted."""
    assert HTTPCycle(100).app_send({"type": "http.response.start", "status": status}).status == status


def test_trailers_flow():
    """trailers True: the final body leads to TRAILERS, and the trailers message completes the response."""
    cycle = HTTPCycle(100)
    assert cycle.app_send({**START, "trailers": True}).trailers is True
    assert cycle.trailers_wanted
    assert cycle.app_send(BODY) == Body(b"hi", False)
    assert cycle.state is SendState.TRAILERS and not cycle.response_complete
    assert cycle.app_send(TRAILERS) == Trailers([(b"x-checksum", b"abc")])
    assert cycle.response_complete


# -- send: one test per mistake, with the exact message --------------------------------


def test_body_before_start():
    """A body first is refused with the message naming the expected start."""
    assert (
        send_error(HTTPCycle(100), BODY) == "Expected ASGI message 'http.response.start', but got 'http.response.body'."
    )


def test_double_start():
    """A second start is refused."""
    assert send_error(cycle_after(START), START) == (
        "Expected ASGI message 'http.response.body', but got 'http.response.start'."
    )


@pytest.mark.parametrize("mtype", ["http.response.begin", "websocket.send", "http.request", ""])
def test_wrong_type(mtype):
    """A message type outside the table is refused, naming what was expected."""
    assert (
        send_error(HTTPCycle(100), {"type": mtype})
        == f"Expected ASGI message 'http.response.start', but got {mtype!r}."
    )


@pytest.mark.parametrize("message", [None, "http.response.start", {}, {"status": 200}, 42])
def test_not_a_message(message):
    """Anything that is not a dict with a 'type' is refused."""
    assert send_error(HTTPCycle(100), message) == f"ASGI message must be a dict with a 'type' key, got {message!r}"


@pytest.mark.parametrize("status", [None, "200", 200.0, True, 99, 100, 101, 199, 600, 1000, -1])
def test_bad_status(status):
    """A missing, non-int, bool, 1xx or out-of-range status is refused."""
    message = {"type": "http.response.start"} if status is None else {"type": "http.response.start", "status": status}
    assert send_error(HTTPCycle(100), message) == (
        f"'status' of http.response.start must be an int from 200 to 599, got {status!r}"
    )


@pytest.mark.parametrize(
    "pair",
    [("x-a", b"1"), (b"x-a", "1"), ("x-a", "1"), (None, b"1"), (b"x-a", 1), (bytearray(b"x-a"), b"1")],
)
def test_non_bytes_headers(pair):
    """Header names and values that are not bytes are refused."""
    message = {**START, "headers": [pair]}
    assert send_error(HTTPCycle(100), message) == (
        f"http.response.start header names and values must be bytes, got {pair[0]!r}: {pair[1]!r}"
    )


@pytest.mark.parametrize(
    "name",
    [b"", b"x a", b"x:a", b"x\ra", b"x\na", b"x\x00a", b"x-a\r\n", b"(x)", b"x/y", b"\xe9", b"x@y", b'"x"'],
)
def test_header_name_not_a_token(name):
    """A header name that is not an RFC 9110 token (CR, LF, NUL, separators, empty) is refused."""
    assert send_error(HTTPCycle(100), {**START, "headers": [(name, b"v")]}) == (
        f"Invalid HTTP header name {name!r} in http.response.start"
    )


@pytest.mark.parametrize(
    "value",
    [
        b"a\rb", b"a\nb", b"a\x00b", b"a\r\nSet-Cookie: evil=1", b"\n",
        # Every other control byte but HTAB, and DEL (issue 15, item 12).
        b"a\x0bb", b"a\x0cb", b"a\x01b", b"a\x1bb", b"a\x1cb", b"a\x1fb", b"a\x7fb", b"\x08",
    ],
)  # fmt: skip
def test_header_value_with_a_control_byte(value):
    """A header value with CR, LF, NUL or any other control byte but HTAB, or
    DEL, is refused (RFC 9110 §5.5): header injection through an app.
    Source: issue 15, item 12 (outside attack), for the bytes beyond CR, LF, NUL."""
    assert send_error(HTTPCycle(100), {**START, "headers": [(b"x-a", value)]}) == (
        f"Invalid HTTP header value {value!r} for b'x-a' in http.response.start"
    )


@pytest.mark.parametrize("value", [b"a\tb", b"caf\xe9", b"a\x85b", b"\xa0", b""])
def test_header_value_with_htab_or_obs_text(value):
    """HTAB, obs-text (NEL included: only request values refuse it) and empty
    values pass unchanged (RFC 9110 §5.5). Source: issue 15, item 12 (outside attack)."""
    event = HTTPCycle(100).app_send({**START, "headers": [(b"x-a", value)]})
    assert event.headers == [(b"x-a", value)]


@pytest.mark.parametrize("headers", [5, [(b"a",)], [(b"a", b"b", b"c")], [b"abc"], [None]])
def test_headers_not_pairs(headers):
    """Headers that are not an iterable of pairs are refused."""
    assert send_error(HTTPCycle(100), {**START, "headers": headers}) == (
        "http.response.start headers must be an iterable of [name, value] pairs"
    )


@pytest.mark.parametrize("body", ["text", None, 5, [b"a"]])
def test_body_not_bytes(body):
    """A body that is not bytes-like is refused, naming its type."""
    assert send_error(cycle_after(START), {"type": "http.response.body", "body": body}) == (
        f"'body' of http.response.body must be bytes, got {type(body).__name__}"
    )


@pytest.mark.parametrize("message", [BODY, START, TRAILERS, {"type": "http.response.body", "more_body": True}])
def test_send_after_completion(message):
    """Anything after the response is complete is refused."""
    assert send_error(cycle_after(START, BODY), message) == (
        f"Unexpected ASGI message {message['type']!r} sent, after response already completed."
    )


def test_trailers_not_promised():
    """Trailers without trailers True in the start are refused."""
    assert send_error(cycle_after(START), TRAILERS) == (
        "Expected ASGI message 'http.response.body', but got 'http.response.trailers'."
    )


def test_body_after_final_body_when_trailers_promised():
    """After the final body of a trailers response only the trailers message is accepted."""
    assert send_error(cycle_after({**START, "trailers": True}, BODY), BODY) == (
        "Expected ASGI message 'http.response.trailers', but got 'http.response.body'."
    )


def test_more_trailers_rejected():
    """more_trailers True is refused: all trailers go in one message."""
    cycle = cycle_after({**START, "trailers": True}, BODY)
    assert send_error(cycle, {**TRAILERS, "more_trailers": True}) == (
        "'more_trailers' is not supported; send all trailers in one message"
    )


def test_bad_trailer_header():
    """Trailer fields are checked like response headers."""
    cycle = cycle_after({**START, "trailers": True}, BODY)
    assert send_error(cycle, {"type": "http.response.trailers", "headers": [(b"x", b"a\nb")]}) == (
        "Invalid HTTP header value b'a\\nb' for b'x' in http.response.trailers"
    )


def test_check_headers_none_is_empty():
    """check_headers(None) is an empty list."""
    assert check_headers(None, "x") == []


# -- receive side --------------------------------------------------------------------------


def test_no_body_request_gives_one_empty_message():
    """A request without a body gives one empty final http.request, then waits."""
    cycle = HTTPCycle(100, has_body=False)
    assert cycle.next_message() == {"type": "http.request", "body": b"", "more_body": False}
    assert cycle.next_message() is None


def test_waits_until_body_arrives():
    """With a body on its way and nothing queued, receive must wait."""
    assert HTTPCycle(100).next_message() is None


def test_body_chunks_coalesced():
    """Chunks queued between two receives come out as one http.request."""
    cycle = HTTPCycle(100)
    cycle.feed_data(b"ab")
    cycle.feed_data(b"cd")
    cycle.feed_data(b"e")
    assert cycle.next_message() == {"type": "http.request", "body": b"abcde", "more_body": True}
    assert cycle.queued == 0
    assert cycle.next_message() is None


def test_more_body_flags():
    """more_body is True until the body is complete, and the last data carries False."""
    cycle = HTTPCycle(100)
    cycle.feed_data(b"a")
    assert cycle.next_message() == {"type": "http.request", "body": b"a", "more_body": True}
    cycle.feed_data(b"b")
    cycle.feed_end()
    assert cycle.next_message() == {"type": "http.request", "body": b"b", "more_body": False}
    assert cycle.next_message() is None


def test_empty_final_message_when_end_comes_after_data_was_taken():
    """A body end with nothing queued gives an empty final http.request, once."""
    cycle = HTTPCycle(100)
    cycle.feed_data(b"abc")
    assert cycle.next_message()["more_body"] is True
    cycle.feed_end()
    assert cycle.next_message() == {"type": "http.request", "body": b"", "more_body": False}
    assert cycle.next_message() is None


def test_disconnect_after_response_complete():
    """Once the body was read and the response sent, receive says http.disconnect (ASGI www spec)."""
    cycle = HTTPCycle(100, has_body=False)
    cycle.next_message()
    cycle.app_send(START)
    assert cycle.next_message() is None
    cycle.app_send(BODY)
    assert cycle.next_message() == {"type": "http.disconnect"}


def test_unread_body_is_still_delivered_after_response():
    """A body that arrived before the response completed is still given before the disconnect."""
    cycle = cycle_after(START, BODY)
    cycle.feed_data(b"late")
    cycle.feed_end()
    assert cycle.next_message() == {"type": "http.request", "body": b"late", "more_body": False}
    assert cycle.next_message() == {"type": "http.disconnect"}


def test_disconnect_when_client_left():
    """After the client left every receive says http.disconnect, queued body or not; each is a fresh dict."""
    cycle = HTTPCycle(100)
    cycle.feed_data(b"abc")
    cycle.feed_disconnect()
    assert cycle.disconnected
    first = cycle.next_message()
    assert first == {"type": "http.disconnect"}
    first["mutated"] = True
    assert cycle.next_message() == {"type": "http.disconnect"}


def test_over_limit_back_pressure():
    """feed_data reports when more than body_limit bytes are queued; taking them clears it."""
    cycle = HTTPCycle(10)
    assert cycle.feed_data(b"x" * 10) is False
    assert not cycle.over_limit
    assert cycle.feed_data(b"y") is True
    assert cycle.over_limit and cycle.queued == 11
    cycle.next_message()
    assert not cycle.over_limit and cycle.queued == 0


def test_expect_continue_cleared_by_data():
    """Body bytes arriving mean the client did not wait for 100 Continue: the flag clears."""
    cycle = HTTPCycle(100, expect_continue=True)
    assert cycle.expect_continue
    cycle.feed_data(b"a")
    assert not cycle.expect_continue


def test_expect_continue_cleared_by_end():
    """The body ending clears the 100-continue flag too."""
    cycle = HTTPCycle(100, expect_continue=True)
    cycle.feed_end()
    assert not cycle.expect_continue
    assert cycle.next_message() == {"type": "http.request", "body": b"", "more_body": False}


def test_take_continue_once():
    """The 100 Continue is asked for once: take_continue says so the first time only."""
    cycle = HTTPCycle(100, expect_continue=True)
    assert cycle.take_continue() is True
    assert cycle.take_continue() is False
    assert HTTPCycle(100).take_continue() is False


def test_drop_body_after_response():
    """A body left unread is dropped and counted; never asked for (100-continue pending), None."""
    cycle = HTTPCycle(100)
    cycle.feed_data(b"abc")
    cycle.feed_data(b"de")
    assert cycle.drop_body() == 5
    assert cycle.queued == 0 and not cycle.over_limit
    assert cycle.drop_body() == 0
    assert HTTPCycle(100, expect_continue=True).drop_body() is None


def test_report_every_read():
    """With REPORT_EVERY_READ (an HTTP/2 stream) every queued byte is over the limit."""
    from twisted_asgi.cycle import REPORT_EVERY_READ

    cycle = HTTPCycle(REPORT_EVERY_READ)
    assert not cycle.over_limit
    assert cycle.feed_data(b"a") is True
    cycle.next_message()
    assert not cycle.over_limit
