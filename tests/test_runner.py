"""The runner alone starts, cancels and fails app calls: its choices, tested on a loop driven by hand."""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from tests.conftest import settle
from twisted_asgi.config import Config
from twisted_asgi.cycle import HTTPCycle
from twisted_asgi.events import Request
from twisted_asgi.runner import HTTPTask, Runner


class Carrier:
    """An HTTPCarrier that records what the app call asks of it."""

    write_paused = False

    def __init__(self) -> None:
        self.task: HTTPTask | None = None
        self.calls: list[tuple[str, Any]] = []
        self.task_at_first_call: HTTPTask | None = None

    def _record(self, name: str, task: HTTPTask, event: Any = None) -> None:
        if not self.calls:
            self.task_at_first_call = self.task
        self.calls.append((name, event))

    def send_response(self, task: HTTPTask, event: Any) -> None:
        self._record("response", task, event.status)

    def send_body(self, task: HTTPTask, event: Any) -> None:
        self._record("body", task, event.data)

    def send_trailers(self, task: HTTPTask, event: Any) -> None:
        self._record("trailers", task)

    def send_continue(self, task: HTTPTask) -> None:
        self._record("continue", task)

    def resume_reading(self, task: HTTPTask) -> None:
        self._record("resume", task)

    def app_finished(self, task: HTTPTask) -> None:
        self._record("finished", task, task.error_status())

    def app_timed_out(self, task: HTTPTask) -> None:
        self._record("timed out", task, task.error_status())


def request(expect_continue: bool = False) -> Request:
    return Request(1, b"POST", b"/", b"", "1.1", [], has_body=True, expect_continue=expect_continue)


def start(app: Any, loop: asyncio.AbstractEventLoop, eager: bool = True, **config: Any) -> tuple[Carrier, Clock]:
    clock = Clock()
    runner = Runner(app, Config(**config), clock, loop)
    carrier = Carrier()
    runner.start_http({"type": "http"}, request(), carrier, 100, eager=eager)
    return carrier, clock


async def answers(scope, receive, send):
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"ok"})


def test_carrier_knows_its_task_before_the_first_step(loop):
    """Eager or not, the carrier's task is set before the app first calls it."""
    for eager in (True, False):
        carrier, _ = start(answers, loop, eager)
        settle(loop)
        assert carrier.task is not None and carrier.task_at_first_call is carrier.task
        assert [name for name, _ in carrier.calls] == ["response", "body", "finished"]


def test_error_status_is_chosen_by_the_runner(loop):
    """500 for an app that failed or returned without answering, 503 for one
    cancelled or out of time: the carriers only ask."""

    async def fails(scope, receive, send):
        raise RuntimeError("boom")

    async def returns(scope, receive, send):
        return

    async def waits(scope, receive, send):
        await asyncio.Event().wait()

    logged: list = []
    globalLogPublisher.addObserver(logged.append)
    try:
        for app, status in ((fails, 500), (returns, 500)):
            carrier, _ = start(app, loop)
            settle(loop)
            assert carrier.calls[-1] == ("finished", status)
        carrier, clock = start(waits, loop, timeout_response=5)
        settle(loop)
        clock.advance(5)
        settle(loop)
        assert carrier.calls == [("timed out", 503), ("finished", 503)]
    finally:
        globalLogPublisher.removeObserver(logged.append)


def test_stop_cancels_quietly(loop):
    """stop() cancels the app call at once, without a log line of its own."""

    async def waits(scope, receive, send):
        await asyncio.Event().wait()

    carrier, _ = start(waits, loop)
    settle(loop)
    logged: list = []
    globalLogPublisher.addObserver(logged.append)
    try:
        carrier.task.stop()  # type: ignore[union-attr]
        settle(loop)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert carrier.task.returned and carrier.calls == [("finished", 503)]  # type: ignore[union-attr]
    assert not [e for e in logged if e.get("log_namespace") == "twisted_asgi.app"]


def test_continue_asked_once_when_the_app_waits_for_the_body(loop):
    """100 Continue goes out once, when the app first waits for the body."""

    async def reads(scope, receive, send):
        await receive()

    clock = Clock()
    runner = Runner(reads, Config(), clock, loop)
    carrier = Carrier()
    task = runner.start_http({"type": "http"}, request(expect_continue=True), carrier, 100)
    settle(loop)
    assert carrier.calls == [("continue", None)]
    task.feed_data(b"x")
    settle(loop)
    assert [name for name, _ in carrier.calls] == ["continue", "finished"]


def test_drop_body_reports_the_unread_bytes(loop):
    """drop_body: bytes dropped, or None while the client was never asked for its body."""
    cycle = HTTPCycle(100, True, True)
    task = HTTPTask(Runner(answers, Config(), Clock(), loop), {}, cycle, Carrier())
    assert task.drop_body() is None
    task.feed_data(b"abc")
    assert task.drop_body() == 3
