"""The test Django project served end to end over loopback with ``--django``:
sync and async views, streaming, uploads, aborts, concurrency, admin static
files, Django's default refusals (WebSocket 500, lifespan) and the overrides
from settings (a Channels WebSocket echo, the lifespan handler)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import Server, recv_response, start_server

PROJECT = Path(__file__).resolve().parent / "django_project"


REFUSAL_WS = "Django can only handle ASGI/HTTP connections, not websocket."
REFUSAL_LIFESPAN = "Django can only handle ASGI/HTTP connections, not lifespan."


def start_project(
    settings: str, *args: str, command: str = "module", env: dict[str, str] | None = None, wait: bool = True
) -> Server:
    """Serve the test project with ``--django settings``, DJANGO_SETTINGS_MODULE unset."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
        # The application argument is optional with --django: the settings
        # module takes the positional slot start_server appends last.
        return start_server(
            settings,
            "--app-dir",
            str(PROJECT),
            *args,
            "--django",
            command=command,
            env={"TESTSITE_STATIC_URLS": "1", **(env or {})},
            wait=wait,
        )


def request(server: Server, path: str, method: str = "GET", body: bytes = b"") -> tuple[int, dict, bytes]:
    with server.connect() as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: testserver\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body)
        status, headers, data = recv_response(sock)
    return int(status.split()[1]), headers, data


def poll(condition, timeout: float = 10.0, what: str = "condition") -> None:
    """Wait until ``condition()`` is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def site() -> Iterator[Server]:
    """The project with Django's defaults (no overrides), via python -m twisted_asgi --django."""
    server = start_project("testsite.settings")
    try:
        yield server
    finally:
        assert server.stop() == 0, server.read_output()


@pytest.fixture(scope="module")
def ws_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The project with WebSocket and lifespan enabled in settings, via twistd asgi --django."""
    events = tmp_path_factory.mktemp("events") / "events.txt"
    server = start_project("testsite.settings_ws", command="twistd", env={"TESTSITE_EVENTS": str(events)})
    try:
        yield server
    finally:
        assert server.stop() == 0, server.read_output()


# -- HTTP through Django ----------------------------------------------------------


def test_sync_view_runs_off_the_event_loop(site):
    """A sync view answers, run in a worker thread rather than the reactor's thread."""
    assert request(site, "/sync/")[::2] == (200, b"sync GET main_thread=False")


def test_async_view_runs_on_the_reactors_loop(site):
    """An async view answers from the asyncio loop under the reactor."""
    status, headers, body = request(site, "/async/")
    assert status == 200 and body.startswith(b"async GET loop=")
    assert headers[b"server"] == b"twisted-asgi"


def test_admin_page_and_static_file(site):
    """The admin login page renders and its stylesheet is served byte for byte."""
    import django.contrib.admin

    status, _headers, body = request(site, "/admin/login/")
    assert status == 200 and b"/static/admin/css/base.css" in body
    css = Path(django.contrib.admin.__file__).parent / "static" / "admin" / "css" / "base.css"
    status, headers, body = request(site, "/static/admin/css/base.css")
    assert status == 200 and body == css.read_bytes()
    assert headers[b"content-type"].startswith(b"text/css")


def test_streaming_response_from_sync_iterator(site):
    """A StreamingHttpResponse over a sync generator arrives whole, chunked."""
    status, headers, body = request(site, "/stream/sync/?n=2000")
    assert status == 200 and headers[b"transfer-encoding"] == b"chunked"
    assert body == "".join(f"line {i}\n" for i in range(2000)).encode()


def test_streaming_response_from_async_iterator_is_not_buffered(site):
    """The first part of an async-iterator response reaches the client while the view still waits."""
    key = uuid.uuid4().hex
    with site.connect() as sock:
        sock.sendall(f"GET /stream/async/?key={key} HTTP/1.1\r\nHost: testserver\r\n\r\n".encode())
        received = b""
        while b"first\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        assert b"second" not in received
        assert request(site, f"/release/?key={key}")[::2] == (200, b"released")
        while not received.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert b"second\n" in received


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


def test_large_upload_streams_without_buffering(site):
    """A 40 MiB multipart upload reaches the view intact and the server's peak memory grows far less than that."""
    block = os.urandom(1024 * 1024)
    blocks = 40
    boundary = "----twisted-asgi-" + uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + len(block) * blocks + len(tail)
    digest = hashlib.sha256()
    peak_before = _peak_rss_kib(site.proc.pid)
    with site.connect(timeout=60) as sock:
        sock.sendall(
            (
                f"POST /upload/ HTTP/1.1\r\nHost: testserver\r\nContent-Length: {length}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
            ).encode()
            + head
        )
        for _ in range(blocks):
            sock.sendall(block)
            digest.update(block)
        sock.sendall(tail)
        status, _headers, body = recv_response(sock, timeout=60)
    assert status.split()[1] == b"200", body
    result = json.loads(body)
    assert result == {
        "size": len(block) * blocks,
        "sha256": digest.hexdigest(),
        "class": "TemporaryUploadedFile",
        "on_disk": True,
    }
    growth_mib = (_peak_rss_kib(site.proc.pid) - peak_before) / 1024
    assert growth_mib < 16, f"server peak memory grew by {growth_mib:.1f} MiB during a 40 MiB upload"


def test_client_abort_reaches_django_as_disconnect(site):
    """A client that leaves mid-request makes Django cancel the async view (http.disconnect)."""
    key = uuid.uuid4().hex

    def status() -> dict:
        return json.loads(request(site, f"/status/?key={key}")[2])

    sock = site.connect()
    sock.sendall(f"GET /wait/?key={key} HTTP/1.1\r\nHost: testserver\r\n\r\n".encode())
    poll(lambda: status()["started"], what="view started")
    assert status() == {"started": True, "cancelled": False}
    sock.close()
    poll(lambda: status()["cancelled"], what="view cancelled")


def test_concurrent_requests_never_mix_responses(site):
    """Many keep-alive clients at once, to sync and async views, each get their own answers."""
    errors: list[str] = []

    def client(n: int) -> None:
        try:
            with site.connect(timeout=30) as sock:
                for i in range(6):
                    path = "/echo/" if (n + i) % 2 else "/sync-echo/"
                    ident = f"{n}-{i}"
                    body = f"body-{ident}-{uuid.uuid4().hex}".encode()
                    head = f"POST {path}?id={ident} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
                    sock.sendall(head.encode() + body)
                    status, _headers, data = recv_response(sock, timeout=30)
                    answer = json.loads(data)
                    if status.split()[1] != b"200" or answer["id"] != ident or answer["body"] != body.decode():
                        errors.append(f"{ident}: {status!r} {answer!r}")
        except Exception as exc:  # noqa: BLE001 - reported below, with every other client's result
            errors.append(f"client {n}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


def test_lifespan_refusal_logged_once_and_serving_goes_on(site):
    """Under --lifespan auto, Django's lifespan refusal is one info line, not a traceback, and HTTP is served."""
    output = site.read_output(0.1)
    assert output.count(REFUSAL_LIFESPAN) == 1, output
    assert "Traceback" not in output
    assert request(site, "/sync/")[0] == 200


def test_default_websocket_refused_with_500_and_a_hint(site):
    """A WebSocket to plain Django gets 500, and the log has one line quoting Django and saying how to enable it."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://127.0.0.1:{site.port}/ws/echo/", open_timeout=10)
    assert info.value.response.status_code == 500
    output = site.wait_for_output(REFUSAL_WS)
    assert output.count(REFUSAL_WS) == 1
    assert "get_asgi_application(websocket=" in output
    assert "Traceback" not in output
    assert request(site, "/sync/")[0] == 200


def test_stock_handler_with_the_setting_hints_at_the_adapter():
    """Serving Django's own handler (the project template's asgi.py) with
    TWISTED_ASGI_APPLICATIONS set: the WebSocket refusal's hint says which
    entry point to serve, not to set the setting that is already set.

    Source: issue 16, item 11 (newcomer test with the stock mysite.asgi:application)."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    server = start_server(
        "testsite.stock_asgi:application",
        "--app-dir",
        str(PROJECT),
        env={"DJANGO_SETTINGS_MODULE": "testsite.settings_ws", "TESTSITE_STATIC_URLS": "1"},
    )
    try:
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{server.port}/ws/echo/", open_timeout=10)
        assert info.value.response.status_code == 500
        output = server.wait_for_output(REFUSAL_WS)
        line = next(line for line in output.splitlines() if REFUSAL_WS in line)
        assert "does not read that setting" in line
        assert "twisted_asgi.django.get_asgi_application()" in line and "--django" in line
        assert "get_asgi_application(websocket=" not in line
    finally:
        assert server.stop() == 0


# -- overrides from settings --------------------------------------------------------


def test_websocket_echo_through_channels_consumer(ws_site):
    """TWISTED_ASGI_APPLICATIONS routes WebSocket to a Channels URLRouter whose consumer echoes text and bytes."""
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{ws_site.port}/ws/echo/", open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(10) == "echo: hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv(10) == b"\x00\x01binary"


def test_websocket_echo_through_plain_asgi_app(ws_site):
    """A plain ASGI app behind the same router echoes too, while HTTP still reaches Django."""
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{ws_site.port}/ws/plain/", open_timeout=10) as ws:
        for i in range(3):
            ws.send(f"message {i}")
            assert ws.recv(10) == f"plain: message {i}"
    assert request(ws_site, "/sync/")[::2] == (200, b"sync GET main_thread=False")


def test_overridden_websocket_upgrade_is_not_djangos_http(ws_site):
    """An upgrade request never reaches Django's URL resolver as plain HTTP when WebSocket is configured."""
    with ws_site.connect() as sock:
        sock.sendall(
            b"GET /ws/echo/ HTTP/1.1\r\nHost: testserver\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 101 ")


def test_lifespan_handler_from_settings(tmp_path):
    """With the lifespan handler set in settings, startup runs before listening and shutdown after SIGTERM."""
    events = tmp_path / "events.txt"
    server = start_project("testsite.settings_ws", env={"TESTSITE_EVENTS": str(events)})
    try:
        assert events.read_text() == "startup\n"
        assert request(server, "/async/")[0] == 200
    finally:
        code = server.stop(signal.SIGTERM)
    output = server.read_output()
    assert code == 0, output
    assert events.read_text() == "startup\nshutdown\n"
    assert REFUSAL_LIFESPAN not in output and "Traceback" not in output


def test_lifespan_startup_failure_stops_the_server(tmp_path):
    """A startup receiver that raises fails lifespan startup: the server exits 1 with the reason, never listening."""
    server = start_project("testsite.settings_ws", env={"TESTSITE_FAIL_STARTUP": "1"}, wait=False)
    try:
        server.wait(30)
    finally:
        code = server.stop()
    output = server.read_output()
    assert code == 1, output
    assert "startup refused by TESTSITE_FAIL_STARTUP" in output
    assert "Listening on" not in output


# -- the --django option ---------------------------------------------------------------


def test_django_option_with_bad_settings_is_one_line_error():
    """--django with a settings module that does not import exits 1 with one line, no traceback."""
    server = start_project("nosuch_project.settings", wait=False)
    try:
        server.wait(30)
    finally:
        code = server.stop()
    output = server.read_output()
    assert code == 1, output
    assert "loading the Django project 'nosuch_project.settings' failed" in output
    assert "No module named 'nosuch_project'" in output
    assert "Traceback" not in output


def test_django_option_keeps_an_explicit_application(tmp_path):
    """--django SETTINGS with an application argument serves that application (here the project's asgi.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
        server = start_server("testsite.asgi:application", "--app-dir", str(PROJECT), "--django", "testsite.settings")
    try:
        assert request(server, "/sync/")[::2] == (200, b"sync GET main_thread=False")
        # Without TESTSITE_STATIC_URLS (and outside runserver) Django serves no static files.
        assert request(server, "/static/admin/css/base.css")[0] == 404
    finally:
        assert server.stop() == 0


def test_application_argument_required_without_django_option():
    """Without --django the application argument is still required; with it, --help documents the option."""
    import subprocess
    import sys

    from tests.serving import ROOT

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)

    def run(*args: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "twisted_asgi", *args]
        return subprocess.run(argv, check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)

    missing = run()
    assert missing.returncode == 2
    assert "the ASGI application to serve is required" in missing.stderr
    helped = run("--help")
    assert helped.returncode == 0 and "--django=" in helped.stdout
