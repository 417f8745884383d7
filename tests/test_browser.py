"""A real browser against a real server: Debian's ``chromium``, driven by
Playwright pointed at it (no browser download), loads the demo page over
plain HTTP/1.1 and over TLS with HTTP/2, and uses its WebSocket echo as a
person would: type, press send, read the echo.

``.ci/run`` installs ``chromium``; Playwright comes with the test extra.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import make_certs
from tests.serving import start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (it takes about a second to start)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (apt-get install chromium; .ci/run does it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _open_demo(browser: Any, url: str) -> tuple[Any, Any, list[tuple[int, str]]]:
    """A laptop-sized page at ``url``; returns (context, page, every response's (status, url))."""
    context = browser.new_context(viewport={"width": 1280, "height": 720}, ignore_https_errors=True)
    page = context.new_page()
    responses: list[tuple[int, str]] = []
    page.on("response", lambda response: responses.append((response.status, response.url)))
    page.goto(url)
    return context, page, responses


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_demo_page_echo_round_trips_in_a_real_browser(browser, scheme, tmp_path):
    """The demo page loads (over https by HTTP/2), its WebSocket echo is on the
    first screen and answers what is typed, the scope's headers are folded away,
    and the browser meets no 404 (the icon is inline).

    Source: issue 16, item 23 (newcomer test in Chromium: the echo sat ~1,300 px
    down and /favicon.ico was a 404)."""
    if scheme == "https":
        certs = make_certs(tmp_path)
        endpoint = f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    else:
        endpoint = "tcp:port=0:interface=127.0.0.1"
    server = start_server("twisted_asgi.demo:app", endpoint=endpoint)
    try:
        context, page, responses = _open_demo(browser, f"{scheme}://127.0.0.1:{server.port}/")
        try:
            expected = "https, HTTP/2" if scheme == "https" else "http, HTTP/1.1"
            assert page.text_content("#proto") == expected
            page.wait_for_function("document.getElementById('log').textContent.startsWith('connected')")
            box = page.locator("#f").bounding_box()
            assert box is not None and box["y"] + box["height"] < 720, box
            assert not page.locator("#headers").evaluate("element => element.open")
            page.fill("#msg", "hello from chromium")
            page.click("#f button")
            page.wait_for_function("document.getElementById('log').textContent.includes('echo: hello from chromium')")
            page.wait_for_load_state("networkidle")
        finally:
            context.close()
        assert [status for status, _url in responses] == [200], responses
    finally:
        assert server.stop() == 0
    assert "Traceback" not in "".join(server.output)


def test_server_initiated_websocket_close_is_clean_in_the_browser(browser):
    """An app that closes its WebSocket (code 4001): Chromium sees the close as
    clean (``wasClean`` true), since the server ends TCP with a FIN once the
    browser answered its Close, not a reset.

    Source: issue 16, item 6 (newcomer test in Chromium: clean=false)."""
    server = start_server("tests.ws_apps:app")
    try:
        context = browser.new_context()
        page = context.new_page()
        try:
            page.goto(f"http://127.0.0.1:{server.port}/")  # a page of the server's own origin
            results = [
                page.evaluate(
                    """url => new Promise(resolve => {
                        const ws = new WebSocket(url);
                        ws.onclose = e => resolve({code: e.code, clean: e.wasClean});
                    })""",
                    f"ws://127.0.0.1:{server.port}{path}",
                )
                for path in ("/send-after-close?id=browser-1", "/return-after-accept?id=browser-2")
            ]
        finally:
            context.close()
        assert results == [{"code": 4001, "clean": True}, {"code": 1000, "clean": True}], results
    finally:
        assert server.stop() == 0
